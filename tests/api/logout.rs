//! `POST /logout?scope=global|local|others` (SPEC §1.11): 204 with an empty body, which sessions
//! end, and what their tokens answer afterwards.

#![allow(clippy::expect_used)] // helpers outside #[test] fns; a failed expect is a failed test

use crate::common::*;
use jsonwebtoken::Algorithm;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// `POST /logout{query}` that must answer 204 with an empty body.
async fn logout_ok(server: &TestServer, token: &str, query: &str) {
    let resp =
        server.request(Method::POST, &format!("/logout{query}")).bearer_auth(token).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT, "logout{query}");
    let body = resp.bytes().await.expect("body");
    assert!(body.is_empty(), "204 must have an empty body, got {body:?}");
}

/// The session still works: its access token reads the user and its refresh token rotates.
/// Returns the rotated session.
async fn assert_alive(server: &TestServer, session: &Value) -> Value {
    let resp = server.get_auth("/user", &access(session)).await;
    assert_eq!(resp.status(), StatusCode::OK, "access token of a live session");
    let resp = server.refresh(&refresh_token(session)).await;
    assert_eq!(resp.status(), StatusCode::OK, "refresh token of a live session");
    resp.json().await.expect("json")
}

/// The session is gone: refresh → 400 `refresh_token_not_found`, access → 403 `session_not_found`.
async fn assert_dead(server: &TestServer, session: &Value) {
    assert_error(server.refresh(&refresh_token(session)).await, 400, "refresh_token_not_found").await;
    assert_error(server.get_auth("/user", &access(session)).await, 403, "session_not_found").await;
}

#[tokio::test]
async fn logout_is_204_with_an_empty_body() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    // The clients send a JSON body ({} or nothing); both are fine.
    let resp = server.post_auth("/logout", &access(&session), json!({})).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.bytes().await.expect("body").is_empty());
    let other = server.login(session["user"]["email"].as_str().expect("email")).await;
    logout_ok(&server, &access(&other), "").await;
}

#[tokio::test]
async fn default_scope_is_global() {
    let server = TestServer::start().await;
    let email = unique_email();
    let a = server.signup(&email).await;
    let b = server.login(&email).await;
    let c = server.login(&email).await;
    logout_ok(&server, &access(&a), "").await;
    for s in [&a, &b, &c] {
        assert_dead(&server, s).await;
    }
    // The user can sign in again.
    let fresh = server.login(&email).await;
    assert_alive(&server, &fresh).await;
}

#[tokio::test]
async fn explicit_global_scope_kills_every_session() {
    let server = TestServer::start().await;
    let email = unique_email();
    let a = server.signup(&email).await;
    let b = server.login(&email).await;
    logout_ok(&server, &access(&b), "?scope=global").await;
    assert_dead(&server, &a).await;
    assert_dead(&server, &b).await;
}

#[tokio::test]
async fn local_scope_kills_only_the_current_session() {
    let server = TestServer::start().await;
    let email = unique_email();
    let a = server.signup(&email).await;
    let b = server.login(&email).await;
    logout_ok(&server, &access(&a), "?scope=local").await;
    assert_dead(&server, &a).await;
    assert_alive(&server, &b).await;
}

#[tokio::test]
async fn others_scope_keeps_only_the_current_session() {
    let server = TestServer::start().await;
    let email = unique_email();
    let a = server.signup(&email).await;
    let b = server.login(&email).await;
    let c = server.login(&email).await;
    logout_ok(&server, &access(&a), "?scope=others").await;
    assert_dead(&server, &b).await;
    assert_dead(&server, &c).await;
    let rotated = assert_alive(&server, &a).await;
    // The current session keeps working after its refresh, too.
    assert_alive(&server, &rotated).await;
}

#[tokio::test]
async fn unknown_scope_is_400_validation_failed_and_ends_nothing() {
    let server = TestServer::start().await;
    let email = unique_email();
    let a = server.signup(&email).await;
    let b = server.login(&email).await;
    for scope in ["everything", "GLOBAL", "none"] {
        let resp = server.post_auth(&format!("/logout?scope={scope}"), &access(&a), json!({})).await;
        assert_error(resp, 400, "validation_failed").await;
    }
    assert_alive(&server, &a).await;
    assert_alive(&server, &b).await;
}

#[tokio::test]
async fn logout_without_a_token_is_401_no_authorization() {
    let server = TestServer::start().await;
    let resp = server.request(Method::POST, "/logout").send().await.expect("request");
    assert_error(resp, 401, "no_authorization").await;
    let resp = server.request(Method::POST, "/logout").header("Authorization", "Basic dXNlcjpwYXNz").send().await;
    assert_error(resp.expect("request"), 401, "no_authorization").await;
}

#[tokio::test]
async fn logout_with_a_bad_token_is_403_bad_jwt() {
    let server = TestServer::start().await;
    assert_error(server.post_auth("/logout", "not-a-jwt", json!({})).await, 403, "bad_jwt").await;
    let anon = sign(&json!({"role": "anon", "iss": "supabase"}), SECRET, Algorithm::HS256);
    assert_error(server.post_auth("/logout", &anon, json!({})).await, 403, "bad_jwt").await;
}

#[tokio::test]
async fn logging_out_twice_is_403_session_not_found() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    logout_ok(&server, &access(&session), "?scope=local").await;
    let resp = server.post_auth("/logout?scope=local", &access(&session), json!({})).await;
    assert_error(resp, 403, "session_not_found").await;
    let resp = server.post_auth("/logout", &access(&session), json!({})).await;
    assert_error(resp, 403, "session_not_found").await;
}

#[tokio::test]
async fn other_users_are_untouched() {
    let server = TestServer::start().await;
    let ann = unique_email();
    let bob = unique_email();
    let ann1 = server.signup(&ann).await;
    let ann2 = server.login(&ann).await;
    let bob1 = server.signup(&bob).await;
    let bob2 = server.login(&bob).await;
    logout_ok(&server, &access(&ann1), "?scope=global").await;
    assert_dead(&server, &ann1).await;
    assert_dead(&server, &ann2).await;
    assert_alive(&server, &bob1).await;
    assert_alive(&server, &bob2).await;
}

#[tokio::test]
async fn a_token_without_session_id_logs_out_globally_whatever_the_scope() {
    let server = TestServer::start().await;
    let email = unique_email();
    let a = server.signup(&email).await;
    let b = server.login(&email).await;
    let sub = a["user"]["id"].as_str().expect("id");
    let handmade = sign(
        &json!({"sub": sub, "aud": "authenticated", "role": "authenticated", "exp": now_secs() + 3600}),
        SECRET,
        Algorithm::HS256,
    );
    logout_ok(&server, &handmade, "?scope=local").await;
    assert_dead(&server, &a).await;
    assert_dead(&server, &b).await;
}
