//! Sessions and refresh tokens in memory, written through to sled. Port of GoTrue's
//! `models/sessions.go`, `models/refresh_token.go` and the rotation in `tokens/service.go`.
//!
//! Rotation happens entirely here, serialised by the actor's mailbox, so two concurrent
//! refreshes of one token cannot both rotate it: the second sees the first's result.

use super::model::{RefreshToken, RefreshTokenV1, Session, SessionExport, TokenExport};
use super::rules::{self, token_not_found as not_found, Replay};
use super::token_key::TokenKey;
use crate::clock::Clock;
use crate::crypto;
use crate::error::{AuthError, AuthResult, StoreError};
use crate::settings::Settings;
use crate::storage::{self, Op, Store, Table};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use uuid::Uuid;

/// A session and the refresh token the client should now hold.
#[derive(Debug, Clone)]
pub struct Issued {
    pub session: Session,
    pub refresh_token: String,
}

/// Which sessions `POST /logout` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutScope {
    /// Every session of the user.
    Global,
    /// Only the current one.
    Local,
    /// Every one but the current.
    Others,
}

/// Sessions and refresh tokens in memory plus their tables.
pub struct SessionManagerState {
    store: Store,
    clock: Clock,
    settings: Arc<Settings>,
    session_table: Table<Session>,
    token_table: Table<RefreshToken>,
    key: TokenKey,
    sessions: HashMap<Uuid, Session>,
    by_user: HashMap<Uuid, BTreeSet<Uuid>>,
    tokens: HashMap<[u8; 32], RefreshToken>,
    tokens_by_session: HashMap<Uuid, Vec<[u8; 32]>>,
    next_seq: u64,
}

/// Moves every `refresh_tokens/v1` record into `refresh_tokens/v2` ([`Store::migrate_tree`]),
/// dropping the raw value the v1 layout kept for active tokens.
fn migrate_v1(store: &Store, v2: &Table<RefreshToken>) -> Result<(), StoreError> {
    let moved = store.migrate_tree(storage::REFRESH_TOKENS_V1, v2, RefreshTokenV1::migrate)?;
    if moved > 0 {
        tracing::warn!(
            count = moved,
            from = storage::REFRESH_TOKENS_V1,
            to = storage::REFRESH_TOKENS,
            "migrated refresh tokens; raw values dropped (they keep working by digest)"
        );
    }
    Ok(())
}

impl SessionManagerState {
    /// Loads every session and token; drops tokens whose session is gone. Migrates
    /// `refresh_tokens/v1` first (see [`migrate_v1`]).
    pub fn load(store: Store, clock: Clock, settings: Arc<Settings>) -> Result<Self, StoreError> {
        let session_table: Table<Session> = store.table(storage::SESSIONS)?;
        let token_table: Table<RefreshToken> = store.table(storage::REFRESH_TOKENS)?;
        migrate_v1(&store, &token_table)?;
        let key = TokenKey::derive(&settings.jwt.secret);
        let mut st = SessionManagerState {
            store,
            clock,
            settings,
            session_table,
            token_table,
            key,
            sessions: HashMap::new(),
            by_user: HashMap::new(),
            tokens: HashMap::new(),
            tokens_by_session: HashMap::new(),
            next_seq: 1,
        };
        for (_, session) in st.session_table.load_all()? {
            st.by_user.entry(session.user_id).or_default().insert(session.id);
            st.sessions.insert(session.id, session);
        }
        let mut orphans = Vec::new();
        // A rotation writes only the child (see `refresh`): a token with a child was revoked
        // when its first child was minted, and the session was refreshed when its newest child was.
        let mut rotations: Vec<([u8; 32], Uuid, crate::clock::Timestamp)> = Vec::new();
        for (key, token) in st.token_table.load_all()? {
            st.next_seq = st.next_seq.max(token.seq + 1);
            if !st.sessions.contains_key(&token.session_id) {
                orphans.push(st.token_table.remove(key));
                continue;
            }
            if let Some(parent) = token.parent {
                rotations.push((parent, token.session_id, token.created_at));
            }
            st.tokens_by_session.entry(token.session_id).or_default().push(token.digest);
            st.tokens.insert(token.digest, token);
        }
        rotations.sort_by_key(|(_, _, at)| *at);
        for (parent, session_id, at) in rotations {
            if let Some(p) = st.tokens.get_mut(&parent).filter(|p| !p.revoked) {
                p.revoked = true;
                p.updated_at = at;
            }
            if let Some(s) = st.sessions.get_mut(&session_id) {
                if s.refreshed_at.is_none_or(|r| r < at) {
                    s.refreshed_at = Some(at);
                }
                s.updated_at = s.updated_at.max(at);
            }
        }
        if !orphans.is_empty() {
            tracing::warn!(count = orphans.len(), "removing refresh tokens of deleted sessions");
            st.store.apply(orphans)?;
        }
        Ok(st)
    }

