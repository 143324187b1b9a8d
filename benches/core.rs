//! Micro-benchmarks of ferrotrue's hot paths (criterion, `harness = false`).
//!
//! Groups:
//! * `jwt`      — sign (claims_for + HS256 sign) and verify of a realistic access token.
//! * `password` — argon2id hash/verify at the production cost (`OWASP`) and at the test cost
//!   (`QUICK`), so the hashing cost can be told apart from everything else.
//! * `codec`    — the versioned bincode envelope on a realistic `User` record.
//! * `actors`   — refresh-token rotation and session creation through the real actors, each
//!   followed by `Actors::durable()` as the HTTP layer does before responding (group-committed
//!   sled flush):
//!   * `tmpfs_sync`: `Store::temporary()` (sled puts temporary databases in `/dev/shm`, so the
//!     "sync" is a flush to memory);
//!   * `disk_sync`:  `Store::open` under `target/tmp` with `Durability::Sync` (the server default);
//!   * `disk_relaxed`: same directory kind with `Durability::Relaxed`.
//!
//! Run: `cargo bench --bench core` (full), `CI=1 cargo bench --bench core` (short), or
//! `cargo test --benches` (every benchmark once, as a smoke test).

// A benchmark that cannot set up its fixture should stop loudly, like a test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrotrue_actors::clock::{Clock, Timestamp};
use ferrotrue_actors::crypto::{hash_now, verify_now, HashCost, PasswordCheck, Secret};
use ferrotrue_actors::jwt::JwtKeys;
use ferrotrue_actors::session_manager::model::{AmrEntry, Session};
use ferrotrue_actors::settings::Settings;
use ferrotrue_actors::storage::{codec, Durability, Store, DEFAULT_CACHE_BYTES};
use ferrotrue_actors::user_registry::model::{Identity, JsonText, User};
use ferrotrue_actors::{Actors, Storage, Supervisor};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// ractor's convention: shorter runs when `CI` is set.
fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Default configuration for the cheap groups.
fn config() -> Criterion {
    let c = Criterion::default().configure_from_args();
    if in_ci() {
        c.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1))
    } else {
        c.sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
    }
}

fn now() -> Timestamp {
    Clock::System.now()
}

