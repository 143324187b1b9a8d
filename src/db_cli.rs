//! `ferrotrue db migrate|check`: GoTrue's schema in the database named by `GOTRUE_DB_*` (or
//! `--url`). Exit codes: 0 done / current, 1 the database refused or is not usable as it is,
//! 2 the configuration is wrong.

use ferrotrue_actors::pg::{schema, Db, MigrateOutcome, PgSettings, SchemaState};
use std::collections::HashMap;
use std::process::ExitCode;

/// Which `ferrotrue db` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbAction {
    Migrate,
    Check,
}

fn settings(vars: &HashMap<String, String>, url: Option<&str>) -> Result<PgSettings, String> {
    let mut vars = vars.clone();
    if let Some(url) = url {
        vars.insert("GOTRUE_DB_DATABASE_URL".into(), url.to_owned());
    }
    match crate::config_db::read(&vars) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err("no database: set GOTRUE_DB_DATABASE_URL (or DATABASE_URL), or pass --url".into()),
        Err(errors) => Err(errors.join("\n")),
    }
}

/// Runs the command, printing the outcome on stdout and problems on stderr.
pub async fn run(action: DbAction, vars: &HashMap<String, String>, url: Option<&str>) -> ExitCode {
    let settings = match settings(vars, url) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ferrotrue: invalid configuration:\n{e}");
            return ExitCode::from(2);
        }
    };
    for note in crate::config_db::notes(vars) {
        eprintln!("note: {note}");
    }
    let db = match Db::connect(&settings).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("ferrotrue: {e}");
            return ExitCode::from(1);
        }
    };
    let (ns, target) = (db.namespace().to_owned(), db.target().to_owned());
    let latest = schema::LATEST_GOTRUE_VERSION;
    match action {
        DbAction::Migrate => match db.migrate().await {
            Ok(MigrateOutcome::Created) => {
                println!(
                    "created GoTrue's schema {ns:?} in {target} ({} GoTrue migrations recorded, up to {latest})",
                    schema::GOTRUE_MIGRATIONS.len()
                );
                ExitCode::SUCCESS
            }
            Ok(MigrateOutcome::AlreadyCurrent { newer }) => {
                println!(
                    "schema {ns:?} in {target} is current (GoTrue {latest}{}): nothing changed in it; ferrotrue's own \
                     schema {:?} is current",
                    newer_note(&newer),
                    schema::side_schema(&ns)
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ferrotrue: {e}");
                ExitCode::from(1)
            }
        },
        DbAction::Check => match db.inspect().await {
            Ok(SchemaState::Current { newer }) => {
                println!("schema {ns:?} in {target} is current (GoTrue {latest}{})", newer_note(&newer));
                match db.side_schema_current().await {
                    Ok(true) => {
                        println!("ferrotrue's own schema {:?} is current", schema::side_schema(&ns));
                        ExitCode::SUCCESS
                    }
                    Ok(false) => {
                        println!(
                            "ferrotrue's own schema {:?} is missing or older than this build: `ferrotrue db migrate` \
                             (or starting a node) brings it up to date without touching {ns:?}",
                            schema::side_schema(&ns)
                        );
                        ExitCode::from(1)
                    }
                    Err(e) => {
                        eprintln!("ferrotrue: {e}");
                        ExitCode::from(1)
                    }
                }
            }
            Ok(SchemaState::Empty) => {
                println!("schema {ns:?} in {target} does not exist yet: `ferrotrue db migrate` creates it");
                ExitCode::from(1)
            }
            Ok(state) => {
                eprintln!("ferrotrue: {}", schema::refusal(&ns, &state).unwrap_or_default());
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("ferrotrue: {e}");
                ExitCode::from(1)
            }
        },
    }
}

fn newer_note(newer: &[String]) -> String {
    match newer.last() {
        None => String::new(),
        Some(last) => format!("; {} newer GoTrue migration(s) recorded too, up to {last}", newer.len()),
    }
}
