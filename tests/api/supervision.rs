//! A panic inside an actor's handler costs that request an error at most: the supervisor
//! restarts the actor from sled, nothing acknowledged is lost, other users are unaffected.

use crate::common::*;
use ferrotrue_actors::error::ErrorCode;
use serde_json::Value;
use std::time::Duration;

/// Retries `probe` until it succeeds (the supervisor restarts within milliseconds).
async fn eventually<F, Fut, T>(mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the actor did not come back");
}

#[tokio::test]
async fn user_registry_panic_is_isolated_and_recovered() {
    let server = TestServer::start().await;
    let ann = unique_email();
    let ann_session = server.signup(&ann).await;
    let ann_token = ann_session["access_token"].as_str().unwrap().to_owned();

    let err = server.actors.users.inject_panic().await.unwrap_err();
    assert_eq!(err.code, ErrorCode::UnexpectedFailure, "the failed request gets a 500-class error");

    // The registry comes back with every acknowledged user.
    let me: Value = eventually(|| async {
        let resp = server.get_auth("/user", &ann_token).await;
        if resp.status() == 200 {
            Some(resp.json::<Value>().await.unwrap())
        } else {
            None
        }
    })
    .await;
    assert_eq!(me["email"], ann.as_str());
    // New work goes on normally.
    let bob = unique_email();
    server.signup(&bob).await;
    server.login(&ann).await;
    assert!(server.actors.users.count().await.unwrap() >= 2);
}

#[tokio::test]
async fn session_manager_panic_keeps_every_session() {
    let server = TestServer::start().await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let refresh = session["refresh_token"].as_str().unwrap().to_owned();

    assert!(server.actors.sessions.inject_panic().await.is_err());

    let rotated = eventually(|| async {
        let resp = server.refresh(&refresh).await;
        (resp.status() == 200).then_some(resp)
    })
    .await;
    let rotated: Value = rotated.json().await.unwrap();
    assert_ne!(rotated["refresh_token"], refresh.as_str());
    let me = server.get_auth("/user", rotated["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200);
}

#[tokio::test]
async fn http_keeps_serving_while_an_actor_restarts() {
    let server = TestServer::start().await;
    for _ in 0..3 {
        let _ = server.actors.users.inject_panic().await;
        let health = server.http.get(server.url("/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }
    // Signups work again once the registry is back.
    eventually(|| async {
        let resp = server.post("/signup", serde_json::json!({"email": unique_email(), "password": PASSWORD})).await;
        (resp.status() == 200).then_some(())
    })
    .await;
}
