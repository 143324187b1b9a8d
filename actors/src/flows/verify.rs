//! `GET /verify` and `POST /verify` for email tokens. Port of verify.go (SPEC §1.6, §1.7, §6).
//!
//! A token is found either by its link token (links, `token_hash`: random, looked up by keyed
//! MAC) or by the address and code (checked against that address's live tokens; every wrong
//! code counts against them, see [`crate::otp_issuer::MAX_FAILED_ATTEMPTS`]); it is then
//! consumed (single use), its side effects applied, and the caller gets a session — or, for a
//! PKCE token, the flow's auth code; or, for the first half of a secure email change, a message.

use super::email::PKCE_PREFIX;
use super::signup::{confirm, Channel};
use super::{audit, sign_in, validate, AuditActor, RequestMeta, SessionGrant};
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::otp_issuer::{CodeTarget, OneTimeToken};
use crate::user_registry::model::{Identity, JsonText, User};
use crate::Actors;
use serde_json::{json, Value};

/// GoTrue's message for the first half of a secure email change.
pub const EMAIL_CHANGE_HALF_MSG: &str =
    "Confirmation link accepted. Please proceed to confirm link sent to the other email";

/// The verification types of `/verify` (SPEC §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyType {
    Signup,
    Invite,
    MagicLink,
    Recovery,
    EmailChange,
    Email,
    Sms,
    PhoneChange,
}

impl VerifyType {
    /// Parses `type`; anything else is 400 `validation_failed`.
    pub fn parse(raw: &str) -> AuthResult<VerifyType> {
        Ok(match raw {
            "signup" => VerifyType::Signup,
            "invite" => VerifyType::Invite,
            "magiclink" => VerifyType::MagicLink,
            "recovery" => VerifyType::Recovery,
            "email_change" => VerifyType::EmailChange,
            "email" => VerifyType::Email,
            "sms" => VerifyType::Sms,
            "phone_change" => VerifyType::PhoneChange,
            "" => return Err(AuthError::validation("Verify requires a verification type")),
            other => return Err(AuthError::validation(format!("Unsupported verification type {other:?}"))),
        })
    }
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyType::Signup => "signup",
            VerifyType::Invite => "invite",
            VerifyType::MagicLink => "magiclink",
            VerifyType::Recovery => "recovery",
            VerifyType::EmailChange => "email_change",
            VerifyType::Email => "email",
            VerifyType::Sms => "sms",
            VerifyType::PhoneChange => "phone_change",
        }
    }
    fn token_types(self) -> &'static [&'static str] {
        match self {
            VerifyType::Signup | VerifyType::Invite => &["confirmation_token"],
            VerifyType::MagicLink | VerifyType::Recovery => &["recovery_token"],
            VerifyType::Email => &["confirmation_token", "recovery_token"],
            VerifyType::EmailChange => &["email_change_token_current", "email_change_token_new"],
            VerifyType::Sms => &["confirmation_token"],
            VerifyType::PhoneChange => &["phone_change_token"],
        }
    }
}

/// How the token is presented.
#[derive(Debug, Clone)]
pub enum Presented {
    /// A link's `token` or a `token_hash` (possibly `pkce_`-prefixed).
    Hash(String),
    /// A typed-in code with the address it was sent to.
    Code { email: String, phone: String, code: String },
}

