//! `GOTRUE_HOOK_<NAME>_ENABLED`, `_URI`, `_SECRETS` → [`HookSettings`] (SPEC §11) for
//! `SEND_EMAIL`, `CUSTOM_ACCESS_TOKEN`, `PASSWORD_VERIFICATION_ATTEMPT`,
//! `MFA_VERIFICATION_ATTEMPT`, `BEFORE_USER_CREATED`, `AFTER_USER_CREATED`. (`SEND_SMS` is read
//! with the SMS settings in `config.rs`.)
//!
//! An enabled hook needs an `https://` URI (`http://` only to localhost / 127.0.0.1 / ::1 /
//! host.docker.internal) and at least one secret (`v1,whsec_<base64>` or
//! `v1a,whpk_<base64>:whsk_<base64>`, `|`-separated). `pg-functions://` is refused at start-up:
//! there is no Postgres. Errors name the variable, never the secret.

use crate::config::parse_go_bool;
use ferrotrue_actors::hooks::{parse_secrets, validate_uri, HookEndpoint, HookName, HookSettings};
use std::collections::HashMap;
use std::time::Duration;

fn raw<'a>(vars: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Reads one hook; `None` when it is not enabled.
fn endpoint(vars: &HashMap<String, String>, name: HookName, errors: &mut Vec<String>) -> Option<HookEndpoint> {
    let prefix = format!("GOTRUE_HOOK_{}", name.env_name());
    let enabled_var = format!("{prefix}_ENABLED");
    let enabled = match raw(vars, &enabled_var) {
        None => false,
        Some(v) => parse_go_bool(v).unwrap_or_else(|| {
            errors.push(format!("{enabled_var}={v:?} is not a boolean (true/false)"));
            false
        }),
    };
    if !enabled {
        return None;
    }
    let uri_var = format!("{prefix}_URI");
    let uri = raw(vars, &uri_var).unwrap_or_default().to_owned();
    if uri.is_empty() {
        errors.push(format!("{uri_var} is required when {enabled_var} is true"));
        return None;
    }
    if let Err(e) = validate_uri(&uri) {
        errors.push(format!("{uri_var}={uri:?}: {e}"));
        return None;
    }
    let secrets_var = format!("{prefix}_SECRETS");
    match parse_secrets(raw(vars, &secrets_var).unwrap_or_default()) {
        Ok(secrets) if secrets.is_empty() => {
            errors.push(format!("{secrets_var} is required (v1,whsec_<base64> or v1a,whpk_<base64>:whsk_<base64>)"));
            None
        }
        Ok(secrets) => Some(HookEndpoint { uri, secrets }),
        Err(e) => {
            errors.push(format!("{secrets_var}: {e}"));
            None
        }
    }
}

/// Reads every hook but send-SMS. `max_request_duration` bounds one invocation, retries
/// included (1 s below it, at least 1 s).
pub fn read(vars: &HashMap<String, String>, max_request_duration: Duration) -> Result<HookSettings, Vec<String>> {
    let mut errors = Vec::new();
    let mut s = HookSettings {
        total_budget: max_request_duration.saturating_sub(Duration::from_secs(1)).max(Duration::from_secs(1)),
        ..HookSettings::default()
    };
    s.send_email = endpoint(vars, HookName::SendEmail, &mut errors);
    s.custom_access_token = endpoint(vars, HookName::CustomAccessToken, &mut errors);
    s.mfa_verification_attempt = endpoint(vars, HookName::MfaVerificationAttempt, &mut errors);
    s.password_verification_attempt = endpoint(vars, HookName::PasswordVerificationAttempt, &mut errors);
    s.before_user_created = endpoint(vars, HookName::BeforeUserCreated, &mut errors);
    s.after_user_created = endpoint(vars, HookName::AfterUserCreated, &mut errors);
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
    fn reads_enabled_hooks_and_bounds_the_budget() {
        let s = read(
            &vars(&[
                ("GOTRUE_HOOK_CUSTOM_ACCESS_TOKEN_ENABLED", "true"),
                ("GOTRUE_HOOK_CUSTOM_ACCESS_TOKEN_URI", "https://hooks.example.com/claims"),
                ("GOTRUE_HOOK_CUSTOM_ACCESS_TOKEN_SECRETS", "v1,whsec_AAAA|v1,whsec_AQID"),
                ("GOTRUE_HOOK_MFA_VERIFICATION_ATTEMPT_ENABLED", "true"),
                ("GOTRUE_HOOK_MFA_VERIFICATION_ATTEMPT_URI", "http://localhost:9000/mfa"),
                ("GOTRUE_HOOK_MFA_VERIFICATION_ATTEMPT_SECRETS", "v1,whsec_AAAA"),
                ("GOTRUE_HOOK_SEND_EMAIL_ENABLED", "false"),
                ("GOTRUE_HOOK_SEND_EMAIL_URI", "pg-functions://postgres/public/x"),
            ]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(s.custom_access_token.unwrap().secrets.len(), 2);
        assert!(s.mfa_verification_attempt.is_some());
        assert!(s.send_email.is_none());
        assert_eq!(s.total_budget, Duration::from_secs(9));
    }

    #[test]
    fn refuses_pg_functions_plain_http_and_bad_secrets_without_echoing_them() {
        let err = read(
            &vars(&[
                ("GOTRUE_HOOK_BEFORE_USER_CREATED_ENABLED", "true"),
                ("GOTRUE_HOOK_BEFORE_USER_CREATED_URI", "pg-functions://postgres/public/before"),
                ("GOTRUE_HOOK_SEND_EMAIL_ENABLED", "true"),
                ("GOTRUE_HOOK_SEND_EMAIL_URI", "http://hooks.example.com/mail"),
                ("GOTRUE_HOOK_SEND_EMAIL_SECRETS", "v1,whsec_AAAA"),
                ("GOTRUE_HOOK_AFTER_USER_CREATED_ENABLED", "true"),
                ("GOTRUE_HOOK_AFTER_USER_CREATED_URI", "https://hooks.example.com/after"),
                ("GOTRUE_HOOK_AFTER_USER_CREATED_SECRETS", "v1,whsec_!!secretish"),
                ("GOTRUE_HOOK_PASSWORD_VERIFICATION_ATTEMPT_ENABLED", "true"),
                ("GOTRUE_HOOK_PASSWORD_VERIFICATION_ATTEMPT_URI", "https://hooks.example.com/pw"),
            ]),
            Duration::from_secs(10),
        )
        .unwrap_err()
        .join("\n");
        assert!(err.contains("GOTRUE_HOOK_BEFORE_USER_CREATED_URI") && err.contains("Postgres"), "{err}");
        assert!(err.contains("GOTRUE_HOOK_SEND_EMAIL_URI"), "{err}");
        assert!(err.contains("GOTRUE_HOOK_AFTER_USER_CREATED_SECRETS") && !err.contains("secretish"), "{err}");
        assert!(err.contains("GOTRUE_HOOK_PASSWORD_VERIFICATION_ATTEMPT_SECRETS is required"), "{err}");
    }
}
