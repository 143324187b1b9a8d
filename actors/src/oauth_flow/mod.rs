//! `OAuthFlow`: flow states for PKCE and OAuth sign-ins (GoTrue's `models/flow_state.go`).
//! Email flows store a bare [`FlowState`]; OAuth sign-ins add an [`ExternalFlow`] (linking
//! target, nonce, the provider's tokens once the callback ran). The flow id is the OAuth
//! `state`; a callback claims it once (implicit flows are deleted then, PKCE flows marked), and
//! the auth code of a PKCE flow is exchanged once. Expired flows are swept every minute.
//!
//! Tree: `flow_states/v1` (id → [`StoredFlow`]).

use crate::call::{call, send_reply, Reply};
use crate::clock::{Clock, Timestamp};
use crate::error::{AuthError, AuthResult, ErrorCode, StoreError};
use crate::pg::flows::PgFlows;
use crate::pg::types::spawn_request;
use crate::storage::{self, Store, Table};
use crate::{ActorEnv, Storage};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
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

/// What an OAuth (external provider) flow adds to its [`FlowState`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExternalFlow {
    /// Manual linking (`/user/identities/authorize`): the user the identity is added to.
    pub linking_target: Option<Uuid>,
    /// The `nonce` sent to the provider, checked against its id_token ("" = none sent).
    pub nonce: String,
    /// Set when a callback claimed the flow (a second callback is refused).
    pub claimed_at: Option<Timestamp>,
    /// Stored by a PKCE callback for the session the auth code is exchanged for.
    pub provider_token: String,
    pub provider_refresh_token: String,
}

/// The stored record: a flow state and, for OAuth sign-ins, its external part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFlow {
    pub flow: FlowState,
    pub external: Option<ExternalFlow>,
    /// When the auth code was handed out (an email link clicked, an OAuth callback done).
    pub auth_code_issued_at: Option<Timestamp>,
}

impl StoredFlow {
    /// The instant the flow's lifetime is measured from: for magic links (GoTrue's
    /// `FlowState.IsExpired`) and OAuth flows, the auth code's issue once it happened; else the
    /// flow's creation.
    pub(crate) fn started(&self) -> Timestamp {
        let from_issue = self.external.is_some() || self.flow.authentication_method == "magiclink";
        match self.auth_code_issued_at {
            Some(issued) if from_issue => issued,
            _ => self.flow.created_at,
        }
    }
}

/// A flow as a PKCE exchange hands it back.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangedFlow {
    pub flow: FlowState,
    pub external: Option<ExternalFlow>,
}

// The rules both backends apply (sled here, Postgres in `pg::flows`): each takes the flow as
// found (locked, in Postgres) and says what becomes of it.

/// A flow state's lifetimes: `GOTRUE_EXTERNAL_FLOW_STATE_EXPIRY_DURATION`, and for an email flow
/// whose link was not clicked yet, the link's (the mailed token's) when longer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlowRules {
    pub lifetime: Duration,
    pub link_lifetime: Duration,
}

/// What a callback's claim does to the flow.
pub(crate) enum Claimed {
    /// Implicit flow: single use, deleted now.
    Delete(ExchangedFlow),
    /// PKCE flow: stored as claimed (the new record), waiting for `Complete`.
    Mark(StoredFlow, ExchangedFlow),
}

fn flow_not_found() -> AuthError {
    AuthError::not_found(ErrorCode::FlowStateNotFound, "invalid flow state, no valid flow state found")
}

fn flow_expired() -> AuthError {
    AuthError::unprocessable(ErrorCode::FlowStateExpired, "invalid flow state, flow state has expired")
}

fn already_used() -> AuthError {
    AuthError::bad_request(ErrorCode::FlowStateAlreadyUsed, "State has already been used")
}

fn bad_state(msg: &'static str) -> AuthError {
    AuthError::bad_request(ErrorCode::BadOauthState, msg)
}

impl FlowRules {
    pub(crate) fn from_env(env: &ActorEnv) -> FlowRules {
        FlowRules {
            lifetime: env.settings.flow_state_expiry,
            link_lifetime: env.settings.otp.exp.max(env.settings.flow_state_expiry),
        }
    }

    pub(crate) fn expired(&self, stored: &StoredFlow, now: Timestamp) -> bool {
        now >= stored.started().plus(self.lifetime)
    }

    /// Expired, and no longer reachable either: an email flow whose link was not clicked yet
    /// stays while the link is valid (a magic link's window starts at the click).
    pub(crate) fn sweepable(&self, stored: &StoredFlow, now: Timestamp) -> bool {
        if stored.external.is_none() && stored.auth_code_issued_at.is_none() {
            return now >= stored.flow.created_at.plus(self.link_lifetime);
        }
        self.expired(stored, now)
    }

