//! Shared bits of the email endpoints: the redirect target and PKCE parameters.

use crate::http::request::Req;
use crate::state::Ctx;
use ferrotrue_actors::error::AuthResult;
use ferrotrue_actors::flows::email::{pkce_params, Pkce};

/// The validated redirect target for links in mails (falls back to `GOTRUE_SITE_URL`).
pub fn redirect_to(cx: &Ctx, req: &Req) -> String {
    let candidates = req.redirect_candidates();
    cx.actors.redirects.choose(candidates.iter().map(String::as_str))
}

/// PKCE parameters from a body's `code_challenge` / `code_challenge_method`.
pub fn pkce(challenge: &Option<String>, method: &Option<String>) -> AuthResult<Option<Pkce>> {
    pkce_params(challenge.as_deref(), method.as_deref())
}
