//! Everything acknowledged survives a restart on the same data directory.

use crate::common::*;
use ferrotrue_actors::crypto::Secret;
use ferrotrue_actors::oauth_flow::FlowState;
use ferrotrue_actors::otp_issuer::NewToken;
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test]
async fn users_sessions_and_rotations_survive_a_restart() {
    let server = TestServer::start().await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let user_id = session["user"]["id"].as_str().unwrap().to_owned();
    // Rotate once, change metadata, and end a second session before the restart.
    let rotated: Value = server.refresh(session["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    let access = rotated["access_token"].as_str().unwrap().to_owned();
    let resp = server.put_auth("/user", &access, json!({"data": {"plan": "pro"}})).await;
    assert_eq!(resp.status(), 200);
    let other = server.login(&email).await;
    let resp = server.request(reqwest::Method::POST, "/logout?scope=others").bearer_auth(&access).send().await.unwrap();
    assert_eq!(resp.status(), 204);

    let server = server.restart().await;

    let me: Value = server.get_auth("/user", &access).await.json().await.unwrap();
    assert_eq!(me["id"], user_id.as_str());
    assert_eq!(me["user_metadata"]["plan"], "pro");
    assert_eq!(me["email"], email.as_str());
    // The rotated token is the live one; its parent hands it back; the ended session stays ended.
    let again = server.refresh(rotated["refresh_token"].as_str().unwrap()).await;
    assert_eq!(again.status(), 200);
    let gone = server.refresh(other["refresh_token"].as_str().unwrap()).await;
    assert_error(gone, 400, "refresh_token_not_found").await;
    // Sign-in still works, and the email index was reloaded (duplicate detection).
    server.login(&email).await;
    let dup = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    assert_error(dup, 422, "user_already_exists").await;
}

#[tokio::test]
async fn phone_index_and_counts_survive_a_restart() {
    let server = TestServer::start().await;
    let phone = unique_phone();
    let resp = server.post("/signup", json!({"phone": format!("+{phone}"), "password": PASSWORD})).await;
    assert_eq!(resp.status(), 200);
    let users_before = server.actors.users.count().await.unwrap();
    let sessions_before = server.actors.sessions.count().await.unwrap();
    let server = server.restart().await;
    assert_eq!(server.actors.users.count().await.unwrap(), users_before);
    assert_eq!(server.actors.sessions.count().await.unwrap(), sessions_before);
    let login = server.post("/token?grant_type=password", json!({"phone": phone, "password": PASSWORD})).await;
    assert_eq!(login.status(), 200);
}

/// The id of a freshly signed-up user.
async fn existing_user(server: &TestServer) -> Uuid {
    let session = server.signup(&unique_email()).await;
    Uuid::parse_str(session["user"]["id"].as_str().expect("user id")).expect("uuid")
}

#[tokio::test]
async fn one_time_tokens_and_flow_states_survive_a_restart() {
    let server = TestServer::start().await;
    let now = server.actors.clock.now();
    // A real user: on Postgres tokens and flows reference users (foreign keys).
    let user_id = existing_user(&server).await;
    let token = NewToken {
        user_id,
        token_type: "confirmation_token".into(),
        relates_to: "ann@example.com".into(),
        link: Some(Secret("abc123link".into())),
        code: Secret("123456".into()),
        expires_at: None,
    };
    server.actors.otps.issue(token.clone()).await.unwrap();
    // A newer token of the same type replaces the old one.
    let newer = NewToken { link: Some(Secret("newer-link".into())), ..token.clone() };
    let newer = server.actors.otps.issue(newer).await.unwrap();
    let flow = FlowState {
        id: Uuid::new_v4(),
        auth_code: "auth-code-1".into(),
        code_challenge: "challenge".into(),
        code_challenge_method: "s256".into(),
        provider: "email".into(),
        authentication_method: "email/signup".into(),
        user_id: Some(user_id),
        redirect_to: "http://localhost:3000".into(),
        created_at: now,
    };
    server.actors.oauth.create(flow.clone()).await.unwrap();

    let server = server.restart().await;

    assert_eq!(server.actors.otps.count().await.unwrap(), 1);
    assert!(server.actors.otps.peek("abc123link").await.unwrap().is_none(), "replaced token is gone");
    let found = server.actors.otps.peek("newer-link").await.unwrap().expect("the newer token survived");
    assert_eq!(found, newer);
    assert_eq!(server.actors.otps.consume(found.id, &[]).await.unwrap(), newer);
    assert!(server.actors.otps.consume(found.id, &[]).await.is_err(), "single use");
    assert!(server.actors.otps.peek("newer-link").await.unwrap().is_none(), "single use");
    assert_eq!(server.actors.oauth.take_by_auth_code("auth-code-1").await.unwrap(), flow);
    let err = server.actors.oauth.take_by_auth_code("auth-code-1").await.unwrap_err();
    assert_eq!(err.code, ferrotrue_actors::error::ErrorCode::FlowStateNotFound);
}

#[tokio::test]
async fn expired_one_time_tokens_and_flow_states_are_refused() {
    let server = TestServer::start().await;
    let long_ago = ferrotrue_actors::clock::Timestamp(1_000_000);
    let token = NewToken {
        user_id: existing_user(&server).await,
        token_type: "recovery_token".into(),
        relates_to: "ann@example.com".into(),
        link: Some(Secret("old-link".into())),
        code: Secret("123456".into()),
        expires_at: Some(long_ago),
    };
    let issued = server.actors.otps.issue(token).await.unwrap();
    assert!(server.actors.otps.peek("old-link").await.unwrap().is_none(), "expired links are not found");
    let err = server.actors.otps.consume(issued.id, &[]).await.unwrap_err();
    assert_eq!(err.code, ferrotrue_actors::error::ErrorCode::OtpExpired);
    let flow = FlowState {
        id: Uuid::new_v4(),
        auth_code: "old-code".into(),
        code_challenge: String::new(),
        code_challenge_method: "plain".into(),
        provider: "email".into(),
        authentication_method: "magiclink".into(),
        user_id: None,
        redirect_to: String::new(),
        created_at: long_ago,
    };
    server.actors.oauth.create(flow).await.unwrap();
    let err = server.actors.oauth.take_by_auth_code("old-code").await.unwrap_err();
    assert_eq!(err.code, ferrotrue_actors::error::ErrorCode::FlowStateExpired);
}
