//! `POST /otp` and `POST /magiclink`. Port of otp.go and magic_link.go.

use super::mail;
use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::error::AuthResult;
use ferrotrue_actors::flows::otp::{self, OtpInput};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// GoTrue's `OtpParams` / `MagicLinkParams`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct OtpParams {
    pub email: String,
    pub phone: String,
    pub create_user: bool,
    pub data: Map<String, Value>,
    pub channel: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

impl Default for OtpParams {
    fn default() -> Self {
        OtpParams {
            email: String::new(),
            phone: String::new(),
            create_user: true,
            data: Map::new(),
            channel: String::new(),
            code_challenge: None,
            code_challenge_method: None,
        }
    }
}

fn input(cx: &Ctx, req: &Req, p: OtpParams) -> AuthResult<OtpInput> {
    Ok(OtpInput {
        pkce: mail::pkce(&p.code_challenge, &p.code_challenge_method)?,
        email: p.email,
        phone: p.phone,
        create_user: p.create_user,
        data: p.data,
        channel: p.channel,
        redirect_to: mail::redirect_to(cx, req),
        aud: cx.request_aud(req.header("x-jwt-aud")),
    })
}

/// `POST /otp` → `{}` (email), `{"message_id": …}` (phone; omitted when the provider gave none).
pub async fn post(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let p: OtpParams = req.json()?;
    let input = input(cx, req, p)?;
    if input.email.is_empty() && !input.phone.is_empty() {
        let message_id = otp::phone_otp(&cx.actors, input).await?;
        return Ok(response::json_value(StatusCode::OK, &message_id_body(&message_id)));
    }
    otp::otp(&cx.actors, input).await?;
    Ok(response::json_value(StatusCode::OK, &json!({})))
}

/// `{"message_id": id}`, or `{}` when there is none.
pub fn message_id_body(message_id: &str) -> Value {
    if message_id.is_empty() {
        json!({})
    } else {
        json!({"message_id": message_id})
    }
}

/// `POST /magiclink` → `{}`.
pub async fn magiclink(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let p: OtpParams = req.json()?;
    otp::magic_link(&cx.actors, input(cx, req, p)?).await?;
    Ok(response::json_value(StatusCode::OK, &json!({})))
}
