//! Security configuration: GoTrue's per-client rate limits (`GOTRUE_RATE_LIMIT_*`,
//! `GOTRUE_MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY`), CAPTCHA (`GOTRUE_SECURITY_CAPTCHA_*`), which
//! client address to trust, and the refusal of security settings ferrotrue does not implement —
//! an operator who sets one must not believe they are protected when they are not.

use std::collections::HashMap;
use std::time::Duration;

/// One token bucket: `burst` requests at once, then one more every `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub burst: u32,
    /// `None`: the bucket never refills (GoTrue's rate `0`: the burst, then nothing).
    pub period: Option<Duration>,
}

impl Bucket {
    /// GoTrue's `tollbooth.NewLimiter(per_window / window_secs)` with a burst: a rate of
    /// `per_window` requests per `window`.
    pub fn per(per_window: f64, window: Duration, burst: u32) -> Bucket {
        let period = (per_window > 0.0).then(|| window.div_f64(per_window).max(Duration::from_micros(1)));
        Bucket { burst: burst.max(1), period }
    }
}

/// Per-client limits (SPEC §8.3). GoTrue applies them only when it can tell clients apart by
/// `GOTRUE_RATE_LIMIT_HEADER`; ferrotrue falls back to the TCP peer address, so they are on by
/// default.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    /// `GOTRUE_RATE_LIMIT_HEADER`: the header whose first value identifies the client.
    pub header: Option<String>,
    /// `GOTRUE_SECURITY_SB_FORWARDED_FOR_ENABLED`: trust `Sb-Forwarded-For` (an IP address).
    pub sb_forwarded_for: bool,
    /// `GOTRUE_RATE_LIMIT_OTP`: /otp, /magiclink, /recover, /resend, /signup (email/phone), PUT /user.
    pub otp: Bucket,
    /// `GOTRUE_RATE_LIMIT_VERIFY`: GET and POST /verify.
    pub verify: Bucket,
    /// `GOTRUE_RATE_LIMIT_TOKEN_REFRESH`: every /token grant.
    pub token: Bucket,
    /// `GOTRUE_RATE_LIMIT_ANONYMOUS_USERS`: anonymous sign-ins.
    pub anonymous: Bucket,
    /// `GOTRUE_RATE_LIMIT_SSO` (no SSO endpoint yet; read so the value is validated).
    pub sso: Bucket,
    /// `GOTRUE_RATE_LIMIT_WEB3` (no web3 grant yet).
    pub web3: Bucket,
    /// `GOTRUE_MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY` (for the MFA endpoints).
    pub mfa: Bucket,
    /// Per-account password sign-in throttle (ferrotrue's; GoTrue has none), from one client.
    pub password_per_client: Bucket,
    /// Per-account password sign-in throttle over all clients.
    pub password_per_account: Bucket,
    /// Typed-in one-time codes per target address over all clients (ferrotrue's).
    pub code_per_target: Bucket,
}

const FIVE_MINUTES: Duration = Duration::from_secs(300);
const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// Password sign-ins per account from one client: 5 at once, then one per 12 s (5/min).
pub const PASSWORD_PER_CLIENT: Bucket = Bucket { burst: 5, period: Some(Duration::from_secs(12)) };
/// Password sign-ins per account from all clients: 20 at once, then one per 6 s (10/min).
pub const PASSWORD_PER_ACCOUNT: Bucket = Bucket { burst: 20, period: Some(Duration::from_secs(6)) };
/// Codes typed in for one address (email or phone) from all clients: 10 at once, then one per
/// 6 min (10/h). With 5 wrong guesses killing a code, this caps a patient attacker at ~250
/// guesses a day per address instead of one fresh code a minute (~7,200).
pub const CODE_PER_TARGET: Bucket = Bucket { burst: 10, period: Some(Duration::from_secs(360)) };

impl Default for RateLimits {
    /// GoTrue's defaults (SPEC §8.3).
    fn default() -> Self {
        RateLimits {
            header: None,
            sb_forwarded_for: false,
            otp: Bucket::per(30.0, FIVE_MINUTES, 30),
            verify: Bucket::per(30.0, FIVE_MINUTES, 30),
            token: Bucket::per(150.0, FIVE_MINUTES, 30),
            anonymous: Bucket::per(30.0, HOUR, 30),
            sso: Bucket::per(30.0, FIVE_MINUTES, 30),
            web3: Bucket::per(30.0, FIVE_MINUTES, 30),
            mfa: Bucket::per(15.0, MINUTE, 30),
            password_per_client: PASSWORD_PER_CLIENT,
            password_per_account: PASSWORD_PER_ACCOUNT,
            code_per_target: CODE_PER_TARGET,
        }
    }
}

