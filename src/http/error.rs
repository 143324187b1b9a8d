//! The only place that knows GoTrue's error wire formats (SPEC §3.1):
//! * 2024-01-01 (the request's `X-Supabase-Api-Version` ≥ 2024-01-01): `{code, message}` and the
//!   version header echoed, because clients read `code` only when they see the echo;
//! * legacy: `{code: <status>, error_code, msg}` (+ `error_id` on 5xx);
//! * OAuth: `{error, error_description}`, always 400.
//!
//! Every coded error carries `x-sb-error-code`. 5xx causes are logged here, never sent.

use super::response::{self, Resp};
use ferrotrue_actors::error::{AuthError, ErrorKind};
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};

/// Which error body the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    Legacy,
    V20240101,
}

/// The header value echoed in 2024-01-01 mode.
pub const API_VERSION_2024: &str = "2024-01-01";

impl ApiVersion {
    /// Parses `X-Supabase-Api-Version`: a `YYYY-MM-DD` date at or after 2024-01-01.
    pub fn from_header(value: Option<&str>) -> ApiVersion {
        let Some(v) = value.map(str::trim) else { return ApiVersion::Legacy };
        let parsed = time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]"));
        match parsed {
            Ok(date) if date >= time::macros::date!(2024 - 01 - 01) => ApiVersion::V20240101,
            _ => ApiVersion::Legacy,
        }
    }
}

/// Maps the HTTP-free kind to a status.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// Renders `err` for a client that asked for `version`.
pub fn render(err: &AuthError, version: ApiVersion, request_id: &str) -> Resp {
    if let Some(oauth) = err.oauth_error {
        let body = json!({"error": oauth, "error_description": err.msg});
        return response::json_value(StatusCode::BAD_REQUEST, &body);
    }
    let status = status_of(err.kind);
    if status.is_server_error() {
        // The cause goes to the log with the request id; the client sees only `msg`.
        tracing::error!(request_id, error = %err, cause = ?err.internal, "request failed");
    }
    let code = err.code.as_str();
    let mut body = match version {
        ApiVersion::V20240101 => json!({"code": code, "message": err.msg}),
        ApiVersion::Legacy => json!({"code": status.as_u16(), "error_code": code, "msg": err.msg}),
    };
    if let Value::Object(map) = &mut body {
        if let Some(reasons) = &err.weak_password {
            map.insert("weak_password".into(), json!({"reasons": reasons}));
        }
        if version == ApiVersion::Legacy && status.is_server_error() {
            map.insert("error_id".into(), json!(request_id));
        }
    }
    let mut resp = response::json_value(status, &body);
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(code) {
        headers.insert("x-sb-error-code", v);
    }
    if let Some(seconds) = err.retry_after {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if version == ApiVersion::V20240101 {
        headers.insert("x-supabase-api-version", HeaderValue::from_static(API_VERSION_2024));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrotrue_actors::error::ErrorCode;

    #[test]
    fn api_version_parsing() {
        assert_eq!(ApiVersion::from_header(Some("2024-01-01")), ApiVersion::V20240101);
        assert_eq!(ApiVersion::from_header(Some("2025-06-30")), ApiVersion::V20240101);
        assert_eq!(ApiVersion::from_header(Some("2023-12-31")), ApiVersion::Legacy);
        assert_eq!(ApiVersion::from_header(Some("garbage")), ApiVersion::Legacy);
        assert_eq!(ApiVersion::from_header(None), ApiVersion::Legacy);
    }

    #[test]
    fn legacy_server_errors_carry_the_request_id() {
        let resp = render(&AuthError::unexpected("boom"), ApiVersion::Legacy, "req-1");
        assert_eq!(resp.status(), 500);
        assert_eq!(resp.headers()["x-sb-error-code"], "unexpected_failure");
        let _ = ErrorCode::Unknown;
    }
}
