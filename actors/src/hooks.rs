//! Auth hooks over HTTP(S) (SPEC §11): signed Standard Webhooks POSTs to an operator's
//! endpoint, GoTrue's transport rules (5 s per attempt, retries on connection failure and on
//! 429/503 with `retry-after`, JSON-only answers) and its error contract
//! (`{"error":{"http_code":…,"message":…}}` → that status to the client).
//!
//! Flows call the typed helpers at the bottom ([`before_user_created`], [`custom_access_token`],
//! ...); the send-SMS hook ([`crate::sms`]) and the send-email hook ([`crate::mailer`]) go
//! through [`invoke`] too. Secrets are [`Secret`]s: never in a log line. Hook answers are logged
//! Debug-escaped.

use crate::crypto::Secret;
use crate::error::{AuthError, AuthResult, ErrorCode, ErrorKind};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// GoTrue: 5 s per attempt.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// GoTrue: at most 3 attempts.
pub const MAX_ATTEMPTS: u32 = 3;
/// GoTrue: 2 s between attempts after a connection failure.
pub const RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// GoTrue: hook answers above 200 KiB are refused.
pub const RESPONSE_LIMIT: usize = 200 * 1024;

/// The seven extensibility points, with GoTrue's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookName {
    SendSms,
    SendEmail,
    CustomAccessToken,
    MfaVerificationAttempt,
    PasswordVerificationAttempt,
    BeforeUserCreated,
    AfterUserCreated,
}

impl HookName {
    /// Every hook, in the order of `GOTRUE_HOOK_<NAME>_*`.
    pub const ALL: [HookName; 7] = [
        HookName::SendSms,
        HookName::SendEmail,
        HookName::CustomAccessToken,
        HookName::MfaVerificationAttempt,
        HookName::PasswordVerificationAttempt,
        HookName::BeforeUserCreated,
        HookName::AfterUserCreated,
    ];
    /// `<NAME>` in `GOTRUE_HOOK_<NAME>_ENABLED`.
    pub fn env_name(self) -> &'static str {
        match self {
            HookName::SendSms => "SEND_SMS",
            HookName::SendEmail => "SEND_EMAIL",
            HookName::CustomAccessToken => "CUSTOM_ACCESS_TOKEN",
            HookName::MfaVerificationAttempt => "MFA_VERIFICATION_ATTEMPT",
            HookName::PasswordVerificationAttempt => "PASSWORD_VERIFICATION_ATTEMPT",
            HookName::BeforeUserCreated => "BEFORE_USER_CREATED",
            HookName::AfterUserCreated => "AFTER_USER_CREATED",
        }
    }
    /// `metadata.name` in the payload (GoTrue's v0hooks names).
    pub fn metadata_name(self) -> &'static str {
        match self {
            HookName::SendSms => "send-sms",
            HookName::SendEmail => "send-email",
            HookName::CustomAccessToken => "customize-access-token",
            HookName::MfaVerificationAttempt => "mfa-verification",
            HookName::PasswordVerificationAttempt => "password-verification",
            HookName::BeforeUserCreated => "before-user-created",
            HookName::AfterUserCreated => "after-user-created",
        }
    }
}

/// One configured HTTP(S) hook endpoint.
#[derive(Debug, Clone)]
pub struct HookEndpoint {
    /// `https://…`, or `http://` to a loopback host ([`validate_uri`]).
    pub uri: String,
    /// Entries of `GOTRUE_HOOK_<NAME>_SECRETS`, already validated by [`parse_secrets`].
    pub secrets: Vec<Secret>,
}

/// `GOTRUE_HOOK_*`: the enabled hooks and the transport bounds.
#[derive(Debug, Clone)]
pub struct HookSettings {
    pub send_email: Option<HookEndpoint>,
    pub custom_access_token: Option<HookEndpoint>,
    /// Validated and kept; fires once MFA lands.
    pub mfa_verification_attempt: Option<HookEndpoint>,
    pub password_verification_attempt: Option<HookEndpoint>,
    pub before_user_created: Option<HookEndpoint>,
    pub after_user_created: Option<HookEndpoint>,
    /// Per-attempt timeout (GoTrue: 5 s).
    pub attempt_timeout: Duration,
    /// Total time one invocation may take, retries included: below
    /// `GOTRUE_API_MAX_REQUEST_DURATION`, so the client hears the hook's fate, not a bare 504.
    pub total_budget: Duration,
}

