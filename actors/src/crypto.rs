//! Passwords, random secrets and digests.
//!
//! Password hashing is CPU- and memory-heavy (argon2id, 19 MiB per hash with OWASP parameters),
//! so it never runs on the async reactor threads or inside an actor: [`Hasher`] owns one OS
//! thread per core and queues jobs to them through a bounded queue that sheds load when full.
//!
//! Memory: each hashing thread keeps one argon2 working area ([`Scratch`]) and reuses it from
//! hash to hash while jobs are waiting, so a login storm holds `threads × 19 MiB` and allocates
//! nothing per hash; the thread frees it as soon as the queue runs dry, so an idle server holds
//! none. CPU: the hashing threads run at a lower scheduling priority ([`HASH_NICE_INCREMENT`]) than
//! the async workers, meant to let cheap requests (`GET /user`, refresh) that arrive during a
//! login storm preempt the hashing (not yet measured on a quiet machine: BENCHMARKS.md, issue 13).

use crate::error::{AuthError, AuthResult, ErrorCode};
use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

/// A secret string whose `Debug` never shows the value, so it cannot leak into a log line.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// The wrapped value; call sites that need it are easy to grep for.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashCost {
    /// OWASP's argon2id recommendation (m = 19 MiB, t = 2, p = 1), argon2's default.
    pub const OWASP: HashCost = HashCost { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 };
    /// Cheap parameters for tests (GoTrue's `QuickHashCost`). Never for production.
    pub const QUICK: HashCost = HashCost { memory_kib: 64, iterations: 1, parallelism: 1 };
}

/// Result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// Wrong password, or a hash we cannot read (treated identically: no enumeration).
    Mismatch,
    /// Correct, and the hash is current.
    Match,
    /// Correct, but the hash is an imported bcrypt one that should be replaced by argon2id.
    MatchNeedsRehash,
}

type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

/// How many `nice` levels below the rest of the process the hashing threads run (Linux). Five
/// levels down a hashing thread weighs about a third of an async worker (335 vs 1024), so with
/// the kernel's EEVDF scheduler a worker woken by a request preempts a hashing thread in most of
/// its time slice instead of waiting for the slice to end, while a login storm on an otherwise
/// idle server still hashes at full speed (nice only matters when the cores are contended). Ten
/// levels (a tenth) cut the hash rate to a third when other work kept the cores busy
/// (BENCHMARKS.md, issue 13).
pub const HASH_NICE_INCREMENT: i32 = 5;

/// Queued (not yet started) hashing jobs allowed per hashing thread by default. One argon2id
/// hash at OWASP cost takes roughly 20–60 ms on a server core, so a full queue drains in about
/// 0.2–0.5 s; slower hardware stays around a couple of seconds. Waiting longer than that is worse
/// for a client than a fast 429 it can retry.
pub const HASH_QUEUE_PER_THREAD: usize = 8;

/// How many hashing threads [`Hasher::new`] starts: one per available core.
pub fn hash_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// The default bound of the hash queue: [`HASH_QUEUE_PER_THREAD`] jobs per hashing thread.
pub fn default_hash_queue() -> usize {
    HASH_QUEUE_PER_THREAD * hash_threads()
}

/// What the pool has done since it started (for tests and diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HasherStats {
    /// Jobs that ran on a hashing thread.
    pub run: u64,
    /// Jobs dropped unrun because their requester had gone (timed out or disconnected).
    pub skipped: u64,
    /// Jobs refused because the queue was full (answered 429).
    pub shed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    run: AtomicU64,
    skipped: AtomicU64,
    shed: AtomicU64,
    /// argon2 working areas allocated (one per busy period per thread, not one per hash).
    scratch_allocs: AtomicU64,
    /// Bytes of argon2 working area the hashing threads hold right now.
    scratch_bytes: AtomicU64,
}

/// Blocks (1 KiB each) just above glibc's `DEFAULT_MMAP_THRESHOLD_MAX` (32 MiB on 64-bit): an
/// allocation this large is always served by its own `mmap` and returned with `munmap` when freed.
const OWN_MAPPING_BLOCKS: usize = 32 * 1024 + 1;

