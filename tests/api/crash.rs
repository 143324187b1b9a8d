//! `kill -9` during a burst of concurrent signups and refreshes loses nothing acknowledged:
//! the real binary runs as a child process, is killed with SIGKILL mid-burst, restarted on the
//! same directory, and every acknowledged user and every client's last acknowledged refresh
//! token must still work.

use crate::common::{unique_email, wait_healthy, PASSWORD};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "crash-test-secret-that-is-long-enough";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ferrotrue"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("GOTRUE_API_HOST", "127.0.0.1")
        .env("FERROTRUE_DATA_DIR", dir)
        .env("GOTRUE_JWT_SECRET", SECRET)
        .env("GOTRUE_MAILER_AUTOCONFIRM", "true")
        .env("GOTRUE_LOG_LEVEL", "error")
        // CRASH_TEST_DURABILITY=relaxed runs it without synced writes. SIGKILL keeps the page
        // cache, so relaxed mode usually passes too (CONTRIBUTING.md, durability caveat).
        .env("FERROTRUE_DURABILITY", std::env::var("CRASH_TEST_DURABILITY").unwrap_or_else(|_| "sync".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ferrotrue")
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Option<Value> {
    let resp = http.post(url).json(&body).timeout(Duration::from_secs(10)).send().await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    resp.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut child = spawn(dir.path(), port);
    wait_healthy(&base).await;

    // Refresh clients: each holds one session and keeps rotating it.
    const REFRESHERS: usize = 6;
    const SIGNERS: usize = 6;
    let acked_tokens: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..REFRESHERS {
        let email = unique_email();
        let s = post(&http, format!("{base}/signup"), json!({"email": email, "password": PASSWORD})).await.unwrap();
        acked_tokens.lock().unwrap().push(s["refresh_token"].as_str().unwrap().to_owned());
    }
    let acked_users: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));

    let mut tasks = Vec::new();
    for i in 0..REFRESHERS {
        let (http, base, acked) = (http.clone(), base.clone(), acked_tokens.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let current = acked.lock().unwrap()[i].clone();
                let url = format!("{base}/token?grant_type=refresh_token");
                match post(&http, url, json!({"refresh_token": current})).await {
                    Some(s) => acked.lock().unwrap()[i] = s["refresh_token"].as_str().unwrap().to_owned(),
                    None => return,
                }
            }
        }));
    }
    for _ in 0..SIGNERS {
        let (http, base, acked) = (http.clone(), base.clone(), acked_users.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let email = unique_email();
                match post(&http, format!("{base}/signup"), json!({"email": email, "password": PASSWORD})).await {
                    Some(_) => acked.lock().unwrap().push(email),
                    None => return,
                }
            }
        }));
    }

    // Let the burst run, then SIGKILL mid-flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    for t in tasks {
        let _ = t.await;
    }
    let users: Vec<String> = acked_users.lock().unwrap().clone();
    let tokens: Vec<String> = acked_tokens.lock().unwrap().clone();
    assert!(users.len() >= 5, "the burst acknowledged only {} signups", users.len());
    eprintln!("kill -9 after {} acknowledged signups and {} refresh chains", users.len(), tokens.len());

    // Restart on the same directory: everything acknowledged is there.
    let mut child = spawn(dir.path(), port);
    wait_healthy(&base).await;
    for email in &users {
        let login =
            post(&http, format!("{base}/token?grant_type=password"), json!({"email": email, "password": PASSWORD}))
                .await;
        assert!(login.is_some(), "acknowledged signup of {email} was lost");
    }
    for token in &tokens {
        let refreshed =
            post(&http, format!("{base}/token?grant_type=refresh_token"), json!({"refresh_token": token})).await;
        assert!(refreshed.is_some(), "the last acknowledged refresh token was lost");
    }
    child.kill().unwrap();
    let _ = child.wait();
}
