//! MFA: port of GoTrue's `api/mfa.go` (enroll, challenge, verify, unenroll) and the admin factor
//! routes of `api/admin.go`. TOTP factors live here, phone factors in [`super::mfa_phone`] and
//! WebAuthn factors in [`super::mfa_webauthn`] (dispatched by factor type). Factors are owned by
//! the user registry (see [`Factor`]); sessions are raised to aal2 by the session manager.

use super::auth::Authenticated;
use super::{audit, grant, AuditActor, SessionGrant};
use crate::clock::Timestamp;
use crate::crypto;
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::user_registry::model::{Challenge, Factor, User};
use crate::Actors;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use uuid::Uuid;

/// Wrong codes a challenge survives (the fifth kills it), as the one-time codes.
pub const MAX_CHALLENGE_ATTEMPTS: u32 = 5;
/// Open challenges kept per factor (the oldest are dropped).
pub const MAX_OPEN_CHALLENGES: usize = 5;
/// TOTP parameters (RFC 6238 as GoTrue uses them).
const STEP: u64 = 30;
const DIGITS: u8 = 6;
/// The `amr` method of a TOTP verification.
pub const TOTP_AMR: &str = "totp";

/// What `POST /factors` returns for a TOTP factor.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub factor: Factor,
    /// Raw SVG markup of the QR code (auth-js prefixes the data-URI scheme itself).
    pub qr_code: String,
    pub secret: String,
    pub uri: String,
}

/// `POST /factors` input.
#[derive(Debug, Clone, Default)]
pub struct EnrollInput {
    pub factor_type: String,
    pub friendly_name: String,
    pub issuer: String,
    /// Phone factors: the number as given.
    pub phone: String,
}

fn sealing_key(a: &Actors) -> AuthResult<LessSafeKey> {
    let key = crypto::derive_key(&a.settings.jwt.secret, "mfa totp key v1");
    UnboundKey::new(&AES_256_GCM, &key).map(LessSafeKey::new).map_err(|_| AuthError::internal("mfa key"))
}

fn seal(a: &Actors, factor_id: Uuid, secret: &[u8]) -> AuthResult<Vec<u8>> {
    let nonce_bytes = crypto::random_bytes::<NONCE_LEN>();
    let mut data = secret.to_vec();
    sealing_key(a)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(factor_id.as_bytes()), &mut data)
        .map_err(|_| AuthError::internal("mfa seal"))?;
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&data);
    Ok(out)
}

/// Whether a TOTP factor's secret opens under this server's `GOTRUE_JWT_SECRET` (`ferrotrue
/// migrate` checks each copied factor, so a wrong secret is reported, not discovered at sign-in).
pub fn totp_secret_opens(a: &Actors, factor: &Factor) -> bool {
    unseal(a, factor).is_ok()
}

fn unseal(a: &Actors, factor: &Factor) -> AuthResult<Vec<u8>> {
    let bad = || AuthError::internal("mfa secret cannot be opened (was GOTRUE_JWT_SECRET changed?)");
    if factor.sealed_secret.len() < NONCE_LEN {
        return Err(bad());
    }
    let (nonce, sealed) = factor.sealed_secret.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
    let mut data = sealed.to_vec();
    let plain = sealing_key(a)?.open_in_place(nonce, Aad::from(factor.id.as_bytes()), &mut data).map_err(|_| bad())?;
    Ok(plain.to_vec())
}

fn totp(secret: Vec<u8>) -> AuthResult<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret)
        .with_account_name("ferrotrue")
        .build()
        .map_err(|e| AuthError::internal(format!("totp: {e}")))
}

/// The step (±1 of now) whose code is `code`, compared in constant time.
fn matching_step(secret: Vec<u8>, code: &str, now: Timestamp) -> AuthResult<Option<u64>> {
    let t = totp(secret)?;
    let origin = u64::try_from(now.unix_seconds()).unwrap_or(0) / STEP;
    let mut found = None;
    for step in origin.saturating_sub(1)..=origin + 1 {
        let expected = t.generate(step * STEP).to_string();
        if crypto::secure_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
            found = Some(step);
        }
    }
    Ok(found)
}

