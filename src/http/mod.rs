//! The HTTP front end: hyper 1 with hyper-util's auto (HTTP/1.1 + h2c) connection builder, one
//! task per connection, a cap on open connections, graceful shutdown (stop accepting, drain
//! in-flight requests).

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
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// Slow-loris guard: the request head must arrive within this time (it also closes HTTP/1
/// connections idle for that long between requests).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 keep-alive ping: a peer that does not answer within the timeout is gone, and its
/// connection (and connection slot) is released.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// File descriptors kept free of client connections for the database, logs, SMTP and outgoing
/// HTTP (providers, hooks, CAPTCHA).
const FD_RESERVE: usize = 128;
/// At most one "connection limit reached" line per this period.
const CAP_WARN_EVERY: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` resolves, then drains them. At most
/// `settings.work.max_connections` connections are open at once: at the cap the loop stops
/// accepting (new connections wait in the kernel's backlog) until one closes.
pub async fn run(listener: TcpListener, cx: Arc<Ctx>, shutdown: impl Future<Output = ()>) {
    let limits = &cx.config.settings.work;
    let max_connections = connection_cap(limits.max_connections, open_files_limit());
    let slots = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams.max(1))
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    let mut last_cap_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // A slot first, then accept: at the cap nothing is accepted, so the kernel backlog (and
        // the clients' connect timeouts) push back instead of this process running out of files.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if last_cap_warning.is_none_or(|at| at.elapsed() >= CAP_WARN_EVERY) {
                    last_cap_warning = Some(Instant::now());
                    tracing::warn!(max_connections, "connection limit reached; new connections wait until one closes");
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // never closed
                    },
                    () = &mut shutdown => break,
                }
            }
        };
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
                    // The slot is released when the connection ends, however it ends.
                    let _slot = slot;
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

/// The connection cap actually used: `configured`, lowered (with a warning) so that the open
/// connections plus [`FD_RESERVE`] fit the process's open-file limit when it is known.
fn connection_cap(configured: usize, open_files: Option<usize>) -> usize {
    let configured = configured.max(1);
    let Some(limit) = open_files else { return configured };
    let fits = limit.saturating_sub(FD_RESERVE).max(1);
    if configured > fits {
        tracing::warn!(
            configured,
            used = fits,
            open_files_limit = limit,
            "FERROTRUE_MAX_CONNECTIONS exceeds what the open-file limit (ulimit -n) allows; raise the limit to serve more"
        );
        return fits;
    }
    configured
}

/// The soft `RLIMIT_NOFILE` of this process, read from `/proc/self/limits` (Linux); `None`
/// elsewhere or when unlimited.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&limits)
}

fn parse_open_files(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63704                63704                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files(limits), Some(1024));
        assert_eq!(parse_open_files("Max open files            unlimited            unlimited            files"), None);
        assert_eq!(parse_open_files(""), None);
    }

    #[test]
    fn the_cap_fits_the_open_files_limit() {
        assert_eq!(connection_cap(4096, Some(20_000)), 4096);
        assert_eq!(connection_cap(4096, Some(1024)), 1024 - FD_RESERVE);
        assert_eq!(connection_cap(4096, None), 4096);
        assert_eq!(connection_cap(0, Some(1024)), 1);
        assert_eq!(connection_cap(10, Some(50)), 1);
    }
}
