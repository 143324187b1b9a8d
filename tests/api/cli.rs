//! The binary itself: `--help`, zero-config start-up, and configuration errors.

use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrotrue"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn help_explains_commands_and_configuration() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serve"), "{text}");
    assert!(text.contains("GOTRUE_JWT_SECRET"), "{text}");
    assert!(text.contains("FERROTRUE_DATA_DIR"), "{text}");
}

#[test]
fn a_bad_value_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().current_dir(dir.path()).env("GOTRUE_JWT_EXP", "an hour").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("GOTRUE_")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("GOTRUE_JWT_EXP"), "{err}");
}

#[tokio::test]
async fn zero_config_serves_health_from_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // No configuration at all except where to listen (9999 may be taken on a shared machine).
    let child = bin()
        .current_dir(dir.path())
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    let mut healthy = false;
    for _ in 0..600 {
        if let Ok(r) = reqwest::get(&url).await {
            healthy = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A graceful stop (SIGTERM via `kill`) then read the log.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let out = child.wait_with_output().unwrap();
    assert!(healthy, "GET /health did not answer");
    assert!(out.status.success(), "graceful shutdown exits 0");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("GOTRUE_JWT_SECRET is not set"), "loud warning: {log}");
    assert!(log.contains("listening on"), "{log}");
    assert!(dir.path().join("data/jwt_secret").is_file(), "secret persisted in ./data");
    assert!(dir.path().join("data/db").is_dir(), "database in ./data");
}

#[test]
fn config_check_validates_masks_secrets_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["config", "check"])
        .env("GOTRUE_SMTP_PASS", "very-secret-smtp-password")
        .env("GOTRUE_RATE_LIMIT_HEADER", "X-Real-IP")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("very-secret-smtp-password"), "{text}");
    assert!(text.contains("GOTRUE_SMTP_PASS") && text.contains("set (25 bytes, masked)"), "{text}");
    assert!(text.contains("X-Real-IP, else the peer address"), "{text}");
    assert!(text.contains("warning: GOTRUE_JWT_SECRET is not set"), "{text}");
    assert!(text.contains("configuration OK"), "{text}");
    assert!(!dir.path().join("data").exists(), "a check must not create the data directory");

    let bad = bin().current_dir(dir.path()).args(["config", "check"]).env("GOTRUE_JWT_EXP", "soon").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("GOTRUE_JWT_EXP"));
}

/// Runs `ferrotrue <args>` with `GOTRUE_JWT_SECRET` set, off the async threads.
async fn admin_cli(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        bin().env("GOTRUE_JWT_SECRET", crate::common::SECRET).args(&args).output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn admin_commands_manage_users_and_sessions_of_a_running_server() {
    use crate::common::*;
    let server = TestServer::start().await;
    let url = server.base.clone();
    let email = unique_email();

    let out = admin_cli(&["users", "create", &email, "--password", PASSWORD, "--url", &url]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created = String::from_utf8_lossy(&out.stdout).to_string();
    let id = created.trim().strip_prefix("created ").expect("created <id>").to_owned();
    let session = server.login(&email).await;

    let out = admin_cli(&["users", "list", "--url", &url]).await;
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&id) && listing.contains(&email) && listing.contains("1 user(s)"), "{listing}");

    let out = admin_cli(&["sessions", "revoke", &id, "--url", &url]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let refresh = server.refresh(session["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refresh.status(), 400, "the revoked session's refresh token is dead");

    let out = admin_cli(&["users", "ban", &id, "--duration", "24h", "--url", &url]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let login =
        server.post("/token?grant_type=password", serde_json::json!({"email": email, "password": PASSWORD})).await;
    assert_error(login, 400, "user_banned").await;

    let out = admin_cli(&["users", "delete", &id, "--url", &url]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.actors.users.count().await.unwrap(), 0);

    // Errors come back with the server's code; a wrong key is refused by the server.
    let out = admin_cli(&["users", "delete", &id, "--url", &url]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404 user_not_found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = admin_cli(&["users", "list", "--url", &url, "--key", "not-a-jwt"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad_jwt"));
}

#[tokio::test]
async fn the_newcomers_first_minute_ends_signed_in() {
    // README's zero-config path: no SMTP relay, so the confirmation mail is in the log.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log_path = dir.path().join("server.log");
    let child = bin()
        .current_dir(dir.path())
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..600 {
        if reqwest::get(format!("{base}/health")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = reqwest::Client::new();
    let signup = serde_json::json!({"email": "ann@example.com", "password": "correct-horse-9"});
    assert_eq!(http.post(format!("{base}/signup")).json(&signup).send().await.unwrap().status(), 200);
    let login = || http.post(format!("{base}/token?grant_type=password")).json(&signup).send();
    assert_eq!(login().await.unwrap().status(), 400, "not confirmed yet");
    // The mail reaches the log (through the background writer) within a moment.
    let mut code = None;
    for _ in 0..100 {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        code = log
            .lines()
            .find(|l| l.contains("ferrotrue::mail") && l.contains("ann@example.com"))
            .and_then(|l| l.split("code=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned);
        if code.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let code = code.expect("the confirmation code is in the log");
    let verify = serde_json::json!({"type": "signup", "email": "ann@example.com", "token": code});
    let resp = http.post(format!("{base}/verify")).json(&verify).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(login().await.unwrap().status(), 200, "signed in");
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("written to this log"), "announced at start-up: {log}");
}

#[test]
fn an_env_file_configures_like_gotrue_config_and_dot_env_is_read_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.env");
    std::fs::write(
        &file,
        "# GoTrue-style env file\nexport GOTRUE_SITE_URL=https://app.example.com\nGOTRUE_JWT_AUD=\"from-file\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "GOTRUE_JWT_EXP=1800\nGOTRUE_JWT_AUD=from-dot-env\n").unwrap();
    let out = bin()
        .current_dir(dir.path())
        .env("GOTRUE_JWT_AUD", "from-process")
        .env("GOTRUE_JWT_EXP", "900")
        .args(["--env-file", file.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |name: &str| {
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.split(" = ").nth(1)).unwrap_or_default().to_owned()
    };
    assert_eq!(value("GOTRUE_SITE_URL "), "https://app.example.com", "{text}");
    assert_eq!(value("GOTRUE_JWT_AUD "), "from-file", "the explicit file overrides the environment");
    assert_eq!(value("GOTRUE_JWT_EXP "), "900s", "the environment overrides ./.env");

    std::fs::write(&file, "GOTRUE_JWT_EXP=soon\n").unwrap();
    let out = bin().current_dir(dir.path()).args(["-c", file.to_str().unwrap(), "config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GOTRUE_JWT_EXP"));
    let out = bin()
        .current_dir(dir.path())
        .args(["--env-file", "/nonexistent/auth.env", "config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
