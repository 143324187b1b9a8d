//! OAuth and OpenID Connect sign-in (SPEC §1.3 id_token, §1.15–1.16, §7) against providers that
//! speak real HTTP: a wiremock server plays GitHub, GitLab, Discord, Google, Apple, Azure,
//! Keycloak or a generic OpenID provider (discovery document, JWKS, RS256 id_tokens signed with
//! the test keys below). The browser's part — following the provider's redirect back to
//! `/callback` — is done by hand with a client that does not follow redirects.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expect is a failed test

use crate::common::*;
use ferrotrue::config::Config;
use ferrotrue_actors::clock::Timestamp;
use ferrotrue_actors::crypto::Secret;
use ferrotrue_actors::oauth::{ProviderConfig, ProviderKind};
use ferrotrue_actors::oauth_flow::{ExternalFlow, FlowState};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

// ---------------------------------------------------------------------------------------------
// The mock provider
// ---------------------------------------------------------------------------------------------

/// Test signing keys (2048-bit RSA, generated for these tests only). The provider publishes
/// GOOD_KEY's public half; EVIL_KEY signs forgeries.
const GOOD_KEY: &str = r"-----BEGIN PRIVATE KEY-----
MIIEuwIBADANBgkqhkiG9w0BAQEFAASCBKUwggShAgEAAoIBAQDD0CEh9rspisBR
ruKPNquBDkHXR2OncvlS+DTdwke8Fettee7w72BHPTgBele9FM6uXGJiTMU0+RF+
O9COYD6DUBOFJStHvjJNgSpb9gszgMRoGQhohtVVuN11yv06LiauBY7sZSW1bj/N
B7euPWoxwMm7ERmfrJ/4FbHQclkND3raR1YE4vjQP+3jkLmbNNrRFGKbwHP9epVR
Y1B/6k05+02Yt+98PpDw0vBdSIC48K69LhSyfOdUW7h8Efb1M/bo753aPgxHd+Ye
xCV0rSewo59d0HdNipe24HQqIhj4SCcx6T1Qpx93hySIlGBe2QQ+4n3GE+VZHfb9
MrEDzh4VAgMBAAECgf9pOJel7LwXRS07FJi6qObWflYe6VNcGnfpwlwn2BFq+EHO
fK704IhOrxOMQ2VWuPCS+eNSAz6vseGOUoV0sAP4Mkz+g0VzxIm+XqibV6CjSeAE
8kN5fVfw21PPYRft8XRwdelBuq4z7+Duf49DaiQtIGoUykvKbC+QmYwto6hbNSHR
vpsUqJZVtqZMTVuY7yQ5OugAohxXaBM3YdvTloKWdWjguq6VX1eie8yI6HttWLAb
mJk8UVZ1WN58HsTlWK6EgYZE1HoLTQ1QGw0pMOTYOP6a53dYOiEne6ogELrcsoT+
9ftfE+1mQBwjldaJ5Qe2SeDF+JF8eeJ/SNZYelECgYEA5m25hKhYQauelNIYOXNO
5GmRdiRzAZ7XwaTc+ZS9oc5w49uGCa7Co4kedf+qQkLKYetdKm8IwrKOMTqmo/7Y
33G3pm5f6xZuL2g2bbFUxiRafjC3kTtkyhy6jr1aHZW8QK4ucEACYGNiMxNKUeLS
xxg0UMVNgdymECtEiMFdkvkCgYEA2YsBcbcjqh3lTRuXFdJz4TrMPNCdUSMsul7z
xx3xLpE9lnCmZayDqpEzABPSgxpstHoW2RQ6XaZ2KvG1dUyjZBb7kJIChEwYzAK9
bJyl8Woc1r63ibuqSsit9g5vsyL8qMSfA0KDCCs+kXBYnLlzD3ffNtttJAcuyq17
67rsTv0CgYAhrgn+rMhxmM8N+4NU6liupAuB1CQHKZtpj1pJFId/Hfh8JXr68VM7
qfAM2TiehLqmA0vTxvTl2ElWQrdWowo55posNlfIubeTME08TT4R1AByD1bVYHQD
4p0V/fEs/9TLM2pQN9rhEcWpp3kmbNvYA96pq5z/jSusk1ZqErFFqQKBgQC3ro9B
nQkYErYSLUGcw13kxui8UMkEQVb65kGf1sBWOXxvEh7tqoRh+Me/QP12hVFT8eJo
2JOPj4YnLH+y00sCsAUpRJ+rZTVqzMV0d7AF7zr6d34xZaucCWYZZIccEmaTebFp
5zcMJrdlxh6L9moYnXZzs0KsMQRpTaJcoC/3YQKBgEK5/RoYcsCJWvJRkeR0XhPU
84v+bOfzAkFuwOvllWHUeZm5fr0IaZ8hKV7g80Y8Q+Zu7oHX3jXHnF3oWy/6qcEw
wSpoe1saTX14m08zxwwQ/3VrinbkcmKuRZWmUA6j1HL21/oLKRQ10Gu3g15gfhz5
p4uKQqsouc7OpePtae9i
-----END PRIVATE KEY-----";
const EVIL_KEY: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCpnOdt0SGRNZVr
GafWlqxBfY5ged8HNvdEuTje7n31vQB/8FX8DeXCykmUCvUmKQaeChmp31Q3Lqew
/mjTzZGzXqqojVqaUO/AGJmPvbjQexbpkOEEOtGHgonOobee1zPEXxrmobZTMy0Q
YnbIM3p0RSG/ywtkntf3nCveGPYW+Aqx2b/i35Vf4Np45j4P+25XbBS1KZ1UEe+I
M4Hpk/4BvTGljCPBES4c+JxUmP112n5Rea7ujXOhDxQPcUuxqJ2mkBTIx6B1iI08
T3QqKcxndn4nEpWYJArNAxm9GyE7KVGPO3tjEQepjgAAJN+oBP+lpXBi1oZDXEWK
3zT490YzAgMBAAECggEADMUKRXtrxnKqA7Md4d5cX95G+sUVWtLM4TWV7juda+oy
LSLk9MH+s0bzxpVGnK9h1w8vaT/62q0ece+aTwWLyF0PUy5SDNec6hg2cE4aQ0cp
IL+U7IxMtYhivXxYBmzxJRuV7mXTA/n3FOQDSZJanOgn7Z7ChlPqy/9/HzMMGaSs
8d8YhszCEZhMFv/DghaWyhhBmHrSN9mKc6THZkt5aXrVhIoF2Jf3IoPFBbYoGaPx
+WE7kzOJ9Xeopx92z5WhuWc0QMTiXO93I9jd5KO+VKUOAevZHwrk3z3BPCT84BP5
v8Bb3697B8FXIE9L7mV66AbnMrUfmx9VAmEZ+LPuOQKBgQDlwYwIP88r9JXQikKT
rMlZ90BagLX6GSoM+1Vobo7QTJlUQid7bH1+QxRmR7bmjXXt6cv3V4vFJwZJQCfM
z+zmlwmMKWXR12RUej4PnOUYMdUXs9KcSm+KAu2cCDYdjjxU4+KCZWr9IxQGq3Le
nwsED7hSDJYzMiysjiEIl/edKwKBgQC8/KurLg0iZdTedXuMcqQ+9SMlcmfC8rzO
RQm7SW0DZ2UdMPHG8jhatfeD4y4Wm2UWXNBSIRg7edIZtdz2mecwJoeC6Vx8wnVt
JlPxLBffZ0S7o7YxslFCSc4S/fN2hamf85cWLai5Aj3eFC/d7Pa9aF8rEZOjirDR
XRiEGpZHGQKBgAGqTHSG2d6MsEVJqz/cwbzYMOw3AJqmcgqUC8NtAbX6yCW3MQgQ
+jvfCpfPL0Euh0tJJYROayHrrXz8bQ1r+GCXeac9aZKCyCRgmnCMh5CMU+oPEJi3
ZWWPrd8ypAnEzSUkXbDqQUNCbNO7jGKWroLCBmj51GDcnTxG73BbgZzvAoGBAIL8
3j+Xe6ML0a8e3rNKAm1gmyupUCHe/N47G7OkANsLHxpMgkfSOx0kYpoXLCqfKkGF
sx45sgIHPYh0dOK3aXYGPoaOGHygi6NLnYLbfPBrM0ia//0SCyBW525idg0AN8GV
pHLK0tboptj2RPcc9yfw34WKeToxNrzmOcfWZbKBAoGBAI2Zy4IU5V4u5xKv6m7K
xTCpnXLIg3GX/uC0DQmz94xrXXmVVhc/bKlPaJEdBrzduh318N5R5/fgEOg3eyYg
v/ziwIbqtcHN0HU0JSnq51UiRPBSU8/X2a0x7IqdNC/jiYwMS4BJihnpzQx0iT5b
mEmj1kOd95FpwaCdCvhwGXn0
-----END PRIVATE KEY-----";

