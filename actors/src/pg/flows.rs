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
        let client = self.db.client().await?;
        let none: Option<&str> = None;
        let no_target: Option<Uuid> = None;
        let no_issue: Option<Timestamp> = None;
        client
            .execute(
                &self.sql.insert,
                &[
                    &flow.id,
                    &flow.user_id,
                    &flow.auth_code,
                    &non_empty(&flow.code_challenge_method),
                    &non_empty(&flow.code_challenge),
                    &flow.provider,
                    &none,
                    &none,
                    &flow.created_at,
                    &self.clock.now(),
                    &flow.authentication_method,
                    &no_issue,
                    &flow.redirect_to,
                    &no_target,
                ],
            )
            .await?;
        Ok(flow)
    }

    async fn create_external(&self, flow: FlowState, ext: ExternalFlow) -> AuthResult<()> {
        let client = self.db.client().await?;
        let no_issue: Option<Timestamp> = None;
        client
            .execute(
                &self.sql.insert_external,
                &[
                    &flow.id,
                    &flow.user_id,
                    &flow.auth_code,
                    &non_empty(&flow.code_challenge_method),
                    &non_empty(&flow.code_challenge),
                    &flow.provider,
                    &ext.provider_token,
                    &ext.provider_refresh_token,
                    &flow.created_at,
                    &self.clock.now(),
                    &flow.authentication_method,
                    &no_issue,
                    &flow.redirect_to,
                    &ext.linking_target,
                    &ext.nonce,
                    &ext.claimed_at,
                ],
            )
            .await?;
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
