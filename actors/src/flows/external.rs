//! Sign-in with external providers: `GET /authorize`, `GET|POST /callback`, identity linking
//! and unlinking, and `POST /token?grant_type=id_token`. Ports of external.go
//! (`GetExternalProviderRedirectURL`, `internalExternalProviderCallback`,
//! `createAccountFromExternalIdentity`), models/linking.go (`DetermineAccountLinking`),
//! identity.go and token_oidc.go (SPEC §1.3, §1.16, §7).
//!
//! Provider HTTP runs here, in the request's task (`crate::oauth`), bounded by
//! `provider_budget`; the actors only store what came out of it. Account resolution
//! (SPEC §7.6): an existing identity signs its user in; otherwise verified provider emails link
//! to the one account that holds them, or a new account is created. An account that was never
//! confirmed loses its password and other identities when an OAuth identity confirms it (a
//! pre-registered password must not survive as a back door).

use super::email::{check_spacing, pkce_params, send_link, Link, LinkKind};
use super::signup::{confirm, Channel};
use super::{audit, sign_in, AuditActor, RequestMeta, SessionGrant};
use crate::error::{AuthError, AuthResult, Detail, ErrorCode, DUPLICATE_EMAIL_MSG};
use crate::flows::auth::Authenticated;
use crate::oauth::client::ProviderError;
use crate::oauth::oidc;
use crate::oauth::providers::{self, AuthorizeParams, Endpoints, ProfileError, Tokens};
use crate::oauth::{ProviderConfig, ProviderEmail, ProviderKind, UserData};
use crate::oauth_flow::{ExternalFlow, FlowState};
use crate::user_registry::model::{Identity, JsonText, User};
use crate::Actors;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// The amr method of every external sign-in.
const OAUTH: &str = "oauth";

/// Query parameters never forwarded to the provider: our own, and the OAuth parameters the
/// server controls (GoTrue's `reservedOAuthParams`; `nonce` is passed on separately).
const NOT_FORWARDED: [&str; 13] = [
    "provider",
    "scopes",
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

/// What account resolution needs from the request.
struct Context<'a> {
    aud: &'a str,
    email_optional: bool,
    /// Where a confirmation mail's link leads.
    redirect_to: &'a str,
}

/// GoTrue's account linking decision.
enum Decision {
    Exists,
    Link(User),
    Create,
}

