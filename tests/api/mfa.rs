//! MFA with TOTP factors (SPEC §1.17): enroll, challenge, verify (aal2, amr, replay, attempts,
//! IP binding), unenroll, factors in the user JSON, insufficient_aal, admin factor routes,
//! persistence.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::common::*;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

pub(crate) fn code_at(secret: &str, offset_steps: i64) -> String {
    let bytes = totp_rs::Secret::try_from_base32(secret).unwrap();
    let t = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(bytes.as_ref().to_vec())
        .with_account_name("t")
        .build()
        .unwrap();
    let now = now_secs() + offset_steps * 30;
    t.generate(now as u64).to_string()
}

async fn enroll(server: &TestServer, token: &str, name: &str) -> Value {
    let resp = server.post_auth("/factors", token, json!({"factor_type": "totp", "friendly_name": name})).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn challenge(server: &TestServer, token: &str, factor: &str) -> String {
    let resp = server.post_auth(&format!("/factors/{factor}/challenge"), token, json!({})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "totp");
    assert!(body["expires_at"].as_i64().unwrap() > now_secs());
    body["id"].as_str().unwrap().to_owned()
}

async fn verify(server: &TestServer, token: &str, factor: &str, challenge: &str, code: &str) -> reqwest::Response {
    server
        .post_auth(&format!("/factors/{factor}/verify"), token, json!({"challenge_id": challenge, "code": code}))
        .await
}

/// Signs up, enrolls, verifies: returns (aal2 session, factor id, secret).
async fn mfa_user(server: &TestServer) -> (Value, String, String) {
    let session = server.signup(&unique_email()).await;
    let token = access(&session);
    let e = enroll(server, &token, "phone app").await;
    let (fid, secret) = (e["id"].as_str().unwrap().to_owned(), e["totp"]["secret"].as_str().unwrap().to_owned());
    let c = challenge(server, &token, &fid).await;
    let resp = verify(server, &token, &fid, &c, &code_at(&secret, 0)).await;
    assert_eq!(resp.status(), 200);
    (resp.json().await.unwrap(), fid, secret)
}

#[tokio::test]
async fn enroll_returns_gotrue_shape_and_factor_appears_unverified() {
    let server = TestServer::start().await;
    let email = unique_email();
    let token = access(&server.signup(&email).await);
    let e = enroll(&server, &token, "my app").await;
    assert_eq!(e["type"], "totp");
    assert_eq!(e["friendly_name"], "my app");
    let secret = e["totp"]["secret"].as_str().unwrap();
    assert!(totp_rs::Secret::try_from_base32(secret).is_ok());
    let uri = e["totp"]["uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/localhost:"), "{uri}");
    assert!(uri.ends_with(&format!("?algorithm=SHA1&digits=6&issuer=localhost&period=30&secret={secret}")), "{uri}");
    assert!(e["totp"]["qr_code"].as_str().unwrap().contains("<svg"));
    let user: Value = server.get_auth("/user", &token).await.json().await.unwrap();
    let f = &user["factors"][0];
    assert_eq!(
        (f["id"].as_str(), f["status"].as_str(), f["factor_type"].as_str()),
        (e["id"].as_str(), Some("unverified"), Some("totp"))
    );
    assert!(
        f.get("secret").is_none() && !user.to_string().contains(secret),
        "the secret never leaves in the user JSON"
    );
    // Custom issuer.
    let resp = server.post_auth("/factors", &token, json!({"factor_type": "totp", "issuer": "Acme"})).await;
    let body: Value = resp.json().await.unwrap();
    assert!(body["totp"]["uri"].as_str().unwrap().starts_with("otpauth://totp/Acme:"));
}

