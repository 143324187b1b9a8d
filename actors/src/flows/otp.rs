//! `POST /otp` (email branch) and `POST /magiclink`. Port of otp.go / magic_link.go
//! (SPEC §1.4, §1.5).

use super::email::{send_spaced, Link, LinkKind, Pkce};
use super::signup::{new_user, Channel};
use super::{audit, validate, AuditActor};
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::Actors;
use serde_json::{Map, Value};

/// What `/otp` and `/magiclink` ask for.
#[derive(Debug, Clone)]
pub struct OtpInput {
    pub email: String,
    pub phone: String,
    /// Default true: an unknown address signs up.
    pub create_user: bool,
    pub data: Map<String, Value>,
    pub channel: String,
    pub pkce: Option<Pkce>,
    pub redirect_to: String,
    pub aud: String,
}

/// `POST /otp`.
pub async fn otp(a: &Actors, input: OtpInput) -> AuthResult<()> {
    match (input.email.is_empty(), input.phone.is_empty()) {
        (false, false) => Err(AuthError::validation("Only an email address or phone number should be provided")),
        (true, true) => Err(AuthError::validation("One of email or phone must be set")),
        (false, true) if !input.channel.is_empty() => {
            Err(AuthError::validation("Channel can only be set with a phone number"))
        }
        (false, true) => magic_link(a, input).await,
        (true, false) => phone_otp(a, input).await.map(|_| ()),
    }
}

/// `POST /otp` with a phone: unknown or unconfirmed numbers sign up and get a confirmation
/// code, confirmed ones a sign-in code; both verify with `type=sms`. Returns the message id.
pub async fn phone_otp(a: &Actors, input: OtpInput) -> AuthResult<String> {
    let policy = &a.settings.signup;
    if !policy.phone_enabled {
        return Err(AuthError::bad_request(ErrorCode::PhoneProviderDisabled, "Unsupported phone provider"));
    }
    let phone = validate::phone(&input.phone)?;
    let channel = super::phone::channel(&input.channel)?;
    let user = match a.users.by_phone(&phone).await? {
        Some(user) => user,
        None => {
            may_sign_up(a, &input)?;
            let mut user = new_user(a, Channel::Phone, &phone, None, input.data.clone(), &input.aud, false);
            user.confirmation_sent_at = None;
            let user = crate::flows::create_user(a, user).await?;
            audit(a, AuditActor::User(&user), "user_signedup", &[("provider", "phone")]).await?;
            user
        }
    };
    super::phone::check_spacing(a, user.confirmation_sent_at)?;
    let message_id = super::phone::send_code(a, &user, super::phone::PhoneCode::Confirmation, &phone, &channel).await?;
    let now = a.clock.now();
    a.users
        .update(user.id, move |u| {
            u.confirmation_sent_at = Some(now);
            Ok(())
        })
        .await?;
    Ok(message_id)
}

/// An unknown address may sign up through `/otp` only with `create_user` (default true) and
/// sign-ups enabled.
fn may_sign_up(a: &Actors, input: &OtpInput) -> AuthResult<()> {
    if !input.create_user {
        return Err(AuthError::unprocessable(ErrorCode::OtpDisabled, "Signups not allowed for otp"));
    }
    if a.settings.signup.disable_signup {
        return Err(AuthError::unprocessable(ErrorCode::SignupDisabled, "Signups not allowed for this instance"));
    }
    Ok(())
}

/// `POST /magiclink`: a confirmation mail for new or unconfirmed users, a sign-in link for
/// confirmed ones.
pub async fn magic_link(a: &Actors, input: OtpInput) -> AuthResult<()> {
    let policy = &a.settings.signup;
    if !policy.email_enabled || !a.settings.mail.magic_link_enabled {
        return Err(AuthError::unprocessable(ErrorCode::EmailProviderDisabled, "Email logins are disabled"));
    }
    if input.email.trim().is_empty() {
        return Err(AuthError::unprocessable(ErrorCode::ValidationFailed, "Password recovery requires an email"));
    }
    let email = validate::email(&input.email)?;
    let user = match a.users.by_email(&email).await? {
        Some(user) => user,
        None => {
            may_sign_up(a, &input)?;
            // Internal sign-up without a password (GoTrue sets a random one nobody knows).
            let mut user =
                new_user(a, Channel::Email, &email, None, input.data.clone(), &input.aud, policy.mailer_autoconfirm);
            user.confirmation_sent_at = None;
            let user = crate::flows::create_user(a, user).await?;
            audit(a, AuditActor::User(&user), "user_signedup", &[("provider", "email")]).await?;
            user
        }
    };
    let kind = if user.email_confirmed_at.is_none() { LinkKind::Signup } else { LinkKind::MagicLink };
    let link =
        Link { kind, address: &email, redirect_to: &input.redirect_to, pkce: input.pkce.as_ref(), new_email: "" };
    send_spaced(a, &user, link).await?;
    let action = if kind == LinkKind::Signup { "user_confirmation_requested" } else { "user_recovery_requested" };
    audit(a, AuditActor::User(&user), action, &[]).await?;
    Ok(())
}
