//! `GOTRUE_EXTERNAL_<PROVIDER>_*` → [`OAuthSettings`], plus the switches of the external
//! sign-in flows (`GOTRUE_SECURITY_MANUAL_LINKING_ENABLED`,
//! `GOTRUE_MAILER_ALLOW_UNVERIFIED_EMAIL_SIGN_INS`, `GOTRUE_EXTERNAL_REDIRECT_URL`,
//! `GOTRUE_EXTERNAL_IOS_BUNDLE_ID`, `GOTRUE_INTERNAL_HTTP_TIMEOUT`).
//!
//! Per provider: `_ENABLED`, `_CLIENT_ID` (comma list), `_SECRET`, `_REDIRECT_URI` (default
//! `<API_EXTERNAL_URL>/callback`), `_URL` (base / issuer / realm), `_API_URL` (GitHub API),
//! `_SKIP_NONCE_CHECK`, `_EMAIL_OPTIONAL`.

use crate::config::{parse_go_bool, parse_go_duration};
use ferrotrue_actors::crypto::Secret;
use ferrotrue_actors::oauth::{OAuthSettings, ProviderConfig, ProviderKind};
use std::collections::HashMap;
use std::time::Duration;

struct Vars<'a> {
    vars: &'a HashMap<String, String>,
    errors: Vec<String>,
}

impl<'a> Vars<'a> {
    fn raw(&self, name: &str) -> Option<&'a str> {
        let vars: &'a HashMap<String, String> = self.vars;
        vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
    fn string(&self, name: &str) -> String {
        self.raw(name).unwrap_or_default().to_owned()
    }
    fn bool(&mut self, name: &str) -> bool {
        match self.raw(name) {
            None => false,
            Some(v) => parse_go_bool(v).unwrap_or_else(|| {
                self.errors.push(format!("{name}={v:?} is not a boolean (true/false)"));
                false
            }),
        }
    }
    fn duration(&mut self, name: &str, default: Duration) -> Duration {
        match self.raw(name) {
            None => default,
            Some(v) => parse_go_duration(v).filter(|d| !d.is_zero()).unwrap_or_else(|| {
                self.errors.push(format!("{name}={v:?} is not a duration like 10s or 1m"));
                default
            }),
        }
    }
    fn url(&mut self, name: &str) -> String {
        let v = self.string(name);
        if !v.is_empty() && !url::Url::parse(&v).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            self.errors.push(format!("{name}={v:?} is not an http(s) URL"));
        }
        v
    }
}