/// One hashing thread's argon2 working memory (`m` KiB of [`Block`]s), reused from hash to hash.
/// Only the configured cost's area is kept: a verification of an imported hash with a larger `m`
/// gets a temporary one.
pub struct Scratch {
    blocks: Vec<Block>,
    /// Blocks worth keeping between hashes (the configured cost's block count).
    keep: usize,
    counters: Arc<Counters>,
}

impl Scratch {
    fn new(cost: HashCost, counters: Arc<Counters>) -> Scratch {
        let keep =
            Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None).map(|p| p.block_count()).unwrap_or(0);
        Scratch { blocks: Vec::new(), keep, counters }
    }

    /// A scratch for a one-off synchronous call ([`hash_now`], [`verify_now`]): kept for nothing.
    fn one_off() -> Scratch {
        Scratch { blocks: Vec::new(), keep: 0, counters: Arc::default() }
    }

    /// Runs `f` with at least `count` blocks of working memory.
    fn with_blocks<T>(&mut self, count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        if count > self.keep {
            // Larger than what this pool hashes with (an imported hash): not kept.
            return f(&mut vec![Block::default(); count]);
        }
        if self.blocks.len() < count {
            // Allocate the configured cost's area once; argon2 overwrites every block it reads,
            // so a reused area needs no clearing between hashes. The capacity is above glibc's
            // largest mmap threshold (32 MiB), so glibc maps the area on its own and unmaps it on
            // release: it never lands in (and stays in) a malloc arena. Only the `keep` blocks
            // written are resident.
            self.release();
            let mut blocks = Vec::with_capacity(self.keep.max(OWN_MAPPING_BLOCKS));
            blocks.resize(self.keep, Block::default());
            self.blocks = blocks;
            self.counters.scratch_allocs.fetch_add(1, Ordering::Relaxed);
            self.counters.scratch_bytes.fetch_add(self.bytes(), Ordering::Relaxed);
        }
        f(&mut self.blocks[..count])
    }

    fn bytes(&self) -> u64 {
        (self.blocks.len() * std::mem::size_of::<Block>()) as u64
    }

    /// Frees the working area (the thread is about to wait for work).
    fn release(&mut self) {
        if !self.blocks.is_empty() {
            self.counters.scratch_bytes.fetch_sub(self.bytes(), Ordering::Relaxed);
            self.blocks = Vec::new();
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.release();
    }
}

/// The password-hashing pool: one thread per core, fed through a bounded queue. A full queue
/// refuses new jobs at once (429 `over_request_rate_limit` with `Retry-After: 1`) instead of
/// queueing without end, and a queued job whose requester has gone is dropped unrun, so a storm
/// of abandoned requests leaves no backlog behind. The threads end when the last `Hasher` clone
/// is dropped.
#[derive(Clone)]
pub struct Hasher {
    cost: HashCost,
    jobs: mpsc::SyncSender<Job>,
    /// A hash of a random password, verified when the user does not exist so that "no such
    /// user" takes as long as "wrong password" (no enumeration by timing).
    decoy: Arc<tokio::sync::OnceCell<String>>,
    counters: Arc<Counters>,
}

impl Hasher {
    /// A pool with one hashing thread per available core and the default queue bound
    /// ([`default_hash_queue`]).
    pub fn new(cost: HashCost) -> Hasher {
        Hasher::with_queue(cost, default_hash_queue())
    }

    /// A pool with one hashing thread per available core and at most `queue` waiting jobs
    /// (at least 1).
    pub fn with_queue(cost: HashCost, queue: usize) -> Hasher {
        Hasher::with_threads(cost, hash_threads(), queue)
    }

