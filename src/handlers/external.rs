//! `GET /authorize`, `GET|POST /callback`, identity linking, and `grant_type=id_token`.
//! Port of external.go, identity.go and token_oidc.go.

use crate::http::request::Req;
use crate::http::response::Resp;
use crate::state::Ctx;
use ferrotrue_actors::error::{AuthError, AuthResult, ErrorCode};

/// True for every path this module serves.
pub fn owns(path: &str) -> bool {
    path == "/authorize" || path == "/callback" || path.starts_with("/user/identities")
}

/// Dispatches the external-provider routes.
pub async fn route(_cx: &Ctx, _req: &Req, _path: &str) -> AuthResult<Resp> {
    Err(AuthError::not_found(ErrorCode::NotFound, "404 page not found"))
}

/// `POST /token?grant_type=id_token`.
pub async fn id_token(_cx: &Ctx, _req: &Req) -> AuthResult<Resp> {
    Err(AuthError::bad_request(ErrorCode::InvalidCredentials, "unsupported_grant_type"))
}
