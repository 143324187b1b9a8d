//! The effective configuration as an operator reads it (`ferrotrue config check`): one line per
//! setting, secrets masked (only whether they are set and their length), and the warnings the
//! server would log at start-up.

use crate::config::{Config, SecretSource};
use crate::config_security::Bucket;
use ferrotrue_actors::crypto::Secret;
use std::fmt::Write;
use std::time::Duration;

/// "set (N bytes)" or "not set"; never the value.
fn masked(secret: &Secret) -> String {
    match secret.expose().len() {
        0 => "not set".into(),
        n => format!("set ({n} bytes, masked)"),
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn bucket(b: &Bucket) -> String {
    match b.period {
        Some(p) => format!("burst {}, then one per {}", b.burst, secs(p)),
        None => format!("burst {}, never refilled", b.burst),
    }
}

fn on(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// The report, one `name = value` line per setting, grouped.
pub fn render(c: &Config) -> String {
    let s = &c.settings;
    let mut out = String::new();
    let mut line = |name: &str, value: String| {
        let _ = writeln!(out, "{name:<46} = {value}");
    };
    line("listen", format!("{}:{}", c.host, c.port));
    line("API_EXTERNAL_URL", c.api_external_url.clone());
    line("GOTRUE_SITE_URL", c.site_url.clone());
    line("GOTRUE_URI_ALLOW_LIST", format!("{:?}", c.uri_allow_list));
    match &c.database {
        Some(pg) => {
            let target = ferrotrue_actors::pg::ConnectOptions::parse(&pg.url).map(|o| o.describe()).unwrap_or_default();
            line("storage", "Postgres (FERROTRUE_DATA_DIR unused)".into());
            line("GOTRUE_DB_DATABASE_URL", format!("{target} (password not shown)"));
            line("GOTRUE_DB_NAMESPACE", pg.namespace.clone());
            line("GOTRUE_DB_MAX_POOL_SIZE", pg.max_pool_size.to_string());
        }
        None => {
            line("storage", "sled (one node)".into());
            line("FERROTRUE_DATA_DIR", c.data_dir.display().to_string());
            line("FERROTRUE_DURABILITY", format!("{:?}", c.durability).to_lowercase());
            line("FERROTRUE_CACHE_MB", (c.cache_bytes / (1024 * 1024)).to_string());
        }
    }
    let secret_source = match c.secret_source {
        SecretSource::Environment => "from GOTRUE_JWT_SECRET",
        SecretSource::DataDir => "from the data directory (generated earlier)",
        SecretSource::Generated => "generated now",
        SecretSource::Explicit => "explicit",
        SecretSource::WouldGenerate => "not set: the server would generate one in the data directory",
    };
    line("GOTRUE_JWT_SECRET", format!("{} ({secret_source})", masked(&s.jwt.secret)));
    let keys: Vec<String> =
        s.jwt.keys.iter().map(|k| format!("{} {:?}{}", k.kid, k.alg, if k.sign { " (signs)" } else { "" })).collect();
    line("GOTRUE_JWT_KEYS", if keys.is_empty() { "none (HS256 with the secret)".into() } else { keys.join(", ") });
    line(
        "GOTRUE_JWT_VALID_METHODS",
        if s.jwt.valid_methods.is_empty() { "default (HS256)".into() } else { format!("{:?}", s.jwt.valid_methods) },
    );
    line("GOTRUE_JWT_EXP", secs(s.jwt.exp));
    line("GOTRUE_JWT_AUD", s.jwt.aud.clone());
    line("GOTRUE_JWT_ADMIN_ROLES", s.jwt.admin_roles.join(","));
    line("GOTRUE_DISABLE_SIGNUP", s.signup.disable_signup.to_string());
    line("GOTRUE_EXTERNAL_EMAIL_ENABLED", s.signup.email_enabled.to_string());
    line("GOTRUE_EXTERNAL_PHONE_ENABLED", s.signup.phone_enabled.to_string());
    line("GOTRUE_EXTERNAL_ANONYMOUS_USERS_ENABLED", s.signup.anonymous_enabled.to_string());
    line("GOTRUE_MAILER_AUTOCONFIRM", s.signup.mailer_autoconfirm.to_string());
    line("GOTRUE_SMS_AUTOCONFIRM", s.signup.sms_autoconfirm.to_string());
    line(
        "GOTRUE_SMTP_HOST",
        if s.smtp.host.is_empty() {
            "not set (mails are written to the log)".into()
        } else {
            format!("{}:{}", s.smtp.host, s.smtp.port)
        },
    );
    line("GOTRUE_SMTP_USER", if s.smtp.user.is_empty() { "not set".into() } else { s.smtp.user.clone() });
    line("GOTRUE_SMTP_PASS", masked(&s.smtp.pass));
    line("GOTRUE_SMTP_MAX_FREQUENCY", secs(s.smtp.max_frequency));
    line(
        "GOTRUE_RATE_LIMIT_EMAIL_SENT",
        s.mail.email_budget.map_or("off".into(), |(n, window)| format!("{n} per {}, global", secs(window))),
    );
    let l = &c.limits;
    line(
        "rate limits keyed by",
        match (&l.header, l.sb_forwarded_for) {
            (_, true) => "Sb-Forwarded-For, else the peer address".into(),
            (Some(h), false) => format!("{h}, else the peer address"),
            (None, false) => "the peer address".into(),
        },
    );
    line("GOTRUE_RATE_LIMIT_OTP", bucket(&l.otp));
    line("GOTRUE_RATE_LIMIT_VERIFY", bucket(&l.verify));
    line("GOTRUE_RATE_LIMIT_TOKEN_REFRESH", bucket(&l.token));
    line("GOTRUE_RATE_LIMIT_ANONYMOUS_USERS", bucket(&l.anonymous));
    line("FERROTRUE_RATE_LIMIT_PASSWORD_PER_CLIENT", bucket(&l.password_per_client));
    line("FERROTRUE_RATE_LIMIT_PASSWORD_PER_ACCOUNT", bucket(&l.password_per_account));
    line("FERROTRUE_RATE_LIMIT_CODE_PER_TARGET", bucket(&l.code_per_target));
    line(
        "GOTRUE_SECURITY_CAPTCHA",
        match &c.captcha {
            None => "off".into(),
            Some(cap) => format!("{:?} via {}, secret {}", cap.provider, cap.verify_url, masked(&cap.secret)),
        },
    );
    let h = &s.hooks;
    for (name, hook) in [
        ("GOTRUE_HOOK_SEND_EMAIL", &h.send_email),
        ("GOTRUE_HOOK_SEND_SMS", &s.sms.hook),
        ("GOTRUE_HOOK_CUSTOM_ACCESS_TOKEN", &h.custom_access_token),
        ("GOTRUE_HOOK_PASSWORD_VERIFICATION_ATTEMPT", &h.password_verification_attempt),
        ("GOTRUE_HOOK_MFA_VERIFICATION_ATTEMPT", &h.mfa_verification_attempt),
        ("GOTRUE_HOOK_BEFORE_USER_CREATED", &h.before_user_created),
        ("GOTRUE_HOOK_AFTER_USER_CREATED", &h.after_user_created),
    ] {
        line(
            name,
            hook.as_ref().map_or("off".into(), |e| format!("{} ({} secret(s), masked)", e.uri, e.secrets.len())),
        );
    }
    line("FERROTRUE_HASH_QUEUE", s.work.hash_queue.to_string());
    line("FERROTRUE_MAX_CONNECTIONS", s.work.max_connections.to_string());
    line("FERROTRUE_HTTP2_MAX_CONCURRENT_STREAMS", s.work.http2_max_concurrent_streams.to_string());
    line("GOTRUE_API_MAX_REQUEST_DURATION", secs(c.max_request_duration));
    line("GOTRUE_LOG_LEVEL", c.log_level.clone());
    line(
        "GOTRUE_METRICS_ENABLED",
        if c.metrics.enabled {
            format!("prometheus on http://{}:{}/metrics", c.metrics.host, c.metrics.port)
        } else {
            "off".into()
        },
    );
    line("password hashing", format!("argon2id m={} KiB t={}", s.hash_cost.memory_kib, s.hash_cost.iterations));
    line("refresh-token rotation", on(s.refresh.rotation_enabled).into());
    out.trim_end().to_owned()
}

/// What the server would warn about at start-up.
pub fn warnings(c: &Config) -> Vec<String> {
    let s = &c.settings;
    let mut w = Vec::new();
    if c.secret_source == SecretSource::WouldGenerate {
        w.push(
            "GOTRUE_JWT_SECRET is not set: a random secret would be generated and saved in the data directory".into(),
        );
    } else if s.jwt.secret.expose().len() < 32 {
        w.push(format!("GOTRUE_JWT_SECRET is shorter than 32 bytes ({} bytes)", s.jwt.secret.expose().len()));
    }
    if s.smtp.host.is_empty() && !s.signup.mailer_autoconfirm {
        w.push(
            "GOTRUE_SMTP_HOST is not set: mails (with their links and codes) are written to the log, not sent".into(),
        );
    }
    if c.durability == ferrotrue_actors::storage::Durability::Relaxed {
        w.push("FERROTRUE_DURABILITY=relaxed: acknowledged writes may be lost on a crash".into());
    }
    if c.host != "127.0.0.1" && c.host != "localhost" && c.limits.header.is_none() && !c.limits.sb_forwarded_for {
        w.push(
            "listening beyond loopback without GOTRUE_RATE_LIMIT_HEADER: behind a proxy every client would share one \
             rate limit"
                .into(),
        );
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn secrets_are_masked_and_settings_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
        let vars: HashMap<String, String> = [
            ("FERROTRUE_DATA_DIR", dir.path().to_str().unwrap_or_default()),
            ("GOTRUE_JWT_SECRET", "a-secret-that-is-long-enough-for-hs256-really"),
            ("GOTRUE_SMTP_HOST", "smtp.example.com"),
            ("GOTRUE_SMTP_PASS", "hunter2-smtp-password"),
            ("GOTRUE_RATE_LIMIT_VERIFY", "60"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = Config::check_vars(&vars).unwrap_or_else(|e| panic!("{e}"));
        let text = render(&config);
        assert!(!text.contains("a-secret-that-is-long") && !text.contains("hunter2"), "{text}");
        assert!(text.contains("GOTRUE_SMTP_PASS") && text.contains("set (21 bytes, masked)"), "{text}");
        assert!(text.contains("GOTRUE_RATE_LIMIT_VERIFY") && text.contains("one per 5s"), "{text}");
        assert!(warnings(&config).is_empty(), "{:?}", warnings(&config));
    }

    #[test]
    fn check_writes_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
        let data = dir.path().join("data");
        let vars: HashMap<String, String> =
            [("FERROTRUE_DATA_DIR".to_owned(), data.to_str().unwrap_or_default().to_owned())].into_iter().collect();
        let config = Config::check_vars(&vars).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.secret_source, SecretSource::WouldGenerate);
        assert!(!data.exists(), "config check created the data directory");
        assert!(warnings(&config).iter().any(|w| w.contains("GOTRUE_JWT_SECRET is not set")));
    }
}
