//! Test harness: a real server on `127.0.0.1:0` over a temporary data directory.

#![allow(dead_code)]

use ferrotrue::config::Config;
use ferrotrue::Server;
use ferrotrue_actors::Actors;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use tempfile::TempDir;
use tokio::net::TcpListener;

/// The secret [`Config::for_tests`] signs with.
pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256";
/// A password that satisfies the default policy.
pub const PASSWORD: &str = "correct-horse-9";

/// True when the suite runs on Postgres (`FERROTRUE_TEST_BACKEND=postgres`, set by `./test.sh`
/// for its second pass): every [`TestServer`] then serves from a fresh database of the test
/// cluster (`FERROTRUE_TEST_DATABASE_URL`) instead of a sled directory.
pub fn on_postgres() -> bool {
    std::env::var("FERROTRUE_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// A running server plus an HTTP client pointed at it.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub actors: Actors,
    pub config: Config,
    server: Option<Server>,
    dir: TempDir,
}

impl TestServer {
    /// Default test configuration (autoconfirm on, phone on, quick hashing).
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Test configuration adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::for_tests(dir.path());
        if on_postgres() {
            let url = ferrotrue_actors::pg::testing::fresh_database().await;
            config.database = Some(ferrotrue_actors::pg::testing::settings(&url));
        }
        tweak(&mut config);
        Self::start_in(dir, config).await
    }

    /// A server on `dir` (an existing data directory, kept after [`TestServer::stop`]).
    pub async fn start_in(dir: TempDir, mut config: Config) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        // Links in mails point at this very server.
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        config.api_external_url = base.clone();
        config.settings.mail.api_external_url = base;
        let server = ferrotrue::start(listener, config.clone()).await.expect("server starts");
        TestServer {
            base: format!("http://{}", server.addr),
            http: reqwest::Client::new(),
            actors: server.actors.clone(),
            config,
            server: Some(server),
            dir,
        }
    }

    /// A server delivering mail to a fresh [`crate::smtp::SmtpSink`], with `tweak` applied after.
    pub async fn start_with_mail(tweak: impl FnOnce(&mut Config)) -> (TestServer, crate::smtp::SmtpSink) {
        let sink = crate::smtp::SmtpSink::start().await;
        let port = sink.port;
        let server = Self::start_with(|c| {
            c.settings.smtp.host = "127.0.0.1".into();
            c.settings.smtp.port = port;
            c.settings.smtp.admin_email = "auth@example.com".into();
            tweak(c);
        })
        .await;
        (server, sink)
    }

    /// Stops gracefully and starts again on the same data directory and configuration.
    pub async fn restart(mut self) -> TestServer {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        drop(self.actors);
        Self::start_in(self.dir, self.config).await
    }

    /// Stops gracefully and hands back the data directory (for offline tools such as migrate).
    pub async fn stop(mut self) -> TempDir {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        drop(self.actors);
        self.dir
    }

    /// Where `GET /metrics` answers, when the configuration enables metrics.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().and_then(|s| s.metrics_addr)
    }

    /// The data directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the headers the official clients send.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("X-Supabase-Api-Version", "2024-01-01")
            .header("X-Client-Info", "ferrotrue-tests")
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path).json(&body).send().await.expect("request")
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path).bearer_auth(token).send().await.expect("request")
    }

    /// `GET path` with a bearer token, the body as JSON (whatever the status).
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        self.get_auth(path, token).await.json().await.expect("json")
    }

    pub async fn put_auth(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::PUT, path).bearer_auth(token).json(&body).send().await.expect("request")
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::POST, path).bearer_auth(token).json(&body).send().await.expect("request")
    }

    /// Signs up `email` with [`PASSWORD`] and returns the session JSON (autoconfirm is on).
    pub async fn signup(&self, email: &str) -> Value {
        let resp = self.post("/signup", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(resp.status(), StatusCode::OK, "signup of {email}");
        resp.json().await.expect("json")
    }

    /// Password grant for `email` / [`PASSWORD`].
    pub async fn login(&self, email: &str) -> Value {
        let resp = self.post("/token?grant_type=password", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(resp.status(), StatusCode::OK, "login of {email}");
        resp.json().await.expect("json")
    }

    /// Refresh grant; returns the raw response.
    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post("/token?grant_type=refresh_token", json!({"refresh_token": refresh_token})).await
    }
}

/// A fresh, unique address.
pub fn unique_email() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("user{}-{}@example.com", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// A fresh, unique phone number (digits, no `+`).
pub fn unique_phone() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("1555{:07}", (u64::from(std::process::id()) * 1000 + N.fetch_add(1, Ordering::SeqCst)) % 10_000_000)
}

/// Asserts a 2024-01-01-format error: status, `code`, echoed version header, `x-sb-error-code`.
pub async fn assert_error(resp: Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status for expected {code}");
    assert_eq!(resp.headers().get("x-sb-error-code").and_then(|v| v.to_str().ok()), Some(code));
    assert_eq!(resp.headers().get("x-supabase-api-version").and_then(|v| v.to_str().ok()), Some("2024-01-01"));
    let body: Value = resp.json().await.expect("error body is JSON");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

/// Signs arbitrary claims with `secret` and `alg` (for forged / foreign tokens).
/// A service_role token as Supabase hands them out (no session, no expiry), signed with [`SECRET`].
pub fn service_role_token() -> String {
    sign(&json!({"role": "service_role"}), SECRET, jsonwebtoken::Algorithm::HS256)
}

/// Every file under `dir`, recursively, with its bytes (for scans of the data directory).
/// Everything the server stored, as an attacker with a copy of the database would see it: the
/// sled files of its data directory, or on Postgres every row of GoTrue's schema and of
/// ferrotrue's own (as text, one `(schema.table, rows)` per table).
pub async fn stored_data(server: &TestServer) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let Some(pg) = &server.config.database else {
        return files_under(server.dir());
    };
    let (client, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    let side = ferrotrue_actors::pg::schema::side_schema(&pg.namespace);
    let tables = client
        .query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema IN ($1, $2) AND table_type = 'BASE TABLE'",
            &[&pg.namespace, &side],
        )
        .await
        .expect("list tables");
    let mut out = Vec::new();
    for row in tables {
        let table: String = row.get(0);
        let rows: String = client
            .query_one(&format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {table} t"), &[])
            .await
            .expect("read a table")
            .get(0);
        out.push((std::path::PathBuf::from(table), rows.into_bytes()));
    }
    out
}

pub fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read");
            out.push((path, bytes));
        }
    }
    out
}

/// Waits until a server spawned as a process answers `GET /health` with 200 (at most 30 s).
pub async fn wait_healthy(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server at {base} did not answer GET /health");
}

/// The claims of a JWT, read without verifying it (what a client sees).
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

/// The claims of an access token after checking its HS256 signature with [`SECRET`].
pub fn verified_claims(token: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()), &validation)
        .expect("access token verifies with the secret")
        .claims
}

/// A session's access token.
pub fn access(session: &Value) -> String {
    session["access_token"].as_str().expect("access_token").to_owned()
}

/// A session's refresh token.
pub fn refresh_token(session: &Value) -> String {
    session["refresh_token"].as_str().expect("refresh_token").to_owned()
}

pub fn sign(claims: &Value, secret: &str, alg: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
