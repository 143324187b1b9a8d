//! `SessionManager` on Postgres: GoTrue's `sessions`, `refresh_tokens` and `mfa_amr_claims`,
//! answering every [`SessionManagerMessage`] as the sled state does; the decisions themselves
//! (errors, limits, replay/reuse, logout scopes, MFA changes) are [`rules`], shared with it.
//!
//! **Rows.** A session is a `sessions` row (`aal` the enum, `ip` an `inet`: NULL when our string
//! is not an IP address, read back as `host(ip)`; an empty user agent is NULL) plus one
//! `mfa_amr_claims` row per `amr` method (`updated_at` = when it was last used; read oldest
//! first, as the sled state keeps them). A refresh token is a `refresh_tokens` row whose `token`
//! is the lower-case hex SHA-256 of the raw value (never the raw value), `parent` its parent's
//! digest in hex, `user_id` the uuid as text.
//!
//! **Raw values.** As on sled the raw token is `HMAC(K, session_id ‖ seq ‖ nonce)`
//! ([`TokenKey`]), so the active token can be recomputed for a client replaying its parent.
//! Here `seq` is the row's `id` (taken with `nextval` before the insert) and the nonce is
//! derived from the row's `created_at` ([`nonce`]) rather than stored: `id` is already unique
//! in the database and `session_id` is random, so a stored random nonce would add no
//! uniqueness, and deriving it keeps a rotation one `INSERT` into GoTrue's table with no side
//! table (nothing in `<ns>_ferrotrue`). If a row's `created_at` is ever changed the token still
//! works by digest; only the parent-replay shortcut mints a new child instead (as for tokens
//! issued under another JWT secret).
//!
//! **Concurrency.** No state in memory: every operation is one transaction (or one
//! statement), and everything that rotates or revokes a session's tokens first takes the
//! session's row lock (`SELECT … FOR UPDATE`), then reads the token rows in later statements.
//! Under READ COMMITTED each statement sees what was committed before it started, so a
//! rotation that waited for the lock sees the winner's child exactly as the sled mailbox would
//! have shown it: concurrent refreshes of one token (on any number of nodes) serialise per
//! session, the first rotates, the others get its child back. Logouts delete the session row
//! (taking the same lock). An operation on several sessions of a user (logout, elevation,
//! which deletes the user's low sessions, downgrade) locks them in id order, and a rotation
//! holds one session lock only, so they cannot deadlock each other; deadlock and serialization
//! victims (e.g. a session created meanwhile) are still retried ([`ATTEMPTS`]).

use crate::clock::{Clock, Timestamp};
use crate::crypto;
use crate::error::{AuthError, AuthResult};
use crate::pg::types::is_retryable;
use crate::pg::{Db, PgError};
use crate::session_manager::model::{AmrEntry, Session, SessionExport, TokenExport};
use crate::session_manager::rules::{self, Replay, Targets};
use crate::session_manager::state::{Issued, LogoutScope};
use crate::session_manager::token_key::TokenKey;
use crate::session_manager::SessionManagerMessage;
use crate::settings::Settings;
use crate::ActorEnv;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{IsolationLevel, Row};
use uuid::Uuid;

/// A statement parameter.
type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// How often a transaction Postgres aborted as a deadlock or serialization victim is run.
const ATTEMPTS: usize = 3;

/// How long a revoked refresh token is kept (as on sled: GoTrue's cleanup uses 24 h).
const REVOKED_TOKEN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Sessions and refresh tokens in Postgres; no authoritative state in memory.
pub struct PgSessions {
    db: Db,
    clock: Clock,
    settings: Arc<Settings>,
    key: TokenKey,
    sql: Sql,
}

/// Every statement, with the namespace written in once.
struct Sql {
    next_token_id: String,
    create: String,
    lock_session_of_token: String,
    lock_user_sessions: String,
    session: String,
    token: String,
    active_token: String,
    rotate: String,
    revoke_family: String,
    owner: String,
    elevate_session: String,
    upsert_amr: String,
    revoke_all: String,
    insert_token: String,
    delete_low_sessions: String,
    downgrade: String,
    delete_sessions: String,
    count: String,
    sweep: String,
    export_sessions: String,
    export_tokens: String,
    import_session: String,
    import_token: String,
}

impl Sql {
    fn new(ns: &str) -> Sql {
        let session_cols = format!(
            "s.id, s.user_id, s.created_at, s.updated_at, s.refreshed_at, s.aal::text, s.user_agent, host(s.ip), \
             s.not_after, \
             ARRAY(SELECT a.authentication_method FROM {ns}.mfa_amr_claims a WHERE a.session_id = s.id \
                   ORDER BY a.updated_at, a.created_at, a.authentication_method), \
             ARRAY(SELECT a.updated_at FROM {ns}.mfa_amr_claims a WHERE a.session_id = s.id \
                   ORDER BY a.updated_at, a.created_at, a.authentication_method)"
        );
        let token_cols = "id, token, session_id, user_id, revoked, created_at, updated_at, parent";
        Sql {
            next_token_id: format!("SELECT nextval(pg_get_serial_sequence('{ns}.refresh_tokens', 'id'))"),
            // $1 session id, $2 user id, $3 now, $4 aal, $5 user agent, $6 ip, $7 amr claim id,
            // $8 method, $9 token id, $10 token digest, $11 user id as text.
            create: format!(
                "WITH s AS (INSERT INTO {ns}.sessions (id, user_id, created_at, updated_at, aal, user_agent, ip) \
                            VALUES ($1, $2, $3, $3, $4::text::{ns}.aal_level, NULLIF($5::text, ''), $6::text::inet) \
                            RETURNING id), \
                      a AS (INSERT INTO {ns}.mfa_amr_claims \
                                (id, session_id, created_at, updated_at, authentication_method) \
                            SELECT $7::uuid, id, $3::timestamptz, $3::timestamptz, $8::text FROM s) \
                 INSERT INTO {ns}.refresh_tokens \
                     (id, token, user_id, revoked, created_at, updated_at, parent, session_id) \
                 SELECT $9::bigint, $10::text, $11::text, false, $3::timestamptz, $3::timestamptz, NULL, id FROM s"
            ),
            lock_session_of_token: format!(
                "SELECT s.id FROM {ns}.sessions s \
                 WHERE s.id = (SELECT t.session_id FROM {ns}.refresh_tokens t WHERE t.token = $1) FOR UPDATE"
            ),
            // Every session of the user owning session $1, locked in id order.
            lock_user_sessions: format!(
                "SELECT id FROM {ns}.sessions \
                 WHERE user_id = (SELECT user_id FROM {ns}.sessions WHERE id = $1) ORDER BY id FOR UPDATE"
            ),
            session: format!("SELECT {session_cols} FROM {ns}.sessions s WHERE s.id = $1"),
            token: format!("SELECT {token_cols} FROM {ns}.refresh_tokens WHERE token = $1"),
            active_token: format!(
                "SELECT {token_cols} FROM {ns}.refresh_tokens WHERE session_id = $1 AND revoked = false \
                 ORDER BY id DESC LIMIT 1"
            ),
            // $1 child id, $2 child digest, $3 session, $4 now, $5 parent id, $6 user id text,
            // $7 parent digest, $8 now (as `timestamp`, for `refreshed_at`).
            rotate: format!(
                "WITH p AS (UPDATE {ns}.refresh_tokens SET revoked = true, updated_at = $4 \
                            WHERE id = $5 AND revoked IS NOT TRUE), \
                      s AS (UPDATE {ns}.sessions SET refreshed_at = $8, updated_at = $4 WHERE id = $3) \
                 INSERT INTO {ns}.refresh_tokens \
                     (id, token, user_id, revoked, created_at, updated_at, parent, session_id) \
                 VALUES ($1, $2, $6, false, $4, $4, $7, $3)"
            ),
            revoke_family: format!(
                "UPDATE {ns}.refresh_tokens SET revoked = true, updated_at = $2 \
                 WHERE session_id = $1 AND revoked IS NOT TRUE"
            ),
            owner: format!("SELECT user_id FROM {ns}.refresh_tokens WHERE token = $1"),
            elevate_session: format!(
                "UPDATE {ns}.sessions SET aal = $2::text::{ns}.aal_level, updated_at = $3 WHERE id = $1"
            ),
            upsert_amr: format!(
                "INSERT INTO {ns}.mfa_amr_claims (id, session_id, created_at, updated_at, authentication_method) \
                 VALUES ($1, $2, $3, $3, $4) \
                 ON CONFLICT ON CONSTRAINT mfa_amr_claims_session_id_authentication_method_pkey \
                 DO UPDATE SET updated_at = EXCLUDED.updated_at"
            ),
            revoke_all: format!(
                "UPDATE {ns}.refresh_tokens SET revoked = true, updated_at = $2 \
                 WHERE session_id = $1 AND revoked IS NOT TRUE RETURNING id, token"
            ),
            insert_token: format!(
                "INSERT INTO {ns}.refresh_tokens \
                     (id, token, user_id, revoked, created_at, updated_at, parent, session_id) \
                 VALUES ($1, $2, $3, false, $4, $4, $5, $6)"
            ),
            delete_low_sessions: format!(
                "DELETE FROM {ns}.sessions \
                 WHERE user_id = $1 AND id <> $2 AND aal IS DISTINCT FROM 'aal2'::{ns}.aal_level"
            ),
            // `rules::downgrade` in SQL: aal2 sessions drop to aal1 and lose the method's claim.
            downgrade: format!(
                "WITH l AS (SELECT id FROM {ns}.sessions WHERE user_id = $1 AND aal = 'aal2'::{ns}.aal_level \
                            ORDER BY id FOR UPDATE), \
                      d AS (UPDATE {ns}.sessions SET aal = 'aal1'::{ns}.aal_level, updated_at = $3 \
                            WHERE id IN (SELECT id FROM l) AND aal = 'aal2'::{ns}.aal_level RETURNING id) \
                 DELETE FROM {ns}.mfa_amr_claims \
                 WHERE session_id IN (SELECT id FROM d) AND authentication_method = $2"
            ),
            // `rules::Targets` in SQL: $2 NULL = all; else only $2 ($3) or all but $2 (not $3).
            delete_sessions: format!(
                "DELETE FROM {ns}.sessions WHERE id IN \
                     (SELECT id FROM {ns}.sessions WHERE user_id = $1 AND ($2::uuid IS NULL OR (id = $2) = $3) \
                      ORDER BY id FOR UPDATE)"
            ),
            count: format!("SELECT count(*) FROM {ns}.sessions"),
            sweep: format!("DELETE FROM {ns}.refresh_tokens WHERE revoked AND updated_at < $1"),
            export_sessions: format!(
                "SELECT {session_cols} FROM {ns}.sessions s WHERE s.user_id = $1 ORDER BY s.created_at, s.id"
            ),
            export_tokens: format!(
                "SELECT {token_cols} FROM {ns}.refresh_tokens WHERE session_id = ANY($1) ORDER BY id"
            ),
            // $1 id, $2 user, $3 created, $4 updated, $5 refreshed (timestamp), $6 aal, $7 agent,
            // $8 ip, $9 not_after.
            import_session: format!(
                "INSERT INTO {ns}.sessions \
                     (id, user_id, created_at, updated_at, refreshed_at, aal, user_agent, ip, not_after) \
                 VALUES ($1, $2, $3, $4, $5, $6::text::{ns}.aal_level, NULLIF($7::text, ''), $8::text::inet, $9) \
                 ON CONFLICT (id) DO NOTHING RETURNING id"
            ),
            // The id from the column's sequence, in the export's (issue) order.
            import_token: format!(
                "INSERT INTO {ns}.refresh_tokens \
                     (token, user_id, revoked, created_at, updated_at, parent, session_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
        }
    }
}

/// The nonce of a token row: its `created_at` (microseconds, big-endian) and a fixed label.
/// Not stored: see the module documentation.
fn nonce(created_at: Timestamp) -> [u8; 16] {
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&created_at.0.to_be_bytes());
    n[8..].copy_from_slice(b"postgres");
    n
}

