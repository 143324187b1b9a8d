//! MFA with phone factors (SPEC §1.17): enroll, challenge (codes through the real send-SMS hook
//! or Twilio, received by an HTTP server in the harness), verify (aal2, `mfa/phone`), the error
//! cases, restarts, insufficient_aal, admin routes, and the SMS-flood attack on a victim number.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::common::*;
use base64::Engine;
use ferrotrue::config::Config;
use ferrotrue_actors::hooks::sign_v1;
use ferrotrue_actors::sms::TwilioSettings;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The key of [`crate::phone::sms_hook`]'s secret.
const HOOK_SECRET: &[u8] = b"hook-secret-for-tests";

async fn hook_server(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({})))
        .mount(&server)
        .await;
    server
}

/// Phone factors on, codes through the send-SMS hook at `hook`.
fn phone_mfa(c: &mut Config, hook: &MockServer) {
    c.settings.mfa.phone_enroll_enabled = true;
    c.settings.mfa.phone_verify_enabled = true;
    c.settings.sms.hook = Some(crate::phone::sms_hook(format!("{}/sms", hook.uri())));
}

/// The `sms` objects the hook received, in order, after checking each signature.
async fn hooked(server: &MockServer) -> Vec<Value> {
    let mut out = Vec::new();
    for req in server.received_requests().await.unwrap_or_default() {
        let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = String::from_utf8(req.body.clone()).unwrap();
        let ts: i64 = header("webhook-timestamp").parse().unwrap();
        assert_eq!(header("webhook-signature"), sign_v1(HOOK_SECRET, &header("webhook-id"), ts, &body));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["user"]["id"].is_string(), "{v}");
        out.push(v["sms"].clone());
    }
    out
}

async fn last_code(hook: &MockServer) -> String {
    hooked(hook).await.last().unwrap()["otp"].as_str().unwrap().to_owned()
}