impl Default for HookSettings {
    fn default() -> Self {
        HookSettings {
            send_email: None,
            custom_access_token: None,
            mfa_verification_attempt: None,
            password_verification_attempt: None,
            before_user_created: None,
            after_user_created: None,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            total_budget: Duration::from_secs(9),
        }
    }
}

/// A parsed signing secret.
enum SigningKey {
    /// `v1,whsec_<base64>`: HMAC-SHA256.
    Symmetric(Vec<u8>),
    /// `v1a,whpk_<base64>:whsk_<base64>`: Ed25519 (seed, or seed ‖ public key).
    Asymmetric(Vec<u8>),
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn parse_one(entry: &str) -> Result<SigningKey, String> {
    if let Some(rest) = entry.strip_prefix("v1,") {
        let key = rest.strip_prefix("whsec_").unwrap_or(rest);
        return b64(key)
            .filter(|k| !k.is_empty())
            .map(SigningKey::Symmetric)
            .ok_or_else(|| "a v1 secret must look like v1,whsec_<base64>".to_owned());
    }
    if let Some(rest) = entry.strip_prefix("v1a,") {
        let sk = rest.split_once(':').map(|(_, sk)| sk).unwrap_or(rest);
        let sk = sk.strip_prefix("v1a,").unwrap_or(sk);
        let bytes = sk.strip_prefix("whsk_").and_then(b64);
        return match bytes {
            Some(b) if b.len() == 32 || b.len() == 64 => {
                let seed = b[..32].to_vec();
                aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
                    .map_err(|_| "the v1a signing key is not an Ed25519 key".to_owned())?;
                Ok(SigningKey::Asymmetric(seed))
            }
            _ => Err("a v1a secret must look like v1a,whpk_<base64>:whsk_<base64 of a 32- or 64-byte Ed25519 key>"
                .to_owned()),
        };
    }
    Err("each secret must start with v1,whsec_ (HMAC-SHA256) or v1a,whpk_…:whsk_… (Ed25519)".to_owned())
}

/// Parses `GOTRUE_HOOK_<NAME>_SECRETS`: `|`-separated `v1,whsec_<base64>` (HMAC-SHA256) and
/// `v1a,whpk_<base64>:whsk_<base64>` (Ed25519) entries. Errors never quote the secret.
pub fn parse_secrets(raw: &str) -> Result<Vec<Secret>, String> {
    raw.split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_one(s).map(|_| Secret(s.to_owned())))
        .collect()
}

/// Checks a hook URI: `https://`, or `http://` only to localhost / loopback addresses /
/// `host.docker.internal` (GoTrue's list). `pg-functions://` is refused: there is no Postgres.
pub fn validate_uri(uri: &str) -> Result<(), String> {
    let parsed = url::Url::parse(uri).map_err(|e| format!("not a URL ({e})"))?;
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => d == "localhost" || d == "host.docker.internal",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("plain http:// is only allowed to localhost, 127.0.0.1 and ::1; use https://".to_owned())
            }
        }
        "pg-functions" => Err("pg-functions:// hooks need Postgres, which ferrotrue does not use; \
             point the hook at an https:// endpoint instead"
            .to_owned()),
        _ => Err("only https:// (or http:// to localhost) hooks are supported".to_owned()),
    }
}

/// Standard Webhooks symmetric signature: `v1,<base64 HMAC-SHA256(id.ts.body)>`.
pub fn sign_v1(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Standard Webhooks asymmetric signature: `v1a,<base64 Ed25519(id.ts.body)>`.
pub fn sign_v1a(seed: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    match aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(seed) {
        Ok(pair) => {
            let sig = pair.sign(format!("{id}.{timestamp}.{body}").as_bytes());
            format!("v1a,{}", base64::engine::general_purpose::STANDARD.encode(sig.as_ref()))
        }
        Err(_) => String::new(),
    }
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &str) -> String {
    let sigs: Vec<String> = secrets
        .iter()
        .filter_map(|s| match parse_one(s.expose()) {
            Ok(SigningKey::Symmetric(k)) => Some(sign_v1(&k, id, timestamp, body)),
            Ok(SigningKey::Asymmetric(seed)) => Some(sign_v1a(&seed, id, timestamp, body)),
            Err(_) => None,
        })
        .collect();
    sigs.join(" ")
}

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
});

