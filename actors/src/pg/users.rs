//! `UserRegistry` on Postgres: GoTrue's `users`, `identities`, `mfa_factors`,
//! `mfa_challenges` and `audit_log_entries`, plus what they have no column for in
//! `<ns>_ferrotrue` (migration 0003: identity order, TOTP step, exact `last_challenged_at`,
//! challenge attempts and IP).
//!
//! Nothing authoritative is held in memory. Every edit is one transaction: the user row is
//! locked (`SELECT … FOR UPDATE`), the user with its identities (or its factors with their
//! challenges) is read, the closure runs on that copy exactly as on sled, the differences are
//! written, and the reply leaves after COMMIT. Uniqueness is checked first (so the error is the
//! one sled gives, in sled's order) and enforced by GoTrue's unique constraints, whose
//! violations (a concurrent writer on another node) map to the same errors.
//!
//! Mapping decisions:
//! * Our "none" (`""`) is NULL in `email`, `phone` and `mfa_factors.phone` (unique
//!   constraints; GoTrue reads them as nullable), and `''` in the string columns GoTrue's models
//!   scan as Go strings (tokens, `email_change`, `phone_change`, `friendly_name` — its unique
//!   index skips blank names —, `secret`, `otp_code`). `instance_id` is the nil UUID. An
//!   `encrypted_password` of `''` (GoTrue's "no password") reads as `None`.
//! * Metadata and WebAuthn JSON are jsonb: they read back as the same JSON value, in canonical
//!   form (sorted keys, compact), not necessarily the same bytes.
//! * `Factor.sealed_secret` is stored as `ferrotrue:v1:<base64>` in `secret` (GoTrue fails
//!   clearly on it rather than misreading it); `Challenge.otp_code` (a MAC) as hex.
//! * `AuditEntry.seq` has no column: entries are ordered newest first by `(created_at, id)` and
//!   read back with `seq = 0`.
//! * Email uniqueness and lookups are among non-SSO users (GoTrue's `users_email_partial_key`);
//!   ferrotrue never creates SSO users, so this is the sled behaviour.
//! * Order: identities in the order ferrotrue inserted them (`identity_order.seq`; GoTrue's rows
//!   first), factors by `(created_at, id)` (sled's order after a restart), challenges in the
//!   order they were opened (`mfa_challenge_state.seq`), since flows drop `challenges[0]` and
//!   read `identities.first()` and a pinned clock gives equal `created_at`s. Listings are by
//!   `(created_at, id)`, as sled's after a restart (GoTrue has no index on `created_at`: a page
//!   and `count(*)` scan the table, as GoTrue's own admin listing does).
//! * `mfa_factors.last_challenged_at` is UNIQUE in GoTrue's schema: see
//!   [`PgUsers::set_last_challenged`]; the exact value is in `mfa_factor_state`.
//! * Delete is one `DELETE`: GoTrue's foreign keys take identities, factors, challenges,
//!   sessions and one-time tokens with the row.
//! * GoTrue's challenges with `verified_at` set (consumed) are not read.

use crate::clock::{Clock, Timestamp};
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::pg::schema::side_schema;
use crate::pg::types::unique_violation;
use crate::pg::Db;
use crate::user_registry::model::{AuditEntry, Challenge, Factor, Identity, JsonText, User};
use crate::user_registry::state::{
    email_exists, identity_already_linked, page_skip, phone_exists, uniqueness, user_already_exists, user_not_found,
    AuditQuery, FactorEdit, LinkCandidates, Page, UserEdit,
};
use crate::user_registry::UserRegistryMessage;
use crate::ActorEnv;
use base64::Engine as _;
use deadpool_postgres::GenericClient;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

/// GoTrue's `instance_id` for every row (it has used the nil UUID since multi-tenancy went).
const NIL_INSTANCE: Uuid = Uuid::nil();

/// Prefix of a sealed TOTP secret in `mfa_factors.secret`.
const SECRET_PREFIX: &str = "ferrotrue:v1:";

/// Audit entries deleted per statement by the retention sweep.
const AUDIT_SWEEP_BATCH: i64 = 1024;

/// Attempts at finding a free microsecond for `mfa_factors.last_challenged_at` when other
/// writers take the ones we picked.
const LAST_CHALLENGED_ATTEMPTS: usize = 8;

type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

/// Users in Postgres; no authoritative state in memory.
pub struct PgUsers {
    db: Db,
    clock: Clock,
    sql: Sql,
    /// Audit entries go through one writer that inserts whatever is queued in one statement
    /// (group commit); each caller still waits for the commit of its own entry.
    audit: mpsc::Sender<QueuedAudit>,
}

/// One audit entry waiting for the writer, with the caller's answer.
struct QueuedAudit {
    id: Uuid,
    payload: String,
    created_at: Timestamp,
    ip: String,
    done: oneshot::Sender<AuthResult<()>>,
}

/// Audit entries queued at most (a full queue makes callers wait: bounded memory).
const AUDIT_QUEUE: usize = 4096;
/// Entries inserted per statement at most.
const AUDIT_BATCH: usize = 256;

/// The audit writer: waits for an entry, takes whatever else is queued (up to
/// [`AUDIT_BATCH`]), inserts them in one statement (one commit) and answers every caller.
/// Ends when the registry that owns the queue is gone.
async fn write_audit(db: Db, sql: String, mut queue: mpsc::Receiver<QueuedAudit>) {
    let mut batch = Vec::with_capacity(AUDIT_BATCH);
    while queue.recv_many(&mut batch, AUDIT_BATCH).await > 0 {
        let ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
        let payloads: Vec<&str> = batch.iter().map(|e| e.payload.as_str()).collect();
        let created: Vec<Timestamp> = batch.iter().map(|e| e.created_at).collect();
        let ips: Vec<&str> = batch.iter().map(|e| e.ip.as_str()).collect();
        let result = async {
            let client = db.client().await?;
            execute(&client, &sql, &[&ids, &payloads, &created, &ips]).await?;
            Ok::<(), AuthError>(())
        }
        .await;
        for entry in batch.drain(..) {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(_) => Err(AuthError::internal("Database error")),
            };
            let _ = entry.done.send(answer);
        }
        if let Err(e) = result {
            tracing::error!(error = ?e.internal, "audit log insert failed");
        }
    }
}

/// Every statement, built once for the namespace.
struct Sql {
    /// Single-user reads with the user's identities in the same statement ([`with_identities`]).
    full_by_id: String,
    full_by_email: String,
    full_by_phone: String,
    full_by_identity: String,
    user_by_id_for_update: String,
    lock_user: String,
    users_by_emails: String,
    identity_owners: String,
    identities_of: String,
    factors_of: String,
    challenges_of: String,
    check_unique: String,
    insert_user: String,
    update_user: String,
    delete_user: String,
    insert_identity: String,
    update_identity: String,
    delete_identities: String,
    insert_factor: String,
    update_factor: String,
    upsert_factor_state: String,
    taken_last_challenged: String,
    set_last_challenged: String,
    delete_factors: String,
    insert_challenge: String,
    update_challenge: String,
    delete_challenges: String,
    count: String,
    /// `[ascending, descending]`, without and with a filter (`$1`).
    list: [String; 2],
    list_filtered: [String; 2],
    count_filtered: String,
    insert_audit: String,
    /// Without a query, then Author, Action, Type (`$1` = the text).
    audit_page: [String; 4],
    audit_count: [String; 4],
    sweep_audit: String,
}

/// One statement for a single-user read: the row of `user_query` (which selects [`USER_COLS`]),
/// then whether the user has MFA factors (column 25), then one identity per row from column 26
/// ([`identity_from_row`]; a user without identities is one row of NULLs there). The factors, when
/// there are any, are read by a second statement; most users have none, so a read is usually one
/// round trip instead of four.
fn with_identities(ns: &str, fx: &str, user_query: &str) -> String {
    format!(
        "SELECT u.*, EXISTS (SELECT 1 FROM {ns}.mfa_factors f WHERE f.user_id = u.id), \
         i.user_id, i.id, i.provider_id, i.provider, i.identity_data, coalesce(i.email, ''), \
         i.last_sign_in_at, i.created_at, i.updated_at \
         FROM ({user_query}) u LEFT JOIN {ns}.identities i ON i.user_id = u.id \
         LEFT JOIN {fx}.identity_order o ON o.identity_id = i.id \
         ORDER BY o.seq NULLS FIRST, i.created_at, i.id"
    )
}

/// Column of [`with_identities`] saying whether the user has factors.
const HAS_FACTORS_COL: usize = 25;
/// First identity column of [`with_identities`].
const IDENTITY_AT: usize = 26;

/// An identity (and its owner) from `row`, its columns starting at `at` in the order of
/// `identities_of`.
fn identity_from_row(row: &Row, at: usize) -> AuthResult<(Uuid, Identity)> {
    let created_at: Option<Timestamp> = row.try_get(at + 7)?;
    let updated_at: Option<Timestamp> = row.try_get(at + 8)?;
    let identity = Identity {
        id: row.try_get(at + 1)?,
        provider_id: row.try_get(at + 2)?,
        provider: row.try_get(at + 3)?,
        identity_data: json_text(row.try_get(at + 4)?),
        email: row.try_get(at + 5)?,
        last_sign_in_at: row.try_get(at + 6)?,
        created_at: created_at.unwrap_or(Timestamp(0)),
        updated_at: updated_at.or(created_at).unwrap_or(Timestamp(0)),
    };
    Ok((row.try_get(at)?, identity))
}

/// The user columns, in [`user_from_row`]'s order.
const USER_COLS: &str = "id, coalesce(aud, ''), coalesce(role, ''), coalesce(email, ''), coalesce(phone, ''), \
     encrypted_password, email_confirmed_at, phone_confirmed_at, invited_at, confirmation_sent_at, \
     recovery_sent_at, coalesce(email_change, ''), email_change_sent_at, coalesce(phone_change, ''), \
     phone_change_sent_at, reauthentication_sent_at, last_sign_in_at, raw_app_meta_data, raw_user_meta_data, \
     created_at, updated_at, banned_until, deleted_at, is_anonymous, is_sso_user";

/// The columns [`UserValues`] binds as `$2..$25` (`$1` is the id).
const USER_WRITE_COLS: [&str; 24] = [
    "aud",
    "role",
    "email",
    "phone",
    "encrypted_password",
    "email_confirmed_at",
    "phone_confirmed_at",
    "invited_at",
    "confirmation_sent_at",
    "recovery_sent_at",
    "email_change",
    "email_change_sent_at",
    "phone_change",
    "phone_change_sent_at",
    "reauthentication_sent_at",
    "last_sign_in_at",
    "raw_app_meta_data",
    "raw_user_meta_data",
    "created_at",
    "updated_at",
    "banned_until",
    "deleted_at",
    "is_anonymous",
    "is_sso_user",
];

