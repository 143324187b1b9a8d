//! `POST /token` (SPEC §1.3, §3.1, §5.3, §5.5, §9): the password grant, imported bcrypt hashes,
//! the weak-password note, refresh-token rotation and reuse, session limits, error formats.

use crate::common::*;
use ferrotrue_actors::clock::Timestamp;
use ferrotrue_actors::crypto::{hash_now, HashCost, Secret};
use ferrotrue_actors::user_registry::model::{Identity, JsonText, User};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use std::time::Duration;
use uuid::Uuid;

fn access_token(session: &Value) -> &str {
    session["access_token"].as_str().expect("access_token")
}

fn user_id(session: &Value) -> Uuid {
    Uuid::parse_str(session["user"]["id"].as_str().expect("user id")).expect("uuid")
}

async fn ok_json(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let body: Value = resp.json().await.expect("json body");
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn password_grant(server: &TestServer, body: Value) -> reqwest::Response {
    server.post("/token?grant_type=password", body).await
}

/// A stored, confirmed user with an email identity, built by hand (as an import would).
fn email_user(email: &str, encrypted_password: Option<String>) -> User {
    let now = Timestamp(now_secs() * 1_000_000);
    let id = Uuid::new_v4();
    let mut identity_data = Map::new();
    identity_data.insert("sub".into(), json!(id.to_string()));
    identity_data.insert("email".into(), json!(email));
    identity_data.insert("email_verified".into(), json!(true));
    let mut app = Map::new();
    app.insert("provider".into(), json!("email"));
    app.insert("providers".into(), json!(["email"]));
    User {
        id,
        aud: "authenticated".into(),
        role: "authenticated".into(),
        email: email.to_owned(),
        phone: String::new(),
        encrypted_password,
        email_confirmed_at: Some(now),
        phone_confirmed_at: None,
        invited_at: None,
        confirmation_sent_at: None,
        recovery_sent_at: None,
        new_email: String::new(),
        email_change_sent_at: None,
        new_phone: String::new(),
        phone_change_sent_at: None,
        reauthentication_sent_at: None,
        last_sign_in_at: None,
        app_metadata: JsonText::from_map(&app),
        user_metadata: JsonText::from_map(&identity_data),
        identities: vec![Identity {
            id: Uuid::new_v4(),
            provider_id: id.to_string(),
            provider: "email".into(),
            identity_data: JsonText::from_map(&identity_data),
            email: email.to_owned(),
            last_sign_in_at: None,
            created_at: now,
            updated_at: now,
        }],
        created_at: now,
        updated_at: now,
        banned_until: None,
        deleted_at: None,
        is_anonymous: false,
        is_sso_user: false,
        factors: Vec::new(),
    }
}

fn quick_hash(password: &str) -> String {
    hash_now(HashCost::QUICK, &Secret(password.into())).expect("hash")
}

async fn ban(server: &TestServer, id: Uuid) {
    server
        .actors
        .users
        .update(id, |u| {
            u.banned_until = Some(Timestamp(i64::MAX / 2));
            Ok(())
        })
        .await
        .expect("ban");
}

// ---------------------------------------------------------------------------------------------
// grant_type
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_or_unknown_grant_type_is_invalid_credentials() {
    let server = TestServer::start().await;
    let email = unique_email();
    server.signup(&email).await;
    for path in ["/token", "/token?grant_type=", "/token?grant_type=client_credentials", "/token?grant_type=PASSWORD"] {
        let resp = server.post(path, json!({"email": email, "password": PASSWORD})).await;
        let err = assert_error(resp, 400, "invalid_credentials").await;
        assert_eq!(err["message"], "unsupported_grant_type", "{path}");
    }
    // grant_type is read from the query string, not from the JSON body.
    let resp = server.post("/token", json!({"grant_type": "password", "email": email, "password": PASSWORD})).await;
    assert_error(resp, 400, "invalid_credentials").await;
}

// ---------------------------------------------------------------------------------------------
// grant_type=password
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn password_grant_with_email() {
    let server = TestServer::start().await;
    let email = unique_email();
    let signup = server.signup(&email).await;
    let resp = password_grant(&server, json!({"email": email.to_uppercase(), "password": PASSWORD})).await;
    let body = ok_json(resp).await;
    assert_eq!(body["token_type"], "bearer");
    assert!(body["expires_in"].as_i64().is_some_and(|e| e > 3500 && e <= 3600), "{body}");
    assert!(body["refresh_token"].as_str().is_some_and(|t| t.len() >= 12));
    assert_ne!(refresh_token(&body), refresh_token(&signup));
    assert!(body.get("weak_password").is_none(), "{body}");
    assert_eq!(body["user"]["id"], signup["user"]["id"]);
    assert_eq!(body["user"]["email"], email.as_str());
    assert!(body["user"]["last_sign_in_at"].is_string());
    assert_eq!(body["user"]["factors"], json!([]));
    assert_eq!(body["user"]["identities"][0]["provider"], "email");

    let c = verified_claims(access_token(&body));
    assert_eq!(c["sub"], body["user"]["id"]);
    assert_eq!(c["aud"], "authenticated");
    assert_eq!(c["role"], "authenticated");
    assert_eq!(c["email"], email.as_str());
    assert_eq!(c["aal"], "aal1");
    assert_eq!(c["amr"][0]["method"], "password");
    assert_eq!(c["exp"], body["expires_at"]);
    assert_ne!(c["session_id"], verified_claims(access_token(&signup))["session_id"], "each sign-in is a new session");
}

#[tokio::test]
async fn password_grant_with_phone_with_and_without_plus() {
    let server = TestServer::start().await;
    let phone = unique_phone();
    let signup =
        ok_json(server.post("/signup", json!({"phone": format!("+{phone}"), "password": PASSWORD})).await).await;
    for given in [phone.clone(), format!("+{phone}")] {
        let body = ok_json(password_grant(&server, json!({"phone": given, "password": PASSWORD})).await).await;
        assert_eq!(body["user"]["id"], signup["user"]["id"], "{given}");
        assert_eq!(body["user"]["phone"], phone.as_str());
        let c = verified_claims(access_token(&body));
        assert_eq!(c["phone"], phone.as_str());
        assert_eq!(c["amr"][0]["method"], "password");
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_give_the_same_answer() {
    let server = TestServer::start().await;
    let email = unique_email();
    server.signup(&email).await;
    // A user without a password (e.g. OAuth-only).
    let no_password = unique_email();
    server.actors.users.create(email_user(&no_password, None)).await.expect("create");

    let wrong = assert_error(
        password_grant(&server, json!({"email": email, "password": "wrong-password-1"})).await,
        400,
        "invalid_credentials",
    )
    .await;
    let unknown = assert_error(
        password_grant(&server, json!({"email": unique_email(), "password": PASSWORD})).await,
        400,
        "invalid_credentials",
    )
    .await;
    let empty = assert_error(
        password_grant(&server, json!({"email": email, "password": ""})).await,
        400,
        "invalid_credentials",
    )
    .await;
    let passwordless = assert_error(
        password_grant(&server, json!({"email": no_password, "password": PASSWORD})).await,
        400,
        "invalid_credentials",
    )
    .await;
    let unknown_phone = assert_error(
        password_grant(&server, json!({"phone": unique_phone(), "password": PASSWORD})).await,
        400,
        "invalid_credentials",
    )
    .await;
    assert_eq!(wrong["message"], "Invalid login credentials");
    assert_eq!(wrong, unknown, "no user enumeration");
    assert_eq!(wrong, empty);
    assert_eq!(wrong, passwordless);
    assert_eq!(wrong, unknown_phone);
}

#[tokio::test]
async fn email_and_phone_together_or_neither_is_validation_failed() {
    let server = TestServer::start().await;
    let email = unique_email();
    server.signup(&email).await;
    let resp = password_grant(&server, json!({"email": email, "phone": unique_phone(), "password": PASSWORD})).await;
    assert_error(resp, 400, "validation_failed").await;
    let resp = password_grant(&server, json!({"password": PASSWORD})).await;
    let err = assert_error(resp, 400, "validation_failed").await;
    assert_eq!(err["message"], "missing email or phone");
    let resp = password_grant(&server, json!({"email": null, "phone": "", "password": PASSWORD})).await;
    assert_error(resp, 400, "validation_failed").await;
}

#[tokio::test]
async fn login_providers_disabled_are_422() {
    let server = TestServer::start_with(|c| {
        c.settings.signup.email_enabled = false;
        c.settings.signup.phone_enabled = false;
    })
    .await;
    let resp = password_grant(&server, json!({"email": unique_email(), "password": PASSWORD})).await;
    let err = assert_error(resp, 422, "email_provider_disabled").await;
    assert_eq!(err["message"], "Email logins are disabled");
    let resp = password_grant(&server, json!({"phone": unique_phone(), "password": PASSWORD})).await;
    let err = assert_error(resp, 422, "phone_provider_disabled").await;
    assert_eq!(err["message"], "Phone logins are disabled");
}

#[tokio::test]
async fn banned_user_cannot_log_in() {
    let server = TestServer::start().await;
    let email = unique_email();
    let signup = server.signup(&email).await;
    ban(&server, user_id(&signup)).await;
    let resp = password_grant(&server, json!({"email": email, "password": PASSWORD})).await;
    let err = assert_error(resp, 400, "user_banned").await;
    assert_eq!(err["message"], "User is banned");

    // A ban in the past is no ban.
    server
        .actors
        .users
        .update(user_id(&signup), |u| {
            u.banned_until = Some(Timestamp(1));
            Ok(())
        })
        .await
        .expect("unban");
    server.login(&email).await;
}

#[tokio::test]
async fn phone_not_confirmed_after_a_correct_password() {
    let server = TestServer::start().await;
    let phone = unique_phone();
    let mut user = email_user("", Some(quick_hash(PASSWORD)));
    user.email_confirmed_at = None;
    user.phone = phone.clone();
    user.identities.clear();
    server.actors.users.create(user).await.expect("create");
    let resp = password_grant(&server, json!({"phone": format!("+{phone}"), "password": PASSWORD})).await;
    let err = assert_error(resp, 400, "phone_not_confirmed").await;
    assert_eq!(err["message"], "Phone not confirmed");
    // Wrong password first: invalid credentials, not "not confirmed".
    let resp = password_grant(&server, json!({"phone": phone, "password": "wrong-password-1"})).await;
    assert_error(resp, 400, "invalid_credentials").await;
}

#[tokio::test]
async fn correct_password_failing_todays_policy_carries_weak_password() {
    let server = TestServer::start().await;
    assert_eq!(server.config.settings.password.min_length, 6);
    let email = unique_email();
    // Set before the policy was raised (or imported): "abc" is too short today.
    server.actors.users.create(email_user(&email, Some(quick_hash("abc")))).await.expect("create");

    let body = ok_json(password_grant(&server, json!({"email": email, "password": "abc"})).await).await;
    assert!(body["access_token"].is_string());
    assert_eq!(body["weak_password"]["reasons"], json!(["length"]), "{body}");
    assert_eq!(body["weak_password"]["message"], "Password should be at least 6 characters.");

    // A strong password carries no note.
    let strong = unique_email();
    server.signup(&strong).await;
    assert!(server.login(&strong).await.get("weak_password").is_none());
}

#[tokio::test]
async fn weak_password_note_for_required_characters() {
    let server = TestServer::start_with(|c| c.settings.password.required_characters = vec!["0123456789".into()]).await;
    let email = unique_email();
    server.actors.users.create(email_user(&email, Some(quick_hash("no-digits-here")))).await.expect("create");
    let body = ok_json(password_grant(&server, json!({"email": email, "password": "no-digits-here"})).await).await;
    assert_eq!(body["weak_password"]["reasons"], json!(["characters"]), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Imported bcrypt hashes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn imported_bcrypt_hash_logs_in_and_is_upgraded_to_argon2id() {
    let server = TestServer::start().await;
    let email = unique_email();
    let hash = bcrypt::hash("imported-pass", 4).expect("bcrypt");
    assert!(hash.starts_with("$2b$"));
    let user = server.actors.users.create(email_user(&email, Some(hash))).await.expect("create");

    let resp = password_grant(&server, json!({"email": email, "password": "wrong-pass-1"})).await;
    assert_error(resp, 400, "invalid_credentials").await;
    let stored = server.actors.users.get(user.id).await.expect("get").expect("user");
    assert!(stored.encrypted_password.as_deref().is_some_and(|h| h.starts_with("$2b$")), "no rehash on failure");

    let body = ok_json(password_grant(&server, json!({"email": email, "password": "imported-pass"})).await).await;
    assert_eq!(body["user"]["id"], user.id.to_string());
    assert_eq!(verified_claims(access_token(&body))["amr"][0]["method"], "password");

    let stored = server.actors.users.get(user.id).await.expect("get").expect("user");
    let upgraded = stored.encrypted_password.expect("hash");
    assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
    // The upgraded hash keeps working, and still rejects a wrong password.
    ok_json(password_grant(&server, json!({"email": email, "password": "imported-pass"})).await).await;
    let resp = password_grant(&server, json!({"email": email, "password": "wrong-pass-1"})).await;
    assert_error(resp, 400, "invalid_credentials").await;
}

#[tokio::test]
async fn bcrypt_2a_and_2y_variants_log_in() {
    let server = TestServer::start().await;
    let hash = bcrypt::hash("imported-pass", 4).expect("bcrypt");
    for prefix in ["$2a$", "$2y$"] {
        let email = unique_email();
        let variant = format!("{prefix}{}", &hash[4..]);
        server.actors.users.create(email_user(&email, Some(variant))).await.expect("create");
        let resp = password_grant(&server, json!({"email": email, "password": "imported-pass"})).await;
        let body = ok_json(resp).await;
        assert_eq!(body["user"]["email"], email.as_str(), "{prefix}");
    }
}

// ---------------------------------------------------------------------------------------------
// grant_type=refresh_token
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn refresh_rotates_and_keeps_the_session() {
    let server = TestServer::start().await;
    let email = unique_email();
    let signup = server.signup(&email).await;
    let t1 = refresh_token(&signup);
    let body = ok_json(server.refresh(&t1).await).await;
    let t2 = refresh_token(&body);
    assert_ne!(t1, t2, "rotation issues a new refresh token");
    assert_eq!(body["token_type"], "bearer");
    assert!(body["expires_in"].as_i64().is_some_and(|e| e > 3500 && e <= 3600));
    assert_eq!(body["user"]["id"], signup["user"]["id"]);
    assert_eq!(body["user"]["email"], email.as_str());
    assert_eq!(body["user"]["factors"], json!([]));
    assert!(body.get("weak_password").is_none());

    let before = verified_claims(access_token(&signup));
    let after = verified_claims(access_token(&body));
    assert_eq!(after["session_id"], before["session_id"], "refresh keeps the session");
    assert_eq!(after["sub"], before["sub"]);
    assert_eq!(after["amr"], before["amr"], "refresh adds no amr entry");
    assert_eq!(after["aal"], "aal1");
    assert_eq!(after["exp"], body["expires_at"]);

    // And again.
    let t3 = refresh_token(&ok_json(server.refresh(&t2).await).await);
    assert!(t3 != t1 && t3 != t2);
}

#[tokio::test]
async fn replaying_the_parent_of_the_active_token_returns_the_active_token() {
    let server = TestServer::start().await;
    let t1 = refresh_token(&server.signup(&unique_email()).await);
    let t2 = refresh_token(&ok_json(server.refresh(&t1).await).await);
    let t3 = refresh_token(&ok_json(server.refresh(&t2).await).await);
    // The client lost the response to T2 → T3 and sends T2 again.
    let replay = ok_json(server.refresh(&t2).await).await;
    assert_eq!(refresh_token(&replay), t3);
    assert!(replay["access_token"].is_string());
    // Repeatable, and T3 is still good afterwards.
    assert_eq!(refresh_token(&ok_json(server.refresh(&t2).await).await), t3);
    let t4 = refresh_token(&ok_json(server.refresh(&t3).await).await);
    assert!(![&t1, &t2, &t3].contains(&&t4));
}

#[tokio::test]
async fn reusing_an_older_token_revokes_the_family() {
    let server = TestServer::start().await;
    let email = unique_email();
    let t1 = refresh_token(&server.signup(&email).await);
    let t2 = refresh_token(&ok_json(server.refresh(&t1).await).await);
    let t3 = refresh_token(&ok_json(server.refresh(&t2).await).await);

    let err = assert_error(server.refresh(&t1).await, 400, "refresh_token_already_used").await;
    assert_eq!(err["message"], "Invalid Refresh Token: Already Used");
    // The whole family is revoked: the active token and its parent fail too.
    assert_error(server.refresh(&t3).await, 400, "refresh_token_already_used").await;
    assert_error(server.refresh(&t2).await, 400, "refresh_token_already_used").await;

    // Other sessions of the same user are not affected.
    let other = refresh_token(&server.login(&email).await);
    ok_json(server.refresh(&other).await).await;
}

#[tokio::test]
async fn reuse_interval_allows_an_older_token() {
    let server = TestServer::start_with(|c| c.settings.refresh.reuse_interval = Duration::from_secs(60)).await;
    let t1 = refresh_token(&server.signup(&unique_email()).await);
    let t2 = refresh_token(&ok_json(server.refresh(&t1).await).await);
    let t3 = refresh_token(&ok_json(server.refresh(&t2).await).await);
    let body = ok_json(server.refresh(&t1).await).await;
    let t4 = refresh_token(&body);
    assert!(![&t1, &t2, &t3].contains(&&t4), "a new child of T1 is minted");
    assert!(body["access_token"].is_string());
    // Nothing was revoked: T3 still works.
    ok_json(server.refresh(&t3).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_of_one_token_all_get_the_same_new_token() {
    let server = TestServer::start().await;
    let signup = server.signup(&unique_email()).await;
    let t1 = refresh_token(&signup);
    let session_id = verified_claims(access_token(&signup))["session_id"].clone();

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let http = server.http.clone();
            let url = server.url("/token?grant_type=refresh_token");
            let token = t1.clone();
            tokio::spawn(async move {
                let resp = http
                    .post(url)
                    .header("X-Supabase-Api-Version", "2024-01-01")
                    .json(&json!({"refresh_token": token}))
                    .send()
                    .await
                    .expect("request");
                let status = resp.status();
                let body: Value = resp.json().await.expect("json");
                (status, body)
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(verified_claims(access_token(&body))["session_id"], session_id);
        tokens.push(refresh_token(&body));
    }
    let first = tokens[0].clone();
    assert_ne!(first, t1);
    assert!(tokens.iter().all(|t| *t == first), "all concurrent refreshes return the same child: {tokens:?}");
    // That child is the active token.
    let next = ok_json(server.refresh(&first).await).await;
    assert_ne!(refresh_token(&next), first);
}

#[tokio::test]
async fn unknown_refresh_token_is_not_found() {
    let server = TestServer::start().await;
    let err = assert_error(server.refresh("this-token-was-never-issued").await, 400, "refresh_token_not_found").await;
    assert_eq!(err["message"], "Invalid Refresh Token: Refresh Token Not Found");
    // A 12-character token is long enough to be looked up.
    assert_error(server.refresh("abcdefghijkl").await, 400, "refresh_token_not_found").await;
}

#[tokio::test]
async fn short_or_empty_refresh_token_is_validation_failed() {
    let server = TestServer::start().await;
    for token in ["", "short", "abcdefghijk"] {
        let err = assert_error(server.refresh(token).await, 400, "validation_failed").await;
        assert_eq!(err["message"], "Refresh token is not valid", "{token:?}");
    }
    let resp = server.post("/token?grant_type=refresh_token", json!({})).await;
    assert_error(resp, 400, "validation_failed").await;
    let resp = server.post("/token?grant_type=refresh_token", json!({"refresh_token": null})).await;
    assert_error(resp, 400, "validation_failed").await;
}

#[tokio::test]
async fn refresh_of_a_banned_user_is_user_banned() {
    let server = TestServer::start().await;
    let signup = server.signup(&unique_email()).await;
    let t1 = refresh_token(&signup);
    ban(&server, user_id(&signup)).await;
    let err = assert_error(server.refresh(&t1).await, 400, "user_banned").await;
    assert_eq!(err["message"], "User is banned");
}

#[tokio::test]
async fn refresh_of_a_deleted_user_is_not_found() {
    let server = TestServer::start().await;
    let signup = server.signup(&unique_email()).await;
    server.actors.users.delete(user_id(&signup)).await.expect("delete");
    // GoTrue deletes the user's sessions and refresh tokens with it (FK cascade).
    let resp = server.refresh(&refresh_token(&signup)).await;
    assert_error(resp, 400, "refresh_token_not_found").await;
}

#[tokio::test]
async fn session_timebox_expires_the_session() {
    let server = TestServer::start_with(|c| c.settings.sessions.timebox = Some(Duration::from_secs(1))).await;
    let t1 = refresh_token(&server.signup(&unique_email()).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let err = assert_error(server.refresh(&t1).await, 400, "session_expired").await;
    assert!(err["message"].as_str().is_some_and(|m| m.starts_with("Invalid Refresh Token: Session Expired")), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Error formats
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn legacy_error_format_without_the_version_header() {
    let server = TestServer::start().await;
    let resp = server
        .http
        .post(server.url("/token?grant_type=password"))
        .json(&json!({"email": unique_email(), "password": "wrong-password-1"}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("x-supabase-api-version").is_none(), "no version echo for legacy clients");
    assert_eq!(resp.headers().get("x-sb-error-code").and_then(|v| v.to_str().ok()), Some("invalid_credentials"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body, json!({"code": 400, "error_code": "invalid_credentials", "msg": "Invalid login credentials"}));

    // A version before 2024-01-01 is legacy too.
    let resp = server
        .http
        .request(Method::POST, server.url("/token?grant_type=refresh_token"))
        .header("X-Supabase-Api-Version", "2023-12-31")
        .json(&json!({"refresh_token": "this-token-was-never-issued"}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("x-supabase-api-version").is_none());
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], 400);
    assert_eq!(body["error_code"], "refresh_token_not_found");
    assert_eq!(body["msg"], "Invalid Refresh Token: Refresh Token Not Found");
}

#[tokio::test]
async fn token_bodies_are_decoded_leniently() {
    let server = TestServer::start().await;
    let email = unique_email();
    server.signup(&email).await;
    // Upper-case keys, nulls and unknown fields (auth-js sends gotrue_meta_security).
    let body = json!({
        "EMAIL": email,
        "Password": PASSWORD,
        "phone": null,
        "gotrue_meta_security": {"captcha_token": "x"},
        "extra": true
    });
    ok_json(password_grant(&server, body).await).await;
    // Broken bodies are bad_json.
    let resp = server
        .request(Method::POST, "/token?grant_type=password")
        .header("Content-Type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .expect("request");
    assert_error(resp, 400, "bad_json").await;
    let resp = server.post("/token?grant_type=refresh_token", json!({"refresh_token": 12345678901234_i64})).await;
    assert_error(resp, 400, "bad_json").await;
}
