//! Asymmetric signing keys (`GOTRUE_JWT_KEYS`), the JWKS, OIDC discovery and `keys generate`.

use crate::common::{assert_error, service_role_token, sign, unique_email, TestServer, SECRET};
use base64::Engine as _;
use ferrotrue::config::Config;
use ferrotrue_actors::jwt_keys::{self, ConfiguredKey};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::{Command, Stdio};

/// A fresh one-key set (the key signs) as JSON.
fn key_set(alg: Algorithm) -> Value {
    jwt_keys::generate(alg).expect("generate")
}

/// `set` with the `sign` op removed from every key (verify-only).
fn verify_only(set: &Value) -> Vec<Value> {
    set.as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let mut k = k.clone();
            k["key_ops"] = json!(["verify"]);
            k
        })
        .collect()
}

fn load(keys: &[Value]) -> Vec<ConfiguredKey> {
    jwt_keys::parse_key_set(&Value::Array(keys.to_vec()).to_string()).expect("valid key set")
}

async fn server_with(keys: &[Value]) -> TestServer {
    let loaded = load(keys);
    TestServer::start_with(move |c: &mut Config| c.settings.jwt.keys = loaded).await
}

fn header_of(token: &str) -> Header {
    jsonwebtoken::decode_header(token).expect("header")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn served_jwks(server: &TestServer) -> JwkSet {
    let resp = server.http.get(server.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "public, max-age=600");
    resp.json().await.expect("a JWK set")
}

/// Verifies `token` the way a resource server does: the key named by `kid` in the served JWKS.
async fn verify_with_served_jwks(server: &TestServer, token: &str) -> Value {
    let header = header_of(token);
    let set = served_jwks(server).await;
    let jwk: &Jwk = set.find(header.kid.as_deref().expect("kid")).expect("kid is published");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&["authenticated"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation).expect("verifies").claims
}

#[tokio::test]
async fn each_algorithm_signs_with_its_kid_and_verifies_against_the_served_jwks() {
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let set = key_set(alg);
        let kid = set[0]["kid"].as_str().unwrap().to_owned();
        let server = server_with(set.as_array().unwrap()).await;
        let session = server.signup(&unique_email()).await;
        let token = session["access_token"].as_str().unwrap();
        let header = header_of(token);
        assert_eq!((header.alg, header.kid.as_deref()), (alg, Some(kid.as_str())), "{alg:?}");
        let claims = verify_with_served_jwks(&server, token).await;
        assert_eq!(claims["sub"], session["user"]["id"]);

        // The published key is the public half only.
        let raw: Value =
            server.http.get(server.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
        let published = &raw["keys"][0];
        assert_eq!(raw["keys"].as_array().unwrap().len(), 1);
        assert_eq!(published["use"], "sig");
        assert_eq!(published["key_ops"], json!(["verify"]));
        assert_eq!(published["alg"], jwt_keys::alg_name(alg));
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(published.get(private).is_none(), "{alg:?} publishes {private}: {published}");
        }

        // The token works on GET /user, and refreshing yields another token of the same kind.
        let resp = server.get_auth("/user", token).await;
        assert_eq!(resp.status(), 200, "{alg:?}");
        let refreshed: Value = server.refresh(session["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
        let again = refreshed["access_token"].as_str().expect("refreshed");
        assert_eq!(header_of(again).alg, alg);
        verify_with_served_jwks(&server, again).await;
        assert_eq!(server.get_auth("/user", again).await.status(), 200);
    }
}

/// The public key of an ES256 JWK as SubjectPublicKeyInfo DER and PEM: what an attacker
/// would try as an HMAC secret.
fn p256_spki(jwk: &Value) -> (Vec<u8>, String) {
    let decode = |f: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwk[f].as_str().unwrap()).unwrap();
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    der.extend(decode("x"));
    der.extend(decode("y"));
    let body = base64::engine::general_purpose::STANDARD.encode(&der);
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n", &body[..64], &body[64..]);
    // The SPKI really is this key: jsonwebtoken accepts it as the ES256 public key.
    DecodingKey::from_ec_pem(pem.as_bytes()).expect("a P-256 public key PEM");
    (der, pem)
}

fn forge(claims: &Value, alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

#[tokio::test]
async fn algorithm_confusion_none_swapped_alg_and_unknown_kid_are_bad_jwt() {
    let es = key_set(Algorithm::ES256);
    let rsa = key_set(Algorithm::RS256);
    let ed = key_set(Algorithm::EdDSA);
    let mut keys = es.as_array().unwrap().clone();
    keys.extend(verify_only(&rsa));
    keys.extend(verify_only(&ed));
    let loaded = load(&keys);
    let server = server_with(&keys).await;
    let (es_kid, rsa_kid, ed_kid) = (loaded[0].kid.clone(), loaded[1].kid.clone(), loaded[2].kid.clone());
    let session = server.signup(&unique_email()).await;
    let token = session["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(server.get_auth("/user", token).await.status(), 200);

    let (der, pem) = p256_spki(&es[0]);
    let public_json = served_jwks(&server).await;
    let public_jwk_text = serde_json::to_string(public_json.find(&es_kid).unwrap()).unwrap();
    let mut forged = Vec::new();
    for secret in [pem.as_bytes(), der.as_slice(), public_jwk_text.as_bytes(), es[0]["x"].as_str().unwrap().as_bytes()]
    {
        let hmac = EncodingKey::from_secret(secret);
        forged.push((
            "HS256 with the public key as secret, kid of the EC key",
            forge(&claims, Algorithm::HS256, Some(&es_kid), &hmac),
        ));
        forged.push(("HS256 with the public key as secret, no kid", forge(&claims, Algorithm::HS256, None, &hmac)));
    }
    // Valid signatures by configured keys, but under another key's kid (alg ≠ that key's alg).
    forged.push((
        "RS256 signed by the RSA key, kid of the EC key",
        forge(&claims, Algorithm::RS256, Some(&es_kid), loaded[1].encoding_key()),
    ));
    forged.push((
        "ES256 signed by the EC key, kid of the RSA key",
        forge(&claims, Algorithm::ES256, Some(&rsa_kid), loaded[0].encoding_key()),
    ));
    forged.push((
        "EdDSA signed by the Ed key, kid of the EC key",
        forge(&claims, Algorithm::EdDSA, Some(&es_kid), loaded[2].encoding_key()),
    ));
    forged
        .push(("ES256 signed by the EC key, no kid", forge(&claims, Algorithm::ES256, None, loaded[0].encoding_key())));
    forged.push((
        "ES256 signed by the EC key, unknown kid",
        forge(&claims, Algorithm::ES256, Some("not-a-key"), loaded[0].encoding_key()),
    ));
    forged.push((
        "HS256 with a wrong secret, unknown kid",
        forge(&claims, Algorithm::HS256, Some("not-a-key"), &EncodingKey::from_secret(b"guess")),
    ));
    // A real signature by a foreign key that reuses our kid.
    let foreign = load(key_set(Algorithm::ES256).as_array().unwrap());
    forged.push((
        "ES256 by a foreign key under our kid",
        forge(&claims, Algorithm::ES256, Some(&es_kid), foreign[0].encoding_key()),
    ));
    // `alg: none`, with and without a signature, with our kid.
    for sig in ["", token.split('.').nth(2).unwrap()] {
        let header = b64(format!(r#"{{"alg":"none","typ":"JWT","kid":"{es_kid}"}}"#).as_bytes());
        forged.push(("alg none", format!("{header}.{payload}.{sig}")));
    }
    // The genuine header and signature with the header's alg swapped.
    for alg in ["RS256", "EdDSA", "HS256", "ES384"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{es_kid}"}}"#).as_bytes());
        forged.push(("alg swapped in the header", format!("{header}.{payload}.{}", token.split('.').nth(2).unwrap())));
    }
    assert_eq!(ed_kid.len(), 36);
    for (what, t) in forged {
        let resp = server.get_auth("/user", &t).await;
        assert_eq!(resp.status(), 403, "{what}");
        let body = assert_error(resp, 403, "bad_jwt").await;
        assert!(body["message"].as_str().unwrap().starts_with("invalid JWT"), "{what}: {body}");
    }
    // The genuine token still works after all that.
    assert_eq!(server.get_auth("/user", token).await.status(), 200);
}

#[tokio::test]
async fn rotation_add_then_switch_then_remove() {
    let old = key_set(Algorithm::ES256);
    let next = key_set(Algorithm::EdDSA);
    let mut server = server_with(old.as_array().unwrap()).await;
    let session = server.signup(&unique_email()).await;
    let old_token = session["access_token"].as_str().unwrap().to_owned();

    // 1. The next key is added (verify only): published, old key still signs.
    let mut step1 = old.as_array().unwrap().clone();
    step1.extend(verify_only(&next));
    server.config.settings.jwt.keys = load(&step1);
    server = server.restart().await;
    assert_eq!(served_jwks(&server).await.keys.len(), 2);
    let again = server.login(session["user"]["email"].as_str().unwrap()).await;
    assert_eq!(header_of(again["access_token"].as_str().unwrap()).alg, Algorithm::ES256);

    // 2. `sign` moves to the next key: new tokens are EdDSA, the previous key's still verify.
    let mut step2 = verify_only(&old);
    step2.extend(next.as_array().unwrap().clone());
    server.config.settings.jwt.keys = load(&step2);
    server = server.restart().await;
    let fresh = server.login(session["user"]["email"].as_str().unwrap()).await;
    let new_token = fresh["access_token"].as_str().unwrap().to_owned();
    assert_eq!(header_of(&new_token).alg, Algorithm::EdDSA);
    verify_with_served_jwks(&server, &old_token).await;
    assert_eq!(server.get_auth("/user", &old_token).await.status(), 200, "previous key still verifies");
    assert_eq!(server.get_auth("/user", &new_token).await.status(), 200);

    // 3. The old key is removed: its tokens are refused, the new ones work.
    server.config.settings.jwt.keys = load(next.as_array().unwrap());
    server = server.restart().await;
    assert_eq!(served_jwks(&server).await.keys.len(), 1);
    assert_error(server.get_auth("/user", &old_token).await, 403, "bad_jwt").await;
    assert_eq!(server.get_auth("/user", &new_token).await.status(), 200);
}

#[tokio::test]
async fn the_secret_keeps_signing_service_keys_unless_valid_methods_drop_hs256() {
    let set = key_set(Algorithm::ES256);
    let service = service_role_token();
    let server = server_with(set.as_array().unwrap()).await;
    let resp = server.request(Method::GET, "/admin/users").bearer_auth(&service).send().await.unwrap();
    assert_eq!(resp.status(), 200, "service_role signed with GOTRUE_JWT_SECRET");
    let anon = sign(&json!({"role": "anon"}), SECRET, Algorithm::HS256);
    let resp = server.request(Method::GET, "/admin/users").bearer_auth(&anon).send().await.unwrap();
    assert_eq!(resp.status(), 403, "anon is no admin");

    // GOTRUE_JWT_VALID_METHODS=ES256: HS256 tokens are refused outright.
    let loaded = load(set.as_array().unwrap());
    let strict = TestServer::start_with(move |c: &mut Config| {
        c.settings.jwt.keys = loaded;
        c.settings.jwt.valid_methods = vec![Algorithm::ES256];
    })
    .await;
    let resp = strict.request(Method::GET, "/admin/users").bearer_auth(&service).send().await.unwrap();
    let body = assert_error(resp, 403, "bad_jwt").await;
    assert!(body["message"].as_str().unwrap().contains("signing method HS256 is invalid"), "{body}");
    let session = strict.signup(&unique_email()).await;
    assert_eq!(strict.get_auth("/user", session["access_token"].as_str().unwrap()).await.status(), 200);
}

#[tokio::test]
async fn oct_keys_verify_by_kid_and_are_never_published() {
    let k = b64(b"an-oct-key-of-at-least-thirty-two-bytes!");
    let oct = json!({"kty": "oct", "kid": "hmac-1", "k": k, "key_ops": ["sign", "verify"]});
    let server = server_with(&[oct]).await;
    assert!(served_jwks(&server).await.keys.is_empty());
    let session = server.signup(&unique_email()).await;
    let token = session["access_token"].as_str().unwrap();
    let header = header_of(token);
    assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::HS256, Some("hmac-1")));
    assert_eq!(server.get_auth("/user", token).await.status(), 200);
}

#[tokio::test]
async fn openid_configuration_points_at_the_jwks() {
    let server = TestServer::start().await;
    let resp = server.http.get(server.url("/.well-known/openid-configuration")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "public, max-age=600");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["issuer"], server.config.api_external_url.as_str(), "issuer defaults to API_EXTERNAL_URL");
    assert_eq!(doc["jwks_uri"], format!("{}/.well-known/jwks.json", server.config.api_external_url));
    assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["HS256"]));
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    // The jwks_uri it names answers.
    let jwks = server.http.get(doc["jwks_uri"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(jwks.status(), 200);

    let loaded = load(key_set(Algorithm::RS256).as_array().unwrap());
    let server = TestServer::start_with(move |c: &mut Config| {
        c.settings.jwt.keys = loaded;
        c.settings.jwt.issuer = "https://auth.example.com/auth/v1/".into();
    })
    .await;
    let doc: Value =
        server.http.get(server.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["issuer"], "https://auth.example.com/auth/v1/");
    assert_eq!(doc["token_endpoint"], "https://auth.example.com/auth/v1/oauth/token");
    assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["RS256", "HS256"]));
    let resp = server.request(Method::POST, "/.well-known/openid-configuration").send().await.unwrap();
    assert_eq!(resp.status(), 405);
}

