//! The only module that touches sled.
//!
//! * Every actor owns a few [`Table`]s (one sled tree each) and writes through them before it
//!   replies: memory is never ahead of what was written.
//! * **Durability**: sled only syncs every 500 ms on its own. An HTTP response goes out only
//!   after [`Flusher::flush`] resolves (via `Actors::durable`), and the flusher makes that a
//!   *group commit*: every caller queued while one sync runs shares the next one, so a
//!   burst of N requests costs about one sync, not N — and a request that wrote to three actors
//!   waits for one sync, not three.
//! * Multi-tree writes go through [`Store::apply`], one sled transaction, so a crash never leaves
//!   an index pointing at a missing record. A single op is written without a transaction (one key
//!   is atomic by itself, and it does not wait for a sync in progress).

pub mod backup;
pub mod codec;

use crate::error::StoreError;
use serde::{de::DeserializeOwned, Serialize};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Tree names: snake_case plural + format generation.
pub const USERS: &str = "users/v1";
pub const USERS_BY_EMAIL: &str = "users_by_email/v1";
pub const USERS_BY_PHONE: &str = "users_by_phone/v1";
pub const SESSIONS: &str = "sessions/v1";
/// Refresh tokens by SHA-256 digest; no raw token value (v1 kept the active one's raw value).
pub const REFRESH_TOKENS: &str = "refresh_tokens/v2";
/// Read once at start-up to migrate into [`REFRESH_TOKENS`], then left empty.
pub const REFRESH_TOKENS_V1: &str = "refresh_tokens/v1";
/// v2: keyed MACs and attempt counts; v1 (unkeyed GoTrue hashes) is abandoned on upgrade.
pub const ONE_TIME_TOKENS: &str = "one_time_tokens/v2";
pub const FLOW_STATES: &str = "flow_states/v2";
pub const AUDIT_LOG: &str = "audit_log/v1";
/// MFA factors by id (each carries its sealed TOTP secret, phone or WebAuthn credential, and
/// its open challenges). v2 added the phone and WebAuthn fields.
pub const MFA_FACTORS: &str = "mfa_factors/v2";
/// Read once at start-up to migrate into [`MFA_FACTORS`], then left empty.
pub const MFA_FACTORS_V1: &str = "mfa_factors/v1";
/// Small server-wide values (the generated JWT secret lives in a file, not here).
pub const META: &str = "meta/v1";

/// Default sled page-cache bound: an idle server stays small (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// How acknowledged writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every reply to a write waits for a (group-committed) sync. The default.
    Sync,
    /// Rely on sled's 500 ms background flush: faster, loses up to 500 ms on a crash.
    /// For benchmarks only (`FERROTRUE_DURABILITY=relaxed`).
    Relaxed,
}

/// The database: a cheap-to-clone handle (sled's `Db` is an `Arc`) plus the group-commit queue.
#[derive(Clone)]
pub struct Store {
    db: Arc<sled::Db>,
    flusher: Flusher,
    /// Writers share it; a backup takes it alone, so a snapshot sees no half-applied state
    /// across trees (reads never wait).
    gate: Arc<std::sync::RwLock<()>>,
}

