//! The only place that knows paths. Every request gets: CORS headers, the body limit, the
//! request timeout, panic isolation (a panicking handler costs that request a 500, nothing
//! more), and one error renderer.

use super::error::{render, ApiVersion};
use super::request::{query_map, read_body, Req};
use super::response::{self, Resp};
use crate::config::MAX_BODY_BYTES;
use crate::handlers;
use crate::state::Ctx;
use ferrotrue_actors::error::{AuthError, AuthResult, ErrorCode, ErrorKind};
use futures_util::FutureExt;
use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;

/// Paths we serve, for telling 405 from 404.
const KNOWN_PATHS: &[&str] = &[
    "/health",
    "/ready",
    "/.well-known/jwks.json",
    "/.well-known/openid-configuration",
    "/settings",
    "/signup",
    "/token",
    "/user",
    "/logout",
    "/verify",
    "/otp",
    "/magiclink",
    "/recover",
    "/resend",
    "/invite",
    "/reauthenticate",
];

const CORS_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const CORS_HEADERS: &str =
    "Accept, Authorization, Content-Type, X-Client-IP, X-Client-Info, X-JWT-AUD, x-use-cookie, X-Supabase-Api-Version, apikey";
const CORS_EXPOSE: &str = "X-Total-Count, Link, X-Supabase-Api-Version";

/// Handles one request end to end.
pub async fn route(cx: &Ctx, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let client = cx.limits.client(req.headers(), peer);
    let version = ApiVersion::from_header(req.headers().get("x-supabase-api-version").and_then(|v| v.to_str().ok()));
    let origin = req.headers().get(header::ORIGIN).cloned();
    // A v4 UUID from the thread-local CSPRNG: `Uuid::new_v4` asks the kernel (getrandom) per call.
    let request_id =
        uuid::Builder::from_random_bytes(ferrotrue_actors::crypto::random_bytes::<16>()).into_uuid().to_string();
    let mut resp =
        if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            preflight(cx)
        } else {
            // Nothing acknowledged may be lost: whatever the request wrote (or read from an
            // in-flight write) is synced before the response leaves — errors included, since some
            // paths commit then fail (refresh-token reuse revokes the family).
            let work = async {
                let result = dispatch(cx, req, peer, client).await;
                match cx.actors.durable().await {
                    Ok(()) => result,
                    Err(e) => Err(e),
                }
            };
            let guarded = AssertUnwindSafe(work).catch_unwind();
            match tokio::time::timeout(cx.config.max_request_duration, guarded).await {
                Ok(Ok(Ok(resp))) => resp,
                Ok(Ok(Err(err))) => render(&err, version, &request_id),
                Ok(Err(_panic)) => render(&AuthError::internal("Internal Server Error"), version, &request_id),
                Err(_elapsed) => render(
                    &AuthError::new(
                        ErrorKind::GatewayTimeout,
                        ErrorCode::RequestTimeout,
                        "Processing this request timed out, please retry after a moment.",
                    ),
                    version,
                    &request_id,
                ),
            }
        };
    if let Some(origin) = origin {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(CORS_EXPOSE));
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", id);
    }
    let elapsed = started.elapsed();
    let error_code = resp.headers().get("x-sb-error-code").and_then(|v| v.to_str().ok()).unwrap_or("");
    access_log(&method, &path, resp.status().as_u16(), elapsed, error_code, &request_id, client, peer);
    if cx.config.metrics.enabled {
        crate::metrics::record_request(&method, &path, resp.status(), elapsed.as_secs_f64(), error_code);
    }
    resp
}

