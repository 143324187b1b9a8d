//! `SessionManager`: owns sessions and refresh tokens; rotation and reuse detection happen
//! here, atomically, one message at a time.
//!
//! Trees: `sessions/v1` (id → [`model::Session`]), `refresh_tokens/v2` (sha256 → token, no
//! raw value: see [`token_key`]). `refresh_tokens/v1` is migrated into v2 at start-up. A
//! rotation writes only the child token: a token with a child is revoked, and a session's
//! `refreshed_at` is its newest child's birth ([`state::SessionManagerState::load`] derives both).

pub mod model;
pub mod rules;
pub mod state;
pub mod token_key;

use crate::call::{call, send_reply, Reply};
use crate::error::AuthResult;
use crate::pg::sessions::PgSessions;
use crate::pg::types::spawn_request;
use crate::{ActorEnv, Storage};
use model::{Session, SessionExport};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use state::{Issued, LogoutScope, SessionManagerState};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Everything [`SessionManager`] can be asked.
pub enum SessionManagerMessage {
    /// Start a session signed in by `method` (`password`, `otp`, ...).
    Create { user_id: Uuid, method: String, user_agent: String, ip: String, reply: Reply<Issued> },
    /// Rotate a refresh token (SPEC §5.3).
    Refresh { token: String, reply: Reply<Issued> },
    /// The user a refresh token belongs to, without rotating it.
    Owner { token: String, reply: Reply<Uuid> },
    /// A session by id.
    Get { id: Uuid, reply: Reply<Option<Session>> },
    /// `POST /logout` by scope.
    Logout { user_id: Uuid, current: Option<Uuid>, scope: LogoutScope, reply: Reply<()> },
    /// End every session of a user except `keep`.
    EndUserSessions { user_id: Uuid, keep: Option<Uuid>, reply: Reply<()> },
    /// MFA verified on a session: aal2, new refresh token, other low sessions deleted.
    Elevate { session_id: Uuid, method: String, reply: Reply<Issued> },
    /// A factor is gone: the user's aal2 sessions drop to aal1.
    Downgrade { user_id: Uuid, method: String, reply: Reply<()> },
    /// Number of sessions.
    Count { reply: Reply<usize> },
    /// `ferrotrue migrate --sessions`: every session of a user with its refresh tokens (oldest
    /// session first).
    ExportUser { user_id: Uuid, reply: Reply<Vec<SessionExport>> },
    /// `ferrotrue migrate --sessions`: writes an exported session and its tokens in one
    /// transaction. `false`: a session with that id is already here (nothing written).
    Import { export: SessionExport, reply: Reply<bool> },
    /// Periodic: delete refresh tokens revoked more than a day ago.
    SweepRevoked,
    /// Test hook: panic inside the handler.
    #[cfg(feature = "fault-injection")]
    Panic { reply: Reply<()> },
}

/// How long a revoked refresh token is kept (GoTrue's cleanup uses 24 h).
const REVOKED_TOKEN_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How often the sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// The actor (no configuration of its own: settings come with [`ActorEnv`]).
pub struct SessionManager;

/// Where the manager's state lives. The message enum is the interface both backends answer:
/// sled from memory, one message at a time (the mailbox serialises rotations); Postgres per
/// request on its own task, serialised by row locks, so several nodes agree.
pub enum Running {
    Sled(SessionManagerState),
    Postgres(Arc<PgSessions>),
}

impl Actor for SessionManager {
    type Msg = SessionManagerMessage;
    type State = Running;
    type Arguments = ActorEnv;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, env: ActorEnv) -> Result<Running, ActorProcessingErr> {
        match &env.storage {
            Storage::Sled(store) => {
                let state = SessionManagerState::load(store.clone(), env.clock.clone(), env.settings.clone())?;
                tracing::debug!(sessions = state.count(), "session manager loaded");
                Ok(Running::Sled(state))
            }
            Storage::Postgres(db) => Ok(Running::Postgres(Arc::new(PgSessions::new(db.clone(), &env)))),
        }
    }

    async fn post_start(&self, me: ActorRef<Self::Msg>, _st: &mut Running) -> Result<(), ActorProcessingErr> {
        me.send_interval(SWEEP_EVERY, || SessionManagerMessage::SweepRevoked);
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Running,
    ) -> Result<(), ActorProcessingErr> {
        use SessionManagerMessage::*;
        #[cfg(feature = "fault-injection")]
        if let Panic { reply } = msg {
            drop(reply);
            panic!("fault injection: SessionManager handler panicked");
        }
        let state = match st {
            Running::Sled(state) => state,
            Running::Postgres(pg) => {
                spawn_request(pg.clone().handle(msg));
                return Ok(());
            }
        };
        match msg {
            Create { user_id, method, user_agent, ip, reply } => {
                send_reply(reply, state.create(user_id, &method, user_agent, ip))
            }
            // Commit then fail: a reuse revokes the family (written), then reports the error;
            // the error response waits for the sync like any other.
            Refresh { token, reply } => send_reply(reply, state.refresh(&token).and_then(|r| r)),
            Owner { token, reply } => send_reply(reply, state.owner(&token)),
            Get { id, reply } => send_reply(reply, Ok(state.get(id))),
            Logout { user_id, current, scope, reply } => send_reply(reply, state.logout(user_id, current, scope)),
            EndUserSessions { user_id, keep, reply } => send_reply(reply, state.end_user_sessions(user_id, keep)),
            Elevate { session_id, method, reply } => send_reply(reply, state.elevate(session_id, &method)),
            Downgrade { user_id, method, reply } => send_reply(reply, state.downgrade(user_id, &method)),
            Count { reply } => {
                let _ = reply.send(Ok(state.count()));
            }
            ExportUser { user_id, reply } => {
                let _ = reply.send(Ok(state.export_user(user_id)));
            }
            Import { export, reply } => send_reply(reply, state.import(export)),
            SweepRevoked => match state.sweep_revoked(REVOKED_TOKEN_RETENTION) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "swept revoked refresh tokens"),
                Err(e) => tracing::error!(error = %e, "refresh-token sweep failed"),
            },
            #[cfg(feature = "fault-injection")]
            Panic { .. } => unreachable!("handled above"),
        }
        Ok(())
    }
}

