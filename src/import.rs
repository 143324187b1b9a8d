//! `ferrotrue import FILE`: loads users exported from GoTrue (one JSON object per line, the
//! `auth.users` row or the admin API's user shape) into a data directory, offline.
//!
//! * Password hashes are kept as they are (bcrypt `$2a$`/`$2b$`/`$2y$` or argon2 PHC): nothing is
//!   hashed, a bcrypt hash is replaced by argon2id at the user's next password sign-in.
//! * Offline: sled locks the directory, so the import refuses while a server uses it.
//! * Idempotent: a line whose `id` is already present (in the database or earlier in the file)
//!   is skipped, never updated; an email, phone or identity held by another user fails that line
//!   only. Line errors carry their line number; the rest of the file is still imported.
//! * Fast: records and both index trees are written in batches (one sled transaction per batch,
//!   so an index never points at a missing record), and the database is synced once at the end.

use ferrotrue_actors::clock::Timestamp;
use ferrotrue_actors::crypto::check_imported_hash;
use ferrotrue_actors::storage::{self, Durability, Op, Store, Table};
use ferrotrue_actors::user_registry::model::{Identity, JsonText, User};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Users per sled transaction.
const BATCH: usize = 2000;
/// A longer line is refused (and skipped) rather than read into memory.
const MAX_LINE: usize = 1 << 20;
/// Line errors printed in full; the rest are only counted.
const MAX_SHOWN_ERRORS: u64 = 1000;
/// Seconds between progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What to import where.
pub struct Options {
    pub file: PathBuf,
    pub data_dir: PathBuf,
    /// sled's page cache during the import (bigger is faster for large files).
    pub cache_bytes: u64,
}

/// The outcome of a run that got to the end of the file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Non-blank lines read.
    pub lines: u64,
    pub imported: u64,
    /// Lines whose id was already present.
    pub skipped: u64,
    pub failed: u64,
}

/// Who already holds what: the records in the database plus the lines imported so far.
#[derive(Default)]
struct Taken {
    ids: HashSet<Uuid>,
    emails: HashMap<String, Uuid>,
    phones: HashMap<String, Uuid>,
    identities: HashMap<(String, String), Uuid>,
}

impl Taken {
    fn add(&mut self, user: &User) {
        self.ids.insert(user.id);
        if !user.email.is_empty() {
            self.emails.insert(user.email.clone(), user.id);
        }
        if !user.phone.is_empty() {
            self.phones.insert(user.phone.clone(), user.id);
        }
        for i in &user.identities {
            self.identities.insert((i.provider.clone(), i.provider_id.clone()), user.id);
        }
    }

    /// Why `user` cannot join, if it cannot.
    fn conflict(&self, user: &User) -> Option<String> {
        if let Some(owner) = self.emails.get(&user.email).filter(|o| **o != user.id) {
            return Some(format!("email {:?} already belongs to user {owner}", user.email));
        }
        if let Some(owner) = self.phones.get(&user.phone).filter(|o| **o != user.id) {
            return Some(format!("phone {:?} already belongs to user {owner}", user.phone));
        }
        for i in &user.identities {
            let key = (i.provider.clone(), i.provider_id.clone());
            if let Some(owner) = self.identities.get(&key).filter(|o| **o != user.id) {
                return Some(format!("identity {}/{} already belongs to user {owner}", i.provider, i.provider_id));
            }
        }
        None
    }
}

