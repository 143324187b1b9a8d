//! Sign-in with external providers: `GET /authorize`, `GET|POST /callback`, identity linking
//! and unlinking, and `POST /token?grant_type=id_token`. Ports of external.go
//! (`GetExternalProviderRedirectURL`, `internalExternalProviderCallback`), identity.go and
//! token_oidc.go (SPEC §1.3, §1.16, §7).
//!
//! Provider HTTP runs here, in the request's task (`crate::oauth`), bounded by
//! `provider_budget`; the OAuthFlow actor only stores the flow (its id is the OAuth `state`,
//! claimed once by the callback) and what came out of the provider.
//!
//! * this file — `/authorize`, `/callback`, `/user/identities/*`;
//! * `accounts` — who a provider identity belongs to (SPEC §7.6), manual linking;
//! * `id_token` — `grant_type=id_token`.

mod accounts;
mod id_token;

pub use id_token::{id_token, IdTokenInput};

use super::email::pkce_params;
use super::{audit, sign_in, AuditActor, RequestMeta, SessionGrant};
use crate::error::{AuthError, AuthResult, Detail, ErrorCode};
use crate::flows::auth::Authenticated;
use crate::oauth::client::ProviderError;
use crate::oauth::providers::{self, AuthorizeParams, Endpoints, Tokens};
use crate::oauth::{ProviderConfig, ProviderKind, UserData};
use crate::oauth_flow::{ExternalFlow, FlowState};
use crate::user_registry::model::JsonText;
use crate::Actors;
use accounts::{create_or_link, email_from_identities, link_identity_to_user, set_providers, Context};
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// The amr method of every external sign-in.
pub(crate) const OAUTH: &str = "oauth";

/// Query parameters never forwarded to the provider: our own, and the OAuth parameters the
/// server controls (GoTrue's `reservedOAuthParams`; `nonce` is passed on separately; `scope`
/// and `response_mode` would clash with the ones the provider module sets — use `scopes`).
const NOT_FORWARDED: [&str; 15] = [
    "provider",
    "scopes",
    "scope",
    "response_mode",
    "redirect_to",
    "invite_token",
    "skip_http_redirect",
    "code_challenge",
    "code_challenge_method",
    "code_verifier",
    "client_id",
    "client_secret",
    "redirect_uri",
    "response_type",
    "state",
];

/// `GET /authorize` (and `/user/identities/authorize`) input.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeInput {
    pub provider: String,
    pub scopes: String,
    /// The app's redirect target, already checked against the allow list.
    pub redirect_to: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// Every query parameter of the request; the unreserved ones go to the provider.
    pub query: Vec<(String, String)>,
    /// Manual linking: the signed-in user who gets the identity.
    pub linking_target: Option<Uuid>,
}

fn unsupported(detail: impl std::fmt::Display) -> AuthError {
    AuthError::validation(format!("Unsupported provider: {detail}"))
}

/// The enabled provider called `name`, ready for an OAuth sign-in (GoTrue's `ValidateOAuth`).
fn oauth_provider<'a>(a: &'a Actors, name: &str) -> AuthResult<(ProviderKind, &'a ProviderConfig)> {
    let kind = ProviderKind::from_name(name)
        .ok_or_else(|| unsupported(format!("Provider {} could not be found", name.to_lowercase())))?;
    let cfg = a.settings.oauth.enabled(kind).ok_or_else(|| unsupported("provider is not enabled"))?;
    if cfg.client_id().is_empty() {
        return Err(unsupported("missing OAuth client ID"));
    }
    if cfg.secret.expose().is_empty() {
        return Err(unsupported("missing OAuth secret"));
    }
    Ok((kind, cfg))
}

/// The provider-facing callback URL.
fn redirect_uri(a: &Actors, cfg: &ProviderConfig) -> String {
    if cfg.redirect_uri.is_empty() {
        format!("{}/callback", a.settings.mail.api_external_url.trim_end_matches('/'))
    } else {
        cfg.redirect_uri.clone()
    }
}

async fn endpoints_or_unsupported(a: &Actors, kind: ProviderKind, cfg: &ProviderConfig) -> AuthResult<Endpoints> {
    providers::endpoints(&a.settings.oauth, kind, cfg)
        .await
        .map_err(|e| unsupported("its configuration could not be loaded").with_source(e))
}

