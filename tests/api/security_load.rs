//! Bounded work (issue 9): a storm of password logins is shed with 429 instead of queueing
//! without end, abandoned hash jobs are not run, the reactor keeps serving other requests, and
//! the accept loop holds at most `max_connections` connections.
//!
//! No absolute timing assertions: latencies are compared as a ratio within one test, and the
//! connection test orders its observations so that it cannot pass by luck nor fail by slowness.

use crate::common::{unique_email, TestServer, PASSWORD};
use ferrotrue_actors::crypto::HashCost;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Concurrent logins in a storm: far above the default queue (8 per core).
const STORM: usize = 300;

/// Fires `STORM` concurrent password logins, each on its own connection, and returns
/// (status, `x-sb-error-code`, `Retry-After`) per response.
async fn storm(server: &TestServer, email: &str, password: &str) -> Vec<(StatusCode, String, Option<String>)> {
    let url = server.url("/token?grant_type=password");
    let body = json!({"email": email, "password": password});
    // One client, but HTTP/1.1: every concurrent request opens its own connection.
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..STORM)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                let resp = client
                    .post(url)
                    .header("X-Supabase-Api-Version", "2024-01-01")
                    .json(&body)
                    .send()
                    .await
                    .expect("storm request");
                let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let (code, retry_after) = (header("x-sb-error-code").unwrap_or_default(), header("retry-after"));
                (resp.status(), code, retry_after)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(STORM);
    for task in tasks {
        out.push(task.await.expect("storm task"));
    }
    out
}

