//! `UserRegistry`: owns users (and their identities) and the audit log of what happened to them.
//! Port of GoTrue's `models/user.go` and `models/audit_log_entry.go` storage.
//!
//! Trees: `users/v1` (id → [`User`]), `mfa_factors/v1` (id → [`Factor`], see its doc for why
//! factors live here), `users_by_email/v1`, `users_by_phone/v1` (key → id),
//! `audit_log/v1` (big-endian sequence → [`AuditEntry`]; read page by page, never held in memory).
//! Every write is durable before its reply leaves (see [`crate::call::send_reply`]).

pub mod model;
pub mod state;

use crate::call::{call, send_reply, Reply};
use crate::error::AuthResult;
use crate::pg::types::spawn_request;
use crate::pg::users::PgUsers;
use crate::{ActorEnv, Storage};
use model::{AuditEntry, Factor, User};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use state::{AuditQuery, FactorEdit, LinkCandidates, Page, UserEdit, UserRegistryState};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Everything [`UserRegistry`] can be asked.
pub enum UserRegistryMessage {
    /// Insert a new user; `email_exists` / `phone_exists` if taken.
    Create { user: Box<User>, reply: Reply<User> },
    /// Look a user up by id.
    Get { id: Uuid, reply: Reply<Option<User>> },
    /// Look a user up by lower-cased email.
    ByEmail { email: String, reply: Reply<Option<User>> },
    /// Look a user up by phone (digits, no `+`).
    ByPhone { phone: String, reply: Reply<Option<User>> },
    /// The user holding the identity `(provider, provider_id)`.
    ByIdentity { provider: String, provider_id: String, reply: Reply<Option<User>> },
    /// Who holds any of these lower-cased addresses (automatic identity linking).
    LinkCandidates { emails: Vec<String>, reply: Reply<LinkCandidates> },
    /// Apply an edit to a user; `user_not_found` if absent.
    Update { id: Uuid, edit: UserEdit, reply: Reply<User> },
    /// Hard delete (with the user's factors).
    Delete { id: Uuid, reply: Reply<()> },
    /// Edit a user's MFA factors (see [`FactorEdit`]).
    EditFactors { user_id: Uuid, edit: FactorEdit, reply: Reply<Option<Factor>> },
    /// Number of users.
    Count { reply: Reply<usize> },
    /// A page of users in creation order (`ascending` or newest first), optionally filtered.
    List { page: usize, per_page: usize, filter: Option<String>, ascending: bool, reply: Reply<Page<User>> },
    /// Append an entry to the audit log.
    RecordAudit { entry: Box<AuditEntry>, reply: Reply<()> },
    /// A page of the audit log, newest first.
    AuditPage { page: usize, per_page: usize, query: Option<AuditQuery>, reply: Reply<Page<AuditEntry>> },
    /// Periodic: apply `FERROTRUE_AUDIT_RETENTION`.
    SweepAudit,
    /// Test hook: panic inside the handler.
    #[cfg(feature = "fault-injection")]
    Panic { reply: Reply<()> },
}

/// The actor. Configuration only; the maps live in [`UserRegistryState`].
pub struct UserRegistry;

/// Where the registry's state lives. The message enum is the interface both backends answer:
/// sled from memory, one message at a time; Postgres per request on its own task, serialised by
/// transactions and row locks, so several nodes agree.
pub enum Backend {
    Sled(UserRegistryState),
    Postgres(Arc<PgUsers>),
}

/// State plus the audit retention setting.
pub struct Running {
    backend: Backend,
    audit_retention: Option<Duration>,
}

impl Actor for UserRegistry {
    type Msg = UserRegistryMessage;
    type State = Running;
    type Arguments = ActorEnv;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, env: ActorEnv) -> Result<Running, ActorProcessingErr> {
        let backend = match &env.storage {
            Storage::Sled(store) => {
                let state = UserRegistryState::load(store.clone(), env.clock.clone())?;
                tracing::debug!(users = state.count(), "user registry loaded");
                Backend::Sled(state)
            }
            Storage::Postgres(db) => Backend::Postgres(Arc::new(PgUsers::new(db.clone(), &env))),
        };
        Ok(Running { backend, audit_retention: env.settings.audit_retention })
    }

    async fn post_start(&self, me: ActorRef<Self::Msg>, st: &mut Running) -> Result<(), ActorProcessingErr> {
        if st.audit_retention.is_some() {
            me.send_interval(Duration::from_secs(60), || UserRegistryMessage::SweepAudit);
        }
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Running,
    ) -> Result<(), ActorProcessingErr> {
        use UserRegistryMessage::*;
        #[cfg(feature = "fault-injection")]
        if let Panic { reply } = msg {
            drop(reply);
            panic!("fault injection: UserRegistry handler panicked");
        }
        let Running { backend, audit_retention } = st;
        let state = match backend {
            Backend::Sled(state) => state,
            Backend::Postgres(pg) => {
                spawn_request(pg.clone().handle(msg, *audit_retention));
                return Ok(());
            }
        };
        match msg {
            Create { user, reply } => send_reply(reply, state.create(*user)),
            Update { id, edit, reply } => send_reply(reply, state.update(id, edit)),
            Delete { id, reply } => send_reply(reply, state.delete(id)),
            EditFactors { user_id, edit, reply } => send_reply(reply, state.edit_factors(user_id, edit)),
            // A read may see a write whose sync is still running; the reader's response waits
            // for that sync too (the HTTP layer's `Actors::durable`), so nothing leaks early.
            Get { id, reply } => send_reply(reply, state.get(id)),
            ByEmail { email, reply } => send_reply(reply, state.by_email(&email)),
            ByPhone { phone, reply } => send_reply(reply, state.by_phone(&phone)),
            ByIdentity { provider, provider_id, reply } => {
                send_reply(reply, state.by_identity(&provider, &provider_id))
            }
            LinkCandidates { emails, reply } => send_reply(reply, state.link_candidates(&emails)),
            Count { reply } => {
                let _ = reply.send(Ok(state.count()));
            }
            List { page, per_page, filter, ascending, reply } => {
                let _ = reply.send(state.list(page, per_page, filter.as_deref(), ascending));
            }
            RecordAudit { entry, reply } => send_reply(reply, state.record_audit(*entry)),
            AuditPage { page, per_page, query, reply } => {
                let _ = reply.send(state.audit_page(page, per_page, query.as_ref()));
            }
            SweepAudit => {
                if let Some(retention) = *audit_retention {
                    match state.sweep_audit(retention) {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(deleted = n, "swept audit log"),
                        Err(e) => tracing::error!(error = %e, "audit log sweep failed"),
                    }
                }
            }
            #[cfg(feature = "fault-injection")]
            Panic { .. } => unreachable!("handled above"),
        }
        Ok(())
    }
}