async fn enroll(server: &TestServer, token: &str, phone: &str) -> String {
    let resp = server.post_auth("/factors", token, json!({"factor_type": "phone", "phone": phone})).await;
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn challenge(server: &TestServer, token: &str, factor: &str, body: Value) -> reqwest::Response {
    server.post_auth(&format!("/factors/{factor}/challenge"), token, body).await
}

async fn challenge_ok(server: &TestServer, token: &str, factor: &str) -> String {
    let resp = challenge(server, token, factor, json!({})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "phone");
    assert!(body["expires_at"].as_i64().unwrap() > now_secs());
    body["id"].as_str().unwrap().to_owned()
}

async fn verify(server: &TestServer, token: &str, factor: &str, challenge: &str, code: &str) -> reqwest::Response {
    server
        .post_auth(&format!("/factors/{factor}/verify"), token, json!({"challenge_id": challenge, "code": code}))
        .await
}

async fn user_json(server: &TestServer, token: &str) -> Value {
    server.get_auth("/user", token).await.json().await.unwrap()
}

/// Signs up, enrolls `phone`, challenges and verifies: (aal2 session, factor id).
async fn phone_mfa_user(server: &TestServer, hook: &MockServer, email: &str, phone: &str) -> (Value, String) {
    let token = access(&server.signup(email).await);
    let fid = enroll(server, &token, phone).await;
    let c = challenge_ok(server, &token, &fid).await;
    let resp = verify(server, &token, &fid, &c, &last_code(hook).await).await;
    assert_eq!(resp.status(), 200);
    (resp.json().await.unwrap(), fid)
}

#[tokio::test]
async fn enroll_challenge_verify_through_the_sms_hook() {
    let hook = hook_server(200).await;
    let server = TestServer::start_with(|c| phone_mfa(c, &hook)).await;
    let session = server.signup(&unique_email()).await;
    let token = access(&session);
    let phone = unique_phone();
    let spaced = format!("+{} {} {}", &phone[..1], &phone[1..4], &phone[4..]);
    let resp = server
        .post_auth("/factors", &token, json!({"factor_type": "phone", "phone": spaced, "friendly_name": "mobile"}))
        .await;
    assert_eq!(resp.status(), 200);
    let e: Value = resp.json().await.unwrap();
    let fid = e["id"].as_str().unwrap().to_owned();
    // GoTrue's EnrollFactorResponse for phone: the number echoed as sent, no totp object.
    assert_eq!(e, json!({"id": fid, "type": "phone", "friendly_name": "mobile", "phone": spaced}));
    let f = &user_json(&server, &token).await["factors"][0];
    assert_eq!((f["factor_type"].as_str(), f["status"].as_str()), (Some("phone"), Some("unverified")));
    assert_eq!(f["phone"], phone.as_str(), "stored normalised, without +");
    assert!(f["last_challenged_at"].is_null());

    let c = challenge_ok(&server, &token, &fid).await;
    let sent = hooked(&hook).await;
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0]["phone"].as_str(), sent[0]["sms_type"].as_str()), (Some(phone.as_str()), Some("mfa")));
    let code = sent[0]["otp"].as_str().unwrap().to_owned();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    assert!(user_json(&server, &token).await["factors"][0]["last_challenged_at"].is_string());

    let resp = verify(&server, &token, &fid, &c, &code).await;
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    let cl = claims(&access(&s));
    assert_eq!(cl["aal"], "aal2");
    let methods: Vec<&str> = cl["amr"].as_array().unwrap().iter().map(|e| e["method"].as_str().unwrap()).collect();
    assert_eq!(methods[0], "mfa/phone", "{methods:?}");
    assert!(methods.contains(&"password"), "{methods:?}");
    assert_eq!(s["user"]["factors"][0]["status"], "verified");
    // A code is single use.
    assert_error(verify(&server, &token, &fid, &c, &code).await, 422, "mfa_factor_not_found").await;
    // Refresh keeps aal2 and the amr.
    let r: Value = server.refresh(s["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    let cl = claims(&access(&r));
    assert_eq!(cl["aal"], "aal2");
    assert!(cl["amr"].to_string().contains("mfa/phone"));
    // The old refresh token was replaced by verify's new one.
    assert_ne!(s["refresh_token"], session["refresh_token"]);
}

#[tokio::test]
async fn twilio_gets_the_mfa_template_and_whatsapp() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM42"})))
        .mount(&twilio)
        .await;
    let base = twilio.uri();
    let server = TestServer::start_with(|c| {
        c.settings.mfa.phone_enroll_enabled = true;
        c.settings.mfa.phone_verify_enabled = true;
        c.settings.mfa.phone_otp_length = 8;
        c.settings.mfa.phone_template = "Acme second factor: {{ .Code }}".into();
        c.settings.sms.twilio = Some(TwilioSettings {
            account_sid: "AC123".into(),
            auth_token: ferrotrue_actors::crypto::Secret("twilio-token".into()),
            message_service_sid: "+15550000000".into(),
            base_url: base,
        });
    })
    .await;
    let token = access(&server.signup(&unique_email()).await);
    let phone = unique_phone();
    let fid = enroll(&server, &token, &phone).await;
    // Only sms and whatsapp are channels without the hook.
    let resp = challenge(&server, &token, &fid, json!({"channel": "carrier-pigeon"})).await;
    assert_error(resp, 400, "validation_failed").await;
    let resp = challenge(&server, &token, &fid, json!({"channel": "whatsapp"})).await;
    assert_eq!(resp.status(), 200);
    let c = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let requests = twilio.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&requests[0].body).into_owned().collect();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(field("To"), format!("whatsapp:+{phone}"));
    let body = field("Body");
    let code = body.strip_prefix("Acme second factor: ").expect("GOTRUE_MFA_PHONE_TEMPLATE");
    assert_eq!(code.len(), 8, "GOTRUE_MFA_PHONE_OTP_LENGTH");
    assert_eq!(verify(&server, &token, &fid, &c, code).await.status(), 200);
}