/// `GET /user` with `token`, returning its latency; asserts it succeeded.
async fn timed_get_user(server: &TestServer, token: &str) -> Duration {
    let started = Instant::now();
    let resp = server.get_auth("/user", token).await;
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), StatusCode::OK, "GET /user must stay served");
    elapsed
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_storm_is_shed_fast_and_the_reactor_keeps_serving() {
    let server = TestServer::start_with(|c| c.settings.hash_cost = HashCost::OWASP).await;
    let real = unique_email();
    let session = server.signup(&real).await;
    let token = session["access_token"].as_str().expect("access token").to_owned();

    // Idle baseline, same server, same client.
    let mut idle = Vec::new();
    for _ in 0..25 {
        idle.push(timed_get_user(&server, &token).await);
    }
    let idle = median(idle);

    // The storm, with GET /user running alongside until every storm response is in.
    let started = Instant::now();
    let unknown = unique_email();
    let storm = storm(&server, &unknown, "not-the-password-1");
    tokio::pin!(storm);
    let mut busy = Vec::new();
    let results = loop {
        tokio::select! {
            results = &mut storm => break results,
            latency = timed_get_user(&server, &token) => busy.push(latency),
        }
    };
    let drained = started.elapsed();

    let mut shed = 0;
    let mut refused = 0;
    for (status, code, retry_after) in &results {
        match status.as_u16() {
            400 => {
                assert_eq!(code, "invalid_credentials");
                refused += 1;
            }
            429 => {
                assert_eq!(code, "over_request_rate_limit");
                assert_eq!(retry_after.as_deref(), Some("1"), "a shed login says when to retry");
                shed += 1;
            }
            other => panic!("a storm login answered {other} ({code}): only 400 or 429 are acceptable"),
        }
    }
    assert!(shed > 0, "a full hash queue sheds load ({refused} refused, {shed} shed)");
    assert!(refused > 0, "the queue still serves what fits ({refused} refused, {shed} shed)");

    // No backlog left behind: the real user signs in at once.
    let resp = server.post("/token?grant_type=password", json!({"email": real, "password": PASSWORD})).await;
    assert_eq!(resp.status(), StatusCode::OK, "the real user's login right after the storm");

    // The reactor was never starved: GET /user kept being served at a comparable speed.
    assert!(!busy.is_empty(), "GET /user ran during the storm");
    let busy_median = median(busy.clone());
    let ratio = busy_median.as_secs_f64() / idle.as_secs_f64().max(1e-6);
    let stats = server.actors.hasher.stats();
    println!(
        "hash storm: {STORM} logins drained in {drained:?} ({refused} × 400, {shed} × 429; hasher {stats:?}); \
         GET /user median idle {idle:?}, during the storm {busy_median:?} over {} requests (×{ratio:.1})",
        busy.len()
    );
    assert!(ratio < 50.0, "GET /user median during the storm is {ratio:.1}× the idle one (bound 50×)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_jobs_of_timed_out_requests_are_not_run() {
    // A queue long enough to hold the whole storm, and a request timeout far shorter than the
    // time it takes to hash it: the setting, where abandoned jobs kept the CPU busy.
    let server = TestServer::start_with(|c| {
        c.settings.hash_cost = HashCost::OWASP;
        c.settings.work.hash_queue = 10 * STORM;
        c.max_request_duration = Duration::from_secs(1);
    })
    .await;
    let real = unique_email();
    server.signup(&real).await;

    // Wrong passwords for an existing account: one verification job per request, no decoy.
    let results = storm(&server, &real, "wrong-password-1").await;
    for (status, code, _) in &results {
        assert!(
            (status.as_u16() == 400 && code == "invalid_credentials")
                || (status.as_u16() == 504 && code == "request_timeout"),
            "{status} {code}"
        );
    }
    let timed_out = results.iter().filter(|(s, _, _)| s.as_u16() == 504).count();

    // Every storm request has ended, so each of its jobs is done or abandoned; the queue is FIFO,
    // so once this login has been verified every storm job has been taken from the queue.
    let resp = server.post("/token?grant_type=password", json!({"email": real, "password": PASSWORD})).await;
    assert_eq!(resp.status(), StatusCode::OK, "the real user's login right after the storm");
    let stats = server.actors.hasher.stats();
    println!("abandoned storm: {timed_out} of {STORM} timed out; hasher {stats:?}");
    assert!(timed_out > 0, "the storm outlasted the request timeout");
    assert!(stats.skipped > 0, "jobs of timed-out requests are skipped: {stats:?}");
    assert!(stats.run < (STORM + 2) as u64, "not every storm job was hashed: {stats:?}");
}

/// Sends `GET /health` on `stream` and reads one full response (keep-alive: the connection stays
/// open). Returns the status line.
async fn health(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: ferrotrue\r\n\r\n").await.expect("write");
    read_response(stream).await
}

async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed before a full response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let Some(head_end) = text.find("\r\n\r\n") else { continue };
        let length = text[..head_end]
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
            .and_then(|v| v.parse::<usize>().ok())
            .expect("content-length");
        if buf.len() >= head_end + 4 + length {
            return text.lines().next().unwrap_or_default().to_owned();
        }
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let server = TestServer::start_with(|c| c.settings.work.max_connections = 2).await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    // Two keep-alive connections, both served: they hold the two slots.
    let mut first = TcpStream::connect(&addr).await.expect("connect 1");
    assert_eq!(health(&mut first).await, "HTTP/1.1 200 OK");
    let mut second = TcpStream::connect(&addr).await.expect("connect 2");
    assert_eq!(health(&mut second).await, "HTTP/1.1 200 OK");

    // A third connects (the kernel backlog completes the handshake) and sends its request.
    let mut third = TcpStream::connect(&addr).await.expect("connect 3");
    third.write_all(b"GET /health HTTP/1.1\r\nHost: ferrotrue\r\n\r\n").await.expect("write 3");

    // The server keeps serving the connections it holds, after the third request was sent...
    for _ in 0..5 {
        assert_eq!(health(&mut first).await, "HTTP/1.1 200 OK");
    }
    // ...but has not answered the third: it was never accepted.
    let mut probe = [0u8; 1];
    match third.try_read(&mut probe) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the third connection was served beyond the cap: {other:?}"),
    }

    // One closes: its slot goes to the waiting connection, which is then served.
    drop(second);
    let status = tokio::time::timeout(Duration::from_secs(60), read_response(&mut third))
        .await
        .expect("the waiting connection is served once a slot frees");
    assert_eq!(status, "HTTP/1.1 200 OK");
    // And the first is still fine.
    assert_eq!(health(&mut first).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn the_default_limits_are_in_the_settings() {
    let server = TestServer::start().await;
    let work = &server.config.settings.work;
    assert_eq!(work.max_connections, 4096);
    assert_eq!(work.http2_max_concurrent_streams, 100);
    assert_eq!(work.hash_queue, 8 * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    // A normal login goes through the bounded queue.
    let email = unique_email();
    server.signup(&email).await;
    let session: Value = server.login(&email).await;
    assert!(session["access_token"].is_string());
}

#[tokio::test]
async fn http2_connections_advertise_the_stream_cap() {
    let server = TestServer::start_with(|c| c.settings.work.http2_max_concurrent_streams = 3).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let tcp = TcpStream::connect(&addr).await.expect("connect");
    let (client, mut conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
    let request = http::Request::get(format!("http://{addr}/health")).body(()).expect("request");
    let (response, _) = client.ready().await.expect("ready").send_request(request, true).expect("send");
    // The server's SETTINGS frame precedes its first response on the connection.
    let response = tokio::select! {
        response = response => response.expect("response"),
        ended = &mut conn => panic!("connection ended first: {ended:?}"),
    };
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(conn.max_concurrent_send_streams(), 3, "SETTINGS_MAX_CONCURRENT_STREAMS");
}
