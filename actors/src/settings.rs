//! What the actors and flows need to know, already parsed and validated. The HTTP crate builds
//! it from the environment (`src/config.rs`); this crate never reads the environment.

use crate::crypto::{HashCost, Secret};
use std::time::Duration;

/// Everything configurable below the HTTP layer.
#[derive(Debug, Clone)]
pub struct Settings {
    pub jwt: JwtSettings,
    pub hash_cost: HashCost,
    pub password: PasswordPolicy,
    pub refresh: RefreshPolicy,
    pub sessions: SessionPolicy,
    pub signup: SignupPolicy,
    pub smtp: SmtpSettings,
    pub otp: OtpSettings,
    pub mail: MailSettings,
    pub security: SecuritySettings,
    /// `GOTRUE_EXTERNAL_FLOW_STATE_EXPIRY_DURATION`: PKCE / OAuth flow-state lifetime.
    pub flow_state_expiry: Duration,
    /// Upper bound on every actor call; a stuck actor costs a 500, never a hung request.
    pub call_timeout: Duration,
    /// `FERROTRUE_AUDIT_RETENTION`: drop audit entries older than this (`None` keeps all).
    pub audit_retention: Option<Duration>,
    /// External (OAuth / OpenID Connect) providers: `GOTRUE_EXTERNAL_<PROVIDER>_*`.
    pub oauth: crate::oauth::OAuthSettings,
    /// SMS delivery and phone codes: `GOTRUE_SMS_*`, `GOTRUE_HOOK_SEND_SMS_*`.
    pub sms: crate::sms::SmsSettings,
    /// Auth hooks (`GOTRUE_HOOK_<NAME>_*`, SPEC §11) other than send-SMS (in `sms`).
    pub hooks: crate::hooks::HookSettings,
    /// Bounds on concurrent work: hash queue, connections, HTTP/2 streams.
    pub work: WorkLimits,
    /// MFA (`GOTRUE_MFA_*`).
    pub mfa: MfaSettings,
}

/// `GOTRUE_MFA_*` (SPEC §1.17, §8.2).
#[derive(Debug, Clone)]
pub struct MfaSettings {
    pub totp_enroll_enabled: bool,
    pub totp_verify_enabled: bool,
    /// `GOTRUE_MFA_TOTP_ISSUER`; empty = the host of the site URL.
    pub totp_issuer: String,
    pub challenge_expiry: Duration,
    pub factor_expiry: Duration,
    pub max_enrolled_factors: usize,
    pub max_verified_factors: usize,
    // Phone factors (`GOTRUE_MFA_PHONE_*`, see flows::mfa_phone).
    /// `GOTRUE_MFA_PHONE_ENROLL_ENABLED` (default false).
    pub phone_enroll_enabled: bool,
    /// `GOTRUE_MFA_PHONE_VERIFY_ENABLED` (default false): challenge and verify.
    pub phone_verify_enabled: bool,
    /// `GOTRUE_MFA_PHONE_OTP_LENGTH`: digits of a code, 6..=10 (default 6).
    pub phone_otp_length: usize,
    /// `GOTRUE_MFA_PHONE_TEMPLATE` (Go syntax, `{{ .Code }}`).
    pub phone_template: String,
    /// `GOTRUE_MFA_PHONE_MAX_FREQUENCY`: spacing of codes per factor (GoTrue) and per destination
    /// number over every factor of every user (ferrotrue), default 60 s.
    pub phone_max_frequency: Duration,
    /// WebAuthn factors (`GOTRUE_MFA_WEB_AUTHN_*`, `GOTRUE_WEBAUTHN_RP_*`).
    pub web_authn: WebAuthnSettings,
}

/// WebAuthn factors: the switches and the relying party. Only the configuration defines the
/// relying party; the `rpId`/`rpOrigins` a client sends are ignored (as GoTrue, supabase/auth#2490).
#[derive(Debug, Clone, Default)]
pub struct WebAuthnSettings {
    pub enroll_enabled: bool,
    pub verify_enabled: bool,
    /// `GOTRUE_WEBAUTHN_RP_ID`: a domain every origin is on (checked at start-up).
    pub rp_id: String,
    /// `GOTRUE_WEBAUTHN_RP_DISPLAY_NAME`; empty = the RP ID.
    pub rp_display_name: String,
    /// `GOTRUE_WEBAUTHN_RP_ORIGINS`: the exact origins (`scheme://host[:port]`) a browser may
    /// report in `clientDataJSON`.
    pub rp_origins: Vec<url::Url>,
}