/// `GET /authorize`: stores the flow and returns the provider's authorization URL, whose
/// `state` is the flow id.
pub async fn authorize(a: &Actors, input: AuthorizeInput) -> AuthResult<String> {
    let (kind, cfg) = oauth_provider(a, &input.provider)?;
    let pkce = pkce_params(input.code_challenge.as_deref(), input.code_challenge_method.as_deref())?;
    let ep = endpoints_or_unsupported(a, kind, cfg).await?;
    let mut extra: Vec<(String, String)> = input
        .query
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k != "nonce" && !NOT_FORWARDED.contains(&k.as_str())
        })
        .map(|(k, v)| if k == "workos_provider" { ("provider".to_owned(), v.clone()) } else { (k.clone(), v.clone()) })
        .collect();
    extra.sort();
    // A caller's nonce is passed on (GoTrue); otherwise providers whose id_token we verify get
    // a fresh one, checked at the callback.
    let caller_nonce = input.query.iter().find(|(k, _)| k.eq_ignore_ascii_case("nonce")).map(|(_, v)| v.clone());
    let verifies_id_token = kind.is_oidc() && kind != ProviderKind::Keycloak;
    let nonce = caller_nonce.filter(|n| !n.is_empty()).unwrap_or_else(|| {
        if verifies_id_token {
            crate::crypto::random_token()
        } else {
            String::new()
        }
    });
    let flow = FlowState {
        id: Uuid::new_v4(),
        auth_code: Uuid::new_v4().to_string(),
        code_challenge: pkce.as_ref().map(|p| p.challenge.clone()).unwrap_or_default(),
        code_challenge_method: pkce.as_ref().map(|p| p.method.clone()).unwrap_or_default(),
        provider: kind.name().to_owned(),
        authentication_method: OAUTH.to_owned(),
        user_id: None,
        redirect_to: input.redirect_to,
        created_at: a.clock.now(),
    };
    let state = flow.id.to_string();
    let external =
        ExternalFlow { linking_target: input.linking_target, nonce: nonce.clone(), ..ExternalFlow::default() };
    a.oauth.create_external(flow, external).await?;
    let callback = redirect_uri(a, cfg);
    let params =
        AuthorizeParams { state: &state, redirect_uri: &callback, scopes: &input.scopes, nonce: &nonce, extra: &extra };
    Ok(providers::authorize_url(kind, cfg, &ep, &params))
}

/// `GET|POST /callback` input: the query (or form) parameters.
#[derive(Debug, Clone, Default)]
pub struct CallbackInput {
    pub params: HashMap<String, String>,
    /// Request audience for new users.
    pub aud: String,
    pub meta: RequestMeta,
}

/// Where a successful callback sends the browser.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// Implicit flow: the session (with the provider's tokens) goes in the fragment.
    Session { redirect_to: String, grant: Box<SessionGrant> },
    /// PKCE: `?code=`, exchanged at `POST /token?grant_type=pkce`.
    Code { redirect_to: String, code: String },
}

/// What went wrong in a callback.
#[derive(Debug)]
pub enum CallbackError {
    /// The provider came back with `error=…` (denied consent …): passed through.
    Provider {
        error: String,
        description: String,
    },
    Auth(AuthError),
}

/// A failed callback: the browser is still redirected, never shown an error page.
#[derive(Debug)]
pub struct CallbackFailure {
    pub redirect_to: String,
    /// A missing, unknown, expired or replayed `state`: GoTrue sends these to the site URL
    /// (303, query only), since the flow's own target is unknown or no longer trusted.
    pub state_error: bool,
    pub error: CallbackError,
}

impl CallbackFailure {
    fn state(a: &Actors, err: AuthError) -> CallbackFailure {
        CallbackFailure {
            redirect_to: a.settings.mail.site_url.clone(),
            state_error: true,
            error: CallbackError::Auth(err),
        }
    }
}