/// SPEC §7.6 / GoTrue `createAccountFromExternalIdentity`: sign in the identity's user, link
/// the identity to the one account holding a verified email of it, or create an account; then
/// the ban check and the confirmation rules.
async fn create_or_link(a: &Actors, provider: &str, data: &UserData, cx: &Context<'_>) -> AuthResult<User> {
    let sub = data.subject().to_owned();
    if sub.is_empty() {
        return Err(AuthError::internal("Error getting user profile from external provider")
            .with_source(Detail("the provider reported no subject".into())));
    }
    let autoconfirm = a.settings.signup.mailer_autoconfirm;
    let now = a.clock.now();
    let identity_data = data.identity_data();
    let mut verified: Vec<String> = Vec::new();
    let mut candidate = ProviderEmail { email: String::new(), verified: false, primary: false };
    for e in &data.emails {
        if e.verified || autoconfirm {
            verified.push(e.email.to_lowercase());
        }
        if e.primary {
            candidate = ProviderEmail { email: e.email.to_lowercase(), ..e.clone() };
        }
    }

    let existing = a.users.by_identity(provider, &sub).await?;
    let decision = match &existing {
        Some(user) => {
            candidate.email.clone_from(&user.email);
            Decision::Exists
        }
        None => decide(a, &verified).await?,
    };
    let user = match decision {
        Decision::Exists => {
            let user = existing.ok_or_else(|| AuthError::unexpected("identity owner vanished"))?;
            let (provider, sub, data) = (provider.to_owned(), sub.clone(), identity_data.clone());
            a.users
                .update(user.id, move |u| {
                    if let Some(i) = u.identities.iter_mut().find(|i| i.provider == provider && i.provider_id == sub) {
                        i.identity_data = JsonText::from_map(&data);
                        i.last_sign_in_at = Some(now);
                        i.updated_at = now;
                    }
                    merge_metadata(u, &data);
                    set_providers(u);
                    Ok(())
                })
                .await?
        }
        Decision::Link(user) => {
            let identity = new_identity(provider, &sub, &identity_data, now);
            let (identity_id, data) = (identity.id, identity_data.clone());
            let user = a
                .users
                .update(user.id, move |u| {
                    u.identities.push(identity);
                    merge_metadata(u, &data);
                    set_providers(u);
                    Ok(())
                })
                .await?;
            let identity_id = identity_id.to_string();
            let traits = [("identity_id", identity_id.as_str()), ("provider", provider), ("provider_id", sub.as_str())];
            audit(a, AuditActor::User(&user), "identity_linked", &traits).await?;
            user
        }
        Decision::Create => {
            if a.settings.signup.disable_signup {
                return Err(AuthError::unprocessable(
                    ErrorCode::SignupDisabled,
                    "Signups not allowed for this instance",
                ));
            }
            // An address someone else holds stays with them (GoTrue: `IsDuplicatedEmail`).
            if !candidate.email.is_empty() && a.users.by_email(&candidate.email).await?.is_some() {
                candidate.email.clear();
            }
            let user = new_external_user(a, provider, &sub, &candidate.email, &identity_data, cx.aud);
            a.users.create(user).await?
        }
    };

    if user.is_banned(now) {
        return Err(AuthError::forbidden(ErrorCode::UserBanned, "User is banned"));
    }
    let has_emails = !(cx.email_optional && candidate.email.is_empty());
    if !has_emails || user.email_confirmed_at.is_some() {
        return Ok(user);
    }
    let (p, s) = (provider.to_owned(), sub.clone());
    let user = a.users.update(user.id, move |u| remove_unconfirmed_identities(u, &p, &s)).await?;
    if candidate.verified || autoconfirm {
        audit(a, AuditActor::User(&user), "user_signedup", &[("provider", provider)]).await?;
        return a
            .users
            .update(user.id, move |u| {
                confirm(u, Channel::Email, now);
                Ok(())
            })
            .await;
    }
    let sent = !user.email.is_empty();
    if sent {
        send_confirmation(a, &user, cx.redirect_to).await?;
    }
    if a.settings.oauth.allow_unverified_email_sign_ins {
        return Ok(user);
    }
    let msg = if sent {
        format!("Unverified email with {provider}. A confirmation email has been sent to your {provider} email")
    } else {
        format!("Unverified email with {provider}. Verify the email with {provider} in order to sign in")
    };
    Err(AuthError::unprocessable(ErrorCode::ProviderEmailNeedsVerification, msg))
}

/// GoTrue's `DetermineAccountLinking` once no identity matched.
async fn decide(a: &Actors, verified: &[String]) -> AuthResult<Decision> {
    if verified.is_empty() {
        return Ok(Decision::Create);
    }
    let found = a.users.link_candidates(verified).await?;
    let multiple = || {
        AuthError::internal(
            "Multiple accounts with the same email address in the same linking domain detected: default",
        )
    };
    match found.identity_owners.as_slice() {
        [] => match found.users.as_slice() {
            [] => Ok(Decision::Create),
            [user] => Ok(Decision::Link(user.clone())),
            _ => Err(multiple()),
        },
        [owner] => {
            let user = a.users.get(*owner).await?.ok_or_else(|| AuthError::unexpected("identity owner vanished"))?;
            Ok(Decision::Link(user))
        }
        _ => Err(multiple()),
    }
}

/// Sends the signup confirmation mail for an unverified provider email (GoTrue:
/// `sendConfirmation`), and stamps `confirmation_sent_at`.
async fn send_confirmation(a: &Actors, user: &User, redirect_to: &str) -> AuthResult<()> {
    check_spacing(a, user.confirmation_sent_at)?;
    let link = Link { kind: LinkKind::Signup, address: &user.email, redirect_to, pkce: None, new_email: "" };
    send_link(a, user, link).await?;
    audit(a, AuditActor::User(user), "user_confirmation_requested", &[]).await?;
    let now = a.clock.now();
    a.users
        .update(user.id, move |u| {
            u.confirmation_sent_at = Some(now);
            Ok(())
        })
        .await?;
    Ok(())
}

