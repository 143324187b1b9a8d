//! What a provider tells us about a user, in GoTrue's shape: a list of emails with their
//! verified/primary flags, and the claims that become the identity's `identity_data` (and are
//! merged into `user_metadata`). Field names and the omit-when-empty rule follow GoTrue's
//! `provider.Claims`; `email_verified` and `phone_verified` are always present.

use serde::Serialize;
use serde_json::{Map, Value};

/// One address the provider reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEmail {
    pub email: String,
    pub verified: bool,
    pub primary: bool,
}

/// GoTrue's `provider.Claims` (the deprecated duplicates included: clients read them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Claims {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub iss: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sub: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub family_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub given_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub nickname: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub preferred_username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub picture: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub locale: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub email: String,
    pub email_verified: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub phone: String,
    pub phone_verified: bool,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub custom_claims: Map<String, Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub full_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub avatar_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub provider_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_name: String,
}

/// A provider's answer about the user.
#[derive(Debug, Clone, Default)]
pub struct UserData {
    pub emails: Vec<ProviderEmail>,
    pub claims: Claims,
}

impl UserData {
    /// The provider's subject (the identity's `provider_id`).
    pub fn subject(&self) -> &str {
        &self.claims.sub
    }

    /// Copies the primary email (else the last one) into `email`/`email_verified`, as GoTrue
    /// does before storing the claims.
    pub fn settle_email(&mut self) {
        self.claims.email_verified = false;
        let chosen = self.emails.iter().find(|e| e.primary).or_else(|| self.emails.last());
        if let Some(e) = chosen {
            self.claims.email = e.email.clone();
            self.claims.email_verified = e.verified;
        }
    }