    /// A flow taken (already removed) by its auth code.
    pub(crate) fn taken(&self, stored: Option<StoredFlow>, now: Timestamp) -> AuthResult<StoredFlow> {
        let stored = stored.ok_or_else(flow_not_found)?;
        if self.expired(&stored, now) {
            return Err(flow_expired());
        }
        Ok(stored)
    }

    /// `/callback` claiming the flow `stored` (see [`OAuthFlowMessage::Claim`]).
    pub(crate) fn claim(&self, stored: Option<StoredFlow>, now: Timestamp) -> AuthResult<Claimed> {
        let stored =
            stored.filter(|s| s.external.is_some()).ok_or_else(|| bad_state("OAuth state not found or expired"))?;
        if self.expired(&stored, now) {
            return Err(bad_state("OAuth state has expired"));
        }
        let mut external = stored.external.clone().unwrap_or_default();
        if stored.flow.code_challenge.is_empty() {
            // Implicit: the state is single use; the session goes out in this very callback.
            return Ok(Claimed::Delete(ExchangedFlow { flow: stored.flow, external: Some(external) }));
        }
        if external.claimed_at.is_some() || stored.flow.user_id.is_some() {
            return Err(already_used());
        }
        external.claimed_at = Some(now);
        let out = ExchangedFlow { flow: stored.flow.clone(), external: Some(external.clone()) };
        Ok(Claimed::Mark(StoredFlow { external: Some(external), ..stored }, out))
    }

    /// A PKCE callback completing `stored`: the record to store (see
    /// [`OAuthFlowMessage::Complete`]); its auth code is the answer.
    pub(crate) fn complete(
        stored: Option<StoredFlow>,
        user_id: Uuid,
        token: String,
        refresh: String,
        now: Timestamp,
    ) -> AuthResult<StoredFlow> {
        let mut stored = stored.ok_or_else(|| bad_state("OAuth state not found or expired"))?;
        if stored.flow.user_id.is_some() {
            return Err(already_used());
        }
        stored.flow.user_id = Some(user_id);
        let external = stored.external.get_or_insert_with(ExternalFlow::default);
        external.provider_token = token;
        external.provider_refresh_token = refresh;
        stored.auth_code_issued_at = Some(now);
        Ok(stored)
    }

    /// `CodeForUser` found no flow.
    pub(crate) fn no_code_for_user() -> AuthError {
        AuthError::unprocessable(ErrorCode::FlowStateNotFound, "invalid flow state, no valid flow state found")
    }

    /// Whether `grant_type=pkce` may take `stored` (see [`OAuthFlowMessage::Exchange`]); on an
    /// error the flow stays.
    pub(crate) fn check_exchange<'a>(
        &self,
        stored: Option<&'a StoredFlow>,
        verifier: &str,
        now: Timestamp,
    ) -> AuthResult<&'a StoredFlow> {
        let stored = stored.ok_or_else(flow_not_found)?;
        let flow = &stored.flow;
        if self.expired(stored, now) {
            return Err(flow_expired());
        }
        if !pkce_matches(&flow.code_challenge_method, &flow.code_challenge, verifier) {
            return Err(AuthError::bad_request(
                ErrorCode::BadCodeVerifier,
                "code challenge does not match previously saved code verifier",
            ));
        }
        if flow.user_id.is_none() {
            return Err(flow_not_found());
        }
        Ok(stored)
    }
}