    /// Number of live sessions.
    pub fn count(&self) -> usize {
        self.sessions.len()
    }

    /// A session by id.
    pub fn get(&self, id: Uuid) -> Option<Session> {
        self.sessions.get(&id).cloned()
    }

    /// The user owning a refresh token, without rotating it (the flow checks bans first).
    pub fn owner(&self, token: &str) -> AuthResult<Uuid> {
        self.tokens.get(&crypto::sha256(token.as_bytes())).map(|t| t.user_id).ok_or_else(not_found)
    }

    /// Starts a session for `user_id` signed in by `method`, with its first refresh token.
    pub fn create(&mut self, user_id: Uuid, method: &str, user_agent: String, ip: String) -> AuthResult<Issued> {
        let session = rules::new_session(user_id, method, user_agent, ip, self.clock.now());
        let (token, raw) = self.new_token(&session, None);
        self.store.apply(vec![
            self.session_table.put(session.id.as_bytes().to_vec(), &session)?,
            self.token_table.put(token.digest.to_vec(), &token)?,
        ])?;
        self.by_user.entry(user_id).or_default().insert(session.id);
        self.tokens_by_session.entry(session.id).or_default().push(token.digest);
        self.tokens.insert(token.digest, token);
        self.sessions.insert(session.id, session.clone());
        Ok(Issued { session, refresh_token: raw })
    }

    /// A child token: its raw value is derived from the server key (never stored), so it can
    /// be recomputed for a parent replay.
    fn new_token(&mut self, session: &Session, parent: Option<[u8; 32]>) -> (RefreshToken, String) {
        let now = self.clock.now();
        let seq = self.next_seq;
        self.next_seq += 1;
        let nonce = crypto::random_bytes::<16>();
        let raw = self.key.token(session.id, seq, &nonce);
        let token = RefreshToken {
            seq,
            digest: crypto::sha256(raw.as_bytes()),
            nonce,
            session_id: session.id,
            user_id: session.user_id,
            parent,
            revoked: false,
            created_at: now,
            updated_at: now,
        };
        (token, raw)
    }

    /// `grant_type=refresh_token`: GoTrue's legacy rotation algorithm (SPEC §5.3).
    ///
    /// Returns `Ok(Err(e))` for "commit then fail": the family was revoked and written, and
    /// the client still gets `refresh_token_already_used`.
    pub fn refresh(&mut self, raw: &str) -> AuthResult<Result<Issued, AuthError>> {
        let digest = crypto::sha256(raw.as_bytes());
        let token = self.tokens.get(&digest).cloned().ok_or_else(not_found)?;
        let mut session = self.sessions.get(&token.session_id).cloned().ok_or_else(rules::session_not_found)?;
        let now = self.clock.now();
        rules::check_session_limits(&self.settings, now, &session, token.updated_at)?;

        if token.revoked {
            // The client replays the parent of the active token (another tab already
            // rotated, or it lost the last response): hand back the active token, recomputed
            // from the server key. Nothing is written (GoTrue writes nothing either, apart from
            // the flow's audit entry).
            let active = self.active_token(session.id).filter(|a| a.parent == Some(digest));
            let active = active.map(|a| self.key.rederive(a.session_id, a.seq, &a.nonce, &a.digest));
            match rules::replay(&self.settings, now, token.updated_at, active) {
                Replay::Active(raw) => return Ok(Ok(Issued { session, refresh_token: raw })),
                Replay::Rotate => {}
                Replay::Reuse { revoke_family } => {
                    if revoke_family {
                        self.revoke_family(session.id)?;
                    }
                    tracing::warn!(session_id = %session.id, "refresh token reused outside the reuse interval");
                    return Ok(Err(rules::already_used()));
                }
            }
        }

        // Rotate: revoke `token` (if not already), mint a child of it.
        let mut revoked = token.clone();
        if !revoked.revoked {
            revoked.revoked = true;
            revoked.updated_at = now;
        }
        session.refreshed_at = Some(now);
        session.updated_at = now;
        let (child, child_raw) = self.new_token(&session, Some(digest));
        // One key per rotation: the child names its parent and carries the rotation time, which
        // is all the parent's revocation and the session's `refreshed_at` are ([`Self::load`]
        // derives both from it). A single key needs no sled transaction, so a rotation never
        // waits for a sync in progress (issue 13: that wait and the extra records cost most of
        // a refresh's time).
        self.store.apply(vec![self.token_table.put(child.digest.to_vec(), &child)?])?;
        self.tokens.insert(revoked.digest, revoked);
        self.tokens_by_session.entry(session.id).or_default().push(child.digest);
        self.tokens.insert(child.digest, child);
        self.sessions.insert(session.id, session.clone());
        Ok(Ok(Issued { session, refresh_token: child_raw }))
    }

