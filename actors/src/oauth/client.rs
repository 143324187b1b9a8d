//! The HTTP client that talks to providers: one reqwest client per server (connection pool,
//! rustls), a timeout on every request, no redirects followed, bodies capped at
//! [`MAX_BODY`], and the caches of discovery documents and key sets (GoTrue's
//! `OIDCProviderCache`: a stale entry is served when a refresh fails).

use super::oidc::Discovery;
use jsonwebtoken::jwk::Jwk;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Largest provider response read (token, profile, discovery, JWKS).
pub const MAX_BODY: usize = 1024 * 1024;

/// The User-Agent sent to providers (GitHub's API refuses requests without one).
const USER_AGENT: &str = concat!("ferrotrue/", env!("CARGO_PKG_VERSION"));

/// Why a conversation with a provider failed. Logged, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: {msg}")]
    Invalid { url: String, msg: String },
    #[error("provider configuration: {0}")]
    Config(String),
    #[error("provider did not answer within {0:?}")]
    Timeout(Duration),
}

/// A cached value and when it was fetched.
#[derive(Debug, Clone)]
pub(crate) struct Cached<T> {
    pub value: T,
    pub fetched: Instant,
}

#[derive(Default)]
struct Inner {
    http: OnceLock<reqwest::Client>,
    discovery: Mutex<HashMap<String, Cached<Discovery>>>,
    jwks: Mutex<HashMap<String, Cached<Vec<Jwk>>>>,
}

/// Cheap-to-clone handle on the HTTP client and the caches; clones share them.
#[derive(Clone, Default)]
pub struct ProviderClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProviderClient")
    }
}

impl ProviderClient {
    /// The reqwest client, built on first use with `timeout` per request.
    fn http(&self, timeout: Duration) -> Result<&reqwest::Client, ProviderError> {
        if let Some(client) = self.inner.http.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| ProviderError::Config(format!("HTTP client: {e}")))?;
        Ok(self.inner.http.get_or_init(|| client))
    }

    /// `GET url` (optionally with a bearer token) → JSON.
    pub async fn get_json(&self, timeout: Duration, url: &str, bearer: Option<&str>) -> Result<Value, ProviderError> {
        let mut req = self.http(timeout)?.get(url).header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        read_json(url, req.send().await).await
    }

    /// `POST url` with a form body → JSON (the token endpoint).
    pub async fn post_form(&self, timeout: Duration, url: &str, form: &[(&str, &str)]) -> Result<Value, ProviderError> {
        let req = self.http(timeout)?.post(url).header(reqwest::header::ACCEPT, "application/json").form(form);
        read_json(url, req.send().await).await
    }

    pub(crate) fn cached_discovery(&self, issuer: &str) -> Option<Cached<Discovery>> {
        self.inner.discovery.lock().ok().and_then(|m| m.get(issuer).cloned())
    }

    pub(crate) fn store_discovery(&self, issuer: &str, doc: Discovery) {
        if let Ok(mut m) = self.inner.discovery.lock() {
            m.insert(issuer.to_owned(), Cached { value: doc, fetched: Instant::now() });
        }
    }

    pub(crate) fn cached_jwks(&self, uri: &str) -> Option<Cached<Vec<Jwk>>> {
        self.inner.jwks.lock().ok().and_then(|m| m.get(uri).cloned())
    }

    pub(crate) fn store_jwks(&self, uri: &str, keys: Vec<Jwk>) {
        if let Ok(mut m) = self.inner.jwks.lock() {
            m.insert(uri.to_owned(), Cached { value: keys, fetched: Instant::now() });
        }
    }
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes; a non-2xx status is an error carrying the
/// start of the body (providers explain themselves there).
async fn read_json(url: &str, sent: Result<reqwest::Response, reqwest::Error>) -> Result<Value, ProviderError> {
    let transport = |source| ProviderError::Transport { url: url.to_owned(), source };
    let mut resp = sent.map_err(transport)?;
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ProviderError::Invalid { url: url.to_owned(), msg: "response body too large".into() });
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let excerpt: String = text.chars().take(300).collect();
        return Err(ProviderError::Status { url: url.to_owned(), status: status.as_u16(), body: excerpt });
    }
    serde_json::from_slice(&body)
        .map_err(|e| ProviderError::Invalid { url: url.to_owned(), msg: format!("response is not JSON: {e}") })
}
