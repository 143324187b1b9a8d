//! The registry's memory and its write-through methods.
//!
//! Invariant: memory is never ahead of disk. Each mutation validates against memory, writes one
//! sled transaction (record + index trees), and only then changes the maps.
//!
//! Memory holds indexes only (ids with their creation time, email, phone and identity keys,
//! creation order): a few hundred bytes per user, so a million users fit in a few hundred MB.
//! The records stay in `users/v1` and are read on demand through a small cache of recently
//! used users ([`UserCache`]), which a write updates after its transaction, like the indexes.

use super::model::{AuditEntry, Factor, FactorV1, User};
use crate::clock::{Clock, Timestamp};
use crate::error::{AuthError, AuthResult, ErrorCode, StoreError, DUPLICATE_EMAIL_MSG, DUPLICATE_PHONE_MSG};
use crate::storage::{self, Op, Store, Table};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

/// One page of a listing plus the total it was cut from.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: usize,
}

/// `GET /admin/audit?query=<scope>:<text>` scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditQuery {
    Author(String),
    Action(String),
    Type(String),
}

/// Who already holds a set of addresses (GoTrue's `DetermineAccountLinking` lookups).
#[derive(Debug, Clone, Default)]
pub struct LinkCandidates {
    /// Distinct owners of identities (any non-SSO provider) with one of the addresses.
    pub identity_owners: Vec<Uuid>,
    /// Non-SSO users whose own email is one of the addresses.
    pub users: Vec<User>,
}

/// A change to one user, run inside the registry against a copy of the record.
pub type UserEdit = Box<dyn FnOnce(&mut User) -> AuthResult<()> + Send>;

/// A change to one user's factors, run inside the registry against a copy of the list. What it
/// changed is written even when it returns an error ("commit then fail": a wrong TOTP code
/// still counts against its challenge); an edit that fails validation changes nothing.
pub type FactorEdit = Box<dyn FnOnce(&mut Vec<Factor>) -> AuthResult<Option<Factor>> + Send>;

// The registry's rules that do not depend on where users are stored; the sled state below and
// the Postgres backend (`crate::pg::users`) both answer with these.

/// What every operation on a missing user answers.
pub fn user_not_found() -> AuthError {
    AuthError::not_found(ErrorCode::UserNotFound, "User not found")
}

/// A create with an id that is already taken.
pub fn user_already_exists() -> AuthError {
    AuthError::unprocessable(ErrorCode::UserAlreadyExists, "User already registered")
}

/// The error for what a uniqueness check found taken, in the order it is reported: a changed
/// email, then a changed phone, then any identity held by another user (one identity, one
/// owner: two concurrent first sign-ins must not create two users).
pub fn uniqueness(email_taken: bool, phone_taken: bool, identity_taken: bool) -> AuthResult<()> {
    if email_taken {
        return Err(email_exists());
    }
    if phone_taken {
        return Err(phone_exists());
    }
    if identity_taken {
        return Err(identity_already_linked());
    }
    Ok(())
}

/// An email another user holds.
pub fn email_exists() -> AuthError {
    AuthError::unprocessable(ErrorCode::EmailExists, DUPLICATE_EMAIL_MSG)
}

/// A phone another user holds.
pub fn phone_exists() -> AuthError {
    AuthError::unprocessable(ErrorCode::PhoneExists, DUPLICATE_PHONE_MSG)
}

/// An identity that another user holds.
pub fn identity_already_linked() -> AuthError {
    AuthError::unprocessable(ErrorCode::IdentityAlreadyExists, "Identity is already linked to another user")
}

/// How many items precede page `page` (1-based; 0 counts as 1) of `per_page` items.
pub fn page_skip(page: usize, per_page: usize) -> usize {
    page.saturating_sub(1).saturating_mul(per_page)
}

/// Users in memory plus the tables they are written to.
pub struct UserRegistryState {
    store: Store,
    clock: Clock,
    users: Table<User>,
    by_email_table: Table<Uuid>,
    by_phone_table: Table<Uuid>,
    /// Every user id with its creation time (places a new user in `order`).
    created: HashMap<Uuid, Timestamp>,
    /// Recently read or written records (the rest are read from `users/v1`).
    cache: Mutex<UserCache>,
    by_email: HashMap<Box<str>, Uuid>,
    by_phone: HashMap<Box<str>, Uuid>,
    /// [`identity_key`] `(provider, provider_id)` → owner; memory only, rebuilt from the records
    /// at load.
    by_identity: HashMap<Box<str>, Uuid>,
    /// Lower-cased identity email → owners (sorted; almost always one); memory only, rebuilt
    /// at load.
    by_identity_email: HashMap<Box<str>, Vec<Uuid>>,
    /// User ids in creation order: a listing page is a slice of it, so its cost does not grow
    /// with the number of users.
    order: Vec<Uuid>,
    /// The audit log lives only in this tree (key: big-endian `seq`, oldest first); memory holds
    /// its size and next sequence, so it does not grow with the number of entries.
    audit_table: Table<AuditEntry>,
    audit_count: usize,
    next_audit_seq: u64,
    /// MFA factors (`mfa_factors/v1`) by owner; bounded per user by the enrollment limits.
    factor_table: Table<Factor>,
    factors: HashMap<Uuid, Vec<Factor>>,
}

