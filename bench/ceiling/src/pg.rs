//! The Postgres ceiling of `bench/pg.sh`: what a bare server reaches when every request does the
//! least database work its endpoint needs, on GoTrue's own tables.
//!
//! * `GET /user`: the bearer JWT is verified as in `serve`, then ONE indexed query
//!   (`SELECT id, aud, role, email FROM <ns>.users WHERE id = $1`) and a small JSON user.
//! * `POST /token?grant_type=refresh_token` with `{"refresh_token": T}`: ONE short transaction on
//!   `<ns>.refresh_tokens`: `SELECT … WHERE token = $1 FOR UPDATE`, mark it revoked, insert a
//!   child with a random token, COMMIT, then `{"refresh_token": child}`; 400 when T is unknown or
//!   already revoked (no reuse interval, no session update, no access token).
//!
//! Same crates as ferrotrue's Postgres backend (tokio-postgres + deadpool-postgres, fast
//! recycling, statements prepared once per connection), no TLS. Timestamps are bound from the
//! server's clock, as ferrotrue does.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::{access_token, http, json, serve_with, BoxError, Claims, Verifier};

const TIMEOUT: Duration = Duration::from_secs(10);

/// `GOTRUE_DB_DATABASE_URL`, `GOTRUE_DB_NAMESPACE` [auth], `GOTRUE_DB_MAX_POOL_SIZE` [4 × cores].
pub struct Settings {
    pub url: String,
    pub namespace: String,
    pub pool: usize,
}

impl Settings {
    pub fn from_env() -> Result<Settings, BoxError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let url = var("GOTRUE_DB_DATABASE_URL").ok_or("GOTRUE_DB_DATABASE_URL is not set")?;
        let namespace = var("GOTRUE_DB_NAMESPACE").unwrap_or_else(|| "auth".into());
        let pool = match var("GOTRUE_DB_MAX_POOL_SIZE") {
            Some(n) => n.trim().parse::<usize>().map_err(|e| format!("GOTRUE_DB_MAX_POOL_SIZE: {e}"))?,
            None => 0,
        };
        let pool = if pool == 0 { std::thread::available_parallelism().map_or(4, |n| n.get()) * 4 } else { pool };
        Settings::new(url, namespace, pool)
    }

    fn new(url: String, namespace: String, pool: usize) -> Result<Settings, BoxError> {
        let plain = namespace.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && namespace.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain || namespace.len() > 40 {
            return Err(format!("GOTRUE_DB_NAMESPACE {namespace:?} is not a plain lower-case identifier").into());
        }
        Ok(Settings { url, namespace, pool })
    }
}

/// The pool and the SQL, formatted once with the namespace.
pub struct PgCeiling {
    pool: Pool,
    get_user: String,
    select_token: String,
    revoke: String,
    insert_child: String,
    insert_user: String,
    insert_session: String,
}

/// What `seed` created.
pub struct Seeded {
    pub first_user: String,
    pub first_email: String,
    pub refresh_tokens: Vec<String>,
}

impl PgCeiling {
    /// Builds the pool and opens one connection, so a bad URL or a missing server fails now.
    pub async fn connect(s: &Settings) -> Result<PgCeiling, BoxError> {
        let config: tokio_postgres::Config = s.url.parse().map_err(|e| format!("GOTRUE_DB_DATABASE_URL: {e}"))?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(s.pool.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .build()?;
        let ns = &s.namespace;
        let db = PgCeiling {
            pool,
            get_user: format!("SELECT id, aud, role, email FROM {ns}.users WHERE id = $1"),
            select_token: format!(
                "SELECT id, user_id, session_id, revoked FROM {ns}.refresh_tokens WHERE token = $1 FOR UPDATE"
            ),
            revoke: format!("UPDATE {ns}.refresh_tokens SET revoked = true, updated_at = $2 WHERE id = $1"),
            insert_child: format!(
                "INSERT INTO {ns}.refresh_tokens \
                 (instance_id, token, user_id, revoked, created_at, updated_at, parent, session_id) \
                 VALUES ('00000000-0000-0000-0000-000000000000', $1, $2, false, $3, $3, $4, $5)"
            ),
            insert_user: format!(
                "INSERT INTO {ns}.users (instance_id, id, aud, role, email, created_at, updated_at) \
                 VALUES ('00000000-0000-0000-0000-000000000000', $1, 'authenticated', 'authenticated', $2, $3, $3)"
            ),
            insert_session: format!(
                "INSERT INTO {ns}.sessions (id, user_id, created_at, updated_at) VALUES ($1, $2, $3, $3)"
            ),
        };
        drop(db.pool.get().await.map_err(|e| format!("connecting to Postgres: {e}"))?);
        Ok(db)
    }

    /// `n` users, each with one session and one refresh token, in one transaction.
    pub async fn seed(&self, n: usize) -> Result<Seeded, BoxError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (user, session, token) = (
            tx.prepare_cached(&self.insert_user).await?,
            tx.prepare_cached(&self.insert_session).await?,
            tx.prepare_cached(&self.insert_child).await?,
        );
        let now = SystemTime::now();
        let mut seeded = Seeded { first_user: String::new(), first_email: String::new(), refresh_tokens: Vec::new() };
        for i in 0..n {
            let (id, sid) = (Uuid::new_v4(), Uuid::new_v4());
            let email = format!("ceiling-{}@example.com", id.simple());
            tx.execute(&user, &[&id, &email, &now]).await?;
            tx.execute(&session, &[&sid, &id, &now]).await?;
            let t = new_token();
            tx.execute(&token, &[&t, &id.to_string(), &now, &None::<String>, &sid]).await?;
            if i == 0 {
                seeded.first_user = id.to_string();
                seeded.first_email = email;
            }
            seeded.refresh_tokens.push(t);
        }
        tx.commit().await?;
        Ok(seeded)
    }

