//! WebAuthn factors: port of GoTrue's `enrollWebAuthnFactor`, `challengeWebAuthnFactor` and
//! `verifyWebAuthnFactor` (api/mfa.go), with the ceremonies done by webauthn-rs. The factor and
//! its challenges ride on the user like TOTP factors (see [`Factor`]): the credential is
//! `Factor.web_authn_credential`, a challenge's ceremony state `Challenge.web_authn_state`.
//!
//! Choices, and where they differ from GoTrue:
//! * **The relying party is the configuration's** (`GOTRUE_WEBAUTHN_RP_*`): the `rpId` and
//!   `rpOrigins` auth-js sends are ignored, as GoTrue ignores them since supabase/auth#2490.
//!   Origins are matched exactly (scheme, host, port): a client cannot widen them.
//! * **Security-key ceremonies**: user verification *preferred* and no attestation, GoTrue's
//!   go-webauthn defaults. The factor is a second factor after a password, so presence suffices;
//!   webauthn-rs's passkey ceremonies require verification and would refuse the PIN-less keys
//!   GoTrue accepts. The `credProtect` extension webauthn-rs adds is left out of the options:
//!   a "verification required" credential on a PIN-less key registers fine and is then invisible
//!   to every assertion, locking the user out of aal2.
//! * **An assertion is bound to its factor**: the request options list (and the state accepts)
//!   only this factor's credential; GoTrue lists every WebAuthn credential of the user.
//! * **The sign counter is kept**: each assertion stores the new counter and one that does not
//!   grow (a cloned authenticator or a replay) is refused; GoTrue stores the credential once.
//! * **A failed ceremony is `422 mfa_verification_failed`**, counted against the challenge like
//!   a wrong TOTP code; GoTrue answers 500, which clients treat as retryable.

use super::auth::Authenticated;
use super::mfa::{MAX_CHALLENGE_ATTEMPTS, MAX_OPEN_CHALLENGES};
use super::{audit, grant, AuditActor, SessionGrant};
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::settings::WebAuthnSettings;
use crate::user_registry::model::{Challenge, Factor};
use crate::Actors;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;
use webauthn_rs::prelude::{
    PublicKeyCredential, RegisterPublicKeyCredential, SecurityKey, SecurityKeyAuthentication, SecurityKeyRegistration,
    Webauthn, WebauthnBuilder,
};

/// The `amr` method of a WebAuthn verification (GoTrue's `MFAWebAuthn`).
pub const AMR: &str = "mfa/webauthn";
/// The factor type.
pub const FACTOR_TYPE: &str = "webauthn";

/// A challenge's ceremony, stored as JSON in `Challenge.web_authn_state`.
#[derive(Serialize, Deserialize)]
enum Ceremony {
    /// Registration of an unverified factor's credential (`navigator.credentials.create`).
    Create(SecurityKeyRegistration),
    /// Assertion with a verified factor's credential (`navigator.credentials.get`).
    Request(SecurityKeyAuthentication),
}

/// What `POST /factors/{id}/challenge` returns for a WebAuthn factor.
#[derive(Debug, Clone)]
pub struct Challenged {
    pub id: Uuid,
    pub expires_at: i64,
    /// `create` (unverified factor) or `request` (verified factor).
    pub kind: &'static str,
    /// `PublicKeyCredentialCreationOptions` / `RequestOptions` as JSON: `{"publicKey": {...}}`.
    pub credential_options: Value,
}

/// The `webauthn` object of `POST /factors/{id}/verify`.
#[derive(Debug, Clone, Default)]
pub struct VerifyParams {
    /// `create` or `request`.
    pub kind: String,
    /// The browser's `PublicKeyCredential` as JSON (`toJSON()` shape).
    pub credential_response: Option<Value>,
}

fn failed(msg: &'static str) -> AuthError {
    AuthError::unprocessable(ErrorCode::MfaVerificationFailed, msg)
}

fn corrupt(what: &str) -> AuthError {
    AuthError::internal(format!("stored WebAuthn {what} cannot be read"))
}

/// The relying party of the configuration (validated at start-up).
fn relying_party(w: &WebAuthnSettings) -> AuthResult<Webauthn> {
    let (first, rest) = w.rp_origins.split_first().ok_or_else(|| AuthError::internal("WebAuthn has no origins"))?;
    let name = if w.rp_display_name.is_empty() { w.rp_id.as_str() } else { w.rp_display_name.as_str() };
    rest.iter()
        .fold(
            WebauthnBuilder::new(&w.rp_id, first).map_err(|_| AuthError::internal("WebAuthn relying party"))?,
            |b, o| b.append_allowed_origin(o),
        )
        .rp_name(name)
        .build()
        .map_err(|_| AuthError::internal("WebAuthn relying party"))
}

