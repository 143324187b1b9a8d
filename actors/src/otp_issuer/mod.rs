//! `OtpIssuer`: one-time tokens (confirmation, recovery, magic link, email change,
//! reauthentication, SMS codes). Port of GoTrue's `models/one_time_token.go`, hardened.
//!
//! Nothing stored works as a link or a code. A token holds keyed MACs ([`TokenKey`]:
//! HMAC-SHA256 under a key derived from `GOTRUE_JWT_SECRET`) of its link token and of its code
//! bound to the address it was sent to; a copy of the database without the secret gives neither.
//! Changing `GOTRUE_JWT_SECRET` therefore invalidates every outstanding link and code.
//!
//! * A link is found by the MAC of the presented token ([`OtpIssuerMessage::Peek`]); link tokens
//!   are random (224 bits), so they cannot be guessed and need no attempt count.
//! * A typed-in code is checked against its *target* — the address it was sent to, or the user
//!   for a reauthentication nonce ([`OtpIssuerMessage::CheckCode`]). Every wrong code counts
//!   against all of the target's live tokens of the accepted types (persisted with the token);
//!   at [`MAX_FAILED_ATTEMPTS`] they are deleted. The count is per target, not per client, so
//!   guessing from many addresses does not help.
//!
//! One token per user and type: a new one replaces the old (with a fresh count).
//! Tree: `one_time_tokens/v2` (id → [`OneTimeToken`]). The v1 tree (GoTrue's unkeyed
//! `sha224(address + code)` hashes) is abandoned on upgrade: its tokens were short-lived, and
//! users simply request a new link or code.

use crate::call::{call, send_reply, Reply};
use crate::clock::{Clock, Timestamp};
use crate::crypto::{hmac_sha256, secure_eq, Secret};
use crate::error::{AuthError, AuthResult, ErrorCode, StoreError};
use crate::pg::otps::PgOtps;
use crate::pg::types::spawn_request;
use crate::storage::{self, Op, Store, Table};
use crate::{ActorEnv, Storage};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// How often expired tokens are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Wrong codes a target may present before its live tokens (of the types the verification
/// accepts) are deleted. 5 is the documented default: with 6-digit codes, the chance of a hit
/// per issued code is 5 in a million, and a new code waits for `GOTRUE_SMTP_MAX_FREQUENCY` /
/// `GOTRUE_SMS_MAX_FREQUENCY`.
pub const MAX_FAILED_ATTEMPTS: u32 = 5;

/// Label the one-time-token key is derived under (never change it without bumping the tree:
/// every stored MAC depends on it).
const KEY_LABEL: &str = "one-time-token key v1";

/// A 256-bit MAC as stored.
pub type Mac256 = [u8; 32];

/// The server's one-time-token MAC key: `crypto::derive_key(GOTRUE_JWT_SECRET, KEY_LABEL)`.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// Derives the key from the JWT secret.
    pub fn derive(jwt_secret: &Secret) -> TokenKey {
        TokenKey(crate::crypto::derive_key(jwt_secret, KEY_LABEL))
    }
    /// MAC of a link token exactly as it appears in the link (`pkce_` prefix included).
    pub fn link_mac(&self, link_token: &str) -> Mac256 {
        hmac_sha256(&self.0, &[b"link", link_token.as_bytes()])
    }
    /// MAC of a code bound to the address it was sent to.
    pub fn code_mac(&self, address: &str, code: &str) -> Mac256 {
        hmac_sha256(&self.0, &[b"code", address.as_bytes(), code.as_bytes()])
    }
}

/// A stored one-time token: only MACs, never the link token or the code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneTimeToken {
    pub id: Uuid,
    pub user_id: Uuid,
    /// `confirmation_token`, `recovery_token`, `reauthentication_token`, ...
    pub token_type: String,
    /// [`TokenKey::link_mac`] of the link token; `None` for codes sent without a link (SMS).
    pub link_mac: Option<Mac256>,
    /// [`TokenKey::code_mac`] of `relates_to` and the code.
    pub code_mac: Mac256,
    /// The address the token was sent to.
    pub relates_to: String,
    /// The link belongs to a PKCE flow (its token is `pkce_`-prefixed).
    pub pkce: bool,
    /// Wrong codes presented against this token so far (see [`MAX_FAILED_ATTEMPTS`]).
    pub failed_attempts: u32,
    pub created_at: Timestamp,
    /// Overrides the issuer's lifetime (`GOTRUE_MAILER_OTP_EXP`), e.g. for SMS codes
    /// (`GOTRUE_SMS_OTP_EXP`).
    pub expires_at: Option<Timestamp>,
}

