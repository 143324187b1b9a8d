//! The reference ceilings printed by `bench/all.sh` and `bench/pg.sh` next to ferrotrue's figures.
//!
//! ```text
//! ferrotrue-ceiling serve ADDR        # bare hyper 1.x + HS256: GET /user verifies the bearer JWT
//!                                     # (GOTRUE_JWT_SECRET) and returns a small JSON user
//! ferrotrue-ceiling serve-pg ADDR     # the same plus Postgres (GOTRUE_DB_DATABASE_URL): GET /user
//!                                     # = JWT + one indexed query; POST /token?grant_type=
//!                                     # refresh_token = one short transaction (see pg.rs)
//! ferrotrue-ceiling seed-pg N FILE    # N users with one refresh token each in GoTrue's schema
//!                                     # (`ferrotrue db migrate`); tokens to FILE, prints an
//!                                     # access token of the first user
//! ferrotrue-ceiling check-pg          # the Postgres self-check on its own throw-away schema
//!                                     # (FERROTRUE_TEST_DATABASE_URL or GOTRUE_DB_DATABASE_URL)
//! ferrotrue-ceiling argon2 [THREADS] [SECONDS]
//!                                     # raw argon2id at OWASP cost (m=19 MiB, t=2, p=1), one thread
//!                                     # per core by default, each reusing its own memory block
//! ferrotrue-ceiling [check]           # quick self-check (also run by `cargo test`), then exit
//! ```
//!
//! Both are what an ideal server could reach on the same machine with the same crates: the JWT
//! verification is configured as ferrotrue's (`jsonwebtoken`, HS256 only, `exp`/`nbf` enforced,
//! no leeway), but there is no routing table, no access log, no rate limiter, no user lookup and
//! no durability wait. GET /user, refresh and the mixed blend are reported as a ratio to the first;
//! sign-up and the password grant (one argon2id hash each) as a ratio to the second.

mod pg;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm as JwtAlgorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// OWASP's argon2id recommendation, the server's default cost.
const OWASP_M_KIB: u32 = 19 * 1024;
const OWASP_T: u32 = 2;
const OWASP_P: u32 = 1;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            let addr: SocketAddr = args.get(1).ok_or("usage: ferrotrue-ceiling serve ADDR")?.parse()?;
            let secret = std::env::var("GOTRUE_JWT_SECRET").map_err(|_| "GOTRUE_JWT_SECRET is not set")?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let listener = TcpListener::bind(addr).await?;
                println!("listening on {}", listener.local_addr()?);
                serve(listener, Arc::new(Verifier::new(secret.as_bytes()))).await
            })
        }
        Some("serve-pg") => {
            let addr: SocketAddr = args.get(1).ok_or("usage: ferrotrue-ceiling serve-pg ADDR")?.parse()?;
            let secret = std::env::var("GOTRUE_JWT_SECRET").map_err(|_| "GOTRUE_JWT_SECRET is not set")?;
            let settings = pg::Settings::from_env()?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let db = pg::PgCeiling::connect(&settings).await?;
                let listener = TcpListener::bind(addr).await?;
                println!(
                    "listening on {} (Postgres, namespace {}, pool {})",
                    listener.local_addr()?,
                    settings.namespace,
                    settings.pool
                );
                pg::serve(listener, Arc::new(pg::PgApp { verifier: Verifier::new(secret.as_bytes()), db })).await
            })
        }
        Some("seed-pg") => {
            let usage = "usage: ferrotrue-ceiling seed-pg N TOKEN_FILE";
            let n: usize = args.get(1).ok_or(usage)?.parse()?;
            let file = args.get(2).ok_or(usage)?;
            let secret = std::env::var("GOTRUE_JWT_SECRET").map_err(|_| "GOTRUE_JWT_SECRET is not set")?;
            let settings = pg::Settings::from_env()?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let db = pg::PgCeiling::connect(&settings).await?;
                let seeded = db.seed(n).await?;
                std::fs::write(file, seeded.refresh_tokens.join("\n") + "\n")?;
                println!("{}", access_token(secret.as_bytes(), &seeded.first_user, &seeded.first_email)?);
                Ok(())
            })
        }
        Some("check-pg") => {
            pg::self_check()?;
            println!("ferrotrue-ceiling Postgres self-check ok (GET /user and refresh on a throw-away schema)");
            Ok(())
        }
        Some("argon2") => {
            let threads = match args.get(1) {
                Some(n) => n.parse()?,
                None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            };
            let secs: f64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5.0);
            let r = argon2_rate(OWASP_M_KIB, OWASP_T, OWASP_P, threads, Duration::from_secs_f64(secs))?;
            println!(
                "ARGON2 {:.1} threads={} hashes={} secs={:.2} ms_per_hash_per_thread={:.1}",
                r.per_sec,
                threads,
                r.hashes,
                r.elapsed.as_secs_f64(),
                r.elapsed.as_secs_f64() * 1e3 * threads as f64 / r.hashes.max(1) as f64
            );
            Ok(())
        }
        None | Some("check") => {
            self_check()?;
            println!("ferrotrue-ceiling self-check ok (serve and argon2 work)");
            Ok(())
        }
        Some(other) => {
            Err(format!("unknown command {other:?}; expected serve, serve-pg, seed-pg, check-pg, argon2 or check")
                .into())
        }
    }
}