/// Everything [`OAuthFlow`] can be asked.
pub enum OAuthFlowMessage {
    /// Store a new flow state.
    Create { flow: FlowState, reply: Reply<FlowState> },
    /// Store a new OAuth flow (its id is the `state` sent to the provider).
    CreateExternal { flow: FlowState, external: ExternalFlow, reply: Reply<()> },
    /// `/callback`: claim the OAuth flow `id` once. Unknown or expired → 400 `bad_oauth_state`;
    /// a PKCE flow already claimed → 400 `flow_state_already_used`. Implicit flows are deleted
    /// here (single use); PKCE flows are marked and wait for [`OAuthFlowMessage::Complete`].
    Claim { id: Uuid, reply: Reply<ExchangedFlow> },
    /// A PKCE callback succeeded: attach the user and the provider's tokens; the auth code
    /// becomes exchangeable. Returns the auth code.
    Complete { id: Uuid, user_id: Uuid, provider_token: String, provider_refresh_token: String, reply: Reply<String> },
    /// Take (and delete) the flow state for an auth code: 404 `flow_state_not_found`, or 422
    /// `flow_state_expired` past `GOTRUE_EXTERNAL_FLOW_STATE_EXPIRY_DURATION`.
    TakeByAuthCode { auth_code: String, reply: Reply<FlowState> },
    /// The auth code of the user's newest flow for one of `methods` (an email link was clicked);
    /// records when it was issued.
    CodeForUser { user_id: Uuid, methods: Vec<String>, reply: Reply<String> },
    /// `grant_type=pkce`: check the verifier against the stored challenge and, on success,
    /// take (delete) the flow state. A wrong verifier leaves it in place.
    Exchange { auth_code: String, code_verifier: String, reply: Reply<ExchangedFlow> },
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
    clock: Clock,
    rules: FlowRules,
    table: Table<StoredFlow>,
    by_id: HashMap<Uuid, StoredFlow>,
    by_code: HashMap<String, Uuid>,
}

impl OAuthFlowState {
    fn load(store: &Store, env: &ActorEnv) -> Result<Self, StoreError> {
        let table: Table<StoredFlow> = store.table(storage::FLOW_STATES)?;
        let mut st = OAuthFlowState {
            store: store.clone(),
            clock: env.clock.clone(),
            rules: FlowRules::from_env(env),
            table,
            by_id: HashMap::new(),
            by_code: HashMap::new(),
        };
        for (_, f) in st.table.load_all()? {
            st.by_code.insert(f.flow.auth_code.clone(), f.flow.id);
            st.by_id.insert(f.flow.id, f);
        }
        Ok(st)
    }

    fn put(&mut self, stored: StoredFlow) -> AuthResult<()> {
        self.store.apply(vec![self.table.put(stored.flow.id.as_bytes().to_vec(), &stored)?])?;
        self.by_code.insert(stored.flow.auth_code.clone(), stored.flow.id);
        self.by_id.insert(stored.flow.id, stored);
        Ok(())
    }

    fn create(&mut self, flow: FlowState) -> AuthResult<FlowState> {
        self.put(StoredFlow { flow: flow.clone(), external: None, auth_code_issued_at: None })?;
        Ok(flow)
    }

    fn create_external(&mut self, flow: FlowState, external: ExternalFlow) -> AuthResult<()> {
        self.put(StoredFlow { flow, external: Some(external), auth_code_issued_at: None })
    }

    fn remove(&mut self, id: Uuid) -> AuthResult<Option<StoredFlow>> {
        if !self.by_id.contains_key(&id) {
            return Ok(None);
        }
        self.store.apply(vec![self.table.remove(id.as_bytes().to_vec())])?;
        let stored = self.by_id.remove(&id);
        if let Some(s) = &stored {
            self.by_code.remove(&s.flow.auth_code);
        }
        Ok(stored)
    }

    fn take(&mut self, auth_code: &str) -> AuthResult<FlowState> {
        self.take_stored(auth_code).map(|s| s.flow)
    }

    fn take_stored(&mut self, auth_code: &str) -> AuthResult<StoredFlow> {
        let removed = match self.by_code.get(auth_code) {
            Some(id) => self.remove(*id)?,
            None => None,
        };
        self.rules.taken(removed, self.clock.now())
    }

    fn claim(&mut self, id: Uuid) -> AuthResult<ExchangedFlow> {
        match self.rules.claim(self.by_id.get(&id).cloned(), self.clock.now())? {
            Claimed::Delete(out) => {
                self.remove(id)?;
                Ok(out)
            }
            Claimed::Mark(stored, out) => {
                self.put(stored)?;
                Ok(out)
            }
        }
    }

    fn complete(&mut self, id: Uuid, user_id: Uuid, token: String, refresh: String) -> AuthResult<String> {
        let stored = FlowRules::complete(self.by_id.get(&id).cloned(), user_id, token, refresh, self.clock.now())?;
        let code = stored.flow.auth_code.clone();
        self.put(stored)?;
        Ok(code)
    }

    fn code_for_user(&mut self, user_id: Uuid, methods: &[String]) -> AuthResult<String> {
        let mut stored = self
            .by_id
            .values()
            .filter(|s| s.flow.user_id == Some(user_id) && methods.contains(&s.flow.authentication_method))
            .max_by_key(|s| s.flow.created_at)
            .cloned()
            .ok_or_else(FlowRules::no_code_for_user)?;
        let code = stored.flow.auth_code.clone();
        // GoTrue's `RecordAuthCodeIssuedAtTime`: a magic link's exchange window starts now.
        stored.auth_code_issued_at = Some(self.clock.now());
        self.put(stored)?;
        Ok(code)
    }

