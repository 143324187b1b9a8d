//! `POST /token`: dispatch on `grant_type` (query string), as token.go `Token` does.

use super::meta;
use crate::dto::SessionJson;
use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::crypto::Secret;
use ferrotrue_actors::error::{AuthError, AuthResult, ErrorCode};
use ferrotrue_actors::flows::token::{self, PasswordGrant};
use http::StatusCode;
use serde::Deserialize;

/// `grant_type=password` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PasswordGrantParams {
    pub email: String,
    pub phone: String,
    pub password: String,
}

/// `grant_type=refresh_token` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RefreshTokenGrantParams {
    pub refresh_token: String,
}

/// `grant_type=pkce` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PkceGrantParams {
    pub auth_code: String,
    pub code_verifier: String,
}

/// Issues a Session for the grant; unknown grants are GoTrue's 400 `invalid_credentials`.
pub async fn post(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let grant = match req.query("grant_type") {
        Some("password") => {
            let p: PasswordGrantParams = req.json()?;
            cx.limits.password_attempt(&crate::http::limits::account_key(&p.email, &p.phone), req.client)?;
            let input = PasswordGrant { email: p.email, phone: p.phone, password: Secret(p.password), meta: meta(req) };
            token::password(&cx.actors, input).await?
        }
        Some("refresh_token") => {
            let p: RefreshTokenGrantParams = req.json()?;
            token::refresh(&cx.actors, &p.refresh_token).await?
        }
        Some("id_token") => return super::external::id_token(cx, req).await,
        Some("pkce") => {
            let p: PkceGrantParams = req.json()?;
            token::pkce(&cx.actors, &p.auth_code, &p.code_verifier, &meta(req)).await?
        }
        _ => return Err(AuthError::bad_request(ErrorCode::InvalidCredentials, "unsupported_grant_type")),
    };
    Ok(response::json(StatusCode::OK, &SessionJson::from(&grant)))
}
