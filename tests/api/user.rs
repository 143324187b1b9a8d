//! `GET /user` and `PUT /user` (SPEC §1.12, §1.13): the User shape, every generic U-endpoint
//! failure of the bearer check, metadata merging, password changes and their session effects.

#![allow(clippy::expect_used)] // helpers outside #[test] fns; a failed expect is a failed test

use crate::common::*;
use ferrotrue_actors::clock::Timestamp;
use jsonwebtoken::Algorithm;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

fn user_id(session: &Value) -> Uuid {
    Uuid::parse_str(session["user"]["id"].as_str().expect("user.id")).expect("user.id is a UUID")
}

/// `GET /user` that must succeed; returns the User.
async fn get_user(server: &TestServer, token: &str) -> Value {
    let resp = server.get_auth("/user", token).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET /user");
    resp.json().await.expect("json")
}

/// `PUT /user` that must succeed; returns the User.
async fn put_user(server: &TestServer, token: &str, body: Value) -> Value {
    let resp = server.put_auth("/user", token, body.clone()).await;
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "PUT /user {body}: {text}");
    serde_json::from_str(&text).expect("json")
}

/// Gives the stored user GoTrue's admin group role (`GOTRUE_JWT_ADMIN_GROUP_NAME`, default `admin`).
async fn make_admin_group_member(server: &TestServer, id: Uuid) {
    server
        .actors
        .users
        .update(id, |u| {
            u.role = "admin".into();
            Ok(())
        })
        .await
        .expect("set role");
}

/// Claims of a well-formed, unexpired user token without a session.
fn claims_for(sub: &str) -> Value {
    json!({"sub": sub, "aud": "authenticated", "role": "authenticated", "exp": now_secs() + 3600, "iat": now_secs()})
}

// ---------------------------------------------------------------- GET /user

#[tokio::test]
async fn get_user_returns_the_caller() {
    let server = TestServer::start().await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let user = get_user(&server, &access(&session)).await;

    assert_eq!(user["id"], session["user"]["id"]);
    assert_eq!(user["email"], email.as_str());
    assert_eq!(user["aud"], "authenticated");
    assert_eq!(user["role"], "authenticated");
    assert_eq!(user["phone"], "");
    assert_eq!(user["is_anonymous"], false);
    assert!(user["created_at"].is_string() && user["updated_at"].is_string(), "{user}");
    assert!(user["email_confirmed_at"].is_string(), "autoconfirm is on: {user}");
    assert!(user["last_sign_in_at"].is_string(), "{user}");

    let app = user["app_metadata"].as_object().expect("app_metadata is an object");
    assert_eq!(app["provider"], "email");
    assert_eq!(app["providers"], json!(["email"]));
    assert!(user["user_metadata"].is_object(), "{user}");

    let identities = user["identities"].as_array().expect("identities is an array");
    assert_eq!(identities.len(), 1, "{user}");
    let identity = &identities[0];
    assert_eq!(identity["provider"], "email");
    assert_eq!(identity["user_id"], user["id"]);
    assert_eq!(identity["id"], user["id"], "email identities use the user id as provider subject");
    assert!(identity["identity_id"].as_str().is_some_and(|s| Uuid::parse_str(s).is_ok()), "{identity}");
    assert_eq!(identity["identity_data"]["email"], email.as_str());
    assert_eq!(identity["email"], email.as_str());

    // Never serialised.
    for secret in ["encrypted_password", "password", "confirmation_token", "recovery_token"] {
        assert!(user.get(secret).is_none(), "{secret} leaked: {user}");
    }
}

#[tokio::test]
async fn get_user_without_authorization_is_401() {
    let server = TestServer::start().await;
    let resp = server.request(Method::GET, "/user").send().await.expect("request");
    let body = assert_error(resp, 401, "no_authorization").await;
    assert_eq!(body["message"], "This endpoint requires a valid Bearer token");
}

