//! `POST /signup`. Port of signup.go `Signup` (the decision logic is in `flows::signup`).

use super::{mail, meta};
use crate::dto::{SessionJson, UserJson};
use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::crypto::Secret;
use ferrotrue_actors::error::AuthResult;
use ferrotrue_actors::flows::signup::{self, SignupInput, SignupOutcome};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

/// GoTrue's `SignupParams`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignupParams {
    pub email: String,
    pub phone: String,
    pub password: Option<String>,
    pub data: Map<String, Value>,
    pub channel: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// 200 with a Session when the user is confirmed now, else 200 with the User.
pub async fn post(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let p: SignupParams = req.json()?;
    let pkce = mail::pkce(&p.code_challenge, &p.code_challenge_method)?;
    let input = SignupInput {
        email: p.email,
        phone: p.phone,
        password: p.password.map(Secret),
        data: p.data,
        channel: p.channel,
        aud: cx.request_aud(req.header("x-jwt-aud")),
        redirect_to: mail::redirect_to(cx, req),
        pkce,
        meta: meta(req),
    };
    Ok(match signup::signup(&cx.actors, input).await? {
        SignupOutcome::Session(grant) => response::json(StatusCode::OK, &SessionJson::from(grant.as_ref())),
        SignupOutcome::User(user) => response::json(StatusCode::OK, &UserJson::from(user.as_ref())),
    })
}