    fn with_threads(cost: HashCost, threads: usize, queue: usize) -> Hasher {
        // `sync_channel(0)` would be a rendezvous channel: keep at least one slot.
        let (jobs, receiver) = mpsc::sync_channel::<Job>(queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let counters = Arc::<Counters>::default();
        for i in 0..threads.max(1) {
            let receiver = receiver.clone();
            let mut scratch = Scratch::new(cost, counters.clone());
            let spawned = std::thread::Builder::new().name(format!("ferrotrue-hash-{i}")).spawn(move || {
                lower_priority();
                while let Some(job) = next_job(&receiver, &mut scratch) {
                    job(&mut scratch);
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password-hashing thread");
            }
        }
        Hasher { cost, jobs, decoy: Arc::default(), counters }
    }

    /// Counts of jobs run, skipped and shed so far.
    pub fn stats(&self) -> HasherStats {
        HasherStats {
            run: self.counters.run.load(Ordering::Relaxed),
            skipped: self.counters.skipped.load(Ordering::Relaxed),
            shed: self.counters.shed.load(Ordering::Relaxed),
        }
    }

    /// Bytes of argon2 working memory the hashing threads hold now (0 when they are idle), and
    /// how many working areas they have allocated so far.
    pub fn scratch(&self) -> (u64, u64) {
        (self.counters.scratch_bytes.load(Ordering::Relaxed), self.counters.scratch_allocs.load(Ordering::Relaxed))
    }

    /// Spends the time of one verification and reports a mismatch.
    pub async fn verify_decoy(&self, password: &Secret) -> AuthResult<PasswordCheck> {
        let decoy = self.decoy.get_or_try_init(|| async { self.hash(&Secret(random_secret())).await }).await?.clone();
        self.verify(password, &decoy).await?;
        Ok(PasswordCheck::Mismatch)
    }

    /// Hashes `password` with argon2id into a PHC string.
    pub async fn hash(&self, password: &Secret) -> AuthResult<String> {
        let cost = self.cost;
        let password = password.clone();
        self.run_with(move |scratch| hash_with(cost, &password, &random_bytes::<16>(), scratch)).await?
    }

    /// Checks `password` against a stored hash (argon2 PHC or bcrypt).
    pub async fn verify(&self, password: &Secret, stored: &str) -> AuthResult<PasswordCheck> {
        let (password, stored) = (password.clone(), stored.to_owned());
        self.run_with(move |scratch| verify_with(&password, &stored, scratch)).await
    }

    #[cfg(test)]
    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> AuthResult<T> {
        self.run_with(move |_| job()).await
    }

    async fn run_with<T: Send + 'static>(&self, job: impl FnOnce(&mut Scratch) -> T + Send + 'static) -> AuthResult<T> {
        match self.submit_with(job)?.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(AuthError::unexpected("password job panicked")),
            Err(_) => Err(AuthError::unexpected("password pool dropped the job")),
        }
    }

    /// Queues `job` without waiting: fails at once when the queue is full. Dropping the returned
    /// receiver (the request timed out or its client went away) makes the job a no-op.
    #[cfg(test)]
    fn submit<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> AuthResult<JobReceiver<T>> {
        self.submit_with(move |_| job())
    }

    fn submit_with<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Scratch) -> T + Send + 'static,
    ) -> AuthResult<JobReceiver<T>> {
        let (tx, rx) = oneshot::channel();
        let counters = self.counters.clone();
        let job: Job = Box::new(move |scratch: &mut Scratch| {
            metrics::gauge!("ferrotrue_password_hash_queue_depth").decrement(1.0);
            if tx.is_closed() {
                counters.skipped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("ferrotrue_password_hash_jobs_total", "outcome" => "skipped").increment(1);
                return;
            }
            counters.run.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("ferrotrue_password_hash_jobs_total", "outcome" => "run").increment(1);
            // A panicking hash must not kill the pool thread.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(scratch)));
            let _ = tx.send(result);
        });
        match self.jobs.try_send(job) {
            Ok(()) => {
                metrics::gauge!("ferrotrue_password_hash_queue_depth").increment(1.0);
                Ok(rx)
            }
            Err(mpsc::TrySendError::Full(_)) => {
                metrics::counter!("ferrotrue_password_hash_jobs_total", "outcome" => "shed").increment(1);
                let shed = self.counters.shed.fetch_add(1, Ordering::Relaxed) + 1;
                // One line for the first and then every 1000th, not one per refused request.
                if shed % 1000 == 1 {
                    tracing::warn!(shed, "password-hash queue full: refusing logins with 429 until it drains");
                }
                Err(AuthError::too_many_requests(ErrorCode::OverRequestRateLimit, "Request rate limit reached")
                    .with_retry_after(1))
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Err(AuthError::unexpected("password pool closed")),
        }
    }
}

