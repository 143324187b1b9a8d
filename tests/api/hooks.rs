//! Auth hooks (SPEC §11) against a real HTTP receiver (wiremock) that checks every request's
//! Standard Webhooks signature: custom_access_token, before/after_user_created, send_email,
//! password_verification_attempt, and the transport rules (error contract, timeout, retries,
//! JSON-only answers).

use crate::common::*;
use ferrotrue::config::Config;
use ferrotrue_actors::crypto::Secret;
use ferrotrue_actors::hooks::{sign_v1, HookEndpoint};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &[u8] = b"hook-key-for-tests";

fn secret() -> Secret {
    use base64::Engine;
    Secret(format!("v1,whsec_{}", base64::engine::general_purpose::STANDARD.encode(KEY)))
}

fn endpoint(server: &MockServer, p: &str) -> Option<HookEndpoint> {
    Some(HookEndpoint { uri: format!("{}{p}", server.uri()), secrets: vec![secret()] })
}

/// Bodies the hook received at `p`, after checking each request's signature.
async fn received(server: &MockServer, p: &str) -> Vec<Value> {
    let reqs: Vec<Request> = server.received_requests().await.unwrap_or_default();
    reqs.into_iter()
        .filter(|r| r.url.path() == p)
        .map(|req| {
            let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let body = String::from_utf8(req.body.clone()).unwrap();
            let ts: i64 = header("webhook-timestamp").parse().expect("webhook-timestamp");
            assert_eq!(header("webhook-signature"), sign_v1(KEY, &header("webhook-id"), ts, &body), "signature");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert!(v["metadata"]["uuid"].is_string() && v["metadata"]["name"].is_string(), "{v}");
            v
        })
        .collect()
}

