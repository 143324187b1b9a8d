//! MFA with WebAuthn factors (SPEC §1.17): a software authenticator ([`SoftKey`]: ES256 over
//! `authenticatorData ‖ SHA-256(clientDataJSON)`, `none` attestation) registers and asserts
//! through the real protocol, against the origin and RP ID of the configuration.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use crate::common::*;
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ciborium::Value as Cbor;
use reqwest::Method;
use serde_json::{json, Value};

const ORIGIN: &str = "https://app.example.com";
const RP_ID: &str = "example.com";
const AAGUID: [u8; 16] = *b"ferrotrue-softky";

/// A software security key: one ES256 credential, a sign counter, and knobs to misbehave.
struct SoftKey {
    key: EcdsaKeyPair,
    cred_id: Vec<u8>,
    counter: u32,
}

/// What the "browser" puts in the ceremony (the defaults are the honest values).
#[derive(Clone)]
struct Client {
    origin: String,
    rp_id: String,
    /// Replaces the server's challenge (base64url) when set.
    challenge: Option<String>,
    /// Flips a bit of the signature.
    bad_signature: bool,
    /// Sets the counter to this value instead of incrementing it.
    counter: Option<u32>,
}

impl Default for Client {
    fn default() -> Self {
        Client { origin: ORIGIN.into(), rp_id: RP_ID.into(), challenge: None, bad_signature: false, counter: None }
    }
}

