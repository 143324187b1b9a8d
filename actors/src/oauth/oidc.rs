//! OpenID Connect: discovery documents, key sets and id_token verification.
//!
//! An id_token is accepted when its header names an asymmetric algorithm, its `kid` (or the
//! only key) is in the issuer's JWKS, the signature verifies with that key, `exp` is in the
//! future (60 s leeway) and `iss` is one of the expected issuers. Audience and nonce are the
//! caller's business, because their error messages differ per endpoint. Discovery documents
//! and key sets are cached for `cache_ttl`; a `kid` missing from a cached set triggers one
//! refetch (key rotation), at most every [`MIN_REFETCH`].

use super::client::{ProviderClient, ProviderError};
use super::OAuthSettings;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::Duration;

/// A key set is refetched for an unknown `kid` at most this often.
const MIN_REFETCH: Duration = Duration::from_secs(30);

/// The parts of an OpenID Provider's discovery document ferrotrue uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: String,
}

/// Why an id_token was refused (logged; clients see "Bad ID token").
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    #[error("malformed id_token: {0}")]
    Malformed(String),
    #[error("id_token algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    #[error("no key in {0} matches the id_token")]
    UnknownKey(String),
    #[error("id_token rejected: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("id_token issuer {0:?} is not the expected one")]
    Issuer(String),
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// Asymmetric algorithms only: an HMAC "id_token" would be signed with a public value.
const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// `issuer` without a trailing slash, for comparisons.
pub fn trim_issuer(issuer: &str) -> &str {
    issuer.trim_end_matches('/')
}

/// The discovery document of `issuer` (`<issuer>/.well-known/openid-configuration`), cached.
/// Its `issuer` must be the one asked for (trailing slashes aside).
pub async fn discovery(s: &OAuthSettings, issuer: &str) -> Result<Discovery, ProviderError> {
    let client: &ProviderClient = &s.client;
    let cached = client.cached_discovery(issuer);
    if let Some(c) = &cached {
        if c.fetched.elapsed() < s.cache_ttl {
            return Ok(c.value.clone());
        }
    }
    let url = format!("{}/.well-known/openid-configuration", trim_issuer(issuer));
    let fetched = async {
        let value = client.get_json(s.http_timeout, &url, None).await?;
        let doc: Discovery = serde_json::from_value(value)
            .map_err(|e| ProviderError::Invalid { url: url.clone(), msg: format!("not a discovery document: {e}") })?;
        if trim_issuer(&doc.issuer) != trim_issuer(issuer) {
            return Err(ProviderError::Invalid {
                url: url.clone(),
                msg: format!("discovery issuer {:?} is not {issuer:?}", doc.issuer),
            });
        }
        Ok(doc)
    }
    .await;
    match (fetched, cached) {
        (Ok(doc), _) => {
            client.store_discovery(issuer, doc.clone());
            Ok(doc)
        }
        // GoTrue serves a stale entry when the issuer is briefly unreachable.
        (Err(e), Some(stale)) => {
            tracing::warn!(error = %e, issuer, "discovery refresh failed; using the cached document");
            Ok(stale.value)
        }
        (Err(e), None) => Err(e),
    }
}

/// The usable keys at `jwks_uri` (keys of unknown types are skipped, not fatal).
async fn fetch_jwks(s: &OAuthSettings, jwks_uri: &str) -> Result<Vec<Jwk>, ProviderError> {
    let value = s.client.get_json(s.http_timeout, jwks_uri, None).await?;
    let keys = value.get("keys").and_then(Value::as_array).ok_or_else(|| ProviderError::Invalid {
        url: jwks_uri.to_owned(),
        msg: "not a JWK set (no \"keys\" array)".into(),
    })?;
    Ok(keys.iter().filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok()).collect())
}

/// The key set at `jwks_uri`: cached; refetched when stale or when `kid` is unknown.
async fn keys_for(s: &OAuthSettings, jwks_uri: &str, kid: Option<&str>) -> Result<Vec<Jwk>, ProviderError> {
    let cached = s.client.cached_jwks(jwks_uri);
    if let Some(c) = &cached {
        let fresh = c.fetched.elapsed() < s.cache_ttl;
        let has_kid = kid.is_none_or(|kid| c.value.iter().any(|k| k.common.key_id.as_deref() == Some(kid)));
        if fresh && (has_kid || c.fetched.elapsed() < MIN_REFETCH) {
            return Ok(c.value.clone());
        }
    }
    match (fetch_jwks(s, jwks_uri).await, cached) {
        (Ok(keys), _) => {
            s.client.store_jwks(jwks_uri, keys.clone());
            Ok(keys)
        }
        (Err(e), Some(stale)) => {
            tracing::warn!(error = %e, jwks_uri, "key set refresh failed; using the cached keys");
            Ok(stale.value)
        }
        (Err(e), None) => Err(e),
    }
}

/// The claims of an id_token whose header and payload can be read, unverified (to find
/// its issuer before choosing keys — never trusted on its own).
pub fn peek_claims(token: &str) -> Result<Map<String, Value>, IdTokenError> {
    jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(token)
        .map(|d| d.claims)
        .map_err(|e| IdTokenError::Malformed(e.to_string()))
}

/// Verifies `token`'s signature against `jwks_uri`, its expiry, and that its `iss` is one of
/// `issuers` (an empty list skips the issuer check). Returns the claims.
pub async fn verify(
    s: &OAuthSettings,
    token: &str,
    jwks_uri: &str,
    issuers: &[String],
) -> Result<Map<String, Value>, IdTokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| IdTokenError::Malformed(e.to_string()))?;
    if !ACCEPTED.contains(&header.alg) {
        return Err(IdTokenError::Algorithm(header.alg));
    }
    let keys = keys_for(s, jwks_uri, header.kid.as_deref()).await?;
    let candidates: Vec<&Jwk> = match header.kid.as_deref() {
        Some(kid) => keys.iter().filter(|k| k.common.key_id.as_deref() == Some(kid)).collect(),
        None => keys.iter().collect(),
    };
    let mut validation = Validation::new(header.alg);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    let mut last = None;
    for jwk in candidates {
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            continue; // never a symmetric key
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation) {
            Ok(data) => {
                let iss = data.claims.get("iss").and_then(Value::as_str).unwrap_or_default();
                if !issuers.is_empty() && !issuers.iter().any(|i| trim_issuer(i) == trim_issuer(iss)) {
                    return Err(IdTokenError::Issuer(iss.to_owned()));
                }
                return Ok(data.claims);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| IdTokenError::UnknownKey(jwks_uri.to_owned()), IdTokenError::Invalid))
}

/// The `aud` claim as a list (it may be a string or an array).
pub fn audiences(claims: &Map<String, Value>) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

/// A string claim, or empty.
pub fn string_claim(claims: &Map<String, Value>, key: &str) -> String {
    claims.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}
