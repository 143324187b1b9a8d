//! Issue 9, protected data and bounded memory: refresh tokens are stored only as digests (a
//! copy of the data directory hands out no session), GoTrue's parent-replay behaviour survives
//! restarts, and the audit log is paged straight from sled.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expect is a failed test

use crate::common::*;
use base64::Engine;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// Helpers

async fn ok_json(resp: Response, what: &str) -> Value {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {text}"))
}

/// Refreshes `token`, which must succeed; returns the refresh token handed back.
async fn refreshed(server: &TestServer, token: &str) -> String {
    let body = ok_json(server.refresh(token).await, "refresh").await;
    body["refresh_token"].as_str().expect("refresh_token").to_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails if any file under `dir` holds one of `tokens`, as text or as its decoded bytes.
fn assert_no_raw_tokens(dir: &Path, tokens: &[String]) {
    let files = files_under(dir);
    assert!(!files.is_empty(), "the data directory holds files");
    for token in tokens {
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).unwrap_or_default();
        for (path, bytes) in &files {
            assert!(!contains(bytes, token.as_bytes()), "refresh token {token} found in {}", path.display());
            assert!(!contains(bytes, &decoded), "decoded refresh token {token} found in {}", path.display());
        }
    }
}

/// `GET /admin/audit<query>`: (entries, X-Total-Count).
async fn audit(server: &TestServer, query: &str) -> (Vec<Value>, usize) {
    let resp =
        server.request(Method::GET, &format!("/admin/audit{query}")).bearer_auth(service_role_token()).send().await;
    let resp = resp.expect("request");
    let total = resp
        .headers()
        .get("x-total-count")
        .and_then(|v| v.to_str().ok())
        .expect("X-Total-Count")
        .parse()
        .expect("a number");
    let body = ok_json(resp, "GET /admin/audit").await;
    (body.as_array().expect("a JSON array").clone(), total)
}

fn action(entry: &Value) -> &str {
    entry["payload"]["action"].as_str().expect("payload.action")
}

fn id(entry: &Value) -> String {
    entry["id"].as_str().expect("id").to_owned()
}

// ---------------------------------------------------------------------------------------------
// Refresh tokens

/// A copy of the data directory must not hand out sessions: no refresh token ever issued (the
/// active one, its parents, the one a parent replay returned) is in any file, as text or bytes.
#[tokio::test]
async fn no_raw_refresh_token_in_the_data_files() {
    let server = TestServer::start().await;
    let email = unique_email();
    let mut issued = vec![server.signup(&email).await["refresh_token"].as_str().unwrap().to_owned()];
    issued.push(server.login(&email).await["refresh_token"].as_str().unwrap().to_owned());
    for _ in 0..3 {
        let next = refreshed(&server, issued.last().unwrap()).await;
        issued.push(next);
    }
    // Parent replay hands the active token back.
    let parent = issued[issued.len() - 2].clone();
    assert_eq!(&refreshed(&server, &parent).await, issued.last().unwrap());
    let dir = server.dir().to_path_buf();
    assert_no_raw_tokens(&dir, &issued);
    // After a stop (the restart closes sled first) the files still hold none, and the scan does
    // see the data: the user's address is in there.
    let server = server.restart().await;
    assert_no_raw_tokens(&dir, &issued);
    assert!(
        files_under(&dir).iter().any(|(_, bytes)| contains(bytes, email.as_bytes())),
        "the scan reads the database"
    );
    // And the last token still works.
    refreshed(&server, issued.last().unwrap()).await;
}

/// GoTrue's parent replay (the client lost the response of its last refresh) returns the active
/// token, before and after restarts, and the active token keeps refreshing.
#[tokio::test]
async fn parent_replay_returns_the_active_token_across_restarts() {
    let server = TestServer::start().await;
    let t1 = server.signup(&unique_email()).await["refresh_token"].as_str().unwrap().to_owned();
    let t2 = refreshed(&server, &t1).await;
    assert_ne!(t1, t2);
    assert_eq!(refreshed(&server, &t1).await, t2, "parent replay before a restart");

    let server = server.restart().await;
    assert_eq!(refreshed(&server, &t1).await, t2, "parent replay after a restart");
    let t3 = refreshed(&server, &t2).await;
    assert!(![&t1, &t2].contains(&&t3));
    assert_eq!(refreshed(&server, &t2).await, t3);

    let server = server.restart().await;
    assert_eq!(refreshed(&server, &t2).await, t3, "parent replay after a second restart");
    let t4 = refreshed(&server, &t3).await;
    // The grandparent is a reuse (rotation is on and the reuse interval has passed or is 0).
    let resp = server.refresh(&t2).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = server.refresh(&t1).await;
    assert_error(resp, 400, "refresh_token_already_used").await;
    // ... which revoked the whole family.
    assert_error(server.refresh(&t4).await, 400, "refresh_token_already_used").await;
}