/// Runs the import; progress and line errors go to `log` (stderr in the binary). `Err` is a
/// fatal problem (file unreadable, database locked or failing): what was written before it
/// stays, and a re-run skips it.
pub async fn run(opts: &Options, log: &mut dyn Write) -> Result<Summary, String> {
    let file = std::fs::File::open(&opts.file).map_err(|e| format!("cannot read {}: {e}", opts.file.display()))?;
    let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    crate::config::create_private_dir(&opts.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", opts.data_dir.display()))?;
    let db_path = opts.data_dir.join("db");
    let store = Store::open(&db_path, opts.cache_bytes, Durability::Relaxed).map_err(|e| {
        format!(
            "cannot open the database in {}: {e}\n(is a server running on this data directory? \
             `ferrotrue import` works offline: stop the server first)",
            db_path.display()
        )
    })?;
    let users: Table<User> = store.table(storage::USERS).map_err(|e| e.to_string())?;
    let by_email: Table<Uuid> = store.table(storage::USERS_BY_EMAIL).map_err(|e| e.to_string())?;
    let by_phone: Table<Uuid> = store.table(storage::USERS_BY_PHONE).map_err(|e| e.to_string())?;

    let started = Instant::now();
    let mut taken = Taken::default();
    if !users.is_empty() {
        let _ = writeln!(log, "import: reading the {} users already in {}", users.len(), db_path.display());
        for item in users.scan(false) {
            let (_, user) = item.map_err(|e| format!("reading existing users: {e}"))?;
            taken.add(&user);
        }
    }

    let now = Timestamp(time::OffsetDateTime::now_utc().unix_timestamp() * 1_000_000);
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut summary = Summary::default();
    let (mut line_no, mut bytes_read) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(4096);
    let mut ops: Vec<Op> = Vec::with_capacity(BATCH * 3);
    let mut in_batch = 0usize;
    let mut last_progress = Instant::now();
    let fail = |summary: &mut Summary, log: &mut dyn Write, line_no: u64, why: String| {
        summary.failed += 1;
        if summary.failed <= MAX_SHOWN_ERRORS {
            let _ = writeln!(log, "line {line_no}: {why}");
        }
    };
    loop {
        buf.clear();
        let read = std::io::Read::take(&mut reader, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("reading {}: {e}", opts.file.display()))?;
        if read == 0 {
            break;
        }
        line_no += 1;
        bytes_read += read as u64;
        if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
            // Skip the rest of the over-long line without holding it.
            let mut rest = 0u64;
            loop {
                let chunk = reader.fill_buf().map_err(|e| format!("reading {}: {e}", opts.file.display()))?;
                if chunk.is_empty() {
                    break;
                }
                match chunk.iter().position(|b| *b == b'\n') {
                    Some(at) => {
                        reader.consume(at + 1);
                        rest += at as u64 + 1;
                        break;
                    }
                    None => {
                        let n = chunk.len();
                        reader.consume(n);
                        rest += n as u64;
                    }
                }
            }
            bytes_read += rest;
            summary.lines += 1;
            fail(&mut summary, log, line_no, format!("line longer than {MAX_LINE} bytes"));
            continue;
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t.trim(),
            Err(_) => {
                summary.lines += 1;
                fail(&mut summary, log, line_no, "not UTF-8".to_owned());
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        summary.lines += 1;
        let user = match parse_line(text, now) {
            Ok(user) => user,
            Err(why) => {
                fail(&mut summary, log, line_no, why);
                continue;
            }
        };
        if taken.ids.contains(&user.id) {
            summary.skipped += 1;
            continue;
        }
        if let Some(why) = taken.conflict(&user) {
            fail(&mut summary, log, line_no, why);
            continue;
        }
        ops.push(users.put(user.id.as_bytes().to_vec(), &user).map_err(|e| e.to_string())?);
        if !user.email.is_empty() {
            ops.push(by_email.put(user.email.as_bytes(), &user.id).map_err(|e| e.to_string())?);
        }
        if !user.phone.is_empty() {
            ops.push(by_phone.put(user.phone.as_bytes(), &user.id).map_err(|e| e.to_string())?);
        }
        taken.add(&user);
        in_batch += 1;
        if in_batch >= BATCH {
            store.apply(std::mem::take(&mut ops)).map_err(|e| format!("writing users: {e}"))?;
            summary.imported += in_batch as u64;
            in_batch = 0;
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            progress(log, &summary, line_no, bytes_read, total_bytes, started);
        }
    }
    if in_batch > 0 {
        store.apply(ops).map_err(|e| format!("writing users: {e}"))?;
        summary.imported += in_batch as u64;
    }
    if summary.failed > MAX_SHOWN_ERRORS {
        let _ = writeln!(log, "... and {} more line errors", summary.failed - MAX_SHOWN_ERRORS);
    }
    let _ = writeln!(log, "import: {line_no} lines read in {:.1} s; syncing to disk", started.elapsed().as_secs_f64());
    store.flush().await.map_err(|e| format!("syncing the database: {e}"))?;
    Ok(summary)
}

fn progress(log: &mut dyn Write, s: &Summary, line_no: u64, bytes: u64, total: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let pct = if total > 0 { bytes as f64 * 100.0 / total as f64 } else { 0.0 };
    let _ = writeln!(
        log,
        "import: {pct:5.1}%  line {line_no}: {} imported, {} skipped, {} failed ({:.0} lines/s)",
        s.imported,
        s.skipped,
        s.failed,
        line_no as f64 / secs
    );
}

/// One line as exported: `auth.users` columns (`raw_app_meta_data`, `email_change`, …) or the
/// admin API's names (`app_metadata`, `new_email`, …). Unknown fields are ignored.
#[derive(Deserialize)]
struct Line {
    id: Option<String>,
    aud: Option<String>,
    role: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    encrypted_password: Option<String>,
    email_confirmed_at: Option<String>,
    phone_confirmed_at: Option<String>,
    invited_at: Option<String>,
    confirmation_sent_at: Option<String>,
    recovery_sent_at: Option<String>,
    email_change: Option<String>,
    new_email: Option<String>,
    email_change_sent_at: Option<String>,
    phone_change: Option<String>,
    new_phone: Option<String>,
    phone_change_sent_at: Option<String>,
    reauthentication_sent_at: Option<String>,
    last_sign_in_at: Option<String>,
    raw_app_meta_data: Option<Value>,
    app_metadata: Option<Value>,
    raw_user_meta_data: Option<Value>,
    user_metadata: Option<Value>,
    identities: Option<Vec<LineIdentity>>,
    created_at: Option<String>,
    updated_at: Option<String>,
    banned_until: Option<String>,
    deleted_at: Option<String>,
    is_anonymous: Option<bool>,
    is_sso_user: Option<bool>,
}

/// An identity: the admin API's shape (`identity_id` = row id, `id` = provider subject) or the
/// `auth.identities` row (`id` = row id, `provider_id` = subject).
#[derive(Deserialize)]
struct LineIdentity {
    id: Option<String>,
    identity_id: Option<String>,
    provider_id: Option<String>,
    user_id: Option<String>,
    provider: Option<String>,
    identity_data: Option<Value>,
    email: Option<String>,
    last_sign_in_at: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

/// serde_json's message without its " at line 1 column N" (the line is ours to number).
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = text.rsplit_once(" at line ").map_or(text.as_str(), |(m, _)| m);
    format!("invalid JSON (column {}): {message}", e.column())
}

fn parse_line(text: &str, now: Timestamp) -> Result<User, String> {
    let line: Line = serde_json::from_str(text).map_err(|e| json_error(&e))?;
    let id = parse_uuid("id", line.id.as_deref())?.ok_or("missing \"id\"")?;
    let email = line.email.as_deref().map(|e| e.trim().to_lowercase()).unwrap_or_default();
    if !email.is_empty() && (!email.contains('@') || email.len() > 255) {
        return Err(format!("invalid email {email:?}"));
    }
    let phone = normalize_phone(line.phone.as_deref())?;
    let encrypted_password = match line.encrypted_password.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
        None => None,
        Some(hash) => {
            check_imported_hash(hash).map_err(|e| format!("encrypted_password: {}", e.msg))?;
            Some(hash.to_owned())
        }
    };
    let ts = |field: &'static str, v: &Option<String>| parse_ts(field, v.as_deref());
    let created_at = ts("created_at", &line.created_at)?.unwrap_or(now);
    let email_confirmed_at = ts("email_confirmed_at", &line.email_confirmed_at)?;
    let phone_confirmed_at = ts("phone_confirmed_at", &line.phone_confirmed_at)?;
    let app_metadata = metadata("raw_app_meta_data", line.raw_app_meta_data.or(line.app_metadata))?;
    let user_metadata = metadata("raw_user_meta_data", line.raw_user_meta_data.or(line.user_metadata))?;
    let identities = match line.identities {
        // No identities given: the email/phone identities GoTrue has for such a user.
        None => {
            let mut list = Vec::new();
            if !email.is_empty() {
                list.push(Identity::for_address(id, "email", &email, email_confirmed_at.is_some(), created_at));
            }
            if !phone.is_empty() {
                list.push(Identity::for_address(id, "phone", &phone, phone_confirmed_at.is_some(), created_at));
            }
            list
        }
        Some(given) => {
            let mut list: Vec<Identity> = Vec::with_capacity(given.len());
            for (n, i) in given.into_iter().enumerate() {
                let identity = parse_identity(id, i, created_at).map_err(|why| format!("identities[{n}]: {why}"))?;
                if list.iter().any(|o| o.provider == identity.provider && o.provider_id == identity.provider_id) {
                    return Err(format!(
                        "identities[{n}]: {}/{} appears twice",
                        identity.provider, identity.provider_id
                    ));
                }
                list.push(identity);
            }
            list
        }
    };
    Ok(User {
        id,
        aud: line.aud.filter(|a| !a.is_empty()).unwrap_or_else(|| "authenticated".into()),
        role: line.role.filter(|r| !r.is_empty()).unwrap_or_else(|| "authenticated".into()),
        email,
        phone,
        encrypted_password,
        email_confirmed_at,
        phone_confirmed_at,
        invited_at: ts("invited_at", &line.invited_at)?,
        confirmation_sent_at: ts("confirmation_sent_at", &line.confirmation_sent_at)?,
        recovery_sent_at: ts("recovery_sent_at", &line.recovery_sent_at)?,
        new_email: line.email_change.or(line.new_email).unwrap_or_default().trim().to_lowercase(),
        email_change_sent_at: ts("email_change_sent_at", &line.email_change_sent_at)?,
        new_phone: normalize_phone(line.phone_change.or(line.new_phone).as_deref())?,
        phone_change_sent_at: ts("phone_change_sent_at", &line.phone_change_sent_at)?,
        reauthentication_sent_at: ts("reauthentication_sent_at", &line.reauthentication_sent_at)?,
        last_sign_in_at: ts("last_sign_in_at", &line.last_sign_in_at)?,
        app_metadata,
        user_metadata,
        identities,
        created_at,
        updated_at: ts("updated_at", &line.updated_at)?.unwrap_or(created_at),
        banned_until: ts("banned_until", &line.banned_until)?,
        deleted_at: ts("deleted_at", &line.deleted_at)?,
        is_anonymous: line.is_anonymous.unwrap_or(false),
        is_sso_user: line.is_sso_user.unwrap_or(false),
        factors: Vec::new(),
    })
}

fn parse_identity(user_id: Uuid, i: LineIdentity, user_created: Timestamp) -> Result<Identity, String> {
    let provider = i.provider.filter(|p| !p.is_empty()).ok_or("missing \"provider\"")?;
    // A row has `provider_id` (and `id` is the row's uuid); the API shape has `id` = subject.
    let (provider_id, row_id) = match i.provider_id {
        Some(subject) => (subject, i.id.or(i.identity_id)),
        None => (i.id.ok_or("missing \"id\" (provider subject) or \"provider_id\"")?, i.identity_id),
    };
    if provider_id.is_empty() {
        return Err("empty provider_id".into());
    }
    if let Some(owner) = parse_uuid("user_id", i.user_id.as_deref())? {
        if owner != user_id {
            return Err(format!("user_id {owner} is not the user's id"));
        }
    }
    let data = metadata("identity_data", i.identity_data)?;
    let email = match i.email.filter(|e| !e.is_empty()) {
        Some(e) => e,
        None => data.to_map().get("email").and_then(Value::as_str).unwrap_or_default().to_owned(),
    };
    let created_at = parse_ts("created_at", i.created_at.as_deref())?.unwrap_or(user_created);
    Ok(Identity {
        id: parse_uuid("identity_id", row_id.as_deref())?.unwrap_or_else(Uuid::new_v4),
        provider_id,
        provider,
        identity_data: data,
        email: email.trim().to_lowercase(),
        last_sign_in_at: parse_ts("last_sign_in_at", i.last_sign_in_at.as_deref())?,
        created_at,
        updated_at: parse_ts("updated_at", i.updated_at.as_deref())?.unwrap_or(created_at),
    })
}

fn parse_uuid(field: &str, v: Option<&str>) -> Result<Option<Uuid>, String> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => Uuid::parse_str(s).map(Some).map_err(|_| format!("{field}: not a UUID: {s:?}")),
    }
}

