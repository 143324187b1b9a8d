//! `GET /health` (api.go `HealthCheck`), `GET /.well-known/jwks.json` and
//! `GET /.well-known/openid-configuration` (jwks.go).

use crate::http::response::{self, Resp};
use crate::state::Ctx;
use http::StatusCode;
use serde_json::json;

/// Liveness, in GoTrue's shape (clients check `name`).
pub fn get() -> Resp {
    response::json_value(
        StatusCode::OK,
        &json!({
            "version": concat!("v", env!("CARGO_PKG_VERSION")),
            "name": "GoTrue",
            "description": "GoTrue is a user registration and authentication API",
        }),
    )
}

/// `GET /.well-known/jwks.json`: the public halves of `GOTRUE_JWT_KEYS` (`kty`, `kid`, `alg`,
/// `use: "sig"`, `key_ops: ["verify"]`, `n`/`e` or `crv`/`x`/`y`). Symmetric keys (HS256: the
/// secret, `oct` JWKs) are never published, so with `GOTRUE_JWT_SECRET` alone the set is empty, as
/// in GoTrue; clients such as auth-js `getClaims()` then fall back to asking `/user`.
pub fn jwks(cx: &Ctx) -> Resp {
    let body = ferrotrue_actors::jwt_keys::public_jwks(&cx.config.settings.jwt.keys);
    let mut resp = response::json_value(StatusCode::OK, &body);
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static(CACHE));
    resp
}

/// `GET /.well-known/openid-configuration` (jwks.go `WellKnownOpenID`): where the keys are and
/// which algorithms tokens use. `issuer` is `GOTRUE_JWT_ISSUER` (else `API_EXTERNAL_URL`); the
/// endpoint URLs hang off the issuer as in GoTrue, `jwks_uri` off `API_EXTERNAL_URL` (where this
/// server answers). `id_token_signing_alg_values_supported` lists the algorithms actually
/// accepted (`GOTRUE_JWT_VALID_METHODS`), signing one first.
pub fn openid_configuration(cx: &Ctx) -> Resp {
    let external = cx.config.api_external_url.trim_end_matches('/');
    let issuer = match cx.config.settings.jwt.issuer.as_str() {
        "" => external.to_owned(),
        configured => configured.to_owned(),
    };
    let base = issuer.trim_end_matches('/');
    let algs: Vec<&str> = cx.actors.jwt.valid_methods().into_iter().map(ferrotrue_actors::jwt_keys::alg_name).collect();
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "jwks_uri": format!("{external}/.well-known/jwks.json"),
        "userinfo_endpoint": format!("{base}/oauth/userinfo"),
        "scopes_supported": ["openid", "profile", "email", "phone", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "claims_supported": [
            "sub", "aud", "iss", "exp", "iat", "auth_time", "nonce", "email", "email_verified",
            "phone_number", "phone_number_verified", "name", "picture", "preferred_username", "updated_at"
        ],
        "code_challenge_methods_supported": ["S256", "plain"],
    });
    let mut resp = response::json_value(StatusCode::OK, &body);
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static(CACHE));
    resp
}

const CACHE: &str = "public, max-age=600";

/// How long a readiness report is reused: a public endpoint must not let clients make the
/// server sync its disk and dial the SMTP relay and hook endpoints at their pace.
const READY_REUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// The last readiness report, `(taken at, ready, body)`; the lock is held while a probe runs,
/// so concurrent callers wait for it and share its result.
pub type ReadyCache = tokio::sync::Mutex<Option<(std::time::Instant, bool, serde_json::Value)>>;

/// How long one dependency may take to answer a readiness probe.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether a TCP connection to `host:port` opens within [`PROBE_TIMEOUT`].
async fn reachable(host: &str, port: u16) -> bool {
    matches!(tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await, Ok(Ok(_)))
}

/// Host and port of a hook URI.
fn hook_target(uri: &str) -> Option<(String, u16)> {
    let url = url::Url::parse(uri).ok()?;
    Some((url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_owned(), url.port_or_known_default()?))
}

/// `GET /ready` (ferrotrue's; GoTrue has only `/health`): 200 when storage syncs, every actor
/// answers, and each configured dependency (SMTP relay, hook endpoints) accepts a connection;
/// else 503 with the same report. Names and booleans only — no host, URI or secret — since the
/// endpoint is public; each probe is bounded by [`PROBE_TIMEOUT`] and they run concurrently, and
/// a report is reused for [`READY_REUSE`] however many clients ask.
pub async fn ready(cx: &Ctx) -> Resp {
    let mut cached = cx.ready.lock().await;
    let (ready, body) = match cached.as_ref() {
        Some((at, ready, body)) if at.elapsed() < READY_REUSE => (*ready, body.clone()),
        _ => {
            let (ready, body) = probe(cx).await;
            *cached = Some((std::time::Instant::now(), ready, body.clone()));
            (ready, body)
        }
    };
    drop(cached);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut resp = response::json_value(status, &body);
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    resp
}

/// One readiness probe: whether everything is ready, and the report.
async fn probe(cx: &Ctx) -> (bool, serde_json::Value) {
    let a = &cx.actors;
    let started = std::time::Instant::now();
    let storage = a.durable().await.is_ok();
    let sync_ms = started.elapsed().as_secs_f64() * 1000.0;
    let actors = a.users.count().await.is_ok() && a.sessions.count().await.is_ok() && a.otps.count().await.is_ok();
    let s = &cx.config.settings;
    let smtp = async {
        if s.smtp.host.is_empty() {
            None
        } else {
            Some(reachable(&s.smtp.host, s.smtp.port).await)
        }
    };
    let h = &s.hooks;
    let endpoints = [
        ("send_email", &h.send_email),
        ("send_sms", &s.sms.hook),
        ("custom_access_token", &h.custom_access_token),
        ("password_verification_attempt", &h.password_verification_attempt),
        ("mfa_verification_attempt", &h.mfa_verification_attempt),
        ("before_user_created", &h.before_user_created),
        ("after_user_created", &h.after_user_created),
    ];
    let hooks = futures_util::future::join_all(
        endpoints.iter().filter_map(|(name, e)| e.as_ref().map(|e| (*name, e))).map(|(name, e)| async move {
            let ok = match hook_target(&e.uri) {
                Some((host, port)) => reachable(&host, port).await,
                None => false,
            };
            (name, ok)
        }),
    );
    let (smtp, hooks) = tokio::join!(smtp, hooks);
    let ready = storage && actors && smtp != Some(false) && hooks.iter().all(|(_, ok)| *ok);
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "storage": {"ok": storage, "sync_ms": (sync_ms * 100.0).round() / 100.0},
        "actors": {"ok": actors},
        "smtp": match smtp { None => json!("not configured"), Some(ok) => json!({"reachable": ok}) },
        "hooks": hooks.into_iter().map(|(name, ok)| (name.to_owned(), json!({"reachable": ok}))).collect::<serde_json::Map<_, _>>(),
    });
    (ready, body)
}
