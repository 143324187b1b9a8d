//! The admin API's operations: create, update, delete, list users; generate links; read the
//! audit log. Port of admin.go and admin_generate_link (SPEC §1.18, §1.19, §10).

use super::email::{issue_link, IssuedLink, Link, LinkKind};
use super::signup::{confirm, new_user, Channel};
use super::verify::refresh_providers;
use super::{audit, validate, AuditActor};
use crate::clock::parse_go_duration;
use crate::crypto::{check_imported_hash, Secret};
use crate::error::{AuthError, AuthResult, ErrorCode, DUPLICATE_EMAIL_MSG};
use crate::user_registry::model::{AuditEntry, Identity, JsonText, User};
use crate::user_registry::state::{AuditQuery, Page};
use crate::Actors;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// `POST/PUT /admin/users[/{id}]` body (absent = unchanged / default).
#[derive(Debug, Clone, Default)]
pub struct AdminUserParams {
    pub id: Option<Uuid>,
    pub aud: Option<String>,
    pub role: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub password: Option<Secret>,
    pub password_hash: Option<String>,
    pub email_confirm: Option<bool>,
    pub phone_confirm: Option<bool>,
    pub user_metadata: Option<Map<String, Value>>,
    pub app_metadata: Option<Map<String, Value>>,
    pub ban_duration: Option<String>,
}

/// GoTrue's traits for an admin action on a user.
fn user_traits<'a>(id: &'a str, user: &'a User) -> [(&'static str, &'a str); 3] {
    [("user_id", id), ("user_email", &user.email), ("user_phone", &user.phone)]
}

fn user_not_found() -> AuthError {
    AuthError::not_found(ErrorCode::UserNotFound, "User not found")
}

/// A user by id, 404 `user_not_found` if absent.
pub async fn get_user(a: &Actors, id: Uuid) -> AuthResult<User> {
    a.users.get(id).await?.ok_or_else(user_not_found)
}

/// `ban_duration`: `none` lifts a ban, a Go duration sets one from now.
fn banned_until(a: &Actors, raw: &str) -> AuthResult<Option<crate::clock::Timestamp>> {
    if raw == "none" {
        return Ok(None);
    }
    let d = parse_go_duration(raw)
        .ok_or_else(|| AuthError::validation(format!("invalid format for ban duration: {raw:?}")))?;
    Ok(Some(a.clock.now().plus(d)))
}

