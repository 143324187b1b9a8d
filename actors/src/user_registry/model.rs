//! Stored user records (bincode-safe: no `serde_json::Value`, no `skip_serializing_if`).
//! GoTrue's JSON shape lives in the HTTP crate's `dto` module.

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A JSON object kept as text, because bincode cannot round-trip `serde_json::Value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonText(pub String);

impl JsonText {
    /// The empty object.
    pub fn empty() -> JsonText {
        JsonText("{}".to_owned())
    }
    /// From a JSON object.
    pub fn from_map(map: &serde_json::Map<String, serde_json::Value>) -> JsonText {
        JsonText(serde_json::Value::Object(map.clone()).to_string())
    }
    /// This object with `patch` merged in; a `null` value deletes its key (GoTrue's metadata
    /// update semantics).
    pub fn merged(&self, patch: &serde_json::Map<String, serde_json::Value>) -> JsonText {
        let mut map = self.to_map();
        for (k, v) in patch {
            if v.is_null() {
                map.remove(k);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
        JsonText::from_map(&map)
    }

    /// The object; anything unreadable or non-object reads as `{}`.
    pub fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::from_str(&self.0) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }
}

/// A user. Emails are stored lower-cased, phones without `+`; "none" is the empty string, as
/// in GoTrue's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub aud: String,
    pub role: String,
    pub email: String,
    pub phone: String,
    /// argon2id PHC string (or an imported bcrypt hash until the next sign-in).
    pub encrypted_password: Option<String>,
    pub email_confirmed_at: Option<Timestamp>,
    pub phone_confirmed_at: Option<Timestamp>,
    pub invited_at: Option<Timestamp>,
    pub confirmation_sent_at: Option<Timestamp>,
    pub recovery_sent_at: Option<Timestamp>,
    pub new_email: String,
    pub email_change_sent_at: Option<Timestamp>,
    pub new_phone: String,
    pub phone_change_sent_at: Option<Timestamp>,
    pub reauthentication_sent_at: Option<Timestamp>,
    pub last_sign_in_at: Option<Timestamp>,
    pub app_metadata: JsonText,
    pub user_metadata: JsonText,
    /// Identities are owned by their user and always read with it, so they live in the record.
    pub identities: Vec<Identity>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub banned_until: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
    pub is_anonymous: bool,
    pub is_sso_user: bool,
    /// The user's MFA factors. Not part of the `users/v1` record (skipped both ways, so the
    /// layout is unchanged): factors live in `mfa_factors/v1` and the registry attaches them to
    /// every user it hands out, so every rendering of a user (GET /user, sessions, admin) has them.
    #[serde(skip)]
    pub factors: Vec<Factor>,
}

impl User {
    /// A user with nothing set but its id, audience, role and creation time; callers fill in
    /// the rest with struct-update syntax (`User { email, ..User::blank(..) }`).
    pub fn blank(aud: &str, role: &str, now: Timestamp) -> User {
        User {
            id: Uuid::new_v4(),
            aud: aud.to_owned(),
            role: role.to_owned(),
            email: String::new(),
            phone: String::new(),
            encrypted_password: None,
            email_confirmed_at: None,
            phone_confirmed_at: None,
            invited_at: None,
            confirmation_sent_at: None,
            recovery_sent_at: None,
            new_email: String::new(),
            email_change_sent_at: None,
            new_phone: String::new(),
            phone_change_sent_at: None,
            reauthentication_sent_at: None,
            last_sign_in_at: None,
            app_metadata: JsonText::empty(),
            user_metadata: JsonText::empty(),
            identities: Vec::new(),
            created_at: now,
            updated_at: now,
            banned_until: None,
            deleted_at: None,
            is_anonymous: false,
            is_sso_user: false,
            factors: Vec::new(),
        }
    }

    /// GoTrue's generated `confirmed_at`: the earlier of the two confirmations.
    pub fn confirmed_at(&self) -> Option<Timestamp> {
        match (self.email_confirmed_at, self.phone_confirmed_at) {
            (Some(e), Some(p)) => Some(e.min(p)),
            (e, p) => e.or(p),
        }
    }
    /// True while `banned_until` is in the future.
    pub fn is_banned(&self, now: Timestamp) -> bool {
        self.banned_until.is_some_and(|until| until > now)
    }
}

/// A login method linked to a user (`email`, `phone`, later OAuth providers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Row id (`identity_id` in JSON).
    pub id: Uuid,
    /// Provider subject (`id` in JSON); the user id for email and phone.
    pub provider_id: String,
    pub provider: String,
    pub identity_data: JsonText,
    pub email: String,
    pub last_sign_in_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Identity {
    /// The identity of an email or phone login (`provider` is `email` or `phone`): its subject
    /// is the user id, its data `{sub, email|phone, email_verified, phone_verified}`.
    pub fn for_address(user_id: Uuid, provider: &str, address: &str, verified: bool, now: Timestamp) -> Identity {
        let is_email = provider == "email";
        let mut data = serde_json::Map::new();
        data.insert("sub".into(), serde_json::json!(user_id.to_string()));
        data.insert(provider.into(), serde_json::json!(address));
        data.insert("email_verified".into(), serde_json::json!(is_email && verified));
        data.insert("phone_verified".into(), serde_json::json!(!is_email && verified));
        Identity {
            id: Uuid::new_v4(),
            provider_id: user_id.to_string(),
            provider: provider.into(),
            identity_data: JsonText::from_map(&data),
            email: if is_email { address.to_owned() } else { String::new() },
            last_sign_in_at: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// One audit-log entry (GoTrue's `audit_log_entries`): who did what, when, from where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: Uuid,
    /// Insertion order; the tree key (big-endian) so entries load in time order.
    pub seq: u64,
    /// `{actor_id, actor_username, actor_name?, actor_via_sso, action, log_type, traits?}`.
    pub payload: JsonText,
    pub created_at: Timestamp,
    pub ip_address: String,
}

impl AuditEntry {
    /// GoTrue's `log_type` of an action.
    pub fn log_type(action: &str) -> &'static str {
        match action {
            "login" | "logout" | "invite_accepted" => "account",
            "user_signedup" | "user_invited" | "user_deleted" => "team",
            "token_refreshed" | "token_revoked" => "token",
            a if a.starts_with("factor_") || a == "challenge_created" || a == "verification_attempted" => "factor",
            _ => "user",
        }
    }
}

/// An MFA factor (`mfa_factors/v2`, keyed by id). Owned by the [`UserRegistry`]
/// (crate::user_registry): factors appear in the user JSON, die with the user (same
/// transaction), and enrollment limits are per user, so the actor that serialises a user's
/// changes is the one that can check and apply them atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factor {
    pub id: Uuid,
    pub user_id: Uuid,
    /// Empty = none (`omitempty`).
    pub friendly_name: String,
    /// `totp`, `phone` or `webauthn`.
    pub factor_type: String,
    /// `unverified` or `verified`.
    pub status: String,
    /// The TOTP secret sealed with AES-256-GCM under a key derived from the JWT secret
    /// (`nonce ‖ ciphertext ‖ tag`, the factor id as associated data): a copy of the database
    /// alone yields no working codes.
    pub sealed_secret: Vec<u8>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_challenged_at: Option<Timestamp>,
    /// The newest TOTP time step accepted: a code is accepted once per step (no replay).
    pub last_used_step: Option<u64>,
    /// Open challenges (bounded: the oldest go first).
    pub challenges: Vec<Challenge>,
    /// A phone factor's number (E.164 digits, no `+`); empty for other types.
    pub phone: String,
    /// A verified WebAuthn factor's credential (webauthn-rs `Passkey`, serialised as JSON bytes);
    /// empty until registration completes and for other types.
    pub web_authn_credential: Vec<u8>,
    /// The authenticator's AAGUID, when it reported one.
    pub web_authn_aaguid: Option<Uuid>,
}

impl Factor {
    pub fn is_verified(&self) -> bool {
        self.status == "verified"
    }
}

/// One MFA challenge of a factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub id: Uuid,
    pub created_at: Timestamp,
    /// The IP that asked for it; verify must come from the same one.
    pub ip: String,
    /// Wrong codes so far; the challenge dies at the limit.
    pub failed_attempts: u32,
    /// A phone challenge's code as a keyed MAC (never the code itself); empty for other types.
    pub otp_code: Vec<u8>,
    /// A WebAuthn challenge's ceremony state (webauthn-rs registration or authentication
    /// state, serialised as JSON bytes); empty for other types.
    pub web_authn_state: Vec<u8>,
}

/// `mfa_factors/v1` layout (TOTP only), migrated to [`Factor`] at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorV1 {
    pub id: Uuid,
    pub user_id: Uuid,
    pub friendly_name: String,
    pub factor_type: String,
    pub status: String,
    pub sealed_secret: Vec<u8>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_challenged_at: Option<Timestamp>,
    pub last_used_step: Option<u64>,
    pub challenges: Vec<ChallengeV1>,
}

/// `mfa_factors/v1` challenge layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeV1 {
    pub id: Uuid,
    pub created_at: Timestamp,
    pub ip: String,
    pub failed_attempts: u32,
}

impl FactorV1 {
    /// The v2 record: same values, no phone or WebAuthn data (v1 held TOTP factors only).
    pub fn migrate(self) -> Factor {
        Factor {
            id: self.id,
            user_id: self.user_id,
            friendly_name: self.friendly_name,
            factor_type: self.factor_type,
            status: self.status,
            sealed_secret: self.sealed_secret,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_challenged_at: self.last_challenged_at,
            last_used_step: self.last_used_step,
            challenges: self
                .challenges
                .into_iter()
                .map(|c| Challenge {
                    id: c.id,
                    created_at: c.created_at,
                    ip: c.ip,
                    failed_attempts: c.failed_attempts,
                    otp_code: Vec::new(),
                    web_authn_state: Vec::new(),
                })
                .collect(),
            phone: String::new(),
            web_authn_credential: Vec::new(),
            web_authn_aaguid: None,
        }
    }
}