/// One `refresh_tokens` row.
struct TokenRow {
    id: i64,
    /// The stored digest (hex); a GoTrue-written row holds a raw value here instead.
    token: String,
    session_id: Option<Uuid>,
    revoked: bool,
    created_at: Option<Timestamp>,
    updated_at: Timestamp,
    parent: Option<String>,
}

impl TokenRow {
    fn from_row(r: &Row) -> TokenRow {
        let created_at: Option<Timestamp> = r.get(5);
        TokenRow {
            id: r.get(0),
            token: r.get::<_, Option<String>>(1).unwrap_or_default(),
            session_id: r.get(2),
            revoked: r.get::<_, Option<bool>>(4).unwrap_or(false),
            created_at,
            updated_at: r.get::<_, Option<Timestamp>>(6).or(created_at).unwrap_or(Timestamp(0)),
            parent: r.get(7),
        }
    }

    /// Its raw value, if it is one of ours and derives under the current key.
    fn rederive(&self, key: &TokenKey, session_id: Uuid) -> Option<String> {
        let digest: [u8; 32] = hex::decode(&self.token).ok()?.try_into().ok()?;
        let seq = u64::try_from(self.id).ok()?;
        key.rederive(session_id, seq, &nonce(self.created_at?), &digest)
    }
}

fn session_from_row(r: &Row) -> Session {
    let created_at: Timestamp = r.get::<_, Option<Timestamp>>(2).unwrap_or(Timestamp(0));
    let methods: Vec<String> = r.get(9);
    let ats: Vec<Timestamp> = r.get(10);
    Session {
        id: r.get(0),
        user_id: r.get(1),
        created_at,
        updated_at: r.get::<_, Option<Timestamp>>(3).unwrap_or(created_at),
        refreshed_at: r.get(4),
        aal: r.get::<_, Option<String>>(5).unwrap_or_else(|| "aal1".into()),
        user_agent: r.get::<_, Option<String>>(6).unwrap_or_default(),
        ip: r.get::<_, Option<String>>(7).unwrap_or_default(),
        not_after: r.get(8),
        amr: methods.into_iter().zip(ats).map(|(method, at)| AmrEntry { method, at }).collect(),
    }
}

/// Our IP string as an `inet` value (text), or NULL when it is not an address.
fn inet(ip: &str) -> Option<String> {
    ip.trim().parse::<std::net::IpAddr>().ok().map(|a| a.to_string())
}

/// Why an attempt failed: an answer for the client, or the database (maybe worth a retry).
enum Fail {
    Auth(AuthError),
    Db(tokio_postgres::Error),
    Pool(PgError),
}

impl From<AuthError> for Fail {
    fn from(e: AuthError) -> Self {
        Fail::Auth(e)
    }
}
impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Db(e)
    }
}
impl From<PgError> for Fail {
    fn from(e: PgError) -> Self {
        Fail::Pool(e)
    }
}

impl From<Fail> for AuthError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Auth(e) => e,
            Fail::Db(e) => e.into(),
            Fail::Pool(e) => e.into(),
        }
    }
}

/// Runs `attempt` until it succeeds, fails for a reason other than a deadlock/serialization
/// abort, or [`ATTEMPTS`] ran.
/// A presented token as GoTrue stored it: GoTrue keeps the raw value in `token` (ferrotrue the
/// hex digest), so sessions a GoTrue signed in on this database keep refreshing after the switch
/// (their first rotation stores a ferrotrue child, by digest). A value shaped like one of our
/// digests (64 hex digits) is never looked up as stored: with a copy of the database in hand,
/// presenting a stored digest must not work as a token.
fn gotrue_written_key(raw: &str) -> Option<String> {
    let digest_shaped = raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit());
    (!raw.is_empty() && !digest_shaped).then(|| raw.to_owned())
}

/// The digest a `token`/`parent` column stands for: ours hold the hex digest; a GoTrue-written
/// row holds the raw value, whose digest is what ferrotrue looks it up by.
fn stored_digest(value: &str) -> [u8; 32] {
    let ours = (value.len() == 64).then(|| hex::decode(value).ok()).flatten().and_then(|d| d.try_into().ok());
    ours.unwrap_or_else(|| crypto::sha256(value.as_bytes()))
}

/// True when `result` is "no such refresh token".
fn is_not_found<T>(result: &AuthResult<T>) -> bool {
    matches!(result, Err(e) if e.code == crate::error::ErrorCode::RefreshTokenNotFound)
}

