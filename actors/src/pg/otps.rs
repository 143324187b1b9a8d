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
            // Rows locked in id order first: two misses on the same tokens cannot deadlock.
            count_miss: format!(
                "UPDATE {t} t SET failed_attempts = t.failed_attempts + 1 FROM (\
                 SELECT id FROM {t} WHERE id = ANY($1) ORDER BY id FOR UPDATE) l \
                 WHERE t.id = l.id RETURNING {}",
                COLUMNS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Reply;
    use crate::crypto::Secret;
    use crate::error::ErrorCode;
    use crate::otp_issuer::MAX_FAILED_ATTEMPTS;
    use crate::pg::testing::{bare_user, connect, migrated_db, migrated_url, reply_port, test_env};
    use crate::settings::Settings;

    const T0: Timestamp = Timestamp(1_764_547_200_000_000);
    const CONFIRM: &str = "confirmation_token";
    const RECOVERY: &str = "recovery_token";

    fn otps(db: &Db, clock: &Clock) -> Arc<PgOtps> {
        Arc::new(PgOtps::new(db.clone(), &test_env(db, clock)))
    }

    /// Asks through `handle`, as the actor does.
    async fn ask<T: Send + 'static>(
        pg: &Arc<PgOtps>,
        build: impl FnOnce(Reply<T>) -> OtpIssuerMessage,
    ) -> AuthResult<T> {
        let (reply, answer) = reply_port();
        pg.clone().handle(build(reply)).await;
        answer.await
    }

    fn new_token(user_id: Uuid, token_type: &str, address: &str, link: Option<&str>, code: &str) -> NewToken {
        NewToken {
            user_id,
            token_type: token_type.into(),
            relates_to: address.into(),
            link: link.map(|l| Secret(l.into())),
            code: Secret(code.into()),
            expires_at: None,
        }
    }

    fn types(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| (*s).to_owned()).collect()
    }

    async fn issue(pg: &Arc<PgOtps>, token: NewToken) -> OneTimeToken {
        ask(pg, |reply| OtpIssuerMessage::Issue { token, reply }).await.unwrap()
    }

    async fn consume(pg: &Arc<PgOtps>, id: Uuid, t: &[&str]) -> AuthResult<OneTimeToken> {
        let types = types(t);
        ask(pg, |reply| OtpIssuerMessage::Consume { id, types, reply }).await
    }

    async fn peek(pg: &Arc<PgOtps>, link: &str) -> Option<OneTimeToken> {
        let link = Secret(link.into());
        ask(pg, |reply| OtpIssuerMessage::Peek { link, reply }).await.unwrap()
    }

    async fn check(pg: &Arc<PgOtps>, target: CodeTarget, code: &str, t: &[&str]) -> Option<OneTimeToken> {
        let (code, types) = (Secret(code.into()), types(t));
        ask(pg, |reply| OtpIssuerMessage::CheckCode { target, code, types, reply }).await.unwrap()
    }

    async fn for_user(pg: &Arc<PgOtps>, user_id: Uuid, t: &[&str]) -> Vec<OneTimeToken> {
        let types = types(t);
        ask(pg, |reply| OtpIssuerMessage::ForUser { user_id, types, reply }).await.unwrap()
    }

    async fn count(pg: &Arc<PgOtps>) -> usize {
        ask(pg, |reply| OtpIssuerMessage::Count { reply }).await.unwrap()
    }

    fn addr(user: Uuid) -> CodeTarget {
        CodeTarget::Address(format!("{user}@example.com"))
    }

    #[tokio::test]
    async fn issue_peek_and_consume_once() {
        let db = migrated_db().await;
        let clock = Clock::fixed(T0);
        let pg = otps(&db, &clock);
        let user = bare_user(&db).await;
        let email = format!("{user}@example.com");
        let t = issue(&pg, new_token(user, CONFIRM, &email, Some("pkce_link-one"), "123456")).await;
        assert!(t.pkce && t.link_mac.is_some() && t.failed_attempts == 0 && t.created_at == T0);
        assert_eq!(peek(&pg, "pkce_link-one").await, Some(t.clone()), "stored and read back unchanged");
        assert_eq!(peek(&pg, "link-one").await, None);
        // An SMS code has no link.
        let sms = issue(&pg, new_token(user, "phone_change_token", "+15550001", None, "654321")).await;
        assert!(sms.link_mac.is_none() && !sms.pkce);
        assert_eq!(count(&pg).await, 2);
        // The wrong type: refused, and the token stays.
        let err = consume(&pg, t.id, &[RECOVERY]).await.unwrap_err();
        assert_eq!((err.code, err.msg.as_ref()), (ErrorCode::OtpExpired, "Token has expired or is invalid"));
        assert!(peek(&pg, "pkce_link-one").await.is_some());
        assert_eq!(consume(&pg, t.id, &[RECOVERY, CONFIRM]).await.unwrap(), t);
        assert_eq!(consume(&pg, t.id, &[CONFIRM]).await.unwrap_err().code, ErrorCode::OtpExpired, "single use");
        assert_eq!(consume(&pg, Uuid::new_v4(), &[]).await.unwrap_err().code, ErrorCode::OtpExpired);
        // An empty list accepts any type.
        assert_eq!(consume(&pg, sms.id, &[]).await.unwrap().id, sms.id);
        assert_eq!(count(&pg).await, 0);
    }

    #[tokio::test]
    async fn a_new_token_replaces_the_old_one_of_its_type() {
        let db = migrated_db().await;
        let clock = Clock::fixed(T0);
        let pg = otps(&db, &clock);
        let user = bare_user(&db).await;
        let email = format!("{user}@example.com");
        let old = issue(&pg, new_token(user, CONFIRM, &email, Some("old-link"), "111111")).await;
        assert!(check(&pg, addr(user), "000000", &[CONFIRM]).await.is_none());
        let recovery = issue(&pg, new_token(user, RECOVERY, &email, Some("recovery-link"), "222222")).await;
        clock.advance(Duration::from_secs(1));
        let new = issue(&pg, new_token(user, CONFIRM, &email, Some("new-link"), "333333")).await;
        assert_eq!(count(&pg).await, 2);
        assert_eq!(peek(&pg, "old-link").await, None);
        assert_eq!(consume(&pg, old.id, &[]).await.unwrap_err().code, ErrorCode::OtpExpired);
        let found = peek(&pg, "new-link").await.unwrap();
        assert_eq!((found.id, found.failed_attempts), (new.id, 0), "a fresh count");
        assert!(check(&pg, addr(user), "111111", &[CONFIRM]).await.is_none(), "the old code is gone");
        let mine = for_user(&pg, user, &[CONFIRM, RECOVERY]).await;
        assert_eq!(mine.iter().map(|t| t.id).collect::<Vec<_>>(), vec![recovery.id, new.id], "oldest first");
        assert_eq!(for_user(&pg, user, &[RECOVERY]).await, vec![recovery]);
        assert!(for_user(&pg, user, &[]).await.is_empty());
        // Another user's tokens are theirs.
        let other = bare_user(&db).await;
        issue(&pg, new_token(other, CONFIRM, "other@example.com", Some("other-link"), "444444")).await;
        ask(&pg, |reply| OtpIssuerMessage::ClearUser { user_id: user, reply }).await.unwrap();
        assert_eq!(count(&pg).await, 1);
        assert!(peek(&pg, "other-link").await.is_some());
    }

    #[tokio::test]
    async fn codes_are_checked_against_their_target_and_wrong_ones_counted() {
        let db = migrated_db().await;
        let clock = Clock::fixed(T0);
        let pg = otps(&db, &clock);
        let user = bare_user(&db).await;
        let email = format!("{user}@example.com");
        let t = issue(&pg, new_token(user, CONFIRM, &email, Some("link"), "123456")).await;
        let reauth = issue(&pg, new_token(user, "reauthentication_token", &email, None, "777777")).await;
        // A hit counts nothing and consumes nothing.
        assert_eq!(check(&pg, addr(user), "123456", &[CONFIRM]).await.map(|t| t.id), Some(t.id));
        assert_eq!(check(&pg, CodeTarget::User(user), "123456", &[CONFIRM]).await.map(|t| t.id), Some(t.id));
        assert_eq!(
            check(&pg, CodeTarget::User(user), "777777", &["reauthentication_token"]).await.map(|t| t.id),
            Some(reauth.id)
        );
        // The right code for another address, or of a type not asked for, is a miss.
        assert!(check(&pg, CodeTarget::Address("x@example.com".into()), "123456", &[CONFIRM]).await.is_none());
        assert!(check(&pg, addr(user), "123456", &[RECOVERY]).await.is_none());
        assert_eq!(for_user(&pg, user, &[CONFIRM]).await[0].failed_attempts, 0, "no candidates, nothing counted");
        // Peeking never counts.
        for _ in 0..10 {
            assert!(peek(&pg, "link").await.is_some());
        }
        for n in 1..MAX_FAILED_ATTEMPTS {
            assert!(check(&pg, addr(user), "000000", &[CONFIRM]).await.is_none());
            assert_eq!(for_user(&pg, user, &[CONFIRM]).await[0].failed_attempts, n);
        }
        assert_eq!(for_user(&pg, user, &["reauthentication_token"]).await[0].failed_attempts, 0, "not a candidate");
        assert!(check(&pg, addr(user), "000000", &[CONFIRM]).await.is_none());
        assert!(for_user(&pg, user, &[CONFIRM]).await.is_empty(), "deleted at the limit");
        assert!(peek(&pg, "link").await.is_none());
        assert!(check(&pg, addr(user), "123456", &[CONFIRM]).await.is_none(), "the right code no longer works");
        assert_eq!(count(&pg).await, 1);
    }

    #[tokio::test]
    async fn expired_tokens_do_not_work_and_are_swept() {
        let db = migrated_db().await;
        let clock = Clock::fixed(T0);
        let pg = otps(&db, &clock);
        let lifetime = Settings::for_tests().otp.exp;
        let (ann, bob, cy) = (bare_user(&db).await, bare_user(&db).await, bare_user(&db).await);
        let long = issue(&pg, new_token(ann, CONFIRM, "ann@example.com", Some("ann-link"), "111111")).await;
        let mut sms = new_token(bob, "phone_change_token", "+15550002", None, "222222");
        sms.expires_at = Some(T0.plus(Duration::from_secs(60)));
        let sms = issue(&pg, sms).await;
        let third = issue(&pg, new_token(cy, CONFIRM, "cy@example.com", Some("cy-link"), "333333")).await;
        clock.advance(Duration::from_secs(60));
        // The SMS code's own expiry is exclusive; the mail token lives on.
        let phone = CodeTarget::Address("+15550002".into());
        assert!(check(&pg, phone.clone(), "222222", &["phone_change_token"]).await.is_none());
        assert!(check(&pg, phone, "000000", &["phone_change_token"]).await.is_none());
        assert!(for_user(&pg, bob, &["phone_change_token"]).await.is_empty());
        assert!(peek(&pg, "ann-link").await.is_some());
        pg.clone().handle(OtpIssuerMessage::Sweep).await;
        assert_eq!(count(&pg).await, 2, "the expired SMS code is swept");
        clock.advance(lifetime - Duration::from_secs(60));
        assert!(peek(&pg, "ann-link").await.is_none(), "dead at created_at + GOTRUE_MAILER_OTP_EXP");
        assert!(check(&pg, CodeTarget::User(ann), "111111", &[CONFIRM]).await.is_none());
        // Consuming an expired token deletes it and says so.
        assert_eq!(consume(&pg, long.id, &[CONFIRM]).await.unwrap_err().code, ErrorCode::OtpExpired);
        assert_eq!(count(&pg).await, 1);
        assert_eq!(pg.sweep().await.unwrap(), 1);
        assert_eq!(consume(&pg, third.id, &[]).await.unwrap_err().code, ErrorCode::OtpExpired);
        assert_eq!(count(&pg).await, 0);
        assert_ne!(sms.id, third.id);
    }

    #[tokio::test]
    async fn two_nodes_consuming_one_token_one_wins() {
        let url = migrated_url().await;
        let (a, b) = (connect(&url).await, connect(&url).await);
        let clock = Clock::fixed(T0);
        let (pa, pb) = (otps(&a, &clock), otps(&b, &clock));
        for round in 0..10 {
            let user = bare_user(&a).await;
            let t = issue(&pa, new_token(user, CONFIRM, "race@example.com", Some(&format!("l{round}")), "1")).await;
            let (ra, rb) = tokio::join!(consume(&pa, t.id, &[CONFIRM]), consume(&pb, t.id, &[CONFIRM]));
            assert_eq!(ra.is_ok() as u8 + rb.is_ok() as u8, 1, "exactly one consumer wins: {ra:?} {rb:?}");
            assert_eq!(ra.or(rb).unwrap().id, t.id);
        }
        assert_eq!(count(&pb).await, 0);
    }

    #[tokio::test]
    async fn concurrent_wrong_codes_on_two_nodes_all_count() {
        let url = migrated_url().await;
        let (a, b) = (connect(&url).await, connect(&url).await);
        let clock = Clock::fixed(T0);
        let (pa, pb) = (otps(&a, &clock), otps(&b, &clock));
        let user = bare_user(&a).await;
        let email = format!("{user}@example.com");
        issue(&pa, new_token(user, CONFIRM, &email, Some("link"), "123456")).await;
        issue(&pa, new_token(user, RECOVERY, &email, Some("link2"), "654321")).await;
        let guess = |pg: &Arc<PgOtps>| {
            let pg = pg.clone();
            tokio::spawn(async move { check(&pg, addr(user), "000000", &[CONFIRM, RECOVERY]).await })
        };
        // Four at once, two per node: every one counts against both tokens.
        let guesses: Vec<_> = (0..4).map(|i| guess(if i % 2 == 0 { &pa } else { &pb })).collect();
        for g in guesses {
            assert!(g.await.unwrap().is_none());
        }
        let left = for_user(&pb, user, &[CONFIRM, RECOVERY]).await;
        assert_eq!(left.iter().map(|t| t.failed_attempts).collect::<Vec<_>>(), vec![4, 4]);
        // Three more at once: the first to reach the limit deletes both; nothing is left.
        let guesses: Vec<_> = (0..3).map(|i| guess(if i % 2 == 0 { &pb } else { &pa })).collect();
        for g in guesses {
            assert!(g.await.unwrap().is_none());
        }
        assert_eq!(count(&pa).await, 0);
        assert!(check(&pa, addr(user), "123456", &[CONFIRM]).await.is_none());
    }
}
