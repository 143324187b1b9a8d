//! Email flows end to end through a real SMTP server (the in-harness sink speaks SMTP over TCP).
//!
//! Covered: sign-up confirmation (link, code, token hash, reuse, wrong type, expiry, parameter
//! validation), redirect targets, link scanners, magic link / OTP, recovery, resend, send
//! throttling and the global budget, invites, email change (secure and not), reauthentication,
//! PKCE, restarts in the middle of a flow, SMTP failures, and custom templates (inline, file,
//! URL, broken).

use crate::common::*;
use crate::smtp::{wait_for, wait_for_to, Received, SmtpSink};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn signup_confirmation_link_signs_in() {
    let (server, sink) = TestServer::start_with_mail(|c| c.settings.signup.mailer_autoconfirm = false).await;
    let email = unique_email();
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(resp.status(), 200);
    let user: Value = resp.json().await.unwrap();
    assert!(user["access_token"].is_null());
    assert!(user["confirmation_sent_at"].is_string());
    let mails = wait_for(&sink, 1).await;
    assert_eq!(mails[0].to, vec![email.clone()]);
    assert_eq!(mails[0].subject(), "Confirm Your Email");
    let link = mails[0].verify_link().expect("a link");
    assert!(link.contains("type=signup"), "{link}");
    // Click the link (do not follow the redirect).
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = no_redirects.get(&link).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("http://localhost:3000#access_token="), "{location}");
    assert!(location.contains("&type=signup"), "{location}");
    // Now the password works, and the link is spent.
    server.login(&email).await;
    let again = no_redirects.get(&link).send().await.unwrap();
    let location = again.headers()["location"].to_str().unwrap();
    assert!(location.contains("error_code=otp_expired"), "{location}");
}

#[tokio::test]
async fn signup_code_verifies_over_post() {
    let (server, sink) = TestServer::start_with_mail(|c| c.settings.signup.mailer_autoconfirm = false).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let code = wait_for(&sink, 1).await[0].code().expect("a code");
    let wrong = server.post("/verify", json!({"type": "signup", "email": email, "token": "000000x"})).await;
    assert_error(wrong, 403, "otp_expired").await;
    let resp = server.post("/verify", json!({"type": "signup", "email": email, "token": code})).await;
    assert_eq!(resp.status(), 200);
    let session: Value = resp.json().await.unwrap();
    assert!(session["access_token"].is_string());
    assert!(session["user"]["email_confirmed_at"].is_string());
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// GoTrue's `GOTRUE_SITE_URL` default (and `Config::for_tests`).
const SITE: &str = "http://localhost:3000";
/// GoTrue's answer to the first of two secure email-change confirmations.
const HALF_DONE: &str = "Confirmation link accepted. Please proceed to confirm link sent to the other email";
/// Another password that satisfies the default policy.
const NEW_PASSWORD: &str = "battery-staple-42";

/// A browser that shows us the redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// Opens a mail link as a browser would; asserts the 303 and returns its `Location`.
async fn click(link: &str) -> String {
    let resp = browser().get(link).send().await.expect("click");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "clicking {link}");
    resp.headers()["location"].to_str().expect("location").to_owned()
}

/// A query parameter of `url`, decoded.
fn query(url: &str, key: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let found = parsed.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned());
    found
}

/// The `token` of a mail link.
fn link_token(link: &str) -> String {
    query(link, "token").unwrap_or_else(|| panic!("no token in {link}"))
}

/// The fragment of a redirect as ordered key/value pairs.
fn fragment(location: &str) -> Vec<(String, String)> {
    let f = location.split_once('#').map_or("", |(_, f)| f);
    url::form_urlencoded::parse(f.as_bytes()).into_owned().collect()
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Asserts GoTrue's implicit-flow success redirect to `target` for `vtype` and returns the
/// access token: `#access_token=…&expires_at=…&expires_in=…&refresh_token=…&sb=&token_type=bearer&type=…`.
fn assert_session_redirect(location: &str, target: &str, vtype: &str) -> String {
    let (base, _) = location.split_once('#').unwrap_or_else(|| panic!("no fragment in {location}"));
    assert_eq!(base, target, "{location}");
    let pairs = fragment(location);
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["access_token", "expires_at", "expires_in", "refresh_token", "sb", "token_type", "type"],
        "{location}"
    );
    assert_eq!(param(&pairs, "sb"), Some(""));
    assert_eq!(param(&pairs, "token_type"), Some("bearer"));
    assert_eq!(param(&pairs, "type"), Some(vtype));
    let expires_in: i64 = param(&pairs, "expires_in").and_then(|v| v.parse().ok()).expect("expires_in");
    let expires_at: i64 = param(&pairs, "expires_at").and_then(|v| v.parse().ok()).expect("expires_at");
    assert_eq!(expires_in, 3600);
    assert!((expires_at - now_secs() - expires_in).abs() <= 5, "{location}");
    assert!(param(&pairs, "refresh_token").is_some_and(|r| r.len() >= 12), "{location}");
    let access = param(&pairs, "access_token").expect("access_token").to_owned();
    assert_eq!(access.split('.').count(), 3, "a JWT: {access}");
    access
}

/// Asserts GoTrue's error redirect to `target`: `#error=access_denied&error_code=<code>&error_description=…`
/// (403 errors map to `access_denied`).
fn assert_error_redirect(location: &str, target: &str, code: &str) {
    let (base, _) = location.split_once('#').unwrap_or_else(|| panic!("no fragment in {location}"));
    assert_eq!(base, target, "{location}");
    let pairs = fragment(location);
    assert_eq!(param(&pairs, "error"), Some("access_denied"), "{location}");
    assert_eq!(param(&pairs, "error_code"), Some(code), "{location}");
    assert!(param(&pairs, "error_description").is_some_and(|d| !d.is_empty()), "{location}");
    assert!(param(&pairs, "access_token").is_none(), "{location}");
}

/// `GET /user` with `token`; asserts 200.
async fn get_user(server: &TestServer, token: &str) -> Value {
    let resp = server.get_auth("/user", token).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET /user");
    resp.json().await.expect("json")
}

/// Password grant with any credentials; the raw response.
async fn login_with(server: &TestServer, email: &str, password: &str) -> reqwest::Response {
    server.post("/token?grant_type=password", json!({"email": email, "password": password})).await
}

/// `POST /verify` that must succeed with a Session; returns it.
async fn verify_ok(server: &TestServer, body: Value) -> Value {
    let resp = server.post("/verify", body.clone()).await;
    assert_eq!(resp.status(), StatusCode::OK, "POST /verify {body}");
    let session: Value = resp.json().await.expect("json");
    assert!(session["access_token"].is_string(), "{session}");
    assert_eq!(session["token_type"], "bearer", "{session}");
    assert!(session["refresh_token"].is_string(), "{session}");
    session
}

/// Signs `email` up on an autoconfirm-off server and confirms it with the mailed code;
/// returns the Session.
async fn confirmed_session(server: &TestServer, sink: &SmtpSink, email: &str) -> Value {
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mails = wait_for_to(sink, email, 1).await;
    let code = mails.last().and_then(Received::otp).expect("a code");
    verify_ok(server, json!({"type": "signup", "email": email, "token": code})).await
}

/// A user token without `session_id` (as hand-made or long-lived tokens are).
fn sessionless_token(user_id: &str, email: &str) -> String {
    sign(
        &json!({"sub": user_id, "role": "authenticated", "aud": "authenticated", "email": email,
                "exp": now_secs() + 3600, "iat": now_secs()}),
        SECRET,
        jsonwebtoken::Algorithm::HS256,
    )
}

/// Asserts that no mail arrived beyond the `before` already in the sink.
async fn assert_no_new_mail(sink: &SmtpSink, before: usize) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    let now = sink.messages();
    assert_eq!(now.len(), before, "unexpected mail: {:?}", now.last().map(Received::subject));
}

/// Unpadded base64url (RFC 4648 §5).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A 64-character verifier and its S256 challenge.
fn pkce_pair() -> (String, String) {
    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    assert_eq!(verifier.len(), 64);
    let challenge = base64url(&ferrotrue_actors::crypto::sha256(verifier.as_bytes()));
    assert_eq!(challenge.len(), 43);
    assert!(ferrotrue_actors::oauth_flow::pkce_matches("s256", &challenge, &verifier));
    (verifier, challenge)
}

async fn pkce_exchange(server: &TestServer, auth_code: &str, verifier: &str) -> reqwest::Response {
    server.post("/token?grant_type=pkce", json!({"auth_code": auth_code, "code_verifier": verifier})).await
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// A tiny HTTP server: `200` with `body` for every path except `/missing` (404). Returns its base
/// URL and the request paths it saw.
async fn serve_http(body: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
                let (status, body) = if path == "/missing" { ("404 Not Found", "nope") } else { ("200 OK", body) };
                if let Ok(mut seen) = record.lock() {
                    seen.push(path);
                }
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (base, seen)
}

/// Starts a server directly (no harness) and returns the start-up error text.
async fn startup_error(tweak: impl FnOnce(&mut ferrotrue::config::Config)) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ferrotrue::config::Config::for_tests(dir.path());
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    match ferrotrue::start(listener, config).await {
        Ok(server) => {
            server.stop().await;
            panic!("the server started despite the broken template");
        }
        Err(e) => e.to_string(),
    }
}

