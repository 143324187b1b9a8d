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

pub mod config;
pub mod dto;
pub mod handlers;
pub mod http;
pub mod state;

use config::Config;
use ferrotrue_actors::clock::Clock;
use ferrotrue_actors::error::StoreError;
use ferrotrue_actors::storage::Store;
use ferrotrue_actors::{Actors, StartError};
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
}

/// A running server.
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
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
pub async fn start(listener: TcpListener, config: Config) -> Result<Server, StartupError> {
    let addr = listener.local_addr().map_err(StartupError::Listener)?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| StartupError::DataDir(config.data_dir.display().to_string(), e))?;
    let db_path = config.db_path();
    let store = Store::open(&db_path, config.cache_bytes, config.durability)
        .map_err(|e| StartupError::Store(db_path.display().to_string(), e))?;
    let (actors, mut supervisor) = Actors::start(store.clone(), config.settings.clone(), Clock::System).await?;
    let cx = Arc::new(Ctx { actors: actors.clone(), config: Arc::new(config) });
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
        if let Err(e) = store.flush().await {
            tracing::error!(error = %e, "final flush failed");
        }
        drop(store);
        tracing::info!("stopped");
    });
    Ok(Server { addr, actors, stop: Some(stop_tx), task })
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