#[tokio::test]
async fn switches_and_provider_errors() {
    // Enrollment on, verification off: challenge and verify say so.
    let server = TestServer::start_with(|c| c.settings.mfa.phone_enroll_enabled = true).await;
    let token = access(&server.signup(&unique_email()).await);
    let fid = enroll(&server, &token, &unique_phone()).await;
    assert_error(challenge(&server, &token, &fid, json!({})).await, 422, "mfa_phone_verify_not_enabled").await;
    let c = uuid::Uuid::new_v4().to_string();
    assert_error(verify(&server, &token, &fid, &c, "123456").await, 422, "mfa_phone_verify_not_enabled").await;
    // Verification on but no way to send an SMS: GoTrue's 500.
    let server = TestServer::start_with(|c| {
        c.settings.mfa.phone_enroll_enabled = true;
        c.settings.mfa.phone_verify_enabled = true;
    })
    .await;
    let token = access(&server.signup(&unique_email()).await);
    let fid = enroll(&server, &token, &unique_phone()).await;
    let resp = challenge(&server, &token, &fid, json!({"channel": "whatsapp"})).await;
    assert_error(resp, 400, "validation_failed").await;
    let resp = challenge(&server, &token, &fid, json!({})).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.json::<Value>().await.unwrap()["message"], "Failed to get SMS provider");
    // A hook that fails: 500, and nothing is left behind (an immediate retry is not spaced).
    let hook = hook_server(500).await;
    let server = TestServer::start_with(|c| phone_mfa(c, &hook)).await;
    let token = access(&server.signup(&unique_email()).await);
    let fid = enroll(&server, &token, &unique_phone()).await;
    for _ in 0..2 {
        let resp = challenge(&server, &token, &fid, json!({})).await;
        assert_eq!(resp.status(), 500);
        assert_eq!(resp.json::<Value>().await.unwrap()["message"], "error invoking hook");
    }
    assert!(user_json(&server, &token).await["factors"][0]["last_challenged_at"].is_null());
}

