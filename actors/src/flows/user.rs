//! `GET /user` and `PUT /user`. Port of user.go `UserGet` / `UserUpdate` for metadata and
//! password changes (email and phone changes need the email and phone issues).

use super::audit;
use super::auth::Authenticated;
use super::validate;
use crate::crypto::{PasswordCheck, Secret};
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::user_registry::model::{JsonText, User};
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
}

/// `GET /user`: the caller, after the audience check.
pub fn get(auth: Authenticated, request_aud: &str) -> AuthResult<User> {
    if let Some(aud) = auth.claims.audience() {
        if aud != request_aud {
            return Err(AuthError::validation("Token audience doesn't match request audience"));
        }
    }
    Ok(auth.user)
}

/// Merges `patch` into `target`; a `null` value deletes the key (GoTrue's metadata update).
fn merge(target: &JsonText, patch: Map<String, Value>) -> JsonText {
    let mut map = target.to_map();
    for (k, v) in patch {
        if v.is_null() {
            map.remove(&k);
        } else {
            map.insert(k, v);
        }
    }
    JsonText::from_map(&map)
}

/// `PUT /user`.
pub async fn update(a: &Actors, auth: Authenticated, input: UserUpdate) -> AuthResult<User> {
    let user = auth.user;
    // Email / phone: unchanged values are accepted; real changes need confirmation delivery.
    if let Some(email) = input.email.as_deref().filter(|e| !e.is_empty()) {
        let email = validate::email(email)?;
        if email != user.email {
            return Err(AuthError::unprocessable(
                ErrorCode::ValidationFailed,
                "Changing the email address needs confirmation by email, which this server does not offer yet",
            ));
        }
    }
    if let Some(phone) = input.phone.as_deref().filter(|p| !p.is_empty()) {
        let phone = validate::phone(phone)?;
        if phone != user.phone {
            return Err(AuthError::unprocessable(
                ErrorCode::ValidationFailed,
                "Changing the phone number needs confirmation by SMS, which this server does not offer yet",
            ));
        }
    }
    if input.app_metadata.is_some() && auth.claims.role.as_deref() != Some(a.settings.jwt.admin_group.as_str()) {
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
    let updated = a
        .users
        .update(user.id, move |u| {
            if let Some(data) = data {
                u.user_metadata = merge(&u.user_metadata, data);
            }
            if let Some(app) = app_metadata {
                u.app_metadata = merge(&u.app_metadata, app);
            }
            if let Some(hash) = new_hash {
                u.encrypted_password = Some(hash);
            }
            Ok(())
        })
        .await?;
    if password_changed {
        // GoTrue: a password change ends every other session of the user.
        a.sessions.end_user_sessions(updated.id, auth.session.as_ref().map(|s| s.id)).await?;
        audit("user_updated_password", &updated, &[]);
    }
    audit("user_modified", &updated, &[]);
    Ok(updated)
}
