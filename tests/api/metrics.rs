//! `GET /metrics` on its own listener (GoTrue's `GOTRUE_METRICS_*` switches): the Prometheus
//! text format with request, authentication, rate-limit, storage, hashing and actor metrics.

use crate::common::*;
use ferrotrue::config_security::{Bucket, RateLimits};
use serde_json::json;

/// One sample of the Prometheus text exposition format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses the text format strictly: every line is a `# HELP`/`# TYPE` comment, blank, or a
/// sample `name{label="value",…} number`; anything else fails the test.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(comment.starts_with("HELP ") || comment.starts_with("TYPE "), "bad comment line {line:?}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && name.starts_with("ferrotrue_"),
            "metric name {name:?}"
        );
        samples.push(Sample { name, labels, value });
    }
    samples
}

/// The value of the sample named `name` whose labels include all of `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|s| s.value)
}

fn value_of(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(line_prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_cover_requests_auth_limits_storage_hashing_and_actors() {
    // An SMTP relay that refuses connections, so a mail fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = TestServer::start_with(|c| {
        c.metrics.enabled = true;
        c.metrics.port = 0;
        c.settings.smtp.host = "127.0.0.1".into();
        c.settings.smtp.port = closed.port();
        c.limits = RateLimits { verify: Bucket { burst: 1, period: None }, ..RateLimits::generous() };
    })
    .await;
    let addr = server.metrics_addr().expect("a metrics listener");
    let email = unique_email();
    let session = server.signup(&email).await;
    server.login(&email).await;
    let bad = server.post("/token?grant_type=password", json!({"email": email, "password": "wrong-one"})).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(server.refresh(session["refresh_token"].as_str().unwrap()).await.status(), 200);
    for _ in 0..2 {
        server.post("/verify", json!({"type": "email", "email": email, "token": "000000"})).await;
    }
    // A failed delivery and an actor restart (fault injection) are counted too.
    let mail = ferrotrue_actors::mailer::Email { to: email.clone(), subject: "s".into(), html: "h".into() };
    assert!(server.actors.mail.send(mail).await.is_err(), "the relay is down");
    assert!(server.actors.sessions.inject_panic().await.is_err());
    for _ in 0..200 {
        if server.actors.sessions.count().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

    let resp = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for needle in [
        r#"ferrotrue_http_requests_total{route="/signup",method="POST",status="200"}"#,
        r#"ferrotrue_http_request_duration_seconds_bucket{route="/token""#,
        r#"ferrotrue_auth_events_total{action="user_signedup",method="email"}"#,
        r#"ferrotrue_auth_events_total{action="login",method="password"}"#,
        r#"ferrotrue_auth_events_total{action="token_refreshed",method=""}"#,
        r#"ferrotrue_auth_failures_total{route="/token",error_code="invalid_credentials"}"#,
        r#"ferrotrue_rate_limited_total{scope="Verify"}"#,
        r#"ferrotrue_password_hash_jobs_total{outcome="run"}"#,
        "ferrotrue_password_hash_queue_depth",
        r#"ferrotrue_actor_calls_in_flight{actor="UserRegistry"}"#,
        "ferrotrue_users ",
        "ferrotrue_sessions ",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    // Storage: sled's group commit, or the Postgres pool.
    let storage: &[&str] = if crate::common::on_postgres() {
        &[r#"ferrotrue_db_pool_connections{state="open"}"#, "ferrotrue_db_pool_waiting "]
    } else {
        &["ferrotrue_storage_sync_seconds_bucket", "ferrotrue_storage_group_commit_batch_bucket"]
    };
    for needle in storage {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    assert!(value_of(&text, "ferrotrue_users ").is_some_and(|n| n >= 1.0));
    let samples = parse_exposition(&text);
    let at_least = |name: &str, labels: &[(&str, &str)], n: f64| {
        let v = value(&samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}"));
        assert!(v >= n, "{name} {labels:?} = {v}, expected at least {n}");
    };
    at_least("ferrotrue_http_requests_total", &[("route", "/signup"), ("method", "POST"), ("status", "200")], 1.0);
    at_least("ferrotrue_http_request_duration_seconds_count", &[("route", "/token")], 3.0);
    at_least("ferrotrue_auth_events_total", &[("action", "login"), ("method", "password")], 1.0);
    at_least("ferrotrue_auth_failures_total", &[("route", "/token"), ("error_code", "invalid_credentials")], 1.0);
    at_least("ferrotrue_rate_limited_total", &[("scope", "Verify")], 1.0);
    if crate::common::on_postgres() {
        at_least("ferrotrue_db_pool_connections", &[("state", "open")], 1.0);
    } else {
        at_least("ferrotrue_storage_sync_seconds_count", &[], 1.0);
    }
    at_least("ferrotrue_password_hash_jobs_total", &[("outcome", "run")], 3.0);
    at_least("ferrotrue_users", &[], 1.0);
    at_least("ferrotrue_mails_total", &[("outcome", "failed")], 1.0);
    at_least("ferrotrue_actor_restarts_total", &[], 1.0);
    at_least("ferrotrue_sessions", &[], 1.0);
    // Nothing a client sends becomes a label value.
    server.http.get(server.url("/no/such/path/made/up")).send().await.unwrap();
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    assert!(!text.contains("made/up") && text.contains(r#"route="unmatched""#), "{text}");
    // The API port does not serve metrics; the metrics port serves nothing else.
    assert_eq!(server.http.get(server.url("/metrics")).send().await.unwrap().status(), 404);
    assert_eq!(reqwest::get(format!("http://{addr}/health")).await.unwrap().status(), 404);
}