pub(super) fn not_anonymous(auth: &Authenticated) -> AuthResult<()> {
    if auth.user.is_anonymous {
        return Err(AuthError::forbidden(
            ErrorCode::NoAuthorization,
            "Anonymous user not allowed to perform these actions",
        ));
    }
    Ok(())
}

pub(super) fn session_aal(auth: &Authenticated) -> &str {
    auth.session.as_ref().map_or("aal1", |s| s.aal.as_str())
}

/// GoTrue's default issuer: the host of the site URL.
fn default_issuer(a: &Actors) -> String {
    url::Url::parse(&a.settings.mail.site_url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default()
}

pub(super) fn factor_not_found() -> AuthError {
    AuthError::not_found(ErrorCode::MfaFactorNotFound, "Factor not found")
}

fn traits_of<'a>(_user: &User, factor_id: &'a str) -> [(&'a str, &'a str); 2] {
    [("factor_id", factor_id), ("factor_type", "totp")]
}

pub(super) fn no_challenge() -> AuthError {
    AuthError::unprocessable(ErrorCode::MfaFactorNotFound, "MFA factor with the provided challenge ID not found")
}

/// GoTrue's IP-mismatch messages: the TOTP path's (older) text, and `validateChallenge`'s.
const IP_MISMATCH_TOTP: &str = "Challenge and verify IP addresses mismatch. Try enrollment again.";
pub(super) const IP_MISMATCH: &str = "Challenge and verify IP addresses mismatch.";

/// GoTrue's `validateChallenge` checks of an open challenge, shared by every factor type: it must
/// come from the address that asked for it (`mismatch` is the message) and not have expired.
/// Run once on the read factor and again inside `edit_factors`, where a concurrent verify may
/// have changed it.
pub(super) fn challenge_check(
    ip: String,
    now: Timestamp,
    expiry: std::time::Duration,
    mismatch: &'static str,
) -> impl Fn(&Challenge) -> AuthResult<()> + Send + 'static {
    move |c: &Challenge| {
        if c.ip != ip {
            return Err(AuthError::unprocessable(ErrorCode::MfaIpAddressMismatch, mismatch));
        }
        if now >= c.created_at.plus(expiry) {
            return Err(AuthError::unprocessable(
                ErrorCode::MfaChallengeExpired,
                format!(
                    "MFA challenge {} has expired, verify against another challenge or create a new challenge.",
                    c.id
                ),
            ));
        }
        Ok(())
    }
}

/// The `mfa_verification_attempt` hook's verdict on a verification; a rejection logs the user
/// out everywhere (GoTrue).
pub(super) async fn verification_hook(
    a: &Actors,
    user_id: Uuid,
    factor_id: Uuid,
    factor_type: &str,
    valid: bool,
) -> AuthResult<()> {
    if let Some(message) =
        crate::hooks::mfa_verification_attempt(&a.settings.hooks, user_id, factor_id, factor_type, valid).await?
    {
        a.sessions.end_user_sessions(user_id, None).await?;
        return Err(AuthError::forbidden(ErrorCode::MfaVerificationRejected, message));
    }
    Ok(())
}

/// Removes one challenge of a factor (expired, or used up), if both still exist.
pub(super) async fn drop_challenge(a: &Actors, user_id: Uuid, factor_id: Uuid, challenge_id: Uuid) -> AuthResult<()> {
    a.users
        .edit_factors(user_id, move |factors| {
            if let Some(f) = factors.iter_mut().find(|f| f.id == factor_id) {
                f.challenges.retain(|c| c.id != challenge_id);
            }
            Ok(None)
        })
        .await
        .map(|_| ())
}

/// The `amr` method a verification of this factor type adds.
fn amr_of(factor_type: &str) -> &'static str {
    match factor_type {
        "phone" => super::mfa_phone::AMR,
        super::mfa_webauthn::FACTOR_TYPE => super::mfa_webauthn::AMR,
        _ => TOTP_AMR,
    }
}