    /// The newest non-revoked token of a session.
    fn active_token(&self, session_id: Uuid) -> Option<&RefreshToken> {
        self.tokens_by_session
            .get(&session_id)?
            .iter()
            .filter_map(|d| self.tokens.get(d))
            .filter(|t| !t.revoked)
            .max_by_key(|t| t.seq)
    }

    fn revoke_family(&mut self, session_id: Uuid) -> AuthResult<()> {
        let now = self.clock.now();
        let mut changed = Vec::new();
        for digest in self.tokens_by_session.get(&session_id).cloned().unwrap_or_default() {
            if let Some(t) = self.tokens.get(&digest).filter(|t| !t.revoked) {
                let mut t = t.clone();
                t.revoked = true;
                t.updated_at = now;
                changed.push(t);
            }
        }
        let ops = changed.iter().map(|t| self.token_table.put(t.digest.to_vec(), t)).collect::<Result<Vec<_>, _>>()?;
        self.store.apply(ops)?;
        for t in changed {
            self.tokens.insert(t.digest, t);
        }
        Ok(())
    }

    /// Deletes refresh tokens revoked more than `older_than` ago (GoTrue's cleanup: 24 h), so
    /// rotation does not grow memory and disk without bound. A replay of such a token is then
    /// `refresh_token_not_found` rather than `refresh_token_already_used`.
    pub fn sweep_revoked(&mut self, older_than: std::time::Duration) -> AuthResult<usize> {
        let cutoff = rules::sweep_cutoff(self.clock.now(), older_than);
        let doomed: Vec<RefreshToken> =
            self.tokens.values().filter(|t| t.revoked && t.updated_at < cutoff).cloned().collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        self.store.apply(doomed.iter().map(|t| self.token_table.remove(t.digest.to_vec())).collect())?;
        for t in &doomed {
            self.tokens.remove(&t.digest);
            if let Some(list) = self.tokens_by_session.get_mut(&t.session_id) {
                list.retain(|d| *d != t.digest);
            }
        }
        Ok(doomed.len())
    }

    /// MFA verification succeeded on `session_id`: the session becomes `aal2` with an `amr`
    /// entry `method` (stamped now), its refresh tokens are revoked and a new one issued (GoTrue
    /// issues a new refresh token for the same session), and the user's other sessions below
    /// aal2 are deleted.
    pub fn elevate(&mut self, session_id: Uuid, method: &str) -> AuthResult<Issued> {
        let mut session = self.sessions.get(&session_id).cloned().ok_or_else(rules::elevate_session_not_found)?;
        let now = self.clock.now();
        rules::elevate(&mut session, method, now);
        let mut ops = vec![self.session_table.put(session.id.as_bytes().to_vec(), &session)?];
        let mut revoked = Vec::new();
        for digest in self.tokens_by_session.get(&session.id).cloned().unwrap_or_default() {
            if let Some(t) = self.tokens.get(&digest).filter(|t| !t.revoked) {
                let mut t = t.clone();
                t.revoked = true;
                t.updated_at = now;
                ops.push(self.token_table.put(t.digest.to_vec(), &t)?);
                revoked.push(t);
            }
        }
        let parent = revoked.iter().max_by_key(|t| t.seq).map(|t| t.digest);
        let (child, raw) = self.new_token(&session, parent);
        ops.push(self.token_table.put(child.digest.to_vec(), &child)?);
        self.store.apply(ops)?;
        for t in revoked {
            self.tokens.insert(t.digest, t);
        }
        self.tokens_by_session.entry(session.id).or_default().push(child.digest);
        self.tokens.insert(child.digest, child);
        self.sessions.insert(session.id, session.clone());
        let low: Vec<Uuid> = self
            .by_user
            .get(&session.user_id)
            .into_iter()
            .flatten()
            .filter(|id| **id != session.id && self.sessions.get(id).is_some_and(|s| s.aal != "aal2"))
            .copied()
            .collect();
        self.delete_sessions(&low)?;
        Ok(Issued { session, refresh_token: raw })
    }

