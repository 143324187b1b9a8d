//! `GET /user` and `PUT /user`. Port of user.go.

use crate::dto::UserJson;
use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::crypto::Secret;
use ferrotrue_actors::error::AuthResult;
use ferrotrue_actors::flows::auth::authenticate;
use ferrotrue_actors::flows::user::{self, UserUpdate};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The caller's User.
pub async fn get(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let auth = authenticate(&cx.actors, req.bearer()).await?;
    let user = user::get(auth, &cx.request_aud(req.header("x-jwt-aud")))?;
    Ok(response::json(StatusCode::OK, &UserJson::from(&user)))
}

/// GoTrue's `UserUpdateParams`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UserUpdateParams {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub password: Option<String>,
    pub data: Option<Map<String, Value>>,
    pub app_metadata: Option<Map<String, Value>>,
    pub nonce: Option<String>,
    pub channel: Option<String>,
}

/// Updates metadata and/or password; returns the User.
pub async fn put(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let auth = authenticate(&cx.actors, req.bearer()).await?;
    let p: UserUpdateParams = req.json()?;
    let input = UserUpdate {
        email: p.email,
        phone: p.phone,
        password: p.password.map(Secret),
        data: p.data,
        app_metadata: p.app_metadata,
        nonce: p.nonce,
        channel: p.channel,
        redirect_to: super::mail::redirect_to(cx, req),
    };
    let user = user::update(&cx.actors, auth, input).await?;
    Ok(response::json(StatusCode::OK, &UserJson::from(&user)))
}