/// A confirmed email user with one identity and some metadata, as signup leaves it.
fn realistic_user() -> User {
    let now = now();
    let id = Uuid::new_v4();
    let email = "jane.doe+bench@example.com".to_owned();
    let password = hash_now(HashCost::QUICK, &Secret("correct horse battery staple".into())).unwrap_or_default();
    User {
        id,
        email: email.clone(),
        encrypted_password: Some(password),
        email_confirmed_at: Some(now),
        confirmation_sent_at: Some(now),
        last_sign_in_at: Some(now),
        app_metadata: JsonText(r#"{"provider":"email","providers":["email"]}"#.into()),
        user_metadata: JsonText(r#"{"full_name":"Jane Doe","avatar_url":"https://example.com/a/jane.png","locale":"en-GB","newsletter":true}"#.into()),
        identities: vec![Identity {
            id: Uuid::new_v4(),
            provider_id: id.to_string(),
            provider: "email".into(),
            identity_data: JsonText(format!(
                r#"{{"email":"{email}","email_verified":true,"phone_verified":false,"sub":"{id}","full_name":"Jane Doe"}}"#
            )),
            email,
            last_sign_in_at: Some(now),
            created_at: now,
            updated_at: now,
        }],
        ..User::blank("authenticated", "authenticated", now)
    }
}

fn realistic_session(user: &User) -> Session {
    let now = now();
    Session {
        id: Uuid::new_v4(),
        user_id: user.id,
        created_at: now,
        updated_at: now,
        refreshed_at: None,
        aal: "aal1".into(),
        amr: vec![AmrEntry { method: "password".into(), at: now }],
        user_agent: "Mozilla/5.0 (X11; Linux x86_64) supabase-js/2.45".into(),
        ip: "203.0.113.7".into(),
        not_after: None,
    }
}

fn bench_jwt(c: &mut Criterion) {
    let keys = JwtKeys::new(&Settings::for_tests().jwt);
    let user = realistic_user();
    let session = realistic_session(&user);
    let mut g = c.benchmark_group("jwt");
    g.bench_function("sign", |b| {
        b.iter(|| {
            let claims = keys.claims_for(black_box(&user), black_box(&session), now());
            keys.sign(&claims).unwrap_or_default()
        })
    });
    let token = keys.sign(&keys.claims_for(&user, &session, now())).unwrap_or_default();
    assert!(keys.verify_user_token(&token).is_ok(), "bench token must verify");
    g.bench_function("verify", |b| b.iter(|| keys.verify(black_box(&token)).is_ok()));
    g.finish();
}

fn bench_password(c: &mut Criterion) {
    let password = Secret("correct horse battery staple".into());
    let mut g = c.benchmark_group("password");
    for (name, cost) in [("owasp", HashCost::OWASP), ("quick", HashCost::QUICK)] {
        if cost == HashCost::OWASP {
            // ~tens of ms per call: few samples, flat sampling, a longer window.
            g.sample_size(10).sampling_mode(criterion::SamplingMode::Flat);
            g.measurement_time(Duration::from_secs(if in_ci() { 2 } else { 5 }));
        } else {
            g.sample_size(if in_ci() { 10 } else { 50 }).sampling_mode(criterion::SamplingMode::Auto);
            g.measurement_time(Duration::from_secs(if in_ci() { 1 } else { 3 }));
        }
        g.bench_function(BenchmarkId::new("hash", name), |b| b.iter(|| hash_now(cost, black_box(&password))));
        let stored = hash_now(cost, &password).unwrap_or_default();
        assert_eq!(verify_now(&password, &stored), PasswordCheck::Match);
        g.bench_function(BenchmarkId::new("verify", name), |b| {
            b.iter(|| verify_now(black_box(&password), black_box(&stored)))
        });
    }
    g.finish();
}

fn bench_codec(c: &mut Criterion) {
    let user = realistic_user();
    let bytes = codec::encode(&user).unwrap_or_default();
    assert_eq!(codec::decode::<User>("users/v1", &bytes).ok().as_ref(), Some(&user));
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode_user", |b| b.iter(|| codec::encode(black_box(&user))));
    g.bench_function("decode_user", |b| b.iter(|| codec::decode::<User>("users/v1", black_box(&bytes))));
    g.finish();
}

/// Where the actors keep their data in one `actors` benchmark.
#[derive(Clone, Copy)]
enum Backing {
    /// `Store::temporary()`: `/dev/shm`, synced writes.
    TmpfsSync,
    /// A directory under `target/tmp` (real disk), synced writes (the server default).
    DiskSync,
    /// Same, `FERROTRUE_DURABILITY=relaxed`.
    DiskRelaxed,
}

impl Backing {
    fn name(self) -> &'static str {
        match self {
            Backing::TmpfsSync => "tmpfs_sync",
            Backing::DiskSync => "disk_sync",
            Backing::DiskRelaxed => "disk_relaxed",
        }
    }
}

/// A running actor tree; the temp directory (if any) lives as long as it does.
struct Running {
    actors: Actors,
    supervisor: Supervisor,
    _dir: Option<tempfile::TempDir>,
}

fn start(rt: &tokio::runtime::Runtime, backing: Backing) -> Running {
    rt.block_on(async {
        let (store, dir) = match backing {
            Backing::TmpfsSync => (Store::temporary().expect("temporary store"), None),
            Backing::DiskSync | Backing::DiskRelaxed => {
                let dir = tempfile::tempdir_in(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("bench temp dir");
                let durability =
                    if matches!(backing, Backing::DiskSync) { Durability::Sync } else { Durability::Relaxed };
                (Store::open(dir.path(), DEFAULT_CACHE_BYTES, durability).expect("open store"), Some(dir))
            }
        };
        let (actors, supervisor) =
            Actors::start(Storage::Sled(store), Settings::for_tests(), Clock::System).await.expect("actors");
        Running { actors, supervisor, _dir: dir }
    })
}

fn stop(rt: &tokio::runtime::Runtime, running: Running) {
    let Running { supervisor, _dir, .. } = running;
    rt.block_on(supervisor.shutdown());
    drop(_dir);
}

/// Failed actor calls in one benchmark. A failure (e.g. the 5 s actor call timeout) is counted
/// and reported on stderr instead of aborting the whole suite; its time stays in the sample.
#[derive(Default)]
struct Failures {
    count: std::sync::atomic::AtomicU64,
}

impl Failures {
    fn record(&self, what: &str, err: &ferrotrue_actors::error::AuthError) {
        if self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
            eprintln!("\n  first failed call in {what}: {err:?}");
        }
    }
    fn report(&self, what: &str) {
        let n = self.count.swap(0, std::sync::atomic::Ordering::Relaxed);
        if n > 0 {
            eprintln!("  {what}: {n} failed call(s) (counted in the timings; see BENCHMARKS.md)");
        }
    }
}

fn bench_actors(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let mut g = c.benchmark_group("actors");
    g.sample_size(if in_ci() { 10 } else { 30 });
    g.measurement_time(Duration::from_secs(if in_ci() { 1 } else { 3 }));
    let ua = || "bench-agent/1.0".to_owned();
    let ip = || "127.0.0.1".to_owned();

    let failures = std::sync::Arc::new(Failures::default());
    for backing in [Backing::TmpfsSync, Backing::DiskSync, Backing::DiskRelaxed] {
        let running = start(&rt, backing);
        let sessions = running.actors.sessions.clone();
        let durable = running.actors.clone();
        // A fresh chain, used at the start and whenever a failed rotation broke one.
        let new_chain = {
            let sessions = sessions.clone();
            move || {
                let sessions = sessions.clone();
                async move {
                    sessions.create(Uuid::new_v4(), "password", ua(), ip()).await.expect("create session").refresh_token
                }
            }
        };

        // One chain, rotated serially: latency of one rotation (incl. its durable flush).
        let mut token = rt.block_on(new_chain());
        g.throughput(Throughput::Elements(1));
        let id = BenchmarkId::new("refresh", backing.name());
        g.bench_function(id.clone(), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        token = match sessions.refresh(&token).await {
                            Ok(issued) => issued.refresh_token,
                            Err(e) => {
                                failures.record("refresh", &e);
                                new_chain().await
                            }
                        };
                        durable.durable().await.expect("sync");
                    }
                    start.elapsed()
                })
            })
        });
        failures.report(&format!("actors/refresh/{}", backing.name()));

        // 16 chains rotated concurrently per iteration: shows group commit sharing flushes.
        const CHAINS: usize = 16;
        let mut tokens: Vec<String> = rt.block_on(async {
            let mut out = Vec::with_capacity(CHAINS);
            for _ in 0..CHAINS {
                out.push(new_chain().await);
            }
            out
        });
        g.throughput(Throughput::Elements(CHAINS as u64));
        let id = BenchmarkId::new("refresh_x16_concurrent", backing.name());
        g.bench_function(id.clone(), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let rotations = tokens.iter().map(|t| {
                            let (s, t, f, chain) = (sessions.clone(), t.clone(), failures.clone(), new_chain.clone());
                            let d = durable.clone();
                            tokio::spawn(async move {
                                let next = match s.refresh(&t).await {
                                    Ok(issued) => issued.refresh_token,
                                    Err(e) => {
                                        f.record("refresh_x16_concurrent", &e);
                                        chain().await
                                    }
                                };
                                d.durable().await.expect("sync");
                                next
                            })
                        });
                        let next = futures_util::future::join_all(rotations.collect::<Vec<_>>()).await;
                        tokens = next.into_iter().map(|r| r.expect("rotation task panicked")).collect();
                    }
                    start.elapsed()
                })
            })
        });
        failures.report(&format!("actors/refresh_x16_concurrent/{}", backing.name()));

        g.throughput(Throughput::Elements(1));
        let id = BenchmarkId::new("create_session", backing.name());
        g.bench_function(id.clone(), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        if let Err(e) = black_box(sessions.create(Uuid::new_v4(), "password", ua(), ip()).await) {
                            failures.record("create_session", &e);
                        }
                        durable.durable().await.expect("sync");
                    }
                    start.elapsed()
                })
            })
        });
        failures.report(&format!("actors/create_session/{}", backing.name()));

        // The whole refresh_token grant below HTTP (owner lookup, user read, rotation, JWT),
        // i.e. what POST /token?grant_type=refresh_token does minus hyper and JSON.
        if matches!(backing, Backing::DiskSync) {
            let user = rt.block_on(running.actors.users.create(realistic_user())).expect("create user");
            let mut token =
                rt.block_on(sessions.create(user.id, "password", ua(), ip())).expect("create session").refresh_token;
            let actors = running.actors.clone();
            let id = BenchmarkId::new("refresh_grant_flow", backing.name());
            g.bench_function(id.clone(), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            token = match ferrotrue_actors::flows::token::refresh(&actors, &token).await {
                                Ok(grant) => grant.refresh_token,
                                Err(e) => {
                                    failures.record("refresh_grant_flow", &e);
                                    sessions
                                        .create(user.id, "password", ua(), ip())
                                        .await
                                        .expect("create session")
                                        .refresh_token
                                }
                            };
                            actors.durable().await.expect("sync");
                        }
                        start.elapsed()
                    })
                })
            });
            failures.report(&format!("actors/refresh_grant_flow/{}", backing.name()));
        }
        stop(&rt, running);
    }
    g.finish();
}

criterion_group! {
    name = cheap;
    config = config();
    targets = bench_jwt, bench_codec
}
criterion_group! {
    name = password;
    config = config();
    targets = bench_password
}
criterion_group! {
    name = actors;
    config = config();
    targets = bench_actors
}
criterion_main!(cheap, password, actors);