/// GoTrue's `validateFactors`, run inside `edit_factors` before a new factor is added: purges
/// unverified factors past `GOTRUE_MFA_FACTOR_EXPIRY_DURATION`, then checks the friendly name,
/// the enrollment limits and the session's level.
pub(super) fn check_new_factor(
    factors: &mut Vec<Factor>,
    name: &str,
    mfa: &crate::settings::MfaSettings,
    aal: &str,
    now: Timestamp,
) -> AuthResult<()> {
    factors.retain(|f| f.is_verified() || now < f.created_at.plus(mfa.factor_expiry));
    if !name.is_empty() && factors.iter().any(|f| f.friendly_name == name) {
        return Err(AuthError::unprocessable(
            ErrorCode::MfaFactorNameConflict,
            format!("A factor with the friendly name \"{name}\" for this user already exists"),
        ));
    }
    let verified = factors.iter().filter(|f| f.is_verified()).count();
    if factors.len() >= mfa.max_enrolled_factors {
        return Err(AuthError::unprocessable(
            ErrorCode::TooManyEnrolledMfaFactors,
            "Maximum number of enrolled factors reached, unenroll to continue",
        ));
    }
    if verified >= mfa.max_verified_factors {
        return Err(AuthError::unprocessable(
            ErrorCode::TooManyEnrolledMfaFactors,
            "Maximum number of verified factors reached, unenroll to continue",
        ));
    }
    if verified > 0 && aal != "aal2" {
        return Err(AuthError::forbidden(ErrorCode::InsufficientAal, "AAL2 required to enroll a new factor"));
    }
    Ok(())
}

/// `POST /factors`.
pub async fn enroll(a: &Actors, auth: Authenticated, input: EnrollInput) -> AuthResult<Enrolled> {
    not_anonymous(&auth)?;
    let mfa = a.settings.mfa.clone();
    match input.factor_type.as_str() {
        "totp" => {}
        "phone" => return super::mfa_phone::enroll(a, auth, input).await,
        "webauthn" => {
            return Err(AuthError::unprocessable(
                ErrorCode::MfaWebauthnEnrollNotEnabled,
                "MFA enroll is disabled for WebAuthn",
            ))
        }
        _ => return Err(AuthError::validation("factor_type needs to be totp, phone, or webauthn")),
    }
    if !mfa.totp_enroll_enabled {
        return Err(AuthError::unprocessable(ErrorCode::MfaTotpEnrollNotEnabled, "MFA enroll is disabled for TOTP"));
    }
    let issuer = if input.issuer.is_empty() { mfa.totp_issuer.clone() } else { input.issuer.clone() };
    let issuer = if issuer.is_empty() { default_issuer(a) } else { issuer };
    if issuer.contains(':') {
        return Err(AuthError::validation("issuer must not contain ':'"));
    }
    let account = if auth.user.email.is_empty() { auth.user.phone.clone() } else { auth.user.email.clone() };
    let now = a.clock.now();
    let id = Uuid::new_v4();
    let raw = crypto::random_bytes::<20>();
    let secret_b32 = totp(raw.to_vec())?.secret().to_base32();
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let uri = format!(
        "otpauth://totp/{}:{}?algorithm=SHA1&digits=6&issuer={}&period=30&secret={}",
        enc(&issuer),
        enc(&account),
        enc(&issuer),
        secret_b32
    );
    let qr_code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| AuthError::internal(format!("qr: {e}")))?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    let factor = Factor {
        id,
        user_id: auth.user.id,
        friendly_name: input.friendly_name.clone(),
        factor_type: "totp".into(),
        status: "unverified".into(),
        sealed_secret: seal(a, id, &raw)?,
        created_at: now,
        updated_at: now,
        last_challenged_at: None,
        last_used_step: None,
        challenges: Vec::new(),
        phone: String::new(),
        web_authn_credential: Vec::new(),
        web_authn_aaguid: None,
    };
    let aal = session_aal(&auth).to_owned();
    let name = input.friendly_name;
    let new = factor.clone();
    let factor = a
        .users
        .edit_factors(auth.user.id, move |factors| {
            check_new_factor(factors, &name, &mfa, &aal, now)?;
            factors.push(new.clone());
            Ok(Some(new))
        })
        .await?
        .ok_or_else(|| AuthError::internal("enroll"))?;
    let fid = factor.id.to_string();
    audit(a, AuditActor::User(&auth.user), "factor_in_progress", &traits_of(&auth.user, &fid)).await?;
    Ok(Enrolled { factor, qr_code, secret: secret_b32, uri })
}