/// Digits only, without `+` (as stored); empty stays empty.
fn normalize_phone(v: Option<&str>) -> Result<String, String> {
    let phone = v.unwrap_or_default().trim();
    let phone = phone.strip_prefix('+').unwrap_or(phone);
    if phone.is_empty() || (phone.len() <= 15 && phone.bytes().all(|b| b.is_ascii_digit())) {
        Ok(phone.to_owned())
    } else {
        Err(format!("invalid phone {phone:?} (E.164 digits expected)"))
    }
}

/// A JSON object (or null / absent: `{}`) as stored text.
fn metadata(field: &str, v: Option<Value>) -> Result<JsonText, String> {
    match v {
        None | Some(Value::Null) => Ok(JsonText::empty()),
        Some(Value::Object(map)) => Ok(JsonText(Value::Object(map).to_string())),
        Some(_) => Err(format!("{field} must be a JSON object")),
    }
}

/// RFC 3339 (`2024-05-01T10:11:12.123456Z`) or Postgres text (`2024-05-01 10:11:12.123456+00`).
fn parse_ts(field: &str, v: Option<&str>) -> Result<Option<Timestamp>, String> {
    let Some(raw) = v.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
    let mut s = raw.replacen(' ', "T", 1);
    // Postgres writes a whole-hour offset as `+00`; RFC 3339 wants `+00:00`.
    if let Some(at) = s.rfind(['+', '-']) {
        if at > 10 && s.len() - at == 3 {
            s.push_str(":00");
        }
    }
    let t = time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("{field}: not a timestamp: {raw:?}"))?;
    let micros = t.unix_timestamp_nanos() / 1000;
    i64::try_from(micros).map(|m| Some(Timestamp(m))).map_err(|_| format!("{field}: out of range: {raw:?}"))
}