/// A token to issue: the secrets travel to the issuer, only their MACs are stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub user_id: Uuid,
    pub token_type: String,
    /// The address the token is sent to (the code is bound to it).
    pub relates_to: String,
    /// The link token as it appears in the link (`pkce_` prefix included), if there is a link.
    pub link: Option<Secret>,
    /// The code the user can type.
    pub code: Secret,
    /// See [`OneTimeToken::expires_at`].
    pub expires_at: Option<Timestamp>,
}

/// Whom a typed-in code is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeTarget {
    /// The email address or phone number the code was sent to.
    Address(String),
    /// The user the code was sent to (reauthentication nonces, by mail or SMS).
    User(Uuid),
}

/// Everything [`OtpIssuer`] can be asked.
pub enum OtpIssuerMessage {
    /// Store a token, replacing the user's previous one of the same type.
    Issue { token: NewToken, reply: Reply<OneTimeToken> },
    /// Take a token by id: single use; `otp_expired` (403) if unknown, expired, or not of one
    /// of `types` (an empty list accepts any type). A token of the wrong type is left in place.
    Consume { id: Uuid, types: Vec<String>, reply: Reply<OneTimeToken> },
    /// Look up a live token by its link token without consuming it or counting anything (links
    /// are unguessable; link scanners and `HEAD` requests must not burn them).
    Peek { link: Secret, reply: Reply<Option<OneTimeToken>> },
    /// Check a typed-in code against the target's live tokens of `types` without consuming it.
    /// A miss counts one failed attempt against each of them (a write) and deletes those that
    /// reach [`MAX_FAILED_ATTEMPTS`]; the answer is then `None`.
    CheckCode { target: CodeTarget, code: Secret, types: Vec<String>, reply: Reply<Option<OneTimeToken>> },
    /// The user's live tokens of the given types.
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
    key: TokenKey,
    table: Table<OneTimeToken>,
    by_id: HashMap<Uuid, OneTimeToken>,
    by_link: HashMap<Mac256, Uuid>,
    by_address: HashMap<String, Vec<Uuid>>,
    by_user: HashMap<Uuid, Vec<Uuid>>,
}

/// The answer for a token that is unknown, expired, used or of the wrong type.
pub(crate) fn expired() -> AuthError {
    AuthError::forbidden(ErrorCode::OtpExpired, "Token has expired or is invalid")
}

// The rules both backends apply (sled here, Postgres in `pg::otps`).

impl OneTimeToken {
    /// The token as stored for `new`, issued at `now`: MACs only.
    pub(crate) fn mint(key: &TokenKey, new: NewToken, now: Timestamp) -> OneTimeToken {
        let pkce = new.link.as_ref().is_some_and(|l| l.expose().starts_with(crate::flows::email::PKCE_PREFIX));
        OneTimeToken {
            id: Uuid::new_v4(),
            user_id: new.user_id,
            link_mac: new.link.as_ref().map(|l| key.link_mac(l.expose())),
            code_mac: key.code_mac(&new.relates_to, new.code.expose()),
            token_type: new.token_type,
            relates_to: new.relates_to,
            pkce,
            failed_attempts: 0,
            created_at: now,
            expires_at: new.expires_at,
        }
    }

    /// The first instant the token no longer works: its own expiry, else `lifetime` after its
    /// creation (`GOTRUE_MAILER_OTP_EXP`).
    pub(crate) fn dead_from(&self, lifetime: Duration) -> Timestamp {
        self.expires_at.unwrap_or_else(|| self.created_at.plus(lifetime))
    }

    pub(crate) fn is_live(&self, now: Timestamp, lifetime: Duration) -> bool {
        now < self.dead_from(lifetime)
    }

    /// The token was found by `link_mac`: check the stored MAC in constant time.
    pub(crate) fn link_matches(&self, link_mac: &Mac256) -> bool {
        self.link_mac.is_some_and(|stored| secure_eq(&stored, link_mac))
    }
}

/// Whether a consumption accepting `types` takes a token of `token_type` (empty: any type).
pub(crate) fn accepts_type(types: &[String], token_type: &str) -> bool {
    types.is_empty() || types.iter().any(|t| t == token_type)
}

/// The candidate `code` matches, comparing against every candidate (no early exit), each in
/// constant time.
pub(crate) fn matching_code(key: &TokenKey, candidates: &[OneTimeToken], code: &str) -> Option<OneTimeToken> {
    let mut hit = None;
    for t in candidates {
        if secure_eq(&key.code_mac(&t.relates_to, code), &t.code_mac) && hit.is_none() {
            hit = Some(t.clone());
        }
    }
    hit
}

/// A token with this many wrong codes counted is deleted.
pub(crate) fn exhausted(failed_attempts: u32) -> bool {
    failed_attempts >= MAX_FAILED_ATTEMPTS
}

pub(crate) fn log_exhausted(t: &OneTimeToken) {
    tracing::info!(token_type = %t.token_type, user_id = %t.user_id, "one-time token deleted after too many wrong codes");
}

