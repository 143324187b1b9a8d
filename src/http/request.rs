//! Reading requests the way GoTrue's clients expect (SPEC §0.2): size-limited bodies, lenient
//! JSON (unknown fields ignored, `null` = absent, case-insensitive keys), form bodies, query
//! parameters, the bearer token, the client address.

use bytes::Bytes;
use ferrotrue_actors::error::{AuthError, AuthResult, ErrorCode, ErrorKind};
use http::request::Parts;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;

/// A request with its body read.
pub struct Req {
    pub parts: Parts,
    pub body: Bytes,
    pub query: HashMap<String, String>,
    pub peer: SocketAddr,
    /// Who the rate limits attribute this request to (see `http::limits`).
    pub client: super::limits::Client,
}

/// Reads at most `limit` bytes: 413 `request_entity_too_large` beyond, 400 on a broken body.
pub async fn read_body(body: Incoming, limit: usize) -> AuthResult<Bytes> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(AuthError::new(ErrorKind::PayloadTooLarge, ErrorCode::RequestEntityTooLarge, "Request body too large"))
        }
        Err(e) => Err(AuthError::bad_request(ErrorCode::BadJson, format!("Could not read request body: {e}"))),
    }
}

impl Req {
    /// A query parameter (first value).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Authorization: Bearer <token>`, if present.
    pub fn bearer(&self) -> Option<&str> {
        bearer(&self.parts.headers)
    }

    /// The body as `T`, decoded as GoTrue's Go `encoding/json` would: unknown fields ignored,
    /// `null` treated as absent, keys matched case-insensitively. Form bodies are accepted too.
    pub fn json<T: DeserializeOwned>(&self) -> AuthResult<T> {
        // JSON first, whatever the content type says (GoTrue decodes JSON regardless, and
        // `curl -d` labels JSON as a form); a real form body is the fallback.
        let is_form = self
            .header(header::CONTENT_TYPE.as_str())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let value = match serde_json::from_slice::<Value>(&self.body) {
            Ok(value) => value,
            Err(_) if is_form => Value::Object(
                url::form_urlencoded::parse(&self.body)
                    .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                    .collect(),
            ),
            Err(e) => return Err(bad_json(e)),
        };
        let Value::Object(object) = value else {
            return Err(AuthError::bad_request(
                ErrorCode::BadJson,
                "Could not parse request body as JSON: expected a JSON object",
            ));
        };
        serde_json::from_value(Value::Object(normalise(object))).map_err(bad_json)
    }

    /// The body as `T`, or `T::default()` when the body is empty (GET-style endpoints).
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> AuthResult<T> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        self.json()
    }

    /// The client's address: first `X-Forwarded-For` hop, else the peer.
    pub fn client_ip(&self) -> String {
        self.header("x-forwarded-for")
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.peer.ip().to_string())
    }

    /// The `redirect_to` candidates GoTrue considers, in order: the query (or form) parameter,
    /// a `redirect_to` header, then `Referer`.
    pub fn redirect_candidates(&self) -> Vec<String> {
        [self.query("redirect_to"), self.header("redirect_to"), self.header(header::REFERER.as_str())]
            .into_iter()
            .flatten()
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// `User-Agent`, or empty.
    pub fn user_agent(&self) -> String {
        self.header(header::USER_AGENT.as_str()).unwrap_or_default().to_owned()
    }
}

fn bad_json(e: serde_json::Error) -> AuthError {
    AuthError::bad_request(ErrorCode::BadJson, format!("Could not parse request body as JSON: {e}"))
}

/// Top-level keys lower-cased (Go matches field names case-insensitively) and `null`s dropped
/// (Go decodes `null` as the zero value).
fn normalise(object: Map<String, Value>) -> Map<String, Value> {
    object.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.to_lowercase(), v)).collect()
}

/// `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Query string → map (first value wins).
pub fn query_map(query: Option<&str>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_drops_nulls_and_lowercases() {
        let v: Map<String, Value> =
            serde_json::from_str(r#"{"Email":"a","code_challenge":null,"data":{"Keep":null}}"#).unwrap();
        let n = normalise(v);
        assert_eq!(n.get("email"), Some(&Value::String("a".into())));
        assert!(!n.contains_key("code_challenge"));
        assert_eq!(n["data"]["Keep"], Value::Null, "nested values are left alone");
    }

    fn req(body: Vec<u8>, content_type: &str, query: &str) -> Req {
        let (parts, ()) = http::Request::builder()
            .uri("/token")
            .header(header::CONTENT_TYPE, content_type)
            .header(header::AUTHORIZATION, "Bearer x")
            .body(())
            .unwrap()
            .into_parts();
        Req {
            parts,
            body: Bytes::from(body),
            query: query_map(Some(query)),
            peer: "127.0.0.1:1".parse().unwrap(),
            client: crate::http::limits::Client::Opaque(1),
        }
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(default)]
    #[allow(dead_code)]
    struct Typical {
        email: String,
        password: String,
        data: Option<Value>,
        create_user: bool,
    }

    proptest::proptest! {
        /// Fuzz: whatever bytes a client sends as a body, in either content type, parsing ends
        /// in a value or a 400 `bad_json` — never a panic, never another status.
        #[test]
        fn any_body_parses_or_is_a_400(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            form in proptest::prelude::any::<bool>(),
            query in "[ -~]{0,40}",
        ) {
            let ct = if form { "application/x-www-form-urlencoded" } else { "application/json" };
            let r = req(body, ct, &query);
            if let Err(e) = r.json::<Typical>() {
                proptest::prop_assert_eq!(e.kind, ErrorKind::BadRequest);
                proptest::prop_assert_eq!(e.code, ErrorCode::BadJson);
            }
            let _ = r.json_or_default::<Typical>();
            let _ = r.redirect_candidates();
            let _ = r.bearer();
        }

        /// Fuzz: JSON-shaped bodies with arbitrary keys and values behave the same way.
        #[test]
        fn any_json_object_parses_or_is_a_400(
            pairs in proptest::collection::vec(("[A-Za-z_]{1,12}", "\\PC{0,20}"), 0..6),
            numeric in proptest::prelude::any::<bool>(),
        ) {
            let object: Map<String, Value> = pairs
                .into_iter()
                .map(|(k, v)| (k, if numeric { Value::from(v.len()) } else { Value::String(v) }))
                .collect();
            let r = req(serde_json::to_vec(&object).unwrap(), "application/json", "");
            if let Err(e) = r.json::<Typical>() {
                proptest::prop_assert_eq!(e.code, ErrorCode::BadJson);
            }
        }
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
