//! `POST /signup` (SPEC §1.2, §1.20, §3, Appendix B): sessions, users, duplicates, the fake user
//! of a repeated signup, validation, provider switches, anonymous sign-in, lenient decoding.

use crate::common::*;
use ferrotrue_actors::clock::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// POST with a raw body and a JSON content type.
async fn post_raw(server: &TestServer, path: &str, body: &str) -> reqwest::Response {
    server
        .request(Method::POST, path)
        .header("Content-Type", "application/json;charset=UTF-8")
        .body(body.to_owned())
        .send()
        .await
        .expect("request")
}

async fn json_of(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let body: Value = resp.json().await.expect("json body");
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn is_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
}

// ---------------------------------------------------------------------------------------------
// Successful sign-ups
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn email_signup_returns_a_session() {
    let server = TestServer::start().await;
    let email = unique_email();
    let resp = server
        .post(
            "/signup",
            json!({"email": email.to_uppercase(), "password": PASSWORD, "data": {"name": "Ann", "plan": "pro"}}),
        )
        .await;
    let body = json_of(resp).await;

    // Session envelope.
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert!(body["refresh_token"].as_str().is_some_and(|t| t.len() >= 12), "{body}");
    assert_eq!(body["token_type"], "bearer");
    let expires_in = body["expires_in"].as_i64().expect("expires_in is an integer");
    assert!(expires_in > 3500 && expires_in <= 3600, "{expires_in}");
    let expires_at = body["expires_at"].as_i64().expect("expires_at is an integer");
    assert!((expires_at - now_secs() - 3600).abs() <= 60, "{expires_at}");
    assert!(body.get("weak_password").is_none(), "{body}");

    // User.
    let user = &body["user"];
    let id = user["id"].as_str().expect("user id");
    assert!(is_uuid(&user["id"]));
    assert_eq!(user["aud"], "authenticated");
    assert_eq!(user["role"], "authenticated");
    assert_eq!(user["email"], email.as_str(), "email is lower-cased");
    assert_eq!(user["phone"], "");
    assert!(user["email_confirmed_at"].is_string(), "{user}");
    assert!(user["confirmed_at"].is_string(), "{user}");
    assert!(user["last_sign_in_at"].is_string(), "{user}");
    assert!(user["created_at"].is_string() && user["updated_at"].is_string());
    assert!(user.get("phone_confirmed_at").is_none(), "{user}");
    assert_eq!(user["is_anonymous"], false);
    assert_eq!(user["factors"], json!([]), "session responses embed factors: []");
    assert_eq!(user["app_metadata"], json!({"provider": "email", "providers": ["email"]}));

    let meta = &user["user_metadata"];
    assert_eq!(meta["sub"], id);
    assert_eq!(meta["email"], email.as_str());
    assert_eq!(meta["email_verified"], true);
    assert_eq!(meta["phone_verified"], false);
    assert_eq!(meta["name"], "Ann", "signup data is merged into user_metadata");
    assert_eq!(meta["plan"], "pro");

    let identities = user["identities"].as_array().expect("identities array");
    assert_eq!(identities.len(), 1);
    let identity = &identities[0];
    assert_eq!(identity["provider"], "email");
    assert_eq!(identity["id"], id, "identity id is the provider subject: the user id");
    assert!(is_uuid(&identity["identity_id"]));
    assert_ne!(identity["identity_id"], identity["id"]);
    assert_eq!(identity["user_id"], id);
    assert_eq!(identity["email"], email.as_str());
    assert_eq!(identity["identity_data"]["sub"], id);
    assert_eq!(identity["identity_data"]["email"], email.as_str());
    assert_eq!(identity["identity_data"]["email_verified"], true);
    assert_eq!(identity["identity_data"]["name"], "Ann");

    // Access token.
    let c = verified_claims(body["access_token"].as_str().expect("token"));
    assert_eq!(c["sub"], id);
    assert_eq!(c["aud"], "authenticated", "aud is a plain string");
    assert_eq!(c["role"], "authenticated");
    assert_eq!(c["email"], email.as_str());
    assert_eq!(c["phone"], "");
    assert!(is_uuid(&c["session_id"]), "{c}");
    assert_eq!(c["is_anonymous"], false);
    assert_eq!(c["aal"], "aal1");
    assert_eq!(c["amr"][0]["method"], "password");
    assert!(c["amr"][0]["timestamp"].is_i64());
    assert_eq!(c["exp"], expires_at, "expires_at is the JWT exp");
    assert_eq!(c["exp"].as_i64().expect("exp") - c["iat"].as_i64().expect("iat"), 3600);
    assert_eq!(c["app_metadata"]["provider"], "email");
    assert_eq!(c["user_metadata"]["name"], "Ann");

    // Stored lower-cased and usable.
    let stored = server.actors.users.by_email(&email).await.expect("lookup").expect("stored");
    assert_eq!(stored.id.to_string(), id);
    assert_eq!(stored.email, email);
    let login = server.login(&email).await;
    assert_eq!(login["user"]["id"], id);
}