    /// A factor was removed: the user's aal2 sessions go back to `aal1` and lose the `method`
    /// entry (sessions do not record which factor raised them, so all of the user's are
    /// downgraded).
    pub fn downgrade(&mut self, user_id: Uuid, method: &str) -> AuthResult<()> {
        let mut changed = Vec::new();
        for id in self.by_user.get(&user_id).into_iter().flatten() {
            if let Some(mut s) = self.sessions.get(id).cloned() {
                if rules::downgrade(&mut s, method, self.clock.now()) {
                    changed.push(s);
                }
            }
        }
        let ops = changed
            .iter()
            .map(|s| self.session_table.put(s.id.as_bytes().to_vec(), s))
            .collect::<Result<Vec<_>, _>>()?;
        self.store.apply(ops)?;
        for s in changed {
            self.sessions.insert(s.id, s);
        }
        Ok(())
    }

    /// `POST /logout`: ends sessions of `user_id` by scope. A token without a session always
    /// logs out globally.
    pub fn logout(&mut self, user_id: Uuid, current: Option<Uuid>, scope: LogoutScope) -> AuthResult<()> {
        let all: Vec<Uuid> = self.by_user.get(&user_id).map(|s| s.iter().copied().collect()).unwrap_or_default();
        let targets = scope.targets(current);
        let doomed: Vec<Uuid> = all.into_iter().filter(|s| targets.includes(*s)).collect();
        self.delete_sessions(&doomed)
    }

    /// Deletes every session of `user_id` except `keep` (password change, user deletion).
    pub fn end_user_sessions(&mut self, user_id: Uuid, keep: Option<Uuid>) -> AuthResult<()> {
        let doomed: Vec<Uuid> = self
            .by_user
            .get(&user_id)
            .map(|s| s.iter().copied().filter(|id| Some(*id) != keep).collect())
            .unwrap_or_default();
        self.delete_sessions(&doomed)
    }

    /// Every session of `user_id` with its tokens, oldest session first, tokens in issue order
    /// (see [`SessionExport`]).
    pub fn export_user(&self, user_id: Uuid) -> Vec<SessionExport> {
        let mut out: Vec<SessionExport> = self
            .by_user
            .get(&user_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.sessions.get(id))
            .map(|session| {
                let mut tokens: Vec<&RefreshToken> = self
                    .tokens_by_session
                    .get(&session.id)
                    .into_iter()
                    .flatten()
                    .filter_map(|d| self.tokens.get(d))
                    .collect();
                tokens.sort_by_key(|t| t.seq);
                let tokens = tokens
                    .into_iter()
                    .map(|t| TokenExport {
                        digest: t.digest,
                        parent: t.parent,
                        revoked: t.revoked,
                        created_at: t.created_at,
                        updated_at: t.updated_at,
                    })
                    .collect();
                SessionExport { session: session.clone(), tokens }
            })
            .collect();
        out.sort_by_key(|e| (e.session.created_at, e.session.id));
        out
    }

