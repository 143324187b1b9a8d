//! Input checks shared by flows, with GoTrue's messages.

use crate::crypto::Secret;
use crate::error::{AuthError, AuthResult};
use crate::settings::PasswordPolicy;

/// GoTrue's bcrypt limit, kept for compatibility although argon2 has none.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// Lower-cases and checks an email address (GoTrue: non-empty, ≤ 255, RFC-ish format).
pub fn email(raw: &str) -> AuthResult<String> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err(AuthError::validation("An email address is required"));
    }
    if email.len() > 255 {
        return Err(AuthError::validation("An email address is too long"));
    }
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
                && !email.chars().any(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"".contains(c))
        }
        None => false,
    };
    if !valid {
        return Err(AuthError::validation("Unable to validate email address: invalid format"));
    }
    Ok(email)
}

/// Normalises a phone number as GoTrue does: strip `+` and spaces, then E.164 digits.
pub fn phone(raw: &str) -> AuthResult<String> {
    let digits: String = raw.trim().trim_start_matches('+').chars().filter(|c| !c.is_whitespace()).collect();
    let valid =
        (2..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0');
    if !valid {
        return Err(AuthError::validation("Invalid phone number format (E.164 required)"));
    }
    Ok(digits)
}

/// The length cap every password path enforces (400 `validation_failed`).
pub fn password_length(password: &Secret) -> AuthResult<()> {
    if password.expose().len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::validation(format!("Password cannot be longer than {MAX_PASSWORD_BYTES} characters")));
    }
    Ok(())
}

/// Reasons a password fails the policy, with GoTrue's message; `None` when it passes.
pub fn password_weakness(policy: &PasswordPolicy, password: &Secret) -> Option<(String, Vec<String>)> {
    let pw = password.expose();
    let mut messages = Vec::new();
    let mut reasons = Vec::new();
    // Bytes, as Go's len(): "ééé" is 6 long.
    if pw.len() < policy.min_length {
        messages.push(format!("Password should be at least {} characters.", policy.min_length));
        reasons.push("length".to_owned());
    }
    let missing_set =
        policy.required_characters.iter().any(|set| !set.is_empty() && !pw.chars().any(|c| set.contains(c)));
    if missing_set {
        messages.push(format!(
            "Password should contain at least one character of each: {}.",
            policy.required_characters.join(", ")
        ));
        reasons.push("characters".to_owned());
    }
    (!reasons.is_empty()).then(|| (messages.join(" "), reasons))
}

/// Length cap, then strength: 422 `weak_password` with reasons.
pub fn new_password(policy: &PasswordPolicy, password: &Secret) -> AuthResult<()> {
    password_length(password)?;
    match password_weakness(policy, password) {
        Some((message, reasons)) => Err(AuthError::weak_password(message, reasons)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in ["", "ann", "ann@", "@example.com", "ann@example", "a b@example.com", "a@b@example.com", "ann@.com"]
        {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones() {
        assert_eq!(phone("+1 555 555 0100").unwrap(), "15555550100");
        for bad in ["", "+", "0123456", "12a45", "1234567890123456"] {
            assert!(phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_policy() {
        let policy = PasswordPolicy {
            min_length: 8,
            required_characters: vec!["abcdefghijklmnopqrstuvwxyz".into(), "0123456789".into()],
        };
        let (msg, reasons) = password_weakness(&policy, &Secret("abc".into())).unwrap();
        assert_eq!(reasons, vec!["length", "characters"]);
        assert!(msg.starts_with("Password should be at least 8 characters."));
        assert!(password_weakness(&policy, &Secret("abcdefg1".into())).is_none());
        assert!(password_length(&Secret("x".repeat(73))).is_err());
    }
}