/// GoTrue's `RemoveUnconfirmedIdentities`: an unconfirmed account that an OAuth identity is
/// about to confirm keeps only that identity — no password (unless the identity is the email
/// one), no other identities, no unconfirmed phone — and its metadata becomes the identity's.
fn remove_unconfirmed_identities(u: &mut User, provider: &str, sub: &str) -> AuthResult<()> {
    if provider != "email" && provider != "phone" {
        u.encrypted_password = None;
    }
    u.identities.retain(|i| i.provider == provider && i.provider_id == sub);
    if let Some(i) = u.identities.first() {
        u.user_metadata = i.identity_data.clone();
    }
    if u.phone_confirmed_at.is_none() {
        u.phone.clear();
    }
    let mut app = u.app_metadata.to_map();
    app.remove("provider");
    u.app_metadata = JsonText::from_map(&app);
    set_providers(u);
    Ok(())
}

/// GoTrue's `UpdateUserMetaData`: the identity's claims overwrite same-named keys.
fn merge_metadata(u: &mut User, data: &Map<String, Value>) {
    let mut meta = u.user_metadata.to_map();
    for (k, v) in data {
        if v.is_null() {
            meta.remove(k);
        } else {
            meta.insert(k.clone(), v.clone());
        }
    }
    u.user_metadata = JsonText::from_map(&meta);
}

/// `app_metadata.providers` from the identities; `provider` kept while it still applies.
fn set_providers(u: &mut User) {
    let mut list: Vec<String> = Vec::new();
    for i in &u.identities {
        if !list.contains(&i.provider) {
            list.push(i.provider.clone());
        }
    }
    let mut app = u.app_metadata.to_map();
    let current = app.get("provider").and_then(Value::as_str).map(str::to_owned);
    if let Some(first) = list.first() {
        if current.is_none_or(|c| !list.contains(&c)) {
            app.insert("provider".into(), json!(first));
        }
    }
    app.insert("providers".into(), json!(list));
    u.app_metadata = JsonText::from_map(&app);
}

fn new_identity(provider: &str, sub: &str, data: &Map<String, Value>, now: crate::clock::Timestamp) -> Identity {
    let email = data.get("email").and_then(Value::as_str).unwrap_or_default().to_lowercase();
    Identity {
        id: Uuid::new_v4(),
        provider_id: sub.to_owned(),
        provider: provider.to_owned(),
        identity_data: JsonText::from_map(data),
        email,
        last_sign_in_at: Some(now),
        created_at: now,
        updated_at: now,
    }
}

/// A new account for an external identity (GoTrue: `signupNewUser` + `createNewIdentity`):
/// no password, `app_metadata.provider` = the provider, `user_metadata` = its claims.
fn new_external_user(a: &Actors, provider: &str, sub: &str, email: &str, data: &Map<String, Value>, aud: &str) -> User {
    let now = a.clock.now();
    let mut app = Map::new();
    app.insert("provider".into(), json!(provider));
    app.insert("providers".into(), json!([provider]));
    User {
        id: Uuid::new_v4(),
        aud: aud.to_owned(),
        role: a.settings.jwt.default_group.clone(),
        email: email.to_owned(),
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
        app_metadata: JsonText::from_map(&app),
        user_metadata: JsonText::from_map(data),
        identities: vec![new_identity(provider, sub, data, now)],
        created_at: now,
        updated_at: now,
        banned_until: None,
        deleted_at: None,
        is_anonymous: false,
        is_sso_user: false,
    }
}

