//! The WebAuthn arms of `/factors` (GoTrue's `enrollWebAuthnFactor`, `challengeWebAuthnFactor`,
//! `verifyWebAuthnFactor`); `handlers::factors` dispatches here by factor type.

use crate::dto::SessionJson;
use crate::http::request::Req;
use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::error::{AuthError, AuthResult, ErrorCode};
use ferrotrue_actors::flows::auth::Authenticated;
use ferrotrue_actors::flows::mfa_webauthn::{self, VerifyParams};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// True when `factor_id` is one of the user's WebAuthn factors.
pub fn is_webauthn(auth: &Authenticated, factor_id: Uuid) -> bool {
    auth.user.factors.iter().any(|f| f.id == factor_id && f.factor_type == mfa_webauthn::FACTOR_TYPE)
}

/// `POST /factors` with `factor_type: webauthn`: `{"id","type","friendly_name"}`.
pub async fn enroll(cx: &Ctx, auth: Authenticated, friendly_name: String) -> AuthResult<Resp> {
    let f = mfa_webauthn::enroll(&cx.actors, auth, friendly_name).await?;
    let body = json!({"id": f.id.to_string(), "type": "webauthn", "friendly_name": f.friendly_name});
    Ok(response::json_value(StatusCode::OK, &body))
}

/// `POST /factors/{id}/challenge`. The body's `webauthn.rpId` / `rpOrigins` are ignored: the
/// relying party is the configuration's.
pub async fn challenge(cx: &Ctx, req: &Req, auth: Authenticated, factor_id: Uuid) -> AuthResult<Resp> {
    let c = mfa_webauthn::challenge(&cx.actors, auth, factor_id, req.client_ip()).await?;
    let body = json!({
        "id": c.id.to_string(),
        "type": "webauthn",
        "expires_at": c.expires_at,
        "webauthn": {"type": c.kind, "credential_options": c.credential_options},
    });
    Ok(response::json_value(StatusCode::OK, &body))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WebAuthnJson {
    #[serde(rename = "type")]
    kind: String,
    credential_response: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    challenge_id: String,
    webauthn: Option<WebAuthnJson>,
}

/// `POST /factors/{id}/verify`: the session, raised to aal2.
pub async fn verify(cx: &Ctx, req: &Req, auth: Authenticated, factor_id: Uuid) -> AuthResult<Resp> {
    let p: Params = req.json()?;
    let challenge_id = Uuid::parse_str(&p.challenge_id).map_err(|_| {
        AuthError::unprocessable(ErrorCode::MfaFactorNotFound, "MFA factor with the provided challenge ID not found")
    })?;
    let params = p.webauthn.map(|w| VerifyParams { kind: w.kind, credential_response: w.credential_response });
    let grant = mfa_webauthn::verify(&cx.actors, auth, factor_id, challenge_id, params, req.client_ip()).await?;
    Ok(response::json(StatusCode::OK, &SessionJson::from(&grant)))
}