impl OtpIssuerState {
    /// Loads every outstanding token.
    pub fn load(store: &Store, env: &ActorEnv) -> Result<Self, StoreError> {
        let table: Table<OneTimeToken> = store.table(storage::ONE_TIME_TOKENS)?;
        let mut st = OtpIssuerState {
            store: store.clone(),
            clock: env.clock.clone(),
            lifetime: env.settings.otp.exp,
            key: TokenKey::derive(&env.settings.jwt.secret),
            table,
            by_id: HashMap::new(),
            by_link: HashMap::new(),
            by_address: HashMap::new(),
            by_user: HashMap::new(),
        };
        for (_, t) in st.table.load_all()? {
            st.remember(t);
        }
        Ok(st)
    }

    fn issue(&mut self, new: NewToken) -> AuthResult<OneTimeToken> {
        let token = OneTimeToken::mint(&self.key, new, self.clock.now());
        let replaced: Vec<OneTimeToken> = self
            .ids_of_user(token.user_id)
            .filter_map(|id| self.by_id.get(&id))
            .filter(|t| t.token_type == token.token_type)
            .cloned()
            .collect();
        let mut ops = vec![self.table.put(token.id.as_bytes().to_vec(), &token)?];
        ops.extend(replaced.iter().map(|t| self.table.remove(t.id.as_bytes().to_vec())));
        self.store.apply(ops)?;
        for t in replaced {
            self.forget(&t);
        }
        self.remember(token.clone());
        Ok(token)
    }

