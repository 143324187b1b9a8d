//! `OtpIssuer`: one-time tokens (confirmation, recovery, magic link, email change,
//! reauthentication). Port of GoTrue's `models/one_time_token.go`. The email flows that issue
//! and consume them arrive with the email issue; the store, its expiry and its persistence are
//! here now.
//!
//! Tokens are stored only as hashes (`token_hash`); one token per user and type, a new one
//! replaces the old. Tree: `one_time_tokens/v1` (id → [`OneTimeToken`]).

use crate::call::{call, send_reply, Reply};
use crate::clock::{Clock, Timestamp};
use crate::error::{AuthError, AuthResult, ErrorCode, StoreError};
use crate::storage::{self, Store, Table};
use crate::ActorEnv;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// How often expired tokens are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A stored one-time token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneTimeToken {
    pub id: Uuid,
    pub user_id: Uuid,
    /// `confirmation_token`, `recovery_token`, `reauthentication_token`, ...
    pub token_type: String,
    /// Hex SHA-224 of `email_or_phone + otp` (GoTrue's format); never the OTP itself.
    pub token_hash: String,
    /// The address the token was sent to.
    pub relates_to: String,
    pub created_at: Timestamp,
    /// Overrides the issuer's lifetime (`GOTRUE_MAILER_OTP_EXP`), e.g. for SMS codes
    /// (`GOTRUE_SMS_OTP_EXP`).
    pub expires_at: Option<Timestamp>,
}

/// Everything [`OtpIssuer`] can be asked.
pub enum OtpIssuerMessage {
    /// Store a token, replacing the user's previous one of the same type.
    Issue { token: OneTimeToken, reply: Reply<OneTimeToken> },
    /// Take a token by hash: single use; `otp_expired` (403) if unknown, expired, or not of one
    /// of `types` (an empty list accepts any type). A token of the wrong type is left in place.
    Consume { token_hash: String, types: Vec<String>, reply: Reply<OneTimeToken> },
    /// Look at a token without consuming it (link scanners, `HEAD` requests).
    Peek { token_hash: String, reply: Reply<Option<OneTimeToken>> },
    /// The user's live tokens of the given types (to check a typed-in code against them).
    ForUser { user_id: Uuid, types: Vec<String>, reply: Reply<Vec<OneTimeToken>> },
    /// Drop every token of a user (any confirmation clears them all).
    ClearUser { user_id: Uuid, reply: Reply<()> },
    /// Number of outstanding tokens.
    Count { reply: Reply<usize> },
    /// Periodic: drop expired tokens.
    Sweep,
}

/// The actor.
pub struct OtpIssuer;

/// Tokens in memory plus their table.
pub struct OtpIssuerState {
    store: Store,
    clock: Clock,
    lifetime: Duration,
    table: Table<OneTimeToken>,
    by_id: HashMap<Uuid, OneTimeToken>,
    by_hash: HashMap<String, Uuid>,
}

fn expired() -> AuthError {
    AuthError::forbidden(ErrorCode::OtpExpired, "Token has expired or is invalid")
}

impl OtpIssuerState {
    /// Loads every outstanding token.
    pub fn load(env: &ActorEnv) -> Result<Self, StoreError> {
        let table: Table<OneTimeToken> = env.store.table(storage::ONE_TIME_TOKENS)?;
        let mut st = OtpIssuerState {
            store: env.store.clone(),
            clock: env.clock.clone(),
            lifetime: env.settings.otp.exp,
            table,
            by_id: HashMap::new(),
            by_hash: HashMap::new(),
        };
        for (_, t) in st.table.load_all()? {
            st.by_hash.insert(t.token_hash.clone(), t.id);
            st.by_id.insert(t.id, t);
        }
        Ok(st)
    }

    fn issue(&mut self, token: OneTimeToken) -> AuthResult<OneTimeToken> {
        let replaced: Vec<OneTimeToken> = self
            .by_id
            .values()
            .filter(|t| t.user_id == token.user_id && t.token_type == token.token_type)
            .cloned()
            .collect();
        let mut ops = vec![self.table.put(token.id.as_bytes().to_vec(), &token)?];
        ops.extend(replaced.iter().map(|t| self.table.remove(t.id.as_bytes().to_vec())));
        self.store.apply(ops)?;
        for t in replaced {
            self.forget(&t);
        }
        self.by_hash.insert(token.token_hash.clone(), token.id);
        self.by_id.insert(token.id, token.clone());
        Ok(token)
    }

    fn is_live(&self, t: &OneTimeToken) -> bool {
        self.clock.now() < t.expires_at.unwrap_or_else(|| t.created_at.plus(self.lifetime))
    }

    fn peek(&self, token_hash: &str) -> Option<OneTimeToken> {
        let t = self.by_hash.get(token_hash).and_then(|id| self.by_id.get(id))?;
        self.is_live(t).then(|| t.clone())
    }

    fn for_user(&self, user_id: Uuid, types: &[String]) -> Vec<OneTimeToken> {
        self.by_id
            .values()
            .filter(|t| t.user_id == user_id && types.contains(&t.token_type) && self.is_live(t))
            .cloned()
            .collect()
    }

