//! Per-provider facts (GoTrue's `internal/api/provider/<name>.go`): endpoints and their
//! overridable bases, default scopes, the authorization URL, the code exchange, and how the
//! profile and emails are read — from the REST API (GitHub, GitLab, Discord), the userinfo
//! endpoint (Keycloak) or a verified id_token (Google, Azure, Apple, generic OIDC).

use super::client::ProviderError;
use super::oidc::{self, IdTokenError};
use super::profile::{self, UserData};
use super::{OAuthSettings, ProviderConfig, ProviderKind};
use serde_json::{Map, Value};

/// Google's issuer (`_URL` overrides it, e.g. for tests).
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
/// Apple's issuer; Apple also signs as [`APPLE_OTHER_ISSUER`].
pub const APPLE_ISSUER: &str = "https://appleid.apple.com";
pub const APPLE_OTHER_ISSUER: &str = "https://account.apple.com";
/// Azure's multi-tenant authority.
pub const AZURE_AUTHORITY: &str = "https://login.microsoftonline.com/common";

/// Where a provider lives.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorize: String,
    pub token: String,
    /// REST API base (GitHub, GitLab, Discord) or the issuer (OIDC providers).
    pub api: String,
    pub userinfo: Option<String>,
    /// Key set of its id_tokens, when it is known up front (not for Azure: per tenant).
    pub jwks_uri: Option<String>,
    /// Accepted `iss` values of its id_tokens.
    pub issuers: Vec<String>,
}

/// What the token endpoint returned.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub id_token: String,
}

fn base(url: &str, default: &str) -> String {
    if url.is_empty() {
        default.to_owned()
    } else {
        url.trim_end_matches('/').to_owned()
    }
}

fn required(cfg: &ProviderConfig, kind: ProviderKind) -> Result<String, ProviderError> {
    if cfg.url.is_empty() {
        return Err(ProviderError::Config(format!(
            "GOTRUE_EXTERNAL_{}_URL is required for {}",
            kind.env_prefix(),
            kind.name()
        )));
    }
    Ok(cfg.url.trim_end_matches('/').to_owned())
}

/// The endpoints of `kind` (discovery for Google, Apple and the generic OIDC provider).
pub async fn endpoints(
    s: &OAuthSettings,
    kind: ProviderKind,
    cfg: &ProviderConfig,
) -> Result<Endpoints, ProviderError> {
    let fixed = |authorize: String, token: String, api: String| Endpoints {
        authorize,
        token,
        api,
        userinfo: None,
        jwks_uri: None,
        issuers: Vec::new(),
    };
    Ok(match kind {
        ProviderKind::GitHub => {
            let host = base(&cfg.url, "https://github.com");
            let api = if !cfg.api_url.is_empty() {
                cfg.api_url.trim_end_matches('/').to_owned()
            } else if cfg.url.is_empty() {
                "https://api.github.com".to_owned()
            } else {
                format!("{host}/api/v3") // GitHub Enterprise
            };
            fixed(format!("{host}/login/oauth/authorize"), format!("{host}/login/oauth/access_token"), api)
        }
        ProviderKind::GitLab => {
            let host = base(&cfg.url, "https://gitlab.com");
            fixed(format!("{host}/oauth/authorize"), format!("{host}/oauth/token"), host)
        }
        ProviderKind::Discord => {
            let api = format!("{}/api", base(&cfg.url, "https://discord.com"));
            fixed(format!("{api}/oauth2/authorize"), format!("{api}/oauth2/token"), api)
        }
        ProviderKind::Azure => {
            let authority = base(&cfg.url, AZURE_AUTHORITY);
            fixed(format!("{authority}/oauth2/v2.0/authorize"), format!("{authority}/oauth2/v2.0/token"), authority)
        }
        ProviderKind::Keycloak => {
            let realm = required(cfg, kind)?;
            Endpoints {
                authorize: format!("{realm}/protocol/openid-connect/auth"),
                token: format!("{realm}/protocol/openid-connect/token"),
                userinfo: Some(format!("{realm}/protocol/openid-connect/userinfo")),
                jwks_uri: Some(format!("{realm}/protocol/openid-connect/certs")),
                issuers: vec![realm.clone()],
                api: realm,
            }
        }
        ProviderKind::Google | ProviderKind::Apple | ProviderKind::Oidc => {
            let issuer = match kind {
                ProviderKind::Google => base(&cfg.url, GOOGLE_ISSUER),
                ProviderKind::Apple => base(&cfg.url, APPLE_ISSUER),
                _ => required(cfg, kind)?,
            };
            let doc = oidc::discovery(s, &issuer).await?;
            let mut issuers = vec![issuer.clone()];
            if kind == ProviderKind::Google && cfg.url.is_empty() {
                issuers.push("accounts.google.com".into()); // Google's older `iss` spelling
            }
            if kind == ProviderKind::Apple && cfg.url.is_empty() {
                issuers.push(APPLE_OTHER_ISSUER.into());
            }
            Endpoints {
                authorize: doc.authorization_endpoint,
                token: doc.token_endpoint,
                userinfo: doc.userinfo_endpoint,
                jwks_uri: Some(doc.jwks_uri),
                issuers,
                api: issuer,
            }
        }
    })
}

