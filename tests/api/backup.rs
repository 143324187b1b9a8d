//! Online backup and offline restore through the binary (`ferrotrue backup`, `ferrotrue
//! restore`): a snapshot taken while the server is under write load holds every user and session
//! that existed when it began, and a restore refuses altered, newer or misplaced files.

use crate::common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

async fn ferrotrue(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ferrotrue"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GOTRUE_JWT_SECRET", SECRET)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

#[tokio::test]
async fn a_backup_under_load_restores_everything_that_existed_when_it_began() {
    let server = TestServer::start().await;
    let mut before = Vec::new();
    for _ in 0..20 {
        let email = unique_email();
        let session = server.signup(&email).await;
        before.push((email, session["refresh_token"].as_str().unwrap().to_owned()));
    }
    // Writers keep going during the backup: sign-ups and refreshes.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, http, url) = (stop.clone(), server.http.clone(), server.url("/signup"));
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"email": unique_email(), "password": PASSWORD});
                if http.post(&url).json(&body).send().await.is_ok_and(|r| r.status() == 200) {
                    n += 1;
                }
            }
            n
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.backup");
    let out = ferrotrue(args(&["backup", "--url", &server.base, "--out", file.to_str().unwrap()])).await;
    stop.store(true, Ordering::Relaxed);
    let during = load.await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(during > 0, "the server kept taking writes");

    let restored = dir.path().join("restored");
    let out = ferrotrue(args(&["restore", file.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()])).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("restored"), "{}", String::from_utf8_lossy(&out.stdout));

    let copy = TestServer::start_with(|c| c.data_dir = restored.clone()).await;
    let users = copy.actors.users.count().await.unwrap();
    assert!(users >= before.len(), "{users} users restored");
    for (email, refresh) in &before {
        let resp = copy.post("/token?grant_type=password", json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(resp.status(), 200, "{email} is in the backup");
        let resp = copy.refresh(refresh).await;
        assert_eq!(resp.status(), 200, "{email}'s session is in the backup");
        let body: Value = resp.json().await.unwrap();
        assert!(body["refresh_token"].is_string());
    }
}

#[tokio::test]
async fn restore_refuses_altered_newer_or_misplaced_backups_and_backup_needs_an_admin() {
    let server = TestServer::start().await;
    server.signup(&unique_email()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.backup");
    let out = ferrotrue(args(&["backup", "--url", &server.base, "--out", file.to_str().unwrap()])).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Not over an existing database.
    let target = dir.path().join("taken");
    assert!(ferrotrue(args(&["restore", file.to_str().unwrap(), "--data-dir", target.to_str().unwrap()]))
        .await
        .status
        .success());
    let out = ferrotrue(args(&["restore", file.to_str().unwrap(), "--data-dir", target.to_str().unwrap()])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a database"));

    // Not an altered or a newer file.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let altered = dir.path().join("altered.backup");
    std::fs::write(&altered, &bytes).unwrap();
    let fresh = dir.path().join("fresh");
    let out = ferrotrue(args(&["restore", altered.to_str().unwrap(), "--data-dir", fresh.to_str().unwrap()])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"), "{}", String::from_utf8_lossy(&out.stderr));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8] = 99;
    std::fs::write(&altered, &bytes).unwrap();
    let out = ferrotrue(args(&["restore", altered.to_str().unwrap(), "--data-dir", fresh.to_str().unwrap()])).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("newer"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!fresh.join("db").exists(), "nothing written for a refused file");

    // The endpoint is for admins only.
    let session = server.signup(&unique_email()).await;
    let out = ferrotrue(args(&[
        "backup",
        "--url",
        &server.base,
        "--out",
        dir.path().join("x").to_str().unwrap(),
        "--key",
        session["access_token"].as_str().unwrap(),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_admin"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("x").exists());
}
