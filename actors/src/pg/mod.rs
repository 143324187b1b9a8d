//! Postgres: connection settings, the connection pool (tokio-postgres + deadpool-postgres, TLS
//! through rustls on the aws-lc-rs provider the rest of the tree uses) and GoTrue's schema
//! ([`schema`]). Issue 12 builds the Postgres storage backend on this; today it serves
//! `ferrotrue db migrate|check` and the tests.
//!
//! Errors never contain the database URL (it usually holds a password): only its host, port,
//! database and user.

pub mod flows;
pub mod otps;
pub mod schema;
pub mod sessions;
pub mod testing;
pub mod types;
pub mod users;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use schema::{MigrateOutcome, SchemaState};

/// How long connecting (TCP + TLS + authentication) and waiting for a pooled connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server (or `ferrotrue db`) needs to reach the database.
#[derive(Clone)]
pub struct PgSettings {
    /// `GOTRUE_DB_DATABASE_URL` / `DATABASE_URL`, already checked by [`ConnectOptions::parse`].
    pub url: String,
    /// `GOTRUE_DB_NAMESPACE` (default `auth`): the schema holding GoTrue's tables. A validated
    /// identifier ([`valid_namespace`]), so it is written into SQL as is.
    pub namespace: String,
    /// Upper bound on open connections per process.
    pub max_pool_size: usize,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = ConnectOptions::parse(&self.url).map(|o| o.describe()).unwrap_or_else(|_| "?".into());
        f.debug_struct("PgSettings")
            .field("url", &target)
            .field("namespace", &self.namespace)
            .field("max_pool_size", &self.max_pool_size)
            .finish()
    }
}

/// The pool bound when `GOTRUE_DB_MAX_POOL_SIZE` is unset or 0 (GoTrue: no limit): deadpool's
/// own default, four connections per core.
pub fn default_max_pool_size() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get()) * 4
}

/// A schema name we write into SQL unquoted: lower-case ASCII letters, digits and `_`, not
/// starting with a digit, at most 53 bytes (Postgres' limit of 63, less the `_ferrotrue` of
/// [`schema::side_schema`]), not `pg_…` (reserved).
pub fn valid_namespace(ns: &str) -> bool {
    let mut chars = ns.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && ns.len() <= 53
        && !ns.starts_with("pg_")
}

/// libpq's `sslmode`, as far as ferrotrue supports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked (libpq's
    /// default and meaning).
    Prefer,
    /// TLS or nothing; the certificate is not checked (libpq's meaning: encryption against
    /// passive listeners only).
    Require,
    /// TLS, the certificate chain verified (system roots, or `sslrootcert`) and the host name
    /// matched against it.
    VerifyFull,
}

/// A database URL taken apart: tokio-postgres' config plus the TLS parameters it does not know.
pub struct ConnectOptions {
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    /// `sslrootcert`: PEM file of the CA(s) to trust for `verify-full`.
    pub root_cert: Option<PathBuf>,
}