/// HS256 verification configured like ferrotrue's `jwt::Verifier`.
struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    fn new(secret: &[u8]) -> Verifier {
        let mut validation = Validation::new(JwtAlgorithm::HS256);
        validation.algorithms = vec![JwtAlgorithm::HS256];
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Verifier { key: DecodingKey::from_secret(secret), validation }
    }
}

#[derive(Deserialize, Serialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    aud: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

/// The small JSON user of the ceiling's GET /user.
#[derive(Serialize)]
struct SmallUser<'a> {
    id: &'a str,
    aud: &'a serde_json::Value,
    role: &'a str,
    email: &'a str,
}

async fn serve(listener: TcpListener, verifier: Arc<Verifier>) -> Result<(), BoxError> {
    serve_with(listener, move |req| {
        let verifier = verifier.clone();
        async move { handle(&verifier, req) }
    })
    .await
}

/// The accept loop of both servers: HTTP/1.1, TCP_NODELAY, one task per connection.
async fn serve_with<F, Fut>(listener: TcpListener, handler: F) -> Result<(), BoxError>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = handler(req);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// An HS256 access token like ferrotrue's for `sub`, valid for a day.
fn access_token(secret: &[u8], sub: &str, email: &str) -> Result<String, BoxError> {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + 86_400;
    let claims = Claims {
        sub: sub.into(),
        email: email.into(),
        role: "authenticated".into(),
        aud: serde_json::Value::String("authenticated".into()),
        exp: Some(exp),
    };
    Ok(jsonwebtoken::encode(&Header::new(JwtAlgorithm::HS256), &claims, &EncodingKey::from_secret(secret))?)
}

