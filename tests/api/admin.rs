//! The admin API (SPEC §1.18, §1.19, §2.3, §10): authorization on every route, user CRUD
//! (create with passwords / imported hashes / phones / metadata / bans, update, hard and soft
//! delete), listing with GoTrue's pagination headers, generate_link for every link type, the
//! factor routes, and the persisted audit log.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expect is a failed test

use crate::common::*;
use ferrotrue_actors::crypto::{hash_now, HashCost, Secret};
use jsonwebtoken::Algorithm;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Helpers

/// An admin request with the service_role token.
async fn admin(server: &TestServer, method: Method, path: &str, body: Option<Value>) -> Response {
    admin_as(server, &service_role_token(), method, path, body).await
}

/// A request to an admin route with `token` (empty: no Authorization header).
async fn admin_as(server: &TestServer, token: &str, method: Method, path: &str, body: Option<Value>) -> Response {
    let mut req = server.request(method, path);
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("request")
}

/// Asserts 200 and returns the JSON body (the body is printed on failure).
async fn ok_json(resp: Response, what: &str) -> Value {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {text}"))
}

/// `POST /admin/users` that must succeed.
async fn create(server: &TestServer, body: Value) -> Value {
    ok_json(admin(server, Method::POST, "/admin/users", Some(body)).await, "POST /admin/users").await
}

/// `GET /admin/users/{id}` that must succeed.
async fn get_user(server: &TestServer, id: &str) -> Value {
    ok_json(admin(server, Method::GET, &format!("/admin/users/{id}"), None).await, "GET /admin/users/{id}").await
}

/// `PUT /admin/users/{id}` that must succeed.
async fn update(server: &TestServer, id: &str, body: Value) -> Value {
    ok_json(admin(server, Method::PUT, &format!("/admin/users/{id}"), Some(body)).await, "PUT /admin/users/{id}").await
}

/// Password grant with an explicit password; the raw response.
async fn login_with(server: &TestServer, email: &str, password: &str) -> Response {
    server.post("/token?grant_type=password", json!({"email": email, "password": password})).await
}

/// Password grant by phone.
async fn phone_login(server: &TestServer, phone: &str, password: &str) -> Response {
    server.post("/token?grant_type=password", json!({"phone": phone, "password": password})).await
}

