//! `ferrotrue migrate --from A --to B`: copies users (with their identities, metadata,
//! confirmations and password hashes) and MFA factors from one storage to another — a sled data
//! directory or a Postgres database, either way — offline.
//!
//! * Backend-independent: both sides are the actors over their [`Storage`]; users are read with
//!   `Users::list` (creation order) and written with `Users::create` and `Users::edit_factors`,
//!   so no flow runs and no hook fires. Records are copied as they are: ids, creation times,
//!   bcrypt and argon2id hashes alike.
//! * Idempotent and resumable: a user whose id is already at the destination is skipped (its
//!   missing factors are added, finishing a copy interrupted between the user and its factors),
//!   so a re-run after an interruption completes the job.
//! * TOTP secrets are sealed under a key derived from `GOTRUE_JWT_SECRET`: the destination must
//!   be served with the source's secret. Every copied TOTP factor is checked to open under it.
//! * Sessions and refresh tokens are copied only with `--sessions`
//!   (`Sessions::export_user` → `Sessions::import`, after each user is copied or found): every
//!   session (id, times, aal, amr, user agent, ip, `not_after`) with its refresh tokens, which
//!   both backends keep as SHA-256 digests only, so signed-in clients keep refreshing at the
//!   destination. An imported token works by digest; what cannot move is the shortcut that hands a
//!   client replaying the active token's parent that same active token (its raw value is derived
//!   from a per-backend sequence number): such a replay gets a new child instead, never an error.
//!   A session id already at the destination is skipped. Without `--sessions` users sign in again.

use crate::config::{create_private_dir, read_saved_secret, write_private, SECRET_FILE};
use ferrotrue_actors::clock::Clock;
use ferrotrue_actors::crypto::Secret;
use ferrotrue_actors::error::{AuthError, ErrorCode, ErrorKind};
use ferrotrue_actors::pg::{valid_namespace, ConnectOptions, Db, PgSettings, SchemaState};
use ferrotrue_actors::settings::Settings;
use ferrotrue_actors::storage::{Durability, Store};
use ferrotrue_actors::user_registry::model::{Factor, User};
use ferrotrue_actors::{Actors, Storage, Supervisor};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Users read from the source per `Users::list` call; the destination is synced after each page.
const PAGE: usize = 500;
/// Per-user failures printed in full; the rest are only counted.
const MAX_SHOWN_FAILURES: u64 = 1000;
/// Seconds between progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// sled page cache for each side.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Connections per side.
const POOL: usize = 4;

/// One side of a migration: a sled data directory (its database is `<dir>/db`) or a Postgres URL.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Sled(PathBuf),
    Postgres(String),
}

impl Endpoint {
    /// `postgres://…` / `postgresql://…` is a database, anything else a data directory.
    pub fn parse(arg: &str) -> Endpoint {
        let lower = arg.trim().to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Endpoint::Postgres(arg.trim().to_owned())
        } else {
            Endpoint::Sled(PathBuf::from(arg))
        }
    }

    /// For messages: the directory, or `user@host:port/db` (never the password).
    fn describe(&self, namespace: &str) -> String {
        match self {
            Endpoint::Sled(dir) => dir.display().to_string(),
            Endpoint::Postgres(url) => match ConnectOptions::parse(url) {
                Ok(o) => format!("{} (schema {namespace})", o.describe()),
                Err(_) => "a Postgres database".to_owned(),
            },
        }
    }
}

/// What to copy where.
pub struct Options {
    pub from: Endpoint,
    pub to: Endpoint,
    /// GoTrue's schema on both sides (Postgres only).
    pub namespace: String,
    /// `GOTRUE_JWT_SECRET` when set.
    pub jwt_secret: Option<String>,
    /// Copy sessions and refresh tokens too (`--sessions`).
    pub sessions: bool,
}

/// The outcome of a run that went through every source user.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Users read from the source.
    pub users: u64,
    pub copied: u64,
    /// Id already at the destination.
    pub skipped: u64,
    /// Skipped users whose missing factors were added (an interrupted earlier run).
    pub completed: u64,
    pub failed: u64,
    /// Factors written (with copied or completed users).
    pub factors: u64,
    /// Sessions written (`--sessions`), with their refresh tokens.
    pub sessions_copied: u64,
    /// Sessions whose id was already at the destination (`--sessions`).
    pub sessions_skipped: u64,
}

/// One opened side: its actors, and the sled store to sync (sled only).
struct Side {
    actors: Actors,
    supervisor: Supervisor,
    store: Option<Store>,
}

