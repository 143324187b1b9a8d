//! SMS: settings, the message text, and the two ways out — the send-SMS hook (a Standard
//! Webhooks POST to an operator's endpoint, which works anywhere, including air-gapped sites
//! with their own gateway) and Twilio's REST API. The Mailer actor runs these off its mailbox.

use crate::crypto::Secret;
use crate::error::{AuthError, AuthResult, ErrorCode};
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;

/// Outbound HTTP bound for SMS providers and hooks (GoTrue: 5 s for hooks).
pub const SMS_HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// `GOTRUE_SMS_*` and `GOTRUE_HOOK_SEND_SMS_*`.
#[derive(Debug, Clone)]
pub struct SmsSettings {
    /// `GOTRUE_SMS_PROVIDER=twilio` and its credentials.
    pub twilio: Option<TwilioSettings>,
    /// `GOTRUE_HOOK_SEND_SMS_*`: replaces the provider when enabled.
    pub hook: Option<SmsHook>,
    /// `GOTRUE_SMS_OTP_LENGTH`.
    pub otp_length: usize,
    /// `GOTRUE_SMS_OTP_EXP`.
    pub otp_exp: Duration,
    /// `GOTRUE_SMS_TEMPLATE` (Go syntax, `{{ .Code }}`).
    pub template: String,
    /// `GOTRUE_SMS_MAX_FREQUENCY`.
    pub max_frequency: Duration,
    /// `GOTRUE_RATE_LIMIT_SMS_SENT`: messages per window (global); `None` = no budget.
    pub budget: Option<(u32, Duration)>,
    /// `GOTRUE_SMS_TEST_OTP`: phone → fixed code; nothing is sent to these numbers.
    pub test_otps: Vec<(String, String)>,
    /// `GOTRUE_SMS_TEST_OTP_VALID_UNTIL` (µs since epoch).
    pub test_otp_valid_until: Option<crate::clock::Timestamp>,
}

impl Default for SmsSettings {
    fn default() -> Self {
        SmsSettings {
            twilio: None,
            hook: None,
            otp_length: 6,
            otp_exp: Duration::from_secs(60),
            template: "Your code is {{ .Code }}".into(),
            max_frequency: Duration::from_secs(60),
            budget: Some((30, Duration::from_secs(3600))),
            test_otps: Vec::new(),
            test_otp_valid_until: None,
        }
    }
}

impl SmsSettings {
    /// `/settings` `sms_provider`.
    pub fn provider_name(&self) -> &'static str {
        if self.twilio.is_some() {
            "twilio"
        } else {
            ""
        }
    }
    /// True when some way to deliver SMS is configured.
    pub fn can_send(&self) -> bool {
        self.twilio.is_some() || self.hook.is_some()
    }
}

/// Twilio credentials.
#[derive(Debug, Clone)]
pub struct TwilioSettings {
    pub account_sid: String,
    pub auth_token: Secret,
    /// A messaging service SID (`MG…`) or a sender number.
    pub message_service_sid: String,
    /// `FERROTRUE_SMS_TWILIO_BASE_URL` (default `https://api.twilio.com`): tests and proxies.
    pub base_url: String,
}

/// The send-SMS hook.
#[derive(Clone)]
pub struct SmsHook {
    pub uri: String,
    /// Decoded `v1,whsec_<base64>` HMAC keys (`|`-separated in the variable).
    pub secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for SmsHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsHook").field("uri", &self.uri).field("secrets", &"[redacted]").finish()
    }
}

impl SmsHook {
    /// The generic hook endpoint ([`crate::hooks`]) this hook posts to.
    fn endpoint(&self) -> crate::hooks::HookEndpoint {
        let secrets = self
            .secrets
            .iter()
            .map(|k| Secret(format!("v1,whsec_{}", base64::engine::general_purpose::STANDARD.encode(k))))
            .collect();
        crate::hooks::HookEndpoint { uri: self.uri.clone(), secrets }
    }
}

/// Parses `GOTRUE_HOOK_SEND_SMS_SECRETS`: `v1,whsec_<base64>` entries separated by `|`.
pub fn parse_hook_secrets(raw: &str) -> Result<Vec<Vec<u8>>, String> {
    raw.split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let b64 = s.strip_prefix("v1,").unwrap_or(s);
            let b64 = b64.strip_prefix("whsec_").unwrap_or(b64);
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| "each secret must look like v1,whsec_<base64>".to_owned())
        })
        .collect()
}