impl Sql {
    fn new(ns: &str) -> Sql {
        let fx = side_schema(ns);
        let insert_cols = USER_WRITE_COLS.join(", ");
        let insert_vals = (2..=USER_WRITE_COLS.len() + 1).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let update_sets =
            USER_WRITE_COLS.iter().enumerate().map(|(i, c)| format!("{c} = ${}", i + 2)).collect::<Vec<_>>().join(", ");
        let list = |dir: &str, filter: bool| {
            let (where_, limit) = if filter {
                (format!("WHERE {}", user_filter("$1")), "LIMIT $2 OFFSET $3")
            } else {
                (String::new(), "LIMIT $1 OFFSET $2")
            };
            format!("SELECT {USER_COLS} FROM {ns}.users {where_} ORDER BY created_at {dir}, id {dir} {limit}")
        };
        let audit_preds = [
            "true".to_owned(),
            format!("({} OR {})", json_text_contains("actor_username"), json_text_contains("actor_name")),
            json_text_contains("action"),
            json_text_contains("log_type"),
        ];
        let audit_page = |i: usize| {
            let limit = if i == 0 { "LIMIT $1 OFFSET $2" } else { "LIMIT $2 OFFSET $3" };
            format!(
                "SELECT id, payload::text, created_at, ip_address FROM {ns}.audit_log_entries WHERE {} \
                 ORDER BY created_at DESC, id DESC {limit}",
                audit_preds[i]
            )
        };
        let audit_count = |i: usize| format!("SELECT count(*) FROM {ns}.audit_log_entries WHERE {}", audit_preds[i]);
        let user_by_email = format!("SELECT {USER_COLS} FROM {ns}.users WHERE email = $1 AND is_sso_user = false");
        let user_by_phone = format!("SELECT {USER_COLS} FROM {ns}.users WHERE phone = $1");
        let user_by_identity = format!(
            "SELECT {USER_COLS} FROM {ns}.users WHERE id = \
             (SELECT user_id FROM {ns}.identities WHERE provider = $1 AND provider_id = $2)"
        );
        Sql {
            full_by_id: with_identities(ns, &fx, &format!("SELECT {USER_COLS} FROM {ns}.users WHERE id = $1")),
            full_by_email: with_identities(ns, &fx, &user_by_email),
            full_by_phone: with_identities(ns, &fx, &user_by_phone),
            full_by_identity: with_identities(ns, &fx, &user_by_identity),
            user_by_id_for_update: format!("SELECT {USER_COLS} FROM {ns}.users WHERE id = $1 FOR UPDATE"),
            lock_user: format!("SELECT 1 FROM {ns}.users WHERE id = $1 FOR UPDATE"),
            users_by_emails: format!(
                "SELECT {USER_COLS} FROM {ns}.users WHERE email = ANY($1::text[]) AND is_sso_user = false"
            ),
            identity_owners: format!(
                "SELECT DISTINCT user_id FROM {ns}.identities WHERE email = ANY($1::text[]) \
                 AND provider NOT LIKE 'sso:%' ORDER BY user_id"
            ),
            identities_of: format!(
                "SELECT i.user_id, i.id, i.provider_id, i.provider, i.identity_data, coalesce(i.email, ''), \
                 i.last_sign_in_at, i.created_at, i.updated_at \
                 FROM {ns}.identities i LEFT JOIN {fx}.identity_order o ON o.identity_id = i.id \
                 WHERE i.user_id = ANY($1) ORDER BY o.seq NULLS FIRST, i.created_at, i.id"
            ),
            factors_of: format!(
                "SELECT f.user_id, f.id, coalesce(f.friendly_name, ''), f.factor_type::text, f.status::text, \
                 coalesce(f.secret, ''), f.created_at, f.updated_at, \
                 CASE WHEN s.factor_id IS NULL THEN f.last_challenged_at ELSE s.last_challenged_at END, \
                 s.last_used_step, coalesce(f.phone, ''), f.web_authn_credential, f.web_authn_aaguid \
                 FROM {ns}.mfa_factors f LEFT JOIN {fx}.mfa_factor_state s ON s.factor_id = f.id \
                 WHERE f.user_id = ANY($1) ORDER BY f.created_at, f.id"
            ),
            challenges_of: format!(
                "SELECT c.factor_id, c.id, c.created_at, coalesce(s.ip, host(c.ip_address)), \
                 coalesce(s.failed_attempts, 0), coalesce(c.otp_code, ''), c.web_authn_session_data \
                 FROM {ns}.mfa_challenges c JOIN {ns}.mfa_factors f ON f.id = c.factor_id \
                 LEFT JOIN {fx}.mfa_challenge_state s ON s.challenge_id = c.id \
                 WHERE f.user_id = ANY($1) AND c.verified_at IS NULL \
                 ORDER BY s.seq NULLS FIRST, c.created_at, c.id"
            ),
            check_unique: format!(
                "SELECT EXISTS (SELECT 1 FROM {ns}.users WHERE id = $1), \
                 EXISTS (SELECT 1 FROM {ns}.users WHERE $2::text <> '' AND email = $2::text AND is_sso_user = false \
                         AND id <> $1), \
                 EXISTS (SELECT 1 FROM {ns}.users WHERE $3::text <> '' AND phone = $3::text AND id <> $1), \
                 EXISTS (SELECT 1 FROM {ns}.identities i JOIN unnest($4::text[], $5::text[]) AS k(provider, sub) \
                         ON i.provider = k.provider AND i.provider_id = k.sub WHERE i.user_id <> $1)"
            ),
            insert_user: format!(
                "INSERT INTO {ns}.users (instance_id, id, {insert_cols}, confirmation_token, recovery_token, \
                 email_change_token_new, email_change_token_current, phone_change_token, reauthentication_token, \
                 is_super_admin, email_change_confirm_status) \
                 VALUES ('{NIL_INSTANCE}', $1, {insert_vals}, '', '', '', '', '', '', false, 0)"
            ),
            update_user: format!("UPDATE {ns}.users SET {update_sets} WHERE id = $1"),
            delete_user: format!("DELETE FROM {ns}.users WHERE id = $1"),
            insert_identity: format!(
                "WITH i AS (INSERT INTO {ns}.identities (id, user_id, provider_id, provider, identity_data, \
                 last_sign_in_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id) \
                 INSERT INTO {fx}.identity_order (identity_id) SELECT id FROM i"
            ),
            update_identity: format!(
                "UPDATE {ns}.identities SET user_id = $2, provider_id = $3, provider = $4, identity_data = $5, \
                 last_sign_in_at = $6, created_at = $7, updated_at = $8 WHERE id = $1"
            ),
            delete_identities: format!("DELETE FROM {ns}.identities WHERE id = ANY($1)"),
            insert_factor: format!(
                "INSERT INTO {ns}.mfa_factors (id, user_id, friendly_name, factor_type, status, secret, created_at, \
                 updated_at, phone, web_authn_credential, web_authn_aaguid) \
                 VALUES ($1, $2, $3, $4::text::{ns}.factor_type, $5::text::{ns}.factor_status, $6, $7, $8, $9, $10, $11)"
            ),
            update_factor: format!(
                "UPDATE {ns}.mfa_factors SET user_id = $2, friendly_name = $3, factor_type = $4::text::{ns}.factor_type, \
                 status = $5::text::{ns}.factor_status, secret = $6, created_at = $7, updated_at = $8, phone = $9, \
                 web_authn_credential = $10, web_authn_aaguid = $11 WHERE id = $1"
            ),
            upsert_factor_state: format!(
                "INSERT INTO {fx}.mfa_factor_state (factor_id, last_used_step, last_challenged_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (factor_id) DO UPDATE SET last_used_step = EXCLUDED.last_used_step, \
                 last_challenged_at = EXCLUDED.last_challenged_at"
            ),
            taken_last_challenged: format!(
                "SELECT last_challenged_at FROM {ns}.mfa_factors WHERE last_challenged_at >= $1 \
                 AND last_challenged_at < $2 AND id <> $3 ORDER BY last_challenged_at"
            ),
            set_last_challenged: format!("UPDATE {ns}.mfa_factors SET last_challenged_at = $2 WHERE id = $1"),
            delete_factors: format!("DELETE FROM {ns}.mfa_factors WHERE id = ANY($1)"),
            insert_challenge: format!(
                "WITH c AS (INSERT INTO {ns}.mfa_challenges (id, factor_id, created_at, ip_address, otp_code, \
                 web_authn_session_data) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id) \
                 INSERT INTO {fx}.mfa_challenge_state (challenge_id, failed_attempts, ip) \
                 SELECT id, $7::bigint, $8::text FROM c"
            ),
            update_challenge: format!(
                "WITH c AS (UPDATE {ns}.mfa_challenges SET factor_id = $2, created_at = $3, ip_address = $4, \
                 otp_code = $5, web_authn_session_data = $6 WHERE id = $1 RETURNING id) \
                 INSERT INTO {fx}.mfa_challenge_state (challenge_id, failed_attempts, ip) \
                 SELECT id, $7::bigint, $8::text FROM c \
                 ON CONFLICT (challenge_id) DO UPDATE SET failed_attempts = EXCLUDED.failed_attempts, ip = EXCLUDED.ip"
            ),
            delete_challenges: format!("DELETE FROM {ns}.mfa_challenges WHERE id = ANY($1)"),
            count: format!("SELECT count(*) FROM {ns}.users"),
            list: [list("ASC", false), list("DESC", false)],
            list_filtered: [list("ASC", true), list("DESC", true)],
            count_filtered: format!("SELECT count(*) FROM {ns}.users WHERE {}", user_filter("$1")),
            insert_audit: format!(
                "INSERT INTO {ns}.audit_log_entries (instance_id, id, payload, created_at, ip_address) \
                 SELECT '{NIL_INSTANCE}', id, payload::json, created_at, ip \
                 FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[]) AS e(id, payload, created_at, ip)"
            ),
            audit_page: [audit_page(0), audit_page(1), audit_page(2), audit_page(3)],
            audit_count: [audit_count(0), audit_count(1), audit_count(2), audit_count(3)],
            sweep_audit: format!(
                "DELETE FROM {ns}.audit_log_entries WHERE id IN \
                 (SELECT id FROM {ns}.audit_log_entries WHERE created_at < $1 LIMIT {AUDIT_SWEEP_BATCH})"
            ),
        }
    }
}

/// The listing filter (sled's `list`): `needle` (lower-cased) in the email, the phone, or the
/// lower-cased `user_metadata.full_name` when that is a string.
fn user_filter(needle: &str) -> String {
    format!(
        "(strpos(coalesce(email, ''), {needle}::text) > 0 OR strpos(coalesce(phone, ''), {needle}::text) > 0 \
         OR strpos(lower(CASE WHEN jsonb_typeof(raw_user_meta_data -> 'full_name') = 'string' \
         THEN raw_user_meta_data ->> 'full_name' ELSE '' END), {needle}::text) > 0)"
    )
}

/// An audit query (sled's `audit_page`): `$1` in the lower-cased payload string field `key`.
fn json_text_contains(key: &str) -> String {
    format!(
        "strpos(lower(CASE WHEN json_typeof(payload -> '{key}') = 'string' THEN payload ->> '{key}' ELSE '' END), \
         $1::text) > 0"
    )
}

/// A write failed: a unique constraint a concurrent writer won becomes the error sled's
/// `check_unique` gives; anything else is a database error.
fn write_error(e: tokio_postgres::Error) -> AuthError {
    match unique_violation(&e) {
        Some("users_email_partial_key") => email_exists(),
        Some("users_phone_key") => phone_exists(),
        Some("identities_provider_id_provider_unique") => identity_already_linked(),
        Some("users_pkey") => user_already_exists(),
        // Postgres text and jsonb cannot hold NUL (sled could): the client's input, not a 500.
        _ if e.code().is_some_and(|c| {
            *c == SqlState::UNTRANSLATABLE_CHARACTER || *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE
        }) =>
        {
            AuthError::validation("Text may not contain the NUL character (\\u0000)")
        }
        _ => e.into(),
    }
}

