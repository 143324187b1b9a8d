//! Issue 9 §8: presented JWTs are checked at least as strictly as GoTrue checks them (golang-jwt v5
//! with HS256 only: `exp` and `nbf` when present, no leeway; `aud` compared by `GET /user`;
//! `session_id` must be a UUID, on user and on admin endpoints), and the `service_role`/`anon`
//! keys, which carry no `aud`, keep working where they worked.

use crate::common::{assert_error, now_secs, sign, unique_email, TestServer, SECRET};
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const TOKEN_NOT_VALID: &str = "invalid JWT: unable to parse or verify signature";

/// The claims of a real access token for a fresh user, and the server.
async fn user_claims() -> (TestServer, Value) {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let token = session["access_token"].as_str().expect("access_token");
    let payload = token.split('.').nth(1).expect("payload");
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64");
    (server, serde_json::from_slice(&claims).expect("claims"))
}

/// `claims` with `key` set to `value` (`Value::Null` removes it), signed with the server's secret.
fn forge(claims: &Value, key: &str, value: Value) -> String {
    let mut claims = claims.clone();
    let map = claims.as_object_mut().expect("object");
    if value.is_null() {
        map.remove(key);
    } else {
        map.insert(key.to_owned(), value);
    }
    sign(&claims, SECRET, Algorithm::HS256)
}

/// A token with an arbitrary header over `claims`, signed (or not) as `sig` says.
fn with_header(header: &Value, claims: &Value, sig: &str) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{sig}", b64(header), b64(claims))
}

async fn admin_users(server: &TestServer, token: &str) -> reqwest::Response {
    server.request(Method::GET, "/admin/users").bearer_auth(token).send().await.expect("request")
}