/// Cheap-to-clone handle to the session manager.
#[derive(Clone)]
pub struct Sessions {
    actor: watch::Receiver<ActorRef<SessionManagerMessage>>,
    timeout: Duration,
}

impl Sessions {
    pub(crate) fn new(actor: watch::Receiver<ActorRef<SessionManagerMessage>>, timeout: Duration) -> Sessions {
        Sessions { actor, timeout }
    }
    fn current(&self) -> ActorRef<SessionManagerMessage> {
        self.actor.borrow().clone()
    }
    /// See [`SessionManagerMessage::Create`].
    pub async fn create(&self, user_id: Uuid, method: &str, user_agent: String, ip: String) -> AuthResult<Issued> {
        let method = method.to_owned();
        call(&self.current(), self.timeout, |reply| SessionManagerMessage::Create {
            user_id,
            method,
            user_agent,
            ip,
            reply,
        })
        .await
    }
    /// See [`SessionManagerMessage::Refresh`].
    pub async fn refresh(&self, token: &str) -> AuthResult<Issued> {
        let token = token.to_owned();
        call(&self.current(), self.timeout, |reply| SessionManagerMessage::Refresh { token, reply }).await
    }
    /// See [`SessionManagerMessage::Owner`].
    pub async fn owner(&self, token: &str) -> AuthResult<Uuid> {
        let token = token.to_owned();
        call(&self.current(), self.timeout, |reply| SessionManagerMessage::Owner { token, reply }).await
    }
    /// See [`SessionManagerMessage::Get`].
    pub async fn get(&self, id: Uuid) -> AuthResult<Option<Session>> {
        call(&self.current(), self.timeout, |reply| SessionManagerMessage::Get { id, reply }).await
    }
    /// See [`SessionManagerMessage::Logout`].
    pub async fn logout(&self, user_id: Uuid, current: Option<Uuid>, scope: LogoutScope) -> AuthResult<()> {
        call(&self.current(), self.timeout, |reply| SessionManagerMessage::Logout { user_id, current, scope, reply })
            .await
    }
    /// See [`SessionManagerMessage::EndUserSessions`].
    pub async fn end_user_sessions(&self, user_id: Uuid, keep: Option<Uuid>) -> AuthResult<()> {
        call(&self.current(), self.timeout, |reply| SessionManagerMessage::EndUserSessions { user_id, keep, reply })
            .await
    }
    /// See [`SessionManagerMessage::Elevate`].
    pub async fn elevate(&self, session_id: Uuid, method: &str) -> AuthResult<Issued> {
        let method = method.to_owned();
        call(&self.current(), self.timeout, |reply| SessionManagerMessage::Elevate { session_id, method, reply }).await
    }
    /// See [`SessionManagerMessage::Downgrade`].
    pub async fn downgrade(&self, user_id: Uuid, method: &str) -> AuthResult<()> {
        let method = method.to_owned();
        call(&self.current(), self.timeout, |reply| SessionManagerMessage::Downgrade { user_id, method, reply }).await
    }
    /// See [`SessionManagerMessage::Count`].
    pub async fn count(&self) -> AuthResult<usize> {
        call(&self.current(), self.timeout, |reply| SessionManagerMessage::Count { reply }).await
    }
    /// See [`SessionManagerMessage::ExportUser`].
    pub async fn export_user(&self, user_id: Uuid) -> AuthResult<Vec<SessionExport>> {
        call(&self.current(), self.timeout, |reply| SessionManagerMessage::ExportUser { user_id, reply }).await
    }
    /// See [`SessionManagerMessage::Import`].
    pub async fn import(&self, export: SessionExport) -> AuthResult<bool> {
        call(&self.current(), self.timeout, |reply| SessionManagerMessage::Import { export, reply }).await
    }
    /// Test hook: makes the manager panic while handling this call.
    #[cfg(feature = "fault-injection")]
    pub async fn inject_panic(&self) -> AuthResult<()> {
        call(&self.current(), self.timeout, |reply| SessionManagerMessage::Panic { reply }).await
    }
}
