//! One error vocabulary for the whole server: GoTrue's `error_code` strings, an HTTP-free
//! status family, and [`AuthError`], the value every flow returns. `src/http/error.rs` is the
//! only place that turns it into bytes.
//!
//! The status family is chosen where the error is built, as GoTrue does: the same code is a 400
//! on one endpoint and a 403 or 422 on another (`user_banned`, `session_not_found`, ...).

use std::borrow::Cow;

macro_rules! error_codes {
    ($($variant:ident => $code:literal,)*) => {
        /// GoTrue `error_code` strings (internal/api/apierrors/errorcode.go), variant = CamelCase.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode { $($variant,)* }
        impl ErrorCode {
            /// The wire string.
            pub const fn as_str(self) -> &'static str { match self { $(Self::$variant => $code,)* } }
        }
    };
}

error_codes! {
    Unknown => "unknown",
    UnexpectedFailure => "unexpected_failure",
    ValidationFailed => "validation_failed",
    BadJson => "bad_json",
    RequestEntityTooLarge => "request_entity_too_large",
    RequestTimeout => "request_timeout",
    NotFound => "not_found",
    MethodNotAllowed => "method_not_allowed",
    EmailExists => "email_exists",
    PhoneExists => "phone_exists",
    UserAlreadyExists => "user_already_exists",
    WeakPassword => "weak_password",
    SamePassword => "same_password",
    InvalidCredentials => "invalid_credentials",
    EmailNotConfirmed => "email_not_confirmed",
    PhoneNotConfirmed => "phone_not_confirmed",
    UserBanned => "user_banned",
    SignupDisabled => "signup_disabled",
    AnonymousProviderDisabled => "anonymous_provider_disabled",
    EmailProviderDisabled => "email_provider_disabled",
    PhoneProviderDisabled => "phone_provider_disabled",
    NoAuthorization => "no_authorization",
    BadJwt => "bad_jwt",
    NotAdmin => "not_admin",
    UserNotFound => "user_not_found",
    SessionNotFound => "session_not_found",
    SessionExpired => "session_expired",
    RefreshTokenNotFound => "refresh_token_not_found",
    RefreshTokenAlreadyUsed => "refresh_token_already_used",
    Conflict => "conflict",
    FlowStateNotFound => "flow_state_not_found",
    FlowStateExpired => "flow_state_expired",
    OtpExpired => "otp_expired",
    OtpDisabled => "otp_disabled",
    BadCodeVerifier => "bad_code_verifier",
    ReauthenticationNeeded => "reauthentication_needed",
    ReauthenticationNotValid => "reauthentication_not_valid",
    EmailAddressInvalid => "email_address_invalid",
    SmsSendFailed => "sms_send_failed",
    MfaFactorNotFound => "mfa_factor_not_found",
    MfaFactorNameConflict => "mfa_factor_name_conflict",
    TooManyEnrolledMfaFactors => "too_many_enrolled_mfa_factors",
    MfaIpAddressMismatch => "mfa_ip_address_mismatch",
    MfaChallengeExpired => "mfa_challenge_expired",
    MfaVerificationFailed => "mfa_verification_failed",
    MfaVerificationRejected => "mfa_verification_rejected",
    MfaTotpEnrollNotEnabled => "mfa_totp_enroll_not_enabled",
    MfaTotpVerifyNotEnabled => "mfa_totp_verify_not_enabled",
    MfaPhoneEnrollNotEnabled => "mfa_phone_enroll_not_enabled",
    MfaPhoneVerifyNotEnabled => "mfa_phone_verify_not_enabled",
    MfaVerifiedFactorExists => "mfa_verified_factor_exists",
    MfaWebauthnEnrollNotEnabled => "mfa_webauthn_enroll_not_enabled",
    MfaWebauthnVerifyNotEnabled => "mfa_webauthn_verify_not_enabled",
    InsufficientAal => "insufficient_aal",
    OverEmailSendRateLimit => "over_email_send_rate_limit",
    OverSmsSendRateLimit => "over_sms_send_rate_limit",
    OverRequestRateLimit => "over_request_rate_limit",
    ProviderDisabled => "provider_disabled",
    BadOauthState => "bad_oauth_state",
    BadOauthCallback => "bad_oauth_callback",
    OauthProviderNotSupported => "oauth_provider_not_supported",
    FlowStateAlreadyUsed => "flow_state_already_used",
    ProviderEmailNeedsVerification => "provider_email_needs_verification",
    ManualLinkingDisabled => "manual_linking_disabled",
    IdentityAlreadyExists => "identity_already_exists",
    IdentityNotFound => "identity_not_found",
    SingleIdentityNotDeletable => "single_identity_not_deletable",
    EmailConflictIdentityNotDeletable => "email_conflict_identity_not_deletable",
    UnexpectedAudience => "unexpected_audience",
    HookTimeout => "hook_timeout",
    HookTimeoutAfterRetry => "hook_timeout_after_retry",
    HookPayloadOverSizeLimit => "hook_payload_over_size_limit",
    HookPayloadInvalidContentType => "hook_payload_invalid_content_type",
    CaptchaFailed => "captcha_failed",
}

