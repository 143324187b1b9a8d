//! `GET /user` and `PUT /user`. Port of user.go `UserGet` / `UserUpdate`: metadata, password
//! (with the reauthentication nonce when required), email change with secure double
//! confirmation, and phone change confirmed by an SMS code.

use super::auth::Authenticated;
use super::email::{check_spacing, send_link, Link, LinkKind};
use super::reauthenticate::consume_nonce;
use super::signup::{confirm, Channel};
use super::validate;
use super::{audit, AuditActor};
use crate::crypto::{PasswordCheck, Secret};
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::user_registry::model::User;
use crate::Actors;
use serde_json::{Map, Value};

/// `PUT /user` input (absent = unchanged).
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub password: Option<Secret>,
    pub data: Option<Map<String, Value>>,
    pub app_metadata: Option<Map<String, Value>>,
    /// Reauthentication code for a password change.
    pub nonce: Option<String>,
    /// `sms` or `whatsapp` for a phone change code.
    pub channel: Option<String>,
    /// Where the email-change links lead.
    pub redirect_to: String,
}

/// How long after sign-in a password change needs no reauthentication.
const REAUTH_FREE_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// `GET /user`: the caller, after the audience check (a token without `aud` fails it, as in
/// GoTrue's `UserGet`).
pub fn get(auth: Authenticated, request_aud: &str) -> AuthResult<User> {
    if auth.claims.audience() != Some(request_aud) {
        return Err(AuthError::validation("Token audience doesn't match request audience"));
    }
    Ok(auth.user)
}