#[tokio::test]
async fn get_user_with_a_non_bearer_scheme_is_401() {
    let server = TestServer::start().await;
    let resp = server.request(Method::GET, "/user").header("Authorization", "Basic x").send().await.expect("request");
    assert_error(resp, 401, "no_authorization").await;
    // A bare "Bearer" with nothing after it is no token either.
    let resp = server.request(Method::GET, "/user").header("Authorization", "Bearer").send().await.expect("request");
    assert_error(resp, 401, "no_authorization").await;
}

#[tokio::test]
async fn get_user_with_a_garbage_token_is_403_bad_jwt() {
    let server = TestServer::start().await;
    for garbage in ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30."] {
        let body = assert_error(server.get_auth("/user", garbage).await, 403, "bad_jwt").await;
        assert!(body["message"].as_str().unwrap_or("").starts_with("invalid JWT"), "{body}");
    }
}

#[tokio::test]
async fn get_user_with_a_token_signed_by_another_secret_is_403_bad_jwt() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let forged = sign(
        &claims_for(&user_id(&session).to_string()),
        "some-other-secret-that-is-long-enough-too",
        Algorithm::HS256,
    );
    assert_error(server.get_auth("/user", &forged).await, 403, "bad_jwt").await;
}

#[tokio::test]
async fn get_user_with_hs512_and_the_right_secret_is_403_bad_jwt() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let token = sign(&claims_for(&user_id(&session).to_string()), SECRET, Algorithm::HS512);
    assert_error(server.get_auth("/user", &token).await, 403, "bad_jwt").await;
    // The same claims under HS256 are accepted: only the algorithm was wrong.
    let token = sign(&claims_for(&user_id(&session).to_string()), SECRET, Algorithm::HS256);
    let user = get_user(&server, &token).await;
    assert_eq!(user["id"], session["user"]["id"]);
}

#[tokio::test]
async fn get_user_with_an_expired_token_is_403_bad_jwt() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let mut claims = claims_for(&user_id(&session).to_string());
    claims["exp"] = json!(now_secs() - 60);
    claims["iat"] = json!(now_secs() - 3660);
    let token = sign(&claims, SECRET, Algorithm::HS256);
    let body = assert_error(server.get_auth("/user", &token).await, 403, "bad_jwt").await;
    assert!(body["message"].as_str().unwrap_or("").contains("expired"), "{body}");
}

#[tokio::test]
async fn get_user_with_a_token_without_sub_is_403_bad_jwt() {
    let server = TestServer::start().await;
    // Supabase's anon key: signed with the project secret, no sub, no aud, no exp.
    let anon = sign(&json!({"iss": "supabase", "role": "anon", "iat": now_secs()}), SECRET, Algorithm::HS256);
    assert_error(server.get_auth("/user", &anon).await, 403, "bad_jwt").await;
    let empty_sub = sign(&json!({"sub": "", "role": "authenticated"}), SECRET, Algorithm::HS256);
    assert_error(server.get_auth("/user", &empty_sub).await, 403, "bad_jwt").await;
}

#[tokio::test]
async fn get_user_with_a_non_uuid_sub_is_400_bad_jwt() {
    let server = TestServer::start().await;
    let token = sign(&claims_for("not-a-uuid"), SECRET, Algorithm::HS256);
    assert_error(server.get_auth("/user", &token).await, 400, "bad_jwt").await;
}

#[tokio::test]
async fn get_user_of_a_deleted_user_is_403_user_not_found() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let token = access(&session);
    get_user(&server, &token).await;
    server.actors.users.delete(user_id(&session)).await.expect("delete");
    assert_error(server.get_auth("/user", &token).await, 403, "user_not_found").await;
    // A hand-made token for a user that never existed behaves the same.
    let stranger = sign(&claims_for(&Uuid::new_v4().to_string()), SECRET, Algorithm::HS256);
    assert_error(server.get_auth("/user", &stranger).await, 403, "user_not_found").await;
}

#[tokio::test]
async fn get_user_after_logout_is_403_session_not_found() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let token = access(&session);
    let resp = server.post_auth("/logout", &token, json!({})).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_error(server.get_auth("/user", &token).await, 403, "session_not_found").await;
}

