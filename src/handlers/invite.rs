//! `POST /invite` (admin). Port of invite.go.

use super::{mail, require_admin};
use crate::dto::UserJson;
use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::error::AuthResult;
use ferrotrue_actors::flows::invite;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

/// GoTrue's `InviteParams`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InviteParams {
    pub email: String,
    pub data: Map<String, Value>,
}

/// 200 with the invited User.
pub async fn post(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let role = require_admin(cx, req).await?;
    let p: InviteParams = req.json()?;
    let aud = cx.request_aud(req.header("x-jwt-aud"));
    let user = invite::invite(&cx.actors, &role, &p.email, p.data, &mail::redirect_to(cx, req), &aud).await?;
    Ok(response::json(StatusCode::OK, &UserJson::from(&user)))
}
