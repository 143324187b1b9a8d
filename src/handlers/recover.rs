//! `POST /recover`. Port of recover.go.

use super::mail;
use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::error::AuthResult;
use ferrotrue_actors::flows::recover;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

/// GoTrue's `RecoverParams`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RecoverParams {
    pub email: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// `{}` whether or not the address exists.
pub async fn post(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let p: RecoverParams = req.json()?;
    let pkce = mail::pkce(&p.code_challenge, &p.code_challenge_method)?;
    recover::recover(&cx.actors, &p.email, &mail::redirect_to(cx, req), pkce).await?;
    Ok(response::json_value(StatusCode::OK, &json!({})))
}
