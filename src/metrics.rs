//! Prometheus metrics with GoTrue's switches: `GOTRUE_METRICS_ENABLED=true` and
//! `GOTRUE_METRICS_EXPORTER=prometheus` serve `GET /metrics` on a separate listener,
//! `OTEL_EXPORTER_PROMETHEUS_HOST` / `OTEL_EXPORTER_PROMETHEUS_PORT` (GoTrue's names; default
//! port 9100, but host 127.0.0.1 rather than GoTrue's 0.0.0.0: metrics are not for the internet).
//!
//! Call sites use the `metrics` facade (`metrics::counter!` …), which costs next to nothing while
//! no recorder is installed; `metrics-exporter-prometheus` renders the text format. The names:
//!
//! | metric | labels |
//! |---|---|
//! | `ferrotrue_http_requests_total` | `route` (pattern), `method`, `status` |
//! | `ferrotrue_http_request_duration_seconds` (histogram) | `route` |
//! | `ferrotrue_auth_events_total` | `action` (login, user_signedup, token_refreshed, …), `method` (provider) |
//! | `ferrotrue_auth_failures_total` | `route`, `error_code` |
//! | `ferrotrue_rate_limited_total` | `scope` |
//! | `ferrotrue_mails_total`, `ferrotrue_sms_total` | `outcome` (sent, failed) |
//! | `ferrotrue_actor_restarts_total` | `actor` |
//! | `ferrotrue_actor_calls_in_flight` (gauge: mailbox depth as callers see it) | `actor` |
//! | `ferrotrue_storage_sync_seconds`, `ferrotrue_storage_group_commit_batch` (histograms) | |
//! | `ferrotrue_password_hash_queue_depth` (gauge), `ferrotrue_password_hash_jobs_total` | `outcome` (run, skipped, shed) |
//! | `ferrotrue_users`, `ferrotrue_sessions` (gauges, read at scrape time) | |
//! | `ferrotrue_db_pool_connections` (gauge, Postgres only, read at scrape time), `ferrotrue_db_pool_waiting` | `state` (open, idle) |

use crate::state::Ctx;
use http::{Method, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The exporter's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `GOTRUE_METRICS_ENABLED` with `GOTRUE_METRICS_EXPORTER=prometheus`.
    pub enabled: bool,
    /// `OTEL_EXPORTER_PROMETHEUS_HOST` (127.0.0.1).
    pub host: String,
    /// `OTEL_EXPORTER_PROMETHEUS_PORT` (9100; 0 picks a free port, for tests).
    pub port: u16,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings { enabled: false, host: "127.0.0.1".into(), port: 9100 }
    }
}

/// Reads the metrics variables; an exporter other than Prometheus is an error (not ignored).
pub fn read(vars: &HashMap<String, String>, errors: &mut Vec<String>) -> MetricsSettings {
    let text = |name: &str| vars.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let mut m = MetricsSettings {
        enabled: crate::config::read_bool(vars, errors, "GOTRUE_METRICS_ENABLED", false),
        ..MetricsSettings::default()
    };
    if m.enabled {
        match text("GOTRUE_METRICS_EXPORTER").as_deref() {
            None | Some("prometheus") => {}
            Some(other) => errors.push(format!(
                "GOTRUE_METRICS_EXPORTER={other:?} is not supported: ferrotrue exports Prometheus metrics only"
            )),
        }
    }
    if let Some(host) = text("OTEL_EXPORTER_PROMETHEUS_HOST") {
        m.host = host;
    }
    if let Some(port) = text("OTEL_EXPORTER_PROMETHEUS_PORT") {
        match port.parse() {
            Ok(p) => m.port = p,
            Err(_) => errors.push(format!("OTEL_EXPORTER_PROMETHEUS_PORT={port:?} is not a port number")),
        }
    }
    m
}

/// The process's recorder (one per process: several servers in one test process share it).
pub fn install() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("ferrotrue_storage_group_commit_batch".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                    )
                })
                .map_err(|e| e.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| format!("a metrics recorder is already set: {e}"))?;
            Ok(handle)
        })
        .clone()
}

