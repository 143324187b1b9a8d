//! Postgres, foundation of issue 12: GoTrue's schema created by ferrotrue, attached to when
//! current, refused when older or foreign; migrations from many nodes at once; TLS and URL
//! errors; `ferrotrue db migrate|check`; a server started on Postgres serves from it.
//!
//! Runs against a real PostgreSQL: `./test.sh` starts a throw-away cluster (tests/pg/cluster.sh)
//! and sets FERROTRUE_TEST_DATABASE_URL (a superuser URL). Each test creates its own database.

use ferrotrue_actors::pg::testing::{admin_url, fresh_database as fresh_db};
use ferrotrue_actors::pg::{schema, Db, MigrateOutcome, PgError, PgSettings, SchemaState};
use std::process::Command;
use tokio_postgres::NoTls;

/// A client on `url` (plain TCP: the test cluster has no TLS).
async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect to the test cluster");
    tokio::spawn(conn);
    client
}

fn settings(url: &str, namespace: &str) -> PgSettings {
    PgSettings { url: url.to_owned(), namespace: namespace.to_owned(), max_pool_size: 4 }
}

async fn migrate(url: &str, ns: &str) -> Result<MigrateOutcome, PgError> {
    Db::connect(&settings(url, ns)).await?.migrate().await
}

/// Tables, columns (type, nullability, default), constraints, indexes and recorded versions of
/// `ns`, one line each: equal snapshots mean an unchanged schema.
async fn snapshot(url: &str, ns: &str) -> Vec<String> {
    let sql = "
        SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' '
               || coalesce(column_default, '-')
          FROM information_schema.columns WHERE table_schema = $1
        UNION ALL
        SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = $1::regnamespace
        UNION ALL
        SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = $1
        UNION ALL
        SELECT 'type ' || typname FROM pg_type WHERE typnamespace = $1::regnamespace AND typtype = 'e'
        UNION ALL
        SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = $1::regnamespace
        ORDER BY 1";
    let c = client(url).await;
    let mut lines: Vec<String> = c.query(sql, &[&ns]).await.unwrap().iter().map(|r| r.get(0)).collect();
    let versions = c.query(&format!("SELECT version::text FROM {ns}.schema_migrations ORDER BY 1"), &[]).await.unwrap();
    lines.extend(versions.iter().map(|r| format!("version {}", r.get::<_, String>(0))));
    lines
}

/// The tables issue 12 names, and the others GoTrue's latest schema has.
const EXPECTED_TABLES: &[&str] = &[
    "audit_log_entries",
    "custom_oauth_providers",
    "flow_state",
    "identities",
    "instances",
    "mfa_amr_claims",
    "mfa_challenges",
    "mfa_factors",
    "oauth_authorizations",
    "oauth_client_states",
    "oauth_clients",
    "oauth_consents",
    "one_time_tokens",
    "refresh_tokens",
    "saml_providers",
    "saml_relay_states",
    "schema_migrations",
    "sessions",
    "sso_domains",
    "sso_providers",
    "users",
    "webauthn_challenges",
    "webauthn_credentials",
];