/// Cheap-to-clone handle; follows the supervisor's restarts through a watch channel.
#[derive(Clone)]
pub struct Users {
    actor: watch::Receiver<ActorRef<UserRegistryMessage>>,
    timeout: Duration,
}

impl Users {
    pub(crate) fn new(actor: watch::Receiver<ActorRef<UserRegistryMessage>>, timeout: Duration) -> Users {
        Users { actor, timeout }
    }
    fn current(&self) -> ActorRef<UserRegistryMessage> {
        self.actor.borrow().clone()
    }
    /// See [`UserRegistryMessage::Create`].
    pub async fn create(&self, user: User) -> AuthResult<User> {
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::Create { user: Box::new(user), reply }).await
    }
    /// See [`UserRegistryMessage::Get`].
    pub async fn get(&self, id: Uuid) -> AuthResult<Option<User>> {
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::Get { id, reply }).await
    }
    /// See [`UserRegistryMessage::ByEmail`]; lower-cases for you.
    pub async fn by_email(&self, email: &str) -> AuthResult<Option<User>> {
        let email = email.to_lowercase();
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::ByEmail { email, reply }).await
    }
    /// See [`UserRegistryMessage::ByPhone`].
    pub async fn by_phone(&self, phone: &str) -> AuthResult<Option<User>> {
        let phone = phone.to_owned();
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::ByPhone { phone, reply }).await
    }
    /// See [`UserRegistryMessage::ByIdentity`].
    pub async fn by_identity(&self, provider: &str, provider_id: &str) -> AuthResult<Option<User>> {
        let (provider, provider_id) = (provider.to_owned(), provider_id.to_owned());
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::ByIdentity { provider, provider_id, reply })
            .await
    }
    /// See [`UserRegistryMessage::LinkCandidates`]; lower-cases for you.
    pub async fn link_candidates(&self, emails: &[String]) -> AuthResult<LinkCandidates> {
        let emails = emails.iter().map(|e| e.to_lowercase()).collect();
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::LinkCandidates { emails, reply }).await
    }
    /// See [`UserRegistryMessage::Update`].
    pub async fn update(
        &self,
        id: Uuid,
        edit: impl FnOnce(&mut User) -> AuthResult<()> + Send + 'static,
    ) -> AuthResult<User> {
        let edit: UserEdit = Box::new(edit);
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::Update { id, edit, reply }).await
    }
    /// See [`UserRegistryMessage::Delete`].
    pub async fn delete(&self, id: Uuid) -> AuthResult<()> {
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::Delete { id, reply }).await
    }
    /// See [`UserRegistryMessage::EditFactors`].
    pub async fn edit_factors(
        &self,
        user_id: Uuid,
        edit: impl FnOnce(&mut Vec<Factor>) -> AuthResult<Option<Factor>> + Send + 'static,
    ) -> AuthResult<Option<Factor>> {
        let edit: FactorEdit = Box::new(edit);
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::EditFactors { user_id, edit, reply }).await
    }
    /// See [`UserRegistryMessage::Count`].
    pub async fn count(&self) -> AuthResult<usize> {
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::Count { reply }).await
    }
    /// See [`UserRegistryMessage::List`].
    pub async fn list(
        &self,
        page: usize,
        per_page: usize,
        filter: Option<String>,
        ascending: bool,
    ) -> AuthResult<Page<User>> {
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::List {
            page,
            per_page,
            filter,
            ascending,
            reply,
        })
        .await
    }
    /// See [`UserRegistryMessage::RecordAudit`].
    pub async fn record_audit(&self, entry: AuditEntry) -> AuthResult<()> {
        let entry = Box::new(entry);
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::RecordAudit { entry, reply }).await
    }
    /// See [`UserRegistryMessage::AuditPage`].
    pub async fn audit_page(
        &self,
        page: usize,
        per_page: usize,
        query: Option<AuditQuery>,
    ) -> AuthResult<Page<AuditEntry>> {
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::AuditPage { page, per_page, query, reply })
            .await
    }
    /// Test hook: makes the registry panic while handling this call.
    #[cfg(feature = "fault-injection")]
    pub async fn inject_panic(&self) -> AuthResult<()> {
        call(&self.current(), self.timeout, |reply| UserRegistryMessage::Panic { reply }).await
    }
}
