//! `OAuthFlow` on Postgres: GoTrue's `flow_state`, plus `<ns>_ferrotrue.flow_state_external`
//! (migration 0004) for what it has no column for. A flow state is one `flow_state` row
//! (`provider_type` ← provider, `referrer` ← redirect_to, `linking_target_id`, the provider's
//! tokens, `auth_code_issued_at`); an OAuth sign-in adds one `flow_state_external` row (its
//! presence marks it external) with the nonce and when a callback claimed it.
//!
//! The rules (expiry, which error, PKCE) are `oauth_flow::FlowRules`, shared with sled. Every
//! change runs in a transaction that first locks the `flow_state` row (`FOR UPDATE`), then reads
//! the flow in a second statement (a fresh snapshot: it sees what the previous lock holder
//! committed, the external row included), applies the rule and writes or deletes before COMMIT:
//! a state is claimed once and a code exchanged once across every node (the loser finds the row
//! changed or gone).

use crate::clock::{Clock, Timestamp};
use crate::error::AuthResult;
use crate::oauth_flow::{Claimed, ExchangedFlow, ExternalFlow, FlowRules, FlowState, OAuthFlowMessage, StoredFlow};
use crate::pg::schema::side_schema;
use crate::pg::Db;
use crate::ActorEnv;
use std::sync::Arc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};
use uuid::Uuid;

/// Flows the sweeper looks at per run (the next run takes the rest).
const SWEEP_BATCH: i64 = 10_000;

/// Flow states in Postgres; no authoritative state in memory.
pub struct PgFlows {
    db: Db,
    clock: Clock,
    rules: FlowRules,
    sql: Sql,
}

/// Every statement, built once for the namespace.
struct Sql {
    insert: String,
    insert_external: String,
    lock_by_id: String,
    lock_by_code: String,
    read: String,
    read_many: String,
    save: String,
    save_external: String,
    delete: String,
    delete_many: String,
    code_for_user: String,
    count: String,
    sweep_candidates: String,
}

impl Sql {
    fn new(ns: &str) -> Sql {
        let f = format!("{ns}.flow_state");
        let x = format!("{}.flow_state_external", side_schema(ns));
        let insert = format!(
            "INSERT INTO {f} (id, user_id, auth_code, code_challenge_method, code_challenge, provider_type, \
             provider_access_token, provider_refresh_token, created_at, updated_at, authentication_method, \
             auth_code_issued_at, referrer, linking_target_id) \
             VALUES ($1, $2, $3, $4::text::{ns}.code_challenge_method, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        let select = format!(
            "SELECT f.id, f.auth_code, f.code_challenge, f.code_challenge_method::text, f.provider_type, \
             f.authentication_method, f.user_id, f.referrer, f.created_at, f.auth_code_issued_at, \
             f.provider_access_token, f.provider_refresh_token, f.linking_target_id, \
             x.flow_state_id IS NOT NULL, x.nonce, x.claimed_at \
             FROM {f} f LEFT JOIN {x} x ON x.flow_state_id = f.id"
        );
        let save = format!(
            "UPDATE {f} SET user_id = $2, provider_access_token = $3, provider_refresh_token = $4, \
             auth_code_issued_at = $5, updated_at = $6 WHERE id = $1"
        );
        Sql {
            insert_external: format!(
                "WITH f AS ({insert} RETURNING id) \
                 INSERT INTO {x} (flow_state_id, nonce, claimed_at) SELECT id, $15, $16 FROM f"
            ),
            insert,
            lock_by_id: format!("SELECT id FROM {f} WHERE id = $1 FOR UPDATE"),
            lock_by_code: format!("SELECT id FROM {f} WHERE auth_code = $1 LIMIT 1 FOR UPDATE"),
            read: format!("{select} WHERE f.id = $1"),
            read_many: format!("{select} WHERE f.id = ANY($1)"),
            save_external: format!(
                "WITH f AS ({save} RETURNING id) \
                 INSERT INTO {x} (flow_state_id, nonce, claimed_at) SELECT id, $7, $8 FROM f \
                 ON CONFLICT (flow_state_id) DO UPDATE SET nonce = EXCLUDED.nonce, claimed_at = EXCLUDED.claimed_at"
            ),
            save,
            delete: format!("DELETE FROM {f} WHERE id = $1"),
            delete_many: format!("DELETE FROM {f} WHERE id = ANY($1)"),
            // The user's newest flow of one of the methods (`created_at` NULL: a row not ours).
            code_for_user: format!(
                "UPDATE {f} SET auth_code_issued_at = $3, updated_at = $3 WHERE id = (\
                 SELECT id FROM {f} WHERE user_id = $1 AND authentication_method = ANY($2) \
                 ORDER BY created_at DESC NULLS LAST LIMIT 1 FOR UPDATE) RETURNING auth_code"
            ),
            count: format!("SELECT count(*) FROM {f}"),
            // A necessary condition for `FlowRules::sweepable` ($1 = now - lifetime, $2 = now -
            // link lifetime): an email flow not clicked yet lives as long as its link; anything
            // else at least `lifetime` from its creation. The rule itself decides in Rust.
            sweep_candidates: format!(
                "SELECT f.id FROM {f} f LEFT JOIN {x} x ON x.flow_state_id = f.id \
                 WHERE f.created_at <= $1 \
                 AND (x.flow_state_id IS NOT NULL OR f.auth_code_issued_at IS NOT NULL OR f.created_at <= $2) \
                 ORDER BY f.created_at LIMIT {SWEEP_BATCH} FOR UPDATE OF f SKIP LOCKED"
            ),
        }
    }
}