const KID: &str = "ferrotrue-test-key";
const CLIENT_ID: &str = "client-1";
const SECRET_VALUE: &str = "s3cret";
const SITE: &str = "http://localhost:3000";

fn encoding_key(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).expect("test key")
}

/// Signs `claims` as the provider would (RS256, `kid` set).
fn sign_with(pem: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.into());
    jsonwebtoken::encode(&header, claims, &encoding_key(pem)).expect("sign id_token")
}

fn id_token(claims: &Value) -> String {
    sign_with(GOOD_KEY, claims)
}

/// The provider's JWKS: GOOD_KEY's public key.
fn jwks() -> Value {
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding_key(GOOD_KEY), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(KID.into());
    json!({ "keys": [jwk] })
}

/// A mock identity provider.
struct Idp {
    mock: MockServer,
}

impl Idp {
    async fn start() -> Idp {
        Idp { mock: MockServer::start().await }
    }

    fn uri(&self) -> String {
        self.mock.uri()
    }

    async fn json(&self, verb: &str, at: &str, status: u16, body: Value) {
        Mock::given(method(verb))
            .and(path(at.to_owned()))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&self.mock)
            .await;
    }

    /// GitHub: token endpoint (expects our code and secret), `/user`, `/user/emails`.
    async fn github(&self, user: Value, emails: Value) {
        Mock::given(method("POST"))
            .and(path("/login/oauth/access_token"))
            .and(body_string_contains("code=good-code"))
            .and(body_string_contains(format!("client_secret={SECRET_VALUE}")))
            .and(body_string_contains("grant_type=authorization_code"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "access_token": "gh-access", "token_type": "bearer", "scope": "user:email",
                "refresh_token": "gh-refresh"
            })))
            .mount(&self.mock)
            .await;
        Mock::given(method("GET"))
            .and(path("/user"))
            .and(header("authorization", "Bearer gh-access"))
            .respond_with(ResponseTemplate::new(200).set_body_json(user))
            .mount(&self.mock)
            .await;
        Mock::given(method("GET"))
            .and(path("/user/emails"))
            .and(header("authorization", "Bearer gh-access"))
            .respond_with(ResponseTemplate::new(200).set_body_json(emails))
            .mount(&self.mock)
            .await;
    }

    /// An OpenID provider whose issuer is `<uri><prefix>`: discovery document and JWKS.
    async fn openid(&self, prefix: &str) -> String {
        let issuer = format!("{}{prefix}", self.uri());
        self.json(
            "GET",
            &format!("{prefix}/.well-known/openid-configuration"),
            200,
            json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "userinfo_endpoint": format!("{issuer}/userinfo"),
                "jwks_uri": format!("{issuer}/jwks"),
            }),
        )
        .await;
        self.json("GET", &format!("{prefix}/jwks"), 200, jwks()).await;
        issuer
    }

    /// The token endpoint at `at` answers with an id_token carrying `claims`.
    async fn token_with_id_token(&self, at: &str, claims: Value) {
        self.json(
            "POST",
            at,
            200,
            json!({"access_token": "idp-access", "token_type": "Bearer", "expires_in": 3600,
                   "refresh_token": "idp-refresh", "id_token": id_token(&claims)}),
        )
        .await;
    }
}

fn provider(url: &str) -> ProviderConfig {
    ProviderConfig {
        enabled: true,
        client_ids: vec![CLIENT_ID.into()],
        secret: Secret(SECRET_VALUE.into()),
        url: url.to_owned(),
        ..ProviderConfig::default()
    }
}

fn github_config(idp: &Idp) -> ProviderConfig {
    ProviderConfig { api_url: idp.uri(), ..provider(&idp.uri()) }
}

/// A server with `kind` configured as `cfg` (plus `tweak`).
async fn server_with(kind: ProviderKind, cfg: ProviderConfig, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(move |c| {
        c.settings.oauth.providers.insert(kind, cfg);
        c.settings.mail.uri_allow_list = vec!["http://app.example.com/**".into()];
        tweak(c);
    })
    .await
}

fn octocat() -> Value {
    json!({"id": 4242, "login": "octocat", "name": "The Octocat", "avatar_url": "https://avatars.example/4242"})
}

fn verified(email: &str) -> Value {
    json!([{"email": email, "verified": true, "primary": true}])
}

// ---------------------------------------------------------------------------------------------
// The browser's part
// ---------------------------------------------------------------------------------------------

/// A client that does not follow redirects (we look at each one).
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

fn pairs(s: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

/// The query of a URL.
fn query_of(u: &str) -> HashMap<String, String> {
    let without_fragment = u.split('#').next().unwrap_or(u);
    pairs(without_fragment.split_once('?').map(|(_, q)| q).unwrap_or(""))
}

/// The fragment of a URL.
fn fragment_of(u: &str) -> HashMap<String, String> {
    pairs(u.split_once('#').map(|(_, f)| f).unwrap_or(""))
}

/// `GET /authorize?<query>`: asserts the 302 and returns the provider URL and its `state`.
async fn authorize(server: &TestServer, query: &str) -> (String, String) {
    let resp = browser().get(server.url(&format!("/authorize?{query}"))).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND, "{}", resp.text().await.unwrap_or_default());
    let to = location(&resp);
    let state = query_of(&to).get("state").cloned().expect("state in the provider URL");
    (to, state)
}

/// The provider sends the browser back: `GET /callback?<params>`; returns status and Location.
async fn callback(server: &TestServer, params: &[(&str, &str)]) -> (StatusCode, String) {
    let resp = browser().get(server.url("/callback")).query(params).send().await.unwrap();
    let status = resp.status();
    (status, location(&resp))
}

/// A full implicit sign-in; returns the session parameters of the final fragment.
async fn sign_in_implicit(server: &TestServer, provider: &str) -> HashMap<String, String> {
    let (_, state) = authorize(server, &format!("provider={provider}")).await;
    let (status, to) = callback(server, &[("code", "good-code"), ("state", &state)]).await;
    assert_eq!(status, StatusCode::FOUND, "{to}");
    assert!(to.starts_with(SITE), "{to}");
    let f = fragment_of(&to);
    assert!(f.contains_key("access_token"), "{to}");
    f
}

