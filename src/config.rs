//! Configuration: GoTrue's `GOTRUE_*` variables with GoTrue's names and defaults, plus
//! `FERROTRUE_*` for what GoTrue has no name for (data directory, durability, cache size).
//!
//! Read once in `main.rs` from the environment into a plain [`Config`]; no globals, so tests
//! build [`Config::for_tests`] and run several servers in one process. A bad value fails
//! start-up with one line per offending variable.

use ferrotrue_actors::crypto::{HashCost, Secret};
use ferrotrue_actors::settings::Settings;
use ferrotrue_actors::sms::{SmsHook, SmsSettings, TwilioSettings};
use ferrotrue_actors::storage::{Durability, DEFAULT_CACHE_BYTES};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Request body limit (GoTrue: 1 MiB → 413).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Where the JWT secret came from (reported at start-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// `GOTRUE_JWT_SECRET`.
    Environment,
    /// Generated earlier and read from the data directory.
    DataDir,
    /// Generated now and saved in the data directory.
    Generated,
    /// Set directly (tests).
    Explicit,
    /// Not set and not generated yet: `ferrotrue config check` does not write anything, the
    /// server would generate one at start-up.
    WouldGenerate,
}

/// The validated configuration of one server.
#[derive(Debug, Clone)]
pub struct Config {
    /// `GOTRUE_API_HOST` (default 127.0.0.1).
    pub host: String,
    /// `PORT` / `GOTRUE_API_PORT` (default 9999).
    pub port: u16,
    /// `FERROTRUE_DATA_DIR` (default `./data`); sled lives in `<dir>/db`.
    pub data_dir: PathBuf,
    /// `GOTRUE_DB_*` when they select Postgres (then sled and the data directory are unused).
    pub database: Option<ferrotrue_actors::pg::PgSettings>,
    /// `FERROTRUE_DURABILITY`: `sync` (default) or `relaxed`.
    pub durability: Durability,
    /// `FERROTRUE_CACHE_MB`: sled page-cache bound.
    pub cache_bytes: u64,
    /// `GOTRUE_SITE_URL`.
    pub site_url: String,
    /// `API_EXTERNAL_URL`.
    pub api_external_url: String,
    /// `GOTRUE_URI_ALLOW_LIST` (used by the redirect checks of the email and OAuth issues).
    pub uri_allow_list: Vec<String>,
    /// `GOTRUE_API_MAX_REQUEST_DURATION`.
    pub max_request_duration: Duration,
    /// `GOTRUE_CORS_ALLOWED_HEADERS`.
    pub cors_extra_headers: Vec<String>,
    /// `GOTRUE_LOG_LEVEL`.
    pub log_level: String,
    pub secret_source: SecretSource,
    /// `GOTRUE_MAILER_TEMPLATES_<TYPE>` as given (URL, file path or inline text); resolved to
    /// text into `settings.mail.templates` at start-up.
    pub mail_template_sources: Vec<(String, String)>,
    /// Per-client rate limits (`GOTRUE_RATE_LIMIT_*`), on by default (see SECURITY.md).
    pub limits: crate::config_security::RateLimits,
    /// `GOTRUE_SECURITY_CAPTCHA_*` when enabled.
    pub captcha: Option<crate::config_security::CaptchaSettings>,
    /// `GOTRUE_METRICS_*` / `OTEL_EXPORTER_PROMETHEUS_*`.
    pub metrics: crate::metrics::MetricsSettings,
    /// Everything below HTTP.
    pub settings: Settings,
}

/// Template names as they appear in `GOTRUE_MAILER_{SUBJECTS,TEMPLATES}_<NAME>`.
pub const MAIL_TEMPLATE_NAMES: [&str; 6] =
    ["confirmation", "invite", "recovery", "magic_link", "email_change", "reauthentication"];

/// One line per bad variable.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

/// Reads typed values out of the environment, collecting every error.
struct Env<'a> {
    vars: &'a HashMap<String, String>,
    errors: Vec<String>,
}