#[tokio::test]
async fn enroll_errors() {
    let server = TestServer::start_with(|c| c.settings.mfa.max_enrolled_factors = 2).await;
    let token = access(&server.signup(&unique_email()).await);
    assert_error(server.post_auth("/factors", &token, json!({"factor_type": "sms"})).await, 400, "validation_failed")
        .await;
    assert_error(
        server.post_auth("/factors", &token, json!({"factor_type": "phone"})).await,
        422,
        "mfa_phone_enroll_not_enabled",
    )
    .await;
    assert_error(
        server.post_auth("/factors", &token, json!({"factor_type": "webauthn"})).await,
        422,
        "mfa_webauthn_enroll_not_enabled",
    )
    .await;
    enroll(&server, &token, "a").await;
    assert_error(
        server.post_auth("/factors", &token, json!({"factor_type": "totp", "friendly_name": "a"})).await,
        422,
        "mfa_factor_name_conflict",
    )
    .await;
    enroll(&server, &token, "b").await;
    assert_error(
        server.post_auth("/factors", &token, json!({"factor_type": "totp", "friendly_name": "c"})).await,
        422,
        "too_many_enrolled_mfa_factors",
    )
    .await;
    let resp = server.request(Method::POST, "/factors").json(&json!({"factor_type": "totp"})).send().await.unwrap();
    assert_error(resp, 401, "no_authorization").await;
    // Disabled TOTP enrollment.
    let off = TestServer::start_with(|c| c.settings.mfa.totp_enroll_enabled = false).await;
    let token = access(&off.signup(&unique_email()).await);
    assert_error(
        off.post_auth("/factors", &token, json!({"factor_type": "totp"})).await,
        422,
        "mfa_totp_enroll_not_enabled",
    )
    .await;
}

#[tokio::test]
async fn anonymous_users_cannot_enroll() {
    let server = TestServer::start_with(|c| c.settings.signup.anonymous_enabled = true).await;
    let anon: Value = server.post("/signup", json!({})).await.json().await.unwrap();
    assert_error(
        server.post_auth("/factors", &access(&anon), json!({"factor_type": "totp"})).await,
        403,
        "no_authorization",
    )
    .await;
}