    fn ids_of_user(&self, user_id: Uuid) -> impl Iterator<Item = Uuid> + '_ {
        self.by_user.get(&user_id).into_iter().flatten().copied()
    }

    fn is_live(&self, t: &OneTimeToken) -> bool {
        t.is_live(self.clock.now(), self.lifetime)
    }

    fn peek(&self, link: &str) -> Option<OneTimeToken> {
        let mac = self.key.link_mac(link);
        let t = self.by_link.get(&mac).and_then(|id| self.by_id.get(id))?;
        (t.link_matches(&mac) && self.is_live(t)).then(|| t.clone())
    }

    fn check_code(&mut self, target: &CodeTarget, code: &str, types: &[String]) -> AuthResult<Option<OneTimeToken>> {
        let ids: Vec<Uuid> = match target {
            CodeTarget::Address(address) => self.by_address.get(address).cloned().unwrap_or_default(),
            CodeTarget::User(user_id) => self.ids_of_user(*user_id).collect(),
        };
        let candidates: Vec<OneTimeToken> = ids
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .filter(|t| types.contains(&t.token_type) && self.is_live(t))
            .cloned()
            .collect();
        let hit = matching_code(&self.key, &candidates, code);
        if hit.is_some() || candidates.is_empty() {
            return Ok(hit);
        }
        // A wrong code: one failed attempt against each candidate; the last one kills it.
        let mut ops: Vec<Op> = Vec::with_capacity(candidates.len());
        let mut counted = Vec::with_capacity(candidates.len());
        for mut t in candidates {
            t.failed_attempts = t.failed_attempts.saturating_add(1);
            if exhausted(t.failed_attempts) {
                ops.push(self.table.remove(t.id.as_bytes().to_vec()));
            } else {
                ops.push(self.table.put(t.id.as_bytes().to_vec(), &t)?);
            }
            counted.push(t);
        }
        self.store.apply(ops)?;
        for t in counted {
            if exhausted(t.failed_attempts) {
                log_exhausted(&t);
                self.forget(&t);
            } else if let Some(slot) = self.by_id.get_mut(&t.id) {
                *slot = t;
            }
        }
        Ok(None)
    }

    fn for_user(&self, user_id: Uuid, types: &[String]) -> Vec<OneTimeToken> {
        self.ids_of_user(user_id)
            .filter_map(|id| self.by_id.get(&id))
            .filter(|t| types.contains(&t.token_type) && self.is_live(t))
            .cloned()
            .collect()
    }

    fn consume(&mut self, id: Uuid, types: &[String]) -> AuthResult<OneTimeToken> {
        let token = self.by_id.get(&id).cloned().ok_or_else(expired)?;
        if !accepts_type(types, &token.token_type) {
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
        let doomed: Vec<OneTimeToken> =
            self.ids_of_user(user_id).filter_map(|id| self.by_id.get(&id)).cloned().collect();
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

    fn remember(&mut self, t: OneTimeToken) {
        if let Some(mac) = t.link_mac {
            self.by_link.insert(mac, t.id);
        }
        self.by_address.entry(t.relates_to.clone()).or_default().push(t.id);
        self.by_user.entry(t.user_id).or_default().push(t.id);
        self.by_id.insert(t.id, t);
    }

    fn forget(&mut self, t: &OneTimeToken) {
        self.by_id.remove(&t.id);
        if let Some(mac) = &t.link_mac {
            if self.by_link.get(mac) == Some(&t.id) {
                self.by_link.remove(mac);
            }
        }
        if let Some(ids) = self.by_address.get_mut(&t.relates_to) {
            ids.retain(|id| *id != t.id);
            if ids.is_empty() {
                self.by_address.remove(&t.relates_to);
            }
        }
        if let Some(ids) = self.by_user.get_mut(&t.user_id) {
            ids.retain(|id| *id != t.id);
            if ids.is_empty() {
                self.by_user.remove(&t.user_id);
            }
        }
    }
}

/// Where the issuer's tokens live. The message enum is the interface both backends answer:
/// sled from memory, one message at a time; Postgres per request on its own task, serialised by
/// row locks and conditional deletes (a token is used once across every node).
pub enum Backend {
    Sled(OtpIssuerState),
    Postgres(Arc<PgOtps>),
}

impl Actor for OtpIssuer {
    type Msg = OtpIssuerMessage;
    type State = Backend;
    type Arguments = ActorEnv;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, env: ActorEnv) -> Result<Backend, ActorProcessingErr> {
        match &env.storage {
            Storage::Sled(store) => Ok(Backend::Sled(OtpIssuerState::load(store, &env)?)),
            Storage::Postgres(db) => Ok(Backend::Postgres(Arc::new(PgOtps::new(db.clone(), &env)))),
        }
    }

    async fn post_start(&self, me: ActorRef<Self::Msg>, _st: &mut Backend) -> Result<(), ActorProcessingErr> {
        me.send_interval(SWEEP_EVERY, || OtpIssuerMessage::Sweep);
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        backend: &mut Backend,
    ) -> Result<(), ActorProcessingErr> {
        use OtpIssuerMessage::*;
        let st = match backend {
            Backend::Sled(st) => st,
            Backend::Postgres(pg) => {
                spawn_request(pg.clone().handle(msg));
                return Ok(());
            }
        };
        match msg {
            Issue { token, reply } => send_reply(reply, st.issue(token)),
            Consume { id, types, reply } => send_reply(reply, st.consume(id, &types)),
            Peek { link, reply } => send_reply(reply, Ok(st.peek(link.expose()))),
            CheckCode { target, code, types, reply } => {
                send_reply(reply, st.check_code(&target, code.expose(), &types))
            }
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

fn owned(types: &[&str]) -> Vec<String> {
    types.iter().map(|t| (*t).to_owned()).collect()
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
    pub async fn issue(&self, token: NewToken) -> AuthResult<OneTimeToken> {
        call(&self.current(), self.timeout, |reply| OtpIssuerMessage::Issue { token, reply }).await
    }
    /// See [`OtpIssuerMessage::Consume`].
    pub async fn consume(&self, id: Uuid, types: &[&str]) -> AuthResult<OneTimeToken> {
        let types = owned(types);
        call(&self.current(), self.timeout, |reply| OtpIssuerMessage::Consume { id, types, reply }).await
    }
    /// See [`OtpIssuerMessage::Peek`].
    pub async fn peek(&self, link: &str) -> AuthResult<Option<OneTimeToken>> {
        let link = Secret(link.to_owned());
        call(&self.current(), self.timeout, |reply| OtpIssuerMessage::Peek { link, reply }).await
    }
    /// See [`OtpIssuerMessage::CheckCode`].
    pub async fn check_code(&self, target: CodeTarget, code: &str, types: &[&str]) -> AuthResult<Option<OneTimeToken>> {
        let (code, types) = (Secret(code.to_owned()), owned(types));
        call(&self.current(), self.timeout, |reply| OtpIssuerMessage::CheckCode { target, code, types, reply }).await
    }
    /// See [`OtpIssuerMessage::ForUser`].
    pub async fn for_user(&self, user_id: Uuid, types: &[&str]) -> AuthResult<Vec<OneTimeToken>> {
        let types = owned(types);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_depend_on_the_secret_the_target_and_the_kind() {
        let key = TokenKey::derive(&Secret("secret-one".into()));
        let other = TokenKey::derive(&Secret("secret-two".into()));
        assert_eq!(key.code_mac("ann@example.com", "123456"), key.code_mac("ann@example.com", "123456"));
        assert_ne!(key.code_mac("ann@example.com", "123456"), other.code_mac("ann@example.com", "123456"));
        assert_ne!(key.code_mac("ann@example.com", "123456"), key.code_mac("bob@example.com", "123456"));
        // The separator keeps `address ‖ code` unambiguous.
        assert_ne!(key.code_mac("ann@example.com1", "23456"), key.code_mac("ann@example.com", "123456"));
        assert_ne!(key.link_mac("abc"), key.code_mac("abc", ""));
        assert_eq!(format!("{key:?}"), "TokenKey(<redacted>)");
    }
}
