//! `POST /token?grant_type=id_token`. Port of token_oidc.go `IdTokenGrant` (SPEC §1.3): the
//! id_token of an enabled OpenID provider (Google, Apple, Azure, Keycloak, generic OIDC) is
//! checked against the issuer's JWKS, the configured client ids and the `nonce`, then signs in
//! (or, with `link_identity`, links to the caller) like an OAuth callback. Errors about the
//! token are OAuth-shaped (`{error, error_description}`, 400).

use super::accounts::{create_or_link, link_identity_to_user, Context};
use super::{manual_linking_enabled, OAUTH};
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::flows::auth::Authenticated;
use crate::flows::{sign_in, RequestMeta, SessionGrant};
use crate::oauth::client::ProviderError;
use crate::oauth::oidc;
use crate::oauth::providers::{self, ProfileError};
use crate::oauth::{ProviderConfig, ProviderKind};
use crate::Actors;
use serde_json::{Map, Value};

/// `POST /token?grant_type=id_token` input (GoTrue's `IdTokenGrantParams`).
#[derive(Debug, Clone, Default)]
pub struct IdTokenInput {
    pub id_token: String,
    pub access_token: String,
    pub nonce: String,
    pub provider: String,
    pub client_id: String,
    pub issuer: String,
    /// `link_identity: true`: the authenticated caller gets the identity.
    pub link_to: Option<Authenticated>,
    pub aud: String,
    pub meta: RequestMeta,
}

fn invalid(description: impl Into<std::borrow::Cow<'static, str>>) -> AuthError {
    AuthError::oauth("invalid request", description)
}

/// Which configured provider an id_token grant is for: by name, else by issuer.
fn id_token_provider<'a>(a: &'a Actors, input: &IdTokenInput) -> AuthResult<(ProviderKind, &'a ProviderConfig)> {
    let oauth = &a.settings.oauth;
    let configured_url = |k: ProviderKind| oauth.providers.get(&k).map(|c| c.url.trim_end_matches('/').to_owned());
    let by_issuer = |iss: &str| -> Option<ProviderKind> {
        let iss = oidc::trim_issuer(iss);
        if iss.is_empty() {
            return None;
        }
        if iss == providers::APPLE_ISSUER || iss == providers::APPLE_OTHER_ISSUER {
            return Some(ProviderKind::Apple);
        }
        if iss == providers::GOOGLE_ISSUER {
            return Some(ProviderKind::Google);
        }
        if iss.starts_with("https://login.microsoftonline.com/") {
            return Some(ProviderKind::Azure);
        }
        [ProviderKind::Keycloak, ProviderKind::Oidc, ProviderKind::Google, ProviderKind::Apple]
            .into_iter()
            .find(|k| configured_url(*k).is_some_and(|u| !u.is_empty() && u == iss))
    };
    let kind = match ProviderKind::from_name(&input.provider) {
        Some(kind) if kind.is_oidc() => kind,
        Some(_) | None if !input.provider.is_empty() => {
            return Err(AuthError::validation(format!("Custom OIDC provider {:?} not allowed", input.provider)));
        }
        _ => by_issuer(&input.issuer)
            .ok_or_else(|| AuthError::validation(format!("Custom OIDC provider {:?} not allowed", input.provider)))?,
    };
    let cfg = oauth.enabled(kind).ok_or_else(|| {
        let issuer = configured_url(kind).filter(|u| !u.is_empty()).unwrap_or_else(|| input.issuer.clone());
        AuthError::bad_request(ErrorCode::ProviderDisabled, format!("Provider (issuer {issuer:?}) is not enabled"))
    })?;
    Ok((kind, cfg))
}