async fn retrying<T, F, Fut>(mut attempt: F) -> AuthResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Fail>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Fail::Db(e)) if is_retryable(&e) && n < ATTEMPTS => {
                n += 1;
                tracing::debug!(error = %e, attempt = n, "session transaction aborted by Postgres; retrying");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl PgSessions {
    pub fn new(db: Db, env: &ActorEnv) -> PgSessions {
        let sql = Sql::new(db.namespace());
        PgSessions {
            db,
            clock: env.clock.clone(),
            settings: env.settings.clone(),
            key: TokenKey::derive(&env.settings.jwt.secret),
            sql,
        }
    }

    /// Answers one message (on its own task, see [`super::types::spawn_request`]).
    pub async fn handle(self: Arc<Self>, msg: SessionManagerMessage) {
        use SessionManagerMessage::*;
        match msg {
            Create { user_id, method, user_agent, ip, reply } => {
                let _ = reply.send(self.create(user_id, &method, user_agent, ip).await);
            }
            Refresh { token, reply } => drop(reply.send(self.refresh(&token).await)),
            Owner { token, reply } => drop(reply.send(self.owner(&token).await)),
            Get { id, reply } => drop(reply.send(self.get(id).await)),
            Logout { user_id, current, scope, reply } => drop(reply.send(self.logout(user_id, current, scope).await)),
            EndUserSessions { user_id, keep, reply } => drop(reply.send(self.end_user_sessions(user_id, keep).await)),
            Elevate { session_id, method, reply } => drop(reply.send(self.elevate(session_id, &method).await)),
            Downgrade { user_id, method, reply } => drop(reply.send(self.downgrade(user_id, &method).await)),
            Count { reply } => drop(reply.send(self.count().await)),
            ExportUser { user_id, reply } => drop(reply.send(self.export_user(user_id).await)),
            Import { export, reply } => drop(reply.send(self.import(&export).await)),
            SweepRevoked => match self.sweep_revoked(REVOKED_TOKEN_RETENTION).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "swept revoked refresh tokens"),
                Err(e) => tracing::error!(error = %e, "refresh-token sweep failed"),
            },
            // The actor answers it before handing messages here.
            #[cfg(feature = "fault-injection")]
            Panic { .. } => {}
        }
    }

    /// The raw value and digest (hex) of token row `id` (`seq`, from `nextval`) of
    /// `session_id`, born `now`.
    fn mint(&self, id: i64, session_id: Uuid, now: Timestamp) -> Result<(String, String), Fail> {
        let seq = u64::try_from(id).map_err(|_| AuthError::unexpected("negative refresh token id"))?;
        let raw = self.key.token(session_id, seq, &nonce(now));
        let digest = hex::encode(crypto::sha256(raw.as_bytes()));
        Ok((raw, digest))
    }

    /// See [`SessionManagerMessage::Create`]: the session, its amr claim and first token in
    /// one statement.
    pub async fn create(&self, user_id: Uuid, method: &str, user_agent: String, ip: String) -> AuthResult<Issued> {
        let (user_agent, ip) = (&user_agent, &ip);
        retrying(move || async move {
            let session = rules::new_session(user_id, method, user_agent.clone(), ip.clone(), self.clock.now());
            let now = session.created_at;
            let client = self.db.client().await?;
            let token_id: i64 = client.query_one(&self.sql.next_token_id, &[]).await?.get(0);
            let (raw, digest) = self.mint(token_id, session.id, now)?;
            let stmt = client.prepare_cached(&self.sql.create).await?;
            client
                .execute(
                    &stmt,
                    &[
                        &session.id,
                        &user_id,
                        &now,
                        &session.aal,
                        &session.user_agent,
                        &inet(&session.ip),
                        &Uuid::new_v4(),
                        &method,
                        &token_id,
                        &digest,
                        &user_id.to_string(),
                    ],
                )
                .await?;
            Ok(Issued { session, refresh_token: raw })
        })
        .await
    }

    /// See [`SessionManagerMessage::Refresh`] and `SessionManagerState::refresh`. "Commit then
    /// fail": a reuse revokes the family in a committed transaction, then returns the error.
    pub async fn refresh(&self, raw: &str) -> AuthResult<Issued> {
        let digest = hex::encode(crypto::sha256(raw.as_bytes()));
        let digest = &digest;
        let result = retrying(move || self.try_refresh(digest)).await;
        match gotrue_written_key(raw) {
            Some(stored) if is_not_found(&result) => {
                let stored = &stored;
                retrying(move || self.try_refresh(stored)).await
            }
            _ => result,
        }
    }

    async fn try_refresh(&self, digest: &String) -> Result<Issued, Fail> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        // Every statement of the hot path is prepared once per connection.
        let (lock, token_q, session_q, active_q, next_id_q, rotate) = tokio::try_join!(
            tx.prepare_cached(&self.sql.lock_session_of_token),
            tx.prepare_cached(&self.sql.token),
            tx.prepare_cached(&self.sql.session),
            tx.prepare_cached(&self.sql.active_token),
            tx.prepare_cached(&self.sql.next_token_id),
            tx.prepare_cached(&self.sql.rotate),
        )?;
        // The session's row lock serialises every rotation of its tokens, on every node. The
        // token is read by the next statement (pipelined: the server runs it once the lock is
        // held), so it sees whatever the previous holder committed.
        let by_token: [Param; 1] = [digest];
        let (locked, token) = tokio::try_join!(tx.query_opt(&lock, &by_token), tx.query_opt(&token_q, &by_token))?;
        let locked: Option<Uuid> = locked.map(|r| r.get(0));
        let token = token.map(|r| TokenRow::from_row(&r)).ok_or_else(rules::token_not_found)?;
        let session_id = match (locked, token.session_id) {
            (Some(locked), Some(sid)) if locked == sid => sid,
            _ => return Err(rules::session_not_found().into()),
        };
        let by_session: [Param; 1] = [&session_id];
        // The child's id is taken now too (one round trip; an unused one is a harmless gap).
        let (session_row, active_row, child_id) = tokio::try_join!(
            tx.query_opt(&session_q, &by_session),
            tx.query_opt(&active_q, &by_session),
            tx.query_one(&next_id_q, &[]),
        )?;
        let child_id: i64 = child_id.get(0);
        let mut session = session_from_row(&session_row.ok_or_else(rules::session_not_found)?);
        let now = self.clock.now();
        rules::check_session_limits(&self.settings, now, &session, token.updated_at)?;

        if token.revoked {
            let active = active_row.map(|r| TokenRow::from_row(&r)).filter(|a| a.parent.as_ref() == Some(digest));
            let active = active.map(|a| a.rederive(&self.key, session_id));
            match rules::replay(&self.settings, now, token.updated_at, active) {
                Replay::Active(raw) => return Ok(Issued { session, refresh_token: raw }),
                Replay::Rotate => {}
                Replay::Reuse { revoke_family } => {
                    if revoke_family {
                        tx.execute(&self.sql.revoke_family, &[&session_id, &now]).await?;
                        tx.commit().await?;
                    }
                    tracing::warn!(session_id = %session_id, "refresh token reused outside the reuse interval");
                    return Err(rules::already_used().into());
                }
            }
        }

        // Rotate: revoke the presented token (if not already), mint a child of it.
        let (child_raw, child_digest) = self.mint(child_id, session_id, now)?;
        tx.execute(
            &rotate,
            &[&child_id, &child_digest, &session_id, &now, &token.id, &session.user_id.to_string(), digest, &now],
        )
        .await?;
        tx.commit().await?;
        session.refreshed_at = Some(now);
        session.updated_at = now;
        Ok(Issued { session, refresh_token: child_raw })
    }

    /// See [`SessionManagerMessage::Owner`].
    pub async fn owner(&self, raw: &str) -> AuthResult<Uuid> {
        let digest = hex::encode(crypto::sha256(raw.as_bytes()));
        let result = self.owner_by_key(&digest).await;
        match gotrue_written_key(raw) {
            Some(stored) if is_not_found(&result) => self.owner_by_key(&stored).await,
            _ => result,
        }
    }

    /// The owner of the row whose `token` column is `key`.
    async fn owner_by_key(&self, key: &String) -> AuthResult<Uuid> {
        let digest = key;
        retrying(move || async move {
            let client = self.db.client().await?;
            let stmt = client.prepare_cached(&self.sql.owner).await?;
            let user: Option<Option<String>> = client.query_opt(&stmt, &[&digest]).await?.map(|r| r.get(0));
            let user = user.flatten().and_then(|u| Uuid::parse_str(&u).ok());
            Ok(user.ok_or_else(rules::token_not_found)?)
        })
        .await
    }

    /// See [`SessionManagerMessage::Get`].
    pub async fn get(&self, id: Uuid) -> AuthResult<Option<Session>> {
        retrying(move || async move {
            let client = self.db.client().await?;
            let stmt = client.prepare_cached(&self.sql.session).await?;
            Ok(client.query_opt(&stmt, &[&id]).await?.map(|r| session_from_row(&r)))
        })
        .await
    }

    /// See [`SessionManagerMessage::Logout`].
    pub async fn logout(&self, user_id: Uuid, current: Option<Uuid>, scope: LogoutScope) -> AuthResult<()> {
        self.delete_sessions(user_id, scope.targets(current)).await
    }

    /// See [`SessionManagerMessage::EndUserSessions`].
    pub async fn end_user_sessions(&self, user_id: Uuid, keep: Option<Uuid>) -> AuthResult<()> {
        self.delete_sessions(user_id, keep.map_or(Targets::All, Targets::AllBut)).await
    }

    /// Deletes the user's sessions in `targets`; their tokens and amr claims go with them
    /// (`ON DELETE CASCADE`).
    async fn delete_sessions(&self, user_id: Uuid, targets: Targets) -> AuthResult<()> {
        let (id, only) = match targets {
            Targets::All => (None, false),
            Targets::Only(id) => (Some(id), true),
            Targets::AllBut(id) => (Some(id), false),
        };
        retrying(move || async move {
            let client = self.db.client().await?;
            let stmt = client.prepare_cached(&self.sql.delete_sessions).await?;
            client.execute(&stmt, &[&user_id, &id, &only]).await?;
            Ok(())
        })
        .await
    }

    /// See [`SessionManagerMessage::Elevate`] and `SessionManagerState::elevate`.
    pub async fn elevate(&self, session_id: Uuid, method: &str) -> AuthResult<Issued> {
        retrying(move || async move {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            // Every session of the user is locked (in id order): the low ones are deleted below.
            let locked = tx.query(&self.sql.lock_user_sessions, &[&session_id]).await?;
            if !locked.iter().any(|r| r.get::<_, Uuid>(0) == session_id) {
                return Err(rules::elevate_session_not_found().into());
            }
            let row = tx.query_opt(&self.sql.session, &[&session_id]).await?;
            let mut session = session_from_row(&row.ok_or_else(rules::elevate_session_not_found)?);
            let now = self.clock.now();
            rules::elevate(&mut session, method, now);
            tx.execute(&self.sql.elevate_session, &[&session_id, &session.aal, &now]).await?;
            tx.execute(&self.sql.upsert_amr, &[&Uuid::new_v4(), &session_id, &now, &method]).await?;
            // Every live token is revoked; the new one descends from the newest of them.
            let revoked = tx.query(&self.sql.revoke_all, &[&session_id, &now]).await?;
            let parent: Option<String> =
                revoked.iter().max_by_key(|r| r.get::<_, i64>(0)).and_then(|r| r.get::<_, Option<String>>(1));
            let token_id: i64 = tx.query_one(&self.sql.next_token_id, &[]).await?.get(0);
            let (raw, digest) = self.mint(token_id, session_id, now)?;
            tx.execute(
                &self.sql.insert_token,
                &[&token_id, &digest, &session.user_id.to_string(), &now, &parent, &session_id],
            )
            .await?;
            tx.execute(&self.sql.delete_low_sessions, &[&session.user_id, &session_id]).await?;
            tx.commit().await?;
            Ok(Issued { session, refresh_token: raw })
        })
        .await
    }

    /// See [`SessionManagerMessage::Downgrade`] (one statement).
    pub async fn downgrade(&self, user_id: Uuid, method: &str) -> AuthResult<()> {
        retrying(move || async move {
            let client = self.db.client().await?;
            client.execute(&self.sql.downgrade, &[&user_id, &method, &self.clock.now()]).await?;
            Ok(())
        })
        .await
    }

    /// See [`SessionManagerMessage::Count`].
    pub async fn count(&self) -> AuthResult<usize> {
        retrying(move || async move {
            let client = self.db.client().await?;
            let n: i64 = client.query_one(&self.sql.count, &[]).await?.get(0);
            Ok(usize::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// See [`SessionManagerMessage::ExportUser`]: the user's sessions (oldest first) and their
    /// tokens by id (issue order); a GoTrue-written token is exported by its raw value's digest.
    pub async fn export_user(&self, user_id: Uuid) -> AuthResult<Vec<SessionExport>> {
        retrying(move || async move {
            let mut client = self.db.client().await?;
            let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start().await?;
            let sessions: Vec<Session> =
                tx.query(&self.sql.export_sessions, &[&user_id]).await?.iter().map(session_from_row).collect();
            let ids: Vec<Uuid> = sessions.iter().map(|s| s.id).collect();
            let rows = tx.query(&self.sql.export_tokens, &[&ids]).await?;
            tx.commit().await?;
            let mut out: Vec<SessionExport> =
                sessions.into_iter().map(|session| SessionExport { session, tokens: Vec::new() }).collect();
            for r in &rows {
                let t = TokenRow::from_row(r);
                let Some(export) = out.iter_mut().find(|e| Some(e.session.id) == t.session_id) else { continue };
                export.tokens.push(TokenExport {
                    digest: stored_digest(&t.token),
                    parent: t.parent.as_deref().filter(|p| !p.is_empty()).map(stored_digest),
                    revoked: t.revoked,
                    created_at: t.created_at.unwrap_or(t.updated_at),
                    updated_at: t.updated_at,
                });
            }
            Ok(out)
        })
        .await
    }

    /// See [`SessionManagerMessage::Import`]: the session row, its amr claims and its tokens
    /// (hex digests, ids from the sequence in the export's order) in one transaction; `false`
    /// when the session id is already taken (nothing written). An imported token works by
    /// digest; its id and `created_at` do not derive it, so a replay of its parent mints a new
    /// child rather than returning it.
    pub async fn import(&self, export: &SessionExport) -> AuthResult<bool> {
        retrying(move || async move {
            let s = &export.session;
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let inserted = tx
                .query_opt(
                    &self.sql.import_session,
                    &[
                        &s.id,
                        &s.user_id,
                        &s.created_at,
                        &s.updated_at,
                        &s.refreshed_at,
                        &s.aal,
                        &s.user_agent,
                        &inet(&s.ip),
                        &s.not_after,
                    ],
                )
                .await?;
            if inserted.is_none() {
                return Ok(false);
            }
            for a in &s.amr {
                tx.execute(&self.sql.upsert_amr, &[&Uuid::new_v4(), &s.id, &a.at, &a.method]).await?;
            }
            let user = s.user_id.to_string();
            let insert = tx.prepare(&self.sql.import_token).await?;
            for t in &export.tokens {
                let parent = t.parent.map(hex::encode);
                tx.execute(
                    &insert,
                    &[&hex::encode(t.digest), &user, &t.revoked, &t.created_at, &t.updated_at, &parent, &s.id],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Deletes refresh tokens revoked more than `older_than` ago (see
    /// `SessionManagerState::sweep_revoked`).
    pub async fn sweep_revoked(&self, older_than: Duration) -> AuthResult<usize> {
        let cutoff = rules::sweep_cutoff(self.clock.now(), older_than);
        retrying(move || async move {
            let client = self.db.client().await?;
            let n = client.execute(&self.sql.sweep, &[&cutoff]).await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::pg::testing;
    use crate::Storage;

    const T0: Timestamp = Timestamp(1_700_000_000_000_000);

    fn backend(db: &Db, settings: Settings, clock: &Clock) -> PgSessions {
        let env =
            ActorEnv { storage: Storage::Postgres(db.clone()), settings: Arc::new(settings), clock: clock.clone() };
        PgSessions::new(db.clone(), &env)
    }

    async fn setup(settings: Settings) -> (PgSessions, Db, Clock) {
        let db = testing::migrated_db().await;
        let clock = Clock::fixed(T0);
        (backend(&db, settings, &clock), db, clock)
    }

    /// A bare `users` row (sessions reference users).
    async fn user(db: &Db) -> Uuid {
        let id = Uuid::new_v4();
        user_with_id(db, id).await;
        id
    }

    async fn create(pg: &PgSessions, user: Uuid) -> Issued {
        pg.create(user, "password", String::new(), String::new()).await.unwrap()
    }

    async fn code<T: std::fmt::Debug>(r: impl Future<Output = AuthResult<T>>) -> ErrorCode {
        r.await.unwrap_err().code
    }

    /// (token digest, revoked, parent) of a session's rows, oldest first.
    async fn token_rows(db: &Db, session: Uuid) -> Vec<(String, bool, Option<String>)> {
        let c = db.client().await.unwrap();
        let rows = c
            .query(
                "SELECT token, revoked, parent FROM auth.refresh_tokens WHERE session_id = $1 ORDER BY id",
                &[&session],
            )
            .await
            .unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
    }

    fn hex_digest(raw: &str) -> String {
        hex::encode(crypto::sha256(raw.as_bytes()))
    }

    #[tokio::test]
    async fn create_get_owner_count_and_the_stored_rows() {
        let (pg, db, _) = setup(Settings::for_tests()).await;
        let u = user(&db).await;
        let issued = pg.create(u, "password", "agent/1.0".into(), "192.0.2.7".into()).await.unwrap();
        let s = &issued.session;
        assert_eq!((s.user_id, s.aal.as_str(), s.created_at, s.refreshed_at), (u, "aal1", T0, None));
        assert_eq!(s.amr, vec![AmrEntry { method: "password".into(), at: T0 }]);
        assert_eq!(pg.get(s.id).await.unwrap().as_ref(), Some(s), "read back as created");
        assert_eq!(pg.get(Uuid::new_v4()).await.unwrap(), None);
        assert_eq!(pg.owner(&issued.refresh_token).await.unwrap(), u);
        assert_eq!(code(pg.owner("no-such-token")).await, ErrorCode::RefreshTokenNotFound);
        // A client string that is not an address is stored as NULL and read back empty.
        let other = pg.create(u, "otp", String::new(), "not an ip".into()).await.unwrap();
        assert_eq!(pg.get(other.session.id).await.unwrap().unwrap().ip, "");
        assert_eq!(pg.count().await.unwrap(), 2);
        // GoTrue's rows: the digest in hex (never the raw value), the user id as text, one amr claim.
        let rows = token_rows(&db, s.id).await;
        assert_eq!(rows, vec![(hex_digest(&issued.refresh_token), false, None)]);
        let c = db.client().await.unwrap();
        let r = c
            .query_one(
                "SELECT t.user_id, s.aal::text, host(s.ip), s.user_agent, \
                        (SELECT count(*) FROM auth.mfa_amr_claims a WHERE a.session_id = s.id) \
                 FROM auth.refresh_tokens t JOIN auth.sessions s ON s.id = t.session_id WHERE s.id = $1",
                &[&s.id],
            )
            .await
            .unwrap();
        assert_eq!(r.get::<_, String>(0), u.to_string());
        assert_eq!(r.get::<_, String>(1), "aal1");
        assert_eq!(r.get::<_, String>(2), "192.0.2.7");
        assert_eq!(r.get::<_, String>(3), "agent/1.0");
        assert_eq!(r.get::<_, i64>(4), 1);
        let raw_stored: i64 = c
            .query_one("SELECT count(*) FROM auth.refresh_tokens WHERE token = $1", &[&issued.refresh_token])
            .await
            .unwrap()
            .get(0);
        assert_eq!(raw_stored, 0);
    }

    #[tokio::test]
    async fn rotation_parent_replay_and_family_revocation() {
        let (pg, db, clock) = setup(Settings::for_tests()).await;
        let issued = create(&pg, user(&db).await).await;
        let t1 = issued.refresh_token;
        clock.advance(Duration::from_secs(1));
        let r2 = pg.refresh(&t1).await.unwrap();
        assert_eq!(r2.session.refreshed_at, Some(clock.now()));
        assert_eq!(pg.get(issued.session.id).await.unwrap().unwrap().refreshed_at, Some(clock.now()));
        let t2 = r2.refresh_token;
        let t3 = pg.refresh(&t2).await.unwrap().refresh_token;
        assert_ne!(t2, t3);
        // Parent of the active token → the active token again (recomputed), nothing written.
        assert_eq!(pg.refresh(&t2).await.unwrap().refresh_token, t3);
        assert_eq!(token_rows(&db, issued.session.id).await.len(), 3);
        assert_eq!(
            token_rows(&db, issued.session.id).await,
            vec![
                (hex_digest(&t1), true, None),
                (hex_digest(&t2), true, Some(hex_digest(&t1))),
                (hex_digest(&t3), false, Some(hex_digest(&t2))),
            ]
        );
        // Older than that → reuse: error, and the family is revoked (committed).
        assert_eq!(code(pg.refresh(&t1)).await, ErrorCode::RefreshTokenAlreadyUsed);
        assert!(token_rows(&db, issued.session.id).await.iter().all(|(_, revoked, _)| *revoked));
        assert_eq!(code(pg.refresh(&t3)).await, ErrorCode::RefreshTokenAlreadyUsed);
        assert_eq!(code(pg.refresh("nope-nope-nope")).await, ErrorCode::RefreshTokenNotFound);
    }

    #[tokio::test]
    async fn without_rotation_a_reuse_fails_but_revokes_nothing() {
        let mut settings = Settings::for_tests();
        settings.refresh.rotation_enabled = false;
        let (pg, db, _) = setup(settings).await;
        let issued = create(&pg, user(&db).await).await;
        let t2 = pg.refresh(&issued.refresh_token).await.unwrap().refresh_token;
        let t3 = pg.refresh(&t2).await.unwrap().refresh_token;
        assert_eq!(code(pg.refresh(&issued.refresh_token)).await, ErrorCode::RefreshTokenAlreadyUsed);
        assert!(pg.refresh(&t3).await.is_ok(), "the family is kept");
    }

    #[tokio::test]
    async fn reuse_interval_mints_a_new_child() {
        let mut settings = Settings::for_tests();
        settings.refresh.reuse_interval = Duration::from_secs(10);
        let (pg, db, clock) = setup(settings).await;
        let u = user(&db).await;
        let t1 = create(&pg, u).await.refresh_token;
        let t2 = pg.refresh(&t1).await.unwrap().refresh_token;
        let t3 = pg.refresh(&t2).await.unwrap().refresh_token;
        clock.advance(Duration::from_secs(5));
        let t4 = pg.refresh(&t1).await.unwrap().refresh_token;
        assert!(![&t1, &t2, &t3].contains(&&t4));
        // Outside it, the same replay is a reuse attack: the family is revoked.
        let u1 = create(&pg, u).await;
        let u2 = pg.refresh(&u1.refresh_token).await.unwrap().refresh_token;
        let u3 = pg.refresh(&u2).await.unwrap().refresh_token;
        clock.advance(Duration::from_secs(11));
        assert_eq!(code(pg.refresh(&u1.refresh_token)).await, ErrorCode::RefreshTokenAlreadyUsed);
        assert!(token_rows(&db, u1.session.id).await.iter().all(|(_, revoked, _)| *revoked));
        // As on sled, the revocation stamps the family now: its newest token is a reuse once
        // the interval has passed again.
        clock.advance(Duration::from_secs(11));
        assert_eq!(code(pg.refresh(&u3)).await, ErrorCode::RefreshTokenAlreadyUsed);
    }

    #[tokio::test]
    async fn session_limits_timebox_not_after_and_inactivity() {
        let mut settings = Settings::for_tests();
        settings.sessions.timebox = Some(Duration::from_secs(60));
        settings.sessions.inactivity_timeout = Some(Duration::from_secs(20));
        let (pg, db, clock) = setup(settings).await;
        let u = user(&db).await;
        let t1 = create(&pg, u).await.refresh_token;
        clock.advance(Duration::from_secs(15));
        let t2 = pg.refresh(&t1).await.unwrap().refresh_token;
        clock.advance(Duration::from_secs(21));
        let err = pg.refresh(&t2).await.unwrap_err();
        assert_eq!(
            (err.code, err.msg.as_ref()),
            (ErrorCode::SessionExpired, "Invalid Refresh Token: Session Expired (Inactivity)")
        );
        let s = create(&pg, u).await;
        clock.advance(Duration::from_secs(61));
        let err = pg.refresh(&s.refresh_token).await.unwrap_err();
        assert_eq!((err.code, err.msg.as_ref()), (ErrorCode::SessionExpired, "Invalid Refresh Token: Session Expired"));
        // not_after (set by GoTrue's single-session features): expired at that instant.
        let s = create(&pg, u).await;
        db.client()
            .await
            .unwrap()
            .execute("UPDATE auth.sessions SET not_after = $2 WHERE id = $1", &[&s.session.id, &clock.now()])
            .await
            .unwrap();
        assert_eq!(code(pg.refresh(&s.refresh_token)).await, ErrorCode::SessionExpired);
    }

    #[tokio::test]
    async fn a_token_whose_session_is_gone_is_not_found() {
        let (pg, db, _) = setup(Settings::for_tests()).await;
        let u = user(&db).await;
        let s = create(&pg, u).await;
        // A GoTrue row without a session.
        let c = db.client().await.unwrap();
        c.execute("UPDATE auth.refresh_tokens SET session_id = NULL WHERE session_id = $1", &[&s.session.id])
            .await
            .unwrap();
        let err = pg.refresh(&s.refresh_token).await.unwrap_err();
        assert_eq!(
            (err.code, err.msg.as_ref()),
            (ErrorCode::SessionNotFound, "Invalid Refresh Token: Session Not Found")
        );
        // Deleting the session deletes its tokens: not found, as on sled.
        let s = create(&pg, u).await;
        c.execute("DELETE FROM auth.sessions WHERE id = $1", &[&s.session.id]).await.unwrap();
        assert_eq!(code(pg.refresh(&s.refresh_token)).await, ErrorCode::RefreshTokenNotFound);
    }

    #[tokio::test]
    async fn revoked_tokens_are_swept_after_a_day() {
        let (pg, db, clock) = setup(Settings::for_tests()).await;
        let t1 = create(&pg, user(&db).await).await.refresh_token;
        let t2 = pg.refresh(&t1).await.unwrap().refresh_token;
        assert_eq!(pg.sweep_revoked(Duration::from_secs(86_400)).await.unwrap(), 0, "too young");
        clock.advance(Duration::from_secs(86_401));
        assert_eq!(pg.sweep_revoked(Duration::from_secs(86_400)).await.unwrap(), 1);
        assert_eq!(code(pg.refresh(&t1)).await, ErrorCode::RefreshTokenNotFound);
        assert!(pg.refresh(&t2).await.is_ok(), "the live token is kept");
    }

    #[tokio::test]
    async fn logout_scopes_and_ending_sessions() {
        let (pg, db, _) = setup(Settings::for_tests()).await;
        let (u, v) = (user(&db).await, user(&db).await);
        let a = create(&pg, u).await;
        let b = create(&pg, u).await;
        let c = create(&pg, u).await;
        let bystander = create(&pg, v).await;
        pg.logout(u, Some(a.session.id), LogoutScope::Others).await.unwrap();
        assert!(pg.get(a.session.id).await.unwrap().is_some());
        assert!(pg.get(b.session.id).await.unwrap().is_none() && pg.get(c.session.id).await.unwrap().is_none());
        assert_eq!(code(pg.refresh(&b.refresh_token)).await, ErrorCode::RefreshTokenNotFound);
        pg.logout(u, Some(a.session.id), LogoutScope::Local).await.unwrap();
        assert_eq!(pg.count().await.unwrap(), 1);
        // No current session: global, whatever the scope.
        let d = create(&pg, u).await;
        let e = create(&pg, u).await;
        pg.logout(u, None, LogoutScope::Local).await.unwrap();
        assert!(pg.get(d.session.id).await.unwrap().is_none() && pg.get(e.session.id).await.unwrap().is_none());
        let f = create(&pg, u).await;
        pg.logout(u, Some(f.session.id), LogoutScope::Global).await.unwrap();
        assert!(pg.get(f.session.id).await.unwrap().is_none());
        // End every session but one; then all.
        let g = create(&pg, u).await;
        let h = create(&pg, u).await;
        pg.end_user_sessions(u, Some(g.session.id)).await.unwrap();
        assert!(pg.get(g.session.id).await.unwrap().is_some() && pg.get(h.session.id).await.unwrap().is_none());
        pg.end_user_sessions(u, None).await.unwrap();
        assert!(pg.get(g.session.id).await.unwrap().is_none());
        assert!(pg.get(bystander.session.id).await.unwrap().is_some(), "another user's session is untouched");
        assert_eq!(pg.count().await.unwrap(), 1);
        let left: i64 =
            db.client().await.unwrap().query_one("SELECT count(*) FROM auth.refresh_tokens", &[]).await.unwrap().get(0);
        assert_eq!(left, 1, "tokens go with their sessions");
    }

    #[tokio::test]
    async fn elevate_and_downgrade() {
        let (pg, db, clock) = setup(Settings::for_tests()).await;
        let u = user(&db).await;
        let a = create(&pg, u).await;
        let low = create(&pg, u).await;
        let bystander = create(&pg, user(&db).await).await;
        clock.advance(Duration::from_secs(3));
        let a2 = pg.refresh(&a.refresh_token).await.unwrap().refresh_token;
        let up = pg.elevate(a.session.id, "totp").await.unwrap();
        let t1 = clock.now();
        assert_eq!(up.session.aal, "aal2");
        assert_eq!(
            up.session.amr,
            vec![AmrEntry { method: "password".into(), at: T0 }, AmrEntry { method: "totp".into(), at: t1 }]
        );
        assert_eq!(pg.get(a.session.id).await.unwrap().as_ref(), Some(&up.session), "stored as returned");
        // The session's tokens are revoked; the new one descends from the newest.
        let rows = token_rows(&db, a.session.id).await;
        assert_eq!(rows.last().unwrap(), &(hex_digest(&up.refresh_token), false, Some(hex_digest(&a2))));
        assert!(rows[..rows.len() - 1].iter().all(|(_, revoked, _)| *revoked));
        assert_eq!(pg.refresh(&a2).await.unwrap().refresh_token, up.refresh_token, "parent replay");
        // The user's other sessions below aal2 are gone; other users' stay, and so do aal2 ones.
        assert!(pg.get(low.session.id).await.unwrap().is_none());
        assert!(pg.get(bystander.session.id).await.unwrap().is_some());
        let high = create(&pg, u).await;
        pg.elevate(high.session.id, "totp").await.unwrap();
        assert!(pg.get(a.session.id).await.unwrap().is_some());
        // Elevating again with the same method re-stamps it (one claim row per method).
        clock.advance(Duration::from_secs(3));
        let again = pg.elevate(a.session.id, "totp").await.unwrap();
        assert_eq!(again.session.amr.len(), 2);
        assert_eq!(pg.get(a.session.id).await.unwrap().unwrap().amr[1].at, clock.now());
        let err = pg.elevate(Uuid::new_v4(), "totp").await.unwrap_err();
        assert_eq!(
            (err.code, err.kind, err.msg.as_ref()),
            (ErrorCode::SessionNotFound, crate::error::ErrorKind::Forbidden, "Session not found")
        );
        // The factor is removed: every aal2 session of the user drops to aal1 and loses the entry.
        pg.downgrade(u, "totp").await.unwrap();
        for id in [a.session.id, high.session.id] {
            let s = pg.get(id).await.unwrap().unwrap();
            assert_eq!(s.aal, "aal1");
            assert_eq!(s.amr.iter().map(|e| e.method.as_str()).collect::<Vec<_>>(), ["password"]);
            assert_eq!(s.updated_at, clock.now());
        }
    }

    #[tokio::test]
    async fn messages_are_answered_through_handle() {
        let (pg, db, _) = setup(Settings::for_tests()).await;
        let pg = Arc::new(pg);
        let u = user(&db).await;
        let (tx, rx) = ractor::concurrency::oneshot();
        pg.clone()
            .handle(SessionManagerMessage::Create {
                user_id: u,
                method: "password".into(),
                user_agent: String::new(),
                ip: String::new(),
                reply: tx.into(),
            })
            .await;
        let issued = rx.await.unwrap().unwrap();
        let (tx, rx) = ractor::concurrency::oneshot();
        pg.clone().handle(SessionManagerMessage::Refresh { token: "unknown".into(), reply: tx.into() }).await;
        assert_eq!(rx.await.unwrap().unwrap_err().code, ErrorCode::RefreshTokenNotFound);
        let (tx, rx) = ractor::concurrency::oneshot();
        pg.clone().handle(SessionManagerMessage::Owner { token: issued.refresh_token, reply: tx.into() }).await;
        assert_eq!(rx.await.unwrap().unwrap(), u);
        pg.clone().handle(SessionManagerMessage::SweepRevoked).await;
        let (tx, rx) = ractor::concurrency::oneshot();
        pg.clone().handle(SessionManagerMessage::Count { reply: tx.into() }).await;
        assert_eq!(rx.await.unwrap().unwrap(), 1);
    }

    /// Two backends on separate pools over one fresh database (two nodes), and the first's pool.
    async fn two_nodes() -> (Arc<PgSessions>, Arc<PgSessions>, Db) {
        let url = testing::fresh_database().await;
        let node_a = Db::connect(&testing::settings(&url)).await.unwrap();
        node_a.migrate().await.unwrap();
        let node_b = Db::connect(&testing::settings(&url)).await.unwrap();
        let clock = Clock::fixed(T0);
        let a = Arc::new(backend(&node_a, Settings::for_tests(), &clock));
        let b = Arc::new(backend(&node_b, Settings::for_tests(), &clock));
        (a, b, node_a)
    }

    /// Two nodes (two pools on one database), each with several requests refreshing the same
    /// token at once: as on sled, exactly one rotation happens and every request gets the same
    /// child (the losers see the winner's child as the parent replay), nobody is logged out.
    #[tokio::test]
    async fn concurrent_refreshes_on_two_nodes_rotate_once() {
        let (a, b, node_a) = two_nodes().await;
        let u = user(&node_a).await;
        for round in 0..3 {
            let issued = create(&a, u).await;
            let mut tasks = Vec::new();
            for i in 0..8 {
                let pg = if i % 2 == 0 { a.clone() } else { b.clone() };
                let token = issued.refresh_token.clone();
                tasks.push(tokio::spawn(async move { pg.refresh(&token).await }));
            }
            let mut children = Vec::new();
            for t in tasks {
                children.push(t.await.unwrap().unwrap().refresh_token);
            }
            assert!(children.iter().all(|c| *c == children[0]), "round {round}: one child for all: {children:?}");
            let rows = token_rows(&node_a, issued.session.id).await;
            assert_eq!(
                rows,
                vec![
                    (hex_digest(&issued.refresh_token), true, None),
                    (hex_digest(&children[0]), false, Some(hex_digest(&issued.refresh_token))),
                ],
                "round {round}: one rotation"
            );
            // The child rotates normally afterwards, on either node.
            let next = b.refresh(&children[0]).await.unwrap().refresh_token;
            assert_eq!(a.refresh(&children[0]).await.unwrap().refresh_token, next);
        }
    }

    /// Concurrent replays of an old token outside the reuse interval, racing a rotation of the
    /// active one, on two nodes: whichever order Postgres picks, the family ends revoked and
    /// every replay fails as a reuse (the rotation may or may not have won first).
    #[tokio::test]
    async fn concurrent_reuse_revokes_the_family_on_two_nodes() {
        let (a, b, node_a) = two_nodes().await;
        let issued = create(&a, user(&node_a).await).await;
        let t2 = a.refresh(&issued.refresh_token).await.unwrap().refresh_token;
        let t3 = b.refresh(&t2).await.unwrap().refresh_token;
        let mut replays = Vec::new();
        for i in 0..6 {
            let pg = if i % 2 == 0 { a.clone() } else { b.clone() };
            let old = issued.refresh_token.clone();
            replays.push(tokio::spawn(async move { pg.refresh(&old).await }));
        }
        let rotation = tokio::spawn({
            let b = b.clone();
            async move { b.refresh(&t3).await }
        });
        for r in replays {
            assert_eq!(r.await.unwrap().unwrap_err().code, ErrorCode::RefreshTokenAlreadyUsed);
        }
        let rotated = rotation.await.unwrap();
        let rows = token_rows(&node_a, issued.session.id).await;
        assert!(rows.iter().all(|(_, revoked, _)| *revoked), "family revoked: {rows:?}");
        if let Ok(t4) = rotated {
            assert_eq!(code(a.refresh(&t4.refresh_token)).await, ErrorCode::RefreshTokenAlreadyUsed);
        }
    }

    /// One step of a script run against both backends.
    #[derive(Clone, Copy)]
    enum Step {
        Create,
        /// Refresh the n-th distinct token seen so far (`usize::MAX`: an unknown one).
        Refresh(usize),
        Advance(u64),
        Sweep,
    }

    /// Outcomes as text, tokens named by order of first appearance (values differ by backend).
    fn record(seen: &mut Vec<String>, r: AuthResult<Issued>) -> String {
        match r {
            Ok(i) => {
                let n = seen.iter().position(|t| *t == i.refresh_token).unwrap_or_else(|| {
                    seen.push(i.refresh_token);
                    seen.len() - 1
                });
                format!("t{n}")
            }
            Err(e) => format!("{:?} {}", e.code, e.msg),
        }
    }

    fn pick(seen: &[String], n: usize) -> String {
        seen.get(n).cloned().unwrap_or_else(|| "never-issued-token".into())
    }

    /// The same script on the sled state and on Postgres gives the same outcomes: replays,
    /// rotations within the reuse interval, reuse (family revoked) outside it, the revoked
    /// family's own reuse interval, sweeps and unknown tokens.
    #[tokio::test]
    async fn a_script_gives_the_same_outcomes_as_on_sled() {
        use crate::session_manager::state::SessionManagerState;
        use crate::storage::Store;
        use Step::*;
        let script = [
            Create,
            Refresh(0),
            Refresh(1),
            Refresh(1),
            Advance(5),
            Refresh(0),
            Refresh(0),
            Advance(11),
            Refresh(1),
            Refresh(3),
            Refresh(4),
            Advance(11),
            Refresh(3),
            Refresh(2),
            Refresh(usize::MAX),
            Create,
            Refresh(5),
            Advance(86_401),
            Sweep,
            Refresh(0),
            Refresh(6),
            Refresh(5),
            Advance(11),
            Refresh(5),
        ];
        let mut settings = Settings::for_tests();
        settings.refresh.reuse_interval = Duration::from_secs(10);

        let sled_clock = Clock::fixed(T0);
        let mut st =
            SessionManagerState::load(Store::temporary().unwrap(), sled_clock.clone(), Arc::new(settings.clone()))
                .unwrap();
        let (pg, db, pg_clock) = setup(settings).await;
        let u = user(&db).await;
        let (mut sled_seen, mut pg_seen, mut outcomes) = (Vec::new(), Vec::new(), Vec::new());
        for (i, step) in script.into_iter().enumerate() {
            let (on_sled, on_pg) = match step {
                Create => (
                    record(&mut sled_seen, st.create(u, "password", String::new(), String::new())),
                    record(&mut pg_seen, pg.create(u, "password", String::new(), String::new()).await),
                ),
                Refresh(n) => {
                    let on_sled = st.refresh(&pick(&sled_seen, n)).and_then(|r| r);
                    let on_pg = pg.refresh(&pick(&pg_seen, n)).await;
                    (record(&mut sled_seen, on_sled), record(&mut pg_seen, on_pg))
                }
                Advance(secs) => {
                    sled_clock.advance(Duration::from_secs(secs));
                    pg_clock.advance(Duration::from_secs(secs));
                    continue;
                }
                Sweep => (
                    st.sweep_revoked(REVOKED_TOKEN_RETENTION).unwrap().to_string(),
                    pg.sweep_revoked(REVOKED_TOKEN_RETENTION).await.unwrap().to_string(),
                ),
            };
            assert_eq!(on_sled, on_pg, "step {i}");
            outcomes.push(on_pg);
        }
        assert_eq!(sled_seen.len(), pg_seen.len());
        // What both said (pinned, so the script keeps covering every rule).
        let (reuse, gone) = (
            "RefreshTokenAlreadyUsed Invalid Refresh Token: Already Used",
            "RefreshTokenNotFound Invalid Refresh Token: Refresh Token Not Found",
        );
        let expected = [
            "t0", "t1", "t2", "t2", "t3", "t3", reuse, "t4", "t5", reuse, reuse, gone, "t6", "t7", "6", gone, "t8",
            gone, gone,
        ];
        assert_eq!(outcomes, expected);
    }

    /// MFA on two sessions of one user, refreshes and a global logout, all at once on two
    /// nodes: every request ends as in some serial order on sled (an elevation of a session
    /// already deleted is "Session not found", a refresh after the logout "not found"), never a
    /// database error (deadlock victims are retried), and nothing is left.
    #[tokio::test]
    async fn elevations_refreshes_and_logout_race_without_database_errors() {
        let (a, b, db) = two_nodes().await;
        for _ in 0..5 {
            let u = user(&db).await;
            let s1 = create(&a, u).await;
            let s2 = create(&b, u).await;
            let e1 = tokio::spawn({
                let a = a.clone();
                async move { a.elevate(s1.session.id, "totp").await.map(|_| ()) }
            });
            let e2 = tokio::spawn({
                let b = b.clone();
                async move { b.elevate(s2.session.id, "totp").await.map(|_| ()) }
            });
            let r1 = tokio::spawn({
                let b = b.clone();
                async move { b.refresh(&s1.refresh_token).await.map(|_| ()) }
            });
            let out = tokio::spawn({
                let a = a.clone();
                async move { a.logout(u, None, LogoutScope::Global).await }
            });
            for (what, r) in [("elevate", e1.await), ("elevate", e2.await), ("refresh", r1.await)] {
                if let Err(e) = r.unwrap() {
                    assert!(
                        matches!(e.code, ErrorCode::SessionNotFound | ErrorCode::RefreshTokenNotFound),
                        "{what}: {e:?}"
                    );
                }
            }
            out.await.unwrap().unwrap();
            // The logout ran at some point: whatever elevations ran after it found nothing.
            assert_eq!(a.count().await.unwrap(), 0);
        }
    }

    /// A `users` row with a given id (an imported session's user).
    async fn user_with_id(db: &Db, id: Uuid) {
        db.client()
            .await
            .unwrap()
            .execute(
                "INSERT INTO auth.users (id, instance_id, aud, role, created_at, updated_at) \
                 VALUES ($1, '00000000-0000-0000-0000-000000000000', 'authenticated', 'authenticated', $2, $2)",
                &[&id, &T0],
            )
            .await
            .unwrap();
    }

    /// sled → Postgres → sled: the export comes back out equal at each step; imported tokens
    /// work by digest (a parent replay mints a new child), reuse detection holds, a second import
    /// is skipped, and a GoTrue-written token is exported by its raw value's digest.
    #[tokio::test]
    async fn export_and_import_across_backends() {
        use crate::session_manager::state::SessionManagerState;
        use crate::storage::Store;
        let clock = Clock::fixed(T0);
        let mut sled =
            SessionManagerState::load(Store::temporary().unwrap(), clock.clone(), Arc::new(Settings::for_tests()))
                .unwrap();
        let u = Uuid::new_v4();
        let a = sled.create(u, "password", "agent/2".into(), "192.0.2.9".into()).unwrap();
        clock.advance(Duration::from_secs(3));
        let t2 = sled.refresh(&a.refresh_token).unwrap().unwrap().refresh_token;
        sled.elevate(a.session.id, "totp").unwrap();
        let b = sled.create(u, "otp", String::new(), String::new()).unwrap();
        let exported = sled.export_user(u);
        assert_eq!(exported.len(), 2);
        assert_eq!(exported[0].tokens.len(), 3);

        let (pg, db, pg_clock) = setup(Settings::for_tests()).await;
        pg_clock.advance(Duration::from_secs(3));
        user_with_id(&db, u).await;
        assert_eq!(pg.export_user(u).await.unwrap(), vec![]);
        for e in &exported {
            assert!(pg.import(e).await.unwrap());
        }
        assert!(!pg.import(&exported[0]).await.unwrap(), "an id already there is skipped");
        assert_eq!(token_rows(&db, a.session.id).await.len(), 3, "nothing written twice");
        assert_eq!(pg.export_user(u).await.unwrap(), exported);
        assert_eq!(pg.get(a.session.id).await.unwrap().as_ref(), Some(&exported[0].session));
        let rows = token_rows(&db, a.session.id).await;
        assert_eq!(rows[0], (hex_digest(&a.refresh_token), true, None));
        assert_eq!(rows[1], (hex_digest(&t2), true, Some(hex_digest(&a.refresh_token))));

        // Postgres → a fresh sled state: the same again.
        let mut back =
            SessionManagerState::load(Store::temporary().unwrap(), clock.clone(), Arc::new(Settings::for_tests()))
                .unwrap();
        for e in pg.export_user(u).await.unwrap() {
            assert!(back.import(e).unwrap());
        }
        assert_eq!(back.export_user(u), exported);

        // On Postgres: the active token of b works by digest in its session; t2's parent
        // replay is a reuse (b's tokens and a's elevated token are unrelated).
        let next = pg.refresh(&b.refresh_token).await.unwrap();
        assert_eq!(next.session.id, b.session.id);
        assert_eq!(pg.refresh(&b.refresh_token).await.unwrap().refresh_token, next.refresh_token, "minted here");
        assert_eq!(code(pg.refresh(&a.refresh_token)).await, ErrorCode::RefreshTokenAlreadyUsed);
        assert!(token_rows(&db, a.session.id).await.iter().all(|(_, revoked, _)| *revoked), "family revoked");

        // A GoTrue-written row (raw value in `token`, raw parent) is exported by digests.
        let v = user(&db).await;
        let s = create(&pg, v).await;
        let c = db.client().await.unwrap();
        c.execute(
            "UPDATE auth.refresh_tokens SET token = 'gotrue-raw-1', parent = 'gotrue-raw-0' WHERE session_id = $1",
            &[&s.session.id],
        )
        .await
        .unwrap();
        let e = pg.export_user(v).await.unwrap();
        assert_eq!(e[0].tokens[0].digest, crypto::sha256(b"gotrue-raw-1"));
        assert_eq!(e[0].tokens[0].parent, Some(crypto::sha256(b"gotrue-raw-0")));
        // Through the handle too.
        let pg = Arc::new(pg);
        let (tx, rx) = ractor::concurrency::oneshot();
        pg.clone().handle(SessionManagerMessage::ExportUser { user_id: v, reply: tx.into() }).await;
        assert_eq!(rx.await.unwrap().unwrap(), e);
        let (tx, rx) = ractor::concurrency::oneshot();
        pg.clone().handle(SessionManagerMessage::Import { export: e[0].clone(), reply: tx.into() }).await;
        assert!(!rx.await.unwrap().unwrap());
    }

    /// Two nodes importing the same session at once: exactly one writes it, the other is told
    /// it is already there; one set of token rows.
    #[tokio::test]
    async fn concurrent_imports_of_one_session_write_it_once() {
        let (a, b, db) = two_nodes().await;
        for _ in 0..3 {
            let u = user(&db).await;
            let issued = create(&a, u).await;
            a.refresh(&issued.refresh_token).await.unwrap();
            let export = a.export_user(u).await.unwrap().pop().unwrap();
            db.client()
                .await
                .unwrap()
                .execute("DELETE FROM auth.sessions WHERE id = $1", &[&issued.session.id])
                .await
                .unwrap();
            let (ea, eb) = (export.clone(), export.clone());
            let (ra, rb) = tokio::join!(
                tokio::spawn({
                    let a = a.clone();
                    async move { a.import(&ea).await }
                }),
                tokio::spawn({
                    let b = b.clone();
                    async move { b.import(&eb).await }
                })
            );
            let (ra, rb) = (ra.unwrap().unwrap(), rb.unwrap().unwrap());
            assert!(ra != rb, "one import writes, the other skips: {ra} {rb}");
            assert_eq!(token_rows(&db, issued.session.id).await.len(), 2);
            assert_eq!(a.export_user(u).await.unwrap().pop().unwrap(), export);
        }
    }
}