/// The scopes GoTrue asks each provider for (user scopes are appended).
pub fn default_scopes(kind: ProviderKind) -> &'static [&'static str] {
    match kind {
        ProviderKind::GitHub => &["user:email"],
        ProviderKind::GitLab => &["read_user"],
        ProviderKind::Discord => &["email", "identify"],
        ProviderKind::Google => &["email", "profile"],
        ProviderKind::Azure => &["openid"],
        ProviderKind::Apple => &["email", "name"],
        // GoTrue asks for `profile email`; Keycloak ≥ 20 refuses userinfo without `openid`.
        ProviderKind::Keycloak => &["openid", "profile", "email"],
        ProviderKind::Oidc => &["openid", "email", "profile"],
    }
}

/// The `scope` parameter: defaults plus the request's `scopes` (space or comma separated).
pub fn scope_param(kind: ProviderKind, requested: &str) -> String {
    let mut scopes: Vec<&str> = default_scopes(kind).to_vec();
    if kind != ProviderKind::Apple {
        for s in requested.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
    }
    scopes.join(" ")
}

/// What goes into the authorization URL besides the endpoint.
pub struct AuthorizeParams<'a> {
    pub state: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: &'a str,
    pub nonce: &'a str,
    /// Caller's extra parameters, already stripped of the reserved ones.
    pub extra: &'a [(String, String)],
}

/// The provider's authorization URL for one flow.
pub fn authorize_url(kind: ProviderKind, cfg: &ProviderConfig, ep: &Endpoints, p: &AuthorizeParams<'_>) -> String {
    let mut pairs: Vec<(String, String)> = vec![
        ("client_id".into(), cfg.client_id().to_owned()),
        ("redirect_uri".into(), p.redirect_uri.to_owned()),
        ("response_type".into(), "code".into()),
        ("scope".into(), scope_param(kind, p.scopes)),
        ("state".into(), p.state.to_owned()),
    ];
    if kind == ProviderKind::Apple {
        pairs.push(("response_mode".into(), "form_post".into())); // Apple posts back to /callback
    }
    if !p.nonce.is_empty() {
        pairs.push(("nonce".into(), p.nonce.to_owned()));
    }
    pairs.extend(p.extra.iter().cloned());
    pairs.sort();
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        query.append_pair(k, v);
    }
    let sep = if ep.authorize.contains('?') { '&' } else { '?' };
    // Go's encoder writes spaces as %20 for Apple; both decode the same.
    format!("{}{sep}{}", ep.authorize, query.finish().replace('+', "%20"))
}

/// Exchanges the authorization code at the token endpoint (client secret in the form body,
/// which every supported provider accepts).
pub async fn exchange(
    s: &OAuthSettings,
    cfg: &ProviderConfig,
    ep: &Endpoints,
    code: &str,
    redirect_uri: &str,
) -> Result<Tokens, ProviderError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", cfg.client_id()),
        ("client_secret", cfg.secret.expose()),
    ];
    let body = s.client.post_form(s.http_timeout, &ep.token, &form).await?;
    let obj = body.as_object().cloned().unwrap_or_default();
    // GitHub answers a bad code with 200 and an `error` field.
    if let Some(err) = obj.get("error").and_then(Value::as_str) {
        let desc = profile::s(&obj, "error_description");
        return Err(ProviderError::Invalid { url: ep.token.clone(), msg: format!("{err}: {desc}") });
    }
    let tokens = Tokens {
        access_token: profile::s(&obj, "access_token"),
        refresh_token: profile::s(&obj, "refresh_token"),
        id_token: profile::s(&obj, "id_token"),
    };
    if tokens.access_token.is_empty() && tokens.id_token.is_empty() {
        return Err(ProviderError::Invalid { url: ep.token.clone(), msg: "no access_token in the response".into() });
    }
    Ok(tokens)
}

async fn get_object(s: &OAuthSettings, url: &str, token: &str) -> Result<Map<String, Value>, ProviderError> {
    match s.client.get_json(s.http_timeout, url, Some(token)).await? {
        Value::Object(map) => Ok(map),
        _ => Err(ProviderError::Invalid { url: url.to_owned(), msg: "expected a JSON object".into() }),
    }
}

