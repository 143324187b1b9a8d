//! `GET /reauthenticate` and the nonce check of `PUT /user {password, nonce}`. Port of
//! reauthenticate.go (SPEC §1.14).

use super::auth::Authenticated;
use super::email::{send_spaced, Link, LinkKind};
use super::{audit, AuditActor};
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::otp_issuer::CodeTarget;
use crate::Actors;

/// Sends a reauthentication code to the user's confirmed email, or by SMS to a phone-only
/// user; returns the SMS message id (empty for mail).
pub async fn reauthenticate(a: &Actors, auth: Authenticated) -> AuthResult<String> {
    let user = auth.user;
    if user.email.is_empty() && user.phone.is_empty() {
        return Err(AuthError::validation("Reauthentication requires the user to have an email or a phone number"));
    }
    if user.email.is_empty() {
        if user.phone_confirmed_at.is_none() {
            return Err(AuthError::unprocessable(ErrorCode::PhoneNotConfirmed, "Please verify your phone first."));
        }
        super::phone::check_spacing(a, user.reauthentication_sent_at)?;
        let id =
            super::phone::send_code(a, &user, super::phone::PhoneCode::Reauthentication, &user.phone, "sms").await?;
        audit(a, AuditActor::User(&user), "user_reauthenticate_requested", &[]).await?;
        let now = a.clock.now();
        a.users
            .update(user.id, move |u| {
                u.reauthentication_sent_at = Some(now);
                Ok(())
            })
            .await?;
        return Ok(id);
    }
    if user.email_confirmed_at.is_none() {
        return Err(AuthError::unprocessable(ErrorCode::EmailNotConfirmed, "Please verify your email first."));
    }
    let link =
        Link { kind: LinkKind::Reauthentication, address: &user.email, redirect_to: "", pkce: None, new_email: "" };
    send_spaced(a, &user, link).await?;
    audit(a, AuditActor::User(&user), "user_reauthenticate_requested", &[]).await?;
    Ok(String::new())
}

/// Consumes the user's reauthentication nonce: 422 `reauthentication_not_valid` if it does not
/// match a live one. A wrong nonce counts against the user's nonce (the target is the user,
/// whether it went by mail or SMS); after [`crate::otp_issuer::MAX_FAILED_ATTEMPTS`] it is gone.
pub async fn consume_nonce(a: &Actors, auth: &Authenticated, nonce: &str) -> AuthResult<()> {
    let invalid = || AuthError::unprocessable(ErrorCode::ReauthenticationNotValid, "Nonce has expired or is invalid");
    const TYPES: &[&str] = &["reauthentication_token"];
    let token = a.otps.check_code(CodeTarget::User(auth.user.id), nonce, TYPES).await?.ok_or_else(invalid)?;
    a.otps.consume(token.id, TYPES).await.map_err(|_| invalid())?;
    Ok(())
}