async fn me(server: &TestServer, access: &str) -> Value {
    let resp = server.get_auth("/user", access).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// PKCE pair (RFC 7636 appendix B).
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// Asserts a redirect carrying GoTrue's error parameters; returns them (query).
fn assert_error_redirect(
    status: StatusCode,
    to: &str,
    base: &str,
    error: &str,
    code: Option<&str>,
) -> HashMap<String, String> {
    assert_eq!(status, StatusCode::FOUND, "{to}");
    assert!(to.starts_with(base), "{to}");
    let q = query_of(to);
    let f = fragment_of(to);
    assert_eq!(q.get("error").map(String::as_str), Some(error), "{to}");
    assert_eq!(f.get("error").map(String::as_str), Some(error), "{to}");
    assert_eq!(q.get("error_code").map(String::as_str), code, "{to}");
    assert_eq!(f.get("error_code").map(String::as_str), code, "{to}");
    assert!(f.contains_key("sb"), "{to}");
    assert!(!f.contains_key("access_token"), "{to}");
    q
}

/// Asserts GoTrue's redirect for a bad `state`: 303 to the site URL, query only.
fn assert_state_error(status: StatusCode, to: &str, code: &str) -> HashMap<String, String> {
    assert_eq!(status, StatusCode::SEE_OTHER, "{to}");
    assert!(to.starts_with(SITE), "{to}");
    assert!(!to.contains('#'), "{to}");
    let q = query_of(to);
    assert_eq!(q.get("error_code").map(String::as_str), Some(code), "{to}");
    assert_eq!(q.get("error").map(String::as_str), Some("invalid_request"), "{to}");
    q
}

// ---------------------------------------------------------------------------------------------
// GitHub-style: REST profile and email list
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn github_implicit_sign_up_then_sign_in() {
    let idp = Idp::start().await;
    idp.github(octocat(), verified("Octo@Example.com")).await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |_| {}).await;

    let (to, state) =
        authorize(&server, "provider=GitHub&scopes=repo&redirect_to=http://app.example.com/welcome").await;
    assert!(to.starts_with(&format!("{}/login/oauth/authorize?", idp.uri())), "{to}");
    let q = query_of(&to);
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], server.url("/callback"));
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["scope"], "user:email repo");
    assert!(Uuid::parse_str(&state).is_ok(), "state is the flow id: {state}");
    assert!(!q.contains_key("redirect_to") && !q.contains_key("provider"), "{to}");

    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &state)]).await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(to.starts_with("http://app.example.com/welcome#"), "{to}");
    let f = fragment_of(&to);
    let keys: Vec<&str> = to.split('#').nth(1).unwrap().split('&').map(|kv| kv.split('=').next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_at",
            "expires_in",
            "provider_refresh_token",
            "provider_token",
            "refresh_token",
            "sb",
            "token_type"
        ]
    );
    assert_eq!(f["provider_token"], "gh-access");
    assert_eq!(f["provider_refresh_token"], "gh-refresh");
    assert_eq!(f["token_type"], "bearer");
    let claims = claims(&f["access_token"]);
    assert_eq!(claims["amr"][0]["method"], "oauth");
    assert_eq!(claims["app_metadata"]["provider"], "github");

    let user = me(&server, &f["access_token"]).await;
    assert_eq!(user["email"], "octo@example.com");
    assert!(user["email_confirmed_at"].is_string(), "a verified provider email confirms: {user}");
    assert_eq!(user["app_metadata"], json!({"provider": "github", "providers": ["github"]}));
    assert_eq!(user["user_metadata"]["user_name"], "octocat");
    assert_eq!(user["user_metadata"]["full_name"], "The Octocat");
    assert_eq!(user["user_metadata"]["email_verified"], true);
    let identity = &user["identities"][0];
    assert_eq!(identity["provider"], "github");
    assert_eq!(identity["id"], "4242", "id = provider subject");
    assert!(Uuid::parse_str(identity["identity_id"].as_str().unwrap()).is_ok());
    assert_eq!(identity["identity_data"]["sub"], "4242");
    assert_eq!(identity["identity_data"]["iss"], idp.uri());
    assert_eq!(identity["identity_data"]["avatar_url"], "https://avatars.example/4242");
    assert_eq!(identity["email"], "octo@example.com");

    // Signing in again finds the same account through its identity.
    let again = sign_in_implicit(&server, "github").await;
    let again_user = me(&server, &again["access_token"]).await;
    assert_eq!(again_user["id"], user["id"]);
    assert_eq!(again_user["identities"].as_array().unwrap().len(), 1);
    // The refresh token of an OAuth session works like any other.
    let refreshed = server.refresh(&again["refresh_token"]).await;
    assert_eq!(refreshed.status(), 200);
}

#[tokio::test]
async fn github_pkce_exchange_returns_the_provider_tokens_once() {
    let idp = Idp::start().await;
    idp.github(octocat(), verified("pkce-octo@example.com")).await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |_| {}).await;

    let query = format!("provider=github&code_challenge={CHALLENGE}&code_challenge_method=s256&redirect_to={SITE}/cb");
    let (to, state) = authorize(&server, &query).await;
    let q = query_of(&to);
    assert!(!q.contains_key("code_challenge"), "our PKCE challenge is not the provider's: {to}");
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &state)]).await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(to.starts_with(&format!("{SITE}/cb?code=")), "{to}");
    assert!(!to.contains("access_token"), "{to}");
    let code = query_of(&to)["code"].clone();
    assert!(Uuid::parse_str(&code).is_ok());

    // The same state cannot be used again.
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &state)]).await;
    assert_state_error(status, &to, "flow_state_already_used");

    let wrong =
        server.post("/token?grant_type=pkce", json!({"auth_code": code, "code_verifier": "x".repeat(43)})).await;
    assert_error(wrong, 400, "bad_code_verifier").await;
    let resp = server.post("/token?grant_type=pkce", json!({"auth_code": code, "code_verifier": VERIFIER})).await;
    assert_eq!(resp.status(), 200);
    let session: Value = resp.json().await.unwrap();
    assert_eq!(session["provider_token"], "gh-access");
    assert_eq!(session["provider_refresh_token"], "gh-refresh");
    assert_eq!(session["user"]["email"], "pkce-octo@example.com");
    assert_eq!(claims(session["access_token"].as_str().unwrap())["amr"][0]["method"], "oauth");
    let again = server.post("/token?grant_type=pkce", json!({"auth_code": code, "code_verifier": VERIFIER})).await;
    assert_error(again, 404, "flow_state_not_found").await;
}

#[tokio::test]
async fn password_sessions_carry_no_provider_tokens() {
    // Only OAuth sign-ins carry provider tokens.
    let server = TestServer::start().await;
    let session = server.signup(&unique_email()).await;
    assert!(session.get("provider_token").is_none(), "{session}");
}

#[tokio::test]
async fn a_verified_email_links_to_the_existing_account() {
    let idp = Idp::start().await;
    let email = unique_email();
    idp.github(
        octocat(),
        json!([
            {"email": "other@example.com", "verified": false, "primary": false},
            {"email": email.to_uppercase(), "verified": true, "primary": true},
        ]),
    )
    .await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |_| {}).await;
    let existing = server.signup(&email).await;

    let f = sign_in_implicit(&server, "github").await;
    let user = me(&server, &f["access_token"]).await;
    assert_eq!(user["id"], existing["user"]["id"], "linked, not a second account");
    let providers: Vec<&str> =
        user["identities"].as_array().unwrap().iter().map(|i| i["provider"].as_str().unwrap()).collect();
    assert_eq!(providers, ["email", "github"]);
    assert_eq!(user["app_metadata"]["providers"], json!(["email", "github"]));
    assert_eq!(user["app_metadata"]["provider"], "email");
    assert_eq!(user["user_metadata"]["user_name"], "octocat", "provider claims merged into user_metadata");
    // The password still works: the account was confirmed, nothing was taken away.
    server.login(&email).await;
    let audit = server.actors.users.audit_page(1, 50, None).await.unwrap();
    assert!(audit.items.iter().any(|e| e.payload.0.contains("\"identity_linked\"")), "audited");
}

