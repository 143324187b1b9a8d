//! GoTrue's schema, created or attached to.
//!
//! ferrotrue's own DDL (`migrations/0001_gotrue_schema.sql`, embedded) produces, in one
//! transaction, the schema GoTrue's migrations leave at [`LATEST_GOTRUE_VERSION`]: same tables,
//! columns, types, defaults, constraints, indexes, enum types, RLS flags and `auth.*()` helper
//! functions (checked by comparing catalogs, see CONTRIBUTING.md). Every GoTrue migration version
//! is then recorded in `<ns>.schema_migrations`, GoTrue's own bookkeeping, so a GoTrue started on
//! the database sees nothing to do and ferrotrue can be swapped for GoTrue and back.
//!
//! [`migrate`] decides from that table:
//! * no `schema_migrations` and no `users` table: empty → create everything;
//! * every version ferrotrue knows recorded (newer ones are fine): attach, change nothing;
//! * some missing: refuse, naming the newest missing version (run GoTrue's `migrate` or a newer
//!   GoTrue first: ferrotrue never alters a schema GoTrue owns);
//! * anything else (tables without bookkeeping): refuse.
//!
//! Several nodes may start at once: [`migrate`] runs in one transaction that first takes a
//! transaction-scoped advisory lock for the namespace, so one node creates and the others then
//! find the schema current.

use super::PgError;
use tokio_postgres::{Client, GenericClient};

/// ferrotrue's DDL, `{ns}` standing for the namespace.
const SCHEMA_SQL: &str = include_str!("migrations/0001_gotrue_schema.sql");

/// ferrotrue's own migrations, applied in order to [`side_schema`] (`{fx}` in the SQL; `{ns}`
/// is GoTrue's namespace, for foreign keys) and recorded in `{fx}.migrations`. Append only.
pub const FERROTRUE_MIGRATIONS: &[(&str, &str)] = &[
    ("0002_ferrotrue_schema", include_str!("migrations/0002_ferrotrue_schema.sql")),
    ("0003_users", include_str!("migrations/0003_users.sql")),
    ("0004_otps_flows", include_str!("migrations/0004_otps_flows.sql")),
];

/// The schema holding ferrotrue's own tables for GoTrue namespace `ns`: `<ns>_ferrotrue`
/// ([`super::valid_namespace`] keeps `ns` short enough for the suffix).
pub fn side_schema(ns: &str) -> String {
    format!("{ns}_ferrotrue")
}

/// `sql` with `{ns}` and `{fx}` substituted.
fn expand(sql: &str, ns: &str) -> String {
    sql.replace("{fx}", &side_schema(ns)).replace("{ns}", ns)
}

/// First key of the advisory lock taken while migrating (the second is the namespace's hash):
/// "ft" "pg" in ASCII, so it does not collide with locks of other applications by accident.
const LOCK_CLASS: i32 = 0x6674_7067;