/// `POST /factors/{id}/challenge`: `(challenge id, type, expires_at)`; `channel` is a phone
/// factor's (`sms`, `whatsapp`).
pub async fn challenge(
    a: &Actors,
    auth: Authenticated,
    factor_id: Uuid,
    channel: &str,
    ip: String,
) -> AuthResult<(Uuid, String, i64)> {
    not_anonymous(&auth)?;
    let factor = auth.user.factors.iter().find(|f| f.id == factor_id).cloned().ok_or_else(factor_not_found)?;
    if factor.factor_type == "phone" {
        return super::mfa_phone::challenge(a, auth, factor, channel, ip).await;
    }
    if !a.settings.mfa.totp_verify_enabled {
        return Err(AuthError::unprocessable(
            ErrorCode::MfaTotpVerifyNotEnabled,
            "MFA verification is disabled for TOTP",
        ));
    }
    let now = a.clock.now();
    let challenge = Challenge {
        id: Uuid::new_v4(),
        created_at: now,
        ip,
        failed_attempts: 0,
        otp_code: Vec::new(),
        web_authn_state: Vec::new(),
    };
    let expiry = a.settings.mfa.challenge_expiry;
    let c = challenge.clone();
    a.users
        .edit_factors(auth.user.id, move |factors| {
            let f = factors.iter_mut().find(|f| f.id == factor_id).ok_or_else(factor_not_found)?;
            f.challenges.retain(|c| now < c.created_at.plus(expiry));
            if f.challenges.len() >= MAX_OPEN_CHALLENGES {
                f.challenges.remove(0);
            }
            f.challenges.push(c);
            f.last_challenged_at = Some(now);
            f.updated_at = now;
            Ok(None)
        })
        .await?;
    let fid = factor.id.to_string();
    audit(a, AuditActor::User(&auth.user), "challenge_created", &traits_of(&auth.user, &fid)).await?;
    Ok((challenge.id, factor.factor_type, now.plus(expiry).unix_seconds()))
}

