//! Cross-cutting HTTP behaviour (SPEC §0, §3.1, Appendix B): both error formats, unknown
//! routes and methods, the body limit, CORS, form bodies, and "no client mistake is a 5xx".

#![allow(clippy::expect_used)] // helpers outside #[test] fns; a failed expect is a failed test

use crate::common::*;
use jsonwebtoken::Algorithm;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The server still answers a normal request.
async fn assert_serving(server: &TestServer) {
    let resp = server.request(Method::GET, "/health").send().await.expect("server still serving");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["name"], "GoTrue");
}

/// Asserts the legacy format: `{code: <status>, error_code, msg}`, no version echo.
async fn assert_legacy_error(resp: Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status for expected {code}");
    assert_eq!(header(resp.headers(), "x-sb-error-code"), Some(code));
    assert!(resp.headers().get("x-supabase-api-version").is_none(), "legacy answers do not echo the version");
    let body: Value = resp.json().await.expect("error body is JSON");
    assert_eq!(body["code"], json!(status), "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    assert!(body["msg"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body.get("message").is_none(), "{body}");
    assert!(body.get("error_id").is_none(), "error_id is for 5xx only: {body}");
    body
}

// ---------------------------------------------------------------- formats

#[tokio::test]
async fn version_2024_01_01_gets_the_new_format_and_the_echo() {
    let server = TestServer::start().await;
    let resp = server.request(Method::GET, "/user").send().await.expect("request");
    let body = assert_error(resp, 401, "no_authorization").await;
    assert_eq!(body["message"], "This endpoint requires a valid Bearer token");
    assert!(body.get("msg").is_none() && body.get("error_code").is_none(), "{body}");

    // Any later date counts as 2024-01-01, and the echo is the version the format follows.
    let resp = server.http.get(server.url("/user")).header("X-Supabase-Api-Version", "2025-06-30").send().await;
    assert_error(resp.expect("request"), 401, "no_authorization").await;
}

#[tokio::test]
async fn no_version_header_gets_the_legacy_format() {
    let server = TestServer::start().await;
    let resp = server.http.get(server.url("/user")).send().await.expect("request");
    let body = assert_legacy_error(resp, 401, "no_authorization").await;
    assert_eq!(body["msg"], "This endpoint requires a valid Bearer token");

    let resp = server.http.get(server.url("/user")).bearer_auth("garbage").send().await.expect("request");
    assert_legacy_error(resp, 403, "bad_jwt").await;
}

#[tokio::test]
async fn unparsable_or_older_versions_get_the_legacy_format() {
    let server = TestServer::start().await;
    for version in ["yesterday", "2023-05-01", "2023-12-31", "", "2024-13-01", "2024/01/01"] {
        let resp = server.http.get(server.url("/user")).header("X-Supabase-Api-Version", version).send().await;
        assert_legacy_error(resp.expect("request"), 401, "no_authorization").await;
    }
}

#[tokio::test]
async fn weak_password_reasons_in_both_formats() {
    let server = TestServer::start().await;
    let body = json!({"email": unique_email(), "password": "abc"});
    let resp = server.post("/signup", body.clone()).await;
    let new = assert_error(resp, 422, "weak_password").await;
    assert!(new["weak_password"]["reasons"].as_array().is_some_and(|r| r.contains(&json!("length"))), "{new}");

    let resp = server.http.post(server.url("/signup")).json(&body).send().await.expect("request");
    let legacy = assert_legacy_error(resp, 422, "weak_password").await;
    assert!(legacy["weak_password"]["reasons"].as_array().is_some_and(|r| r.contains(&json!("length"))), "{legacy}");
}

#[tokio::test]
async fn invalid_credentials_in_both_formats() {
    let server = TestServer::start().await;
    let email = unique_email();
    server.signup(&email).await;
    let body = json!({"email": email, "password": "wrong-password-1"});
    let resp = server.post("/token?grant_type=password", body.clone()).await;
    let new = assert_error(resp, 400, "invalid_credentials").await;
    assert_eq!(new["message"], "Invalid login credentials");
    let resp = server.http.post(server.url("/token?grant_type=password")).json(&body).send().await;
    let legacy = assert_legacy_error(resp.expect("request"), 400, "invalid_credentials").await;
    assert_eq!(legacy["msg"], "Invalid login credentials");
}

// ---------------------------------------------------------------- routes, methods, limits

#[tokio::test]
async fn unknown_route_is_404_json() {
    let server = TestServer::start().await;
    for path in ["/nope", "/admin/nope", "/auth/v1/signup", "/"] {
        let resp = server.request(Method::GET, path).send().await.expect("request");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = resp.json().await.expect("404 body is JSON");
        assert!(body.is_object(), "{path}: {body}");
    }
    let resp = server.request(Method::GET, "/nope").send().await.expect("request");
    assert_error(resp, 404, "not_found").await;
    assert_serving(&server).await;
}

#[tokio::test]
async fn wrong_method_is_405() {
    let server = TestServer::start().await;
    for (method, path) in [
        (Method::DELETE, "/signup"),
        (Method::GET, "/token"),
        (Method::GET, "/signup"),
        (Method::GET, "/logout"),
        (Method::POST, "/user"),
        (Method::DELETE, "/user"),
        (Method::POST, "/settings"),
        (Method::PUT, "/health"),
    ] {
        let resp = server.request(method.clone(), path).send().await.expect("request");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let body: Value = resp.json().await.expect("405 body is JSON");
        assert!(body.is_object(), "{method} {path}: {body}");
        assert_serving(&server).await;
    }
}

#[tokio::test]
async fn a_body_over_one_mib_is_413() {
    let server = TestServer::start().await;
    let email = unique_email();
    let huge = "a".repeat(1024 * 1024 + 16);
    let body = json!({"email": email, "password": PASSWORD, "data": {"blob": huge}});
    let resp = server.post("/signup", body).await;
    assert_error(resp, 413, "request_entity_too_large").await;
    assert_serving(&server).await;
    // Nothing was created: the same address signs up normally afterwards.
    server.signup(&email).await;

    // Just under the limit is read (and then judged on its merits).
    let under = json!({"email": unique_email(), "password": PASSWORD, "data": {"blob": "b".repeat(1024 * 1000)}});
    let resp = server.post("/signup", under).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Same on other endpoints, legacy format too.
    let resp = server
        .http
        .post(server.url("/token?grant_type=password"))
        .header("Content-Type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .expect("request");
    assert_legacy_error(resp, 413, "request_entity_too_large").await;
    assert_serving(&server).await;
}

// ---------------------------------------------------------------- CORS

#[tokio::test]
async fn cors_headers_on_simple_requests() {
    let server = TestServer::start().await;
    let origin = "https://app.example";
    let resp = server.request(Method::GET, "/health").header("Origin", origin).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_cors(resp.headers(), origin);

    // Error answers carry them too, or browsers could not read the error code.
    let resp = server.request(Method::GET, "/user").header("Origin", origin).send().await.expect("request");
    assert_cors(resp.headers(), origin);
    assert_error(resp, 401, "no_authorization").await;

    // Any origin is reflected.
    let other = "http://localhost:5173";
    let resp = server.post("/signup", json!({})).await;
    assert!(resp.headers().get("access-control-allow-origin").is_none(), "no Origin, no CORS headers");
    let resp = server.request(Method::GET, "/settings").header("Origin", other).send().await.expect("request");
    assert_cors(resp.headers(), other);
}

fn assert_cors(headers: &HeaderMap, origin: &str) {
    assert_eq!(header(headers, "access-control-allow-origin"), Some(origin));
    assert_eq!(header(headers, "access-control-allow-credentials"), Some("true"));
    let expose = header(headers, "access-control-expose-headers").unwrap_or("").to_ascii_lowercase();
    for h in ["x-total-count", "link", "x-supabase-api-version"] {
        assert!(expose.split(',').any(|e| e.trim() == h), "expose-headers lacks {h}: {expose}");
    }
}

#[tokio::test]
async fn cors_preflight_allows_what_the_clients_send() {
    let server = TestServer::start().await;
    let origin = "https://app.example";
    for path in ["/signup", "/token", "/user", "/logout"] {
        let resp = server
            .http
            .request(Method::OPTIONS, server.url(path))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", if path == "/user" { "PUT" } else { "POST" })
            .header("Access-Control-Request-Headers", "x-supabase-api-version,x-client-info,content-type,authorization")
            .send()
            .await
            .expect("preflight");
        assert!(resp.status().is_success(), "preflight {path}: {}", resp.status());
        let h = resp.headers();
        assert_eq!(header(h, "access-control-allow-origin"), Some(origin));
        assert_eq!(header(h, "access-control-allow-credentials"), Some("true"));
        let methods = header(h, "access-control-allow-methods").unwrap_or("").to_ascii_uppercase();
        let methods: Vec<&str> = methods.split(',').map(str::trim).collect();
        for m in ["GET", "POST", "PUT"] {
            assert!(methods.contains(&m), "allow-methods lacks {m}: {methods:?}");
        }
        let allowed = header(h, "access-control-allow-headers").unwrap_or("").to_ascii_lowercase();
        let allowed: Vec<&str> = allowed.split(',').map(str::trim).collect();
        for wanted in ["x-supabase-api-version", "x-client-info", "content-type", "authorization"] {
            assert!(allowed.contains(&wanted), "allow-headers lacks {wanted}: {allowed:?}");
        }
    }
    assert_serving(&server).await;
}

// ---------------------------------------------------------------- decoding

#[tokio::test]
async fn form_encoded_password_grant_works() {
    let server = TestServer::start().await;
    let email = unique_email();
    let signed_up = server.signup(&email).await;
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("email", &email)
        .append_pair("password", PASSWORD)
        .finish();
    let resp = server
        .request(Method::POST, "/token?grant_type=password")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let session: Value = resp.json().await.expect("json");
    assert_eq!(session["user"]["id"], signed_up["user"]["id"]);
    assert!(session["access_token"].is_string() && session["refresh_token"].is_string(), "{session}");

    // A wrong password in a form body is the ordinary error.
    let form = format!("email={}&password=wrong-one-42", email.replace('@', "%40"));
    let resp = server
        .request(Method::POST, "/token?grant_type=password")
        .header("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
        .body(form)
        .send()
        .await
        .expect("request");
    assert_error(resp, 400, "invalid_credentials").await;
}

#[tokio::test]
async fn lenient_json_nulls_unknown_fields_and_key_case() {
    let server = TestServer::start().await;
    let email = unique_email();
    // What auth-js / supabase-py send: nulls for absent fields, extra keys, odd key case.
    let resp = server
        .post(
            "/signup",
            json!({
                "EMAIL": email,
                "Password": PASSWORD,
                "data": null,
                "code_challenge": null,
                "code_challenge_method": null,
                "gotrue_meta_security": {"captcha_token": null},
                "something_new": [1, 2, 3]
            }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let session: Value = resp.json().await.expect("json");
    assert_eq!(session["user"]["email"], email.as_str());
    let resp = server
        .request(Method::POST, "/token?grant_type=password")
        .header("Content-Type", "application/json;charset=UTF-8")
        .body(json!({"email": email, "password": PASSWORD, "phone": null, "extra": true}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
}

// ---------------------------------------------------------------- no client mistake is a 5xx

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    auth: Auth,
}

enum Auth {
    None,
    Raw(HeaderValue),
    Valid,
}

fn case(name: &'static str, method: Method, path: &'static str, body: impl Into<Vec<u8>>) -> Case {
    Case { name, method, path, content_type: Some("application/json"), body: body.into(), auth: Auth::None }
}

impl Case {
    fn content_type(mut self, ct: Option<&'static str>) -> Case {
        self.content_type = ct;
        self
    }
    fn bearer(mut self, token: &str) -> Case {
        self.auth = Auth::Raw(HeaderValue::from_str(&format!("Bearer {token}")).expect("header value"));
        self
    }
    fn raw_auth(mut self, value: HeaderValue) -> Case {
        self.auth = Auth::Raw(value);
        self
    }
    fn valid_token(mut self) -> Case {
        self.auth = Auth::Valid;
        self
    }
}

#[tokio::test]
async fn no_client_mistake_gives_a_5xx() {
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    let token = session["access_token"].as_str().expect("token").to_owned();

    let long_email = format!("{}@example.com", "a".repeat(100_000));
    let deep = format!("{{\"data\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
    let int_sub = sign(&json!({"sub": 5, "role": "authenticated"}), SECRET, Algorithm::HS256);
    let string_exp = sign(
        &json!({"sub": uuid::Uuid::new_v4().to_string(), "exp": "tomorrow", "role": "authenticated"}),
        SECRET,
        Algorithm::HS256,
    );
    let array_session = sign(
        &json!({"sub": session["user"]["id"], "session_id": ["x"], "exp": now_secs() + 60}),
        SECRET,
        Algorithm::HS256,
    );
    let bad_session_id = sign(
        &json!({"sub": session["user"]["id"], "session_id": "not-a-uuid", "exp": now_secs() + 60}),
        SECRET,
        Algorithm::HS256,
    );

    let cases = vec![
        case("signup: empty body", Method::POST, "/signup", ""),
        case("signup: whitespace body", Method::POST, "/signup", "  \n "),
        case("signup: null", Method::POST, "/signup", "null"),
        case("signup: number", Method::POST, "/signup", "42"),
        case("signup: array", Method::POST, "/signup", "[{\"email\":\"a@example.com\"}]"),
        case("signup: string", Method::POST, "/signup", "\"hello\""),
        case("signup: truncated", Method::POST, "/signup", "{\"email\": \"a@example.com\", \"pass"),
        case("signup: email is a number", Method::POST, "/signup", r#"{"email": 5, "password": "x"}"#),
        case(
            "signup: data is a string",
            Method::POST,
            "/signup",
            r#"{"email": "a@example.com", "password": "correct-horse-9", "data": "s"}"#,
        ),
        case(
            "signup: bad email",
            Method::POST,
            "/signup",
            r#"{"email": "not-an-email", "password": "correct-horse-9"}"#,
        ),
        case("signup: bad phone", Method::POST, "/signup", r#"{"phone": "+++", "password": "correct-horse-9"}"#),
        case(
            "signup: huge email",
            Method::POST,
            "/signup",
            json!({"email": long_email, "password": PASSWORD}).to_string(),
        ),
        case(
            "signup: huge password",
            Method::POST,
            "/signup",
            json!({"email": unique_email(), "password": "p".repeat(200_000)}).to_string(),
        ),
        case("signup: invalid UTF-8", Method::POST, "/signup", b"{\"email\": \"\xff\xfe@example.com\"}".to_vec()),
        case("signup: deeply nested", Method::POST, "/signup", deep),
        case("signup: text/plain garbage", Method::POST, "/signup", "hello there").content_type(Some("text/plain")),
        case("signup: no content type, garbage", Method::POST, "/signup", "<xml/>").content_type(None),
        case("signup: JSON sent as a form", Method::POST, "/signup", r#"{"email":"a@example.com"}"#)
            .content_type(Some("application/x-www-form-urlencoded")),
        case("signup: multipart garbage", Method::POST, "/signup", "--x\r\n\r\n--x--")
            .content_type(Some("multipart/form-data; boundary=x")),
        case("token: no grant_type", Method::POST, "/token", "{}"),
        case("token: empty grant_type", Method::POST, "/token?grant_type=", "{}"),
        case("token: unknown grant_type", Method::POST, "/token?grant_type=magic", "{}"),
        case("token: grant_type in the body only", Method::POST, "/token", r#"{"grant_type": "password"}"#),
        case("token: password, empty body", Method::POST, "/token?grant_type=password", ""),
        case(
            "token: password, wrong types",
            Method::POST,
            "/token?grant_type=password",
            r#"{"email": ["a"], "password": {}}"#,
        ),
        case("token: password, nothing", Method::POST, "/token?grant_type=password", "{}"),
        case("token: password, invalid UTF-8", Method::POST, "/token?grant_type=password", b"\xc3\x28".to_vec()),
        case(
            "token: refresh, garbage",
            Method::POST,
            "/token?grant_type=refresh_token",
            r#"{"refresh_token": "garbage-garbage-garbage"}"#,
        ),
        case("token: refresh, short", Method::POST, "/token?grant_type=refresh_token", r#"{"refresh_token": "x"}"#),
        case("token: refresh, number", Method::POST, "/token?grant_type=refresh_token", r#"{"refresh_token": 123}"#),
        case("token: refresh, missing", Method::POST, "/token?grant_type=refresh_token", "{}"),
        case(
            "token: refresh, huge",
            Method::POST,
            "/token?grant_type=refresh_token",
            json!({"refresh_token": "r".repeat(500_000)}).to_string(),
        ),
        case("user: garbage bearer", Method::GET, "/user", "").bearer("garbage"),
        case("user: three dots", Method::GET, "/user", "").bearer("a.b.c"),
        case("user: base64 junk", Method::GET, "/user", "").bearer("eyJ.eyJ.sig"),
        case("user: non-ASCII bearer", Method::GET, "/user", "")
            .raw_auth(HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("obs-text header")),
        case("user: integer sub", Method::GET, "/user", "").bearer(&int_sub),
        case("user: string exp", Method::GET, "/user", "").bearer(&string_exp),
        case("user: array session_id", Method::GET, "/user", "").bearer(&array_session),
        case("user: non-UUID session_id", Method::GET, "/user", "").bearer(&bad_session_id),
        case("logout: garbage bearer", Method::POST, "/logout", "").bearer("garbage"),
        case("logout: garbage bearer, bad scope", Method::POST, "/logout?scope=bogus", "").bearer("garbage"),
        case("logout: empty bearer", Method::POST, "/logout", "").raw_auth(HeaderValue::from_static("Bearer ")),
        case("put user: data is a string", Method::PUT, "/user", r#"{"data": "string"}"#).valid_token(),
        case("put user: data is an array", Method::PUT, "/user", r#"{"data": [1, 2]}"#).valid_token(),
        case("put user: app_metadata is a number", Method::PUT, "/user", r#"{"app_metadata": 7}"#).valid_token(),
        case("put user: password is a number", Method::PUT, "/user", r#"{"password": 12345}"#).valid_token(),
        case("put user: null body", Method::PUT, "/user", "null").valid_token(),
        case("put user: empty body", Method::PUT, "/user", "").valid_token(),
        case("put user: bad email", Method::PUT, "/user", r#"{"email": "@@"}"#).valid_token(),
        case("put user: garbage bearer", Method::PUT, "/user", r#"{"data": {}}"#).bearer("garbage"),
    ];
    assert!(cases.len() >= 20);

    for c in cases {
        let mut req = server.request(c.method.clone(), c.path).body(c.body);
        if let Some(ct) = c.content_type {
            req = req.header("Content-Type", ct);
        }
        req = match c.auth {
            Auth::None => req,
            Auth::Raw(v) => req.header("Authorization", v),
            Auth::Valid => req.bearer_auth(&token),
        };
        let resp = req.send().await.unwrap_or_else(|e| panic!("{}: request failed: {e}", c.name));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_client_error(), "{}: expected 4xx, got {status}: {text}", c.name);
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {text:?}", c.name));
        assert!(body["code"].is_string(), "{}: no string code: {body}", c.name);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{}: no message: {body}", c.name);
    }

    // The server and the victim session are intact.
    assert_serving(&server).await;
    let resp = server.get_auth("/user", &token).await;
    assert_eq!(resp.status(), StatusCode::OK);
}