/// Hash for a new password (strength-checked) or an imported hash (format-checked).
/// On update an empty `password` is checked (and refused) like any other, as GoTrue does; on
/// create it means "no password".
async fn password_hash(a: &Actors, p: &AdminUserParams, updating: bool) -> AuthResult<Option<String>> {
    let password = p.password.as_ref().filter(|s| updating || !s.expose().is_empty());
    match (password, p.password_hash.as_deref().filter(|h| !h.is_empty())) {
        (Some(_), Some(_)) => Err(AuthError::validation("Only a password or a password hash should be provided")),
        (Some(password), None) => {
            validate::new_password(&a.settings.password, password)?;
            Ok(Some(a.hasher.hash(password).await?))
        }
        (None, Some(hash)) => {
            check_imported_hash(hash)?;
            Ok(Some(hash.to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// `POST /admin/users`. Ignores `DISABLE_SIGNUP`.
pub async fn create_user(a: &Actors, admin_role: &str, p: AdminUserParams, aud: &str) -> AuthResult<User> {
    let email = p.email.as_deref().filter(|e| !e.is_empty()).map(validate::email).transpose()?;
    let phone = p.phone.as_deref().filter(|e| !e.is_empty()).map(validate::phone).transpose()?;
    if email.is_none() && phone.is_none() {
        return Err(AuthError::validation("Cannot create a user without either an email or phone"));
    }
    if p.id.is_some_and(|id| id.is_nil()) {
        return Err(AuthError::validation("user id must not be the nil UUID"));
    }
    if let Some(email) = &email {
        if a.users.by_email(email).await?.is_some() {
            return Err(AuthError::unprocessable(ErrorCode::EmailExists, DUPLICATE_EMAIL_MSG));
        }
    }
    if let Some(phone) = &phone {
        if a.users.by_phone(phone).await?.is_some() {
            return Err(AuthError::unprocessable(
                ErrorCode::PhoneExists,
                "Phone number already registered by another user",
            ));
        }
    }
    let hash = password_hash(a, &p, false).await?;
    let banned = p.ban_duration.as_deref().map(|d| banned_until(a, d)).transpose()?.flatten();
    let now = a.clock.now();
    let aud = p.aud.clone().filter(|x| !x.is_empty()).unwrap_or_else(|| aud.to_owned());
    let mut user = match &email {
        Some(email) => new_user(a, Channel::Email, email, hash, Map::new(), &aud, false),
        None => new_user(a, Channel::Phone, phone.as_deref().unwrap_or_default(), hash, Map::new(), &aud, false),
    };
    if let Some(id) = p.id {
        user.id = id;
        for identity in &mut user.identities {
            identity.provider_id = id.to_string();
            let mut data = identity.identity_data.to_map();
            data.insert("sub".into(), json!(id.to_string()));
            identity.identity_data = JsonText::from_map(&data);
        }
    }
    user.confirmation_sent_at = None;
    if let (Some(_), Some(phone)) = (&email, &phone) {
        user.phone = phone.clone();
        let identity = Identity::for_address(user.id, "phone", phone, false, now);
        user.identities.push(identity);
    }
    if p.email_confirm == Some(true) && email.is_some() {
        confirm(&mut user, Channel::Email, now);
    }
    if p.phone_confirm == Some(true) && phone.is_some() {
        confirm(&mut user, Channel::Phone, now);
    }
    // Admin-created users keep the metadata they were given; like GoTrue's `User.Confirm`, an
    // email confirmation adds `email_verified: true` (a phone confirmation adds nothing).
    let mut meta = p.user_metadata.clone().unwrap_or_default();
    if user.email_confirmed_at.is_some() {
        meta.insert("email_verified".into(), json!(true));
    }
    user.user_metadata = JsonText::from_map(&meta);
    refresh_providers(&mut user);
    if let Some(app) = &p.app_metadata {
        user.app_metadata = user.app_metadata.merged(app);
    }
    if let Some(role) = p.role.clone().filter(|r| !r.is_empty()) {
        user.role = role;
    }
    user.banned_until = banned;
    let user = crate::flows::create_user(a, user).await?;
    let id = user.id.to_string();
    let [t1, t2, t3] = user_traits(&id, &user);
    let provider = if user.email.is_empty() { "phone" } else { "email" };
    audit(a, AuditActor::Admin(admin_role), "user_signedup", &[t1, t2, t3, ("provider", provider)]).await?;
    Ok(user)
}

/// `PUT /admin/users/{id}`: merges metadata, changes addresses and confirmations, bans; a new
/// password signs the user out everywhere.
pub async fn update_user(a: &Actors, admin_role: &str, id: Uuid, p: AdminUserParams) -> AuthResult<User> {
    let current = get_user(a, id).await?;
    let email = p.email.as_deref().filter(|e| !e.is_empty()).map(validate::email).transpose()?;
    let phone = p.phone.as_deref().filter(|e| !e.is_empty()).map(validate::phone).transpose()?;
    let hash = password_hash(a, &p, true).await?;
    let ban = p.ban_duration.as_deref().map(|d| banned_until(a, d)).transpose()?;
    let now = a.clock.now();
    let password_changed = hash.is_some();
    let params = p.clone();
    let updated = a
        .users
        .update(id, move |u| {
            if let Some(email) = email.filter(|e| *e != u.email) {
                u.email = email.clone();
                match u.identities.iter_mut().find(|i| i.provider == "email") {
                    Some(identity) => {
                        let mut data = identity.identity_data.to_map();
                        data.insert("email".into(), json!(email));
                        identity.identity_data = JsonText::from_map(&data);
                        identity.email = email;
                        identity.updated_at = now;
                    }
                    None => u.identities.push(Identity::for_address(u.id, "email", &email, false, now)),
                }
            }
            if let Some(phone) = phone.filter(|ph| *ph != u.phone) {
                u.phone = phone.clone();
                match u.identities.iter_mut().find(|i| i.provider == "phone") {
                    Some(identity) => {
                        let mut data = identity.identity_data.to_map();
                        data.insert("phone".into(), json!(phone));
                        identity.identity_data = JsonText::from_map(&data);
                        identity.updated_at = now;
                    }
                    None => {
                        let identity = Identity::for_address(u.id, "phone", &phone, false, now);
                        u.identities.push(identity);
                    }
                }
            }
            // GoTrue acts on `true` only; `false` leaves confirmations as they are.
            if params.email_confirm == Some(true) && u.email_confirmed_at.is_none() && !u.email.is_empty() {
                confirm(u, Channel::Email, now);
                u.is_anonymous = false;
            }
            if params.phone_confirm == Some(true) && u.phone_confirmed_at.is_none() && !u.phone.is_empty() {
                let meta = u.user_metadata.clone();
                confirm(u, Channel::Phone, now);
                u.user_metadata = meta; // a phone confirmation leaves user_metadata alone
                u.is_anonymous = false;
            }
            if let Some(hash) = hash {
                u.encrypted_password = Some(hash);
            }
            if let Some(meta) = &params.user_metadata {
                u.user_metadata = u.user_metadata.merged(meta);
            }
            if let Some(app) = &params.app_metadata {
                u.app_metadata = u.app_metadata.merged(app);
            }
            if let Some(role) = params.role.clone().filter(|r| !r.is_empty()) {
                u.role = role;
            }
            if let Some(aud) = params.aud.clone().filter(|x| !x.is_empty()) {
                u.aud = aud;
            }
            if let Some(ban) = ban {
                u.banned_until = ban;
            }
            refresh_providers(u);
            Ok(())
        })
        .await?;
    if password_changed {
        a.sessions.end_user_sessions(id, None).await?;
    }
    let uid = current.id.to_string();
    audit(a, AuditActor::Admin(admin_role), "user_modified", &user_traits(&uid, &updated)).await?;
    Ok(updated)
}

/// `DELETE /admin/users/{id}`: ends every session and token at once, then deletes (or, soft,
/// anonymises and marks deleted).
pub async fn delete_user(a: &Actors, admin_role: &str, id: Uuid, soft: bool) -> AuthResult<()> {
    let user = get_user(a, id).await?;
    a.sessions.end_user_sessions(id, None).await?;
    a.otps.clear_user(id).await?;
    if soft {
        let now = a.clock.now();
        a.users
            .update(id, move |u| {
                let tag = hex::encode(crate::crypto::sha256(format!("{}{}", u.id, u.email).as_bytes()));
                if !u.email.is_empty() {
                    u.email = format!("deleted-{}@deleted.invalid", &tag[..16]);
                }
                if !u.phone.is_empty() {
                    u.phone = String::new();
                }
                u.encrypted_password = None;
                u.user_metadata = JsonText::empty();
                u.identities.clear();
                u.new_email.clear();
                u.deleted_at = Some(now);
                Ok(())
            })
            .await?;
        // GoTrue's soft delete removes the user's MFA factors too.
        a.users
            .edit_factors(id, |factors| {
                factors.clear();
                Ok(None)
            })
            .await?;
    } else {
        a.users.delete(id).await?;
    }
    let uid = user.id.to_string();
    audit(a, AuditActor::Admin(admin_role), "user_deleted", &user_traits(&uid, &user)).await
}

/// `DELETE /admin/users/{id}/sessions` (ferrotrue's; GoTrue has no admin door for it): ends
/// every session and refresh token of the user at once — after a stolen device or a leaked
/// token — without deleting or banning the user. Access tokens already issued stay valid until
/// they expire (`GOTRUE_JWT_EXP`), as with every logout.
pub async fn revoke_sessions(a: &Actors, admin_role: &str, id: Uuid) -> AuthResult<()> {
    let user = get_user(a, id).await?;
    a.sessions.end_user_sessions(id, None).await?;
    let uid = user.id.to_string();
    audit(a, AuditActor::Admin(admin_role), "logout", &user_traits(&uid, &user)).await
}

/// `GET /admin/users`.
pub async fn list_users(
    a: &Actors,
    page: usize,
    per_page: usize,
    filter: Option<String>,
    ascending: bool,
) -> AuthResult<Page<User>> {
    a.users.list(page, per_page, filter, ascending).await
}

/// `GET /admin/audit`: `query` is `<scope>:<text>` with scope author, action or type.
pub async fn audit_log(a: &Actors, page: usize, per_page: usize, query: Option<&str>) -> AuthResult<Page<AuditEntry>> {
    let query = match query.filter(|q| !q.is_empty()) {
        None => None,
        Some(q) => {
            let (scope, text) = q.split_once(':').ok_or_else(|| {
                AuthError::validation(format!("Invalid query scope: {q} (use author:, action: or type:)"))
            })?;
            let text = text.trim().to_lowercase();
            Some(match scope.trim() {
                "author" => AuditQuery::Author(text),
                "action" => AuditQuery::Action(text),
                "type" => AuditQuery::Type(text),
                other => return Err(AuthError::validation(format!("Invalid query scope: {other}"))),
            })
        }
    };
    a.users.audit_page(page, per_page, query).await
}

/// `POST /admin/generate_link` input.
#[derive(Debug, Clone, Default)]
pub struct GenerateLinkInput {
    pub kind: String,
    pub email: String,
    pub new_email: String,
    pub password: Option<Secret>,
    pub data: Map<String, Value>,
    pub redirect_to: String,
    pub aud: String,
}

/// What `generate_link` returns: the user and the link it would have mailed.
#[derive(Debug)]
pub struct GeneratedLink {
    pub user: User,
    pub link: IssuedLink,
    pub verification_type: &'static str,
    pub redirect_to: String,
}

/// `POST /admin/generate_link`: issues the token exactly as the mail flow would, sends nothing.
pub async fn generate_link(a: &Actors, admin_role: &str, input: GenerateLinkInput) -> AuthResult<GeneratedLink> {
    let kind = match input.kind.as_str() {
        "signup" => LinkKind::Signup,
        "invite" => LinkKind::Invite,
        "magiclink" => LinkKind::MagicLink,
        "recovery" => LinkKind::Recovery,
        "email_change_current" => LinkKind::EmailChangeCurrent,
        "email_change_new" => LinkKind::EmailChangeNew,
        other => return Err(AuthError::validation(format!("Invalid link type {other:?}"))),
    };
    let email = validate::email(&input.email)?;
    let existing = a.users.by_email(&email).await?;
    let (kind, user) = match (kind, existing) {
        (LinkKind::Signup | LinkKind::Invite, Some(u)) if u.email_confirmed_at.is_some() => {
            return Err(AuthError::unprocessable(ErrorCode::EmailExists, DUPLICATE_EMAIL_MSG));
        }
        (LinkKind::Signup | LinkKind::Invite | LinkKind::MagicLink, None) => {
            // A magic link for an unknown address silently becomes a sign-up (GoTrue).
            let converted = kind == LinkKind::MagicLink;
            let kind = if converted { LinkKind::Signup } else { kind };
            let hash = match input.password.as_ref().filter(|p| !p.expose().is_empty()) {
                Some(p) => {
                    validate::new_password(&a.settings.password, p)?;
                    Some(a.hasher.hash(p).await?)
                }
                // GoTrue validates a signup link like a sign-up (a magic link turned sign-up
                // gets a random password nobody knows, i.e. none).
                None if kind == LinkKind::Signup && !converted => {
                    return Err(AuthError::validation("Signup requires a valid password"));
                }
                None => None,
            };
            let mut user = new_user(a, Channel::Email, &email, hash, input.data.clone(), &input.aud, false);
            user.confirmation_sent_at = None;
            if kind == LinkKind::Invite {
                user.invited_at = Some(a.clock.now());
            }
            let user = crate::flows::create_user(a, user).await?;
            let id = user.id.to_string();
            let action = if kind == LinkKind::Invite { "user_invited" } else { "user_signedup" };
            audit(a, AuditActor::Admin(admin_role), action, &[("user_id", &id), ("user_email", &email)]).await?;
            (kind, user)
        }
        (_, None) => return Err(user_not_found()),
        (kind, Some(u)) => (kind, u),
    };
    let (address, new_email) = match kind {
        LinkKind::EmailChangeCurrent | LinkKind::EmailChangeNew => {
            if kind == LinkKind::EmailChangeCurrent && !a.settings.mail.secure_email_change {
                return Err(AuthError::validation("email_change_current requires secure email change to be enabled"));
            }
            let new_email = validate::email(&input.new_email)?;
            if a.users.by_email(&new_email).await?.is_some() {
                return Err(AuthError::unprocessable(ErrorCode::EmailExists, DUPLICATE_EMAIL_MSG));
            }
            let address = if kind == LinkKind::EmailChangeCurrent { email.clone() } else { new_email.clone() };
            (address, new_email)
        }
        _ => (email.clone(), String::new()),
    };
    let link = Link { kind, address: &address, redirect_to: &input.redirect_to, pkce: None, new_email: &new_email };
    let issued = issue_link(a, &user, &link).await?;
    let now = a.clock.now();
    let user = a
        .users
        .update(user.id, move |u| {
            match kind {
                LinkKind::Signup | LinkKind::Invite => u.confirmation_sent_at = Some(now),
                LinkKind::MagicLink | LinkKind::Recovery => u.recovery_sent_at = Some(now),
                LinkKind::EmailChangeCurrent | LinkKind::EmailChangeNew => {
                    u.new_email = new_email;
                    u.email_change_sent_at = Some(now);
                }
                LinkKind::Reauthentication => {}
            }
            Ok(())
        })
        .await?;
    // GoTrue answers with the link type as requested (the link itself says `email_change`).
    let verification_type = match kind {
        LinkKind::EmailChangeCurrent => "email_change_current",
        LinkKind::EmailChangeNew => "email_change_new",
        other => other.verify_type(),
    };
    Ok(GeneratedLink { user, link: issued, verification_type, redirect_to: input.redirect_to })
}