impl Store {
    /// Opens (or creates) the database at `path`. Must run inside a tokio runtime (the flusher
    /// is a task). Fails if another process holds the directory.
    pub fn open(path: &Path, cache_bytes: u64, durability: Durability) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(path).cache_capacity(cache_bytes).flush_every_ms(Some(500)).open()?;
        Ok(Self::with_db(db, durability))
    }

    /// A database in a temporary directory that disappears on drop (unit tests, benches).
    pub fn temporary() -> Result<Store, StoreError> {
        let db = sled::Config::new().temporary(true).cache_capacity(DEFAULT_CACHE_BYTES).open()?;
        Ok(Self::with_db(db, Durability::Sync))
    }

    fn with_db(db: sled::Db, durability: Durability) -> Store {
        let db = Arc::new(db);
        // The flusher only holds a weak reference: dropping the last `Store` (and its tables)
        // closes sled and releases the directory lock at once, so a restart can reopen it.
        let flusher = Flusher::start(Arc::downgrade(&db), durability);
        Store { db, flusher, gate: Arc::default() }
    }

    /// A typed view of one tree.
    pub fn table<T: Serialize + DeserializeOwned>(&self, name: &'static str) -> Result<Table<T>, StoreError> {
        Ok(Table { name, tree: self.db.open_tree(name)?, _record: PhantomData })
    }

    /// Resolves once every write made before this call is on disk (group commit).
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.flusher.flush().await
    }

    /// The group-commit handle, for actors that reply from a spawned task.
    pub fn flusher(&self) -> Flusher {
        self.flusher.clone()
    }

    /// Applies `ops` atomically across the trees they name.
    pub fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let _writing = self.gate.read().map_err(|_| StoreError::Corrupt("store gate poisoned".into()))?;
        apply_ops(ops)?;
        self.flusher.progress.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Moves every record of the tree `from` (an older format generation) into `to`, converted
    /// by `convert`, in transactions of at most 1,024 records (put new + remove old), so a crash
    /// mid-way resumes at the next start without losing a record. A record already in `to` wins
    /// over its old copy. Returns how many records moved.
    pub fn migrate_tree<Old, New>(
        &self,
        from: &'static str,
        to: &Table<New>,
        convert: impl Fn(Old) -> New,
    ) -> Result<usize, StoreError>
    where
        Old: Serialize + DeserializeOwned,
        New: Serialize + DeserializeOwned,
    {
        const BATCH: usize = 1024;
        let old: Table<Old> = self.table(from)?;
        let mut moved = 0;
        loop {
            let mut ops = Vec::new();
            for item in old.scan(false).take(BATCH) {
                let (key, record) = item?;
                if to.get(&key)?.is_none() {
                    ops.push(to.put(key.clone(), &convert(record))?);
                    moved += 1;
                }
                ops.push(old.remove(key));
            }
            if ops.is_empty() {
                return Ok(moved);
            }
            self.apply(ops)?;
        }
    }

    /// Final flush at shutdown.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// [`Store::open`], retrying for up to 2 s: sled releases its directory lock from its own
    /// background machinery, which may need a moment (and this runtime's turn) after the last
    /// handle of a previous open — a restart in the same process, or a process just exiting —
    /// is gone. The last error is returned if the directory stays locked.
    pub async fn open_when_free(path: &Path, cache_bytes: u64, durability: Durability) -> Result<Store, StoreError> {
        let mut opened = Store::open(path, cache_bytes, durability);
        for _ in 0..40 {
            if opened.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            opened = Store::open(path, cache_bytes, durability);
        }
        opened
    }

    /// Reopens a database a test has just dropped ([`Store::open_when_free`]).
    #[cfg(test)]
    pub(crate) async fn reopen_for_tests(path: &Path) -> Store {
        Store::open_when_free(path, DEFAULT_CACHE_BYTES, Durability::Sync)
            .await
            .unwrap_or_else(|e| panic!("reopen: {e}"))
    }

    /// Bytes on disk, for the start-up log.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// A typed sled tree. Values are [`codec`]-encoded records; keys are raw bytes.
pub struct Table<T> {
    name: &'static str,
    tree: sled::Tree,
    _record: PhantomData<fn() -> T>,
}

impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        Table { name: self.name, tree: self.tree.clone(), _record: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned> Table<T> {
    /// Tree name, for logs and errors.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// Reads one record.
    pub fn get(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.tree.get(key)? {
            Some(bytes) => Ok(Some(codec::decode(self.name, &bytes)?)),
            None => Ok(None),
        }
    }
    /// Every record, in key order: actors load their state with this at start.
    pub fn load_all(&self) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        self.tree
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((k.to_vec(), codec::decode(self.name, &v)?))
            })
            .collect()
    }
    /// Records in key order (`newest_first`: descending), read and decoded lazily: memory
    /// stays flat however large the tree is.
    pub fn scan(&self, newest_first: bool) -> Scan<T> {
        Scan { name: self.name, iter: self.tree.iter(), newest_first, _record: PhantomData }
    }
    /// The greatest key, if any.
    pub fn last_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.last()?.map(|(k, _)| k.to_vec()))
    }
    /// An op that writes `value` under `key` (to be passed to [`Store::apply`]).
    pub fn put(&self, key: impl Into<Vec<u8>>, value: &T) -> Result<Op, StoreError> {
        Ok(Op::Put(self.tree.clone(), key.into(), codec::encode(value)?))
    }
    /// An op that removes `key`.
    pub fn remove(&self, key: impl Into<Vec<u8>>) -> Op {
        Op::Remove(self.tree.clone(), key.into())
    }
    /// Number of records.
    pub fn len(&self) -> usize {
        self.tree.len()
    }
    /// True when the tree holds nothing.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

/// A lazy walk over a [`Table`] (see [`Table::scan`]).
pub struct Scan<T> {
    name: &'static str,
    iter: sled::Iter,
    newest_first: bool,
    _record: PhantomData<fn() -> T>,
}

