//! `POST /resend`. Port of resend.go (SPEC §1.9): unknown users, confirmed sign-ups and absent
//! email changes are a silent `{}`.

use super::email::{send_spaced, Link, LinkKind, Pkce};
use super::user::send_email_change;
use super::validate;
use crate::error::{AuthError, AuthResult};
use crate::Actors;

/// `POST /resend` input.
#[derive(Debug, Clone, Default)]
pub struct ResendInput {
    pub kind: String,
    pub email: String,
    pub phone: String,
    pub redirect_to: String,
    pub pkce: Option<Pkce>,
}

/// Re-sends a confirmation or email-change mail.
pub async fn resend(a: &Actors, input: ResendInput) -> AuthResult<()> {
    match input.kind.as_str() {
        "signup" | "email_change" => {}
        "sms" | "phone_change" => return resend_sms(a, &input).await.map(|_| ()),
        _ => return Err(AuthError::validation("Missing one of these types: signup, email_change, sms, phone_change")),
    }
    if input.email.trim().is_empty() {
        return Err(AuthError::validation("Email is required"));
    }
    let email = validate::email(&input.email)?;
    let Some(user) = a.users.by_email(&email).await? else { return Ok(()) };
    if input.kind == "signup" {
        if user.email_confirmed_at.is_some() {
            return Ok(());
        }
        let link = Link {
            kind: LinkKind::Signup,
            address: &email,
            redirect_to: &input.redirect_to,
            pkce: input.pkce.as_ref(),
            new_email: "",
        };
        send_spaced(a, &user, link).await?;
        return Ok(());
    }
    if user.new_email.is_empty() {
        return Ok(());
    }
    let new_email = user.new_email.clone();
    send_email_change(a, user, &new_email, &input.redirect_to).await.map(|_| ())
}

/// `type=sms`: a new confirmation code for an unconfirmed number; `type=phone_change`: the code
/// for a pending number change (the input's phone is the *new* number). Unknown users and
/// nothing-pending are a silent success.
async fn resend_sms(a: &Actors, input: &ResendInput) -> AuthResult<String> {
    if input.phone.trim().is_empty() {
        return Err(AuthError::validation("Phone number is required"));
    }
    let phone = validate::phone(&input.phone)?;
    let now = a.clock.now();
    if input.kind == "sms" {
        let Some(user) = a.users.by_phone(&phone).await? else { return Ok(String::new()) };
        if user.phone_confirmed_at.is_some() {
            return Ok(String::new());
        }
        super::phone::check_spacing(a, user.confirmation_sent_at)?;
        let id = super::phone::send_code(a, &user, super::phone::PhoneCode::Confirmation, &phone, "sms").await?;
        a.users
            .update(user.id, move |u| {
                u.confirmation_sent_at = Some(now);
                Ok(())
            })
            .await?;
        return Ok(id);
    }
    // phone_change: find the user whose *pending* number this is. There is no index of pending
    // numbers, so this rare request scans the users (O(n)); worth an index if it ever matters.
    let page = a.users.list(1, usize::MAX, None, true).await?;
    let Some(user) = page.items.into_iter().find(|u| u.new_phone == phone) else { return Ok(String::new()) };
    super::phone::check_spacing(a, user.phone_change_sent_at)?;
    let id = super::phone::send_code(a, &user, super::phone::PhoneCode::PhoneChange, &phone, "sms").await?;
    a.users
        .update(user.id, move |u| {
            u.phone_change_sent_at = Some(now);
            Ok(())
        })
        .await?;
    Ok(id)
}
