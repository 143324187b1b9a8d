//! `POST /resend`. Port of resend.go.

use super::mail;
use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::error::AuthResult;
use ferrotrue_actors::flows::resend::{self, ResendInput};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

/// GoTrue's `ResendConfirmationParams`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResendParams {
    #[serde(rename = "type")]
    pub kind: String,
    pub email: String,
    pub phone: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// `{}`.
pub async fn post(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let p: ResendParams = req.json()?;
    let input = ResendInput {
        pkce: mail::pkce(&p.code_challenge, &p.code_challenge_method)?,
        kind: p.kind,
        email: p.email,
        phone: p.phone,
        redirect_to: mail::redirect_to(cx, req),
    };
    resend::resend(&cx.actors, input).await?;
    Ok(response::json_value(StatusCode::OK, &json!({})))
}
