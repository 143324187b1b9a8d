//! `OAuthFlow`: flow states for PKCE and OAuth sign-ins (GoTrue's `models/flow_state.go`).
//! The providers and `/authorize`/`/callback` arrive with the OAuth issue; the persisted,
//! expiring, single-use flow-state store is here now.
//!
//! Tree: `flow_states/v1` (id → [`FlowState`]).

use crate::call::{call, reply_when_durable, Reply};
use crate::clock::{Clock, Timestamp};
use crate::error::{AuthError, AuthResult, ErrorCode, StoreError};
use crate::storage::{self, Flusher, Store, Table};
use crate::ActorEnv;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// One PKCE / OAuth flow in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowState {
    pub id: Uuid,
    /// What the client exchanges at `POST /token?grant_type=pkce`.
    pub auth_code: String,
    pub code_challenge: String,
    /// `s256` or `plain`.
    pub code_challenge_method: String,
    /// `email`, `github`, ...
    pub provider: String,
    /// The amr method the session will carry (`email/signup`, `magiclink`, `oauth`, ...).
    pub authentication_method: String,
    pub user_id: Option<Uuid>,
    pub redirect_to: String,
    pub created_at: Timestamp,
}

/// Everything [`OAuthFlow`] can be asked.
pub enum OAuthFlowMessage {
    /// Store a new flow state.
    Create { flow: FlowState, reply: Reply<FlowState> },
    /// Take (and delete) the flow state for an auth code: 404 `flow_state_not_found`, or 422
    /// `flow_state_expired` past `GOTRUE_EXTERNAL_FLOW_STATE_EXPIRY_DURATION`.
    TakeByAuthCode { auth_code: String, reply: Reply<FlowState> },
    /// The auth code of the user's newest flow for one of `methods` (an email link was clicked).
    CodeForUser { user_id: Uuid, methods: Vec<String>, reply: Reply<String> },
    /// `grant_type=pkce`: check the verifier against the stored challenge and, on success,
    /// take (delete) the flow state. A wrong verifier leaves it in place.
    Exchange { auth_code: String, code_verifier: String, reply: Reply<FlowState> },
    /// Number of flow states.
    Count { reply: Reply<usize> },
    /// Periodic: drop expired flow states.
    Sweep,
}

/// The actor.
pub struct OAuthFlow;

/// Flow states in memory plus their table.
pub struct OAuthFlowState {
    store: Store,
    flusher: Flusher,
    clock: Clock,
    lifetime: Duration,
    table: Table<FlowState>,
    by_id: HashMap<Uuid, FlowState>,
    by_code: HashMap<String, Uuid>,
}

impl OAuthFlowState {
    fn load(env: &ActorEnv) -> Result<Self, StoreError> {
        let table: Table<FlowState> = env.store.table(storage::FLOW_STATES)?;
        let mut st = OAuthFlowState {
            store: env.store.clone(),
            flusher: env.store.flusher(),
            clock: env.clock.clone(),
            lifetime: env.settings.flow_state_expiry,
            table,
            by_id: HashMap::new(),
            by_code: HashMap::new(),
        };
        for (_, f) in st.table.load_all()? {
            st.by_code.insert(f.auth_code.clone(), f.id);
            st.by_id.insert(f.id, f);
        }
        Ok(st)
    }

    fn create(&mut self, flow: FlowState) -> AuthResult<FlowState> {
        self.store.apply(vec![self.table.put(flow.id.as_bytes().to_vec(), &flow)?])?;
        self.by_code.insert(flow.auth_code.clone(), flow.id);
        self.by_id.insert(flow.id, flow.clone());
        Ok(flow)
    }

    fn take(&mut self, auth_code: &str) -> AuthResult<FlowState> {
        let not_found =
            || AuthError::not_found(ErrorCode::FlowStateNotFound, "invalid flow state, no valid flow state found");
        let id = *self.by_code.get(auth_code).ok_or_else(not_found)?;
        let flow = self.by_id.get(&id).cloned().ok_or_else(not_found)?;
        self.store.apply(vec![self.table.remove(id.as_bytes().to_vec())])?;
        self.by_id.remove(&id);
        self.by_code.remove(auth_code);
        if self.clock.now() >= flow.created_at.plus(self.lifetime) {
            return Err(AuthError::unprocessable(
                ErrorCode::FlowStateExpired,
                "invalid flow state, flow state has expired",
            ));
        }
        Ok(flow)
    }

    fn code_for_user(&self, user_id: Uuid, methods: &[String]) -> AuthResult<String> {
        self.by_id
            .values()
            .filter(|f| f.user_id == Some(user_id) && methods.contains(&f.authentication_method))
            .max_by_key(|f| f.created_at)
            .map(|f| f.auth_code.clone())
            .ok_or_else(|| {
                AuthError::unprocessable(ErrorCode::FlowStateNotFound, "invalid flow state, no valid flow state found")
            })
    }

    fn exchange(&mut self, auth_code: &str, code_verifier: &str) -> AuthResult<FlowState> {
        let not_found =
            || AuthError::not_found(ErrorCode::FlowStateNotFound, "invalid flow state, no valid flow state found");
        let id = *self.by_code.get(auth_code).ok_or_else(not_found)?;
        let flow = self.by_id.get(&id).cloned().ok_or_else(not_found)?;
        if self.clock.now() >= flow.created_at.plus(self.lifetime) {
            return Err(AuthError::unprocessable(
                ErrorCode::FlowStateExpired,
                "invalid flow state, flow state has expired",
            ));
        }
        if !pkce_matches(&flow.code_challenge_method, &flow.code_challenge, code_verifier) {
            return Err(AuthError::bad_request(
                ErrorCode::BadCodeVerifier,
                "code challenge does not match previously saved code verifier",
            ));
        }
        if flow.user_id.is_none() {
            return Err(not_found());
        }
        self.take(auth_code)
    }