impl Default for MfaSettings {
    fn default() -> Self {
        MfaSettings {
            totp_enroll_enabled: true,
            totp_verify_enabled: true,
            totp_issuer: String::new(),
            challenge_expiry: Duration::from_secs(300),
            factor_expiry: Duration::from_secs(300),
            max_enrolled_factors: 10,
            max_verified_factors: 10,
            phone_enroll_enabled: false,
            phone_verify_enabled: false,
            phone_otp_length: 6,
            phone_template: "Your code is {{ .Code }}".into(),
            phone_max_frequency: Duration::from_secs(60),
            web_authn: WebAuthnSettings::default(),
        }
    }
}

/// Bounds on the work one client (or many) can make the server hold at once.
#[derive(Debug, Clone)]
pub struct WorkLimits {
    /// `FERROTRUE_HASH_QUEUE`: password hashes waiting for a hashing thread (one per core); more
    /// are refused at once with 429 `over_request_rate_limit` and `Retry-After: 1`.
    /// Default: 8 per hashing thread ([`crate::crypto::default_hash_queue`]).
    pub hash_queue: usize,
    /// `FERROTRUE_MAX_CONNECTIONS`: open client connections; at the cap the server stops
    /// accepting (the kernel backlog holds the rest) until one closes. Default 4096, lowered at
    /// start to fit the process's open-file limit.
    pub max_connections: usize,
    /// `FERROTRUE_HTTP2_MAX_CONCURRENT_STREAMS`: requests in flight on one HTTP/2 connection.
    /// Default 100 (the floor RFC 9113 recommends).
    pub http2_max_concurrent_streams: u32,
}

impl Default for WorkLimits {
    fn default() -> Self {
        WorkLimits {
            hash_queue: crate::crypto::default_hash_queue(),
            max_connections: 4096,
            http2_max_concurrent_streams: 100,
        }
    }
}

/// Access-token signing and the roles it carries.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// `GOTRUE_JWT_SECRET` (HS256).
    pub secret: Secret,
    /// `GOTRUE_JWT_EXP`.
    pub exp: Duration,
    /// `GOTRUE_JWT_AUD`.
    pub aud: String,
    /// `GOTRUE_JWT_ISSUER`; omitted from tokens when empty.
    pub issuer: String,
    /// `GOTRUE_JWT_KEY_ID`; adds `kid` to the header when set.
    pub key_id: String,
    /// `GOTRUE_JWT_DEFAULT_GROUP_NAME`: role of new users.
    pub default_group: String,
    /// `GOTRUE_JWT_ADMIN_ROLES`.
    pub admin_roles: Vec<String>,
    /// `GOTRUE_JWT_ADMIN_GROUP_NAME`: a user role that may set its own app_metadata.
    pub admin_group: String,
    /// `GOTRUE_JWT_KEYS`: asymmetric (or `oct`) keys; when set, the one with `sign` in its
    /// `key_ops` signs access tokens and every key verifies tokens naming its `kid`. Empty: HS256
    /// with `secret`.
    pub keys: Vec<crate::jwt_keys::ConfiguredKey>,
    /// `GOTRUE_JWT_VALID_METHODS`: the `alg` values accepted in presented tokens. Empty means the
    /// algorithms of `keys` plus HS256 (`secret` always verifies `service_role` / `anon` keys).
    pub valid_methods: Vec<jsonwebtoken::Algorithm>,
}

/// `GOTRUE_PASSWORD_*`.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    /// At least 6 (GoTrue raises smaller values to 6).
    pub min_length: usize,
    /// Character sets of which each must occur at least once.
    pub required_characters: Vec<String>,
}

/// `GOTRUE_SECURITY_REFRESH_TOKEN_*`.
#[derive(Debug, Clone)]
pub struct RefreshPolicy {
    pub rotation_enabled: bool,
    pub reuse_interval: Duration,
}

/// `GOTRUE_SESSIONS_*` (off when `None`).
#[derive(Debug, Clone, Default)]
pub struct SessionPolicy {
    pub timebox: Option<Duration>,
    pub inactivity_timeout: Option<Duration>,
}

/// Which sign-up and sign-in paths are open.
#[derive(Debug, Clone)]
pub struct SignupPolicy {
    pub disable_signup: bool,
    pub email_enabled: bool,
    pub phone_enabled: bool,
    pub anonymous_enabled: bool,
    pub mailer_autoconfirm: bool,
    pub sms_autoconfirm: bool,
}

/// `GOTRUE_SMTP_*`.
#[derive(Debug, Clone, Default)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: Secret,
    pub admin_email: String,
    pub sender_name: String,
    /// `GOTRUE_SMTP_MAX_FREQUENCY`.
    pub max_frequency: Duration,
}