#[tokio::test]
async fn phone_signup_stores_the_number_without_plus() {
    let server = TestServer::start().await;
    let phone = unique_phone();
    let body = json_of(server.post("/signup", json!({"phone": format!("+{phone}"), "password": PASSWORD})).await).await;
    assert!(body["access_token"].is_string() && body["refresh_token"].is_string(), "{body}");
    let user = &body["user"];
    let id = user["id"].as_str().expect("id");
    assert_eq!(user["phone"], phone.as_str(), "stored and returned without '+'");
    assert_eq!(user["email"], "");
    assert!(user["phone_confirmed_at"].is_string(), "{user}");
    assert!(user["confirmed_at"].is_string(), "{user}");
    assert!(user.get("email_confirmed_at").is_none(), "{user}");
    assert_eq!(user["app_metadata"], json!({"provider": "phone", "providers": ["phone"]}));
    assert_eq!(user["user_metadata"]["phone"], phone.as_str());
    assert_eq!(user["user_metadata"]["phone_verified"], true);
    assert_eq!(user["user_metadata"]["sub"], id);
    assert_eq!(user["factors"], json!([]));
    let identity = &user["identities"][0];
    assert_eq!(identity["provider"], "phone");
    assert_eq!(identity["id"], id);
    assert_eq!(identity["identity_data"]["phone"], phone.as_str());
    assert!(identity.get("email").is_none(), "identity email is omitted when empty: {identity}");

    let c = verified_claims(body["access_token"].as_str().expect("token"));
    assert_eq!(c["phone"], phone.as_str());
    assert_eq!(c["email"], "");
    assert_eq!(c["amr"][0]["method"], "password");

    let stored = server.actors.users.by_phone(&phone).await.expect("lookup").expect("stored");
    assert_eq!(stored.id.to_string(), id);
}