type JobReceiver<T> = oneshot::Receiver<std::thread::Result<T>>;

/// The next job for a hashing thread, or `None` once every [`Hasher`] is gone. A thread that
/// finds nothing waiting frees its working memory before it sleeps, so an idle pool holds none;
/// while jobs keep coming it keeps (and reuses) it. The queue's lock is held only while taking a
/// job, never while hashing.
fn next_job(receiver: &Mutex<mpsc::Receiver<Job>>, scratch: &mut Scratch) -> Option<Job> {
    // A lock that is taken means another thread is already waiting for the next job, i.e. the
    // queue is empty: this one will wait too.
    if let Ok(queue) = receiver.try_lock() {
        match queue.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) => {}
        }
    }
    scratch.release();
    let queue = receiver.lock().ok()?;
    queue.recv().ok()
}

/// Lowers the calling thread's scheduling priority by [`HASH_NICE_INCREMENT`] (Linux: the nice
/// value is per thread; 19 is the lowest). Failing to is harmless: hashing still works, only
/// less politely.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let lowered = getpriority_process(me)
            .and_then(|nice| setpriority_process(me, nice.saturating_add(HASH_NICE_INCREMENT).min(19)));
        if let Err(e) = lowered {
            tracing::debug!(error = %e, "could not lower the priority of a password-hashing thread");
        }
    }
}

fn argon2_params(cost: HashCost) -> AuthResult<Params> {
    Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .map_err(|e| AuthError::unexpected(format!("argon2 params: {e}")))
}

/// Synchronous argon2id hash; only for the blocking pool, benches and fixtures.
pub fn hash_now(cost: HashCost, password: &Secret) -> AuthResult<String> {
    hash_with(cost, password, &random_bytes::<16>(), &mut Scratch::one_off())
}

/// argon2id of `password` with `salt` into a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`,
/// exactly what argon2's `PasswordHasher` writes), in `scratch`'s working memory.
fn hash_with(cost: HashCost, password: &Secret, salt: &[u8], scratch: &mut Scratch) -> AuthResult<String> {
    let params = argon2_params(cost)?;
    let failed = |e: &dyn fmt::Display| AuthError::unexpected(format!("argon2 hash: {e}"));
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    scratch
        .with_blocks(params.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(password.expose().as_bytes(), salt, &mut out, blocks)
        })
        .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Synchronous verification of argon2 PHC (`$argon2i$`/`$argon2id$`) or bcrypt
/// (`$2a$`/`$2b$`/`$2y$`) hashes. Unknown formats never match.
pub fn verify_now(password: &Secret, stored: &str) -> PasswordCheck {
    verify_with(password, stored, &mut Scratch::one_off())
}

fn verify_with(password: &Secret, stored: &str, scratch: &mut Scratch) -> PasswordCheck {
    let pw = password.expose().as_bytes();
    if is_bcrypt(stored) {
        return match bcrypt::verify(pw, stored) {
            Ok(true) => PasswordCheck::MatchNeedsRehash,
            _ => PasswordCheck::Mismatch,
        };
    }
    if stored.starts_with("$argon2i$") || stored.starts_with("$argon2id$") {
        return match argon2_matches(pw, stored, scratch) {
            Some(true) => PasswordCheck::Match,
            _ => PasswordCheck::Mismatch,
        };
    }
    PasswordCheck::Mismatch
}