/// `GET|POST /callback`. Port of external.go `internalExternalProviderCallback`.
pub async fn callback(a: &Actors, input: CallbackInput) -> Result<CallbackOutcome, CallbackFailure> {
    let param = |k: &str| input.params.get(k).map(String::as_str).unwrap_or_default();
    let state = param("state");
    if state.is_empty() {
        let err = AuthError::bad_request(ErrorCode::BadOauthCallback, "OAuth state parameter missing");
        return Err(CallbackFailure::state(a, err));
    }
    let Ok(id) = Uuid::parse_str(state) else {
        let err = AuthError::bad_request(ErrorCode::BadOauthState, "OAuth state parameter is invalid");
        return Err(CallbackFailure::state(a, err));
    };
    let claimed = a.oauth.claim(id).await.map_err(|e| CallbackFailure::state(a, e))?;
    let flow = claimed.flow;
    let external = claimed.external.unwrap_or_default();
    let oauth = &a.settings.oauth;
    let redirect_to = [oauth.redirect_url.as_str(), flow.redirect_to.as_str(), a.settings.mail.site_url.as_str()]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_default()
        .to_owned();
    let fail = |error: CallbackError| CallbackFailure { redirect_to: redirect_to.clone(), state_error: false, error };

    if !param("error").is_empty() {
        return Err(fail(CallbackError::Provider {
            error: param("error").to_owned(),
            description: param("error_description").to_owned(),
        }));
    }
    let outcome = complete_callback(a, &input, &flow, &external, param("code"), &redirect_to).await;
    outcome.map_err(|e| fail(CallbackError::Auth(e)))
}

async fn complete_callback(
    a: &Actors,
    input: &CallbackInput,
    flow: &FlowState,
    external: &ExternalFlow,
    code: &str,
    redirect_to: &str,
) -> AuthResult<CallbackOutcome> {
    if code.is_empty() {
        return Err(AuthError::bad_request(
            ErrorCode::BadOauthCallback,
            "OAuth callback with missing authorization code missing",
        ));
    }
    let (kind, cfg) = oauth_provider(a, &flow.provider).map_err(|e| {
        AuthError::bad_request(ErrorCode::OauthProviderNotSupported, e.msg.clone()).with_source(Detail(e.to_string()))
    })?;
    let apple_user = input.params.get("user").cloned().unwrap_or_default();
    let (tokens, mut data) = provider_phase(a, kind, cfg, code, &external.nonce, &apple_user).await?;
    if data.emails.is_empty() && !cfg.email_optional {
        return Err(AuthError::internal("Error getting user email from external provider"));
    }
    data.settle_email();
    let cx = Context { aud: &input.aud, email_optional: cfg.email_optional, redirect_to };
    let user = match external.linking_target {
        Some(target) => {
            let target =
                a.users.get(target).await?.ok_or_else(|| {
                    AuthError::unprocessable(ErrorCode::UserNotFound, "Linking target user not found")
                })?;
            link_identity_to_user(a, target, kind.name(), &data, &cx).await?
        }
        None => create_or_link(a, kind.name(), &data, &cx).await?,
    };
    if !flow.code_challenge.is_empty() {
        let code = a.oauth.complete(flow.id, user.id, tokens.access_token, tokens.refresh_token).await?;
        return Ok(CallbackOutcome::Code { redirect_to: redirect_to.to_owned(), code });
    }
    let mut grant = sign_in(a, user, OAUTH, &input.meta).await?;
    grant.provider_token = Some(tokens.access_token);
    grant.provider_refresh_token = Some(tokens.refresh_token).filter(|t| !t.is_empty());
    Ok(CallbackOutcome::Session { redirect_to: redirect_to.to_owned(), grant: Box::new(grant) })
}

/// Code exchange and profile, within `provider_budget`.
async fn provider_phase(
    a: &Actors,
    kind: ProviderKind,
    cfg: &ProviderConfig,
    code: &str,
    nonce: &str,
    apple_user: &str,
) -> AuthResult<(Tokens, UserData)> {
    let s = &a.settings.oauth;
    let exchange_failed = |e: ProviderError| {
        let shown: String = code.chars().take(4).collect();
        AuthError::internal(format!("Unable to exchange external code: {shown}")).with_source(e)
    };
    let work = async {
        let ep = providers::endpoints(s, kind, cfg).await.map_err(exchange_failed)?;
        let tokens = providers::exchange(s, cfg, &ep, code, &redirect_uri(a, cfg)).await.map_err(exchange_failed)?;
        let data = providers::user_data(s, kind, cfg, &ep, &tokens, nonce, apple_user)
            .await
            .map_err(|e| AuthError::internal("Error getting user profile from external provider").with_source(e))?;
        Ok((tokens, data))
    };
    match tokio::time::timeout(s.provider_budget, work).await {
        Ok(result) => result,
        Err(_) => Err(AuthError::internal("Error getting user profile from external provider")
            .with_source(ProviderError::Timeout(s.provider_budget))),
    }
}