impl ConnectOptions {
    /// Parses a `postgres://` / `postgresql://` URL (or a libpq `key=value` string). The error
    /// says what is wrong without repeating the URL.
    pub fn parse(url: &str) -> Result<ConnectOptions, String> {
        let url = url.trim();
        // Set from the URL's query; `None` for the key=value form, where tokio-postgres reads it.
        let mut ssl_mode = None;
        let mut root_cert = None;
        let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut parsed = url::Url::parse(url).map_err(|e| format!("not a valid URL ({e})"))?;
            let mut kept = Vec::new();
            for (k, v) in parsed.query_pairs() {
                match &*k {
                    "sslmode" => ssl_mode = Some(parse_ssl_mode(&v)?),
                    "sslrootcert" => root_cert = Some(PathBuf::from(v.into_owned())),
                    "sslcert" | "sslkey" | "sslpassword" => {
                        return Err(format!("{k} (TLS client certificates) is not supported"))
                    }
                    _ => kept.push((k.into_owned(), v.into_owned())),
                }
            }
            if kept.is_empty() {
                parsed.set_query(None);
            } else {
                parsed.query_pairs_mut().clear().extend_pairs(kept);
            }
            parsed.to_string()
        } else if url.contains('=') {
            // libpq key=value form: tokio-postgres reads it, sslmode included (disable, prefer,
            // require); verify-full needs the URL form.
            url.to_owned()
        } else {
            return Err("not a postgres:// URL".into());
        };
        let mut config =
            tokio_postgres::Config::from_str(&rest).map_err(|e| format!("not a valid database URL ({e})"))?;
        if config.get_hosts().is_empty() {
            return Err("names no host".into());
        }
        if config.get_user().is_none_or(str::is_empty) {
            return Err("names no user".into());
        }
        let ssl_mode = match (ssl_mode, url.contains("://")) {
            (Some(mode), _) => mode,
            (None, true) => SslMode::Prefer, // libpq's default
            (None, false) => match config.get_ssl_mode() {
                tokio_postgres::config::SslMode::Disable => SslMode::Disable,
                tokio_postgres::config::SslMode::Prefer => SslMode::Prefer,
                _ => SslMode::Require,
            },
        };
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("ferrotrue");
        }
        Ok(ConnectOptions { config, ssl_mode, root_cert })
    }

    /// `user@host:port/dbname`, for messages (never the password).
    pub fn describe(&self) -> String {
        let c = &self.config;
        let host = match c.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "?".into(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        format!("{}@{host}:{port}/{}", c.get_user().unwrap_or("?"), c.get_dbname().unwrap_or("?"))
    }

    /// The rustls client configuration for this sslmode (unused with `disable`).
    fn tls(&self) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        Ok(match (self.ssl_mode, &self.root_cert) {
            (SslMode::VerifyFull, Some(path)) => {
                use rustls::pki_types::pem::PemObject;
                let mut roots = rustls::RootCertStore::empty();
                let certs =
                    CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                    roots.add(cert).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("sslrootcert {}: no certificate in it", path.display()));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            (SslMode::VerifyFull, None) => {
                let verifier = rustls_platform_verifier::Verifier::new(provider)
                    .map_err(|e| format!("cannot load the system's root certificates: {e}"))?;
                builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
            }
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth(),
        })
    }
}

fn parse_ssl_mode(v: &str) -> Result<SslMode, String> {
    match v {
        "disable" => Ok(SslMode::Disable),
        "prefer" => Ok(SslMode::Prefer),
        "require" => Ok(SslMode::Require),
        "verify-full" => Ok(SslMode::VerifyFull),
        "allow" | "verify-ca" => {
            Err(format!("sslmode={v} is not supported (use disable, prefer, require or verify-full)"))
        }
        other => Err(format!("sslmode={other:?} is not an sslmode (disable, prefer, require, verify-full)")),
    }
}

/// `sslmode=prefer|require`: the connection is encrypted, the server's certificate is not
/// checked (what libpq does in these modes). The handshake signatures are still verified, so
/// the peer holds the key of the certificate it shows.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why talking to the database failed. The messages are for operators and never hold the URL.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL or another setting is unusable.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached, refused the login, or TLS failed.
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    /// The schema is not one ferrotrue can use as it is.
    #[error("{0}")]
    Schema(String),
    /// A statement failed.
    #[error("database error: {0}")]
    Query(String),
}

/// An error and its causes on one line (tokio-postgres' top-level messages are terse: "error
/// connecting to server"; the cause says which).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        source = s.source();
    }
    out
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => PgError::Query(format!("{} ({})", db.message(), db.code().code())),
            None => PgError::Query(error_chain(&e)),
        }
    }
}

/// A pool of connections to one database, and the namespace of GoTrue's schema in it.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    namespace: String,
    target: String,
}

