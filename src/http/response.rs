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

/// A redirect; characters a header cannot carry are percent-encoded.
pub fn redirect(status: StatusCode, location: &str) -> Resp {
    let mut safe = String::with_capacity(location.len());
    for c in location.chars() {
        if c.is_ascii_graphic() {
            safe.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                safe.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut resp = empty(status);
    if let Ok(v) = HeaderValue::from_str(&safe) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `target` with its fragment replaced.
pub fn with_fragment(target: &str, fragment: &str) -> String {
    let base = target.split('#').next().unwrap_or(target);
    format!("{base}#{fragment}")
}

/// `target` with `pairs` added to its query, before any fragment.
pub fn with_query(target: &str, pairs: &[(&str, &str)]) -> String {
    let (base, fragment) = match target.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (target, None),
    };
    let mut extra = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        extra.append_pair(k, v);
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut out = format!("{base}{sep}{}", extra.finish());
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}