async fn answer(server: &MockServer, p: &str, resp: ResponseTemplate) {
    Mock::given(method("POST")).and(path(p)).respond_with(resp).mount(server).await;
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn refusal(code: u16, message: &str) -> ResponseTemplate {
    ok(json!({"error": {"http_code": code, "message": message}}))
}

async fn user_exists(server: &TestServer, email: &str) -> bool {
    let resp = server
        .request(Method::GET, "/admin/users?per_page=1000")
        .bearer_auth(service_role_token())
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    body["users"].as_array().unwrap().iter().any(|u| u["email"] == email)
}

fn fast(c: &mut Config) {
    c.settings.hooks.attempt_timeout = Duration::from_millis(300);
    c.settings.hooks.total_budget = Duration::from_secs(3);
}

/// The hook's claims are the ones signed, on sign-in and on refresh; it hears the method.
#[tokio::test]
async fn custom_access_token_claims_are_signed_including_refresh() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/claims"))
        .respond_with(|req: &Request| {
            let v: Value = serde_json::from_slice(&req.body).unwrap();
            let mut claims = v["claims"].clone();
            claims["tenant"] = json!("acme");
            claims["role"] = json!("custom_role");
            ResponseTemplate::new(200).set_body_json(json!({"claims": claims}))
        })
        .mount(&hook)
        .await;
    let server = TestServer::start_with(|c| c.settings.hooks.custom_access_token = endpoint(&hook, "/claims")).await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let minted = claims(session["access_token"].as_str().unwrap());
    assert_eq!((minted["tenant"].as_str(), minted["role"].as_str()), (Some("acme"), Some("custom_role")));
    let refreshed: Value = server.refresh(session["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(claims(refreshed["access_token"].as_str().unwrap())["tenant"], "acme");
    let seen = received(&hook, "/claims").await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0]["user_id"], session["user"]["id"]);
    assert_eq!(seen[0]["authentication_method"], "password");
    assert_eq!(seen[1]["authentication_method"], "token_refresh");
    assert!(seen[0]["claims"]["session_id"].is_string() && seen[0]["claims"]["aal"] == "aal1");
    // The token still works on the API.
    let me = server.get_auth("/user", refreshed["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200);
}

/// Claims missing a required field, or of the wrong type, are refused (GoTrue: 500).
#[tokio::test]
async fn custom_access_token_schema_is_enforced() {
    let hook = MockServer::start().await;
    answer(&hook, "/missing", ok(json!({"claims": {"sub": "x"}}))).await;
    answer(&hook, "/nofield", ok(json!({"something": 1}))).await;
    let server = TestServer::start_with(|c| c.settings.hooks.custom_access_token = endpoint(&hook, "/missing")).await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": PASSWORD})).await;
    let body = assert_error(resp, 500, "unexpected_failure").await;
    assert!(body["message"].as_str().unwrap().contains("is required"), "{body}");
    let server = TestServer::start_with(|c| c.settings.hooks.custom_access_token = endpoint(&hook, "/nofield")).await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": PASSWORD})).await;
    let body = assert_error(resp, 500, "unexpected_failure").await;
    assert!(body["message"].as_str().unwrap().contains("claims field is missing"), "{body}");
}

/// before_user_created refusing every creation path: error contract status and message reach
/// the client, and nothing is created. after_user_created hears successful creations only.
#[tokio::test]
async fn before_user_created_rejects_every_creation_path() {
    let hook = MockServer::start().await;
    answer(&hook, "/before", refusal(403, "Sign-ups are closed")).await;
    answer(&hook, "/after", ok(json!({}))).await;
    let server = TestServer::start_with(|c| {
        c.settings.hooks.before_user_created = endpoint(&hook, "/before");
        c.settings.hooks.after_user_created = endpoint(&hook, "/after");
        c.settings.signup.anonymous_enabled = true;
    })
    .await;
    let email = unique_email();
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let body = assert_error(resp, 403, "unknown").await;
    assert_eq!(body["message"], "Sign-ups are closed");
    let otp_email = unique_email();
    assert_error(server.post("/otp", json!({"email": otp_email})).await, 403, "unknown").await;
    assert_error(server.post("/otp", json!({"phone": unique_phone()})).await, 403, "unknown").await;
    assert_error(server.post("/signup", json!({})).await, 403, "unknown").await;
    let admin_email = unique_email();
    let resp = server
        .request(Method::POST, "/admin/users")
        .bearer_auth(service_role_token())
        .json(&json!({"email": admin_email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, "unknown").await;
    let invited = unique_email();
    let resp = server
        .request(Method::POST, "/invite")
        .bearer_auth(service_role_token())
        .json(&json!({"email": invited}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, "unknown").await;
    for e in [&email, &otp_email, &admin_email, &invited] {
        assert!(!user_exists(&server, e).await, "{e} must not exist");
    }
    let seen = received(&hook, "/before").await;
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[0]["user"]["email"], email.as_str());
    assert!(received(&hook, "/after").await.is_empty());
}

#[tokio::test]
async fn before_and_after_user_created_on_success() {
    let hook = MockServer::start().await;
    answer(&hook, "/before", ResponseTemplate::new(204)).await;
    answer(&hook, "/after", ok(json!({}))).await;
    let server = TestServer::start_with(|c| {
        c.settings.hooks.before_user_created = endpoint(&hook, "/before");
        c.settings.hooks.after_user_created = endpoint(&hook, "/after");
    })
    .await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let after = received(&hook, "/after").await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["user"]["id"], session["user"]["id"]);
    assert_eq!(after[0]["metadata"]["name"], "after-user-created");
    assert_eq!(received(&hook, "/before").await[0]["metadata"]["name"], "before-user-created");
    // Signing in again creates nobody: no more hook calls.
    server.login(&email).await;
    assert_eq!(received(&hook, "/after").await.len(), 1);
}

/// send_email replaces SMTP (none configured): the confirmation's token and hash arrive at
/// the hook, and the hash verifies the user.
#[tokio::test]
async fn send_email_replaces_smtp() {
    let hook = MockServer::start().await;
    answer(&hook, "/mail", ok(json!({}))).await;
    let server = TestServer::start_with(|c| {
        c.settings.signup.mailer_autoconfirm = false;
        c.settings.hooks.send_email = endpoint(&hook, "/mail");
    })
    .await;
    let email = unique_email();
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD, "options": {}})).await;
    assert_eq!(resp.status(), 200);
    let mails = received(&hook, "/mail").await;
    assert_eq!(mails.len(), 1);
    let data = &mails[0]["email_data"];
    assert_eq!(data["email_action_type"], "signup");
    assert_eq!(mails[0]["user"]["email"], email.as_str());
    assert_eq!(data["site_url"], "http://localhost:3000");
    assert!(data["token"].as_str().unwrap().len() == 6, "{data}");
    let hash = data["token_hash"].as_str().unwrap();
    let verified = server.post("/verify", json!({"type": "signup", "token_hash": hash})).await;
    assert_eq!(verified.status(), 200);
    // Recovery goes the same way.
    assert_eq!(server.post("/recover", json!({"email": email})).await.status(), 200);
    let mails = received(&hook, "/mail").await;
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[1]["email_data"]["email_action_type"], "recovery");
}

