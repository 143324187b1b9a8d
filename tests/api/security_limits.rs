//! Attacks on request volume, as the attacker would run them against a default server:
//! per-client rate limits with GoTrue's names and numbers (on by default here, keyed by the
//! peer address; GoTrue applies none without `GOTRUE_RATE_LIMIT_HEADER`), the per-account
//! password throttle, CAPTCHA, and the refusal of security settings we do not implement.

use crate::common::*;
use ferrotrue::config::Config;
use ferrotrue::config_security::{Bucket, CaptchaProvider, CaptchaSettings, RateLimits};
use ferrotrue_actors::crypto::Secret;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// GoTrue's default limits, as a server started with no `GOTRUE_RATE_LIMIT_*` has them.
fn gotrue_defaults(c: &mut Config) {
    c.limits = RateLimits::default();
}

async fn wrong_code(server: &TestServer, email: &str, forwarded_for: &str) -> reqwest::Response {
    server
        .request(Method::POST, "/verify")
        .header("X-Forwarded-For", forwarded_for)
        .json(&json!({"type": "email", "email": email, "token": "000000"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn verify_is_limited_per_client_by_default_and_spoofed_forwarding_headers_do_not_help() {
    let server = TestServer::start_with(gotrue_defaults).await;
    // GOTRUE_RATE_LIMIT_VERIFY: 30 per 5 min, burst 30. Each guess claims another client IP
    // (and targets another address, so the per-address code bucket stays out of the way).
    for i in 0..30 {
        let resp = wrong_code(&server, &unique_email(), &format!("10.9.{}.{}", i / 250, i % 250)).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "guess {i} reaches the verifier");
    }
    let resp = wrong_code(&server, &unique_email(), "10.99.99.99").await;
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "one token per 10 s: {retry_after}");
    let body = assert_error(resp, 429, "over_request_rate_limit").await;
    assert_eq!(body["message"], "Request rate limit reached");
    // The legacy error shape too.
    let resp = server.http.post(server.url("/verify")).json(&json!({"type": "email"})).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let legacy: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(legacy["error_code"], "over_request_rate_limit");
    assert_eq!(legacy["msg"], "Request rate limit reached");
    // Other routes have their own buckets: the same client can still sign in.
    let session = server.signup(&unique_email()).await;
    assert!(session["access_token"].is_string());
}

#[tokio::test]
async fn typed_codes_for_one_address_are_limited_over_all_clients() {
    let server = TestServer::start_with(|c| {
        c.limits = RateLimits { header: Some("X-Real-IP".into()), ..RateLimits::default() };
    })
    .await;
    let victim = unique_email();
    let guess = |ip: String, email: String| {
        server
            .request(Method::POST, "/verify")
            .header("X-Real-IP", ip)
            .json(&json!({"type": "email", "email": email, "token": "000000"}))
            .send()
    };
    // 10 codes typed in for the victim from 10 different clients reach the verifier...
    for i in 0..10 {
        assert_eq!(guess(format!("100.64.1.{i}"), victim.to_uppercase()).await.unwrap().status(), 403);
    }
    // ...the 11th, from yet another client, does not.
    let resp = guess("100.64.2.1".into(), victim.clone()).await.unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    assert_error(resp, 429, "over_request_rate_limit").await;
    // Other addresses, and links (token_hash), are not affected.
    assert_eq!(guess("100.64.2.1".into(), unique_email()).await.unwrap().status(), 403);
    let link = server.post("/verify", json!({"type": "email", "token_hash": "f".repeat(56)})).await;
    assert_eq!(link.status(), 403);
}

#[tokio::test]
async fn behind_a_proxy_the_configured_header_tells_clients_apart() {
    let server = TestServer::start_with(|c| {
        c.limits = RateLimits { header: Some("X-Real-IP".into()), ..RateLimits::default() };
    })
    .await;
    let guess = |ip: &'static str| {
        server
            .request(Method::POST, "/verify")
            .header("X-Real-IP", ip)
            .json(&json!({"type": "email", "email": unique_email(), "token": "000000"}))
            .send()
    };
    for _ in 0..30 {
        assert_eq!(guess("198.51.100.7").await.unwrap().status(), 403);
    }
    assert_eq!(guess("198.51.100.7").await.unwrap().status(), 429, "that client is out of tokens");
    assert_eq!(guess("198.51.100.8").await.unwrap().status(), 403, "another client behind the proxy is not");
}

#[tokio::test]
async fn otp_limit_covers_every_sender_route_and_put_user() {
    let server = TestServer::start_with(|c| {
        c.limits = RateLimits { otp: Bucket { burst: 4, period: None }, ..RateLimits::default() };
    })
    .await;
    let session = server.signup(&unique_email()).await;
    let token = session["access_token"].as_str().unwrap();
    // Signup consumed the first of the 4.
    assert_eq!(server.post("/recover", json!({"email": unique_email()})).await.status(), 200);
    assert_eq!(server.post("/otp", json!({"email": unique_email()})).await.status(), 200);
    assert_eq!(server.put_auth("/user", token, json!({"data": {"a": 1}})).await.status(), 200);
    for (method, path) in [
        (Method::POST, "/signup"),
        (Method::POST, "/otp"),
        (Method::POST, "/magiclink"),
        (Method::POST, "/recover"),
        (Method::POST, "/resend"),
        (Method::PUT, "/user"),
    ] {
        let resp = server
            .request(method, path)
            .bearer_auth(token)
            .json(&json!({"email": unique_email(), "password": PASSWORD, "type": "signup"}))
            .send()
            .await
            .unwrap();
        assert_error(resp, 429, "over_request_rate_limit").await;
    }
    // Token refreshes are a different bucket.
    let refreshed = server.refresh(session["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), 200);
}

#[tokio::test]
async fn anonymous_sign_ins_are_limited_per_hour() {
    let server = TestServer::start_with(|c| {
        c.settings.signup.anonymous_enabled = true;
        c.limits = RateLimits { anonymous: Bucket::per(3.0, Duration::from_secs(3600), 3), ..RateLimits::default() };
    })
    .await;
    for _ in 0..3 {
        assert_eq!(server.post("/signup", json!({})).await.status(), 200);
    }
    assert_error(server.post("/signup", json!({"data": {"x": 1}})).await, 429, "over_request_rate_limit").await;
    // Email sign-ups use the OTP bucket, which is untouched.
    server.signup(&unique_email()).await;
    assert_eq!(server.actors.users.count().await.unwrap(), 4, "no user created by the refused sign-in");
}

#[tokio::test]
async fn token_grants_share_the_token_refresh_limit() {
    let server = TestServer::start_with(|c| {
        c.limits = RateLimits { token: Bucket { burst: 3, period: None }, ..RateLimits::default() };
    })
    .await;
    let session = server.signup(&unique_email()).await;
    let mut refresh = session["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let resp = server.refresh(&refresh).await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        refresh = body["refresh_token"].as_str().unwrap().to_owned();
    }
    assert_error(server.refresh(&refresh).await, 429, "over_request_rate_limit").await;
    let login = server.post("/token?grant_type=password", json!({"email": unique_email(), "password": "x"})).await;
    assert_error(login, 429, "over_request_rate_limit").await;
    // An unknown grant is refused as before, not counted.
    let resp = server.post("/token?grant_type=magic", json!({})).await;
    assert_error(resp, 400, "invalid_credentials").await;
}

#[tokio::test]
async fn password_guessing_is_throttled_per_account_without_locking_out_the_owner_elsewhere() {
    let server = TestServer::start_with(|c| {
        c.limits = RateLimits {
            header: Some("X-Real-IP".into()),
            token: RateLimits::generous().token,
            ..RateLimits::default()
        };
    })
    .await;
    let email = unique_email();
    server.signup(&email).await;
    let attempt = |ip: &'static str, email: String, password: &'static str| {
        server
            .request(Method::POST, "/token?grant_type=password")
            .header("X-Real-IP", ip)
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    for _ in 0..5 {
        assert_error(attempt("203.0.113.66", email.clone(), "guess").await.unwrap(), 400, "invalid_credentials").await;
    }
    // The attacker is slowed down: even the right password is not checked from there now.
    let resp = attempt("203.0.113.66", email.to_uppercase(), PASSWORD).await.unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    assert_error(resp, 429, "over_request_rate_limit").await;
    // The owner, from elsewhere, signs in at once.
    assert_eq!(attempt("192.0.2.10", email.clone(), PASSWORD).await.unwrap().status(), 200);
    // Unknown accounts are throttled the same way (no enumeration through the throttle).
    let ghost = unique_email();
    for _ in 0..5 {
        assert_eq!(attempt("203.0.113.66", ghost.clone(), "guess").await.unwrap().status(), 400);
    }
    assert_eq!(attempt("203.0.113.66", ghost, "guess").await.unwrap().status(), 429);
}

#[tokio::test]
async fn distributed_password_guessing_hits_the_account_wide_bucket() {
    let server = TestServer::start_with(|c| {
        c.limits = RateLimits {
            header: Some("X-Real-IP".into()),
            token: RateLimits::generous().token,
            ..RateLimits::default()
        };
    })
    .await;
    let email = unique_email();
    server.signup(&email).await;
    let mut statuses = Vec::new();
    for i in 0..25 {
        let resp = server
            .request(Method::POST, "/token?grant_type=password")
            .header("X-Real-IP", format!("100.64.0.{i}"))
            .json(&json!({"email": email, "password": "guess"}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 20, "20 guesses over all clients: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5, "{statuses:?}");
}

fn captcha(c: &mut Config, url: String) {
    c.captcha = Some(CaptchaSettings {
        provider: CaptchaProvider::HCaptcha,
        secret: Secret("captcha-secret".into()),
        timeout: Duration::from_secs(5),
        verify_url: url,
    });
}

#[tokio::test]
async fn captcha_guards_the_routes_gotrue_guards() {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/siteverify"))
        .and(body_string_contains("secret=captcha-secret"))
        .and(body_string_contains("response=good-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .and(path("/siteverify"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": false, "error-codes": ["invalid-input-response"]})),
        )
        .mount(&provider)
        .await;
    let url = format!("{}/siteverify", provider.uri());
    let server = TestServer::start_with(|c| captcha(c, url)).await;
    let email = unique_email();

    let body = assert_error(
        server.post("/signup", json!({"email": email, "password": PASSWORD})).await,
        400,
        "captcha_failed",
    )
    .await;
    assert_eq!(body["message"], "captcha protection: request disallowed (no captcha_token found)");
    let bad = json!({"email": email, "password": PASSWORD, "gotrue_meta_security": {"captcha_token": "forged"}});
    let body = assert_error(server.post("/signup", bad).await, 400, "captcha_failed").await;
    assert_eq!(body["message"], "captcha protection: request disallowed (invalid-input-response)");
    assert_eq!(server.actors.users.count().await.unwrap(), 0, "nothing created without a captcha");

    let good = json!({"email": email, "password": PASSWORD, "gotrue_meta_security": {"captcha_token": "good-token"}});
    let resp = server.post("/signup", good).await;
    assert_eq!(resp.status(), 200);
    let session: serde_json::Value = resp.json().await.unwrap();

    for route in ["/otp", "/magiclink", "/recover", "/resend"] {
        assert_error(server.post(route, json!({"email": email, "type": "signup"})).await, 400, "captcha_failed").await;
    }
    let login = server.post("/token?grant_type=password", json!({"email": email, "password": PASSWORD})).await;
    assert_error(login, 400, "captcha_failed").await;
    // Grants that follow an earlier check need none.
    assert_eq!(server.refresh(session["refresh_token"].as_str().unwrap()).await.status(), 200);
    // Admin callers skip it.
    let admin = service_role_token();
    let resp = server.post_auth("/signup", &admin, json!({"email": unique_email(), "password": PASSWORD})).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn an_unreachable_captcha_provider_refuses_rather_than_lets_through() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = TestServer::start_with(|c| captcha(c, format!("http://{closed}/siteverify"))).await;
    let body = json!({"email": unique_email(), "password": PASSWORD, "gotrue_meta_security": {"captcha_token": "t"}});
    let resp = server.post("/signup", body).await;
    assert_eq!(resp.status(), 500, "GoTrue: captcha verification process failed");
    assert_eq!(server.actors.users.count().await.unwrap(), 0);
}

#[test]
fn security_settings_we_do_not_implement_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let vars: HashMap<String, String> = [
        ("FERROTRUE_DATA_DIR", dir.path().to_str().unwrap()),
        ("GOTRUE_JWT_SECRET", SECRET),
        ("GOTRUE_SECURITY_DB_ENCRYPTION_ENCRYPT", "true"),
        ("GOTRUE_RATE_LIMIT_PASSKEY", "5"),
        ("GOTRUE_SECURITY_UPDATE_PASSWORD_REQUIRE_CURRENT_PASSWORD", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let err = Config::from_vars(&vars).unwrap_err().to_string();
    assert!(err.contains("GOTRUE_SECURITY_DB_ENCRYPTION_ENCRYPT"), "{err}");
    assert!(err.contains("GOTRUE_RATE_LIMIT_PASSKEY"), "{err}");
    assert!(!err.contains("REQUIRE_CURRENT_PASSWORD"), "an off value is harmless: {err}");
    let ok: HashMap<String, String> = [
        ("FERROTRUE_DATA_DIR", dir.path().to_str().unwrap()),
        ("GOTRUE_JWT_SECRET", SECRET),
        ("GOTRUE_RATE_LIMIT_VERIFY", "60"),
        ("GOTRUE_RATE_LIMIT_HEADER", "X-Forwarded-For"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::from_vars(&ok).unwrap();
    assert_eq!(config.limits.verify, Bucket::per(60.0, Duration::from_secs(300), 30));
    assert_eq!(config.limits.header.as_deref(), Some("X-Forwarded-For"));
}
