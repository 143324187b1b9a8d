//! `OtpIssuer` on Postgres: `<ns>_ferrotrue.one_time_tokens` (migration 0004; GoTrue's own
//! `one_time_tokens` cannot hold MACs, attempt counts or our token types).
//!
//! The rules (liveness, type acceptance, constant-time MAC checks, the attempt limit) are the
//! sled state's, from `otp_issuer`; this file only says how rows are found and changed so that
//! several nodes agree:
//! * Issue is one `INSERT … ON CONFLICT (user_id, token_type) DO UPDATE`: a new token replaces
//!   the old one (new id, fresh count) even when two nodes issue at once.
//! * Consume is a `DELETE … WHERE id = $1 RETURNING`: of two concurrent consumers one gets the
//!   row, the other nothing (`otp_expired`).
//! * A wrong code is counted with `failed_attempts = failed_attempts + 1 … RETURNING` in a
//!   transaction that also deletes the tokens reaching the limit (row locks held until then),
//!   so concurrent wrong guesses on any node each count.

use crate::clock::{Clock, Timestamp};
use crate::error::{AuthError, AuthResult};
use crate::otp_issuer::{
    accepts_type, exhausted, expired, log_exhausted, matching_code, CodeTarget, Mac256, NewToken, OneTimeToken,
    OtpIssuerMessage, TokenKey,
};
use crate::pg::schema::side_schema;
use crate::pg::Db;
use crate::ActorEnv;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Row;
use uuid::Uuid;

/// The columns of a token, in [`token_from_row`]'s order.
const COLUMNS: &str =
    "id, user_id, token_type, link_mac, code_mac, relates_to, pkce, failed_attempts, created_at, expires_at";

/// One-time tokens in Postgres; no authoritative state in memory.
pub struct PgOtps {
    db: Db,
    clock: Clock,
    lifetime: Duration,
    key: TokenKey,
    sql: Sql,
}

/// Every statement, built once for the namespace.
struct Sql {
    issue: String,
    type_of: String,
    take: String,
    by_link: String,
    by_address: String,
    by_user: String,
    count_miss: String,
    delete_ids: String,
    clear_user: String,
    count: String,
    sweep: String,
}

impl Sql {
    fn new(ns: &str) -> Sql {
        let t = format!("{}.one_time_tokens", side_schema(ns));
        Sql {
            issue: format!(
                "INSERT INTO {t} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (user_id, token_type) DO UPDATE SET id = EXCLUDED.id, link_mac = EXCLUDED.link_mac, \
                 code_mac = EXCLUDED.code_mac, relates_to = EXCLUDED.relates_to, pkce = EXCLUDED.pkce, \
                 failed_attempts = EXCLUDED.failed_attempts, created_at = EXCLUDED.created_at, \
                 expires_at = EXCLUDED.expires_at"
            ),
            type_of: format!("SELECT token_type FROM {t} WHERE id = $1"),
            take: format!("DELETE FROM {t} WHERE id = $1 RETURNING {COLUMNS}"),
            by_link: format!("SELECT {COLUMNS} FROM {t} WHERE link_mac = $1"),
            by_address: format!(
                "SELECT {COLUMNS} FROM {t} WHERE relates_to = $1 AND token_type = ANY($2) ORDER BY created_at, id"
            ),
            by_user: format!(
                "SELECT {COLUMNS} FROM {t} WHERE user_id = $1 AND token_type = ANY($2) ORDER BY created_at, id"
            ),
            count_miss: format!(
                "UPDATE {t} SET failed_attempts = failed_attempts + 1 WHERE id = ANY($1) RETURNING {COLUMNS}"
            ),
            delete_ids: format!("DELETE FROM {t} WHERE id = ANY($1)"),
            clear_user: format!("DELETE FROM {t} WHERE user_id = $1"),
            count: format!("SELECT count(*) FROM {t}"),
            // `OneTimeToken::dead_from` in SQL: its own expiry, else `lifetime` after creation
            // ($2 = now - lifetime).
            sweep: format!(
                "DELETE FROM {t} WHERE CASE WHEN expires_at IS NULL THEN created_at <= $2 ELSE expires_at <= $1 END"
            ),
        }
    }
}

fn mac(bytes: Vec<u8>) -> AuthResult<Mac256> {
    bytes.try_into().map_err(|_| AuthError::unexpected("a stored one-time-token MAC is not 32 bytes"))
}

fn token_from_row(row: &Row) -> AuthResult<OneTimeToken> {
    let failed: i32 = row.try_get(7)?;
    Ok(OneTimeToken {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        token_type: row.try_get(2)?,
        link_mac: row.try_get::<_, Option<Vec<u8>>>(3)?.map(mac).transpose()?,
        code_mac: mac(row.try_get(4)?)?,
        relates_to: row.try_get(5)?,
        pkce: row.try_get(6)?,
        failed_attempts: u32::try_from(failed).unwrap_or(0),
        created_at: row.try_get(8)?,
        expires_at: row.try_get(9)?,
    })
}

impl PgOtps {
    pub fn new(db: Db, env: &ActorEnv) -> PgOtps {
        let sql = Sql::new(db.namespace());
        PgOtps {
            db,
            clock: env.clock.clone(),
            lifetime: env.settings.otp.exp,
            key: TokenKey::derive(&env.settings.jwt.secret),
            sql,
        }
    }