/// One line per request: never the query string (it can carry tokens) nor a body; the path is
/// Debug-escaped so nothing a client sends can forge a line. Failed authentications (a 4xx
/// from a sign-in, verification or token route) are marked as such.
#[allow(clippy::too_many_arguments)] // one line's fields, each already computed by `route`
fn access_log(
    method: &Method,
    path: &str,
    status: u16,
    elapsed: std::time::Duration,
    error_code: &str,
    request_id: &str,
    client: super::limits::Client,
    peer: SocketAddr,
) {
    let latency_us = elapsed.as_micros() as u64;
    let auth_route = matches!(path, "/token" | "/verify" | "/reauthenticate" | "/user" | "/callback")
        || path.starts_with("/admin")
        || path.starts_with("/factors");
    if auth_route && (400..500).contains(&status) {
        tracing::info!(
            target: "ferrotrue::access",
            %method, ?path, status, latency_us, request_id, ?client, %peer, error_code,
            "authentication failed"
        );
    } else {
        tracing::info!(target: "ferrotrue::access", %method, ?path, status, latency_us, request_id, ?client, %peer, error_code, "request");
    }
}

/// CORS preflight (rs/cors semantics: any origin, credentials allowed).
fn preflight(cx: &Ctx) -> Resp {
    let mut resp = response::empty(StatusCode::NO_CONTENT);
    let mut allowed = CORS_HEADERS.to_owned();
    for extra in &cx.config.cors_extra_headers {
        allowed.push_str(", ");
        allowed.push_str(extra);
    }
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(CORS_METHODS));
    if let Ok(v) = HeaderValue::from_str(&allowed) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("300"));
    resp
}

async fn dispatch(
    cx: &Ctx,
    req: Request<Incoming>,
    peer: SocketAddr,
    client: super::limits::Client,
) -> AuthResult<Resp> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_owned();
    let path = if path.is_empty() { "/".to_owned() } else { path };
    if !KNOWN_PATHS.contains(&path.as_str())
        && !handlers::admin::owns(&path)
        && !handlers::external::owns(&path)
        && !handlers::factors::owns(&path)
    {
        return Err(AuthError::not_found(ErrorCode::NotFound, "404 page not found"));
    }
    let body = read_body(body, MAX_BODY_BYTES).await?;
    let query = query_map(parts.uri.query());
    let req = Req { parts, body, query, peer, client };
    super::guard::check(cx, &req, &path, client).await?;
    let method = req.parts.method.clone();
    match (method, path.as_str()) {
        (Method::GET | Method::HEAD, "/health") => Ok(handlers::health::get()),
        (Method::GET, "/ready") => Ok(handlers::health::ready(cx).await),
        (Method::GET, "/.well-known/jwks.json") => Ok(handlers::health::jwks(cx)),
        (Method::GET, "/.well-known/openid-configuration") => Ok(handlers::health::openid_configuration(cx)),
        (Method::GET, "/settings") => Ok(handlers::settings::get(cx)),
        (Method::POST, "/signup") => handlers::signup::post(cx, &req).await,
        (Method::POST, "/token") => handlers::token::post(cx, &req).await,
        (Method::GET, "/user") => handlers::user::get(cx, &req).await,
        (Method::PUT, "/user") => handlers::user::put(cx, &req).await,
        (Method::POST, "/logout") => handlers::logout::post(cx, &req).await,
        (Method::GET | Method::HEAD, "/verify") => handlers::verify::get(cx, &req).await,
        (Method::POST, "/verify") => handlers::verify::post(cx, &req).await,
        (Method::POST, "/otp") => handlers::otp::post(cx, &req).await,
        (Method::POST, "/magiclink") => handlers::otp::magiclink(cx, &req).await,
        (Method::POST, "/recover") => handlers::recover::post(cx, &req).await,
        (Method::POST, "/resend") => handlers::resend::post(cx, &req).await,
        (Method::POST, "/invite") => handlers::invite::post(cx, &req).await,
        (Method::GET, "/reauthenticate") => handlers::reauthenticate::get(cx, &req).await,
        (_, p) if handlers::factors::owns(p) => handlers::factors::route(cx, &req, p).await,
        (_, p) if handlers::admin::owns(p) => handlers::admin::route(cx, &req, p).await,
        (_, p) if handlers::external::owns(p) => handlers::external::route(cx, &req, p).await,
        _ => Err(AuthError::new(ErrorKind::MethodNotAllowed, ErrorCode::MethodNotAllowed, "Method not allowed")),
    }
}