#[tokio::test]
async fn upper_case_keys_are_accepted() {
    let server = TestServer::start().await;
    let email = unique_email();
    let body = json_of(server.post("/signup", json!({"EMAIL": email, "Password": PASSWORD})).await).await;
    assert_eq!(body["user"]["email"], email.as_str());
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn nulls_and_unknown_fields_are_ignored() {
    let server = TestServer::start().await;
    let email = unique_email();
    // What auth-js sends.
    let body = json_of(
        server
            .post(
                "/signup",
                json!({
                    "email": email,
                    "password": PASSWORD,
                    "data": null,
                    "phone": null,
                    "channel": null,
                    "code_challenge": null,
                    "code_challenge_method": null,
                    "gotrue_meta_security": {"captcha_token": "ignored"},
                    "some_future_field": [1, 2, 3]
                }),
            )
            .await,
    )
    .await;
    assert_eq!(body["user"]["email"], email.as_str());
    assert!(body["access_token"].is_string());
    assert_eq!(body["user"]["user_metadata"]["email_verified"], true);
}

#[tokio::test]
async fn password_of_exactly_72_bytes_is_accepted() {
    let server = TestServer::start().await;
    let email = unique_email();
    let password = format!("{}1", "a".repeat(71));
    assert_eq!(password.len(), 72);
    let body = json_of(server.post("/signup", json!({"email": email, "password": password})).await).await;
    assert!(body["access_token"].is_string());
}

// ---------------------------------------------------------------------------------------------
// Duplicates
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_confirmed_signup_is_user_already_exists() {
    let server = TestServer::start().await;
    let email = unique_email();
    server.signup(&email).await;

    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let err = assert_error(resp, 422, "user_already_exists").await;
    assert_eq!(err["message"], "User already registered");

    // Case-insensitive.
    let resp = server.post("/signup", json!({"email": email.to_uppercase(), "password": PASSWORD})).await;
    assert_error(resp, 422, "user_already_exists").await;
    // A different password does not change the answer.
    let resp = server.post("/signup", json!({"email": email, "password": "another-password-1"})).await;
    assert_error(resp, 422, "user_already_exists").await;
}

#[tokio::test]
async fn duplicate_confirmed_phone_signup_is_user_already_exists() {
    let server = TestServer::start().await;
    let phone = unique_phone();
    json_of(server.post("/signup", json!({"phone": phone, "password": PASSWORD})).await).await;
    let resp = server.post("/signup", json!({"phone": format!("+{phone}"), "password": PASSWORD})).await;
    assert_error(resp, 422, "user_already_exists").await;
}

#[tokio::test]
async fn without_autoconfirm_signup_returns_an_unconfirmed_user() {
    let server = TestServer::start_with(|c| {
        c.settings.signup.mailer_autoconfirm = false;
        c.settings.signup.sms_autoconfirm = false;
    })
    .await;
    let email = unique_email();
    let body = json_of(server.post("/signup", json!({"email": email, "password": PASSWORD})).await).await;

    // A User, not a Session.
    assert!(body.get("access_token").is_none(), "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(is_uuid(&body["id"]), "{body}");
    assert_eq!(body["email"], email.as_str());
    assert_eq!(body["aud"], "authenticated");
    assert_eq!(body["role"], "authenticated");
    assert!(body["confirmation_sent_at"].is_string(), "{body}");
    assert!(body.get("email_confirmed_at").is_none(), "{body}");
    assert!(body.get("confirmed_at").is_none(), "{body}");
    assert!(body.get("factors").is_none(), "factors are omitted outside sessions: {body}");
    assert_eq!(body["app_metadata"], json!({"provider": "email", "providers": ["email"]}));
    assert_eq!(body["user_metadata"]["email_verified"], false);
    let identities = body["identities"].as_array().expect("identities");
    assert_eq!(identities.len(), 1);
    assert_eq!(identities[0]["provider"], "email");
    assert_eq!(identities[0]["identity_data"]["email_verified"], false);

    // The password is right, but the address is not confirmed.
    let resp = server.post("/token?grant_type=password", json!({"email": email, "password": PASSWORD})).await;
    let err = assert_error(resp, 400, "email_not_confirmed").await;
    assert_eq!(err["message"], "Email not confirmed");
    // A wrong password is still just invalid credentials.
    let resp = server.post("/token?grant_type=password", json!({"email": email, "password": "wrong-password-1"})).await;
    assert_error(resp, 400, "invalid_credentials").await;

    // Signing up again at once re-sends the confirmation, which is throttled (GoTrue's 60 s).
    let resp = server.post("/signup", json!({"email": email, "password": PASSWORD})).await;
    let err = assert_error(resp, 429, "over_email_send_rate_limit").await;
    assert!(err["message"].as_str().unwrap().contains("seconds"), "{err}");
}

#[tokio::test]
async fn repeated_signup_of_unconfirmed_user_returns_the_same_unmodified_user() {
    let server = TestServer::start_with(|c| {
        c.settings.signup.mailer_autoconfirm = false;
        c.settings.smtp.max_frequency = std::time::Duration::ZERO;
    })
    .await;
    let email = unique_email();
    let body = json_of(server.post("/signup", json!({"email": email, "password": PASSWORD})).await).await;
    let again = json_of(server.post("/signup", json!({"email": email, "password": "another-password-2"})).await).await;
    assert_eq!(again["id"], body["id"]);
    assert!(again.get("access_token").is_none());
    assert!(again.get("email_confirmed_at").is_none());
}

#[tokio::test]
async fn repeated_signup_of_confirmed_user_without_autoconfirm_returns_a_fake_user() {
    let server = TestServer::start_with(|c| {
        c.settings.signup.mailer_autoconfirm = false;
        c.settings.signup.sms_autoconfirm = false;
    })
    .await;
    let email = unique_email();
    let first = json_of(server.post("/signup", json!({"email": email, "password": PASSWORD})).await).await;
    let real_id = uuid::Uuid::parse_str(first["id"].as_str().expect("id")).expect("uuid");
    server
        .actors
        .users
        .update(real_id, |u| {
            u.email_confirmed_at = Some(Timestamp(1));
            Ok(())
        })
        .await
        .expect("confirm");

    let resp = server
        .post("/signup", json!({"email": email.to_uppercase(), "password": "other-pass-1", "data": {"k": "v"}}))
        .await;
    let fake = json_of(resp).await;
    assert!(fake.get("access_token").is_none(), "no session for a repeated signup: {fake}");
    assert!(is_uuid(&fake["id"]));
    assert_ne!(fake["id"], first["id"], "the fake user has a random id");
    assert_eq!(fake["identities"], json!([]), "apps detect 'already registered' by identities == []");
    assert_eq!(fake["email"], email.as_str());
    assert_eq!(fake["phone"], "");
    assert!(fake["confirmation_sent_at"].is_string(), "{fake}");
    assert!(fake.get("email_confirmed_at").is_none(), "{fake}");
    assert!(fake.get("confirmed_at").is_none(), "{fake}");
    assert!(fake.get("last_sign_in_at").is_none(), "{fake}");
    assert_eq!(fake["user_metadata"], json!({"k": "v"}));
    assert_eq!(fake["app_metadata"], json!({"provider": "email", "providers": ["email"]}));

    // Nothing was stored or changed.
    let stored = server.actors.users.by_email(&email).await.expect("lookup").expect("stored");
    assert_eq!(stored.id, real_id);
    assert_eq!(stored.email_confirmed_at, Some(Timestamp(1)));
    assert_eq!(server.actors.users.count().await.expect("count"), 1);
    // The real password still works, the one of the repeated signup does not.
    server.login(&email).await;
    let resp = server.post("/token?grant_type=password", json!({"email": email, "password": "other-pass-1"})).await;
    assert_error(resp, 400, "invalid_credentials").await;
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_or_empty_password_is_validation_failed() {
    let server = TestServer::start().await;
    let resp = server.post("/signup", json!({"email": unique_email()})).await;
    let err = assert_error(resp, 400, "validation_failed").await;
    assert_eq!(err["message"], "Signup requires a valid password");
    let resp = server.post("/signup", json!({"email": unique_email(), "password": ""})).await;
    assert_error(resp, 400, "validation_failed").await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": null})).await;
    assert_error(resp, 400, "validation_failed").await;
    assert_eq!(server.actors.users.count().await.expect("count"), 0);
}

#[tokio::test]
async fn password_longer_than_72_bytes_is_validation_failed() {
    let server = TestServer::start().await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": "a1".repeat(37)})).await;
    let err = assert_error(resp, 400, "validation_failed").await;
    assert_eq!(err["message"], "Password cannot be longer than 72 characters");
    // Bytes, not characters: 37 two-byte characters are 74 bytes.
    let resp = server.post("/signup", json!({"email": unique_email(), "password": "é".repeat(37)})).await;
    assert_error(resp, 400, "validation_failed").await;
    assert_eq!(server.actors.users.count().await.expect("count"), 0);
}

#[tokio::test]
async fn short_password_is_weak_password() {
    let server = TestServer::start().await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": "abc"})).await;
    let err = assert_error(resp, 422, "weak_password").await;
    assert_eq!(err["weak_password"]["reasons"], json!(["length"]), "{err}");
    assert_eq!(err["message"], "Password should be at least 6 characters.");
    assert_eq!(server.actors.users.count().await.expect("count"), 0);
}

/// GoTrue compares `len(password)` (bytes) with `GOTRUE_PASSWORD_MIN_LENGTH`.
#[tokio::test]
async fn password_min_length_counts_bytes_like_gotrue() {
    let server = TestServer::start().await;
    // 3 characters, 6 bytes: long enough for GoTrue's default minimum of 6.
    let resp = server.post("/signup", json!({"email": unique_email(), "password": "ééé"})).await;
    let body = json_of(resp).await;
    assert!(body["access_token"].is_string(), "{body}");
}

#[tokio::test]
async fn required_characters_policy_is_weak_password() {
    let server = TestServer::start_with(|c| c.settings.password.required_characters = vec!["0123456789".into()]).await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": "no-digits-here"})).await;
    let err = assert_error(resp, 422, "weak_password").await;
    let reasons = err["weak_password"]["reasons"].as_array().expect("reasons");
    assert!(reasons.contains(&json!("characters")), "{err}");
    assert!(!reasons.contains(&json!("length")), "{err}");
    assert_eq!(err["message"], "Password should contain at least one character of each: 0123456789.");

    // Both reasons at once, length first.
    let resp = server.post("/signup", json!({"email": unique_email(), "password": "abc"})).await;
    let err = assert_error(resp, 422, "weak_password").await;
    assert_eq!(err["weak_password"]["reasons"], json!(["length", "characters"]));

    // A password with a digit passes.
    let body = json_of(server.post("/signup", json!({"email": unique_email(), "password": "has-digit-7"})).await).await;
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn email_and_phone_together_is_validation_failed() {
    let server = TestServer::start().await;
    let resp =
        server.post("/signup", json!({"email": unique_email(), "phone": unique_phone(), "password": PASSWORD})).await;
    assert_error(resp, 400, "validation_failed").await;
    assert_eq!(server.actors.users.count().await.expect("count"), 0);
}

#[tokio::test]
async fn invalid_email_is_validation_failed() {
    let server = TestServer::start().await;
    for bad in ["not-an-email", "ann@", "@example.com", "ann@example", "a b@example.com", "   "] {
        let resp = server.post("/signup", json!({"email": bad, "password": PASSWORD})).await;
        assert_error(resp, 400, "validation_failed").await;
    }
    let long = format!("{}@example.com", "a".repeat(250));
    let resp = server.post("/signup", json!({"email": long, "password": PASSWORD})).await;
    assert_error(resp, 400, "validation_failed").await;
    assert_eq!(server.actors.users.count().await.expect("count"), 0);
}

#[tokio::test]
async fn invalid_phone_is_validation_failed() {
    let server = TestServer::start().await;
    for bad in ["12ab", "+0123456789", "1234567890123456", "+"] {
        let resp = server.post("/signup", json!({"phone": bad, "password": PASSWORD})).await;
        let err = assert_error(resp, 400, "validation_failed").await;
        assert_eq!(err["message"], "Invalid phone number format (E.164 required)", "{bad}");
    }
    assert_eq!(server.actors.users.count().await.expect("count"), 0);
}

#[tokio::test]
async fn invalid_channel_is_validation_failed() {
    let server = TestServer::start().await;
    let resp =
        server.post("/signup", json!({"phone": unique_phone(), "password": PASSWORD, "channel": "pigeon"})).await;
    assert_error(resp, 400, "validation_failed").await;
    // The documented channels are fine.
    let body =
        json_of(server.post("/signup", json!({"phone": unique_phone(), "password": PASSWORD, "channel": "sms"})).await)
            .await;
    assert!(body["access_token"].is_string());
}

// ---------------------------------------------------------------------------------------------
// Provider switches
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn disable_signup_is_signup_disabled() {
    let server = TestServer::start_with(|c| c.settings.signup.disable_signup = true).await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": PASSWORD})).await;
    let err = assert_error(resp, 422, "signup_disabled").await;
    assert_eq!(err["message"], "Signups not allowed for this instance");
    let resp = server.post("/signup", json!({"phone": unique_phone(), "password": PASSWORD})).await;
    assert_error(resp, 422, "signup_disabled").await;
    // Checked before any validation of the request.
    let resp = server.post("/signup", json!({"email": "not-an-email", "password": ""})).await;
    assert_error(resp, 422, "signup_disabled").await;
    assert_eq!(server.actors.users.count().await.expect("count"), 0);
}

#[tokio::test]
async fn email_provider_disabled() {
    let server = TestServer::start_with(|c| c.settings.signup.email_enabled = false).await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": PASSWORD})).await;
    let err = assert_error(resp, 400, "email_provider_disabled").await;
    assert_eq!(err["message"], "Email signups are disabled");
    // Phone still works.
    let body = json_of(server.post("/signup", json!({"phone": unique_phone(), "password": PASSWORD})).await).await;
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn phone_provider_disabled() {
    let server = TestServer::start_with(|c| c.settings.signup.phone_enabled = false).await;
    let resp = server.post("/signup", json!({"phone": unique_phone(), "password": PASSWORD})).await;
    let err = assert_error(resp, 400, "phone_provider_disabled").await;
    assert_eq!(err["message"], "Phone signups are disabled");
    assert_eq!(server.actors.users.count().await.expect("count"), 0);
}

// ---------------------------------------------------------------------------------------------
// Anonymous sign-in
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn anonymous_signup_when_disabled() {
    let server = TestServer::start().await;
    let resp = server.post("/signup", json!({})).await;
    let err = assert_error(resp, 422, "anonymous_provider_disabled").await;
    assert_eq!(err["message"], "Anonymous sign-ins are disabled");
    // A password alone is still the anonymous path.
    let resp = server.post("/signup", json!({"password": PASSWORD, "email": "", "phone": null})).await;
    assert_error(resp, 422, "anonymous_provider_disabled").await;
    assert_eq!(server.actors.users.count().await.expect("count"), 0);
}

#[tokio::test]
async fn anonymous_signup_when_enabled() {
    let server = TestServer::start_with(|c| c.settings.signup.anonymous_enabled = true).await;
    let body = json_of(server.post("/signup", json!({"data": {"color": "blue"}})).await).await;
    assert!(body["access_token"].is_string() && body["refresh_token"].is_string(), "{body}");
    assert_eq!(body["token_type"], "bearer");
    let user = &body["user"];
    assert_eq!(user["is_anonymous"], true);
    assert_eq!(user["email"], "");
    assert_eq!(user["phone"], "");
    assert_eq!(user["app_metadata"], json!({}), "no provider for anonymous users");
    assert_eq!(user["identities"], json!([]));
    assert_eq!(user["user_metadata"], json!({"color": "blue"}));
    assert_eq!(user["role"], "authenticated");
    assert_eq!(user["factors"], json!([]));

    let c = verified_claims(body["access_token"].as_str().expect("token"));
    assert_eq!(c["is_anonymous"], true);
    assert_eq!(c["amr"][0]["method"], "anonymous");
    assert_eq!(c["sub"], user["id"]);
    assert_eq!(c["role"], "authenticated");
    assert_eq!(c["aud"], "authenticated");
    assert_eq!(c["email"], "");
    assert_eq!(c["phone"], "");

    // The anonymous session refreshes like any other.
    let resp = server.refresh(body["refresh_token"].as_str().expect("rt")).await;
    let refreshed = json_of(resp).await;
    assert_eq!(refreshed["user"]["is_anonymous"], true);
    assert_eq!(verified_claims(refreshed["access_token"].as_str().expect("token"))["is_anonymous"], true);
}

#[tokio::test]
async fn anonymous_signup_respects_disable_signup() {
    let server = TestServer::start_with(|c| {
        c.settings.signup.anonymous_enabled = true;
        c.settings.signup.disable_signup = true;
    })
    .await;
    let resp = server.post("/signup", json!({})).await;
    assert_error(resp, 422, "signup_disabled").await;
}

// ---------------------------------------------------------------------------------------------
// Body decoding
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn body_that_is_not_json_is_bad_json() {
    let server = TestServer::start().await;
    let err = assert_error(post_raw(&server, "/signup", "{not json").await, 400, "bad_json").await;
    assert!(err["message"].as_str().is_some_and(|m| m.starts_with("Could not parse request body as JSON")), "{err}");
    assert_error(post_raw(&server, "/signup", "").await, 400, "bad_json").await;
}

#[tokio::test]
async fn body_that_is_a_json_array_is_bad_json() {
    let server = TestServer::start().await;
    let body = json!([{"email": unique_email(), "password": PASSWORD}]).to_string();
    assert_error(post_raw(&server, "/signup", &body).await, 400, "bad_json").await;
    assert_error(post_raw(&server, "/signup", "\"a string\"").await, 400, "bad_json").await;
    assert_eq!(server.actors.users.count().await.expect("count"), 0);
}

#[tokio::test]
async fn wrong_field_type_is_bad_json() {
    let server = TestServer::start().await;
    let resp = server.post("/signup", json!({"email": 5, "password": PASSWORD})).await;
    assert_error(resp, 400, "bad_json").await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": PASSWORD, "data": "nope"})).await;
    assert_error(resp, 400, "bad_json").await;
    let resp = server.post("/signup", json!({"email": unique_email(), "password": 123456789})).await;
    assert_error(resp, 400, "bad_json").await;
    assert_eq!(server.actors.users.count().await.expect("count"), 0);
}