#[tokio::test]
async fn an_unverified_provider_email_needs_verification_and_never_links() {
    let idp = Idp::start().await;
    let email = unique_email();
    idp.github(octocat(), json!([{"email": email, "verified": false, "primary": true}])).await;
    let (server, sink) = TestServer::start_with_mail(|c| {
        c.settings.signup.mailer_autoconfirm = false;
        c.settings.oauth.providers.insert(ProviderKind::GitHub, github_config(&idp));
    })
    .await;

    let (_, state) = authorize(&server, "provider=github").await;
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &state)]).await;
    let q = assert_error_redirect(status, &to, SITE, "access_denied", Some("provider_email_needs_verification"));
    assert_eq!(
        q["error_description"],
        "Unverified email with github. A confirmation email has been sent to your github email"
    );
    // The account exists (committed), unconfirmed, and a confirmation mail went out.
    let mails = crate::smtp::wait_for_to(&sink, &email, 1).await;
    assert!(mails[0].find_verify_link().unwrap().contains("type=signup"));
    let user = server.actors.users.by_email(&email).await.unwrap().expect("user created");
    assert!(user.email_confirmed_at.is_none());
    assert_eq!(user.identities[0].provider, "github");
}

#[tokio::test]
async fn unverified_sign_ins_can_be_allowed() {
    let idp = Idp::start().await;
    let email = unique_email();
    idp.github(octocat(), json!([{"email": email, "verified": false, "primary": true}])).await;
    let (server, _sink) = TestServer::start_with_mail(|c| {
        c.settings.signup.mailer_autoconfirm = false;
        c.settings.oauth.allow_unverified_email_sign_ins = true;
        c.settings.oauth.providers.insert(ProviderKind::GitHub, github_config(&idp));
    })
    .await;
    let f = sign_in_implicit(&server, "github").await;
    let user = me(&server, &f["access_token"]).await;
    assert_eq!(user["email"], email.as_str());
    assert!(user["email_confirmed_at"].is_null(), "{user}");
}

#[tokio::test]
async fn a_pre_registered_unconfirmed_account_loses_its_password() {
    // Someone signs up with the victim's address and a password, never confirming it; the
    // victim then signs in with a provider that verified the address.
    let idp = Idp::start().await;
    let email = unique_email();
    idp.github(octocat(), verified(&email)).await;
    let (server, _sink) = TestServer::start_with_mail(|c| {
        c.settings.signup.mailer_autoconfirm = false;
        c.settings.smtp.max_frequency = Duration::ZERO;
        c.settings.oauth.providers.insert(ProviderKind::GitHub, github_config(&idp));
    })
    .await;
    let squat = server.post("/signup", json!({"email": email, "password": PASSWORD, "data": {"planted": true}})).await;
    assert_eq!(squat.status(), 200);
    let squat: Value = squat.json().await.unwrap();

    let f = sign_in_implicit(&server, "github").await;
    let user = me(&server, &f["access_token"]).await;
    assert_eq!(user["id"], squat["id"], "the address's account, now the victim's");
    assert!(user["email_confirmed_at"].is_string());
    let providers: Vec<&str> =
        user["identities"].as_array().unwrap().iter().map(|i| i["provider"].as_str().unwrap()).collect();
    assert_eq!(providers, ["github"], "the unconfirmed email identity is gone");
    assert_eq!(user["app_metadata"]["provider"], "github");
    assert!(user["user_metadata"].get("planted").is_none(), "metadata replaced: {user}");
    let stolen = server.post("/token?grant_type=password", json!({"email": email, "password": PASSWORD})).await;
    assert_error(stolen, 400, "invalid_credentials").await;
}

#[tokio::test]
async fn bad_state_goes_to_the_site_url() {
    let idp = Idp::start().await;
    idp.github(octocat(), verified("replay@example.com")).await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |_| {}).await;

    let (status, to) = callback(&server, &[("code", "good-code")]).await;
    assert_state_error(status, &to, "bad_oauth_callback");
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", "not-a-uuid")]).await;
    assert_state_error(status, &to, "bad_oauth_state");
    let unknown = Uuid::new_v4().to_string();
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &unknown)]).await;
    assert_state_error(status, &to, "bad_oauth_state");

    // Replay: an implicit flow's state is single use.
    let (_, state) = authorize(&server, "provider=github&redirect_to=http://app.example.com/x").await;
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &state)]).await;
    assert_eq!(status, StatusCode::FOUND, "{to}");
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &state)]).await;
    let q = assert_state_error(status, &to, "bad_oauth_state");
    assert_eq!(q["error_description"], "OAuth state not found or expired");
}

#[tokio::test]
async fn an_expired_flow_is_refused() {
    let idp = Idp::start().await;
    idp.github(octocat(), verified("late@example.com")).await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |_| {}).await;
    let flow = FlowState {
        id: Uuid::new_v4(),
        auth_code: Uuid::new_v4().to_string(),
        code_challenge: String::new(),
        code_challenge_method: String::new(),
        provider: "github".into(),
        authentication_method: "oauth".into(),
        user_id: None,
        redirect_to: "http://app.example.com/x".into(),
        created_at: Timestamp(server.actors.clock.now().0 - 301_000_000),
    };
    server.actors.oauth.create_external(flow.clone(), ExternalFlow::default()).await.unwrap();
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &flow.id.to_string())]).await;
    let q = assert_state_error(status, &to, "bad_oauth_state");
    assert_eq!(q["error_description"], "OAuth state has expired");
    assert!(idp.mock.received_requests().await.unwrap().is_empty(), "the provider was not called");
}

#[tokio::test]
async fn flows_survive_a_restart() {
    let idp = Idp::start().await;
    idp.github(octocat(), verified("restart@example.com")).await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |_| {}).await;
    let (_, state) = authorize(&server, "provider=github&redirect_to=http://app.example.com/after").await;
    let server = server.restart().await;
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &state)]).await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(to.starts_with("http://app.example.com/after#access_token="), "{to}");
}

#[tokio::test]
async fn denied_consent_is_passed_through() {
    let idp = Idp::start().await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |_| {}).await;
    let (_, state) = authorize(&server, "provider=github&redirect_to=http://app.example.com/login?next=%2Fhome").await;
    let (status, to) = callback(
        &server,
        &[
            ("error", "access_denied"),
            ("error_description", "The user has denied your application access."),
            ("state", &state),
        ],
    )
    .await;
    let q = assert_error_redirect(status, &to, "http://app.example.com/login?next=/home&", "access_denied", None);
    assert_eq!(q["error_description"], "The user has denied your application access.");
    assert_eq!(q["next"], "/home", "the app's own query is kept");
    assert!(idp.mock.received_requests().await.unwrap().is_empty(), "no code exchange");
}

#[tokio::test]
async fn provider_failures_redirect_with_server_error() {
    // Token endpoint answers 500.
    let idp = Idp::start().await;
    idp.json("POST", "/login/oauth/access_token", 500, json!({"message": "boom"})).await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |_| {}).await;
    let (_, state) = authorize(&server, "provider=github").await;
    let (status, to) = callback(&server, &[("code", "abcdef"), ("state", &state)]).await;
    let q = assert_error_redirect(status, &to, SITE, "server_error", Some("unexpected_failure"));
    assert_eq!(q["error_description"], "Unable to exchange external code: abcd");

    // GitHub's "200 with an error" answer to a bad code.
    let idp = Idp::start().await;
    idp.json("POST", "/login/oauth/access_token", 200, json!({"error": "bad_verification_code"})).await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |_| {}).await;
    let (_, state) = authorize(&server, "provider=github").await;
    let (status, to) = callback(&server, &[("code", "stale"), ("state", &state)]).await;
    assert_error_redirect(status, &to, SITE, "server_error", Some("unexpected_failure"));

    // Profile endpoint answers 500.
    let idp = Idp::start().await;
    idp.json("POST", "/login/oauth/access_token", 200, json!({"access_token": "t"})).await;
    idp.json("GET", "/user", 500, json!({})).await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |_| {}).await;
    let (_, state) = authorize(&server, "provider=github").await;
    let (status, to) = callback(&server, &[("code", "abcdef"), ("state", &state)]).await;
    let q = assert_error_redirect(status, &to, SITE, "server_error", Some("unexpected_failure"));
    assert_eq!(q["error_description"], "Error getting user profile from external provider");

    // No email at all.
    let idp = Idp::start().await;
    idp.github(octocat(), json!([])).await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |_| {}).await;
    let (_, state) = authorize(&server, "provider=github").await;
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &state)]).await;
    let q = assert_error_redirect(status, &to, SITE, "server_error", Some("unexpected_failure"));
    assert_eq!(q["error_description"], "Error getting user email from external provider");

    // Missing code.
    let (_, state) = authorize(&server, "provider=github").await;
    let (status, to) = callback(&server, &[("state", &state)]).await;
    assert_error_redirect(status, &to, SITE, "invalid_request", Some("bad_oauth_callback"));
}