/// Entries removed per transaction by the retention sweep.
const AUDIT_SWEEP_BATCH: usize = 1024;

fn audit_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Moves every `mfa_factors/v1` record (TOTP only) into `mfa_factors/v2` ([`Store::migrate_tree`]).
fn migrate_factors_v1(store: &Store, v2: &Table<Factor>) -> Result<(), StoreError> {
    let moved = store.migrate_tree(storage::MFA_FACTORS_V1, v2, FactorV1::migrate)?;
    if moved > 0 {
        tracing::info!(
            count = moved,
            from = storage::MFA_FACTORS_V1,
            to = storage::MFA_FACTORS,
            "migrated MFA factors"
        );
    }
    Ok(())
}

/// One string per identity key (one allocation instead of two).
fn identity_key(provider: &str, provider_id: &str) -> Box<str> {
    let mut key = String::with_capacity(provider.len() + 1 + provider_id.len());
    key.push_str(provider);
    key.push('\0');
    key.push_str(provider_id);
    key.into_boxed_str()
}

/// Users per cache generation: at most twice this many records are held.
const CACHE_GENERATION: usize = 4096;

/// A bounded cache of user records (without factors) with approximate LRU eviction: two
/// generations; a hit in the old one moves the user to the new one, and when the new one is
/// full it becomes the old one (the previous old one is dropped).
#[derive(Default)]
struct UserCache {
    hot: HashMap<Uuid, User>,
    cold: HashMap<Uuid, User>,
}

impl UserCache {
    fn get(&mut self, id: &Uuid) -> Option<User> {
        if let Some(user) = self.hot.get(id) {
            return Some(user.clone());
        }
        let user = self.cold.remove(id)?;
        self.insert(user.clone());
        Some(user)
    }
    fn insert(&mut self, user: User) {
        if self.hot.len() >= CACHE_GENERATION && !self.hot.contains_key(&user.id) {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.cold.remove(&user.id);
        self.hot.insert(user.id, user);
    }
    fn remove(&mut self, id: &Uuid) {
        self.hot.remove(id);
        self.cold.remove(id);
    }
}

impl UserRegistryState {
    /// Reads every user once (streaming, one record at a time) to rebuild the indexes; repairs
    /// index trees that disagree with the records (the records are the truth).
    pub fn load(store: Store, clock: Clock) -> Result<Self, StoreError> {
        let users: Table<User> = store.table(storage::USERS)?;
        let by_email_table: Table<Uuid> = store.table(storage::USERS_BY_EMAIL)?;
        let by_phone_table: Table<Uuid> = store.table(storage::USERS_BY_PHONE)?;
        let audit_table: Table<AuditEntry> = store.table(storage::AUDIT_LOG)?;
        let next_audit_seq = match audit_table.last_key()? {
            Some(key) => {
                let seq = <[u8; 8]>::try_from(key.as_slice())
                    .map_err(|_| StoreError::Corrupt(format!("bad key in {}", storage::AUDIT_LOG)))?;
                u64::from_be_bytes(seq) + 1
            }
            None => 1,
        };
        let audit_count = audit_table.len();
        let factor_table: Table<Factor> = store.table(storage::MFA_FACTORS)?;
        migrate_factors_v1(&store, &factor_table)?;
        let mut state = UserRegistryState {
            store,
            clock,
            users,
            by_email_table,
            by_phone_table,
            created: HashMap::new(),
            cache: Mutex::default(),
            by_email: HashMap::new(),
            by_phone: HashMap::new(),
            by_identity: HashMap::new(),
            by_identity_email: HashMap::new(),
            order: Vec::new(),
            audit_table,
            audit_count,
            next_audit_seq,
            factor_table,
            factors: HashMap::new(),
        };
        // Sized once: growing maps of a million entries rehash everything several times (the
        // start-up profile of issue 13 showed SipHash and `insert` at ~15 %).
        let n = state.users.len();
        state.created.reserve(n);
        state.by_email.reserve(n);
        state.by_identity.reserve(n);
        state.by_identity_email.reserve(n);
        let mut order: Vec<(Timestamp, Uuid)> = Vec::with_capacity(n);
        for item in state.users.scan(false) {
            let (_, user) = item?;
            if !user.email.is_empty() {
                state.by_email.insert(user.email.as_str().into(), user.id);
            }
            if !user.phone.is_empty() {
                state.by_phone.insert(user.phone.as_str().into(), user.id);
            }
            state.index_identities(&user);
            state.created.insert(user.id, user.created_at);
            order.push((user.created_at, user.id));
        }
        order.sort_unstable();
        state.order = order.into_iter().map(|(_, id)| id).collect();
        let mut orphans = Vec::new();
        for (key, factor) in state.factor_table.load_all()? {
            if state.created.contains_key(&factor.user_id) {
                state.factors.entry(factor.user_id).or_default().push(factor);
            } else {
                orphans.push(state.factor_table.remove(key));
            }
        }
        if !orphans.is_empty() {
            tracing::warn!(count = orphans.len(), "removing MFA factors of deleted users");
            state.store.apply(orphans)?;
        }
        for list in state.factors.values_mut() {
            list.sort_by_key(|f| (f.created_at, f.id));
        }
        state.repair_index(true)?;
        state.repair_index(false)?;
        Ok(state)
    }

