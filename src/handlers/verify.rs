//! `GET /verify` (email links → 303 redirects) and `POST /verify` (JSON). Port of verify.go.
//! A `HEAD` or a browser/scanner prefetch of a link never consumes its token (SPEC §12.5).

use super::{mail, meta};
use crate::dto::SessionJson;
use crate::http::error::status_of;
use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::error::{AuthError, AuthResult};
use ferrotrue_actors::flows::verify::{self, is_pkce, Presented, Verified, VerifyType, EMAIL_CHANGE_HALF_MSG};
use http::{header, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use url::form_urlencoded::Serializer;

/// `POST /verify` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VerifyParams {
    #[serde(rename = "type")]
    pub kind: String,
    pub token: String,
    pub token_hash: String,
    pub email: String,
    pub phone: String,
    pub redirect_to: String,
}

/// True for requests that only look at a link: `HEAD`, and prefetches announced by
/// `Sec-Purpose` / `Purpose` / `X-Purpose` / `X-Moz` headers.
fn is_look_only(req: &Req) -> bool {
    if req.parts.method == Method::HEAD {
        return true;
    }
    ["sec-purpose", "purpose", "x-purpose", "x-moz"]
        .iter()
        .any(|h| req.header(h).is_some_and(|v| v.contains("prefetch") || v.contains("preview")))
}

/// `GET /verify?token=…&type=…&redirect_to=…` → 303.
pub async fn get(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let token = req.query("token").unwrap_or_default().to_owned();
    let kind = req.query("type").unwrap_or_default();
    if token.is_empty() {
        return Err(AuthError::validation("Verify requires a token or a token hash"));
    }
    let vtype = VerifyType::parse(kind)?;
    if is_look_only(req) {
        // Link scanners and prefetchers see a page, not a sign-in; the token stays valid.
        let mut resp = response::empty(StatusCode::OK);
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(resp);
    }
    let target = mail::redirect_to(cx, req);
    let presented = Presented::Hash(token);
    let pkce = is_pkce(&presented);
    let outcome = verify::verify(&cx.actors, vtype, presented, true, &meta(req)).await;
    Ok(match outcome {
        Ok(Verified::Session { grant, kind }) => {
            let fragment = Serializer::new(String::new())
                .append_pair("access_token", &grant.access_token)
                .append_pair("expires_at", &grant.expires_at.to_string())
                .append_pair("expires_in", &grant.expires_in.to_string())
                .append_pair("refresh_token", &grant.refresh_token)
                .append_pair("sb", "")
                .append_pair("token_type", "bearer")
                .append_pair("type", kind)
                .finish();
            response::redirect(StatusCode::SEE_OTHER, &response::with_fragment(&target, &fragment))
        }
        Ok(Verified::PkceCode(code)) => {
            response::redirect(StatusCode::SEE_OTHER, &response::with_query(&target, &[("code", &code)]))
        }
        Ok(Verified::EmailChangeHalfDone) => {
            let fragment = Serializer::new(String::new())
                .append_pair("message", EMAIL_CHANGE_HALF_MSG)
                .append_pair("sb", "")
                .finish();
            let target =
                if pkce { response::with_query(&target, &[("message", EMAIL_CHANGE_HALF_MSG)]) } else { target };
            response::redirect(StatusCode::SEE_OTHER, &response::with_fragment(&target, &fragment))
        }
        Err(err) => error_redirect(&target, &err, pkce),
    })
}

/// `POST /verify` → Session JSON, or GoTrue's message for a half-done email change.
pub async fn post(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let p: VerifyParams = req.json()?;
    let vtype = VerifyType::parse(&p.kind)?;
    let presented = match (p.token.is_empty(), p.token_hash.is_empty()) {
        (true, false) => {
            if !p.email.is_empty() || !p.phone.is_empty() || !p.redirect_to.is_empty() {
                return Err(AuthError::validation("Only the token_hash and type should be provided"));
            }
            Presented::Hash(p.token_hash)
        }
        (false, true) => {
            if p.email.is_empty() == p.phone.is_empty() {
                return Err(AuthError::validation(
                    "Only an email address or phone number should be provided on verify",
                ));
            }
            Presented::Code { email: p.email, phone: p.phone, code: p.token }
        }
        _ => return Err(AuthError::validation("Verify requires either a token or a token hash")),
    };
    match verify::verify(&cx.actors, vtype, presented, false, &meta(req)).await? {
        Verified::Session { grant, .. } => Ok(response::json(StatusCode::OK, &SessionJson::from(grant.as_ref()))),
        Verified::PkceCode(code) => {
            // A PKCE token verified over POST: hand back the code to exchange.
            Ok(response::json_value(StatusCode::OK, &json!({"code": code})))
        }
        Verified::EmailChangeHalfDone => {
            Ok(response::json_value(StatusCode::OK, &json!({"msg": EMAIL_CHANGE_HALF_MSG, "code": "200"})))
        }
    }
}

/// GoTrue's error redirect: `#error=…&error_code=…&error_description=…&sb=` (PKCE: also the
/// query).
fn error_redirect(target: &str, err: &AuthError, pkce: bool) -> Resp {
    let status = status_of(err.kind);
    let error = match status.as_u16() {
        401 => "unauthorized_client",
        403 => "access_denied",
        500 => "server_error",
        503 => "temporarily_unavailable",
        400..=499 => "invalid_request",
        _ => "server_error",
    };
    if status.is_server_error() {
        tracing::error!(error = %err, cause = ?err.internal, "verification failed");
    }
    let params = [("error", error), ("error_code", err.code.as_str()), ("error_description", err.msg.as_ref())];
    let mut fragment = Serializer::new(String::new());
    for (k, v) in params {
        fragment.append_pair(k, v);
    }
    fragment.append_pair("sb", "");
    let target = if pkce { response::with_query(target, &params) } else { target.to_owned() };
    response::redirect(StatusCode::SEE_OTHER, &response::with_fragment(&target, &fragment.finish()))
}