fn config_errors(keys: &str) -> Vec<String> {
    let vars: HashMap<String, String> = [("GOTRUE_JWT_SECRET", SECRET), ("GOTRUE_JWT_KEYS", keys)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    match Config::from_vars(&vars) {
        Ok(_) => Vec::new(),
        Err(e) => e.0,
    }
}

#[test]
fn bad_key_sets_stop_start_up_naming_the_variable() {
    let es = key_set(Algorithm::ES256)[0].clone();
    let other = key_set(Algorithm::ES256)[0].clone();
    let mut no_kid = es.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut rsa_public_only = key_set(Algorithm::RS256)[0].clone();
    for f in ["d", "p", "q", "dp", "dq", "qi"] {
        rsa_public_only.as_object_mut().unwrap().remove(f);
    }
    let mut p384 = es.clone();
    p384["crv"] = json!("P-384");
    let mut wrong_alg = es.clone();
    wrong_alg["alg"] = json!("RS256");
    let mut same_kid = other.clone();
    same_kid["kid"] = es["kid"].clone();
    same_kid["key_ops"] = json!(["verify"]);
    let cases = [
        ("not JSON", "{not json".to_owned(), "JSON"),
        ("an object, not an array", es.to_string(), "JSON array"),
        ("no signing key", json!(verify_only(&json!([es.clone()]))).to_string(), "no signing key"),
        ("two signing keys", json!([es.clone(), other.clone()]).to_string(), "multiple signing keys"),
        ("missing kid", json!([no_kid]).to_string(), "kid"),
        ("unsupported kty", json!([{"kty": "XYZ", "kid": "a", "key_ops": ["sign"]}]).to_string(), "kty"),
        ("unsupported crv", json!([p384]).to_string(), "P-384"),
        ("public key only", json!([rsa_public_only]).to_string(), "private"),
        ("alg that does not fit", json!([wrong_alg]).to_string(), "alg"),
        ("duplicate kid", json!([es.clone(), same_kid]).to_string(), "kid"),
    ];
    let d = es["d"].as_str().unwrap();
    for (what, value, expect) in cases {
        let errors = config_errors(&value);
        assert_eq!(errors.len(), 1, "{what}: {errors:?}");
        assert!(errors[0].starts_with("GOTRUE_JWT_KEYS"), "{what}: {errors:?}");
        assert!(errors[0].contains(expect), "{what}: {errors:?}");
        assert!(!errors[0].contains(d), "{what}: the private key leaks into the error");
    }
    assert!(config_errors(&json!([es]).to_string()).is_empty());
}

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrotrue"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn keys_generate_prints_a_ready_key_set() {
    for (flag, alg, kty) in [(None, "ES256", "EC"), (Some("RS256"), "RS256", "RSA"), (Some("EdDSA"), "EdDSA", "OKP")] {
        let mut cmd = bin();
        cmd.args(["keys", "generate"]);
        if let Some(f) = flag {
            cmd.args(["--alg", f]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let set: Value = serde_json::from_str(&text).expect("JSON");
        let key = &set[0];
        assert_eq!(set.as_array().unwrap().len(), 1);
        assert_eq!((key["alg"].as_str(), key["kty"].as_str()), (Some(alg), Some(kty)));
        assert_eq!(key["key_ops"], json!(["sign", "verify"]));
        assert!(uuid::Uuid::parse_str(key["kid"].as_str().unwrap()).is_ok());
        assert!(key["d"].is_string(), "a private key");
        let loaded = jwt_keys::parse_key_set(&text).expect("accepted by GOTRUE_JWT_KEYS");
        assert!(loaded[0].sign);
    }
    let a: Value = serde_json::from_slice(&bin().args(["keys", "generate"]).output().unwrap().stdout).unwrap();
    let b: Value = serde_json::from_slice(&bin().args(["keys", "generate"]).output().unwrap().stdout).unwrap();
    assert_ne!(a[0]["kid"], b[0]["kid"], "fresh kid each time");
    assert_ne!(a[0]["d"], b[0]["d"], "fresh key each time");
    let bad = bin().args(["keys", "generate", "--alg", "HS256"]).output().unwrap();
    assert!(!bad.status.success());
}

#[tokio::test]
async fn the_binary_serves_a_generated_key_set_and_names_the_variable_when_it_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().current_dir(dir.path()).env("GOTRUE_JWT_KEYS", "[]").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().any(|l| l.contains("GOTRUE_JWT_KEYS") && l.contains("no signing key")), "{err}");

    let set = String::from_utf8(bin().args(["keys", "generate"]).output().unwrap().stdout).unwrap();
    let kid = serde_json::from_str::<Value>(&set).unwrap()[0]["kid"].as_str().unwrap().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = bin()
        .current_dir(dir.path())
        .env("PORT", port.to_string())
        .env("GOTRUE_JWT_SECRET", SECRET)
        .env("GOTRUE_JWT_KEYS", set.trim())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/.well-known/jwks.json");
    let mut jwks: Option<Value> = None;
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(&url).await {
            jwks = r.json().await.ok();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let out = child.wait_with_output().unwrap();
    let jwks = jwks.expect("the server answered");
    assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
    assert!(jwks["keys"][0].get("d").is_none());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("signed with GOTRUE_JWT_KEYS"), "{log}");
    assert!(!log.contains(serde_json::from_str::<Value>(&set).unwrap()[0]["d"].as_str().unwrap()), "no key in the log");
}