/// Manual linking (GoTrue `linkIdentityToUser`): adds the identity to `target`; a user
/// without an email (anonymous) takes the identity's, confirmed only if the provider
/// verified it.
async fn link_identity_to_user(
    a: &Actors,
    target: User,
    provider: &str,
    data: &UserData,
    cx: &Context<'_>,
) -> AuthResult<User> {
    let sub = data.subject().to_owned();
    if sub.is_empty() {
        return Err(AuthError::internal("Error getting user profile from external provider")
            .with_source(Detail("the provider reported no subject".into())));
    }
    if let Some(owner) = a.users.by_identity(provider, &sub).await? {
        let msg = if owner.id == target.id {
            "Identity is already linked"
        } else {
            "Identity is already linked to another user"
        };
        return Err(AuthError::unprocessable(ErrorCode::IdentityAlreadyExists, msg));
    }
    let now = a.clock.now();
    let identity = new_identity(provider, &sub, &data.identity_data(), now);
    let identity_id = identity.id.to_string();
    let user = a
        .users
        .update(target.id, move |u| {
            u.identities.push(identity);
            set_providers(u);
            Ok(())
        })
        .await?;
    let traits = [("identity_id", identity_id.as_str()), ("provider", provider), ("provider_id", sub.as_str())];
    audit(a, AuditActor::User(&user), "identity_linked", &traits).await?;
    if !user.email.is_empty() {
        return Ok(user);
    }
    let Some(email) = email_from_identities(a, &user).await? else {
        return Err(AuthError::bad_request(ErrorCode::EmailExists, DUPLICATE_EMAIL_MSG));
    };
    let user = a
        .users
        .update(user.id, move |u| {
            u.email = email;
            Ok(())
        })
        .await?;
    if !data.claims.email_verified {
        send_confirmation(a, &user, cx.redirect_to).await?;
        return Err(AuthError::unprocessable(
            ErrorCode::EmailNotConfirmed,
            format!("Unverified email with {provider}. A confirmation email has been sent to your {provider} email"),
        ));
    }
    a.users
        .update(user.id, move |u| {
            confirm(u, Channel::Email, now);
            u.is_anonymous = false;
            Ok(())
        })
        .await
}

/// GoTrue's `UpdateUserEmailFromIdentities` choice: identities with a provider-verified
/// email first, then unverified ones, oldest first; the first address nobody else holds.
async fn email_from_identities(a: &Actors, user: &User) -> AuthResult<Option<String>> {
    let verified = |i: &Identity| i.identity_data.to_map().get("email_verified").and_then(Value::as_bool) == Some(true);
    let mut ranked: Vec<&Identity> = user.identities.iter().filter(|i| !i.email.is_empty()).collect();
    ranked.sort_by_key(|i| (!verified(i), i.created_at, i.id));
    for i in ranked {
        match a.users.by_email(&i.email).await? {
            Some(holder) if holder.id != user.id => continue,
            _ => return Ok(Some(i.email.clone())),
        }
    }
    Ok(None)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    fn identity(provider: &str, sub: &str) -> Identity {
        new_identity(provider, sub, &Map::new(), Timestamp(1))
    }

    #[test]
    fn providers_follow_the_identities() {
        let mut u = new_user_for_test();
        u.identities = vec![identity("email", "1"), identity("github", "2")];
        set_providers(&mut u);
        let app = u.app_metadata.to_map();
        assert_eq!(app["provider"], "email");
        assert_eq!(app["providers"], json!(["email", "github"]));
        u.identities.remove(0);
        set_providers(&mut u);
        assert_eq!(u.app_metadata.to_map()["provider"], "github", "a provider that is gone is replaced");
    }

    #[test]
    fn unconfirmed_accounts_keep_only_the_new_identity() {
        let mut u = new_user_for_test();
        u.encrypted_password = Some("$argon2id$attacker".into());
        u.phone = "15555550100".into();
        u.identities = vec![identity("email", "1"), identity("github", "2")];
        u.identities[1].identity_data = JsonText(r#"{"sub":"2","name":"Real"}"#.into());
        remove_unconfirmed_identities(&mut u, "github", "2").unwrap();
        assert!(u.encrypted_password.is_none());
        assert!(u.phone.is_empty());
        assert_eq!(u.identities.len(), 1);
        assert_eq!(u.user_metadata.to_map()["name"], "Real");
        assert_eq!(u.app_metadata.to_map()["providers"], json!(["github"]));
        assert_eq!(u.app_metadata.to_map()["provider"], "github");
    }

    fn new_user_for_test() -> User {
        User {
            id: Uuid::new_v4(),
            aud: "authenticated".into(),
            role: "authenticated".into(),
            email: "a@example.com".into(),
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
            app_metadata: JsonText(r#"{"provider":"email"}"#.into()),
            user_metadata: JsonText::empty(),
            identities: Vec::new(),
            created_at: Timestamp(1),
            updated_at: Timestamp(1),
            banned_until: None,
            deleted_at: None,
            is_anonymous: false,
            is_sso_user: false,
        }
    }
}
