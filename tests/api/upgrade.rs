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

/// Written by 3c54ca0 (`mfa_factors/v1`, TOTP only): the factor migrates to `mfa_factors/v2`
/// and still verifies with its secret, raising a new session to aal2.
#[tokio::test]
async fn the_mfa_factors_v1_data_directory_keeps_its_totp_factor() {
    let (server, manifest) = serve_fixture("datadir-2026-12-01-mfa").await;
    let user = &manifest["users"][0];
    let resp =
        server.post("/token?grant_type=password", json!({"email": user["email"], "password": user["password"]})).await;
    assert_eq!(resp.status(), 200);
    let session: Value = resp.json().await.unwrap();
    let token = session["access_token"].as_str().unwrap();
    let factor = &manifest["factor"];
    let listed = &session["user"]["factors"][0];
    assert_eq!(listed["id"], factor["id"]);
    assert_eq!(listed["status"], "verified");
    assert_eq!(listed["friendly_name"], factor["friendly_name"]);
    assert_eq!(listed["factor_type"], "totp");
    // An aal1 session of a user with a verified factor still cannot unenroll it.
    let id = factor["id"].as_str().unwrap();
    let resp =
        server.request(reqwest::Method::DELETE, &format!("/factors/{id}")).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), 422, "insufficient_aal survives the migration");
    // The sealed secret still opens: a challenge and a code from it give aal2.
    let resp = server.post_auth(&format!("/factors/{id}/challenge"), token, json!({})).await;
    assert_eq!(resp.status(), 200);
    let challenge: Value = resp.json().await.unwrap();
    let code = crate::mfa::code_at(factor["totp_secret"].as_str().unwrap(), 0);
    let resp = server
        .post_auth(&format!("/factors/{id}/verify"), token, json!({"challenge_id": challenge["id"], "code": code}))
        .await;
    assert_eq!(resp.status(), 200);
    let raised: Value = resp.json().await.unwrap();
    let payload = raised["access_token"].as_str().unwrap().split('.').nth(1).unwrap().to_owned();
    use base64::Engine;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["aal"], "aal2");
}
