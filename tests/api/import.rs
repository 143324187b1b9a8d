//! `ferrotrue import FILE` through the real binary: GoTrue-shaped users (bcrypt and argon2
//! hashes kept), identities and metadata visible through the API afterwards, idempotent
//! re-runs, per-line errors, and the refusals (missing file, a server holding the directory).

use crate::common::{service_role_token, wait_healthy, SECRET};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrotrue"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

fn import(file: &Path, data: &Path) -> (Option<i32>, String, String) {
    let Output { status, stdout, stderr } =
        bin().arg("import").arg(file).arg("--data-dir").arg(data).arg("--cache-mb").arg("16").output().unwrap();
    (status.code(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

/// The binary serving `data`; stopped (SIGTERM) on drop.
struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

async fn serve(data: &Path) -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = bin()
        .env("PORT", port.to_string())
        .env("FERROTRUE_DATA_DIR", data)
        .env("GOTRUE_JWT_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let served = Served { child, base: format!("http://127.0.0.1:{port}") };
    wait_healthy(&served.base).await;
    served
}

async fn login(base: &str, email: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/token?grant_type=password"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn imported_users_sign_in_with_their_bcrypt_and_argon2_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("users.jsonl");
    let (bcrypt_id, argon_id, phone_id, dup_id) =
        (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    // GoTrue stores `$2a$`; the argon2 hash is a PHC string at a small cost.
    let bcrypt_hash = bcrypt::hash_with_result("bcrypt-pass-1", 4).unwrap().format_for_version(bcrypt::Version::TwoA);
    let cost = ferrotrue_actors::crypto::HashCost { memory_kib: 1024, iterations: 1, parallelism: 1 };
    let argon_hash =
        ferrotrue_actors::crypto::hash_now(cost, &ferrotrue_actors::crypto::Secret("argon-pass-1".into())).unwrap();
    // An `auth.users` row with `auth.identities` rows (Postgres timestamps) ...
    let row = json!({
        "instance_id": "00000000-0000-0000-0000-000000000000",
        "id": bcrypt_id, "aud": "authenticated", "role": "authenticated",
        "email": "Bea@Example.com", "encrypted_password": bcrypt_hash,
        "email_confirmed_at": "2023-04-05 06:07:08.123456+00", "phone": null,
        "raw_app_meta_data": {"provider": "email", "providers": ["email", "github"]},
        "raw_user_meta_data": {"full_name": "Bea Crypt"},
        "identities": [
            {"id": uuid::Uuid::new_v4(), "provider_id": bcrypt_id.to_string(), "user_id": bcrypt_id, "provider": "email",
             "identity_data": {"sub": bcrypt_id.to_string(), "email": "bea@example.com"},
             "created_at": "2023-04-05 06:07:08+00", "updated_at": "2023-04-05 06:07:08+00"},
            {"id": uuid::Uuid::new_v4(), "provider_id": "4242", "user_id": bcrypt_id, "provider": "github",
             "identity_data": {"sub": "4242", "email": "bea@example.com", "user_name": "bea"},
             "created_at": "2023-04-06 00:00:00+00", "updated_at": "2023-04-06 00:00:00+00"}
        ],
        "created_at": "2023-04-05 06:07:08.123456+00", "updated_at": "2023-04-05 06:07:08.123456+00",
        "is_sso_user": false, "is_anonymous": false, "confirmation_token": ""
    });
    // ... and the admin API's user shape (RFC 3339).
    let api = json!({
        "id": argon_id, "aud": "authenticated", "role": "authenticated", "email": "argon@example.com",
        "encrypted_password": argon_hash, "email_confirmed_at": "2024-01-02T03:04:05Z",
        "app_metadata": {"provider": "email", "providers": ["email"], "plan": "pro"},
        "user_metadata": {"colour": "green"},
        "identities": [{"identity_id": uuid::Uuid::new_v4(), "id": argon_id.to_string(), "provider": "email",
                        "identity_data": {"email": "argon@example.com"}, "created_at": "2024-01-02T03:04:05Z"}],
        "created_at": "2024-01-02T03:04:05Z", "updated_at": "2024-01-02T03:04:05Z"
    });
    // No identities given: the phone identity is made for it.
    let phone_only = json!({"id": phone_id, "phone": "+15555550123", "phone_confirmed_at": "2024-02-01T00:00:00Z",
                            "created_at": "2024-02-01T00:00:00Z"});
    let duplicate_email = json!({"id": dup_id, "email": "bea@example.com"});
    let lines = [
        row.to_string(),
        api.to_string(),
        r#"{"id": "#.to_owned(),
        duplicate_email.to_string(),
        String::new(),
        json!({"id": uuid::Uuid::new_v4(), "email": "plain@example.com", "encrypted_password": "hunter2"}).to_string(),
        phone_only.to_string(),
        json!({"email": "noid@example.com"}).to_string(),
    ];
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let (code, out, err) = import(&file, &data);
    assert_eq!(code, Some(1), "some lines failed: {out}\n{err}");
    assert!(out.contains("imported 3 users, skipped 0 (id already present), failed 4"), "{out}");
    for (line, why) in [
        (3, "invalid JSON"),
        (4, "email \"bea@example.com\" already belongs to user"),
        (6, "encrypted_password"),
        (8, "missing \"id\""),
    ] {
        assert!(err.lines().any(|l| l.starts_with(&format!("line {line}: ")) && l.contains(why)), "line {line}: {err}");
    }
    assert!(!err.contains("line 5:") && !err.contains("line 1:"), "{err}");
    assert!(err.contains(&bcrypt_id.to_string()), "the conflict names the owner: {err}");

    // Idempotent: the same file again adds nothing and reports the same bad lines.
    let (code, out, _) = import(&file, &data);
    assert_eq!(code, Some(1));
    assert!(out.contains("imported 0 users, skipped 3 (id already present), failed 4"), "{out}");

    let server = serve(&data).await;
    // Both hash families verify; bcrypt signs in (and is then replaced by argon2id).
    let bea = login(&server.base, "bea@example.com", "bcrypt-pass-1").await;
    assert_eq!(bea.status(), 200, "bcrypt login");
    let bea: Value = bea.json().await.unwrap();
    assert_eq!(login(&server.base, "argon@example.com", "argon-pass-1").await.status(), 200, "argon2 login");
    assert_eq!(login(&server.base, "argon@example.com", "wrong-pass-1").await.status(), 400);
    assert_eq!(login(&server.base, "bea@example.com", "bcrypt-pass-1").await.status(), 200, "after the rehash");

    let http = reqwest::Client::new();
    let me: Value = http
        .get(format!("{}/user", server.base))
        .bearer_auth(bea["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], bcrypt_id.to_string());
    assert_eq!(me["email"], "bea@example.com", "emails are stored lower-cased");
    assert_eq!(me["user_metadata"]["full_name"], "Bea Crypt");
    assert_eq!(me["app_metadata"]["providers"], json!(["email", "github"]));
    assert_eq!(me["email_confirmed_at"], "2023-04-05T06:07:08.123456Z");
    assert_eq!(me["created_at"], "2023-04-05T06:07:08.123456Z");
    let github = me["identities"].as_array().unwrap().iter().find(|i| i["provider"] == "github").unwrap();
    assert_eq!((github["id"].as_str(), github["identity_data"]["user_name"].as_str()), (Some("4242"), Some("bea")));

    let service = service_role_token();
    let listed: Value = http
        .get(format!("{}/admin/users?per_page=10", server.base))
        .bearer_auth(&service)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users = listed["users"].as_array().unwrap();
    let ids: Vec<&str> = users.iter().filter_map(|u| u["id"].as_str()).collect();
    // Newest first, by the imported creation times.
    assert_eq!(ids, [phone_id.to_string(), argon_id.to_string(), bcrypt_id.to_string()]);
    assert_eq!(users[1]["app_metadata"]["plan"], "pro");
    assert_eq!(users[1]["user_metadata"]["colour"], "green");
    assert_eq!(users[0]["phone"], "15555550123");
    assert_eq!(users[0]["identities"][0]["provider"], "phone");

    // A running server holds the directory: the import refuses and says why.
    let (code, _, err) = import(&file, &data);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("stop the server"), "{err}");
    drop(server);

    // A missing file is refused before anything is opened.
    let (code, _, err) = import(&dir.path().join("nope.jsonl"), &dir.path().join("other"));
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read"), "{err}");
    assert!(!dir.path().join("other").exists());
}

#[test]
fn import_help_describes_the_format_and_the_rules() {
    let out = bin().args(["import", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["encrypted_password", "skipped", "--data-dir", "Exit status"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn a_file_that_is_not_json_lines_fails_line_by_line_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("garbage.bin");
    let mut bytes = b"id,email\n1,a@b.c\n".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
    bytes.extend(std::iter::repeat_n(b'x', (1 << 20) + 10)); // an over-long last line, no newline
    std::fs::write(&file, bytes).unwrap();
    let (code, out, err) = import(&file, &dir.path().join("data"));
    assert_eq!(code, Some(1), "{err}");
    assert!(out.contains("imported 0 users, skipped 0 (id already present), failed 4"), "{out}");
    assert!(err.contains("line 3: not UTF-8"), "{err}");
    assert!(err.contains("line 4: line longer than"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
