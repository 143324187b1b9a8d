//! Throw-away databases for tests (the actors' unit tests and the integration suite): each
//! test gets its own database on the cluster named by `FERROTRUE_TEST_DATABASE_URL`
//! (`./test.sh` starts one with tests/pg/cluster.sh), so tests run in parallel.

use super::{Db, PgSettings};

/// The test cluster's superuser URL, or a panic saying how to get one (tests that need
/// Postgres never pass silently without it).
pub fn admin_url() -> String {
    std::env::var("FERROTRUE_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        panic!(
            "FERROTRUE_TEST_DATABASE_URL is not set: run ./test.sh (it starts a throw-away PostgreSQL), or \
             `D=$(tests/pg/cluster.sh start) && export FERROTRUE_TEST_DATABASE_URL=$(tests/pg/cluster.sh url $D)` \
             before cargo test, and `tests/pg/cluster.sh stop $D` afterwards"
        )
    })
}

/// Creates a new, empty database on the test cluster; its URL.
pub async fn fresh_database() -> String {
    let admin = admin_url();
    let name = format!("ft_{}", uuid::Uuid::new_v4().simple());
    let (client, conn) =
        tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("connect to the test cluster");
    let conn = tokio::spawn(conn);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create a test database");
    drop(client);
    let _ = conn.await;
    let mut url = url::Url::parse(&admin).expect("FERROTRUE_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Settings for `url` in namespace `auth` with a small pool.
pub fn settings(url: &str) -> PgSettings {
    PgSettings { url: url.to_owned(), namespace: "auth".to_owned(), max_pool_size: 4 }
}

/// A fresh database with the schema created, connected.
pub async fn migrated_db() -> Db {
    let db = Db::connect(&settings(&fresh_database().await)).await.expect("connect to the test database");
    db.migrate().await.expect("create the schema");
    db
}

/// A fresh database with the schema created: its URL, for tests that connect several pools
/// (several nodes) to it.
pub async fn migrated_url() -> String {
    let url = fresh_database().await;
    connect(&url).await.migrate().await.expect("create the schema");
    url
}

/// A pool on `url` (see [`migrated_url`]).
pub async fn connect(url: &str) -> Db {
    Db::connect(&settings(url)).await.expect("connect to the test database")
}

/// Inserts a bare `users` row (what rows of other tables reference) and returns its id.
pub async fn bare_user(db: &Db) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    let sql = format!(
        "INSERT INTO {}.users (id, instance_id, aud, role, created_at, updated_at) \
         VALUES ($1, '00000000-0000-0000-0000-000000000000', 'authenticated', 'authenticated', NULL, NULL)",
        db.namespace()
    );
    db.client().await.expect("a connection").execute(&sql, &[&id]).await.expect("insert a user");
    id
}

/// A reply port for a message handed straight to a Postgres backend's `handle`, and the answer.
pub fn reply_port<T: Send + 'static>(
) -> (crate::call::Reply<T>, impl std::future::Future<Output = crate::error::AuthResult<T>>) {
    let (tx, rx) = ractor::concurrency::oneshot();
    (tx.into(), async move { rx.await.expect("the backend answered") })
}

/// An actor environment on `db` with the test settings and `clock`.
pub fn test_env(db: &Db, clock: &crate::clock::Clock) -> crate::ActorEnv {
    crate::ActorEnv {
        storage: crate::Storage::Postgres(db.clone()),
        settings: std::sync::Arc::new(crate::settings::Settings::for_tests()),
        clock: clock.clone(),
    }
}