fn cbor(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

fn int(i: i64) -> Cbor {
    Cbor::Integer(i.into())
}

impl SoftKey {
    fn new() -> SoftKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let cred_id = digest(&SHA256, pkcs8.as_ref()).as_ref().to_vec();
        SoftKey { key, cred_id, counter: 0 }
    }

    fn client_data(kind: &str, options: &Value, c: &Client) -> Vec<u8> {
        let challenge = c.challenge.clone().unwrap_or_else(|| options["challenge"].as_str().unwrap().to_owned());
        serde_json::to_vec(&json!({"type": kind, "challenge": challenge, "origin": c.origin, "crossOrigin": false}))
            .unwrap()
    }

    fn next_counter(&mut self, c: &Client) -> u32 {
        self.counter = c.counter.unwrap_or(self.counter + 1);
        self.counter
    }

    /// `navigator.credentials.create()` answered, as `PublicKeyCredential.toJSON()`.
    fn register(&mut self, public_key: &Value, c: &Client) -> Value {
        let client_data = Self::client_data("webauthn.create", public_key, c);
        let point = self.key.public_key().as_ref();
        let cose_key = cbor(&Cbor::Map(vec![
            (int(1), int(2)),  // kty: EC2
            (int(3), int(-7)), // alg: ES256
            (int(-1), int(1)), // crv: P-256
            (int(-2), Cbor::Bytes(point[1..33].to_vec())),
            (int(-3), Cbor::Bytes(point[33..65].to_vec())),
        ]));
        let mut auth_data = digest(&SHA256, c.rp_id.as_bytes()).as_ref().to_vec();
        auth_data.push(0x41); // user present, attested credential data
        auth_data.extend_from_slice(&self.next_counter(c).to_be_bytes());
        auth_data.extend_from_slice(&AAGUID);
        auth_data.extend_from_slice(&u16::try_from(self.cred_id.len()).unwrap().to_be_bytes());
        auth_data.extend_from_slice(&self.cred_id);
        auth_data.extend_from_slice(&cose_key);
        let attestation_object = cbor(&Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ]));
        json!({
            "id": B64.encode(&self.cred_id),
            "rawId": B64.encode(&self.cred_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(&client_data),
                "attestationObject": B64.encode(&attestation_object),
                "transports": ["usb"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        })
    }

    /// `navigator.credentials.get()` answered.
    fn assert(&mut self, public_key: &Value, c: &Client) -> Value {
        let client_data = Self::client_data("webauthn.get", public_key, c);
        let mut auth_data = digest(&SHA256, c.rp_id.as_bytes()).as_ref().to_vec();
        auth_data.push(0x01); // user present
        auth_data.extend_from_slice(&self.next_counter(c).to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(digest(&SHA256, &client_data).as_ref());
        let mut signature = self.key.sign(&SystemRandom::new(), &signed).unwrap().as_ref().to_vec();
        if c.bad_signature {
            let last = signature.len() - 1;
            signature[last] ^= 1;
        }
        json!({
            "id": B64.encode(&self.cred_id),
            "rawId": B64.encode(&self.cred_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(&client_data),
                "authenticatorData": B64.encode(&auth_data),
                "signature": B64.encode(&signature),
            },
            "clientExtensionResults": {},
        })
    }
}

fn enabled(c: &mut ferrotrue::config::Config) {
    let w = &mut c.settings.mfa.web_authn;
    w.enroll_enabled = true;
    w.verify_enabled = true;
    w.rp_id = RP_ID.into();
    w.rp_display_name = "Example".into();
    w.rp_origins = vec![url::Url::parse(ORIGIN).unwrap()];
}

async fn start() -> TestServer {
    TestServer::start_with(enabled).await
}

fn amr(token: &str) -> Vec<String> {
    claims(token)["amr"].as_array().unwrap().iter().map(|m| m["method"].as_str().unwrap().to_owned()).collect()
}

async fn enroll(server: &TestServer, token: &str, name: &str) -> String {
    let resp = server.post_auth("/factors", token, json!({"factor_type": "webauthn", "friendly_name": name})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// `(challenge id, webauthn object)`; the body is what auth-js sends (its rpId/rpOrigins).
async fn challenge(server: &TestServer, token: &str, factor: &str) -> (String, Value) {
    let body = json!({"factorId": factor, "webauthn": {"rpId": RP_ID, "rpOrigins": [ORIGIN]}});
    let resp = server.post_auth(&format!("/factors/{factor}/challenge"), token, body).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "webauthn");
    assert!(body["expires_at"].as_i64().unwrap() >= now_secs());
    (body["id"].as_str().unwrap().to_owned(), body["webauthn"].clone())
}

async fn verify(
    server: &TestServer,
    token: &str,
    factor: &str,
    challenge: &str,
    kind: &str,
    cred: Value,
) -> reqwest::Response {
    let body = json!({
        "challenge_id": challenge,
        "webauthn": {"type": kind, "rpId": RP_ID, "rpOrigins": [ORIGIN], "credential_response": cred},
    });
    server.post_auth(&format!("/factors/{factor}/verify"), token, body).await
}

/// Signs up and registers a key: `(email, aal2 session, factor id, key)`.
async fn registered(server: &TestServer) -> (String, Value, String, SoftKey) {
    let email = unique_email();
    let token = access(&server.signup(&email).await);
    let fid = enroll(server, &token, "yubikey").await;
    let (cid, w) = challenge(server, &token, &fid).await;
    let mut key = SoftKey::new();
    let cred = key.register(&w["credential_options"]["publicKey"], &Client::default());
    let resp = verify(server, &token, &fid, &cid, "create", cred).await;
    assert_eq!(resp.status(), 200);
    (email, resp.json().await.unwrap(), fid, key)
}

/// A fresh aal1 login of `email` and a request challenge for `fid`: `(token, challenge id, options)`.
async fn login_and_challenge(server: &TestServer, email: &str, fid: &str) -> (String, String, Value) {
    let token = access(&server.login(email).await);
    let (cid, w) = challenge(server, &token, fid).await;
    assert_eq!(w["type"], "request");
    (token, cid, w["credential_options"]["publicKey"].clone())
}

#[tokio::test]
async fn registration_then_assertion_raise_sessions_to_aal2() {
    let server = start().await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let token = access(&session);
    let resp = server.post_auth("/factors", &token, json!({"factor_type": "webauthn", "friendly_name": "key"})).await;
    assert_eq!(resp.status(), 200);
    let e: Value = resp.json().await.unwrap();
    assert_eq!((e["type"].as_str(), e["friendly_name"].as_str()), (Some("webauthn"), Some("key")));
    assert!(e.get("totp").is_none(), "{e}");
    let fid = e["id"].as_str().unwrap().to_owned();
    let user: Value = server.get_auth("/user", &token).await.json().await.unwrap();
    assert_eq!(
        (user["factors"][0]["factor_type"].as_str(), user["factors"][0]["status"].as_str()),
        (Some("webauthn"), Some("unverified"))
    );

    // Creation options: the configured relying party, the user, no attestation, presence enough.
    let (cid, w) = challenge(&server, &token, &fid).await;
    assert_eq!(w["type"], "create");
    let pk = &w["credential_options"]["publicKey"];
    assert_eq!((pk["rp"]["id"].as_str(), pk["rp"]["name"].as_str()), (Some(RP_ID), Some("Example")));
    assert_eq!(pk["user"]["name"], email.as_str());
    assert_eq!(pk["attestation"], "none");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "preferred");
    assert!(pk["extensions"].get("credentialProtectionPolicy").is_none(), "{pk}");
    assert!(B64.decode(pk["challenge"].as_str().unwrap()).unwrap().len() >= 16);
    assert!(pk["pubKeyCredParams"].as_array().unwrap().iter().any(|p| p["alg"] == -7));

    let mut key = SoftKey::new();
    let resp = verify(&server, &token, &fid, &cid, "create", key.register(pk, &Client::default())).await;
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    assert_eq!(claims(&access(&s))["aal"], "aal2");
    assert_eq!(claims(&access(&s))["session_id"], claims(&token)["session_id"], "same session");
    assert_eq!(amr(&access(&s)), ["mfa/webauthn", "password"]);
    let f = &s["user"]["factors"][0];
    assert_eq!((f["status"].as_str(), f["factor_type"].as_str()), (Some("verified"), Some("webauthn")));
    assert_eq!(f["web_authn_aaguid"], uuid::Uuid::from_bytes(AAGUID).to_string().as_str());
    let r: Value = server.refresh(s["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(claims(&access(&r))["aal"], "aal2", "refresh keeps aal2");

    // A new sign-in is aal1; the request options name this factor's credential only.
    let (t1, cid, pk) = login_and_challenge(&server, &email, &fid).await;
    assert_eq!(claims(&t1)["aal"], "aal1");
    assert_eq!(pk["rpId"], RP_ID);
    let allowed: Vec<&str> =
        pk["allowCredentials"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(allowed, [B64.encode(&key.cred_id)]);
    let resp = verify(&server, &t1, &fid, &cid, "request", key.assert(&pk, &Client::default())).await;
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    assert_eq!(claims(&access(&s))["aal"], "aal2");
    assert_eq!(amr(&access(&s)), ["mfa/webauthn", "password"]);
    // The challenge is spent: the same assertion again finds no challenge.
    let resp = verify(&server, &access(&s), &fid, &cid, "request", key.assert(&pk, &Client::default())).await;
    assert_error(resp, 422, "mfa_factor_not_found").await;
}

#[tokio::test]
async fn forged_assertions_are_refused() {
    let server = start().await;
    let (email, _, fid, mut key) = registered(&server).await;
    let honest = Client::default();
    let cases = [
        ("another origin", Client { origin: "https://evil.example.net".into(), ..honest.clone() }),
        // auth-js sends rpOrigins naming it; only the configuration's origins count.
        ("a sibling origin", Client { origin: "https://other.example.com".into(), ..honest.clone() }),
        ("another port", Client { origin: "https://app.example.com:8443".into(), ..honest.clone() }),
        ("plain http", Client { origin: "http://app.example.com".into(), ..honest.clone() }),
        ("another RP ID", Client { rp_id: "evil.example.net".into(), ..honest.clone() }),
        ("another challenge", Client { challenge: Some(B64.encode([7u8; 32])), ..honest.clone() }),
        ("a bad signature", Client { bad_signature: true, ..honest.clone() }),
    ];
    for (name, client) in &cases {
        let (token, cid, pk) = login_and_challenge(&server, &email, &fid).await;
        let body = json!({
            "challenge_id": cid,
            "webauthn": {
                "type": "request",
                "rpId": client.rp_id,
                "rpOrigins": [client.origin],
                "credential_response": key.assert(&pk, client),
            },
        });
        let resp = server.post_auth(&format!("/factors/{fid}/verify"), &token, body).await;
        let body = assert_error(resp, 422, "mfa_verification_failed").await;
        assert!(body["message"].as_str().unwrap().contains("WebAuthn"), "{name}: {body}");
    }
    // Five failures kill a challenge (as five wrong TOTP codes do).
    let (token, cid, pk) = login_and_challenge(&server, &email, &fid).await;
    for (_, client) in &cases[..5] {
        let resp = verify(&server, &token, &fid, &cid, "request", key.assert(&pk, client)).await;
        assert_error(resp, 422, "mfa_verification_failed").await;
    }
    let resp = verify(&server, &token, &fid, &cid, "request", key.assert(&pk, &honest)).await;
    assert_error(resp, 422, "mfa_factor_not_found").await;
    assert_eq!(claims(&token)["aal"], "aal1");
    // An honest assertion on a new challenge still works.
    let (token, cid, pk) = login_and_challenge(&server, &email, &fid).await;
    assert_eq!(verify(&server, &token, &fid, &cid, "request", key.assert(&pk, &honest)).await.status(), 200);
}

#[tokio::test]
async fn replays_and_counter_regressions_are_refused() {
    let server = start().await;
    let (email, _, fid, mut key) = registered(&server).await;
    // Counter 1 was the registration; assert at 5.
    let (token, cid, pk) = login_and_challenge(&server, &email, &fid).await;
    let first = key.assert(&pk, &Client { counter: Some(5), ..Client::default() });
    assert_eq!(verify(&server, &token, &fid, &cid, "request", first.clone()).await.status(), 200);
    // The same assertion against a new challenge: the challenge differs.
    let (token, cid, pk) = login_and_challenge(&server, &email, &fid).await;
    assert_error(verify(&server, &token, &fid, &cid, "request", first).await, 422, "mfa_verification_failed").await;
    // A fresh signature whose counter did not grow (a cloned key): refused, equal or lower.
    for counter in [5, 3] {
        let (token, cid, pk) = login_and_challenge(&server, &email, &fid).await;
        let cred = key.assert(&pk, &Client { counter: Some(counter), ..Client::default() });
        assert_error(verify(&server, &token, &fid, &cid, "request", cred).await, 422, "mfa_verification_failed").await;
    }
    let _ = pk;
    // The stored counter moved to 5 and survives a restart: 6 passes, then 6 again does not.
    let server = server.restart().await;
    let (token, cid, pk) = login_and_challenge(&server, &email, &fid).await;
    let cred = key.assert(&pk, &Client { counter: Some(6), ..Client::default() });
    assert_eq!(verify(&server, &token, &fid, &cid, "request", cred).await.status(), 200);
    let (token, cid, pk) = login_and_challenge(&server, &email, &fid).await;
    let cred = key.assert(&pk, &Client { counter: Some(6), ..Client::default() });
    assert_error(verify(&server, &token, &fid, &cid, "request", cred).await, 422, "mfa_verification_failed").await;
}

#[tokio::test]
async fn registration_is_checked_like_assertions() {
    let server = start().await;
    let token = access(&server.signup(&unique_email()).await);
    let fid = enroll(&server, &token, "").await;
    for client in [
        Client { origin: "https://evil.example.net".into(), ..Client::default() },
        Client { rp_id: "evil.example.net".into(), ..Client::default() },
        Client { challenge: Some(B64.encode([1u8; 32])), ..Client::default() },
    ] {
        let (cid, w) = challenge(&server, &token, &fid).await;
        let cred = SoftKey::new().register(&w["credential_options"]["publicKey"], &client);
        assert_error(verify(&server, &token, &fid, &cid, "create", cred).await, 422, "mfa_verification_failed").await;
    }
    let user: Value = server.get_auth("/user", &token).await.json().await.unwrap();
    assert_eq!(user["factors"][0]["status"], "unverified");
}

#[tokio::test]
async fn verify_parameter_errors() {
    let server = start().await;
    let token = access(&server.signup(&unique_email()).await);
    let fid = enroll(&server, &token, "").await;
    let (cid, w) = challenge(&server, &token, &fid).await;
    let path = format!("/factors/{fid}/verify");
    let cred = SoftKey::new().register(&w["credential_options"]["publicKey"], &Client::default());
    for (body, message) in [
        (json!({"challenge_id": cid}), "WebAuthn config required"),
        (json!({"challenge_id": cid, "webauthn": {"type": "get", "credential_response": cred}}), "create or request"),
        (json!({"challenge_id": cid, "webauthn": {"type": "create"}}), "credential_response required"),
        (
            json!({"challenge_id": cid, "webauthn": {"type": "create", "credential_response": {"id": 1}}}),
            "Invalid credential_response",
        ),
        (json!({"challenge_id": cid, "webauthn": {"type": "request", "credential_response": cred}}), "must be create"),
    ] {
        let body = assert_error(server.post_auth(&path, &token, body).await, 400, "validation_failed").await;
        assert!(body["message"].as_str().unwrap().contains(message), "{body}");
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(verify(&server, &token, &fid, &unknown, "create", cred.clone()).await, 422, "mfa_factor_not_found")
        .await;
    // From another IP.
    let resp = server
        .request(Method::POST, &path)
        .bearer_auth(&token)
        .header("X-Forwarded-For", "203.0.113.9")
        .json(&json!({"challenge_id": cid, "webauthn": {"type": "create", "credential_response": cred}}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 422, "mfa_ip_address_mismatch").await;
    // None of that spent the challenge.
    assert_eq!(verify(&server, &token, &fid, &cid, "create", cred).await.status(), 200);
}

#[tokio::test]
async fn expired_challenges_are_refused() {
    let server = TestServer::start_with(|c| {
        enabled(c);
        c.settings.mfa.challenge_expiry = std::time::Duration::from_secs(1);
    })
    .await;
    let token = access(&server.signup(&unique_email()).await);
    let fid = enroll(&server, &token, "").await;
    let (cid, w) = challenge(&server, &token, &fid).await;
    let cred = SoftKey::new().register(&w["credential_options"]["publicKey"], &Client::default());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_error(verify(&server, &token, &fid, &cid, "create", cred.clone()).await, 422, "mfa_challenge_expired").await;
    // And it is gone.
    assert_error(verify(&server, &token, &fid, &cid, "create", cred).await, 422, "mfa_factor_not_found").await;
}

#[tokio::test]
async fn factor_limits_names_and_aal() {
    let server = TestServer::start_with(|c| {
        enabled(c);
        c.settings.mfa.max_enrolled_factors = 3;
    })
    .await;
    let email = unique_email();
    let token = access(&server.signup(&email).await);
    let f1 = enroll(&server, &token, "a").await;
    let resp = server.post_auth("/factors", &token, json!({"factor_type": "webauthn", "friendly_name": "a"})).await;
    assert_error(resp, 422, "mfa_factor_name_conflict").await;
    enroll(&server, &token, "b").await;
    enroll(&server, &token, "c").await;
    let resp = server.post_auth("/factors", &token, json!({"factor_type": "webauthn", "friendly_name": "d"})).await;
    assert_error(resp, 422, "too_many_enrolled_mfa_factors").await;
    // Verifying one deletes the other unverified WebAuthn factors (GoTrue).
    let (cid, w) = challenge(&server, &token, &f1).await;
    let mut key = SoftKey::new();
    let resp = verify(
        &server,
        &token,
        &f1,
        &cid,
        "create",
        key.register(&w["credential_options"]["publicKey"], &Client::default()),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    assert_eq!(s["user"]["factors"].as_array().unwrap().len(), 1);
    // An aal1 session of a user with a verified factor: no new factor, no unenroll, no password change.
    let t1 = access(&server.login(&email).await);
    let resp = server.post_auth("/factors", &t1, json!({"factor_type": "webauthn", "friendly_name": "e"})).await;
    assert_error(resp, 403, "insufficient_aal").await;
    let resp = server.request(Method::DELETE, &format!("/factors/{f1}")).bearer_auth(&t1).send().await.unwrap();
    assert_error(resp, 422, "insufficient_aal").await;
    assert_error(server.put_auth("/user", &t1, json!({"password": "another-pass-123"})).await, 401, "insufficient_aal")
        .await;
    // A second key on the aal2 session: its creation options exclude the first credential.
    let t2 = access(&s);
    let f2 = enroll(&server, &t2, "backup").await;
    let (_, w) = challenge(&server, &t2, &f2).await;
    let excluded: Vec<&str> = w["credential_options"]["publicKey"]["excludeCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(excluded, [B64.encode(&key.cred_id)]);
    // Unenrolling on aal2 works and takes `mfa/webauthn` off the user's sessions.
    let resp = server.request(Method::DELETE, &format!("/factors/{f1}")).bearer_auth(&t2).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let r: Value = server.refresh(s["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(claims(&access(&r))["aal"], "aal1");
    assert!(!amr(&access(&r)).contains(&"mfa/webauthn".to_owned()));
}

#[tokio::test]
async fn credentials_and_challenges_survive_restart() {
    let server = start().await;
    let email = unique_email();
    let token = access(&server.signup(&email).await);
    let fid = enroll(&server, &token, "").await;
    // A registration ceremony started before the restart finishes after it.
    let (cid, w) = challenge(&server, &token, &fid).await;
    let server = server.restart().await;
    let mut key = SoftKey::new();
    let cred = key.register(&w["credential_options"]["publicKey"], &Client::default());
    assert_eq!(verify(&server, &token, &fid, &cid, "create", cred).await.status(), 200);
    let server = server.restart().await;
    let (token, cid, pk) = login_and_challenge(&server, &email, &fid).await;
    assert_eq!(verify(&server, &token, &fid, &cid, "request", key.assert(&pk, &Client::default())).await.status(), 200);
}

#[tokio::test]
async fn switches() {
    // Off by default, as GoTrue.
    let server = TestServer::start().await;
    let token = access(&server.signup(&unique_email()).await);
    let resp = server.post_auth("/factors", &token, json!({"factor_type": "webauthn"})).await;
    assert_error(resp, 422, "mfa_webauthn_enroll_not_enabled").await;
    // Verification off: challenge and verify refuse, with GoTrue's codes (verify's is the
    // enroll code, as GoTrue answers it).
    let server = TestServer::start_with(|c| {
        enabled(c);
        c.settings.mfa.web_authn.verify_enabled = false;
    })
    .await;
    let token = access(&server.signup(&unique_email()).await);
    let fid = enroll(&server, &token, "").await;
    let resp = server.post_auth(&format!("/factors/{fid}/challenge"), &token, json!({})).await;
    assert_error(resp, 422, "mfa_webauthn_verify_not_enabled").await;
    let body = json!({"challenge_id": uuid::Uuid::new_v4(), "webauthn": {"type": "create", "credential_response": {}}});
    let resp = server.post_auth(&format!("/factors/{fid}/verify"), &token, body).await;
    assert_error(resp, 422, "mfa_webauthn_enroll_not_enabled").await;
    // Enrollment off, verification on: no new factors.
    let server = TestServer::start_with(|c| {
        enabled(c);
        c.settings.mfa.web_authn.enroll_enabled = false;
    })
    .await;
    let token = access(&server.signup(&unique_email()).await);
    let resp = server.post_auth("/factors", &token, json!({"factor_type": "webauthn"})).await;
    assert_error(resp, 422, "mfa_webauthn_enroll_not_enabled").await;
}

#[tokio::test]
async fn admin_routes_list_and_delete_webauthn_factors() {
    let server = start().await;
    let (email, s, fid, _) = registered(&server).await;
    let uid = s["user"]["id"].as_str().unwrap().to_owned();
    let admin = service_role_token();
    let list: Value = server.get_json(&format!("/admin/users/{uid}/factors"), &admin).await;
    assert_eq!((list[0]["id"].as_str(), list[0]["factor_type"].as_str()), (Some(fid.as_str()), Some("webauthn")));
    assert!(list[0].get("web_authn_credential").is_none(), "the credential stays inside: {list}");
    let resp = server
        .request(Method::DELETE, &format!("/admin/users/{uid}/factors/{fid}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The aal2 session lost its WebAuthn level.
    let r: Value = server.refresh(s["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(claims(&access(&r))["aal"], "aal1");
    let user: Value = server.get_auth("/user", &access(&server.login(&email).await)).await.json().await.unwrap();
    assert!(user.get("factors").is_none_or(|f| f.as_array().is_some_and(Vec::is_empty)), "{user}");
    // The audit log names the factor type.
    let audit: Value = server.get_json("/admin/audit?query=type:factor", &admin).await;
    let entries: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["payload"]["traits"]["factor_id"] == fid.as_str())
        .map(|e| (e["payload"]["action"].as_str().unwrap(), e["payload"]["traits"]["factor_type"].as_str().unwrap()))
        .collect();
    for action in ["factor_in_progress", "challenge_created", "verification_attempted", "factor_deleted"] {
        assert!(entries.contains(&(action, "webauthn")), "{action} in {entries:?}");
    }
}