fn none_if_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// JSON text as a jsonb object (what `JsonText::to_map` reads: anything else is `{}`).
fn json_object(t: &JsonText) -> serde_json::Value {
    serde_json::Value::Object(t.to_map())
}

/// A jsonb object read back, in canonical text.
fn json_text(v: Option<serde_json::Value>) -> JsonText {
    match v {
        Some(v @ serde_json::Value::Object(_)) => JsonText(v.to_string()),
        _ => JsonText::empty(),
    }
}

/// Our JSON bytes (WebAuthn) as a jsonb value; empty is NULL.
fn json_bytes(bytes: &[u8]) -> AuthResult<Option<serde_json::Value>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| AuthError::unexpected(format!("WebAuthn data is not JSON: {e}")))
}

fn json_bytes_back(v: Option<serde_json::Value>) -> Vec<u8> {
    v.map(|v| v.to_string().into_bytes()).unwrap_or_default()
}

/// `''` when there is none (phone and WebAuthn factors): GoTrue scans `secret` into a string.
fn encode_secret(sealed: &[u8]) -> String {
    if sealed.is_empty() {
        return String::new();
    }
    format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(sealed))
}

/// A secret we wrote, unsealable again; anything else (GoTrue's own secrets) as its bytes,
/// which fail to unseal.
fn decode_secret(text: &str) -> Vec<u8> {
    if text.is_empty() {
        return Vec::new();
    }
    text.strip_prefix(SECRET_PREFIX)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| text.as_bytes().to_vec())
}

fn user_from_row(row: &Row) -> AuthResult<User> {
    let encrypted_password: Option<String> = row.try_get(5)?;
    let created_at: Option<Timestamp> = row.try_get(19)?;
    let updated_at: Option<Timestamp> = row.try_get(20)?;
    Ok(User {
        id: row.try_get(0)?,
        aud: row.try_get(1)?,
        role: row.try_get(2)?,
        email: row.try_get(3)?,
        phone: row.try_get(4)?,
        // GoTrue writes '' for "no password".
        encrypted_password: encrypted_password.filter(|p| !p.is_empty()),
        email_confirmed_at: row.try_get(6)?,
        phone_confirmed_at: row.try_get(7)?,
        invited_at: row.try_get(8)?,
        confirmation_sent_at: row.try_get(9)?,
        recovery_sent_at: row.try_get(10)?,
        new_email: row.try_get(11)?,
        email_change_sent_at: row.try_get(12)?,
        new_phone: row.try_get(13)?,
        phone_change_sent_at: row.try_get(14)?,
        reauthentication_sent_at: row.try_get(15)?,
        last_sign_in_at: row.try_get(16)?,
        app_metadata: json_text(row.try_get(17)?),
        user_metadata: json_text(row.try_get(18)?),
        identities: Vec::new(),
        created_at: created_at.unwrap_or(Timestamp(0)),
        updated_at: updated_at.or(created_at).unwrap_or(Timestamp(0)),
        banned_until: row.try_get(21)?,
        deleted_at: row.try_get(22)?,
        is_anonymous: row.try_get(23)?,
        is_sso_user: row.try_get(24)?,
        factors: Vec::new(),
    })
}

/// A user's column values, owned, for `$1..$25` of `insert_user` / `update_user`.
struct UserValues<'a> {
    user: &'a User,
    app: serde_json::Value,
    meta: serde_json::Value,
    email: Option<&'a str>,
    phone: Option<&'a str>,
}

impl<'a> UserValues<'a> {
    fn new(user: &'a User) -> Self {
        UserValues {
            user,
            app: json_object(&user.app_metadata),
            meta: json_object(&user.user_metadata),
            email: none_if_empty(&user.email),
            phone: none_if_empty(&user.phone),
        }
    }
    fn params(&self) -> Params<'_> {
        let u = self.user;
        vec![
            &u.id,
            &u.aud,
            &u.role,
            &self.email,
            &self.phone,
            &u.encrypted_password,
            &u.email_confirmed_at,
            &u.phone_confirmed_at,
            &u.invited_at,
            &u.confirmation_sent_at,
            &u.recovery_sent_at,
            &u.new_email,
            &u.email_change_sent_at,
            &u.new_phone,
            &u.phone_change_sent_at,
            &u.reauthentication_sent_at,
            &u.last_sign_in_at,
            &self.app,
            &self.meta,
            &u.created_at,
            &u.updated_at,
            &u.banned_until,
            &u.deleted_at,
            &u.is_anonymous,
            &u.is_sso_user,
        ]
    }
}

async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let stmt = c.prepare_cached(sql).await?;
    c.query(&stmt, params).await
}

async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, tokio_postgres::Error> {
    let stmt = c.prepare_cached(sql).await?;
    c.query_opt(&stmt, params).await
}

async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let stmt = c.prepare_cached(sql).await?;
    c.execute(&stmt, params).await
}

/// `skip` and `limit` of a page (sled's arithmetic), as Postgres bigints.
fn page_bounds(page: usize, per_page: usize) -> (i64, i64) {
    let skip = page_skip(page, per_page);
    (i64::try_from(per_page).unwrap_or(i64::MAX), i64::try_from(skip).unwrap_or(i64::MAX))
}