    fn sweep(&mut self) -> AuthResult<()> {
        let now = self.clock.now();
        let doomed: Vec<FlowState> =
            self.by_id.values().filter(|f| now >= f.created_at.plus(self.lifetime)).cloned().collect();
        if doomed.is_empty() {
            return Ok(());
        }
        self.store.apply(doomed.iter().map(|f| self.table.remove(f.id.as_bytes().to_vec())).collect())?;
        for f in doomed {
            self.by_id.remove(&f.id);
            self.by_code.remove(&f.auth_code);
        }
        Ok(())
    }
}

impl Actor for OAuthFlow {
    type Msg = OAuthFlowMessage;
    type State = OAuthFlowState;
    type Arguments = ActorEnv;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, env: ActorEnv) -> Result<OAuthFlowState, ActorProcessingErr> {
        Ok(OAuthFlowState::load(&env)?)
    }

    async fn post_start(&self, me: ActorRef<Self::Msg>, _st: &mut OAuthFlowState) -> Result<(), ActorProcessingErr> {
        me.send_interval(SWEEP_EVERY, || OAuthFlowMessage::Sweep);
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut OAuthFlowState,
    ) -> Result<(), ActorProcessingErr> {
        use OAuthFlowMessage::*;
        let flusher = st.flusher.clone();
        match msg {
            Create { flow, reply } => reply_when_durable(&flusher, reply, st.create(flow)),
            TakeByAuthCode { auth_code, reply } => reply_when_durable(&flusher, reply, st.take(&auth_code)),
            CodeForUser { user_id, methods, reply } => {
                reply_when_durable(&flusher, reply, st.code_for_user(user_id, &methods))
            }
            Exchange { auth_code, code_verifier, reply } => {
                reply_when_durable(&flusher, reply, st.exchange(&auth_code, &code_verifier))
            }
            Count { reply } => {
                let _ = reply.send(Ok(st.by_id.len()));
            }
            Sweep => {
                if let Err(e) = st.sweep() {
                    tracing::error!(error = %e, "flow state sweep failed");
                }
            }
        }
        Ok(())
    }
}

/// Cheap-to-clone handle to the flow-state store.
#[derive(Clone)]
pub struct OAuthFlows {
    actor: watch::Receiver<ActorRef<OAuthFlowMessage>>,
    timeout: Duration,
}

impl OAuthFlows {
    pub(crate) fn new(actor: watch::Receiver<ActorRef<OAuthFlowMessage>>, timeout: Duration) -> OAuthFlows {
        OAuthFlows { actor, timeout }
    }
    fn current(&self) -> ActorRef<OAuthFlowMessage> {
        self.actor.borrow().clone()
    }
    /// See [`OAuthFlowMessage::Create`].
    pub async fn create(&self, flow: FlowState) -> AuthResult<FlowState> {
        call(&self.current(), self.timeout, |reply| OAuthFlowMessage::Create { flow, reply }).await
    }
    /// See [`OAuthFlowMessage::TakeByAuthCode`].
    pub async fn take_by_auth_code(&self, auth_code: &str) -> AuthResult<FlowState> {
        let auth_code = auth_code.to_owned();
        call(&self.current(), self.timeout, |reply| OAuthFlowMessage::TakeByAuthCode { auth_code, reply }).await
    }
    /// See [`OAuthFlowMessage::CodeForUser`].
    pub async fn code_for_user(&self, user_id: Uuid, methods: &[&str]) -> AuthResult<String> {
        let methods = methods.iter().map(|m| (*m).to_owned()).collect();
        call(&self.current(), self.timeout, |reply| OAuthFlowMessage::CodeForUser { user_id, methods, reply }).await
    }
    /// See [`OAuthFlowMessage::Exchange`].
    pub async fn exchange(&self, auth_code: &str, code_verifier: &str) -> AuthResult<FlowState> {
        let (auth_code, code_verifier) = (auth_code.to_owned(), code_verifier.to_owned());
        call(&self.current(), self.timeout, |reply| OAuthFlowMessage::Exchange { auth_code, code_verifier, reply })
            .await
    }
    /// See [`OAuthFlowMessage::Count`].
    pub async fn count(&self) -> AuthResult<usize> {
        call(&self.current(), self.timeout, |reply| OAuthFlowMessage::Count { reply }).await
    }
}

/// PKCE check (RFC 7636): `s256` compares base64url(sha256(verifier)), `plain` the verifier
/// itself; both in constant time.
pub fn pkce_matches(method: &str, challenge: &str, verifier: &str) -> bool {
    use base64::Engine;
    let expected = if method.eq_ignore_ascii_case("s256") {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::crypto::sha256(verifier.as_bytes()))
    } else {
        verifier.to_owned()
    };
    !verifier.is_empty() && crate::crypto::secure_eq(expected.as_bytes(), challenge.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_and_plain() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches("S256", challenge, verifier));
        assert!(pkce_matches("s256", challenge, verifier));
        assert!(!pkce_matches("s256", challenge, "wrong"));
        assert!(pkce_matches("plain", "same-value", "same-value"));
        assert!(!pkce_matches("plain", "", ""));
    }
}
