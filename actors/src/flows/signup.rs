//! `POST /signup`. Port of signup.go `Signup` (SPEC §1.2 decision order) and of the anonymous
//! sign-in path (§1.20). Unconfirmed email sign-ups get a confirmation mail (link + code,
//! optionally PKCE); phone confirmation by SMS arrives with the phone issue.

use super::email::{send_spaced, Link, LinkKind, Pkce};
use super::validate;
use super::{audit, sign_in, AuditActor, RequestMeta, SessionGrant};
use crate::crypto::{PasswordCheck, Secret};
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::user_registry::model::{Identity, JsonText, User};
use crate::Actors;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// What a sign-up asks for, already shape-checked by the handler.
#[derive(Debug, Clone, Default)]
pub struct SignupInput {
    pub email: String,
    pub phone: String,
    pub password: Option<Secret>,
    /// Becomes user_metadata (merged into the identity data).
    pub data: Map<String, Value>,
    pub channel: String,
    /// Request audience (`X-JWT-AUD` or `GOTRUE_JWT_AUD`).
    pub aud: String,
    /// Where the confirmation link leads (already checked against the allow list).
    pub redirect_to: String,
    pub pkce: Option<Pkce>,
    pub meta: RequestMeta,
}

/// A session when the user is confirmed now, else the (unconfirmed or obfuscated) user.
#[derive(Debug, Clone)]
pub enum SignupOutcome {
    Session(Box<SessionGrant>),
    User(Box<User>),
}

/// Which address a sign-up or confirmation is about.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    Email,
    Phone,
}

/// `POST /signup`.
pub async fn signup(a: &Actors, input: SignupInput) -> AuthResult<SignupOutcome> {
    let policy = &a.settings.signup;
    if input.email.is_empty() && input.phone.is_empty() {
        return anonymous(a, input).await;
    }
    if policy.disable_signup {
        return Err(AuthError::unprocessable(ErrorCode::SignupDisabled, "Signups not allowed for this instance"));
    }
    let password = input.password.clone().filter(|p| !p.expose().is_empty());
    let password = password.ok_or_else(|| AuthError::validation("Signup requires a valid password"))?;
    validate::new_password(&a.settings.password, &password)?;
    if !input.email.is_empty() && !input.phone.is_empty() {
        return Err(AuthError::validation("Only an email address or phone number should be provided on signup."));
    }
    let (channel, address) = if input.email.is_empty() {
        if input.pkce.is_some() {
            return Err(AuthError::validation("PKCE not supported for phone signups"));
        }
        if !input.channel.is_empty() && input.channel != "sms" && input.channel != "whatsapp" {
            return Err(AuthError::validation("Invalid channel, must be one of sms or whatsapp"));
        }
        if !policy.phone_enabled {
            return Err(AuthError::bad_request(ErrorCode::PhoneProviderDisabled, "Phone signups are disabled"));
        }
        (Channel::Phone, validate::phone(&input.phone)?)
    } else {
        if !policy.email_enabled {
            return Err(AuthError::bad_request(ErrorCode::EmailProviderDisabled, "Email signups are disabled"));
        }
        (Channel::Email, validate::email(&input.email)?)
    };
    let autoconfirm = match channel {
        Channel::Email => policy.mailer_autoconfirm,
        Channel::Phone => policy.sms_autoconfirm,
    };
    let existing = match channel {
        Channel::Email => a.users.by_email(&address).await?,
        Channel::Phone => a.users.by_phone(&address).await?,
    };
    if let Some(user) = existing {
        return existing_user(a, user, channel, autoconfirm, &password, input).await;
    }

    let hash = a.hasher.hash(&password).await?;
    let mut user = new_user(a, channel, &address, Some(hash), input.data.clone(), &input.aud, autoconfirm);
    // Stamped only once the confirmation is actually sent (a failed send can be retried).
    user.confirmation_sent_at = None;
    let user = crate::flows::create_user(a, user).await?;
    audit(a, AuditActor::User(&user), "user_signedup", &[("provider", provider_name(channel))]).await?;
    if autoconfirm {
        let grant = sign_in(a, user, "password", &input.meta).await?;
        return Ok(SignupOutcome::Session(Box::new(grant)));
    }
    let user = send_confirmation(a, user, channel, &input).await?;
    Ok(SignupOutcome::User(Box::new(user)))
}