/// What a successful verification yields.
#[derive(Debug)]
pub enum Verified {
    /// A session; `kind` is the effective type (`email` resolves to `signup` or `magiclink`).
    Session { grant: Box<SessionGrant>, kind: &'static str },
    /// A PKCE token: the client exchanges this auth code at `POST /token?grant_type=pkce`.
    PkceCode(String),
    /// First of the two confirmations of a secure email change.
    EmailChangeHalfDone,
}

/// True when the presented hash belongs to a PKCE flow.
pub fn is_pkce(presented: &Presented) -> bool {
    matches!(presented, Presented::Hash(h) if h.starts_with(PKCE_PREFIX))
}

fn link_expired() -> AuthError {
    AuthError::forbidden(ErrorCode::OtpExpired, "Email link is invalid or has expired")
}

fn code_expired() -> AuthError {
    AuthError::forbidden(ErrorCode::OtpExpired, "Token has expired or is invalid")
}

/// Finds the token without consuming it (so a refused verification, e.g. of a banned user,
/// leaves it usable).
async fn find_token(a: &Actors, vtype: VerifyType, presented: &Presented) -> AuthResult<OneTimeToken> {
    let types = vtype.token_types();
    match presented {
        Presented::Hash(hash) => match a.otps.peek(hash).await? {
            Some(token) if types.contains(&token.token_type.as_str()) => Ok(token),
            _ => Err(link_expired()),
        },
        Presented::Code { email, phone, code } => {
            let is_phone = matches!(vtype, VerifyType::Sms | VerifyType::PhoneChange);
            let email = if is_phone {
                if phone.is_empty() {
                    return Err(AuthError::validation("Phone number is required to verify an SMS code"));
                }
                validate::phone(phone)?
            } else {
                if email.is_empty() {
                    return Err(AuthError::validation("Email is required to verify an email code"));
                }
                validate::email(email)
                    .map_err(|_| AuthError::unprocessable(ErrorCode::ValidationFailed, "Invalid email format"))?
            };
            // Per target: a wrong code counts against this address's live tokens of these
            // types (an email change's new address has no user yet, so not per user).
            match a.otps.check_code(CodeTarget::Address(email), code, types).await? {
                Some(token) => Ok(token),
                None => Err(code_expired()),
            }
        }
    }
}

/// Verifies a token and applies its effects (SPEC §1.7 side effects). `by_link` is true for
/// `GET /verify`: only a clicked PKCE link yields an auth code; `POST /verify` always yields a
/// session (GoTrue's `verifyPost`).
pub async fn verify(
    a: &Actors,
    vtype: VerifyType,
    presented: Presented,
    by_link: bool,
    meta: &RequestMeta,
) -> AuthResult<Verified> {
    let found = find_token(a, vtype, &presented).await?;
    let user = a.users.get(found.user_id).await?.ok_or_else(link_expired)?;
    if user.is_banned(a.clock.now()) {
        return Err(AuthError::forbidden(ErrorCode::UserBanned, "User is banned"));
    }
    let expired = if matches!(presented, Presented::Hash(_)) { link_expired } else { code_expired };
    let token = a.otps.consume(found.id, vtype.token_types()).await.map_err(|_| expired())?;
    let kind = effective_type(vtype, &token);
    let now = a.clock.now();
    let user = match token.token_type.as_str() {
        "email_change_token_current" | "email_change_token_new" => {
            let other = if token.token_type == "email_change_token_current" {
                "email_change_token_new"
            } else {
                "email_change_token_current"
            };
            // Under autoconfirm one confirmation completes the change (GoTrue); the other
            // address's token is cleared with the rest below.
            if !a.settings.signup.mailer_autoconfirm && !a.otps.for_user(user.id, &[other]).await?.is_empty() {
                return Ok(Verified::EmailChangeHalfDone);
            }
            let changed = a.users.update(user.id, move |u| apply_email_change(u, now)).await?;
            audit(a, AuditActor::User(&changed), "user_modified", &[]).await?;
            changed
        }
        "phone_change_token" => {
            let changed = a.users.update(user.id, move |u| apply_phone_change(u, now)).await?;
            audit(a, AuditActor::User(&changed), "user_modified", &[]).await?;
            changed
        }
        "confirmation_token" if !token.relates_to.contains('@') => {
            let confirmed = a
                .users
                .update(user.id, move |u| {
                    confirm(u, Channel::Phone, now);
                    u.confirmation_sent_at = None;
                    u.is_anonymous = false;
                    Ok(())
                })
                .await?;
            audit(a, AuditActor::User(&confirmed), "user_signedup", &[("provider", "phone")]).await?;
            confirmed
        }
        "recovery_token" => {
            a.users
                .update(user.id, move |u| {
                    u.recovery_sent_at = None;
                    if u.email_confirmed_at.is_none() {
                        confirm(u, Channel::Email, now);
                    }
                    u.is_anonymous = false;
                    Ok(())
                })
                .await?
        }
        _ => {
            let invited = user.invited_at.is_some() && user.email_confirmed_at.is_none();
            let confirmed = a
                .users
                .update(user.id, move |u| {
                    confirm(u, Channel::Email, now);
                    u.confirmation_sent_at = None;
                    u.is_anonymous = false;
                    Ok(())
                })
                .await?;
            audit(a, AuditActor::User(&confirmed), if invited { "invite_accepted" } else { "user_signedup" }, &[])
                .await?;
            confirmed
        }
    };
    // Any successful confirmation clears every outstanding token of the user (GoTrue).
    a.otps.clear_user(user.id).await?;
    if by_link && token.pkce && is_pkce(&presented) {
        let methods: &[&str] = match token.token_type.as_str() {
            "recovery_token" => &["magiclink", "recovery"],
            "confirmation_token" => &["email/signup", "invite"],
            _ => &["email_change"],
        };
        return Ok(Verified::PkceCode(a.oauth.code_for_user(user.id, methods).await?));
    }
    Ok(Verified::Session { grant: Box::new(sign_in(a, user, "otp", meta).await?), kind })
}

/// GoTrue reports `type=email` as what the token turned out to be.
fn effective_type(vtype: VerifyType, token: &OneTimeToken) -> &'static str {
    match (vtype, token.token_type.as_str()) {
        (VerifyType::Email, "recovery_token") => "magiclink",
        (VerifyType::Email, _) => "signup",
        (other, _) => other.as_str(),
    }
}

