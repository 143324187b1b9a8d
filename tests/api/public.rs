//! Public endpoints (SPEC §0.1, §2.4, §8.4): `/health`, `/settings`, and the rule that public
//! endpoints ignore an `Authorization` header they do not need.

#![allow(clippy::expect_used)] // helpers outside #[test] fns; a failed expect is a failed test

use crate::common::*;
use jsonwebtoken::Algorithm;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// OAuth providers `/settings` lists under `external`, in SPEC §8.4 order.
const PROVIDERS: &[&str] = &[
    "apple",
    "azure",
    "bitbucket",
    "discord",
    "facebook",
    "snapchat",
    "figma",
    "fly",
    "github",
    "gitlab",
    "google",
    "keycloak",
    "kakao",
    "linkedin",
    "linkedin_oidc",
    "notion",
    "spotify",
    "slack",
    "slack_oidc",
    "workos",
    "twitch",
    "twitter",
    "zoom",
];

async fn get_json(server: &TestServer, path: &str) -> Value {
    let resp = server.request(Method::GET, path).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(ct.starts_with("application/json"), "GET {path}: content-type {ct:?}");
    resp.json().await.expect("json")
}

/// The exact `/settings` body for the given switches (SPEC §8.4).
fn expected_settings(
    anonymous: bool,
    email: bool,
    phone: bool,
    disable_signup: bool,
    mailer: bool,
    sms: bool,
) -> Value {
    let mut external = serde_json::Map::new();
    external.insert("anonymous_users".into(), json!(anonymous));
    for p in PROVIDERS {
        external.insert((*p).into(), json!(false));
    }
    external.insert("email".into(), json!(email));
    external.insert("phone".into(), json!(phone));
    json!({
        "external": external,
        "disable_signup": disable_signup,
        "mailer_autoconfirm": mailer,
        "phone_autoconfirm": sms,
        "sms_provider": "",
        "saml_enabled": false,
        "saml_private_key_next_configured": false,
        "passkeys_enabled": false,
    })
}

#[tokio::test]
async fn health_is_gotrue_shaped() {
    let server = TestServer::start().await;
    let body = get_json(&server, "/health").await;
    assert_eq!(body["name"], "GoTrue");
    assert_eq!(body["description"], "GoTrue is a user registration and authentication API");
    let version = body["version"].as_str().expect("version is a string");
    assert!(version.starts_with('v') && version.len() > 1, "{version}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(3), "exactly version, name, description: {body}");

    // No client headers at all is fine too.
    let resp = server.http.get(server.url("/health")).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let plain: Value = resp.json().await.expect("json");
    assert_eq!(plain, body);
}

#[tokio::test]
async fn settings_has_the_exact_shape() {
    let server = TestServer::start().await;
    let body = get_json(&server, "/settings").await;
    // Test config: email on, phone on, both autoconfirm, signups open, anonymous off.
    assert_eq!(body, expected_settings(false, true, true, false, true, true));

    // Key sets, spelled out, so a renamed or extra key is obvious.
    let external = body["external"].as_object().expect("external object");
    let mut keys: Vec<&str> = external.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut wanted: Vec<&str> = PROVIDERS.iter().copied().chain(["anonymous_users", "email", "phone"]).collect();
    wanted.sort_unstable();
    assert_eq!(keys, wanted);
    assert!(!external.contains_key("x") && !external.contains_key("vercel_marketplace"));
    assert!(external.values().all(Value::is_boolean), "{body}");
    let mut top: Vec<&str> = body.as_object().expect("object").keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(
        top,
        [
            "disable_signup",
            "external",
            "mailer_autoconfirm",
            "passkeys_enabled",
            "phone_autoconfirm",
            "saml_enabled",
            "saml_private_key_next_configured",
            "sms_provider",
        ]
    );
}

#[tokio::test]
async fn settings_reflect_the_configuration() {
    let server = TestServer::start_with(|c| {
        c.settings.signup.disable_signup = true;
        c.settings.signup.anonymous_enabled = true;
    })
    .await;
    let body = get_json(&server, "/settings").await;
    assert_eq!(body["disable_signup"], true);
    assert_eq!(body["external"]["anonymous_users"], true);
    assert_eq!(body, expected_settings(true, true, true, true, true, true));

    // And they are what the server does: signing up is refused.
    let resp = server.post("/signup", json!({"email": unique_email(), "password": PASSWORD})).await;
    assert_error(resp, 422, "signup_disabled").await;
}

#[tokio::test]
async fn settings_reflect_providers_and_autoconfirm_off() {
    let server = TestServer::start_with(|c| {
        c.settings.signup.phone_enabled = false;
        c.settings.signup.mailer_autoconfirm = false;
        c.settings.signup.sms_autoconfirm = false;
    })
    .await;
    let body = get_json(&server, "/settings").await;
    // This is GoTrue's out-of-the-box answer, exactly as printed in SPEC §8.4.
    assert_eq!(body, expected_settings(false, true, false, false, false, false));
}

#[tokio::test]
async fn public_endpoints_ignore_an_authorization_header() {
    let server = TestServer::start().await;
    // supabase-js sends the anon key as a bearer token on public calls; some apps send junk.
    let anon = sign(&json!({"iss": "supabase", "role": "anon", "iat": now_secs()}), SECRET, Algorithm::HS256);
    let expired = sign(&json!({"role": "authenticated", "exp": now_secs() - 100}), SECRET, Algorithm::HS256);
    for token in ["not-a-jwt", anon.as_str(), expired.as_str()] {
        let resp = server.get_auth("/health", token).await;
        assert_eq!(resp.status(), StatusCode::OK, "/health with Bearer {token}");
        let resp = server.get_auth("/settings", token).await;
        assert_eq!(resp.status(), StatusCode::OK, "/settings with Bearer {token}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["external"]["email"], true);

        let email = unique_email();
        let resp = server.post_auth("/signup", token, json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(resp.status(), StatusCode::OK, "/signup with Bearer {token}");
        let session: Value = resp.json().await.expect("json");
        assert_eq!(session["user"]["email"], email.as_str());

        let resp =
            server.post_auth("/token?grant_type=password", token, json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(resp.status(), StatusCode::OK, "/token with Bearer {token}");
        let refreshed = server
            .post_auth("/token?grant_type=refresh_token", token, json!({"refresh_token": session["refresh_token"]}))
            .await;
        assert_eq!(refreshed.status(), StatusCode::OK, "refresh with Bearer {token}");
    }
    // A Basic header is ignored as well.
    let resp = server.request(Method::GET, "/settings").header("Authorization", "Basic eDp5").send().await;
    assert_eq!(resp.expect("request").status(), StatusCode::OK);
}

#[tokio::test]
async fn jwks_is_an_empty_set_with_a_symmetric_secret() {
    let server = TestServer::start().await;
    let resp = server.http.get(server.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("public, max-age=600"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"keys": []}));
}