#[tokio::test]
async fn a_future_nbf_is_refused_on_user_and_admin_endpoints() {
    let (server, claims) = user_claims().await;
    let early = forge(&claims, "nbf", json!(now_secs() + 600));
    let err = assert_error(server.get_auth("/user", &early).await, 403, "bad_jwt").await;
    assert!(err["message"].as_str().unwrap().starts_with(TOKEN_NOT_VALID), "{err}");
    let early_admin = sign(&json!({"role": "service_role", "nbf": now_secs() + 600}), SECRET, Algorithm::HS256);
    assert_error(admin_users(&server, &early_admin).await, 403, "bad_jwt").await;
    // A past nbf is fine.
    let started = forge(&claims, "nbf", json!(now_secs() - 5));
    assert_eq!(server.get_auth("/user", &started).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn get_user_compares_the_audience() {
    let (server, claims) = user_claims().await;
    assert_eq!(server.get_auth("/user", &forge(&claims, "aud", Value::Null)).await.status().as_u16(), 400);
    for token in
        [forge(&claims, "aud", Value::Null), forge(&claims, "aud", json!("")), forge(&claims, "aud", json!([]))]
    {
        let err = assert_error(server.get_auth("/user", &token).await, 400, "validation_failed").await;
        assert_eq!(err["message"], "Token audience doesn't match request audience");
    }
    // The request's audience is X-JWT-AUD, else GOTRUE_JWT_AUD.
    let good = sign(&claims, SECRET, Algorithm::HS256);
    let resp = server.request(Method::GET, "/user").bearer_auth(&good).header("X-JWT-AUD", "other").send().await;
    assert_error(resp.unwrap(), 400, "validation_failed").await;
    // Stricter than GoTrue (which compares a header-less request with the token's own aud): a
    // token for another audience is refused without the header too.
    assert_error(server.get_auth("/user", &forge(&claims, "aud", json!("other"))).await, 400, "validation_failed")
        .await;
    // An array aud is read by its first element, as GoTrue's GetAudience()[0].
    let listed = forge(&claims, "aud", json!(["authenticated", "other"]));
    assert_eq!(server.get_auth("/user", &listed).await.status(), StatusCode::OK);
    assert_eq!(server.get_auth("/user", &good).await.status(), StatusCode::OK);
    // Endpoints where GoTrue does not compare aud keep accepting a token without one.
    let no_aud = forge(&claims, "aud", Value::Null);
    let resp = server.put_auth("/user", &no_aud, json!({"data": {"x": 1}})).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_malformed_session_id_is_refused_on_user_and_admin_endpoints() {
    let (server, claims) = user_claims().await;
    for bad in [json!("not-a-uuid"), json!("123"), json!("00000000-0000-0000-0000-00000000000g")] {
        let token = forge(&claims, "session_id", bad.clone());
        let err = assert_error(server.get_auth("/user", &token).await, 403, "bad_jwt").await;
        assert_eq!(err["message"], "invalid claim: session_id claim must be a UUID", "{bad}");
        let admin = sign(&json!({"role": "service_role", "session_id": bad}), SECRET, Algorithm::HS256);
        let err = assert_error(admin_users(&server, &admin).await, 403, "bad_jwt").await;
        assert_eq!(err["message"], "invalid claim: session_id claim must be a UUID");
    }
    // GoTrue reads the session before the role: a user token with a broken session_id is bad_jwt.
    let token = forge(&claims, "session_id", json!("nope"));
    assert_error(admin_users(&server, &token).await, 403, "bad_jwt").await;
    // A session_id of the wrong JSON type cannot be parsed at all.
    assert_error(server.get_auth("/user", &forge(&claims, "session_id", json!(7))).await, 403, "bad_jwt").await;
    // Empty and nil session ids mean "no session", on both kinds of endpoint.
    for none in ["", "00000000-0000-0000-0000-000000000000"] {
        let admin = sign(&json!({"role": "service_role", "session_id": none}), SECRET, Algorithm::HS256);
        assert_eq!(admin_users(&server, &admin).await.status(), StatusCode::OK, "{none:?}");
        let user = forge(&claims, "session_id", json!(none));
        assert_eq!(server.get_auth("/user", &user).await.status(), StatusCode::OK, "{none:?}");
    }
}

#[tokio::test]
async fn only_hs256_with_the_right_secret_is_accepted() {
    let (server, claims) = user_claims().await;
    let good = sign(&claims, SECRET, Algorithm::HS256);
    let good_sig = good.split('.').nth(2).unwrap().to_owned();
    let admin_claims = json!({"role": "service_role"});
    let mut refused: Vec<(String, String)> = Vec::new();
    for alg in ["none", "None", "HS384", "HS512", "RS256", "ES256", ""] {
        for sig in ["", good_sig.as_str()] {
            let header = json!({"alg": alg, "typ": "JWT"});
            refused.push((format!("alg {alg:?} sig {}", sig.len()), with_header(&header, &claims, sig)));
            refused.push((format!("admin alg {alg:?}"), with_header(&header, &admin_claims, sig)));
        }
    }
    refused.push(("HS384 with the secret".into(), sign(&claims, SECRET, Algorithm::HS384)));
    refused.push(("HS512 with the secret".into(), sign(&admin_claims, SECRET, Algorithm::HS512)));
    refused.push(("wrong secret".into(), sign(&claims, "another-secret-that-is-long-enough!!", Algorithm::HS256)));
    refused.push((
        "wrong secret, admin".into(),
        sign(&admin_claims, "another-secret-that-is-long-enough!!", Algorithm::HS256),
    ));
    let mut tampered = claims.clone();
    tampered["role"] = json!("service_role");
    refused.push((
        "payload swapped under a valid signature".into(),
        with_header(&json!({"alg": "HS256", "typ": "JWT"}), &tampered, &good_sig),
    ));
    refused.push(("expired".into(), forge(&claims, "exp", json!(now_secs() - 1))));
    refused.push((
        "expired admin".into(),
        sign(&json!({"role": "service_role", "exp": now_secs() - 1}), SECRET, Algorithm::HS256),
    ));
    refused.push(("string exp".into(), forge(&claims, "exp", json!("tomorrow"))));
    for garbage in ["garbage", "a.b.c", "eyJ.eyJ.sig", "..", &good[..good.len() - 2]] {
        refused.push((format!("garbage {garbage:?}"), garbage.to_owned()));
    }
    for (what, token) in refused {
        let resp = server.get_auth("/user", &token).await;
        assert_eq!(resp.status().as_u16(), 403, "{what}");
        assert_error(resp, 403, "bad_jwt").await;
        assert_error(admin_users(&server, &token).await, 403, "bad_jwt").await;
    }
    assert_eq!(server.get_auth("/user", &good).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn service_keys_without_aud_keep_working_on_admin_endpoints() {
    let server = TestServer::start().await;
    // Minted like Supabase's keys (and like tests/api/common.rs and the compat suite do).
    let iat = now_secs();
    let service = sign(
        &json!({"iss": "supabase", "ref": "local", "role": "service_role", "iat": iat, "exp": iat + 3600}),
        SECRET,
        Algorithm::HS256,
    );
    let resp = admin_users(&server, &service).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert!(body["users"].is_array(), "{body}");
    let bare = sign(&json!({"role": "service_role"}), SECRET, Algorithm::HS256);
    assert_eq!(admin_users(&server, &bare).await.status(), StatusCode::OK);
    let resp = server
        .request(Method::POST, "/admin/users")
        .bearer_auth(&bare)
        .json(&json!({"email": unique_email(), "password": "correct-horse-9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The anon key is valid but not an admin.
    let anon = sign(&json!({"iss": "supabase", "role": "anon", "iat": iat}), SECRET, Algorithm::HS256);
    let err = assert_error(admin_users(&server, &anon).await, 403, "not_admin").await;
    assert_eq!(err["message"], "User not allowed");
}
