//! SMS: settings, the message text, and the two ways out — the send-SMS hook (a Standard
//! Webhooks POST to an operator's endpoint, which works anywhere, including air-gapped sites
//! with their own gateway) and Twilio's REST API. The Mailer actor runs these off its mailbox.

use crate::crypto::Secret;
use crate::error::{AuthError, AuthResult, ErrorCode};
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

/// The send-SMS hook: a hook endpoint like every other ([`crate::hooks`]), with `v1` (HMAC) and
/// `v1a` (Ed25519) secrets.
pub type SmsHook = crate::hooks::HookEndpoint;

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
    match crate::hooks::invoke(settings, crate::hooks::HookName::SendSms, hook, payload).await {
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