/// GoTrue's `metadata` block.
fn metadata(name: HookName) -> Value {
    json!({
        "uuid": uuid::Uuid::new_v4().to_string(),
        "time": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "name": name.metadata_name(),
    })
}

fn hook_timeout(settings: &HookSettings) -> AuthError {
    AuthError::unprocessable(
        ErrorCode::HookTimeout,
        format!("Failed to reach hook within maximum time of {:.6} seconds", settings.attempt_timeout.as_secs_f64()),
    )
}

fn after_retries() -> AuthError {
    AuthError::unprocessable(ErrorCode::HookTimeoutAfterRetry, "Failed to reach hook after maximum retries")
}

/// The status family closest to a hook's `http_code` (the error contract).
fn kind_for(code: u64) -> ErrorKind {
    match code {
        400 => ErrorKind::BadRequest,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        405 => ErrorKind::MethodNotAllowed,
        409 => ErrorKind::Conflict,
        413 => ErrorKind::PayloadTooLarge,
        422 => ErrorKind::Unprocessable,
        429 => ErrorKind::TooManyRequests,
        504 => ErrorKind::GatewayTimeout,
        c if (400..500).contains(&c) => ErrorKind::BadRequest,
        _ => ErrorKind::Internal,
    }
}

/// GoTrue's `hookserrors.Check`: `{"error":{"message":…}}` with a non-empty message is a
/// refusal; status `http_code` (default 500), code `unexpected_failure` for 500 else `unknown`.
pub fn check_error_contract(body: &Value) -> AuthResult<()> {
    let Some(err) = body.get("error").filter(|e| e.is_object()) else { return Ok(()) };
    let message = err.get("message").and_then(Value::as_str).unwrap_or_default();
    if message.is_empty() {
        return Ok(());
    }
    let http_code = err.get("http_code").and_then(Value::as_u64).filter(|c| *c != 0).unwrap_or(500);
    let kind = kind_for(http_code);
    let code = if kind == ErrorKind::Internal { ErrorCode::UnexpectedFailure } else { ErrorCode::Unknown };
    Err(AuthError::new(kind, code, message.to_owned()))
}

/// Parses a `retry-after` header: delay-seconds only (HTTP dates are treated as absent).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// POSTs `payload` (with `metadata` added) to the hook and returns its JSON answer (`Null` for
/// a 204), after GoTrue's transport and error-contract checks.
pub async fn invoke(
    settings: &HookSettings,
    name: HookName,
    endpoint: &HookEndpoint,
    mut payload: Value,
) -> AuthResult<Value> {
    if let Some(map) = payload.as_object_mut() {
        map.insert("metadata".into(), metadata(name));
    }
    let body = payload.to_string();
    let deadline = Instant::now() + settings.total_budget;
    let hook = name.metadata_name();
    for attempt in 0..MAX_ATTEMPTS {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(hook_timeout(settings));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = signature_header(&endpoint.secrets, &id, timestamp, &body);
        let sent = CLIENT
            .post(&endpoint.uri)
            .header("content-type", "application/json")
            .header("accept-encoding", "identity")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.clone())
            .timeout(settings.attempt_timeout.min(remaining))
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) if e.is_timeout() => {
                tracing::error!(hook, attempt, uri = ?endpoint.uri, "hook timed out");
                return Err(hook_timeout(settings));
            }
            Err(e) => {
                tracing::error!(hook, attempt, uri = ?endpoint.uri, error = %e, "hook unreachable");
                let wait = RETRY_BACKOFF.min(settings.attempt_timeout);
                if attempt + 1 < MAX_ATTEMPTS && Instant::now() + wait < deadline {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(after_retries());
            }
        };
        let status = resp.status().as_u16();
        match status {
            204 => return Ok(Value::Null),
            200 | 202 => return read_answer(hook, resp).await,
            429 | 503 => {
                let Some(wait) = retry_after(&resp) else {
                    tracing::error!(hook, status, "hook unavailable, no retry-after");
                    return Err(AuthError::internal("Service currently unavailable due to hook"));
                };
                tracing::warn!(hook, status, wait_secs = wait.as_secs(), "hook asked to retry");
                if attempt + 1 >= MAX_ATTEMPTS || Instant::now() + wait >= deadline {
                    return Err(after_retries());
                }
                tokio::time::sleep(wait).await;
            }
            other => {
                let text = resp.text().await.unwrap_or_default();
                let text: String = text.chars().take(512).collect();
                tracing::error!(hook, status = other, body = ?text, "hook answered with an error status");
                return Err(match other {
                    400 => AuthError::internal("Invalid payload sent to hook"),
                    401 => AuthError::internal("Hook requires authorization token"),
                    _ => AuthError::internal(format!("Unexpected status code returned from hook: {other}")),
                });
            }
        }
    }
    Err(after_retries())
}

