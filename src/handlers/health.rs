//! `GET /health` (api.go `HealthCheck`) and `GET /.well-known/jwks.json` (jwks.go).

use crate::http::response::{self, Resp};
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

/// `GET /.well-known/jwks.json`: the public signing keys. Symmetric (HS256) keys are never
/// published, so with `GOTRUE_JWT_SECRET` the set is empty, as in GoTrue; clients such as
/// auth-js `getClaims()` then fall back to asking `/user`.
pub fn jwks() -> Resp {
    let mut resp = response::json_value(StatusCode::OK, &json!({"keys": []}));
    resp.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("public, max-age=600"));
    resp
}
