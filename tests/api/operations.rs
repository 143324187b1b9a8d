//! Operating the server: the readiness answer (`GET /ready`) and a SIGTERM that drains in-flight
//! requests and flushes before the process exits.

use crate::common::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn ready_reports_storage_actors_and_each_dependency() {
    let server = TestServer::start().await;
    let resp = server.http.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["storage"]["ok"], true);
    assert_eq!(body["actors"]["ok"], true);
    assert_eq!(body["smtp"], "not configured");
    // /health keeps GoTrue's shape.
    let health: Value = server.http.get(server.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["name"], "GoTrue");

    // A configured SMTP relay that is down, and a hook whose endpoint is down: 503, names only.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = TestServer::start_with(|c| {
        c.settings.smtp.host = "127.0.0.1".into();
        c.settings.smtp.port = closed.port();
        c.settings.hooks.custom_access_token = Some(ferrotrue_actors::hooks::HookEndpoint {
            uri: format!("http://127.0.0.1:{}/hook", closed.port()),
            secrets: vec![ferrotrue_actors::crypto::Secret("v1,whsec_AAAA".into())],
        });
    })
    .await;
    let resp = server.http.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["smtp"]["reachable"], false, "{body}");
    assert_eq!(body["hooks"]["custom_access_token"]["reachable"], false, "{body}");
    assert!(!body.to_string().contains("127.0.0.1"), "no host in a public answer: {body}");
}

#[tokio::test]
async fn a_flood_of_readiness_probes_does_not_make_the_server_dial_its_dependencies_each_time() {
    // A TCP listener standing in for the SMTP relay, counting the connections /ready makes.
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = relay.local_addr().unwrap().port();
    let dials = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn({
        let dials = dials.clone();
        async move {
            while let Ok((_sock, _)) = relay.accept().await {
                dials.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let server = TestServer::start_with(|c| {
        c.settings.smtp.host = "127.0.0.1".into();
        c.settings.smtp.port = port;
    })
    .await;
    let probes = (0..50).map(|_| server.http.get(server.url("/ready")).send());
    let answers = futures_util::future::join_all(probes).await;
    assert!(answers.iter().all(|r| r.as_ref().is_ok_and(|r| r.status() == 200)), "every probe is answered");
    let dials = dials.load(std::sync::atomic::Ordering::SeqCst);
    assert!(dials <= 5, "50 probes dialled the relay {dials} times; a report is reused for a second");
}

/// An SMTP server that greets only after `delay`, then takes one message.
async fn slow_smtp(delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = sock.write_all(b"220 slow ESMTP\r\n").await;
                let mut buf = vec![0u8; 65536];
                let mut in_data = false;
                loop {
                    let n = match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    let reply: &[u8] = if in_data {
                        if text.contains("\r\n.\r\n") {
                            in_data = false;
                            b"250 queued\r\n"
                        } else {
                            continue;
                        }
                    } else if text.starts_with("EHLO") || text.starts_with("HELO") {
                        b"250 slow\r\n"
                    } else if text.starts_with("DATA") {
                        in_data = true;
                        b"354 go on\r\n"
                    } else if text.starts_with("QUIT") {
                        let _ = sock.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = sock.write_all(reply).await;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn sigterm_drains_the_request_in_flight_and_flushes_before_exit() {
    let smtp_port = slow_smtp(Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start = |log: Stdio| {
        Command::new(env!("CARGO_BIN_EXE_ferrotrue"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("FERROTRUE_DATA_DIR", dir.path())
            .env("GOTRUE_JWT_SECRET", SECRET)
            .env("GOTRUE_SMTP_HOST", "127.0.0.1")
            .env("GOTRUE_SMTP_PORT", smtp_port.to_string())
            .env("GOTRUE_SMTP_ADMIN_EMAIL", "auth@example.com")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    let wait_up = || async {
        for _ in 0..600 {
            if reqwest::get(format!("{base}/health")).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not start");
    };
    let child = start(Stdio::piped());
    wait_up().await;
    // A sign-up whose confirmation mail takes 1.5 s to hand over to the relay.
    let email = unique_email();
    let http = reqwest::Client::new();
    let signup = tokio::spawn({
        let (http, url, email) = (http.clone(), format!("{base}/signup"), email.clone());
        async move { http.post(url).json(&json!({"email": email, "password": PASSWORD})).send().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let resp = signup.await.unwrap().expect("the request in flight is answered, not cut");
    assert_eq!(resp.status(), 200, "drained to completion");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "graceful exit after draining");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("draining in-flight requests") && log.contains("stopped"), "{log}");

    // What it wrote is on disk: a restart finds the user (unconfirmed, so not a wrong password).
    let child = start(Stdio::null());
    wait_up().await;
    let resp = http
        .post(format!("{base}/token?grant_type=password"))
        .header("X-Supabase-Api-Version", "2024-01-01")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait_with_output();
    assert_error(resp, 400, "email_not_confirmed").await;
}