impl Side {
    async fn close(self) -> Result<(), String> {
        self.supervisor.shutdown().await;
        let synced = match &self.store {
            Some(store) => store.flush().await.map_err(|e| format!("syncing the destination: {e}")),
            None => Ok(()),
        };
        drop(self.actors);
        drop(self.store);
        synced
    }
}

/// Which secret seals the factors, and what to do with it at a sled destination.
struct SecretPlan {
    secret: String,
    /// Save it as the destination's generated secret (the source's came from its directory).
    save_to: Option<PathBuf>,
    /// Said once on stderr.
    note: Option<String>,
}

/// The checks that need no database: the same place twice, names, the JWT secret.
fn preflight(opts: &Options) -> Result<SecretPlan, String> {
    if !valid_namespace(&opts.namespace) {
        return Err(format!(
            "--namespace {:?} is not a schema name ferrotrue accepts (lower-case letters, digits and _)",
            opts.namespace
        ));
    }
    for (flag, side) in [("--from", &opts.from), ("--to", &opts.to)] {
        if let Endpoint::Postgres(url) = side {
            ConnectOptions::parse(url).map_err(|e| format!("{flag}: database URL: {e}"))?;
        }
    }
    if let Endpoint::Sled(dir) = &opts.from {
        if !dir.join("db").is_dir() {
            return Err(format!(
                "no ferrotrue data directory at {} ({}/db does not exist)",
                dir.display(),
                dir.display()
            ));
        }
    }
    match (&opts.from, &opts.to) {
        (Endpoint::Sled(a), Endpoint::Sled(b)) => {
            let a = std::fs::canonicalize(a).map_err(|e| format!("--from {}: {e}", a.display()))?;
            if same_path(&a, b) {
                return Err(format!("--from and --to are the same data directory ({})", a.display()));
            }
        }
        (Endpoint::Postgres(a), Endpoint::Postgres(b)) => {
            let (a, b) = (ConnectOptions::parse(a), ConnectOptions::parse(b));
            if let (Ok(a), Ok(b)) = (a, b) {
                if a.describe() == b.describe() {
                    return Err(format!(
                        "--from and --to are the same database ({}, schema {}); to copy between namespaces of \
                         one database use two different databases",
                        a.describe(),
                        opts.namespace
                    ));
                }
            }
        }
        _ => {}
    }
    let dest_saved = match &opts.to {
        Endpoint::Sled(dir) => read_saved_secret(dir).map(|s| s.expose().to_owned()),
        Endpoint::Postgres(_) => None,
    };
    if let Some(secret) = opts.jwt_secret.clone() {
        return Ok(SecretPlan { secret, save_to: None, note: None });
    }
    let Endpoint::Sled(from) = &opts.from else {
        return Err("GOTRUE_JWT_SECRET is not set: set it to the secret the source's servers use (TOTP factors \
                    are sealed under it, and the destination must be served with the same secret)"
            .into());
    };
    let Some(secret) = read_saved_secret(from).map(|s| s.expose().to_owned()) else {
        return Err(format!(
            "GOTRUE_JWT_SECRET is not set and {} holds no generated secret ({SECRET_FILE}): set GOTRUE_JWT_SECRET to \
             the secret the source server uses (TOTP factors are sealed under it)",
            from.display()
        ));
    };
    match &opts.to {
        Endpoint::Sled(to) => match dest_saved {
            Some(existing) if existing != secret => Err(format!(
                "{} has its own generated secret ({SECRET_FILE}), not the one of {}: copied TOTP factors would not \
                 open there. Use a new destination directory, or set GOTRUE_JWT_SECRET for the copy and the servers",
                to.display(),
                from.display()
            )),
            Some(_) => Ok(SecretPlan { secret, save_to: None, note: None }),
            None => Ok(SecretPlan {
                secret,
                save_to: Some(to.join(SECRET_FILE)),
                note: Some(format!(
                    "migrate: using the secret generated in {}; it is saved in {} too",
                    from.join(SECRET_FILE).display(),
                    to.join(SECRET_FILE).display()
                )),
            }),
        },
        Endpoint::Postgres(_) => Ok(SecretPlan {
            secret,
            save_to: None,
            note: Some(format!(
                "migrate: using the secret generated in {}: serve the Postgres nodes with GOTRUE_JWT_SECRET set to \
                 it, or copied TOTP factors will not open",
                from.join(SECRET_FILE).display()
            )),
        }),
    }
}

