//! Flows: one async function per GoTrue operation, composing actor calls. Handlers parse,
//! call one flow, render. Actors never call each other; the order of steps here is chosen so a
//! failure half-way leaves a state the user can recover from.

pub mod admin;
pub mod auth;
pub mod email;
pub mod external;
pub mod invite;
pub mod logout;
pub mod mfa;
pub mod mfa_phone;
pub mod mfa_webauthn;
pub mod otp;
pub mod phone;
pub mod reauthenticate;
pub mod recover;
pub mod resend;
pub mod signup;
pub mod token;
pub mod user;
pub mod validate;
pub mod verify;

use crate::clock::Timestamp;
use crate::error::{AuthError, AuthResult};
use crate::session_manager::model::Session;
use crate::session_manager::state::Issued;
use crate::user_registry::model::User;
use crate::Actors;

/// Where a request came from, recorded on sessions.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub user_agent: String,
    pub ip: String,
}

/// `weak_password` note on a successful password sign-in whose password fails today's policy.
#[derive(Debug, Clone)]
pub struct WeakPasswordNote {
    pub message: String,
    pub reasons: Vec<String>,
}

/// A signed-in session as GoTrue returns it (SPEC §2.2).
#[derive(Debug, Clone)]
pub struct SessionGrant {
    pub access_token: String,
    pub expires_in: i64,
    pub expires_at: i64,
    pub refresh_token: String,
    pub user: User,
    pub weak_password: Option<WeakPasswordNote>,
    /// The external provider's access token (OAuth sign-ins only).
    pub provider_token: Option<String>,
    /// The external provider's refresh token, when it issued one.
    pub provider_refresh_token: Option<String>,
}

/// Mints the access token for `session` and packages the grant. `authentication_method` is
/// what the `custom_access_token` hook hears (GoTrue's names: `password`, `otp`, `oauth`,
/// `token_refresh`, `anonymous`, ...); with the hook on, its claims are the ones signed.
pub async fn grant(
    a: &Actors,
    user: User,
    session: &Session,
    refresh_token: String,
    authentication_method: &str,
) -> AuthResult<SessionGrant> {
    let now = a.clock.now();
    let claims = a.jwt.claims_for(&user, session, now);
    let exp = claims.exp;
    let access_token = if a.settings.hooks.custom_access_token.is_some() {
        let value = serde_json::to_value(&claims).map_err(|e| AuthError::unexpected(format!("claims: {e}")))?;
        let custom =
            crate::hooks::custom_access_token(&a.settings.hooks, user.id, value, authentication_method).await?;
        a.jwt.sign(&custom)?
    } else {
        a.jwt.sign(&claims)?
    };
    Ok(SessionGrant {
        access_token,
        expires_in: exp - now.unix_seconds(),
        expires_at: exp,
        refresh_token,
        user,
        weak_password: None,
        provider_token: None,
        provider_refresh_token: None,
    })
}

/// Starts a session for `user` (signed in by `method`), stamps `last_sign_in_at`, and grants it.
pub async fn sign_in(a: &Actors, user: User, method: &str, meta: &RequestMeta) -> AuthResult<SessionGrant> {
    let Issued { session, refresh_token } =
        a.sessions.create(user.id, method, meta.user_agent.clone(), meta.ip.clone()).await?;
    let now = a.clock.now();
    // OAuth sign-ins stamp their own identity (flows::external).
    let provider = if method == "oauth" { None } else { method_provider(&user) };
    let user = a
        .users
        .update(user.id, move |u| {
            u.last_sign_in_at = Some(now);
            if let Some(identity) = u.identities.iter_mut().find(|i| Some(i.provider.as_str()) == provider.as_deref()) {
                identity.last_sign_in_at = Some(now);
            }
            Ok(())
        })
        .await?;
    audit(a, AuditActor::User(&user), "login", &[("provider", method)]).await?;
    grant(a, user, &session, refresh_token, method).await
}

/// Saves a new user: every path that creates users (signup, OTP, OAuth, invite, admin,
/// anonymous) goes through here so the `before_user_created` hook can refuse it (nothing is
/// written then) and `after_user_created` hears about it once it is durable.
pub async fn create_user(a: &Actors, user: User) -> AuthResult<User> {
    crate::hooks::before_user_created(&a.settings.hooks, &user).await?;
    let user = a.users.create(user).await?;
    if a.settings.hooks.after_user_created.is_some() {
        a.durable().await?;
        crate::hooks::after_user_created(&a.settings.hooks, &user).await?;
    }
    Ok(user)
}

/// The identity a password sign-in used: email if the user has one, else phone.
fn method_provider(user: &User) -> Option<String> {
    if !user.email.is_empty() {
        Some("email".into())
    } else if !user.phone.is_empty() {
        Some("phone".into())
    } else {
        None
    }
}

/// Who performed an audited action.
#[derive(Debug, Clone, Copy)]
pub enum AuditActor<'a> {
    User(&'a User),
    /// An admin token: GoTrue records a synthetic actor (nil id, the role as username).
    Admin(&'a str),
}

/// Records an audit event (SPEC §10): persisted in the audit log before the response, and
/// logged as GoTrue's `auth_audit_event` line.
pub async fn audit(a: &Actors, actor: AuditActor<'_>, action: &str, traits: &[(&str, &str)]) -> AuthResult<()> {
    use crate::user_registry::model::{AuditEntry, JsonText};
    // Sign-ins, sign-ups, refreshes, logouts, … by what they were and how (the provider).
    let method = traits.iter().find(|(k, _)| *k == "provider").map_or("", |(_, v)| *v).to_owned();
    metrics::counter!("ferrotrue_auth_events_total", "action" => action.to_owned(), "method" => method).increment(1);
    let (actor_id, username, name) = match actor {
        AuditActor::User(u) => {
            let username = if u.phone.is_empty() { u.email.clone() } else { u.phone.clone() };
            // Parsing the metadata costs more than the rest of the entry: only when it can match.
            let name = if u.user_metadata.0.contains("full_name") {
                u.user_metadata.to_map().get("full_name").and_then(|v| v.as_str()).map(str::to_owned)
            } else {
                None
            };
            (u.id, username, name)
        }
        AuditActor::Admin(role) => (uuid::Uuid::nil(), role.to_owned(), None),
    };
    let mut payload = serde_json::json!({
        "actor_id": actor_id.to_string(),
        "actor_username": username,
        "actor_via_sso": false,
        "action": action,
        "log_type": AuditEntry::log_type(action),
    });
    if let (Some(name), Some(map)) = (name, payload.as_object_mut()) {
        map.insert("actor_name".into(), serde_json::json!(name));
    }
    if !traits.is_empty() {
        let traits: serde_json::Map<String, serde_json::Value> =
            traits.iter().map(|(k, v)| ((*k).to_owned(), serde_json::json!(v))).collect();
        if let Some(map) = payload.as_object_mut() {
            map.insert("traits".into(), serde_json::Value::Object(traits));
        }
    }
    tracing::info!(target: "auth_audit_event", action, actor_id = %actor_id, actor_username = ?username, "audit");
    a.users
        .record_audit(AuditEntry {
            id: uuid::Builder::from_random_bytes(crate::crypto::random_bytes::<16>()).into_uuid(),
            seq: 0,
            payload: JsonText(payload.to_string()),
            created_at: a.clock.now(),
            ip_address: String::new(),
        })
        .await
}

/// `now` as the flows see it.
pub fn now(a: &Actors) -> Timestamp {
    a.clock.now()
}
