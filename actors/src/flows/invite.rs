//! `POST /invite` (admin). Port of invite.go (SPEC §1.10). Invites bypass `DISABLE_SIGNUP`.

use super::email::{send_link, Link, LinkKind};
use super::signup::{new_user, Channel};
use super::{audit, validate, AuditActor};
use crate::error::{AuthError, AuthResult, ErrorCode, DUPLICATE_EMAIL_MSG};
use crate::user_registry::model::User;
use crate::Actors;
use serde_json::{Map, Value};

/// Creates (or re-invites) the user and sends the invite mail.
pub async fn invite(
    a: &Actors,
    admin_role: &str,
    email: &str,
    data: Map<String, Value>,
    redirect_to: &str,
    aud: &str,
) -> AuthResult<User> {
    let email = validate::email(email)?;
    let user = match a.users.by_email(&email).await? {
        Some(user) if user.email_confirmed_at.is_some() => {
            return Err(AuthError::unprocessable(ErrorCode::EmailExists, DUPLICATE_EMAIL_MSG));
        }
        Some(user) => user,
        None => {
            let mut user = new_user(a, Channel::Email, &email, None, data, aud, false);
            user.confirmation_sent_at = None;
            crate::flows::create_user(a, user).await?
        }
    };
    let link = Link { kind: LinkKind::Invite, address: &email, redirect_to, pkce: None, new_email: "" };
    send_link(a, &user, link).await?;
    let now = a.clock.now();
    let user = a
        .users
        .update(user.id, move |u| {
            u.invited_at = Some(now);
            u.confirmation_sent_at = Some(now);
            Ok(())
        })
        .await?;
    let id = user.id.to_string();
    audit(a, AuditActor::Admin(admin_role), "user_invited", &[("user_id", &id), ("user_email", &user.email)]).await?;
    Ok(user)
}