fn stored_key(f: &Factor) -> AuthResult<SecurityKey> {
    serde_json::from_slice(&f.web_authn_credential).map_err(|_| corrupt("credential"))
}

fn traits(factor_id: &str) -> [(&str, &str); 2] {
    [("factor_id", factor_id), ("factor_type", FACTOR_TYPE)]
}

/// `POST /factors` with `factor_type: webauthn`: an unverified factor without a credential.
pub async fn enroll(a: &Actors, auth: Authenticated, friendly_name: String) -> AuthResult<Factor> {
    super::mfa::not_anonymous(&auth)?;
    let mfa = a.settings.mfa.clone();
    if !mfa.web_authn.enroll_enabled {
        return Err(AuthError::unprocessable(
            ErrorCode::MfaWebauthnEnrollNotEnabled,
            "MFA enroll is disabled for WebAuthn",
        ));
    }
    let now = a.clock.now();
    let new = Factor {
        id: Uuid::new_v4(),
        user_id: auth.user.id,
        friendly_name: friendly_name.clone(),
        factor_type: FACTOR_TYPE.into(),
        status: "unverified".into(),
        sealed_secret: Vec::new(),
        created_at: now,
        updated_at: now,
        last_challenged_at: None,
        last_used_step: None,
        challenges: Vec::new(),
        phone: String::new(),
        web_authn_credential: Vec::new(),
        web_authn_aaguid: None,
    };
    let aal = super::mfa::session_aal(&auth).to_owned();
    let factor = a
        .users
        .edit_factors(auth.user.id, move |factors| {
            super::mfa::check_new_factor(factors, &friendly_name, &mfa, &aal, now)?;
            factors.push(new.clone());
            Ok(Some(new))
        })
        .await?
        .ok_or_else(|| AuthError::internal("enroll"))?;
    let fid = factor.id.to_string();
    audit(a, AuditActor::User(&auth.user), "factor_in_progress", &traits(&fid)).await?;
    Ok(factor)
}