/// A server with mail, autoconfirm off and no per-user send spacing.
async fn unthrottled(tweak: impl FnOnce(&mut ferrotrue::config::Config)) -> (TestServer, SmtpSink) {
    TestServer::start_with_mail(|c| {
        c.settings.signup.mailer_autoconfirm = false;
        c.settings.smtp.max_frequency = Duration::ZERO;
        tweak(c);
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Sign-up confirmation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn signup_link_redirects_with_gotrue_fragment_and_a_working_session() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let user: Value = resp.json().await.unwrap();
    assert!(user["email_confirmed_at"].is_null(), "{user}");
    // Unconfirmed: no password login yet.
    assert_error(login_with(&server, &email, PASSWORD).await, 400, "email_not_confirmed").await;

    let mails = wait_for_to(&sink, &email, 1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].from, "auth@example.com");
    assert_eq!(mails[0].subject(), "Confirm Your Email");
    let link = mails[0].verify_link().expect("a link");
    assert!(link.starts_with(&format!("{}/verify?", server.base)), "{link}");
    assert_eq!(query(&link, "type").as_deref(), Some("signup"));
    let token = link_token(&link);
    assert_eq!(token.len(), 56, "hex SHA-224: {token}");
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
    let code = mails[0].otp().expect("a code");
    assert_eq!(code.len(), 6);
    assert!(mails[0].body().contains(&code));

    let access = assert_session_redirect(&click(&link).await, SITE, "signup");
    let c = verified_claims(&access);
    assert_eq!(c["email"], email.as_str());
    assert_eq!(c["amr"][0]["method"], "otp", "{c}");
    assert!(c["session_id"].is_string(), "{c}");
    let me = get_user(&server, &access).await;
    assert_eq!(me["id"], user["id"]);
    assert!(me["email_confirmed_at"].is_string(), "{me}");
    assert!(me["confirmation_sent_at"].is_null() || me["confirmation_sent_at"].is_string());
    assert_eq!(me["identities"][0]["identity_data"]["email_verified"], true, "{me}");
    assert_eq!(me["user_metadata"]["email_verified"], true, "{me}");
    server.login(&email).await;
    // The code died with the link: any confirmation clears the user's tokens.
    let again = server.post("/verify", json!({"type": "signup", "email": email, "token": code})).await;
    assert_error(again, 403, "otp_expired").await;
}

#[tokio::test]
async fn signup_code_verifies_with_type_email() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let code = wait_for_to(&sink, &email, 1).await[0].otp().expect("a code");
    // Addresses are matched case-insensitively.
    let session = verify_ok(&server, json!({"type": "email", "email": email.to_uppercase(), "token": code})).await;
    assert_eq!(session["user"]["email"], email.as_str());
    assert!(session["user"]["email_confirmed_at"].is_string());
    assert_eq!(verified_claims(session["access_token"].as_str().unwrap())["amr"][0]["method"], "otp");
    // Single use.
    let again = server.post("/verify", json!({"type": "email", "email": email, "token": code})).await;
    let body = assert_error(again, 403, "otp_expired").await;
    assert_eq!(body["message"], "Token has expired or is invalid");
    server.login(&email).await;
}

#[tokio::test]
async fn signup_token_hash_verifies_over_post() {
    let (server, sink) = unthrottled(|_| {}).await;
    let (a, b) = (unique_email(), unique_email());
    for email in [&a, &b] {
        server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    }
    let hash_a = link_token(&wait_for_to(&sink, &a, 1).await[0].verify_link().unwrap());
    let hash_b = link_token(&wait_for_to(&sink, &b, 1).await[0].verify_link().unwrap());
    let session = verify_ok(&server, json!({"type": "signup", "token_hash": hash_a})).await;
    assert_eq!(session["user"]["email"], a.as_str());
    assert!(session["user"]["email_confirmed_at"].is_string());
    let reused = server.post("/verify", json!({"type": "signup", "token_hash": hash_a})).await;
    let body = assert_error(reused, 403, "otp_expired").await;
    assert_eq!(body["message"], "Email link is invalid or has expired");
    // `email` accepts a confirmation token hash too.
    let session = verify_ok(&server, json!({"type": "email", "token_hash": hash_b})).await;
    assert_eq!(session["user"]["email"], b.as_str());
    server.login(&a).await;
    server.login(&b).await;
}

#[tokio::test]
async fn reused_link_redirects_with_otp_expired() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
    assert_session_redirect(&click(&link).await, SITE, "signup");
    let location = click(&link).await;
    assert_error_redirect(&location, SITE, "otp_expired");
    assert_eq!(param(&fragment(&location), "error_description"), Some("Email link is invalid or has expired"));
    // A link nobody issued is the same.
    let forged = link.replace(&link_token(&link), &"a".repeat(56));
    assert_error_redirect(&click(&forged).await, SITE, "otp_expired");
}

#[tokio::test]
async fn a_token_used_with_the_wrong_type_is_otp_expired_and_stays_valid() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    let link = mail.verify_link().unwrap();
    let code = mail.otp().unwrap();
    let hash = link_token(&link);
    // (signup and invite share the confirmation token, as magiclink and recovery share the
    // recovery token, so only the other columns are wrong.)
    for wrong in ["recovery", "magiclink", "email_change"] {
        let location = click(&link.replace("type=signup", &format!("type={wrong}"))).await;
        assert_error_redirect(&location, SITE, "otp_expired");
    }
    for wrong in ["recovery", "magiclink", "email_change"] {
        let resp = server.post("/verify", json!({"type": wrong, "token_hash": hash})).await;
        assert_error(resp, 403, "otp_expired").await;
        let resp = server.post("/verify", json!({"type": wrong, "email": email, "token": code})).await;
        assert_error(resp, 403, "otp_expired").await;
    }
    // None of that burnt the real token.
    assert_session_redirect(&click(&link).await, SITE, "signup");
}

#[tokio::test]
async fn expired_links_and_codes_are_otp_expired() {
    let (server, sink) = unthrottled(|c| c.settings.otp.exp = Duration::from_secs(1)).await;
    let (a, b) = (unique_email(), unique_email());
    for email in [&a, &b] {
        server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    }
    let link = wait_for_to(&sink, &a, 1).await[0].verify_link().unwrap();
    let code = wait_for_to(&sink, &b, 1).await[0].otp().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_error_redirect(&click(&link).await, SITE, "otp_expired");
    let resp = server.post("/verify", json!({"type": "signup", "email": b, "token": code})).await;
    assert_error(resp, 403, "otp_expired").await;
    // Still unconfirmed.
    assert_error(login_with(&server, &a, PASSWORD).await, 400, "email_not_confirmed").await;
    assert_error(login_with(&server, &b, PASSWORD).await, 400, "email_not_confirmed").await;
}

#[tokio::test]
async fn get_verify_without_type_or_token_is_a_400_not_a_redirect() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let token = link_token(&wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap());
    for path in [
        format!("/verify?token={token}"),
        format!("/verify?token={token}&type="),
        "/verify?type=signup".to_owned(),
        "/verify?token=&type=signup".to_owned(),
        "/verify".to_owned(),
        format!("/verify?token={token}&type=bogus"),
    ] {
        let resp = server.request(Method::GET, &path).send().await.unwrap();
        assert!(resp.headers().get("location").is_none(), "{path}");
        let body = assert_error(resp, 400, "validation_failed").await;
        assert!(body["message"].as_str().unwrap().contains("erif"), "{path}: {body}");
    }
    // The token was not touched.
    let link = format!("{}/verify?token={token}&type=signup", server.base);
    assert_session_redirect(&click(&link).await, SITE, "signup");
}

#[tokio::test]
async fn post_verify_parameter_validation() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    let (hash, code) = (link_token(&mail.verify_link().unwrap()), mail.otp().unwrap());
    let cases = [
        (
            json!({"type": "signup", "email": email, "token": code, "token_hash": hash}),
            "either a token or a token hash",
        ),
        (json!({"type": "signup", "email": email}), "either a token or a token hash"),
        (json!({"type": "signup", "token": code}), "email address or phone number"),
        (json!({"type": "signup", "email": email, "phone": "15555550100", "token": code}), "email address or phone"),
        (json!({"type": "signup", "token_hash": hash, "email": email}), "Only the token_hash and type"),
        (json!({"type": "signup", "token_hash": hash, "redirect_to": SITE}), "Only the token_hash and type"),
        (json!({"email": email, "token": code}), "verification type"),
        (json!({"type": "", "token_hash": hash}), "verification type"),
    ];
    for (body, message) in cases {
        let resp = server.post("/verify", body.clone()).await;
        let err = assert_error(resp, 400, "validation_failed").await;
        assert!(err["message"].as_str().unwrap().contains(message), "{body}: {err}");
    }
    let resp = server.post("/verify", json!({"type": "bogus", "token_hash": hash})).await;
    assert_error(resp, 400, "validation_failed").await;
    let resp = server.post("/verify", json!({"type": "signup", "email": "not-an-email", "token": code})).await;
    let err = assert_error(resp, 422, "validation_failed").await;
    assert_eq!(err["message"], "Invalid email format");
    // Nothing above consumed the token.
    verify_ok(&server, json!({"type": "signup", "token_hash": hash})).await;
}