/// Columns the storage backend will read and write: (table, column, type, nullable).
const EXPECTED_COLUMNS: &[(&str, &str, &str, &str)] = &[
    ("users", "id", "uuid", "NO"),
    ("users", "aud", "varchar", "YES"),
    ("users", "role", "varchar", "YES"),
    ("users", "email", "varchar", "YES"),
    ("users", "encrypted_password", "varchar", "YES"),
    ("users", "email_confirmed_at", "timestamptz", "YES"),
    ("users", "phone", "text", "YES"),
    ("users", "phone_confirmed_at", "timestamptz", "YES"),
    ("users", "confirmed_at", "timestamptz", "YES"),
    ("users", "raw_app_meta_data", "jsonb", "YES"),
    ("users", "raw_user_meta_data", "jsonb", "YES"),
    ("users", "banned_until", "timestamptz", "YES"),
    ("users", "deleted_at", "timestamptz", "YES"),
    ("users", "is_sso_user", "bool", "NO"),
    ("users", "is_anonymous", "bool", "NO"),
    ("users", "reauthentication_token", "varchar", "YES"),
    ("users", "email_change_token_new", "varchar", "YES"),
    ("users", "email_change_confirm_status", "int2", "YES"),
    ("identities", "id", "uuid", "NO"),
    ("identities", "provider_id", "text", "NO"),
    ("identities", "user_id", "uuid", "NO"),
    ("identities", "identity_data", "jsonb", "NO"),
    ("identities", "provider", "text", "NO"),
    ("identities", "email", "text", "YES"),
    ("sessions", "id", "uuid", "NO"),
    ("sessions", "user_id", "uuid", "NO"),
    ("sessions", "aal", "aal_level", "YES"),
    ("sessions", "factor_id", "uuid", "YES"),
    ("sessions", "not_after", "timestamptz", "YES"),
    ("sessions", "refreshed_at", "timestamp", "YES"),
    ("sessions", "user_agent", "text", "YES"),
    ("sessions", "ip", "inet", "YES"),
    ("sessions", "tag", "text", "YES"),
    ("sessions", "refresh_token_hmac_key", "text", "YES"),
    ("sessions", "refresh_token_counter", "int8", "YES"),
    ("refresh_tokens", "id", "int8", "NO"),
    ("refresh_tokens", "token", "varchar", "YES"),
    ("refresh_tokens", "user_id", "varchar", "YES"),
    ("refresh_tokens", "revoked", "bool", "YES"),
    ("refresh_tokens", "parent", "varchar", "YES"),
    ("refresh_tokens", "session_id", "uuid", "YES"),
    ("one_time_tokens", "id", "uuid", "NO"),
    ("one_time_tokens", "user_id", "uuid", "NO"),
    ("one_time_tokens", "token_type", "one_time_token_type", "NO"),
    ("one_time_tokens", "token_hash", "text", "NO"),
    ("one_time_tokens", "relates_to", "text", "NO"),
    ("flow_state", "id", "uuid", "NO"),
    ("flow_state", "auth_code", "text", "YES"),
    ("flow_state", "code_challenge_method", "code_challenge_method", "YES"),
    ("flow_state", "code_challenge", "text", "YES"),
    ("flow_state", "provider_type", "text", "NO"),
    ("flow_state", "authentication_method", "text", "NO"),
    ("mfa_factors", "id", "uuid", "NO"),
    ("mfa_factors", "user_id", "uuid", "NO"),
    ("mfa_factors", "factor_type", "factor_type", "NO"),
    ("mfa_factors", "status", "factor_status", "NO"),
    ("mfa_factors", "secret", "text", "YES"),
    ("mfa_factors", "phone", "text", "YES"),
    ("mfa_factors", "web_authn_credential", "jsonb", "YES"),
    ("mfa_challenges", "factor_id", "uuid", "NO"),
    ("mfa_challenges", "verified_at", "timestamptz", "YES"),
    ("mfa_challenges", "ip_address", "inet", "NO"),
    ("mfa_challenges", "otp_code", "text", "YES"),
    ("mfa_amr_claims", "id", "uuid", "NO"),
    ("mfa_amr_claims", "session_id", "uuid", "NO"),
    ("mfa_amr_claims", "authentication_method", "text", "NO"),
    ("audit_log_entries", "id", "uuid", "NO"),
    ("audit_log_entries", "payload", "json", "YES"),
    ("audit_log_entries", "ip_address", "varchar", "NO"),
    ("schema_migrations", "version", "varchar", "NO"),
];