impl<T> Scan<T> {
    fn next_raw(&mut self) -> Option<sled::Result<(sled::IVec, sled::IVec)>> {
        if self.newest_first {
            self.iter.next_back()
        } else {
            self.iter.next()
        }
    }
    /// Steps over up to `n` records without decoding them; the number actually skipped.
    pub fn skip_records(&mut self, n: usize) -> Result<usize, StoreError> {
        for done in 0..n {
            match self.next_raw() {
                Some(item) => drop(item?),
                None => return Ok(done),
            }
        }
        Ok(n)
    }
}

impl<T: DeserializeOwned> Iterator for Scan<T> {
    type Item = Result<(Vec<u8>, T), StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.next_raw()?;
        Some(item.map_err(StoreError::from).and_then(|(k, v)| Ok((k.to_vec(), codec::decode(self.name, &v)?))))
    }
}

/// One write of a multi-tree transaction.
pub enum Op {
    Put(sled::Tree, Vec<u8>, Vec<u8>),
    Remove(sled::Tree, Vec<u8>),
}

impl Op {
    fn tree(&self) -> &sled::Tree {
        match self {
            Op::Put(t, ..) | Op::Remove(t, _) => t,
        }
    }
}

fn apply_ops(mut ops: Vec<Op>) -> Result<(), StoreError> {
    use sled::Transactional;
    if ops.len() <= 1 {
        // One key is atomic on its own. A sled transaction (or batch) takes sled's process-wide
        // write lock, which waits for any sync in progress: the hot paths (a rotation, an audit
        // entry) write one key each so they never queue behind the disk (issue 13).
        match ops.pop() {
            None => {}
            Some(Op::Put(tree, k, v)) => {
                tree.insert(k, v)?;
            }
            Some(Op::Remove(tree, k)) => {
                tree.remove(k)?;
            }
        }
        return Ok(());
    }
    // Distinct trees in first-seen order; each op refers to its tree by index.
    let mut trees: Vec<sled::Tree> = Vec::new();
    let mut indexed = Vec::with_capacity(ops.len());
    for op in &ops {
        let at = match trees.iter().position(|t| t.name() == op.tree().name()) {
            Some(i) => i,
            None => {
                trees.push(op.tree().clone());
                trees.len() - 1
            }
        };
        indexed.push(at);
    }
    let refs: Vec<&sled::Tree> = trees.iter().collect();
    refs.as_slice()
        .transaction(|views| {
            for (op, &at) in ops.iter().zip(&indexed) {
                let Some(view) = views.get(at) else { continue };
                match op {
                    Op::Put(_, k, v) => {
                        view.insert(k.as_slice(), v.as_slice())?;
                    }
                    Op::Remove(_, k) => {
                        view.remove(k.as_slice())?;
                    }
                }
            }
            Ok(())
        })
        .map_err(|e: sled::transaction::TransactionError<()>| match e {
            sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
            sled::transaction::TransactionError::Abort(()) => StoreError::Corrupt("transaction aborted".into()),
        })
}

type FlushWaiter = oneshot::Sender<Result<(), String>>;

/// Minimum time between the starts of two syncs while more than one request waits for each
/// (see [`Flusher`]): bounds the syncs to 1,000/s under load, at the price of up to this much
/// extra latency for a request that arrives just after a sync started.
const GROUP_COMMIT_SPACING: std::time::Duration = std::time::Duration::from_millis(1);

/// Write and sync generations: a caller whose writes are already covered by a finished sync
/// (every read, and most writes under load) does not wait at all.
#[derive(Default)]
struct Progress {
    written: AtomicU64,
    durable: AtomicU64,
}

/// Group commit: one dedicated thread runs a blocking sled `flush` for everyone queued since the
/// last one started.
///
/// Not `flush_async` on a tokio task: that hands every flush to sled's IO thread pool, whose
/// `notify_all` wakes all of its (7+) idle threads per job and which spawns more OS threads while
/// a sync is in progress; under refresh load that herd was about half of the server's CPU
/// (BENCHMARKS.md, issue 13). The thread holds only a `Weak` to the database and exits when the
/// last `Flusher` (and so the queue's sender) is dropped.
#[derive(Clone)]
pub struct Flusher {
    queue: Option<std::sync::mpsc::Sender<FlushWaiter>>,
    progress: Arc<Progress>,
}