/// HTTP-free status family; `src/http/error.rs` maps it to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    Unprocessable,
    TooManyRequests,
    Internal,
    GatewayTimeout,
}

/// GoTrue's generic text for failures the client cannot do anything about.
pub const UNEXPECTED_FAILURE_MSG: &str = "Unexpected failure, please check server logs for more information";
pub const INVALID_LOGIN_MSG: &str = "Invalid login credentials";
pub const DUPLICATE_EMAIL_MSG: &str = "A user with this email address has already been registered";
pub const DUPLICATE_PHONE_MSG: &str = "A user with this phone number has already been registered";

/// A client-visible error. `msg` is safe to send; `internal` is logged, never sent.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?} {}: {msg}", .code.as_str())]
pub struct AuthError {
    pub kind: ErrorKind,
    pub code: ErrorCode,
    pub msg: Cow<'static, str>,
    /// `weak_password.reasons` of a 422 `weak_password`.
    pub weak_password: Option<Vec<String>>,
    /// Rendered as GoTrue's OAuth shape `{error, error_description}` (always 400) when set.
    pub oauth_error: Option<&'static str>,
    /// Seconds for a `Retry-After` header (rate limits, shed load).
    pub retry_after: Option<u64>,
    #[source]
    pub internal: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl AuthError {
    /// Builds an error of the given kind; prefer the named constructors below.
    pub fn new(kind: ErrorKind, code: ErrorCode, msg: impl Into<Cow<'static, str>>) -> Self {
        AuthError {
            kind,
            code,
            msg: msg.into(),
            weak_password: None,
            oauth_error: None,
            retry_after: None,
            internal: None,
        }
    }
    /// Go's `NewBadRequestError`.
    pub fn bad_request(code: ErrorCode, msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::BadRequest, code, msg)
    }
    /// Go's `NewUnprocessableEntityError`.
    pub fn unprocessable(code: ErrorCode, msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Unprocessable, code, msg)
    }
    /// Go's `NewForbiddenError`.
    pub fn forbidden(code: ErrorCode, msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Forbidden, code, msg)
    }
    /// Go's `NewNotFoundError`.
    pub fn not_found(code: ErrorCode, msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::NotFound, code, msg)
    }
    /// 401, used for a missing bearer token.
    pub fn unauthorized(code: ErrorCode, msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Unauthorized, code, msg)
    }
    /// Go's `NewTooManyRequestsError`.
    pub fn too_many_requests(code: ErrorCode, msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::TooManyRequests, code, msg)
    }
    /// 400 `validation_failed`, the most common client mistake.
    pub fn validation(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::bad_request(ErrorCode::ValidationFailed, msg)
    }
    /// 500 `unexpected_failure` with a client-safe message (e.g. "Database error").
    pub fn internal(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Internal, ErrorCode::UnexpectedFailure, msg)
    }
    /// 500 with GoTrue's generic text; `detail` goes to the log only.
    pub fn unexpected(detail: impl Into<String>) -> Self {
        Self::internal(UNEXPECTED_FAILURE_MSG).with_source(Detail(detail.into()))
    }
    /// 422 `weak_password` with its reasons.
    pub fn weak_password(msg: String, reasons: Vec<String>) -> Self {
        let mut err = Self::unprocessable(ErrorCode::WeakPassword, msg);
        err.weak_password = Some(reasons);
        err
    }
    /// GoTrue's `OAuthError`: `{error, error_description}` with status 400.
    pub fn oauth(error: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        let mut err = Self::bad_request(ErrorCode::ValidationFailed, description);
        err.oauth_error = Some(error);
        err
    }
    /// Adds a `Retry-After: <seconds>` header to the response (at least 1 s).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }
    /// Go's `.WithInternalError(err)`: attach the cause for the log, never for the client.
    pub fn with_source(mut self, err: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.internal = Some(Box::new(err));
        self
    }
    /// True for the 5xx family, which is logged with its cause.
    pub fn is_server_error(&self) -> bool {
        matches!(self.kind, ErrorKind::Internal | ErrorKind::GatewayTimeout)
    }
}

/// A plain-text cause for [`AuthError::unexpected`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Detail(pub String);

/// Storage failures. Converted to a 500 `AuthError` at the actor boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("unknown record version {0} in tree {1}")]
    Version(u8, &'static str),
    #[error("flush failed: {0}")]
    Flush(String),
    #[error("{0}")]
    Corrupt(String),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        AuthError::internal("Database error").with_source(e)
    }
}

/// Result alias for flows and actor replies.
pub type AuthResult<T> = Result<T, AuthError>;