#[tokio::test]
async fn get_user_with_an_unknown_session_id_is_403_session_not_found() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let mut claims = claims_for(&user_id(&session).to_string());
    claims["session_id"] = json!(Uuid::new_v4().to_string());
    let token = sign(&claims, SECRET, Algorithm::HS256);
    assert_error(server.get_auth("/user", &token).await, 403, "session_not_found").await;
}

#[tokio::test]
async fn get_user_of_a_banned_user_is_403_user_banned() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    server
        .actors
        .users
        .update(user_id(&session), |u| {
            u.banned_until = Some(Timestamp(i64::MAX / 2));
            Ok(())
        })
        .await
        .expect("ban");
    assert_error(server.get_auth("/user", &access(&session)).await, 403, "user_banned").await;
    assert_error(server.put_auth("/user", &access(&session), json!({"data": {"a": 1}})).await, 403, "user_banned")
        .await;
}

#[tokio::test]
async fn get_user_with_a_foreign_audience_is_400_validation_failed() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let token = access(&session);
    let resp = server.request(Method::GET, "/user").bearer_auth(&token).header("X-JWT-AUD", "other").send().await;
    let body = assert_error(resp.expect("request"), 400, "validation_failed").await;
    assert_eq!(body["message"], "Token audience doesn't match request audience");
    // The matching audience is fine.
    let resp = server.request(Method::GET, "/user").bearer_auth(&token).header("X-JWT-AUD", "authenticated").send();
    assert_eq!(resp.await.expect("request").status(), StatusCode::OK);
}

// ---------------------------------------------------------------- PUT /user