async fn read_answer(hook: &'static str, resp: reqwest::Response) -> AuthResult<Value> {
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if content_type.is_empty() {
        return Err(AuthError::bad_request(
            ErrorCode::HookPayloadInvalidContentType,
            "Invalid Content-Type: Missing Content-Type header",
        ));
    }
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "application/json" {
        tracing::error!(hook, content_type = ?content_type, "hook answered with a non-JSON body");
        return Err(AuthError::bad_request(
            ErrorCode::HookPayloadInvalidContentType,
            format!("Invalid JSON response. Received content-type: {content_type}"),
        ));
    }
    let mut resp = resp;
    let mut bytes = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > RESPONSE_LIMIT {
                    return Err(AuthError::unprocessable(
                        ErrorCode::HookPayloadOverSizeLimit,
                        format!("Payload size exceeded size limit of {RESPONSE_LIMIT} bytes"),
                    ));
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::error!(hook, error = %e, "reading the hook's answer failed");
                return Err(AuthError::internal("Error reading the hook's answer"));
            }
        }
    }
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => {
            let text: String = String::from_utf8_lossy(&bytes).chars().take(512).collect();
            tracing::error!(hook, body = ?text, "hook answered invalid JSON");
            return Err(AuthError::internal("Error unmarshaling JSON output."));
        }
    };
    if let Err(e) = check_error_contract(&value) {
        tracing::warn!(hook, body = ?value.to_string(), "hook refused");
        return Err(e);
    }
    Ok(value)
}

/// The user as GoTrue's hook payloads show it.
pub fn user_json(u: &crate::user_registry::model::User) -> Value {
    json!({
        "id": u.id.to_string(),
        "aud": u.aud,
        "role": u.role,
        "email": u.email,
        "phone": u.phone,
        "app_metadata": Value::Object(u.app_metadata.to_map()),
        "user_metadata": Value::Object(u.user_metadata.to_map()),
        "identities": u.identities.iter().map(|i| json!({
            "provider": i.provider,
            "identity_data": Value::Object(i.identity_data.to_map()),
        })).collect::<Vec<_>>(),
        "created_at": u.created_at.rfc3339(),
        "updated_at": u.updated_at.rfc3339(),
        "is_anonymous": u.is_anonymous,
    })
}

/// `before_user_created`: the user about to be saved; any refusal (error contract) aborts the
/// creation. A no-op when the hook is not configured.
pub async fn before_user_created(settings: &HookSettings, user: &crate::user_registry::model::User) -> AuthResult<()> {
    let Some(endpoint) = &settings.before_user_created else { return Ok(()) };
    invoke(settings, HookName::BeforeUserCreated, endpoint, json!({"user": user_json(user)})).await.map(|_| ())
}

/// `after_user_created`: the saved user. An error is returned to the client, as GoTrue does
/// (the user stays created).
pub async fn after_user_created(settings: &HookSettings, user: &crate::user_registry::model::User) -> AuthResult<()> {
    let Some(endpoint) = &settings.after_user_created else { return Ok(()) };
    invoke(settings, HookName::AfterUserCreated, endpoint, json!({"user": user_json(user)})).await.map(|_| ())
}

