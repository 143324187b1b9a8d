//! `POST /recover`. Port of recover.go (SPEC §1.8): never reveals whether the address exists.

use super::email::{send_spaced, Link, LinkKind, Pkce};
use super::{audit, validate, AuditActor};
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::Actors;

/// Sends a password-recovery mail if the address belongs to a user; `Ok` either way.
pub async fn recover(a: &Actors, email: &str, redirect_to: &str, pkce: Option<Pkce>) -> AuthResult<()> {
    if !a.settings.signup.email_enabled {
        return Err(AuthError::bad_request(ErrorCode::EmailProviderDisabled, "Email logins are disabled"));
    }
    if email.trim().is_empty() {
        return Err(AuthError::validation("Password recovery requires an email"));
    }
    let email = validate::email(email)?;
    let Some(user) = a.users.by_email(&email).await? else { return Ok(()) };
    let link = Link { kind: LinkKind::Recovery, address: &email, redirect_to, pkce: pkce.as_ref(), new_email: "" };
    send_spaced(a, &user, link).await?;
    audit(a, AuditActor::User(&user), "user_recovery_requested", &[]).await?;
    Ok(())
}
