//! ferrotrue: a wire-compatible Supabase Auth (GoTrue) server with embedded storage.
//!
//! # Layout
//! * [`config`] — `GOTRUE_*` / `FERROTRUE_*` environment → [`config::Config`].
//! * [`http`] — accept loop, router, request parsing, response and error rendering.
//! * [`handlers`] — one file per GoTrue endpoint family; each parses, calls one flow, renders.
//! * [`dto`] — GoTrue's JSON shapes.
//! * `ferrotrue-actors` (the `actors/` crate) — actors, flows, storage, errors.
//!
//! [`start`] takes an already-bound listener, so tests run real servers on port 0.

pub mod admin_cli;
pub mod config;
pub mod config_db;
pub mod config_hooks;
pub mod config_keys;
pub mod config_mfa;
pub mod config_oauth;
pub mod config_report;
pub mod config_security;
pub mod db_cli;
pub mod dto;
pub mod handlers;
pub mod http;
pub mod import;
pub mod metrics;
pub mod migrate_cli;
pub mod state;

use config::Config;
use ferrotrue_actors::clock::Clock;
use ferrotrue_actors::error::StoreError;
use ferrotrue_actors::storage::Store;
use ferrotrue_actors::{Actors, StartError, Storage};
use state::Ctx;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("cannot open the database at {0}: {1} (is another ferrotrue using this data directory?)")]
    Store(String, StoreError),
    #[error(transparent)]
    Actors(#[from] StartError),
    #[error("cannot read the listening address: {0}")]
    Listener(std::io::Error),
    #[error("{0}")]
    Template(String),
    #[error("Postgres: {0}")]
    Database(#[from] ferrotrue_actors::pg::PgError),
}

/// Resolves `GOTRUE_MAILER_TEMPLATES_*` (URL — absolute or relative to the site URL —, file path,
/// or inline text) and compiles every mail template, so a broken one stops start-up.
async fn load_templates(config: &mut Config) -> Result<(), StartupError> {
    for (name, source) in config.mail_template_sources.clone() {
        let var = format!("GOTRUE_MAILER_TEMPLATES_{}", name.to_uppercase());
        let text = if source.starts_with("http://") || source.starts_with("https://") {
            fetch_template(&var, &source).await?
        } else if std::path::Path::new(&source).is_file() {
            std::fs::read_to_string(&source)
                .map_err(|e| StartupError::Template(format!("{var}: cannot read {source}: {e}")))?
        } else if source.starts_with('/') && !source.contains("{{") {
            // GoTrue resolves a relative URL against the site URL.
            let url = format!("{}{source}", config.site_url.trim_end_matches('/'));
            fetch_template(&var, &url).await?
        } else if source.contains("{{") || source.contains('<') {
            source.clone()
        } else {
            return Err(StartupError::Template(format!(
                "{var}={source:?} is neither a URL, an existing file, nor template text"
            )));
        };
        config.settings.mail.templates.retain(|(n, _)| n != &name);
        config.settings.mail.templates.push((name, text));
    }
    let mail = &config.settings.mail;
    ferrotrue_actors::mailer::templates::Templates::compile(&mail.subjects, &mail.templates)
        .map(|_| ())
        .map_err(StartupError::Template)
}

async fn fetch_template(var: &str, url: &str) -> Result<String, StartupError> {
    let fail = |e: String| StartupError::Template(format!("{var}: cannot fetch {url}: {e}"));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let resp = client.get(url).send().await.map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    resp.text().await.map_err(|e| fail(e.to_string()))
}

/// A running server.
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Where `GET /metrics` answers, when metrics are enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Handles to its actors (tests use them to reach below HTTP).
    pub actors: Actors,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Graceful stop: stop accepting, drain, stop the actors, final flush, close sled.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Runs until `shutdown` resolves (or the supervisor gives up), then stops gracefully.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) {
        tokio::select! {
            () = shutdown => self.stop().await,
            // The server stopped by itself (supervisor gave up); it already cleaned up.
            _ = &mut self.task => {}
        }
    }
}