impl RateLimits {
    /// Limits so high that no test or compat run meets them (tests that exercise a limit set
    /// their own).
    pub fn generous() -> RateLimits {
        let lots = Bucket { burst: 100_000, period: Some(Duration::from_micros(10)) };
        RateLimits {
            otp: lots,
            verify: lots,
            token: lots,
            anonymous: lots,
            sso: lots,
            web3: lots,
            mfa: lots,
            password_per_client: lots,
            password_per_account: lots,
            code_per_target: lots,
            ..RateLimits::default()
        }
    }
}

/// Which CAPTCHA service verifies `gotrue_meta_security.captcha_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptchaProvider {
    HCaptcha,
    Turnstile,
}

impl CaptchaProvider {
    /// The provider's siteverify endpoint (GoTrue's).
    pub fn verify_url(self) -> &'static str {
        match self {
            CaptchaProvider::HCaptcha => "https://hcaptcha.com/siteverify",
            CaptchaProvider::Turnstile => "https://challenges.cloudflare.com/turnstile/v0/siteverify",
        }
    }
}

/// `GOTRUE_SECURITY_CAPTCHA_*` when enabled.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptchaSettings {
    pub provider: CaptchaProvider,
    /// `GOTRUE_SECURITY_CAPTCHA_SECRET`.
    pub secret: ferrotrue_actors::crypto::Secret,
    /// `GOTRUE_SECURITY_CAPTCHA_TIMEOUT` (10 s).
    pub timeout: Duration,
    /// `FERROTRUE_CAPTCHA_VERIFY_URL`: overrides the provider's siteverify URL (a proxy, tests).
    pub verify_url: String,
}

/// `GOTRUE_SECURITY_*` and `GOTRUE_RATE_LIMIT_*` names ferrotrue reads. Any other name of those
/// families, set to anything but its off value, stops start-up.
const KNOWN_SECURITY_VARS: &[&str] = &[
    "GOTRUE_SECURITY_REFRESH_TOKEN_ROTATION_ENABLED",
    "GOTRUE_SECURITY_REFRESH_TOKEN_REUSE_INTERVAL",
    "GOTRUE_SECURITY_UPDATE_PASSWORD_REQUIRE_REAUTHENTICATION",
    "GOTRUE_SECURITY_MANUAL_LINKING_ENABLED",
    "GOTRUE_SECURITY_CAPTCHA_ENABLED",
    "GOTRUE_SECURITY_CAPTCHA_PROVIDER",
    "GOTRUE_SECURITY_CAPTCHA_SECRET",
    "GOTRUE_SECURITY_CAPTCHA_TIMEOUT",
    "GOTRUE_SECURITY_SB_FORWARDED_FOR_ENABLED",
    "GOTRUE_RATE_LIMIT_HEADER",
    "GOTRUE_RATE_LIMIT_EMAIL_SENT",
    "GOTRUE_RATE_LIMIT_SMS_SENT",
    "GOTRUE_RATE_LIMIT_VERIFY",
    "GOTRUE_RATE_LIMIT_TOKEN_REFRESH",
    "GOTRUE_RATE_LIMIT_OTP",
    "GOTRUE_RATE_LIMIT_ANONYMOUS_USERS",
    "GOTRUE_RATE_LIMIT_SSO",
    "GOTRUE_RATE_LIMIT_WEB3",
];

/// True for values that leave a feature off (`false`, `0`, empty).
fn is_off(value: &str) -> bool {
    matches!(value.trim(), "" | "0" | "false" | "FALSE" | "False" | "f" | "F" | "0s")
}

/// One error per security setting that is set but not implemented.
pub fn unimplemented_settings(vars: &HashMap<String, String>) -> Vec<String> {
    let mut errors: Vec<String> = vars
        .iter()
        .filter(|(name, _)| name.starts_with("GOTRUE_SECURITY_") || name.starts_with("GOTRUE_RATE_LIMIT_"))
        .filter(|(name, value)| !KNOWN_SECURITY_VARS.contains(&name.as_str()) && !is_off(value))
        .map(|(name, value)| {
            format!(
                "{name}={value:?} is a security setting ferrotrue does not implement; refusing to start rather than \
                 ignore it (unset it, or see SECURITY.md)"
            )
        })
        .collect();
    errors.sort();
    errors
}

