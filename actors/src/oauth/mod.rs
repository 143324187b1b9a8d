//! External identity providers (OAuth 2.0 / OpenID Connect): configuration, provider clients,
//! and the id_token verification used by `/authorize`, `/callback` and `grant_type=id_token`.
//! Ports the facts of GoTrue's `internal/api/provider/*.go` (endpoints, scopes, profile
//! mapping) and `oidc_cache.go`; the HTTP itself is reqwest.
//!
//! Everything here runs in the request's task, never inside an actor: a slow provider costs
//! the request that called it, and no mailbox waits on the network.
//!
//! * [`ProviderKind`] / [`ProviderConfig`] — the configured providers (`GOTRUE_EXTERNAL_<P>_*`).
//! * [`client`] — the shared HTTP client (timeouts, size limits, no redirects) and its caches.
//! * [`oidc`] — discovery documents, JWKS, id_token signature and claim checks.
//! * [`providers`] — per-provider endpoints, scopes, code exchange and profile reading.
//! * [`profile`] — what a provider says about the user, in GoTrue's identity-data shape.

pub mod client;
pub mod oidc;
pub mod profile;
pub mod providers;

use crate::crypto::Secret;
use std::collections::HashMap;
use std::time::Duration;

pub use client::ProviderClient;
pub use profile::{ProviderEmail, UserData};

/// The providers ferrotrue can sign users in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderKind {
    Apple,
    Azure,
    Discord,
    GitHub,
    GitLab,
    Google,
    Keycloak,
    /// A generic OpenID Connect provider, configured by its issuer URL (discovery + JWKS).
    Oidc,
}

impl ProviderKind {
    /// Every kind, in `/settings` order.
    pub const ALL: [ProviderKind; 8] = [
        ProviderKind::Apple,
        ProviderKind::Azure,
        ProviderKind::Discord,
        ProviderKind::GitHub,
        ProviderKind::GitLab,
        ProviderKind::Google,
        ProviderKind::Keycloak,
        ProviderKind::Oidc,
    ];

    /// The wire name (`provider=github`), also the identity's `provider`.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Apple => "apple",
            ProviderKind::Azure => "azure",
            ProviderKind::Discord => "discord",
            ProviderKind::GitHub => "github",
            ProviderKind::GitLab => "gitlab",
            ProviderKind::Google => "google",
            ProviderKind::Keycloak => "keycloak",
            ProviderKind::Oidc => "oidc",
        }
    }

    /// `GOTRUE_EXTERNAL_<PREFIX>_*`.
    pub fn env_prefix(self) -> &'static str {
        match self {
            ProviderKind::Apple => "APPLE",
            ProviderKind::Azure => "AZURE",
            ProviderKind::Discord => "DISCORD",
            ProviderKind::GitHub => "GITHUB",
            ProviderKind::GitLab => "GITLAB",
            ProviderKind::Google => "GOOGLE",
            ProviderKind::Keycloak => "KEYCLOAK",
            ProviderKind::Oidc => "OIDC",
        }
    }

    /// Case-insensitive lookup of a wire name (GoTrue lower-cases `provider`).
    pub fn from_name(name: &str) -> Option<ProviderKind> {
        let name = name.trim().to_ascii_lowercase();
        ProviderKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// True for providers whose sign-in yields a verifiable OpenID Connect id_token, so they
    /// also serve `grant_type=id_token` and get a `nonce` on `/authorize`.
    pub fn is_oidc(self) -> bool {
        matches!(
            self,
            ProviderKind::Apple
                | ProviderKind::Azure
                | ProviderKind::Google
                | ProviderKind::Keycloak
                | ProviderKind::Oidc
        )
    }
}

/// One provider's `GOTRUE_EXTERNAL_<P>_*` variables.
#[derive(Debug, Clone, Default)]
pub struct ProviderConfig {
    /// `_ENABLED`.
    pub enabled: bool,
    /// `_CLIENT_ID`: a comma list; the first is used for sign-in, all are accepted as id_token
    /// audiences.
    pub client_ids: Vec<String>,
    /// `_SECRET`.
    pub secret: Secret,
    /// `_REDIRECT_URI`: the provider-facing callback; empty means `<API_EXTERNAL_URL>/callback`.
    pub redirect_uri: String,
    /// `_URL`: the provider's base (GitHub Enterprise, self-hosted GitLab, Discord), issuer
    /// (Google, Apple, generic OIDC), authority (Azure) or realm URL (Keycloak). Empty means the
    /// public default; required for Keycloak and the generic OIDC provider.
    pub url: String,
    /// `_API_URL`: the REST API base where it differs from `_URL` (GitHub).
    pub api_url: String,
    /// `_SKIP_NONCE_CHECK`: accept id_tokens whose `nonce` cannot be checked.
    pub skip_nonce_check: bool,
    /// `_EMAIL_OPTIONAL`: sign in even when the provider reports no email.
    pub email_optional: bool,
}

impl ProviderConfig {
    /// The client id used for sign-in (the first of the list).
    pub fn client_id(&self) -> &str {
        self.client_ids.first().map(String::as_str).unwrap_or_default()
    }
}

/// Configured providers plus the switches of the external sign-in flows, and the runtime
/// pieces they share (HTTP client, discovery and JWKS caches).
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// Every configured provider, enabled or not.
    pub providers: HashMap<ProviderKind, ProviderConfig>,
    /// `GOTRUE_SECURITY_MANUAL_LINKING_ENABLED`: `/user/identities/*` and `link_identity`.
    pub manual_linking_enabled: bool,
    /// `GOTRUE_MAILER_ALLOW_UNVERIFIED_EMAIL_SIGN_INS`: sign in with an unverified provider
    /// email (a confirmation mail is still sent).
    pub allow_unverified_email_sign_ins: bool,
    /// `GOTRUE_EXTERNAL_REDIRECT_URL` (legacy): overrides every final app redirect.
    pub redirect_url: String,
    /// `GOTRUE_EXTERNAL_IOS_BUNDLE_ID`: also accepted as an Apple id_token audience.
    pub ios_bundle_id: String,
    /// `GOTRUE_INTERNAL_HTTP_TIMEOUT`: bound on each request to a provider.
    pub http_timeout: Duration,
    /// Bound on all provider traffic of one callback, kept below the request timeout so a slow
    /// provider ends in an error redirect, not a 504 page.
    pub provider_budget: Duration,
    /// How long discovery documents and key sets are trusted before they are fetched again.
    pub cache_ttl: Duration,
    /// The shared HTTP client and caches (clones share them).
    pub client: ProviderClient,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        OAuthSettings {
            providers: HashMap::new(),
            manual_linking_enabled: false,
            allow_unverified_email_sign_ins: false,
            redirect_url: String::new(),
            ios_bundle_id: String::new(),
            http_timeout: Duration::from_secs(5),
            provider_budget: Duration::from_secs(8),
            cache_ttl: Duration::from_secs(3600),
            client: ProviderClient::default(),
        }
    }
}

impl OAuthSettings {
    /// The configuration of `kind` if it is enabled.
    pub fn enabled(&self, kind: ProviderKind) -> Option<&ProviderConfig> {
        self.providers.get(&kind).filter(|c| c.enabled)
    }

    /// True when `kind` is enabled (for `/settings`).
    pub fn is_enabled(&self, kind: ProviderKind) -> bool {
        self.enabled(kind).is_some()
    }
}
