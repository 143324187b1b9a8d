//! MFA with phone factors: port of GoTrue's `enrollPhoneFactor`, `challengePhoneFactor` and
//! `verifyPhoneFactor` (api/mfa.go). [`super::mfa`] dispatches here by factor type and keeps
//! what all factor types share (ownership, limits, unenroll, admin routes).
//!
//! * A challenge's code goes out through the same door as sign-in codes (the mailer actor: the
//!   send-SMS hook with `sms_type: "mfa"`, or Twilio), rendered with `GOTRUE_MFA_PHONE_TEMPLATE`.
//! * The code is stored only as a keyed MAC bound to its challenge id (the key derived from the
//!   JWT secret), compared in constant time, never logged; a challenge dies after
//!   [`MAX_CHALLENGE_ATTEMPTS`] wrong codes.
//! * The challenge is on disk before the SMS leaves (`a.durable()`); if the SMS cannot be sent,
//!   the challenge is withdrawn again and the factor's spacing clock restored.
//! * Codes are spaced per factor (`GOTRUE_MFA_PHONE_MAX_FREQUENCY`, GoTrue) and, in the mailer,
//!   per destination number over all factors of all users ([`crate::sms::RecentTargets`]), so
//!   re-enrolling or a second account does not let a client flood a number; the global SMS
//!   budget and the per-client challenge limit apply as well.

use super::auth::Authenticated;
use super::mfa::{self, EnrollInput, Enrolled, MAX_CHALLENGE_ATTEMPTS, MAX_OPEN_CHALLENGES};
use super::{audit, grant, AuditActor, SessionGrant};
use crate::clock::Timestamp;
use crate::crypto;
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::sms::{Sms, MFA_SMS_TYPE};
use crate::user_registry::model::{Challenge, Factor};
use crate::Actors;
use uuid::Uuid;

/// The `amr` method of a phone-factor verification (GoTrue's `MFAPhone`).
pub const AMR: &str = "mfa/phone";
/// GoTrue's `InvalidChannelError`.
const INVALID_CHANNEL: &str = "Invalid channel, supported values are 'sms' or 'whatsapp'. 'whatsapp' is only \
                               supported if Twilio or Twilio Verify is used as the provider.";

/// The MAC stored for `code` on challenge `challenge_id`.
fn code_mac(a: &Actors, challenge_id: Uuid, code: &str) -> [u8; 32] {
    let key = crypto::derive_key(&a.settings.jwt.secret, "mfa phone code v1");
    crypto::hmac_sha256(&key, &[challenge_id.as_bytes(), code.as_bytes()])
}

fn verify_disabled() -> AuthError {
    AuthError::unprocessable(ErrorCode::MfaPhoneVerifyNotEnabled, "MFA verification is disabled for Phone")
}

/// GoTrue's `IsValidMessageChannel`: with the send-SMS hook any channel is passed on; otherwise
/// `sms`, or `whatsapp` through Twilio.
fn message_channel(a: &Actors, raw: &str) -> AuthResult<String> {
    let channel = if raw.is_empty() { "sms" } else { raw };
    let sms = &a.settings.sms;
    let valid = sms.hook.is_some() || channel == "sms" || (channel == "whatsapp" && sms.twilio.is_some());
    if !valid {
        return Err(AuthError::validation(INVALID_CHANNEL));
    }
    Ok(channel.to_owned())
}

/// `POST /factors` with `factor_type: "phone"`.
pub async fn enroll(a: &Actors, auth: Authenticated, input: EnrollInput) -> AuthResult<Enrolled> {
    let mfa = a.settings.mfa.clone();
    if !mfa.phone_enroll_enabled {
        return Err(AuthError::unprocessable(ErrorCode::MfaPhoneEnrollNotEnabled, "MFA enroll is disabled for Phone"));
    }
    if input.phone.is_empty() {
        return Err(AuthError::validation("Phone number required to enroll Phone factor"));
    }
    let phone = super::validate::phone(&input.phone)?;
    let now = a.clock.now();
    let factor = Factor {
        id: Uuid::new_v4(),
        user_id: auth.user.id,
        friendly_name: input.friendly_name.clone(),
        factor_type: "phone".into(),
        status: "unverified".into(),
        sealed_secret: Vec::new(),
        created_at: now,
        updated_at: now,
        last_challenged_at: None,
        last_used_step: None,
        challenges: Vec::new(),
        phone: phone.clone(),
        web_authn_credential: Vec::new(),
        web_authn_aaguid: None,
    };
    let aal = mfa::session_aal(&auth).to_owned();
    let name = input.friendly_name;
    let new = factor.clone();
    a.users
        .edit_factors(auth.user.id, move |factors| {
            let same_number = |f: &Factor| f.factor_type == "phone" && f.phone == phone;
            if factors.iter().any(|f| same_number(f) && f.is_verified()) {
                return Err(AuthError::unprocessable(
                    ErrorCode::MfaVerifiedFactorExists,
                    "A verified phone factor already exists, unenroll the existing factor to continue",
                ));
            }
            // An unverified factor for the same number is replaced (GoTrue), whatever follows.
            factors.retain(|f| !same_number(f));
            mfa::check_new_factor(factors, &name, &mfa, &aal, now)?;
            factors.push(new.clone());
            Ok(Some(new))
        })
        .await?;
    let fid = factor.id.to_string();
    audit(a, AuditActor::User(&auth.user), "factor_in_progress", &[("factor_id", &fid), ("factor_type", "phone")])
        .await?;
    Ok(Enrolled { factor, qr_code: String::new(), secret: String::new(), uri: String::new() })
}

