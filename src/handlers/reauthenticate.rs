//! `GET /reauthenticate`. Port of reauthenticate.go.

use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::error::AuthResult;
use ferrotrue_actors::flows::auth::authenticate;
use ferrotrue_actors::flows::reauthenticate;
use http::StatusCode;

/// Mails a nonce to the signed-in user → `{}`.
pub async fn get(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let auth = authenticate(&cx.actors, req.bearer()).await?;
    let message_id = reauthenticate::reauthenticate(&cx.actors, auth).await?;
    Ok(response::json_value(StatusCode::OK, &super::otp::message_id_body(&message_id)))
}