/// `POST /factors/{id}/verify`.
pub async fn verify(
    a: &Actors,
    auth: Authenticated,
    factor_id: Uuid,
    challenge_id: Uuid,
    code: String,
    ip: String,
) -> AuthResult<SessionGrant> {
    not_anonymous(&auth)?;
    if code.is_empty() {
        return Err(AuthError::validation("Code needs to be non-empty"));
    }
    let factor = auth.user.factors.iter().find(|f| f.id == factor_id).cloned().ok_or_else(factor_not_found)?;
    if factor.factor_type == "phone" {
        return super::mfa_phone::verify(a, auth, factor, challenge_id, code, ip).await;
    }
    if !a.settings.mfa.totp_verify_enabled {
        return Err(AuthError::unprocessable(
            ErrorCode::MfaTotpVerifyNotEnabled,
            "MFA verification is disabled for TOTP",
        ));
    }
    let expiry = a.settings.mfa.challenge_expiry;
    let now = a.clock.now();
    let check = challenge_check(ip, now, expiry, IP_MISMATCH_TOTP);
    let c = factor.challenges.iter().find(|c| c.id == challenge_id).ok_or_else(no_challenge)?;
    check(c)?;
    let step = matching_step(unseal(a, &factor)?, code.trim(), now)?;
    let valid = step.is_some_and(|s| factor.last_used_step.is_none_or(|last| s > last));
    verification_hook(a, auth.user.id, factor_id, "totp", valid).await?;
    let max_verified = a.settings.mfa.max_verified_factors;
    let updated = a
        .users
        .edit_factors(auth.user.id, move |factors| {
            let verified_others = factors.iter().filter(|f| f.is_verified() && f.id != factor_id).count();
            let f = factors.iter_mut().find(|f| f.id == factor_id).ok_or_else(factor_not_found)?;
            let pos = f.challenges.iter().position(|c| c.id == challenge_id).ok_or_else(no_challenge)?;
            if let Err(e) = check(&f.challenges[pos]) {
                if e.code == ErrorCode::MfaChallengeExpired {
                    f.challenges.remove(pos);
                }
                return Err(e);
            }
            let accepted = step.filter(|s| f.last_used_step.is_none_or(|last| *s > last));
            let Some(step) = accepted else {
                f.challenges[pos].failed_attempts += 1;
                if f.challenges[pos].failed_attempts >= MAX_CHALLENGE_ATTEMPTS {
                    f.challenges.remove(pos);
                }
                return Err(AuthError::unprocessable(ErrorCode::MfaVerificationFailed, "Invalid TOTP code entered"));
            };
            if !f.is_verified() && verified_others >= max_verified {
                return Err(AuthError::unprocessable(
                    ErrorCode::TooManyEnrolledMfaFactors,
                    "Maximum number of verified factors reached, unenroll to continue",
                ));
            }
            f.challenges.remove(pos);
            f.last_used_step = Some(step);
            f.status = "verified".into();
            f.updated_at = now;
            let out = f.clone();
            // Other unverified factors of the same type are deleted (GoTrue).
            factors.retain(|o| o.id == factor_id || o.is_verified() || o.factor_type != "totp");
            Ok(Some(out))
        })
        .await;
    let fid = factor_id.to_string();
    let traits = traits_of(&auth.user, &fid);
    let updated = match updated {
        Ok(f) => f.ok_or_else(|| AuthError::internal("verify"))?,
        Err(e) => {
            if e.code == ErrorCode::MfaVerificationFailed {
                audit(a, AuditActor::User(&auth.user), "verification_attempted", &traits).await?;
            }
            return Err(e);
        }
    };
    let _ = updated;
    let session =
        auth.session.as_ref().ok_or_else(|| AuthError::forbidden(ErrorCode::SessionNotFound, "Session not found"))?;
    let issued = a.sessions.elevate(session.id, TOTP_AMR).await?;
    audit(a, AuditActor::User(&auth.user), "verification_attempted", &traits).await?;
    let user = a
        .users
        .get(auth.user.id)
        .await?
        .ok_or_else(|| AuthError::forbidden(ErrorCode::UserNotFound, "User not found"))?;
    grant(a, user, &issued.session, issued.refresh_token, TOTP_AMR).await
}

/// `DELETE /factors/{id}`.
pub async fn unenroll(a: &Actors, auth: Authenticated, factor_id: Uuid) -> AuthResult<Uuid> {
    not_anonymous(&auth)?;
    let factor = auth.user.factors.iter().find(|f| f.id == factor_id).cloned().ok_or_else(factor_not_found)?;
    if factor.is_verified() && session_aal(&auth) != "aal2" {
        return Err(AuthError::unprocessable(ErrorCode::InsufficientAal, "AAL2 required to unenroll verified factor"));
    }
    remove(a, auth.user.id, factor_id).await?;
    let fid = factor_id.to_string();
    let traits = [("factor_id", fid.as_str()), ("factor_type", factor.factor_type.as_str())];
    audit(a, AuditActor::User(&auth.user), "factor_unenrolled", &traits).await?;
    Ok(factor_id)
}

async fn remove(a: &Actors, user_id: Uuid, factor_id: Uuid) -> AuthResult<Factor> {
    let removed = a
        .users
        .edit_factors(user_id, move |factors| {
            let pos = factors.iter().position(|f| f.id == factor_id).ok_or_else(factor_not_found)?;
            Ok(Some(factors.remove(pos)))
        })
        .await?
        .ok_or_else(factor_not_found)?;
    if removed.is_verified() {
        a.sessions.downgrade(user_id, amr_of(&removed.factor_type)).await?;
    }
    Ok(removed)
}

fn admin_user_factors(user: Option<User>) -> AuthResult<User> {
    user.ok_or_else(|| AuthError::not_found(ErrorCode::UserNotFound, "User not found"))
}