/// `custom_access_token`: returns the claims to sign (the hook's, schema-checked), or `claims`
/// unchanged when the hook is not configured.
pub async fn custom_access_token(
    settings: &HookSettings,
    user_id: uuid::Uuid,
    claims: Value,
    authentication_method: &str,
) -> AuthResult<Value> {
    let Some(endpoint) = &settings.custom_access_token else { return Ok(claims) };
    let payload =
        json!({"user_id": user_id.to_string(), "claims": claims, "authentication_method": authentication_method});
    let answer = invoke(settings, HookName::CustomAccessToken, endpoint, payload).await?;
    let Some(out) = answer.get("claims") else {
        return Err(AuthError::internal("output claims field is missing"));
    };
    let Value::Object(out) = out else {
        return Err(AuthError::internal(
            "output claims do not conform to the expected schema: \n- claims: Invalid type. Expected: object\n",
        ));
    };
    validate_claims(out)?;
    Ok(Value::Object(out.clone()))
}

/// GoTrue's `MinimumViableTokenSchema`: required claims present, known claims of the right type.
pub fn validate_claims(claims: &Map<String, Value>) -> AuthResult<()> {
    let mut problems = Vec::new();
    for required in ["aud", "exp", "iat", "sub", "email", "phone", "role", "aal", "session_id", "is_anonymous"] {
        if !claims.contains_key(required) {
            problems.push(format!("- (root): {required} is required"));
        }
    }
    let is_int = |v: &Value| v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0);
    for (key, value) in claims {
        let (ok, expected) = match key.as_str() {
            "aud" => (value.is_string() || value.is_array(), "string, array"),
            "exp" | "iat" | "nbf" => (is_int(value), "integer"),
            "jti" | "iss" | "sub" | "email" | "phone" | "role" | "aal" | "session_id" | "client_id" => {
                (value.is_string(), "string")
            }
            "app_metadata" | "user_metadata" => (value.is_object(), "object"),
            "amr" => (
                value.as_array().is_some_and(|a| a.iter().all(|e| e.is_string() || e.is_object())),
                "array of strings or objects",
            ),
            _ => (true, ""),
        };
        if !ok {
            problems.push(format!("- {key}: Invalid type. Expected: {expected}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(AuthError::internal(format!(
        "output claims do not conform to the expected schema: \n{}\n",
        problems.join("\n")
    )))
}

/// `password_verification_attempt`'s answer.
#[derive(Debug, Clone, Default)]
pub struct PasswordDecision {
    pub reject: bool,
    pub message: String,
    pub should_logout_user: bool,
}

/// GoTrue's default rejection text.
pub const DEFAULT_PASSWORD_REJECTION: &str = "Further password verification attempts will be rejected.";

/// `password_verification_attempt`: `None` when the hook is not configured.
pub async fn password_verification_attempt(
    settings: &HookSettings,
    user_id: uuid::Uuid,
    valid: bool,
) -> AuthResult<Option<PasswordDecision>> {
    let Some(endpoint) = &settings.password_verification_attempt else { return Ok(None) };
    let answer = invoke(
        settings,
        HookName::PasswordVerificationAttempt,
        endpoint,
        json!({"user_id": user_id.to_string(), "valid": valid}),
    )
    .await?;
    let decision = answer.get("decision").and_then(Value::as_str).unwrap_or_default();
    let message = answer.get("message").and_then(Value::as_str).unwrap_or_default();
    Ok(Some(PasswordDecision {
        reject: decision == "reject",
        message: if message.is_empty() { DEFAULT_PASSWORD_REJECTION.to_owned() } else { message.to_owned() },
        should_logout_user: answer.get("should_logout_user").and_then(Value::as_bool).unwrap_or(false),
    }))
}

/// GoTrue's default MFA rejection text.
pub const DEFAULT_MFA_REJECTION: &str = "Further MFA verification attempts will be rejected.";