/// Reads a GoTrue rate (`float64`, requests per window) into a bucket.
pub fn read_rate(
    vars: &HashMap<String, String>,
    errors: &mut Vec<String>,
    name: &str,
    default: f64,
    window: Duration,
    burst: Option<u32>,
) -> Bucket {
    let per_window = match vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => default,
        Some(v) => match v.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => n,
            _ => {
                errors.push(format!("{name}={v:?} is not a non-negative number of requests"));
                default
            }
        },
    };
    // GoTrue's burst is 30, except the anonymous limiter whose burst is the rate itself.
    let burst = burst.unwrap_or_else(|| per_window.clamp(1.0, u32::MAX as f64) as u32);
    Bucket::per(per_window, window, burst)
}

/// `GOTRUE_RATE_LIMIT_*` and friends.
pub fn read_rate_limits(vars: &HashMap<String, String>, errors: &mut Vec<String>) -> RateLimits {
    let text = |name: &str| vars.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let sb_forwarded_for = crate::config::read_bool(vars, errors, "GOTRUE_SECURITY_SB_FORWARDED_FOR_ENABLED", false);
    RateLimits {
        header: text("GOTRUE_RATE_LIMIT_HEADER"),
        sb_forwarded_for,
        otp: read_rate(vars, errors, "GOTRUE_RATE_LIMIT_OTP", 30.0, FIVE_MINUTES, Some(30)),
        verify: read_rate(vars, errors, "GOTRUE_RATE_LIMIT_VERIFY", 30.0, FIVE_MINUTES, Some(30)),
        token: read_rate(vars, errors, "GOTRUE_RATE_LIMIT_TOKEN_REFRESH", 150.0, FIVE_MINUTES, Some(30)),
        anonymous: read_rate(vars, errors, "GOTRUE_RATE_LIMIT_ANONYMOUS_USERS", 30.0, HOUR, None),
        sso: read_rate(vars, errors, "GOTRUE_RATE_LIMIT_SSO", 30.0, FIVE_MINUTES, Some(30)),
        web3: read_rate(vars, errors, "GOTRUE_RATE_LIMIT_WEB3", 30.0, FIVE_MINUTES, Some(30)),
        mfa: read_rate(vars, errors, "GOTRUE_MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY", 15.0, MINUTE, Some(30)),
        // ferrotrue's own: sign-in attempts per account per minute (burst: the same number from
        // one client, twice that over all clients); typed-in codes per address per hour. Unset,
        // they are the constants above (`gotrue_defaults_and_overrides` checks it).
        password_per_client: read_rate(vars, errors, "FERROTRUE_RATE_LIMIT_PASSWORD_PER_CLIENT", 5.0, MINUTE, None),
        password_per_account: {
            let n = read_rate(vars, errors, "FERROTRUE_RATE_LIMIT_PASSWORD_PER_ACCOUNT", 10.0, MINUTE, None);
            Bucket { burst: n.burst.saturating_mul(2), ..n }
        },
        code_per_target: read_rate(vars, errors, "FERROTRUE_RATE_LIMIT_CODE_PER_TARGET", 10.0, HOUR, None),
    }
}