/// `GET /admin/users/{id}/factors`.
pub async fn admin_list(a: &Actors, user_id: Uuid) -> AuthResult<Vec<Factor>> {
    Ok(admin_user_factors(a.users.get(user_id).await?)?.factors)
}

/// `PUT /admin/users/{id}/factors/{factor_id}` (`friendly_name`; `phone` for phone factors).
pub async fn admin_update(
    a: &Actors,
    role: &str,
    user_id: Uuid,
    factor_id: Uuid,
    friendly_name: Option<String>,
    phone: Option<String>,
) -> AuthResult<Factor> {
    admin_user_factors(a.users.get(user_id).await?)?;
    let now = a.clock.now();
    let phone = phone.filter(|p| !p.is_empty()).map(|p| super::validate::phone(&p));
    let factor = a
        .users
        .edit_factors(user_id, move |factors| {
            // Validated before anything changes (GoTrue: one transaction).
            let phone = match (factors.iter().find(|f| f.id == factor_id), phone) {
                (Some(f), Some(p)) if f.factor_type == "phone" => Some(p?),
                _ => None,
            };
            if let Some(name) = &friendly_name {
                if !name.is_empty() && factors.iter().any(|f| f.id != factor_id && f.friendly_name == *name) {
                    return Err(AuthError::unprocessable(
                        ErrorCode::MfaFactorNameConflict,
                        format!("A factor with the friendly name \"{name}\" for this user already exists"),
                    ));
                }
            }
            let f = factors.iter_mut().find(|f| f.id == factor_id).ok_or_else(factor_not_found)?;
            if let Some(name) = friendly_name.filter(|n| !n.is_empty()) {
                f.friendly_name = name;
                f.updated_at = now;
            }
            if let Some(phone) = phone {
                f.phone = phone;
                f.updated_at = now;
            }
            Ok(Some(f.clone()))
        })
        .await?
        .ok_or_else(factor_not_found)?;
    let (uid, fid) = (user_id.to_string(), factor_id.to_string());
    audit(
        a,
        AuditActor::Admin(role),
        "factor_updated",
        &[("user_id", &uid), ("factor_id", &fid), ("factor_type", &factor.factor_type)],
    )
    .await?;
    Ok(factor)
}

/// `DELETE /admin/users/{id}/factors/{factor_id}`: the deleted factor.
pub async fn admin_delete(a: &Actors, role: &str, user_id: Uuid, factor_id: Uuid) -> AuthResult<Factor> {
    admin_user_factors(a.users.get(user_id).await?)?;
    let factor = remove(a, user_id, factor_id).await?;
    let (uid, fid) = (user_id.to_string(), factor_id.to_string());
    audit(
        a,
        AuditActor::Admin(role),
        "factor_deleted",
        &[("user_id", &uid), ("factor_id", &fid), ("factor_type", &factor.factor_type)],
    )
    .await?;
    Ok(factor)
}