/// `mfa_verification_attempt`: `Some(message)` when the hook rejects the attempt, `None` when it
/// continues or is not configured.
pub async fn mfa_verification_attempt(
    settings: &HookSettings,
    user_id: uuid::Uuid,
    factor_id: uuid::Uuid,
    factor_type: &str,
    valid: bool,
) -> AuthResult<Option<String>> {
    let Some(endpoint) = &settings.mfa_verification_attempt else { return Ok(None) };
    let answer = invoke(
        settings,
        HookName::MfaVerificationAttempt,
        endpoint,
        json!({"factor_id": factor_id.to_string(), "factor_type": factor_type, "user_id": user_id.to_string(), "valid": valid}),
    )
    .await?;
    if answer.get("decision").and_then(Value::as_str) != Some("reject") {
        return Ok(None);
    }
    let message = answer.get("message").and_then(Value::as_str).unwrap_or_default();
    Ok(Some(if message.is_empty() { DEFAULT_MFA_REJECTION.to_owned() } else { message.to_owned() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_v1_vector() {
        let secrets = parse_secrets("v1,whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature_header(&secrets, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, r#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn v1a_signs_with_ed25519_that_verifies() {
        use aws_lc_rs::signature::{KeyPair, UnparsedPublicKey, ED25519};
        let seed = [7u8; 32];
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let e = base64::engine::general_purpose::STANDARD;
        let raw = format!("v1a,whpk_{}:whsk_{}", e.encode(pair.public_key().as_ref()), e.encode(seed));
        let secrets = parse_secrets(&format!("v1,whsec_AAAA|{raw}")).unwrap();
        let header = signature_header(&secrets, "id", 1, "{}");
        let v1a = header.split(' ').nth(1).unwrap().strip_prefix("v1a,").unwrap();
        let sig = e.decode(v1a).unwrap();
        UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref()).verify(b"id.1.{}", &sig).unwrap();
    }

    #[test]
    fn bad_secrets_and_uris_are_refused_without_echoing_the_secret() {
        let err = parse_secrets("v1,whsec_!!!topsecret").unwrap_err();
        assert!(!err.contains("topsecret"));
        assert!(parse_secrets("whsec_AAAA").is_err());
        assert!(parse_secrets("v1a,whpk_AAAA:whsk_AAAA").is_err());
        assert!(validate_uri("https://hooks.example.com/x").is_ok());
        assert!(validate_uri("http://localhost:9/x").is_ok());
        assert!(validate_uri("http://[::1]:9/x").is_ok());
        assert!(validate_uri("http://127.0.0.1:9/x").is_ok());
        assert!(validate_uri("http://hooks.example.com/x").is_err());
        assert!(validate_uri("pg-functions://postgres/public/hook").unwrap_err().contains("Postgres"));
        assert!(validate_uri("ftp://x").is_err());
    }

    #[test]
    fn error_contract() {
        assert!(check_error_contract(&json!({"claims": {}})).is_ok());
        assert!(check_error_contract(&json!({"error": {"http_code": 400}})).is_ok());
        let e = check_error_contract(&json!({"error": {"http_code": 403, "message": "no"}})).unwrap_err();
        assert_eq!((e.kind, e.code, e.msg.as_ref()), (ErrorKind::Forbidden, ErrorCode::Unknown, "no"));
        let e = check_error_contract(&json!({"error": {"message": "boom"}})).unwrap_err();
        assert_eq!((e.kind, e.code), (ErrorKind::Internal, ErrorCode::UnexpectedFailure));
    }

    #[test]
    fn claims_schema() {
        let good = json!({"aud": "authenticated", "exp": 2, "iat": 1, "sub": "s", "email": "", "phone": "",
            "role": "r", "aal": "aal1", "session_id": "x", "is_anonymous": false, "amr": [{"method": "password"}]});
        assert!(validate_claims(good.as_object().unwrap()).is_ok());
        let mut missing = good.as_object().unwrap().clone();
        missing.remove("role");
        assert!(validate_claims(&missing).unwrap_err().msg.contains("role is required"));
        let mut wrong = good.as_object().unwrap().clone();
        wrong.insert("exp".into(), json!("soon"));
        assert!(validate_claims(&wrong).unwrap_err().msg.contains("exp"));
    }
}
