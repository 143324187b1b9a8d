//! `GOTRUE_MFA_*` → [`MfaSettings`] (SPEC §1.17, §8.2): TOTP, phone and WebAuthn enroll/verify
//! switches, issuer, phone code length, template and spacing, the WebAuthn relying party,
//! challenge and unverified-factor lifetimes, enrollment limits.

use crate::config::{parse_go_bool, parse_go_duration};
use ferrotrue_actors::settings::{MfaSettings, WebAuthnSettings};
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

/// `GOTRUE_WEBAUTHN_RP_*`. Required (and checked) when a WebAuthn switch is on: GoTrue only warns
/// and then fails every ceremony with a 500; we refuse to start instead. Every origin must be one
/// a browser would report (`https://host[:port]`, or `http://localhost[:port]`, no path) on the RP
/// ID's domain, or no browser could ever produce an assertion we accept.
fn read_relying_party(vars: &HashMap<String, String>, w: &mut WebAuthnSettings, errors: &mut Vec<String>) {
    w.rp_id = raw(vars, "GOTRUE_WEBAUTHN_RP_ID").unwrap_or_default().to_ascii_lowercase();
    w.rp_display_name = raw(vars, "GOTRUE_WEBAUTHN_RP_DISPLAY_NAME").unwrap_or_default().to_owned();
    let origins = raw(vars, "GOTRUE_WEBAUTHN_RP_ORIGINS").unwrap_or_default();
    for o in origins.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let name = "GOTRUE_WEBAUTHN_RP_ORIGINS";
        let Ok(url) = url::Url::parse(o) else {
            errors.push(format!("{name}: {o:?} is not a URL"));
            continue;
        };
        let Some(url::Host::Domain(host)) = url.host() else {
            errors.push(format!("{name}: {o:?} has no domain name (WebAuthn refuses IP addresses)"));
            continue;
        };
        let secure = url.scheme() == "https" || (url.scheme() == "http" && host == "localhost");
        if !secure {
            errors.push(format!("{name}: {o:?} must be https (http only for localhost)"));
        } else if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            errors.push(format!("{name}: {o:?} must be an origin (scheme://host[:port]), without a path"));
        } else if !w.rp_id.is_empty() && host != w.rp_id && !host.ends_with(&format!(".{}", w.rp_id)) {
            errors.push(format!("{name}: {o:?} is not on GOTRUE_WEBAUTHN_RP_ID={:?}", w.rp_id));
        } else {
            w.rp_origins.push(url);
        }
    }
    if w.enroll_enabled || w.verify_enabled {
        if w.rp_id.is_empty() {
            errors.push("GOTRUE_WEBAUTHN_RP_ID is required when WebAuthn factors are enabled".into());
        } else if w.rp_id.parse::<std::net::IpAddr>().is_ok() || w.rp_id.starts_with('.') || w.rp_id.ends_with('.') {
            errors.push(format!("GOTRUE_WEBAUTHN_RP_ID={:?} must be a domain name", w.rp_id));
        }
        if origins.trim().is_empty() {
            errors.push("GOTRUE_WEBAUTHN_RP_ORIGINS is required when WebAuthn factors are enabled".into());
        }
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
    read_phone(vars, &mut s, &mut errors);
    s.web_authn.enroll_enabled = flag("GOTRUE_MFA_WEB_AUTHN_ENROLL_ENABLED", false, &mut errors);
    s.web_authn.verify_enabled = flag("GOTRUE_MFA_WEB_AUTHN_VERIFY_ENABLED", false, &mut errors);
    read_relying_party(vars, &mut s.web_authn, &mut errors);
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

/// `GOTRUE_MFA_PHONE_*`. As GoTrue: a code length outside 6..=10 means 6, a zero spacing means
/// 60 s; the template is checked here so that a bad one stops the start, not the first SMS.
fn read_phone(vars: &HashMap<String, String>, s: &mut MfaSettings, errors: &mut Vec<String>) {
    let flag = |name: &str, errors: &mut Vec<String>| match raw(vars, name) {
        None => false,
        Some(v) => parse_go_bool(v).unwrap_or_else(|| {
            errors.push(format!("{name}={v:?} is not a boolean (true/false)"));
            false
        }),
    };
    s.phone_enroll_enabled = flag("GOTRUE_MFA_PHONE_ENROLL_ENABLED", errors);
    s.phone_verify_enabled = flag("GOTRUE_MFA_PHONE_VERIFY_ENABLED", errors);
    if let Some(v) = raw(vars, "GOTRUE_MFA_PHONE_OTP_LENGTH") {
        match v.parse::<i64>() {
            Ok(n) => s.phone_otp_length = if (6..=10).contains(&n) { n as usize } else { 6 },
            Err(_) => errors.push(format!("GOTRUE_MFA_PHONE_OTP_LENGTH={v:?} is not a whole number")),
        }
    }
    if let Some(v) = raw(vars, "GOTRUE_MFA_PHONE_MAX_FREQUENCY") {
        match parse_go_duration(v) {
            Some(d) if d.is_zero() => s.phone_max_frequency = Duration::from_secs(60),
            Some(d) => s.phone_max_frequency = d,
            None => errors.push(format!("GOTRUE_MFA_PHONE_MAX_FREQUENCY={v:?} is not a duration (60s, 1m)")),
        }
    }
    if let Some(v) = vars.get("GOTRUE_MFA_PHONE_TEMPLATE").filter(|v| !v.trim().is_empty()) {
        s.phone_template = v.clone();
    }
    if let Err(e) = ferrotrue_actors::mailer::templates::go_to_jinja(&s.phone_template) {
        errors.push(format!("GOTRUE_MFA_PHONE_TEMPLATE: {e}"));
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
    fn phone_factor_settings() {
        let d = read(&vars(&[])).unwrap();
        assert!(!d.phone_enroll_enabled && !d.phone_verify_enabled, "phone MFA is opt-in");
        assert_eq!((d.phone_otp_length, d.phone_max_frequency), (6, Duration::from_secs(60)));
        assert_eq!(d.phone_template, "Your code is {{ .Code }}");
        let s = read(&vars(&[
            ("GOTRUE_MFA_PHONE_ENROLL_ENABLED", "true"),
            ("GOTRUE_MFA_PHONE_VERIFY_ENABLED", "true"),
            ("GOTRUE_MFA_PHONE_OTP_LENGTH", "8"),
            ("GOTRUE_MFA_PHONE_TEMPLATE", "Acme code: {{ .Code }}"),
            ("GOTRUE_MFA_PHONE_MAX_FREQUENCY", "2m"),
        ]))
        .unwrap();
        assert!(s.phone_enroll_enabled && s.phone_verify_enabled);
        assert_eq!((s.phone_otp_length, s.phone_max_frequency), (8, Duration::from_secs(120)));
        assert_eq!(s.phone_template, "Acme code: {{ .Code }}");
        // GoTrue's fallbacks: a length outside 6..=10 is 6, a zero spacing is 60 s.
        let s = read(&vars(&[("GOTRUE_MFA_PHONE_OTP_LENGTH", "4"), ("GOTRUE_MFA_PHONE_MAX_FREQUENCY", "0s")])).unwrap();
        assert_eq!((s.phone_otp_length, s.phone_max_frequency), (6, Duration::from_secs(60)));
        let err = read(&vars(&[
            ("GOTRUE_MFA_PHONE_OTP_LENGTH", "six"),
            ("GOTRUE_MFA_PHONE_MAX_FREQUENCY", "soon"),
            ("GOTRUE_MFA_PHONE_TEMPLATE", "{{ range .X }}{{ end }}"),
            ("GOTRUE_MFA_PHONE_VERIFY_ENABLED", "yes please"),
        ]))
        .unwrap_err()
        .join("\n");
        for name in [
            "GOTRUE_MFA_PHONE_OTP_LENGTH",
            "GOTRUE_MFA_PHONE_MAX_FREQUENCY",
            "GOTRUE_MFA_PHONE_TEMPLATE",
            "GOTRUE_MFA_PHONE_VERIFY_ENABLED",
        ] {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn refuses_bad_values() {
        let err = read(&vars(&[
            ("GOTRUE_MFA_WEB_AUTHN_ENROLL_ENABLED", "perhaps"),
            ("GOTRUE_MFA_TOTP_VERIFY_ENABLED", "maybe"),
            ("GOTRUE_MFA_MAX_VERIFIED_FACTORS", "0"),
            ("GOTRUE_MFA_TOTP_ISSUER", "a:b"),
        ]))
        .unwrap_err()
        .join("\n");
        for name in [
            "GOTRUE_MFA_WEB_AUTHN_ENROLL_ENABLED",
            "GOTRUE_MFA_TOTP_VERIFY_ENABLED",
            "GOTRUE_MFA_MAX_VERIFIED_FACTORS",
            "GOTRUE_MFA_TOTP_ISSUER",
        ] {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn web_authn_switches_need_a_relying_party_whose_origins_are_on_its_domain() {
        let d = read(&vars(&[])).unwrap();
        assert!(!d.web_authn.enroll_enabled && !d.web_authn.verify_enabled);
        let s = read(&vars(&[
            ("GOTRUE_MFA_WEB_AUTHN_ENROLL_ENABLED", "true"),
            ("GOTRUE_MFA_WEB_AUTHN_VERIFY_ENABLED", "true"),
            ("GOTRUE_WEBAUTHN_RP_ID", "Example.com"),
            ("GOTRUE_WEBAUTHN_RP_DISPLAY_NAME", "Example"),
            ("GOTRUE_WEBAUTHN_RP_ORIGINS", "https://example.com, https://app.example.com:8443"),
        ]))
        .unwrap();
        assert!(s.web_authn.enroll_enabled && s.web_authn.verify_enabled);
        assert_eq!((s.web_authn.rp_id.as_str(), s.web_authn.rp_display_name.as_str()), ("example.com", "Example"));
        let origins: Vec<String> = s.web_authn.rp_origins.iter().map(|u| u.origin().ascii_serialization()).collect();
        assert_eq!(origins, ["https://example.com", "https://app.example.com:8443"]);
        // Enabled without a relying party: refused.
        let err = read(&vars(&[("GOTRUE_MFA_WEB_AUTHN_VERIFY_ENABLED", "true")])).unwrap_err().join("\n");
        assert!(err.contains("GOTRUE_WEBAUTHN_RP_ID") && err.contains("GOTRUE_WEBAUTHN_RP_ORIGINS"), "{err}");
        // Origins a browser on the RP's domain could never report: refused, one message each.
        let err = read(&vars(&[
            ("GOTRUE_MFA_WEB_AUTHN_ENROLL_ENABLED", "true"),
            ("GOTRUE_WEBAUTHN_RP_ID", "example.com"),
            (
                "GOTRUE_WEBAUTHN_RP_ORIGINS",
                "http://example.com,https://evil.com,https://notexample.com,https://example.com/app,https://10.0.0.1,nope",
            ),
        ]))
        .unwrap_err();
        assert_eq!(err.len(), 6, "{err:?}");
        // http is fine on localhost.
        let s = read(&vars(&[
            ("GOTRUE_MFA_WEB_AUTHN_ENROLL_ENABLED", "true"),
            ("GOTRUE_WEBAUTHN_RP_ID", "localhost"),
            ("GOTRUE_WEBAUTHN_RP_ORIGINS", "http://localhost:3000"),
        ]))
        .unwrap();
        assert_eq!(s.web_authn.rp_origins.len(), 1);
    }
}