    /// Answers one message (on its own task, see [`super::types::spawn_request`]).
    pub async fn handle(self: Arc<Self>, msg: OtpIssuerMessage) {
        use OtpIssuerMessage::*;
        match msg {
            Issue { token, reply } => drop(reply.send(self.issue(token).await)),
            Consume { id, types, reply } => drop(reply.send(self.consume(id, &types).await)),
            Peek { link, reply } => drop(reply.send(self.peek(link.expose()).await)),
            CheckCode { target, code, types, reply } => {
                drop(reply.send(self.check_code(&target, code.expose(), &types).await))
            }
            ForUser { user_id, types, reply } => drop(reply.send(self.for_user(user_id, &types).await)),
            ClearUser { user_id, reply } => drop(reply.send(self.clear_user(user_id).await)),
            Count { reply } => drop(reply.send(self.count().await)),
            Sweep => {
                if let Err(e) = self.sweep().await {
                    tracing::error!(error = %e, "one-time token sweep failed");
                }
            }
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn issue(&self, new: NewToken) -> AuthResult<OneTimeToken> {
        let t = OneTimeToken::mint(&self.key, new, self.now());
        let client = self.db.client().await?;
        let failed = t.failed_attempts as i32;
        let link_mac = t.link_mac.as_ref().map(|m| m.as_slice());
        client
            .execute(
                &self.sql.issue,
                &[
                    &t.id,
                    &t.user_id,
                    &t.token_type,
                    &link_mac,
                    &t.code_mac.as_slice(),
                    &t.relates_to,
                    &t.pkce,
                    &failed,
                    &t.created_at,
                    &t.expires_at,
                ],
            )
            .await?;
        Ok(t)
    }

    /// Single use across nodes: the `DELETE … RETURNING` hands the row to one caller. A token
    /// of a type not accepted stays (a token's type never changes under its id).
    async fn consume(&self, id: Uuid, types: &[String]) -> AuthResult<OneTimeToken> {
        let client = self.db.client().await?;
        let token_type: String = client.query_opt(&self.sql.type_of, &[&id]).await?.ok_or_else(expired)?.get(0);
        if !accepts_type(types, &token_type) {
            return Err(expired());
        }
        let row = client.query_opt(&self.sql.take, &[&id]).await?.ok_or_else(expired)?;
        let token = token_from_row(&row)?;
        if !token.is_live(self.now(), self.lifetime) {
            return Err(expired());
        }
        Ok(token)
    }

    async fn peek(&self, link: &str) -> AuthResult<Option<OneTimeToken>> {
        let mac = self.key.link_mac(link);
        let client = self.db.client().await?;
        let Some(row) = client.query_opt(&self.sql.by_link, &[&mac.as_slice()]).await? else {
            return Ok(None);
        };
        let t = token_from_row(&row)?;
        Ok((t.link_matches(&mac) && t.is_live(self.now(), self.lifetime)).then_some(t))
    }

    /// The live tokens of `types` for a target.
    async fn live(
        &self,
        client: &impl tokio_postgres::GenericClient,
        target: &CodeTarget,
        types: &[String],
    ) -> AuthResult<Vec<OneTimeToken>> {
        let rows = match target {
            CodeTarget::Address(address) => client.query(&self.sql.by_address, &[address, &types]).await?,
            CodeTarget::User(user_id) => client.query(&self.sql.by_user, &[user_id, &types]).await?,
        };
        let now = self.now();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let t = token_from_row(row)?;
            if t.is_live(now, self.lifetime) {
                out.push(t);
            }
        }
        Ok(out)
    }

    async fn check_code(&self, target: &CodeTarget, code: &str, types: &[String]) -> AuthResult<Option<OneTimeToken>> {
        let mut client = self.db.client().await?;
        let candidates = self.live(&**client, target, types).await?;
        let hit = matching_code(&self.key, &candidates, code);
        if hit.is_some() || candidates.is_empty() {
            return Ok(hit);
        }
        // A wrong code: one failed attempt against each candidate still there (a token
        // replaced meanwhile has a new id and a fresh count); the last one kills it. The rows
        // stay locked until the deletes commit, so every concurrent miss counts.
        let ids: Vec<Uuid> = candidates.iter().map(|t| t.id).collect();
        let tx = client.transaction().await?;
        let mut doomed = Vec::new();
        for row in tx.query(&self.sql.count_miss, &[&ids]).await? {
            let t = token_from_row(&row)?;
            if exhausted(t.failed_attempts) {
                doomed.push(t);
            }
        }
        if !doomed.is_empty() {
            let ids: Vec<Uuid> = doomed.iter().map(|t| t.id).collect();
            tx.execute(&self.sql.delete_ids, &[&ids]).await?;
        }
        tx.commit().await?;
        doomed.iter().for_each(log_exhausted);
        Ok(None)
    }

    async fn for_user(&self, user_id: Uuid, types: &[String]) -> AuthResult<Vec<OneTimeToken>> {
        let client = self.db.client().await?;
        self.live(&**client, &CodeTarget::User(user_id), types).await
    }

    async fn clear_user(&self, user_id: Uuid) -> AuthResult<()> {
        self.db.client().await?.execute(&self.sql.clear_user, &[&user_id]).await?;
        Ok(())
    }

    async fn count(&self) -> AuthResult<usize> {
        let n: i64 = self.db.client().await?.query_one(&self.sql.count, &[]).await?.get(0);
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn sweep(&self) -> AuthResult<u64> {
        let now = self.now();
        let cutoff = Timestamp(now.0.saturating_sub(i64::try_from(self.lifetime.as_micros()).unwrap_or(i64::MAX)));
        Ok(self.db.client().await?.execute(&self.sql.sweep, &[&now, &cutoff]).await?)
    }
}
