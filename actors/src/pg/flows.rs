//! `OAuthFlow` on Postgres: GoTrue's `flow_state`. (Skeleton: being built.)

use crate::error::{AuthError, AuthResult};
use crate::oauth_flow::OAuthFlowMessage;
use crate::pg::Db;
use crate::ActorEnv;
use std::sync::Arc;

/// Flow states in Postgres; no authoritative state in memory.
pub struct PgFlows {
    #[allow(dead_code)]
    db: Db,
}

impl PgFlows {
    pub fn new(db: Db, _env: &ActorEnv) -> PgFlows {
        PgFlows { db }
    }

    /// Answers one message (on its own task, see [`super::types::spawn_request`]).
    pub async fn handle(self: Arc<Self>, msg: OAuthFlowMessage) {
        use OAuthFlowMessage::*;
        match msg {
            Create { reply, .. } => drop(reply.send(not_built())),
            CreateExternal { reply, .. } => drop(reply.send(not_built())),
            Claim { reply, .. } | Exchange { reply, .. } => drop(reply.send(not_built())),
            Complete { reply, .. } | CodeForUser { reply, .. } => drop(reply.send(not_built())),
            TakeByAuthCode { reply, .. } => drop(reply.send(not_built())),
            Count { reply } => drop(reply.send(not_built())),
            Sweep => {}
        }
    }
}

fn not_built<T>() -> AuthResult<T> {
    Err(AuthError::unexpected("the Postgres flow-state backend is not built yet"))
}
