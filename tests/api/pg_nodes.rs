//! Several nodes, one Postgres (issue 12): two real `ferrotrue` processes share one database.
//! A session made on one node refreshes on the other; parallel refreshes of one token across
//! both nodes all succeed with one child (no spurious logout) and a reuse outside the reuse
//! interval revokes the family exactly as one sled node does; a node killed with SIGKILL in
//! the middle of a burst loses nothing it acknowledged (the other node serves all of it).
//!
//! Needs the test cluster (`FERROTRUE_TEST_DATABASE_URL`, started by `./test.sh`), whatever
//! backend the rest of the suite runs on.

use crate::common::{unique_email, wait_healthy, TestServer, PASSWORD};
use ferrotrue_actors::pg::testing::fresh_database;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "two-node-test-secret-that-is-long-enough";

/// A node: the real binary on `port`, serving from `url`.
struct Node {
    child: Child,
    base: String,
}

impl Node {
    async fn start(url: &str, reuse_interval_secs: u32) -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferrotrue"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("GOTRUE_API_HOST", "127.0.0.1")
            .env("GOTRUE_DB_DRIVER", "postgres")
            .env("GOTRUE_DB_DATABASE_URL", url)
            .env("GOTRUE_DB_MAX_POOL_SIZE", "8")
            // Postgres mode must not need (or touch) a data directory.
            .env("FERROTRUE_DATA_DIR", data.path().join("unused"))
            .env("GOTRUE_JWT_SECRET", SECRET)
            .env("GOTRUE_MAILER_AUTOCONFIRM", "true")
            .env("GOTRUE_SECURITY_REFRESH_TOKEN_REUSE_INTERVAL", reuse_interval_secs.to_string())
            .env("GOTRUE_RATE_LIMIT_TOKEN_REFRESH", "100000")
            .env("FERROTRUE_RATE_LIMIT_PASSWORD_PER_CLIENT", "100000")
            .env("FERROTRUE_RATE_LIMIT_PASSWORD_PER_ACCOUNT", "100000")
            .env("GOTRUE_LOG_LEVEL", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferrotrue");
        let node = Node { child, base: format!("http://127.0.0.1:{port}") };
        wait_healthy(&node.base).await;
        assert!(!data.path().join("unused").exists(), "a Postgres node created a data directory");
        node
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    let resp = http.post(url).json(&body).timeout(Duration::from_secs(20)).send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn refresh(http: &reqwest::Client, base_url: String, token: &str) -> (StatusCode, Value) {
    post(http, format!("{base_url}/token?grant_type=refresh_token"), json!({"refresh_token": token})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_made_on_one_node_refreshes_and_is_seen_on_the_other() {
    let url = fresh_database().await;
    let (a, b) = (Node::start(&url, 10).await, Node::start(&url, 10).await);
    let http = reqwest::Client::new();
    let email = unique_email();
    let (status, session) = post(&http, a.url("/signup"), json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(status, 200, "{session}");
    let token = session["refresh_token"].as_str().unwrap();

    // B knows the user A created, and A's access token.
    let resp = http.get(b.url("/user")).bearer_auth(session["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["email"], json!(email));

    // B rotates A's token; A then rotates B's child; the chain continues across nodes.
    let (status, on_b) = refresh(&http, b.base.clone(), token).await;
    assert_eq!(status, 200, "{on_b}");
    let child = on_b["refresh_token"].as_str().unwrap();
    assert_ne!(child, token);
    let (status, on_a) = refresh(&http, a.base.clone(), child).await;
    assert_eq!(status, 200, "{on_a}");
    assert_eq!(on_a["user"]["id"], session["user"]["id"]);

    // A password sign-in on B, and the user's sessions are ended from A (global logout).
    let (status, login) =
        post(&http, b.url("/token?grant_type=password"), json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(status, 200, "{login}");
    let resp = http.post(a.url("/logout")).bearer_auth(on_a["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    for (node, t) in [(&b, login["refresh_token"].as_str().unwrap()), (&a, on_a["refresh_token"].as_str().unwrap())] {
        let (status, body) = refresh(&http, node.base.clone(), t).await;
        assert_eq!(status, 400, "a token of a logged-out user still works on {}: {body}", node.base);
    }
}

/// Refreshes `token` `n` times at once, alternating between the nodes.
async fn refresh_in_parallel(
    http: &reqwest::Client,
    nodes: &[&Node],
    token: &str,
    n: usize,
) -> Vec<(StatusCode, Value)> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let (http, base, token) = (http.clone(), nodes[i % nodes.len()].base.clone(), token.to_owned());
        tasks.push(tokio::spawn(async move { refresh(&http, base, &token).await }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_refreshes_of_one_token_across_nodes_give_one_child_and_no_logout() {
    let url = fresh_database().await;
    let (a, b) = (Node::start(&url, 10).await, Node::start(&url, 10).await);
    let http = reqwest::Client::new();
    let (_, session) = post(&http, a.url("/signup"), json!({"email": unique_email(), "password": PASSWORD})).await;
    let token = session["refresh_token"].as_str().unwrap();

    let results = refresh_in_parallel(&http, &[&a, &b], token, 12).await;
    for (status, body) in &results {
        assert_eq!(*status, 200, "a parallel refresh inside the reuse interval failed: {body}");
    }
    let mut children: Vec<&str> = results.iter().map(|(_, s)| s["refresh_token"].as_str().unwrap()).collect();
    children.sort();
    children.dedup();
    assert_eq!(children.len(), 1, "one rotation, every caller handed the same child: {children:?}");
    // The child works on both nodes (the session was not ended).
    let (status, _) = refresh(&http, b.base.clone(), children[0]).await;
    assert_eq!(status, 200);
}

/// The reuse-detection sequence on `nodes` (alternating): rotate twice (T → C1 → C2), replay
/// the grandparent T (a replay of the active token's own parent is GoTrue's allowed "client lost
/// the response" case), then try C2. Returns each step's status and error code.
async fn reuse_sequence(http: &reqwest::Client, nodes: &[String], email: &str) -> Vec<(u16, Value)> {
    let node = |i: usize| nodes[i % nodes.len()].clone();
    let (_, session) = post(http, format!("{}/signup", node(0)), json!({"email": email, "password": PASSWORD})).await;
    let t = session["refresh_token"].as_str().unwrap().to_owned();
    let (s1, first) = refresh(http, node(1), &t).await;
    let c1 = first["refresh_token"].as_str().unwrap_or_default().to_owned();
    let (s2, second) = refresh(http, node(0), &c1).await;
    let c2 = second["refresh_token"].as_str().unwrap_or_default().to_owned();
    let (s3, replay) = refresh(http, node(1), &t).await;
    let (s4, after) = refresh(http, node(0), &c2).await;
    vec![
        (s1.as_u16(), Value::Null),
        (s2.as_u16(), Value::Null),
        (s3.as_u16(), replay["error_code"].clone()),
        (s4.as_u16(), after["error_code"].clone()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reuse_revokes_the_family_across_nodes_exactly_as_on_one_sled_node() {
    // Reference: one node on sled, reuse interval 0.
    let sled = TestServer::start_with(|c| {
        c.database = None;
        c.settings.refresh.reuse_interval = Duration::ZERO;
    })
    .await;
    let reference = reuse_sequence(&sled.http, &[sled.base.clone()], &unique_email()).await;
    assert_eq!((reference[0].0, reference[1].0), (200, 200), "{reference:?}");
    assert_eq!(reference[2].0, 400, "the replayed grandparent is refused: {reference:?}");
    assert_eq!(reference[3].0, 400, "the family is revoked: {reference:?}");

    let url = fresh_database().await;
    let (a, b) = (Node::start(&url, 0).await, Node::start(&url, 0).await);
    let across = reuse_sequence(&reqwest::Client::new(), &[a.base.clone(), b.base.clone()], &unique_email()).await;
    assert_eq!(across, reference, "two Postgres nodes and one sled node disagree on reuse detection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_one_node_mid_burst_loses_nothing_it_acknowledged() {
    let url = fresh_database().await;
    // GoTrue's default reuse interval: a client whose last refresh was committed on A but
    // whose response died with A replays its parent on B and gets the committed child back.
    let (mut a, b) = (Node::start(&url, 10).await, Node::start(&url, 10).await);
    let http = reqwest::Client::new();

    // Refreshers keep rotating their own session on A; signers sign up on A.
    const REFRESHERS: usize = 4;
    const SIGNERS: usize = 4;
    let tokens: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..REFRESHERS {
        let (_, s) = post(&http, b.url("/signup"), json!({"email": unique_email(), "password": PASSWORD})).await;
        tokens.lock().unwrap().push(s["refresh_token"].as_str().unwrap().to_owned());
    }
    let users: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..REFRESHERS {
        let (http, base, tokens) = (http.clone(), a.base.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let current = tokens.lock().unwrap()[i].clone();
                let Ok(resp) = http
                    .post(format!("{base}/token?grant_type=refresh_token"))
                    .json(&json!({"refresh_token": current}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                else {
                    return;
                };
                if resp.status() != 200 {
                    return;
                }
                match resp.json::<Value>().await {
                    Ok(s) => tokens.lock().unwrap()[i] = s["refresh_token"].as_str().unwrap().to_owned(),
                    Err(_) => return,
                }
            }
        }));
    }
    for _ in 0..SIGNERS {
        let (http, base, users) = (http.clone(), a.base.clone(), users.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let email = unique_email();
                let Ok(resp) = http
                    .post(format!("{base}/signup"))
                    .json(&json!({"email": email, "password": PASSWORD}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                else {
                    return;
                };
                if resp.status() != 200 || resp.json::<Value>().await.is_err() {
                    return;
                }
                users.lock().unwrap().push(email);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.child.kill().expect("SIGKILL");
    let _ = a.child.wait();
    for t in tasks {
        let _ = t.await;
    }
    let users = users.lock().unwrap().clone();
    let tokens = tokens.lock().unwrap().clone();
    assert!(users.len() >= 3, "the burst acknowledged only {} signups", users.len());
    eprintln!("SIGKILL after {} acknowledged signups on node A", users.len());

    // Node B serves everything A acknowledged.
    for email in &users {
        let (status, body) =
            post(&http, b.url("/token?grant_type=password"), json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(status, 200, "acknowledged signup of {email} on the killed node was lost: {body}");
    }
    for token in &tokens {
        let (status, body) = refresh(&http, b.base.clone(), token).await;
        assert_eq!(status, 200, "the last refresh token node A acknowledged does not work on B: {body}");
    }
}