/// `POST /factors/{id}/challenge` for a phone factor: `(challenge id, type, expires_at)`.
pub async fn challenge(
    a: &Actors,
    auth: Authenticated,
    factor: Factor,
    channel: &str,
    ip: String,
) -> AuthResult<(Uuid, String, i64)> {
    let mfa = a.settings.mfa.clone();
    if !mfa.phone_verify_enabled {
        return Err(verify_disabled());
    }
    let channel = message_channel(a, channel)?;
    let spacing = mfa.phone_max_frequency;
    super::email::spacing(a, factor.last_challenged_at, spacing, ErrorCode::OverSmsSendRateLimit)?;
    if !a.settings.sms.can_send() {
        return Err(AuthError::internal("Failed to get SMS provider").with_source(crate::error::Detail(
            "no SMS provider is configured (set GOTRUE_SMS_PROVIDER or GOTRUE_HOOK_SEND_SMS_*)".into(),
        )));
    }
    let code = super::email::numeric_otp(mfa.phone_otp_length);
    let now = a.clock.now();
    let id = Uuid::new_v4();
    let c = Challenge {
        id,
        created_at: now,
        ip,
        failed_attempts: 0,
        otp_code: code_mac(a, id, &code).to_vec(),
        web_authn_state: Vec::new(),
    };
    let (factor_id, expiry) = (factor.id, mfa.challenge_expiry);
    let clock = a.clock.clone();
    let before = a
        .users
        .edit_factors(auth.user.id, move |factors| {
            let f = factors.iter_mut().find(|f| f.id == factor_id).ok_or_else(mfa::factor_not_found)?;
            // Checked again here: two concurrent challenges must not both pass.
            let before = f.clone();
            if let Some(last) = f.last_challenged_at.filter(|last| clock.now() < last.plus(spacing)) {
                let wait = (last.plus(spacing).0 - clock.now().0 + 999_999) / 1_000_000;
                return Err(AuthError::too_many_requests(
                    ErrorCode::OverSmsSendRateLimit,
                    format!("For security purposes, you can only request this after {wait} seconds."),
                ));
            }
            f.challenges.retain(|c| now < c.created_at.plus(expiry));
            if f.challenges.len() >= MAX_OPEN_CHALLENGES {
                f.challenges.remove(0);
            }
            f.challenges.push(c);
            f.last_challenged_at = Some(now);
            f.updated_at = now;
            Ok(Some(before))
        })
        .await?
        .ok_or_else(mfa::factor_not_found)?;
    // The challenge is on disk before its code leaves the server.
    a.durable().await?;
    let sms = Sms {
        phone: factor.phone.clone(),
        otp: code,
        channel,
        body: String::new(),
        user: crate::hooks::user_json(&auth.user),
        sms_type: MFA_SMS_TYPE,
    };
    if let Err(e) = a.mail.send_sms(sms).await {
        withdraw(a, auth.user.id, factor_id, id, before.last_challenged_at, before.updated_at).await;
        return Err(send_error(a, e));
    }
    let fid = factor_id.to_string();
    audit(
        a,
        AuditActor::User(&auth.user),
        "challenge_created",
        &[("factor_id", &fid), ("factor_status", &factor.status), ("factor_type", "phone")],
    )
    .await?;
    Ok((id, "phone".into(), now.plus(expiry).unix_seconds()))
}

/// Removes a challenge whose code could not be sent, and restores the factor's spacing clock
/// (GoTrue writes nothing when the send fails). Best effort: a leftover challenge is harmless
/// (nobody has its code) and expires.
async fn withdraw(
    a: &Actors,
    user_id: Uuid,
    factor_id: Uuid,
    challenge_id: Uuid,
    last: Option<Timestamp>,
    at: Timestamp,
) {
    let undone = a
        .users
        .edit_factors(user_id, move |factors| {
            if let Some(f) = factors.iter_mut().find(|f| f.id == factor_id) {
                f.challenges.retain(|c| c.id != challenge_id);
                f.last_challenged_at = last;
                f.updated_at = at;
            }
            Ok(None)
        })
        .await;
    if let Err(e) = undone {
        tracing::warn!(error = %e, "could not withdraw an unsent MFA challenge");
    }
}