#[tokio::test]
async fn a_slow_provider_ends_in_a_redirect_not_a_timeout() {
    let idp = Idp::start().await;
    Mock::given(method("POST"))
        .and(path("/login/oauth/access_token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"access_token": "t"})).set_delay(Duration::from_secs(5)),
        )
        .mount(&idp.mock)
        .await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |c| {
        c.settings.oauth.http_timeout = Duration::from_millis(300);
    })
    .await;
    let (_, state) = authorize(&server, "provider=github").await;
    let (status, to) = callback(&server, &[("code", "abcdef"), ("state", &state)]).await;
    assert_error_redirect(status, &to, SITE, "server_error", Some("unexpected_failure"));
}

#[tokio::test]
async fn sign_up_can_be_disabled() {
    let idp = Idp::start().await;
    idp.github(octocat(), verified("nosignup@example.com")).await;
    let server =
        server_with(ProviderKind::GitHub, github_config(&idp), |c| c.settings.signup.disable_signup = true).await;
    let (_, state) = authorize(&server, "provider=github").await;
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &state)]).await;
    assert_error_redirect(status, &to, SITE, "access_denied", Some("signup_disabled"));
}

#[tokio::test]
async fn authorize_checks_provider_pkce_and_forwards_extra_parameters() {
    let idp = Idp::start().await;
    let mut disabled = github_config(&idp);
    disabled.enabled = false;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |c| {
        c.settings.oauth.providers.insert(ProviderKind::GitLab, provider(""));
        c.settings.oauth.providers.get_mut(&ProviderKind::GitLab).unwrap().enabled = false;
    })
    .await;
    let get = |q: &str| server.request(Method::GET, &format!("/authorize?{q}")).send();
    let body = assert_error(get("provider=nope").await.unwrap(), 400, "validation_failed").await;
    assert_eq!(body["message"], "Unsupported provider: Provider nope could not be found");
    let body = assert_error(get("provider=gitlab").await.unwrap(), 400, "validation_failed").await;
    assert_eq!(body["message"], "Unsupported provider: provider is not enabled");
    let body = assert_error(get("provider=google").await.unwrap(), 400, "validation_failed").await;
    assert_eq!(body["message"], "Unsupported provider: provider is not enabled");
    assert_error(get("").await.unwrap(), 400, "validation_failed").await;
    let body = assert_error(get("provider=github&code_challenge=abc").await.unwrap(), 400, "validation_failed").await;
    assert_eq!(body["message"], "PKCE flow requires code_challenge_method and code_challenge");
    assert_error(
        get("provider=github&code_challenge=short&code_challenge_method=s256").await.unwrap(),
        400,
        "validation_failed",
    )
    .await;

    // Extra parameters reach the provider; the ones the server controls do not.
    let (to, state) = authorize(
        &server,
        "provider=github&login=octocat&allow_signup=false&redirect_uri=https://evil.example/cb&state=evil&client_id=evil&scope=admin&redirect_to=https://evil.example/",
    )
    .await;
    let q = query_of(&to);
    assert_eq!(q["login"], "octocat");
    assert_eq!(q["allow_signup"], "false");
    assert_eq!(q["redirect_uri"], server.url("/callback"));
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["scope"], "user:email");
    assert_eq!(to.matches("scope=").count(), 1, "{to}");
    assert_ne!(state, "evil");
    // A refused redirect_to falls back to the site URL.
    let flow = server.actors.oauth.claim(Uuid::parse_str(&state).unwrap()).await.unwrap();
    assert_eq!(flow.flow.redirect_to, SITE);
}

#[tokio::test]
async fn settings_list_the_enabled_providers() {
    let idp = Idp::start().await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |c| {
        c.settings.oauth.providers.insert(ProviderKind::Oidc, provider("https://id.example.com"));
        let mut off = provider("https://id.example.com");
        off.enabled = false;
        c.settings.oauth.providers.insert(ProviderKind::Keycloak, off);
    })
    .await;
    let settings: Value = server.request(Method::GET, "/settings").send().await.unwrap().json().await.unwrap();
    let external = &settings["external"];
    assert_eq!(external["github"], true);
    assert_eq!(external["oidc"], true);
    assert_eq!(external["keycloak"], false);
    assert_eq!(external["google"], false);
    assert_eq!(external["email"], true);

    let plain = TestServer::start().await;
    let settings: Value = plain.request(Method::GET, "/settings").send().await.unwrap().json().await.unwrap();
    assert!(settings["external"].get("oidc").is_none(), "the default shape is GoTrue's");
}

// ---------------------------------------------------------------------------------------------
// The other providers, end to end
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gitlab_and_discord_sign_in() {
    let idp = Idp::start().await;
    idp.json("POST", "/oauth/token", 200, json!({"access_token": "gl-access"})).await;
    idp.json(
        "GET",
        "/api/v4/user",
        200,
        json!({"id": 7, "name": "Lab User", "email": "lab@example.com",
        "confirmed_at": "2024-01-01T00:00:00Z", "avatar_url": "https://a/7"}),
    )
    .await;
    idp.json("GET", "/api/v4/user/emails", 200, json!([{"id": 1, "email": "alt@example.com"}])).await;
    let server = server_with(ProviderKind::GitLab, provider(&idp.uri()), |_| {}).await;
    let (to, _) = authorize(&server, "provider=gitlab").await;
    assert!(to.starts_with(&format!("{}/oauth/authorize?", idp.uri())), "{to}");
    assert_eq!(query_of(&to)["scope"], "read_user");
    let f = sign_in_implicit(&server, "gitlab").await;
    let user = me(&server, &f["access_token"]).await;
    assert_eq!(user["email"], "lab@example.com");
    assert!(user["email_confirmed_at"].is_string());
    assert_eq!(user["identities"][0]["id"], "7");
    assert_eq!(user["user_metadata"]["picture"], "https://a/7");

    let idp = Idp::start().await;
    idp.json("POST", "/api/oauth2/token", 200, json!({"access_token": "dc-access", "refresh_token": "dc-refresh"}))
        .await;
    idp.json("GET", "/api/users/@me", 200, json!({"id": "80351110224678912", "username": "nelly", "discriminator": "1337",
        "global_name": "Nelly", "avatar": "8342729096ea3675442027381ff50dfe", "email": "nelly@example.com", "verified": true}))
    .await;
    let server = server_with(ProviderKind::Discord, provider(&idp.uri()), |_| {}).await;
    let (to, _) = authorize(&server, "provider=discord").await;
    assert!(to.starts_with(&format!("{}/api/oauth2/authorize?", idp.uri())), "{to}");
    assert_eq!(query_of(&to)["scope"], "email identify");
    let f = sign_in_implicit(&server, "discord").await;
    assert_eq!(f["provider_refresh_token"], "dc-refresh");
    let user = me(&server, &f["access_token"]).await;
    assert_eq!(user["email"], "nelly@example.com");
    assert_eq!(user["user_metadata"]["name"], "nelly#1337");
    assert_eq!(user["user_metadata"]["custom_claims"]["global_name"], "Nelly");
    assert_eq!(
        user["user_metadata"]["avatar_url"],
        "https://cdn.discordapp.com/avatars/80351110224678912/8342729096ea3675442027381ff50dfe.png"
    );
}

