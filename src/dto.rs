//! GoTrue's response JSON (SPEC §2), built from stored records. Field order follows the Go
//! structs; `omitempty` fields are skipped when empty.

use ferrotrue_actors::clock::Timestamp;
use ferrotrue_actors::flows::SessionGrant;
use ferrotrue_actors::user_registry::model::{Factor, Identity, User};
use serde::Serialize;
use serde_json::Value;

fn ts(t: Option<Timestamp>) -> Option<String> {
    t.map(Timestamp::rfc3339)
}

/// The User object.
#[derive(Debug, Serialize)]
pub struct UserJson {
    pub id: String,
    pub aud: String,
    pub role: String,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_confirmed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invited_at: Option<String>,
    pub phone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_confirmed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmation_sent_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_sent_at: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub new_email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_change_sent_at: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub new_phone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_change_sent_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reauthentication_sent_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sign_in_at: Option<String>,
    pub app_metadata: Value,
    pub user_metadata: Value,
    /// Omitted for users without factors; session responses send `[]` (clients derive the
    /// assurance level from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factors: Option<Vec<Value>>,
    pub identities: Vec<IdentityJson>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banned_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    pub is_anonymous: bool,
}

impl From<&User> for UserJson {
    fn from(u: &User) -> Self {
        UserJson {
            id: u.id.to_string(),
            aud: u.aud.clone(),
            role: u.role.clone(),
            email: u.email.clone(),
            email_confirmed_at: ts(u.email_confirmed_at),
            invited_at: ts(u.invited_at),
            phone: u.phone.clone(),
            phone_confirmed_at: ts(u.phone_confirmed_at),
            confirmation_sent_at: ts(u.confirmation_sent_at),
            confirmed_at: ts(u.confirmed_at()),
            recovery_sent_at: ts(u.recovery_sent_at),
            new_email: u.new_email.clone(),
            email_change_sent_at: ts(u.email_change_sent_at),
            new_phone: u.new_phone.clone(),
            phone_change_sent_at: ts(u.phone_change_sent_at),
            reauthentication_sent_at: ts(u.reauthentication_sent_at),
            last_sign_in_at: ts(u.last_sign_in_at),
            app_metadata: Value::Object(u.app_metadata.to_map()),
            user_metadata: Value::Object(u.user_metadata.to_map()),
            factors: if u.factors.is_empty() { None } else { Some(u.factors.iter().map(factor_json).collect()) },
            identities: u.identities.iter().map(|i| IdentityJson::of(u, i)).collect(),
            created_at: u.created_at.rfc3339(),
            updated_at: u.updated_at.rfc3339(),
            banned_until: ts(u.banned_until),
            deleted_at: ts(u.deleted_at),
            is_anonymous: u.is_anonymous,
        }
    }
}

/// The Factor object (SPEC §2.1); never carries the secret.
pub fn factor_json(f: &Factor) -> Value {
    let mut v = serde_json::json!({
        "id": f.id.to_string(),
        "created_at": f.created_at.rfc3339(),
        "updated_at": f.updated_at.rfc3339(),
        "status": f.status,
    });
    if let Some(map) = v.as_object_mut() {
        if !f.friendly_name.is_empty() {
            map.insert("friendly_name".into(), Value::String(f.friendly_name.clone()));
        }
        map.insert("factor_type".into(), Value::String(f.factor_type.clone()));
        map.insert("phone".into(), Value::String(f.phone.clone()));
        map.insert("last_challenged_at".into(), ts(f.last_challenged_at).map_or(Value::Null, Value::String));
        if let Some(aaguid) = f.web_authn_aaguid {
            map.insert("web_authn_aaguid".into(), Value::String(aaguid.to_string()));
        }
    }
    v
}

/// The Identity object: `identity_id` is the row id, `id` the provider subject.
#[derive(Debug, Serialize)]
pub struct IdentityJson {
    pub identity_id: String,
    pub id: String,
    pub user_id: String,
    pub identity_data: Value,
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sign_in_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub email: String,
}

impl IdentityJson {
    fn of(user: &User, i: &Identity) -> IdentityJson {
        IdentityJson {
            identity_id: i.id.to_string(),
            id: i.provider_id.clone(),
            user_id: user.id.to_string(),
            identity_data: Value::Object(i.identity_data.to_map()),
            provider: i.provider.clone(),
            last_sign_in_at: ts(i.last_sign_in_at),
            created_at: i.created_at.rfc3339(),
            updated_at: i.updated_at.rfc3339(),
            email: i.email.clone(),
        }
    }
}

/// `weak_password` on a session.
#[derive(Debug, Serialize)]
pub struct WeakPasswordJson {
    pub message: String,
    pub reasons: Vec<String>,
}

/// The Session / token response.
#[derive(Debug, Serialize)]
pub struct SessionJson {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub expires_at: i64,
    pub refresh_token: String,
    pub user: UserJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weak_password: Option<WeakPasswordJson>,
}

impl From<&SessionGrant> for SessionJson {
    fn from(g: &SessionGrant) -> Self {
        let mut user = UserJson::from(&g.user);
        user.factors = Some(g.user.factors.iter().map(factor_json).collect());
        SessionJson {
            access_token: g.access_token.clone(),
            token_type: "bearer",
            expires_in: g.expires_in,
            expires_at: g.expires_at,
            refresh_token: g.refresh_token.clone(),
            user,
            provider_token: g.provider_token.clone(),
            provider_refresh_token: g.provider_refresh_token.clone(),
            weak_password: g
                .weak_password
                .as_ref()
                .map(|w| WeakPasswordJson { message: w.message.clone(), reasons: w.reasons.clone() }),
        }
    }
}
