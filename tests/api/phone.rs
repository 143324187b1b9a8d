//! Phone sign-in: SMS codes through the send-SMS hook (Standard Webhooks signature) and Twilio's
//! REST shape, both received by a real HTTP server in the harness (wiremock).

use crate::common::*;
use base64::Engine;
use ferrotrue::config::Config;
use ferrotrue_actors::crypto::Secret;
use ferrotrue_actors::hooks::sign_v1;
use ferrotrue_actors::sms::{SmsHook, TwilioSettings};
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const HOOK_SECRET: &[u8] = b"hook-secret-for-tests";

async fn hook_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    server
}

/// The send-SMS hook at `uri`, signing with [`HOOK_SECRET`] (`v1,whsec_<base64>`).
pub fn sms_hook(uri: String) -> SmsHook {
    let secret = format!("v1,whsec_{}", base64::engine::general_purpose::STANDARD.encode(HOOK_SECRET));
    SmsHook { uri, secrets: vec![Secret(secret)] }
}

fn with_hook(c: &mut Config, uri: String) {
    c.settings.signup.sms_autoconfirm = false;
    c.settings.sms.hook = Some(sms_hook(uri));
}

/// The OTPs the hook received, in order, after checking each request's signature.
async fn hook_codes(server: &MockServer) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for req in server.received_requests().await.unwrap_or_default() {
        let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = String::from_utf8(req.body.clone()).unwrap();
        let ts: i64 = header("webhook-timestamp").parse().expect("webhook-timestamp");
        let expected = sign_v1(HOOK_SECRET, &header("webhook-id"), ts, &body);
        assert_eq!(header("webhook-signature"), expected, "Standard Webhooks signature");
        assert!(header("content-type").starts_with("application/json"));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["user"]["id"].is_string(), "{v}");
        out.push((v["sms"]["phone"].as_str().unwrap().to_owned(), v["sms"]["otp"].as_str().unwrap().to_owned()));
    }
    out
}

#[tokio::test]
async fn phone_signup_is_confirmed_with_the_hooked_code() {
    let hook = hook_server().await;
    let uri = format!("{}/sms", hook.uri());
    let server = TestServer::start_with(|c| with_hook(c, uri)).await;
    let phone = unique_phone();
    let resp = server.post("/signup", json!({"phone": format!("+{phone}"), "password": PASSWORD})).await;
    assert_eq!(resp.status(), 200);
    let user: Value = resp.json().await.unwrap();
    assert!(user.get("access_token").is_none(), "unconfirmed: a user, not a session");
    assert_eq!(user["phone"], phone.as_str());
    let login = server.post("/token?grant_type=password", json!({"phone": phone, "password": PASSWORD})).await;
    assert_error(login, 400, "phone_not_confirmed").await;
    let codes = hook_codes(&hook).await;
    assert_eq!(codes.len(), 1);
    assert_eq!(codes[0].0, phone);
    assert_eq!(codes[0].1.len(), 6);
    let wrong = server.post("/verify", json!({"type": "sms", "phone": phone, "token": "000000x"})).await;
    assert_error(wrong, 403, "otp_expired").await;
    let ok = server.post("/verify", json!({"type": "sms", "phone": format!("+{phone}"), "token": codes[0].1})).await;
    assert_eq!(ok.status(), 200);
    let session: Value = ok.json().await.unwrap();
    assert!(session["access_token"].is_string());
    assert!(session["user"]["phone_confirmed_at"].is_string());
    // Single use.
    let again = server.post("/verify", json!({"type": "sms", "phone": phone, "token": codes[0].1})).await;
    assert_error(again, 403, "otp_expired").await;
    server
        .post("/token?grant_type=password", json!({"phone": phone, "password": PASSWORD}))
        .await
        .error_for_status()
        .unwrap();
}