/// `POST /factors/{id}/challenge` for a WebAuthn factor: creation options for an unverified
/// factor, request options for a verified one.
pub async fn challenge(a: &Actors, auth: Authenticated, factor_id: Uuid, ip: String) -> AuthResult<Challenged> {
    super::mfa::not_anonymous(&auth)?;
    let factor =
        auth.user.factors.iter().find(|f| f.id == factor_id).cloned().ok_or_else(super::mfa::factor_not_found)?;
    let w = &a.settings.mfa.web_authn;
    if !w.verify_enabled {
        return Err(AuthError::unprocessable(
            ErrorCode::MfaWebauthnVerifyNotEnabled,
            "MFA verification is disabled for WebAuthn",
        ));
    }
    let rp = relying_party(w)?;
    let ceremony_error = |e| AuthError::internal(format!("WebAuthn challenge: {e}"));
    let (kind, mut options, ceremony) = if factor.is_verified() {
        let (rcr, state) = rp.start_securitykey_authentication(&[stored_key(&factor)?]).map_err(ceremony_error)?;
        let options = serde_json::to_value(rcr).map_err(|_| AuthError::internal("WebAuthn options"))?;
        ("request", options, Ceremony::Request(state))
    } else {
        // The user's registered credentials may not register again.
        let exclude = auth
            .user
            .factors
            .iter()
            .filter(|f| f.is_verified() && f.factor_type == FACTOR_TYPE)
            .map(|f| stored_key(f).map(|k| k.cred_id().clone()))
            .collect::<AuthResult<Vec<_>>>()?;
        let u = &auth.user;
        let name =
            [&u.email, &u.phone].into_iter().find(|s| !s.is_empty()).cloned().unwrap_or_else(|| u.id.to_string());
        let (ccr, state) =
            rp.start_securitykey_registration(u.id, &name, &name, Some(exclude), None, None).map_err(ceremony_error)?;
        let options = serde_json::to_value(ccr).map_err(|_| AuthError::internal("WebAuthn options"))?;
        ("create", options, Ceremony::Create(state))
    };
    if let Some(ext) = options.pointer_mut("/publicKey/extensions").and_then(Value::as_object_mut) {
        ext.remove("credentialProtectionPolicy");
        ext.remove("enforceCredentialProtectionPolicy");
    }
    let now = a.clock.now();
    let c = Challenge {
        id: Uuid::new_v4(),
        created_at: now,
        ip,
        failed_attempts: 0,
        otp_code: Vec::new(),
        web_authn_state: serde_json::to_vec(&ceremony).map_err(|_| AuthError::internal("WebAuthn state"))?,
    };
    let id = c.id;
    let expiry = a.settings.mfa.challenge_expiry;
    a.users
        .edit_factors(auth.user.id, move |factors| {
            let f = factors.iter_mut().find(|f| f.id == factor_id).ok_or_else(super::mfa::factor_not_found)?;
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
    let fid = factor_id.to_string();
    audit(a, AuditActor::User(&auth.user), "challenge_created", &traits(&fid)).await?;
    Ok(Challenged { id, expires_at: now.plus(expiry).unix_seconds(), kind, credential_options: options })
}

/// What a ceremony proved, applied to the factor in the registry.
enum Outcome {
    /// A credential registered: stored, the factor verified.
    Registered { credential: Vec<u8>, aaguid: Option<Uuid> },
    /// An assertion: the credential with its new counter.
    Asserted { credential: Vec<u8> },
}

/// The AAGUID in the attestation object's authenticator data (bytes 37..53 when the attested
/// credential data flag is set), as GoTrue records it.
fn aaguid(attestation_object: &[u8]) -> Option<Uuid> {
    let value: ciborium::Value = ciborium::from_reader(attestation_object).ok()?;
    let auth_data = value.as_map()?.iter().find(|(k, _)| k.as_text() == Some("authData"))?.1.as_bytes()?;
    const AT: u8 = 0x40;
    if auth_data.len() < 53 || auth_data[32] & AT == 0 {
        return None;
    }
    Uuid::from_slice(&auth_data[37..53]).ok()
}

/// Runs the ceremony against the challenge's state.
fn ceremony(
    rp: &Webauthn,
    factor: &Factor,
    state: &[u8],
    params: &VerifyParams,
    response: Value,
) -> AuthResult<Outcome> {
    let state: Ceremony = serde_json::from_slice(state).map_err(|_| corrupt("challenge"))?;
    let invalid = || AuthError::validation("Invalid credential_response");
    match (state, params.kind.as_str()) {
        (Ceremony::Create(state), "create") => {
            let reg: RegisterPublicKeyCredential = serde_json::from_value(response).map_err(|_| invalid())?;
            let key = rp.finish_securitykey_registration(&reg, &state).map_err(|e| {
                tracing::info!(error = ?e, "WebAuthn registration refused");
                failed("Failed to verify WebAuthn MFA registration")
            })?;
            let credential = serde_json::to_vec(&key).map_err(|_| AuthError::internal("WebAuthn credential"))?;
            Ok(Outcome::Registered { credential, aaguid: aaguid(&reg.response.attestation_object) })
        }
        (Ceremony::Request(state), "request") => {
            let cred: PublicKeyCredential = serde_json::from_value(response).map_err(|_| invalid())?;
            let result = rp.finish_securitykey_authentication(&cred, &state).map_err(|e| {
                tracing::info!(error = ?e, "WebAuthn assertion refused");
                failed("Failed to validate WebAuthn MFA response")
            })?;
            let mut key = stored_key(factor)?;
            key.update_credential(&result);
            let credential = serde_json::to_vec(&key).map_err(|_| AuthError::internal("WebAuthn credential"))?;
            Ok(Outcome::Asserted { credential })
        }
        (Ceremony::Create(_), _) => Err(AuthError::validation("WebAuthn type must be create for an unverified factor")),
        (Ceremony::Request(_), _) => Err(AuthError::validation("WebAuthn type must be request for a verified factor")),
    }
}

/// `POST /factors/{id}/verify` for a WebAuthn factor.
pub async fn verify(
    a: &Actors,
    auth: Authenticated,
    factor_id: Uuid,
    challenge_id: Uuid,
    params: Option<VerifyParams>,
    ip: String,
) -> AuthResult<SessionGrant> {
    super::mfa::not_anonymous(&auth)?;
    let factor =
        auth.user.factors.iter().find(|f| f.id == factor_id).cloned().ok_or_else(super::mfa::factor_not_found)?;
    let w = &a.settings.mfa.web_authn;
    if !w.verify_enabled {
        // GoTrue's verify answers this code (not `mfa_webauthn_verify_not_enabled`) here.
        return Err(AuthError::unprocessable(
            ErrorCode::MfaWebauthnEnrollNotEnabled,
            "MFA verification is disabled for WebAuthn",
        ));
    }
    let params = params.ok_or_else(|| AuthError::validation("WebAuthn config required"))?;
    if params.kind != "create" && params.kind != "request" {
        return Err(AuthError::validation("WebAuthn type must be create or request"));
    }
    let response = params
        .credential_response
        .clone()
        .filter(|v| !v.is_null())
        .ok_or_else(|| AuthError::validation("credential_response required"))?;
    let rp = relying_party(w)?;
    let expiry = a.settings.mfa.challenge_expiry;
    let now = a.clock.now();
    let check = super::mfa::challenge_check(ip, now, expiry, super::mfa::IP_MISMATCH);
    let c = factor.challenges.iter().find(|c| c.id == challenge_id).ok_or_else(super::mfa::no_challenge)?;
    if let Err(e) = check(c) {
        if e.code == ErrorCode::MfaChallengeExpired {
            super::mfa::drop_challenge(a, auth.user.id, factor_id, challenge_id).await?;
        }
        return Err(e);
    }
    let outcome = ceremony(&rp, &factor, &c.web_authn_state, &params, response);
    let fid = factor_id.to_string();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            if e.code == ErrorCode::MfaVerificationFailed {
                count_failure(a, auth.user.id, factor_id, challenge_id).await?;
                audit(a, AuditActor::User(&auth.user), "verification_attempted", &traits(&fid)).await?;
            }
            return Err(e);
        }
    };
    let session =
        auth.session.as_ref().ok_or_else(|| AuthError::forbidden(ErrorCode::SessionNotFound, "Session not found"))?;
    let read_credential = factor.web_authn_credential.clone();
    let max_verified = a.settings.mfa.max_verified_factors;
    a.users
        .edit_factors(auth.user.id, move |factors| {
            let verified_others = factors.iter().filter(|f| f.is_verified() && f.id != factor_id).count();
            let f = factors.iter_mut().find(|f| f.id == factor_id).ok_or_else(super::mfa::factor_not_found)?;
            // The challenge is used once: a concurrent verify of the same one finds it gone.
            let pos = f.challenges.iter().position(|c| c.id == challenge_id).ok_or_else(super::mfa::no_challenge)?;
            check(&f.challenges[pos])?;
            // The ceremony ran against the credential as read before; if another assertion
            // moved its counter meanwhile, this one is not newer than that (or a replay).
            if f.web_authn_credential != read_credential {
                return Err(failed("Failed to validate WebAuthn MFA response"));
            }
            match outcome {
                Outcome::Registered { credential, aaguid } => {
                    if f.is_verified() {
                        return Err(AuthError::validation("WebAuthn type must be request for a verified factor"));
                    }
                    if verified_others >= max_verified {
                        return Err(AuthError::unprocessable(
                            ErrorCode::TooManyEnrolledMfaFactors,
                            "Maximum number of verified factors reached, unenroll to continue",
                        ));
                    }
                    f.web_authn_credential = credential;
                    f.web_authn_aaguid = aaguid;
                    f.status = "verified".into();
                }
                Outcome::Asserted { credential } => f.web_authn_credential = credential,
            }
            f.challenges.remove(pos);
            f.updated_at = now;
            let out = f.clone();
            // Other unverified WebAuthn factors are deleted (GoTrue).
            factors.retain(|o| o.id == factor_id || o.is_verified() || o.factor_type != FACTOR_TYPE);
            Ok(Some(out))
        })
        .await?;
    let issued = a.sessions.elevate(session.id, AMR).await?;
    audit(a, AuditActor::User(&auth.user), "verification_attempted", &traits(&fid)).await?;
    let user = a
        .users
        .get(auth.user.id)
        .await?
        .ok_or_else(|| AuthError::forbidden(ErrorCode::UserNotFound, "User not found"))?;
    grant(a, user, &issued.session, issued.refresh_token, AMR).await
}

/// A failed ceremony counts against its challenge; the last allowed failure kills it.
async fn count_failure(a: &Actors, user_id: Uuid, factor_id: Uuid, challenge_id: Uuid) -> AuthResult<()> {
    a.users
        .edit_factors(user_id, move |factors| {
            if let Some(f) = factors.iter_mut().find(|f| f.id == factor_id) {
                if let Some(pos) = f.challenges.iter().position(|c| c.id == challenge_id) {
                    f.challenges[pos].failed_attempts += 1;
                    if f.challenges[pos].failed_attempts >= MAX_CHALLENGE_ATTEMPTS {
                        f.challenges.remove(pos);
                    }
                }
            }
            Ok(None)
        })
        .await
        .map(|_| ())
}