/// Links, templates and throttles of the email flows.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `GOTRUE_SITE_URL`: default redirect target, `.SiteURL` in templates.
    pub site_url: String,
    /// `API_EXTERNAL_URL`: base of the links in mails.
    pub api_external_url: String,
    /// `GOTRUE_URI_ALLOW_LIST`.
    pub uri_allow_list: Vec<String>,
    /// `GOTRUE_MAILER_URLPATHS_{CONFIRMATION,INVITE,RECOVERY,EMAIL_CHANGE}` (default `/verify`).
    pub url_paths: UrlPaths,
    /// `GOTRUE_MAILER_SUBJECTS_<TYPE>` overrides, keyed by template name (`confirmation`, ...).
    pub subjects: Vec<(String, String)>,
    /// `GOTRUE_MAILER_TEMPLATES_<TYPE>` overrides, already resolved to template text.
    pub templates: Vec<(String, String)>,
    /// `GOTRUE_MAILER_SECURE_EMAIL_CHANGE_ENABLED`.
    pub secure_email_change: bool,
    /// `GOTRUE_EXTERNAL_EMAIL_MAGIC_LINK_ENABLED`.
    pub magic_link_enabled: bool,
    /// `GOTRUE_RATE_LIMIT_EMAIL_SENT`: mails per window (global); `None` = no budget.
    pub email_budget: Option<(u32, Duration)>,
    /// SMTP conversation bound, kept below the request timeout so a dead relay never hangs one.
    pub smtp_timeout: Duration,
}

/// Link paths per mail type.
#[derive(Debug, Clone)]
pub struct UrlPaths {
    pub confirmation: String,
    pub invite: String,
    pub recovery: String,
    pub email_change: String,
}

/// `GOTRUE_SECURITY_*` switches used by the user flows.
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    /// `GOTRUE_SECURITY_UPDATE_PASSWORD_REQUIRE_REAUTHENTICATION`.
    pub update_password_require_reauthentication: bool,
}

/// `GOTRUE_MAILER_OTP_*`.
#[derive(Debug, Clone)]
pub struct OtpSettings {
    pub exp: Duration,
    pub length: usize,
}

impl Settings {
    /// GoTrue's defaults with ferrotrue's zero-config choices (`aud` and role `authenticated`).
    pub fn defaults(secret: Secret) -> Settings {
        Settings {
            jwt: JwtSettings {
                secret,
                exp: Duration::from_secs(3600),
                aud: "authenticated".into(),
                issuer: String::new(),
                key_id: String::new(),
                keys: Vec::new(),
                valid_methods: Vec::new(),
                default_group: "authenticated".into(),
                admin_roles: vec!["service_role".into(), "supabase_admin".into()],
                admin_group: "admin".into(),
            },
            hash_cost: HashCost::OWASP,
            password: PasswordPolicy { min_length: 6, required_characters: Vec::new() },
            refresh: RefreshPolicy { rotation_enabled: true, reuse_interval: Duration::ZERO },
            sessions: SessionPolicy::default(),
            signup: SignupPolicy {
                disable_signup: false,
                email_enabled: true,
                phone_enabled: false,
                anonymous_enabled: false,
                mailer_autoconfirm: false,
                sms_autoconfirm: false,
            },
            smtp: SmtpSettings { port: 587, max_frequency: Duration::from_secs(60), ..Default::default() },
            otp: OtpSettings { exp: Duration::from_secs(86_400), length: 6 },
            mail: MailSettings {
                site_url: "http://localhost:3000".into(),
                api_external_url: "http://127.0.0.1:9999".into(),
                uri_allow_list: Vec::new(),
                url_paths: UrlPaths {
                    confirmation: "/verify".into(),
                    invite: "/verify".into(),
                    recovery: "/verify".into(),
                    email_change: "/verify".into(),
                },
                subjects: Vec::new(),
                templates: Vec::new(),
                secure_email_change: true,
                magic_link_enabled: true,
                email_budget: Some((30, Duration::from_secs(3600))),
                smtp_timeout: Duration::from_secs(8),
            },
            security: SecuritySettings::default(),
            flow_state_expiry: Duration::from_secs(300),
            call_timeout: Duration::from_secs(5),
            audit_retention: None,
            oauth: crate::oauth::OAuthSettings::default(),
            sms: crate::sms::SmsSettings::default(),
            hooks: crate::hooks::HookSettings::default(),
            work: WorkLimits::default(),
            mfa: MfaSettings::default(),
        }
    }

    /// Defaults tuned for tests: quick password hashing, autoconfirm on, phone enabled.
    pub fn for_tests() -> Settings {
        let mut s = Settings::defaults(Secret("test-secret-that-is-long-enough-for-hs256".into()));
        s.hash_cost = HashCost::QUICK;
        s.signup.mailer_autoconfirm = true;
        s.signup.phone_enabled = true;
        s.signup.sms_autoconfirm = true;
        s.mail.email_budget = None;
        s
    }
}