#[tokio::test]
async fn otp_sign_in_by_sms_through_twilio() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM42", "status": "queued"})))
        .mount(&twilio)
        .await;
    let base = twilio.uri();
    let server = TestServer::start_with(|c| {
        c.settings.signup.sms_autoconfirm = false;
        c.settings.sms.twilio = Some(TwilioSettings {
            account_sid: "AC123".into(),
            auth_token: ferrotrue_actors::crypto::Secret("twilio-token".into()),
            message_service_sid: "MG999".into(),
            base_url: base,
        });
    })
    .await;
    let phone = unique_phone();
    let resp = server.post("/otp", json!({"phone": phone})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"message_id": "SM42"}));
    let requests = twilio.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    let auth = req.headers.get("authorization").unwrap().to_str().unwrap();
    use base64::Engine as _;
    assert_eq!(auth, format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("AC123:twilio-token")));
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&req.body).into_owned().collect();
    assert_eq!(form["To"], format!("+{phone}"));
    assert_eq!(form["MessagingServiceSid"], "MG999");
    let code: String = form["Body"].chars().filter(|c| c.is_ascii_digit()).collect();
    assert_eq!(form["Body"], format!("Your code is {code}"));
    let ok = server.post("/verify", json!({"type": "sms", "phone": phone, "token": code})).await;
    assert_eq!(ok.status(), 200);
    // A second /otp for the now confirmed number is a sign-in code.
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn gateway_failures_are_clear_and_leave_no_throttle() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"code": 21211, "message": "The 'To' number is not valid."})),
        )
        .mount(&twilio)
        .await;
    let base = twilio.uri();
    let server = TestServer::start_with(|c| {
        c.settings.signup.sms_autoconfirm = false;
        c.settings.sms.twilio = Some(TwilioSettings {
            account_sid: "AC1".into(),
            auth_token: ferrotrue_actors::crypto::Secret("t".into()),
            message_service_sid: "+15550001111".into(),
            base_url: base,
        });
    })
    .await;
    let phone = unique_phone();
    let resp = server.post("/otp", json!({"phone": phone})).await;
    let body = assert_error(resp, 422, "sms_send_failed").await;
    assert!(body["message"].as_str().unwrap().contains("not valid"), "{body}");
    // Nothing was stamped, so a retry is not throttled (it fails the same way, not with 429).
    let retry = server.post("/otp", json!({"phone": phone})).await;
    assert_error(retry, 422, "sms_send_failed").await;
}

#[tokio::test]
async fn unconfigured_sms_is_a_clear_422() {
    let server = TestServer::start_with(|c| c.settings.signup.sms_autoconfirm = false).await;
    let resp = server.post("/otp", json!({"phone": unique_phone()})).await;
    let body = assert_error(resp, 422, "sms_send_failed").await;
    assert!(body["message"].as_str().unwrap().contains("GOTRUE_SMS_PROVIDER"), "{body}");
}

#[tokio::test]
async fn otp_input_errors() {
    let hook = hook_server().await;
    let uri = format!("{}/sms", hook.uri());
    let server = TestServer::start_with(|c| with_hook(c, uri)).await;
    assert_error(server.post("/otp", json!({"phone": "12ab"})).await, 400, "validation_failed").await;
    let pigeon = server.post("/otp", json!({"phone": unique_phone(), "channel": "carrier-pigeon"})).await;
    assert_error(pigeon, 400, "validation_failed").await;
    let no_create = server.post("/otp", json!({"phone": unique_phone(), "create_user": false})).await;
    assert_error(no_create, 422, "otp_disabled").await;
    assert_error(server.post("/otp", json!({})).await, 400, "validation_failed").await;
    let off = TestServer::start_with(|c| c.settings.signup.phone_enabled = false).await;
    assert_error(off.post("/otp", json!({"phone": unique_phone()})).await, 400, "phone_provider_disabled").await;
    assert!(hook_codes(&hook).await.is_empty());
}

#[tokio::test]
async fn spacing_budget_and_expiry() {
    let hook = hook_server().await;
    let uri = format!("{}/sms", hook.uri());
    let server = TestServer::start_with(|c| {
        with_hook(c, uri);
        c.settings.sms.otp_exp = Duration::from_secs(1);
        c.settings.sms.budget = Some((2, Duration::from_secs(3600)));
    })
    .await;
    let phone = unique_phone();
    assert_eq!(server.post("/otp", json!({"phone": phone})).await.status(), 200);
    let spaced = server.post("/otp", json!({"phone": phone})).await;
    let body = assert_error(spaced, 429, "over_sms_send_rate_limit").await;
    assert!(body["message"].as_str().unwrap().contains("seconds"), "{body}");
    assert_eq!(server.post("/otp", json!({"phone": unique_phone()})).await.status(), 200);
    let over = server.post("/otp", json!({"phone": unique_phone()})).await;
    assert_error(over, 429, "over_sms_send_rate_limit").await;
    // The first code expires after GOTRUE_SMS_OTP_EXP.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let code = hook_codes(&hook).await[0].1.clone();
    let late = server.post("/verify", json!({"type": "sms", "phone": phone, "token": code})).await;
    assert_error(late, 403, "otp_expired").await;
}