/// `PUT /user`.
pub async fn update(a: &Actors, auth: Authenticated, input: UserUpdate) -> AuthResult<User> {
    let sensitive = input.password.is_some()
        || input.email.as_deref().is_some_and(|e| !e.is_empty())
        || input.phone.as_deref().is_some_and(|p| !p.is_empty());
    if sensitive {
        super::mfa::require_aal2_for_sensitive_update(&auth)?;
    }
    let user = auth.user.clone();
    // Email: an unchanged value is accepted; a change is validated here, applied below.
    let new_email = match input.email.as_deref().filter(|e| !e.is_empty()) {
        Some(email) => {
            let email = validate::email(email)?;
            if email == user.email {
                None
            } else {
                if a.users.by_email(&email).await?.is_some_and(|other| other.id != user.id) {
                    return Err(AuthError::unprocessable(ErrorCode::EmailExists, crate::error::DUPLICATE_EMAIL_MSG));
                }
                Some(email)
            }
        }
        None => None,
    };
    let new_phone = match input.phone.as_deref().filter(|p| !p.is_empty()) {
        Some(phone) => {
            let phone = validate::phone(phone)?;
            if phone == user.phone {
                None
            } else {
                if a.users.by_phone(&phone).await?.is_some_and(|other| other.id != user.id) {
                    return Err(AuthError::unprocessable(
                        ErrorCode::PhoneExists,
                        "Phone number already registered by another user",
                    ));
                }
                Some(phone)
            }
        }
        None => None,
    };
    let sms_channel = super::phone::channel(input.channel.as_deref().unwrap_or(""))?;
    // GoTrue's isAdmin: the *stored* role is the admin group and the user is in this audience.
    let is_admin = user.role == a.settings.jwt.admin_group && user.aud == a.settings.jwt.aud;
    if input.app_metadata.is_some() && !is_admin {
        return Err(AuthError::forbidden(ErrorCode::NotAdmin, "Updating app_metadata requires admin privileges"));
    }
    let new_hash = match input.password.as_ref().filter(|p| !p.expose().is_empty()) {
        None => None,
        Some(password) => {
            validate::new_password(&a.settings.password, password)?;
            if user.is_anonymous && user.email.is_empty() && user.phone.is_empty() {
                return Err(AuthError::unprocessable(
                    ErrorCode::ValidationFailed,
                    "Updating password of an anonymous user without an email or phone is not allowed",
                ));
            }
            if a.settings.security.update_password_require_reauthentication {
                let fresh =
                    auth.session.as_ref().is_some_and(|s| a.clock.now() < s.created_at.plus(REAUTH_FREE_WINDOW));
                if !fresh {
                    match input.nonce.as_deref().filter(|n| !n.is_empty()) {
                        None => {
                            return Err(AuthError::bad_request(
                                ErrorCode::ReauthenticationNeeded,
                                "Password update requires reauthentication",
                            ))
                        }
                        Some(nonce) => consume_nonce(a, &auth, nonce).await?,
                    }
                }
            }
            if let Some(stored) = &user.encrypted_password {
                if a.hasher.verify(password, stored).await? != PasswordCheck::Mismatch {
                    return Err(AuthError::unprocessable(
                        ErrorCode::SamePassword,
                        "New password should be different from the old password.",
                    ));
                }
            }
            Some(a.hasher.hash(password).await?)
        }
    };
    let password_changed = new_hash.is_some();
    let (data, app_metadata) = (input.data, input.app_metadata);
    // An anonymous user adding an email under autoconfirm gets it at once (GoTrue).
    let immediate_email = new_email.clone().filter(|_| user.is_anonymous && a.settings.signup.mailer_autoconfirm);
    let now = a.clock.now();
    let updated = a
        .users
        .update(user.id, move |u| {
            if let Some(data) = data {
                u.user_metadata = u.user_metadata.merged(&data);
            }
            if let Some(app) = app_metadata {
                u.app_metadata = u.app_metadata.merged(&app);
            }
            if let Some(hash) = new_hash {
                u.encrypted_password = Some(hash);
            }
            if let Some(email) = immediate_email {
                u.new_email = email;
                super::verify::apply_email_change(u, now)?;
                confirm(u, Channel::Email, now);
            }
            Ok(())
        })
        .await?;
    // Phone change: immediate under SMS autoconfirm, else a code to the new number.
    let updated = match new_phone {
        Some(phone) if a.settings.signup.sms_autoconfirm => {
            let changed = a
                .users
                .update(updated.id, move |u| {
                    u.new_phone = phone;
                    super::verify::apply_phone_change(u, now)
                })
                .await?;
            audit(a, AuditActor::User(&changed), "user_modified", &[]).await?;
            changed
        }
        Some(phone) => {
            super::phone::check_spacing(a, updated.phone_change_sent_at)?;
            super::phone::send_code(a, &updated, super::phone::PhoneCode::PhoneChange, &phone, &sms_channel).await?;
            a.users
                .update(updated.id, move |u| {
                    u.new_phone = phone;
                    u.phone_change_sent_at = Some(now);
                    Ok(())
                })
                .await?
        }
        None => updated,
    };
    let updated = match new_email {
        Some(email) if !(user.is_anonymous && a.settings.signup.mailer_autoconfirm) => {
            send_email_change(a, updated, &email, &input.redirect_to).await?
        }
        _ => updated,
    };
    if password_changed {
        // GoTrue: a password change ends every other session of the user.
        a.sessions.end_user_sessions(updated.id, auth.session.as_ref().map(|s| s.id)).await?;
        audit(a, AuditActor::User(&updated), "user_updated_password", &[]).await?;
    }
    audit(a, AuditActor::User(&updated), "user_modified", &[]).await?;
    Ok(updated)
}

/// Sends the email-change mails (SPEC §6.5): with secure change on and a current address, one
/// code to each address — both needed, except under autoconfirm, where either link alone
/// completes the change (GoTrue's `emailChangeVerify`) but the current address is still told;
/// else one to the new address. Records `new_email`.
pub async fn send_email_change(a: &Actors, user: User, new_email: &str, redirect_to: &str) -> AuthResult<User> {
    check_spacing(a, user.email_change_sent_at)?;
    let secure = a.settings.mail.secure_email_change && !user.email.is_empty();
    let new_link = Link { kind: LinkKind::EmailChangeNew, address: new_email, redirect_to, pkce: None, new_email };
    send_link(a, &user, new_link).await?;
    if secure {
        let current = user.email.clone();
        let link = Link { kind: LinkKind::EmailChangeCurrent, address: &current, redirect_to, pkce: None, new_email };
        send_link(a, &user, link).await?;
    }
    let (now, new_email) = (a.clock.now(), new_email.to_owned());
    let user = a
        .users
        .update(user.id, move |u| {
            u.new_email = new_email;
            u.email_change_sent_at = Some(now);
            Ok(())
        })
        .await?;
    audit(a, AuditActor::User(&user), "user_modified", &[]).await?;
    Ok(user)
}