/// Whether `b` (which may not exist yet) names the canonical path `a`.
fn same_path(a: &Path, b: &Path) -> bool {
    if let Ok(b) = std::fs::canonicalize(b) {
        return a == b;
    }
    let (Some(parent), Some(name)) = (b.parent(), b.file_name()) else { return false };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    std::fs::canonicalize(parent).is_ok_and(|p| p.join(name) == a)
}

/// Opens one side and starts its actors. `dest`: create the directory / the schema.
async fn open(side: &Endpoint, namespace: &str, secret: &str, dest: bool) -> Result<Side, String> {
    let role = if dest { "destination" } else { "source" };
    let (storage, store) = match side {
        Endpoint::Sled(dir) => {
            if dest {
                create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let db_path = dir.join("db");
            let store = Store::open_when_free(&db_path, CACHE_BYTES, Durability::Relaxed).await.map_err(|e| {
                format!(
                    "cannot open the {role} database in {}: {e}\n(is a server running on this data directory? \
                     `ferrotrue migrate` works offline: stop the server first)",
                    db_path.display()
                )
            })?;
            (Storage::Sled(store.clone()), Some(store))
        }
        Endpoint::Postgres(url) => {
            let settings = PgSettings { url: url.clone(), namespace: namespace.to_owned(), max_pool_size: POOL };
            let db = Db::connect(&settings).await.map_err(|e| format!("{role} database: {e}"))?;
            let target = db.target().to_owned();
            if !dest {
                match db.inspect().await.map_err(|e| format!("source database: {e}"))? {
                    SchemaState::Current { .. } => {}
                    SchemaState::Empty => {
                        return Err(format!("source database {target} has no GoTrue schema {namespace:?}"))
                    }
                    state => {
                        let why = ferrotrue_actors::pg::schema::refusal(namespace, &state).unwrap_or_default();
                        return Err(format!("source database {target}: {why}"));
                    }
                }
            }
            // The destination gets GoTrue's schema if it has none; both get ferrotrue's own side
            // schema (GoTrue's tables are never changed on a current database).
            db.migrate().await.map_err(|e| format!("{role} database {target}: {e}"))?;
            (Storage::Postgres(db), None)
        }
    };
    let mut settings = Settings::defaults(Secret(secret.to_owned()));
    settings.call_timeout = Duration::from_secs(60);
    let (actors, supervisor) =
        Actors::start(storage, settings, Clock::System).await.map_err(|e| format!("{role}: {e}"))?;
    Ok(Side { actors, supervisor, store })
}

/// Runs the migration; progress and per-user failures go to `log` (stderr in the binary). `Err`
/// is a fatal problem (an endpoint unusable, a storage failure mid-way): what was copied before
/// it stays, and a re-run skips it.
pub async fn run(opts: &Options, log: &mut dyn Write) -> Result<Summary, String> {
    let plan = preflight(opts)?;
    let source = open(&opts.from, &opts.namespace, &plan.secret, false).await?;
    let dest = match open(&opts.to, &opts.namespace, &plan.secret, true).await {
        Ok(dest) => dest,
        Err(e) => {
            let _ = source.close().await;
            return Err(e);
        }
    };
    if let Some(path) = &plan.save_to {
        write_private(path, &plan.secret).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(note) = &plan.note {
        let _ = writeln!(log, "{note}");
    }
    let result = copy(&source.actors, &dest, opts, log).await;
    let closed_dest = dest.close().await;
    let _ = source.close().await;
    let summary = result?;
    closed_dest?;
    Ok(summary)
}

async fn copy(src: &Actors, dest: &Side, opts: &Options, log: &mut dyn Write) -> Result<Summary, String> {
    let total = src.users.count().await.map_err(|e| format!("counting the source's users: {}", reason(&e)))?;
    let _ = writeln!(
        log,
        "migrate: {total} users from {} to {}",
        opts.from.describe(&opts.namespace),
        opts.to.describe(&opts.namespace)
    );
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut s = Summary::default();
    let mut page = 1;
    loop {
        let items = src
            .users
            .list(page, PAGE, None, true)
            .await
            .map_err(|e| format!("reading page {page} of the source's users: {}", reason(&e)))?
            .items;
        let full = items.len() == PAGE;
        for user in items {
            s.users += 1;
            let (id, email) = (user.id, user.email.clone());
            let copied = copy_user(src, &dest.actors, user).await;
            let copied = match copied {
                Ok(c) if opts.sessions => match copy_sessions(src, &dest.actors, id).await {
                    Ok((new, present)) => {
                        s.sessions_copied += new;
                        s.sessions_skipped += present;
                        Ok(c)
                    }
                    Err(e) => Err(e),
                },
                other => other,
            };
            match copied {
                Ok(Copied::New(factors)) => {
                    s.copied += 1;
                    s.factors += factors;
                }
                Ok(Copied::Present(0)) => s.skipped += 1,
                Ok(Copied::Present(factors)) => {
                    s.skipped += 1;
                    s.completed += 1;
                    s.factors += factors;
                }
                Err(Failure::Storage(why)) => {
                    return Err(format!(
                        "the destination failed at user {id}: {why}\n(the {} users copied so far stay; fix the cause \
                         and run the same command again to continue)",
                        s.copied
                    ));
                }
                Err(Failure::User(why)) => {
                    s.failed += 1;
                    if s.failed <= MAX_SHOWN_FAILURES {
                        let who = if email.is_empty() { String::new() } else { format!(" ({email})") };
                        let _ = writeln!(log, "user {id}{who}: {why}");
                    }
                }
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let _ = writeln!(
                    log,
                    "migrate: {}/{total} users: {} copied, {} skipped, {} failed ({:.0} users/s)",
                    s.users,
                    s.copied,
                    s.skipped,
                    s.failed,
                    s.users as f64 / secs
                );
            }
        }
        // A page is on disk before the next is read: an interruption loses at most one page,
        // which the next run copies.
        if let Some(store) = &dest.store {
            store.flush().await.map_err(|e| format!("syncing the destination: {e}"))?;
        }
        if !full {
            break;
        }
        page += 1;
    }
    if s.failed > MAX_SHOWN_FAILURES {
        let _ = writeln!(log, "... and {} more failed users", s.failed - MAX_SHOWN_FAILURES);
    }
    Ok(s)
}

/// What happened to one user: copied (with n factors), or already present (n factors added).
enum Copied {
    New(u64),
    Present(u64),
}

/// Why a user was not copied: something about this user (reported, the run goes on), or the
/// destination's storage failing (the run stops: every following user would fail the same way).
enum Failure {
    User(String),
    Storage(String),
}

impl Failure {
    fn from_storage(e: &AuthError) -> Failure {
        Failure::Storage(reason(e))
    }
}

/// An error's message with its logged-only detail (a database error's cause, never a URL).
fn reason(e: &AuthError) -> String {
    match &e.internal {
        Some(detail) => format!("{}: {detail}", e.msg),
        None => e.msg.to_string(),
    }
}

/// Whether the destination itself failed (rather than refusing this user).
fn is_storage_failure(e: &AuthError) -> bool {
    matches!(e.kind, ErrorKind::Internal | ErrorKind::GatewayTimeout)
}

/// Copies one user and its factors.
async fn copy_user(src: &Actors, dest: &Actors, mut user: User) -> Result<Copied, Failure> {
    let factors = std::mem::take(&mut user.factors);
    for f in &factors {
        if f.factor_type == "totp" && !ferrotrue_actors::flows::mfa::totp_secret_opens(src, f) {
            return Err(Failure::User(format!(
                "TOTP factor {} does not open under this GOTRUE_JWT_SECRET: set the secret the source server uses",
                f.id
            )));
        }
    }
    match dest.users.get(user.id).await.map_err(|e| Failure::from_storage(&e))? {
        Some(existing) => {
            let missing: Vec<Factor> =
                factors.into_iter().filter(|f| !existing.factors.iter().any(|e| e.id == f.id)).collect();
            let n = install_factors(dest, user.id, missing).await?;
            Ok(Copied::Present(n))
        }
        None => {
            let id = user.id;
            let (email, phone) = (user.email.clone(), user.phone.clone());
            if let Err(e) = dest.users.create(user).await {
                if is_storage_failure(&e) {
                    return Err(Failure::from_storage(&e));
                }
                return Err(Failure::User(conflict(dest, &e, &email, &phone).await));
            }
            let n = install_factors(dest, id, factors).await?;
            Ok(Copied::New(n))
        }
    }
}

/// Copies the user's sessions with their refresh tokens: (copied, already there).
async fn copy_sessions(src: &Actors, dest: &Actors, user_id: uuid::Uuid) -> Result<(u64, u64), Failure> {
    let exports = src
        .sessions
        .export_user(user_id)
        .await
        .map_err(|e| Failure::Storage(format!("reading the user's sessions at the source: {}", reason(&e))))?;
    let (mut copied, mut present) = (0, 0);
    for export in exports {
        let id = export.session.id;
        match dest.sessions.import(export).await {
            Ok(true) => copied += 1,
            Ok(false) => present += 1,
            Err(e) => {
                let why =
                    format!("the user was copied but its session {id} was not: {} (a re-run copies it)", reason(&e));
                return Err(if is_storage_failure(&e) { Failure::Storage(why) } else { Failure::User(why) });
            }
        }
    }
    Ok((copied, present))
}

/// Adds `factors` to the user's (those with an id already there are left alone).
async fn install_factors(dest: &Actors, user_id: uuid::Uuid, factors: Vec<Factor>) -> Result<u64, Failure> {
    if factors.is_empty() {
        return Ok(0);
    }
    let n = factors.len() as u64;
    dest.users
        .edit_factors(user_id, move |list| {
            for f in factors {
                if !list.iter().any(|o| o.id == f.id) {
                    list.push(f);
                }
            }
            Ok(None)
        })
        .await
        .map_err(|e| {
            let why = format!("the user was copied but its factors were not: {} (a re-run adds them)", reason(&e));
            if is_storage_failure(&e) {
                Failure::Storage(why)
            } else {
                Failure::User(why)
            }
        })?;
    Ok(n)
}

/// The destination's refusal, naming who holds the email or phone when that is the reason.
async fn conflict(dest: &Actors, e: &AuthError, email: &str, phone: &str) -> String {
    let owner = match e.code {
        ErrorCode::EmailExists => dest.users.by_email(email).await.ok().flatten().map(|u| ("email", email, u.id)),
        ErrorCode::PhoneExists => dest.users.by_phone(phone).await.ok().flatten().map(|u| ("phone", phone, u.id)),
        _ => None,
    };
    match owner {
        Some((what, value, id)) => format!("{what} {value:?} already belongs to user {id} at the destination"),
        None => format!("the destination refused it: {} ({})", reason(e), e.code.as_str()),
    }
}

/// The binary's entry point: progress and failures on stderr, the summary on stdout. Exit 0 when
/// every user was copied or skipped, 1 when some failed (the others are copied), 2 when the
/// migration could not run (arguments, an endpoint, the secret).
pub async fn command(
    from: &str,
    to: &str,
    namespace: &str,
    sessions: bool,
    vars: &HashMap<String, String>,
) -> std::process::ExitCode {
    let opts = Options {
        from: Endpoint::parse(from),
        to: Endpoint::parse(to),
        namespace: namespace.to_owned(),
        jwt_secret: vars.get("GOTRUE_JWT_SECRET").filter(|s| !s.is_empty()).cloned(),
        sessions,
    };
    let started = Instant::now();
    let mut stderr = std::io::stderr();
    let outcome = run(&opts, &mut stderr).await.map(|s| {
        println!(
            "copied {} users ({} factors), skipped {} (id already at the destination{}), failed {} — {} users \
             read from {} into {} in {:.1} s; {}",
            s.copied,
            s.factors,
            s.skipped,
            if s.completed > 0 {
                format!("; {} of them got their missing factors", s.completed)
            } else {
                String::new()
            },
            s.failed,
            s.users,
            opts.from.describe(&opts.namespace),
            opts.to.describe(&opts.namespace),
            started.elapsed().as_secs_f64(),
            if opts.sessions {
                format!(
                    "sessions: copied {}, skipped {} (id already at the destination)",
                    s.sessions_copied, s.sessions_skipped
                )
            } else {
                "sessions are not copied (users sign in again; --sessions copies them)".to_owned()
            }
        );
        s.failed
    });
    crate::import::batch_exit(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_descriptions_never_show_a_password() {
        assert!(matches!(Endpoint::parse("./data"), Endpoint::Sled(_)));
        assert!(matches!(Endpoint::parse("/srv/postgres-data"), Endpoint::Sled(_)));
        let pg = Endpoint::parse("postgresql://admin:s3cret@db.example:5432/auth_db");
        assert!(matches!(pg, Endpoint::Postgres(_)));
        let text = pg.describe("auth");
        assert!(!text.contains("s3cret") && text.contains("db.example"), "{text}");
    }

    #[test]
    fn same_database_twice_is_refused_without_the_password() {
        let opts = Options {
            from: Endpoint::parse("postgres://u:s3cret@h:5432/d"),
            to: Endpoint::parse("postgres://u:other@h:5432/d"),
            namespace: "auth".into(),
            jwt_secret: Some("x".repeat(32)),
            sessions: false,
        };
        let err = preflight(&opts).err().unwrap_or_default();
        assert!(err.contains("same database") && !err.contains("s3cret"), "{err}");
    }
}
