//! What a local attacker or a log reader sees of the real binary: file modes of the data
//! directory, the access log (one line per request, no secrets, no forged lines), and the
//! start-up refusals and warnings.

use crate::common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrotrue"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// Starts the binary on a free port with `vars`; returns it and its base URL once healthy.
async fn spawn(dir: &Path, vars: &[(&str, &str)]) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = bin();
    cmd.current_dir(dir)
        .env("PORT", port.to_string())
        .env("FERROTRUE_DATA_DIR", dir.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..600 {
        if reqwest::get(format!("{base}/health")).await.is_ok() {
            return (child, base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!("the server did not start:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// SIGTERM, then the log.
fn stop(child: Child) -> String {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "graceful exit");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn every_file(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            every_file(&path, out);
        }
        out.push(path);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_private_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = spawn(dir.path(), &[("GOTRUE_MAILER_AUTOCONFIRM", "true")]).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let body = serde_json::json!({"email": unique_email(), "password": PASSWORD});
        assert_eq!(http.post(format!("{base}/signup")).json(&body).send().await.unwrap().status(), 200);
    }
    let log = stop(child);
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700, "data directory");
    let mut files = Vec::new();
    every_file(&data, &mut files);
    assert!(files.len() >= 3, "secret, db dir, db files: {files:?}");
    for f in &files {
        let expected = if f.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(f), expected, "{} is {:03o}", f.display(), mode(f));
    }
    assert!(!log.contains("accessible to other users"), "{log}");
}

#[cfg(unix)]
#[tokio::test]
async fn an_open_existing_data_directory_is_reported_and_the_database_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("db")).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("db"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (child, _) = spawn(dir.path(), &[]).await;
    let log = stop(child);
    assert!(log.contains("accessible to other users (mode 755)"), "{log}");
    assert!(log.contains("chmod 700"), "{log}");
    assert_eq!(mode(&data), 0o755, "the operator's directory is left as it is");
    assert_eq!(mode(&data.join("db")), 0o700, "the database directory is ours");
}

#[tokio::test]
async fn one_access_line_per_request_without_secrets_or_forged_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = spawn(dir.path(), &[("GOTRUE_JWT_SECRET", SECRET), ("GOTRUE_LOG_LEVEL", "info")]).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    assert_eq!(http.get(format!("{base}/health")).send().await.unwrap().status(), 200);
    let secret_link = "0123456789abcdef-secret-link-token";
    let resp = http
        .get(format!("{base}/verify?type=signup&token={secret_link}&redirect_to=https://x.test/%0A2026-01-01T00:00:00Z%20INFO%20forged"))
        .send()
        .await
        .unwrap();
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = serde_json::json!({"email": "ann@example.com", "password": "wrong-password-123"});
    let resp = http.post(format!("{base}/token?grant_type=password")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let log = stop(child);

    let access: Vec<&str> = log.lines().filter(|l| l.contains("ferrotrue::access")).collect();
    let of = |p: &str| access.iter().filter(|l| l.contains(&format!("path=\"{p}\""))).copied().collect::<Vec<_>>();
    assert!(of("/health").iter().all(|l| l.contains("status=200")), "{access:?}");
    let (verify, token) = (of("/verify"), of("/token"));
    assert_eq!((verify.len(), token.len()), (1, 1), "one line per request:\n{log}");
    assert!(verify[0].contains(&request_id), "the request id ties the line to the response: {}", verify[0]);
    assert!(token[0].contains("authentication failed") && token[0].contains("error_code=\"invalid_credentials\""));
    assert!(access.iter().all(|l| l.contains("latency_us=") && l.contains("client=")), "{access:?}");
    assert!(!log.contains(secret_link), "a token from the query string reached the log:\n{log}");
    assert!(!log.contains("wrong-password-123"), "a password reached the log");
    assert!(
        !log.lines().any(|l| l.contains("forged") && !l.contains("ferrotrue")),
        "a client-supplied newline started a log line of its own:\n{log}"
    );
}

#[tokio::test]
async fn a_short_jwt_secret_is_reported_and_limits_are_announced() {
    let dir = tempfile::tempdir().unwrap();
    let (child, _) = spawn(dir.path(), &[("GOTRUE_JWT_SECRET", "short")]).await;
    let log = stop(child);
    assert!(log.contains("GOTRUE_JWT_SECRET is shorter than 32 bytes (5 bytes)"), "{log}");
    assert!(!log.contains("\"short\"") && !log.contains("=short"), "the secret itself is never logged");
    assert!(log.contains("rate limits per client are on"), "{log}");
}

#[test]
fn an_unimplemented_security_setting_stops_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(dir.path())
        .env("GOTRUE_SECURITY_DB_ENCRYPTION_ENCRYPT", "true")
        .env("GOTRUE_SECURITY_CAPTCHA_ENABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err
        .contains("GOTRUE_SECURITY_DB_ENCRYPTION_ENCRYPT=\"true\" is a security setting ferrotrue does not implement"));
    assert!(err.contains("GOTRUE_SECURITY_CAPTCHA_ENABLED=true needs GOTRUE_SECURITY_CAPTCHA_SECRET"), "{err}");
}
