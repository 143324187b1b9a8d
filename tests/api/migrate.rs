//! `ferrotrue migrate --from --to` through the real binary: sled → sled with users made by
//! signup (argon2id), a GoTrue import (bcrypt), identities, metadata and a TOTP factor, every
//! record equal afterwards and both passwords and the factor working; re-runs skip; an
//! interrupted copy completes; the refusals (same directory, missing source, a server holding the
//! destination, wrong or missing secret, unreachable database); sled → Postgres → sled with the
//! same checks; `--sessions`: signed-in sessions keep refreshing after the move, with reuse
//! detection intact.

use crate::common::*;
use ferrotrue::config::Config;
use ferrotrue_actors::user_registry::model::User;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};
use tempfile::TempDir;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrotrue"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// `ferrotrue migrate --from from --to to`, with `GOTRUE_JWT_SECRET=secret` when given.
fn migrate(from: &str, to: &str, secret: Option<&str>) -> (Option<i32>, String, String) {
    migrate_with(from, to, secret, &[])
}

/// [`migrate`] with more arguments (`--sessions`).
fn migrate_with(from: &str, to: &str, secret: Option<&str>, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = bin();
    cmd.args(["migrate", "--from", from, "--to", to]).args(extra);
    if let Some(secret) = secret {
        cmd.env("GOTRUE_JWT_SECRET", secret);
    }
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    (status.code(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A server over `dir` with the test configuration (SECRET, quick hashing, autoconfirm).
async fn serve(dir: TempDir) -> TestServer {
    let config = Config::for_tests(dir.path());
    TestServer::start_in(dir, config).await
}

/// Every user of a server, in creation order, with their factors.
async fn records(server: &TestServer) -> Vec<User> {
    server.actors.users.list(1, 10_000, None, true).await.unwrap().items
}

const BEA_PASSWORD: &str = "bcrypt-pass-1";

/// Imports Bea (GoTrue shape, bcrypt hash, an email and a GitHub identity) into `dir`.
fn import_bea(dir: &Path) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    let hash = bcrypt::hash_with_result(BEA_PASSWORD, 4).unwrap().format_for_version(bcrypt::Version::TwoA);
    let line = json!({
        "id": id, "aud": "authenticated", "role": "authenticated",
        "email": "bea@example.com", "encrypted_password": hash,
        "email_confirmed_at": "2023-04-05 06:07:08.123456+00",
        "raw_app_meta_data": {"provider": "email", "providers": ["email", "github"]},
        "raw_user_meta_data": {"full_name": "Bea Crypt"},
        "identities": [
            {"id": uuid::Uuid::new_v4(), "provider_id": id.to_string(), "user_id": id, "provider": "email",
             "identity_data": {"sub": id.to_string(), "email": "bea@example.com"},
             "created_at": "2023-04-05 06:07:08+00"},
            {"id": uuid::Uuid::new_v4(), "provider_id": "4242", "user_id": id, "provider": "github",
             "identity_data": {"sub": "4242", "user_name": "bea"}, "created_at": "2023-04-06 00:00:00+00"}
        ],
        "created_at": "2023-04-05 06:07:08.123456+00"
    });
    let file = dir.join("bea.jsonl");
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let out = bin().arg("import").arg(&file).arg("--data-dir").arg(dir).args(["--cache-mb", "16"]).output().unwrap();
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    id
}

/// Signs up, sets metadata, enrolls and verifies a TOTP factor: (email, factor id, TOTP secret).
async fn totp_user(server: &TestServer) -> (String, String, String) {
    let email = unique_email();
    let token = access(&server.signup(&email).await);
    let resp = server.put_auth("/user", &token, json!({"data": {"colour": "green"}})).await;
    assert_eq!(resp.status(), 200);
    let resp = server.post_auth("/factors", &token, json!({"factor_type": "totp", "friendly_name": "app"})).await;
    assert_eq!(resp.status(), 200);
    let e: Value = resp.json().await.unwrap();
    let (fid, secret) = (e["id"].as_str().unwrap().to_owned(), e["totp"]["secret"].as_str().unwrap().to_owned());
    let c: Value =
        server.post_auth(&format!("/factors/{fid}/challenge"), &token, json!({})).await.json().await.unwrap();
    let resp = server
        .post_auth(
            &format!("/factors/{fid}/verify"),
            &token,
            json!({"challenge_id": c["id"], "code": crate::mfa::code_at(&secret, 0)}),
        )
        .await;
    assert_eq!(resp.status(), 200, "verify the factor at the source");
    (email, fid, secret)
}

/// A source data directory with Bea (bcrypt), a TOTP user and a plain signup; its records.
async fn source() -> (TempDir, Vec<User>, (String, String, String)) {
    let dir = tempfile::tempdir().unwrap();
    import_bea(dir.path());
    let server = serve(dir).await;
    let totp = totp_user(&server).await;
    server.signup(&unique_email()).await;
    let users = records(&server).await;
    assert_eq!(users.len(), 3);
    (server.stop().await, users, totp)
}

/// Signs in, then challenges and verifies the factor with the next step's code (the current one
/// was used at the source): the copied secret opens under the destination's key.
async fn check_totp(server: &TestServer, (email, fid, secret): &(String, String, String)) {
    let token = access(&server.login(email).await);
    let resp = server.post_auth(&format!("/factors/{fid}/challenge"), &token, json!({})).await;
    assert_eq!(resp.status(), 200, "challenge at the destination");
    let c: Value = resp.json().await.unwrap();
    let resp = server
        .post_auth(
            &format!("/factors/{fid}/verify"),
            &token,
            json!({"challenge_id": c["id"], "code": crate::mfa::code_at(secret, 1)}),
        )
        .await;
    assert_eq!(resp.status(), 200, "the copied TOTP factor verifies");
}

#[tokio::test]
async fn sled_to_sled_copies_every_record_and_reruns_skip() {
    let (src, users, totp) = source().await;
    let bea = users[0].clone();
    assert!(bea.encrypted_password.as_deref().is_some_and(|h| h.starts_with("$2a$")), "bcrypt at the source");
    assert!(users.iter().any(|u| u.encrypted_password.as_deref().is_some_and(|h| h.starts_with("$argon2id$"))));
    assert_eq!(users[1].factors.len(), 1);

    // The wrong secret: the TOTP user fails (its factor would not open), the others are copied.
    let scratch = tempfile::tempdir().unwrap();
    let (code, out, err) =
        migrate(&p(src.path()), &p(&scratch.path().join("d")), Some("another-secret-32-bytes-long-xx"));
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("copied 2 users (0 factors), skipped 0"), "{out}");
    assert!(err.contains(&format!("user {} ({})", users[1].id, users[1].email)), "{err}");
    assert!(err.contains("does not open under this GOTRUE_JWT_SECRET"), "{err}");

    // No GOTRUE_JWT_SECRET: the source directory's generated secret is used and saved with the copy.
    std::fs::write(src.path().join("jwt_secret"), SECRET).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let (code, out, err) = migrate(&p(src.path()), &p(dst.path()), None);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("copied 3 users (1 factors), skipped 0 (id already at the destination), failed 0"), "{out}");
    assert!(out.contains("sessions are not copied"), "{out}");
    assert!(err.contains("migrate: 3 users from"), "progress on stderr: {err}");
    assert_eq!(std::fs::read_to_string(dst.path().join("jwt_secret")).unwrap(), SECRET);

    let server = serve(dst).await;
    // Every record as it was: ids, created_at, hashes (bcrypt kept), identities, metadata, factors.
    assert_eq!(records(&server).await, users);
    let resp =
        server.post("/token?grant_type=password", json!({"email": "bea@example.com", "password": BEA_PASSWORD})).await;
    assert_eq!(resp.status(), 200, "the bcrypt hash verifies at the destination");
    let session: Value = resp.json().await.unwrap();
    let me: Value = server.get_auth("/user", &access(&session)).await.json().await.unwrap();
    assert_eq!(me["id"], bea.id.to_string());
    assert_eq!(me["created_at"], "2023-04-05T06:07:08.123456Z");
    assert_eq!(me["user_metadata"]["full_name"], "Bea Crypt");
    let github = me["identities"].as_array().unwrap().iter().find(|i| i["provider"] == "github").unwrap();
    assert_eq!(github["identity_data"]["user_name"], "bea");
    let me: Value = server.get_auth("/user", &access(&server.login(&totp.0).await)).await.json().await.unwrap();
    assert_eq!(me["user_metadata"]["colour"], "green");
    assert_eq!(
        (me["factors"][0]["id"].as_str(), me["factors"][0]["status"].as_str()),
        (Some(&*totp.1), Some("verified"))
    );
    check_totp(&server, &totp).await;
    let plain = users[2].email.clone();
    server.login(&plain).await;

    // A running server holds the destination: refused, nothing copied.
    let (code, _, err) = migrate(&p(src.path()), &p(server.dir()), Some(SECRET));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("stop the server"), "{err}");
    let dst = server.stop().await;

    // Again: everything is already there.
    let (code, out, err) = migrate(&p(src.path()), &p(dst.path()), Some(SECRET));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("copied 0 users (0 factors), skipped 3 (id already at the destination), failed 0"), "{out}");
}

