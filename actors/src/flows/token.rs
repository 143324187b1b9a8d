//! `POST /token` grants. Ports of token.go `ResourceOwnerPasswordGrant` and
//! tokens/service.go `RefreshTokenGrant` (rotation itself lives in the SessionManager).

use super::validate;
use super::{audit, grant, sign_in, AuditActor, RequestMeta, SessionGrant, WeakPasswordNote};
use crate::crypto::{PasswordCheck, Secret};
use crate::error::{AuthError, AuthResult, ErrorCode, INVALID_LOGIN_MSG};
use crate::Actors;

/// `grant_type=password` input.
#[derive(Debug, Clone, Default)]
pub struct PasswordGrant {
    pub email: String,
    pub phone: String,
    pub password: Secret,
    pub meta: RequestMeta,
}

fn invalid_login() -> AuthError {
    AuthError::bad_request(ErrorCode::InvalidCredentials, INVALID_LOGIN_MSG)
}

/// `grant_type=password`: unknown user, no password and wrong password are one answer.
pub async fn password(a: &Actors, input: PasswordGrant) -> AuthResult<SessionGrant> {
    let policy = &a.settings.signup;
    let (email, phone) = (input.email.trim(), input.phone.trim());
    if !email.is_empty() && !phone.is_empty() {
        return Err(AuthError::validation("Only an email address or phone number should be provided on login."));
    }
    let user = if !email.is_empty() {
        if !policy.email_enabled {
            return Err(AuthError::unprocessable(ErrorCode::EmailProviderDisabled, "Email logins are disabled"));
        }
        a.users.by_email(email).await?
    } else if !phone.is_empty() {
        if !policy.phone_enabled {
            return Err(AuthError::unprocessable(ErrorCode::PhoneProviderDisabled, "Phone logins are disabled"));
        }
        match validate::phone(phone) {
            Ok(phone) => a.users.by_phone(&phone).await?,
            Err(_) => None,
        }
    } else {
        return Err(AuthError::validation("missing email or phone"));
    };

    let check = match user.as_ref().and_then(|u| u.encrypted_password.as_deref()) {
        Some(stored) if !input.password.expose().is_empty() => a.hasher.verify(&input.password, stored).await?,
        _ => a.hasher.verify_decoy(&input.password).await?,
    };
    if let Some(user) = user.as_ref() {
        // GoTrue: the hook hears every attempt on an existing user, valid or not, and may
        // reject it (optionally signing the user out everywhere) before the password counts.
        let valid = matches!(check, PasswordCheck::Match | PasswordCheck::MatchNeedsRehash);
        let decision = crate::hooks::password_verification_attempt(&a.settings.hooks, user.id, valid).await?;
        if let Some(decision) = decision.filter(|d| d.reject) {
            if decision.should_logout_user {
                a.sessions.end_user_sessions(user.id, None).await?;
            }
            return Err(AuthError::bad_request(ErrorCode::InvalidCredentials, decision.message));
        }
    }
    let user = match (user, check) {
        (Some(user), PasswordCheck::Match | PasswordCheck::MatchNeedsRehash) => user,
        _ => return Err(invalid_login()),
    };
    if user.is_banned(a.clock.now()) {
        return Err(AuthError::bad_request(ErrorCode::UserBanned, "User is banned"));
    }
    if !email.is_empty() && user.email_confirmed_at.is_none() {
        return Err(AuthError::bad_request(ErrorCode::EmailNotConfirmed, "Email not confirmed"));
    }
    if email.is_empty() && user.phone_confirmed_at.is_none() {
        return Err(AuthError::bad_request(ErrorCode::PhoneNotConfirmed, "Phone not confirmed"));
    }
    let user = if check == PasswordCheck::MatchNeedsRehash {
        // An imported bcrypt hash: replace it with argon2id now that we know the password.
        let hash = a.hasher.hash(&input.password).await?;
        a.users
            .update(user.id, move |u| {
                u.encrypted_password = Some(hash);
                Ok(())
            })
            .await?
    } else {
        user
    };
    let mut session = sign_in(a, user, "password", &input.meta).await?;
    session.weak_password = validate::password_weakness(&a.settings.password, &input.password)
        .map(|(message, reasons)| WeakPasswordNote { message, reasons });
    Ok(session)
}

/// `grant_type=refresh_token`.
pub async fn refresh(a: &Actors, refresh_token: &str) -> AuthResult<SessionGrant> {
    let token = refresh_token.trim();
    if token.len() < 12 {
        return Err(AuthError::validation("Refresh token is not valid"));
    }
    let user_id = a.sessions.owner(token).await?;
    let user = a.users.get(user_id).await?.ok_or_else(|| {
        AuthError::bad_request(ErrorCode::RefreshTokenNotFound, "Invalid Refresh Token: Refresh Token Not Found")
    })?;
    if user.is_banned(a.clock.now()) {
        return Err(AuthError::bad_request(ErrorCode::UserBanned, "User is banned"));
    }
    let issued = a.sessions.refresh(token).await?;
    audit(a, AuditActor::User(&user), "token_refreshed", &[]).await?;
    grant(a, user, &issued.session, issued.refresh_token, "token_refresh").await
}

/// `grant_type=pkce`: exchange an auth code and its verifier for a session, once.
pub async fn pkce(a: &Actors, auth_code: &str, code_verifier: &str, meta: &RequestMeta) -> AuthResult<SessionGrant> {
    if auth_code.is_empty() || code_verifier.is_empty() {
        return Err(AuthError::validation("invalid request: both auth code and code verifier should be non-empty"));
    }
    let exchanged = a.oauth.exchange(auth_code, code_verifier).await?;
    let flow = exchanged.flow;
    let not_found =
        || AuthError::not_found(ErrorCode::FlowStateNotFound, "invalid flow state, no valid flow state found");
    let user_id = flow.user_id.ok_or_else(not_found)?;
    let user = a.users.get(user_id).await?.ok_or_else(not_found)?;
    if user.is_banned(a.clock.now()) {
        return Err(AuthError::bad_request(ErrorCode::UserBanned, "User is banned"));
    }
    let mut session = sign_in(a, user, &flow.authentication_method, meta).await?;
    // An OAuth flow hands the provider's tokens over with the session (GoTrue: PKCE grant).
    if let Some(external) = exchanged.external {
        session.provider_token = Some(external.provider_token).filter(|t| !t.is_empty());
        session.provider_refresh_token = Some(external.provider_refresh_token).filter(|t| !t.is_empty());
    }
    Ok(session)
}