    /// Writes an exported session and its tokens (one sled transaction, then memory, with the
    /// indexes [`Self::load`] builds). Each token gets a fresh `seq` in the export's order and a
    /// zero nonce, as a migrated v1 token: it works by digest; a replay of its parent mints a new
    /// child. `false` (nothing written) when the session id is already here.
    pub fn import(&mut self, export: SessionExport) -> AuthResult<bool> {
        let SessionExport { session, tokens } = export;
        if self.sessions.contains_key(&session.id) {
            return Ok(false);
        }
        if let Some(t) = tokens.iter().find(|t| self.tokens.contains_key(&t.digest)) {
            return Err(AuthError::unexpected(format!(
                "refresh token {} of session {} already belongs to another session",
                hex::encode(&t.digest[..4]),
                session.id
            )));
        }
        let first_seq = self.next_seq;
        let records: Vec<RefreshToken> = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| RefreshToken {
                seq: first_seq + i as u64,
                digest: t.digest,
                nonce: [0; 16],
                session_id: session.id,
                user_id: session.user_id,
                parent: t.parent,
                revoked: t.revoked,
                created_at: t.created_at,
                updated_at: t.updated_at,
            })
            .collect();
        let mut ops = vec![self.session_table.put(session.id.as_bytes().to_vec(), &session)?];
        for t in &records {
            ops.push(self.token_table.put(t.digest.to_vec(), t)?);
        }
        self.store.apply(ops)?;
        self.next_seq = first_seq + records.len() as u64;
        self.by_user.entry(session.user_id).or_default().insert(session.id);
        let list = self.tokens_by_session.entry(session.id).or_default();
        for t in records {
            list.push(t.digest);
            self.tokens.insert(t.digest, t);
        }
        self.sessions.insert(session.id, session);
        Ok(true)
    }

    fn delete_sessions(&mut self, ids: &[Uuid]) -> AuthResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut ops: Vec<Op> = Vec::new();
        for id in ids {
            ops.push(self.session_table.remove(id.as_bytes().to_vec()));
            for digest in self.tokens_by_session.get(id).into_iter().flatten() {
                ops.push(self.token_table.remove(digest.to_vec()));
            }
        }
        self.store.apply(ops)?;
        for id in ids {
            if let Some(session) = self.sessions.remove(id) {
                if let Some(set) = self.by_user.get_mut(&session.user_id) {
                    set.remove(id);
                    if set.is_empty() {
                        self.by_user.remove(&session.user_id);
                    }
                }
            }
            for digest in self.tokens_by_session.remove(id).unwrap_or_default() {
                self.tokens.remove(&digest);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::error::ErrorCode;
    use std::time::Duration;

    fn state(settings: Settings) -> (SessionManagerState, Clock) {
        let clock = Clock::fixed(Timestamp(1_700_000_000_000_000));
        let st = SessionManagerState::load(Store::temporary().unwrap(), clock.clone(), Arc::new(settings)).unwrap();
        (st, clock)
    }

    #[tokio::test]
    async fn rotation_parent_replay_and_family_revocation() {
        let (mut st, _) = state(Settings::for_tests());
        let user = Uuid::new_v4();
        let t1 = st.create(user, "password", String::new(), String::new()).unwrap().refresh_token;
        let t2 = st.refresh(&t1).unwrap().unwrap().refresh_token;
        let t3 = st.refresh(&t2).unwrap().unwrap().refresh_token;
        assert_ne!(t2, t3);
        // Parent of the active token → the active token again.
        assert_eq!(st.refresh(&t2).unwrap().unwrap().refresh_token, t3);
        // Older than that → reuse: error, and the family is revoked.
        let err = st.refresh(&t1).unwrap().unwrap_err();
        assert_eq!(err.code, ErrorCode::RefreshTokenAlreadyUsed);
        assert_eq!(st.refresh(&t3).unwrap().unwrap_err().code, ErrorCode::RefreshTokenAlreadyUsed);
    }

    #[tokio::test]
    async fn reuse_interval_mints_a_new_child() {
        let mut settings = Settings::for_tests();
        settings.refresh.reuse_interval = Duration::from_secs(10);
        let (mut st, clock) = state(settings);
        // Within the interval an older token still works: it gets a new child.
        let t1 = st.create(Uuid::new_v4(), "password", String::new(), String::new()).unwrap().refresh_token;
        let t2 = st.refresh(&t1).unwrap().unwrap().refresh_token;
        let t3 = st.refresh(&t2).unwrap().unwrap().refresh_token;
        clock.advance(Duration::from_secs(5));
        let t4 = st.refresh(&t1).unwrap().unwrap().refresh_token;
        assert!(![&t1, &t2, &t3].contains(&&t4));
        // Outside it, the same replay is a reuse attack.
        let u1 = st.create(Uuid::new_v4(), "password", String::new(), String::new()).unwrap().refresh_token;
        let u2 = st.refresh(&u1).unwrap().unwrap().refresh_token;
        let _u3 = st.refresh(&u2).unwrap().unwrap().refresh_token;
        clock.advance(Duration::from_secs(11));
        assert_eq!(st.refresh(&u1).unwrap().unwrap_err().code, ErrorCode::RefreshTokenAlreadyUsed);
    }

    #[tokio::test]
    async fn unknown_token_and_timebox() {
        let mut settings = Settings::for_tests();
        settings.sessions.timebox = Some(Duration::from_secs(60));
        let (mut st, clock) = state(settings);
        assert_eq!(st.refresh("nope-nope-nope").unwrap_err().code, ErrorCode::RefreshTokenNotFound);
        let t1 = st.create(Uuid::new_v4(), "password", String::new(), String::new()).unwrap().refresh_token;
        clock.advance(Duration::from_secs(61));
        assert_eq!(st.refresh(&t1).unwrap_err().code, ErrorCode::SessionExpired);
    }

    #[tokio::test]
    async fn revoked_tokens_are_swept_after_a_day() {
        let (mut st, clock) = state(Settings::for_tests());
        let t1 = st.create(Uuid::new_v4(), "password", String::new(), String::new()).unwrap().refresh_token;
        let t2 = st.refresh(&t1).unwrap().unwrap().refresh_token;
        assert_eq!(st.sweep_revoked(Duration::from_secs(86_400)).unwrap(), 0, "too young");
        clock.advance(Duration::from_secs(86_401));
        assert_eq!(st.sweep_revoked(Duration::from_secs(86_400)).unwrap(), 1);
        assert_eq!(st.refresh(&t1).unwrap_err().code, ErrorCode::RefreshTokenNotFound);
        assert!(st.refresh(&t2).unwrap().is_ok(), "the live token is kept");
    }

    #[tokio::test]
    async fn logout_scopes() {
        let (mut st, _) = state(Settings::for_tests());
        let user = Uuid::new_v4();
        let a = st.create(user, "password", String::new(), String::new()).unwrap();
        let b = st.create(user, "password", String::new(), String::new()).unwrap();
        let c = st.create(user, "password", String::new(), String::new()).unwrap();
        st.logout(user, Some(a.session.id), LogoutScope::Others).unwrap();
        assert!(st.get(a.session.id).is_some());
        assert!(st.get(b.session.id).is_none() && st.get(c.session.id).is_none());
        assert_eq!(st.refresh(&b.refresh_token).unwrap_err().code, ErrorCode::RefreshTokenNotFound);
        st.logout(user, Some(a.session.id), LogoutScope::Local).unwrap();
        assert_eq!(st.count(), 0);
    }

    fn v1_token(seq: u64, raw: &str, session: &Session, parent: Option<[u8; 32]>, revoked: bool) -> RefreshTokenV1 {
        RefreshTokenV1 {
            seq,
            digest: crypto::sha256(raw.as_bytes()),
            token: (!revoked).then(|| raw.to_owned()),
            session_id: session.id,
            user_id: session.user_id,
            parent,
            revoked,
            created_at: session.created_at,
            updated_at: session.created_at,
        }
    }

    #[tokio::test]
    async fn v1_tokens_migrate_without_raw_values_and_keep_their_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Store::reopen_for_tests(dir.path());
        let clock = Clock::fixed(Timestamp(1_700_000_000_000_000));
        let session = |user_id| Session {
            id: Uuid::new_v4(),
            user_id,
            created_at: clock.now(),
            updated_at: clock.now(),
            refreshed_at: None,
            aal: "aal1".into(),
            amr: vec![],
            user_agent: String::new(),
            ip: String::new(),
            not_after: None,
        };
        let (a, b) = (session(Uuid::new_v4()), session(Uuid::new_v4()));
        // Two v1 sessions, each with a revoked parent and an active child holding its raw value.
        let (a1, a2, b1, b2) = ("a1-raw-token-value", "a2-raw-token-value", "b1-raw-token-value", "b2-raw-token-value");
        {
            let store = open().await;
            let sessions: Table<Session> = store.table(storage::SESSIONS).unwrap();
            let v1: Table<RefreshTokenV1> = store.table(storage::REFRESH_TOKENS_V1).unwrap();
            let mut ops = vec![
                sessions.put(a.id.as_bytes().to_vec(), &a).unwrap(),
                sessions.put(b.id.as_bytes().to_vec(), &b).unwrap(),
            ];
            for t in [
                v1_token(1, a1, &a, None, true),
                v1_token(2, a2, &a, Some(crypto::sha256(a1.as_bytes())), false),
                v1_token(3, b1, &b, None, true),
                v1_token(4, b2, &b, Some(crypto::sha256(b1.as_bytes())), false),
            ] {
                ops.push(v1.put(t.digest.to_vec(), &t).unwrap());
            }
            store.apply(ops).unwrap();
            store.durable().await.unwrap();
        }
        let store = open().await;
        let mut st = SessionManagerState::load(store.clone(), clock.clone(), Arc::new(Settings::for_tests())).unwrap();
        let v1: Table<RefreshTokenV1> = store.table(storage::REFRESH_TOKENS_V1).unwrap();
        assert!(v1.is_empty(), "v1 records are moved, not copied");
        assert_eq!(st.token_table.len(), 4);
        for raw in [a1, a2, b1, b2] {
            for (_, t) in st.token_table.load_all().unwrap() {
                let bytes = crate::storage::codec::encode(&t).unwrap();
                assert!(!bytes.windows(raw.len()).any(|w| w == raw.as_bytes()), "raw {raw} kept");
            }
        }
        // The active v1 token still refreshes (by digest), with a derivable child.
        let a3 = st.refresh(a2).unwrap().unwrap().refresh_token;
        assert_eq!(st.refresh(a2).unwrap().unwrap().refresh_token, a3, "parent of the active one");
        // Replaying the parent of an active v1 token cannot return it (its raw value is gone):
        // the client gets a working child instead, never a reuse error, and then the same one
        // again on a second replay.
        let b3 = st.refresh(b1).unwrap().unwrap().refresh_token;
        assert_ne!(b3, b2);
        assert_eq!(st.refresh(b1).unwrap().unwrap().refresh_token, b3);
        assert!(st.refresh(&b3).unwrap().is_ok());
        // A second start has nothing left to migrate and loses nothing.
        drop(st);
        let mut st = SessionManagerState::load(store, clock, Arc::new(Settings::for_tests())).unwrap();
        assert_eq!(st.count(), 2);
        assert!(st.refresh(&a3).unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_rotation_is_one_record_and_a_restart_derives_the_revocations() {
        let store = Store::temporary().unwrap();
        let clock = Clock::fixed(Timestamp(1_700_000_000_000_000));
        let mut st = SessionManagerState::load(store.clone(), clock.clone(), Arc::new(Settings::for_tests())).unwrap();
        let issued = st.create(Uuid::new_v4(), "password", String::new(), String::new()).unwrap();
        let t1 = issued.refresh_token;
        clock.advance(Duration::from_secs(5));
        let t2 = st.refresh(&t1).unwrap().unwrap().refresh_token;
        let before = st.token_table.len();
        clock.advance(Duration::from_secs(5));
        let t3 = st.refresh(&t2).unwrap().unwrap().refresh_token;
        assert_eq!(st.token_table.len(), before + 1, "a rotation writes the child only");
        let refreshed_at = st.get(issued.session.id).unwrap().refreshed_at;
        assert_eq!(refreshed_at, Some(clock.now()));
        drop(st);
        // A restart sees the same state: t1 and t2 revoked (at their children's birth), t3 active.
        let mut st = SessionManagerState::load(store, clock.clone(), Arc::new(Settings::for_tests())).unwrap();
        assert_eq!(st.get(issued.session.id).unwrap().refreshed_at, refreshed_at);
        let revoked_at = |st: &SessionManagerState, raw: &str| {
            let t = &st.tokens[&crypto::sha256(raw.as_bytes())];
            t.revoked.then_some(t.updated_at)
        };
        assert_eq!(revoked_at(&st, &t1), Some(Timestamp(1_700_000_005_000_000)));
        assert_eq!(revoked_at(&st, &t2), Some(Timestamp(1_700_000_010_000_000)));
        assert_eq!(revoked_at(&st, &t3), None);
        assert_eq!(st.refresh(&t2).unwrap().unwrap().refresh_token, t3, "parent of the active one");
        assert_eq!(st.refresh(&t1).unwrap().unwrap_err().code, ErrorCode::RefreshTokenAlreadyUsed);
        assert_eq!(st.refresh(&t3).unwrap().unwrap_err().code, ErrorCode::RefreshTokenAlreadyUsed, "family revoked");
    }

    #[tokio::test]
    async fn a_new_jwt_secret_keeps_sessions_working_by_digest() {
        let store = Store::temporary().unwrap();
        let clock = Clock::fixed(Timestamp(1_700_000_000_000_000));
        let mut st = SessionManagerState::load(store.clone(), clock.clone(), Arc::new(Settings::for_tests())).unwrap();
        let t1 = st.create(Uuid::new_v4(), "password", String::new(), String::new()).unwrap().refresh_token;
        let t2 = st.refresh(&t1).unwrap().unwrap().refresh_token;
        drop(st);
        let mut settings = Settings::for_tests();
        settings.jwt.secret = crypto::Secret("a-completely-different-secret-for-hs256".into());
        let mut st = SessionManagerState::load(store, clock, Arc::new(settings)).unwrap();
        // The parent of the active token gets a new child (the active one cannot be recomputed).
        let t3 = st.refresh(&t1).unwrap().unwrap().refresh_token;
        assert_ne!(t3, t2);
        assert!(st.refresh(&t2).unwrap().is_ok(), "the active token still works by digest");
    }

    #[tokio::test]
    async fn export_and_import_move_sessions_with_their_tokens() {
        let (mut src, clock) = state(Settings::for_tests());
        let user = Uuid::new_v4();
        let a = st_create(&mut src, user);
        clock.advance(Duration::from_secs(5));
        let t2 = src.refresh(&a.refresh_token).unwrap().unwrap().refresh_token;
        let b = st_create(&mut src, user);
        st_create(&mut src, Uuid::new_v4());
        let exported = src.export_user(user);
        assert_eq!(exported.iter().map(|e| e.session.id).collect::<Vec<_>>(), [a.session.id, b.session.id]);
        let tokens = &exported[0].tokens;
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].digest, crypto::sha256(a.refresh_token.as_bytes()));
        assert!(tokens[0].revoked && !tokens[1].revoked);
        assert_eq!(tokens[1].parent, Some(tokens[0].digest));
        assert!(src.export_user(Uuid::new_v4()).is_empty());

        // Into another store: the same export back out, also after a restart.
        let store = Store::temporary().unwrap();
        let mut dst = SessionManagerState::load(store.clone(), clock.clone(), Arc::new(Settings::for_tests())).unwrap();
        st_create(&mut dst, Uuid::new_v4());
        for e in &exported {
            assert!(dst.import(e.clone()).unwrap());
            assert!(!dst.import(e.clone()).unwrap(), "an id already there is skipped");
        }
        assert_eq!(dst.export_user(user), exported);
        assert_eq!(dst.count(), 3);
        drop(dst);
        let mut dst = SessionManagerState::load(store, clock.clone(), Arc::new(Settings::for_tests())).unwrap();
        assert_eq!(dst.export_user(user), exported);
        assert_eq!(dst.owner(&t2).unwrap(), user);
        // The parent of the active token cannot get it back (not derivable here): a new child,
        // never a reuse error; the active one works by digest, in the same session.
        let mut twin =
            SessionManagerState::load(Store::temporary().unwrap(), clock.clone(), Arc::new(Settings::for_tests()))
                .unwrap();
        twin.import(exported[0].clone()).unwrap();
        let child = twin.refresh(&a.refresh_token).unwrap().unwrap();
        assert_ne!(child.refresh_token, t2);
        assert_eq!(child.session.id, a.session.id);
        let t3 = dst.refresh(&t2).unwrap().unwrap();
        assert_eq!(t3.session.id, a.session.id);
        assert_eq!(dst.refresh(&t2).unwrap().unwrap().refresh_token, t3.refresh_token, "t3 was minted here");
        // Reuse detection as before the move: the family is revoked.
        assert_eq!(dst.refresh(&a.refresh_token).unwrap().unwrap_err().code, ErrorCode::RefreshTokenAlreadyUsed);
        assert_eq!(dst.refresh(&t3.refresh_token).unwrap().unwrap_err().code, ErrorCode::RefreshTokenAlreadyUsed);
        assert!(dst.refresh(&b.refresh_token).unwrap().is_ok(), "the other session is untouched");
        // Sequence numbers stay unique: new tokens come after the imported ones.
        let seqs: BTreeSet<u64> = dst.tokens.values().map(|t| t.seq).collect();
        assert_eq!(seqs.len(), dst.tokens.len());
    }

    fn st_create(st: &mut SessionManagerState, user: Uuid) -> Issued {
        st.create(user, "password", "agent".into(), "192.0.2.1".into()).unwrap()
    }
}