/// Verifies the id_token for `kind` and returns its claims.
async fn verified_claims(
    a: &Actors,
    kind: ProviderKind,
    cfg: &ProviderConfig,
    input: &IdTokenInput,
) -> AuthResult<Map<String, Value>> {
    let s = &a.settings.oauth;
    let bad = |e: ProfileError| match e {
        ProfileError::Provider(p) | ProfileError::IdToken(oidc::IdTokenError::Provider(p)) => {
            AuthError::internal("Error contacting the ID token's issuer").with_source(p)
        }
        other => invalid("Bad ID token").with_source(other),
    };
    if matches!(kind, ProviderKind::Apple | ProviderKind::Azure) {
        let detected = oidc::peek_claims(&input.id_token).map(|c| oidc::string_claim(&c, "iss")).map_err(|e| {
            AuthError::validation(format!("Unable to detect issuer in ID token for {} provider", title(kind)))
                .with_source(e)
        })?;
        let ok = match kind {
            ProviderKind::Apple if cfg.url.is_empty() => {
                detected == providers::APPLE_ISSUER || detected == providers::APPLE_OTHER_ISSUER
            }
            ProviderKind::Apple => oidc::trim_issuer(&detected) == cfg.url.trim_end_matches('/'),
            _ => providers::azure_issuer_ok(cfg, &detected),
        };
        if !ok {
            return Err(AuthError::validation(format!(
                "Detected ID token issuer is not an {} ID token issuer",
                title(kind)
            )));
        }
        if !input.issuer.is_empty() && input.issuer != detected {
            return Err(AuthError::validation("Provided issuer does not match ID token issuer"));
        }
    }
    let work = async {
        let ep = providers::endpoints(s, kind, cfg).await.map_err(ProfileError::Provider)?;
        providers::verify(s, kind, cfg, &ep, &input.id_token).await
    };
    match tokio::time::timeout(s.provider_budget, work).await {
        Ok(result) => result.map_err(bad),
        Err(_) => Err(AuthError::internal("Error contacting the ID token's issuer")
            .with_source(ProviderError::Timeout(s.provider_budget))),
    }
}

fn title(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Apple => "Apple",
        ProviderKind::Azure => "Azure",
        _ => kind.name(),
    }
}

/// `grant_type=id_token`. Port of token_oidc.go `IdTokenGrant`.
pub async fn id_token(a: &Actors, input: IdTokenInput) -> AuthResult<SessionGrant> {
    if input.id_token.is_empty() {
        return Err(invalid("id_token required"));
    }
    if input.provider.is_empty() && (input.client_id.is_empty() || input.issuer.is_empty()) {
        return Err(invalid("provider or client_id and issuer required"));
    }
    if input.link_to.is_some() {
        manual_linking_enabled(a)?;
    }
    let (kind, cfg) = id_token_provider(a, &input)?;
    let claims = verified_claims(a, kind, cfg, &input).await?;
    if oidc::string_claim(&claims, "sub").is_empty() {
        return Err(invalid("Missing sub claim in id_token"));
    }
    let mut acceptable: Vec<&str> = cfg.client_ids.iter().map(String::as_str).collect();
    if kind == ProviderKind::Apple && !a.settings.oauth.ios_bundle_id.is_empty() {
        acceptable.push(&a.settings.oauth.ios_bundle_id);
    }
    let aud = oidc::audiences(&claims);
    if !aud.iter().any(|x| !x.is_empty() && acceptable.contains(&x.as_str())) {
        return Err(invalid(format!("Unacceptable audience in id_token: [{}]", aud.join(" "))));
    }
    if !cfg.skip_nonce_check {
        let token_nonce = oidc::string_claim(&claims, "nonce");
        if token_nonce.is_empty() != input.nonce.is_empty() {
            return Err(invalid("Passed nonce and nonce in id_token should either both exist or not."));
        }
        if !token_nonce.is_empty() {
            let hashed = hex::encode(crate::crypto::sha256(input.nonce.as_bytes()));
            if !crate::crypto::secure_eq(hashed.as_bytes(), token_nonce.as_bytes()) {
                return Err(AuthError::oauth("invalid nonce", "Nonces mismatch"));
            }
        }
    }
    let mut data = providers::profile_from_id_token(kind, &claims);
    data.settle_email();
    let cx = Context { aud: &input.aud, email_optional: cfg.email_optional, redirect_to: &a.settings.mail.site_url };
    let user = match input.link_to {
        Some(auth) => link_identity_to_user(a, auth.user, kind.name(), &data, &cx).await?,
        None => create_or_link(a, kind.name(), &data, &cx).await?,
    };
    sign_in(a, user, OAUTH, &input.meta).await
}