/// Standard claims of a provider-issued id_token.
fn oidc_claims(issuer: &str, sub: &str, email: &str, nonce: &str) -> Value {
    let now = now_secs();
    json!({"iss": issuer, "sub": sub, "aud": CLIENT_ID, "iat": now, "exp": now + 600, "nonce": nonce,
           "email": email, "email_verified": true, "name": "Ann Lee", "picture": "https://pic/ann"})
}

#[tokio::test]
async fn generic_openid_provider_by_issuer_url() {
    let idp = Idp::start().await;
    let issuer = idp.openid("/realm").await;
    let server = server_with(ProviderKind::Oidc, provider(&issuer), |_| {}).await;

    let (to, state) =
        authorize(&server, &format!("provider=oidc&code_challenge={CHALLENGE}&code_challenge_method=S256")).await;
    assert!(to.starts_with(&format!("{issuer}/authorize?")), "endpoint from discovery: {to}");
    let q = query_of(&to);
    assert_eq!(q["scope"], "openid email profile");
    let nonce = q.get("nonce").cloned().expect("a nonce for the id_token");
    idp.token_with_id_token("/realm/token", oidc_claims(&issuer, "ann-1", "ann@oidc.example", &nonce)).await;

    let (status, to) = callback(&server, &[("code", "c0de"), ("state", &state)]).await;
    assert_eq!(status, StatusCode::FOUND, "{to}");
    let code = query_of(&to).get("code").cloned().unwrap_or_else(|| panic!("{to}"));
    let resp = server.post("/token?grant_type=pkce", json!({"auth_code": code, "code_verifier": VERIFIER})).await;
    assert_eq!(resp.status(), 200);
    let session: Value = resp.json().await.unwrap();
    assert_eq!(session["provider_token"], "idp-access");
    let user = &session["user"];
    assert_eq!(user["email"], "ann@oidc.example");
    assert_eq!(user["app_metadata"]["provider"], "oidc");
    assert_eq!(user["identities"][0]["id"], "ann-1");
    assert_eq!(user["user_metadata"]["iss"], issuer);
    assert_eq!(user["user_metadata"]["full_name"], "Ann Lee");
}

#[tokio::test]
async fn an_id_token_with_the_wrong_nonce_or_signature_is_refused_at_the_callback() {
    let idp = Idp::start().await;
    let issuer = idp.openid("").await;
    let server = server_with(ProviderKind::Oidc, provider(&issuer), |_| {}).await;
    let (_, state) = authorize(&server, "provider=oidc").await;
    idp.token_with_id_token("/token", oidc_claims(&issuer, "ann-2", "ann2@oidc.example", "replayed-nonce")).await;
    let (status, to) = callback(&server, &[("code", "c0de"), ("state", &state)]).await;
    let q = assert_error_redirect(status, &to, SITE, "server_error", Some("unexpected_failure"));
    assert_eq!(q["error_description"], "Error getting user profile from external provider");

    let idp = Idp::start().await;
    let issuer = idp.openid("").await;
    let server = server_with(ProviderKind::Oidc, provider(&issuer), |_| {}).await;
    let (to, state) = authorize(&server, "provider=oidc").await;
    let nonce = query_of(&to)["nonce"].clone();
    let forged = sign_with(EVIL_KEY, &oidc_claims(&issuer, "ann-3", "ann3@oidc.example", &nonce));
    idp.json("POST", "/token", 200, json!({"access_token": "a", "id_token": forged})).await;
    let (status, to) = callback(&server, &[("code", "c0de"), ("state", &state)]).await;
    assert_error_redirect(status, &to, SITE, "server_error", Some("unexpected_failure"));
    assert!(server.actors.users.by_email("ann3@oidc.example").await.unwrap().is_none());
}

#[tokio::test]
async fn keycloak_reads_userinfo() {
    let idp = Idp::start().await;
    let realm = format!("{}/realms/acme", idp.uri());
    idp.json("POST", "/realms/acme/protocol/openid-connect/token", 200, json!({"access_token": "kc-access"})).await;
    Mock::given(method("GET"))
        .and(path("/realms/acme/protocol/openid-connect/userinfo"))
        .and(header("authorization", "Bearer kc-access"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "sub": "kc-9", "name": "Kay Cloak", "email": "kay@kc.example", "email_verified": true, "groups": ["admins"]
        })))
        .mount(&idp.mock)
        .await;
    let server = server_with(ProviderKind::Keycloak, provider(&realm), |_| {}).await;
    let (to, _) = authorize(&server, "provider=keycloak").await;
    assert!(to.starts_with(&format!("{realm}/protocol/openid-connect/auth?")), "{to}");
    let f = sign_in_implicit(&server, "keycloak").await;
    let user = me(&server, &f["access_token"]).await;
    assert_eq!(user["email"], "kay@kc.example");
    assert_eq!(user["identities"][0]["provider"], "keycloak");
    assert_eq!(user["user_metadata"]["custom_claims"]["groups"], json!(["admins"]));
}

#[tokio::test]
async fn google_azure_and_apple_verify_their_id_tokens() {
    // Google: discovery at the (overridden) issuer.
    let idp = Idp::start().await;
    let issuer = idp.openid("").await;
    let server = server_with(ProviderKind::Google, provider(&issuer), |_| {}).await;
    let (to, state) = authorize(&server, "provider=google&access_type=offline&prompt=consent").await;
    let q = query_of(&to);
    assert_eq!((q["scope"].as_str(), q["access_type"].as_str()), ("email profile", "offline"));
    let mut claims = oidc_claims(&issuer, "g-1", "gina@gmail.example", &q["nonce"]);
    claims["hd"] = json!("example.com");
    idp.token_with_id_token("/token", claims).await;
    let (_, to) = callback(&server, &[("code", "c"), ("state", &state)]).await;
    let user = me(&server, &fragment_of(&to)["access_token"]).await;
    assert_eq!(user["email"], "gina@gmail.example");
    assert_eq!(user["user_metadata"]["custom_claims"]["hd"], "example.com");

    // Azure: a tenant authority; keys found through the token's issuer.
    let idp = Idp::start().await;
    let issuer = idp.openid("/tenant-a/v2.0").await;
    let authority = format!("{}/tenant-a", idp.uri());
    let server = server_with(ProviderKind::Azure, provider(&authority), |_| {}).await;
    let (to, state) = authorize(&server, "provider=azure&scopes=email").await;
    assert!(to.starts_with(&format!("{authority}/oauth2/v2.0/authorize?")), "{to}");
    let q = query_of(&to);
    assert_eq!(q["scope"], "openid email");
    let mut claims = oidc_claims(&issuer, "az-1", "az@contoso.example", &q["nonce"]);
    claims["xms_edov"] = json!(true);
    claims["tid"] = json!("tenant-a");
    idp.token_with_id_token("/tenant-a/oauth2/v2.0/token", claims).await;
    let (_, to) = callback(&server, &[("code", "c"), ("state", &state)]).await;
    let user = me(&server, &fragment_of(&to)["access_token"]).await;
    assert_eq!(user["email"], "az@contoso.example");
    assert!(user["email_confirmed_at"].is_string());
    assert_eq!(user["user_metadata"]["custom_claims"]["tid"], "tenant-a");

    // Apple: form_post back to POST /callback, the name only in the `user` field.
    let idp = Idp::start().await;
    let issuer = idp.openid("").await;
    let server = server_with(ProviderKind::Apple, provider(&issuer), |_| {}).await;
    let (to, state) = authorize(&server, "provider=apple").await;
    let q = query_of(&to);
    assert_eq!((q["response_mode"].as_str(), q["scope"].as_str()), ("form_post", "email name"));
    let mut claims = oidc_claims(&issuer, "ap-1", "x1y2@privaterelay.appleid.com", &q["nonce"]);
    claims["is_private_email"] = json!("true");
    idp.token_with_id_token("/token", claims).await;
    let form = [("code", "c"), ("state", state.as_str()), ("user", r#"{"name":{"firstName":"Ann","lastName":"Lee"}}"#)];
    let resp = browser().post(server.url("/callback")).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let user = me(&server, &fragment_of(&location(&resp))["access_token"]).await;
    assert_eq!(user["email"], "x1y2@privaterelay.appleid.com");
    assert_eq!(user["user_metadata"]["full_name"], "Ann Lee");
    assert_eq!(user["user_metadata"]["custom_claims"]["is_private_email"], true);
}

// ---------------------------------------------------------------------------------------------
// grant_type=id_token
// ---------------------------------------------------------------------------------------------

async fn id_token_grant(server: &TestServer, body: Value) -> reqwest::Response {
    server.post("/token?grant_type=id_token", body).await
}

async fn assert_oauth_error(resp: reqwest::Response, error: &str, description: &str) {
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"error": error, "error_description": description}));
}