#[tokio::test]
async fn an_interrupted_copy_completes_and_conflicts_are_reported_per_user() {
    let (src, users, totp) = source().await;
    let dst = tempfile::tempdir().unwrap();
    let (code, _, err) = migrate(&p(src.path()), &p(dst.path()), Some(SECRET));
    assert_eq!(code, Some(0), "{err}");
    // Make the destination look like a run stopped half-way: Bea is missing, and the TOTP user
    // is there without its factor (stopped between the user and its factors). Another user
    // took the third user's email meanwhile.
    let server = serve(dst).await;
    server.actors.users.delete(users[0].id).await.unwrap();
    server.actors.users.edit_factors(users[1].id, |list| Ok(list.pop())).await.unwrap();
    server.actors.users.delete(users[2].id).await.unwrap();
    let intruder = server.signup(&users[2].email).await;
    let dst = server.stop().await;

    let (code, out, err) = migrate(&p(src.path()), &p(dst.path()), Some(SECRET));
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        out.contains("copied 1 users (1 factors), skipped 1 (id already at the destination; 1 of them got their missing factors), failed 1"),
        "{out}"
    );
    let owner = intruder["user"]["id"].as_str().unwrap();
    assert!(
        err.contains(&format!(
            "user {} ({}): email {:?} already belongs to user {owner}",
            users[2].id, users[2].email, users[2].email
        )),
        "{err}"
    );

    let server = serve(dst).await;
    assert_eq!(server.actors.users.get(users[0].id).await.unwrap().as_ref(), Some(&users[0]));
    assert_eq!(server.actors.users.get(users[1].id).await.unwrap().as_ref(), Some(&users[1]));
    check_totp(&server, &totp).await;
}