    fn consume(&mut self, token_hash: &str, types: &[String]) -> AuthResult<OneTimeToken> {
        let id = *self.by_hash.get(token_hash).ok_or_else(expired)?;
        let token = self.by_id.get(&id).cloned().ok_or_else(expired)?;
        if !types.is_empty() && !types.contains(&token.token_type) {
            return Err(expired());
        }
        self.store.apply(vec![self.table.remove(id.as_bytes().to_vec())])?;
        self.forget(&token);
        if !self.is_live(&token) {
            return Err(expired());
        }
        Ok(token)
    }

    fn clear_user(&mut self, user_id: Uuid) -> AuthResult<()> {
        let doomed: Vec<OneTimeToken> = self.by_id.values().filter(|t| t.user_id == user_id).cloned().collect();
        self.remove_all(doomed)
    }

    fn sweep(&mut self) -> AuthResult<()> {
        let doomed: Vec<OneTimeToken> = self.by_id.values().filter(|t| !self.is_live(t)).cloned().collect();
        self.remove_all(doomed)
    }

    fn remove_all(&mut self, doomed: Vec<OneTimeToken>) -> AuthResult<()> {
        if doomed.is_empty() {
            return Ok(());
        }
        self.store.apply(doomed.iter().map(|t| self.table.remove(t.id.as_bytes().to_vec())).collect())?;
        for t in doomed {
            self.forget(&t);
        }
        Ok(())
    }

    fn forget(&mut self, t: &OneTimeToken) {
        self.by_id.remove(&t.id);
        if self.by_hash.get(&t.token_hash) == Some(&t.id) {
            self.by_hash.remove(&t.token_hash);
        }
    }
}

impl Actor for OtpIssuer {
    type Msg = OtpIssuerMessage;
    type State = OtpIssuerState;
    type Arguments = ActorEnv;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, env: ActorEnv) -> Result<OtpIssuerState, ActorProcessingErr> {
        Ok(OtpIssuerState::load(&env)?)
    }

    async fn post_start(&self, me: ActorRef<Self::Msg>, _st: &mut OtpIssuerState) -> Result<(), ActorProcessingErr> {
        me.send_interval(SWEEP_EVERY, || OtpIssuerMessage::Sweep);
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut OtpIssuerState,
    ) -> Result<(), ActorProcessingErr> {
        use OtpIssuerMessage::*;
        match msg {
            Issue { token, reply } => send_reply(reply, st.issue(token)),
            Consume { token_hash, types, reply } => send_reply(reply, st.consume(&token_hash, &types)),
            Peek { token_hash, reply } => send_reply(reply, Ok(st.peek(&token_hash))),
            ForUser { user_id, types, reply } => send_reply(reply, Ok(st.for_user(user_id, &types))),
            ClearUser { user_id, reply } => send_reply(reply, st.clear_user(user_id)),
            Count { reply } => {
                let _ = reply.send(Ok(st.by_id.len()));
            }
            Sweep => {
                if let Err(e) = st.sweep() {
                    tracing::error!(error = %e, "one-time token sweep failed");
                }
            }
        }
        Ok(())
    }
}

/// Cheap-to-clone handle to the OTP issuer.
#[derive(Clone)]
pub struct Otps {
    actor: watch::Receiver<ActorRef<OtpIssuerMessage>>,
    timeout: Duration,
}

impl Otps {
    pub(crate) fn new(actor: watch::Receiver<ActorRef<OtpIssuerMessage>>, timeout: Duration) -> Otps {
        Otps { actor, timeout }
    }
    fn current(&self) -> ActorRef<OtpIssuerMessage> {
        self.actor.borrow().clone()
    }
    /// See [`OtpIssuerMessage::Issue`].
    pub async fn issue(&self, token: OneTimeToken) -> AuthResult<OneTimeToken> {
        call(&self.current(), self.timeout, |reply| OtpIssuerMessage::Issue { token, reply }).await
    }
    /// See [`OtpIssuerMessage::Consume`].
    pub async fn consume(&self, token_hash: &str, types: &[&str]) -> AuthResult<OneTimeToken> {
        let token_hash = token_hash.to_owned();
        let types = types.iter().map(|t| (*t).to_owned()).collect();
        call(&self.current(), self.timeout, |reply| OtpIssuerMessage::Consume { token_hash, types, reply }).await
    }
    /// See [`OtpIssuerMessage::Peek`].
    pub async fn peek(&self, token_hash: &str) -> AuthResult<Option<OneTimeToken>> {
        let token_hash = token_hash.to_owned();
        call(&self.current(), self.timeout, |reply| OtpIssuerMessage::Peek { token_hash, reply }).await
    }
    /// See [`OtpIssuerMessage::ForUser`].
    pub async fn for_user(&self, user_id: Uuid, types: &[&str]) -> AuthResult<Vec<OneTimeToken>> {
        let types = types.iter().map(|t| (*t).to_owned()).collect();
        call(&self.current(), self.timeout, |reply| OtpIssuerMessage::ForUser { user_id, types, reply }).await
    }
    /// See [`OtpIssuerMessage::ClearUser`].
    pub async fn clear_user(&self, user_id: Uuid) -> AuthResult<()> {
        call(&self.current(), self.timeout, |reply| OtpIssuerMessage::ClearUser { user_id, reply }).await
    }
    /// See [`OtpIssuerMessage::Count`].
    pub async fn count(&self) -> AuthResult<usize> {
        call(&self.current(), self.timeout, |reply| OtpIssuerMessage::Count { reply }).await
    }
}
