//! `SessionManager` on Postgres: GoTrue's `sessions`, `refresh_tokens` and `mfa_amr_claims`.
//! (Skeleton: being built.)

use crate::error::{AuthError, AuthResult};
use crate::pg::Db;
use crate::session_manager::SessionManagerMessage;
use crate::ActorEnv;
use std::sync::Arc;

/// Sessions and refresh tokens in Postgres; no authoritative state in memory.
pub struct PgSessions {
    #[allow(dead_code)]
    db: Db,
}

impl PgSessions {
    pub fn new(db: Db, _env: &ActorEnv) -> PgSessions {
        PgSessions { db }
    }

    /// Answers one message (on its own task, see [`super::types::spawn_request`]).
    pub async fn handle(self: Arc<Self>, msg: SessionManagerMessage) {
        use SessionManagerMessage::*;
        match msg {
            Create { reply, .. } | Refresh { reply, .. } | Elevate { reply, .. } => {
                let _ = reply.send(not_built());
            }
            Owner { reply, .. } => drop(reply.send(not_built())),
            Get { reply, .. } => drop(reply.send(not_built())),
            Logout { reply, .. } | EndUserSessions { reply, .. } | Downgrade { reply, .. } => {
                drop(reply.send(not_built()))
            }
            Count { reply } => drop(reply.send(not_built())),
            SweepRevoked => {}
            #[cfg(feature = "fault-injection")]
            Panic { .. } => {}
        }
    }
}

fn not_built<T>() -> AuthResult<T> {
    Err(AuthError::unexpected("the Postgres session backend is not built yet"))
}