impl<'a> Env<'a> {
    fn raw(&self, name: &str) -> Option<&'a str> {
        let vars: &'a HashMap<String, String> = self.vars;
        vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
    fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or(default).to_owned()
    }
    fn parsed<T>(&mut self, name: &str, default: T, what: &str, parse: impl FnOnce(&str) -> Option<T>) -> T {
        match self.raw(name) {
            None => default,
            Some(v) => parse(v).unwrap_or_else(|| {
                self.errors.push(format!("{name}={v:?} is not {what}"));
                default
            }),
        }
    }
    fn bool(&mut self, name: &str, default: bool) -> bool {
        self.parsed(name, default, "a boolean (true/false)", parse_go_bool)
    }
    fn number<T: std::str::FromStr>(&mut self, name: &str, default: T) -> T {
        self.parsed(name, default, "a whole number", |v| v.parse().ok())
    }
    fn seconds(&mut self, name: &str, default: u64) -> Duration {
        Duration::from_secs(self.number(name, default))
    }
    fn duration(&mut self, name: &str, default: Duration) -> Duration {
        self.parsed(name, default, "a duration like 10s, 5m or 1h", parse_go_duration)
    }
    fn optional_duration(&mut self, name: &str) -> Option<Duration> {
        let d = self.duration(name, Duration::ZERO);
        (!d.is_zero()).then_some(d)
    }
    fn list(&self, name: &str, default: &[&str]) -> Vec<String> {
        match self.raw(name) {
            None => default.iter().map(|s| (*s).to_owned()).collect(),
            Some(v) => v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
        }
    }
}

/// `(name, value)` pairs as an environment, for the tests of every configuration module.
#[cfg(test)]
pub(crate) fn vars_for_tests(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// [`Env`]'s boolean reading for the configuration modules that take `(vars, errors)`: unset
/// is `default`, a bad value is named in `errors`.
pub(crate) fn read_bool(vars: &HashMap<String, String>, errors: &mut Vec<String>, name: &str, default: bool) -> bool {
    let mut env = Env { vars, errors: Vec::new() };
    let value = env.bool(name, default);
    errors.append(&mut env.errors);
    value
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

pub use ferrotrue_actors::clock::parse_go_duration;

/// `GOTRUE_SMS_*`, `GOTRUE_HOOK_SEND_SMS_*`, `FERROTRUE_SMS_TWILIO_BASE_URL`.
fn read_sms(env: &mut Env<'_>, sms: &mut SmsSettings, autoconfirm: bool) {
    sms.otp_length = env.number::<usize>("GOTRUE_SMS_OTP_LENGTH", 6).clamp(4, 10);
    sms.otp_exp = env.seconds("GOTRUE_SMS_OTP_EXP", 60);
    sms.template = env.string("GOTRUE_SMS_TEMPLATE", "Your code is {{ .Code }}");
    sms.max_frequency = env.duration("GOTRUE_SMS_MAX_FREQUENCY", Duration::from_secs(60));
    let budget = env.parsed(
        "GOTRUE_RATE_LIMIT_SMS_SENT",
        Some((30, Duration::from_secs(3600))),
        "a rate like 30 or 10/1m",
        |v| parse_rate(v).map(Some),
    );
    sms.budget = if autoconfirm { None } else { budget };
    if let Some(raw) = env.raw("GOTRUE_SMS_TEST_OTP") {
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once(':') {
                Some((phone, code)) if !code.is_empty() && code.chars().all(|c| c.is_ascii_digit()) => {
                    sms.test_otps.push((phone.trim().trim_start_matches('+').to_owned(), code.trim().to_owned()));
                }
                _ => env.errors.push(format!("GOTRUE_SMS_TEST_OTP: {pair:?} is not <phone>:<digits>")),
            }
        }
    }
    if let Some(raw) = env.raw("GOTRUE_SMS_TEST_OTP_VALID_UNTIL") {
        match time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339) {
            Ok(t) => {
                sms.test_otp_valid_until = Some(ferrotrue_actors::clock::Timestamp(
                    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX),
                ))
            }
            Err(_) => env.errors.push(format!("GOTRUE_SMS_TEST_OTP_VALID_UNTIL={raw:?} is not an RFC 3339 time")),
        }
    }
    match env.raw("GOTRUE_SMS_PROVIDER") {
        None => {}
        Some("twilio") => {
            let sid = env.string("GOTRUE_SMS_TWILIO_ACCOUNT_SID", "");
            let token = env.string("GOTRUE_SMS_TWILIO_AUTH_TOKEN", "");
            let service = env.string("GOTRUE_SMS_TWILIO_MESSAGE_SERVICE_SID", "");
            if sid.is_empty() || token.is_empty() || service.is_empty() {
                env.errors.push("GOTRUE_SMS_PROVIDER=twilio needs GOTRUE_SMS_TWILIO_ACCOUNT_SID, _AUTH_TOKEN and _MESSAGE_SERVICE_SID".into());
            } else {
                sms.twilio = Some(TwilioSettings {
                    account_sid: sid,
                    auth_token: Secret(token),
                    message_service_sid: service,
                    base_url: env.string("FERROTRUE_SMS_TWILIO_BASE_URL", "https://api.twilio.com"),
                });
            }
        }
        Some(other) => env
            .errors
            .push(format!("GOTRUE_SMS_PROVIDER={other:?} is not supported (twilio, or use the send-SMS hook)")),
    }
    if env.bool("GOTRUE_HOOK_SEND_SMS_ENABLED", false) {
        let uri = env.string("GOTRUE_HOOK_SEND_SMS_URI", "");
        // https anywhere; plain http only to this machine (GoTrue compares the parsed host).
        let uri_ok = match ferrotrue_actors::hooks::validate_uri(&uri) {
            Ok(()) => true,
            Err(e) => {
                env.errors.push(format!("GOTRUE_HOOK_SEND_SMS_URI={uri:?}: {e}"));
                false
            }
        };
        match ferrotrue_actors::hooks::parse_secrets(&env.string("GOTRUE_HOOK_SEND_SMS_SECRETS", "")) {
            Ok(secrets) if !secrets.is_empty() && uri_ok => sms.hook = Some(SmsHook { uri, secrets }),
            Ok(_) if uri_ok => env.errors.push(
                "GOTRUE_HOOK_SEND_SMS_SECRETS is required (v1,whsec_<base64> or v1a,whpk_<base64>:whsk_<base64>)"
                    .into(),
            ),
            Ok(_) => {}
            Err(e) => env.errors.push(format!("GOTRUE_HOOK_SEND_SMS_SECRETS: {e}")),
        }
    }
}

