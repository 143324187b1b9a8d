//! Upgrades: a data directory written by an earlier release (committed under
//! `tests/fixtures/datadir-*`, with a `fixture.json` saying what is in it) must open and serve
//! with the current build — users sign in with their passwords, the stored refresh token still
//! refreshes, metadata and the audit log are intact. When a change bumps a tree's `/vN`, this
//! test is what proves the migration (or says which data is deliberately abandoned).

use crate::common::*;
use serde_json::{json, Value};
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

async fn serve_fixture(name: &str) -> (TestServer, Value) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let manifest: Value = serde_json::from_slice(&std::fs::read(fixture.join("fixture.json")).unwrap()).unwrap();
    let secret = manifest["jwt_secret"].as_str().unwrap().to_owned();
    let server = TestServer::start_with(|c| {
        // Work on a copy: sled writes to its directory.
        copy_dir(&fixture.join("db"), &c.db_path());
        c.settings.jwt.secret = ferrotrue_actors::crypto::Secret(secret);
    })
    .await;
    (server, manifest)
}

#[tokio::test]
async fn the_2026_11_30_data_directory_opens_and_serves() {
    let (server, manifest) = serve_fixture("datadir-2026-11-30").await;
    assert_eq!(server.actors.users.count().await.unwrap(), 2);
    for user in manifest["users"].as_array().unwrap() {
        let resp = server
            .post("/token?grant_type=password", json!({"email": user["email"], "password": user["password"]}))
            .await;
        assert_eq!(resp.status(), 200, "{} signs in with the stored password hash", user["email"]);
        let session: Value = resp.json().await.unwrap();
        assert_eq!(session["user"]["id"], user["id"]);
        if let Some(meta) = user.get("user_metadata") {
            assert_eq!(session["user"]["user_metadata"]["name"], meta["name"]);
        }
    }
    // The refresh token handed out before the upgrade still refreshes, once.
    let stored = manifest["active_refresh_token"].as_str().unwrap();
    let resp = server.refresh(stored).await;
    assert_eq!(resp.status(), 200, "the stored refresh token survives the upgrade");
    let refreshed: Value = resp.json().await.unwrap();
    assert_eq!(refreshed["user"]["id"], manifest["users"][0]["id"]);
    // The audit log written then is readable now.
    let admin = sign(&json!({"role": "service_role"}), SECRET_OF_FIXTURE, jsonwebtoken::Algorithm::HS256);
    let resp = server.get_auth("/admin/audit", &admin).await;
    assert_eq!(resp.status(), 200);
    let entries: Value = resp.json().await.unwrap();
    let actions: Vec<&str> =
        entries.as_array().unwrap().iter().filter_map(|e| e["payload"]["action"].as_str()).collect();
    assert!(actions.contains(&"user_signedup") && actions.contains(&"token_refreshed"), "{actions:?}");
}

const SECRET_OF_FIXTURE: &str = "fixture-secret-that-is-long-enough-for-hs256";
