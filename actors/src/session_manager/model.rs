//! Stored session and refresh-token records.

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One sign-in. Refresh tokens rotate inside it; deleting it ends them all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub refreshed_at: Option<Timestamp>,
    /// `aal1` or `aal2`.
    pub aal: String,
    /// Authentication methods with the time each was last used (the JWT's `amr`).
    pub amr: Vec<AmrEntry>,
    pub user_agent: String,
    pub ip: String,
    pub not_after: Option<Timestamp>,
}

/// One `amr` claim entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmrEntry {
    pub method: String,
    pub at: Timestamp,
}

/// A refresh token, keyed by the SHA-256 of its value (`refresh_tokens/v2`). No raw value is
/// stored: the raw token is `HMAC-SHA256(server key, session_id ‖ seq ‖ nonce)` (see
/// [`super::token_key`]), so the server can hand the active token back to a client that replays
/// its parent (GoTrue's behaviour) while a copy of the database hands out nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshToken {
    /// Issue order across the server: "newest" means highest `seq`.
    pub seq: u64,
    pub digest: [u8; 32],
    /// Random per token, so two tokens never derive to the same value even if a `seq` repeats.
    pub nonce: [u8; 16],
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub parent: Option<[u8; 32]>,
    pub revoked: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The `refresh_tokens/v1` layout: kept the raw value of the session's active token. Only read
/// at start-up, to migrate into [`RefreshToken`] (the raw value is dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshTokenV1 {
    pub seq: u64,
    pub digest: [u8; 32],
    pub token: Option<String>,
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub parent: Option<[u8; 32]>,
    pub revoked: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl RefreshTokenV1 {
    /// The v2 record. Its raw value was random, so it cannot be re-derived: the token keeps
    /// working by digest, and a replay of its parent mints a fresh child instead of returning it.
    pub fn migrate(self) -> RefreshToken {
        RefreshToken {
            seq: self.seq,
            digest: self.digest,
            nonce: [0; 16],
            session_id: self.session_id,
            user_id: self.user_id,
            parent: self.parent,
            revoked: self.revoked,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A session with its refresh tokens, as `ferrotrue migrate --sessions` moves it between
/// backends ([`super::SessionManagerMessage::ExportUser`] / [`super::SessionManagerMessage::Import`]).
/// Plain data, never stored as such: each backend writes its own records from it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionExport {
    pub session: Session,
    /// Oldest first (issue order): the importer numbers them in this order, so the newest stays
    /// the session's active token.
    pub tokens: Vec<TokenExport>,
}

/// One refresh token of a [`SessionExport`]: only its digest, never a raw value. On import it
/// gets a fresh `seq` and a zero nonce (as [`RefreshTokenV1::migrate`]): it works by digest, and
/// a replay of its parent mints a new child instead of recomputing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExport {
    pub digest: [u8; 32],
    pub parent: Option<[u8; 32]>,
    pub revoked: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
