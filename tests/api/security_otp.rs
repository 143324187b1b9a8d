//! Issue 9, part B: one-time codes cannot be guessed, and a copy of the database gives no working
//! link or code. Each test replays an attack that worked before (6-digit codes were brute-forced
//! at /verify with no limit; link tokens were GoTrue's derivable `sha224(email + code)`; the
//! database held those hashes) and shows it failing now.

use crate::common::*;
use crate::smtp::{wait_for_to, SmtpSink};
use ferrotrue::config::Config;
use ferrotrue_actors::otp_issuer::MAX_FAILED_ATTEMPTS;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha224};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The send spacing used here: short, so a test can wait it out.
const SPACING: Duration = Duration::from_millis(1000);

/// Mail server with confirmation off and a short send spacing.
async fn mail_server(tweak: impl FnOnce(&mut Config)) -> (TestServer, SmtpSink) {
    TestServer::start_with_mail(|c| {
        c.settings.signup.mailer_autoconfirm = false;
        c.settings.smtp.max_frequency = SPACING;
        tweak(c);
    })
    .await
}

/// GoTrue's token hash: hex SHA-224 of `address + code`.
fn gotrue_token_hash(address: &str, code: &str) -> String {
    Sha224::digest(format!("{address}{code}").as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` distinct codes of the same length as `real`, none equal to it.
fn wrong_codes(real: &str, n: usize) -> Vec<String> {
    let width = real.len();
    let modulus = 10u64.pow(width as u32);
    let real: u64 = real.parse().expect("numeric code");
    (1..=n as u64).map(|i| format!("{:0width$}", (real + i * 7919) % modulus)).collect()
}

/// The `token` query parameter of a link.
fn link_token(link: &str) -> String {
    let url = url::Url::parse(link).expect("link");
    let token = url.query_pairs().find(|(k, _)| k == "token").map(|(_, v)| v.into_owned());
    token.unwrap_or_else(|| panic!("no token in {link}"))
}

/// A browser that shows redirects instead of following them.
async fn click(link: &str) -> String {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = client.get(link).send().await.expect("click");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "clicking {link}");
    resp.headers()["location"].to_str().unwrap().to_owned()
}

async fn verify(server: &TestServer, body: Value) -> reqwest::Response {
    server.post("/verify", body).await
}

/// A wrong code: 403 `otp_expired` with GoTrue's message.
async fn assert_code_refused(resp: reqwest::Response) {
    let body = assert_error(resp, 403, "otp_expired").await;
    assert_eq!(body["message"], "Token has expired or is invalid");
}

/// A magic-link mail for a confirmed user; returns (code, link).
async fn request_otp(server: &TestServer, sink: &SmtpSink, email: &str, nth: usize) -> (String, String) {
    let resp = server.post("/otp", json!({"email": email})).await;
    assert_eq!(resp.status(), StatusCode::OK, "/otp for {email}");
    let mail = wait_for_to(sink, email, nth).await.remove(nth - 1);
    (mail.otp().expect("a code"), mail.verify_link().expect("a link"))
}

/// A confirmed user (confirmed through their mailed code).
async fn confirmed_user(server: &TestServer, sink: &SmtpSink) -> String {
    let email = unique_email();
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let code = wait_for_to(sink, &email, 1).await[0].otp().expect("a code");
    let resp = verify(server, json!({"type": "signup", "email": email, "token": code})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    email
}

#[tokio::test]
async fn an_email_code_dies_after_five_wrong_guesses() {
    let (server, sink) = mail_server(|_| {}).await;
    let email = confirmed_user(&server, &sink).await;
    tokio::time::sleep(SPACING).await;
    let (code, link) = request_otp(&server, &sink, &email, 2).await;
    for wrong in wrong_codes(&code, 5) {
        assert_code_refused(verify(&server, json!({"type": "email", "email": email, "token": wrong})).await).await;
    }
    // The right code (and its link) is dead now.
    assert_code_refused(verify(&server, json!({"type": "email", "email": email, "token": code})).await).await;
    let resp = verify(&server, json!({"type": "magiclink", "token_hash": link_token(&link)})).await;
    assert_eq!(assert_error(resp, 403, "otp_expired").await["message"], "Email link is invalid or has expired");
    // A new code needs a new mail, which waits for the send spacing ...
    let resp = server.post("/otp", json!({"email": email})).await;
    assert_error(resp, 429, "over_email_send_rate_limit").await;
    // ... and then works with a fresh count.
    tokio::time::sleep(SPACING).await;
    let (code, _) = request_otp(&server, &sink, &email, 3).await;
    let resp = verify(&server, json!({"type": "email", "email": email, "token": code})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let session: Value = resp.json().await.unwrap();
    assert_eq!(session["user"]["email"], email.as_str());
    assert_eq!(MAX_FAILED_ATTEMPTS, 5, "the documented default");
}

#[tokio::test]
async fn guessing_from_many_addresses_counts_against_the_same_target() {
    let (server, sink) = mail_server(|_| {}).await;
    let email = unique_email();
    // A sign-up confirmation code this time (type `signup`).
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let code = wait_for_to(&sink, &email, 1).await[0].otp().unwrap();
    for (i, wrong) in wrong_codes(&code, 5).into_iter().enumerate() {
        let resp = server
            .request(Method::POST, "/verify")
            .header("X-Forwarded-For", format!("203.0.113.{}", i + 1))
            .header("X-Real-IP", format!("198.51.100.{}", i + 1))
            .json(&json!({"type": "signup", "email": email, "token": wrong}))
            .send()
            .await
            .unwrap();
        assert_code_refused(resp).await;
    }
    let resp = server
        .request(Method::POST, "/verify")
        .header("X-Forwarded-For", "192.0.2.77")
        .json(&json!({"type": "signup", "email": email, "token": code}))
        .send()
        .await
        .unwrap();
    assert_code_refused(resp).await;
    let login = server.post("/token?grant_type=password", json!({"email": email, "password": PASSWORD})).await;
    assert_error(login, 400, "email_not_confirmed").await;
}

#[tokio::test]
async fn fewer_than_five_wrong_guesses_leave_the_code_usable_and_other_targets_untouched() {
    let (server, sink) = mail_server(|_| {}).await;
    let (victim, bystander) = (unique_email(), unique_email());
    for email in [&victim, &bystander] {
        server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    }
    let code = wait_for_to(&sink, &victim, 1).await[0].otp().unwrap();
    let other = wait_for_to(&sink, &bystander, 1).await[0].otp().unwrap();
    for wrong in wrong_codes(&code, MAX_FAILED_ATTEMPTS as usize - 1) {
        assert_code_refused(verify(&server, json!({"type": "signup", "email": victim, "token": wrong})).await).await;
    }
    // Guesses against the victim do not count against anyone else.
    for wrong in wrong_codes(&code, 5) {
        if wrong != other {
            let resp = verify(&server, json!({"type": "signup", "email": victim, "token": wrong})).await;
            assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        }
    }
    let resp = verify(&server, json!({"type": "signup", "email": bystander, "token": other})).await;
    assert_eq!(resp.status(), StatusCode::OK, "the bystander's code still works");
    // A fresh victim (a new server state is not needed: a new address has its own count).
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let code = wait_for_to(&sink, &email, 1).await[0].otp().unwrap();
    for wrong in wrong_codes(&code, MAX_FAILED_ATTEMPTS as usize - 1) {
        assert_code_refused(verify(&server, json!({"type": "signup", "email": email, "token": wrong})).await).await;
    }
    let resp = verify(&server, json!({"type": "signup", "email": email, "token": code})).await;
    assert_eq!(resp.status(), StatusCode::OK, "4 wrong guesses leave the code usable");
}

#[tokio::test]
async fn the_wrong_guess_count_survives_a_restart() {
    let (server, sink) = mail_server(|_| {}).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let code = wait_for_to(&sink, &email, 1).await[0].otp().unwrap();
    let wrong = wrong_codes(&code, 5);
    for w in &wrong[..3] {
        assert_code_refused(verify(&server, json!({"type": "signup", "email": email, "token": w})).await).await;
    }
    let server = server.restart().await;
    for w in &wrong[3..] {
        assert_code_refused(verify(&server, json!({"type": "signup", "email": email, "token": w})).await).await;
    }
    assert_code_refused(verify(&server, json!({"type": "signup", "email": email, "token": code})).await).await;
}

// ---------------------------------------------------------------------------------------------
// SMS codes
// ---------------------------------------------------------------------------------------------

async fn hook_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    server
}

/// The OTPs the hook received, in order.
async fn hook_codes(server: &MockServer) -> Vec<String> {
    let mut out = Vec::new();
    for req in server.received_requests().await.unwrap_or_default() {
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        out.push(v["sms"]["otp"].as_str().unwrap().to_owned());
    }
    out
}

#[tokio::test]
async fn an_sms_code_dies_after_five_wrong_guesses() {
    let hook = hook_server().await;
    let uri = format!("{}/sms", hook.uri());
    let server = TestServer::start_with(|c| {
        c.settings.signup.sms_autoconfirm = false;
        c.settings.sms.hook = Some(crate::phone::sms_hook(uri));
        c.settings.sms.max_frequency = SPACING;
    })
    .await;
    let phone = unique_phone();
    assert_eq!(server.post("/otp", json!({"phone": phone})).await.status(), StatusCode::OK);
    let code = hook_codes(&hook).await.pop().expect("a code");
    for (i, wrong) in wrong_codes(&code, 5).into_iter().enumerate() {
        let resp = server
            .request(Method::POST, "/verify")
            .header("X-Forwarded-For", format!("203.0.113.{}", i + 1))
            .json(&json!({"type": "sms", "phone": phone, "token": wrong}))
            .send()
            .await
            .unwrap();
        assert_code_refused(resp).await;
    }
    assert_code_refused(verify(&server, json!({"type": "sms", "phone": phone, "token": code})).await).await;
    // A new code after the SMS spacing, with a fresh count.
    tokio::time::sleep(SPACING).await;
    assert_eq!(server.post("/otp", json!({"phone": phone})).await.status(), StatusCode::OK);
    let code = hook_codes(&hook).await.pop().expect("a second code");
    let resp = verify(&server, json!({"type": "sms", "phone": format!("+{phone}"), "token": code})).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_phone_change_code_dies_after_five_wrong_guesses() {
    let hook = hook_server().await;
    let uri = format!("{}/sms", hook.uri());
    let server = TestServer::start_with(|c| {
        c.settings.signup.sms_autoconfirm = false;
        c.settings.sms.hook = Some(crate::phone::sms_hook(uri));
    })
    .await;
    let session = server.signup(&unique_email()).await;
    let access = session["access_token"].as_str().unwrap();
    let phone = unique_phone();
    assert_eq!(server.put_auth("/user", access, json!({"phone": phone})).await.status(), StatusCode::OK);
    let code = hook_codes(&hook).await.pop().expect("a code");
    for wrong in wrong_codes(&code, 5) {
        let resp = verify(&server, json!({"type": "phone_change", "phone": phone, "token": wrong})).await;
        assert_code_refused(resp).await;
    }
    assert_code_refused(verify(&server, json!({"type": "phone_change", "phone": phone, "token": code})).await).await;
    let me: Value = server.get_auth("/user", access).await.json().await.unwrap();
    assert_ne!(me["phone"], phone.as_str(), "the number was not changed");
}

// ---------------------------------------------------------------------------------------------
// Reauthentication nonce
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_reauthentication_nonce_dies_after_five_wrong_guesses() {
    let (server, sink) = TestServer::start_with_mail(|c| {
        c.settings.security.update_password_require_reauthentication = true;
        c.settings.smtp.max_frequency = SPACING;
    })
    .await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let id = session["user"]["id"].as_str().unwrap();
    // A token without a session: the password change needs a nonce.
    let token = sign(
        &json!({"sub": id, "role": "authenticated", "aud": "authenticated", "email": email,
                "exp": now_secs() + 3600, "iat": now_secs()}),
        SECRET,
        jsonwebtoken::Algorithm::HS256,
    );
    assert_eq!(server.get_auth("/reauthenticate", &token).await.status(), StatusCode::OK);
    let nonce = wait_for_to(&sink, &email, 1).await[0].otp().expect("a nonce");
    for wrong in wrong_codes(&nonce, 5) {
        let resp = server.put_auth("/user", &token, json!({"password": "new-password-77", "nonce": wrong})).await;
        let err = assert_error(resp, 422, "reauthentication_not_valid").await;
        assert_eq!(err["message"], "Nonce has expired or is invalid");
    }
    let resp = server.put_auth("/user", &token, json!({"password": "new-password-77", "nonce": nonce})).await;
    assert_error(resp, 422, "reauthentication_not_valid").await;
    let login = server.post("/token?grant_type=password", json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(login.status(), StatusCode::OK, "password unchanged");
    // A new nonce after the spacing works.
    tokio::time::sleep(SPACING).await;
    assert_eq!(server.get_auth("/reauthenticate", &token).await.status(), StatusCode::OK);
    let nonce = wait_for_to(&sink, &email, 2).await[1].otp().expect("a second nonce");
    let resp = server.put_auth("/user", &token, json!({"password": "new-password-77", "nonce": nonce})).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Link tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_link_token_cannot_be_derived_from_the_address_and_the_code() {
    let (server, sink) = mail_server(|_| {}).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    let (code, link) = (mail.otp().unwrap(), mail.verify_link().unwrap());
    let real = link_token(&link);
    assert_eq!(real.len(), 56);
    assert!(real.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)), "{real}");
    let derived = gotrue_token_hash(&email, &code);
    assert_ne!(real, derived);
    for forged in [derived.clone(), format!("pkce_{derived}")] {
        for vtype in ["signup", "email"] {
            let resp = verify(&server, json!({"type": vtype, "token_hash": forged})).await;
            let err = assert_error(resp, 403, "otp_expired").await;
            assert_eq!(err["message"], "Email link is invalid or has expired");
        }
        let location = click(&link.replace(&real, &forged)).await;
        assert!(location.contains("error_code=otp_expired"), "{location}");
    }
    // The mailed link works.
    let location = click(&link).await;
    assert!(location.contains("access_token="), "{location}");

    // PKCE: the `pkce_`-prefixed token is random too.
    let (email, challenge) = (unique_email(), "c".repeat(43));
    let body =
        json!({"email": email, "password": PASSWORD, "code_challenge": challenge, "code_challenge_method": "plain"});
    assert_eq!(server.post("/signup", body).await.status(), StatusCode::OK);
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    let (code, real) = (mail.otp().unwrap(), link_token(&mail.verify_link().unwrap()));
    assert!(real.starts_with("pkce_") && real.len() == 61, "{real}");
    let derived = gotrue_token_hash(&email, &code);
    for forged in [derived.clone(), format!("pkce_{derived}")] {
        let resp = verify(&server, json!({"type": "signup", "token_hash": forged})).await;
        assert_error(resp, 403, "otp_expired").await;
    }
    let resp = verify(&server, json!({"type": "signup", "token_hash": real})).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn generate_link_hands_out_a_random_hashed_token_that_works() {
    let (server, _sink) = mail_server(|_| {}).await;
    let email = unique_email();
    let admin = service_role_token();
    let resp = server
        .post_auth("/admin/generate_link", &admin, json!({"type": "signup", "email": email, "password": PASSWORD}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let link: Value = resp.json().await.unwrap();
    let props = if link["properties"].is_object() { &link["properties"] } else { &link };
    let (hashed, code) = (props["hashed_token"].as_str().unwrap(), props["email_otp"].as_str().unwrap());
    assert_ne!(hashed, gotrue_token_hash(&email, code));
    let resp = verify(&server, json!({"type": "signup", "token_hash": gotrue_token_hash(&email, code)})).await;
    assert_error(resp, 403, "otp_expired").await;
    let resp = verify(&server, json!({"type": "signup", "token_hash": hashed})).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_copy_of_the_database_holds_no_working_link_or_code() {
    // 10-digit codes make an accidental match in unrelated bytes negligible.
    let (server, sink) = mail_server(|c| c.settings.otp.length = 10).await;
    let email = unique_email();
    server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let mail = wait_for_to(&sink, &email, 1).await.remove(0);
    let (code, link) = (mail.otp().unwrap(), mail.verify_link().unwrap());
    assert_eq!(code.len(), 10);
    let token = link_token(&link);
    let derived = gotrue_token_hash(&email, &code);
    // Stop the server (everything flushed), then read the data directory as an attacker would.
    let server = server.restart().await;
    let files = stored_data(&server).await;
    assert!(!files.is_empty());
    for (file, bytes) in &files {
        for (what, secret) in [("link token", &token), ("code", &code), ("sha224(email+code)", &derived)] {
            assert!(!contains(bytes, secret), "{} holds the {what}", file.display());
        }
    }
    // The stored MACs still verify the real link after the restart.
    let resp = verify(&server, json!({"type": "signup", "token_hash": token})).await;
    assert_eq!(resp.status(), StatusCode::OK);
}