async fn get_array(s: &OAuthSettings, url: &str, token: &str) -> Result<Vec<Value>, ProviderError> {
    match s.client.get_json(s.http_timeout, url, Some(token)).await? {
        Value::Array(items) => Ok(items),
        _ => Err(ProviderError::Invalid { url: url.to_owned(), msg: "expected a JSON array".into() }),
    }
}

/// Why reading the profile failed.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
    #[error("{0}")]
    Check(String),
}

/// Reads the user's profile and emails after a successful code exchange. `nonce` is what was
/// sent on `/authorize` (checked against the id_token); `apple_user` is Apple's first-login
/// `user` form field.
pub async fn user_data(
    s: &OAuthSettings,
    kind: ProviderKind,
    cfg: &ProviderConfig,
    ep: &Endpoints,
    tokens: &Tokens,
    nonce: &str,
    apple_user: &str,
) -> Result<UserData, ProfileError> {
    let token = tokens.access_token.as_str();
    match kind {
        ProviderKind::GitHub => {
            let user = get_object(s, &format!("{}/user", ep.api), token).await?;
            let emails = get_array(s, &format!("{}/user/emails", ep.api), token).await?;
            Ok(profile::github(&ep.api, &user, &emails))
        }
        ProviderKind::GitLab => {
            let user = get_object(s, &format!("{}/api/v4/user", ep.api), token).await?;
            let emails = get_array(s, &format!("{}/api/v4/user/emails", ep.api), token).await?;
            Ok(profile::gitlab(&ep.api, &user, &emails))
        }
        ProviderKind::Discord => {
            let user = get_object(s, &format!("{}/users/@me", ep.api), token).await?;
            Ok(profile::discord(&ep.api, &user))
        }
        ProviderKind::Keycloak => {
            let url = ep.userinfo.clone().unwrap_or_default();
            let info = get_object(s, &url, token).await?;
            Ok(profile::keycloak(&ep.api, &info))
        }
        ProviderKind::Apple if tokens.id_token.is_empty() || token.is_empty() => Ok(UserData::default()),
        ProviderKind::Google | ProviderKind::Oidc if tokens.id_token.is_empty() => {
            let url = ep.userinfo.clone().ok_or_else(|| ProfileError::Check("no id_token and no userinfo".into()))?;
            let info = get_object(s, &url, token).await?;
            let mut data = if kind == ProviderKind::Google { profile::google(&info) } else { profile::generic(&info) };
            if data.claims.iss.is_empty() {
                data.claims.iss.clone_from(&ep.api);
            }
            Ok(data)
        }
        ProviderKind::Google | ProviderKind::Apple | ProviderKind::Azure | ProviderKind::Oidc => {
            if tokens.id_token.is_empty() {
                return Err(ProfileError::Check(format!("{}: no OIDC id_token in the token response", kind.name())));
            }
            let claims = verify(s, kind, cfg, ep, &tokens.id_token).await?;
            let aud = oidc::audiences(&claims);
            if !aud.iter().any(|a| a == cfg.client_id()) {
                return Err(ProfileError::Check(format!("id_token audience {aud:?} is not {}", cfg.client_id())));
            }
            let token_nonce = oidc::string_claim(&claims, "nonce");
            if !nonce.is_empty() && !cfg.skip_nonce_check && token_nonce != nonce {
                return Err(ProfileError::Check("id_token nonce does not match the one sent".into()));
            }
            let mut data = profile_from_id_token(kind, &claims);
            if kind == ProviderKind::Apple && !apple_user.is_empty() {
                profile::apple_name(&mut data, apple_user);
            }
            if kind == ProviderKind::Oidc && data.emails.is_empty() {
                merge_userinfo(s, ep, token, &mut data).await?;
            }
            Ok(data)
        }
    }
}

/// Some OpenID providers put the email only in userinfo: merge it in (same subject only).
async fn merge_userinfo(
    s: &OAuthSettings,
    ep: &Endpoints,
    token: &str,
    data: &mut UserData,
) -> Result<(), ProfileError> {
    let Some(url) = ep.userinfo.as_deref().filter(|_| !token.is_empty()) else { return Ok(()) };
    let info = get_object(s, url, token).await?;
    if profile::s(&info, "sub") != data.claims.sub {
        return Err(ProfileError::Check("userinfo subject differs from the id_token's".into()));
    }
    let extra = profile::generic(&info);
    data.emails = extra.emails;
    for (mine, theirs) in [
        (&mut data.claims.name, extra.claims.name),
        (&mut data.claims.full_name, extra.claims.full_name),
        (&mut data.claims.picture, extra.claims.picture),
        (&mut data.claims.avatar_url, extra.claims.avatar_url),
        (&mut data.claims.preferred_username, extra.claims.preferred_username),
    ] {
        if mine.is_empty() {
            *mine = theirs;
        }
    }
    Ok(())
}

