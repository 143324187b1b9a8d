//! `GET /admin/users` listing cost versus the number of users (criterion, `harness = false`).
//!
//! The claim under test: a listing page is a slice of the registry's creation-order index, so
//! its cost depends on `per_page`, not on how many users exist or how deep the page is.
//!
//! Groups (each at 1 000 and 100 000 users; 1 000 and 10 000 when `CI` is set or when run as a
//! smoke test by `cargo test --benches`):
//! * `listing_actors` — `actors.users.list(page, 50, None, false)` through the real actor tree
//!   (`Actors::start(Store::temporary(), Settings::for_tests(), Clock::System)`), for page 1 and
//!   a page in the middle (page 10 of 20 at 1k, page 1000 of 2000 at 100k); plus, as a control,
//!   `filter_miss_scan`: a `filter` that matches nobody, which has to visit every user.
//! * `listing_http` — `GET /admin/users?page=…&per_page=50` with a service_role token against a
//!   real server (`ferrotrue::start` on 127.0.0.1:0, `Config::for_tests(tempdir)`), keep-alive
//!   client, body read in full; same two pages.
//!
//! Seeding: users are inserted with `actors.users.create` (no HTTP, no hashing: every user
//! shares ONE argon2 QUICK hash computed up front), 64 creates in flight at a time, then one
//! `actors.durable()` so the whole seed is synced before measuring. Both stores keep the server
//! default `Durability::Sync` (the actor-level one is `Store::temporary()`, i.e. sled in
//! `/dev/shm`; the HTTP server's is on disk under `target/tmp`). Read-only requests find nothing
//! to flush, so what is measured is the listing itself.
//!
//! Run: `cargo bench --bench listing` (full), `CI=1 cargo bench --bench listing` (short), or
//! `cargo test --benches` (every benchmark once, as a smoke test). `LISTING_SIZES=100000,1000`
//! picks the user counts and their order.

// A benchmark that cannot set up its fixture should stop loudly, like a test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ferrotrue::config::Config;
use ferrotrue_actors::clock::Clock;
use ferrotrue_actors::crypto::{hash_now, HashCost, Secret};
use ferrotrue_actors::settings::Settings;
use ferrotrue_actors::storage::{Durability, Store};
use ferrotrue_actors::user_registry::model::{Identity, JsonText, User};
use ferrotrue_actors::{Actors, Storage};
use futures_util::future::join_all;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

const PER_PAGE: usize = 50;
/// Creates in flight while seeding.
const CONCURRENCY: usize = 64;

/// ractor's convention: shorter runs when `CI` is set.
fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

fn config() -> Criterion {
    let c = Criterion::default().configure_from_args();
    if in_ci() {
        c.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1))
    } else {
        c.sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
    }
}

/// `cargo bench` passes `--bench`; `cargo test --benches` does not (one pass per benchmark).
fn smoke_test() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// The user counts compared, in order; `LISTING_SIZES=100000,1000` overrides (e.g. to check
/// that the order of the runs does not matter).
fn sizes() -> Vec<usize> {
    if let Ok(list) = std::env::var("LISTING_SIZES") {
        return list.split(',').map(|n| n.trim().parse().expect("LISTING_SIZES: comma-separated numbers")).collect();
    }
    if in_ci() || smoke_test() {
        vec![1_000, 10_000]
    } else {
        vec![1_000, 100_000]
    }
}

/// The middle page: as deep as a page gets on average.
fn deep_page(users: usize) -> usize {
    users / PER_PAGE / 2
}