/// A refusal by the send_email hook fails the request with the hook's status.
#[tokio::test]
async fn send_email_refusal_reaches_the_client() {
    let hook = MockServer::start().await;
    answer(&hook, "/mail", refusal(422, "mailbox rejected")).await;
    let server = TestServer::start_with(|c| {
        c.settings.signup.mailer_autoconfirm = false;
        c.settings.hooks.send_email = endpoint(&hook, "/mail");
    })
    .await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": PASSWORD})).await;
    let body = assert_error(resp, 422, "unknown").await;
    assert_eq!(body["message"], "mailbox rejected");
}

/// password_verification_attempt rejecting: 400 invalid_credentials with the hook's message,
/// even for the right password; should_logout_user ends the user's sessions.
#[tokio::test]
async fn password_verification_attempt_reject() {
    let hook = MockServer::start().await;
    answer(&hook, "/pw", ok(json!({"decision": "reject", "message": "Too many attempts", "should_logout_user": true})))
        .await;
    let server =
        TestServer::start_with(|c| c.settings.hooks.password_verification_attempt = endpoint(&hook, "/pw")).await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let resp = server.post("/token?grant_type=password", json!({"email": email, "password": PASSWORD})).await;
    let body = assert_error(resp, 400, "invalid_credentials").await;
    assert_eq!(body["message"], "Too many attempts");
    let wrong = server.post("/token?grant_type=password", json!({"email": email, "password": "wrong-pass-1"})).await;
    assert_error(wrong, 400, "invalid_credentials").await;
    let seen = received(&hook, "/pw").await;
    assert_eq!((seen[0]["valid"].as_bool(), seen[1]["valid"].as_bool()), (Some(true), Some(false)));
    assert_eq!(seen[0]["user_id"], session["user"]["id"]);
    // Logged out everywhere: the signup session's refresh token is dead.
    let refreshed = server.refresh(session["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), 400);
}

#[tokio::test]
async fn password_verification_attempt_continue() {
    let hook = MockServer::start().await;
    answer(&hook, "/pw", ok(json!({"decision": "continue"}))).await;
    let server =
        TestServer::start_with(|c| c.settings.hooks.password_verification_attempt = endpoint(&hook, "/pw")).await;
    let email = unique_email();
    server.signup(&email).await;
    server.login(&email).await;
    let wrong = server.post("/token?grant_type=password", json!({"email": email, "password": "wrong-pass-1"})).await;
    let body = assert_error(wrong, 400, "invalid_credentials").await;
    assert_eq!(body["message"], "Invalid login credentials");
}

/// A hook that does not answer in time: 422 hook_timeout.
#[tokio::test]
async fn timeout_is_hook_timeout() {
    let hook = MockServer::start().await;
    answer(&hook, "/slow", ok(json!({})).set_delay(Duration::from_secs(3))).await;
    let server = TestServer::start_with(|c| {
        fast(c);
        c.settings.hooks.before_user_created = endpoint(&hook, "/slow");
    })
    .await;
    let email = unique_email();
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_error(resp, 422, "hook_timeout").await;
    assert!(!user_exists(&server, &email).await);
}

/// 503 and 429 with retry-after are retried; the next answer counts.
#[tokio::test]
async fn retries_after_503_and_429_with_retry_after() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/after"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .and(path("/after"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&hook)
        .await;
    answer(&hook, "/after", ok(json!({}))).await;
    let server = TestServer::start_with(|c| {
        fast(c);
        c.settings.hooks.after_user_created = endpoint(&hook, "/after");
    })
    .await;
    server.signup(&unique_email()).await;
    assert_eq!(received(&hook, "/after").await.len(), 3);
}

/// 503 without retry-after is not retried (GoTrue: 500); nor is a retry-after past the budget.
#[tokio::test]
async fn unavailable_without_retry_after_fails() {
    let hook = MockServer::start().await;
    answer(&hook, "/plain", ResponseTemplate::new(503)).await;
    answer(&hook, "/later", ResponseTemplate::new(429).insert_header("retry-after", "3600")).await;
    let server = TestServer::start_with(|c| {
        fast(c);
        c.settings.hooks.before_user_created = endpoint(&hook, "/plain");
    })
    .await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": PASSWORD})).await;
    assert_error(resp, 500, "unexpected_failure").await;
    assert_eq!(received(&hook, "/plain").await.len(), 1);
    let server = TestServer::start_with(|c| {
        fast(c);
        c.settings.hooks.before_user_created = endpoint(&hook, "/later");
    })
    .await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": PASSWORD})).await;
    assert_error(resp, 422, "hook_timeout_after_retry").await;
}

/// A 2xx that is not JSON is an error (400 hook_payload_invalid_content_type).
#[tokio::test]
async fn non_json_answer_is_refused() {
    let hook = MockServer::start().await;
    answer(&hook, "/text", ResponseTemplate::new(200).set_body_string("ok")).await;
    let server = TestServer::start_with(|c| c.settings.hooks.before_user_created = endpoint(&hook, "/text")).await;
    let email = unique_email();
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_error(resp, 400, "hook_payload_invalid_content_type").await;
    assert!(!user_exists(&server, &email).await);
}

/// An unreachable hook: retried, then 422 hook_timeout_after_retry.
#[tokio::test]
async fn unreachable_hook_fails_after_retries() {
    let server = TestServer::start_with(|c| {
        fast(c);
        c.settings.hooks.before_user_created =
            Some(HookEndpoint { uri: "http://127.0.0.1:9/unreachable".into(), secrets: vec![secret()] });
    })
    .await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": PASSWORD})).await;
    assert_error(resp, 422, "hook_timeout_after_retry").await;
}

/// A `v1a` (Ed25519) secret signs each request so that the public key verifies it.
#[tokio::test]
async fn asymmetric_v1a_signature_verifies_with_the_public_key() {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
    use base64::Engine;
    let e = base64::engine::general_purpose::STANDARD;
    let seed = [42u8; 32];
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    let raw = format!("v1a,whpk_{}:whsk_{}", e.encode(&public), e.encode(seed));
    let hook = MockServer::start().await;
    answer(&hook, "/after", ok(json!({}))).await;
    let server = TestServer::start_with(|c| {
        c.settings.hooks.after_user_created = Some(HookEndpoint {
            uri: format!("{}/after", hook.uri()),
            secrets: ferrotrue_actors::hooks::parse_secrets(&raw).unwrap(),
        })
    })
    .await;
    server.signup(&unique_email()).await;
    let reqs = hook.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    let header = |n: &str| reqs[0].headers.get(n).unwrap().to_str().unwrap().to_owned();
    let signed =
        format!("{}.{}.{}", header("webhook-id"), header("webhook-timestamp"), String::from_utf8_lossy(&reqs[0].body));
    let sig = e.decode(header("webhook-signature").strip_prefix("v1a,").unwrap()).unwrap();
    UnparsedPublicKey::new(&ED25519, &public).verify(signed.as_bytes(), &sig).expect("Ed25519 signature verifies");
}