fn sha256_hex(s: &str) -> String {
    use std::fmt::Write;
    let digest = ferrotrue_actors::crypto::sha256(s.as_bytes());
    digest.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[tokio::test]
async fn id_token_grant_verifies_signature_audience_expiry_and_nonce() {
    let idp = Idp::start().await;
    let issuer = idp.openid("").await;
    let server = server_with(ProviderKind::Oidc, provider(&issuer), |_| {}).await;
    let nonce = "raw-nonce-from-the-app";

    // Happy path: nonce in the token is sha256_hex of the one the app passes.
    let token = id_token(&oidc_claims(&issuer, "idt-1", "idt@example.com", &sha256_hex(nonce)));
    let resp = id_token_grant(&server, json!({"provider": "oidc", "id_token": token, "nonce": nonce})).await;
    assert_eq!(resp.status(), 200);
    let session: Value = resp.json().await.unwrap();
    assert_eq!(session["user"]["email"], "idt@example.com");
    assert_eq!(session["user"]["app_metadata"]["provider"], "oidc");
    assert_eq!(claims(session["access_token"].as_str().unwrap())["amr"][0]["method"], "oauth");
    // The same subject again: the same user.
    let token = id_token(&oidc_claims(&issuer, "idt-1", "idt@example.com", &sha256_hex(nonce)));
    let again: Value = id_token_grant(&server, json!({"provider": "oidc", "id_token": token, "nonce": nonce}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["user"]["id"], session["user"]["id"]);
    // By issuer instead of provider name.
    let token = id_token(&oidc_claims(&issuer, "idt-1", "idt@example.com", &sha256_hex(nonce)));
    let resp =
        id_token_grant(&server, json!({"issuer": issuer, "client_id": CLIENT_ID, "id_token": token, "nonce": nonce}))
            .await;
    assert_eq!(resp.status(), 200);

    let claims = oidc_claims(&issuer, "idt-2", "idt2@example.com", &sha256_hex(nonce));
    let forged = sign_with(EVIL_KEY, &claims);
    assert_oauth_error(
        id_token_grant(&server, json!({"provider": "oidc", "id_token": forged, "nonce": nonce})).await,
        "invalid request",
        "Bad ID token",
    )
    .await;
    let mut tampered = id_token(&claims);
    tampered.pop();
    assert_oauth_error(
        id_token_grant(&server, json!({"provider": "oidc", "id_token": tampered, "nonce": nonce})).await,
        "invalid request",
        "Bad ID token",
    )
    .await;

    let mut other_aud = claims.clone();
    other_aud["aud"] = json!(["someone-else", "another"]);
    let resp =
        id_token_grant(&server, json!({"provider": "oidc", "id_token": id_token(&other_aud), "nonce": nonce})).await;
    assert_oauth_error(resp, "invalid request", "Unacceptable audience in id_token: [someone-else another]").await;

    let mut expired = claims.clone();
    expired["exp"] = json!(now_secs() - 3600);
    let resp =
        id_token_grant(&server, json!({"provider": "oidc", "id_token": id_token(&expired), "nonce": nonce})).await;
    assert_oauth_error(resp, "invalid request", "Bad ID token").await;

    let mut other_issuer = claims.clone();
    other_issuer["iss"] = json!("https://impostor.example");
    let resp =
        id_token_grant(&server, json!({"provider": "oidc", "id_token": id_token(&other_issuer), "nonce": nonce})).await;
    assert_oauth_error(resp, "invalid request", "Bad ID token").await;

    let resp =
        id_token_grant(&server, json!({"provider": "oidc", "id_token": id_token(&claims), "nonce": "another-nonce"}))
            .await;
    assert_oauth_error(resp, "invalid nonce", "Nonces mismatch").await;
    let resp = id_token_grant(&server, json!({"provider": "oidc", "id_token": id_token(&claims)})).await;
    assert_oauth_error(resp, "invalid request", "Passed nonce and nonce in id_token should either both exist or not.")
        .await;

    let resp = id_token_grant(&server, json!({"provider": "oidc"})).await;
    assert_oauth_error(resp, "invalid request", "id_token required").await;
    let resp = id_token_grant(&server, json!({"id_token": "x"})).await;
    assert_oauth_error(resp, "invalid request", "provider or client_id and issuer required").await;
    assert!(server.actors.users.by_email("idt2@example.com").await.unwrap().is_none(), "nothing was created");
}

#[tokio::test]
async fn id_token_grant_needs_an_enabled_oidc_provider() {
    let idp = Idp::start().await;
    let issuer = idp.openid("").await;
    let mut off = provider(&issuer);
    off.enabled = false;
    let server = server_with(ProviderKind::Keycloak, off, |c| {
        c.settings.oauth.providers.insert(ProviderKind::GitHub, provider("https://github.example"));
    })
    .await;
    let token = id_token(&oidc_claims(&issuer, "x", "x@example.com", ""));
    let resp = id_token_grant(&server, json!({"provider": "keycloak", "id_token": token})).await;
    let body = assert_error(resp, 400, "provider_disabled").await;
    assert_eq!(body["message"], format!("Provider (issuer {issuer:?}) is not enabled"));
    let resp = id_token_grant(&server, json!({"provider": "google", "id_token": token})).await;
    assert_error(resp, 400, "provider_disabled").await;
    let resp = id_token_grant(&server, json!({"provider": "github", "id_token": token})).await;
    let body = assert_error(resp, 400, "validation_failed").await;
    assert_eq!(body["message"], "Custom OIDC provider \"github\" not allowed");
    let resp =
        id_token_grant(&server, json!({"issuer": "https://unknown.example", "client_id": "c", "id_token": token}))
            .await;
    assert_error(resp, 400, "validation_failed").await;
}

#[tokio::test]
async fn id_token_grant_for_keycloak_skips_the_nonce_when_configured() {
    let idp = Idp::start().await;
    let realm = idp.openid("/realms/acme").await;
    idp.json("GET", "/realms/acme/protocol/openid-connect/certs", 200, jwks()).await;
    let mut cfg = provider(&realm);
    cfg.skip_nonce_check = true;
    cfg.client_ids = vec!["web".into(), CLIENT_ID.into()];
    let server = server_with(ProviderKind::Keycloak, cfg, |_| {}).await;
    let token = id_token(&oidc_claims(&realm, "kc-1", "kc1@example.com", "whatever"));
    let resp = id_token_grant(&server, json!({"provider": "keycloak", "id_token": token})).await;
    assert_eq!(resp.status(), 200, "second client id accepted as audience, nonce not checked");
}

// ---------------------------------------------------------------------------------------------
// Manual linking
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn manual_linking_is_off_by_default() {
    let idp = Idp::start().await;
    let server = server_with(ProviderKind::GitHub, github_config(&idp), |_| {}).await;
    let session = server.signup(&unique_email()).await;
    let access = session["access_token"].as_str().unwrap();
    let identity_id = session["user"]["identities"][0]["identity_id"].as_str().unwrap();
    let resp = server.get_auth("/user/identities/authorize?provider=github&skip_http_redirect=true", access).await;
    assert_error(resp, 404, "manual_linking_disabled").await;
    let resp = server
        .request(Method::DELETE, &format!("/user/identities/{identity_id}"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_error(resp, 404, "manual_linking_disabled").await;
    let resp = server.request(Method::GET, "/user/identities/authorize?provider=github").send().await.unwrap();
    assert_error(resp, 401, "no_authorization").await;
    let token = id_token(&oidc_claims("https://x", "s", "e@example.com", ""));
    let resp = server
        .request(Method::POST, "/token?grant_type=id_token")
        .bearer_auth(access)
        .json(&json!({"provider": "oidc", "id_token": token, "link_identity": true}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 404, "manual_linking_disabled").await;
}

#[tokio::test]
async fn link_and_unlink_identities() {
    let idp = Idp::start().await;
    idp.github(octocat(), verified("octo-link@example.com")).await;
    let server =
        server_with(ProviderKind::GitHub, github_config(&idp), |c| c.settings.oauth.manual_linking_enabled = true)
            .await;
    let email = unique_email();
    let session = server.signup(&email).await;
    let access = session["access_token"].as_str().unwrap().to_owned();

    let resp = server.get_auth("/user/identities/authorize?provider=github&skip_http_redirect=true&redirect_to=http://app.example.com/linked", &access).await;
    assert_eq!(resp.status(), 200);
    let url = resp.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/login/oauth/authorize?", idp.uri())), "{url}");
    let state = query_of(&url)["state"].clone();
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &state)]).await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(to.starts_with("http://app.example.com/linked#access_token="), "{to}");
    let user = me(&server, &access).await;
    assert_eq!(user["id"], session["user"]["id"]);
    assert_eq!(user["email"], email.as_str(), "linking keeps the account's email");
    let providers: Vec<&str> =
        user["identities"].as_array().unwrap().iter().map(|i| i["provider"].as_str().unwrap()).collect();
    assert_eq!(providers, ["email", "github"]);

    // Without skip_http_redirect: a 302 to the provider.
    let resp = browser()
        .get(server.url("/user/identities/authorize?provider=github"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let state = query_of(&location(&resp))["state"].clone();
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &state)]).await;
    let q = assert_error_redirect(status, &to, SITE, "server_error", Some("identity_already_exists"));
    assert_eq!(q["error_description"], "Identity is already linked");

    // Another user cannot take the identity.
    let other = server.signup(&unique_email()).await;
    let other_access = other["access_token"].as_str().unwrap();
    let resp =
        server.get_auth("/user/identities/authorize?provider=github&skip_http_redirect=true", other_access).await;
    let url = resp.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &query_of(&url)["state"])]).await;
    let q = assert_error_redirect(status, &to, SITE, "server_error", Some("identity_already_exists"));
    assert_eq!(q["error_description"], "Identity is already linked to another user");

    // Unlink.
    let github_identity = user["identities"].as_array().unwrap().iter().find(|i| i["provider"] == "github").unwrap();
    let delete = |id: String, token: String| {
        let req = server.request(Method::DELETE, &format!("/user/identities/{id}")).bearer_auth(token);
        async move { req.send().await.unwrap() }
    };
    let resp = delete("not-a-uuid".into(), access.clone()).await;
    assert_error(resp, 404, "validation_failed").await;
    let resp = delete(Uuid::new_v4().to_string(), access.clone()).await;
    assert_error(resp, 422, "identity_not_found").await;
    let resp = delete(github_identity["identity_id"].as_str().unwrap().into(), access.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
    let user = me(&server, &access).await;
    assert_eq!(user["identities"].as_array().unwrap().len(), 1);
    assert_eq!(user["app_metadata"]["providers"], json!(["email"]));
    let last = user["identities"][0]["identity_id"].as_str().unwrap().to_owned();
    let resp = delete(last, access.clone()).await;
    assert_error(resp, 422, "single_identity_not_deletable").await;
    // The identity is free again: the other user can link it now.
    let resp =
        server.get_auth("/user/identities/authorize?provider=github&skip_http_redirect=true", other_access).await;
    let url = resp.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let (status, _) = callback(&server, &[("code", "good-code"), ("state", &query_of(&url)["state"])]).await;
    assert_eq!(status, StatusCode::FOUND);
    let audit = server.actors.users.audit_page(1, 100, None).await.unwrap();
    assert!(audit.items.iter().any(|e| e.payload.0.contains("\"identity_unlinked\"")));
}