/// A confirmed email user shaped like a real sign-up, sharing the precomputed `hash`.
fn bench_user(n: usize, hash: &str) -> User {
    let now = Clock::System.now();
    let id = Uuid::new_v4();
    let email = format!("bench-user-{n:06}@example.com");
    User {
        id,
        email: email.clone(),
        encrypted_password: Some(hash.to_owned()),
        email_confirmed_at: Some(now),
        confirmation_sent_at: Some(now),
        last_sign_in_at: Some(now),
        app_metadata: JsonText(r#"{"provider":"email","providers":["email"]}"#.into()),
        user_metadata: JsonText(format!(r#"{{"full_name":"Bench User {n}","locale":"en-GB"}}"#)),
        identities: vec![Identity {
            id: Uuid::new_v4(),
            provider_id: id.to_string(),
            provider: "email".into(),
            identity_data: JsonText(format!(
                r#"{{"email":"{email}","email_verified":true,"phone_verified":false,"sub":"{id}"}}"#
            )),
            email,
            last_sign_in_at: Some(now),
            created_at: now,
            updated_at: now,
        }],
        ..User::blank("authenticated", "authenticated", now)
    }
}

/// Inserts `count` users, `CONCURRENCY` at a time.
async fn seed(actors: &Actors, count: usize, hash: &str) {
    let started = Instant::now();
    let mut next = 0;
    while next < count {
        let end = (next + CONCURRENCY).min(count);
        let batch = (next..end).map(|n| actors.users.create(bench_user(n, hash)));
        for created in join_all(batch).await {
            created.expect("seed user");
        }
        next = end;
    }
    // One group commit for the whole seed: nothing is left to flush when measuring starts.
    actors.durable().await.expect("seed is durable");
    assert_eq!(actors.users.count().await.expect("count"), count);
    eprintln!("seeded {count} users in {:.1?}", started.elapsed());
    // Let background work after the seed (sled segment writes, allocator) settle before measuring.
    if !smoke_test() {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn bench_actors(c: &mut Criterion, rt: &tokio::runtime::Runtime, hash: &str) {
    let mut g = c.benchmark_group("listing_actors");
    for users in sizes() {
        let (actors, supervisor) = rt.block_on(async {
            let store = Store::temporary().expect("temporary store");
            let (actors, supervisor) =
                Actors::start(Storage::Sled(store), Settings::for_tests(), Clock::System).await.expect("actors start");
            seed(&actors, users, hash).await;
            (actors, supervisor)
        });
        for (name, page) in [("page_1", 1), ("deep_page", deep_page(users))] {
            // The page really is full, newest first, and the total is the whole registry.
            let listed = rt.block_on(actors.users.list(page, PER_PAGE, None, false)).expect("list");
            assert_eq!((listed.items.len(), listed.total), (PER_PAGE, users));
            let id = BenchmarkId::new(format!("{name}_of_{}", users / PER_PAGE), users);
            g.bench_with_input(id, &page, |b, &page| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(actors.users.list(page, PER_PAGE, None, false).await.expect("list"));
                        }
                        start.elapsed()
                    })
                })
            });
        }
        // Control: a `filter` that matches nobody must look at every user (as GoTrue's ILIKE
        // does), so its cost is what "grows with the user count" looks like.
        let miss = Some("no-such-user".to_owned());
        let listed = rt.block_on(actors.users.list(1, PER_PAGE, miss.clone(), false)).expect("list");
        assert_eq!((listed.items.len(), listed.total), (0, 0));
        g.sample_size(10);
        g.bench_function(BenchmarkId::new("filter_miss_scan", users), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(actors.users.list(1, PER_PAGE, miss.clone(), false).await.expect("list"));
                    }
                    start.elapsed()
                })
            })
        });
        g.sample_size(if in_ci() { 10 } else { 50 });
        drop(actors);
        rt.block_on(supervisor.shutdown());
    }
    g.finish();
}

fn service_role_token() -> String {
    let secret = Settings::for_tests().jwt.secret.0;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"role": "service_role"}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn bench_http(c: &mut Criterion, rt: &tokio::runtime::Runtime, hash: &str) {
    let mut g = c.benchmark_group("listing_http");
    let token = service_role_token();
    let client = reqwest::Client::new();
    for users in sizes() {
        let dir = tempfile::tempdir_in(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("bench temp dir");
        let server = rt.block_on(async {
            let mut config = Config::for_tests(dir.path());
            // The server default (`Config::for_tests` has it too): nothing is left to flush when
            // measuring starts.
            config.durability = Durability::Sync;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let server = ferrotrue::start(listener, config).await.expect("server starts");
            seed(&server.actors, users, hash).await;
            server
        });
        let base = format!("http://{}", server.addr);
        for (name, page) in [("page_1", 1), ("deep_page", deep_page(users))] {
            let url = format!("{base}/admin/users?page={page}&per_page={PER_PAGE}");
            let get = || async {
                let resp = client.get(&url).bearer_auth(&token).send().await.expect("GET /admin/users");
                assert_eq!(resp.status(), reqwest::StatusCode::OK);
                resp.bytes().await.expect("body")
            };
            // Check the answer once: a full page and the right total.
            let (body, total) = rt.block_on(async {
                let resp = client.get(&url).bearer_auth(&token).send().await.expect("GET /admin/users");
                let total = resp.headers().get("x-total-count").and_then(|v| v.to_str().ok()).map(str::to_owned);
                (resp.json::<serde_json::Value>().await.expect("json"), total)
            });
            assert_eq!(body["users"].as_array().map(Vec::len), Some(PER_PAGE));
            assert_eq!(total, Some(users.to_string()));
            let id = BenchmarkId::new(format!("{name}_of_{}", users / PER_PAGE), users);
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(get().await);
                        }
                        start.elapsed()
                    })
                })
            });
        }
        rt.block_on(server.stop());
        drop(dir);
    }
    g.finish();
}

fn bench_listing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    // One argon2 hash for every seeded user: seeding must not pay for 100k hashes.
    let hash = hash_now(HashCost::QUICK, &Secret("correct horse battery staple".into())).expect("hash");
    bench_actors(c, &rt, &hash);
    bench_http(c, &rt, &hash);
}

criterion_group! {
    name = listing;
    config = config();
    targets = bench_listing
}
criterion_main!(listing);