/// Reads the external-provider variables; errors are one line per bad variable.
pub fn read(vars: &HashMap<String, String>) -> Result<OAuthSettings, Vec<String>> {
    let mut v = Vars { vars, errors: Vec::new() };
    let mut s = OAuthSettings::default();
    for kind in ProviderKind::ALL {
        let p = |suffix: &str| format!("GOTRUE_EXTERNAL_{}_{suffix}", kind.env_prefix());
        let cfg = ProviderConfig {
            enabled: v.bool(&p("ENABLED")),
            client_ids: v
                .string(&p("CLIENT_ID"))
                .split(',')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect(),
            secret: Secret(v.string(&p("SECRET"))),
            redirect_uri: v.url(&p("REDIRECT_URI")),
            url: v.url(&p("URL")),
            api_url: v.url(&p("API_URL")),
            skip_nonce_check: v.bool(&p("SKIP_NONCE_CHECK")),
            email_optional: v.bool(&p("EMAIL_OPTIONAL")),
        };
        if cfg.enabled {
            if cfg.client_ids.is_empty() {
                v.errors.push(format!("{} is required when {} is true", p("CLIENT_ID"), p("ENABLED")));
            }
            if matches!(kind, ProviderKind::Keycloak | ProviderKind::Oidc) && cfg.url.is_empty() {
                let what = if kind == ProviderKind::Keycloak { "the realm URL" } else { "the issuer URL" };
                v.errors.push(format!("{} ({what}) is required when {} is true", p("URL"), p("ENABLED")));
            }
        }
        if cfg.enabled || !cfg.client_ids.is_empty() {
            s.providers.insert(kind, cfg);
        }
    }
    s.manual_linking_enabled = v.bool("GOTRUE_SECURITY_MANUAL_LINKING_ENABLED");
    s.allow_unverified_email_sign_ins = v.bool("GOTRUE_MAILER_ALLOW_UNVERIFIED_EMAIL_SIGN_INS");
    s.redirect_url = v.url("GOTRUE_EXTERNAL_REDIRECT_URL");
    s.ios_bundle_id = v.string("GOTRUE_EXTERNAL_IOS_BUNDLE_ID");
    // Provider traffic must end before the request does, so a slow provider still ends in a
    // redirect to the app rather than a 504.
    let request = v.duration("GOTRUE_API_MAX_REQUEST_DURATION", Duration::from_secs(10));
    s.provider_budget = request.saturating_sub(Duration::from_secs(1)).max(Duration::from_secs(1));
    s.http_timeout = v.duration("GOTRUE_INTERNAL_HTTP_TIMEOUT", Duration::from_secs(10)).min(s.provider_budget);
    if v.errors.is_empty() {
        Ok(s)
    } else {
        Err(v.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::vars_for_tests as vars;

    #[test]
    fn providers_are_read() {
        let s = read(&vars(&[
            ("GOTRUE_EXTERNAL_GITHUB_ENABLED", "true"),
            ("GOTRUE_EXTERNAL_GITHUB_CLIENT_ID", "gh-id"),
            ("GOTRUE_EXTERNAL_GITHUB_SECRET", "gh-secret"),
            ("GOTRUE_EXTERNAL_GITHUB_URL", "https://github.example.com"),
            ("GOTRUE_EXTERNAL_GOOGLE_ENABLED", "true"),
            ("GOTRUE_EXTERNAL_GOOGLE_CLIENT_ID", "web-id, ios-id"),
            ("GOTRUE_EXTERNAL_KEYCLOAK_CLIENT_ID", "kc"),
            ("GOTRUE_SECURITY_MANUAL_LINKING_ENABLED", "true"),
            ("GOTRUE_INTERNAL_HTTP_TIMEOUT", "3s"),
        ]))
        .unwrap();
        let gh = s.enabled(ProviderKind::GitHub).unwrap();
        assert_eq!(gh.client_id(), "gh-id");
        assert_eq!(gh.secret.expose(), "gh-secret");
        assert_eq!(gh.url, "https://github.example.com");
        assert_eq!(s.enabled(ProviderKind::Google).unwrap().client_ids, vec!["web-id", "ios-id"]);
        assert!(!s.is_enabled(ProviderKind::Keycloak), "configured but not enabled");
        assert!(!s.is_enabled(ProviderKind::Apple));
        assert!(s.manual_linking_enabled);
        assert_eq!(s.http_timeout, Duration::from_secs(3));
        assert_eq!(s.provider_budget, Duration::from_secs(9));
    }

    #[test]
    fn every_bad_variable_is_named() {
        let errors = read(&vars(&[
            ("GOTRUE_EXTERNAL_GITHUB_ENABLED", "yes please"),
            ("GOTRUE_EXTERNAL_OIDC_ENABLED", "true"),
            ("GOTRUE_EXTERNAL_KEYCLOAK_ENABLED", "true"),
            ("GOTRUE_EXTERNAL_KEYCLOAK_CLIENT_ID", "kc"),
            ("GOTRUE_EXTERNAL_GITLAB_URL", "gitlab.example.com"),
        ]))
        .unwrap_err();
        let all = errors.join("\n");
        assert!(all.contains("GOTRUE_EXTERNAL_GITHUB_ENABLED="), "{all}");
        assert!(all.contains("GOTRUE_EXTERNAL_OIDC_CLIENT_ID is required"), "{all}");
        assert!(all.contains("GOTRUE_EXTERNAL_OIDC_URL (the issuer URL) is required"), "{all}");
        assert!(all.contains("GOTRUE_EXTERNAL_KEYCLOAK_URL (the realm URL) is required"), "{all}");
        assert!(all.contains("GOTRUE_EXTERNAL_GITLAB_URL="), "{all}");
        assert_eq!(errors.len(), 5, "{all}");
    }
}