/// The binary's entry point: prints progress and line errors on stderr, the summary on stdout.
/// Exit 0 when every line was imported or skipped, 1 when some lines failed (the others are
/// in), 2 when the import could not run (file, database).
pub async fn command(file: &Path, data_dir: &Path, cache_mb: u64) -> std::process::ExitCode {
    let opts = Options { file: file.to_owned(), data_dir: data_dir.to_owned(), cache_bytes: cache_mb * 1024 * 1024 };
    let started = Instant::now();
    let mut stderr = std::io::stderr();
    let outcome = run(&opts, &mut stderr).await.map(|s| {
        println!(
            "imported {} users, skipped {} (id already present), failed {} — {} lines from {} into {} in {:.1} s",
            s.imported,
            s.skipped,
            s.failed,
            s.lines,
            file.display(),
            data_dir.join("db").display(),
            started.elapsed().as_secs_f64()
        );
        s.failed
    });
    batch_exit(outcome)
}

/// The exit status of the offline batch commands (import, migrate): 0 when every item was done or
/// skipped, 1 when some failed (the others are in), 2 when the command could not run (the reason
/// goes to stderr).
pub(crate) fn batch_exit(outcome: Result<u64, String>) -> std::process::ExitCode {
    match outcome {
        Ok(0) => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("ferrotrue: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_both_export_styles() {
        let a = parse_ts("t", Some("2024-01-01 00:00:01.5+00")).unwrap().unwrap();
        let b = parse_ts("t", Some("2024-01-01T00:00:01.500000Z")).unwrap().unwrap();
        let c = parse_ts("t", Some("2024-01-01T02:00:01.5+02:00")).unwrap().unwrap();
        assert_eq!((a, b), (c, c));
        assert_eq!(a.0, 1_704_067_201_500_000);
        assert!(parse_ts("t", Some("yesterday")).is_err());
        assert_eq!(parse_ts("t", None).unwrap(), None);
    }

    #[test]
    fn both_identity_shapes() {
        let uid = Uuid::new_v4();
        let row = format!(
            r#"{{"id":"{uid}","email":"A@x.io","identities":[
                {{"id":"{}","provider_id":"42","provider":"github","identity_data":{{"email":"gh@x.io"}}}},
                {{"identity_id":"{}","id":"{uid}","provider":"email","user_id":"{uid}"}}]}}"#,
            Uuid::new_v4(),
            Uuid::new_v4()
        )
        .replace('\n', "");
        let user = parse_line(&row, Timestamp(0)).unwrap();
        assert_eq!(user.email, "a@x.io");
        assert_eq!(user.identities[0].provider_id, "42");
        assert_eq!(user.identities[0].email, "gh@x.io");
        assert_eq!(user.identities[1].provider_id, uid.to_string());
        let wrong_owner = row.replace(&format!(r#""user_id":"{uid}""#), &format!(r#""user_id":"{}""#, Uuid::new_v4()));
        assert!(parse_line(&wrong_owner, Timestamp(0)).unwrap_err().contains("identities[1]"));
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        for bad in ["{", "[]", "null", "{\"id\":5}", "{\"email\":\"a@b.c\"}", "{\"id\":\"nope\"}"] {
            assert!(parse_line(bad, Timestamp(0)).is_err(), "{bad}");
        }
        let uid = Uuid::new_v4();
        let err = parse_line(&format!(r#"{{"id":"{uid}","encrypted_password":"plain"}}"#), Timestamp(0)).unwrap_err();
        assert!(err.starts_with("encrypted_password"), "{err}");
        let err = parse_line(&format!(r#"{{"id":"{uid}","raw_user_meta_data":[1]}}"#), Timestamp(0)).unwrap_err();
        assert!(err.contains("object"), "{err}");
    }
}
