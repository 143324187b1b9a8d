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

/// A refresh token, keyed by the SHA-256 of its value. The raw value is kept only while the
/// token is the session's active one (GoTrue hands the active token back to a client that
/// replays its parent); once revoked, only the digest remains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshToken {
    /// Issue order across the server: "newest" means highest `seq`.
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
