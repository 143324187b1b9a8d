//! `GOTRUE_DB_*`: which database backend, and how to reach Postgres.
//!
//! GoTrue's names: `GOTRUE_DB_DRIVER` (`postgres`/`postgresql`), `GOTRUE_DB_DATABASE_URL` (or
//! `DATABASE_URL`), `GOTRUE_DB_NAMESPACE` (default `auth`; GoTrue's own spelling
//! `GOTRUE_DB_DB_NAMESPACE` and `DB_NAMESPACE` are read too), `GOTRUE_DB_MAX_POOL_SIZE` (0 = no
//! limit in GoTrue; ferrotrue bounds the pool at 4 × cores then). No driver and no URL: the sled
//! data directory, as always. A URL alone selects Postgres, as GoTrue derives the driver from it.
//!
//! Postgres selected, the server serves from it (`lib.rs::open_storage`): GoTrue's schema is
//! created or attached to at start-up, and `ferrotrue db migrate|check` use the same settings.

use ferrotrue_actors::pg::{default_max_pool_size, valid_namespace, ConnectOptions, PgSettings};
use std::collections::HashMap;

/// Variables GoTrue reads and ferrotrue ignores, with the reason (printed by `ferrotrue db`).
const IGNORED: &[(&str, &str)] = &[
    ("GOTRUE_DB_MIGRATIONS_PATH", "ferrotrue's migrations are built into the binary"),
    ("GOTRUE_DB_CONN_PERCENTAGE", "use GOTRUE_DB_MAX_POOL_SIZE"),
    ("GOTRUE_DB_MAX_IDLE_POOL_SIZE", "idle connections are kept up to GOTRUE_DB_MAX_POOL_SIZE"),
    ("GOTRUE_DB_CONN_MAX_LIFETIME", "not implemented"),
    ("GOTRUE_DB_CONN_MAX_IDLE_TIME", "not implemented"),
    ("GOTRUE_DB_HEALTH_CHECK_PERIOD", "not implemented"),
    ("GOTRUE_DB_CLEANUP_ENABLED", "not implemented"),
];

fn raw<'a>(vars: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The Postgres settings when the environment selects Postgres, `None` for sled; `Err` lists
/// every bad variable (never echoing a URL: it usually holds a password).
pub fn read(vars: &HashMap<String, String>) -> Result<Option<PgSettings>, Vec<String>> {
    let mut errors = Vec::new();
    let url_var = ["GOTRUE_DB_DATABASE_URL", "DATABASE_URL"].into_iter().find(|n| raw(vars, n).is_some());
    let url = url_var.and_then(|n| raw(vars, n));
    match raw(vars, "GOTRUE_DB_DRIVER") {
        None | Some("postgres" | "postgresql") => {}
        Some(other) => errors.push(format!(
            "GOTRUE_DB_DRIVER={other:?} is not supported: ferrotrue speaks postgres (or leave it unset to use the \
             sled data directory)"
        )),
    }
    let (Some(url_var), Some(url)) = (url_var, url) else {
        if raw(vars, "GOTRUE_DB_DRIVER").is_some() && errors.is_empty() {
            errors.push("GOTRUE_DB_DRIVER=postgres needs GOTRUE_DB_DATABASE_URL (or DATABASE_URL)".into());
        }
        return if errors.is_empty() { Ok(None) } else { Err(errors) };
    };
    if let Err(e) = ConnectOptions::parse(url) {
        errors.push(format!("{url_var}: {e}"));
    }
    let (ns_var, namespace) = ["GOTRUE_DB_NAMESPACE", "GOTRUE_DB_DB_NAMESPACE", "DB_NAMESPACE"]
        .into_iter()
        .find_map(|n| raw(vars, n).map(|v| (n, v)))
        .unwrap_or(("GOTRUE_DB_NAMESPACE", "auth"));
    if !valid_namespace(namespace) {
        errors.push(format!(
            "{ns_var}={namespace:?} is not a schema name ferrotrue accepts: lower-case letters, digits and _, not \
             starting with a digit or pg_, at most 53 characters (ferrotrue adds `_ferrotrue` for its own schema)"
        ));
    }
    let max_pool_size = match raw(vars, "GOTRUE_DB_MAX_POOL_SIZE") {
        None => default_max_pool_size(),
        Some(v) => match v.parse::<usize>() {
            Ok(0) => default_max_pool_size(),
            Ok(n) if n <= 10_000 => n,
            _ => {
                errors.push(format!("GOTRUE_DB_MAX_POOL_SIZE={v:?} is not a number between 0 and 10000"));
                0
            }
        },
    };
    if errors.is_empty() {
        Ok(Some(PgSettings { url: url.to_owned(), namespace: namespace.to_owned(), max_pool_size }))
    } else {
        Err(errors)
    }
}

