//! `UserRegistry` on Postgres: GoTrue's `users`, `identities`, `mfa_factors`,
//! `mfa_challenges` and `audit_log_entries`. (Skeleton: being built.)

use crate::error::{AuthError, AuthResult};
use crate::pg::Db;
use crate::user_registry::UserRegistryMessage;
use crate::ActorEnv;
use std::sync::Arc;
use std::time::Duration;

/// Users in Postgres; no authoritative state in memory.
pub struct PgUsers {
    #[allow(dead_code)]
    db: Db,
}

impl PgUsers {
    pub fn new(db: Db, _env: &ActorEnv) -> PgUsers {
        PgUsers { db }
    }

    /// Answers one message (on its own task, see [`super::types::spawn_request`]);
    /// `audit_retention` is `FERROTRUE_AUDIT_RETENTION` for the periodic sweep.
    pub async fn handle(self: Arc<Self>, msg: UserRegistryMessage, _audit_retention: Option<Duration>) {
        use UserRegistryMessage::*;
        match msg {
            Create { reply, .. } | Update { reply, .. } => drop(reply.send(not_built())),
            Get { reply, .. } | ByEmail { reply, .. } | ByPhone { reply, .. } | ByIdentity { reply, .. } => {
                drop(reply.send(not_built()))
            }
            LinkCandidates { reply, .. } => drop(reply.send(not_built())),
            Delete { reply, .. } | RecordAudit { reply, .. } => drop(reply.send(not_built())),
            EditFactors { reply, .. } => drop(reply.send(not_built())),
            Count { reply } => drop(reply.send(not_built())),
            List { reply, .. } => drop(reply.send(not_built())),
            AuditPage { reply, .. } => drop(reply.send(not_built())),
            SweepAudit => {}
            #[cfg(feature = "fault-injection")]
            Panic { .. } => {}
        }
    }
}

fn not_built<T>() -> AuthResult<T> {
    Err(AuthError::unexpected("the Postgres user backend is not built yet"))
}
