//! `POST /logout?scope=global|local|others`. Port of logout.go.

use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::error::AuthResult;
use ferrotrue_actors::flows::auth::authenticate;
use ferrotrue_actors::flows::logout;
use http::StatusCode;

/// 204 with an empty body.
pub async fn post(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let auth = authenticate(&cx.actors, req.bearer()).await?;
    let scope = logout::scope(req.query("scope"))?;
    logout::logout(&cx.actors, auth, scope).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}