    async fn user(&self, id: &Uuid) -> Result<Option<Vec<u8>>, BoxError> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(&self.get_user).await?;
        let Some(row) = client.query_opt(&stmt, &[id]).await? else {
            return Ok(None);
        };
        let id: Uuid = row.try_get(0)?;
        let user = PgUser { id: &id.to_string(), aud: row.try_get(1)?, role: row.try_get(2)?, email: row.try_get(3)? };
        Ok(Some(serde_json::to_vec(&user)?))
    }

    /// The rotation; `None` when the token is unknown or already revoked (rolled back).
    async fn rotate(&self, token: &str) -> Result<Option<String>, BoxError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let select = tx.prepare_cached(&self.select_token).await?;
        let Some(row) = tx.query_opt(&select, &[&token]).await? else {
            return Ok(None);
        };
        let (id, user_id, session_id, revoked): (i64, Option<String>, Option<Uuid>, Option<bool>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        if revoked == Some(true) {
            return Ok(None);
        }
        let now = SystemTime::now();
        let revoke = tx.prepare_cached(&self.revoke).await?;
        tx.execute(&revoke, &[&id, &now]).await?;
        let child = new_token();
        let insert = tx.prepare_cached(&self.insert_child).await?;
        tx.execute(&insert, &[&child, &user_id, &now, &token, &session_id]).await?;
        tx.commit().await?;
        Ok(Some(child))
    }
}

/// A random refresh token (128 bits, hex).
fn new_token() -> String {
    Uuid::new_v4().simple().to_string()
}

#[derive(Serialize)]
struct PgUser<'a> {
    id: &'a str,
    aud: Option<&'a str>,
    role: Option<&'a str>,
    email: Option<&'a str>,
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

pub struct PgApp {
    pub verifier: Verifier,
    pub db: PgCeiling,
}

pub async fn serve(listener: TcpListener, app: Arc<PgApp>) -> Result<(), BoxError> {
    serve_with(listener, move |req| {
        let app = app.clone();
        async move { handle(&app, req).await }
    })
    .await
}

