//! One file per GoTrue endpoint family (internal/api/*.go). Handlers parse, call one flow,
//! render.

pub mod admin;
pub mod external;
pub mod factors;
pub mod factors_webauthn;
pub mod health;
pub mod invite;
pub mod logout;
pub mod mail;
pub mod otp;
pub mod reauthenticate;
pub mod recover;
pub mod resend;
pub mod settings;
pub mod signup;
pub mod token;
pub mod user;
pub mod verify;

use crate::http::request::Req;
use crate::state::Ctx;
use ferrotrue_actors::error::{AuthError, AuthResult, ErrorCode};
use ferrotrue_actors::flows::RequestMeta;
use ferrotrue_actors::jwt::JwtKeys;

/// Admin endpoints: a valid JWT whose `role` is in `GOTRUE_JWT_ADMIN_ROLES`; if it carries a
/// session, that session must still exist. Returns the role (the audit log's actor).
pub async fn require_admin(cx: &Ctx, req: &Req) -> AuthResult<String> {
    let token = req.bearer().filter(|t| !t.is_empty()).ok_or_else(|| {
        AuthError::unauthorized(ErrorCode::NoAuthorization, "This endpoint requires a valid Bearer token")
    })?;
    let claims = cx.actors.jwt.verify(token)?;
    // GoTrue's requireAdminCredentials reads `session_id` before the role: a malformed one is a
    // 403 `bad_jwt` even on a token with an admin role.
    let session_id = JwtKeys::session_id(&claims)?;
    if !cx.actors.jwt.is_admin_role(&claims) {
        return Err(AuthError::forbidden(ErrorCode::NotAdmin, "User not allowed"));
    }
    if let Some(id) = session_id {
        if cx.actors.sessions.get(id).await?.is_none() {
            return Err(AuthError::forbidden(ErrorCode::SessionExpired, "Session has expired"));
        }
    }
    Ok(claims.role.unwrap_or_default())
}

/// Session metadata from the request.
pub fn meta(req: &Req) -> RequestMeta {
    RequestMeta { user_agent: req.user_agent(), ip: req.client_ip() }
}