// ---------------------------------------------------------------------------------------------
// redirect_to
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn redirect_to_on_the_site_url_host_is_used_in_link_and_redirect() {
    let (server, sink) = unthrottled(|_| {}).await;
    for target in ["http://localhost:3000/welcome", "http://localhost:5173/auth/callback"] {
        let email = unique_email();
        let path = format!("/signup?redirect_to={}", urlencode(target));
        server.post(&path, json!({"email": email, "password": PASSWORD})).await;
        let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
        assert_eq!(query(&link, "redirect_to").as_deref(), Some(target), "{link}");
        assert_session_redirect(&click(&link).await, target, "signup");
        // Errors go to the same target.
        assert_error_redirect(&click(&link).await, target, "otp_expired");
    }
}

#[tokio::test]
async fn redirect_to_matching_an_allow_list_glob_is_used() {
    let (server, sink) =
        unthrottled(|c| c.settings.mail.uri_allow_list = vec!["http://app.example.com/**".into()]).await;
    let target = "http://app.example.com/auth/callback/deep";
    let email = unique_email();
    let resp = server
        .request(Method::POST, &format!("/signup?redirect_to={}", urlencode(target)))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
    assert_eq!(query(&link, "redirect_to").as_deref(), Some(target));
    assert_session_redirect(&click(&link).await, target, "signup");
}

#[tokio::test]
async fn a_disallowed_redirect_to_falls_back_to_the_site_url() {
    let (server, sink) =
        unthrottled(|c| c.settings.mail.uri_allow_list = vec!["http://app.example.com/*".into()]).await;
    // `*` stays inside one path segment; other hosts never match.
    for refused in ["https://evil.example/steal", "http://app.example.com/a/b", "http://10.0.0.1/"] {
        let email = unique_email();
        server
            .post(&format!("/signup?redirect_to={}", urlencode(refused)), json!({"email": email, "password": PASSWORD}))
            .await;
        let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
        let in_link = query(&link, "redirect_to");
        assert!(in_link.is_none() || in_link.as_deref() == Some(SITE), "{refused} leaked into {link}");
        assert_session_redirect(&click(&link).await, SITE, "signup");
    }
    // A link whose redirect_to was tampered with after mailing still only goes to the site URL.
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
    let token = link_token(&link);
    let tampered =
        format!("{}/verify?token={token}&type=signup&redirect_to={}", server.base, urlencode("https://evil.example/x"));
    assert_session_redirect(&click(&tampered).await, SITE, "signup");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// Link scanners (SPEC §12.5)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn head_and_prefetch_do_not_consume_a_link() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
    let scanner = browser();
    let head = scanner.head(&link).send().await.unwrap();
    assert!(head.status().is_success(), "HEAD: {}", head.status());
    assert!(head.headers().get("location").is_none());
    for (name, value) in [("Sec-Purpose", "prefetch"), ("Purpose", "prefetch"), ("Sec-Purpose", "prefetch;prerender")] {
        let resp = scanner.get(&link).header(name, value).send().await.unwrap();
        assert!(resp.status().is_success(), "{name}: {value}: {}", resp.status());
        assert!(resp.headers().get("location").is_none(), "{name}: {value}");
    }
    // Still unconfirmed, and the real click signs in.
    assert_error(login_with(&server, &email, PASSWORD).await, 400, "email_not_confirmed").await;
    assert_session_redirect(&click(&link).await, SITE, "signup");
}