#[tokio::test]
async fn put_user_merges_data_and_null_deletes_a_key() {
    let server = TestServer::start().await;
    let email = unique_email();
    let resp = server
        .post("/signup", json!({"email": email, "password": PASSWORD, "data": {"keep": "k", "drop": "d", "n": 1}}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let session: Value = resp.json().await.expect("json");
    let token = access(&session);
    assert_eq!(session["user"]["user_metadata"]["drop"], "d");

    let user = put_user(&server, &token, json!({"data": {"added": {"nested": true}, "drop": null, "n": 2}})).await;
    let meta = user["user_metadata"].as_object().expect("user_metadata object");
    assert_eq!(meta["keep"], "k", "existing keys are kept: {user}");
    assert_eq!(meta["added"], json!({"nested": true}), "{user}");
    assert_eq!(meta["n"], 2, "{user}");
    assert!(!meta.contains_key("drop"), "null deletes the key: {user}");
    assert_eq!(meta["email"], email.as_str(), "identity data keys survive: {user}");
    assert_eq!(user["id"], session["user"]["id"]);

    // Persisted, and visible through GET /user.
    let again = get_user(&server, &token).await;
    assert_eq!(again["user_metadata"], user["user_metadata"]);

    // A body with nothing to change is a no-op that still returns the user.
    let same = put_user(&server, &token, json!({})).await;
    assert_eq!(same["user_metadata"], user["user_metadata"]);
    // `"data": null` is "absent" (Go decoding), not "wipe everything".
    let same = put_user(&server, &token, json!({"data": null, "password": null, "email": null})).await;
    assert_eq!(same["user_metadata"], user["user_metadata"]);
}

#[tokio::test]
async fn put_user_password_change_ends_other_sessions_only() {
    let server = TestServer::start().await;
    let email = unique_email();
    let current = server.signup(&email).await;
    let other = server.login(&email).await;
    let new_password = "brand-new-secret-7";

    let user = put_user(&server, &access(&current), json!({"password": new_password})).await;
    assert_eq!(user["id"], current["user"]["id"]);

    // New password logs in, old one does not.
    let resp = server.post("/token?grant_type=password", json!({"email": email, "password": new_password})).await;
    assert_eq!(resp.status(), StatusCode::OK, "new password logs in");
    let resp = server.post("/token?grant_type=password", json!({"email": email, "password": PASSWORD})).await;
    assert_error(resp, 400, "invalid_credentials").await;

    // The other session is gone: its refresh token and its access token.
    assert_error(server.refresh(&refresh_token(&other)).await, 400, "refresh_token_not_found").await;
    assert_error(server.get_auth("/user", &access(&other)).await, 403, "session_not_found").await;

    // The current session survives.
    get_user(&server, &access(&current)).await;
    let resp = server.refresh(&refresh_token(&current)).await;
    assert_eq!(resp.status(), StatusCode::OK, "current session still refreshes");
}

#[tokio::test]
async fn put_user_same_password_is_422_same_password() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let resp = server.put_auth("/user", &access(&session), json!({"password": PASSWORD})).await;
    let body = assert_error(resp, 422, "same_password").await;
    assert_eq!(body["message"], "New password should be different from the old password.");
    // Nothing was ended.
    assert_eq!(server.refresh(&refresh_token(&session)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn put_user_weak_password_is_422_weak_password_with_reasons() {
    let server = TestServer::start().await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let resp = server.put_auth("/user", &access(&session), json!({"password": "abc"})).await;
    let body = assert_error(resp, 422, "weak_password").await;
    let reasons = body["weak_password"]["reasons"].as_array().expect("weak_password.reasons");
    assert!(reasons.contains(&json!("length")), "{body}");
    // The old password still works.
    server.login(&email).await;
}

#[tokio::test]
async fn put_user_password_over_72_bytes_is_400_validation_failed() {
    let server = TestServer::start().await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let token = access(&session);
    let resp = server.put_auth("/user", &token, json!({"password": "x".repeat(73)})).await;
    assert_error(resp, 400, "validation_failed").await;
    // The limit is in bytes: 37 two-byte characters are 74 bytes.
    let resp = server.put_auth("/user", &token, json!({"password": "é".repeat(37)})).await;
    assert_error(resp, 400, "validation_failed").await;
    // Exactly 72 bytes is allowed.
    put_user(&server, &token, json!({"password": "y".repeat(72)})).await;
    let resp = server.post("/token?grant_type=password", json!({"email": email, "password": "y".repeat(72)})).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn put_user_app_metadata_by_a_normal_user_is_403_not_admin() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let token = access(&session);
    let resp = server.put_auth("/user", &token, json!({"app_metadata": {"roles": ["admin"]}, "data": {"x": 1}})).await;
    assert_error(resp, 403, "not_admin").await;
    // Rejected as a whole: neither app_metadata nor data changed.
    let user = get_user(&server, &token).await;
    assert!(user["app_metadata"].get("roles").is_none(), "{user}");
    assert!(user["user_metadata"].get("x").is_none(), "{user}");
}

#[tokio::test]
async fn put_user_app_metadata_by_an_admin_role_token_is_merged() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let id = user_id(&session).to_string();
    // An admin-group user (GoTrue's isAdmin: stored role == GOTRUE_JWT_ADMIN_GROUP_NAME and stored
    // aud == GOTRUE_JWT_AUD) presenting a token that says so too.
    make_admin_group_member(&server, user_id(&session)).await;
    let admin = sign(
        &json!({"sub": id, "aud": "authenticated", "role": "admin", "exp": now_secs() + 3600, "iat": now_secs()}),
        SECRET,
        Algorithm::HS256,
    );
    let user = put_user(&server, &admin, json!({"app_metadata": {"roles": ["editor"], "tier": 2}})).await;
    assert_eq!(user["id"], id.as_str());
    let app = user["app_metadata"].as_object().expect("app_metadata");
    assert_eq!(app["roles"], json!(["editor"]), "{user}");
    assert_eq!(app["tier"], 2, "{user}");
    assert_eq!(app["provider"], "email", "existing keys are kept: {user}");
    assert_eq!(app["providers"], json!(["email"]), "{user}");

    // `null` deletes an app_metadata key too.
    let user = put_user(&server, &admin, json!({"app_metadata": {"tier": null}})).await;
    assert!(user["app_metadata"].get("tier").is_none(), "{user}");
    assert_eq!(user["app_metadata"]["roles"], json!(["editor"]));

    // Visible to the user's own session.
    let seen = get_user(&server, &access(&session)).await;
    assert_eq!(seen["app_metadata"], user["app_metadata"]);
}

#[tokio::test]
async fn put_user_with_the_same_email_is_fine_and_a_bad_or_taken_email_is_refused() {
    let server = TestServer::start().await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let token = access(&session);

    let resp = server.put_auth("/user", &token, json!({"email": "not-an-email"})).await;
    assert_error(resp, 400, "validation_failed").await;
    let taken = unique_email();
    server.signup(&taken).await;
    let resp = server.put_auth("/user", &token, json!({"email": taken})).await;
    assert_error(resp, 422, "email_exists").await;

    let user = put_user(&server, &token, json!({"email": email, "data": {"ok": true}})).await;
    assert_eq!(user["email"], email.as_str());
    assert_eq!(user["user_metadata"]["ok"], true);
    assert!(user.get("new_email").is_none(), "{user}");
    // Addresses are compared after lower-casing, as GoTrue's validateEmail does.
    let user = put_user(&server, &token, json!({"email": email.to_uppercase()})).await;
    assert_eq!(user["email"], email.as_str());
    assert!(user.get("new_email").is_none(), "{user}");
}

#[tokio::test]
async fn put_user_email_change_without_smtp_is_recorded_not_a_5xx() {
    // SPEC §6.7 / GoTrue mailer.NewMailer: with no GOTRUE_SMTP_HOST the noop mail client is used,
    // mails are silently dropped and the change is recorded as pending (200 with new_email).
    let server = TestServer::start().await;
    assert!(server.config.settings.smtp.host.is_empty(), "the default test config has no SMTP");
    let email = unique_email();
    let session = server.signup(&email).await;
    let new = unique_email();
    let resp = server.put_auth("/user", &access(&session), json!({"email": new})).await;
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert!(!status.is_server_error(), "an email change must never be a 5xx: {status} {text}");
    assert_eq!(status, StatusCode::OK, "{text}");
    let user: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(user["email"], email.as_str(), "the address changes only once confirmed: {user}");
    assert_eq!(user["new_email"], new.as_str(), "{user}");
    assert!(user["email_change_sent_at"].is_string(), "{user}");
}

#[tokio::test]
async fn put_user_with_bad_json_is_400_bad_json() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let resp = server
        .request(Method::PUT, "/user")
        .bearer_auth(access(&session))
        .header("Content-Type", "application/json")
        .body("{\"data\": ")
        .send()
        .await
        .expect("request");
    assert_error(resp, 400, "bad_json").await;
    let resp = server.put_auth("/user", &access(&session), json!({"data": "a string"})).await;
    assert_error(resp, 400, "bad_json").await;
}

#[tokio::test]
async fn put_user_without_a_token_is_401() {
    let server = TestServer::start().await;
    let resp = server.request(Method::PUT, "/user").json(&json!({"data": {"a": 1}})).send().await.expect("request");
    assert_error(resp, 401, "no_authorization").await;
}

#[tokio::test]
async fn put_user_keys_are_matched_case_insensitively() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let user = put_user(&server, &access(&session), json!({"Data": {"Colour": "blue"}})).await;
    assert_eq!(user["user_metadata"]["Colour"], "blue", "nested keys keep their case: {user}");
}

#[tokio::test]
async fn put_user_password_for_an_anonymous_user_without_email_is_422() {
    let server = TestServer::start_with(|c| c.settings.signup.anonymous_enabled = true).await;
    let resp = server.post("/signup", json!({})).await;
    assert_eq!(resp.status(), StatusCode::OK, "anonymous sign-in");
    let session: Value = resp.json().await.expect("json");
    assert_eq!(session["user"]["is_anonymous"], true);
    let token = access(&session);
    let resp = server.put_auth("/user", &token, json!({"password": "brand-new-secret-7"})).await;
    assert_error(resp, 422, "validation_failed").await;
    // Metadata updates are fine for anonymous users.
    let user = put_user(&server, &token, json!({"data": {"nick": "anon"}})).await;
    assert_eq!(user["user_metadata"]["nick"], "anon");
}

#[tokio::test]
async fn an_expired_ban_no_longer_blocks() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    server
        .actors
        .users
        .update(user_id(&session), |u| {
            u.banned_until = Some(Timestamp(1_000_000));
            Ok(())
        })
        .await
        .expect("ban in the past");
    let user = get_user(&server, &access(&session)).await;
    assert_eq!(user["id"], session["user"]["id"]);
}