/// Opens storage, starts the actors and serves HTTP on `listener` in the background.
pub async fn start(listener: TcpListener, mut config: Config) -> Result<Server, StartupError> {
    let addr = listener.local_addr().map_err(StartupError::Listener)?;
    load_templates(&mut config).await?;
    let storage = open_storage(&config).await?;
    let store = match &storage {
        Storage::Sled(store) => Some(store.clone()),
        Storage::Postgres(_) => None,
    };
    let (actors, mut supervisor) = Actors::start(storage, config.settings.clone(), Clock::System).await?;
    let limits = Arc::new(http::limits::Limits::new(&config.limits));
    spawn_limit_sweeper(Arc::downgrade(&limits));
    let metrics = config.metrics.clone();
    let cx = Arc::new(Ctx { actors: actors.clone(), config: Arc::new(config), limits, ready: Default::default() });
    let metrics_addr = if metrics.enabled {
        let handle = crate::metrics::install().map_err(StartupError::Template)?;
        let bind = format!("{}:{}", metrics.host, metrics.port);
        let listener = TcpListener::bind(&bind)
            .await
            .map_err(|e| StartupError::Template(format!("OTEL_EXPORTER_PROMETHEUS_HOST/PORT {bind}: {e}")))?;
        let addr = listener.local_addr().map_err(StartupError::Listener)?;
        crate::metrics::serve(listener, handle, Arc::downgrade(&cx));
        tracing::info!("metrics on http://{addr}/metrics");
        Some(addr)
    } else {
        None
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            tokio::select! {
                _ = stop_rx => {}
                () = supervisor.stopped() => tracing::error!("the actor supervisor stopped; shutting down"),
            }
        };
        http::run(listener, cx, shutdown).await;
        supervisor.shutdown().await;
        if let Some(store) = store {
            if let Err(e) = store.flush().await {
                tracing::error!(error = %e, "final flush failed");
            }
        }
        tracing::info!("stopped");
    });
    Ok(Server { addr, metrics_addr, actors, stop: Some(stop_tx), task })
}

/// The configured storage: Postgres (connect, then create or attach to GoTrue's schema, under
/// an advisory lock so that nodes starting together agree), or the sled directory in the data
/// directory (created private, locked by this process).
async fn open_storage(config: &Config) -> Result<Storage, StartupError> {
    if let Some(pg) = &config.database {
        let db = ferrotrue_actors::pg::Db::connect(pg).await?;
        match db.migrate().await? {
            ferrotrue_actors::pg::MigrateOutcome::Created => {
                tracing::info!(target = db.target(), namespace = db.namespace(), "created GoTrue's schema")
            }
            ferrotrue_actors::pg::MigrateOutcome::AlreadyCurrent { newer } if !newer.is_empty() => tracing::info!(
                newer = ?newer,
                "the schema has migrations newer than this ferrotrue knows (a newer GoTrue ran here); attaching"
            ),
            ferrotrue_actors::pg::MigrateOutcome::AlreadyCurrent { .. } => {}
        }
        return Ok(Storage::Postgres(db));
    }
    config::create_private_dir(&config.data_dir)
        .map_err(|e| StartupError::DataDir(config.data_dir.display().to_string(), e))?;
    warn_if_open(&config.data_dir);
    let db_path = config.db_path();
    config::create_private_dir(&db_path).map_err(|e| StartupError::DataDir(db_path.display().to_string(), e))?;
    let store = Store::open_when_free(&db_path, config.cache_bytes, config.durability)
        .await
        .map_err(|e| StartupError::Store(db_path.display().to_string(), e))?;
    restrict_database_files(&db_path);
    Ok(Storage::Sled(store))
}

/// Warns when other local users can read or enter the data directory (it holds the database
/// and possibly the generated JWT secret). An existing directory is the operator's: we do not
/// change its mode, we say how.
fn warn_if_open(dir: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(dir) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "the data directory {} is accessible to other users (mode {mode:03o}); it holds the database \
                     and secrets: run `chmod 700 {}`",
                    dir.display(),
                    dir.display()
                );
            }
        }
    }
}

/// The database directory is ours: 0700, and every file in it 0600, whatever an older version
/// or the umask left (sled creates files with the process umask; the binary sets 077).
fn restrict_database_files(db: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fn walk(dir: &std::path::Path) {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for entry in entries.flatten() {
                let path = entry.path();
                match entry.file_type() {
                    Ok(t) if t.is_dir() => walk(&path),
                    Ok(t) if t.is_file() => {
                        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
                    }
                    _ => {}
                }
            }
        }
        walk(db);
    }
}

/// Forgets idle rate-limit clients once a minute, until the server is gone.
fn spawn_limit_sweeper(limits: std::sync::Weak<http::limits::Limits>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            match limits.upgrade() {
                Some(limits) => limits.sweep(),
                None => return,
            }
        }
    });
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartupError> {
    start(listener, config).await?.run_until(shutdown).await;
    Ok(())
}