/// Recomputes an argon2 PHC hash with its own algorithm, version, parameters and salt, so
/// imported hashes of any cost verify. `None` when the string cannot be read.
fn argon2_matches(pw: &[u8], stored: &str, scratch: &mut Scratch) -> Option<bool> {
    let parsed = PasswordHash::new(stored).ok()?;
    let algorithm = Algorithm::new(parsed.algorithm.as_str()).ok()?;
    let version = parsed.version.map(Version::try_from).transpose().ok()?.unwrap_or_default();
    // The output length comes from the stored hash.
    let params = Params::try_from(&parsed).ok()?;
    let (salt, expected) = (parsed.salt.as_ref()?, parsed.hash.as_ref()?);
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = out.get_mut(..expected.len())?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    scratch
        .with_blocks(params.block_count(), |blocks| argon2.hash_password_into_with_memory(pw, salt, out, blocks))
        .ok()?;
    Some(secure_eq(out, expected.as_ref()))
}

/// Checks a `password_hash` given to `POST /admin/users`: bcrypt (`$2a$`/`$2b$`/`$2y$`) or an
/// argon2 PHC string (`$argon2i$`/`$argon2id$`, v=19, m ≤ 1 GiB, t ≤ 20, p ≤ 16, no keyid/data),
/// GoTrue's accepted imports. Anything else is a clear 422, not a user who can never sign in.
pub fn check_imported_hash(hash: &str) -> AuthResult<()> {
    let invalid = |why: &str| {
        AuthError::unprocessable(
            crate::error::ErrorCode::ValidationFailed,
            format!("Invalid password_hash: {why}. Accepted: bcrypt ($2a$, $2b$, $2y$) or argon2 PHC ($argon2i$, $argon2id$, v=19)"),
        )
    };
    if is_bcrypt(hash) {
        let cost_ok = hash.get(4..6).and_then(|c| c.parse::<u32>().ok()).is_some_and(|c| (4..=31).contains(&c));
        return if hash.len() == 60 && cost_ok { Ok(()) } else { Err(invalid("malformed bcrypt hash")) };
    }
    if !(hash.starts_with("$argon2i$") || hash.starts_with("$argon2id$")) {
        return Err(invalid("unsupported hash format"));
    }
    let parsed = PasswordHash::new(hash).map_err(|_| invalid("malformed argon2 hash"))?;
    if parsed.version != Some(19) {
        return Err(invalid("only argon2 version 19 is supported"));
    }
    let param = |name: &str| parsed.params.get_decimal(name);
    let (m, t, p) = (param("m"), param("t"), param("p"));
    if parsed.params.get_str("keyid").is_some() || parsed.params.get_str("data").is_some() {
        return Err(invalid("keyid and data parameters are not supported"));
    }
    match (m, t, p) {
        (Some(m), Some(t), Some(p)) if m <= 1_048_576 && t <= 20 && p <= 16 && parsed.hash.is_some() => Ok(()),
        _ => Err(invalid("argon2 parameters out of range (m ≤ 1048576, t ≤ 20, p ≤ 16)")),
    }
}

/// True for `$2a$`, `$2b$` and `$2y$` bcrypt hashes.
pub fn is_bcrypt(stored: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| stored.starts_with(p))
}

/// `n` random bytes from the thread-local CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::fill(&mut out[..]);
    out
}

/// A 128-bit random token, url-safe base64 without padding (22 chars).
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

/// A 256-bit random secret, url-safe base64 (43 chars), for generated JWT secrets.
pub fn random_secret() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// SHA-256 digest; refresh tokens are indexed by it, so the database never needs the raw
/// value of a revoked token.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// HMAC-SHA256 of `parts`, each prefixed with its length so that no two different lists of
/// parts give the same input (`"ab" ‖ "c"` ≠ `"a" ‖ "bc"`).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else { unreachable!("HMAC accepts any key") };
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// A 32-byte key for one purpose (`label`), derived from a server secret, so that keys for
/// different purposes never coincide and none reveals the secret.
pub fn derive_key(secret: &Secret, label: &str) -> [u8; 32] {
    hmac_sha256(secret.expose().as_bytes(), &[b"ferrotrue key derivation v1", label.as_bytes()])
}

