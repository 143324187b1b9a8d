//! Bearer-token authentication for user endpoints: GoTrue's `requireAuthentication` plus the
//! user and session lookups every U endpoint makes.

use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::jwt::PresentedClaims;
use crate::session_manager::model::Session;
use crate::user_registry::model::User;
use crate::Actors;

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    /// `None` for tokens without `session_id` (hand-made tokens).
    pub session: Option<Session>,
    pub claims: PresentedClaims,
}

/// Verifies the bearer token and loads its user and session (SPEC §1.12 failure list).
pub async fn authenticate(a: &Actors, bearer: Option<&str>) -> AuthResult<Authenticated> {
    let token = bearer.filter(|t| !t.is_empty()).ok_or_else(|| {
        AuthError::unauthorized(ErrorCode::NoAuthorization, "This endpoint requires a valid Bearer token")
    })?;
    let (claims, user_id) = a.jwt.verify_user_token(token)?;
    // GoTrue: an empty or nil session_id means "no session"; anything else must be a UUID.
    let session_id = crate::jwt::JwtKeys::session_id(&claims);
    // The user and the session are read at once (two round trips in parallel on Postgres); the
    // errors keep GoTrue's order: the user first, then the session id, then the session.
    let session_lookup = async {
        match &session_id {
            Ok(Some(id)) => a.sessions.get(*id).await,
            _ => Ok(None),
        }
    };
    let (user, session) = tokio::join!(a.users.get(user_id), session_lookup);
    let user = user?
        .ok_or_else(|| AuthError::forbidden(ErrorCode::UserNotFound, "User from sub claim in JWT does not exist"))?;
    let session = match session_id? {
        None => None,
        Some(_) => {
            let missing = || {
                AuthError::forbidden(ErrorCode::SessionNotFound, "Session from session_id claim in JWT does not exist")
            };
            let session = session?.ok_or_else(missing)?;
            if session.user_id != user.id {
                return Err(missing());
            }
            Some(session)
        }
    };
    if user.is_banned(a.clock.now()) {
        return Err(AuthError::forbidden(ErrorCode::UserBanned, "User is banned"));
    }
    Ok(Authenticated { user, session, claims })
}