/// `""` ↔ NULL for the optional text columns.
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn stored_from_row(row: &Row) -> AuthResult<StoredFlow> {
    let text = |i: usize| -> AuthResult<String> { Ok(row.try_get::<_, Option<String>>(i)?.unwrap_or_default()) };
    let flow = FlowState {
        id: row.try_get(0)?,
        auth_code: text(1)?,
        code_challenge: text(2)?,
        code_challenge_method: text(3)?,
        provider: row.try_get(4)?,
        authentication_method: row.try_get(5)?,
        user_id: row.try_get(6)?,
        redirect_to: text(7)?,
        created_at: row.try_get::<_, Option<Timestamp>>(8)?.unwrap_or(Timestamp(0)),
    };
    let external = if row.try_get::<_, bool>(13)? {
        Some(ExternalFlow {
            linking_target: row.try_get(12)?,
            nonce: text(14)?,
            claimed_at: row.try_get(15)?,
            provider_token: text(10)?,
            provider_refresh_token: text(11)?,
        })
    } else {
        None
    };
    Ok(StoredFlow { flow, external, auth_code_issued_at: row.try_get(9)? })
}

/// Which row to lock.
enum Key<'a> {
    Id(Uuid),
    AuthCode(&'a str),
}

impl PgFlows {
    pub fn new(db: Db, env: &ActorEnv) -> PgFlows {
        let sql = Sql::new(db.namespace());
        PgFlows { db, clock: env.clock.clone(), rules: FlowRules::from_env(env), sql }
    }

    /// Answers one message (on its own task, see [`super::types::spawn_request`]).
    pub async fn handle(self: Arc<Self>, msg: OAuthFlowMessage) {
        use OAuthFlowMessage::*;
        match msg {
            Create { flow, reply } => drop(reply.send(self.create(flow).await)),
            CreateExternal { flow, external, reply } => drop(reply.send(self.create_external(flow, external).await)),
            Claim { id, reply } => drop(reply.send(self.claim(id).await)),
            Complete { id, user_id, provider_token, provider_refresh_token, reply } => {
                drop(reply.send(self.complete(id, user_id, provider_token, provider_refresh_token).await))
            }
            TakeByAuthCode { auth_code, reply } => drop(reply.send(self.take(&auth_code).await.map(|s| s.flow))),
            CodeForUser { user_id, methods, reply } => drop(reply.send(self.code_for_user(user_id, &methods).await)),
            Exchange { auth_code, code_verifier, reply } => {
                drop(reply.send(self.exchange(&auth_code, &code_verifier).await))
            }
            Count { reply } => drop(reply.send(self.count().await)),
            Sweep => {
                if let Err(e) = self.sweep().await {
                    tracing::error!(error = %e, "flow state sweep failed");
                }
            }
        }
    }