#[tokio::test]
async fn test_numbers_get_their_fixed_code_and_no_message() {
    let hook = hook_server().await;
    let uri = format!("{}/sms", hook.uri());
    let phone = unique_phone();
    let test_phone = phone.clone();
    let server = TestServer::start_with(move |c| {
        with_hook(c, uri);
        c.settings.sms.test_otps = vec![(test_phone, "123456".into())];
    })
    .await;
    let resp = server.post("/otp", json!({"phone": phone})).await;
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"message_id": "test-otp"}));
    assert!(hook_codes(&hook).await.is_empty(), "nothing sent to a test number");
    let ok = server.post("/verify", json!({"type": "sms", "phone": phone, "token": "123456"})).await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn phone_change_and_resend() {
    let hook = hook_server().await;
    let uri = format!("{}/sms", hook.uri());
    let server = TestServer::start_with(|c| {
        with_hook(c, uri);
        c.settings.sms.max_frequency = Duration::ZERO;
    })
    .await;
    // A confirmed email user adds a phone.
    let session = server.signup(&unique_email()).await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let new_phone = unique_phone();
    let resp = server.put_auth("/user", &token, json!({"phone": new_phone})).await;
    assert_eq!(resp.status(), 200);
    let user: Value = resp.json().await.unwrap();
    assert_eq!(user["new_phone"], new_phone.as_str());
    assert_eq!(user["phone"], "");
    // Resend phone_change: a second code; only the newest works.
    let resent = server.post("/resend", json!({"type": "phone_change", "phone": new_phone})).await;
    assert_eq!(resent.status(), 200);
    let codes = hook_codes(&hook).await;
    assert_eq!(codes.len(), 2);
    assert!(codes.iter().all(|(p, _)| *p == new_phone));
    let old = server.post("/verify", json!({"type": "phone_change", "phone": new_phone, "token": codes[0].1})).await;
    if codes[0].1 != codes[1].1 {
        assert_error(old, 403, "otp_expired").await;
    }
    let ok = server.post("/verify", json!({"type": "phone_change", "phone": new_phone, "token": codes[1].1})).await;
    assert_eq!(ok.status(), 200);
    let me: Value = server.get_auth("/user", &token).await.json().await.unwrap();
    assert_eq!(me["phone"], new_phone.as_str());
    assert!(me["phone_confirmed_at"].is_string());
    assert!(me.get("new_phone").is_none(), "{me}");
    assert!(me["identities"].as_array().unwrap().iter().any(|i| i["provider"] == "phone"), "{me}");
    // Taken numbers are refused.
    let other = server.signup(&unique_email()).await;
    let taken = server.put_auth("/user", other["access_token"].as_str().unwrap(), json!({"phone": new_phone})).await;
    assert_error(taken, 422, "phone_exists").await;
    // Resend sms for an unknown number: silent success, nothing sent.
    let before = hook_codes(&hook).await.len();
    let unknown = server.post("/resend", json!({"type": "sms", "phone": unique_phone()})).await;
    assert_eq!(unknown.status(), 200);
    assert_eq!(hook_codes(&hook).await.len(), before);
}

#[tokio::test]
async fn phone_only_users_reauthenticate_by_sms() {
    let hook = hook_server().await;
    let uri = format!("{}/sms", hook.uri());
    let server = TestServer::start_with(|c| {
        with_hook(c, uri);
        c.settings.signup.sms_autoconfirm = true;
    })
    .await;
    let phone = unique_phone();
    let session: Value =
        server.post("/signup", json!({"phone": phone, "password": PASSWORD})).await.json().await.unwrap();
    let token = session["access_token"].as_str().unwrap();
    let resp = server.get_auth("/reauthenticate", token).await;
    assert_eq!(resp.status(), 200);
    let codes = hook_codes(&hook).await;
    assert_eq!(codes.len(), 1);
    assert_eq!(codes[0].0, phone);
}
