//! What every handler can reach.

use crate::config::Config;
use ferrotrue_actors::Actors;
use std::sync::Arc;

/// Shared by all requests; cheap to clone behind an `Arc`.
pub struct Ctx {
    pub actors: Actors,
    pub config: Arc<Config>,
    /// Per-client rate limits and the password throttle.
    pub limits: Arc<crate::http::limits::Limits>,
    /// The last readiness report (`GET /ready` probes at most once a second for everyone).
    pub ready: crate::handlers::health::ReadyCache,
}

impl Ctx {
    /// The audience of this request: `X-JWT-AUD` if sent, else `GOTRUE_JWT_AUD`.
    pub fn request_aud(&self, header: Option<&str>) -> String {
        header.filter(|a| !a.is_empty()).unwrap_or(&self.config.settings.jwt.aud).to_owned()
    }
}