#[tokio::test]
async fn refusals_are_clear_and_never_show_a_password() {
    let (src, _, _) = source().await;
    let from = p(src.path());
    let scratch = tempfile::tempdir().unwrap();

    let (code, _, err) = migrate(&from, &from, Some(SECRET));
    assert_eq!(code, Some(2));
    assert!(err.contains("same data directory"), "{err}");
    let dotted = format!("{from}/../{}", src.path().file_name().unwrap().to_string_lossy());
    let (code, _, err) = migrate(&from, &dotted, Some(SECRET));
    assert_eq!(code, Some(2));
    assert!(err.contains("same data directory"), "{err}");

    let missing = scratch.path().join("nope");
    let (code, _, err) = migrate(&p(&missing), &p(&scratch.path().join("d")), Some(SECRET));
    assert_eq!(code, Some(2));
    assert!(err.contains("no ferrotrue data directory"), "{err}");
    assert!(!scratch.path().join("d").exists(), "nothing is created when the source is missing");

    // No secret anywhere, or a destination with a different generated secret.
    let (code, _, err) = migrate(&from, &p(&scratch.path().join("d")), None);
    assert_eq!(code, Some(2));
    assert!(err.contains("GOTRUE_JWT_SECRET is not set"), "{err}");
    std::fs::write(src.path().join("jwt_secret"), SECRET).unwrap();
    let other = scratch.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("jwt_secret"), "a-different-generated-secret-0123456789").unwrap();
    let (code, _, err) = migrate(&from, &p(&other), None);
    assert_eq!(code, Some(2));
    assert!(err.contains("has its own generated secret"), "{err}");

    // An unreachable database: the reason, never the password.
    let url = "postgres://admin:hunter2-secret@127.0.0.1:1/auth?sslmode=disable";
    let (code, out, err) = migrate(&from, url, Some(SECRET));
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(err.contains("destination database") && err.contains("127.0.0.1"), "{err}");
    assert!(!err.contains("hunter2") && !out.contains("hunter2"), "{err}");
    let (code, _, err) = migrate(url, &p(&scratch.path().join("d")), Some(SECRET));
    assert_eq!(code, Some(2));
    assert!(err.contains("source database") && !err.contains("hunter2"), "{err}");
    let (code, _, err) = migrate(url, &url.replace("hunter2", "other"), Some(SECRET));
    assert_eq!(code, Some(2));
    assert!(err.contains("same database") && !err.contains("hunter2"), "{err}");

    // A running server holds the source (sled locks it): refused before anything is written.
    let server = serve(src).await;
    let (code, _, err) = migrate(&from, &p(&scratch.path().join("d")), Some(SECRET));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot open the source database") && err.contains("stop the server"), "{err}");
    assert!(!scratch.path().join("d").exists(), "nothing is created while the source is busy");
    let _src = server.stop().await;

    let out = bin().args(["migrate", "--from", &from, "--to", "x", "--namespace", "Bad-Name"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--namespace"));
}

#[test]
fn migrate_help_tells_what_is_copied_and_the_secret_rule() {
    let out = bin().args(["migrate", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in
        ["--from", "--to", "--namespace", "--sessions", "GOTRUE_JWT_SECRET", "sign in again", "skipped", "Exit status"]
    {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

/// The copy of `from`'s users in a Postgres database, read back through the actors.
async fn postgres_records(url: &str) -> Vec<User> {
    let db = ferrotrue_actors::pg::Db::connect(&ferrotrue_actors::pg::testing::settings(url)).await.unwrap();
    let (actors, supervisor) = ferrotrue_actors::Actors::start(
        ferrotrue_actors::Storage::Postgres(db),
        ferrotrue_actors::settings::Settings::for_tests(),
        ferrotrue_actors::clock::Clock::System,
    )
    .await
    .unwrap();
    let users = actors.users.list(1, 10_000, None, true).await.unwrap().items;
    supervisor.shutdown().await;
    users
}

#[tokio::test]
async fn sled_to_postgres_keeps_every_record() {
    let (src, users, _) = source().await;
    let url = ferrotrue_actors::pg::testing::fresh_database().await;
    let (code, out, err) = migrate(&p(src.path()), &url, Some(SECRET));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("copied 3 users (1 factors), skipped 0"), "{out}");
    assert_eq!(postgres_records(&url).await, users);
    let (code, out, _) = migrate(&p(src.path()), &url, Some(SECRET));
    assert_eq!(code, Some(0));
    assert!(out.contains("copied 0 users (0 factors), skipped 3"), "{out}");
}

#[tokio::test]
async fn postgres_to_sled_serves_the_same_users() {
    let (src, users, totp) = source().await;
    let url = ferrotrue_actors::pg::testing::fresh_database().await;
    let (code, _, err) = migrate(&p(src.path()), &url, Some(SECRET));
    assert_eq!(code, Some(0), "{err}");
    let dst = tempfile::tempdir().unwrap();
    let (code, out, err) = migrate(&url, &p(dst.path()), Some(SECRET));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("copied 3 users (1 factors), skipped 0"), "{out}");
    let server = serve(dst).await;
    assert_eq!(records(&server).await, users);
    let resp =
        server.post("/token?grant_type=password", json!({"email": "bea@example.com", "password": BEA_PASSWORD})).await;
    assert_eq!(resp.status(), 200, "bcrypt after sled → Postgres → sled");
    server.login(&users[2].email).await;
    check_totp(&server, &totp).await;
}

/// At a destination: T2 refreshes in its session (200, same `session_id`), then presenting T
/// (T2's parent, outside the reuse interval: 0 in the tests) is a reuse: 400 and the family
/// revoked, as it would have been at the source.
async fn check_moved_session(server: &TestServer, t: &str, t2: &str, session_id: &Value) {
    let resp = server.refresh(t2).await;
    assert_eq!(resp.status(), 200, "the copied active token refreshes");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(&claims(&access(&body))["session_id"], session_id, "in the same session");
    let t3 = body["refresh_token"].as_str().unwrap().to_owned();
    assert_error(server.refresh(t).await, 400, "refresh_token_already_used").await;
    assert_error(server.refresh(&t3).await, 400, "refresh_token_already_used").await;
    assert_error(server.refresh(t2).await, 400, "refresh_token_already_used").await;
}

#[tokio::test]
async fn sessions_move_with_their_refresh_tokens() {
    // At the source: a user signed in (T) and refreshed once (T2, child of T).
    let server = serve(tempfile::tempdir().unwrap()).await;
    let signed_in = server.signup(&unique_email()).await;
    let t = signed_in["refresh_token"].as_str().unwrap().to_owned();
    let session_id = claims(&access(&signed_in))["session_id"].clone();
    let resp = server.refresh(&t).await;
    assert_eq!(resp.status(), 200);
    let t2 = resp.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned();
    let src = server.stop().await;

    // Without --sessions nothing of it moves.
    let plain = tempfile::tempdir().unwrap();
    let (code, out, err) = migrate(&p(src.path()), &p(plain.path()), Some(SECRET));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("sessions are not copied"), "{out}");
    let server = serve(plain).await;
    assert_error(server.refresh(&t2).await, 400, "refresh_token_not_found").await;
    server.stop().await;

    // sled → Postgres with --sessions; a re-run skips the session.
    let url = ferrotrue_actors::pg::testing::fresh_database().await;
    let (code, out, err) = migrate_with(&p(src.path()), &url, Some(SECRET), &["--sessions"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("copied 1 users") && out.contains("sessions: copied 1, skipped 0"), "{out}");
    let (code, out, err) = migrate_with(&p(src.path()), &url, Some(SECRET), &["--sessions"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("skipped 1 (id already") && out.contains("sessions: copied 0, skipped 1"), "{out}");

    // Postgres → sled with --sessions, before either destination serves anything.
    let dst = tempfile::tempdir().unwrap();
    let (code, out, err) = migrate_with(&url, &p(dst.path()), Some(SECRET), &["--sessions"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("sessions: copied 1, skipped 0"), "{out}");

    // Both destinations serve the moved session.
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.database = Some(ferrotrue_actors::pg::testing::settings(&url));
    let on_pg = TestServer::start_in(dir, config).await;
    check_moved_session(&on_pg, &t, &t2, &session_id).await;
    on_pg.stop().await;
    let on_sled = serve(dst).await;
    check_moved_session(&on_sled, &t, &t2, &session_id).await;
}
