//! `GET /health`. Port of api.go `HealthCheck`.

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