/// Standard Webhooks signature header value for one secret: `v1,<base64 HMAC-SHA256(id.ts.body)>`.
pub fn webhook_signature(secret: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    crate::hooks::sign_v1(secret, id, timestamp, body)
}

/// One SMS to deliver.
#[derive(Debug, Clone)]
pub struct Sms {
    pub phone: String,
    pub otp: String,
    /// `sms` or `whatsapp`.
    pub channel: String,
    /// The rendered text.
    pub body: String,
    /// GoTrue's user JSON, for the hook payload.
    pub user: Value,
}

fn send_failed(detail: impl std::fmt::Display) -> AuthError {
    AuthError::unprocessable(ErrorCode::SmsSendFailed, format!("Error sending SMS: {detail}"))
}

/// Delivers through the hook if enabled, else Twilio. Returns the provider's message id.
/// `hooks` supplies the hook transport bounds (per-attempt timeout, total budget).
pub async fn deliver(
    settings: &SmsSettings,
    hooks: &crate::hooks::HookSettings,
    client: &reqwest::Client,
    sms: Sms,
) -> AuthResult<String> {
    if let Some(hook) = &settings.hook {
        return deliver_hook(hook, hooks, &sms).await;
    }
    if let Some(twilio) = &settings.twilio {
        return deliver_twilio(twilio, client, &sms).await;
    }
    Err(send_failed("no SMS provider is configured (set GOTRUE_SMS_PROVIDER or GOTRUE_HOOK_SEND_SMS_*)"))
}

async fn deliver_hook(hook: &SmsHook, settings: &crate::hooks::HookSettings, sms: &Sms) -> AuthResult<String> {
    let payload = json!({"user": sms.user, "sms": {"otp": sms.otp, "phone": sms.phone}});
    match crate::hooks::invoke(settings, crate::hooks::HookName::SendSms, &hook.endpoint(), payload).await {
        Ok(_) => Ok(String::new()),
        Err(e) if e.code == ErrorCode::HookTimeout || e.code == ErrorCode::HookTimeoutAfterRetry => {
            Err(send_failed(format!("the send-SMS hook did not answer ({})", e.msg)))
        }
        Err(e) => Err(send_failed(e.msg)),
    }
}

async fn deliver_twilio(t: &TwilioSettings, client: &reqwest::Client, sms: &Sms) -> AuthResult<String> {
    let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", t.base_url.trim_end_matches('/'), t.account_sid);
    let (to, from_key) = if sms.channel == "whatsapp" {
        (format!("whatsapp:+{}", sms.phone), "From")
    } else if t.message_service_sid.starts_with("MG") {
        (format!("+{}", sms.phone), "MessagingServiceSid")
    } else {
        (format!("+{}", sms.phone), "From")
    };
    let from = if sms.channel == "whatsapp" {
        format!("whatsapp:{}", t.message_service_sid)
    } else {
        t.message_service_sid.clone()
    };
    let form = [("To", to.as_str()), (from_key, from.as_str()), ("Body", sms.body.as_str())];
    let resp = client
        .post(&url)
        .basic_auth(&t.account_sid, Some(t.auth_token.expose()))
        .form(&form)
        .timeout(SMS_HTTP_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "Twilio unreachable");
            send_failed("could not reach Twilio")
        })?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        tracing::error!(%status, ?body, "Twilio refused the message");
        let message = body["message"].as_str().unwrap_or("Twilio refused the message").to_owned();
        return Err(send_failed(message));
    }
    if let Some(code) = body["error_code"].as_i64() {
        return Err(send_failed(format!("Twilio error {code}: {}", body["error_message"].as_str().unwrap_or(""))));
    }
    Ok(body["sid"].as_str().unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_signature() {
        // Known vector from the Standard Webhooks reference implementation.
        let secret = parse_hook_secrets("v1,whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = webhook_signature(&secret[0], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, r#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_must_be_base64() {
        assert!(parse_hook_secrets("v1,whsec_!!!").is_err());
        assert_eq!(parse_hook_secrets("v1,whsec_AAAA|v1,whsec_AQID").unwrap().len(), 2);
    }
}