impl Flusher {
    fn start(db: std::sync::Weak<sled::Db>, durability: Durability) -> Flusher {
        let progress = Arc::new(Progress::default());
        if durability == Durability::Relaxed {
            return Flusher { queue: None, progress };
        }
        let (tx, rx) = std::sync::mpsc::channel::<FlushWaiter>();
        let shared = progress.clone();
        let spawned = std::thread::Builder::new().name("ferrotrue-sync".into()).spawn(move || {
            let mut last_batch = 0usize;
            let mut last_start: Option<std::time::Instant> = None;
            while let Ok(first) = rx.recv() {
                // Under concurrency (the last sync served more than one request), start syncs at
                // most every `GROUP_COMMIT_SPACING`: a sync costs about the same CPU whatever it
                // covers, so back-to-back syncs of a few requests each cost more CPU than the
                // requests. A lone client (batches of one) never waits.
                if let (true, Some(at)) = (last_batch > 1, last_start) {
                    let due = at + GROUP_COMMIT_SPACING;
                    let now = std::time::Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                }
                last_start = Some(std::time::Instant::now());
                let mut waiters = vec![first];
                while let Ok(more) = rx.try_recv() {
                    waiters.push(more);
                }
                // Every waiter enqueued before this point made its writes before enqueueing, so
                // this one sync covers all of them (and every write counted in `covered`).
                let covered = shared.written.load(Ordering::SeqCst);
                let started = std::time::Instant::now();
                let result = match db.upgrade() {
                    Some(db) => db.flush().map(|_| ()).map_err(|e| e.to_string()),
                    None => Err("database closed".to_owned()),
                };
                metrics::histogram!("ferrotrue_storage_sync_seconds").record(started.elapsed().as_secs_f64());
                metrics::histogram!("ferrotrue_storage_group_commit_batch").record(waiters.len() as f64);
                match &result {
                    Ok(()) => {
                        shared.durable.fetch_max(covered, Ordering::SeqCst);
                    }
                    Err(e) => tracing::error!(error = %e, "sled flush failed"),
                }
                last_batch = waiters.len();
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        });
        if let Err(e) = spawned {
            // Without the thread every `flush` fails ("flusher stopped"): say why, loudly.
            tracing::error!(error = %e, "could not start the sync thread");
        }
        Flusher { queue: Some(tx), progress }
    }

    /// Waits until everything written before the call is durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let Some(queue) = &self.queue else { return Ok(()) };
        if self.progress.durable.load(Ordering::SeqCst) >= self.progress.written.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        queue.send(tx).map_err(|_| StoreError::Flush("flusher stopped".into()))?;
        match rx.await {
            Ok(result) => result.map_err(StoreError::Flush),
            Err(_) => Err(StoreError::Flush("flusher stopped".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[tokio::test]
    async fn apply_writes_across_trees_atomically_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), DEFAULT_CACHE_BYTES, Durability::Sync).unwrap();
            let a: Table<String> = store.table("a/v1").unwrap();
            let b: Table<u64> = store.table("b/v1").unwrap();
            store
                .apply(vec![a.put(b"k".to_vec(), &"v".to_owned()).unwrap(), b.put(b"n".to_vec(), &7).unwrap()])
                .unwrap();
            store.durable().await.unwrap();
        }
        let store = Store::reopen_for_tests(dir.path()).await;
        let a: Table<String> = store.table("a/v1").unwrap();
        let b: Table<u64> = store.table("b/v1").unwrap();
        assert_eq!(a.get(b"k").unwrap().as_deref(), Some("v"));
        assert_eq!(b.get(b"n").unwrap(), Some(7));
        store.apply(vec![a.remove(b"k".to_vec())]).unwrap();
        assert_eq!(a.get(b"k").unwrap(), None);
    }

    #[tokio::test]
    async fn many_concurrent_durable_calls_all_resolve() {
        let store = Store::temporary().unwrap();
        let t: Table<u32> = store.table("t/v1").unwrap();
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let (store, t) = (store.clone(), t.clone());
            tasks.push(tokio::spawn(async move {
                store.apply(vec![t.put(i.to_be_bytes().to_vec(), &i).unwrap()]).unwrap();
                store.durable().await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(t.len(), 64);
    }

    #[test]
    fn unknown_version_is_an_error_not_a_panic() {
        assert!(matches!(codec::decode::<u32>("x", &[9, 1]), Err(StoreError::Version(9, "x"))));
        assert!(matches!(codec::decode::<u32>("x", &[]), Err(StoreError::Version(0, "x"))));
        assert!(codec::decode::<String>("x", &[codec::V1, 200]).is_err());
    }

    proptest! {
        #[test]
        fn codec_round_trips_arbitrary_bytes_safely(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            // Decoding garbage must fail cleanly, never panic.
            let _ = codec::decode::<(String, u64, Option<i64>)>("x", &bytes);
        }
    }
}