fn id_of(user: &Value) -> String {
    user["id"].as_str().expect("user id").to_owned()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// `Link` entries as (target, rel).
fn links(link: &str) -> Vec<(String, String)> {
    link.split(',')
        .map(|part| {
            let (target, rel) = part.split_once(';').expect("link part has a ';'");
            let target = target.trim().trim_start_matches('<').trim_end_matches('>').to_owned();
            let rel = rel.trim().strip_prefix("rel=").expect("rel=").trim_matches('"').to_owned();
            (target, rel)
        })
        .collect()
}

/// What auth-js reads from one `Link` entry: the character right after the first `=`.
fn auth_js_page(part: &str) -> u32 {
    let first = part.split(';').next().unwrap().split('=').nth(1).unwrap();
    first[..1].parse().expect("auth-js reads a digit")
}

fn parse_time(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
}

/// One listing page: (users, X-Total-Count, Link).
async fn list(server: &TestServer, query: &str) -> (Vec<Value>, usize, String) {
    let resp = admin(server, Method::GET, &format!("/admin/users{query}"), None).await;
    let total = header(&resp, "x-total-count").expect("X-Total-Count").parse().expect("a number");
    let link = header(&resp, "link").expect("Link");
    let body = ok_json(resp, "GET /admin/users").await;
    assert_eq!(body["aud"], "authenticated", "{body}");
    let users = body["users"].as_array().expect("users array").clone();
    (users, total, link)
}

/// One audit page: (entries, X-Total-Count, Link).
async fn audit(server: &TestServer, query: &str) -> (Vec<Value>, usize, String) {
    let resp = admin(server, Method::GET, &format!("/admin/audit{query}"), None).await;
    let total = header(&resp, "x-total-count").expect("X-Total-Count").parse().expect("a number");
    let link = header(&resp, "link").expect("Link");
    let body = ok_json(resp, "GET /admin/audit").await;
    (body.as_array().expect("the audit log is a JSON array").clone(), total, link)
}

fn action(entry: &Value) -> &str {
    entry["payload"]["action"].as_str().expect("payload.action")
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn assert_session(v: &Value, what: &str) {
    assert!(v["access_token"].is_string(), "{what}: {v}");
    assert!(v["refresh_token"].is_string(), "{what}: {v}");
    assert!(v["expires_in"].is_number(), "{what}: {v}");
}

// ---------------------------------------------------------------------------------------------
// Authorization

#[tokio::test]
async fn every_admin_route_requires_an_admin_token() {
    let server = TestServer::start().await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let user_token = session["access_token"].as_str().unwrap().to_owned();
    let id = session["user"]["id"].as_str().unwrap().to_owned();
    let factor = Uuid::new_v4();
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/admin/users".into(), None),
        (Method::POST, "/admin/users".into(), Some(json!({"email": unique_email(), "password": PASSWORD}))),
        (Method::GET, format!("/admin/users/{id}"), None),
        (Method::GET, format!("/admin/user/{id}"), None),
        (Method::PUT, format!("/admin/users/{id}"), Some(json!({"user_metadata": {"hacked": true}}))),
        (Method::PUT, format!("/admin/user/{id}"), Some(json!({"user_metadata": {"hacked": true}}))),
        (Method::DELETE, format!("/admin/users/{id}"), Some(json!({}))),
        (Method::DELETE, format!("/admin/user/{id}"), None),
        (Method::GET, format!("/admin/users/{id}/factors"), None),
        (Method::DELETE, format!("/admin/users/{id}/factors/{factor}"), None),
        (Method::PUT, format!("/admin/users/{id}/factors/{factor}"), Some(json!({"friendly_name": "x"}))),
        (Method::POST, "/admin/generate_link".into(), Some(json!({"type": "magiclink", "email": email}))),
        (Method::GET, "/admin/audit".into(), None),
    ];
    let anon = sign(&json!({"role": "anon", "iss": "supabase"}), SECRET, Algorithm::HS256);
    let expired = sign(
        &json!({"role": "service_role", "iat": now_secs() - 7200, "exp": now_secs() - 3600}),
        SECRET,
        Algorithm::HS256,
    );
    let forged = sign(&json!({"role": "service_role"}), "some-other-secret-that-is-long-enough", Algorithm::HS256);
    let ended_session = sign(
        &json!({"role": "service_role", "session_id": Uuid::new_v4().to_string(), "exp": now_secs() + 600}),
        SECRET,
        Algorithm::HS256,
    );
    for (method, path, body) in &routes {
        let what = format!("{method} {path}");
        let resp = admin_as(&server, "", method.clone(), path, body.clone()).await;
        let err = assert_error(resp, 401, "no_authorization").await;
        assert!(!err["message"].as_str().unwrap().is_empty(), "{what}");
        let resp = admin_as(&server, &user_token, method.clone(), path, body.clone()).await;
        let err = assert_error(resp, 403, "not_admin").await;
        assert_eq!(err["message"], "User not allowed", "{what}");
        let resp = admin_as(&server, &anon, method.clone(), path, body.clone()).await;
        assert_error(resp, 403, "not_admin").await;
        let resp = admin_as(&server, &expired, method.clone(), path, body.clone()).await;
        assert_error(resp, 403, "bad_jwt").await;
        let resp = admin_as(&server, &forged, method.clone(), path, body.clone()).await;
        assert_error(resp, 403, "bad_jwt").await;
        let resp = admin_as(&server, &ended_session, method.clone(), path, body.clone()).await;
        assert_error(resp, 403, "session_expired").await;
    }
    // None of the refused calls did anything.
    let user = get_user(&server, &id).await;
    assert!(user["user_metadata"].get("hacked").is_none(), "{user}");
    let (users, total, _) = list(&server, "").await;
    assert_eq!((users.len(), total), (1, 1), "refused creates must not create");

    // Both default admin roles are accepted, with or without an expiry.
    let supabase_admin = sign(&json!({"role": "supabase_admin"}), SECRET, Algorithm::HS256);
    let resp = admin_as(&server, &supabase_admin, Method::GET, &format!("/admin/users/{id}"), None).await;
    assert_eq!(ok_json(resp, "supabase_admin").await["email"], email);
    let fresh = sign(&json!({"role": "service_role", "exp": now_secs() + 600}), SECRET, Algorithm::HS256);
    let resp = admin_as(&server, &fresh, Method::GET, "/admin/users", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_admin_routes_and_methods() {
    let server = TestServer::start().await;
    let resp = admin(&server, Method::PATCH, "/admin/users", Some(json!({}))).await;
    assert_error(resp, 405, "method_not_allowed").await;
    let resp = admin(&server, Method::GET, "/admin/nothing-here", None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// POST /admin/users

#[tokio::test]
async fn create_user_with_email_password_and_metadata() {
    let server = TestServer::start().await;
    let email = unique_email();
    let user = create(
        &server,
        json!({
            "email": email.to_uppercase(),
            "password": PASSWORD,
            "email_confirm": true,
            "user_metadata": {"full_name": "Ada Lovelace", "nested": {"a": 1}},
            "app_metadata": {"plan": "pro", "roles": ["editor"]},
        }),
    )
    .await;
    let id = id_of(&user);
    assert!(Uuid::parse_str(&id).is_ok_and(|u| !u.is_nil()), "{user}");
    assert_eq!(user["email"], email, "emails are stored lower-cased");
    assert_eq!(user["aud"], "authenticated");
    assert_eq!(user["role"], "authenticated");
    assert_eq!(user["phone"], "");
    assert!(user["email_confirmed_at"].is_string(), "{user}");
    assert!(user["confirmed_at"].is_string(), "{user}");
    assert!(user.get("banned_until").is_none(), "{user}");
    assert_eq!(user["is_anonymous"], false);
    // (GoTrue's Confirm also merges `email_verified: true`; see `email_confirm_marks_user_metadata`.)
    assert_eq!(user["user_metadata"]["full_name"], "Ada Lovelace");
    assert_eq!(user["user_metadata"]["nested"], json!({"a": 1}));
    assert_eq!(
        user["app_metadata"],
        json!({"provider": "email", "providers": ["email"], "plan": "pro", "roles": ["editor"]}),
        "app_metadata is merged over provider/providers"
    );
    let identities = user["identities"].as_array().expect("identities");
    assert_eq!(identities.len(), 1, "{user}");
    assert_eq!(identities[0]["provider"], "email");
    assert_eq!(identities[0]["user_id"], id);
    assert_eq!(identities[0]["identity_data"]["email"], email);
    assert!(parse_time(str_of(&user, "created_at")) <= OffsetDateTime::now_utc() + Duration::from_secs(1));

    // The stored user is what was returned, and the password signs in.
    let fetched = get_user(&server, &id).await;
    assert_eq!(fetched["email"], email);
    assert_eq!(fetched["app_metadata"], user["app_metadata"]);
    let session = ok_json(login_with(&server, &email, PASSWORD).await, "login").await;
    assert_session(&session, "login");
    assert_eq!(session["user"]["id"], id);
    assert_eq!(session["user"]["app_metadata"]["plan"], "pro");

    // Without email_confirm the user exists but cannot sign in yet.
    let unconfirmed = unique_email();
    let user = create(&server, json!({"email": unconfirmed, "password": PASSWORD})).await;
    assert!(user.get("email_confirmed_at").is_none(), "{user}");
    assert!(user.get("confirmation_sent_at").is_none(), "admin creation sends nothing: {user}");
    assert_eq!(user["user_metadata"], json!({}), "no metadata given → empty object, never null");
    assert_error(login_with(&server, &unconfirmed, PASSWORD).await, 400, "email_not_confirmed").await;

    // Without a password the user exists and no password signs in.
    let nopass = unique_email();
    create(&server, json!({"email": nopass, "email_confirm": true})).await;
    assert_error(login_with(&server, &nopass, PASSWORD).await, 400, "invalid_credentials").await;
}

#[tokio::test]
async fn email_confirm_marks_user_metadata() {
    // GoTrue's models.User.Confirm merges {"email_verified": true} into user_metadata, both for
    // POST /admin/users {email_confirm: true} and PUT {email_confirm: true}; ConfirmPhone does not.
    let server = TestServer::start().await;
    let user =
        create(&server, json!({"email": unique_email(), "email_confirm": true, "user_metadata": {"full_name": "Ada"}}))
            .await;
    assert_eq!(user["user_metadata"], json!({"full_name": "Ada", "email_verified": true}), "create: {user}");
    let later = create(&server, json!({"email": unique_email(), "user_metadata": {"plan": 1}})).await;
    assert_eq!(later["user_metadata"], json!({"plan": 1}), "not confirmed yet");
    let confirmed = update(&server, &id_of(&later), json!({"email_confirm": true})).await;
    assert_eq!(confirmed["user_metadata"], json!({"plan": 1, "email_verified": true}), "update: {confirmed}");
    let phone = create(&server, json!({"phone": unique_phone(), "phone_confirm": true})).await;
    assert_eq!(phone["user_metadata"], json!({}), "phone confirmation leaves user_metadata alone");
}

#[tokio::test]
async fn create_user_ignores_disable_signup() {
    let server = TestServer::start_with(|c| c.settings.signup.disable_signup = true).await;
    let email = unique_email();
    let resp = server.post("/signup", json!({"email": unique_email(), "password": PASSWORD})).await;
    assert_error(resp, 422, "signup_disabled").await;
    let user = create(&server, json!({"email": email, "password": PASSWORD, "email_confirm": true})).await;
    assert_eq!(user["email"], email);
    server.login(&email).await;
}

#[tokio::test]
async fn create_user_with_phone() {
    let server = TestServer::start().await;
    let phone = unique_phone();
    let user =
        create(&server, json!({"phone": format!("+{phone}"), "password": PASSWORD, "phone_confirm": true})).await;
    assert_eq!(user["phone"], phone, "phones are stored without '+'");
    assert_eq!(user["email"], "");
    assert!(user["phone_confirmed_at"].is_string(), "{user}");
    assert!(user["confirmed_at"].is_string(), "{user}");
    assert!(user.get("email_confirmed_at").is_none(), "{user}");
    assert_eq!(user["app_metadata"], json!({"provider": "phone", "providers": ["phone"]}));
    let identities = user["identities"].as_array().unwrap();
    assert_eq!(identities.len(), 1);
    assert_eq!(identities[0]["provider"], "phone");
    assert_eq!(identities[0]["identity_data"]["phone"], phone);
    let session = ok_json(phone_login(&server, &phone, PASSWORD).await, "phone login").await;
    assert_eq!(session["user"]["id"], user["id"]);

    // Unconfirmed phone: exists, cannot sign in.
    let other = unique_phone();
    create(&server, json!({"phone": other, "password": PASSWORD})).await;
    assert_error(phone_login(&server, &other, PASSWORD).await, 400, "phone_not_confirmed").await;
}

#[tokio::test]
async fn create_user_with_email_and_phone() {
    let server = TestServer::start().await;
    let (email, phone) = (unique_email(), unique_phone());
    let user = create(
        &server,
        json!({"email": email, "phone": phone, "password": PASSWORD, "email_confirm": true, "phone_confirm": true}),
    )
    .await;
    assert_eq!(user["email"], email);
    assert_eq!(user["phone"], phone);
    assert!(user["email_confirmed_at"].is_string() && user["phone_confirmed_at"].is_string(), "{user}");
    let providers: HashSet<&str> =
        user["identities"].as_array().unwrap().iter().map(|i| i["provider"].as_str().unwrap()).collect();
    assert_eq!(providers, HashSet::from(["email", "phone"]), "{user}");
    assert_eq!(user["app_metadata"]["provider"], "email");
    let listed: HashSet<&str> =
        user["app_metadata"]["providers"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(listed, HashSet::from(["email", "phone"]));
    // Both sign in.
    ok_json(login_with(&server, &email, PASSWORD).await, "email login").await;
    ok_json(phone_login(&server, &phone, PASSWORD).await, "phone login").await;
    // Both are taken now, also for other users.
    let resp = admin(&server, Method::POST, "/admin/users", Some(json!({"phone": phone}))).await;
    let err = assert_error(resp, 422, "phone_exists").await;
    assert_eq!(err["message"], "Phone number already registered by another user");
}

#[tokio::test]
async fn create_user_with_role_and_custom_id() {
    let server = TestServer::start().await;
    let id = Uuid::new_v4();
    let email = unique_email();
    let user = create(
        &server,
        json!({"id": id.to_string(), "email": email, "password": PASSWORD, "email_confirm": true, "role": "editor"}),
    )
    .await;
    assert_eq!(user["id"], id.to_string());
    assert_eq!(user["role"], "editor");
    let identity = &user["identities"][0];
    assert_eq!(identity["id"], id.to_string(), "the email identity's subject is the user id");
    assert_eq!(identity["identity_data"]["sub"], id.to_string());
    assert_eq!(get_user(&server, &id.to_string()).await["role"], "editor");
    // The role ends up in the access token.
    let session = ok_json(login_with(&server, &email, PASSWORD).await, "login").await;
    assert_eq!(session["user"]["role"], "editor");

    // The same id again → refused, nothing overwritten.
    let resp =
        admin(&server, Method::POST, "/admin/users", Some(json!({"id": id.to_string(), "email": unique_email()})))
            .await;
    assert!(resp.status().is_client_error(), "duplicate id: {}", resp.status());
    assert_eq!(get_user(&server, &id.to_string()).await["email"], email);

    // The nil UUID and a non-UUID are rejected.
    let resp =
        admin(&server, Method::POST, "/admin/users", Some(json!({"id": Uuid::nil(), "email": unique_email()}))).await;
    assert_error(resp, 400, "validation_failed").await;
    let resp =
        admin(&server, Method::POST, "/admin/users", Some(json!({"id": "not-a-uuid", "email": unique_email()}))).await;
    assert_error(resp, 400, "validation_failed").await;
    let (_, total, _) = list(&server, "").await;
    assert_eq!(total, 1, "rejected creates leave no user behind");
}

#[tokio::test]
async fn create_user_validation_errors() {
    let server = TestServer::start().await;
    let email = unique_email();
    let phone = unique_phone();
    create(&server, json!({"email": email, "phone": phone, "password": PASSWORD})).await;
    let post = |body: Value| admin(&server, Method::POST, "/admin/users", Some(body));

    let err = assert_error(post(json!({"password": PASSWORD})).await, 400, "validation_failed").await;
    assert_eq!(err["message"], "Cannot create a user without either an email or phone");
    assert_error(post(json!({})).await, 400, "validation_failed").await;
    assert_error(post(json!({"email": "", "phone": ""})).await, 400, "validation_failed").await;
    assert_error(post(json!({"email": "not-an-email"})).await, 400, "validation_failed").await;

    assert_error(post(json!({"email": email})).await, 422, "email_exists").await;
    assert_error(post(json!({"email": email.to_uppercase()})).await, 422, "email_exists").await;
    assert_error(post(json!({"phone": phone})).await, 422, "phone_exists").await;
    assert_error(post(json!({"phone": format!("+{phone}")})).await, 422, "phone_exists").await;

    let hash = bcrypt::hash("pw-imported", 4).unwrap();
    let both = json!({"email": unique_email(), "password": PASSWORD, "password_hash": hash});
    let err = assert_error(post(both).await, 400, "validation_failed").await;
    assert!(err["message"].as_str().unwrap().to_lowercase().contains("password"), "{err}");

    let err = assert_error(post(json!({"email": unique_email(), "password": "abc"})).await, 422, "weak_password").await;
    let reasons = err["weak_password"]["reasons"].as_array().expect("weak_password.reasons");
    assert!(reasons.contains(&json!("length")), "{err}");

    for bad in ["forever", "24", "-", "h24"] {
        let body = json!({"email": unique_email(), "password": PASSWORD, "ban_duration": bad});
        assert_error(post(body).await, 400, "validation_failed").await;
    }
    let (_, total, _) = list(&server, "").await;
    assert_eq!(total, 1, "no rejected create left a user behind");
}

#[tokio::test]
async fn imported_password_hashes_sign_in() {
    let server = TestServer::start().await;
    let password = "pw-imported";

    // bcrypt $2b$ (what the bcrypt crate writes) and $2a$ (what most exporters write).
    let b2b = bcrypt::hash(password, 4).unwrap();
    assert!(b2b.starts_with("$2b$"), "{b2b}");
    let b2a = bcrypt::hash_with_result(password, 4).unwrap().format_for_version(bcrypt::Version::TwoA);
    assert!(b2a.starts_with("$2a$"), "{b2a}");
    for hash in [b2b, b2a] {
        let email = unique_email();
        let user = create(&server, json!({"email": email, "password_hash": hash, "email_confirm": true})).await;
        assert!(user.get("encrypted_password").is_none(), "hashes never leave the server: {user}");
        let id = Uuid::parse_str(&id_of(&user)).unwrap();
        let stored = server.actors.users.get(id).await.unwrap().unwrap();
        assert_eq!(stored.encrypted_password.as_deref(), Some(hash.as_str()), "stored as imported");
        assert_error(login_with(&server, &email, "wrong-password").await, 400, "invalid_credentials").await;
        let session = ok_json(login_with(&server, &email, password).await, "login with bcrypt import").await;
        assert_eq!(session["user"]["id"], user["id"]);
        let stored = server.actors.users.get(id).await.unwrap().unwrap();
        let upgraded = stored.encrypted_password.unwrap();
        assert!(upgraded.starts_with("$argon2id$"), "bcrypt is upgraded after a sign-in: {upgraded}");
        // And the upgraded hash still takes the same password.
        ok_json(login_with(&server, &email, password).await, "login after upgrade").await;
    }

    // argon2id PHC string.
    let argon = hash_now(HashCost::QUICK, &Secret(password.into())).unwrap();
    assert!(argon.starts_with("$argon2id$v=19$"), "{argon}");
    let email = unique_email();
    let user = create(&server, json!({"email": email, "password_hash": argon, "email_confirm": true})).await;
    assert_error(login_with(&server, &email, "wrong-password").await, 400, "invalid_credentials").await;
    let session = ok_json(login_with(&server, &email, password).await, "login with argon2 import").await;
    assert_eq!(session["user"]["id"], user["id"]);

    // An imported hash can also be set by PUT.
    let hash = bcrypt::hash("pw-updated", 4).unwrap();
    update(&server, &id_of(&user), json!({"password_hash": hash})).await;
    assert_error(login_with(&server, &email, password).await, 400, "invalid_credentials").await;
    ok_json(login_with(&server, &email, "pw-updated").await, "login with the PUT hash").await;

    // Unsupported formats are refused with a message that says why.
    for bad in [
        "$scrypt$ln=16,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        "plaintext",
        "$argon2d$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        "$argon2id$v=19$m=64,t=99,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        "$2a$04$short",
        "$1$md5crypt$abcdefghijklmnopqrstuv",
    ] {
        let resp = admin(
            &server,
            Method::POST,
            "/admin/users",
            Some(json!({"email": unique_email(), "password_hash": bad, "email_confirm": true})),
        )
        .await;
        let err = assert_error(resp, 422, "validation_failed").await;
        let message = err["message"].as_str().unwrap();
        assert!(message.contains("password_hash"), "{bad}: {message}");
        assert!(message.contains("bcrypt") && message.contains("argon2"), "names what is accepted: {message}");
    }
    let (_, total, _) = list(&server, "").await;
    assert_eq!(total, 3, "refused hashes create no user");
}

#[tokio::test]
async fn banned_users_cannot_sign_in_or_refresh() {
    let server = TestServer::start().await;

    // Banned at creation.
    let email = unique_email();
    let user =
        create(&server, json!({"email": email, "password": PASSWORD, "email_confirm": true, "ban_duration": "24h"}))
            .await;
    let until = parse_time(str_of(&user, "banned_until"));
    let expected = OffsetDateTime::now_utc() + Duration::from_secs(24 * 3600);
    assert!((until - expected).abs() < time::Duration::minutes(1), "banned_until {until} vs {expected}");
    assert_error(login_with(&server, &email, PASSWORD).await, 400, "user_banned").await;

    // Banned later: live sessions stop refreshing, then come back after the ban is lifted.
    let email = unique_email();
    let user = create(&server, json!({"email": email, "password": PASSWORD, "email_confirm": true})).await;
    let id = id_of(&user);
    let session = server.login(&email).await;
    let refresh = session["refresh_token"].as_str().unwrap();
    let access = session["access_token"].as_str().unwrap();
    let banned = update(&server, &id, json!({"ban_duration": "1h30m"})).await;
    let until = parse_time(str_of(&banned, "banned_until"));
    assert!(until > OffsetDateTime::now_utc() + Duration::from_secs(80 * 60), "{until}");
    assert_error(login_with(&server, &email, PASSWORD).await, 400, "user_banned").await;
    assert_error(server.refresh(refresh).await, 400, "user_banned").await;
    assert_error(server.get_auth("/user", access).await, 403, "user_banned").await;

    let unbanned = update(&server, &id, json!({"ban_duration": "none"})).await;
    assert!(unbanned.get("banned_until").is_none() || unbanned["banned_until"].is_null(), "{unbanned}");
    let rotated = ok_json(server.refresh(refresh).await, "refresh after unban").await;
    assert_session(&rotated, "refresh after unban");
    ok_json(login_with(&server, &email, PASSWORD).await, "login after unban").await;

    // A bad duration on update is refused and changes nothing.
    let resp = admin(&server, Method::PUT, &format!("/admin/users/{id}"), Some(json!({"ban_duration": "soon"}))).await;
    assert_error(resp, 400, "validation_failed").await;
    ok_json(login_with(&server, &email, PASSWORD).await, "login after a refused ban").await;
}

// ---------------------------------------------------------------------------------------------
// GET / PUT / DELETE /admin/users/{id}

#[tokio::test]
async fn get_user_under_both_spellings() {
    let server = TestServer::start().await;
    let email = unique_email();
    let user = create(&server, json!({"email": email, "password": PASSWORD, "email_confirm": true})).await;
    let id = id_of(&user);
    let plural = get_user(&server, &id).await;
    let singular = ok_json(admin(&server, Method::GET, &format!("/admin/user/{id}"), None).await, "singular").await;
    assert_eq!(plural, singular);
    assert_eq!(plural["email"], email);
    assert_eq!(plural["id"], id);

    for method in [Method::GET, Method::PUT, Method::DELETE] {
        for prefix in ["/admin/users", "/admin/user"] {
            let body = (method != Method::GET).then(|| json!({}));
            let resp = admin(&server, method.clone(), &format!("{prefix}/not-a-uuid"), body.clone()).await;
            let err = assert_error(resp, 404, "validation_failed").await;
            assert_eq!(err["message"], "user_id must be an UUID", "{method} {prefix}");
            let unknown = Uuid::new_v4();
            let resp = admin(&server, method.clone(), &format!("{prefix}/{unknown}"), body).await;
            let err = assert_error(resp, 404, "user_not_found").await;
            assert_eq!(err["message"], "User not found", "{method} {prefix}");
        }
    }
}

#[tokio::test]
async fn update_merges_metadata() {
    let server = TestServer::start().await;
    let user = create(
        &server,
        json!({
            "email": unique_email(),
            "user_metadata": {"a": 1, "b": 2, "keep": "me"},
            "app_metadata": {"plan": "free", "tier": 1},
        }),
    )
    .await;
    let id = id_of(&user);
    let updated = update(
        &server,
        &id,
        json!({"user_metadata": {"b": null, "c": 3}, "app_metadata": {"tier": null, "plan": "pro", "flags": ["x"]}}),
    )
    .await;
    assert_eq!(updated["user_metadata"], json!({"a": 1, "keep": "me", "c": 3}));
    assert_eq!(
        updated["app_metadata"],
        json!({"provider": "email", "providers": ["email"], "plan": "pro", "flags": ["x"]})
    );
    assert!(parse_time(str_of(&updated, "updated_at")) >= parse_time(str_of(&user, "updated_at")));
    // Through the singular path too; an empty body changes nothing.
    let resp =
        admin(&server, Method::PUT, &format!("/admin/user/{id}"), Some(json!({"user_metadata": {"a": null}}))).await;
    assert_eq!(ok_json(resp, "PUT singular").await["user_metadata"], json!({"keep": "me", "c": 3}));
    let unchanged = update(&server, &id, json!({})).await;
    assert_eq!(unchanged["user_metadata"], json!({"keep": "me", "c": 3}));
    assert_eq!(unchanged["email"], user["email"]);
    let fetched = get_user(&server, &id).await;
    assert_eq!(fetched["user_metadata"], json!({"keep": "me", "c": 3}));
    assert_eq!(fetched["app_metadata"]["plan"], "pro");
    // Role changes.
    assert_eq!(update(&server, &id, json!({"role": "moderator"})).await["role"], "moderator");
}

#[tokio::test]
async fn update_email_and_confirmation() {
    let server = TestServer::start().await;
    let old = unique_email();
    let user = create(&server, json!({"email": old, "password": PASSWORD})).await;
    let id = id_of(&user);
    assert_error(login_with(&server, &old, PASSWORD).await, 400, "email_not_confirmed").await;

    let confirmed = update(&server, &id, json!({"email_confirm": true})).await;
    assert!(confirmed["email_confirmed_at"].is_string(), "{confirmed}");
    ok_json(login_with(&server, &old, PASSWORD).await, "login after admin confirmation").await;

    let new = unique_email();
    let changed = update(&server, &id, json!({"email": new.to_uppercase()})).await;
    assert_eq!(changed["email"], new);
    let identity = changed["identities"].as_array().unwrap().iter().find(|i| i["provider"] == "email").unwrap();
    assert_eq!(identity["identity_data"]["email"], new, "the email identity follows the address");
    ok_json(login_with(&server, &new, PASSWORD).await, "login with the new email").await;
    assert_error(login_with(&server, &old, PASSWORD).await, 400, "invalid_credentials").await;
    // The old address is free again; the new one is taken.
    create(&server, json!({"email": old})).await;
    let resp = admin(&server, Method::POST, "/admin/users", Some(json!({"email": new}))).await;
    assert_error(resp, 422, "email_exists").await;
    // Taking another user's address is refused.
    let resp = admin(&server, Method::PUT, &format!("/admin/users/{id}"), Some(json!({"email": old}))).await;
    assert_error(resp, 422, "email_exists").await;
    assert_eq!(get_user(&server, &id).await["email"], new);
    // Invalid addresses are refused.
    let resp = admin(&server, Method::PUT, &format!("/admin/users/{id}"), Some(json!({"email": "nope"}))).await;
    assert_error(resp, 400, "validation_failed").await;

    // Adding a phone creates the phone identity.
    let phone = unique_phone();
    let with_phone = update(&server, &id, json!({"phone": phone, "phone_confirm": true})).await;
    assert_eq!(with_phone["phone"], phone);
    assert!(with_phone["phone_confirmed_at"].is_string(), "{with_phone}");
    assert!(with_phone["identities"].as_array().unwrap().iter().any(|i| i["provider"] == "phone"), "{with_phone}");
    ok_json(phone_login(&server, &phone, PASSWORD).await, "phone login after PUT").await;
}

#[tokio::test]
async fn confirm_false_leaves_confirmations_alone() {
    // GoTrue's `email_confirm` / `phone_confirm` are plain bools: `true` confirms, `false` (the
    // zero value every client may send) does nothing — it never un-confirms (admin.go
    // adminUserUpdate: `if params.EmailConfirm { user.Confirm(tx) }`).
    let server = TestServer::start().await;
    let (email, phone) = (unique_email(), unique_phone());
    let user = create(
        &server,
        json!({"email": email, "phone": phone, "password": PASSWORD, "email_confirm": true, "phone_confirm": true}),
    )
    .await;
    let id = id_of(&user);
    let updated =
        update(&server, &id, json!({"email_confirm": false, "phone_confirm": false, "user_metadata": {"k": 1}})).await;
    assert_eq!(updated["email_confirmed_at"], user["email_confirmed_at"], "email_confirm: false is a no-op: {updated}");
    assert_eq!(updated["phone_confirmed_at"], user["phone_confirmed_at"], "phone_confirm: false is a no-op: {updated}");
    ok_json(login_with(&server, &email, PASSWORD).await, "email login after email_confirm: false").await;
    ok_json(phone_login(&server, &phone, PASSWORD).await, "phone login after phone_confirm: false").await;
}

#[tokio::test]
async fn password_change_ends_every_session() {
    let server = TestServer::start().await;
    let email = unique_email();
    let user = create(&server, json!({"email": email, "password": PASSWORD, "email_confirm": true})).await;
    let id = id_of(&user);
    let first = server.login(&email).await;
    let second = server.login(&email).await;

    let path = format!("/admin/users/{id}");
    let weak = admin(&server, Method::PUT, &path, Some(json!({"password": "abc"}))).await;
    assert_error(weak, 422, "weak_password").await;
    let hash = bcrypt::hash("x-imported", 4).unwrap();
    let both =
        admin(&server, Method::PUT, &path, Some(json!({"password": "new-password-42", "password_hash": hash}))).await;
    assert_error(both, 400, "validation_failed").await;
    // Refused changes ended nothing.
    let first = ok_json(server.refresh(first["refresh_token"].as_str().unwrap()).await, "refresh").await;

    update(&server, &id, json!({"password": "new-password-42"})).await;
    for session in [&first, &second] {
        let refresh = session["refresh_token"].as_str().unwrap();
        assert_error(server.refresh(refresh).await, 400, "refresh_token_not_found").await;
        let access = session["access_token"].as_str().unwrap();
        assert_error(server.get_auth("/user", access).await, 403, "session_not_found").await;
    }
    assert_error(login_with(&server, &email, PASSWORD).await, 400, "invalid_credentials").await;
    let session = ok_json(login_with(&server, &email, "new-password-42").await, "new password").await;
    assert_session(&session, "new password");

    // A metadata-only update keeps sessions.
    update(&server, &id, json!({"user_metadata": {"x": 1}})).await;
    ok_json(server.refresh(session["refresh_token"].as_str().unwrap()).await, "refresh after metadata update").await;
}

#[tokio::test]
async fn hard_delete_removes_user_and_sessions() {
    let server = TestServer::start().await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let id = session["user"]["id"].as_str().unwrap().to_owned();
    let other = server.login(&email).await;

    let resp = admin(&server, Method::DELETE, &format!("/admin/users/{id}"), None).await;
    assert_eq!(ok_json(resp, "DELETE").await, json!({}));

    assert_error(admin(&server, Method::GET, &format!("/admin/users/{id}"), None).await, 404, "user_not_found").await;
    for s in [&session, &other] {
        let access = s["access_token"].as_str().unwrap();
        let resp = server.get_auth("/user", access).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "access token of a deleted user");
        let resp = server.refresh(s["refresh_token"].as_str().unwrap()).await;
        assert_error(resp, 400, "refresh_token_not_found").await;
    }
    assert_error(login_with(&server, &email, PASSWORD).await, 400, "invalid_credentials").await;
    assert_error(admin(&server, Method::DELETE, &format!("/admin/users/{id}"), None).await, 404, "user_not_found")
        .await;
    let (users, total, _) = list(&server, "").await;
    assert_eq!((users.len(), total), (0, 0));

    // The address is free again; the singular path with an explicit body deletes too.
    let again = server.signup(&email).await;
    assert_ne!(again["user"]["id"], id);
    let again_id = again["user"]["id"].as_str().unwrap();
    let resp =
        admin(&server, Method::DELETE, &format!("/admin/user/{again_id}"), Some(json!({"should_soft_delete": false})))
            .await;
    assert_eq!(ok_json(resp, "DELETE singular").await, json!({}));
    assert!(server.actors.users.get(Uuid::parse_str(again_id).unwrap()).await.unwrap().is_none());
}

#[tokio::test]
async fn soft_delete_keeps_a_tombstone() {
    let server = TestServer::start().await;
    let email = unique_email();
    let phone = unique_phone();
    let user = create(
        &server,
        json!({
            "email": email,
            "phone": phone,
            "password": PASSWORD,
            "email_confirm": true,
            "user_metadata": {"full_name": "Gone"},
        }),
    )
    .await;
    let id = id_of(&user);
    let session = server.login(&email).await;

    let resp =
        admin(&server, Method::DELETE, &format!("/admin/users/{id}"), Some(json!({"should_soft_delete": true}))).await;
    assert_eq!(ok_json(resp, "soft DELETE").await, json!({}));

    let tomb = get_user(&server, &id).await;
    assert!(tomb["deleted_at"].is_string(), "{tomb}");
    assert_ne!(tomb["email"], email, "the address is obfuscated");
    assert_ne!(tomb["phone"], phone, "the phone is obfuscated");
    assert_eq!(tomb["user_metadata"], json!({}), "user_metadata is emptied");
    let access = session["access_token"].as_str().unwrap();
    assert_error(server.get_auth("/user", access).await, 403, "session_not_found").await;
    let refresh = session["refresh_token"].as_str().unwrap();
    assert_error(server.refresh(refresh).await, 400, "refresh_token_not_found").await;
    assert_error(login_with(&server, &email, PASSWORD).await, 400, "invalid_credentials").await;
    assert_error(phone_login(&server, &phone, PASSWORD).await, 400, "invalid_credentials").await;
    // The old address can be used by a new user.
    let fresh = server.signup(&email).await;
    assert_ne!(fresh["user"]["id"], id);
}

// ---------------------------------------------------------------------------------------------
// GET /admin/users

#[tokio::test]
async fn list_users_pages_sorts_and_filters() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let body = if n == 2 {
            json!({"email": format!("FindMe.Special-{}@Example.com", std::process::id())})
        } else if n == 3 {
            json!({"email": unique_email(), "user_metadata": {"full_name": "Grace Hopper"}})
        } else {
            json!({"email": unique_email()})
        };
        ids.push(id_of(&create(&server, body).await));
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    // Page 1 of 3.
    let resp = admin(&server, Method::GET, "/admin/users?page=1&per_page=2", None).await;
    assert_eq!(header(&resp, "x-total-count").as_deref(), Some("5"));
    let link = header(&resp, "link").expect("Link");
    assert_eq!(
        link, "</admin/users?page=2&per_page=2>; rel=\"next\", </admin/users?page=3&per_page=2>; rel=\"last\"",
        "GoTrue's Link header, page first"
    );
    let parts: Vec<&str> = link.split(',').collect();
    assert_eq!(parts.iter().map(|p| auth_js_page(p)).collect::<Vec<_>>(), vec![2, 3], "what auth-js reads");
    let body = ok_json(resp, "page 1").await;
    assert_eq!(body["aud"], "authenticated");
    let page1: Vec<String> = body["users"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(page1, newest_first[..2], "default sort is newest first");

    let (page2, total, link) = list(&server, "?page=2&per_page=2").await;
    assert_eq!(total, 5);
    assert_eq!(
        links(&link),
        vec![
            ("/admin/users?page=3&per_page=2".to_owned(), "next".to_owned()),
            ("/admin/users?page=3&per_page=2".to_owned(), "last".to_owned())
        ]
    );
    assert_eq!(page2.iter().map(id_of).collect::<Vec<_>>(), newest_first[2..4]);
    let (page3, _, link) = list(&server, "?page=3&per_page=2").await;
    assert_eq!(page3.iter().map(id_of).collect::<Vec<_>>(), newest_first[4..]);
    assert_eq!(links(&link), vec![("/admin/users?page=3&per_page=2".to_owned(), "last".to_owned())], "no next");
    let (page4, total, _) = list(&server, "?page=4&per_page=2").await;
    assert!(page4.is_empty());
    assert_eq!(total, 5);

    // Sorting.
    let (asc, _, _) = list(&server, "?sort=created_at%20asc").await;
    assert_eq!(asc.iter().map(id_of).collect::<Vec<_>>(), ids);
    let (desc, _, _) = list(&server, "?sort=created_at%20desc").await;
    assert_eq!(desc.iter().map(id_of).collect::<Vec<_>>(), newest_first);
    let (asc2, _, _) = list(&server, "?per_page=2&page=1&sort=created_at+asc").await;
    assert_eq!(asc2.iter().map(id_of).collect::<Vec<_>>(), ids[..2]);
    for bad in ["email%20asc", "created_at%20sideways", "id"] {
        let resp = admin(&server, Method::GET, &format!("/admin/users?sort={bad}"), None).await;
        assert_error(resp, 400, "validation_failed").await;
    }

    // Bad numbers; empty values are the defaults (auth-js sends page=&per_page=).
    for bad in ["page=abc", "page=0", "per_page=0", "per_page=-1", "page=1.5"] {
        let resp = admin(&server, Method::GET, &format!("/admin/users?{bad}"), None).await;
        assert_error(resp, 400, "validation_failed").await;
    }
    let (all, total, link) = list(&server, "?page=&per_page=").await;
    assert_eq!((all.len(), total), (5, 5));
    assert_eq!(links(&link), vec![("/admin/users?page=1&per_page=50".to_owned(), "last".to_owned())]);
    let (all, _, _) = list(&server, "").await;
    assert_eq!(all.iter().map(id_of).collect::<Vec<_>>(), newest_first);

    // Filter: case-insensitive substring of the email, and of the full name.
    let (found, total, _) = list(&server, "?filter=FINDME.special").await;
    assert_eq!((found.len(), total), (1, 1));
    assert_eq!(id_of(&found[0]), ids[2]);
    let (found, total, _) = list(&server, "?filter=hopper").await;
    assert_eq!((found.len(), total), (1, 1), "full_name matches");
    assert_eq!(id_of(&found[0]), ids[3]);
    let (found, total, _) = list(&server, "?filter=example.com&per_page=2&page=2").await;
    assert_eq!((found.len(), total), (2, 5), "filter and pagination combine");
    let (found, total, link) = list(&server, "?filter=no-such-user").await;
    assert_eq!((found.len(), total), (0, 0));
    assert_eq!(links(&link), vec![("/admin/users?page=1&per_page=50".to_owned(), "last".to_owned())]);

    // The headers are readable from a browser.
    let resp = server
        .request(Method::GET, "/admin/users")
        .bearer_auth(service_role_token())
        .header("Origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    let exposed = header(&resp, "access-control-expose-headers").unwrap_or_default().to_lowercase();
    assert!(exposed.contains("x-total-count") && exposed.contains("link"), "{exposed}");
}

#[tokio::test]
async fn list_users_walks_a_few_hundred() {
    const USERS: usize = 300;
    let server = TestServer::start().await;
    let mut expected = HashSet::new();
    for chunk in 0..USERS / 25 {
        let batch = (0..25).map(|n| {
            let email = format!("bulk-{chunk:02}-{n:02}-{}", unique_email());
            admin(&server, Method::POST, "/admin/users", Some(json!({"email": email})))
        });
        for resp in futures_util::future::join_all(batch).await {
            expected.insert(id_of(&ok_json(resp, "bulk create").await));
        }
    }
    assert_eq!(expected.len(), USERS);

    let per_page = 50;
    let mut seen = Vec::new();
    let mut page = 1;
    loop {
        let (users, total, link) = list(&server, &format!("?page={page}&per_page={per_page}")).await;
        assert_eq!(total, USERS);
        let rels = links(&link);
        assert_eq!(rels.last().unwrap(), &(format!("/admin/users?page=6&per_page={per_page}"), "last".to_owned()));
        seen.extend(users.iter().map(|u| (id_of(u), parse_time(str_of(u, "created_at")))));
        if page < 6 {
            assert_eq!(users.len(), per_page);
            assert_eq!(rels[0], (format!("/admin/users?page={}&per_page={per_page}", page + 1), "next".to_owned()));
            page += 1;
        } else {
            assert_eq!(rels.len(), 1, "no next on the last page: {link}");
            break;
        }
    }
    assert_eq!(seen.len(), USERS);
    assert_eq!(seen.iter().map(|(id, _)| id.clone()).collect::<HashSet<_>>(), expected, "every user exactly once");
    assert!(seen.windows(2).all(|w| w[0].1 >= w[1].1), "newest first across pages");
    let (beyond, total, _) = list(&server, "?page=7&per_page=50").await;
    assert!(beyond.is_empty());
    assert_eq!(total, USERS);
    // Ascending is the exact reverse.
    let mut asc = Vec::new();
    for page in 1..=3 {
        let (users, _, _) = list(&server, &format!("?page={page}&per_page=100&sort=created_at%20asc")).await;
        asc.extend(users.iter().map(id_of));
    }
    let desc: Vec<String> = seen.into_iter().map(|(id, _)| id).rev().collect();
    assert_eq!(asc, desc);
    let (some, total, _) = list(&server, "?filter=bulk-07-").await;
    assert_eq!((some.len(), total), (25, 25));
}

// ---------------------------------------------------------------------------------------------
// POST /admin/generate_link

async fn generate(server: &TestServer, body: Value) -> Value {
    let resp = admin(server, Method::POST, "/admin/generate_link", Some(body)).await;
    let link = ok_json(resp, "generate_link").await;
    // The link properties, flattened next to the user's fields.
    for key in ["action_link", "email_otp", "hashed_token", "verification_type", "redirect_to", "id", "email"] {
        assert!(link[key].is_string(), "{key} in {link}");
    }
    let otp = str_of(&link, "email_otp");
    assert!(otp.len() == 6 && otp.chars().all(|c| c.is_ascii_digit()), "email_otp {otp}");
    let hashed = str_of(&link, "hashed_token");
    assert!(hashed.len() == 56 && hashed.chars().all(|c| c.is_ascii_hexdigit()), "hashed_token {hashed}");
    assert!(!hashed.starts_with("pkce_"), "generate_link is always implicit");
    let action = str_of(&link, "action_link");
    assert!(action.starts_with(&format!("{}/verify?", server.base)), "{action}");
    assert!(action.contains(&format!("token={hashed}")), "{action}");
    // The link's `type` is the verify type; email_change_current/_new both verify as email_change.
    let link_type = match str_of(&link, "verification_type") {
        "email_change_current" | "email_change_new" => "email_change",
        other => other,
    };
    assert!(action.contains(&format!("type={link_type}")), "{action}");
    link
}

/// Clicks an action link: 303 to `<redirect>#access_token=…`; returns the Location.
async fn click(link: &Value) -> String {
    let resp = no_redirects().get(str_of(link, "action_link")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{}", str_of(link, "action_link"));
    let location = header(&resp, "location").expect("Location");
    assert!(location.contains("#access_token="), "{location}");
    location
}

#[tokio::test]
async fn generate_link_signup() {
    let (server, sink) = TestServer::start_with_mail(|_| {}).await;
    let redirect = "http://localhost:3000/welcome";

    // Link: a new, unconfirmed user with the given password and data.
    let email = unique_email();
    let link = generate(
        &server,
        json!({
            "type": "signup",
            "email": email,
            "password": "gen-password-1",
            "data": {"full_name": "Gen"},
            "redirect_to": redirect,
        }),
    )
    .await;
    assert_eq!(link["verification_type"], "signup");
    assert_eq!(link["redirect_to"], redirect);
    assert_eq!(link["email"], email);
    assert_eq!(link["user_metadata"]["full_name"], "Gen");
    assert!(link.get("email_confirmed_at").is_none(), "not confirmed before the link is used: {link}");
    assert!(link["confirmation_sent_at"].is_string(), "{link}");
    assert!(link["identities"].is_array() && link["app_metadata"]["provider"] == "email", "{link}");
    assert_error(login_with(&server, &email, "gen-password-1").await, 400, "email_not_confirmed").await;
    let location = click(&link).await;
    assert!(location.starts_with(&format!("{redirect}#access_token=")), "{location}");
    assert!(location.contains("type=signup"), "{location}");
    let session = ok_json(login_with(&server, &email, "gen-password-1").await, "login after the link").await;
    assert!(session["user"]["email_confirmed_at"].is_string());
    // The link is spent.
    let again = no_redirects().get(str_of(&link, "action_link")).send().await.unwrap();
    assert!(header(&again, "location").unwrap().contains("error"), "a used link must not sign in again");

    // Code: POST /verify {type, email, token}.
    let email = unique_email();
    let link = generate(&server, json!({"type": "signup", "email": email, "password": PASSWORD})).await;
    let resp = server.post("/verify", json!({"type": "signup", "email": email, "token": link["email_otp"]})).await;
    let session = ok_json(resp, "verify with email_otp").await;
    assert_session(&session, "verify with email_otp");
    assert_eq!(session["user"]["id"], link["id"]);
    assert_eq!(link["redirect_to"], "http://localhost:3000", "no redirect_to → the site URL");

    // Token hash: POST /verify {type, token_hash}.
    let email = unique_email();
    let link = generate(&server, json!({"type": "signup", "email": email, "password": PASSWORD})).await;
    let resp = server.post("/verify", json!({"type": "signup", "token_hash": link["hashed_token"]})).await;
    let session = ok_json(resp, "verify with token_hash").await;
    assert_eq!(session["user"]["email"], email);

    // A redirect_to outside the allow list falls back to the site URL.
    let evil = "https://evil.example.org/x";
    let body = json!({"type": "signup", "email": unique_email(), "password": PASSWORD, "redirect_to": evil});
    let link = generate(&server, body).await;
    assert_eq!(link["redirect_to"], "http://localhost:3000");

    // Signup (or invite) for a confirmed user → 422; a weak password → 422.
    for kind in ["signup", "invite"] {
        let resp =
            admin(&server, Method::POST, "/admin/generate_link", Some(json!({"type": kind, "email": email}))).await;
        assert_error(resp, 422, "email_exists").await;
    }
    let body = json!({"type": "signup", "email": unique_email(), "password": "abc"});
    assert_error(admin(&server, Method::POST, "/admin/generate_link", Some(body)).await, 422, "weak_password").await;

    // Nothing was mailed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.messages().is_empty(), "generate_link must not send mail: {:?}", sink.messages());
}

#[tokio::test]
async fn generate_link_invite_magiclink_and_recovery() {
    let (server, sink) = TestServer::start_with_mail(|_| {}).await;

    // Invite: a new user, invited_at set; the link signs in as an invite.
    let invited = unique_email();
    let link = generate(&server, json!({"type": "invite", "email": invited, "data": {"team": "blue"}})).await;
    assert_eq!(link["verification_type"], "invite");
    assert!(link["invited_at"].is_string(), "{link}");
    assert_eq!(link["user_metadata"]["team"], "blue");
    let location = click(&link).await;
    assert!(location.contains("type=invite"), "{location}");
    assert!(get_user(&server, &id_of(&link)).await["email_confirmed_at"].is_string(), "the invite confirms");
    // Invite code over POST /verify.
    let invited2 = unique_email();
    let link = generate(&server, json!({"type": "invite", "email": invited2})).await;
    let resp = server.post("/verify", json!({"type": "invite", "email": invited2, "token": link["email_otp"]})).await;
    assert_eq!(ok_json(resp, "verify invite code").await["user"]["email"], invited2);

    // Magic link for an existing user.
    let email = unique_email();
    let user = server.signup(&email).await["user"].clone();
    let link = generate(&server, json!({"type": "magiclink", "email": email})).await;
    assert_eq!(link["verification_type"], "magiclink");
    assert_eq!(link["id"], user["id"], "the existing user");
    assert!(link["recovery_sent_at"].is_string(), "{link}");
    let resp = server.post("/verify", json!({"type": "magiclink", "token_hash": link["hashed_token"]})).await;
    assert_eq!(ok_json(resp, "verify magiclink hash").await["user"]["id"], user["id"]);
    let link = generate(&server, json!({"type": "magiclink", "email": email})).await;
    let location = click(&link).await;
    assert!(location.contains("type=magiclink"), "{location}");

    // Magic link for an unknown address becomes a sign-up.
    let unknown = unique_email();
    let link = generate(&server, json!({"type": "magiclink", "email": unknown})).await;
    assert_eq!(link["verification_type"], "signup");
    assert_eq!(link["email"], unknown);
    assert_eq!(get_user(&server, &id_of(&link)).await["email"], unknown, "the user was created");
    let resp = server.post("/verify", json!({"type": "signup", "email": unknown, "token": link["email_otp"]})).await;
    ok_json(resp, "verify the magiclink-turned-signup code").await;

    // Recovery: existing → recovery; unknown → 404.
    let link = generate(&server, json!({"type": "recovery", "email": email})).await;
    assert_eq!(link["verification_type"], "recovery");
    assert_eq!(link["id"], user["id"]);
    let resp = server.post("/verify", json!({"type": "recovery", "email": email, "token": link["email_otp"]})).await;
    assert_eq!(ok_json(resp, "verify recovery code").await["user"]["id"], user["id"]);
    let resp = admin(
        &server,
        Method::POST,
        "/admin/generate_link",
        Some(json!({"type": "recovery", "email": unique_email()})),
    )
    .await;
    assert_error(resp, 404, "user_not_found").await;

    // Bad type / bad email.
    for body in [
        json!({"type": "nonsense", "email": email}),
        json!({"email": email}),
        json!({"type": "magiclink", "email": "not-an-email"}),
        json!({"type": "magiclink"}),
    ] {
        let resp = admin(&server, Method::POST, "/admin/generate_link", Some(body.clone())).await;
        assert_error(resp, 400, "validation_failed").await;
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.messages().is_empty(), "generate_link must not send mail: {:?}", sink.messages());
}

#[tokio::test]
async fn generate_link_email_change_current_needs_secure_change() {
    let server = TestServer::start_with(|c| c.settings.mail.secure_email_change = false).await;
    let email = unique_email();
    server.signup(&email).await;
    let body = json!({"type": "email_change_current", "email": email, "new_email": unique_email()});
    let resp = admin(&server, Method::POST, "/admin/generate_link", Some(body)).await;
    assert_error(resp, 400, "validation_failed").await;
    // The "new" half still works; its link changes the address at once.
    let new_email = unique_email();
    let link = generate(&server, json!({"type": "email_change_new", "email": email, "new_email": new_email})).await;
    let resp = server.post("/verify", json!({"type": "email_change", "token_hash": link["hashed_token"]})).await;
    assert_eq!(ok_json(resp, "verify email change").await["user"]["email"], new_email);
    server.login(&new_email).await;
}

#[tokio::test]
async fn generate_link_email_change() {
    let (server, sink) = TestServer::start_with_mail(|_| {}).await;
    let email = unique_email();
    let user = server.signup(&email).await["user"].clone();
    let taken = unique_email();
    server.signup(&taken).await;

    // Both halves record new_email on the user. GoTrue answers verification_type with the
    // requested type (mail.go adminGenerateLink: `VerificationType: params.Type`); only the
    // link's `type=` is `email_change`. supabase-auth (Python) validates verification_type
    // against the six request types, so "email_change" there is a client-side error.
    for kind in ["email_change_current", "email_change_new"] {
        let new_email = unique_email();
        let link = generate(&server, json!({"type": kind, "email": email, "new_email": new_email})).await;
        assert_eq!(link["id"], user["id"]);
        assert_eq!(link["new_email"], new_email, "{kind}: {link}");
        assert!(link["email_change_sent_at"].is_string(), "{kind}: {link}");
        assert_eq!(get_user(&server, &id_of(&user)).await["new_email"], new_email);
        assert_eq!(link["email"], email, "the address does not change yet");
        assert!(str_of(&link, "action_link").contains("type=email_change"), "{link}");
        assert_eq!(link["verification_type"], kind, "{kind}");
    }
    let body = json!({"type": "email_change_new", "email": email, "new_email": taken});
    assert_error(admin(&server, Method::POST, "/admin/generate_link", Some(body)).await, 422, "email_exists").await;
    let body = json!({"type": "email_change_new", "email": email, "new_email": "nope"});
    assert_error(admin(&server, Method::POST, "/admin/generate_link", Some(body)).await, 400, "validation_failed")
        .await;
    for kind in ["email_change_current", "email_change_new"] {
        let body = json!({"type": kind, "email": unique_email(), "new_email": unique_email()});
        let resp = admin(&server, Method::POST, "/admin/generate_link", Some(body)).await;
        assert_error(resp, 404, "user_not_found").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.messages().is_empty(), "generate_link must not send mail: {:?}", sink.messages());
}

#[tokio::test]
async fn generate_link_signup_requires_a_password() {
    // GoTrue runs validateSignupParams for a new sign-up link: no password → 400
    // validation_failed "Signup requires a valid password" (only magiclink-turned-signup gets a
    // random password).
    let server = TestServer::start().await;
    let email = unique_email();
    let resp =
        admin(&server, Method::POST, "/admin/generate_link", Some(json!({"type": "signup", "email": email}))).await;
    assert_error(resp, 400, "validation_failed").await;
    assert!(server.actors.users.by_email(&email).await.unwrap().is_none(), "no user is created");
}

// ---------------------------------------------------------------------------------------------
// Factors

#[tokio::test]
async fn factor_routes() {
    let server = TestServer::start().await;
    let user = create(&server, json!({"email": unique_email()})).await;
    let id = id_of(&user);
    for prefix in ["/admin/users", "/admin/user"] {
        let resp = admin(&server, Method::GET, &format!("{prefix}/{id}/factors"), None).await;
        assert_eq!(ok_json(resp, "factors").await, json!([]));
    }
    let unknown = Uuid::new_v4();
    let resp = admin(&server, Method::GET, &format!("/admin/users/{unknown}/factors"), None).await;
    assert_error(resp, 404, "user_not_found").await;
    let resp = admin(&server, Method::GET, "/admin/users/not-a-uuid/factors", None).await;
    assert_error(resp, 404, "validation_failed").await;

    let factor = Uuid::new_v4();
    let resp = admin(&server, Method::DELETE, &format!("/admin/users/{id}/factors/{factor}"), None).await;
    assert_error(resp, 404, "mfa_factor_not_found").await;
    let body = Some(json!({"friendly_name": "phone"}));
    let resp = admin(&server, Method::PUT, &format!("/admin/users/{id}/factors/{factor}"), body).await;
    assert_error(resp, 404, "mfa_factor_not_found").await;
    let resp = admin(&server, Method::DELETE, &format!("/admin/users/{id}/factors/not-a-uuid"), None).await;
    assert_error(resp, 404, "validation_failed").await;
    let resp = admin(&server, Method::DELETE, &format!("/admin/users/{unknown}/factors/{factor}"), None).await;
    assert_error(resp, 404, "user_not_found").await;
}

// ---------------------------------------------------------------------------------------------
// GET /admin/audit

#[tokio::test]
async fn audit_log_records_and_filters() {
    let server = TestServer::start().await;
    let email = unique_email();
    let signup = server.signup(&email).await;
    let session = server.login(&email).await;
    let rotated = ok_json(server.refresh(session["refresh_token"].as_str().unwrap()).await, "refresh").await;
    let resp = server
        .request(Method::POST, "/logout?scope=local")
        .bearer_auth(rotated["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let other = unique_email();
    let created = create(&server, json!({"email": other})).await;
    update(&server, &id_of(&created), json!({"user_metadata": {"x": 1}})).await;
    let resp = admin(&server, Method::DELETE, &format!("/admin/users/{}", id_of(&created)), None).await;
    ok_json(resp, "delete").await;

    let (entries, total, link) = audit(&server, "").await;
    assert_eq!(entries.len(), total);
    assert_eq!(links(&link), vec![("/admin/audit?page=1&per_page=50".to_owned(), "last".to_owned())]);
    for e in &entries {
        assert!(Uuid::parse_str(str_of(e, "id")).is_ok(), "{e}");
        assert!(e["ip_address"].is_string(), "{e}");
        parse_time(str_of(e, "created_at"));
        assert_eq!(e["payload"]["actor_via_sso"], false, "{e}");
    }
    let times: Vec<OffsetDateTime> = entries.iter().map(|e| parse_time(str_of(e, "created_at"))).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let ids: HashSet<&str> = entries.iter().map(|e| str_of(e, "id")).collect();
    assert_eq!(ids.len(), entries.len(), "entry ids are unique");

    // Newest first: the admin's delete, modify, create, then the user's logout, refresh, login.
    let actions: Vec<&str> = entries.iter().map(action).collect();
    let pos = |a: &str| actions.iter().position(|x| *x == a).unwrap_or_else(|| panic!("{a} missing from {actions:?}"));
    assert_eq!(actions[..3], ["user_deleted", "user_modified", "user_signedup"], "{actions:?}");
    assert!(pos("logout") < pos("token_refreshed") && pos("token_refreshed") < pos("login"), "{actions:?}");
    assert_eq!(*actions.last().unwrap(), "user_signedup", "the first event is the sign-up: {actions:?}");

    let deleted = &entries[0]["payload"];
    assert_eq!(deleted["actor_username"], "service_role");
    assert_eq!(deleted["actor_id"], Uuid::nil().to_string());
    assert_eq!(deleted["log_type"], "team");
    assert_eq!(deleted["traits"]["user_email"], other);
    assert_eq!(deleted["traits"]["user_id"], created["id"]);
    assert_eq!(entries[1]["payload"]["log_type"], "user");
    assert_eq!(entries[2]["payload"]["actor_username"], "service_role");
    let expect = |a: &str, log_type: &str| {
        let p = &entries[pos(a)]["payload"];
        assert_eq!(p["log_type"], log_type, "{a}: {p}");
        assert_eq!(p["actor_username"], email, "{a}: {p}");
        assert_eq!(p["actor_id"], signup["user"]["id"], "{a}: {p}");
    };
    expect("login", "account");
    expect("logout", "account");
    expect("token_refreshed", "token");
    let first = &entries.last().unwrap()["payload"];
    assert_eq!((first["actor_username"].as_str(), first["log_type"].as_str()), (Some(email.as_str()), Some("team")));

    // Pagination.
    let (page1, total2, link) = audit(&server, "?page=1&per_page=2").await;
    assert_eq!(total2, total);
    assert_eq!(page1, entries[..2]);
    let last = total.div_ceil(2);
    assert_eq!(
        links(&link),
        vec![
            ("/admin/audit?page=2&per_page=2".to_owned(), "next".to_owned()),
            (format!("/admin/audit?page={last}&per_page=2"), "last".to_owned())
        ]
    );
    let (page2, _, _) = audit(&server, "?page=2&per_page=2").await;
    assert_eq!(page2, entries[2..4]);
    let (empty, total3, _) = audit(&server, &format!("?page={}&per_page=2", last + 1)).await;
    assert!(empty.is_empty());
    assert_eq!(total3, total);
    assert_error(admin(&server, Method::GET, "/admin/audit?page=abc", None).await, 400, "validation_failed").await;

    // Queries.
    let (logins, n, _) = audit(&server, "?query=action:login").await;
    assert!(!logins.is_empty() && logins.len() == n);
    assert!(logins.iter().all(|e| action(e) == "login"), "{logins:?}");
    let (team, _, _) = audit(&server, "?query=type:team").await;
    assert!(team.iter().all(|e| e["payload"]["log_type"] == "team"));
    let team_actions: HashSet<&str> = team.iter().map(action).collect();
    assert_eq!(team_actions, HashSet::from(["user_signedup", "user_deleted"]));
    let (mine, _, _) = audit(&server, &format!("?query=author:{}", email.to_uppercase())).await;
    assert!(mine.iter().all(|e| e["payload"]["actor_username"] == email));
    let mine_actions: HashSet<&str> = mine.iter().map(action).collect();
    for a in ["user_signedup", "login", "token_refreshed", "logout"] {
        assert!(mine_actions.contains(a), "{a} in {mine_actions:?}");
    }
    let (admins, _, _) = audit(&server, "?query=author:service_role").await;
    assert_eq!(admins.iter().map(action).collect::<Vec<_>>(), ["user_deleted", "user_modified", "user_signedup"]);
    let (none, n, _) = audit(&server, "?query=action:no-such-action").await;
    assert_eq!((none.len(), n), (0, 0));
    for bad in ["foo:bar", "nonsense"] {
        let resp = admin(&server, Method::GET, &format!("/admin/audit?query={bad}"), None).await;
        let err = assert_error(resp, 400, "validation_failed").await;
        assert!(err["message"].as_str().unwrap().contains("Invalid query scope"), "{err}");
    }

    // The log survives a restart and keeps growing in order.
    let server = server.restart().await;
    let (after, total_after, _) = audit(&server, "").await;
    assert_eq!(total_after, total);
    assert_eq!(after, entries);
    server.login(&email).await;
    let (grown, total_grown, _) = audit(&server, "?per_page=1").await;
    assert_eq!(total_grown, total + 1);
    assert_eq!(action(&grown[0]), "login");
    assert!(parse_time(str_of(&grown[0], "created_at")) >= times[0]);
}

#[tokio::test]
async fn audit_records_generate_link_and_invite_users() {
    let server = TestServer::start().await;
    let invited = unique_email();
    generate(&server, json!({"type": "invite", "email": invited})).await;
    let signed = unique_email();
    generate(&server, json!({"type": "signup", "email": signed, "password": PASSWORD})).await;
    let (entries, _, _) = audit(&server, "?query=author:service_role").await;
    let pairs: Vec<(&str, &str)> =
        entries.iter().map(|e| (action(e), e["payload"]["traits"]["user_email"].as_str().unwrap_or(""))).collect();
    assert_eq!(pairs, vec![("user_signedup", signed.as_str()), ("user_invited", invited.as_str())]);
    assert_eq!(entries[1]["payload"]["log_type"], "team");
}

#[tokio::test]
async fn admin_audit_entries_carry_gotrue_traits() {
    // GoTrue's admin create / update / delete record traits {user_id, user_email, user_phone}
    // (create adds provider); a query without a `scope:` prefix is a 400.
    let server = TestServer::start().await;
    let (email, phone) = (unique_email(), unique_phone());
    let user = create(&server, json!({"email": email, "phone": phone})).await;
    update(&server, &id_of(&user), json!({"user_metadata": {"x": 1}})).await;
    ok_json(admin(&server, Method::DELETE, &format!("/admin/users/{}", id_of(&user)), None).await, "delete").await;
    let (entries, _, _) = audit(&server, "?query=author:service_role").await;
    assert_eq!(entries.iter().map(action).collect::<Vec<_>>(), ["user_deleted", "user_modified", "user_signedup"]);
    for e in &entries {
        let traits = &e["payload"]["traits"];
        assert_eq!(traits["user_id"], user["id"], "{e}");
        assert_eq!(traits["user_email"], email, "{e}");
        assert_eq!(traits["user_phone"], phone, "user_phone trait: {e}");
    }
    assert_eq!(entries[2]["payload"]["traits"]["provider"], "email", "provider trait on user_signedup");
    let resp = admin(&server, Method::GET, "/admin/audit?query=action", None).await;
    assert_error(resp, 400, "validation_failed").await;
}

#[tokio::test]
async fn audit_retention_setting_is_accepted() {
    // The sweep runs every 60 s; this only checks a server starts and serves with the setting.
    let server = TestServer::start_with(|c| c.settings.audit_retention = Some(Duration::from_secs(1))).await;
    let email = unique_email();
    server.signup(&email).await;
    let (entries, total, _) = audit(&server, "").await;
    assert!(total >= 1 && entries.iter().any(|e| action(e) == "user_signedup"), "{entries:?}");
}

#[tokio::test]
async fn update_with_an_empty_password_is_a_weak_password() {
    // GoTrue checks the strength of any password given to PUT, the empty one included.
    let server = TestServer::start().await;
    let user = create(&server, json!({"email": unique_email(), "password": PASSWORD, "email_confirm": true})).await;
    let resp =
        admin(&server, Method::PUT, &format!("/admin/users/{}", id_of(&user)), Some(json!({"password": ""}))).await;
    assert_error(resp, 422, "weak_password").await;
}