/// Moves `new_email` into `email`, confirms it, and points the email identity at it.
pub(crate) fn apply_email_change(u: &mut User, now: crate::clock::Timestamp) -> AuthResult<()> {
    if u.new_email.is_empty() {
        return Err(link_expired());
    }
    u.email = std::mem::take(&mut u.new_email);
    u.email_change_sent_at = None;
    u.email_confirmed_at = Some(now);
    u.is_anonymous = false;
    let mut meta = u.user_metadata.to_map();
    meta.insert("email".into(), json!(u.email));
    meta.insert("email_verified".into(), json!(true));
    u.user_metadata = JsonText::from_map(&meta);
    let email = u.email.clone();
    match u.identities.iter_mut().find(|i| i.provider == "email") {
        Some(identity) => {
            let mut data = identity.identity_data.to_map();
            data.insert("email".into(), json!(email));
            data.insert("email_verified".into(), json!(true));
            identity.identity_data = JsonText::from_map(&data);
            identity.email = email;
            identity.updated_at = now;
        }
        None => u.identities.push(Identity::for_address(u.id, "email", &email, true, now)),
    }
    refresh_providers(u);
    Ok(())
}

/// Moves `new_phone` into `phone`, confirms it, and points (or adds) the phone identity.
pub(crate) fn apply_phone_change(u: &mut User, now: crate::clock::Timestamp) -> AuthResult<()> {
    if u.new_phone.is_empty() {
        return Err(code_expired());
    }
    u.phone = std::mem::take(&mut u.new_phone);
    u.phone_change_sent_at = None;
    u.phone_confirmed_at = Some(now);
    u.is_anonymous = false;
    let phone = u.phone.clone();
    match u.identities.iter_mut().find(|i| i.provider == "phone") {
        Some(identity) => {
            let mut data = identity.identity_data.to_map();
            data.insert("phone".into(), json!(phone));
            data.insert("phone_verified".into(), json!(true));
            identity.identity_data = JsonText::from_map(&data);
            identity.updated_at = now;
        }
        None => u.identities.push(Identity::for_address(u.id, "phone", &phone, true, now)),
    }
    let mut meta = u.user_metadata.to_map();
    meta.insert("phone_verified".into(), json!(true));
    u.user_metadata = JsonText::from_map(&meta);
    refresh_providers(u);
    Ok(())
}

/// `app_metadata.provider(s)` from the user's identities.
pub fn refresh_providers(u: &mut User) {
    let mut providers: Vec<String> = Vec::new();
    for i in &u.identities {
        if !providers.contains(&i.provider) {
            providers.push(i.provider.clone());
        }
    }
    if providers.is_empty() {
        return;
    }
    let mut app = u.app_metadata.to_map();
    if !app.contains_key("provider") {
        app.insert("provider".into(), json!(providers[0]));
    }
    app.insert("providers".into(), Value::from(providers));
    u.app_metadata = JsonText::from_map(&app);
}