/// GoTrue writes a `token_refreshed` audit entry when it hands the active token back to a parent
/// replay (tokens/service.go, RefreshTokenGrant), so we do too — one entry, nothing more; the
/// log lives in sled (see the tests below), so replays do not grow memory.
#[tokio::test]
async fn parent_replay_writes_one_audit_entry_like_gotrue() {
    let server = TestServer::start().await;
    let t1 = server.signup(&unique_email()).await["refresh_token"].as_str().unwrap().to_owned();
    let t2 = refreshed(&server, &t1).await;
    let (_, before) = audit(&server, "?query=action:token_refreshed").await;
    assert_eq!(refreshed(&server, &t1).await, t2);
    let (entries, after) = audit(&server, "?query=action:token_refreshed").await;
    assert_eq!(after, before + 1);
    assert_eq!(action(&entries[0]), "token_refreshed");
    let (_, total) = audit(&server, "").await;
    assert_eq!(refreshed(&server, &t1).await, t2);
    assert_eq!(audit(&server, "").await.1, total + 1, "exactly one entry per replay");
}

// ---------------------------------------------------------------------------------------------
// Audit log

/// The checks of [`audit_log_pages_from_sled_and_survives_restart`]; returns every entry id,
/// newest first.
async fn check_audit_pages(server: &TestServer, other: &str, refreshes_done: usize) -> Vec<String> {
    let (all, total) = audit(server, "?per_page=1000").await;
    assert_eq!(all.len(), total);
    assert!(total > refreshes_done, "every refresh is audited: {total}");
    // Newest first: the last sign-up is on top, times never increase.
    assert_eq!(all[0]["payload"]["actor_username"], other);
    let times: Vec<&str> = all.iter().map(|e| e["created_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    // Pages of 10 cut the same sequence, with the same total.
    let mut paged = Vec::new();
    for page in 1..=total.div_ceil(10) {
        let (entries, t) = audit(server, &format!("?page={page}&per_page=10")).await;
        assert_eq!(t, total);
        assert!(entries.len() == 10 || page == total.div_ceil(10));
        paged.extend(entries.iter().map(id));
    }
    assert_eq!(paged, all.iter().map(id).collect::<Vec<_>>());
    let beyond = audit(server, &format!("?page={}&per_page=10", total.div_ceil(10) + 1)).await;
    assert_eq!((beyond.0.len(), beyond.1), (0, total));
    // The filter counts every match and pages them.
    let (refreshes, n) = audit(server, "?query=action:token_refreshed&per_page=20&page=3").await;
    assert_eq!(n, refreshes_done);
    assert_eq!(refreshes.len(), refreshes_done - 40);
    assert!(refreshes.iter().all(|e| action(e) == "token_refreshed"));
    let (mine, n) = audit(server, &format!("?query=author:{}", other.to_uppercase())).await;
    assert!(n >= 1 && mine.iter().all(|e| e["payload"]["actor_username"] == other));
    let (tokens, n) = audit(server, "?query=type:token&per_page=5").await;
    assert_eq!((tokens.len(), n), (5, refreshes_done));
    all.iter().map(id).collect::<Vec<_>>()
}

/// Many entries, paged newest first from sled: totals, page contents, the filter, and the same
/// answers after a restart.
#[tokio::test]
async fn audit_log_pages_from_sled_and_survives_restart() {
    const REFRESHES: usize = 45;
    let server = TestServer::start().await;
    let email = unique_email();
    let mut token = server.signup(&email).await["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..REFRESHES {
        token = refreshed(&server, &token).await;
    }
    let other = unique_email();
    server.signup(&other).await;

    let before = check_audit_pages(&server, &other, REFRESHES).await;
    let server = server.restart().await;
    let after = check_audit_pages(&server, &other, REFRESHES).await;
    assert_eq!(before, after, "the same log after a restart");
    // New entries keep going on top after the restart.
    refreshed(&server, &token).await;
    let (top, total) = audit(&server, "?per_page=1").await;
    assert_eq!(total, before.len() + 1);
    assert_eq!(action(&top[0]), "token_refreshed");
    assert!(!before.contains(&id(&top[0])));
    let ids: HashSet<String> = audit(&server, "?per_page=1000").await.0.iter().map(id).collect();
    assert_eq!(ids.len(), total, "no duplicate ids");
}