/// `insufficient_aal` for `PUT /user` password/email/phone changes of an MFA user on an aal1
/// session (GoTrue's `UserUpdate`).
pub fn require_aal2_for_sensitive_update(auth: &Authenticated) -> AuthResult<()> {
    if auth.user.factors.iter().any(Factor::is_verified) && session_aal(auth) != "aal2" {
        return Err(AuthError::unauthorized(
            ErrorCode::InsufficientAal,
            "AAL2 session is required to update email or password when MFA is enabled.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::settings::Settings;
    use crate::storage::Store;
    use std::time::Duration;

    /// An actor system on a fixed clock at the start of a TOTP step, a user and its session.
    async fn setup() -> (Actors, crate::Supervisor, Clock, Authenticated) {
        let clock = Clock::fixed(Timestamp(1_800_000_000 / 30 * 30 * 1_000_000));
        let (a, sup) =
            Actors::start(crate::Storage::Sled(Store::temporary().unwrap()), Settings::for_tests(), clock.clone())
                .await
                .unwrap();
        let user = a
            .users
            .create(User {
                email: "m@example.com".into(),
                ..User::blank("authenticated", "authenticated", clock.now())
            })
            .await
            .unwrap();
        let session = a.sessions.create(user.id, "password", String::new(), "10.0.0.1".into()).await.unwrap().session;
        let claims: crate::jwt::PresentedClaims = serde_json::from_value(serde_json::json!({})).unwrap();
        (a, sup, clock, Authenticated { user, session: Some(session), claims })
    }

    async fn reload(a: &Actors, auth: &Authenticated) -> Authenticated {
        let mut auth = auth.clone();
        auth.user = a.users.get(auth.user.id).await.unwrap().unwrap();
        auth
    }

    fn code(secret: &str, at: Timestamp) -> String {
        let raw = totp_rs::Secret::try_from_base32(secret).unwrap().as_ref().to_vec();
        totp(raw).unwrap().generate(u64::try_from(at.unix_seconds()).unwrap()).to_string()
    }

    #[tokio::test]
    async fn step_boundaries_skew_and_once_per_step() {
        let (a, sup, clock, auth) = setup().await;
        let e =
            enroll(&a, auth.clone(), EnrollInput { factor_type: "totp".into(), ..Default::default() }).await.unwrap();
        let fid = e.factor.id;
        let ip = "10.0.0.1".to_owned();
        let t0 = clock.now();
        // A code two steps old is refused; one step old (skew) is accepted.
        let (c, _, _) = challenge(&a, reload(&a, &auth).await, fid, "", ip.clone()).await.unwrap();
        let two_back = code(&e.secret, Timestamp(t0.0 - 60_000_000));
        let err = verify(&a, reload(&a, &auth).await, fid, c, two_back, ip.clone()).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::MfaVerificationFailed);
        let one_back = code(&e.secret, Timestamp(t0.0 - 30_000_000));
        let g = verify(&a, reload(&a, &auth).await, fid, c, one_back, ip.clone()).await.unwrap();
        assert!(a.jwt.verify(&g.access_token).is_ok());
        // The same step again (another challenge) is a replay; an older step too.
        let (c, _, _) = challenge(&a, reload(&a, &auth).await, fid, "", ip.clone()).await.unwrap();
        let err =
            verify(&a, reload(&a, &auth).await, fid, c, code(&e.secret, Timestamp(t0.0 - 30_000_000)), ip.clone())
                .await
                .unwrap_err();
        assert_eq!(err.code, ErrorCode::MfaVerificationFailed);
        // Crossing into the next step: the current code (a newer step) is accepted.
        clock.advance(Duration::from_secs(30));
        let now_code = code(&e.secret, clock.now());
        assert!(verify(&a, reload(&a, &auth).await, fid, c, now_code.clone(), ip.clone()).await.is_ok());
        // And only once.
        let (c, _, _) = challenge(&a, reload(&a, &auth).await, fid, "", ip.clone()).await.unwrap();
        let err = verify(&a, reload(&a, &auth).await, fid, c, now_code, ip.clone()).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::MfaVerificationFailed);
        // A challenge outlives its expiry only until then.
        clock.advance(Duration::from_secs(301));
        let err = verify(&a, reload(&a, &auth).await, fid, c, code(&e.secret, clock.now()), ip).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::MfaChallengeExpired);
        sup.shutdown().await;
    }

    #[tokio::test]
    async fn unverified_factors_expire_before_the_limits_are_counted() {
        let (a, sup, clock, auth) = setup().await;
        let input =
            |name: &str| EnrollInput { factor_type: "totp".into(), friendly_name: name.into(), ..Default::default() };
        for i in 0..10 {
            enroll(&a, reload(&a, &auth).await, input(&format!("f{i}"))).await.unwrap();
        }
        let err = enroll(&a, reload(&a, &auth).await, input("f10")).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyEnrolledMfaFactors);
        // Past GOTRUE_MFA_FACTOR_EXPIRY_DURATION the unverified ones are purged: the name is free.
        clock.advance(Duration::from_secs(301));
        enroll(&a, reload(&a, &auth).await, input("f0")).await.unwrap();
        assert_eq!(a.users.get(auth.user.id).await.unwrap().unwrap().factors.len(), 1);
        sup.shutdown().await;
    }
}