/// Every migration of GoTrue (supabase/auth `migrations/`), as `(version, name)`: the version is
/// what GoTrue's migrator (pop) records in `schema_migrations`. The DDL above produces the
/// schema as of the last one.
pub const GOTRUE_MIGRATIONS: &[(&str, &str)] = &[
    ("00", "init_auth_schema"),
    ("20210710035447", "alter_users"),
    ("20210722035447", "adds_confirmed_at"),
    ("20210730183235", "add_email_change_confirmed"),
    ("20210909172000", "create_identities_table"),
    ("20210927181326", "add_refresh_token_parent"),
    ("20211122151130", "create_user_id_idx"),
    ("20211124214934", "update_auth_functions"),
    ("20211202183645", "update_auth_uid"),
    ("20220114185221", "update_user_idx"),
    ("20220114185340", "add_banned_until"),
    ("20220224000811", "update_auth_functions"),
    ("20220323170000", "add_user_reauthentication"),
    ("20220429102000", "add_unique_idx"),
    ("20220531120530", "add_auth_jwt_function"),
    ("20220614074223", "add_ip_address_to_audit_log"),
    ("20220811173540", "add_sessions_table"),
    ("20221003041349", "add_mfa_schema"),
    ("20221003041400", "add_aal_and_factor_id_to_sessions"),
    ("20221011041400", "add_mfa_indexes"),
    ("20221020193600", "add_sessions_user_id_index"),
    ("20221021073300", "add_refresh_tokens_session_id_revoked_index"),
    ("20221021082433", "add_saml"),
    ("20221027105023", "add_identities_user_id_idx"),
    ("20221114143122", "add_session_not_after_column"),
    ("20221114143410", "remove_parent_foreign_key_refresh_tokens"),
    ("20221125140132", "backfill_email_identity"),
    ("20221208132122", "backfill_email_last_sign_in_at"),
    ("20221215195500", "modify_users_email_unique_index"),
    ("20221215195800", "add_identities_email_column"),
    ("20221215195900", "remove_sso_sessions"),
    ("20230116124310", "alter_phone_type"),
    ("20230116124412", "add_deleted_at"),
    ("20230131181311", "backfill_invite_identities"),
    ("20230322519590", "add_flow_state_table"),
    ("20230402418590", "add_authentication_method_to_flow_state_table"),
    ("20230411005111", "remove_duplicate_idx"),
    ("20230508135423", "add_cleanup_indexes"),
    ("20230523124323", "add_mfa_challenge_cleanup_index"),
    ("20230818113222", "add_flow_state_to_relay_state"),
    ("20230914180801", "add_mfa_factors_user_id_idx"),
    ("20231027141322", "add_session_refresh_columns"),
    ("20231114161723", "add_sessions_tag"),
    ("20231117164230", "add_id_pkey_identities"),
    ("20240115144230", "remove_ip_address_from_saml_relay_state"),
    ("20240214120130", "add_is_anonymous_column"),
    ("20240306115329", "add_issued_at_to_flow_state"),
    ("20240314092811", "add_saml_name_id_format"),
    ("20240427152123", "add_one_time_tokens_table"),
    ("20240612123726", "enable_rls_update_grants"),
    ("20240729123726", "add_mfa_phone_config"),
    ("20240802193726", "add_mfa_factors_column_last_challenged_at"),
    ("20240806073726", "drop_uniqueness_constraint_on_phone"),
    ("20241009103726", "add_web_authn"),
    ("20250717082212", "add_disabled_to_sso_providers"),
    ("20250731150234", "add_oauth_clients_table"),
    ("20250804100000", "add_oauth_authorizations_consents"),
    ("20250901200500", "add_oauth_client_type"),
    ("20250903112500", "remove_oauth_client_id_column"),
    ("20250904133000", "add_oauth_client_id_to_session"),
    ("20250925093508", "add_last_webauthn_challenge_data"),
    ("20251007112900", "add_session_refresh_token_columns"),
    ("20251104100000", "add_nonce_to_oauth_authorizations"),
    ("20251111201300", "add_scopes_to_sessions"),
    ("20251201000000", "add_oauth_client_states_table"),
    ("20260115000000", "add_flow_state_oauth_context"),
    ("20260121000000", "add_token_endpoint_auth_method"),
    ("20260219120000", "add_custom_oauth_providers"),
    ("20260302000000", "add_passkeys"),
    ("20260625000000", "add_custom_claims_allowlist"),
];

