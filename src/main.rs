//! The `ferrotrue` binary: environment → config → logs → bind → serve until SIGINT/SIGTERM.

use clap::{Parser, Subcommand};
use ferrotrue::config::{Config, SecretSource, SECRET_FILE};
use ferrotrue_actors::storage::Durability;
use std::process::ExitCode;
use tokio::net::TcpListener;

/// Lines the log writer thread may have waiting. Each slot is allocated (and touched) up front,
/// about 32 bytes a line, so 64k lines were 2 MiB resident at idle; 8k lines still absorb a
/// burst of 8k requests before a request waits for the writer.
const LOG_QUEUE_LINES: usize = 8 * 1024;

/// Threads for `spawn_blocking` work (DNS look-ups for outgoing mail and HTTP, file I/O,
/// snapshots). tokio's default is 512, each with its own stack; this work is rare and short, so a
/// burst of it waits in a queue instead of growing the process by hundreds of threads.
const MAX_BLOCKING_THREADS: usize = 32;

const ENV_HELP: &str = "\
Configuration is read from the environment, with GoTrue's names and defaults:
  PORT (9999), GOTRUE_API_HOST (127.0.0.1), API_EXTERNAL_URL, GOTRUE_SITE_URL
  GOTRUE_JWT_SECRET (generated and saved in the data directory when unset), GOTRUE_JWT_EXP (3600),
  GOTRUE_JWT_KEYS (JSON array of private JWKs; `ferrotrue keys generate`), GOTRUE_JWT_VALID_METHODS,
  GOTRUE_JWT_AUD (authenticated), GOTRUE_JWT_DEFAULT_GROUP_NAME (authenticated), GOTRUE_JWT_ADMIN_ROLES
  GOTRUE_DISABLE_SIGNUP, GOTRUE_EXTERNAL_EMAIL_ENABLED, GOTRUE_EXTERNAL_PHONE_ENABLED,
  GOTRUE_EXTERNAL_ANONYMOUS_USERS_ENABLED, GOTRUE_MAILER_AUTOCONFIRM, GOTRUE_SMS_AUTOCONFIRM
  GOTRUE_PASSWORD_MIN_LENGTH, GOTRUE_PASSWORD_REQUIRED_CHARACTERS
  GOTRUE_SECURITY_REFRESH_TOKEN_ROTATION_ENABLED, GOTRUE_SECURITY_REFRESH_TOKEN_REUSE_INTERVAL
  GOTRUE_SESSIONS_TIMEBOX, GOTRUE_SESSIONS_INACTIVITY_TIMEOUT, GOTRUE_API_MAX_REQUEST_DURATION
  GOTRUE_SMTP_HOST/PORT/USER/PASS/ADMIN_EMAIL/SENDER_NAME, GOTRUE_LOG_LEVEL (info)
  GOTRUE_MFA_{TOTP,PHONE,WEB_AUTHN}_{ENROLL,VERIFY}_ENABLED, GOTRUE_MFA_PHONE_*, GOTRUE_WEBAUTHN_RP_ID/_RP_ORIGINS
  GOTRUE_DB_DATABASE_URL / DATABASE_URL (Postgres instead of sled: many nodes, GoTrue's schema; needs
    GOTRUE_JWT_SECRET), GOTRUE_DB_NAMESPACE (auth), GOTRUE_DB_MAX_POOL_SIZE
Check a configuration without starting: `ferrotrue config check` (secrets masked, exit 2 on errors).
ferrotrue's own:
  FERROTRUE_DATA_DIR (./data), FERROTRUE_DURABILITY (sync | relaxed), FERROTRUE_CACHE_MB (64)
See README.md for the full table.";

