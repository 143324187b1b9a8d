//! `GOTRUE_MFA_*` → [`MfaSettings`] (SPEC §1.17, §8.2): TOTP enroll/verify switches, issuer,
//! challenge and unverified-factor lifetimes, enrollment limits. Phone and WebAuthn factors are
//! not implemented: enabling them is refused at start-up rather than silently ignored.

use crate::config::{parse_go_bool, parse_go_duration};
use ferrotrue_actors::settings::MfaSettings;
use std::collections::HashMap;
use std::time::Duration;

fn raw<'a>(vars: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// GoTrue reads `GOTRUE_MFA_CHALLENGE_EXPIRY_DURATION` as float seconds and
/// `GOTRUE_MFA_FACTOR_EXPIRY_DURATION` as a Go duration; both forms are accepted for both.
fn lifetime(v: &str) -> Option<Duration> {
    match v.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
        Ok(_) => None,
        Err(_) => parse_go_duration(v).filter(|d| !d.is_zero()),
    }
}

/// Reads the MFA settings; `Err` lists every bad variable.
pub fn read(vars: &HashMap<String, String>) -> Result<MfaSettings, Vec<String>> {
    let mut s = MfaSettings::default();
    let mut errors = Vec::new();
    let flag = |name: &str, default: bool, errors: &mut Vec<String>| match raw(vars, name) {
        None => default,
        Some(v) => parse_go_bool(v).unwrap_or_else(|| {
            errors.push(format!("{name}={v:?} is not a boolean (true/false)"));
            default
        }),
    };
    s.totp_enroll_enabled = flag("GOTRUE_MFA_TOTP_ENROLL_ENABLED", true, &mut errors);
    s.totp_verify_enabled = flag("GOTRUE_MFA_TOTP_VERIFY_ENABLED", true, &mut errors);
    for name in [
        "GOTRUE_MFA_PHONE_ENROLL_ENABLED",
        "GOTRUE_MFA_PHONE_VERIFY_ENABLED",
        "GOTRUE_MFA_WEB_AUTHN_ENROLL_ENABLED",
        "GOTRUE_MFA_WEB_AUTHN_VERIFY_ENABLED",
    ] {
        if flag(name, false, &mut errors) {
            errors.push(format!("{name}=true is not supported by ferrotrue (only TOTP factors are)"));
        }
    }
    if let Some(v) = raw(vars, "GOTRUE_MFA_TOTP_ISSUER") {
        if v.contains(':') {
            errors.push(format!("GOTRUE_MFA_TOTP_ISSUER={v:?} must not contain ':'"));
        }
        s.totp_issuer = v.to_owned();
    }
    for (name, slot) in [
        ("GOTRUE_MFA_CHALLENGE_EXPIRY_DURATION", &mut s.challenge_expiry),
        ("GOTRUE_MFA_FACTOR_EXPIRY_DURATION", &mut s.factor_expiry),
    ] {
        if let Some(v) = raw(vars, name) {
            match lifetime(v) {
                Some(d) => *slot = d,
                None => errors.push(format!("{name}={v:?} is not a positive duration (300, 300s, 5m)")),
            }
        }
    }
    for (name, slot) in [
        ("GOTRUE_MFA_MAX_ENROLLED_FACTORS", &mut s.max_enrolled_factors),
        ("GOTRUE_MFA_MAX_VERIFIED_FACTORS", &mut s.max_verified_factors),
    ] {
        if let Some(v) = raw(vars, name) {
            // GoTrue reads them as floats; a bound above 100 would let one user grow without limit.
            match v.parse::<f64>() {
                Ok(n) if (1.0..=100.0).contains(&n) => *slot = n as usize,
                _ => errors.push(format!("{name}={v:?} is not a number between 1 and 100")),
            }
        }
    }
    if errors.is_empty() {
        Ok(s)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::vars_for_tests as vars;

    #[test]
    fn defaults_and_overrides() {
        let d = read(&vars(&[])).unwrap();
        assert!(d.totp_enroll_enabled && d.totp_verify_enabled);
        assert_eq!((d.challenge_expiry, d.factor_expiry), (Duration::from_secs(300), Duration::from_secs(300)));
        assert_eq!((d.max_enrolled_factors, d.max_verified_factors), (10, 10));
        let s = read(&vars(&[
            ("GOTRUE_MFA_TOTP_ENROLL_ENABLED", "false"),
            ("GOTRUE_MFA_TOTP_ISSUER", "Acme"),
            ("GOTRUE_MFA_CHALLENGE_EXPIRY_DURATION", "60"),
            ("GOTRUE_MFA_FACTOR_EXPIRY_DURATION", "10m"),
            ("GOTRUE_MFA_MAX_ENROLLED_FACTORS", "3"),
        ]))
        .unwrap();
        assert!(!s.totp_enroll_enabled);
        assert_eq!(s.totp_issuer, "Acme");
        assert_eq!((s.challenge_expiry, s.factor_expiry), (Duration::from_secs(60), Duration::from_secs(600)));
        assert_eq!(s.max_enrolled_factors, 3);
    }

    #[test]
    fn refuses_bad_values_and_unimplemented_factor_types() {
        let err = read(&vars(&[
            ("GOTRUE_MFA_PHONE_ENROLL_ENABLED", "true"),
            ("GOTRUE_MFA_TOTP_VERIFY_ENABLED", "maybe"),
            ("GOTRUE_MFA_MAX_VERIFIED_FACTORS", "0"),
            ("GOTRUE_MFA_TOTP_ISSUER", "a:b"),
        ]))
        .unwrap_err()
        .join("\n");
        for name in [
            "GOTRUE_MFA_PHONE_ENROLL_ENABLED",
            "GOTRUE_MFA_TOTP_VERIFY_ENABLED",
            "GOTRUE_MFA_MAX_VERIFIED_FACTORS",
            "GOTRUE_MFA_TOTP_ISSUER",
        ] {
            assert!(err.contains(name), "{err}");
        }
    }
}