/// Notes about GoTrue database variables that are set but ignored.
pub fn notes(vars: &HashMap<String, String>) -> Vec<String> {
    IGNORED
        .iter()
        .filter(|(name, _)| raw(vars, name).is_some())
        .map(|(name, why)| format!("{name} is ignored: {why}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vars_for_tests as vars;

    const URL: &str = "postgres://supabase_auth_admin:s3cret@db.example:5432/postgres?sslmode=require";

    #[test]
    fn nothing_set_is_sled() {
        assert!(read(&vars(&[])).unwrap().is_none());
        assert!(read(&vars(&[("GOTRUE_DB_NAMESPACE", "auth")])).unwrap().is_none());
    }

    #[test]
    fn gotrue_names_are_read() {
        let s = read(&vars(&[
            ("GOTRUE_DB_DRIVER", "postgres"),
            ("GOTRUE_DB_DATABASE_URL", URL),
            ("GOTRUE_DB_NAMESPACE", "my_auth"),
            ("GOTRUE_DB_MAX_POOL_SIZE", "7"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((s.url.as_str(), s.namespace.as_str(), s.max_pool_size), (URL, "my_auth", 7));
        // DATABASE_URL alone selects Postgres; defaults: namespace auth, a bounded pool.
        let s = read(&vars(&[("DATABASE_URL", URL)])).unwrap().unwrap();
        assert_eq!(s.namespace, "auth");
        assert_eq!(s.max_pool_size, default_max_pool_size());
        assert!(s.max_pool_size >= 4);
        let s = read(&vars(&[("GOTRUE_DB_DRIVER", "postgresql"), ("DATABASE_URL", URL), ("DB_NAMESPACE", "a2")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.namespace, "a2");
        let s = read(&vars(&[("DATABASE_URL", URL), ("GOTRUE_DB_MAX_POOL_SIZE", "0")])).unwrap().unwrap();
        assert_eq!(s.max_pool_size, default_max_pool_size(), "0 is GoTrue's 'no limit': bounded here");
        // GOTRUE_DB_DATABASE_URL wins over DATABASE_URL.
        let s =
            read(&vars(&[("DATABASE_URL", "postgres://other@h/d"), ("GOTRUE_DB_DATABASE_URL", URL)])).unwrap().unwrap();
        assert_eq!(s.url, URL);
    }

    #[test]
    fn bad_values_are_named_without_the_password() {
        let err = |pairs: &[(&str, &str)]| read(&vars(pairs)).unwrap_err().join("\n");
        let e = err(&[("GOTRUE_DB_DRIVER", "mysql"), ("DATABASE_URL", URL)]);
        assert!(e.contains("GOTRUE_DB_DRIVER=\"mysql\" is not supported"), "{e}");
        let e = err(&[("GOTRUE_DB_DRIVER", "postgres")]);
        assert!(e.contains("needs GOTRUE_DB_DATABASE_URL"), "{e}");
        for (url, why) in [
            ("mysql://root:s3cret@h/d", "not a postgres:// URL"),
            ("postgres://u:s3cret@h/d?sslmode=maybe", "sslmode"),
            ("postgres://u:s3cret@h:notaport/d", "not a valid"),
        ] {
            let e = err(&[("GOTRUE_DB_DATABASE_URL", url)]);
            assert!(e.starts_with("GOTRUE_DB_DATABASE_URL: ") && e.contains(why), "{url}: {e}");
            assert!(!e.contains("s3cret"), "{url}: {e}");
        }
        let e = err(&[("DATABASE_URL", URL), ("GOTRUE_DB_NAMESPACE", "Auth; drop table users")]);
        assert!(e.contains("GOTRUE_DB_NAMESPACE=") && e.contains("not a schema name"), "{e}");
        let e = err(&[("DATABASE_URL", URL), ("GOTRUE_DB_MAX_POOL_SIZE", "lots")]);
        assert!(e.contains("GOTRUE_DB_MAX_POOL_SIZE=\"lots\""), "{e}");
        let e = err(&[("GOTRUE_DB_DRIVER", "sqlite"), ("DATABASE_URL", URL), ("GOTRUE_DB_MAX_POOL_SIZE", "-1")]);
        assert_eq!(e.lines().count(), 2, "every bad variable: {e}");
    }

    #[test]
    fn ignored_variables_are_noted() {
        let v = vars(&[("DATABASE_URL", URL), ("GOTRUE_DB_MIGRATIONS_PATH", "./migrations")]);
        assert_eq!(
            notes(&v),
            vec!["GOTRUE_DB_MIGRATIONS_PATH is ignored: ferrotrue's migrations are built into the binary"]
        );
    }
}
