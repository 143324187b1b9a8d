//! Phone codes (SPEC §6.8): issue a single-use, short-lived code (stored as a keyed MAC bound to
//! the number; wrong guesses count against the number, see [`crate::otp_issuer`]) and deliver it by SMS
//! (send-SMS hook or Twilio). Test numbers (`GOTRUE_SMS_TEST_OTP`) get their fixed code and no
//! message. Spacing per user (`GOTRUE_SMS_MAX_FREQUENCY`) and a global budget apply.

use super::email::numeric_otp;
use crate::clock::Timestamp;
use crate::crypto::Secret;
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::otp_issuer::NewToken;
use crate::sms::Sms;
use crate::user_registry::model::User;
use crate::Actors;

/// What a code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneCode {
    /// Sign-up / sign-in confirmation (`type=sms`).
    Confirmation,
    /// Confirming a new number (`type=phone_change`).
    PhoneChange,
    /// A reauthentication nonce.
    Reauthentication,
}

impl PhoneCode {
    fn token_type(self) -> &'static str {
        match self {
            PhoneCode::Confirmation => "confirmation_token",
            PhoneCode::PhoneChange => "phone_change_token",
            PhoneCode::Reauthentication => "reauthentication_token",
        }
    }
}

/// `sms` (default) or `whatsapp`; anything else is 400.
pub fn channel(raw: &str) -> AuthResult<String> {
    match raw {
        "" | "sms" => Ok("sms".into()),
        "whatsapp" => Ok("whatsapp".into()),
        _ => Err(AuthError::validation("Invalid channel, must be one of sms or whatsapp")),
    }
}

/// 429 `over_sms_send_rate_limit` while the last code is younger than `GOTRUE_SMS_MAX_FREQUENCY`.
pub fn check_spacing(a: &Actors, last_sent: Option<Timestamp>) -> AuthResult<()> {
    super::email::spacing(a, last_sent, a.settings.sms.max_frequency, ErrorCode::OverSmsSendRateLimit)
}

fn test_otp(a: &Actors, phone: &str) -> Option<String> {
    let s = &a.settings.sms;
    if s.test_otp_valid_until.is_some_and(|until| a.clock.now() >= until) {
        return None;
    }
    s.test_otps.iter().find(|(p, _)| p == phone).map(|(_, code)| code.clone())
}

/// Issues a code for `phone` and sends it; returns the provider's message id (`test-otp` for
/// test numbers, empty when the provider gave none).
pub async fn send_code(a: &Actors, user: &User, kind: PhoneCode, phone: &str, channel: &str) -> AuthResult<String> {
    let (otp, message_id) = match test_otp(a, phone) {
        Some(code) => (code, Some("test-otp".to_owned())),
        None => {
            if !a.settings.sms.can_send() {
                return Err(AuthError::unprocessable(
                    ErrorCode::SmsSendFailed,
                    "Error sending SMS: no SMS provider is configured (set GOTRUE_SMS_PROVIDER or GOTRUE_HOOK_SEND_SMS_*)",
                ));
            }
            (numeric_otp(a.settings.sms.otp_length), None)
        }
    };
    let now = a.clock.now();
    a.otps
        .issue(NewToken {
            user_id: user.id,
            token_type: kind.token_type().into(),
            relates_to: phone.to_owned(),
            link: None,
            code: Secret(otp.clone()),
            expires_at: Some(now.plus(a.settings.sms.otp_exp)),
        })
        .await?;
    if let Some(id) = message_id {
        return Ok(id);
    }
    let sms = Sms {
        phone: phone.to_owned(),
        otp,
        channel: channel.to_owned(),
        body: String::new(),
        user: crate::hooks::user_json(user),
        sms_type: "",
    };
    a.mail.send_sms(sms).await
}