#[tokio::test]
async fn verify_raises_the_session_to_aal2_and_refresh_keeps_it() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let token = access(&session);
    assert_eq!(claims(&token)["aal"], "aal1");
    let e = enroll(&server, &token, "").await;
    let (fid, secret) = (e["id"].as_str().unwrap(), e["totp"]["secret"].as_str().unwrap());
    let c = challenge(&server, &token, fid).await;
    let resp = verify(&server, &token, fid, &c, &code_at(secret, 0)).await;
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    let cl = claims(&access(&s));
    assert_eq!(cl["aal"], "aal2");
    assert_eq!(cl["session_id"], claims(&token)["session_id"], "same session");
    let methods: Vec<&str> = cl["amr"].as_array().unwrap().iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["totp", "password"]);
    assert_eq!(s["user"]["factors"][0]["status"], "verified");
    assert_ne!(s["refresh_token"], session["refresh_token"], "a new refresh token");
    // The old refresh token was revoked by the verification.
    let r = server.refresh(session["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200, "parent of the new token is answered with the active one");
    let r: Value = server.refresh(s["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(claims(&access(&r))["aal"], "aal2", "refresh keeps aal2");
}

#[tokio::test]
async fn wrong_codes_replays_and_attempt_limit() {
    let server = TestServer::start().await;
    let (s, fid, secret) = mfa_user(&server).await;
    let token = access(&s);
    // Replay of the code just used (same step) is refused.
    let c = challenge(&server, &token, &fid).await;
    let code = code_at(&secret, 0);
    assert_error(verify(&server, &token, &fid, &c, &code).await, 422, "mfa_verification_failed").await;
    // Wrong codes: the fifth kills the challenge.
    let bad = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..3 {
        assert_error(verify(&server, &token, &fid, &c, bad).await, 422, "mfa_verification_failed").await;
    }
    // The next step's code is still accepted on this challenge (4 failures so far).
    assert_eq!(verify(&server, &token, &fid, &c, &code_at(&secret, 1)).await.status(), 200);
    let c = challenge(&server, &token, &fid).await;
    for _ in 0..5 {
        assert_error(verify(&server, &token, &fid, &c, bad).await, 422, "mfa_verification_failed").await;
    }
    assert_error(verify(&server, &token, &fid, &c, bad).await, 422, "mfa_factor_not_found").await;
    // Empty code, unknown challenge, unknown factor.
    assert_error(verify(&server, &token, &fid, &c, "").await, 400, "validation_failed").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(verify(&server, &token, &fid, &unknown, "123456").await, 422, "mfa_factor_not_found").await;
    let resp = server.post_auth(&format!("/factors/{unknown}/challenge"), &token, json!({})).await;
    assert_error(resp, 404, "mfa_factor_not_found").await;
}

#[tokio::test]
async fn challenge_bound_to_ip_and_expiry() {
    let server = TestServer::start_with(|c| {
        c.settings.mfa.challenge_expiry = std::time::Duration::from_secs(1);
    })
    .await;
    let token = access(&server.signup(&unique_email()).await);
    let e = enroll(&server, &token, "").await;
    let (fid, secret) = (e["id"].as_str().unwrap(), e["totp"]["secret"].as_str().unwrap());
    let c = challenge(&server, &token, fid).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_error(verify(&server, &token, fid, &c, &code_at(secret, 0)).await, 422, "mfa_challenge_expired").await;
}

#[tokio::test]
async fn unenroll_needs_aal2_for_verified_factors_and_password_change_too() {
    let server = TestServer::start().await;
    let email = unique_email();
    let s0 = server.signup(&email).await;
    let t0 = access(&s0);
    let e = enroll(&server, &t0, "").await;
    let (fid, secret) = (e["id"].as_str().unwrap().to_owned(), e["totp"]["secret"].as_str().unwrap().to_owned());
    let c = challenge(&server, &t0, &fid).await;
    let s2: Value = verify(&server, &t0, &fid, &c, &code_at(&secret, 0)).await.json().await.unwrap();
    // A new password sign-in is aal1.
    let s1 = server.login(&email).await;
    let t1 = access(&s1);
    assert_eq!(claims(&t1)["aal"], "aal1");
    let resp = server.request(Method::DELETE, &format!("/factors/{fid}")).bearer_auth(&t1).send().await.unwrap();
    assert_error(resp, 422, "insufficient_aal").await;
    assert_error(server.put_auth("/user", &t1, json!({"password": "another-pass-123"})).await, 401, "insufficient_aal")
        .await;
    // Metadata alone is fine on aal1.
    assert_eq!(server.put_auth("/user", &t1, json!({"data": {"a": 1}})).await.status(), 200);
    // aal1 cannot enroll another factor.
    assert_error(server.post_auth("/factors", &t1, json!({"factor_type": "totp"})).await, 403, "insufficient_aal")
        .await;
    // aal2 can change the password and unenroll.
    let t2 = access(&s2);
    assert_eq!(server.put_auth("/user", &t2, json!({"password": "another-pass-123"})).await.status(), 200);
    let resp = server.request(Method::DELETE, &format!("/factors/{fid}")).bearer_auth(&t2).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"id": fid}));
    let user: Value = server.get_auth("/user", &t2).await.json().await.unwrap();
    assert!(user.get("factors").is_none(), "omitted when none");
    // The session dropped to aal1.
    let r: Value = server.refresh(s2["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(claims(&access(&r))["aal"], "aal1");
}

#[tokio::test]
async fn admin_factor_routes_and_audit() {
    let server = TestServer::start().await;
    let (s, fid, _) = mfa_user(&server).await;
    let uid = s["user"]["id"].as_str().unwrap().to_owned();
    let admin = service_role_token();
    let list: Value = server.get_json(&format!("/admin/users/{uid}/factors"), &admin).await;
    assert_eq!(list[0]["id"], fid.as_str());
    let resp = server
        .request(Method::PUT, &format!("/admin/users/{uid}/factors/{fid}"))
        .bearer_auth(&admin)
        .json(&json!({"friendly_name": "renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["friendly_name"], "renamed");
    let missing = uuid::Uuid::new_v4();
    let resp = server
        .request(Method::DELETE, &format!("/admin/users/{uid}/factors/{missing}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_error(resp, 404, "mfa_factor_not_found").await;
    let resp = server
        .request(Method::DELETE, &format!("/admin/users/{uid}/factors/{fid}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["id"], fid.as_str());
    let list: Value = server.get_json(&format!("/admin/users/{uid}/factors"), &admin).await;
    assert_eq!(list, json!([]));
    let audit: Value = server.get_json("/admin/audit?query=type:factor", &admin).await;
    let actions: Vec<&str> =
        audit.as_array().unwrap().iter().map(|e| e["payload"]["action"].as_str().unwrap()).collect();
    for a in ["factor_in_progress", "challenge_created", "verification_attempted", "factor_updated", "factor_deleted"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

#[tokio::test]
async fn factors_survive_restart_and_die_with_their_user() {
    let server = TestServer::start().await;
    let (s, fid, secret) = mfa_user(&server).await;
    let uid = s["user"]["id"].as_str().unwrap().to_owned();
    let token = access(&s);
    let c = challenge(&server, &token, &fid).await;
    let server = server.restart().await;
    let user: Value = server.get_auth("/user", &token).await.json().await.unwrap();
    assert_eq!(user["factors"][0]["status"], "verified");
    // The open challenge survived too (the next step's code; this step's was used).
    assert_eq!(verify(&server, &token, &fid, &c, &code_at(&secret, 1)).await.status(), 200);
    let admin = service_role_token();
    let resp = server.request(Method::DELETE, &format!("/admin/users/{uid}")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp =
        server.request(Method::GET, &format!("/admin/users/{uid}/factors")).bearer_auth(&admin).send().await.unwrap();
    assert_error(resp, 404, "user_not_found").await;
}

fn hook_endpoint(server: &wiremock::MockServer) -> Option<ferrotrue_actors::hooks::HookEndpoint> {
    let secret = format!("v1,whsec_{}", base64::engine::general_purpose::STANDARD.encode(b"mfa-hook-key"));
    Some(ferrotrue_actors::hooks::HookEndpoint {
        uri: format!("{}/mfa", server.uri()),
        secrets: vec![ferrotrue_actors::crypto::Secret(secret)],
    })
}

/// The mfa_verification_attempt hook hears `{factor_id, factor_type, user_id, valid}`; a
/// rejection is 403 mfa_verification_rejected with its message and logs the user out.
#[tokio::test]
async fn mfa_verification_attempt_hook_rejects_and_logs_out() {
    use wiremock::{matchers, Mock, MockServer, ResponseTemplate};
    let hook = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/mfa"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"decision": "reject", "message": "Nope"})))
        .mount(&hook)
        .await;
    let server = TestServer::start_with(|c| c.settings.hooks.mfa_verification_attempt = hook_endpoint(&hook)).await;
    let session = server.signup(&unique_email()).await;
    let token = access(&session);
    let e = enroll(&server, &token, "").await;
    let (fid, secret) = (e["id"].as_str().unwrap(), e["totp"]["secret"].as_str().unwrap());
    let c = challenge(&server, &token, fid).await;
    let body =
        assert_error(verify(&server, &token, fid, &c, &code_at(secret, 0)).await, 403, "mfa_verification_rejected")
            .await;
    assert_eq!(body["message"], "Nope");
    let seen: Vec<Value> =
        hook.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert_eq!(seen[0]["factor_id"], fid);
    assert_eq!(seen[0]["factor_type"], "totp");
    assert_eq!(seen[0]["user_id"], session["user"]["id"]);
    assert_eq!(seen[0]["valid"], true);
    assert_eq!(server.refresh(session["refresh_token"].as_str().unwrap()).await.status(), 400, "logged out");
}

#[tokio::test]
async fn mfa_verification_attempt_hook_continue_lets_valid_codes_through() {
    use wiremock::{matchers, Mock, MockServer, ResponseTemplate};
    let hook = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/mfa"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"decision": "continue"})))
        .mount(&hook)
        .await;
    let server = TestServer::start_with(|c| c.settings.hooks.mfa_verification_attempt = hook_endpoint(&hook)).await;
    let token = access(&server.signup(&unique_email()).await);
    let e = enroll(&server, &token, "").await;
    let (fid, secret) = (e["id"].as_str().unwrap(), e["totp"]["secret"].as_str().unwrap());
    let c = challenge(&server, &token, fid).await;
    assert_error(verify(&server, &token, fid, &c, "000000x").await, 422, "mfa_verification_failed").await;
    assert_eq!(verify(&server, &token, fid, &c, &code_at(secret, 0)).await.status(), 200);
    let seen: Vec<Value> =
        hook.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert_eq!((seen[0]["valid"].as_bool(), seen[1]["valid"].as_bool()), (Some(false), Some(true)));
}

/// `GOTRUE_MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY` applies to challenge and verify (per client).
#[tokio::test]
async fn challenge_and_verify_share_the_mfa_limit() {
    use ferrotrue::config_security::{Bucket, RateLimits};
    let server = TestServer::start_with(|c| {
        c.limits = RateLimits { mfa: Bucket { burst: 2, period: None }, ..RateLimits::generous() }
    })
    .await;
    let token = access(&server.signup(&unique_email()).await);
    let e = enroll(&server, &token, "").await;
    let fid = e["id"].as_str().unwrap();
    let c = challenge(&server, &token, fid).await;
    assert_error(verify(&server, &token, fid, &c, "000000x").await, 422, "mfa_verification_failed").await;
    let resp = server.post_auth(&format!("/factors/{fid}/challenge"), &token, json!({})).await;
    assert_error(resp, 429, "over_request_rate_limit").await;
    // Enrollment is not part of that limit.
    assert_eq!(server.post_auth("/factors", &token, json!({"factor_type": "totp"})).await.status(), 200);
}

/// The TOTP secret is sealed at rest: neither its base32 form nor its raw bytes are in the
/// data files (the scan does see the factor: its friendly name is there).
#[tokio::test]
async fn totp_secret_is_not_stored_in_the_clear() {
    let server = TestServer::start().await;
    let token = access(&server.signup(&unique_email()).await);
    let name = format!("needle-{}", uuid::Uuid::new_v4().simple());
    let e = enroll(&server, &token, &name).await;
    let secret = e["totp"]["secret"].as_str().unwrap().to_owned();
    let raw = totp_rs::Secret::try_from_base32(&secret).unwrap().as_ref().to_vec();
    let server = server.restart().await;
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let files = stored_data(&server).await;
    assert!(files.iter().any(|(_, f)| contains(f, name.as_bytes())), "the scan reads the database");
    assert!(!files.iter().any(|(_, f)| contains(f, secret.as_bytes()) || contains(f, &raw)), "secret found at rest");
    // And the sealed secret still verifies after the restart.
    let fid = e["id"].as_str().unwrap();
    let c = challenge(&server, &token, fid).await;
    assert_eq!(verify(&server, &token, fid, &c, &code_at(&secret, 0)).await.status(), 200);
}

/// Verify must come from the IP that asked for the challenge (GoTrue's client address:
/// the first `X-Forwarded-For` hop, else the peer).
#[tokio::test]
async fn verify_from_another_ip_is_refused() {
    let server = TestServer::start().await;
    let token = access(&server.signup(&unique_email()).await);
    let e = enroll(&server, &token, "").await;
    let (fid, secret) = (e["id"].as_str().unwrap(), e["totp"]["secret"].as_str().unwrap());
    let c = challenge(&server, &token, fid).await;
    let resp = server
        .request(Method::POST, &format!("/factors/{fid}/verify"))
        .bearer_auth(&token)
        .header("X-Forwarded-For", "203.0.113.9")
        .json(&json!({"challenge_id": c, "code": code_at(secret, 0)}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 422, "mfa_ip_address_mismatch").await;
    assert_eq!(verify(&server, &token, fid, &c, &code_at(secret, 0)).await.status(), 200, "same IP still works");
}

/// A soft-deleted user loses its factors (GoTrue).
#[tokio::test]
async fn soft_delete_removes_factors() {
    let server = TestServer::start().await;
    let (s, _, _) = mfa_user(&server).await;
    let uid = s["user"]["id"].as_str().unwrap().to_owned();
    let admin = service_role_token();
    let resp = server
        .request(Method::DELETE, &format!("/admin/users/{uid}"))
        .bearer_auth(&admin)
        .json(&json!({"should_soft_delete": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let list: Value = server.get_json(&format!("/admin/users/{uid}/factors"), &admin).await;
    assert_eq!(list, json!([]));
}