#[tokio::test]
async fn put_user_min_length_counts_bytes_like_gotrue() {
    // GoTrue's checkPasswordStrength compares Go's len(password), i.e. bytes, with the minimum
    // length: "éééé" is 4 characters but 8 bytes and passes the default minimum of 6.
    let server = TestServer::start().await;
    let email = unique_email();
    let session = server.signup(&email).await;
    put_user(&server, &access(&session), json!({"password": "éééé"})).await;
    let resp = server.post("/token?grant_type=password", json!({"email": email, "password": "éééé"})).await;
    assert_eq!(resp.status(), StatusCode::OK, "the new multi-byte password logs in");
}

#[tokio::test]
async fn a_non_uuid_session_id_is_403_bad_jwt() {
    // GoTrue maybeLoadUserOrSession: "invalid claim: session_id claim must be a UUID" (403 bad_jwt).
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let mut claims = claims_for(&user_id(&session).to_string());
    claims["session_id"] = json!("not-a-uuid");
    let token = sign(&claims, SECRET, Algorithm::HS256);
    assert_error(server.get_auth("/user", &token).await, 403, "bad_jwt").await;
}

#[tokio::test]
async fn a_nil_session_id_counts_as_no_session() {
    // GoTrue skips the session lookup when session_id is "" or the nil UUID.
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let mut claims = claims_for(&user_id(&session).to_string());
    claims["session_id"] = json!(Uuid::nil().to_string());
    let token = sign(&claims, SECRET, Algorithm::HS256);
    let user = get_user(&server, &token).await;
    assert_eq!(user["id"], session["user"]["id"]);
    claims["session_id"] = json!("");
    let token = sign(&claims, SECRET, Algorithm::HS256);
    get_user(&server, &token).await;
}