// ---------------------------------------------------------------------------------------------
// Magic link / OTP
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn magic_link_and_otp_codes_sign_in_a_confirmed_user() {
    let (server, sink) = TestServer::start_with_mail(|c| c.settings.smtp.max_frequency = Duration::ZERO).await;
    let email = unique_email();
    server.signup(&email).await; // autoconfirm: confirmed, no mail
    assert!(sink.messages().is_empty());

    let resp = server.post("/magiclink", json!({"email": email})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    assert_eq!(mail.subject(), "Your Magic Link");
    let link = mail.verify_link().unwrap();
    assert_eq!(query(&link, "type").as_deref(), Some("magiclink"));
    let access = assert_session_redirect(&click(&link).await, SITE, "magiclink");
    assert_eq!(verified_claims(&access)["amr"][0]["method"], "otp");
    assert_eq!(get_user(&server, &access).await["email"], email.as_str());

    // POST /otp is the same mail; its code works with type magiclink ...
    let resp = server.post("/otp", json!({"email": email})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
    let mail = wait_for_to(&sink, &email, 2).await.remove(1);
    assert_eq!(mail.subject(), "Your Magic Link");
    assert_eq!(query(&mail.verify_link().unwrap(), "type").as_deref(), Some("magiclink"));
    let code = mail.otp().unwrap();
    let session = verify_ok(&server, json!({"type": "magiclink", "email": email, "token": code})).await;
    assert_eq!(session["user"]["email"], email.as_str());
    let reused = server.post("/verify", json!({"type": "magiclink", "email": email, "token": code})).await;
    assert_error(reused, 403, "otp_expired").await;

    // ... and with type email.
    server.post("/otp", json!({"email": email})).await;
    let mail = wait_for_to(&sink, &email, 3).await.remove(2);
    let code = mail.otp().unwrap();
    // A magic-link code is not a sign-up code.
    let wrong = server.post("/verify", json!({"type": "signup", "email": email, "token": code})).await;
    assert_error(wrong, 403, "otp_expired").await;
    let session = verify_ok(&server, json!({"type": "email", "email": email, "token": code})).await;
    assert_eq!(session["user"]["email"], email.as_str());

    // A newer magic link replaces the older one.
    server.post("/magiclink", json!({"email": email})).await;
    server.post("/magiclink", json!({"email": email})).await;
    let mails = wait_for_to(&sink, &email, 5).await;
    let (older, newer) = (mails[3].verify_link().unwrap(), mails[4].verify_link().unwrap());
    assert_error_redirect(&click(&older).await, SITE, "otp_expired");
    assert_session_redirect(&click(&newer).await, SITE, "magiclink");
}

#[tokio::test]
async fn otp_for_an_unknown_address_signs_up_with_a_confirmation_mail() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    let resp = server.post("/otp", json!({"email": email, "data": {"name": "Ann"}})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
    let stored = server.actors.users.by_email(&email).await.unwrap().expect("user created");
    assert!(stored.email_confirmed_at.is_none());
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    assert_eq!(mail.subject(), "Confirm Your Email");
    let link = mail.verify_link().unwrap();
    assert_eq!(query(&link, "type").as_deref(), Some("signup"));
    let access = assert_session_redirect(&click(&link).await, SITE, "signup");
    let me = get_user(&server, &access).await;
    assert_eq!(me["id"], stored.id.to_string());
    assert!(me["email_confirmed_at"].is_string());
    assert_eq!(me["user_metadata"]["name"], "Ann", "{me}");
    // /magiclink for another unknown address does the same.
    let other = unique_email();
    server.post("/magiclink", json!({"email": other})).await;
    assert_eq!(wait_for_to(&sink, &other, 1).await[0].subject(), "Confirm Your Email");
    // Now confirmed, the next /otp is a magic link.
    server.post("/otp", json!({"email": email})).await;
    assert_eq!(wait_for_to(&sink, &email, 2).await[1].subject(), "Your Magic Link");
}

#[tokio::test]
async fn otp_for_an_unknown_address_under_autoconfirm_sends_a_magic_link() {
    let (server, sink) = TestServer::start_with_mail(|_| {}).await;
    let email = unique_email();
    let resp = server.post("/otp", json!({"email": email})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    assert_eq!(mail.subject(), "Your Magic Link");
    let session = verify_ok(&server, json!({"type": "magiclink", "email": email, "token": mail.otp().unwrap()})).await;
    assert!(session["user"]["email_confirmed_at"].is_string());
}

#[tokio::test]
async fn otp_and_magiclink_input_errors() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    let resp = server.post("/otp", json!({"email": email, "create_user": false})).await;
    let err = assert_error(resp, 422, "otp_disabled").await;
    assert_eq!(err["message"], "Signups not allowed for otp");
    assert!(server.actors.users.by_email(&email).await.unwrap().is_none(), "no user created");
    let resp = server.post("/otp", json!({"email": email, "phone": "15555550100"})).await;
    assert_error(resp, 400, "validation_failed").await;
    let resp = server.post("/otp", json!({})).await;
    let err = assert_error(resp, 400, "validation_failed").await;
    assert_eq!(err["message"], "One of email or phone must be set");
    let resp = server.post("/otp", json!({"email": email, "channel": "sms"})).await;
    assert_error(resp, 400, "validation_failed").await;
    let resp = server.post("/magiclink", json!({})).await;
    assert_error(resp, 422, "validation_failed").await;
    let resp = server.post("/magiclink", json!({"email": "no-at-sign"})).await;
    assert_error(resp, 400, "validation_failed").await;
    assert_no_new_mail(&sink, 0).await;
}

#[tokio::test]
async fn magic_links_disabled_is_email_provider_disabled() {
    let (server, sink) = unthrottled(|c| c.settings.mail.magic_link_enabled = false).await;
    let email = unique_email();
    for path in ["/magiclink", "/otp"] {
        let resp = server.post(path, json!({"email": email})).await;
        assert_error(resp, 422, "email_provider_disabled").await;
    }
    assert!(server.actors.users.by_email(&email).await.unwrap().is_none());
    assert_no_new_mail(&sink, 0).await;
}

// ---------------------------------------------------------------------------------------------
// Recovery
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn recover_mails_known_addresses_only_and_signs_in() {
    let (server, sink) = TestServer::start_with_mail(|c| c.settings.smtp.max_frequency = Duration::ZERO).await;
    let unknown = unique_email();
    let resp = server.post("/recover", json!({"email": unknown})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
    assert_no_new_mail(&sink, 0).await;
    assert!(server.actors.users.by_email(&unknown).await.unwrap().is_none());

    let email = unique_email();
    server.signup(&email).await;
    let resp = server.post("/recover", json!({"email": email})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    assert_eq!(mail.subject(), "Reset Your Password");
    let link = mail.verify_link().unwrap();
    assert_eq!(query(&link, "type").as_deref(), Some("recovery"));
    let access = assert_session_redirect(&click(&link).await, SITE, "recovery");
    // The recovery session can set a new password.
    let resp = server.put_auth("/user", &access, json!({"password": NEW_PASSWORD})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(login_with(&server, &email, NEW_PASSWORD).await.status(), StatusCode::OK);

    // The code works over POST with type recovery.
    server.post("/recover", json!({"email": email})).await;
    let code = wait_for_to(&sink, &email, 2).await[1].otp().unwrap();
    let session = verify_ok(&server, json!({"type": "recovery", "email": email, "token": code})).await;
    assert_eq!(session["user"]["email"], email.as_str());

    for body in [json!({}), json!({"email": ""}), json!({"email": "   "})] {
        let resp = server.post("/recover", body).await;
        assert_error(resp, 400, "validation_failed").await;
    }
    assert_no_new_mail(&sink, 2).await;
}

// ---------------------------------------------------------------------------------------------
// Resend
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn resend_signup_replaces_the_confirmation_and_is_silent_otherwise() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let first = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
    let resp = server.post("/resend", json!({"type": "signup", "email": email})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
    let mails = wait_for_to(&sink, &email, 2).await;
    assert_eq!(mails[1].subject(), "Confirm Your Email");
    let second = mails[1].verify_link().unwrap();
    assert_ne!(link_token(&first), link_token(&second));
    // One live confirmation token per user: the first link is dead, the second works.
    assert_error_redirect(&click(&first).await, SITE, "otp_expired");
    assert_session_redirect(&click(&second).await, SITE, "signup");

    // Confirmed, unknown: `{}` and no mail.
    let before = sink.messages().len();
    for target in [email.clone(), unique_email()] {
        let resp = server.post("/resend", json!({"type": "signup", "email": target})).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
    }
    // No pending email change: `{}` too.
    let resp = server.post("/resend", json!({"type": "email_change", "email": email})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_no_new_mail(&sink, before).await;

    for body in [json!({"type": "magiclink", "email": email}), json!({"email": email}), json!({"type": "bogus"})] {
        let resp = server.post("/resend", body.clone()).await;
        let err = assert_error(resp, 400, "validation_failed").await;
        assert!(err["message"].as_str().unwrap().contains("signup, email_change, sms, phone_change"), "{body}: {err}");
    }
    assert_no_new_mail(&sink, before).await;
}

// ---------------------------------------------------------------------------------------------
// Throttling
// ---------------------------------------------------------------------------------------------

/// The N of "…only request this after N seconds."
fn wait_seconds(message: &str) -> u64 {
    let rest = message.split("after ").nth(1).unwrap_or_else(|| panic!("no 'after N seconds' in {message:?}"));
    let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert!(rest[n.len()..].starts_with(" seconds"), "{message:?}");
    n.parse().expect("a number")
}

#[tokio::test]
async fn confirmation_mails_are_spaced_by_max_frequency() {
    // GOTRUE_SMTP_MAX_FREQUENCY default: 60 s.
    let (server, sink) = TestServer::start_with_mail(|c| c.settings.signup.mailer_autoconfirm = false).await;
    assert_eq!(server.config.settings.smtp.max_frequency, Duration::from_secs(60));
    let email = unique_email();
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    wait_for_to(&sink, &email, 1).await;
    let again = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let err = assert_error(again, 429, "over_email_send_rate_limit").await;
    let message = err["message"].as_str().unwrap();
    assert!(message.starts_with("For security purposes, you can only request this after"), "{message}");
    assert!((1..=60).contains(&wait_seconds(message)), "{message}");
    let resend = server.post("/resend", json!({"type": "signup", "email": email})).await;
    let err = assert_error(resend, 429, "over_email_send_rate_limit").await;
    assert!((1..=60).contains(&wait_seconds(err["message"].as_str().unwrap())));
    // An unknown-user /otp is a sign-up for the same user: throttled too.
    let otp = server.post("/otp", json!({"email": email})).await;
    assert_error(otp, 429, "over_email_send_rate_limit").await;
    assert_no_new_mail(&sink, 1).await;
    // Other users are not affected.
    let other = unique_email();
    assert_eq!(server.post("/signup", json!({"email": other, "password": PASSWORD})).await.status(), 200);
    wait_for_to(&sink, &other, 1).await;
}

#[tokio::test]
async fn magic_links_and_recovery_share_one_frequency_timer() {
    let (server, sink) = TestServer::start_with_mail(|_| {}).await;
    let email = unique_email();
    server.signup(&email).await;
    assert_eq!(server.post("/recover", json!({"email": email})).await.status(), StatusCode::OK);
    wait_for_to(&sink, &email, 1).await;
    for path in ["/magiclink", "/otp", "/recover"] {
        let resp = server.post(path, json!({"email": email})).await;
        let err = assert_error(resp, 429, "over_email_send_rate_limit").await;
        assert!((1..=60).contains(&wait_seconds(err["message"].as_str().unwrap())), "{path}");
    }
    assert_no_new_mail(&sink, 1).await;
}

#[tokio::test]
async fn the_global_email_budget_is_enforced() {
    let (server, sink) = TestServer::start_with_mail(|c| {
        c.settings.signup.mailer_autoconfirm = false;
        c.settings.mail.email_budget = Some((1, Duration::from_secs(3600)));
    })
    .await;
    let (a, b) = (unique_email(), unique_email());
    assert_eq!(server.post("/signup", json!({"email": a, "password": PASSWORD})).await.status(), 200);
    wait_for_to(&sink, &a, 1).await;
    let resp = server.post("/signup", json!({"email": b, "password": PASSWORD})).await;
    let err = assert_error(resp, 429, "over_email_send_rate_limit").await;
    assert!(err["message"].as_str().unwrap().to_lowercase().contains("email rate limit exceeded"), "{err}");
    let resp = server.post("/recover", json!({"email": a})).await;
    assert_error(resp, 429, "over_email_send_rate_limit").await;
    assert_no_new_mail(&sink, 1).await;
    // The refused sign-up left no send stamp (it can be retried once the budget allows).
    let user = server.actors.users.by_email(&b).await.unwrap();
    assert!(user.is_none_or(|u| u.confirmation_sent_at.is_none()));
}

// ---------------------------------------------------------------------------------------------
// Invite
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invite_mails_a_link_that_signs_in_and_confirms() {
    // Invites bypass GOTRUE_DISABLE_SIGNUP.
    let (server, sink) = TestServer::start_with_mail(|c| c.settings.signup.disable_signup = true).await;
    let admin = service_role_token();
    let email = unique_email();
    let resp = server.post_auth("/invite", &admin, json!({"email": email, "data": {"team": "blue"}})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let user: Value = resp.json().await.unwrap();
    assert_eq!(user["email"], email.as_str());
    assert!(user["invited_at"].is_string(), "{user}");
    assert!(user["confirmation_sent_at"].is_string(), "{user}");
    assert!(user["email_confirmed_at"].is_null(), "{user}");
    assert_eq!(user["user_metadata"]["team"], "blue", "{user}");

    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    assert_eq!(mail.subject(), "You have been invited");
    // The default invite body names the site URL before the link.
    let link = mail.find_verify_link().unwrap();
    assert_eq!(query(&link, "type").as_deref(), Some("invite"));
    let access = assert_session_redirect(&click(&link).await, SITE, "invite");
    let me = get_user(&server, &access).await;
    assert_eq!(me["id"], user["id"]);
    assert!(me["email_confirmed_at"].is_string(), "{me}");
    assert!(me["invited_at"].is_string(), "{me}");

    // Confirmed now: a second invite is refused.
    let resp = server.post_auth("/invite", &admin, json!({"email": email})).await;
    let err = assert_error(resp, 422, "email_exists").await;
    assert_eq!(err["message"], "A user with this email address has already been registered");

    // Only admins.
    let user_token = sessionless_token(user["id"].as_str().unwrap(), &email);
    let resp = server.post_auth("/invite", &user_token, json!({"email": unique_email()})).await;
    assert_error(resp, 403, "not_admin").await;
    let resp = server.post("/invite", json!({"email": unique_email()})).await;
    assert_error(resp, 401, "no_authorization").await;
    let forged =
        sign(&json!({"role": "service_role"}), "another-secret-that-is-long-enough!!", jsonwebtoken::Algorithm::HS256);
    let resp = server.post_auth("/invite", &forged, json!({"email": unique_email()})).await;
    assert_error(resp, 403, "bad_jwt").await;
    assert_no_new_mail(&sink, 1).await;
}

#[tokio::test]
async fn invite_code_verifies_over_post_and_an_unconfirmed_user_can_be_reinvited() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    wait_for_to(&sink, &email, 1).await;
    let resp = server.post_auth("/invite", &service_role_token(), json!({"email": email})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mail = wait_for_to(&sink, &email, 2).await.remove(1);
    assert_eq!(mail.subject(), "You have been invited");
    let session = verify_ok(&server, json!({"type": "invite", "email": email, "token": mail.otp().unwrap()})).await;
    assert!(session["user"]["email_confirmed_at"].is_string());
    assert!(session["user"]["invited_at"].is_string());
}

// ---------------------------------------------------------------------------------------------
// Email change
// ---------------------------------------------------------------------------------------------

/// A confirmed user who asked to move from `old` to `new`: (session, mail to old, mail to new).
async fn pending_secure_change(server: &TestServer, sink: &SmtpSink) -> (Value, String, String, Received, Received) {
    let (old, new) = (unique_email(), unique_email());
    let session = confirmed_session(server, sink, &old).await;
    let access = session["access_token"].as_str().unwrap();
    let resp = server.put_auth("/user", access, json!({"email": new})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let user: Value = resp.json().await.unwrap();
    assert_eq!(user["email"], old.as_str(), "{user}");
    assert_eq!(user["new_email"], new.as_str(), "{user}");
    assert!(user["email_change_sent_at"].is_string(), "{user}");
    let to_new = wait_for_to(sink, &new, 1).await.remove(0);
    let to_old = wait_for_to(sink, &old, 2).await.remove(1); // [0] is the sign-up confirmation
    for mail in [&to_new, &to_old] {
        assert_eq!(mail.subject(), "Confirm Email Change");
        assert_eq!(query(&mail.verify_link().unwrap(), "type").as_deref(), Some("email_change"));
    }
    assert_ne!(to_new.otp(), to_old.otp());
    (session, old, new, to_old, to_new)
}

async fn assert_email_changed(server: &TestServer, access: &str, old: &str, new: &str) {
    let me = get_user(server, access).await;
    assert_eq!(me["email"], new, "{me}");
    assert!(me.get("new_email").is_none_or(|v| v.is_null() || v == ""), "{me}");
    assert!(me["email_confirmed_at"].is_string(), "{me}");
    let email_identity = me["identities"].as_array().unwrap().iter().find(|i| i["provider"] == "email").cloned();
    assert_eq!(email_identity.expect("email identity")["identity_data"]["email"], new, "{me}");
    assert_eq!(login_with(server, new, PASSWORD).await.status(), StatusCode::OK);
    assert_error(login_with(server, old, PASSWORD).await, 400, "invalid_credentials").await;
}

#[tokio::test]
async fn secure_email_change_needs_both_links() {
    let (server, sink) = unthrottled(|_| {}).await;
    let (session, old, new, to_old, to_new) = pending_secure_change(&server, &sink).await;
    let access = session["access_token"].as_str().unwrap();
    // First link (to the current address): GoTrue's message, nothing applied yet.
    let location = click(&to_old.verify_link().unwrap()).await;
    let (base, _) = location.split_once('#').expect("fragment");
    assert_eq!(base, SITE, "{location}");
    let pairs = fragment(&location);
    assert_eq!(param(&pairs, "message"), Some(HALF_DONE), "{location}");
    assert!(param(&pairs, "access_token").is_none());
    let me = get_user(&server, access).await;
    assert_eq!(me["email"], old.as_str());
    assert_eq!(me["new_email"], new.as_str());
    // Second link applies it.
    let access = assert_session_redirect(&click(&to_new.verify_link().unwrap()).await, SITE, "email_change");
    assert_eq!(verified_claims(&access)["email"], new.as_str());
    assert_email_changed(&server, &access, &old, &new).await;
}

#[tokio::test]
async fn secure_email_change_over_post_verify() {
    let (server, sink) = unthrottled(|_| {}).await;
    let (session, old, new, to_old, to_new) = pending_secure_change(&server, &sink).await;
    let access = session["access_token"].as_str().unwrap();
    // Either order works; here the new address first.
    let resp = server
        .post("/verify", json!({"type": "email_change", "token_hash": link_token(&to_new.verify_link().unwrap())}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"msg": HALF_DONE, "code": "200"}));
    assert_eq!(get_user(&server, access).await["email"], old.as_str());
    let hash = link_token(&to_old.verify_link().unwrap());
    let done = verify_ok(&server, json!({"type": "email_change", "token_hash": hash})).await;
    assert_eq!(done["user"]["email"], new.as_str());
    assert_email_changed(&server, done["access_token"].as_str().unwrap(), &old, &new).await;
}

#[tokio::test]
async fn secure_email_change_codes_verify_with_their_own_address() {
    // GoTrue looks the user up by current *or* pending address for email_change codes
    // (FindUserForEmailChange), so the code mailed to the new address is verified with it.
    let (server, sink) = unthrottled(|_| {}).await;
    let (_, old, new, to_old, to_new) = pending_secure_change(&server, &sink).await;
    let resp =
        server.post("/verify", json!({"type": "email_change", "email": old, "token": to_old.otp().unwrap()})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"msg": HALF_DONE, "code": "200"}));
    let done = verify_ok(&server, json!({"type": "email_change", "email": new, "token": to_new.otp().unwrap()})).await;
    assert_email_changed(&server, done["access_token"].as_str().unwrap(), &old, &new).await;
}

#[tokio::test]
async fn email_change_without_secure_mode_needs_one_link() {
    let (server, sink) = unthrottled(|c| c.settings.mail.secure_email_change = false).await;
    let (old, new) = (unique_email(), unique_email());
    let session = confirmed_session(&server, &sink, &old).await;
    let resp = server.put_auth("/user", session["access_token"].as_str().unwrap(), json!({"email": new})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap()["new_email"], new.as_str());
    let mail = wait_for_to(&sink, &new, 1).await.remove(0);
    assert_eq!(mail.subject(), "Confirm Email Change");
    assert_no_new_mail(&sink, 2).await; // sign-up confirmation + this one; nothing to the old address
    assert_eq!(sink.to(&old).len(), 1);
    let access = assert_session_redirect(&click(&mail.verify_link().unwrap()).await, SITE, "email_change");
    assert_email_changed(&server, &access, &old, &new).await;
}

#[tokio::test]
async fn under_autoconfirm_both_addresses_are_mailed_and_one_link_completes_the_change() {
    // GoTrue: secure email change mails the current address too, also under autoconfirm; there,
    // either link alone completes the change (emailChangeVerify skips the two-step).
    let (server, sink) = unthrottled(|c| c.settings.signup.mailer_autoconfirm = true).await;
    let (old, new) = (unique_email(), unique_email());
    let session = server.signup(&old).await;
    let resp = server.put_auth("/user", session["access_token"].as_str().unwrap(), json!({"email": new})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap()["new_email"], new.as_str());
    let to_new = wait_for_to(&sink, &new, 1).await.remove(0);
    let to_old = wait_for_to(&sink, &old, 1).await.remove(0);
    for mail in [&to_new, &to_old] {
        assert_eq!(mail.subject(), "Confirm Email Change");
    }
    let access = assert_session_redirect(&click(&to_new.verify_link().unwrap()).await, SITE, "email_change");
    assert_email_changed(&server, &access, &old, &new).await;
    // The other link is spent with the change.
    let location = click(&to_old.verify_link().unwrap()).await;
    assert!(location.contains("error_code=otp_expired"), "{location}");
}

#[tokio::test]
async fn email_change_to_a_taken_address_is_email_exists() {
    let (server, sink) = unthrottled(|_| {}).await;
    let (me, other) = (unique_email(), unique_email());
    let session = confirmed_session(&server, &sink, &me).await;
    confirmed_session(&server, &sink, &other).await;
    let before = sink.messages().len();
    let access = session["access_token"].as_str().unwrap();
    let resp = server.put_auth("/user", access, json!({"email": other.to_uppercase()})).await;
    let err = assert_error(resp, 422, "email_exists").await;
    assert_eq!(err["message"], "A user with this email address has already been registered");
    assert_no_new_mail(&sink, before).await;
    let user = get_user(&server, access).await;
    assert_eq!(user["email"], me.as_str());
    assert!(user.get("new_email").is_none_or(|v| v.is_null() || v == ""), "{user}");
}

#[tokio::test]
async fn resend_email_change_mails_the_pending_change_again() {
    let (server, sink) = unthrottled(|_| {}).await;
    let (_, old, new, _, first_to_new) = pending_secure_change(&server, &sink).await;
    let resp = server.post("/resend", json!({"type": "email_change", "email": old})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let again = wait_for_to(&sink, &new, 2).await.remove(1);
    assert_eq!(again.subject(), "Confirm Email Change");
    assert_ne!(link_token(&again.verify_link().unwrap()), link_token(&first_to_new.verify_link().unwrap()));
    wait_for_to(&sink, &old, 3).await;
}

// ---------------------------------------------------------------------------------------------
// Reauthentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn password_change_without_a_fresh_session_needs_a_mailed_nonce() {
    let (server, sink) = TestServer::start_with_mail(|c| {
        c.settings.security.update_password_require_reauthentication = true;
    })
    .await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let id = session["user"]["id"].as_str().unwrap();
    let token = sessionless_token(id, &email);

    let resp = server.put_auth("/user", &token, json!({"password": NEW_PASSWORD})).await;
    let err = assert_error(resp, 400, "reauthentication_needed").await;
    assert_eq!(err["message"], "Password update requires reauthentication");

    let resp = server.get_auth("/reauthenticate", &token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    assert_eq!(mail.subject(), "Confirm reauthentication");
    assert!(mail.verify_link().is_none(), "a code, not a link");
    let nonce = mail.otp().expect("a nonce");
    assert_eq!(nonce.len(), 6);
    // Spaced like every other mail.
    let again = server.get_auth("/reauthenticate", &token).await;
    assert_error(again, 429, "over_email_send_rate_limit").await;

    let wrong = if nonce == "000000" { "111111" } else { "000000" };
    let resp = server.put_auth("/user", &token, json!({"password": NEW_PASSWORD, "nonce": wrong})).await;
    let err = assert_error(resp, 422, "reauthentication_not_valid").await;
    assert_eq!(err["message"], "Nonce has expired or is invalid");
    assert_eq!(login_with(&server, &email, PASSWORD).await.status(), StatusCode::OK, "password unchanged");

    let resp = server.put_auth("/user", &token, json!({"password": NEW_PASSWORD, "nonce": nonce})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(login_with(&server, &email, NEW_PASSWORD).await.status(), StatusCode::OK);
    assert_error(login_with(&server, &email, PASSWORD).await, 400, "invalid_credentials").await;
    // A nonce is single use.
    let resp = server.put_auth("/user", &token, json!({"password": "third-pass-77", "nonce": nonce})).await;
    assert_error(resp, 422, "reauthentication_not_valid").await;
}

#[tokio::test]
async fn a_fresh_session_changes_the_password_without_a_nonce() {
    let (server, sink) = TestServer::start_with_mail(|c| {
        c.settings.security.update_password_require_reauthentication = true;
    })
    .await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let resp =
        server.put_auth("/user", session["access_token"].as_str().unwrap(), json!({"password": NEW_PASSWORD})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(login_with(&server, &email, NEW_PASSWORD).await.status(), StatusCode::OK);
    assert_no_new_mail(&sink, 0).await;
}

#[tokio::test]
async fn reauthenticate_requires_a_confirmed_email() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let user: Value = resp.json().await.unwrap();
    wait_for_to(&sink, &email, 1).await;
    let token = sessionless_token(user["id"].as_str().unwrap(), &email);
    let resp = server.get_auth("/reauthenticate", &token).await;
    let err = assert_error(resp, 422, "email_not_confirmed").await;
    assert_eq!(err["message"], "Please verify your email first.");
    let resp = server.request(Method::GET, "/reauthenticate").send().await.unwrap();
    assert_error(resp, 401, "no_authorization").await;
    assert_no_new_mail(&sink, 1).await;
}

// ---------------------------------------------------------------------------------------------
// PKCE
// ---------------------------------------------------------------------------------------------

/// The `?code=` of a PKCE redirect to `target` (no tokens in the fragment).
fn assert_code_redirect(location: &str, target: &str) -> String {
    let (base, query_string) = location.split_once('?').unwrap_or_else(|| panic!("no query in {location}"));
    assert_eq!(base, target, "{location}");
    assert!(!location.contains("access_token"), "{location}");
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query_string.as_bytes()).into_owned().collect();
    let code = param(&pairs, "code").unwrap_or_else(|| panic!("no code in {location}")).to_owned();
    assert!(uuid::Uuid::parse_str(&code).is_ok(), "auth codes are UUIDs: {code}");
    code
}

#[tokio::test]
async fn pkce_signup_link_gives_a_code_for_one_exchange() {
    let (server, sink) = unthrottled(|_| {}).await;
    let (verifier, challenge) = pkce_pair();
    let email = unique_email();
    let body =
        json!({"email": email, "password": PASSWORD, "code_challenge": challenge, "code_challenge_method": "s256"});
    let resp = server.post("/signup", body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
    let token = link_token(&link);
    assert!(token.starts_with("pkce_"), "{token}");
    assert_eq!(token.len(), "pkce_".len() + 56);

    let auth_code = assert_code_redirect(&click(&link).await, SITE);
    // Missing or wrong parameters do not use the code up.
    for body in [json!({"auth_code": auth_code}), json!({"code_verifier": verifier}), json!({})] {
        let resp = server.post("/token?grant_type=pkce", body).await;
        assert_error(resp, 400, "validation_failed").await;
    }
    let (other_verifier, _) = pkce_pair();
    let resp = pkce_exchange(&server, &auth_code, &other_verifier).await;
    assert_error(resp, 400, "bad_code_verifier").await;

    let resp = pkce_exchange(&server, &auth_code, &verifier).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let session: Value = resp.json().await.unwrap();
    assert_eq!(session["token_type"], "bearer");
    assert!(session["refresh_token"].is_string());
    assert_eq!(session["user"]["email"], email.as_str());
    assert!(session["user"]["email_confirmed_at"].is_string());
    let c = verified_claims(session["access_token"].as_str().unwrap());
    assert_eq!(c["amr"][0]["method"], "email/signup", "{c}");
    assert_eq!(get_user(&server, session["access_token"].as_str().unwrap()).await["email"], email.as_str());

    let resp = pkce_exchange(&server, &auth_code, &verifier).await;
    assert_error(resp, 404, "flow_state_not_found").await;
    let resp = pkce_exchange(&server, &uuid::Uuid::new_v4().to_string(), &verifier).await;
    assert_error(resp, 404, "flow_state_not_found").await;
}

#[tokio::test]
async fn pkce_recovery_link_gives_a_code() {
    let (server, sink) = TestServer::start_with_mail(|_| {}).await;
    let email = unique_email();
    server.signup(&email).await;
    let (verifier, challenge) = pkce_pair();
    let target = "http://localhost:3000/reset?step=2";
    let resp = server
        .post(
            &format!("/recover?redirect_to={}", urlencode(target)),
            json!({"email": email, "code_challenge": challenge, "code_challenge_method": "S256"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
    assert!(link_token(&link).starts_with("pkce_"));
    let location = click(&link).await;
    // Added to the target's own query.
    assert!(location.starts_with("http://localhost:3000/reset?"), "{location}");
    assert_eq!(query(&location, "step").as_deref(), Some("2"), "{location}");
    let auth_code = query(&location, "code").expect("code");
    let resp = pkce_exchange(&server, &auth_code, &verifier).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let session: Value = resp.json().await.unwrap();
    assert_eq!(verified_claims(session["access_token"].as_str().unwrap())["amr"][0]["method"], "recovery");
    // A reused PKCE link: the error is in the query as well as the fragment.
    let location = click(&link).await;
    assert_eq!(query(&location, "error_code").as_deref(), Some("otp_expired"), "{location}");
    assert_eq!(query(&location, "error").as_deref(), Some("access_denied"), "{location}");
    assert_eq!(param(&fragment(&location), "error_code"), Some("otp_expired"), "{location}");
}

#[tokio::test]
async fn pkce_tokens_verified_over_post_give_a_session() {
    // POST /verify always answers with a session in GoTrue (verifyPost has no PKCE branch); the
    // SSR "token_hash" email template pattern relies on it.
    let (server, sink) = unthrottled(|_| {}).await;
    let (_, challenge) = pkce_pair();
    let (a, b) = (unique_email(), unique_email());
    for email in [&a, &b] {
        let body =
            json!({"email": email, "password": PASSWORD, "code_challenge": challenge, "code_challenge_method": "s256"});
        assert_eq!(server.post("/signup", body).await.status(), StatusCode::OK);
    }
    // The typed-in code.
    let code = wait_for_to(&sink, &a, 1).await[0].otp().unwrap();
    let session = verify_ok(&server, json!({"type": "signup", "email": a, "token": code})).await;
    assert_eq!(session["user"]["email"], a.as_str());
    // The pkce_-prefixed token hash.
    let hash = link_token(&wait_for_to(&sink, &b, 1).await[0].verify_link().unwrap());
    assert!(hash.starts_with("pkce_"));
    let session = verify_ok(&server, json!({"type": "signup", "token_hash": hash})).await;
    assert_eq!(session["user"]["email"], b.as_str());
}

#[tokio::test]
async fn pkce_parameters_are_validated() {
    let (server, sink) = unthrottled(|_| {}).await;
    let (_, challenge) = pkce_pair();
    let email = unique_email();
    let bad = [
        json!({"code_challenge": challenge}),
        json!({"code_challenge_method": "s256"}),
        json!({"code_challenge": "too-short", "code_challenge_method": "s256"}),
        json!({"code_challenge": challenge, "code_challenge_method": "md5"}),
    ];
    for extra in bad {
        let mut signup = json!({"email": email, "password": PASSWORD});
        let mut otp = json!({"email": email});
        let mut recover = json!({"email": email});
        for body in [&mut signup, &mut otp, &mut recover] {
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
        }
        for (path, body) in [("/signup", signup), ("/otp", otp), ("/recover", recover)] {
            let resp = server.post(path, body.clone()).await;
            assert_error(resp, 400, "validation_failed").await;
        }
    }
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD, "code_challenge": challenge})).await;
    let err = assert_error(resp, 400, "validation_failed").await;
    assert_eq!(err["message"], "PKCE flow requires code_challenge_method and code_challenge");
    assert!(server.actors.users.by_email(&email).await.unwrap().is_none());
    assert_no_new_mail(&sink, 0).await;
}

// ---------------------------------------------------------------------------------------------
// Restart, SMTP failure
// ---------------------------------------------------------------------------------------------

/// `link` pointed at `server` (a restarted server listens on a new port).
fn relink(link: &str, server: &TestServer) -> String {
    let mut url = url::Url::parse(link).expect("link");
    let base = url::Url::parse(&server.base).expect("base");
    url.set_port(base.port()).expect("port");
    url.to_string()
}

#[tokio::test]
async fn links_and_pkce_flows_survive_a_restart() {
    let (server, sink) = unthrottled(|_| {}).await;
    let (a, b, c) = (unique_email(), unique_email(), unique_email());
    let (verifier, challenge) = pkce_pair();
    server.post("/signup", json!({"email": a, "password": PASSWORD})).await;
    let body = json!({"email": b, "password": PASSWORD, "code_challenge": challenge, "code_challenge_method": "s256"});
    server.post("/signup", body).await;
    server.post("/signup", json!({"email": c, "password": PASSWORD})).await;
    let link_a = wait_for_to(&sink, &a, 1).await[0].verify_link().unwrap();
    let link_b = wait_for_to(&sink, &b, 1).await[0].verify_link().unwrap();
    let code_c = wait_for_to(&sink, &c, 1).await[0].otp().unwrap();

    let server = server.restart().await;
    assert_session_redirect(&click(&relink(&link_a, &server)).await, SITE, "signup");
    let auth_code = assert_code_redirect(&click(&relink(&link_b, &server)).await, SITE);
    // Restart again between the click and the exchange.
    let server = server.restart().await;
    let resp = pkce_exchange(&server, &auth_code, &verifier).await;
    assert_eq!(resp.status(), StatusCode::OK);
    verify_ok(&server, json!({"type": "signup", "email": c, "token": code_c})).await;
    server.login(&a).await;
    server.login(&b).await;
    server.login(&c).await;
}

#[tokio::test]
async fn an_smtp_failure_is_a_clear_500_and_does_not_throttle_the_retry() {
    let port = closed_port();
    let server = TestServer::start_with(|c| {
        c.settings.smtp.host = "127.0.0.1".into();
        c.settings.smtp.port = port;
        c.settings.smtp.admin_email = "auth@example.com".into();
        c.settings.signup.mailer_autoconfirm = false;
    })
    .await;
    let email = unique_email();
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let err = assert_error(resp, 500, "unexpected_failure").await;
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("SMTP"), "{message}");
    assert!(message.contains("confirmation"), "says which mail: {message}");
    // No send stamp: the retry is not throttled.
    let user = server.actors.users.by_email(&email).await.unwrap();
    assert!(user.is_none_or(|u| u.confirmation_sent_at.is_none() && u.email_confirmed_at.is_none()));
    let resp = server.post("/resend", json!({"type": "signup", "email": email})).await;
    let err = assert_error(resp, 500, "unexpected_failure").await;
    assert!(err["message"].as_str().unwrap().contains("SMTP"), "{err}");
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_error(resp, 500, "unexpected_failure").await;
    // Recovery for a confirmed user fails the same way, unthrottled.
    let confirmed = unique_email();
    let resp = server.post("/signup", json!({"email": confirmed, "password": PASSWORD})).await;
    assert_eq!(resp.status(), 500);
    let resp = server.post("/recover", json!({"email": confirmed})).await;
    assert_error(resp, 500, "unexpected_failure").await;
    let resp = server.post("/recover", json!({"email": confirmed})).await;
    assert_error(resp, 500, "unexpected_failure").await;
    // The server is healthy.
    assert_eq!(server.http.get(server.url("/health")).send().await.unwrap().status(), 200);
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

const INLINE_TEMPLATE: &str = r#"<p>{{ .Email }} code {{ .Token }} <a href="{{ .ConfirmationURL }}">x</a></p>"#;

#[tokio::test]
async fn inline_template_and_subject_are_used() {
    let (server, sink) = unthrottled(|c| {
        c.settings.mail.templates = vec![("confirmation".into(), INLINE_TEMPLATE.into())];
        c.settings.mail.subjects = vec![("confirmation".into(), "Welcome {{ .Email }}".into())];
    })
    .await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    assert_eq!(mail.subject(), format!("Welcome {email}"));
    let body = mail.body();
    let code = mail.otp().expect("a code");
    let link = mail.verify_link().expect("a link");
    assert!(body.trim_start().starts_with(&format!("<p>{email} code {code} <a href=")), "{body}");
    assert!(body.trim_end().ends_with(">x</a></p>"), "{body}");
    assert_eq!(query(&link, "type").as_deref(), Some("signup"));
    // Other mails keep their defaults.
    server.post("/recover", json!({"email": email})).await;
    assert_eq!(wait_for_to(&sink, &email, 2).await[1].subject(), "Reset Your Password");
    // The link in the custom template works.
    assert_session_redirect(&click(&link).await, SITE, "signup");
}

#[tokio::test]
async fn template_from_a_file_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invite.html");
    let template = "<h1>From a file</h1>\n<p>Join {{ .SiteURL }}: <a href=\"{{ .ConfirmationURL }}\">accept</a></p>\n\
                    <p>{{ .Token }}</p>\n";
    std::fs::write(&path, template).unwrap();
    let source = path.to_str().unwrap().to_owned();
    let (server, sink) = unthrottled(|c| c.mail_template_sources = vec![("invite".into(), source)]).await;
    let email = unique_email();
    let resp = server.post_auth("/invite", &service_role_token(), json!({"email": email})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    assert_eq!(mail.subject(), "You have been invited");
    let body = mail.body();
    assert!(body.contains("<h1>From a file</h1>"), "{body}");
    assert!(body.contains(&format!("Join {SITE}: ")), "{body}");
    let code = mail.otp().expect("a code");
    verify_ok(&server, json!({"type": "invite", "email": email, "token": code})).await;
}

#[tokio::test]
async fn templates_from_urls_are_fetched_at_start() {
    let (base, seen) =
        serve_http("<h1>From a URL</h1><p>Reset: <a href=\"{{ .ConfirmationURL }}\">go</a> {{ .Token }}</p>").await;
    let absolute = format!("{base}/templates/confirm.html");
    let (server, sink) = unthrottled(|c| {
        c.mail_template_sources = vec![
            ("confirmation".into(), absolute),
            // Relative: resolved against GOTRUE_SITE_URL, as GoTrue does.
            ("recovery".into(), "/templates/recovery.html".into()),
        ];
        c.site_url = base.clone();
        c.settings.mail.site_url = base.clone();
    })
    .await;
    let paths = seen.lock().unwrap().clone();
    assert!(paths.contains(&"/templates/confirm.html".to_owned()), "{paths:?}");
    assert!(paths.contains(&"/templates/recovery.html".to_owned()), "{paths:?}");
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    assert_eq!(mail.subject(), "Confirm Your Email");
    assert!(mail.body().contains("<h1>From a URL</h1>"), "{}", mail.body());
    let code = mail.otp().expect("a code");
    verify_ok(&server, json!({"type": "signup", "email": email, "token": code})).await;
    server.post("/recover", json!({"email": email})).await;
    let mail = wait_for_to(&sink, &email, 2).await.remove(1);
    assert_eq!(mail.subject(), "Reset Your Password");
    assert!(mail.body().contains("<h1>From a URL</h1>"), "{}", mail.body());
    assert_eq!(query(&mail.verify_link().unwrap(), "type").as_deref(), Some("recovery"));
}

#[tokio::test]
async fn broken_templates_stop_the_server_naming_the_variable() {
    let err = startup_error(|c| {
        c.settings.mail.templates = vec![("confirmation".into(), "{{ if .Token }}never closed".into())];
    })
    .await;
    assert!(err.contains("GOTRUE_MAILER_TEMPLATES_CONFIRMATION"), "{err}");

    // The same through GOTRUE_MAILER_TEMPLATES_* sources (inline text).
    let err = startup_error(|c| {
        c.mail_template_sources = vec![("confirmation".into(), "{{ if .Token }}never closed".into())];
    })
    .await;
    assert!(err.contains("GOTRUE_MAILER_TEMPLATES_CONFIRMATION"), "{err}");

    let err = startup_error(|c| {
        c.settings.mail.subjects = vec![("recovery".into(), "{{ if .Email }}Reset".into())];
    })
    .await;
    assert!(err.contains("GOTRUE_MAILER_SUBJECTS_RECOVERY"), "{err}");

    // A URL that does not answer 200.
    let (base, _) = serve_http("unused").await;
    let err = startup_error(|c| c.mail_template_sources = vec![("invite".into(), format!("{base}/missing"))]).await;
    assert!(err.contains("GOTRUE_MAILER_TEMPLATES_INVITE"), "{err}");
    assert!(err.contains("404"), "{err}");

    // A URL nobody serves.
    let url = format!("http://127.0.0.1:{}/t.html", closed_port());
    let err = startup_error(|c| c.mail_template_sources = vec![("magic_link".into(), url)]).await;
    assert!(err.contains("GOTRUE_MAILER_TEMPLATES_MAGIC_LINK"), "{err}");

    // A file path that does not exist and is not template text.
    let err = startup_error(|c| {
        c.mail_template_sources = vec![("recovery".into(), "templates/missing-recovery.html".into())];
    })
    .await;
    assert!(err.contains("GOTRUE_MAILER_TEMPLATES_RECOVERY"), "{err}");
}

#[tokio::test]
async fn a_good_template_still_starts_on_a_directory_a_broken_one_was_refused_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ferrotrue::config::Config::for_tests(dir.path());
    config.settings.mail.templates = vec![("confirmation".into(), "{{ if .Token }}never closed".into())];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = ferrotrue::start(listener, config.clone()).await;
    let message = match refused {
        Ok(server) => {
            server.stop().await;
            panic!("started with a broken template");
        }
        Err(e) => e.to_string(),
    };
    assert!(message.contains("GOTRUE_MAILER_TEMPLATES_CONFIRMATION"), "{message}");
    config.settings.mail.templates = vec![("confirmation".into(), INLINE_TEMPLATE.into())];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = ferrotrue::start(listener, config).await.map_err(|e| e.to_string()).expect("starts");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// More: PKCE flow-state expiry, Referer, template variables, persisted throttle
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn pkce_signup_exchange_expires_with_the_flow_state() {
    // GOTRUE_EXTERNAL_FLOW_STATE_EXPIRY_DURATION counts from the request for sign-ups (SPEC §6.4).
    let (server, sink) = unthrottled(|c| c.settings.flow_state_expiry = Duration::from_secs(1)).await;
    let (verifier, challenge) = pkce_pair();
    let email = unique_email();
    let body =
        json!({"email": email, "password": PASSWORD, "code_challenge": challenge, "code_challenge_method": "s256"});
    server.post("/signup", body).await;
    let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The link itself is still good (OTP expiry is a day) and hands out the code ...
    let auth_code = assert_code_redirect(&click(&link).await, SITE);
    // ... but the flow state is too old to exchange.
    let resp = pkce_exchange(&server, &auth_code, &verifier).await;
    assert_error(resp, 422, "flow_state_expired").await;
}

#[tokio::test]
async fn pkce_magic_link_expiry_counts_from_the_click() {
    // GoTrue: for magic links the flow-state lifetime counts from the moment the auth code was
    // issued (the click), not from the request (FlowState.IsExpired, SPEC §6.4).
    let (server, sink) = TestServer::start_with_mail(|c| c.settings.flow_state_expiry = Duration::from_secs(1)).await;
    let email = unique_email();
    server.signup(&email).await;
    let (verifier, challenge) = pkce_pair();
    let body = json!({"email": email, "code_challenge": challenge, "code_challenge_method": "s256"});
    assert_eq!(server.post("/magiclink", body).await.status(), StatusCode::OK);
    let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
    assert!(link_token(&link).starts_with("pkce_"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let auth_code = assert_code_redirect(&click(&link).await, SITE);
    let resp = pkce_exchange(&server, &auth_code, &verifier).await;
    assert_eq!(resp.status(), StatusCode::OK, "exchange right after the click");
    let session: Value = resp.json().await.unwrap();
    assert_eq!(verified_claims(session["access_token"].as_str().unwrap())["amr"][0]["method"], "magiclink");
}

#[tokio::test]
async fn redirect_target_falls_back_from_query_to_referer() {
    let (server, sink) = unthrottled(|_| {}).await;
    let referer = "http://localhost:3000/signup-page";
    // Only a Referer: it is the target.
    let email = unique_email();
    let resp = server
        .request(Method::POST, "/signup")
        .header("Referer", referer)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
    assert_eq!(query(&link, "redirect_to").as_deref(), Some(referer), "{link}");
    assert_session_redirect(&click(&link).await, referer, "signup");
    // A refused redirect_to falls through to the Referer; an accepted one wins over it.
    for (redirect_to, expected) in
        [("https://evil.example/", referer), ("http://localhost:3000/from-query", "http://localhost:3000/from-query")]
    {
        let email = unique_email();
        server
            .request(Method::POST, &format!("/signup?redirect_to={}", urlencode(redirect_to)))
            .header("Referer", referer)
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
        assert_eq!(query(&link, "redirect_to").as_deref(), Some(expected), "{link}");
    }
}

#[tokio::test]
async fn template_variables_are_filled_in() {
    let confirmation = "<p>site={{ .SiteURL }} redirect={{ .RedirectTo }} hash={{ .TokenHash }} \
                        name={{ .Data.name }} email={{ .Email }}{{ if .Data.vip }} VIP{{ else }} regular{{ end }}</p>\
                        <p>code: {{ .Token }}</p>";
    let email_change = "<p>{{ .Email }} to {{ .NewEmail }} for {{ .SendingTo }}: code: {{ .Token }}</p>\
                        <a href=\"{{ .ConfirmationURL }}\">go</a>";
    let (server, sink) = unthrottled(|c| {
        c.settings.mail.templates =
            vec![("confirmation".into(), confirmation.into()), ("email_change".into(), email_change.into())];
        c.settings.mail.subjects = vec![("email_change".into(), "Move {{ .Email }} to {{ .NewEmail }}".into())];
    })
    .await;
    let email = unique_email();
    let target = "http://localhost:3000/welcome";
    let body = json!({"email": email, "password": PASSWORD, "data": {"name": "Ann"}});
    server.post(&format!("/signup?redirect_to={}", urlencode(target)), body).await;
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    let text = mail.body();
    let hash = text.split("hash=").nth(1).and_then(|r| r.split_whitespace().next()).expect("hash").to_owned();
    assert_eq!(hash.len(), 56, "{text}");
    let expected = format!("<p>site={SITE} redirect={target} hash={hash} name=Ann email={email} regular</p>");
    assert!(text.contains(&expected), "{text}");
    // The {{ .TokenHash }} pattern (SSR apps link to their own page and call verifyOtp).
    let session = verify_ok(&server, json!({"type": "email", "token_hash": hash})).await;
    let access = session["access_token"].as_str().unwrap();

    let new = unique_email();
    assert_eq!(server.put_auth("/user", access, json!({"email": new})).await.status(), StatusCode::OK);
    let to_new = wait_for_to(&sink, &new, 1).await.remove(0);
    let to_old = wait_for_to(&sink, &email, 2).await.remove(1);
    assert_eq!(to_new.subject(), format!("Move {email} to {new}"));
    assert_eq!(to_old.subject(), format!("Move {email} to {new}"));
    assert!(to_new.body().contains(&format!("<p>{email} to {new} for {new}: code: ")), "{}", to_new.body());
    assert!(to_old.body().contains(&format!("<p>{email} to {new} for {email}: code: ")), "{}", to_old.body());
    assert!(to_new.verify_link().is_some_and(|l| l.contains("type=email_change")));
}

#[tokio::test]
async fn send_spacing_survives_a_restart() {
    let (server, sink) = TestServer::start_with_mail(|c| c.settings.signup.mailer_autoconfirm = false).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    wait_for_to(&sink, &email, 1).await;
    let server = server.restart().await;
    let resp = server.post("/resend", json!({"type": "signup", "email": email})).await;
    assert_error(resp, 429, "over_email_send_rate_limit").await;
    assert_no_new_mail(&sink, 1).await;
}

#[tokio::test]
async fn recovery_confirms_an_unconfirmed_user() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    wait_for_to(&sink, &email, 1).await;
    assert_eq!(server.post("/recover", json!({"email": email.to_uppercase()})).await.status(), StatusCode::OK);
    let mail = wait_for_to(&sink, &email, 2).await.remove(1);
    assert_eq!(mail.subject(), "Reset Your Password");
    let access = assert_session_redirect(&click(&mail.verify_link().unwrap()).await, SITE, "recovery");
    assert!(get_user(&server, &access).await["email_confirmed_at"].is_string());
    server.login(&email).await;
}

#[tokio::test]
async fn otp_without_create_user_still_signs_in_an_existing_user() {
    let (server, sink) = unthrottled(|_| {}).await;
    let email = unique_email();
    confirmed_session(&server, &sink, &email).await;
    let resp = server.post("/otp", json!({"email": email, "create_user": false})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mail = wait_for_to(&sink, &email, 2).await.remove(1);
    assert_eq!(mail.subject(), "Your Magic Link");
    verify_ok(&server, json!({"type": "magiclink", "email": email, "token": mail.otp().unwrap()})).await;
}

#[tokio::test]
async fn a_banned_user_cannot_verify_and_keeps_the_token() {
    let (server, sink) = unthrottled(|_| {}).await;
    let admin = service_role_token();
    let email = unique_email();
    let user: Value = server.post("/signup", json!({"email": email, "password": PASSWORD})).await.json().await.unwrap();
    let id = user["id"].as_str().unwrap().to_owned();
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    let (link, code) = (mail.verify_link().unwrap(), mail.otp().unwrap());
    let ban = |duration: &'static str| {
        let (server, admin, id) = (&server, admin.clone(), id.clone());
        async move {
            let path = format!("/admin/users/{id}");
            let resp = server.put_auth(&path, &admin, json!({"ban_duration": duration})).await;
            assert_eq!(resp.status(), StatusCode::OK, "ban_duration {duration}");
        }
    };
    ban("1h").await;
    let location = click(&link).await;
    assert_error_redirect(&location, SITE, "user_banned");
    let resp = server.post("/verify", json!({"type": "signup", "email": email, "token": code})).await;
    assert_error(resp, 403, "user_banned").await;
    // GoTrue refuses inside the verification transaction, so nothing was consumed.
    ban("none").await;
    assert_session_redirect(&click(&link).await, SITE, "signup");
}

#[tokio::test]
async fn get_verify_with_type_email_reports_the_token_kind() {
    // GoTrue's verifyTokenHash turns type `email` into `signup` or `magiclink` (whichever token
    // matched) before building the redirect, so the fragment never says `type=email`.
    let (server, sink) = TestServer::start_with_mail(|c| c.settings.smtp.max_frequency = Duration::ZERO).await;
    let email = unique_email();
    server.signup(&email).await;
    server.post("/magiclink", json!({"email": email})).await;
    let link = wait_for_to(&sink, &email, 1).await[0].verify_link().unwrap();
    let location = click(&link.replace("type=magiclink", "type=email")).await;
    assert_session_redirect(&location, SITE, "magiclink");
}