    async fn create(&self, flow: FlowState) -> AuthResult<FlowState> {
        self.insert(&flow, None).await?;
        Ok(flow)
    }

    async fn create_external(&self, flow: FlowState, ext: ExternalFlow) -> AuthResult<()> {
        self.insert(&flow, Some(&ext)).await
    }

    /// A new `flow_state` row and, for an OAuth flow, its external row (one statement).
    async fn insert(&self, flow: &FlowState, ext: Option<&ExternalFlow>) -> AuthResult<()> {
        let now = self.clock.now();
        let no_issue: Option<Timestamp> = None;
        let (method, challenge) = (non_empty(&flow.code_challenge_method), non_empty(&flow.code_challenge));
        let token = ext.map(|x| x.provider_token.as_str());
        let refresh = ext.map(|x| x.provider_refresh_token.as_str());
        let target = ext.and_then(|x| x.linking_target);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &flow.id,
            &flow.user_id,
            &flow.auth_code,
            &method,
            &challenge,
            &flow.provider,
            &token,
            &refresh,
            &flow.created_at,
            &now,
            &flow.authentication_method,
            &no_issue,
            &flow.redirect_to,
            &target,
        ];
        let sql = match ext {
            Some(x) => {
                params.extend([&x.nonce as &(dyn ToSql + Sync), &x.claimed_at]);
                &self.sql.insert_external
            }
            None => &self.sql.insert,
        };
        self.db.client().await?.execute(sql, &params).await?;
        Ok(())
    }

    /// Locks the flow's row, then reads it with a fresh snapshot.
    async fn locked(&self, tx: &Transaction<'_>, key: Key<'_>) -> AuthResult<Option<StoredFlow>> {
        let row = match key {
            Key::Id(id) => tx.query_opt(&self.sql.lock_by_id, &[&id]).await?,
            Key::AuthCode(code) => tx.query_opt(&self.sql.lock_by_code, &[&code]).await?,
        };
        let Some(row) = row else { return Ok(None) };
        let id: Uuid = row.try_get(0)?;
        tx.query_opt(&self.sql.read, &[&id]).await?.map(|r| stored_from_row(&r)).transpose()
    }

    /// Writes what a claim or a completion changes: the user, the provider's tokens, the code's
    /// issue and the external part.
    async fn save(&self, client: &Transaction<'_>, s: &StoredFlow) -> AuthResult<()> {
        let now = self.clock.now();
        match &s.external {
            Some(x) => {
                client
                    .execute(
                        &self.sql.save_external,
                        &[
                            &s.flow.id,
                            &s.flow.user_id,
                            &x.provider_token,
                            &x.provider_refresh_token,
                            &s.auth_code_issued_at,
                            &now,
                            &x.nonce,
                            &x.claimed_at,
                        ],
                    )
                    .await?
            }
            None => {
                let none: Option<&str> = None;
                client
                    .execute(&self.sql.save, &[&s.flow.id, &s.flow.user_id, &none, &none, &s.auth_code_issued_at, &now])
                    .await?
            }
        };
        Ok(())
    }

    async fn claim(&self, id: Uuid) -> AuthResult<ExchangedFlow> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let stored = self.locked(&tx, Key::Id(id)).await?;
        let out = match self.rules.claim(stored, self.clock.now())? {
            Claimed::Delete(out) => {
                tx.execute(&self.sql.delete, &[&id]).await?;
                out
            }
            Claimed::Mark(stored, out) => {
                self.save(&tx, &stored).await?;
                out
            }
        };
        tx.commit().await?;
        Ok(out)
    }

    async fn complete(&self, id: Uuid, user_id: Uuid, token: String, refresh: String) -> AuthResult<String> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let stored = self.locked(&tx, Key::Id(id)).await?;
        let stored = FlowRules::complete(stored, user_id, token, refresh, self.clock.now())?;
        self.save(&tx, &stored).await?;
        tx.commit().await?;
        Ok(stored.flow.auth_code)
    }

    /// Deletes the flow of `auth_code` (expired or not), then applies the rule.
    async fn take(&self, auth_code: &str) -> AuthResult<StoredFlow> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let stored = self.locked(&tx, Key::AuthCode(auth_code)).await?;
        if let Some(s) = &stored {
            tx.execute(&self.sql.delete, &[&s.flow.id]).await?;
        }
        tx.commit().await?;
        self.rules.taken(stored, self.clock.now())
    }

    async fn code_for_user(&self, user_id: Uuid, methods: &[String]) -> AuthResult<String> {
        let client = self.db.client().await?;
        let row = client.query_opt(&self.sql.code_for_user, &[&user_id, &methods, &self.clock.now()]).await?;
        let row = row.ok_or_else(FlowRules::no_code_for_user)?;
        Ok(row.try_get::<_, Option<String>>(0)?.unwrap_or_default())
    }

    async fn exchange(&self, auth_code: &str, code_verifier: &str) -> AuthResult<ExchangedFlow> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let stored = self.locked(&tx, Key::AuthCode(auth_code)).await?;
        // On an error the transaction rolls back (dropped): the flow stays.
        let stored = self.rules.check_exchange(stored.as_ref(), code_verifier, self.clock.now())?.clone();
        tx.execute(&self.sql.delete, &[&stored.flow.id]).await?;
        tx.commit().await?;
        Ok(ExchangedFlow { flow: stored.flow, external: stored.external })
    }

    async fn count(&self) -> AuthResult<usize> {
        let n: i64 = self.db.client().await?.query_one(&self.sql.count, &[]).await?.get(0);
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Deletes the flows [`FlowRules::sweepable`] says are done; flows another request holds
    /// are left for the next run.
    async fn sweep(&self) -> AuthResult<u64> {
        let now = self.clock.now();
        let before =
            |d: std::time::Duration| Timestamp(now.0.saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)));
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let ids: Vec<Uuid> = tx
            .query(&self.sql.sweep_candidates, &[&before(self.rules.lifetime), &before(self.rules.link_lifetime)])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let mut doomed = Vec::new();
        for row in tx.query(&self.sql.read_many, &[&ids]).await? {
            let s = stored_from_row(&row)?;
            if self.rules.sweepable(&s, now) {
                doomed.push(s.flow.id);
            }
        }
        let n = if doomed.is_empty() { 0 } else { tx.execute(&self.sql.delete_many, &[&doomed]).await? };
        tx.commit().await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Reply;
    use crate::error::{AuthError, ErrorCode, ErrorKind, ErrorKind::*};
    use crate::oauth_flow::tests::oauth_flow;
    use crate::pg::testing::{connect, migrated_db, migrated_url, reply_port, test_env};
    use crate::settings::Settings;
    use std::time::Duration;

    const T0: Timestamp = Timestamp(1_764_547_200_000_000);
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn flows(db: &Db, clock: &Clock) -> Arc<PgFlows> {
        Arc::new(PgFlows::new(db.clone(), &test_env(db, clock)))
    }

    /// Asks through `handle`, as the actor does.
    async fn ask<T: Send + 'static>(
        pg: &Arc<PgFlows>,
        build: impl FnOnce(Reply<T>) -> OAuthFlowMessage,
    ) -> AuthResult<T> {
        let (reply, answer) = reply_port();
        pg.clone().handle(build(reply)).await;
        answer.await
    }

    fn email_flow(method: &str, user: Uuid, now: Timestamp) -> FlowState {
        let mut f = oauth_flow(CHALLENGE, now);
        (f.authentication_method, f.provider, f.user_id) = (method.into(), "email".into(), Some(user));
        f
    }

    async fn create(pg: &Arc<PgFlows>, flow: &FlowState) {
        let flow = flow.clone();
        let out = ask(pg, |reply| OAuthFlowMessage::Create { flow: flow.clone(), reply }).await.unwrap();
        assert_eq!(out, flow);
    }

    async fn create_external(pg: &Arc<PgFlows>, flow: &FlowState, external: ExternalFlow) {
        let flow = flow.clone();
        ask(pg, |reply| OAuthFlowMessage::CreateExternal { flow, external, reply }).await.unwrap();
    }

    async fn claim(pg: &Arc<PgFlows>, id: Uuid) -> AuthResult<ExchangedFlow> {
        ask(pg, |reply| OAuthFlowMessage::Claim { id, reply }).await
    }

    async fn complete(pg: &Arc<PgFlows>, id: Uuid, user_id: Uuid) -> AuthResult<String> {
        ask(pg, |reply| OAuthFlowMessage::Complete {
            id,
            user_id,
            provider_token: "tok".into(),
            provider_refresh_token: "ref".into(),
            reply,
        })
        .await
    }

    async fn take(pg: &Arc<PgFlows>, code: &str) -> AuthResult<FlowState> {
        let auth_code = code.to_owned();
        ask(pg, |reply| OAuthFlowMessage::TakeByAuthCode { auth_code, reply }).await
    }

    async fn code_for_user(pg: &Arc<PgFlows>, user_id: Uuid, methods: &[&str]) -> AuthResult<String> {
        let methods = methods.iter().map(|m| (*m).to_owned()).collect();
        ask(pg, |reply| OAuthFlowMessage::CodeForUser { user_id, methods, reply }).await
    }

    async fn exchange(pg: &Arc<PgFlows>, code: &str, verifier: &str) -> AuthResult<ExchangedFlow> {
        let (auth_code, code_verifier) = (code.to_owned(), verifier.to_owned());
        ask(pg, |reply| OAuthFlowMessage::Exchange { auth_code, code_verifier, reply }).await
    }

    async fn count(pg: &Arc<PgFlows>) -> usize {
        ask(pg, |reply| OAuthFlowMessage::Count { reply }).await.unwrap()
    }

    fn parts(e: AuthError) -> (ErrorKind, ErrorCode, String) {
        (e.kind, e.code, e.msg.to_string())
    }

    fn not_found() -> (ErrorKind, ErrorCode, String) {
        (NotFound, ErrorCode::FlowStateNotFound, "invalid flow state, no valid flow state found".into())
    }

    #[tokio::test]
    async fn email_flows_are_taken_by_auth_code_once() {
        let db = migrated_db().await;
        let clock = Clock::fixed(T0);
        let pg = flows(&db, &clock);
        let flow = email_flow("email/signup", Uuid::new_v4(), T0);
        create(&pg, &flow).await;
        assert_eq!(count(&pg).await, 1);
        // An email flow's id is not an OAuth state.
        let err = claim(&pg, flow.id).await.unwrap_err();
        assert_eq!(parts(err), (BadRequest, ErrorCode::BadOauthState, "OAuth state not found or expired".into()));
        assert_eq!(take(&pg, &flow.auth_code).await.unwrap(), flow, "stored and read back unchanged");
        assert_eq!(parts(take(&pg, &flow.auth_code).await.unwrap_err()), not_found());
        assert_eq!(parts(take(&pg, "no-such-code").await.unwrap_err()), not_found());
        // Past its lifetime: deleted, and the answer says it expired.
        let late = email_flow("recovery", Uuid::new_v4(), T0);
        create(&pg, &late).await;
        clock.advance(Duration::from_secs(300));
        let err = take(&pg, &late.auth_code).await.unwrap_err();
        assert_eq!(
            parts(err),
            (Unprocessable, ErrorCode::FlowStateExpired, "invalid flow state, flow state has expired".into())
        );
        assert_eq!(count(&pg).await, 0);
    }

    #[tokio::test]
    async fn implicit_flows_are_claimed_once() {
        let db = migrated_db().await;
        let clock = Clock::fixed(T0);
        let pg = flows(&db, &clock);
        let flow = oauth_flow("", T0);
        let target = Uuid::new_v4();
        let external = ExternalFlow { linking_target: Some(target), nonce: "n0nce".into(), ..Default::default() };
        create_external(&pg, &flow, external.clone()).await;
        let out = claim(&pg, flow.id).await.unwrap();
        assert_eq!((out.flow, out.external), (flow.clone(), Some(external)));
        assert_eq!(claim(&pg, flow.id).await.unwrap_err().code, ErrorCode::BadOauthState);
        assert_eq!(claim(&pg, Uuid::new_v4()).await.unwrap_err().code, ErrorCode::BadOauthState);
        assert_eq!(count(&pg).await, 0);
    }

    #[tokio::test]
    async fn pkce_flows_are_claimed_completed_and_exchanged_once() {
        let db = migrated_db().await;
        let clock = Clock::fixed(T0);
        let pg = flows(&db, &clock);
        let flow = oauth_flow(CHALLENGE, T0);
        create_external(&pg, &flow, ExternalFlow { nonce: "abc".into(), ..Default::default() }).await;
        // Not exchangeable before the callback completed it.
        assert_eq!(parts(exchange(&pg, &flow.auth_code, VERIFIER).await.unwrap_err()), not_found());
        let claimed = claim(&pg, flow.id).await.unwrap();
        assert_eq!(claimed.external.as_ref().unwrap().claimed_at, Some(T0));
        let err = claim(&pg, flow.id).await.unwrap_err();
        assert_eq!(parts(err), (BadRequest, ErrorCode::FlowStateAlreadyUsed, "State has already been used".into()));
        // The exchange window starts when the code is issued, not at /authorize.
        clock.advance(Duration::from_secs(290));
        let user = Uuid::new_v4();
        let err = complete(&pg, Uuid::new_v4(), user).await.unwrap_err();
        assert_eq!(parts(err), (BadRequest, ErrorCode::BadOauthState, "OAuth state not found or expired".into()));
        assert_eq!(complete(&pg, flow.id, user).await.unwrap(), flow.auth_code);
        assert_eq!(complete(&pg, flow.id, user).await.unwrap_err().code, ErrorCode::FlowStateAlreadyUsed);
        clock.advance(Duration::from_secs(200));
        let err = exchange(&pg, &flow.auth_code, "wrong-verifier").await.unwrap_err();
        assert_eq!(
            parts(err),
            (
                BadRequest,
                ErrorCode::BadCodeVerifier,
                "code challenge does not match previously saved code verifier".into()
            )
        );
        let out = exchange(&pg, &flow.auth_code, VERIFIER).await.unwrap();
        assert_eq!(out.flow.user_id, Some(user));
        let ext = out.external.unwrap();
        assert_eq!((ext.provider_token.as_str(), ext.provider_refresh_token.as_str()), ("tok", "ref"));
        assert_eq!((ext.nonce.as_str(), ext.claimed_at), ("abc", Some(T0)));
        assert_eq!(parts(exchange(&pg, &flow.auth_code, VERIFIER).await.unwrap_err()), not_found());
        assert_eq!(count(&pg).await, 0);
    }

    #[tokio::test]
    async fn a_magic_link_window_starts_at_the_click() {
        let db = migrated_db().await;
        let clock = Clock::fixed(T0);
        let pg = flows(&db, &clock);
        let user = Uuid::new_v4();
        assert_eq!(
            parts(code_for_user(&pg, user, &["magiclink"]).await.unwrap_err()),
            (Unprocessable, ErrorCode::FlowStateNotFound, "invalid flow state, no valid flow state found".into())
        );
        let link = email_flow("magiclink", user, T0);
        let signup = email_flow("email/signup", user, T0);
        create(&pg, &link).await;
        create(&pg, &signup).await;
        // Ten minutes later: both are past the flow lifetime, but their links still work, so
        // the sweeper keeps them.
        clock.advance(Duration::from_secs(600));
        pg.clone().handle(OAuthFlowMessage::Sweep).await;
        assert_eq!(count(&pg).await, 2);
        let code = code_for_user(&pg, user, &["magiclink"]).await.unwrap();
        assert_eq!(
            exchange(&pg, &code, VERIFIER).await.unwrap().flow.id,
            link.id,
            "magic link: counted from the click"
        );
        let code = code_for_user(&pg, user, &["email/signup", "magiclink"]).await.unwrap();
        assert_eq!(exchange(&pg, &code, VERIFIER).await.unwrap_err().code, ErrorCode::FlowStateExpired);
        assert_eq!(count(&pg).await, 1, "a refused exchange leaves the flow");
        // The newest flow of the methods is the one.
        let newer = email_flow("email/signup", user, clock.now());
        create(&pg, &newer).await;
        assert_eq!(code_for_user(&pg, user, &["email/signup"]).await.unwrap(), newer.auth_code);
        assert!(code_for_user(&pg, Uuid::new_v4(), &["email/signup"]).await.is_err());
    }

    #[tokio::test]
    async fn expired_flows_are_refused_and_swept() {
        let db = migrated_db().await;
        let clock = Clock::fixed(T0);
        let pg = flows(&db, &clock);
        let link_lifetime = Settings::for_tests().otp.exp;
        let oauth = oauth_flow("", T0);
        create_external(&pg, &oauth, ExternalFlow::default()).await;
        let pkce = oauth_flow(CHALLENGE, T0);
        create_external(&pg, &pkce, ExternalFlow::default()).await;
        let unclicked = email_flow("email/signup", Uuid::new_v4(), T0);
        create(&pg, &unclicked).await;
        clock.advance(Duration::from_secs(299));
        claim(&pg, pkce.id).await.unwrap();
        clock.advance(Duration::from_secs(1));
        let err = claim(&pg, oauth.id).await.unwrap_err();
        assert_eq!(parts(err), (BadRequest, ErrorCode::BadOauthState, "OAuth state has expired".into()));
        let fresh = oauth_flow("", clock.now());
        create_external(&pg, &fresh, ExternalFlow::default()).await;
        assert_eq!(pg.sweep().await.unwrap(), 2, "the expired OAuth flows go");
        assert_eq!(count(&pg).await, 2);
        clock.advance(link_lifetime);
        assert_eq!(pg.sweep().await.unwrap(), 2, "the email flow goes once its link is dead");
        assert_eq!(count(&pg).await, 0);
    }

    #[tokio::test]
    async fn two_nodes_racing_for_one_flow_one_wins() {
        let url = migrated_url().await;
        let (a, b) = (connect(&url).await, connect(&url).await);
        let clock = Clock::fixed(T0);
        let (pa, pb) = (flows(&a, &clock), flows(&b, &clock));
        for _ in 0..5 {
            // Two callbacks claiming one implicit state, then one PKCE state.
            let implicit = oauth_flow("", T0);
            create_external(&pa, &implicit, ExternalFlow::default()).await;
            let (ra, rb) = tokio::join!(claim(&pa, implicit.id), claim(&pb, implicit.id));
            assert_eq!(ra.is_ok() as u8 + rb.is_ok() as u8, 1, "{ra:?} {rb:?}");
            assert_eq!(ra.err().or(rb.err()).unwrap().code, ErrorCode::BadOauthState);
            let flow = oauth_flow(CHALLENGE, T0);
            create_external(&pa, &flow, ExternalFlow::default()).await;
            let (ra, rb) = tokio::join!(claim(&pa, flow.id), claim(&pb, flow.id));
            assert_eq!(ra.is_ok() as u8 + rb.is_ok() as u8, 1, "{ra:?} {rb:?}");
            assert_eq!(ra.err().or(rb.err()).unwrap().code, ErrorCode::FlowStateAlreadyUsed);
            // Two completions, then two exchanges of the code.
            let user = Uuid::new_v4();
            let (ra, rb) = tokio::join!(complete(&pa, flow.id, user), complete(&pb, flow.id, user));
            assert_eq!(ra.is_ok() as u8 + rb.is_ok() as u8, 1, "{ra:?} {rb:?}");
            let (ra, rb) =
                tokio::join!(exchange(&pa, &flow.auth_code, VERIFIER), exchange(&pb, &flow.auth_code, VERIFIER));
            assert_eq!(ra.is_ok() as u8 + rb.is_ok() as u8, 1, "{ra:?} {rb:?}");
            assert_eq!(ra.err().or(rb.err()).unwrap().code, ErrorCode::FlowStateNotFound);
            // Two takes of an email flow's code.
            let email = email_flow("recovery", user, T0);
            create(&pa, &email).await;
            let (ra, rb) = tokio::join!(take(&pa, &email.auth_code), take(&pb, &email.auth_code));
            assert_eq!(ra.is_ok() as u8 + rb.is_ok() as u8, 1, "{ra:?} {rb:?}");
        }
        assert_eq!(count(&pb).await, 0);
    }
}