/// Sends the confirmation of an unconfirmed sign-up: a mail with link and code, or an SMS code.
async fn send_confirmation(a: &Actors, user: User, channel: Channel, input: &SignupInput) -> AuthResult<User> {
    let user = if channel == Channel::Phone {
        super::phone::check_spacing(a, user.confirmation_sent_at)?;
        let sms_channel = super::phone::channel(&input.channel)?;
        super::phone::send_code(a, &user, super::phone::PhoneCode::Confirmation, &user.phone, &sms_channel).await?;
        let now = a.clock.now();
        a.users
            .update(user.id, move |u| {
                u.confirmation_sent_at = Some(now);
                Ok(())
            })
            .await?
    } else {
        let link = Link {
            kind: LinkKind::Signup,
            address: &user.email,
            redirect_to: &input.redirect_to,
            pkce: input.pkce.as_ref(),
            new_email: "",
        };
        send_spaced(a, &user, link).await?
    };
    audit(a, AuditActor::User(&user), "user_confirmation_requested", &[]).await?;
    Ok(user)
}

fn provider_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email",
        Channel::Phone => "phone",
    }
}

fn is_confirmed(user: &User, channel: Channel) -> bool {
    match channel {
        Channel::Email => user.email_confirmed_at.is_some(),
        Channel::Phone => user.phone_confirmed_at.is_some(),
    }
}

/// SPEC §1.2 steps 5–6 for an address that is already registered.
async fn existing_user(
    a: &Actors,
    user: User,
    channel: Channel,
    autoconfirm: bool,
    password: &Secret,
    input: SignupInput,
) -> AuthResult<SignupOutcome> {
    let policy = &a.settings.signup;
    if is_confirmed(&user, channel) {
        if policy.mailer_autoconfirm || policy.sms_autoconfirm {
            return Err(AuthError::unprocessable(ErrorCode::UserAlreadyExists, "User already registered"));
        }
        // No enumeration: a plausible, unsaved user; apps detect it by `identities == []`.
        audit(a, AuditActor::User(&user), "user_repeated_signup", &[]).await?;
        return Ok(SignupOutcome::User(Box::new(obfuscated(a, channel, &user, input.data))));
    }
    // Unconfirmed: never modified by a second signup. GoTrue would confirm it under
    // autoconfirm without checking who is asking; we confirm only for the holder of its password.
    if autoconfirm {
        let check = match &user.encrypted_password {
            Some(stored) => a.hasher.verify(password, stored).await?,
            None => PasswordCheck::Mismatch,
        };
        if check == PasswordCheck::Mismatch {
            return Err(AuthError::unprocessable(ErrorCode::UserAlreadyExists, "User already registered"));
        }
        let now = a.clock.now();
        let user = a
            .users
            .update(user.id, move |u| {
                confirm(u, channel, now);
                Ok(())
            })
            .await?;
        let grant = sign_in(a, user, "password", &input.meta).await?;
        return Ok(SignupOutcome::Session(Box::new(grant)));
    }
    let user = send_confirmation(a, user, channel, &input).await?;
    Ok(SignupOutcome::User(Box::new(user)))
}

/// Marks the channel confirmed, in the user and its identity data.
pub(crate) fn confirm(user: &mut User, channel: Channel, now: crate::clock::Timestamp) {
    let key = match channel {
        Channel::Email => {
            user.email_confirmed_at = Some(now);
            "email_verified"
        }
        Channel::Phone => {
            user.phone_confirmed_at = Some(now);
            "phone_verified"
        }
    };
    let mut meta = user.user_metadata.to_map();
    meta.insert(key.into(), Value::Bool(true));
    user.user_metadata = JsonText::from_map(&meta);
    for identity in user.identities.iter_mut().filter(|i| i.provider == provider_name(channel)) {
        let mut data = identity.identity_data.to_map();
        data.insert(key.into(), Value::Bool(true));
        identity.identity_data = JsonText::from_map(&data);
    }
}