#[tokio::test]
async fn an_empty_database_gets_gotrue_schema_recorded_as_current() {
    let url = fresh_db().await;
    assert_eq!(migrate(&url, "auth").await.unwrap(), MigrateOutcome::Created);
    let c = client(&url).await;
    let tables: Vec<String> = c
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'auth' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, EXPECTED_TABLES);
    for (table, column, udt, nullable) in EXPECTED_COLUMNS {
        let row = c
            .query_opt(
                "SELECT udt_name::text, is_nullable::text FROM information_schema.columns \
                 WHERE table_schema = 'auth' AND table_name = $1 AND column_name = $2",
                &[table, column],
            )
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("auth.{table}.{column} is missing"));
        assert_eq!(
            (row.get::<_, String>(0).as_str(), row.get::<_, String>(1).as_str()),
            (*udt, *nullable),
            "{table}.{column}"
        );
    }
    // GoTrue's bookkeeping: every version, so GoTrue would find nothing to migrate.
    let versions: Vec<String> = c
        .query("SELECT version::text FROM auth.schema_migrations ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known: Vec<&str> = schema::GOTRUE_MIGRATIONS.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, known);
    // The constraints GoTrue's code relies on hold.
    let uid = uuid::Uuid::new_v4();
    c.execute("INSERT INTO auth.users (id, email, is_sso_user) VALUES ($1, 'a@example.com', false)", &[&uid])
        .await
        .unwrap();
    let dup = c
        .execute("INSERT INTO auth.users (id, email) VALUES ($1, 'a@example.com')", &[&uuid::Uuid::new_v4()])
        .await
        .unwrap_err();
    assert!(
        dup.to_string().contains("users_email_partial_key") || format!("{dup:?}").contains("users_email_partial_key")
    );
    c.execute(
        "INSERT INTO auth.identities (provider_id, user_id, identity_data, provider) \
         VALUES ($1::uuid::text, $1, '{\"email\":\"A@Example.com\"}', 'email')",
        &[&uid],
    )
    .await
    .unwrap();
    let email: String =
        c.query_one("SELECT email FROM auth.identities WHERE user_id = $1", &[&uid]).await.unwrap().get(0);
    assert_eq!(email, "a@example.com", "generated, lower-cased");
    // auth.uid()/role()/email()/jwt() read PostgREST's claims, as RLS policies expect.
    let claims = format!(r#"{{"sub":"{uid}","role":"authenticated","email":"a@example.com"}}"#);
    let row = c
        .query_one(
            "SELECT set_config('request.jwt.claims', $1, false), auth.uid(), auth.role(), auth.email(), \
             auth.jwt() ->> 'sub'",
            &[&claims],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, uuid::Uuid>(1), uid);
    assert_eq!(row.get::<_, String>(2), "authenticated");
    assert_eq!(row.get::<_, String>(3), "a@example.com");
    assert_eq!(row.get::<_, String>(4), uid.to_string());
}

#[tokio::test]
async fn migrating_again_changes_nothing() {
    let url = fresh_db().await;
    assert_eq!(migrate(&url, "auth").await.unwrap(), MigrateOutcome::Created);
    let before = snapshot(&url, "auth").await;
    assert!(before.len() > 300, "{}", before.len());
    assert_eq!(migrate(&url, "auth").await.unwrap(), MigrateOutcome::AlreadyCurrent { newer: vec![] });
    assert_eq!(snapshot(&url, "auth").await, before);
    let db = Db::connect(&settings(&url, "auth")).await.unwrap();
    assert_eq!(db.inspect().await.unwrap(), SchemaState::Current { newer: vec![] });
}

#[tokio::test]
async fn four_nodes_migrating_at_once_create_one_schema() {
    let url = fresh_db().await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { migrate(&url, "auth").await })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            MigrateOutcome::Created => created += 1,
            MigrateOutcome::AlreadyCurrent { newer } => assert!(newer.is_empty()),
        }
    }
    assert_eq!(created, 1, "exactly one node creates the schema");
    let c = client(&url).await;
    let n: i64 = c.query_one("SELECT count(*) FROM auth.schema_migrations", &[]).await.unwrap().get(0);
    assert_eq!(n as usize, schema::GOTRUE_MIGRATIONS.len());
    let other = fresh_db().await;
    assert_eq!(migrate(&other, "auth").await.unwrap(), MigrateOutcome::Created);
    assert_eq!(snapshot(&url, "auth").await, snapshot(&other, "auth").await, "the same schema as one node makes");
}