impl Db {
    /// Builds the pool and opens one connection, so a bad URL, password, TLS setting or an
    /// unreachable server is reported now, with its reason.
    pub async fn connect(settings: &PgSettings) -> Result<Db, PgError> {
        if !valid_namespace(&settings.namespace) {
            return Err(PgError::Config(format!(
                "namespace {:?} is not a plain lower-case identifier",
                settings.namespace
            )));
        }
        let options =
            ConnectOptions::parse(&settings.url).map_err(|e| PgError::Config(format!("database URL: {e}")))?;
        let target = options.describe();
        let tls = MakeRustlsConnect::new(options.tls().map_err(PgError::Config)?);
        let manager =
            Manager::from_config(options.config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(settings.max_pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| PgError::Config(format!("connection pool: {e}")))?;
        let db = Db { pool, namespace: settings.namespace.clone(), target };
        let _first = db.client().await?;
        Ok(db)
    }

    /// A pooled connection.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, PgError> {
        self.pool.get().await.map_err(|e| {
            let reason = match &e {
                deadpool_postgres::PoolError::Backend(be) => error_chain(be),
                deadpool_postgres::PoolError::Timeout(_) => {
                    format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())
                }
                other => error_chain(other),
            };
            PgError::Connect { target: self.target.clone(), reason }
        })
    }

    /// Connections of this node's pool: `(open, idle, callers waiting for one)`.
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let s = self.pool.status();
        (s.size, s.available, s.waiting)
    }

    /// The schema holding GoTrue's tables.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `user@host:port/dbname`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Brings the schema to what ferrotrue needs (see [`schema::migrate`]).
    pub async fn migrate(&self) -> Result<MigrateOutcome, PgError> {
        let mut client = self.client().await?;
        schema::migrate(&mut client, &self.namespace).await
    }

    /// True when ferrotrue's own schema (`<ns>_ferrotrue`) has every migration this build needs.
    pub async fn side_schema_current(&self) -> Result<bool, PgError> {
        let client = self.client().await?;
        schema::side_schema_current(&**client, &self.namespace).await
    }

    /// Reads the schema's state without changing anything (see [`schema::inspect`]).
    pub async fn inspect(&self) -> Result<SchemaState, PgError> {
        let client = self.client().await?;
        schema::inspect(&**client, &self.namespace).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for ok in ["auth", "_x", "auth2", "my_auth"] {
            assert!(valid_namespace(ok), "{ok}");
        }
        let long = "a".repeat(54);
        for bad in ["", "Auth", "2auth", "auth-x", "auth;drop", "a b", "pg_auth", "\"auth\"", long.as_str()] {
            assert!(!valid_namespace(bad), "{bad}");
        }
    }

    #[test]
    fn urls() {
        let o =
            ConnectOptions::parse("postgres://u:secret@db.example:6543/app?sslmode=verify-full&sslrootcert=/ca.pem")
                .unwrap();
        assert_eq!(o.ssl_mode, SslMode::VerifyFull);
        assert_eq!(o.root_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(o.describe(), "u@db.example:6543/app");
        assert_eq!(o.config.get_application_name(), Some("ferrotrue"));
        let o = ConnectOptions::parse("postgresql://u@h/d").unwrap();
        assert_eq!(o.ssl_mode, SslMode::Prefer, "libpq's default");
        let o = ConnectOptions::parse("host=h user=u dbname=d sslmode=disable").unwrap();
        assert_eq!(o.config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
        for (bad, why) in [
            ("mysql://u@h/d", "not a postgres:// URL"),
            ("postgres://u:secret@h/d?sslmode=verify-ca", "verify-ca"),
            ("postgres://u:secret@h/d?sslmode=sometimes", "is not an sslmode"),
            ("postgres://u:secret@h/d?sslcert=/c.pem", "client certificates"),
            ("postgres://u:secret@h/d?bogus=1", "not a valid database URL"),
            ("postgres://:secret@h/d", "names no user"),
            ("postgres://u:secret@/d", "empty host"),
        ] {
            let err = ConnectOptions::parse(bad).err().unwrap_or_default();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("secret"), "{bad}: the password leaked: {err}");
        }
    }
}