    fn repair_index(&self, email: bool) -> Result<(), StoreError> {
        let (table, memory) =
            if email { (&self.by_email_table, &self.by_email) } else { (&self.by_phone_table, &self.by_phone) };
        // Streamed: every stored entry must match memory, and there must be as many of them.
        let mut stored = 0usize;
        let mut consistent = true;
        for item in table.scan(false) {
            let (key, id) = item?;
            stored += 1;
            let matches = std::str::from_utf8(&key).ok().and_then(|k| memory.get(k)) == Some(&id);
            if !matches {
                consistent = false;
                break;
            }
        }
        if consistent && stored == memory.len() {
            return Ok(());
        }
        tracing::warn!(tree = table.name(), "index disagrees with user records; rebuilding it");
        let mut ops: Vec<Op> = Vec::new();
        for item in table.scan(false) {
            let (key, _) = item?;
            ops.push(table.remove(key));
        }
        for (k, id) in memory {
            ops.push(table.put(k.as_bytes(), id)?);
        }
        self.store.apply(ops)
    }

    /// Number of users.
    pub fn count(&self) -> usize {
        self.created.len()
    }

    /// The stored record (without factors): from the cache, else from `users/v1` (then cached).
    fn record(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        if !self.created.contains_key(&id) {
            return Ok(None);
        }
        if let Some(user) = self.lock_cache().get(&id) {
            return Ok(Some(user));
        }
        let user = self.users.get(id.as_bytes())?;
        if let Some(user) = &user {
            self.lock_cache().insert(user.clone());
        }
        Ok(user)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, UserCache> {
        // Only this actor uses it and nothing panics while holding it; a poisoned cache is
        // still a valid cache.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// By id.
    pub fn get(&self, id: Uuid) -> AuthResult<Option<User>> {
        Ok(self.record(id)?.map(|u| self.attach(u)))
    }

    /// `user` with its factors attached (oldest first).
    fn attach(&self, mut user: User) -> User {
        user.factors = self.factors.get(&user.id).cloned().unwrap_or_default();
        user
    }

    /// Runs `edit` on a copy of the user's factors, then writes what changed (one transaction)
    /// and swaps it in; see [`FactorEdit`].
    pub fn edit_factors(&mut self, user_id: Uuid, edit: FactorEdit) -> AuthResult<Option<Factor>> {
        if !self.created.contains_key(&user_id) {
            return Err(user_not_found());
        }
        let old = self.factors.get(&user_id).cloned().unwrap_or_default();
        let mut new = old.clone();
        let result = edit(&mut new);
        for f in &mut new {
            f.user_id = user_id;
        }
        let mut ops = Vec::new();
        for f in &old {
            if !new.iter().any(|n| n.id == f.id) {
                ops.push(self.factor_table.remove(f.id.as_bytes().to_vec()));
            }
        }
        for f in &new {
            if old.iter().find(|o| o.id == f.id) != Some(f) {
                ops.push(self.factor_table.put(f.id.as_bytes().to_vec(), f)?);
            }
        }
        if !ops.is_empty() {
            self.store.apply(ops)?;
            if new.is_empty() {
                self.factors.remove(&user_id);
            } else {
                self.factors.insert(user_id, new);
            }
        }
        result
    }

    /// By lower-cased email.
    pub fn by_email(&self, email: &str) -> AuthResult<Option<User>> {
        match self.by_email.get(email) {
            Some(id) => self.get(*id),
            None => Ok(None),
        }
    }

    /// By phone without `+`.
    pub fn by_phone(&self, phone: &str) -> AuthResult<Option<User>> {
        match self.by_phone.get(phone) {
            Some(id) => self.get(*id),
            None => Ok(None),
        }
    }

    /// The user holding the identity `(provider, provider_id)`.
    pub fn by_identity(&self, provider: &str, provider_id: &str) -> AuthResult<Option<User>> {
        match self.by_identity.get(&identity_key(provider, provider_id)) {
            Some(id) => self.get(*id),
            None => Ok(None),
        }
    }

    /// Who holds any of `emails` (lower-cased), as identity or as user.
    pub fn link_candidates(&self, emails: &[String]) -> AuthResult<LinkCandidates> {
        let mut owners = BTreeSet::new();
        let mut users = Vec::new();
        for email in emails {
            for owner in self.by_identity_email.get(email.as_str()).into_iter().flatten() {
                let sso = self
                    .record(*owner)?
                    .is_some_and(|u| u.identities.iter().all(|i| i.email != *email || i.provider.starts_with("sso:")));
                if !sso {
                    owners.insert(*owner);
                }
            }
            if let Some(user) = self.by_email(email)?.filter(|u| !u.is_sso_user) {
                if !users.iter().any(|u: &User| u.id == user.id) {
                    users.push(user);
                }
            }
        }
        Ok(LinkCandidates { identity_owners: owners.into_iter().collect(), users })
    }

    fn index_identities(&mut self, user: &User) {
        for i in &user.identities {
            self.by_identity.insert(identity_key(&i.provider, &i.provider_id), user.id);
            if !i.email.is_empty() {
                let owners = self.by_identity_email.entry(i.email.to_lowercase().into_boxed_str()).or_default();
                if let Err(at) = owners.binary_search(&user.id) {
                    owners.insert(at, user.id);
                }
            }
        }
    }

    fn unindex_identities(&mut self, user: &User) {
        for i in &user.identities {
            let key = identity_key(&i.provider, &i.provider_id);
            if self.by_identity.get(&key) == Some(&user.id) {
                self.by_identity.remove(&key);
            }
            let email = i.email.to_lowercase();
            if let Some(owners) = self.by_identity_email.get_mut(email.as_str()) {
                owners.retain(|o| *o != user.id);
                if owners.is_empty() {
                    self.by_identity_email.remove(email.as_str());
                }
            }
        }
    }

    /// Inserts a new user; `email_exists` / `phone_exists` (422) if taken.
    pub fn create(&mut self, user: User) -> AuthResult<User> {
        if self.created.contains_key(&user.id) {
            return Err(user_already_exists());
        }
        self.check_unique(&user, None)?;
        self.write(None, &user)?;
        // Creation order: new users are the newest (append); imported ones with an older
        // creation time are placed where they belong.
        let at = self.order.partition_point(|id| self.created.get(id).is_some_and(|c| *c <= user.created_at));
        self.order.insert(at, user.id);
        Ok(user)
    }

    /// A page of users in creation order (`ascending` or newest first), optionally filtered by
    /// a case-insensitive substring of email, phone or `user_metadata.full_name`. Without a
    /// filter only the page is read; with one every record is read once (in key order, not
    /// cached) and only the matches' ids are kept.
    pub fn list(&self, page: usize, per_page: usize, filter: Option<&str>, ascending: bool) -> AuthResult<Page<User>> {
        let skip = page_skip(page, per_page);
        let Some(needle) = filter.map(str::to_lowercase).filter(|f| !f.is_empty()) else {
            let ordered: Box<dyn Iterator<Item = &Uuid>> =
                if ascending { Box::new(self.order.iter()) } else { Box::new(self.order.iter().rev()) };
            let mut items = Vec::new();
            for id in ordered.skip(skip).take(per_page) {
                items.extend(self.get(*id)?);
            }
            return Ok(Page { items, total: self.order.len() });
        };
        let matches = |u: &User| {
            u.email.contains(&needle)
                || u.phone.contains(&needle)
                || u.user_metadata
                    .to_map()
                    .get("full_name")
                    .and_then(|v| v.as_str())
                    .is_some_and(|n| n.to_lowercase().contains(&needle))
        };
        let mut hits: Vec<(Timestamp, Uuid)> = Vec::new();
        for item in self.users.scan(false) {
            let (_, user) = item?;
            if matches(&user) {
                hits.push((user.created_at, user.id));
            }
        }
        // Creation order, ties as `order` has them (by id).
        hits.sort_unstable();
        if !ascending {
            hits.reverse();
        }
        let mut items = Vec::new();
        for (_, id) in hits.iter().skip(skip).take(per_page) {
            items.extend(self.get(*id)?);
        }
        Ok(Page { items, total: hits.len() })
    }

    /// Appends an audit entry (disk first).
    pub fn record_audit(&mut self, mut entry: AuditEntry) -> AuthResult<()> {
        entry.seq = self.next_audit_seq;
        self.store.apply(vec![self.audit_table.put(audit_key(entry.seq), &entry)?])?;
        self.next_audit_seq += 1;
        self.audit_count += 1;
        Ok(())
    }

    /// A page of audit entries, newest first, read from the tree in reverse key order. Without
    /// a query it reads only the page (skipped entries are not decoded); with one it walks the
    /// whole log to count the matches but keeps only the page.
    pub fn audit_page(&self, page: usize, per_page: usize, query: Option<&AuditQuery>) -> AuthResult<Page<AuditEntry>> {
        let skip = page_skip(page, per_page);
        let mut scan = self.audit_table.scan(true);
        let Some(query) = query else {
            scan.skip_records(skip)?;
            let items = scan.take(per_page).map(|r| r.map(|(_, e)| e)).collect::<Result<_, _>>()?;
            return Ok(Page { items, total: self.audit_count });
        };
        let hit = |e: &AuditEntry| {
            let p = e.payload.to_map();
            let field = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_lowercase();
            match query {
                AuditQuery::Author(t) => field("actor_username").contains(t) || field("actor_name").contains(t),
                AuditQuery::Action(t) => field("action").contains(t),
                AuditQuery::Type(t) => field("log_type").contains(t),
            }
        };
        let (mut total, mut items) = (0usize, Vec::new());
        for item in scan {
            let (_, entry) = item?;
            if hit(&entry) {
                if total >= skip && items.len() < per_page {
                    items.push(entry);
                }
                total += 1;
            }
        }
        Ok(Page { items, total })
    }

    /// Number of audit entries.
    pub fn audit_count(&self) -> usize {
        self.audit_count
    }

    /// Drops audit entries older than `retention` (`FERROTRUE_AUDIT_RETENTION`): walks the tree
    /// from the oldest key and deletes in batches until the first entry inside the window.
    /// Returns how many were deleted.
    pub fn sweep_audit(&mut self, retention: Duration) -> AuthResult<usize> {
        let cutoff = crate::clock::Timestamp(
            self.clock.now().0.saturating_sub(i64::try_from(retention.as_micros()).unwrap_or(i64::MAX)),
        );
        let mut deleted = 0;
        loop {
            let mut ops = Vec::new();
            let mut reached_cutoff = false;
            for item in self.audit_table.scan(false).take(AUDIT_SWEEP_BATCH) {
                let (key, entry) = item?;
                if entry.created_at >= cutoff {
                    reached_cutoff = true;
                    break;
                }
                ops.push(self.audit_table.remove(key));
            }
            let n = ops.len();
            if n > 0 {
                self.store.apply(ops)?;
                self.audit_count = self.audit_count.saturating_sub(n);
                deleted += n;
            }
            if reached_cutoff || n < AUDIT_SWEEP_BATCH {
                return Ok(deleted);
            }
        }
    }

    /// Applies `edit` to a copy, checks uniqueness of a changed email/phone, writes, swaps.
    pub fn update(&mut self, id: Uuid, edit: UserEdit) -> AuthResult<User> {
        let old = self.record(id)?.ok_or_else(user_not_found)?;
        let mut user = old.clone();
        edit(&mut user)?;
        user.id = old.id; // the id is not editable
        user.updated_at = self.clock.now();
        self.check_unique(&user, Some(&old))?;
        self.write(Some(&old), &user)?;
        Ok(self.attach(user))
    }

    /// Removes a user and its index entries.
    pub fn delete(&mut self, id: Uuid) -> AuthResult<()> {
        let Some(old) = self.record(id)? else {
            return Err(user_not_found());
        };
        let mut ops = vec![self.users.remove(id.as_bytes().to_vec())];
        // Factors (and their challenges) die with their user, in the same transaction.
        for f in self.factors.get(&id).into_iter().flatten() {
            ops.push(self.factor_table.remove(f.id.as_bytes().to_vec()));
        }
        if !old.email.is_empty() {
            ops.push(self.by_email_table.remove(old.email.as_bytes()));
        }
        if !old.phone.is_empty() {
            ops.push(self.by_phone_table.remove(old.phone.as_bytes()));
        }
        self.store.apply(ops)?;
        self.by_email.remove(old.email.as_str());
        self.by_phone.remove(old.phone.as_str());
        self.unindex_identities(&old);
        self.created.remove(&id);
        self.lock_cache().remove(&id);
        self.factors.remove(&id);
        self.order.retain(|u| *u != id);
        Ok(())
    }

    fn check_unique(&self, user: &User, old: Option<&User>) -> AuthResult<()> {
        let taken = |index: &HashMap<Box<str>, Uuid>, key: &str| {
            !key.is_empty() && index.get(key).is_some_and(|owner| *owner != user.id)
        };
        let email_changed = old.is_none_or(|o| o.email != user.email);
        let phone_changed = old.is_none_or(|o| o.phone != user.phone);
        let identity_taken = user.identities.iter().any(|i| {
            self.by_identity.get(&identity_key(&i.provider, &i.provider_id)).is_some_and(|owner| *owner != user.id)
        });
        uniqueness(
            email_changed && taken(&self.by_email, &user.email),
            phone_changed && taken(&self.by_phone, &user.phone),
            identity_taken,
        )
    }

    /// Disk first (one transaction over the record and both indexes), then memory.
    fn write(&mut self, old: Option<&User>, user: &User) -> AuthResult<()> {
        let mut ops = vec![self.users.put(user.id.as_bytes().to_vec(), user)?];
        let (old_email, old_phone) = old.map_or(("", ""), |o| (o.email.as_str(), o.phone.as_str()));
        if old_email != user.email {
            if !old_email.is_empty() {
                ops.push(self.by_email_table.remove(old_email.as_bytes()));
            }
            if !user.email.is_empty() {
                ops.push(self.by_email_table.put(user.email.as_bytes(), &user.id)?);
            }
        }
        if old_phone != user.phone {
            if !old_phone.is_empty() {
                ops.push(self.by_phone_table.remove(old_phone.as_bytes()));
            }
            if !user.phone.is_empty() {
                ops.push(self.by_phone_table.put(user.phone.as_bytes(), &user.id)?);
            }
        }
        self.store.apply(ops)?;
        if old_email != user.email {
            self.by_email.remove(old_email);
            if !user.email.is_empty() {
                self.by_email.insert(user.email.as_str().into(), user.id);
            }
        }
        if old_phone != user.phone {
            self.by_phone.remove(old_phone);
            if !user.phone.is_empty() {
                self.by_phone.insert(user.phone.as_str().into(), user.id);
            }
        }
        if let Some(old) = old {
            self.unindex_identities(old);
        }
        self.index_identities(user);
        self.created.insert(user.id, user.created_at);
        // Factors are attached on the way out, never kept in the cached record.
        self.lock_cache().insert(User { factors: Vec::new(), ..user.clone() });
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::user_registry::model::JsonText;
    use proptest::prelude::*;

    pub(crate) fn sample_user(email: &str, phone: &str) -> User {
        User {
            email: email.into(),
            phone: phone.into(),
            encrypted_password: Some("$argon2id$x".into()),
            email_confirmed_at: Some(Timestamp(1)),
            app_metadata: JsonText(r#"{"provider":"email"}"#.into()),
            ..User::blank("authenticated", "authenticated", Timestamp(1))
        }
    }

    #[tokio::test]
    async fn v1_factors_migrate_with_their_challenges() {
        use crate::user_registry::model::{ChallengeV1, FactorV1};
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::fixed(Timestamp(1_000_000));
        let (user_id, factor_id, challenge_id);
        {
            let store = Store::reopen_for_tests(dir.path()).await;
            let mut st = UserRegistryState::load(store.clone(), clock.clone()).unwrap();
            user_id = st.create(sample_user("mfa@example.com", "")).unwrap().id;
            drop(st);
            factor_id = Uuid::new_v4();
            challenge_id = Uuid::new_v4();
            let old = FactorV1 {
                id: factor_id,
                user_id,
                friendly_name: "phone app".into(),
                factor_type: "totp".into(),
                status: "verified".into(),
                sealed_secret: vec![7; 40],
                created_at: Timestamp(5),
                updated_at: Timestamp(6),
                last_challenged_at: Some(Timestamp(6)),
                last_used_step: Some(42),
                challenges: vec![ChallengeV1 {
                    id: challenge_id,
                    created_at: Timestamp(6),
                    ip: "127.0.0.1".into(),
                    failed_attempts: 2,
                }],
            };
            let v1: Table<FactorV1> = store.table(storage::MFA_FACTORS_V1).unwrap();
            store.apply(vec![v1.put(factor_id.as_bytes().to_vec(), &old).unwrap()]).unwrap();
            store.durable().await.unwrap();
        }
        let store = Store::reopen_for_tests(dir.path()).await;
        let st = UserRegistryState::load(store.clone(), clock.clone()).unwrap();
        let v1: Table<FactorV1> = store.table(storage::MFA_FACTORS_V1).unwrap();
        assert!(v1.is_empty(), "v1 records are moved, not copied");
        let f = &st.factors[&user_id][0];
        assert_eq!((f.id, f.status.as_str(), f.last_used_step), (factor_id, "verified", Some(42)));
        assert_eq!(f.sealed_secret, vec![7; 40]);
        assert!(f.phone.is_empty() && f.web_authn_credential.is_empty());
        assert_eq!((f.challenges[0].id, f.challenges[0].failed_attempts), (challenge_id, 2));
        // A second start has nothing left to migrate and keeps the factor.
        drop(st);
        let st = UserRegistryState::load(store, clock).unwrap();
        assert_eq!(st.factors[&user_id].len(), 1);
    }

    #[tokio::test]
    async fn create_update_delete_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::fixed(Timestamp(1_000_000));
        let id;
        {
            let store = Store::open(dir.path(), storage::DEFAULT_CACHE_BYTES, storage::Durability::Sync).unwrap();
            let mut st = UserRegistryState::load(store.clone(), clock.clone()).unwrap();
            let user = st.create(sample_user("a@example.com", "")).unwrap();
            id = user.id;
            let dup = st.create(sample_user("a@example.com", "")).unwrap_err();
            assert_eq!(dup.code, ErrorCode::EmailExists);
            st.update(
                id,
                Box::new(|u| {
                    u.email = "b@example.com".into();
                    u.phone = "15555550100".into();
                    Ok(())
                }),
            )
            .unwrap();
            let gone = st.create(sample_user("gone@example.com", "")).unwrap();
            st.delete(gone.id).unwrap();
            store.durable().await.unwrap();
        }
        let store = Store::reopen_for_tests(dir.path()).await;
        let st = UserRegistryState::load(store, clock).unwrap();
        assert_eq!(st.count(), 1);
        assert!(st.by_email("a@example.com").unwrap().is_none());
        assert_eq!(st.by_email("b@example.com").unwrap().unwrap().id, id);
        assert_eq!(st.by_phone("15555550100").unwrap().unwrap().id, id);
        assert!(st.by_email("gone@example.com").unwrap().is_none());
    }

    #[tokio::test]
    async fn records_beyond_the_cache_are_read_from_the_tree() {
        let store = Store::temporary().unwrap();
        let mut st = UserRegistryState::load(store.clone(), Clock::System).unwrap();
        let n = 2 * CACHE_GENERATION + 10;
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            ids.push(st.create(sample_user(&format!("u{i}@example.com"), "")).unwrap().id);
        }
        {
            let cache = st.lock_cache();
            assert!(cache.hot.len() + cache.cold.len() <= 2 * CACHE_GENERATION, "the cache is bounded");
            assert!(!cache.hot.contains_key(&ids[0]) && !cache.cold.contains_key(&ids[0]));
        }
        // Evicted, still found (by id, email, listing), and an update reaches the tree.
        assert_eq!(st.get(ids[0]).unwrap().unwrap().email, "u0@example.com");
        assert_eq!(st.by_email("u1@example.com").unwrap().unwrap().id, ids[1]);
        let page = st.list(1, 3, None, true).unwrap();
        assert_eq!((page.items.iter().map(|u| u.id).collect::<Vec<_>>(), page.total), (ids[..3].to_vec(), n));
        let found = st.list(1, 10, Some("U7@"), true).unwrap();
        assert_eq!((found.items.len(), found.total), (1, 1));
        st.update(
            ids[2],
            Box::new(|u| {
                u.phone = "15555550199".into();
                Ok(())
            }),
        )
        .unwrap();
        let st = UserRegistryState::load(store, Clock::System).unwrap();
        assert_eq!(st.count(), n);
        assert_eq!(st.by_phone("15555550199").unwrap().unwrap().id, ids[2]);
        assert!(st.get(Uuid::new_v4()).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_failed_edit_changes_nothing() {
        let store = Store::temporary().unwrap();
        let mut st = UserRegistryState::load(store, Clock::System).unwrap();
        let a = st.create(sample_user("a@example.com", "")).unwrap();
        st.create(sample_user("b@example.com", "")).unwrap();
        let err = st
            .update(
                a.id,
                Box::new(|u| {
                    u.email = "b@example.com".into();
                    Ok(())
                }),
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::EmailExists);
        assert_eq!(st.get(a.id).unwrap().unwrap().email, "a@example.com");
    }

    #[tokio::test]
    async fn identities_are_indexed_and_owned_once() {
        use crate::user_registry::model::Identity;
        let identity = |provider: &str, sub: &str, email: &str| Identity {
            id: Uuid::new_v4(),
            provider_id: sub.into(),
            provider: provider.into(),
            identity_data: JsonText::empty(),
            email: email.into(),
            last_sign_in_at: None,
            created_at: Timestamp(1),
            updated_at: Timestamp(1),
        };
        let store = Store::temporary().unwrap();
        let mut st = UserRegistryState::load(store.clone(), Clock::System).unwrap();
        let mut a = sample_user("a@example.com", "");
        a.identities = vec![identity("github", "1", "gh@example.com")];
        let a = st.create(a).unwrap();
        assert_eq!(st.by_identity("github", "1").unwrap().unwrap().id, a.id);
        assert!(st.by_identity("gitlab", "1").unwrap().is_none());
        let found = st.link_candidates(&["gh@example.com".into(), "a@example.com".into()]).unwrap();
        assert_eq!(found.identity_owners, vec![a.id]);
        assert_eq!(found.users.len(), 1);
        // A second owner of the same identity is refused.
        let mut b = sample_user("b@example.com", "");
        b.identities = vec![identity("github", "1", "")];
        assert_eq!(st.create(b).unwrap_err().code, ErrorCode::IdentityAlreadyExists);
        // Unlinking frees it; the indexes follow edits and survive a reload.
        st.update(
            a.id,
            Box::new(|u| {
                u.identities.clear();
                Ok(())
            }),
        )
        .unwrap();
        assert!(st.by_identity("github", "1").unwrap().is_none());
        assert!(st.link_candidates(&["gh@example.com".into()]).unwrap().identity_owners.is_empty());
        st.update(
            a.id,
            Box::new(move |u| {
                u.identities.push(identity("google", "g", "g@example.com"));
                Ok(())
            }),
        )
        .unwrap();
        let st = UserRegistryState::load(store, Clock::System).unwrap();
        assert_eq!(st.by_identity("google", "g").unwrap().unwrap().id, a.id);
        assert_eq!(st.link_candidates(&["g@example.com".into()]).unwrap().identity_owners, vec![a.id]);
    }

    pub(crate) fn audit_entry(action: &str, username: &str) -> AuditEntry {
        let payload = serde_json::json!({
            "actor_username": username,
            "action": action,
            "log_type": AuditEntry::log_type(action),
        });
        AuditEntry {
            id: Uuid::new_v4(),
            seq: 0,
            payload: JsonText(payload.to_string()),
            created_at: Timestamp(0),
            ip_address: String::new(),
        }
    }

    fn seqs(page: &Page<AuditEntry>) -> Vec<u64> {
        page.items.iter().map(|e| e.seq).collect()
    }

    #[tokio::test]
    async fn audit_pages_come_from_the_tree_newest_first_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let open = || Store::reopen_for_tests(dir.path());
        let clock = Clock::fixed(Timestamp(1_000_000));
        let check = |st: &UserRegistryState| {
            assert_eq!(st.audit_count(), 30);
            let p1 = st.audit_page(1, 7, None).unwrap();
            assert_eq!((seqs(&p1), p1.total), ((24..=30).rev().collect(), 30));
            let p5 = st.audit_page(5, 7, None).unwrap();
            assert_eq!(seqs(&p5), vec![2, 1]);
            assert!(st.audit_page(6, 7, None).unwrap().items.is_empty());
            assert_eq!(st.audit_page(1, 0, None).unwrap().items.len(), 0);
            // Every third entry is a logout by "b"; filters count all matches, return the page.
            let q = AuditQuery::Action("logout".into());
            let logouts = st.audit_page(2, 4, Some(&q)).unwrap();
            assert_eq!((seqs(&logouts), logouts.total), (vec![18, 15, 12, 9], 10));
            let q = AuditQuery::Author("b".into());
            assert_eq!(st.audit_page(3, 4, Some(&q)).unwrap().items.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 3]);
            let q = AuditQuery::Type("account".into());
            assert_eq!(st.audit_page(1, 100, Some(&q)).unwrap().total, 30);
        };
        {
            let mut st = UserRegistryState::load(open().await, clock.clone()).unwrap();
            for i in 1..=30u64 {
                let (action, who) = if i % 3 == 0 { ("logout", "b") } else { ("login", "a") };
                st.record_audit(audit_entry(action, who)).unwrap();
            }
            check(&st);
            st.store.durable().await.unwrap();
        }
        let mut st = UserRegistryState::load(open().await, clock).unwrap();
        check(&st);
        st.record_audit(audit_entry("login", "a")).unwrap();
        assert_eq!(seqs(&st.audit_page(1, 1, None).unwrap()), vec![31], "the sequence continues");
    }

    #[tokio::test]
    async fn audit_retention_sweeps_the_oldest_entries_from_the_tree() {
        let clock = Clock::fixed(Timestamp(1_000_000_000));
        let store = Store::temporary().unwrap();
        let mut st = UserRegistryState::load(store.clone(), clock.clone()).unwrap();
        // More than one sweep batch of old entries, then a few young ones.
        for _ in 0..(AUDIT_SWEEP_BATCH + 5) {
            let mut e = audit_entry("login", "a");
            e.created_at = clock.now();
            st.record_audit(e).unwrap();
        }
        clock.advance(Duration::from_secs(3600));
        for _ in 0..3 {
            let mut e = audit_entry("logout", "a");
            e.created_at = clock.now();
            st.record_audit(e).unwrap();
        }
        assert_eq!(st.sweep_audit(Duration::from_secs(7200)).unwrap(), 0, "nothing old enough");
        assert_eq!(st.sweep_audit(Duration::from_secs(60)).unwrap(), AUDIT_SWEEP_BATCH + 5);
        let page = st.audit_page(1, 100, None).unwrap();
        assert_eq!(page.total, 3);
        assert_eq!(page.items.len(), 3);
        assert!(page.items.iter().all(|e| e.payload.0.contains("logout")));
        assert_eq!(st.sweep_audit(Duration::from_secs(60)).unwrap(), 0);
        let st = UserRegistryState::load(store, clock).unwrap();
        assert_eq!(st.audit_count(), 3);
    }

    proptest! {
        #[test]
        fn user_records_round_trip(email in "[a-z]{1,12}@[a-z]{1,8}\\.com", meta in "\\PC{0,40}", banned in proptest::option::of(any::<i64>()), anon in any::<bool>()) {
            let mut user = sample_user(&email, "");
            user.user_metadata = JsonText(meta);
            user.banned_until = banned.map(Timestamp);
            user.is_anonymous = anon;
            let bytes = crate::storage::codec::encode(&user).unwrap();
            let back: User = crate::storage::codec::decode("users/v1", &bytes).unwrap();
            prop_assert_eq!(back, user);
        }
    }
}