#[tokio::test]
async fn a_custom_namespace_holds_everything() {
    let url = fresh_db().await;
    assert_eq!(migrate(&url, "tenant_auth").await.unwrap(), MigrateOutcome::Created);
    let c = client(&url).await;
    let in_ns: i64 = c
        .query_one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'tenant_auth'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_ns as usize, EXPECTED_TABLES.len());
    let auth: Option<String> = c.query_one("SELECT to_regnamespace('auth')::text", &[]).await.unwrap().get(0);
    assert_eq!(auth, None, "nothing outside the namespace");
    let fk: String = c
        .query_one("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'sessions_user_id_fkey'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(fk.contains("tenant_auth.users"), "{fk}");
    let aal: String = c
        .query_one(
            "SELECT udt_schema::text FROM information_schema.columns WHERE table_name = 'sessions' AND column_name = 'aal'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(aal, "tenant_auth");
    // The default namespace of the same database is still empty, hence creatable.
    assert_eq!(Db::connect(&settings(&url, "auth")).await.unwrap().inspect().await.unwrap(), SchemaState::Empty);
}

#[tokio::test]
async fn an_older_schema_is_refused_naming_the_missing_version_and_left_alone() {
    let url = fresh_db().await;
    migrate(&url, "auth").await.unwrap();
    let c = client(&url).await;
    let newest: Vec<&str> = schema::GOTRUE_MIGRATIONS.iter().rev().take(2).map(|(v, _)| *v).collect();
    c.execute("DELETE FROM auth.schema_migrations WHERE version = ANY($1)", &[&newest]).await.unwrap();
    let before = snapshot(&url, "auth").await;
    let err = migrate(&url, "auth").await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PgError::Schema(_)), "{err:?}");
    assert!(msg.contains(schema::LATEST_GOTRUE_VERSION) && msg.contains("add_custom_claims_allowlist"), "{msg}");
    assert!(msg.contains("2 of GoTrue's"), "{msg}");
    assert_eq!(snapshot(&url, "auth").await, before, "a refused schema is not touched");
    match Db::connect(&settings(&url, "auth")).await.unwrap().inspect().await.unwrap() {
        SchemaState::Older { missing, .. } => assert_eq!(missing, newest),
        other => panic!("{other:?}"),
    }
    // A schema a newer GoTrue migrated (versions ferrotrue does not know) is current.
    c.execute("INSERT INTO auth.schema_migrations (version) SELECT unnest($1::text[])", &[&newest]).await.unwrap();
    c.execute("INSERT INTO auth.schema_migrations (version) VALUES ('20991231000000')", &[]).await.unwrap();
    assert_eq!(
        migrate(&url, "auth").await.unwrap(),
        MigrateOutcome::AlreadyCurrent { newer: vec!["20991231000000".into()] }
    );
}

#[tokio::test]
async fn tables_without_gotrue_bookkeeping_are_refused() {
    let url = fresh_db().await;
    client(&url)
        .await
        .batch_execute("CREATE SCHEMA auth; CREATE TABLE auth.users (id uuid primary key)")
        .await
        .unwrap();
    let msg = migrate(&url, "auth").await.unwrap_err().to_string();
    assert!(msg.contains("no schema_migrations"), "{msg}");
}

fn with_query(url: &str, query: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_query(Some(query));
    u.to_string()
}