fn database_error(e: &BoxError) -> Response<Full<Bytes>> {
    eprintln!("database error: {e}");
    json(StatusCode::INTERNAL_SERVER_ERROR, br#"{"code":500,"msg":"database error"}"#.to_vec())
}

async fn handle(app: &PgApp, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/user") => get_user(app, &req).await,
        (&Method::POST, "/token") => refresh(app, req).await,
        _ => json(StatusCode::NOT_FOUND, br#"{"code":404,"msg":"not found"}"#.to_vec()),
    }
}

async fn get_user(app: &PgApp, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let token = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return json(StatusCode::UNAUTHORIZED, br#"{"code":401,"msg":"no bearer token"}"#.to_vec());
    };
    let id = match jsonwebtoken::decode::<Claims>(token, &app.verifier.key, &app.verifier.validation) {
        Ok(data) => Uuid::parse_str(&data.claims.sub).ok(),
        Err(_) => None,
    };
    let Some(id) = id else {
        return json(StatusCode::UNAUTHORIZED, br#"{"code":401,"msg":"invalid JWT"}"#.to_vec());
    };
    match app.db.user(&id).await {
        Ok(Some(body)) => json(StatusCode::OK, body),
        Ok(None) => json(StatusCode::NOT_FOUND, br#"{"code":404,"msg":"user not found"}"#.to_vec()),
        Err(e) => database_error(&e),
    }
}

async fn refresh(app: &PgApp, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let grant = req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv == "grant_type=refresh_token"));
    if !grant {
        return json(StatusCode::BAD_REQUEST, br#"{"code":400,"msg":"unsupported grant_type"}"#.to_vec());
    }
    let body = match Limited::new(req.into_body(), 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return json(StatusCode::BAD_REQUEST, br#"{"code":400,"msg":"unreadable body"}"#.to_vec()),
    };
    let Ok(body) = serde_json::from_slice::<RefreshBody>(&body) else {
        return json(StatusCode::BAD_REQUEST, br#"{"code":400,"msg":"refresh_token required"}"#.to_vec());
    };
    match app.db.rotate(&body.refresh_token).await {
        Ok(Some(child)) => json(StatusCode::OK, format!(r#"{{"refresh_token":"{child}"}}"#).into_bytes()),
        Ok(None) => json(StatusCode::BAD_REQUEST, br#"{"code":400,"msg":"Invalid Refresh Token"}"#.to_vec()),
        Err(e) => database_error(&e),
    }
}

/// Against `FERROTRUE_TEST_DATABASE_URL` (or `GOTRUE_DB_DATABASE_URL`): a throw-away schema with
/// the columns of GoTrue's tables the ceiling touches, two seeded users; GET /user (200, 401
/// forged, 404 unknown user), a rotation chain (200, 400 on reuse, 200 on the child, 400 unknown);
/// then the schema is dropped.
pub fn self_check() -> Result<(), BoxError> {
    let url = std::env::var("FERROTRUE_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("GOTRUE_DB_DATABASE_URL"))
        .map_err(|_| "set FERROTRUE_TEST_DATABASE_URL or GOTRUE_DB_DATABASE_URL")?;
    let ns = format!("ceiling_check_{}", &new_token()[..12]);
    let settings = Settings::new(url.clone(), ns.clone(), 4)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let (admin, conn) = tokio_postgres::connect(&url, NoTls).await?;
        tokio::spawn(conn);
        admin
            .batch_execute(&format!(
                "CREATE SCHEMA {ns};
                 CREATE TABLE {ns}.users (instance_id uuid, id uuid PRIMARY KEY, aud varchar(255),
                     role varchar(255), email varchar(255), created_at timestamptz, updated_at timestamptz);
                 CREATE TABLE {ns}.sessions (id uuid PRIMARY KEY,
                     user_id uuid NOT NULL REFERENCES {ns}.users (id) ON DELETE CASCADE,
                     created_at timestamptz, updated_at timestamptz);
                 CREATE TABLE {ns}.refresh_tokens (instance_id uuid, id bigserial PRIMARY KEY,
                     token varchar(255) UNIQUE, user_id varchar(255), revoked boolean,
                     created_at timestamptz, updated_at timestamptz, parent varchar(255),
                     session_id uuid REFERENCES {ns}.sessions (id) ON DELETE CASCADE);"
            ))
            .await?;
        let result = check_against(&settings).await;
        admin.batch_execute(&format!("DROP SCHEMA {ns} CASCADE")).await?;
        result
    })
}

async fn check_against(settings: &Settings) -> Result<(), BoxError> {
    let secret = b"ceiling-self-check-secret-long-enough-for-hs256";
    let db = PgCeiling::connect(settings).await?;
    let seeded = db.seed(2).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, Arc::new(PgApp { verifier: Verifier::new(secret), db })));

    let get = |token: String| async move {
        http(
            addr,
            &format!(
                "GET /user HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await
    };
    let ok = get(access_token(secret, &seeded.first_user, &seeded.first_email)?).await?;
    if !ok.starts_with("HTTP/1.1 200") || !ok.contains(&format!(r#""email":"{}""#, seeded.first_email)) {
        return Err(format!("GET /user: unexpected {ok:?}").into());
    }
    let forged = get(access_token(b"another-secret-long-enough-for-hs256", &seeded.first_user, "x")?).await?;
    let unknown = get(access_token(secret, &Uuid::new_v4().to_string(), "x")?).await?;
    for (what, r, want) in [("forged token", forged, "401"), ("unknown user", unknown, "404")] {
        if !r.starts_with(&format!("HTTP/1.1 {want}")) {
            return Err(format!("GET /user with {what}: expected {want}, got {r:?}").into());
        }
    }

    let post = |token: String| async move {
        let body = format!(r#"{{"refresh_token":"{token}"}}"#);
        http(
            addr,
            &format!(
                "POST /token?grant_type=refresh_token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
        .await
    };
    let child_of = |r: &str| -> Option<String> {
        let rest = r.split(r#""refresh_token":""#).nth(1)?;
        Some(rest.split('"').next()?.to_owned())
    };
    let first = seeded.refresh_tokens[0].clone();
    let r = post(first.clone()).await?;
    let child = child_of(&r).filter(|_| r.starts_with("HTTP/1.1 200")).ok_or(format!("refresh: {r:?}"))?;
    let reused = post(first).await?;
    let grandchild = post(child).await?;
    let unknown = post("no-such-token".into()).await?;
    for (what, r, want) in
        [("a revoked token", reused, "400"), ("the child", grandchild, "200"), ("an unknown token", unknown, "400")]
    {
        if !r.starts_with(&format!("HTTP/1.1 {want}")) {
            return Err(format!("refresh with {what}: expected {want}, got {r:?}").into());
        }
    }
    Ok(())
}