#[tokio::test]
async fn enroll_errors_and_re_enrollment() {
    let hook = hook_server(200).await;
    let server = TestServer::start_with(|c| phone_mfa(c, &hook)).await;
    let token = access(&server.signup(&unique_email()).await);
    let enroll_resp = |body: Value| server.post_auth("/factors", &token, body);
    assert_error(enroll_resp(json!({"factor_type": "phone"})).await, 400, "validation_failed").await;
    assert_error(enroll_resp(json!({"factor_type": "phone", "phone": "+0123"})).await, 400, "validation_failed").await;
    assert_error(enroll_resp(json!({"factor_type": "phone", "phone": "12ab45"})).await, 400, "validation_failed").await;
    // Enrolling the same number again replaces the unverified factor.
    let phone = unique_phone();
    let first = enroll(&server, &token, &phone).await;
    let second = enroll(&server, &token, &format!("+{phone}")).await;
    let factors = user_json(&server, &token).await["factors"].clone();
    assert_eq!(factors.as_array().unwrap().len(), 1);
    assert_eq!(factors[0]["id"], second.as_str());
    assert_ne!(first, second);
    // Once verified, the same number is refused; another number needs aal2.
    let c = challenge_ok(&server, &token, &second).await;
    let s: Value = verify(&server, &token, &second, &c, &last_code(&hook).await).await.json().await.unwrap();
    let t2 = access(&s);
    let resp = server.post_auth("/factors", &t2, json!({"factor_type": "phone", "phone": phone})).await;
    assert_error(resp, 422, "mfa_verified_factor_exists").await;
    let other = server.post_auth("/factors", &t2, json!({"factor_type": "phone", "phone": unique_phone()})).await;
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn verify_errors_spacing_and_attempt_limit() {
    let hook = hook_server(200).await;
    let server = TestServer::start_with(|c| {
        phone_mfa(c, &hook);
        c.settings.mfa.phone_max_frequency = Duration::from_secs(1);
    })
    .await;
    let token = access(&server.signup(&unique_email()).await);
    let fid = enroll(&server, &token, &unique_phone()).await;
    let c = challenge_ok(&server, &token, &fid).await;
    let code = last_code(&hook).await;
    // A second challenge inside GOTRUE_MFA_PHONE_MAX_FREQUENCY.
    let resp = challenge(&server, &token, &fid, json!({})).await;
    let body = assert_error(resp, 429, "over_sms_send_rate_limit").await;
    assert!(body["message"].as_str().unwrap().starts_with("For security purposes"), "{body}");
    assert_eq!(hooked(&hook).await.len(), 1);
    // Input errors.
    assert_error(verify(&server, &token, &fid, &c, "").await, 400, "validation_failed").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(verify(&server, &token, &fid, &unknown, &code).await, 422, "mfa_factor_not_found").await;
    let resp = server
        .request(Method::POST, &format!("/factors/{fid}/verify"))
        .bearer_auth(&token)
        .header("X-Forwarded-For", "203.0.113.9")
        .json(&json!({"challenge_id": c, "code": code}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 422, "mfa_ip_address_mismatch").await;
    // Five wrong codes kill the challenge: the right one no longer works.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_error(verify(&server, &token, &fid, &c, wrong).await, 422, "mfa_verification_failed").await;
    }
    assert_error(verify(&server, &token, &fid, &c, &code).await, 422, "mfa_factor_not_found").await;
    // After the spacing, a new challenge with a new code works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let c = challenge_ok(&server, &token, &fid).await;
    assert_eq!(verify(&server, &token, &fid, &c, &last_code(&hook).await).await.status(), 200);
}

#[tokio::test]
async fn challenges_expire() {
    let hook = hook_server(200).await;
    let server = TestServer::start_with(|c| {
        phone_mfa(c, &hook);
        c.settings.mfa.challenge_expiry = Duration::from_secs(1);
    })
    .await;
    let token = access(&server.signup(&unique_email()).await);
    let fid = enroll(&server, &token, &unique_phone()).await;
    let c = challenge_ok(&server, &token, &fid).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let code = last_code(&hook).await;
    assert_error(verify(&server, &token, &fid, &c, &code).await, 422, "mfa_challenge_expired").await;
    // Deleted when presented.
    assert_error(verify(&server, &token, &fid, &c, &code).await, 422, "mfa_factor_not_found").await;
}

/// The attack: a client makes the server text a victim's number again and again through factor
/// challenges — re-enrolling the number (which resets GoTrue's per-factor spacing) or using a
/// second account. One code per number per `GOTRUE_MFA_PHONE_MAX_FREQUENCY` reaches the victim.
#[tokio::test]
async fn a_victim_number_is_not_flooded_through_factor_challenges() {
    let hook = hook_server(200).await;
    let server = TestServer::start_with(|c| {
        phone_mfa(c, &hook);
        c.settings.mfa.phone_max_frequency = Duration::from_secs(2);
    })
    .await;
    let victim = unique_phone();
    let t1 = access(&server.signup(&unique_email()).await);
    let t2 = access(&server.signup(&unique_email()).await);
    let f1 = enroll(&server, &t1, &victim).await;
    challenge_ok(&server, &t1, &f1).await;
    // Unenroll (unverified: allowed on aal1) and enroll again: a fresh factor, same number.
    let resp = server.request(Method::DELETE, &format!("/factors/{f1}")).bearer_auth(&t1).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let f1 = enroll(&server, &t1, &victim).await;
    assert_error(challenge(&server, &t1, &f1, json!({})).await, 429, "over_sms_send_rate_limit").await;
    // Re-enrolling without unenrolling: same.
    let f1 = enroll(&server, &t1, &victim).await;
    assert_error(challenge(&server, &t1, &f1, json!({})).await, 429, "over_sms_send_rate_limit").await;
    // Another account naming the same number: same.
    let f2 = enroll(&server, &t2, &victim).await;
    assert_error(challenge(&server, &t2, &f2, json!({})).await, 429, "over_sms_send_rate_limit").await;
    // Another number is not affected, and the refused challenges left the factor's own clock
    // alone (a retry after the window works).
    let other = enroll(&server, &t2, &unique_phone()).await;
    challenge_ok(&server, &t2, &other).await;
    let to_victim = |sent: &[Value]| sent.iter().filter(|s| s["phone"] == victim.as_str()).count();
    assert_eq!(to_victim(&hooked(&hook).await), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    challenge_ok(&server, &t2, &f2).await;
    assert_error(challenge(&server, &t1, &f1, json!({})).await, 429, "over_sms_send_rate_limit").await;
    assert_eq!(to_victim(&hooked(&hook).await), 2);
}

#[tokio::test]
async fn factor_and_challenge_survive_restart_and_the_code_is_not_stored() {
    let hook = hook_server(200).await;
    let server = TestServer::start_with(|c| {
        phone_mfa(c, &hook);
        c.settings.mfa.phone_otp_length = 10;
    })
    .await;
    let token = access(&server.signup(&unique_email()).await);
    let fid = enroll(&server, &token, &unique_phone()).await;
    let c = challenge_ok(&server, &token, &fid).await;
    let code = last_code(&hook).await;
    let server = server.restart().await;
    let files = files_under(server.dir());
    assert!(!files.iter().any(|(_, f)| f.windows(code.len()).any(|w| w == code.as_bytes())), "code in the clear");
    let resp = verify(&server, &token, &fid, &c, &code).await;
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    assert_eq!(claims(&access(&s))["aal"], "aal2");
    let server = server.restart().await;
    let user = user_json(&server, &access(&s)).await;
    assert_eq!(user["factors"][0]["status"], "verified");
}

#[tokio::test]
async fn insufficient_aal_rules_and_unenroll() {
    let hook = hook_server(200).await;
    let server = TestServer::start_with(|c| {
        phone_mfa(c, &hook);
        c.settings.mfa.phone_max_frequency = Duration::from_secs(1);
    })
    .await;
    let email = unique_email();
    let (s2, fid) = phone_mfa_user(&server, &hook, &email, &unique_phone()).await;
    let t1 = access(&server.login(&email).await);
    assert_eq!(claims(&t1)["aal"], "aal1");
    let resp = server.request(Method::DELETE, &format!("/factors/{fid}")).bearer_auth(&t1).send().await.unwrap();
    assert_error(resp, 422, "insufficient_aal").await;
    assert_error(server.put_auth("/user", &t1, json!({"password": "another-pass-123"})).await, 401, "insufficient_aal")
        .await;
    assert_error(server.post_auth("/factors", &t1, json!({"factor_type": "totp"})).await, 403, "insufficient_aal")
        .await;
    // The aal1 session can step up with the phone factor itself.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let c = challenge_ok(&server, &t1, &fid).await;
    let up: Value = verify(&server, &t1, &fid, &c, &last_code(&hook).await).await.json().await.unwrap();
    assert_eq!(claims(&access(&up))["aal"], "aal2");
    // aal2 unenrolls; the session drops to aal1 without the phone method.
    let t2 = access(&s2);
    let resp = server.request(Method::DELETE, &format!("/factors/{fid}")).bearer_auth(&t2).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"id": fid}));
    let r: Value = server.refresh(s2["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    let cl = claims(&access(&r));
    assert_eq!(cl["aal"], "aal1");
    assert!(!cl["amr"].to_string().contains("mfa/phone"), "{cl}");
}

#[tokio::test]
async fn admin_lists_updates_and_deletes_phone_factors() {
    let hook = hook_server(200).await;
    let server = TestServer::start_with(|c| phone_mfa(c, &hook)).await;
    let phone = unique_phone();
    let (s, fid) = phone_mfa_user(&server, &hook, &unique_email(), &phone).await;
    let uid = s["user"]["id"].as_str().unwrap().to_owned();
    let admin = service_role_token();
    let get = |p: String| server.request(Method::GET, &p).bearer_auth(&admin).send();
    let list: Value = get(format!("/admin/users/{uid}/factors")).await.unwrap().json().await.unwrap();
    assert_eq!((list[0]["id"].as_str(), list[0]["phone"].as_str()), (Some(fid.as_str()), Some(phone.as_str())));
    assert_eq!(list[0]["factor_type"], "phone");
    let user: Value = get(format!("/admin/users/{uid}")).await.unwrap().json().await.unwrap();
    assert_eq!(user["factors"][0]["phone"], phone.as_str());
    let put = |body: Value| {
        server.request(Method::PUT, &format!("/admin/users/{uid}/factors/{fid}")).bearer_auth(&admin).json(&body).send()
    };
    assert_error(put(json!({"phone": "not a number", "friendly_name": "x"})).await.unwrap(), 400, "validation_failed")
        .await;
    let updated: Value = put(json!({"phone": "+44 7700 900123"})).await.unwrap().json().await.unwrap();
    assert_eq!(updated["phone"], "447700900123");
    assert_eq!(updated["friendly_name"], Value::Null, "the refused update changed nothing");
    let resp = server
        .request(Method::DELETE, &format!("/admin/users/{uid}/factors/{fid}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["phone"], "447700900123");
    let list: Value = get(format!("/admin/users/{uid}/factors")).await.unwrap().json().await.unwrap();
    assert_eq!(list, json!([]));
    let audit: Value = get("/admin/audit?query=type:factor".into()).await.unwrap().json().await.unwrap();
    let phone_events = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["payload"]["traits"]["factor_type"] == "phone")
        .map(|e| e["payload"]["action"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    for a in ["factor_in_progress", "challenge_created", "verification_attempted", "factor_deleted"] {
        assert!(phone_events.iter().any(|e| e == a), "{a} in {phone_events:?}");
    }
}

/// The mfa_verification_attempt hook hears phone verifications with `factor_type: "phone"`.
#[tokio::test]
async fn mfa_verification_attempt_hook_sees_phone_factors() {
    let sms = hook_server(200).await;
    let attempts = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/mfa"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"decision": "reject"})))
        .mount(&attempts)
        .await;
    let secret = format!("v1,whsec_{}", base64::engine::general_purpose::STANDARD.encode(b"mfa-hook-key"));
    let endpoint = ferrotrue_actors::hooks::HookEndpoint {
        uri: format!("{}/mfa", attempts.uri()),
        secrets: vec![ferrotrue_actors::crypto::Secret(secret)],
    };
    let server = TestServer::start_with(|c| {
        phone_mfa(c, &sms);
        c.settings.hooks.mfa_verification_attempt = Some(endpoint);
    })
    .await;
    let session = server.signup(&unique_email()).await;
    let token = access(&session);
    let fid = enroll(&server, &token, &unique_phone()).await;
    let c = challenge_ok(&server, &token, &fid).await;
    let wrong = if last_code(&sms).await == "000000" { "111111" } else { "000000" };
    assert_error(verify(&server, &token, &fid, &c, wrong).await, 403, "mfa_verification_rejected").await;
    let seen: Vec<Value> =
        attempts.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert_eq!((seen[0]["factor_type"].as_str(), seen[0]["valid"].as_bool()), (Some("phone"), Some(false)));
    assert_eq!(seen[0]["factor_id"], fid.as_str());
    assert_eq!(server.refresh(session["refresh_token"].as_str().unwrap()).await.status(), 400, "logged out");
}