fn count_of(row: &Row) -> AuthResult<usize> {
    let n: i64 = row.try_get(0)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// The IP GoTrue's `inet NOT NULL` column gets (our exact string is in the side table).
fn inet(ip: &str) -> IpAddr {
    ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

impl PgUsers {
    pub fn new(db: Db, env: &ActorEnv) -> PgUsers {
        PgUsers::with_clock(db, env.clock.clone())
    }

    /// Without the rest of the environment (tests).
    pub fn with_clock(db: Db, clock: Clock) -> PgUsers {
        let sql = Sql::new(db.namespace());
        let (audit, queue) = mpsc::channel(AUDIT_QUEUE);
        tokio::spawn(write_audit(db.clone(), sql.insert_audit.clone(), queue));
        PgUsers { db, clock, sql, audit }
    }

    /// Answers one message (on its own task, see [`super::types::spawn_request`]);
    /// `audit_retention` is `FERROTRUE_AUDIT_RETENTION` for the periodic sweep.
    pub async fn handle(self: Arc<Self>, msg: UserRegistryMessage, audit_retention: Option<Duration>) {
        use UserRegistryMessage::*;
        match msg {
            Create { user, reply } => drop(reply.send(self.create(*user).await)),
            Get { id, reply } => drop(reply.send(self.get(id).await)),
            ByEmail { email, reply } => drop(reply.send(self.by_email(&email).await)),
            ByPhone { phone, reply } => drop(reply.send(self.by_phone(&phone).await)),
            ByIdentity { provider, provider_id, reply } => {
                drop(reply.send(self.by_identity(&provider, &provider_id).await))
            }
            LinkCandidates { emails, reply } => drop(reply.send(self.link_candidates(&emails).await)),
            Update { id, edit, reply } => drop(reply.send(self.update(id, edit).await)),
            Delete { id, reply } => drop(reply.send(self.delete(id).await)),
            EditFactors { user_id, edit, reply } => drop(reply.send(self.edit_factors(user_id, edit).await)),
            Count { reply } => drop(reply.send(self.count().await)),
            List { page, per_page, filter, ascending, reply } => {
                drop(reply.send(self.list(page, per_page, filter.as_deref(), ascending).await))
            }
            RecordAudit { entry, reply } => drop(reply.send(self.record_audit(*entry).await)),
            AuditPage { page, per_page, query, reply } => {
                drop(reply.send(self.audit_page(page, per_page, query.as_ref()).await))
            }
            SweepAudit => {
                if let Some(retention) = audit_retention {
                    match self.sweep_audit(retention).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(deleted = n, "swept audit log"),
                        Err(e) => tracing::error!(error = %e, "audit log sweep failed"),
                    }
                }
            }
            #[cfg(feature = "fault-injection")]
            Panic { .. } => {}
        }
    }

    /// Users read from `rows` with their identities and factors (three queries, pipelined).
    async fn complete<C: GenericClient>(&self, c: &C, rows: &[Row]) -> AuthResult<Vec<User>> {
        let mut users = rows.iter().map(user_from_row).collect::<AuthResult<Vec<_>>>()?;
        if users.is_empty() {
            return Ok(users);
        }
        let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
        let (mut identities, mut factors) = tokio::try_join!(self.identities_of(c, &ids), self.factors_of(c, &ids))?;
        for u in &mut users {
            u.identities = identities.remove(&u.id).unwrap_or_default();
            u.factors = factors.remove(&u.id).unwrap_or_default();
        }
        Ok(users)
    }

    /// The user of a [`with_identities`] read, with its identities and factors.
    async fn read_full<C: GenericClient>(
        &self,
        c: &C,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> AuthResult<Option<User>> {
        let rows = query(c, sql, params).await?;
        let Some(first) = rows.first() else { return Ok(None) };
        let mut user = user_from_row(first)?;
        for row in &rows {
            if row.try_get::<_, Option<Uuid>>(IDENTITY_AT + 1)?.is_some() {
                user.identities.push(identity_from_row(row, IDENTITY_AT)?.1);
            }
        }
        if first.try_get::<_, bool>(HAS_FACTORS_COL)? {
            user.factors = self.factors_of(c, &[user.id]).await?.remove(&user.id).unwrap_or_default();
        }
        Ok(Some(user))
    }

    async fn complete_one<C: GenericClient>(&self, c: &C, row: Option<Row>) -> AuthResult<Option<User>> {
        let Some(row) = row else { return Ok(None) };
        Ok(self.complete(c, std::slice::from_ref(&row)).await?.pop())
    }

    /// The identities of `ids` by owner, in their stored order.
    async fn identities_of<C: GenericClient>(&self, c: &C, ids: &[Uuid]) -> AuthResult<HashMap<Uuid, Vec<Identity>>> {
        let mut out: HashMap<Uuid, Vec<Identity>> = HashMap::new();
        for row in query(c, &self.sql.identities_of, &[&ids]).await? {
            let (owner, identity) = identity_from_row(&row, 0)?;
            out.entry(owner).or_default().push(identity);
        }
        Ok(out)
    }

    /// The factors (with their open challenges) of `ids` by owner, oldest first.
    async fn factors_of<C: GenericClient>(&self, c: &C, ids: &[Uuid]) -> AuthResult<HashMap<Uuid, Vec<Factor>>> {
        let by_owner: Params = vec![&ids];
        let (factor_rows, challenge_rows) =
            tokio::try_join!(query(c, &self.sql.factors_of, &by_owner), query(c, &self.sql.challenges_of, &by_owner))?;
        let mut challenges: HashMap<Uuid, Vec<Challenge>> = HashMap::new();
        for row in challenge_rows {
            let failed: i64 = row.try_get(4)?;
            let otp: String = row.try_get(5)?;
            let challenge = Challenge {
                id: row.try_get(1)?,
                created_at: row.try_get(2)?,
                ip: row.try_get::<_, Option<String>>(3)?.unwrap_or_default(),
                failed_attempts: u32::try_from(failed).unwrap_or(u32::MAX),
                otp_code: hex::decode(&otp).unwrap_or_else(|_| otp.into_bytes()),
                web_authn_state: json_bytes_back(row.try_get(6)?),
            };
            challenges.entry(row.try_get(0)?).or_default().push(challenge);
        }
        let mut out: HashMap<Uuid, Vec<Factor>> = HashMap::new();
        for row in factor_rows {
            let id: Uuid = row.try_get(1)?;
            let secret: String = row.try_get(5)?;
            let step: Option<i64> = row.try_get(9)?;
            let factor = Factor {
                id,
                user_id: row.try_get(0)?,
                friendly_name: row.try_get(2)?,
                factor_type: row.try_get(3)?,
                status: row.try_get(4)?,
                sealed_secret: decode_secret(&secret),
                created_at: row.try_get(6)?,
                updated_at: row.try_get(7)?,
                last_challenged_at: row.try_get(8)?,
                // Stored bit for bit (a step is far below 2^63 anyway).
                last_used_step: step.map(|s| s as u64),
                challenges: challenges.remove(&id).unwrap_or_default(),
                phone: row.try_get(10)?,
                web_authn_credential: json_bytes_back(row.try_get(11)?),
                web_authn_aaguid: row.try_get(12)?,
            };
            out.entry(factor.user_id).or_default().push(factor);
        }
        Ok(out)
    }

    /// By id.
    pub async fn get(&self, id: Uuid) -> AuthResult<Option<User>> {
        let client = self.db.client().await?;
        self.read_full(&client, &self.sql.full_by_id, &[&id]).await
    }

    /// By lower-cased email.
    pub async fn by_email(&self, email: &str) -> AuthResult<Option<User>> {
        if email.is_empty() {
            return Ok(None);
        }
        let client = self.db.client().await?;
        self.read_full(&client, &self.sql.full_by_email, &[&email]).await
    }

    /// By phone without `+`.
    pub async fn by_phone(&self, phone: &str) -> AuthResult<Option<User>> {
        if phone.is_empty() {
            return Ok(None);
        }
        let client = self.db.client().await?;
        self.read_full(&client, &self.sql.full_by_phone, &[&phone]).await
    }

    /// The user holding the identity `(provider, provider_id)`.
    pub async fn by_identity(&self, provider: &str, provider_id: &str) -> AuthResult<Option<User>> {
        let client = self.db.client().await?;
        self.read_full(&client, &self.sql.full_by_identity, &[&provider, &provider_id]).await
    }

    /// Who holds any of `emails` (lower-cased), as identity (non-SSO provider) or as user
    /// (non-SSO, in the order of `emails`).
    pub async fn link_candidates(&self, emails: &[String]) -> AuthResult<LinkCandidates> {
        let client = self.db.client().await?;
        let c = &client;
        let by_email: Params = vec![&emails];
        let (owners, rows) = tokio::try_join!(
            query(c, &self.sql.identity_owners, &by_email),
            query(c, &self.sql.users_by_emails, &by_email)
        )?;
        let identity_owners = owners.iter().map(|r| r.try_get(0)).collect::<Result<Vec<Uuid>, _>>()?;
        let mut found = self.complete(c, &rows).await?;
        let mut users = Vec::with_capacity(found.len());
        for email in emails {
            if let Some(at) = found.iter().position(|u| u.email == *email) {
                users.push(found.swap_remove(at));
            }
        }
        Ok(LinkCandidates { identity_owners, users })
    }

    /// Number of users.
    pub async fn count(&self) -> AuthResult<usize> {
        let client = self.db.client().await?;
        count_of(&query_opt(&client, &self.sql.count, &[]).await?.ok_or_else(|| AuthError::internal("count"))?)
    }

    /// A page of users in creation order (`ascending` or newest first; ties by id), optionally
    /// filtered (see [`user_filter`]), with the total the page was cut from.
    pub async fn list(
        &self,
        page: usize,
        per_page: usize,
        filter: Option<&str>,
        ascending: bool,
    ) -> AuthResult<Page<User>> {
        let (limit, skip) = page_bounds(page, per_page);
        let dir = usize::from(!ascending);
        let client = self.db.client().await?;
        let c = &client;
        let needle = filter.map(str::to_lowercase).filter(|f| !f.is_empty());
        let (page_sql, count_sql, page_params, count_params): (_, _, Params, Params) = match &needle {
            None => (&self.sql.list[dir], &self.sql.count, vec![&limit, &skip], vec![]),
            Some(needle) => {
                (&self.sql.list_filtered[dir], &self.sql.count_filtered, vec![needle, &limit, &skip], vec![needle])
            }
        };
        let (rows, total) = tokio::try_join!(query(c, page_sql, &page_params), query(c, count_sql, &count_params))?;
        let total = total.first().map(count_of).transpose()?.unwrap_or(0);
        Ok(Page { items: self.complete(c, &rows).await?, total })
    }

    /// sled's `check_unique` (plus `create`'s id check), in its order: the id (create only),
    /// a changed email, a changed phone, every identity.
    async fn check_unique<C: GenericClient>(&self, c: &C, user: &User, old: Option<&User>) -> AuthResult<()> {
        let email = if old.is_none_or(|o| o.email != user.email) { user.email.as_str() } else { "" };
        let phone = if old.is_none_or(|o| o.phone != user.phone) { user.phone.as_str() } else { "" };
        let providers: Vec<&str> = user.identities.iter().map(|i| i.provider.as_str()).collect();
        let subs: Vec<&str> = user.identities.iter().map(|i| i.provider_id.as_str()).collect();
        let row = query_opt(c, &self.sql.check_unique, &[&user.id, &email, &phone, &providers, &subs])
            .await?
            .ok_or_else(|| AuthError::internal("uniqueness check"))?;
        let (id_taken, email_taken, phone_taken, identity_taken): (bool, bool, bool, bool) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        if old.is_none() && id_taken {
            return Err(user_already_exists());
        }
        uniqueness(email_taken, phone_taken, identity_taken)
    }

    /// Inserts a new user with its identities; `email_exists` / `phone_exists` (422) if taken.
    pub async fn create(&self, user: User) -> AuthResult<User> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        self.check_unique(&tx, &user, None).await?;
        let values = UserValues::new(&user);
        execute(&tx, &self.sql.insert_user, &values.params()).await.map_err(write_error)?;
        self.write_identities(&tx, user.id, &[], &user.identities).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(user)
    }

    /// Applies `edit` to the locked user (identities attached, factors not: as on sled), checks
    /// uniqueness of what changed, writes the differences, commits; the user with its factors.
    pub async fn update(&self, id: Uuid, edit: UserEdit) -> AuthResult<User> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let row = query_opt(&tx, &self.sql.user_by_id_for_update, &[&id]).await?;
        let mut old = self.complete_one(&tx, row).await?.ok_or_else(user_not_found)?;
        let factors = std::mem::take(&mut old.factors);
        let mut user = old.clone();
        edit(&mut user)?;
        user.id = old.id; // the id is not editable
        user.updated_at = self.clock.now();
        self.check_unique(&tx, &user, Some(&old)).await?;
        let values = UserValues::new(&user);
        execute(&tx, &self.sql.update_user, &values.params()).await.map_err(write_error)?;
        self.write_identities(&tx, user.id, &old.identities, &user.identities).await?;
        tx.commit().await.map_err(write_error)?;
        user.factors = factors;
        Ok(user)
    }

    /// Deletes, inserts and updates identities so that `old` becomes `new`.
    async fn write_identities<C: GenericClient>(
        &self,
        c: &C,
        user_id: Uuid,
        old: &[Identity],
        new: &[Identity],
    ) -> AuthResult<()> {
        let gone: Vec<Uuid> = old.iter().filter(|o| !new.iter().any(|n| n.id == o.id)).map(|o| o.id).collect();
        if !gone.is_empty() {
            execute(c, &self.sql.delete_identities, &[&gone]).await?;
        }
        for i in new {
            let before = old.iter().find(|o| o.id == i.id);
            if before == Some(i) {
                continue;
            }
            let data = json_object(&i.identity_data);
            let params: Params = vec![
                &i.id,
                &user_id,
                &i.provider_id,
                &i.provider,
                &data,
                &i.last_sign_in_at,
                &i.created_at,
                &i.updated_at,
            ];
            let sql = if before.is_some() { &self.sql.update_identity } else { &self.sql.insert_identity };
            execute(c, sql, &params).await.map_err(write_error)?;
        }
        Ok(())
    }

    /// Hard delete: identities, factors, challenges (and sessions, one-time tokens: GoTrue's
    /// foreign keys) go with the row.
    pub async fn delete(&self, id: Uuid) -> AuthResult<()> {
        let client = self.db.client().await?;
        match execute(&client, &self.sql.delete_user, &[&id]).await? {
            0 => Err(user_not_found()),
            _ => Ok(()),
        }
    }

    /// Runs `edit` on the user's factors (user row locked), writes what changed even when the
    /// edit fails ("commit then fail", see [`FactorEdit`]), then returns the edit's result.
    pub async fn edit_factors(&self, user_id: Uuid, edit: FactorEdit) -> AuthResult<Option<Factor>> {
        let mut client = self.db.client().await?;
        let mut tx = client.transaction().await?;
        if query_opt(&tx, &self.sql.lock_user, &[&user_id]).await?.is_none() {
            return Err(user_not_found());
        }
        let old = self.factors_of(&tx, &[user_id]).await?.remove(&user_id).unwrap_or_default();
        let mut new = old.clone();
        let result = edit(&mut new);
        for f in &mut new {
            f.user_id = user_id;
        }
        if new != old {
            self.write_factors(&mut tx, &old, &new).await?;
            tx.commit().await?;
        }
        result
    }

    /// Deletes, inserts and updates factors and challenges so that `old` becomes `new`.
    async fn write_factors(
        &self,
        tx: &mut deadpool_postgres::Transaction<'_>,
        old: &[Factor],
        new: &[Factor],
    ) -> AuthResult<()> {
        let gone: Vec<Uuid> = old.iter().filter(|o| !new.iter().any(|n| n.id == o.id)).map(|o| o.id).collect();
        if !gone.is_empty() {
            execute(&*tx, &self.sql.delete_factors, &[&gone]).await?;
        }
        let old_challenges: HashMap<Uuid, (Uuid, &Challenge)> =
            old.iter().flat_map(|f| f.challenges.iter().map(move |c| (c.id, (f.id, c)))).collect();
        let new_challenges: HashMap<Uuid, (Uuid, &Challenge)> =
            new.iter().flat_map(|f| f.challenges.iter().map(move |c| (c.id, (f.id, c)))).collect();
        let closed: Vec<Uuid> = old_challenges.keys().filter(|id| !new_challenges.contains_key(id)).copied().collect();
        if !closed.is_empty() {
            execute(&*tx, &self.sql.delete_challenges, &[&closed]).await?;
        }
        for f in new {
            let before = old.iter().find(|o| o.id == f.id);
            if before == Some(f) {
                continue;
            }
            let row_changed = before.is_none_or(|b| {
                let strip = |f: &Factor| Factor { challenges: Vec::new(), ..f.clone() };
                strip(b) != strip(f)
            });
            if row_changed {
                self.write_factor(tx, f, before).await?;
            }
        }
        // Challenges in the order their factors list them (new ones after older ones).
        for f in new {
            for ch in &f.challenges {
                let before = old_challenges.get(&ch.id);
                if before.is_some_and(|(fid, b)| *fid == f.id && *b == ch) {
                    continue;
                }
                let otp = hex::encode(&ch.otp_code);
                let state = json_bytes(&ch.web_authn_state)?;
                let ip = inet(&ch.ip);
                let failed = i64::from(ch.failed_attempts);
                let params: Params = vec![&ch.id, &f.id, &ch.created_at, &ip, &otp, &state, &failed, &ch.ip];
                let sql = if before.is_some() { &self.sql.update_challenge } else { &self.sql.insert_challenge };
                execute(&*tx, sql, &params).await.map_err(write_error)?;
            }
        }
        Ok(())
    }

    /// One factor's row and side row; `last_challenged_at` through [`Self::set_last_challenged`].
    async fn write_factor(
        &self,
        tx: &mut deadpool_postgres::Transaction<'_>,
        f: &Factor,
        before: Option<&Factor>,
    ) -> AuthResult<()> {
        let secret = encode_secret(&f.sealed_secret);
        let phone = none_if_empty(&f.phone);
        let credential = json_bytes(&f.web_authn_credential)?;
        let params: Params = vec![
            &f.id,
            &f.user_id,
            &f.friendly_name,
            &f.factor_type,
            &f.status,
            &secret,
            &f.created_at,
            &f.updated_at,
            &phone,
            &credential,
            &f.web_authn_aaguid,
        ];
        let sql = if before.is_some() { &self.sql.update_factor } else { &self.sql.insert_factor };
        execute(&*tx, sql, &params).await.map_err(|e| match unique_violation(&e) {
            Some("mfa_factors_user_friendly_name_unique") => AuthError::unprocessable(
                ErrorCode::MfaFactorNameConflict,
                format!("A factor with the friendly name \"{}\" for this user already exists", f.friendly_name),
            ),
            _ => write_error(e),
        })?;
        let step = f.last_used_step.map(|s| s as i64);
        execute(&*tx, &self.sql.upsert_factor_state, &[&f.id, &step, &f.last_challenged_at]).await?;
        if before.map_or(f.last_challenged_at.is_some(), |b| b.last_challenged_at != f.last_challenged_at) {
            self.set_last_challenged(tx, f.id, f.last_challenged_at).await?;
        }
        Ok(())
    }

    /// GoTrue's `mfa_factors.last_challenged_at` is UNIQUE over all factors: the value goes in
    /// at the first microsecond at or after `at` that no other factor holds (the exact value is
    /// in `mfa_factor_state`). A concurrent writer taking the same microsecond makes the insert
    /// fail inside a savepoint, and we look again; after a few tries (or with the next second
    /// full) GoTrue's column is left NULL rather than failing the request.
    async fn set_last_challenged(
        &self,
        tx: &mut deadpool_postgres::Transaction<'_>,
        id: Uuid,
        at: Option<Timestamp>,
    ) -> AuthResult<()> {
        let Some(at) = at else {
            execute(&*tx, &self.sql.set_last_challenged, &[&id, &None::<Timestamp>]).await?;
            return Ok(());
        };
        let window_end = Timestamp(at.0.saturating_add(1_000_000));
        for _ in 0..LAST_CHALLENGED_ATTEMPTS {
            let taken = query(&*tx, &self.sql.taken_last_challenged, &[&at, &window_end, &id]).await?;
            let mut candidate = at;
            for row in &taken {
                let t: Timestamp = row.try_get(0)?;
                if t == candidate {
                    candidate = Timestamp(candidate.0 + 1);
                } else if t > candidate {
                    break;
                }
            }
            if candidate >= window_end {
                break;
            }
            let sp = tx.savepoint("last_challenged_at").await?;
            match execute(&sp, &self.sql.set_last_challenged, &[&id, &candidate]).await {
                Ok(_) => {
                    sp.commit().await?;
                    return Ok(());
                }
                Err(e) if unique_violation(&e) == Some("mfa_factors_last_challenged_at_key") => {
                    sp.rollback().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        execute(&*tx, &self.sql.set_last_challenged, &[&id, &None::<Timestamp>]).await?;
        Ok(())
    }

    /// Appends an audit entry (`seq` is not stored).
    pub async fn record_audit(&self, entry: AuditEntry) -> AuthResult<()> {
        let payload = if serde_json::from_str::<serde_json::Value>(&entry.payload.0).is_ok() {
            entry.payload.0.as_str()
        } else {
            "{}"
        };
        // `varchar(64)`: longer text (never an IP) is cut at a character boundary.
        let mut end = entry.ip_address.len().min(64);
        while !entry.ip_address.is_char_boundary(end) {
            end -= 1;
        }
        let (done, answer) = oneshot::channel();
        // Postgres refuses NUL in text, and one refused entry would fail its whole batch.
        let queued = QueuedAudit {
            id: entry.id,
            payload: payload.replace('\0', ""),
            created_at: entry.created_at,
            ip: entry.ip_address[..end].replace('\0', ""),
            done,
        };
        let gone = || AuthError::unexpected("the audit writer stopped");
        self.audit.send(queued).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// A page of the audit log, newest first (`created_at`, then id), with the number of
    /// entries matching `query`.
    pub async fn audit_page(
        &self,
        page: usize,
        per_page: usize,
        query_: Option<&AuditQuery>,
    ) -> AuthResult<Page<AuditEntry>> {
        let (limit, skip) = page_bounds(page, per_page);
        let client = self.db.client().await?;
        let c = &client;
        let (i, text) = match query_ {
            None => (0, ""),
            Some(AuditQuery::Author(t)) => (1, t.as_str()),
            Some(AuditQuery::Action(t)) => (2, t.as_str()),
            Some(AuditQuery::Type(t)) => (3, t.as_str()),
        };
        let (page_params, count_params): (Params, Params) =
            if i == 0 { (vec![&limit, &skip], vec![]) } else { (vec![&text, &limit, &skip], vec![&text]) };
        let (rows, total) = tokio::try_join!(
            query(c, &self.sql.audit_page[i], &page_params),
            query(c, &self.sql.audit_count[i], &count_params)
        )?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let created_at: Option<Timestamp> = row.try_get(2)?;
            items.push(AuditEntry {
                id: row.try_get(0)?,
                seq: 0,
                payload: JsonText(row.try_get::<_, Option<String>>(1)?.unwrap_or_else(|| "{}".into())),
                created_at: created_at.unwrap_or(Timestamp(0)),
                ip_address: row.try_get(3)?,
            });
        }
        let total = total.first().map(count_of).transpose()?.unwrap_or(0);
        Ok(Page { items, total })
    }

    /// Deletes audit entries older than `retention`, in batches; how many.
    pub async fn sweep_audit(&self, retention: Duration) -> AuthResult<usize> {
        let cutoff =
            Timestamp(self.clock.now().0.saturating_sub(i64::try_from(retention.as_micros()).unwrap_or(i64::MAX)));
        let client = self.db.client().await?;
        let mut deleted = 0usize;
        loop {
            let n = execute(&client, &self.sql.sweep_audit, &[&cutoff]).await?;
            deleted += usize::try_from(n).unwrap_or(0);
            if n < AUDIT_SWEEP_BATCH as u64 {
                return Ok(deleted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{DUPLICATE_EMAIL_MSG, DUPLICATE_PHONE_MSG};
    use crate::pg::testing::migrated_db;

    const T0: Timestamp = Timestamp(1_764_547_200_000_000);

    async fn registry() -> (PgUsers, Clock) {
        let clock = Clock::fixed(T0);
        (PgUsers::with_clock(migrated_db().await, clock.clone()), clock)
    }

    fn user(email: &str, phone: &str) -> User {
        User {
            email: email.into(),
            phone: phone.into(),
            encrypted_password: Some("$argon2id$x".into()),
            email_confirmed_at: Some(T0),
            app_metadata: JsonText(r#"{"provider":"email","providers":["email"]}"#.into()),
            ..User::blank("authenticated", "authenticated", T0)
        }
    }

    fn identity(provider: &str, sub: &str, email: &str, at: Timestamp) -> Identity {
        let mut data = serde_json::Map::new();
        data.insert("sub".into(), serde_json::json!(sub));
        if !email.is_empty() {
            data.insert("email".into(), serde_json::json!(email));
        }
        Identity {
            id: Uuid::new_v4(),
            provider_id: sub.into(),
            provider: provider.into(),
            identity_data: JsonText::from_map(&data),
            email: email.to_lowercase(),
            last_sign_in_at: None,
            created_at: at,
            updated_at: at,
        }
    }

    /// An edit that cannot fail.
    fn edit(f: impl FnOnce(&mut User) + Send + 'static) -> UserEdit {
        Box::new(move |u| {
            f(u);
            Ok(())
        })
    }

    fn push_factor(f: Factor) -> FactorEdit {
        Box::new(move |fs| {
            fs.push(f);
            Ok(None)
        })
    }

    fn code(r: AuthResult<impl std::fmt::Debug>) -> ErrorCode {
        r.expect_err("an error").code
    }

    #[tokio::test]
    async fn every_field_round_trips() {
        let (reg, _) = registry().await;
        let t = |n: i64| Some(Timestamp(T0.0 + n));
        let mut u = User {
            email: "all@example.com".into(),
            phone: "15555550100".into(),
            encrypted_password: Some("$argon2id$v=19$m=19456,t=2,p=1$abc$def".into()),
            email_confirmed_at: t(1),
            phone_confirmed_at: t(2),
            invited_at: t(3),
            confirmation_sent_at: t(4),
            recovery_sent_at: t(5),
            new_email: "new@example.com".into(),
            email_change_sent_at: t(6),
            new_phone: "15555550101".into(),
            phone_change_sent_at: t(7),
            reauthentication_sent_at: t(8),
            last_sign_in_at: t(9),
            app_metadata: JsonText::from_map(
                serde_json::json!({"provider": "email", "providers": ["email", "github"], "n": 1}).as_object().unwrap(),
            ),
            user_metadata: JsonText::from_map(
                serde_json::json!({"full_name": "Zoë Ä", "nested": {"a": [1, 2.5, null, true]}}).as_object().unwrap(),
            ),
            banned_until: t(10),
            deleted_at: t(11),
            is_anonymous: true,
            is_sso_user: false,
            updated_at: Timestamp(T0.0 + 12),
            ..User::blank("authenticated", "service_role", T0)
        };
        u.identities = vec![
            Identity::for_address(u.id, "email", "all@example.com", true, T0),
            identity("github", "gh-1", "GH@Example.com", T0),
            identity("google", "g-1", "", T0),
        ];
        u.identities[1].last_sign_in_at = t(13);
        let created = reg.create(u.clone()).await.unwrap();
        assert_eq!(created, u);
        let back = reg.get(u.id).await.unwrap().unwrap();
        assert_eq!(back, u, "every field, identities in their order");
        // An empty user: "" stays "" (NULL in the row), None stays None.
        let blank = User::blank("", "", T0);
        reg.create(blank.clone()).await.unwrap();
        assert_eq!(reg.get(blank.id).await.unwrap().unwrap(), blank);
        assert!(reg.get(Uuid::new_v4()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rows_are_what_gotrue_reads() {
        let (reg, _) = registry().await;
        let u = reg.create(user("", "15555550100")).await.unwrap();
        let client = reg.db.client().await.unwrap();
        let row = client
            .query_one(
                "SELECT instance_id, email IS NULL, confirmation_token, recovery_token, email_change_token_new, \
                 email_change_token_current, email_change, phone_change, phone_change_token, reauthentication_token, \
                 is_super_admin, raw_app_meta_data ->> 'provider', confirmed_at = email_confirmed_at \
                 FROM auth.users WHERE id = $1",
                &[&u.id],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, Uuid>(0), Uuid::nil());
        assert!(row.get::<_, bool>(1), "no email is NULL (unique index)");
        for i in 2..10 {
            assert_eq!(row.get::<_, Option<String>>(i).as_deref(), Some(""), "column {i} is '' (Go strings)");
        }
        assert!(!row.get::<_, bool>(10));
        assert_eq!(row.get::<_, String>(11), "email");
        assert!(row.get::<_, bool>(12), "GoTrue's generated confirmed_at");
        // Factors: two unnamed ones without a phone coexist (GoTrue's unique indexes); blank
        // names, secrets and codes are '' (Go strings), a missing phone NULL.
        let mut a = factor(u.id, "", T0);
        a.sealed_secret = Vec::new();
        a.challenges = vec![challenge("127.0.0.1")];
        let b = factor(u.id, "", T0);
        reg.edit_factors(
            u.id,
            Box::new(move |fs| {
                fs.extend([a, b]);
                Ok(None)
            }),
        )
        .await
        .unwrap();
        let rows = client
            .query(
                "SELECT f.friendly_name, f.secret, f.phone IS NULL, c.otp_code, c.ip_address::text \
                 FROM auth.mfa_factors f JOIN auth.mfa_challenges c ON c.factor_id = f.id",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, bool>(2)),
            (String::new(), String::new(), true)
        );
        assert_eq!((r.get::<_, String>(3), r.get::<_, String>(4)), (String::new(), "127.0.0.1/32".to_owned()));
        assert_eq!(reg.get(u.id).await.unwrap().unwrap().factors.len(), 2);
    }

    #[tokio::test]
    async fn lookups_by_email_phone_and_identity() {
        let (reg, _) = registry().await;
        let mut a = user("a@example.com", "15555550100");
        a.identities = vec![identity("github", "1", "gh@example.com", T0)];
        let a = reg.create(a).await.unwrap();
        assert_eq!(reg.by_email("a@example.com").await.unwrap().unwrap().id, a.id);
        assert_eq!(reg.by_phone("15555550100").await.unwrap().unwrap().id, a.id);
        assert_eq!(reg.by_identity("github", "1").await.unwrap().unwrap().id, a.id);
        assert!(reg.by_email("b@example.com").await.unwrap().is_none());
        assert!(reg.by_email("").await.unwrap().is_none());
        assert!(reg.by_phone("").await.unwrap().is_none());
        assert!(reg.by_identity("gitlab", "1").await.unwrap().is_none());
        assert!(reg.by_identity("github", "2").await.unwrap().is_none());
        let b = reg.create(user("b@example.com", "")).await.unwrap();
        let found = reg
            .link_candidates(&["gh@example.com".into(), "b@example.com".into(), "a@example.com".into()])
            .await
            .unwrap();
        assert_eq!(found.identity_owners, vec![a.id]);
        assert_eq!(found.users.iter().map(|u| u.id).collect::<Vec<_>>(), vec![b.id, a.id], "in the order asked");
        // SSO identities do not make their owner a candidate.
        let mut c = user("c@example.com", "");
        c.identities = vec![identity("sso:1234", "s", "sso@example.com", T0)];
        reg.create(c).await.unwrap();
        let found = reg.link_candidates(&["sso@example.com".into()]).await.unwrap();
        assert!(found.identity_owners.is_empty() && found.users.is_empty());
    }

    #[tokio::test]
    async fn duplicates_are_refused_with_sleds_errors() {
        let (reg, _) = registry().await;
        let mut a = user("a@example.com", "15555550100");
        a.identities = vec![identity("github", "1", "", T0)];
        let a = reg.create(a).await.unwrap();
        let err = reg.create(user("a@example.com", "15555550100")).await.unwrap_err();
        assert_eq!((err.code, err.msg.as_ref()), (ErrorCode::EmailExists, DUPLICATE_EMAIL_MSG), "email first");
        let err = reg.create(user("b@example.com", "15555550100")).await.unwrap_err();
        assert_eq!((err.code, err.msg.as_ref()), (ErrorCode::PhoneExists, DUPLICATE_PHONE_MSG));
        let mut c = user("c@example.com", "");
        c.identities = vec![identity("github", "1", "", T0)];
        assert_eq!(code(reg.create(c).await), ErrorCode::IdentityAlreadyExists);
        let again = User { email: "d@example.com".into(), phone: String::new(), identities: vec![], ..a.clone() };
        assert_eq!(code(reg.create(again).await), ErrorCode::UserAlreadyExists);
        assert_eq!(reg.count().await.unwrap(), 1);
        // Updates: a taken email is refused and nothing changes; the user's own values are fine.
        let b = reg.create(user("b@example.com", "")).await.unwrap();
        let err = reg
            .update(
                b.id,
                Box::new(|u| {
                    u.email = "a@example.com".into();
                    u.user_metadata = JsonText(r#"{"x":1}"#.into());
                    Ok(())
                }),
            )
            .await;
        assert_eq!(code(err), ErrorCode::EmailExists);
        assert_eq!(reg.get(b.id).await.unwrap().unwrap(), b);
        let err = reg.update(b.id, edit(|u| u.phone = "15555550100".into())).await;
        assert_eq!(code(err), ErrorCode::PhoneExists);
        let err = reg.update(b.id, edit(|u| u.identities.push(identity("github", "1", "", T0)))).await;
        assert_eq!(code(err), ErrorCode::IdentityAlreadyExists);
        reg.update(a.id, edit(|u| u.aud = "x".into())).await.unwrap();
        // The closure's own error, and an unknown user.
        let err =
            reg.update(b.id, Box::new(|_| Err(AuthError::unprocessable(ErrorCode::ValidationFailed, "no")))).await;
        assert_eq!(code(err), ErrorCode::ValidationFailed);
        assert_eq!(code(reg.update(Uuid::new_v4(), Box::new(|_| Ok(()))).await), ErrorCode::UserNotFound);
    }

    #[tokio::test]
    async fn nul_characters_are_a_validation_error_not_a_500() {
        let (reg, _) = registry().await;
        let mut u = user("nul@example.com", "");
        u.user_metadata = JsonText(r#"{"name":"a\u0000b"}"#.into());
        assert_eq!(code(reg.create(u).await), ErrorCode::ValidationFailed);
        let u = reg.create(user("nul@example.com", "")).await.unwrap();
        let err = reg.update(u.id, edit(|u| u.role = "a\0b".into())).await;
        assert_eq!(code(err), ErrorCode::ValidationFailed);
        let err = reg.edit_factors(u.id, push_factor(factor(u.id, "a\0b", T0))).await;
        assert_eq!(code(err), ErrorCode::ValidationFailed);
        assert_eq!(reg.get(u.id).await.unwrap().unwrap(), u);
    }

    #[tokio::test]
    async fn concurrent_creates_of_one_address_on_two_pools_let_one_win() {
        let db = migrated_db().await;
        let clock = Clock::fixed(T0);
        let other =
            Db::connect(&crate::pg::PgSettings { url: db_url(&db).await, namespace: "auth".into(), max_pool_size: 2 })
                .await
                .unwrap();
        let one = Arc::new(PgUsers::with_clock(db, clock.clone()));
        let two = Arc::new(PgUsers::with_clock(other, clock));
        for round in 0..9 {
            // The same email, the same phone, or the same identity (first sign-ins).
            let (a, b, want) = match round % 3 {
                0 => {
                    let email = format!("race{round}@example.com");
                    (user(&email, ""), user(&email, ""), ErrorCode::EmailExists)
                }
                1 => {
                    let phone = format!("1555555{round:04}");
                    let a = user(&format!("a{round}@example.com"), &phone);
                    (a, user(&format!("b{round}@example.com"), &phone), ErrorCode::PhoneExists)
                }
                _ => {
                    let mut a = user(&format!("a{round}@example.com"), "");
                    let mut b = user(&format!("b{round}@example.com"), "");
                    a.identities = vec![identity("github", &round.to_string(), "", T0)];
                    b.identities = vec![identity("github", &round.to_string(), "", T0)];
                    (a, b, ErrorCode::IdentityAlreadyExists)
                }
            };
            let (r1, r2) = tokio::join!(
                tokio::spawn({
                    let one = one.clone();
                    async move { one.create(a).await }
                }),
                tokio::spawn({
                    let two = two.clone();
                    async move { two.create(b).await }
                })
            );
            let results = [r1.unwrap(), r2.unwrap()];
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "round {round}: exactly one wins");
            let err = results.into_iter().find_map(|r| r.err()).unwrap();
            assert_eq!(err.code, want, "round {round}: {err:?}");
        }
        assert_eq!(one.count().await.unwrap(), 9);
    }

    /// The constraint path, deterministically: another writer's uncommitted row is invisible to
    /// the check, our INSERT waits on it, and its COMMIT turns into sled's error.
    #[tokio::test]
    async fn a_writer_that_commits_first_wins_by_constraint() {
        let db = migrated_db().await;
        let reg = Arc::new(PgUsers::with_clock(db.clone(), Clock::fixed(T0)));
        for (column, want) in [("email", ErrorCode::EmailExists), ("identity", ErrorCode::IdentityAlreadyExists)] {
            let mut held = db.client().await.unwrap();
            let tx = held.transaction().await.unwrap();
            let mut u = user(&format!("held-{column}@example.com"), "");
            if column == "identity" {
                u = user("other@example.com", "");
                u.identities = vec![identity("github", "held", "", T0)];
                let first = reg.create(user("first@example.com", "")).await.unwrap();
                tx.execute(
                    "INSERT INTO auth.identities (id, provider_id, user_id, identity_data, provider) \
                     VALUES (gen_random_uuid(), 'held', $1, '{}', 'github')",
                    &[&first.id],
                )
                .await
                .unwrap();
            } else {
                tx.execute(
                    "INSERT INTO auth.users (instance_id, id, email) VALUES ($1, gen_random_uuid(), $2)",
                    &[&Uuid::nil(), &u.email],
                )
                .await
                .unwrap();
            }
            let task = tokio::spawn({
                let reg = reg.clone();
                async move { reg.create(u).await }
            });
            // Wait until our INSERT is blocked on the held row's index entry.
            let watcher = db.client().await.unwrap();
            for waited in 0.. {
                assert!(waited < 3000, "the create never waited on the held row");
                let n: i64 = watcher
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                         AND wait_event_type = 'Lock'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if n > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tx.commit().await.unwrap();
            assert_eq!(code(task.await.unwrap()), want, "{column}");
        }
    }

    /// The URL of `db`'s database (tests only: rebuilt from the cluster URL and its name).
    async fn db_url(db: &Db) -> String {
        let client = db.client().await.unwrap();
        let name: String = client.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
        let mut url = url::Url::parse(&crate::pg::testing::admin_url()).unwrap();
        url.set_path(&format!("/{name}"));
        url.to_string()
    }

    #[tokio::test]
    async fn updates_write_identity_changes_and_keep_their_order() {
        let (reg, clock) = registry().await;
        let mut a = user("a@example.com", "");
        a.identities = vec![identity("email", "x", "a@example.com", T0)];
        let a = reg.create(a).await.unwrap();
        clock.advance(Duration::from_secs(5));
        // Same created_at for all three added: the order is the order they were pushed.
        let added = reg
            .update(
                a.id,
                Box::new(|u| {
                    for p in ["zeta", "alpha", "mid"] {
                        u.identities.push(identity(p, "1", &format!("{p}@example.com"), T0));
                    }
                    u.identities[0].last_sign_in_at = Some(T0);
                    u.email = "new@example.com".into();
                    u.phone = "15555550100".into();
                    Ok(())
                }),
            )
            .await
            .unwrap();
        assert_eq!(added.updated_at, clock.now(), "updated_at is the registry's clock");
        let back = reg.get(a.id).await.unwrap().unwrap();
        assert_eq!(back, added);
        let providers = |u: &User| u.identities.iter().map(|i| i.provider.clone()).collect::<Vec<_>>();
        assert_eq!(providers(&back), ["email", "zeta", "alpha", "mid"]);
        assert!(reg.by_email("a@example.com").await.unwrap().is_none());
        assert_eq!(reg.by_phone("15555550100").await.unwrap().unwrap().id, a.id);
        let back = reg
            .update(
                a.id,
                Box::new(|u| {
                    u.identities.remove(0);
                    u.identities[1].identity_data = JsonText(r#"{"email":"Other@example.com","sub":"1"}"#.into());
                    u.phone.clear();
                    Ok(())
                }),
            )
            .await
            .unwrap();
        let read = reg.get(a.id).await.unwrap().unwrap();
        assert_eq!(providers(&read), ["zeta", "alpha", "mid"]);
        assert_eq!(read.identities[1].email, "other@example.com", "GoTrue's generated email column");
        assert_eq!(read.identities[1].identity_data, back.identities[1].identity_data);
        assert!(reg.by_phone("15555550100").await.unwrap().is_none());
        assert!(reg.by_identity("email", "x").await.unwrap().is_none());
        assert_eq!(reg.link_candidates(&["other@example.com".into()]).await.unwrap().identity_owners, vec![a.id]);
    }

    fn factor(user_id: Uuid, name: &str, at: Timestamp) -> Factor {
        Factor {
            id: Uuid::new_v4(),
            user_id,
            friendly_name: name.into(),
            factor_type: "totp".into(),
            status: "unverified".into(),
            sealed_secret: vec![7; 40],
            created_at: at,
            updated_at: at,
            last_challenged_at: None,
            last_used_step: None,
            challenges: Vec::new(),
            phone: String::new(),
            web_authn_credential: Vec::new(),
            web_authn_aaguid: None,
        }
    }

    fn challenge(ip: &str) -> Challenge {
        Challenge {
            id: Uuid::new_v4(),
            created_at: T0,
            ip: ip.into(),
            failed_attempts: 0,
            otp_code: Vec::new(),
            web_authn_state: Vec::new(),
        }
    }

    #[tokio::test]
    async fn factors_round_trip_and_ride_on_users() {
        let (reg, _) = registry().await;
        let u = reg.create(user("mfa@example.com", "")).await.unwrap();
        let mut totp = factor(u.id, "app", T0);
        totp.status = "verified".into();
        totp.last_used_step = Some(u64::MAX - 1);
        totp.last_challenged_at = Some(T0);
        let mut c1 = challenge("203.0.113.9");
        c1.failed_attempts = 2;
        let c2 = Challenge { ip: "not an ip".into(), ..challenge("") };
        let c3 = Challenge { ip: "2001:db8::1".into(), ..challenge("") };
        totp.challenges = vec![c1, c2, c3];
        let mut phone = factor(u.id, "", Timestamp(T0.0 + 1));
        phone.factor_type = "phone".into();
        phone.phone = "15555550100".into();
        phone.sealed_secret = Vec::new();
        phone.challenges = vec![Challenge { otp_code: vec![0xab; 32], ..challenge("127.0.0.1") }];
        let mut webauthn = factor(u.id, "key", Timestamp(T0.0 + 2));
        webauthn.factor_type = "webauthn".into();
        webauthn.web_authn_credential = br#"{"cred":{"counter":3,"id":"abc"}}"#.to_vec();
        webauthn.web_authn_aaguid = Some(Uuid::new_v4());
        webauthn.challenges =
            vec![Challenge { web_authn_state: br#"{"rs":{"c":[1,2]}}"#.to_vec(), ..challenge("::1") }];
        let written = vec![totp, phone, webauthn];
        let w = written.clone();
        let got = reg
            .edit_factors(
                u.id,
                Box::new(move |fs| {
                    *fs = w;
                    Ok(Some(fs[0].clone()))
                }),
            )
            .await
            .unwrap();
        assert_eq!(got.as_ref(), Some(&written[0]));
        let back = reg.get(u.id).await.unwrap().unwrap().factors;
        assert_eq!(back, written, "every field, challenges in their order");
        // JSON comes back as the same value in canonical form (sorted keys, compact).
        reg.edit_factors(
            u.id,
            Box::new(|fs| {
                fs[2].web_authn_credential = br#"{ "b": 1, "a": [true] }"#.to_vec();
                Ok(None)
            }),
        )
        .await
        .unwrap();
        let back = reg.get(u.id).await.unwrap().unwrap().factors;
        assert_eq!(back[2].web_authn_credential, br#"{"a":[true],"b":1}"#.to_vec());
        let written = {
            let mut w = written;
            w[2].web_authn_credential = back[2].web_authn_credential.clone();
            w
        };
        // Users read by any door carry their factors; an update keeps them (the edit sees none).
        assert_eq!(reg.by_email("mfa@example.com").await.unwrap().unwrap().factors.len(), 3);
        let updated = reg
            .update(
                u.id,
                Box::new(|u| {
                    assert!(u.factors.is_empty(), "as on sled, the edit sees the record without factors");
                    Ok(())
                }),
            )
            .await
            .unwrap();
        assert_eq!(updated.factors, written);
        let client = reg.db.client().await.unwrap();
        let row =
            client.query_one("SELECT secret FROM auth.mfa_factors WHERE id = $1", &[&written[0].id]).await.unwrap();
        assert!(row.get::<_, String>(0).starts_with("ferrotrue:v1:"));
        // Removing a challenge and a factor.
        reg.edit_factors(
            u.id,
            Box::new(|fs| {
                fs[0].challenges.remove(0);
                fs.remove(1);
                Ok(None)
            }),
        )
        .await
        .unwrap();
        let back = reg.get(u.id).await.unwrap().unwrap().factors;
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].challenges, written[0].challenges[1..]);
        // Deleting the user deletes its factors and challenges.
        reg.delete(u.id).await.unwrap();
        let n: i64 = client.query_one("SELECT count(*) FROM auth.mfa_challenges", &[]).await.unwrap().get(0);
        assert_eq!(n, 0);
        assert_eq!(code(reg.delete(u.id).await), ErrorCode::UserNotFound);
        assert_eq!(code(reg.edit_factors(u.id, Box::new(|_| Ok(None))).await), ErrorCode::UserNotFound);
    }

    #[tokio::test]
    async fn a_failing_factor_edit_still_commits_what_it_changed() {
        let (reg, _) = registry().await;
        let u = reg.create(user("mfa@example.com", "")).await.unwrap();
        let mut f = factor(u.id, "app", T0);
        f.challenges = vec![challenge("127.0.0.1")];
        let id = f.id;
        reg.edit_factors(
            u.id,
            Box::new(move |fs| {
                fs.push(f);
                Ok(None)
            }),
        )
        .await
        .unwrap();
        let wrong_code = || {
            Box::new(|fs: &mut Vec<Factor>| {
                fs[0].challenges[0].failed_attempts += 1;
                Err(AuthError::unprocessable(ErrorCode::MfaVerificationFailed, "Invalid TOTP code entered"))
            }) as FactorEdit
        };
        assert_eq!(code(reg.edit_factors(u.id, wrong_code()).await), ErrorCode::MfaVerificationFailed);
        assert_eq!(code(reg.edit_factors(u.id, wrong_code()).await), ErrorCode::MfaVerificationFailed);
        let back = reg.get(u.id).await.unwrap().unwrap().factors;
        assert_eq!((back[0].id, back[0].challenges[0].failed_attempts), (id, 2), "the attempts were written");
        // An edit that fails without changing anything writes nothing.
        let err = reg
            .edit_factors(u.id, Box::new(|_| Err(AuthError::unprocessable(ErrorCode::ValidationFailed, "no"))))
            .await;
        assert_eq!(code(err), ErrorCode::ValidationFailed);
        assert_eq!(reg.get(u.id).await.unwrap().unwrap().factors, back);
    }

    #[tokio::test]
    async fn factors_challenged_in_the_same_microsecond_do_not_collide() {
        let (reg, clock) = registry().await;
        let mut ids = Vec::new();
        for i in 0..4 {
            let u = reg.create(user(&format!("u{i}@example.com"), "")).await.unwrap();
            for n in ["a", "b"] {
                let f = factor(u.id, n, T0);
                ids.push(f.id);
                reg.edit_factors(u.id, push_factor(f)).await.unwrap();
            }
            // The pinned clock: every challenge at the same microsecond, concurrently for the
            // last user's two factors.
            let now = clock.now();
            let challenge_all = move |fs: &mut Vec<Factor>| {
                for f in fs.iter_mut() {
                    f.last_challenged_at = Some(now);
                    f.challenges.push(challenge("127.0.0.1"));
                }
                Ok(None)
            };
            reg.edit_factors(u.id, Box::new(challenge_all)).await.unwrap();
        }
        let client = reg.db.client().await.unwrap();
        let rows = client
            .query("SELECT last_challenged_at FROM auth.mfa_factors ORDER BY last_challenged_at", &[])
            .await
            .unwrap();
        let stored: Vec<Timestamp> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(stored, (0..8).map(|i| Timestamp(T0.0 + i)).collect::<Vec<_>>(), "the next free microseconds");
        for id in &ids {
            let u: Uuid =
                client.query_one("SELECT user_id FROM auth.mfa_factors WHERE id = $1", &[id]).await.unwrap().get(0);
            let f = reg.get(u).await.unwrap().unwrap().factors.into_iter().find(|f| f.id == *id).unwrap();
            assert_eq!(f.last_challenged_at, Some(T0), "the exact value reads back");
        }
        // Concurrent challenges of two users on two tasks.
        let reg = Arc::new(reg);
        let (a, b) = (
            reg.create(user("x@example.com", "")).await.unwrap(),
            reg.create(user("y@example.com", "")).await.unwrap(),
        );
        for u in [&a, &b] {
            let f = factor(u.id, "f", T0);
            reg.edit_factors(u.id, push_factor(f)).await.unwrap();
        }
        let tasks = [a.id, b.id].map(|id| {
            let reg = reg.clone();
            tokio::spawn(async move {
                reg.edit_factors(
                    id,
                    Box::new(|fs| {
                        fs[0].last_challenged_at = Some(T0);
                        Ok(None)
                    }),
                )
                .await
            })
        });
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let n: i64 = client
            .query_one("SELECT count(DISTINCT last_challenged_at) FROM auth.mfa_factors", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 10);
    }

    #[tokio::test]
    async fn count_and_list_page_filter_and_order() {
        let (reg, _) = registry().await;
        assert_eq!(reg.count().await.unwrap(), 0);
        assert!(reg.list(1, 10, None, true).await.unwrap().items.is_empty());
        let mut ids = Vec::new();
        for i in 0..7i64 {
            let mut u = user(&format!("user{i}@example.com"), &format!("1555555010{i}"));
            u.created_at = Timestamp(T0.0 + (i / 2)); // ties, broken by id
            if i == 3 {
                u.user_metadata = JsonText(r#"{"full_name":"Ada LOVELACE"}"#.into());
            }
            if i == 4 {
                u.user_metadata = JsonText(r#"{"full_name":42}"#.into());
            }
            ids.push((u.created_at, u.id));
            reg.create(u).await.unwrap();
        }
        ids.sort();
        let ids: Vec<Uuid> = ids.into_iter().map(|(_, id)| id).collect();
        let page_ids = |p: &Page<User>| p.items.iter().map(|u| u.id).collect::<Vec<_>>();
        assert_eq!(reg.count().await.unwrap(), 7);
        let p = reg.list(1, 3, None, true).await.unwrap();
        assert_eq!((page_ids(&p), p.total), (ids[..3].to_vec(), 7));
        let p = reg.list(3, 3, None, true).await.unwrap();
        assert_eq!(page_ids(&p), ids[6..].to_vec());
        let p = reg.list(0, 2, None, false).await.unwrap();
        assert_eq!(page_ids(&p), vec![ids[6], ids[5]], "page 0 is page 1; newest first");
        assert!(reg.list(9, 3, None, true).await.unwrap().items.is_empty());
        assert!(reg.list(1, 0, None, true).await.unwrap().items.is_empty());
        let p = reg.list(1, 10, Some("LOVE"), true).await.unwrap();
        assert_eq!((p.items.len(), p.total, p.items[0].email.as_str()), (1, 1, "user3@example.com"));
        assert_eq!(reg.list(1, 10, Some("42"), true).await.unwrap().total, 0, "full_name only as a string");
        assert_eq!(reg.list(1, 10, Some("0105"), true).await.unwrap().total, 1, "phone");
        let p = reg.list(2, 2, Some("USER"), false).await.unwrap();
        assert_eq!((page_ids(&p), p.total), (vec![ids[4], ids[3]], 7));
        assert_eq!(reg.list(1, 10, Some(""), true).await.unwrap().total, 7, "an empty filter is none");
        assert_eq!(reg.list(1, 10, Some("%"), true).await.unwrap().total, 0, "no LIKE patterns");
        assert!(p.items.iter().all(|u| u.identities.is_empty() && u.factors.is_empty()));
    }

    fn audit_entry(action: &str, username: &str, at: Timestamp) -> AuditEntry {
        AuditEntry {
            created_at: at,
            ip_address: "127.0.0.1".into(),
            ..crate::user_registry::state::tests::audit_entry(action, username)
        }
    }

    /// Concurrent entries share statements (group commit), and every caller's entry is there
    /// when its call returns, including one with a NUL in its payload (Postgres refuses NUL in
    /// text: it must not fail the batch it shares).
    #[tokio::test]
    async fn concurrent_audit_entries_are_written_in_batches_and_all_acknowledged() {
        let (reg, _) = registry().await;
        let reg = Arc::new(reg);
        let mut tasks = Vec::new();
        for i in 0..64i64 {
            let reg = reg.clone();
            tasks.push(tokio::spawn(async move {
                let mut e = audit_entry("login", "a", Timestamp(T0.0 + i));
                if i == 7 {
                    e.payload = JsonText("{\"actor_username\":\"nul\u{0}here\"}".into());
                }
                let id = e.id;
                reg.record_audit(e).await.map(|()| id)
            }));
        }
        let mut acknowledged = Vec::new();
        for t in tasks {
            acknowledged.push(t.await.unwrap().expect("every entry is acknowledged"));
        }
        let page = reg.audit_page(1, 100, None).await.unwrap();
        assert_eq!(page.total, 64);
        let stored: std::collections::HashSet<Uuid> = page.items.iter().map(|e| e.id).collect();
        assert!(acknowledged.iter().all(|id| stored.contains(id)));
    }

    #[tokio::test]
    async fn audit_pages_queries_and_retention() {
        let (reg, clock) = registry().await;
        let mut entries = Vec::new();
        for i in 1..=30i64 {
            let (action, who) = if i % 3 == 0 { ("logout", "B") } else { ("login", "a") };
            let e = audit_entry(action, who, Timestamp(T0.0 + i));
            reg.record_audit(e.clone()).await.unwrap();
            entries.push(e);
        }
        let ids = |p: &Page<AuditEntry>| p.items.iter().map(|e| e.id).collect::<Vec<_>>();
        let newest = |r: std::ops::RangeInclusive<usize>| r.rev().map(|i| entries[i - 1].id).collect::<Vec<_>>();
        let p1 = reg.audit_page(1, 7, None).await.unwrap();
        assert_eq!((ids(&p1), p1.total), (newest(24..=30), 30));
        assert_eq!(p1.items[0], entries[29], "an entry reads back as written");
        assert_eq!(ids(&reg.audit_page(5, 7, None).await.unwrap()), newest(1..=2));
        assert!(reg.audit_page(6, 7, None).await.unwrap().items.is_empty());
        let q = AuditQuery::Action("logout".into());
        let p = reg.audit_page(2, 4, Some(&q)).await.unwrap();
        assert_eq!(p.total, 10);
        assert_eq!(ids(&p), [18, 15, 12, 9].map(|i| entries[i - 1].id));
        let q = AuditQuery::Author("b".into());
        assert_eq!(ids(&reg.audit_page(3, 4, Some(&q)).await.unwrap()), [6, 3].map(|i| entries[i - 1].id));
        let q = AuditQuery::Type("account".into());
        assert_eq!(reg.audit_page(1, 100, Some(&q)).await.unwrap().total, 30);
        let q = AuditQuery::Type("token".into());
        assert_eq!(reg.audit_page(1, 100, Some(&q)).await.unwrap().total, 0);
        // Ties in created_at: newest first by id.
        let mut same = [audit_entry("login", "c", T0), audit_entry("login", "c", T0)];
        same.sort_by_key(|e| e.id);
        for e in &same {
            reg.record_audit(e.clone()).await.unwrap();
        }
        let last = reg.audit_page(1, 100, None).await.unwrap();
        assert_eq!(last.items[30..].iter().map(|e| e.id).collect::<Vec<_>>(), vec![same[1].id, same[0].id]);
        // Retention: everything older than now - 20 µs goes (the clock is pinned at T0 + 40).
        clock.advance(Duration::from_micros(40));
        assert_eq!(reg.sweep_audit(Duration::from_secs(3600)).await.unwrap(), 0);
        assert_eq!(reg.sweep_audit(Duration::from_micros(20)).await.unwrap(), 19 + 2);
        assert_eq!(reg.audit_page(1, 100, None).await.unwrap().total, 11);
    }

    #[tokio::test]
    async fn the_sweep_works_in_batches() {
        let (reg, clock) = registry().await;
        let client = reg.db.client().await.unwrap();
        client
            .execute(
                "INSERT INTO auth.audit_log_entries (instance_id, id, payload, created_at, ip_address) \
                 SELECT '00000000-0000-0000-0000-000000000000', gen_random_uuid(), '{}', $1, '' \
                 FROM generate_series(1, 2500)",
                &[&T0],
            )
            .await
            .unwrap();
        clock.advance(Duration::from_secs(10));
        assert_eq!(reg.sweep_audit(Duration::from_secs(1)).await.unwrap(), 2500);
        assert_eq!(reg.audit_page(1, 1, None).await.unwrap().total, 0);
    }

    /// Every message through `handle`, as the actor sends them.
    #[tokio::test]
    async fn every_message_is_answered() {
        use ractor::concurrency::oneshot;
        use ractor::RpcReplyPort;
        async fn ask<T>(
            reg: &Arc<PgUsers>,
            build: impl FnOnce(RpcReplyPort<AuthResult<T>>) -> UserRegistryMessage,
        ) -> AuthResult<T> {
            let (tx, rx) = oneshot();
            reg.clone().handle(build(tx.into()), Some(Duration::from_secs(1))).await;
            rx.await.expect("a reply")
        }
        use UserRegistryMessage as M;
        let (reg, _) = registry().await;
        let reg = Arc::new(reg);
        let mut u = user("m@example.com", "15555550100");
        u.identities = vec![identity("github", "9", "m@example.com", T0)];
        let id = u.id;
        ask(&reg, |reply| M::Create { user: Box::new(u), reply }).await.unwrap();
        assert!(ask(&reg, |reply| M::Get { id, reply }).await.unwrap().is_some());
        assert!(ask(&reg, |reply| M::ByEmail { email: "m@example.com".into(), reply }).await.unwrap().is_some());
        assert!(ask(&reg, |reply| M::ByPhone { phone: "15555550100".into(), reply }).await.unwrap().is_some());
        let by_identity =
            ask(&reg, |reply| M::ByIdentity { provider: "github".into(), provider_id: "9".into(), reply });
        assert!(by_identity.await.unwrap().is_some());
        let found = ask(&reg, |reply| M::LinkCandidates { emails: vec!["m@example.com".into()], reply }).await.unwrap();
        assert_eq!((found.identity_owners.len(), found.users.len()), (1, 1));
        let edit: UserEdit = super::tests::edit(|u| u.role = "admin".into());
        assert_eq!(ask(&reg, |reply| M::Update { id, edit, reply }).await.unwrap().role, "admin");
        let edit: FactorEdit = Box::new(move |fs| {
            fs.push(factor(id, "f", T0));
            Ok(fs.last().cloned())
        });
        assert!(ask(&reg, |reply| M::EditFactors { user_id: id, edit, reply }).await.unwrap().is_some());
        assert_eq!(ask(&reg, |reply| M::Count { reply }).await.unwrap(), 1);
        let list = ask(&reg, |reply| M::List { page: 1, per_page: 5, filter: None, ascending: true, reply });
        assert_eq!(list.await.unwrap().items[0].factors.len(), 1);
        let entry = Box::new(audit_entry("login", "m", T0));
        ask(&reg, |reply| M::RecordAudit { entry, reply }).await.unwrap();
        let page = ask(&reg, |reply| M::AuditPage { page: 1, per_page: 5, query: None, reply });
        assert_eq!(page.await.unwrap().total, 1);
        reg.clock.advance(Duration::from_micros(1));
        reg.clone().handle(M::SweepAudit, None).await;
        let page = ask(&reg, |reply| M::AuditPage { page: 1, per_page: 5, query: None, reply });
        assert_eq!(page.await.unwrap().total, 1, "no retention, no sweep");
        reg.clone().handle(M::SweepAudit, Some(Duration::from_secs(0))).await;
        let page = ask(&reg, |reply| M::AuditPage { page: 1, per_page: 5, query: None, reply });
        assert_eq!(page.await.unwrap().total, 0, "the sweep ran with the retention given");
        ask(&reg, |reply| M::Delete { id, reply }).await.unwrap();
        assert_eq!(ask(&reg, |reply| M::Delete { id, reply }).await.unwrap_err().code, ErrorCode::UserNotFound);
    }
}