    fn exchange(&mut self, auth_code: &str, code_verifier: &str) -> AuthResult<ExchangedFlow> {
        let stored = self.by_code.get(auth_code).and_then(|id| self.by_id.get(id));
        self.rules.check_exchange(stored, code_verifier, self.clock.now())?;
        let taken = self.take_stored(auth_code)?;
        Ok(ExchangedFlow { flow: taken.flow, external: taken.external })
    }

    fn sweep(&mut self) -> AuthResult<()> {
        let doomed: Vec<FlowState> =
            self.by_id.values().filter(|s| self.rules.sweepable(s, self.clock.now())).map(|s| s.flow.clone()).collect();
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

/// Where flow states live. The message enum is the interface both backends answer: sled from
/// memory, one message at a time; Postgres per request on its own task, serialised by row locks
/// and conditional deletes (a flow is claimed and exchanged once across every node).
pub enum Backend {
    Sled(OAuthFlowState),
    Postgres(Arc<PgFlows>),
}

impl Actor for OAuthFlow {
    type Msg = OAuthFlowMessage;
    type State = Backend;
    type Arguments = ActorEnv;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, env: ActorEnv) -> Result<Backend, ActorProcessingErr> {
        match &env.storage {
            Storage::Sled(store) => Ok(Backend::Sled(OAuthFlowState::load(store, &env)?)),
            Storage::Postgres(db) => Ok(Backend::Postgres(Arc::new(PgFlows::new(db.clone(), &env)))),
        }
    }

    async fn post_start(&self, me: ActorRef<Self::Msg>, _st: &mut Backend) -> Result<(), ActorProcessingErr> {
        me.send_interval(SWEEP_EVERY, || OAuthFlowMessage::Sweep);
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        backend: &mut Backend,
    ) -> Result<(), ActorProcessingErr> {
        use OAuthFlowMessage::*;
        let st = match backend {
            Backend::Sled(st) => st,
            Backend::Postgres(pg) => {
                spawn_request(pg.clone().handle(msg));
                return Ok(());
            }
        };
        match msg {
            Create { flow, reply } => send_reply(reply, st.create(flow)),
            CreateExternal { flow, external, reply } => send_reply(reply, st.create_external(flow, external)),
            Claim { id, reply } => send_reply(reply, st.claim(id)),
            Complete { id, user_id, provider_token, provider_refresh_token, reply } => {
                send_reply(reply, st.complete(id, user_id, provider_token, provider_refresh_token))
            }
            TakeByAuthCode { auth_code, reply } => send_reply(reply, st.take(&auth_code)),
            CodeForUser { user_id, methods, reply } => send_reply(reply, st.code_for_user(user_id, &methods)),
            Exchange { auth_code, code_verifier, reply } => send_reply(reply, st.exchange(&auth_code, &code_verifier)),
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
    /// See [`OAuthFlowMessage::CreateExternal`].
    pub async fn create_external(&self, flow: FlowState, external: ExternalFlow) -> AuthResult<()> {
        call(&self.current(), self.timeout, |reply| OAuthFlowMessage::CreateExternal { flow, external, reply }).await
    }
    /// See [`OAuthFlowMessage::Claim`].
    pub async fn claim(&self, id: Uuid) -> AuthResult<ExchangedFlow> {
        call(&self.current(), self.timeout, |reply| OAuthFlowMessage::Claim { id, reply }).await
    }
    /// See [`OAuthFlowMessage::Complete`].
    pub async fn complete(
        &self,
        id: Uuid,
        user_id: Uuid,
        provider_token: String,
        provider_refresh_token: String,
    ) -> AuthResult<String> {
        call(&self.current(), self.timeout, |reply| OAuthFlowMessage::Complete {
            id,
            user_id,
            provider_token,
            provider_refresh_token,
            reply,
        })
        .await
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
    pub async fn exchange(&self, auth_code: &str, code_verifier: &str) -> AuthResult<ExchangedFlow> {
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
pub(crate) mod tests {
    use super::*;

    fn state(clock: &Clock) -> OAuthFlowState {
        let store = Store::temporary().unwrap();
        let env = ActorEnv {
            storage: Storage::Sled(store.clone()),
            settings: std::sync::Arc::new(crate::settings::Settings::for_tests()),
            clock: clock.clone(),
        };
        OAuthFlowState::load(&store, &env).unwrap()
    }

    pub(crate) fn oauth_flow(challenge: &str, now: Timestamp) -> FlowState {
        FlowState {
            id: Uuid::new_v4(),
            auth_code: Uuid::new_v4().to_string(),
            code_challenge: challenge.into(),
            code_challenge_method: if challenge.is_empty() { String::new() } else { "s256".into() },
            provider: "github".into(),
            authentication_method: "oauth".into(),
            user_id: None,
            redirect_to: "http://localhost:3000".into(),
            created_at: now,
        }
    }

    #[tokio::test]
    async fn implicit_flows_are_claimed_once() {
        let clock = Clock::fixed(Timestamp(1_000_000_000));
        let mut st = state(&clock);
        let flow = oauth_flow("", clock.now());
        st.create_external(flow.clone(), ExternalFlow::default()).unwrap();
        assert_eq!(st.claim(flow.id).unwrap().flow, flow);
        assert_eq!(st.claim(flow.id).unwrap_err().code, ErrorCode::BadOauthState);
        // An email flow's id is not an OAuth state.
        let email = st.create(oauth_flow("", clock.now())).unwrap();
        assert_eq!(st.claim(email.id).unwrap_err().code, ErrorCode::BadOauthState);
    }

    #[tokio::test]
    async fn pkce_flows_are_claimed_completed_and_exchanged_once() {
        let clock = Clock::fixed(Timestamp(1_000_000_000));
        let mut st = state(&clock);
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let flow = oauth_flow("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", clock.now());
        st.create_external(flow.clone(), ExternalFlow::default()).unwrap();
        // Not exchangeable before the callback completed it.
        assert_eq!(st.exchange(&flow.auth_code, verifier).unwrap_err().code, ErrorCode::FlowStateNotFound);
        st.claim(flow.id).unwrap();
        assert_eq!(st.claim(flow.id).unwrap_err().code, ErrorCode::FlowStateAlreadyUsed);
        // The exchange window starts when the code is issued, not at /authorize.
        clock.advance(Duration::from_secs(290));
        let user = Uuid::new_v4();
        let code = st.complete(flow.id, user, "tok".into(), "ref".into()).unwrap();
        assert_eq!(code, flow.auth_code);
        clock.advance(Duration::from_secs(200));
        let out = st.exchange(&code, verifier).unwrap();
        assert_eq!(out.flow.user_id, Some(user));
        let ext = out.external.unwrap();
        assert_eq!((ext.provider_token.as_str(), ext.provider_refresh_token.as_str()), ("tok", "ref"));
        assert_eq!(st.exchange(&code, verifier).unwrap_err().code, ErrorCode::FlowStateNotFound);
    }

    #[tokio::test]
    async fn expired_flows_are_refused_and_swept() {
        let clock = Clock::fixed(Timestamp(1_000_000_000));
        let mut st = state(&clock);
        let flow = oauth_flow("", clock.now());
        st.create_external(flow.clone(), ExternalFlow::default()).unwrap();
        clock.advance(Duration::from_secs(301));
        let err = st.claim(flow.id).unwrap_err();
        assert_eq!((err.code, err.msg.as_ref()), (ErrorCode::BadOauthState, "OAuth state has expired"));
        st.sweep().unwrap();
        assert!(st.by_id.is_empty() && st.by_code.is_empty());
    }

    #[tokio::test]
    async fn a_magic_link_window_starts_at_the_click() {
        let clock = Clock::fixed(Timestamp(1_000_000_000));
        let mut st = state(&clock);
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let user = Uuid::new_v4();
        let mut link = oauth_flow("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", clock.now());
        (link.authentication_method, link.provider, link.user_id) = ("magiclink".into(), "email".into(), Some(user));
        let mut signup = link.clone();
        (signup.id, signup.auth_code, signup.authentication_method) =
            (Uuid::new_v4(), Uuid::new_v4().to_string(), "email/signup".into());
        st.create(link.clone()).unwrap();
        st.create(signup.clone()).unwrap();
        // Ten minutes later: both are past the flow lifetime, but their links still work, so
        // the sweeper keeps them.
        clock.advance(Duration::from_secs(600));
        st.sweep().unwrap();
        assert_eq!(st.by_id.len(), 2);
        let code = st.code_for_user(user, &["magiclink".into()]).unwrap();
        assert_eq!(st.exchange(&code, verifier).unwrap().flow.id, link.id, "magic link: counted from the click");
        let code = st.code_for_user(user, &["email/signup".into()]).unwrap();
        assert_eq!(st.exchange(&code, verifier).unwrap_err().code, ErrorCode::FlowStateExpired);
    }

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
