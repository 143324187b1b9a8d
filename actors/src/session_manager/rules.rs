//! The session manager's decisions, shared by both backends (sled state and
//! [`crate::pg::sessions`]): which error, session limits, what a replayed (revoked) refresh token
//! gets, which sessions a logout ends, how MFA changes a session. The backends only load and store.

use super::model::{AmrEntry, Session};
use super::state::LogoutScope;
use crate::clock::Timestamp;
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::settings::Settings;
use uuid::Uuid;

/// A refresh token nobody issued (or one swept since).
pub fn token_not_found() -> AuthError {
    AuthError::bad_request(ErrorCode::RefreshTokenNotFound, "Invalid Refresh Token: Refresh Token Not Found")
}

/// A refresh token whose session is gone.
pub fn session_not_found() -> AuthError {
    AuthError::bad_request(ErrorCode::SessionNotFound, "Invalid Refresh Token: Session Not Found")
}

/// A revoked refresh token presented outside the reuse interval.
pub fn already_used() -> AuthError {
    AuthError::bad_request(ErrorCode::RefreshTokenAlreadyUsed, "Invalid Refresh Token: Already Used")
}

/// MFA verification on a session that does not exist (any more).
pub fn elevate_session_not_found() -> AuthError {
    AuthError::forbidden(ErrorCode::SessionNotFound, "Session not found")
}

/// A new session signed in by `method` at `now` (aal1, one `amr` entry).
pub fn new_session(user_id: Uuid, method: &str, user_agent: String, ip: String, now: Timestamp) -> Session {
    Session {
        id: Uuid::new_v4(),
        user_id,
        created_at: now,
        updated_at: now,
        refreshed_at: None,
        aal: "aal1".into(),
        amr: vec![AmrEntry { method: method.into(), at: now }],
        user_agent,
        ip,
        not_after: None,
    }
}

/// `not_after`, the timebox and the inactivity timeout; `token_updated_at` is the presented
/// token's `updated_at`.
pub fn check_session_limits(
    settings: &Settings,
    now: Timestamp,
    session: &Session,
    token_updated_at: Timestamp,
) -> AuthResult<()> {
    let expired = |suffix: &str| {
        AuthError::bad_request(ErrorCode::SessionExpired, format!("Invalid Refresh Token: Session Expired{suffix}"))
    };
    if session.not_after.is_some_and(|t| now >= t) {
        return Err(expired(""));
    }
    if let Some(timebox) = settings.sessions.timebox {
        if now >= session.created_at.plus(timebox) {
            return Err(expired(""));
        }
    }
    if let Some(idle) = settings.sessions.inactivity_timeout {
        let last = session.refreshed_at.unwrap_or(token_updated_at.max(session.created_at));
        if now >= last.plus(idle) {
            return Err(expired(" (Inactivity)"));
        }
    }
    Ok(())
}

/// What a revoked refresh token gets when presented again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// It is the parent of the session's active token: that token again (nothing is written).
    Active(String),
    /// Mint a new child of it (within the reuse interval, or the active child cannot be
    /// recomputed).
    Rotate,
    /// A reuse: revoke the session's tokens if `revoke_family` (committed), then
    /// [`already_used`].
    Reuse { revoke_family: bool },
}

/// Decides [`Replay`] for a revoked token last updated at `revoked_at`. `active_child` is
/// `None` when the session's active token (newest non-revoked) is not a child of the replayed
/// token, else `Some(raw)` with its recomputed raw value (`Some(None)`: not recomputable, i.e.
/// migrated from `refresh_tokens/v1` or issued under another JWT secret).
pub fn replay(
    settings: &Settings,
    now: Timestamp,
    revoked_at: Timestamp,
    active_child: Option<Option<String>>,
) -> Replay {
    let parent_of_active = active_child.is_some();
    if let Some(Some(raw)) = active_child {
        return Replay::Active(raw);
    }
    // A child that cannot be recomputed still works by digest; its parent gets a new child, as
    // within the reuse interval, and is never treated as a reuse.
    let within_reuse = now < revoked_at.plus(settings.refresh.reuse_interval);
    if !within_reuse && !parent_of_active {
        return Replay::Reuse { revoke_family: settings.refresh.rotation_enabled };
    }
    Replay::Rotate
}

/// Which of a user's sessions a logout ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    All,
    Only(Uuid),
    AllBut(Uuid),
}

impl Targets {
    /// Whether session `id` (of the user) is ended.
    pub fn includes(self, id: Uuid) -> bool {
        match self {
            Targets::All => true,
            Targets::Only(c) => id == c,
            Targets::AllBut(c) => id != c,
        }
    }
}

impl LogoutScope {
    /// The sessions this scope ends; a token without a session always logs out globally.
    pub fn targets(self, current: Option<Uuid>) -> Targets {
        match (self, current) {
            (LogoutScope::Global, _) | (_, None) => Targets::All,
            (LogoutScope::Local, Some(c)) => Targets::Only(c),
            (LogoutScope::Others, Some(c)) => Targets::AllBut(c),
        }
    }
}

/// MFA verified with `method`: aal2, the `method` entry re-stamped `now` (moved last).
pub fn elevate(session: &mut Session, method: &str, now: Timestamp) {
    session.aal = "aal2".into();
    session.amr.retain(|e| e.method != method);
    session.amr.push(AmrEntry { method: method.into(), at: now });
    session.updated_at = now;
}

/// A factor of `method` is gone: an aal2 session drops to aal1 and loses the entry. Returns
/// false (and changes nothing) for a session that is not aal2.
pub fn downgrade(session: &mut Session, method: &str, now: Timestamp) -> bool {
    if session.aal != "aal2" {
        return false;
    }
    session.aal = "aal1".into();
    session.amr.retain(|e| e.method != method);
    session.updated_at = now;
    true
}

/// Revoked tokens last updated before this are swept.
pub fn sweep_cutoff(now: Timestamp, older_than: std::time::Duration) -> Timestamp {
    Timestamp(now.0.saturating_sub(i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX)))
}