/// The GoTrue version the embedded schema corresponds to.
pub const LATEST_GOTRUE_VERSION: &str = GOTRUE_MIGRATIONS[GOTRUE_MIGRATIONS.len() - 1].0;

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// Neither GoTrue's bookkeeping nor its tables: [`migrate`] would create everything.
    Empty,
    /// Every version ferrotrue knows is recorded; `newer` lists recorded versions it does not
    /// know (a newer GoTrue migrated this database).
    Current { newer: Vec<String> },
    /// Some versions are missing (newest first); `recorded` is how many of ours are present.
    Older { recorded: usize, missing: Vec<&'static str> },
    /// Something ferrotrue will not touch, and why.
    Foreign(String),
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrateOutcome {
    /// The schema was created and every GoTrue version recorded.
    Created,
    /// The schema was already current: nothing changed.
    AlreadyCurrent { newer: Vec<String> },
}

/// The DDL for `ns` (a validated identifier).
pub fn schema_sql(ns: &str) -> String {
    SCHEMA_SQL.replace("{ns}", ns)
}

/// Reads the state of `ns` without changing anything.
pub async fn inspect(client: &impl GenericClient, ns: &str) -> Result<SchemaState, PgError> {
    let row = client
        .query_one(
            "SELECT to_regclass(quote_ident($1) || '.schema_migrations') IS NOT NULL, \
                    to_regclass(quote_ident($1) || '.users') IS NOT NULL",
            &[&ns],
        )
        .await?;
    let (has_bookkeeping, has_users): (bool, bool) = (row.get(0), row.get(1));
    if !has_bookkeeping {
        return Ok(if has_users {
            SchemaState::Foreign(format!(
                "schema {ns:?} has a users table but no schema_migrations: it was not created by GoTrue's \
                 migrations (or by ferrotrue), so ferrotrue will not touch it"
            ))
        } else {
            SchemaState::Empty
        });
    }
    let recorded: Vec<String> = client
        .query(&format!("SELECT version::text FROM {ns}.schema_migrations"), &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if recorded.is_empty() {
        return Ok(SchemaState::Foreign(format!(
            "{ns}.schema_migrations exists but records no migration: run GoTrue's migrations, or drop schema {ns:?} \
             so that ferrotrue can create it"
        )));
    }
    let mut missing: Vec<&'static str> =
        GOTRUE_MIGRATIONS.iter().map(|(v, _)| *v).filter(|v| !recorded.iter().any(|r| r == v)).collect();
    if missing.is_empty() {
        let mut newer: Vec<String> =
            recorded.into_iter().filter(|r| !GOTRUE_MIGRATIONS.iter().any(|(v, _)| v == r)).collect();
        newer.sort();
        return Ok(SchemaState::Current { newer });
    }
    missing.reverse();
    Ok(SchemaState::Older { recorded: GOTRUE_MIGRATIONS.len() - missing.len(), missing })
}

/// The refusal for a schema in `state`, or `None` when ferrotrue can use it or create it.
pub fn refusal(ns: &str, state: &SchemaState) -> Option<String> {
    match state {
        SchemaState::Empty | SchemaState::Current { .. } => None,
        SchemaState::Foreign(why) => Some(why.clone()),
        SchemaState::Older { recorded, missing } => {
            let newest = missing.first().copied().unwrap_or("?");
            let name = GOTRUE_MIGRATIONS.iter().find(|(v, _)| *v == newest).map_or("?", |(_, n)| n);
            Some(format!(
                "schema {ns:?} is older than ferrotrue needs: {} of GoTrue's {} migrations are missing, the newest \
                 being {newest} ({name}); ferrotrue needs GoTrue's schema as of {LATEST_GOTRUE_VERSION}. Upgrade it \
                 with GoTrue's own `auth migrate` (a GoTrue release at least that recent); ferrotrue does not alter \
                 a schema GoTrue created{}",
                missing.len(),
                GOTRUE_MIGRATIONS.len(),
                if *recorded == 0 { " (none of the versions it knows is recorded)" } else { "" }
            ))
        }
    }
}

/// Creates GoTrue's schema in `ns` when the database has none, attaches (changing nothing) when
/// it is current, refuses otherwise. One transaction under an advisory lock: safe when several
/// nodes run it at once, and a failure leaves nothing behind.
pub async fn migrate(client: &mut Client, ns: &str) -> Result<MigrateOutcome, PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&LOCK_CLASS, &ns]).await?;
    let state = inspect(&tx, ns).await?;
    if let Some(refusal) = refusal(ns, &state) {
        return Err(PgError::Schema(refusal));
    }
    let outcome = if let SchemaState::Current { newer } = state {
        MigrateOutcome::AlreadyCurrent { newer }
    } else {
        tx.batch_execute(&schema_sql(ns)).await?;
        let versions: Vec<&str> = GOTRUE_MIGRATIONS.iter().map(|(v, _)| *v).collect();
        tx.execute(&format!("INSERT INTO {ns}.schema_migrations (version) SELECT unnest($1::text[])"), &[&versions])
            .await?;
        MigrateOutcome::Created
    };
    migrate_side_schema(&tx, ns).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Applies ferrotrue's own migrations that `{fx}.migrations` does not record yet (inside the