/// A wire-compatible Supabase Auth (GoTrue) server with embedded storage.
#[derive(Parser)]
#[command(name = "ferrotrue", version, about, after_help = ENV_HELP)]
struct Cli {
    /// Read configuration from this file too (`KEY=value` lines, as GoTrue's `--config`); its
    /// values override the environment. `./.env` is read as well when present (the environment
    /// wins over it).
    #[arg(long, short = 'c', visible_alias = "config", global = true, value_name = "FILE")]
    env_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (the default).
    Serve,
    /// Signing-key tooling for `GOTRUE_JWT_KEYS`.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Configuration tooling.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage users of a running server through its admin API.
    Users {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Manage sessions of a running server through its admin API.
    Sessions {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Write a consistent snapshot of a running server's database to a file (it keeps serving).
    Backup {
        #[command(flatten)]
        target: AdminTarget,
        /// Where to write the backup.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// GoTrue's schema in Postgres (GOTRUE_DB_DATABASE_URL / DATABASE_URL, GOTRUE_DB_NAMESPACE).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Load users exported from GoTrue (JSON lines) into a data directory, offline.
    ///
    /// One user per line, in GoTrue's shape: the `auth.users` row (`raw_app_meta_data`,
    /// `raw_user_meta_data`, ...) or the admin API's user (`app_metadata`, `user_metadata`), with
    /// `identities` in either the `auth.identities` row or the API shape. `encrypted_password` is
    /// kept as it is (bcrypt `$2a$`/`$2b$`/`$2y$` or argon2 PHC; bcrypt becomes argon2id at the
    /// user's next sign-in). A user without `identities` gets its email/phone identities.
    ///
    /// Idempotent: a line whose id is already present is skipped (never updated). A line whose
    /// email, phone or identity belongs to another user, or that is malformed, is reported with
    /// its line number and the rest of the file is still imported. The server must not be
    /// running on the data directory (sled locks it). Exit status: 0 all lines imported or
    /// skipped, 1 some lines failed, 2 nothing could be done (file, database).
    Import {
        /// The JSON-lines file (`bench/gen_users.py` writes one).
        file: std::path::PathBuf,
        /// The data directory (default: FERROTRUE_DATA_DIR, else ./data); created if missing.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// sled page cache during the import, in MiB (larger is faster for large files).
        #[arg(long, default_value_t = 512)]
        cache_mb: u64,
    },
    /// Copy users, identities and MFA factors between a sled data directory and Postgres (offline).
    ///
    /// `--from` and `--to` are each a ferrotrue data directory (sled, its database is `DIR/db`)
    /// or a Postgres URL (`postgres://…`, GoTrue's schema in `--namespace`): sled → Postgres,
    /// Postgres → sled, or between two of the same kind. Every user is copied as it is: id,
    /// created_at, email, phone, confirmations, metadata, identities, bans, and the password hash
    /// (GoTrue's bcrypt and ferrotrue's argon2id both keep working). No hook fires, no mail is
    /// sent. The destination is created if missing (a Postgres destination gets GoTrue's schema).
    ///
    /// Idempotent and resumable: a user whose id is already at the destination is skipped (and
    /// gets any factor it lacks), so re-running after an interruption finishes the job. A user
    /// whose email, phone or identity belongs to another destination user fails, with the reason,
    /// and the others are still copied. Progress and failures go to stderr, the summary to stdout.
    ///
    /// The JWT secret: TOTP factors are sealed under a key derived from GOTRUE_JWT_SECRET, so the
    /// destination must be served with the source's secret. The secret is GOTRUE_JWT_SECRET, else
    /// the one generated in the source data directory (then saved in a sled destination, which
    /// must not have a different one); each TOTP factor is checked to open under it.
    ///
    /// Sessions and refresh tokens are copied with --sessions (signed-in clients keep refreshing
    /// at the destination; a session id already there is skipped); without it users sign in
    /// again. Not copied: the audit log, pending one-time tokens and OAuth flows. Neither side may be in use by a server (a sled directory
    /// is locked by its server; stop Postgres-backed nodes first). Database URLs are never
    /// printed with their password. Exit status: 0 every user copied or skipped, 1 some users
    /// failed, 2 nothing could be done (arguments, secret, storage).
    Migrate {
        /// The source: a data directory or a postgres:// URL.
        #[arg(long, value_name = "DIR|URL")]
        from: String,
        /// The destination: a data directory (created if missing) or a postgres:// URL.
        #[arg(long, value_name = "DIR|URL")]
        to: String,
        /// GoTrue's schema on the Postgres side(s) (GOTRUE_DB_NAMESPACE).
        #[arg(long, default_value = "auth", value_name = "NS")]
        namespace: String,
        /// Copy every user's sessions and refresh tokens too (tokens are stored as digests on
        /// both sides: they keep working; a replay of a token's parent gets a new child).
        #[arg(long)]
        sessions: bool,
    },
    /// Restore a backup into an empty data directory (offline: the server must not be using it).
    Restore {
        /// The backup file.
        file: std::path::PathBuf,
        /// The data directory to create (its `db/` must not exist yet).
        #[arg(long)]
        data_dir: std::path::PathBuf,
    },
}

/// Where the admin commands go and how they authenticate.
#[derive(clap::Args)]
struct AdminTarget {
    /// The server's URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9999")]
    url: String,
    /// A service_role key to use instead of signing one from this environment.
    #[arg(long, global = true)]
    key: Option<String>,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// List users, one line each.
    List {
        #[arg(long, default_value_t = 1)]
        page: usize,
        #[arg(long, default_value_t = 50)]
        per_page: usize,
    },
    /// Create a user (confirmed unless --unconfirmed).
    Create {
        email: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        unconfirmed: bool,
    },
    /// Delete a user by id (ends their sessions first).
    Delete { id: String },
    /// Ban a user by id for a Go duration (e.g. 24h; `none` lifts a ban).
    Ban {
        id: String,
        #[arg(long, default_value = "876000h")]
        duration: String,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// End every session and refresh token of a user (by id).
    Revoke { user: String },
}

/// `ferrotrue db …` (src/db_cli.rs).
#[derive(Subcommand)]
enum DbCommand {
    /// Create GoTrue's schema in an empty database (recording GoTrue's migration versions, so GoTrue
    /// sees it as current); on a database GoTrue already migrated, check it is current and change
    /// nothing. Safe to run from several nodes at once.
    Migrate {
        /// The database URL instead of GOTRUE_DB_DATABASE_URL / DATABASE_URL.
        #[arg(long)]
        url: Option<String>,
    },
    /// Report whether the schema exists and is current, changing nothing (exit 0 only when current).
    Check {
        /// The database URL instead of GOTRUE_DB_DATABASE_URL / DATABASE_URL.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the environment as the server would (writing nothing), print the effective
    /// configuration with secrets masked, and exit 2 if anything is wrong.
    Check,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new key set (one private JWK with a random `kid`, `key_ops: ["sign","verify"]`),
    /// ready for `GOTRUE_JWT_KEYS`. To rotate, add a new key without "sign" first, then move
    /// "sign" to it, then remove the old key once its tokens have expired.
    Generate {
        /// Algorithm of the key.
        #[arg(long, default_value = "ES256", value_parser = ["ES256", "RS256", "EdDSA"])]
        alg: String,
    },
}

/// Logs go to stderr through a background writer thread: a request never waits for the write
/// of its access line (only for formatting it). The buffer is large and not lossy: when it is
/// full, writers wait rather than drop security-relevant lines. Keep the guard until exit: it
/// flushes what is buffered.
fn init_logging(level: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(format!("{level},sled=warn")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("ferrotrue-log")
        // Buffered: the writer thread flushes whenever its queue is empty, so lines leave as
        // promptly as before but a burst costs one write(2), not one per line (issue 13).
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer).init();
    guard
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is *called*, not when
/// the future is first polled, so a signal that arrives while the server is starting (it
/// already answers /health) still means a graceful stop rather than the default kill.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        {
            match term {
                Some(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                None => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        tracing::info!("shutdown requested");
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn log_startup(config: &Config, url: &str) {
    let s = &config.settings;
    match config.secret_source {
        SecretSource::Generated => tracing::warn!(
            "!!! GOTRUE_JWT_SECRET is not set: generated a random secret and saved it in {}. \
             Tokens signed with it are valid only for this server; set GOTRUE_JWT_SECRET to share it \
             with PostgREST and your other services. !!!",
            config.data_dir.join(SECRET_FILE).display()
        ),
        SecretSource::DataDir => tracing::warn!(
            "GOTRUE_JWT_SECRET is not set: using the secret generated earlier in {}",
            config.data_dir.join(SECRET_FILE).display()
        ),
        SecretSource::Environment | SecretSource::Explicit | SecretSource::WouldGenerate => {}
    }
    if s.jwt.secret.expose().len() < 32 {
        tracing::warn!(
            "GOTRUE_JWT_SECRET is shorter than 32 bytes ({} bytes): access tokens signed with it can be \
             brute-forced offline; use at least 32 random bytes (e.g. `openssl rand -base64 32`)",
            s.jwt.secret.expose().len()
        );
    }
    let limits = &config.limits;
    tracing::info!(
        client = match (&limits.header, limits.sb_forwarded_for) {
            (_, true) => "Sb-Forwarded-For, else the peer address".to_owned(),
            (Some(h), false) => format!("first value of {h}, else the peer address"),
            (None, false) => "the peer address (set GOTRUE_RATE_LIMIT_HEADER behind a proxy)".to_owned(),
        },
        captcha = config.captcha.as_ref().map_or("off".to_owned(), |c| format!("{:?}", c.provider)),
        "rate limits per client are on"
    );
    if s.smtp.host.is_empty() && !s.signup.mailer_autoconfirm {
        tracing::warn!(
            "GOTRUE_SMTP_HOST is not set: confirmation, magic-link and recovery mails are written to this log \
             (with their links and codes) instead of being sent — fine for trying ferrotrue out, never for \
             production: set GOTRUE_SMTP_HOST"
        );
    }
    if config.durability == Durability::Relaxed {
        tracing::warn!("FERROTRUE_DURABILITY=relaxed: acknowledged writes may be lost on a crash (up to 500 ms)");
    }
    match &config.database {
        Some(pg) => tracing::info!(
            postgres = %ferrotrue_actors::pg::ConnectOptions::parse(&pg.url).map(|o| o.describe()).unwrap_or_default(),
            namespace = %pg.namespace,
            ferrotrue_schema = %ferrotrue_actors::pg::schema::side_schema(&pg.namespace),
            pool = pg.max_pool_size,
            "storage: Postgres (every write committed before its response; run as many nodes as you like)"
        ),
        None => {
            let data_dir = std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
            tracing::info!(
                data = %data_dir.join("db").display(),
                durability = ?config.durability,
                "storage: sled (one node)"
            );
        }
    }
    tracing::info!(
        signup = on_off(!s.signup.disable_signup),
        email = on_off(s.signup.email_enabled),
        phone = on_off(s.signup.phone_enabled),
        anonymous = on_off(s.signup.anonymous_enabled),
        mailer_autoconfirm = on_off(s.signup.mailer_autoconfirm),
        sms_autoconfirm = on_off(s.signup.sms_autoconfirm),
        smtp = if s.smtp.host.is_empty() { "not configured" } else { s.smtp.host.as_str() },
        jwt_exp_secs = s.jwt.exp.as_secs(),
        "features"
    );
    match s.jwt.keys.iter().find(|k| k.sign) {
        Some(k) => tracing::info!(
            alg = ferrotrue_actors::jwt_keys::alg_name(k.alg),
            kid = ?k.kid,
            keys = s.jwt.keys.len(),
            "access tokens are signed with GOTRUE_JWT_KEYS"
        ),
        None => tracing::info!(alg = "HS256", "access tokens are signed with GOTRUE_JWT_SECRET"),
    }
    tracing::info!("ferrotrue {} listening on {url}", env!("CARGO_PKG_VERSION"));
}

fn admin_action(command: &Command) -> Option<(&AdminTarget, ferrotrue::admin_cli::Action)> {
    use ferrotrue::admin_cli::Action;
    Some(match command {
        Command::Users { target, command } => (
            target,
            match command {
                UsersCommand::List { page, per_page } => Action::ListUsers { page: *page, per_page: *per_page },
                UsersCommand::Create { email, password, unconfirmed } => {
                    Action::CreateUser { email: email.clone(), password: password.clone(), confirm: !unconfirmed }
                }
                UsersCommand::Delete { id } => Action::DeleteUser { id: id.clone() },
                UsersCommand::Ban { id, duration } => Action::BanUser { id: id.clone(), duration: duration.clone() },
            },
        ),
        Command::Sessions { target, command: SessionsCommand::Revoke { user } } => {
            (target, Action::RevokeSessions { id: user.clone() })
        }
        _ => return None,
    })
}

/// The variables of this run (process environment, `./.env`, `--env-file`), read once.
static ENVIRONMENT: std::sync::OnceLock<std::collections::HashMap<String, String>> = std::sync::OnceLock::new();

fn environment() -> &'static std::collections::HashMap<String, String> {
    ENVIRONMENT.get_or_init(|| std::env::vars().collect())
}

/// The bearer for admin commands: `--key`, else a short-lived service token signed with this
/// environment's key. When it cannot be had, the reason is printed and the exit code (2) given.
fn admin_token(target: &AdminTarget) -> Result<String, ExitCode> {
    if let Some(key) = &target.key {
        return Ok(key.clone());
    }
    let signed = Config::check_vars(environment()).map_err(|e| e.to_string()).and_then(|config| {
        if config.secret_source == SecretSource::WouldGenerate {
            return Err(
                "no GOTRUE_JWT_SECRET and no generated secret in FERROTRUE_DATA_DIR: set one, or pass --key".into()
            );
        }
        ferrotrue::admin_cli::service_token(&config.settings.jwt)
    });
    signed.map_err(|e| {
        eprintln!("ferrotrue: {e}");
        ExitCode::from(2)
    })
}

/// `ferrotrue users …` / `ferrotrue sessions …` against `--url`: exit 0 with the outcome on
/// stdout, 1 with the server's error on stderr, 2 when the environment cannot sign a token.
async fn admin_command(target: &AdminTarget, action: ferrotrue::admin_cli::Action) -> ExitCode {
    let token = match admin_token(target) {
        Ok(token) => token,
        Err(exit) => return exit,
    };
    match ferrotrue::admin_cli::run(&target.url, &token, &action).await {
        Ok(answer) => {
            println!("{}", ferrotrue::admin_cli::render(&action, &answer));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrotrue: {e}");
            ExitCode::from(1)
        }
    }
}

/// `ferrotrue backup`: fetch, check, then write the file (never a partial one in its place).
async fn backup_command(target: &AdminTarget, out: &std::path::Path) -> ExitCode {
    let token = match admin_token(target) {
        Ok(token) => token,
        Err(exit) => return exit,
    };
    let bytes = match ferrotrue::admin_cli::fetch_backup(&target.url, &token).await {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("ferrotrue: {e}");
            return ExitCode::from(1);
        }
    };
    let partial = out.with_extension("partial");
    let written = std::fs::write(&partial, &bytes).and_then(|()| std::fs::rename(&partial, out));
    match written {
        Ok(()) => {
            println!("backup of {} bytes written to {}", bytes.len(), out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrotrue: cannot write {}: {e}", out.display());
            ExitCode::from(1)
        }
    }
}

/// `ferrotrue restore`: checks the file (format, checksum) and writes a new database.
fn restore_command(file: &std::path::Path, data_dir: &std::path::Path) -> ExitCode {
    let result = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display())).and_then(|bytes| {
        ferrotrue::config::create_private_dir(data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        ferrotrue_actors::storage::backup::restore(&bytes, &data_dir.join("db")).map_err(|e| e.to_string())
    });
    match result {
        Ok(r) => {
            println!("restored {} records in {} trees into {}", r.records, r.trees, data_dir.join("db").display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrotrue: {e}");
            ExitCode::from(1)
        }
    }
}

/// `ferrotrue config check`: the effective configuration, secrets masked, or every error.
fn config_check() -> ExitCode {
    match Config::check_vars(environment()) {
        Ok(config) => {
            println!("{}", ferrotrue::config_report::render(&config));
            let warnings = ferrotrue::config_report::warnings(&config);
            for w in &warnings {
                println!("warning: {w}");
            }
            println!("configuration OK{}", if warnings.is_empty() { "" } else { " (with warnings)" });
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrotrue: invalid configuration:\n{e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(MAX_BLOCKING_THREADS).build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("ferrotrue: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run() -> ExitCode {
    // Everything this process creates (database files, the generated secret, snapshots) is
    // for its owner only.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    match Config::environment(cli.env_file.as_deref()) {
        Ok(vars) => {
            let _ = ENVIRONMENT.set(vars);
        }
        Err(e) => {
            eprintln!("ferrotrue: invalid configuration:\n{e}");
            return ExitCode::from(2);
        }
    }
    let command = cli.command.unwrap_or(Command::Serve);
    match &command {
        Command::Serve
        | Command::Config { .. }
        | Command::Users { .. }
        | Command::Sessions { .. }
        | Command::Backup { .. }
        | Command::Import { .. }
        | Command::Migrate { .. }
        | Command::Restore { .. } => {}
        Command::Db { command } => {
            let (action, url) = match command {
                DbCommand::Migrate { url } => (ferrotrue::db_cli::DbAction::Migrate, url),
                DbCommand::Check { url } => (ferrotrue::db_cli::DbAction::Check, url),
            };
            return ferrotrue::db_cli::run(action, environment(), url.as_deref()).await;
        }
        Command::Keys { command: KeysCommand::Generate { alg } } => {
            let generated = ferrotrue_actors::jwt_keys::parse_alg(alg)
                .ok_or_else(|| format!("unsupported algorithm {alg:?}"))
                .and_then(ferrotrue_actors::jwt_keys::generate);
            return match generated {
                Ok(set) => {
                    println!("{set}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ferrotrue: {e}");
                    ExitCode::from(1)
                }
            };
        }
    }
    if let Command::Config { command: ConfigCommand::Check } = command {
        return config_check();
    }
    if let Some((target, action)) = admin_action(&command) {
        return admin_command(target, action).await;
    }
    if let Command::Backup { target, out } = &command {
        return backup_command(target, out).await;
    }
    if let Command::Restore { file, data_dir } = &command {
        return restore_command(file, data_dir);
    }
    if let Command::Migrate { from, to, namespace, sessions } = &command {
        return ferrotrue::migrate_cli::command(from, to, namespace, *sessions, environment()).await;
    }
    if let Command::Import { file, data_dir, cache_mb } = &command {
        let data_dir = data_dir.clone().unwrap_or_else(|| {
            environment().get("FERROTRUE_DATA_DIR").map_or_else(|| "./data".into(), std::path::PathBuf::from)
        });
        return ferrotrue::import::command(file, &data_dir, *cache_mb).await;
    }
    let config = match Config::from_vars(environment()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrotrue: invalid configuration:\n{e}");
            return ExitCode::from(2);
        }
    };
    let _log_guard = init_logging(&config.log_level);
    let shutdown = shutdown_signal();
    let bind = format!("{}:{}", config.host, config.port);
    let listener = match TcpListener::bind(&bind).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {bind}: {e} (set PORT / GOTRUE_API_HOST)");
            return ExitCode::from(1);
        }
    };
    let url = listener.local_addr().map(|a| format!("http://{a}")).unwrap_or(bind);
    let startup = config.clone();
    let server = match ferrotrue::start(listener, config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    log_startup(&startup, &url);
    server.run_until(shutdown).await;
    ExitCode::SUCCESS
}
