//! External identity providers (OAuth 2.0 / OpenID Connect): configuration, provider clients,
//! and the id_token verification used by `/authorize`, `/callback` and `grant_type=id_token`.

/// Configured providers (`GOTRUE_EXTERNAL_<PROVIDER>_*`).
#[derive(Debug, Clone, Default)]
pub struct OAuthSettings {}