#[tokio::test]
async fn app_metadata_admin_check_uses_the_stored_user_role_not_the_token_claim() {
    // GoTrue user.go UserUpdate: `params.AppData != nil && !isAdmin(user, config)` with
    // api/helpers.go `isAdmin(u, config) = config.JWT.Aud == u.Aud && u.HasRole(config.JWT.AdminGroupName)`:
    // the loaded user's stored role decides, whatever the token's `role` claim says.
    let server = TestServer::start().await;

    // A token claiming role "admin" for a user whose stored role is "authenticated": not an admin.
    let session = server.signup(&unique_email()).await;
    let forged_role = sign(
        &json!({"sub": user_id(&session).to_string(), "aud": "authenticated", "role": "admin", "exp": now_secs() + 3600}),
        SECRET,
        Algorithm::HS256,
    );
    let resp = server.put_auth("/user", &forged_role, json!({"app_metadata": {"roles": ["owner"]}})).await;
    assert_error(resp, 403, "not_admin").await;

    // A user made an admin-group member after sign-in may use the session token it already holds
    // (its claim still says "authenticated").
    let session = server.signup(&unique_email()).await;
    make_admin_group_member(&server, user_id(&session)).await;
    let user = put_user(&server, &access(&session), json!({"app_metadata": {"roles": ["owner"]}})).await;
    assert_eq!(user["app_metadata"]["roles"], json!(["owner"]), "{user}");
}