/// Paths as metric labels: UUID segments become `{id}`, and anything that did not match a
/// route (404) is `unmatched`, so a client cannot mint label values.
pub fn route_label(path: &str, status: StatusCode) -> String {
    if status == StatusCode::NOT_FOUND && !path.starts_with("/admin/users/") {
        return "unmatched".into();
    }
    path.split('/')
        .map(|segment| if uuid::Uuid::parse_str(segment).is_ok() { "{id}" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
        .chars()
        .take(64)
        .collect()
}

/// Records one answered request.
pub fn record_request(method: &Method, path: &str, status: StatusCode, seconds: f64, error_code: &str) {
    let route = route_label(path, status);
    metrics::counter!(
        "ferrotrue_http_requests_total",
        "route" => route.clone(),
        "method" => method.as_str().to_owned(),
        "status" => status.as_u16().to_string()
    )
    .increment(1);
    metrics::histogram!("ferrotrue_http_request_duration_seconds", "route" => route.clone()).record(seconds);
    if status.is_client_error() && !error_code.is_empty() {
        metrics::counter!("ferrotrue_auth_failures_total", "route" => route, "error_code" => error_code.to_owned())
            .increment(1);
    }
}

/// Serves `GET /metrics` on `listener` until the server stops (the task ends with the runtime
/// or when `cx` is the last reference).
pub fn serve(listener: tokio::net::TcpListener, handle: PrometheusHandle, cx: std::sync::Weak<Ctx>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let (handle, weak) = (handle.clone(), cx.clone());
            tokio::spawn(async move {
                let cx = weak;
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (handle, cx) = (handle.clone(), cx.clone());
                    async move { Ok::<_, std::convert::Infallible>(answer(req, &handle, cx.upgrade()).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
            if cx.strong_count() == 0 {
                return;
            }
        }
    });
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
    handle: &PrometheusHandle,
    cx: Option<Arc<Ctx>>,
) -> crate::http::response::Resp {
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        return crate::http::response::empty(StatusCode::NOT_FOUND);
    }
    if let Some(cx) = cx {
        if let Ok(users) = cx.actors.users.count().await {
            metrics::gauge!("ferrotrue_users").set(users as f64);
        }
        if let Ok(sessions) = cx.actors.sessions.count().await {
            metrics::gauge!("ferrotrue_sessions").set(sessions as f64);
        }
        if let Some((open, idle, waiting)) = cx.actors.pool_status() {
            metrics::gauge!("ferrotrue_db_pool_connections", "state" => "open").set(open as f64);
            metrics::gauge!("ferrotrue_db_pool_connections", "state" => "idle").set(idle as f64);
            metrics::gauge!("ferrotrue_db_pool_waiting").set(waiting as f64);
        }
    }
    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(handle.render())));
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_patterns_and_unmatched_paths_collapse() {
        let id = "4f8c1b7e-2a3d-4e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(
            route_label(&format!("/admin/users/{id}/factors/{id}"), StatusCode::OK),
            "/admin/users/{id}/factors/{id}"
        );
        assert_eq!(route_label("/token", StatusCode::BAD_REQUEST), "/token");
        assert_eq!(route_label("/whatever/the/client/wants", StatusCode::NOT_FOUND), "unmatched");
    }

    #[test]
    fn settings() {
        let mut errors = Vec::new();
        use crate::config::vars_for_tests as vars;
        assert_eq!(read(&vars(&[]), &mut errors), MetricsSettings::default());
        let m =
            read(&vars(&[("GOTRUE_METRICS_ENABLED", "true"), ("OTEL_EXPORTER_PROMETHEUS_PORT", "9200")]), &mut errors);
        assert!(m.enabled && m.port == 9200 && m.host == "127.0.0.1" && errors.is_empty());
        read(&vars(&[("GOTRUE_METRICS_ENABLED", "true"), ("GOTRUE_METRICS_EXPORTER", "otlp")]), &mut errors);
        assert!(errors[0].contains("GOTRUE_METRICS_EXPORTER"), "{errors:?}");
    }
}