/// Maps verified id_token claims to a profile the way GoTrue does for each issuer.
pub fn profile_from_id_token(kind: ProviderKind, claims: &Map<String, Value>) -> UserData {
    match kind {
        ProviderKind::Google => profile::google(claims),
        ProviderKind::Apple => profile::apple(claims),
        ProviderKind::Azure => profile::azure(claims),
        _ => profile::generic(claims),
    }
}

/// True when `iss` may sign Azure tokens for this configuration: a tenant authority (or a
/// private one, as in tests) pins `<authority>/v2.0`; the multi-tenant default accepts any
/// Microsoft issuer.
pub fn azure_issuer_ok(cfg: &ProviderConfig, iss: &str) -> bool {
    let authority = base(&cfg.url, AZURE_AUTHORITY);
    let multi_tenant = ["common", "organizations", "consumers"]
        .iter()
        .any(|t| authority == format!("https://login.microsoftonline.com/{t}"));
    if multi_tenant {
        let re_ms =
            iss.starts_with("https://login.microsoftonline.com/") || iss.starts_with("https://sts.windows.net/");
        return re_ms && !iss.contains(['?', '#']);
    }
    oidc::trim_issuer(iss) == format!("{authority}/v2.0")
}

/// Verifies an id_token of `kind`: keys from the provider's JWKS (Azure: from the discovery
/// document of the token's own, already vetted, issuer), issuer in the accepted set.
pub async fn verify(
    s: &OAuthSettings,
    kind: ProviderKind,
    cfg: &ProviderConfig,
    ep: &Endpoints,
    id_token: &str,
) -> Result<Map<String, Value>, ProfileError> {
    if kind == ProviderKind::Azure {
        let iss = oidc::string_claim(&oidc::peek_claims(id_token)?, "iss");
        if !azure_issuer_ok(cfg, &iss) {
            return Err(ProfileError::Check(format!("azure: id_token issuer {iss:?} is not accepted")));
        }
        let doc = oidc::discovery(s, &iss).await?;
        return Ok(oidc::verify(s, id_token, &doc.jwks_uri, &[iss]).await?);
    }
    let jwks = ep.jwks_uri.clone().ok_or_else(|| ProfileError::Check(format!("{}: no key set", kind.name())))?;
    Ok(oidc::verify(s, id_token, &jwks, &ep.issuers).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_defaults_plus_requested() {
        assert_eq!(scope_param(ProviderKind::GitHub, "repo, gist"), "user:email repo gist");
        assert_eq!(scope_param(ProviderKind::Google, "email openid"), "email profile openid");
        assert_eq!(scope_param(ProviderKind::Apple, "anything"), "email name");
    }

    #[test]
    fn azure_issuers() {
        let mut cfg = ProviderConfig::default();
        assert!(azure_issuer_ok(&cfg, "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"));
        assert!(!azure_issuer_ok(&cfg, "https://evil.example/v2.0"));
        cfg.url = "https://login.microsoftonline.com/tenant-a".into();
        assert!(azure_issuer_ok(&cfg, "https://login.microsoftonline.com/tenant-a/v2.0"));
        assert!(!azure_issuer_ok(&cfg, "https://login.microsoftonline.com/tenant-b/v2.0"));
        cfg.url = "http://127.0.0.1:8080/tenant".into();
        assert!(azure_issuer_ok(&cfg, "http://127.0.0.1:8080/tenant/v2.0"));
    }

    #[test]
    fn authorize_url_carries_state_scope_and_extras() {
        let cfg = ProviderConfig { client_ids: vec!["cid".into()], ..ProviderConfig::default() };
        let ep = Endpoints {
            authorize: "https://github.com/login/oauth/authorize".into(),
            token: String::new(),
            api: String::new(),
            userinfo: None,
            jwks_uri: None,
            issuers: Vec::new(),
        };
        let extra = vec![("login".to_owned(), "octo cat".to_owned())];
        let p = AuthorizeParams {
            state: "st",
            redirect_uri: "https://a/callback",
            scopes: "repo",
            nonce: "",
            extra: &extra,
        };
        let url = authorize_url(ProviderKind::GitHub, &cfg, &ep, &p);
        assert_eq!(
            url,
            "https://github.com/login/oauth/authorize?client_id=cid&login=octo%20cat&redirect_uri=https%3A%2F%2Fa%2Fcallback&response_type=code&scope=user%3Aemail%20repo&state=st"
        );
    }
}
