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
    /// The hook's `sms_type`: empty for sign-in codes, [`MFA_SMS_TYPE`] for a phone factor's
    /// challenge (rendered with `GOTRUE_MFA_PHONE_TEMPLATE`, spaced per destination number).
    pub sms_type: &'static str,
}

/// `sms_type` of a phone-factor challenge code (GoTrue's send-SMS hook payload).
pub const MFA_SMS_TYPE: &str = "mfa";

/// Most destination numbers [`RecentTargets`] remembers at once.
pub const MAX_RECENT_TARGETS: usize = 65_536;

/// When each destination number last got an MFA code, so that no number receives more than one
/// per `GOTRUE_MFA_PHONE_MAX_FREQUENCY` however many factors (of however many users) name it.
/// GoTrue spaces codes per factor only, which re-enrolling or a second account resets. In
/// memory (like the SMS budget) and bounded: when full, entries past their window are dropped;
/// if none is, every new number is refused until one is (the bound degrades to a global one).
#[derive(Debug, Default)]
pub struct RecentTargets {
    last: std::collections::HashMap<String, crate::clock::Timestamp>,
}

impl RecentTargets {
    /// Records a code for `phone` at `now`, or 429 `over_sms_send_rate_limit` inside the window.
    pub fn take(&mut self, phone: &str, now: crate::clock::Timestamp, spacing: Duration) -> AuthResult<()> {
        if let Some(next) = self.last.get(phone).map(|t| t.plus(spacing)).filter(|next| now < *next) {
            let wait = (next.0 - now.0 + 999_999) / 1_000_000;
            return Err(AuthError::too_many_requests(
                ErrorCode::OverSmsSendRateLimit,
                format!("For security purposes, you can only request this after {wait} seconds."),
            ));
        }
        if self.last.len() >= MAX_RECENT_TARGETS && !self.last.contains_key(phone) {
            self.last.retain(|_, t| now < t.plus(spacing));
            if self.last.len() >= MAX_RECENT_TARGETS {
                return Err(AuthError::too_many_requests(ErrorCode::OverSmsSendRateLimit, "SMS rate limit exceeded"));
            }
        }
        self.last.insert(phone.to_owned(), now);
        Ok(())
    }

    /// Forgets `phone`'s entry if it is still the one recorded at `at` (its code was not sent).
    pub fn release(&mut self, phone: &str, at: crate::clock::Timestamp) {
        if self.last.get(phone) == Some(&at) {
            self.last.remove(phone);
        }
    }

    /// Numbers currently remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// True when no number is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
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
    let mut payload = json!({"user": sms.user, "sms": {"otp": sms.otp, "phone": sms.phone}});
    if !sms.sms_type.is_empty() {
        payload["sms"]["sms_type"] = json!(sms.sms_type);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    #[test]
    fn recent_targets_space_each_number_and_stay_bounded() {
        let minute = Duration::from_secs(60);
        let mut r = RecentTargets::default();
        let t0 = Timestamp(1_000_000_000);
        r.take("15550001", t0, minute).unwrap();
        let err = r.take("15550001", t0.plus(Duration::from_secs(59)), minute).unwrap_err();
        assert_eq!(
            (err.code, err.msg.as_ref()),
            (ErrorCode::OverSmsSendRateLimit, "For security purposes, you can only request this after 1 seconds.")
        );
        r.take("15550002", t0, minute).unwrap();
        r.take("15550001", t0.plus(minute), minute).unwrap();
        // An unsent code releases its window, unless a newer one took it since.
        r.release("15550002", t0);
        r.take("15550002", t0, minute).unwrap();
        r.release("15550001", t0);
        assert!(r.take("15550001", t0.plus(minute), minute).is_err());
        // Full: stale entries make room; with none stale, new numbers wait.
        let mut r = RecentTargets::default();
        for i in 0..MAX_RECENT_TARGETS {
            r.take(&i.to_string(), t0, minute).unwrap();
        }
        assert!(r.take("new", t0, minute).is_err());
        assert_eq!(r.len(), MAX_RECENT_TARGETS);
        r.take("new", t0.plus(minute), minute).unwrap();
        assert_eq!(r.len(), 1);
    }
}