/// `GOTRUE_SECURITY_CAPTCHA_*`; `None` when disabled.
pub fn read_captcha(vars: &HashMap<String, String>, errors: &mut Vec<String>) -> Option<CaptchaSettings> {
    let text = |name: &str| vars.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if !crate::config::read_bool(vars, errors, "GOTRUE_SECURITY_CAPTCHA_ENABLED", false) {
        return None;
    }
    let provider = match text("GOTRUE_SECURITY_CAPTCHA_PROVIDER").as_deref() {
        None | Some("hcaptcha") => CaptchaProvider::HCaptcha,
        Some("turnstile") => CaptchaProvider::Turnstile,
        Some(other) => {
            errors.push(format!("GOTRUE_SECURITY_CAPTCHA_PROVIDER={other:?} is not hcaptcha or turnstile"));
            CaptchaProvider::HCaptcha
        }
    };
    let Some(secret) = text("GOTRUE_SECURITY_CAPTCHA_SECRET") else {
        errors.push("GOTRUE_SECURITY_CAPTCHA_ENABLED=true needs GOTRUE_SECURITY_CAPTCHA_SECRET".into());
        return None;
    };
    let timeout = match text("GOTRUE_SECURITY_CAPTCHA_TIMEOUT") {
        None => Duration::from_secs(10),
        Some(v) => crate::config::parse_go_duration(&v).unwrap_or_else(|| {
            errors.push(format!("GOTRUE_SECURITY_CAPTCHA_TIMEOUT={v:?} is not a duration like 10s"));
            Duration::from_secs(10)
        }),
    };
    let verify_url = text("FERROTRUE_CAPTCHA_VERIFY_URL").unwrap_or_else(|| provider.verify_url().to_owned());
    Some(CaptchaSettings { provider, secret: ferrotrue_actors::crypto::Secret(secret), timeout, verify_url })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::vars_for_tests as vars;

    #[test]
    fn gotrue_defaults_and_overrides() {
        let mut errors = Vec::new();
        let limits = read_rate_limits(&vars(&[]), &mut errors);
        assert_eq!(limits, RateLimits::default());
        assert_eq!(limits.verify, Bucket { burst: 30, period: Some(Duration::from_secs(10)) });
        assert_eq!(limits.token, Bucket { burst: 30, period: Some(Duration::from_secs(2)) });
        assert_eq!(limits.anonymous, Bucket { burst: 30, period: Some(Duration::from_secs(120)) });
        let limits = read_rate_limits(
            &vars(&[
                ("GOTRUE_RATE_LIMIT_VERIFY", "60"),
                ("GOTRUE_RATE_LIMIT_ANONYMOUS_USERS", "5"),
                ("GOTRUE_RATE_LIMIT_OTP", "0"),
                ("GOTRUE_RATE_LIMIT_HEADER", "X-Real-IP"),
            ]),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(limits.verify.period, Some(Duration::from_secs(5)));
        assert_eq!(limits.anonymous, Bucket { burst: 5, period: Some(Duration::from_secs(720)) });
        assert_eq!(limits.otp, Bucket { burst: 30, period: None }, "0: the burst, then nothing (tollbooth)");
        assert_eq!(limits.header.as_deref(), Some("X-Real-IP"));
        let limits = read_rate_limits(
            &vars(&[
                ("FERROTRUE_RATE_LIMIT_PASSWORD_PER_CLIENT", "10"),
                ("FERROTRUE_RATE_LIMIT_PASSWORD_PER_ACCOUNT", "30"),
            ]),
            &mut errors,
        );
        assert_eq!(limits.password_per_client, Bucket { burst: 10, period: Some(Duration::from_secs(6)) });
        assert_eq!(limits.password_per_account, Bucket { burst: 60, period: Some(Duration::from_secs(2)) });
    }

    #[test]
    fn bad_rates_are_named() {
        let mut errors = Vec::new();
        read_rate_limits(&vars(&[("GOTRUE_RATE_LIMIT_VERIFY", "lots"), ("GOTRUE_RATE_LIMIT_OTP", "-1")]), &mut errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("GOTRUE_RATE_LIMIT_VERIFY")));
    }

    #[test]
    fn unknown_security_settings_are_refused_unless_off() {
        let errors = unimplemented_settings(&vars(&[
            ("GOTRUE_SECURITY_DB_ENCRYPTION_ENCRYPT", "true"),
            ("GOTRUE_SECURITY_UPDATE_PASSWORD_REQUIRE_CURRENT_PASSWORD", "false"),
            ("GOTRUE_RATE_LIMIT_PASSKEY", "10"),
            ("GOTRUE_SECURITY_CAPTCHA_ENABLED", "true"),
        ]));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("GOTRUE_RATE_LIMIT_PASSKEY"));
        assert!(errors[1].starts_with("GOTRUE_SECURITY_DB_ENCRYPTION_ENCRYPT"));
    }

    #[test]
    fn captcha_settings() {
        let mut errors = Vec::new();
        assert_eq!(read_captcha(&vars(&[]), &mut errors), None);
        let c = read_captcha(
            &vars(&[
                ("GOTRUE_SECURITY_CAPTCHA_ENABLED", "true"),
                ("GOTRUE_SECURITY_CAPTCHA_PROVIDER", "turnstile"),
                ("GOTRUE_SECURITY_CAPTCHA_SECRET", "s3cret"),
            ]),
            &mut errors,
        )
        .unwrap();
        assert!(errors.is_empty());
        assert_eq!(c.provider, CaptchaProvider::Turnstile);
        assert_eq!(c.verify_url, "https://challenges.cloudflare.com/turnstile/v0/siteverify");
        assert_eq!(c.timeout, Duration::from_secs(10));
        read_captcha(&vars(&[("GOTRUE_SECURITY_CAPTCHA_ENABLED", "true")]), &mut errors);
        assert!(errors[0].contains("GOTRUE_SECURITY_CAPTCHA_SECRET"), "{errors:?}");
    }
}