fn handle(verifier: &Verifier, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/user" {
        return json(StatusCode::NOT_FOUND, br#"{"code":404,"msg":"not found"}"#.to_vec());
    }
    let token = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return json(StatusCode::UNAUTHORIZED, br#"{"code":401,"msg":"no bearer token"}"#.to_vec());
    };
    match jsonwebtoken::decode::<Claims>(token, &verifier.key, &verifier.validation) {
        Ok(data) => {
            let c = &data.claims;
            let user = SmallUser { id: &c.sub, aud: &c.aud, role: &c.role, email: &c.email };
            match serde_json::to_vec(&user) {
                Ok(body) => json(StatusCode::OK, body),
                Err(_) => json(StatusCode::INTERNAL_SERVER_ERROR, b"{}".to_vec()),
            }
        }
        Err(_) => json(StatusCode::UNAUTHORIZED, br#"{"code":401,"msg":"invalid JWT"}"#.to_vec()),
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}

struct Rate {
    per_sec: f64,
    hashes: u64,
    elapsed: Duration,
}

/// `threads` threads hash for `window` each, every thread with its own preallocated memory
/// block (no allocation per hash). The rate counts only hashes finished inside the window.
fn argon2_rate(m_kib: u32, t: u32, p: u32, threads: usize, window: Duration) -> Result<Rate, BoxError> {
    let params = Params::new(m_kib, t, p, Some(32)).map_err(|e| format!("argon2 params: {e}"))?;
    let blocks = params.block_count();
    let hashes = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + window;
    let workers: Vec<_> = (0..threads.max(1))
        .map(|i| {
            let (params, hashes, failed) = (params.clone(), hashes.clone(), failed.clone());
            std::thread::spawn(move || {
                let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                let mut memory = vec![Block::default(); blocks];
                let mut out = [0u8; 32];
                let salt = [i as u8; 16];
                let mut n: u64 = 0;
                loop {
                    let pwd = format!("bench-password-{i}-{n}");
                    if argon.hash_password_into_with_memory(pwd.as_bytes(), &salt, &mut out, &mut memory).is_err() {
                        failed.store(true, Ordering::Relaxed);
                        return;
                    }
                    if Instant::now() > deadline {
                        return;
                    }
                    n += 1;
                    hashes.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "argon2 thread panicked")?;
    }
    if failed.load(Ordering::Relaxed) {
        return Err("argon2 hash failed".into());
    }
    let elapsed = window.min(start.elapsed());
    let hashes = hashes.load(Ordering::Relaxed);
    Ok(Rate { per_sec: hashes as f64 / elapsed.as_secs_f64(), hashes, elapsed })
}

/// Serves on an ephemeral port and checks a valid token (200 + the user), a forged one (401) and
/// no token (401); hashes once at a tiny argon2 cost. Seconds, not minutes: `cargo test` runs it.
fn self_check() -> Result<(), BoxError> {
    let secret = b"ceiling-self-check-secret-long-enough-for-hs256";
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(serve(listener, Arc::new(Verifier::new(secret))));
        let (sub, email) = ("6f1c5b1e-0000-4000-8000-000000000001", "check@example.com");
        let token = access_token(secret, sub, email)?;
        let forged = access_token(b"other-secret-also-long-enough-for-hs256", sub, email)?;

        let ok = get_user(addr, Some(&token)).await?;
        if !ok.starts_with("HTTP/1.1 200") || !ok.contains(r#""email":"check@example.com""#) {
            return Err(format!("valid token: unexpected response {ok:?}").into());
        }
        for (what, t) in [("forged token", Some(forged.as_str())), ("no token", None)] {
            let r = get_user(addr, t).await?;
            if !r.starts_with("HTTP/1.1 401") {
                return Err(format!("{what}: expected 401, got {r:?}").into());
            }
        }
        Ok::<(), BoxError>(())
    })?;
    let r = argon2_rate(64, 1, 1, 1, Duration::from_millis(50))?;
    if r.hashes == 0 {
        return Err("argon2: no hash finished in 50 ms at m=64 KiB".into());
    }
    Ok(())
}

async fn get_user(addr: SocketAddr, token: Option<&str>) -> Result<String, BoxError> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    http(addr, &format!("GET /user HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")).await
}

/// Sends one raw HTTP/1.1 request (with `Connection: close`) and returns the whole response.
async fn http(addr: SocketAddr, req: &str) -> Result<String, BoxError> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut resp)).await??;
    Ok(String::from_utf8_lossy(&resp).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn self_check_serves_and_hashes() {
        if let Err(e) = super::self_check() {
            panic!("ceiling self-check failed: {e}");
        }
    }

    /// The Postgres ceiling against the test cluster, when there is one
    /// (`FERROTRUE_TEST_DATABASE_URL`); skipped otherwise.
    #[test]
    fn pg_self_check_serves_user_and_refresh() {
        if std::env::var_os("FERROTRUE_TEST_DATABASE_URL").is_none() {
            eprintln!("skipped: FERROTRUE_TEST_DATABASE_URL is not set");
            return;
        }
        if let Err(e) = super::pg::self_check() {
            panic!("ceiling Postgres self-check failed: {e}");
        }
    }
}