    /// The identity data (GoTrue's `structs.Map(claims)`).
    pub fn identity_data(&self) -> Map<String, Value> {
        match serde_json::to_value(&self.claims) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    /// Adds `email` as the single primary address when it is non-empty.
    pub fn push_primary(&mut self, email: &str, verified: bool) {
        if !email.is_empty() {
            self.emails.push(ProviderEmail { email: email.to_owned(), verified, primary: true });
        }
    }
}

/// A string field of a JSON object, or empty.
pub fn s(v: &Map<String, Value>, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A boolean that some providers send as a string (`"true"`, `"1"`).
pub fn b(v: &Map<String, Value>, key: &str) -> bool {
    match v.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        _ => false,
    }
}

/// Standard OpenID Connect claims (GoTrue's `parseGenericIDToken`, also used for userinfo).
pub fn generic(claims: &Map<String, Value>) -> UserData {
    let mut data = UserData {
        claims: Claims {
            iss: s(claims, "iss"),
            sub: s(claims, "sub"),
            name: s(claims, "name"),
            family_name: s(claims, "family_name"),
            given_name: s(claims, "given_name"),
            nickname: s(claims, "nickname"),
            preferred_username: s(claims, "preferred_username"),
            picture: s(claims, "picture"),
            locale: s(claims, "locale"),
            phone: s(claims, "phone_number"),
            full_name: s(claims, "name"),
            avatar_url: s(claims, "picture"),
            provider_id: s(claims, "sub"),
            ..Claims::default()
        },
        ..UserData::default()
    };
    data.push_primary(&s(claims, "email"), b(claims, "email_verified"));
    data
}

/// Keycloak's userinfo (GoTrue: name/sub/email/email_verified known, the rest custom claims).
pub fn keycloak(issuer: &str, info: &Map<String, Value>) -> UserData {
    let custom: Map<String, Value> = info
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "name" | "sub" | "email" | "email_verified"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut data = UserData {
        claims: Claims {
            iss: issuer.to_owned(),
            sub: s(info, "sub"),
            name: s(info, "name"),
            full_name: s(info, "name"),
            provider_id: s(info, "sub"),
            custom_claims: custom,
            ..Claims::default()
        },
        ..UserData::default()
    };
    data.push_primary(&s(info, "email"), b(info, "email_verified"));
    data
}

/// Google id_token or userinfo (`verified_email` in v2 userinfo, `email_verified` in OIDC).
pub fn google(claims: &Map<String, Value>) -> UserData {
    let sub = if claims.contains_key("sub") { s(claims, "sub") } else { s(claims, "id") };
    let mut custom = Map::new();
    if let Some(hd) = claims.get("hd").filter(|v| v.as_str().is_some_and(|h| !h.is_empty())) {
        custom.insert("hd".into(), hd.clone());
    }
    let mut data = UserData {
        claims: Claims {
            iss: s(claims, "iss"),
            sub: sub.clone(),
            name: s(claims, "name"),
            picture: s(claims, "picture"),
            avatar_url: s(claims, "picture"),
            full_name: s(claims, "name"),
            provider_id: sub,
            custom_claims: custom,
            ..Claims::default()
        },
        ..UserData::default()
    };
    data.push_primary(&s(claims, "email"), b(claims, "email_verified") || b(claims, "verified_email"));
    data
}

/// Apple id_token (the email is always verified; `is_private_email` etc. are custom claims).
pub fn apple(claims: &Map<String, Value>) -> UserData {
    let mut custom = Map::new();
    for key in ["is_private_email", "auth_time", "transfer_sub"] {
        if let Some(v) = claims.get(key) {
            let v = match (key, v) {
                ("is_private_email", Value::String(s)) => Value::Bool(s == "true"),
                _ => v.clone(),
            };
            custom.insert(key.into(), v);
        }
    }
    let sub = s(claims, "sub");
    let mut data = UserData {
        claims: Claims {
            iss: s(claims, "iss"),
            sub: sub.clone(),
            provider_id: sub,
            custom_claims: custom,
            ..Claims::default()
        },
        ..UserData::default()
    };
    data.push_primary(&s(claims, "email"), true);
    data
}

/// Apple's first-login `user` form field: `{"name":{"firstName","lastName"},"email"}`.
pub fn apple_name(data: &mut UserData, user_field: &str) {
    let Ok(Value::Object(user)) = serde_json::from_str::<Value>(user_field) else { return };
    let Some(Value::Object(name)) = user.get("name") else { return };
    let full = format!("{} {}", s(name, "firstName"), s(name, "lastName")).trim().to_owned();
    data.claims.name = full.clone();
    data.claims.full_name = full;
}

/// Azure id_token. The email counts as verified only if `xms_edov` says so, or is absent.
pub fn azure(claims: &Map<String, Value>) -> UserData {
    const DROP: [&str; 16] = [
        "aud",
        "iss",
        "iat",
        "nbf",
        "exp",
        "c_hash",
        "at_hash",
        "aio",
        "nonce",
        "rh",
        "uti",
        "jti",
        "ver",
        "sub",
        "name",
        "preferred_username",
    ];
    let email = s(claims, "email");
    let verified = match claims.get("xms_edov") {
        None => !email.is_empty(),
        Some(Value::Bool(b)) => *b && !email.is_empty(),
        Some(Value::String(v)) => (v == "1" || v == "true") && !email.is_empty(),
        Some(_) => false,
    };
    let custom: Map<String, Value> =
        claims.iter().filter(|(k, _)| !DROP.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    let sub = s(claims, "sub");
    let mut data = UserData {
        claims: Claims {
            iss: s(claims, "iss"),
            sub: sub.clone(),
            provider_id: sub,
            preferred_username: s(claims, "preferred_username"),
            full_name: s(claims, "name"),
            custom_claims: custom,
            ..Claims::default()
        },
        ..UserData::default()
    };
    data.push_primary(&email, verified);
    data
}

/// GitHub `/user` plus `/user/emails`.
pub fn github(api_base: &str, user: &Map<String, Value>, emails: &[Value]) -> UserData {
    let id = s(user, "id");
    let login = s(user, "login");
    UserData {
        claims: Claims {
            iss: api_base.to_owned(),
            sub: id.clone(),
            name: s(user, "name"),
            preferred_username: login.clone(),
            avatar_url: s(user, "avatar_url"),
            full_name: s(user, "name"),
            provider_id: id,
            user_name: login,
            ..Claims::default()
        },
        emails: emails
            .iter()
            .filter_map(Value::as_object)
            .filter(|e| !s(e, "email").is_empty())
            .map(|e| ProviderEmail { email: s(e, "email"), verified: b(e, "verified"), primary: b(e, "primary") })
            .collect(),
    }
}

/// GitLab `/api/v4/user` plus `/api/v4/user/emails` (extra addresses carry no confirmation
/// state, so they count as unverified; the main one is verified once `confirmed_at` is set).
pub fn gitlab(host: &str, user: &Map<String, Value>, emails: &[Value]) -> UserData {
    let id = s(user, "id");
    let mut data = UserData {
        claims: Claims {
            iss: host.to_owned(),
            sub: id.clone(),
            name: s(user, "name"),
            picture: s(user, "avatar_url"),
            avatar_url: s(user, "avatar_url"),
            full_name: s(user, "name"),
            provider_id: id,
            ..Claims::default()
        },
        emails: emails
            .iter()
            .filter_map(Value::as_object)
            .filter(|e| !s(e, "email").is_empty())
            .map(|e| ProviderEmail { email: s(e, "email"), verified: false, primary: false })
            .collect(),
    };
    let confirmed = user.get("confirmed_at").is_some_and(|v| v.as_str().is_some_and(|c| !c.is_empty()));
    data.push_primary(&s(user, "email"), confirmed);
    data
}

/// Discord `/api/users/@me`.
pub fn discord(api_base: &str, user: &Map<String, Value>) -> UserData {
    let id = s(user, "id");
    let avatar = s(user, "avatar");
    let discriminator = s(user, "discriminator");
    let avatar_url = if avatar.is_empty() {
        let n = discriminator.parse::<u64>().unwrap_or(0) % 5;
        format!("https://cdn.discordapp.com/embed/avatars/{n}.png")
    } else {
        let ext = if avatar.starts_with("a_") { "gif" } else { "png" };
        format!("https://cdn.discordapp.com/avatars/{id}/{avatar}.{ext}")
    };
    let mut custom = Map::new();
    custom.insert("global_name".into(), Value::String(s(user, "global_name")));
    let mut data = UserData {
        claims: Claims {
            iss: api_base.to_owned(),
            sub: id.clone(),
            name: format!("{}#{}", s(user, "username"), discriminator),
            picture: avatar_url.clone(),
            avatar_url,
            full_name: s(user, "username"),
            provider_id: id,
            custom_claims: custom,
            ..Claims::default()
        },
        ..UserData::default()
    };
    data.push_primary(&s(user, "email"), b(user, "verified"));
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn identity_data_omits_empty_strings_and_keeps_the_verified_flags() {
        let mut data = github(
            "https://api.github.com",
            &obj(json!({"id": 42, "login": "octo", "name": "", "avatar_url": "https://a/x.png"})),
            &[json!({"email": "o@example.com", "verified": true, "primary": true}), json!({"email": ""})],
        );
        data.settle_email();
        let d = data.identity_data();
        assert_eq!(d["sub"], "42");
        assert_eq!(d["provider_id"], "42");
        assert_eq!(d["user_name"], "octo");
        assert_eq!(d["email"], "o@example.com");
        assert_eq!(d["email_verified"], true);
        assert_eq!(d["phone_verified"], false);
        assert!(!d.contains_key("name"), "{d:?}");
        assert!(!d.contains_key("custom_claims"));
        assert_eq!(data.emails.len(), 1);
    }

    #[test]
    fn azure_email_verification_follows_xms_edov() {
        assert!(azure(&obj(json!({"sub": "a", "email": "x@y.z"}))).emails[0].verified);
        assert!(!azure(&obj(json!({"sub": "a", "email": "x@y.z", "xms_edov": "0"}))).emails[0].verified);
        assert!(azure(&obj(json!({"sub": "a", "email": "x@y.z", "xms_edov": true}))).emails[0].verified);
        let d = azure(&obj(json!({"sub": "a", "tid": "t", "nonce": "n"}))).identity_data();
        assert_eq!(d["custom_claims"], json!({"tid": "t"}));
    }

    #[test]
    fn primary_email_wins_else_the_last() {
        let mut data = UserData::default();
        data.emails.push(ProviderEmail { email: "a@x.y".into(), verified: true, primary: false });
        data.emails.push(ProviderEmail { email: "b@x.y".into(), verified: false, primary: false });
        data.settle_email();
        assert_eq!(data.claims.email, "b@x.y");
        data.emails[0].primary = true;
        data.settle_email();
        assert_eq!((data.claims.email.as_str(), data.claims.email_verified), ("a@x.y", true));
    }

    #[test]
    fn apple_name_comes_from_the_user_field() {
        let mut data =
            apple(&obj(json!({"sub": "s", "email": "a@privaterelay.appleid.com", "is_private_email": "true"})));
        apple_name(&mut data, r#"{"name":{"firstName":"Ann","lastName":"Lee"}}"#);
        assert_eq!(data.claims.full_name, "Ann Lee");
        assert_eq!(data.claims.custom_claims["is_private_email"], true);
        assert!(data.emails[0].verified);
    }
}