#[tokio::test]
async fn tls_required_by_the_url_but_not_offered_is_a_clear_error() {
    let url = fresh_db().await;
    // The test cluster has no TLS: `require` must fail with the reason, `prefer` falls back.
    let err = Db::connect(&settings(&with_query(&url, "sslmode=require"), "auth")).await.err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, PgError::Connect { .. }), "{err:?}");
    assert!(msg.contains("TLS") && msg.contains("127.0.0.1"), "{msg}");
    let err = Db::connect(&settings(&with_query(&url, "sslmode=verify-full"), "auth")).await.err().unwrap();
    assert!(err.to_string().contains("TLS"), "{err}");
    assert!(Db::connect(&settings(&with_query(&url, "sslmode=prefer"), "auth")).await.is_ok());
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_clear_errors_without_the_password() {
    for (url, config_error) in [
        ("postgres://u:hunter2@127.0.0.1:5432/x?sslmode=sometimes", true),
        ("mysql://u:hunter2@127.0.0.1/x", true),
        ("postgres://u:hunter2@127.0.0.1:1/x?sslmode=disable", false),
    ] {
        let err = Db::connect(&settings(url, "auth")).await.err().unwrap();
        assert_eq!(matches!(err, PgError::Config(_)), config_error, "{url}: {err:?}");
        assert_eq!(matches!(err, PgError::Connect { .. }), !config_error, "{url}: {err:?}");
        assert!(!err.to_string().contains("hunter2"), "{url}: {err}");
    }
    let err = Db::connect(&settings(&admin_url(), "Bad-Name")).await.err().unwrap();
    assert!(matches!(err, PgError::Config(_)), "{err:?}");
}

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrotrue"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[tokio::test]
async fn db_migrate_and_check_commands() {
    let url = fresh_db().await;
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let dir = tempfile::tempdir().unwrap();
        let out = bin().current_dir(dir.path()).args(args).envs(env.iter().copied()).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["db", "check", "--url", &url], &[]);
    assert_eq!(code, Some(1), "{err}");
    let (code, out, err) =
        run(&["db", "migrate"], &[("DATABASE_URL", &url), ("GOTRUE_DB_MIGRATIONS_PATH", "./migrations")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("created GoTrue's schema \"auth\""), "{out}");
    assert!(err.contains("GOTRUE_DB_MIGRATIONS_PATH is ignored"), "{err}");
    let (code, out, err) = run(&["db", "migrate", "--url", &url], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("is current") && out.contains("nothing changed"), "{out}");
    let (code, out, err) = run(&["db", "check"], &[("GOTRUE_DB_DRIVER", "postgres"), ("GOTRUE_DB_DATABASE_URL", &url)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("is current"), "{out}");
    assert!(out.contains("ferrotrue's own schema \"auth_ferrotrue\" is current"), "{out}");
    // ferrotrue's own schema is checked too, and recreated without touching GoTrue's.
    let before = snapshot(&url, "auth").await;
    client(&url).await.batch_execute("DROP SCHEMA auth_ferrotrue CASCADE").await.unwrap();
    let (code, out, _) = run(&["db", "check", "--url", &url], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("\"auth_ferrotrue\" is missing or older"), "{out}");
    let (code, out, err) = run(&["db", "migrate", "--url", &url], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("nothing changed in it"), "{out}");
    assert_eq!(snapshot(&url, "auth").await, before, "GoTrue's schema is untouched");
    let (code, out, _) = run(&["db", "check", "--url", &url], &[]);
    assert_eq!(code, Some(0), "{out}");
    let (code, _, err) = run(&["db", "migrate", "--url", "mysql://root:hunter2@localhost/x"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a postgres:// URL") && !err.contains("hunter2"), "{err}");
    let (code, _, err) = run(&["db", "migrate"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no database"), "{err}");
}

#[tokio::test]
async fn selecting_postgres_serves_from_it_and_writes_no_data_directory() {
    let url = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = [
        ("GOTRUE_DB_DRIVER", "postgres"),
        ("GOTRUE_DB_DATABASE_URL", url.as_str()),
        ("GOTRUE_JWT_SECRET", "a-secret-of-at-least-thirty-two-bytes!"),
        ("GOTRUE_MAILER_AUTOCONFIRM", "true"),
        ("GOTRUE_LOG_LEVEL", "error"),
    ];
    let mut child = bin()
        .current_dir(dir.path())
        .env("PORT", port.to_string())
        .envs(env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    crate::common::wait_healthy(&base).await;
    let resp = http
        .post(format!("{base}/signup"))
        .json(&serde_json::json!({"email": "pg@example.com", "password": "correct-horse-9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
    // The user is a row of GoTrue's table, with the columns GoTrue scans as strings not NULL.
    let row = client(&url)
        .await
        .query_one("SELECT email, confirmation_token, recovery_token FROM auth.users", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pg@example.com");
    assert_eq!((row.get::<_, String>(1), row.get::<_, String>(2)), (String::new(), String::new()));
    assert!(!dir.path().join("data").exists(), "nothing was written to a sled directory");

    // Every node must share the secret: without one, start-up is refused (no generated secret).
    let out =
        bin().current_dir(dir.path()).env("PORT", port.to_string()).envs(env[..2].iter().copied()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GOTRUE_JWT_SECRET is required with Postgres"));
    let out = bin().current_dir(dir.path()).args(["config", "check"]).envs(env).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("Postgres") && report.contains("GOTRUE_DB_NAMESPACE"), "{report}");
    let out = bin().current_dir(dir.path()).env("GOTRUE_DB_DRIVER", "mysql").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GOTRUE_DB_DRIVER=\"mysql\" is not supported"));
}

/// Replacing a GoTrue container on its own database: rows exactly as GoTrue writes them (a
/// bcrypt password, its `''` token columns, an email identity, a session with a refresh token
/// stored raw) are served as they are. The user signs in (and the hash is upgraded to argon2id
/// in place), the GoTrue session keeps refreshing (its raw token is found; the child ferrotrue
/// mints is stored as a digest), and a stored digest presented as a token does not work.
#[tokio::test]
async fn a_database_gotrue_wrote_is_served_without_moving_a_row() {
    let url = fresh_db().await;
    let db = Db::connect(&settings(&url, "auth")).await.unwrap();
    db.migrate().await.unwrap();
    let c = client(&url).await;
    let (user, session) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let hash = bcrypt::hash(crate::common::PASSWORD, 4).unwrap();
    c.batch_execute(&format!(
        "INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
             confirmation_token, recovery_token, email_change_token_new, email_change, last_sign_in_at,
             raw_app_meta_data, raw_user_meta_data, created_at, updated_at, phone_change, phone_change_token,
             email_change_token_current, reauthentication_token)
         VALUES ('00000000-0000-0000-0000-000000000000', '{user}', 'authenticated', 'authenticated',
             'gotrue@example.com', '{hash}', now(), '', '', '', '', now(),
             '{{\"provider\":\"email\",\"providers\":[\"email\"]}}', '{{\"name\":\"Go\"}}', now(), now(), '', '', '', '');
         INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, last_sign_in_at, created_at, updated_at)
         VALUES ('{user}', '{user}', '{{\"sub\":\"{user}\",\"email\":\"gotrue@example.com\",\"email_verified\":false,\"phone_verified\":false}}',
             'email', now(), now(), now());
         INSERT INTO auth.sessions (id, user_id, created_at, updated_at, aal) VALUES ('{session}', '{user}', now(), now(), 'aal1');
         INSERT INTO auth.mfa_amr_claims (session_id, created_at, updated_at, authentication_method, id)
         VALUES ('{session}', now(), now(), 'password', gen_random_uuid());
         INSERT INTO auth.refresh_tokens (instance_id, token, user_id, revoked, created_at, updated_at, session_id)
         VALUES ('00000000-0000-0000-0000-000000000000', 'gotrueRawTok1', '{user}', false, now(), now(), '{session}');"
    ))
    .await
    .unwrap();

    let server = crate::common::TestServer::start_with(|c| c.database = Some(settings(&url, "auth"))).await;
    // The GoTrue session refreshes; the new token is ferrotrue's, stored as a digest.
    let resp = server.refresh("gotrueRawTok1").await;
    assert_eq!(resp.status(), 200);
    let refreshed: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(refreshed["user"]["id"], serde_json::json!(user.to_string()));
    assert_eq!(refreshed["user"]["user_metadata"]["name"], "Go");
    let child = refreshed["refresh_token"].as_str().unwrap();
    assert_eq!(server.refresh(child).await.status(), 200, "the child ferrotrue minted works");
    let stored: i64 = c
        .query_one(
            "SELECT count(*) FROM auth.refresh_tokens WHERE parent = 'gotrueRawTok1' AND length(token) = 64",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "the child is stored by digest, its parent as GoTrue wrote it");

    // The GoTrue user signs in with the password GoTrue hashed (bcrypt), upgraded to argon2id.
    let login = server.login("gotrue@example.com").await;
    assert_eq!(login["user"]["identities"][0]["provider"], "email");
    let hash: String =
        c.query_one("SELECT encrypted_password FROM auth.users WHERE id = $1", &[&user]).await.unwrap().get(0);
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    // A digest read from a copy of the database is not a token.
    let token = login["refresh_token"].as_str().unwrap();
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    };
    let row: i64 =
        c.query_one("SELECT count(*) FROM auth.refresh_tokens WHERE token = $1", &[&digest]).await.unwrap().get(0);
    assert_eq!(row, 1, "ferrotrue stores the digest");
    crate::common::assert_error(server.refresh(&digest).await, 400, "refresh_token_not_found").await;
}
