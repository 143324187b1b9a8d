//! `GET /health` (api.go `HealthCheck`), `GET /.well-known/jwks.json` and
//! `GET /.well-known/openid-configuration` (jwks.go).

use crate::http::response::{self, Resp};
use crate::state::Ctx;
use http::StatusCode;
use serde_json::json;

/// Liveness, in GoTrue's shape (clients check `name`).
pub fn get() -> Resp {
    response::json_value(
        StatusCode::OK,
        &json!({
            "version": concat!("v", env!("CARGO_PKG_VERSION")),
            "name": "GoTrue",
            "description": "GoTrue is a user registration and authentication API",
        }),
    )
}

/// `GET /.well-known/jwks.json`: the public halves of `GOTRUE_JWT_KEYS` (`kty`, `kid`, `alg`,
/// `use: "sig"`, `key_ops: ["verify"]`, `n`/`e` or `crv`/`x`/`y`). Symmetric keys (HS256: the
/// secret, `oct` JWKs) are never published, so with `GOTRUE_JWT_SECRET` alone the set is empty, as
/// in GoTrue; clients such as auth-js `getClaims()` then fall back to asking `/user`.
pub fn jwks(cx: &Ctx) -> Resp {
    let body = ferrotrue_actors::jwt_keys::public_jwks(&cx.config.settings.jwt.keys);
    let mut resp = response::json_value(StatusCode::OK, &body);
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static(CACHE));
    resp
}

/// `GET /.well-known/openid-configuration` (jwks.go `WellKnownOpenID`): where the keys are and
/// which algorithms tokens use. `issuer` is `GOTRUE_JWT_ISSUER` (else `API_EXTERNAL_URL`); the
/// endpoint URLs hang off the issuer as in GoTrue, `jwks_uri` off `API_EXTERNAL_URL` (where this
/// server answers). `id_token_signing_alg_values_supported` lists the algorithms actually
/// accepted (`GOTRUE_JWT_VALID_METHODS`), signing one first.
pub fn openid_configuration(cx: &Ctx) -> Resp {
    let external = cx.config.api_external_url.trim_end_matches('/');
    let issuer = match cx.config.settings.jwt.issuer.as_str() {
        "" => external.to_owned(),
        configured => configured.to_owned(),
    };
    let base = issuer.trim_end_matches('/');
    let algs: Vec<&str> = cx.actors.jwt.valid_methods().into_iter().map(ferrotrue_actors::jwt_keys::alg_name).collect();
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "jwks_uri": format!("{external}/.well-known/jwks.json"),
        "userinfo_endpoint": format!("{base}/oauth/userinfo"),
        "scopes_supported": ["openid", "profile", "email", "phone", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "claims_supported": [
            "sub", "aud", "iss", "exp", "iat", "auth_time", "nonce", "email", "email_verified",
            "phone_number", "phone_number_verified", "name", "picture", "preferred_username", "updated_at"
        ],
        "code_challenge_methods_supported": ["S256", "plain"],
    });
    let mut resp = response::json_value(StatusCode::OK, &body);
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static(CACHE));
    resp
}

const CACHE: &str = "public, max-age=600";
