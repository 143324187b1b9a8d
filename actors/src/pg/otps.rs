//! `OtpIssuer` on Postgres. (Skeleton: being built.)

use crate::error::{AuthError, AuthResult};
use crate::otp_issuer::OtpIssuerMessage;
use crate::pg::Db;
use crate::ActorEnv;
use std::sync::Arc;

/// One-time tokens in Postgres; no authoritative state in memory.
pub struct PgOtps {
    #[allow(dead_code)]
    db: Db,
}

impl PgOtps {
    pub fn new(db: Db, _env: &ActorEnv) -> PgOtps {
        PgOtps { db }
    }

    /// Answers one message (on its own task, see [`super::types::spawn_request`]).
    pub async fn handle(self: Arc<Self>, msg: OtpIssuerMessage) {
        use OtpIssuerMessage::*;
        match msg {
            Issue { reply, .. } | Consume { reply, .. } => drop(reply.send(not_built())),
            Peek { reply, .. } | CheckCode { reply, .. } => drop(reply.send(not_built())),
            ForUser { reply, .. } => drop(reply.send(not_built())),
            ClearUser { reply, .. } => drop(reply.send(not_built())),
            Count { reply } => drop(reply.send(not_built())),
            Sweep => {}
        }
    }
}

fn not_built<T>() -> AuthResult<T> {
    Err(AuthError::unexpected("the Postgres one-time-token backend is not built yet"))
}