/// `GOTRUE_RATE_LIMIT_EMAIL_SENT`: `N` (per hour) or `N/<duration>`.
pub fn parse_rate(v: &str) -> Option<(u32, Duration)> {
    match v.split_once('/') {
        None => Some((v.trim().parse::<f64>().ok()?.max(0.0) as u32, Duration::from_secs(3600))),
        Some((n, window)) => {
            let window = parse_go_duration(window.trim())?;
            (!window.is_zero()).then_some((n.trim().parse::<f64>().ok()?.max(0.0) as u32, window))
        }
    }
}

/// `GOTRUE_PASSWORD_REQUIRED_CHARACTERS`: `:`-separated sets, `\:` escapes a colon.
pub fn parse_required_characters(v: &str) -> Vec<String> {
    let mut sets = vec![String::new()];
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&':') => {
                chars.next();
                if let Some(last) = sets.last_mut() {
                    last.push(':');
                }
            }
            ':' => sets.push(String::new()),
            c => {
                if let Some(last) = sets.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    sets.retain(|s| !s.is_empty());
    sets
}

impl Config {
    /// The process environment.
    pub fn from_process_env() -> Result<Config, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// The variables the server reads, as GoTrue assembles them: the process environment, plus
    /// `./.env` if present (the process environment wins, godotenv's `Load`), plus `env_file`
    /// when given (`--env-file`/`--config`: the file wins, godotenv's `Overload`).
    pub fn environment(env_file: Option<&Path>) -> Result<HashMap<String, String>, ConfigError> {
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        let read = |path: &Path| -> Result<Vec<(String, String)>, ConfigError> {
            dotenvy::from_path_iter(path)
                .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))
        };
        let dot_env = Path::new(".env");
        if dot_env.is_file() {
            for (k, v) in read(dot_env)? {
                vars.entry(k).or_insert(v);
            }
        }
        if let Some(path) = env_file {
            vars.extend(read(path)?);
        }
        Ok(vars)
    }

    /// Validates `vars` into a config. The JWT secret, if unset, is loaded from (or generated
    /// into) the data directory.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Self::build(vars, true)
    }

    /// Like [`Config::from_vars`], but writes nothing: a missing secret stays missing
    /// ([`SecretSource::WouldGenerate`]). For `ferrotrue config check`.
    pub fn check_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Self::build(vars, false)
    }

    fn build(vars: &HashMap<String, String>, generate_secret: bool) -> Result<Config, ConfigError> {
        let mut env = Env { vars, errors: Vec::new() };
        let port = match env.raw("PORT").or(env.raw("GOTRUE_API_PORT")) {
            None => 9999,
            Some(v) => v.parse().unwrap_or_else(|_| {
                env.errors.push(format!("PORT={v:?} is not a port number"));
                9999
            }),
        };
        let durability = match env.string("FERROTRUE_DURABILITY", "sync").as_str() {
            "sync" => Durability::Sync,
            "relaxed" => Durability::Relaxed,
            other => {
                env.errors.push(format!("FERROTRUE_DURABILITY={other:?} is not sync or relaxed"));
                Durability::Sync
            }
        };
        let cache_mb: u64 = env.number("FERROTRUE_CACHE_MB", DEFAULT_CACHE_BYTES / (1024 * 1024));
        let data_dir = PathBuf::from(env.string("FERROTRUE_DATA_DIR", "./data"));
        let audit_retention = env.optional_duration("FERROTRUE_AUDIT_RETENTION");

        let mut s = Settings::defaults(Secret(String::new()));
        s.audit_retention = audit_retention;
        s.work.hash_queue = env.number::<usize>("FERROTRUE_HASH_QUEUE", s.work.hash_queue).max(1);
        s.work.max_connections = env.number::<usize>("FERROTRUE_MAX_CONNECTIONS", s.work.max_connections).max(1);
        s.work.http2_max_concurrent_streams =
            env.number::<u32>("FERROTRUE_HTTP2_MAX_CONCURRENT_STREAMS", s.work.http2_max_concurrent_streams).max(1);
        s.jwt.exp = env.seconds("GOTRUE_JWT_EXP", 3600);
        s.jwt.aud = env.string("GOTRUE_JWT_AUD", "authenticated");
        s.jwt.default_group = env.string("GOTRUE_JWT_DEFAULT_GROUP_NAME", "authenticated");
        s.jwt.admin_roles = env.list("GOTRUE_JWT_ADMIN_ROLES", &["service_role", "supabase_admin"]);
        s.jwt.admin_group = env.string("GOTRUE_JWT_ADMIN_GROUP_NAME", "admin");
        s.jwt.issuer = env.string("GOTRUE_JWT_ISSUER", "");
        s.jwt.key_id = env.string("GOTRUE_JWT_KEY_ID", "");
        s.signup.disable_signup = env.bool("GOTRUE_DISABLE_SIGNUP", false);
        s.signup.email_enabled = env.bool("GOTRUE_EXTERNAL_EMAIL_ENABLED", true);
        s.signup.phone_enabled = env.bool("GOTRUE_EXTERNAL_PHONE_ENABLED", false);
        s.signup.anonymous_enabled = env.bool("GOTRUE_EXTERNAL_ANONYMOUS_USERS_ENABLED", false);
        s.signup.mailer_autoconfirm = env.bool("GOTRUE_MAILER_AUTOCONFIRM", false);
        s.signup.sms_autoconfirm = env.bool("GOTRUE_SMS_AUTOCONFIRM", false);
        // GoTrue raises a minimum below 6 to 6.
        s.password.min_length = env.number::<usize>("GOTRUE_PASSWORD_MIN_LENGTH", 6).max(6);
        s.password.required_characters =
            env.raw("GOTRUE_PASSWORD_REQUIRED_CHARACTERS").map(parse_required_characters).unwrap_or_default();
        s.refresh.rotation_enabled = env.bool("GOTRUE_SECURITY_REFRESH_TOKEN_ROTATION_ENABLED", true);
        s.refresh.reuse_interval = env.seconds("GOTRUE_SECURITY_REFRESH_TOKEN_REUSE_INTERVAL", 0);
        s.sessions.timebox = env.optional_duration("GOTRUE_SESSIONS_TIMEBOX");
        s.sessions.inactivity_timeout = env.optional_duration("GOTRUE_SESSIONS_INACTIVITY_TIMEOUT");
        s.smtp.host = env.string("GOTRUE_SMTP_HOST", "");
        s.smtp.port = env.number("GOTRUE_SMTP_PORT", 587);
        s.smtp.user = env.string("GOTRUE_SMTP_USER", "");
        s.smtp.pass = Secret(env.string("GOTRUE_SMTP_PASS", ""));
        s.smtp.admin_email = env.string("GOTRUE_SMTP_ADMIN_EMAIL", "");
        s.smtp.sender_name = env.string("GOTRUE_SMTP_SENDER_NAME", "");
        s.smtp.max_frequency = env.duration("GOTRUE_SMTP_MAX_FREQUENCY", Duration::from_secs(60));
        if !s.smtp.admin_email.is_empty() && !ferrotrue_actors::mailer::valid_address(&s.smtp.admin_email) {
            env.errors.push(format!("GOTRUE_SMTP_ADMIN_EMAIL={:?} is not an email address", s.smtp.admin_email));
        }
        s.otp.exp = env.seconds("GOTRUE_MAILER_OTP_EXP", 86_400);
        s.otp.length = env.number::<usize>("GOTRUE_MAILER_OTP_LENGTH", 6).clamp(6, 10);
        // GoTrue treats 300s as the minimum flow-state lifetime.
        s.flow_state_expiry = env
            .duration("GOTRUE_EXTERNAL_FLOW_STATE_EXPIRY_DURATION", Duration::from_secs(300))
            .max(Duration::from_secs(300));

        let site_url = env.string("GOTRUE_SITE_URL", "http://localhost:3000");
        s.mail.site_url = site_url.clone();
        s.mail.uri_allow_list = env.list("GOTRUE_URI_ALLOW_LIST", &[]);
        s.mail.url_paths.confirmation = env.string("GOTRUE_MAILER_URLPATHS_CONFIRMATION", "/verify");
        s.mail.url_paths.invite = env.string("GOTRUE_MAILER_URLPATHS_INVITE", "/verify");
        s.mail.url_paths.recovery = env.string("GOTRUE_MAILER_URLPATHS_RECOVERY", "/verify");
        s.mail.url_paths.email_change = env.string("GOTRUE_MAILER_URLPATHS_EMAIL_CHANGE", "/verify");
        let mut template_sources = Vec::new();
        for name in MAIL_TEMPLATE_NAMES {
            let upper = name.to_uppercase();
            if let Some(subject) = env.raw(&format!("GOTRUE_MAILER_SUBJECTS_{upper}")) {
                s.mail.subjects.push((name.to_owned(), subject.to_owned()));
            }
            if let Some(source) = env.raw(&format!("GOTRUE_MAILER_TEMPLATES_{upper}")) {
                template_sources.push((name.to_owned(), source.to_owned()));
            }
        }
        s.mail.secure_email_change = env.bool("GOTRUE_MAILER_SECURE_EMAIL_CHANGE_ENABLED", true);
        s.mail.magic_link_enabled = env.bool("GOTRUE_EXTERNAL_EMAIL_MAGIC_LINK_ENABLED", true);
        let budget = env.parsed(
            "GOTRUE_RATE_LIMIT_EMAIL_SENT",
            Some((30, Duration::from_secs(3600))),
            "a rate like 30 or 10/1m",
            |v| parse_rate(v).map(Some),
        );
        // GoTrue: the global mail budget does not apply under autoconfirm.
        s.mail.email_budget = if s.signup.mailer_autoconfirm { None } else { budget };
        s.security.update_password_require_reauthentication =
            env.bool("GOTRUE_SECURITY_UPDATE_PASSWORD_REQUIRE_REAUTHENTICATION", false);
        read_sms(&mut env, &mut s.sms, s.signup.sms_autoconfirm);
        let max_request_duration = env.duration("GOTRUE_API_MAX_REQUEST_DURATION", Duration::from_secs(10));
        // An SMTP conversation must end before the request times out, so the client gets the
        // SMTP diagnosis rather than a bare 504.
        s.mail.smtp_timeout = max_request_duration.saturating_sub(Duration::from_secs(1)).max(Duration::from_secs(1));

        let mut config = Config {
            host: env.string("GOTRUE_API_HOST", "127.0.0.1"),
            port,
            data_dir,
            database: None,
            durability,
            cache_bytes: cache_mb.saturating_mul(1024 * 1024),
            site_url,
            api_external_url: env.string("API_EXTERNAL_URL", ""),
            uri_allow_list: env.list("GOTRUE_URI_ALLOW_LIST", &[]),
            max_request_duration,
            cors_extra_headers: env.list("GOTRUE_CORS_ALLOWED_HEADERS", &[]),
            log_level: env.string("GOTRUE_LOG_LEVEL", "info"),
            secret_source: SecretSource::Environment,
            mail_template_sources: template_sources,
            limits: crate::config_security::read_rate_limits(vars, &mut env.errors),
            captcha: crate::config_security::read_captcha(vars, &mut env.errors),
            metrics: crate::metrics::read(vars, &mut env.errors),
            settings: s,
        };
        env.errors.extend(crate::config_security::unimplemented_settings(vars));
        // GOTRUE_DB_*: Postgres when they name a database (config_db.rs), else sled.
        match crate::config_db::read(vars) {
            Ok(database) => config.database = database,
            Err(errors) => env.errors.extend(errors),
        }
        env.errors.extend(crate::config_keys::read(vars, &mut config.settings.jwt));
        match crate::config_hooks::read(vars, config.max_request_duration) {
            Ok(hooks) => config.settings.hooks = hooks,
            Err(errors) => env.errors.extend(errors),
        }
        match crate::config_mfa::read(vars) {
            Ok(mfa) => config.settings.mfa = mfa,
            Err(errors) => env.errors.extend(errors),
        }
        match crate::config_oauth::read(vars) {
            Ok(oauth) => config.settings.oauth = oauth,
            Err(errors) => env.errors.extend(errors),
        }
        if !env.errors.is_empty() {
            return Err(ConfigError(env.errors));
        }
        match env.raw("GOTRUE_JWT_SECRET") {
            Some(secret) => config.settings.jwt.secret = Secret(secret.to_owned()),
            // Every node must sign and derive with the same secret; one generated per node
            // would split the cluster (tokens of one node refused by the others).
            None if config.database.is_some() => {
                return Err(ConfigError(vec![
                    "GOTRUE_JWT_SECRET is required with Postgres (GOTRUE_DB_DATABASE_URL): every node must share it; \
                     generate one with `openssl rand -base64 32`"
                        .to_owned(),
                ]))
            }
            None => match read_saved_secret(&config.data_dir) {
                Some(secret) => {
                    config.settings.jwt.secret = secret;
                    config.secret_source = SecretSource::DataDir;
                }
                None if generate_secret => {
                    config.settings.jwt.secret =
                        generate_secret_file(&config.data_dir).map_err(|e| ConfigError(vec![e]))?;
                    config.secret_source = SecretSource::Generated;
                }
                None => config.secret_source = SecretSource::WouldGenerate,
            },
        }
        if config.api_external_url.is_empty() {
            config.api_external_url = format!("http://{}:{}", config.host, config.port);
        }
        config.settings.mail.api_external_url = config.api_external_url.clone();
        Ok(config)
    }

    /// A config for tests: data in `dir`, quick password hashing, autoconfirm on.
    pub fn for_tests(dir: &Path) -> Config {
        Config {
            host: "127.0.0.1".into(),
            port: 0,
            data_dir: dir.to_path_buf(),
            database: None,
            durability: Durability::Sync,
            cache_bytes: 16 * 1024 * 1024,
            site_url: "http://localhost:3000".into(),
            api_external_url: "http://127.0.0.1:9999".into(),
            uri_allow_list: Vec::new(),
            max_request_duration: Duration::from_secs(10),
            cors_extra_headers: Vec::new(),
            log_level: "warn".into(),
            secret_source: SecretSource::Explicit,
            mail_template_sources: Vec::new(),
            limits: crate::config_security::RateLimits::generous(),
            captcha: None,
            metrics: crate::metrics::MetricsSettings::default(),
            settings: Settings::for_tests(),
        }
    }

    /// The sled directory inside the data directory.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("db")
    }

    /// Password hashing cost in force (reported at start-up).
    pub fn hash_cost(&self) -> HashCost {
        self.settings.hash_cost
    }
}