/// GoTrue answers a failed MFA SMS with 500 (`error invoking hook` / `error sending message`);
/// rate limits stay 429.
fn send_error(a: &Actors, e: AuthError) -> AuthError {
    if e.code != ErrorCode::SmsSendFailed {
        return e;
    }
    let msg = if a.settings.sms.hook.is_some() { "error invoking hook" } else { "error sending message" };
    AuthError::internal(msg).with_source(crate::error::Detail(e.msg.into_owned()))
}

/// `POST /factors/{id}/verify` for a phone factor.
pub async fn verify(
    a: &Actors,
    auth: Authenticated,
    factor: Factor,
    challenge_id: Uuid,
    code: String,
    ip: String,
) -> AuthResult<SessionGrant> {
    if !a.settings.mfa.phone_verify_enabled {
        return Err(verify_disabled());
    }
    let (factor_id, expiry, now) = (factor.id, a.settings.mfa.challenge_expiry, a.clock.now());
    let check = mfa::challenge_check(ip, now, expiry, mfa::IP_MISMATCH);
    let c = factor.challenges.iter().find(|c| c.id == challenge_id).ok_or_else(mfa::no_challenge)?;
    if let Err(e) = check(c) {
        if e.code == ErrorCode::MfaChallengeExpired {
            let _ = mfa::drop_challenge(a, auth.user.id, factor_id, challenge_id).await;
        }
        return Err(e);
    }
    let presented = code_mac(a, challenge_id, code.trim());
    let valid = !c.otp_code.is_empty() && crypto::secure_eq(&presented, &c.otp_code);
    mfa::verification_hook(a, auth.user.id, factor_id, "phone", valid).await?;
    let max_verified = a.settings.mfa.max_verified_factors;
    let result = a
        .users
        .edit_factors(auth.user.id, move |factors| {
            let verified_others = factors.iter().filter(|f| f.is_verified() && f.id != factor_id).count();
            let f = factors.iter_mut().find(|f| f.id == factor_id).ok_or_else(mfa::factor_not_found)?;
            let pos = f.challenges.iter().position(|c| c.id == challenge_id).ok_or_else(mfa::no_challenge)?;
            check(&f.challenges[pos])?;
            // The stored MAC decides (a concurrent verify may have consumed the challenge).
            if !valid || !crypto::secure_eq(&presented, &f.challenges[pos].otp_code) {
                f.challenges[pos].failed_attempts += 1;
                if f.challenges[pos].failed_attempts >= MAX_CHALLENGE_ATTEMPTS {
                    f.challenges.remove(pos);
                }
                return Err(AuthError::unprocessable(
                    ErrorCode::MfaVerificationFailed,
                    "Invalid MFA Phone code entered",
                ));
            }
            if !f.is_verified() && verified_others >= max_verified {
                return Err(AuthError::unprocessable(
                    ErrorCode::TooManyEnrolledMfaFactors,
                    "Maximum number of verified factors reached, unenroll to continue",
                ));
            }
            f.challenges.remove(pos);
            f.status = "verified".into();
            f.updated_at = now;
            let out = f.clone();
            // Other unverified phone factors are deleted (GoTrue's DeleteUnverifiedFactors).
            factors.retain(|o| o.id == factor_id || o.is_verified() || o.factor_type != "phone");
            Ok(Some(out))
        })
        .await;
    let fid = factor_id.to_string();
    let cid = challenge_id.to_string();
    let traits = [("factor_id", fid.as_str()), ("challenge_id", cid.as_str()), ("factor_type", "phone")];
    if let Err(e) = result {
        if e.code == ErrorCode::MfaVerificationFailed {
            audit(a, AuditActor::User(&auth.user), "verification_attempted", &traits).await?;
        }
        return Err(e);
    }
    let session =
        auth.session.as_ref().ok_or_else(|| AuthError::forbidden(ErrorCode::SessionNotFound, "Session not found"))?;
    let issued = a.sessions.elevate(session.id, AMR).await?;
    audit(a, AuditActor::User(&auth.user), "verification_attempted", &traits).await?;
    let user = a
        .users
        .get(auth.user.id)
        .await?
        .ok_or_else(|| AuthError::forbidden(ErrorCode::UserNotFound, "User not found"))?;
    grant(a, user, &issued.session, issued.refresh_token, AMR).await
}