#[tokio::test]
async fn an_anonymous_user_links_an_id_token_and_takes_its_email() {
    let idp = Idp::start().await;
    let issuer = idp.openid("").await;
    let server = server_with(ProviderKind::Oidc, provider(&issuer), |c| {
        c.settings.oauth.manual_linking_enabled = true;
        c.settings.signup.anonymous_enabled = true;
    })
    .await;
    let anon: Value = server.post("/signup", json!({})).await.json().await.unwrap();
    let access = anon["access_token"].as_str().unwrap();
    let token = id_token(&oidc_claims(&issuer, "anon-link", "anon-link@example.com", ""));
    let resp = server
        .request(Method::POST, "/token?grant_type=id_token")
        .bearer_auth(access)
        .json(&json!({"provider": "oidc", "id_token": token, "link_identity": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let session: Value = resp.json().await.unwrap();
    assert_eq!(session["user"]["id"], anon["user"]["id"]);
    assert_eq!(session["user"]["email"], "anon-link@example.com");
    assert_eq!(session["user"]["is_anonymous"], false);
    assert!(session["user"]["email_confirmed_at"].is_string());
    let resp = server
        .request(Method::POST, "/token?grant_type=id_token")
        .json(&json!({"provider": "oidc", "id_token": "x", "link_identity": true}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(resp, "invalid request", "Linking requires a valid user access token in Authorization").await;
}

#[tokio::test]
async fn unknown_identity_routes() {
    let server = TestServer::start().await;
    let resp = server.request(Method::POST, "/authorize").send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let resp = server.request(Method::PUT, "/callback").send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let resp = server.request(Method::GET, "/user/identities/a/b").send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn before_user_created_guards_oauth_sign_ups_too() {
    let idp = Idp::start().await;
    idp.github(octocat(), verified("octo@example.com")).await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/before"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"error": {"http_code": 403, "message": "no outsiders"}})),
        )
        .mount(&hook)
        .await;
    let uri = format!("{}/before", hook.uri());
    let server = server_with(ProviderKind::GitHub, github_config(&idp), move |c| {
        c.settings.hooks.before_user_created =
            Some(ferrotrue_actors::hooks::HookEndpoint { uri, secrets: vec![Secret("v1,whsec_AAAA".into())] });
    })
    .await;
    let (_, state) = authorize(&server, "provider=github").await;
    let (status, to) = callback(&server, &[("code", "good-code"), ("state", &state)]).await;
    assert_eq!(status, StatusCode::FOUND, "{to}");
    assert!(!to.contains("access_token"), "no session for a refused sign-up: {to}");
    assert!(to.contains("no+outsiders") || to.contains("no%20outsiders"), "the hook's reason reaches the app: {to}");
    assert_eq!(server.actors.users.count().await.unwrap(), 0, "nothing created");
    assert_eq!(hook.received_requests().await.unwrap().len(), 1, "the hook saw the would-be user");
}