fn manual_linking_disabled() -> AuthError {
    AuthError::not_found(ErrorCode::ManualLinkingDisabled, "Manual linking is disabled")
}

/// `GET /user/identities/authorize`: like `/authorize`, for the signed-in user.
pub async fn link_authorize(a: &Actors, auth: &Authenticated, mut input: AuthorizeInput) -> AuthResult<String> {
    if !a.settings.oauth.manual_linking_enabled {
        return Err(manual_linking_disabled());
    }
    input.linking_target = Some(auth.user.id);
    authorize(a, input).await
}

/// True when manual linking is on (the handler checks before authenticating, as GoTrue's
/// middleware order does).
pub fn manual_linking_enabled(a: &Actors) -> AuthResult<()> {
    if a.settings.oauth.manual_linking_enabled {
        Ok(())
    } else {
        Err(manual_linking_disabled())
    }
}

/// `DELETE /user/identities/{identity_id}`. Port of identity.go `DeleteIdentity`.
pub async fn unlink(a: &Actors, auth: Authenticated, identity_id: &str, request_aud: &str) -> AuthResult<()> {
    manual_linking_enabled(a)?;
    let identity_id = Uuid::parse_str(identity_id)
        .map_err(|_| AuthError::not_found(ErrorCode::ValidationFailed, "identity_id must be an UUID"))?;
    if auth.claims.audience() != Some(request_aud) {
        return Err(AuthError::forbidden(
            ErrorCode::UnexpectedAudience,
            "Token audience doesn't match request audience",
        ));
    }
    let user = auth.user;
    if user.identities.len() <= 1 {
        return Err(AuthError::unprocessable(
            ErrorCode::SingleIdentityNotDeletable,
            "User must have at least 1 identity after unlinking",
        ));
    }
    let doomed = user
        .identities
        .iter()
        .find(|i| i.id == identity_id)
        .cloned()
        .ok_or_else(|| AuthError::unprocessable(ErrorCode::IdentityNotFound, "Identity doesn't exist"))?;
    // Which address the user keeps when the identity holding the current one goes.
    let mut remaining = user.clone();
    remaining.identities.retain(|i| i.id != identity_id);
    let keeps_email = user.email.is_empty() || remaining.identities.iter().any(|i| i.email == user.email);
    let new_email = if doomed.provider == "phone" || keeps_email {
        None
    } else {
        Some(email_from_identities(a, &remaining).await?.ok_or_else(email_conflict)?)
    };
    let autoconfirm = a.settings.signup.mailer_autoconfirm;
    let provider = doomed.provider.clone();
    let changed = a
        .users
        .update(user.id, move |u| {
            u.identities.retain(|i| i.id != identity_id);
            if provider == "phone" {
                u.phone.clear();
                u.phone_confirmed_at = None;
            } else if let Some(email) = new_email {
                let verified = u.identities.iter().find(|i| i.email == email).is_some_and(|i| {
                    i.identity_data.to_map().get("email_verified").and_then(Value::as_bool) == Some(true)
                });
                u.email = email;
                u.new_email.clear();
                if !verified && !autoconfirm {
                    u.email_confirmed_at = None;
                    let mut meta = u.user_metadata.to_map();
                    meta.insert("email_verified".into(), json!(false));
                    u.user_metadata = JsonText::from_map(&meta);
                }
            }
            set_providers(u);
            Ok(())
        })
        .await
        .map_err(|e| if e.code == ErrorCode::EmailExists { email_conflict() } else { e })?;
    let id = doomed.id.to_string();
    let traits = [
        ("identity_id", id.as_str()),
        ("provider", doomed.provider.as_str()),
        ("provider_id", doomed.provider_id.as_str()),
    ];
    audit(a, AuditActor::User(&changed), "identity_unlinked", &traits).await
}

fn email_conflict() -> AuthError {
    AuthError::unprocessable(
        ErrorCode::EmailConflictIdentityNotDeletable,
        "Unable to unlink identity due to email conflict",
    )
}
