//! `POST /factors`, `POST /factors/{id}/challenge`, `POST /factors/{id}/verify`,
//! `DELETE /factors/{id}`. Port of mfa.go (TOTP and phone factors; WebAuthn ones in `factors_webauthn`).

use super::factors_webauthn;
use crate::dto::SessionJson;
use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::error::{AuthError, AuthResult, ErrorCode, ErrorKind};
use ferrotrue_actors::flows::auth::authenticate;
use ferrotrue_actors::flows::mfa::{self, EnrollInput};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

/// True for the paths this module serves.
pub fn owns(path: &str) -> bool {
    path == "/factors" || path.starts_with("/factors/")
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EnrollParams {
    factor_type: String,
    friendly_name: String,
    issuer: String,
    phone: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChallengeParams {
    channel: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VerifyParams {
    challenge_id: String,
    code: String,
}

fn factor_id(raw: &str) -> AuthResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| AuthError::not_found(ErrorCode::MfaFactorNotFound, "Factor not found"))
}

/// Dispatches the `/factors` family.
pub async fn route(cx: &Ctx, req: &Req, path: &str) -> AuthResult<Resp> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.parts.method.clone();
    match (method, segments.as_slice()) {
        (Method::POST, ["factors"]) => enroll(cx, req).await,
        (Method::POST, ["factors", id, "challenge"]) => challenge(cx, req, id).await,
        (Method::POST, ["factors", id, "verify"]) => verify(cx, req, id).await,
        (Method::DELETE, ["factors", id]) => unenroll(cx, req, id).await,
        (_, ["factors"] | ["factors", _] | ["factors", _, "challenge" | "verify"]) => {
            Err(AuthError::new(ErrorKind::MethodNotAllowed, ErrorCode::MethodNotAllowed, "Method not allowed"))
        }
        _ => Err(AuthError::not_found(ErrorCode::NotFound, "404 page not found")),
    }
}

async fn enroll(cx: &Ctx, req: &Req) -> AuthResult<Resp> {
    let auth = authenticate(&cx.actors, req.bearer()).await?;
    let p: EnrollParams = req.json()?;
    if p.factor_type == "webauthn" {
        return factors_webauthn::enroll(cx, auth, p.friendly_name).await;
    }
    let phone = p.phone.clone();
    let input =
        EnrollInput { factor_type: p.factor_type, friendly_name: p.friendly_name, issuer: p.issuer, phone: p.phone };
    let e = mfa::enroll(&cx.actors, auth, input).await?;
    if e.factor.factor_type == "phone" {
        // GoTrue echoes the number as it was sent.
        let body = json!({"id": e.factor.id.to_string(), "type": "phone", "friendly_name": e.factor.friendly_name, "phone": phone});
        return Ok(response::json_value(StatusCode::OK, &body));
    }
    // GoTrue's EnrollFactorResponse: `friendly_name` always present (the Python client requires it).
    let body = json!({
        "id": e.factor.id.to_string(),
        "type": "totp",
        "friendly_name": e.factor.friendly_name,
        "totp": {"qr_code": e.qr_code, "secret": e.secret, "uri": e.uri},
    });
    Ok(response::json_value(StatusCode::OK, &body))
}

async fn challenge(cx: &Ctx, req: &Req, id: &str) -> AuthResult<Resp> {
    let auth = authenticate(&cx.actors, req.bearer()).await?;
    let id = factor_id(id)?;
    if factors_webauthn::is_webauthn(&auth, id) {
        return factors_webauthn::challenge(cx, req, auth, id).await;
    }
    // A body that is not a JSON object reads as no channel (TOTP challenges carry none).
    let p: ChallengeParams = req.json_or_default().unwrap_or_default();
    let (challenge_id, factor_type, expires_at) =
        mfa::challenge(&cx.actors, auth, id, &p.channel, req.client_ip()).await?;
    let body = json!({"id": challenge_id.to_string(), "type": factor_type, "expires_at": expires_at});
    Ok(response::json_value(StatusCode::OK, &body))
}

async fn verify(cx: &Ctx, req: &Req, id: &str) -> AuthResult<Resp> {
    let auth = authenticate(&cx.actors, req.bearer()).await?;
    let id = factor_id(id)?;
    if factors_webauthn::is_webauthn(&auth, id) {
        return factors_webauthn::verify(cx, req, auth, id).await;
    }
    let p: VerifyParams = req.json()?;
    let challenge_id = Uuid::parse_str(&p.challenge_id).map_err(|_| {
        AuthError::unprocessable(ErrorCode::MfaFactorNotFound, "MFA factor with the provided challenge ID not found")
    })?;
    let grant = mfa::verify(&cx.actors, auth, id, challenge_id, p.code, req.client_ip()).await?;
    Ok(response::json(StatusCode::OK, &SessionJson::from(&grant)))
}

async fn unenroll(cx: &Ctx, req: &Req, id: &str) -> AuthResult<Resp> {
    let auth = authenticate(&cx.actors, req.bearer()).await?;
    let id = factor_id(id)?;
    let id = mfa::unenroll(&cx.actors, auth, id).await?;
    Ok(response::json_value(StatusCode::OK, &json!({"id": id.to_string()})))
}