/// A new email or phone user with its identity (SPEC §1.2 step 6).
pub(crate) fn new_user(
    a: &Actors,
    channel: Channel,
    address: &str,
    password_hash: Option<String>,
    data: Map<String, Value>,
    aud: &str,
    confirmed: bool,
) -> User {
    let now = a.clock.now();
    let id = Uuid::new_v4();
    let provider = provider_name(channel);
    let mut identity_data = data;
    identity_data.insert("sub".into(), json!(id.to_string()));
    match channel {
        Channel::Email => identity_data.insert("email".into(), json!(address)),
        Channel::Phone => identity_data.insert("phone".into(), json!(address)),
    };
    identity_data.insert("email_verified".into(), json!(false));
    identity_data.insert("phone_verified".into(), json!(false));
    let identity = Identity {
        id: Uuid::new_v4(),
        provider_id: id.to_string(),
        provider: provider.into(),
        identity_data: JsonText::from_map(&identity_data),
        email: if channel == Channel::Email { address.to_owned() } else { String::new() },
        last_sign_in_at: Some(now),
        created_at: now,
        updated_at: now,
    };
    let mut user = User {
        id,
        email: if channel == Channel::Email { address.to_owned() } else { String::new() },
        phone: if channel == Channel::Phone { address.to_owned() } else { String::new() },
        encrypted_password: password_hash,
        app_metadata: JsonText::from_map(&provider_metadata(provider)),
        user_metadata: JsonText::from_map(&identity_data),
        identities: vec![identity],
        ..User::blank(aud, &a.settings.jwt.default_group, now)
    };
    if confirmed {
        confirm(&mut user, channel, now);
    } else {
        user.confirmation_sent_at = Some(now);
    }
    user
}

fn provider_metadata(provider: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("provider".into(), json!(provider));
    m.insert("providers".into(), json!([provider]));
    m
}

/// GoTrue's fake user for a repeated signup of a confirmed address (never stored).
fn obfuscated(a: &Actors, channel: Channel, real: &User, data: Map<String, Value>) -> User {
    let now = a.clock.now();
    let mut user = new_user(
        a,
        channel,
        if channel == Channel::Email { &real.email } else { &real.phone },
        None,
        data.clone(),
        &real.aud,
        false,
    );
    user.role = String::new();
    user.identities = Vec::new();
    user.user_metadata = JsonText::from_map(&data);
    user.confirmation_sent_at = Some(now);
    user
}

/// Anonymous sign-in (SPEC §1.20).
async fn anonymous(a: &Actors, input: SignupInput) -> AuthResult<SignupOutcome> {
    let policy = &a.settings.signup;
    if !policy.anonymous_enabled {
        return Err(AuthError::unprocessable(ErrorCode::AnonymousProviderDisabled, "Anonymous sign-ins are disabled"));
    }
    if policy.disable_signup {
        return Err(AuthError::unprocessable(ErrorCode::SignupDisabled, "Signups not allowed for this instance"));
    }
    let now = a.clock.now();
    let mut user = new_user(a, Channel::Email, "", None, input.data.clone(), &input.aud, false);
    user.email = String::new();
    user.identities = Vec::new();
    user.app_metadata = JsonText::empty();
    user.user_metadata = JsonText::from_map(&input.data);
    user.confirmation_sent_at = None;
    user.is_anonymous = true;
    user.created_at = now;
    let user = crate::flows::create_user(a, user).await?;
    audit(a, AuditActor::User(&user), "user_signedup", &[("provider", "anonymous")]).await?;
    let grant = sign_in(a, user, "anonymous", &input.meta).await?;
    Ok(SignupOutcome::Session(Box::new(grant)))
}
