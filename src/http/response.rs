//! Response builders. Every body is JSON except 204s and redirects.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

/// The one response type of the server.
pub type Resp = Response<Full<Bytes>>;

/// `status` with `value` serialised as JSON.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(status, body),
        Err(e) => {
            tracing::error!(error = %e, "response serialisation failed");
            with_body(StatusCode::INTERNAL_SERVER_ERROR, br#"{"code":500,"error_code":"unexpected_failure","msg":"Unexpected failure, please check server logs for more information"}"#.to_vec())
        }
    }
}

/// `status` with an already-built JSON value.
pub fn json_value(status: StatusCode, value: &serde_json::Value) -> Resp {
    json(status, value)
}

fn with_body(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// An empty response (204 for `/logout`, CORS preflights).
pub fn empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}
