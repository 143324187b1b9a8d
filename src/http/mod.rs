//! The HTTP front end: hyper 1 with hyper-util's auto (HTTP/1.1 + h2c) connection builder, one
//! task per connection, graceful shutdown (stop accepting, drain in-flight requests).

pub mod error;
pub mod guard;
pub mod limits;
pub mod request;
pub mod response;
pub mod router;

use crate::state::Ctx;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// Slow-loris guard: the request head must arrive within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until `shutdown` resolves, then drains them.
pub async fn run(listener: TcpListener, cx: Arc<Ctx>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let cx = cx.clone();
                let service = service_fn(move |req| {
                    let cx = cx.clone();
                    async move { Ok::<_, Infallible>(router::route(&cx, req, peer).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(DRAIN_GRACE) => tracing::warn!("some connections did not finish within {DRAIN_GRACE:?}"),
    }
}