/// Constant-time equality for secrets.
pub fn secure_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_parts_are_unambiguous_and_keys_are_per_purpose() {
        assert_ne!(hmac_sha256(b"k", &[b"ab", b"c"]), hmac_sha256(b"k", &[b"a", b"bc"]));
        assert_ne!(hmac_sha256(b"k", &[b"abc"]), hmac_sha256(b"k2", &[b"abc"]));
        assert_eq!(hmac_sha256(&[9u8; 100], &[b"x"]), hmac_sha256(&[9u8; 100], &[b"x"]), "long keys work");
        let secret = Secret("s".into());
        assert_ne!(derive_key(&secret, "one"), derive_key(&secret, "two"));
        assert_ne!(derive_key(&secret, "one"), derive_key(&Secret("t".into()), "one"));
    }

    #[tokio::test]
    async fn argon2_round_trip_and_wrong_password() {
        let hasher = Hasher::new(HashCost::QUICK);
        let hash = hasher.hash(&Secret("correct horse".into())).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"));
        assert_eq!(hasher.verify(&Secret("correct horse".into()), &hash).await.unwrap(), PasswordCheck::Match);
        assert_eq!(hasher.verify(&Secret("wrong".into()), &hash).await.unwrap(), PasswordCheck::Mismatch);
    }

    /// A one-thread pool whose thread is held by a job until the returned sender is used or
    /// dropped; returns once that job is running (so the queue itself is empty).
    async fn busy_pool(queue: usize) -> (Hasher, std::sync::mpsc::Sender<()>, JobReceiver<()>) {
        let hasher = Hasher::with_threads(HashCost::QUICK, 1, queue);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = oneshot::channel::<()>();
        let held = hasher
            .submit(move || {
                let _ = started_tx.send(());
                let _ = gate.recv();
            })
            .unwrap();
        started.await.unwrap();
        (hasher, release, held)
    }

    #[tokio::test]
    async fn full_queue_sheds_with_429_and_retry_after() {
        let (hasher, release, held) = busy_pool(2).await;
        let queued: Vec<_> = (0..2).map(|i| hasher.submit(move || i).unwrap()).collect();
        let err = hasher.submit(|| 99).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::TooManyRequests);
        assert_eq!(err.code, ErrorCode::OverRequestRateLimit);
        assert_eq!(err.retry_after, Some(1));
        // The public API sheds the same way, without waiting.
        let err = hasher.verify(&Secret("pw".into()), "$2a$04$x").await.unwrap_err();
        assert_eq!(err.code, ErrorCode::OverRequestRateLimit);
        assert_eq!(hasher.stats().shed, 2);

        // Once the thread is free the queued jobs run and new ones are accepted again.
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        for (i, rx) in queued.into_iter().enumerate() {
            assert_eq!(rx.await.unwrap().unwrap(), i);
        }
        let hash = hasher.hash(&Secret("after the storm".into())).await.unwrap();
        assert_eq!(hasher.verify(&Secret("after the storm".into()), &hash).await.unwrap(), PasswordCheck::Match);
        assert_eq!(hasher.stats(), HasherStats { run: 5, skipped: 0, shed: 2 });
    }

    #[tokio::test]
    async fn jobs_whose_requester_left_are_skipped() {
        let (hasher, release, held) = busy_pool(4).await;
        let ran = Arc::new(AtomicU64::new(0));
        let abandoned: Vec<_> = (0..3)
            .map(|_| {
                let ran = ran.clone();
                hasher.submit(move || ran.fetch_add(1, Ordering::SeqCst)).unwrap()
            })
            .collect();
        // The requests time out / their clients disconnect: the receivers are dropped.
        drop(abandoned);
        // A request that is still waiting keeps its job.
        let ran2 = ran.clone();
        let waiting = hasher.submit(move || ran2.fetch_add(1, Ordering::SeqCst)).unwrap();
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        // One thread, FIFO: the abandoned jobs were taken (and skipped) before this one ran.
        assert_eq!(waiting.await.unwrap().unwrap(), 0, "no abandoned job ran before it");
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(hasher.stats(), HasherStats { run: 2, skipped: 3, shed: 0 });
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_the_pool() {
        let hasher = Hasher::with_threads(HashCost::QUICK, 1, 1);
        let err = hasher.run::<()>(|| panic!("boom")).await.unwrap_err();
        assert!(err.is_server_error());
        assert!(hasher.hash(&Secret("still alive".into())).await.is_ok());
    }

    #[tokio::test]
    async fn decoy_verification_reports_a_mismatch() {
        let hasher = Hasher::new(HashCost::QUICK);
        assert_eq!(hasher.verify_decoy(&Secret("anything".into())).await.unwrap(), PasswordCheck::Mismatch);
        assert_eq!(hasher.verify_decoy(&Secret("".into())).await.unwrap(), PasswordCheck::Mismatch);
    }

    #[test]
    fn bcrypt_imports_verify_and_ask_for_rehash() {
        let hash = bcrypt::hash("s3cret-pass", 4).unwrap();
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            let variant = format!("{prefix}{}", &hash[4..]);
            assert_eq!(verify_now(&Secret("s3cret-pass".into()), &variant), PasswordCheck::MatchNeedsRehash);
            assert_eq!(verify_now(&Secret("nope".into()), &variant), PasswordCheck::Mismatch);
        }
    }

    #[test]
    fn unknown_hash_formats_never_match() {
        assert_eq!(verify_now(&Secret("x".into()), "plain"), PasswordCheck::Mismatch);
        assert_eq!(verify_now(&Secret("x".into()), "$argon2id$garbage"), PasswordCheck::Mismatch);
    }

    /// The pool's argon2 (reused working memory, hand-built PHC string) writes exactly what the
    /// argon2 crate's own `PasswordHasher` writes for the same salt, and verifies what it wrote.
    #[test]
    fn scratch_hashes_are_the_argon2_crates_phc_strings() {
        use argon2::PasswordHasher;
        let mut scratch = Scratch::new(HashCost::QUICK, Arc::default());
        for (cost, salt) in [
            (HashCost::QUICK, [7u8; 16]),
            (HashCost { memory_kib: 256, iterations: 3, parallelism: 2 }, [1u8; 16]),
            (HashCost::QUICK, [9u8; 16]),
        ] {
            let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None).unwrap();
            let expected = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_with_salt(b"correct horse", &salt)
                .unwrap()
                .to_string();
            let ours = hash_with(cost, &Secret("correct horse".into()), &salt, &mut scratch).unwrap();
            assert_eq!(ours, expected);
            assert_eq!(verify_with(&Secret("correct horse".into()), &ours, &mut scratch), PasswordCheck::Match);
            assert_eq!(verify_with(&Secret("correct hors".into()), &ours, &mut scratch), PasswordCheck::Mismatch);
        }
        // A fresh random salt per hash.
        let a = hash_now(HashCost::QUICK, &Secret("pw".into())).unwrap();
        let b = hash_now(HashCost::QUICK, &Secret("pw".into())).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
    }

    /// Imported argon2 hashes of other variants, versions, output lengths and larger memory than
    /// the pool keeps all verify through a pool scratch, which keeps only its own size.
    #[test]
    fn scratch_verifies_imported_argon2_of_any_cost() {
        use argon2::PasswordHasher;
        let mut scratch = Scratch::new(HashCost::QUICK, Arc::default());
        for (algorithm, version, m, t, p, len) in [
            (Algorithm::Argon2id, Version::V0x13, 64, 1, 1, None),
            (Algorithm::Argon2i, Version::V0x13, 128, 2, 1, None),
            (Algorithm::Argon2id, Version::V0x10, 64, 1, 1, None),
            (Algorithm::Argon2id, Version::V0x13, 4096, 1, 4, Some(64)),
            (Algorithm::Argon2i, Version::V0x13, 1024, 1, 1, Some(16)),
        ] {
            let params = Params::new(m, t, p, len).unwrap();
            let hash = Argon2::new(algorithm, version, params).hash_password(b"imported-pw").unwrap().to_string();
            assert_eq!(verify_with(&Secret("imported-pw".into()), &hash, &mut scratch), PasswordCheck::Match, "{hash}");
            assert_eq!(verify_with(&Secret("imported-px".into()), &hash, &mut scratch), PasswordCheck::Mismatch);
            assert_eq!(verify_now(&Secret("imported-pw".into()), &hash), PasswordCheck::Match);
            // Only the configured cost's area is ever kept.
            assert!(scratch.blocks.len() <= scratch.keep, "{hash}");
        }
        // argon2d is not an accepted import, and a mangled hash never matches.
        let d = Argon2::new(Algorithm::Argon2d, Version::V0x13, Params::new(64, 1, 1, None).unwrap())
            .hash_password(b"pw")
            .unwrap()
            .to_string();
        assert_eq!(verify_with(&Secret("pw".into()), &d, &mut scratch), PasswordCheck::Mismatch);
        let good = hash_now(HashCost::QUICK, &Secret("pw".into())).unwrap();
        let cut = &good[..good.len() - 4];
        assert_eq!(verify_with(&Secret("pw".into()), cut, &mut scratch), PasswordCheck::Mismatch);
    }

    /// A busy pool thread allocates its argon2 memory once and reuses it for every queued hash;
    /// once the queue runs dry it frees it.
    #[tokio::test]
    async fn hashing_memory_is_reused_while_busy_and_freed_when_idle() {
        let (hasher, release, held) = busy_pool(8).await;
        assert_eq!(hasher.scratch(), (0, 0), "nothing held before the first hash");
        let jobs: Vec<_> = (0..6)
            .map(|i| {
                let password = Secret(format!("pw-{i}"));
                hasher
                    .submit_with(move |scratch| hash_with(HashCost::QUICK, &password, &[i as u8; 16], scratch))
                    .unwrap()
            })
            .collect();
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        for job in jobs {
            assert!(job.await.unwrap().unwrap().unwrap().starts_with("$argon2id$"));
        }
        assert_eq!(hasher.scratch().1, 1, "one allocation for six back-to-back hashes");
        // The queue is empty now: the thread frees the area before it waits.
        let mut held_bytes = hasher.scratch().0;
        for _ in 0..500 {
            if held_bytes == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            held_bytes = hasher.scratch().0;
        }
        assert_eq!(held_bytes, 0, "an idle pool holds no argon2 memory");
        // The next hash allocates again, and still verifies.
        let hash = hasher.hash(&Secret("again".into())).await.unwrap();
        assert_eq!(hasher.verify(&Secret("again".into()), &hash).await.unwrap(), PasswordCheck::Match);
        assert!(hasher.scratch().1 >= 2);
    }

    /// Hashing threads yield the CPU to the async workers: they run at a lower priority.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_a_lower_priority() {
        let nice_of_this_thread = || rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        // The pool's threads start from the nice value of the thread that creates the pool.
        let here = nice_of_this_thread().unwrap();
        let hasher = Hasher::with_threads(HashCost::QUICK, 2, 4);
        for _ in 0..4 {
            let nice = hasher.run(nice_of_this_thread).await.unwrap().unwrap();
            assert_eq!(nice, (here + HASH_NICE_INCREMENT).min(19));
        }
        assert_eq!(nice_of_this_thread().unwrap(), here, "only the hashing threads are lowered");
    }

    #[test]
    fn imported_argon2i_verifies() {
        use argon2::PasswordHasher;
        let hash = argon2::Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::new(64, 1, 1, None).unwrap())
            .hash_password(b"pw-argon2i")
            .unwrap()
            .to_string();
        assert_eq!(verify_now(&Secret("pw-argon2i".into()), &hash), PasswordCheck::Match);
    }

    #[test]
    fn imported_hash_formats() {
        let bcrypt = bcrypt::hash("pw", 4).unwrap();
        assert!(check_imported_hash(&bcrypt).is_ok());
        let argon = hash_now(HashCost::QUICK, &Secret("pw".into())).unwrap();
        assert!(check_imported_hash(&argon).is_ok());
        for bad in [
            "plain",
            "$2a$04$short",
            "$argon2d$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
            "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
            "$argon2id$v=19$m=64,t=99,p=1$c2FsdHNhbHQ$aGFzaA",
            "$scrypt$x",
        ] {
            assert!(check_imported_hash(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "Secret(<redacted>)");
    }
}