/// caller's transaction and lock). Never touches GoTrue's schema beyond referencing it.
async fn migrate_side_schema(tx: &impl GenericClient, ns: &str) -> Result<(), PgError> {
    let fx = side_schema(ns);
    let row = tx.query_one("SELECT to_regclass(quote_ident($1) || '.migrations') IS NOT NULL", &[&fx]).await?;
    let applied: Vec<String> = if row.get::<_, bool>(0) {
        tx.query(&format!("SELECT version FROM {fx}.migrations"), &[]).await?.iter().map(|r| r.get(0)).collect()
    } else {
        Vec::new()
    };
    for (version, sql) in FERROTRUE_MIGRATIONS {
        if applied.iter().any(|a| a == version) {
            continue;
        }
        tx.batch_execute(&expand(sql, ns)).await?;
        tx.execute(&format!("INSERT INTO {fx}.migrations (version) VALUES ($1)"), &[version]).await?;
    }
    Ok(())
}

/// True when every ferrotrue migration is recorded in `<ns>_ferrotrue` (what a server needs
/// before it serves; `ferrotrue db migrate` creates it).
pub async fn side_schema_current(client: &impl GenericClient, ns: &str) -> Result<bool, PgError> {
    let fx = side_schema(ns);
    let row = client.query_one("SELECT to_regclass(quote_ident($1) || '.migrations') IS NOT NULL", &[&fx]).await?;
    if !row.get::<_, bool>(0) {
        return Ok(false);
    }
    let applied: Vec<String> =
        client.query(&format!("SELECT version FROM {fx}.migrations"), &[]).await?.iter().map(|r| r.get(0)).collect();
    Ok(FERROTRUE_MIGRATIONS.iter().all(|(v, _)| applied.iter().any(|a| a == v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_sorted_and_unique() {
        assert!(GOTRUE_MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0), "pop applies them in this order");
        assert_eq!(GOTRUE_MIGRATIONS.len(), 70);
        assert_eq!(LATEST_GOTRUE_VERSION, "20260625000000");
    }

    #[test]
    fn the_namespace_is_substituted_everywhere() {
        let sql = schema_sql("my_auth");
        assert!(!sql.contains("{ns}"));
        assert!(!sql.contains(" auth."), "no hard-coded namespace");
        assert!(sql.contains("CREATE TABLE my_auth.users ("));
    }

    #[test]
    fn an_older_schema_is_refused_naming_the_newest_missing_version() {
        let state = SchemaState::Older { recorded: 68, missing: vec!["20260625000000", "20260302000000"] };
        let msg = refusal("auth", &state).unwrap();
        assert!(msg.contains("20260625000000 (add_custom_claims_allowlist)"), "{msg}");
        assert!(msg.contains("2 of GoTrue's 70 migrations are missing"), "{msg}");
        assert_eq!(refusal("auth", &SchemaState::Current { newer: vec![] }), None);
        assert_eq!(refusal("auth", &SchemaState::Empty), None);
    }
}