/// Name of the generated secret's file inside the data directory.
pub const SECRET_FILE: &str = "jwt_secret";

/// The secret generated by an earlier start, if the data directory holds one.
pub fn read_saved_secret(dir: &Path) -> Option<Secret> {
    let existing = std::fs::read_to_string(dir.join(SECRET_FILE)).ok()?;
    let existing = existing.trim();
    (!existing.is_empty()).then(|| Secret(existing.to_owned()))
}

/// Generates a secret and saves it (0600) in the data directory.
fn generate_secret_file(dir: &Path) -> Result<Secret, String> {
    let path = dir.join(SECRET_FILE);
    create_private_dir(dir).map_err(|e| format!("FERROTRUE_DATA_DIR={}: cannot create it: {e}", dir.display()))?;
    let secret = ferrotrue_actors::crypto::random_secret();
    write_private(&path, &secret)
        .map_err(|e| format!("FERROTRUE_DATA_DIR={}: cannot write {SECRET_FILE}: {e}", dir.display()))?;
    Ok(Secret(secret))
}

/// Creates `dir` (and missing parents) accessible only by its owner (0700); an existing
/// directory is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes a file readable only by its owner.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::vars_for_tests as vars;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "s", "10x", "-5s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn sms_settings_are_read() {
        let v = vars(&[
            ("GOTRUE_JWT_SECRET", "secret"),
            ("GOTRUE_SMS_PROVIDER", "twilio"),
            ("GOTRUE_SMS_TWILIO_ACCOUNT_SID", "AC123"),
            ("GOTRUE_SMS_TWILIO_AUTH_TOKEN", "tok"),
            ("GOTRUE_SMS_TWILIO_MESSAGE_SERVICE_SID", "MG1"),
            ("GOTRUE_SMS_TEST_OTP", "+15555550100:123456, 15555550101:654321"),
            ("GOTRUE_SMS_OTP_EXP", "120"),
            ("GOTRUE_HOOK_SEND_SMS_ENABLED", "true"),
            ("GOTRUE_HOOK_SEND_SMS_URI", "http://localhost:9000/sms"),
            ("GOTRUE_HOOK_SEND_SMS_SECRETS", "v1,whsec_AAAA"),
        ]);
        let c = Config::from_vars(&v).unwrap();
        let s = &c.settings.sms;
        assert_eq!(s.twilio.as_ref().unwrap().base_url, "https://api.twilio.com");
        assert_eq!(
            s.test_otps,
            vec![("15555550100".to_owned(), "123456".to_owned()), ("15555550101".to_owned(), "654321".to_owned())]
        );
        assert_eq!(s.otp_exp, Duration::from_secs(120));
        assert_eq!(s.hook.as_ref().unwrap().uri, "http://localhost:9000/sms");
        for uri in [
            "http://evil.example/sms",
            "http://localhost@evil.example/sms",
            "http://127.0.0.1.nip.io/sms",
            "ftp://localhost/x",
        ] {
            let bad = vars(&[
                ("GOTRUE_JWT_SECRET", "s"),
                ("GOTRUE_HOOK_SEND_SMS_ENABLED", "true"),
                ("GOTRUE_HOOK_SEND_SMS_URI", uri),
                ("GOTRUE_HOOK_SEND_SMS_SECRETS", "v1,whsec_AAAA"),
            ]);
            assert!(Config::from_vars(&bad).unwrap_err().to_string().contains("GOTRUE_HOOK_SEND_SMS_URI"), "{uri}");
        }
        // Asymmetric (Ed25519) secrets work for the send-SMS hook as for every hook; a bad one is
        // named without being echoed.
        let seed = "A".repeat(43) + "=";
        let v1a = vars(&[
            ("GOTRUE_JWT_SECRET", "s"),
            ("GOTRUE_HOOK_SEND_SMS_ENABLED", "true"),
            ("GOTRUE_HOOK_SEND_SMS_URI", "https://sms.example.com/hook"),
            ("GOTRUE_HOOK_SEND_SMS_SECRETS", &format!("v1a,whpk_AAAA:whsk_{seed}|v1,whsec_AAAA")),
        ]);
        assert_eq!(Config::from_vars(&v1a).unwrap().settings.sms.hook.unwrap().secrets.len(), 2);
        let bad = vars(&[
            ("GOTRUE_JWT_SECRET", "s"),
            ("GOTRUE_HOOK_SEND_SMS_ENABLED", "true"),
            ("GOTRUE_HOOK_SEND_SMS_URI", "https://sms.example.com/hook"),
            ("GOTRUE_HOOK_SEND_SMS_SECRETS", "v1a,whsk_c2VjcmV0LXZhbHVl"),
        ]);
        let err = Config::from_vars(&bad).unwrap_err().to_string();
        assert!(err.contains("GOTRUE_HOOK_SEND_SMS_SECRETS") && !err.contains("c2VjcmV0LXZhbHVl"), "{err}");
    }

    #[test]
    fn email_rates() {
        assert_eq!(parse_rate("30"), Some((30, Duration::from_secs(3600))));
        assert_eq!(parse_rate("10/1m"), Some((10, Duration::from_secs(60))));
        assert_eq!(parse_rate("0"), Some((0, Duration::from_secs(3600))));
        assert_eq!(parse_rate("ten"), None);
        assert_eq!(parse_rate("5/0s"), None);
    }

    #[test]
    fn mail_settings_are_read() {
        let v = vars(&[
            ("GOTRUE_JWT_SECRET", "secret"),
            ("GOTRUE_SITE_URL", "https://app.example.com"),
            ("API_EXTERNAL_URL", "https://auth.example.com/auth/v1"),
            ("GOTRUE_URI_ALLOW_LIST", "https://*.example.com/**, myapp://cb"),
            ("GOTRUE_MAILER_URLPATHS_CONFIRMATION", "/auth/v1/verify"),
            ("GOTRUE_MAILER_SUBJECTS_CONFIRMATION", "Welcome {{ .Email }}"),
            ("GOTRUE_MAILER_TEMPLATES_RECOVERY", "./templates/recovery.html"),
            ("GOTRUE_RATE_LIMIT_EMAIL_SENT", "5/1m"),
            ("FERROTRUE_HASH_QUEUE", "3"),
            ("FERROTRUE_MAX_CONNECTIONS", "100"),
            ("FERROTRUE_HTTP2_MAX_CONCURRENT_STREAMS", "7"),
            ("GOTRUE_API_MAX_REQUEST_DURATION", "5s"),
        ]);
        let c = Config::from_vars(&v).unwrap();
        let m = &c.settings.mail;
        assert_eq!(m.site_url, "https://app.example.com");
        assert_eq!(m.api_external_url, "https://auth.example.com/auth/v1");
        assert_eq!(m.uri_allow_list, vec!["https://*.example.com/**", "myapp://cb"]);
        assert_eq!(m.url_paths.confirmation, "/auth/v1/verify");
        assert_eq!(m.subjects, vec![("confirmation".to_owned(), "Welcome {{ .Email }}".to_owned())]);
        assert_eq!(c.mail_template_sources, vec![("recovery".to_owned(), "./templates/recovery.html".to_owned())]);
        assert_eq!(m.email_budget, Some((5, Duration::from_secs(60))));
        assert_eq!(m.smtp_timeout, Duration::from_secs(4));
        let w = &c.settings.work;
        assert_eq!((w.hash_queue, w.max_connections, w.http2_max_concurrent_streams), (3, 100, 7));
    }

    #[test]
    fn required_character_sets() {
        assert_eq!(parse_required_characters("abc:ABC:0-9\\:"), vec!["abc", "ABC", "0-9:"]);
    }

    #[test]
    fn zero_config_generates_and_then_reuses_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let v = vars(&[("FERROTRUE_DATA_DIR", data.to_str().unwrap())]);
        let first = Config::from_vars(&v).unwrap();
        assert_eq!(first.secret_source, SecretSource::Generated);
        assert_eq!(first.port, 9999);
        assert_eq!(first.host, "127.0.0.1");
        assert_eq!(first.settings.jwt.aud, "authenticated");
        let second = Config::from_vars(&v).unwrap();
        assert_eq!(second.secret_source, SecretSource::DataDir);
        assert_eq!(first.settings.jwt.secret, second.settings.jwt.secret);
    }

    #[test]
    fn every_bad_variable_is_named() {
        let v = vars(&[
            ("GOTRUE_JWT_SECRET", "s"),
            ("PORT", "http"),
            ("GOTRUE_DISABLE_SIGNUP", "maybe"),
            ("GOTRUE_SMTP_MAX_FREQUENCY", "soon"),
        ]);
        let err = Config::from_vars(&v).unwrap_err().to_string();
        assert!(err.contains("PORT="), "{err}");
        assert!(err.contains("GOTRUE_DISABLE_SIGNUP="), "{err}");
        assert!(err.contains("GOTRUE_SMTP_MAX_FREQUENCY="), "{err}");
        assert_eq!(err.lines().count(), 3);
    }

    #[test]
    fn gotrue_names_are_read() {
        let v = vars(&[
            ("GOTRUE_JWT_SECRET", "secret"),
            ("GOTRUE_JWT_EXP", "60"),
            ("GOTRUE_PASSWORD_MIN_LENGTH", "3"),
            ("GOTRUE_SECURITY_REFRESH_TOKEN_REUSE_INTERVAL", "10"),
            ("GOTRUE_SESSIONS_TIMEBOX", "24h"),
            ("FERROTRUE_DURABILITY", "relaxed"),
        ]);
        let c = Config::from_vars(&v).unwrap();
        assert_eq!(c.settings.jwt.exp, Duration::from_secs(60));
        assert_eq!(c.settings.password.min_length, 6, "raised to GoTrue's floor");
        assert_eq!(c.settings.refresh.reuse_interval, Duration::from_secs(10));
        assert_eq!(c.settings.sessions.timebox, Some(Duration::from_secs(86_400)));
        assert_eq!(c.durability, Durability::Relaxed);
        assert_eq!(c.secret_source, SecretSource::Environment);
    }
}
