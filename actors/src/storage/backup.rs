//! Online backups: a consistent, checksummed snapshot of every tree, and an offline restore.
//!
//! Format (`ferrotrue backup` files): `FTBACKUP` magic, a format byte ([`FORMAT`]), then one
//! entry per record — tag `1`, then tree name, key and value, each as a big-endian `u32` length
//! and its bytes — then tag `0`, then the SHA-256 of everything before it. Values are the stored
//! records as they are (versioned bincode), so a restore needs no knowledge of them; the data
//! directory the restore writes is then upgraded like any other at start-up.

use super::Store;
use crate::error::StoreError;
use std::path::Path;

/// Leading bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"FTBACKUP";
/// The format this build writes; a restore refuses anything newer.
pub const FORMAT: u8 = 1;

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub trees: usize,
    pub records: usize,
}

fn push_chunk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl Store {
    /// A point-in-time copy of every tree. Writes wait while it is taken (they queue on the
    /// gate, a few milliseconds for a small database); reads go on. Blocking: call it from a
    /// blocking thread.
    pub fn snapshot(&self) -> Result<Vec<u8>, StoreError> {
        let _alone = self.gate.write().map_err(|_| StoreError::Corrupt("store gate poisoned".into()))?;
        let mut out = Vec::with_capacity(self.db.size_on_disk().unwrap_or(0) as usize / 2 + 64);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        for name in self.db.tree_names() {
            // sled's own default tree holds nothing of ours.
            if name.as_ref() == b"__sled__default" {
                continue;
            }
            let tree = self.db.open_tree(&name)?;
            for item in tree.iter() {
                let (k, v) = item?;
                out.push(1);
                push_chunk(&mut out, &name);
                push_chunk(&mut out, &k);
                push_chunk(&mut out, &v);
            }
        }
        out.push(0);
        let digest = crate::crypto::sha256(&out);
        out.extend_from_slice(&digest);
        Ok(out)
    }
}

/// One record of a backup: tree name, key, value.
pub type Entry<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Checks a backup and yields its entries.
pub fn entries(bytes: &[u8]) -> Result<Vec<Entry<'_>>, StoreError> {
    let bad = |why: &str| StoreError::Corrupt(format!("not a usable backup: {why}"));
    if bytes.len() < MAGIC.len() + 1 + 1 + 32 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("missing the FTBACKUP header"));
    }
    let format = bytes[MAGIC.len()];
    if format > FORMAT {
        return Err(bad(&format!(
            "format {format} is newer than this build understands ({FORMAT}); use a newer ferrotrue"
        )));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if !crate::crypto::secure_eq(&crate::crypto::sha256(body), digest) {
        return Err(bad("checksum mismatch (truncated or altered file)"));
    }
    let mut at = MAGIC.len() + 1;
    let chunk = |at: &mut usize| -> Result<&[u8], StoreError> {
        let len_bytes = body.get(*at..*at + 4).ok_or_else(|| bad("truncated entry"))?;
        let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        let data = body.get(*at + 4..*at + 4 + len).ok_or_else(|| bad("truncated entry"))?;
        *at += 4 + len;
        Ok(data)
    };
    let mut out = Vec::new();
    loop {
        match body.get(at) {
            Some(1) => {
                at += 1;
                let tree = chunk(&mut at)?;
                let key = chunk(&mut at)?;
                let value = chunk(&mut at)?;
                out.push((tree, key, value));
            }
            Some(0) if at + 1 == body.len() => return Ok(out),
            _ => return Err(bad("malformed entry")),
        }
    }
}

/// Writes a backup into a new database at `db_path` (which must not hold one) and syncs it.
pub fn restore(bytes: &[u8], db_path: &Path) -> Result<Restored, StoreError> {
    let entries = entries(bytes)?;
    if db_path.join("conf").exists() || db_path.join("db").exists() {
        return Err(StoreError::Corrupt(format!(
            "{} already holds a database; restore into an empty data directory",
            db_path.display()
        )));
    }
    let db = sled::Config::new().path(db_path).open()?;
    let mut trees = std::collections::BTreeSet::new();
    for (tree, key, value) in &entries {
        trees.insert(tree.to_vec());
        db.open_tree(tree)?.insert(key, *value)?;
    }
    db.flush()?;
    Ok(Restored { trees: trees.len(), records: entries.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_refusals() {
        let store = Store::temporary().unwrap();
        let table: super::super::Table<String> = store.table("things/v1").unwrap();
        store.apply(vec![table.put(b"a".to_vec(), &"one".to_owned()).unwrap()]).unwrap();
        store.apply(vec![table.put(b"b".to_vec(), &"two".to_owned()).unwrap()]).unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(entries(&snap).unwrap().len(), 2);

        let dir = tempfile::tempdir().unwrap();
        let restored = restore(&snap, &dir.path().join("db")).unwrap();
        assert_eq!(restored, Restored { trees: 1, records: 2 });
        assert!(restore(&snap, &dir.path().join("db")).is_err(), "never over an existing database");

        let mut altered = snap.clone();
        let mid = altered.len() / 2;
        altered[mid] ^= 1;
        assert!(entries(&altered).unwrap_err().to_string().contains("checksum"));
        let mut newer = snap.clone();
        newer[MAGIC.len()] = FORMAT + 1;
        assert!(entries(&newer).unwrap_err().to_string().contains("newer"));
        assert!(entries(&snap[..snap.len() - 1]).is_err(), "truncated");
        assert!(entries(b"not a backup at all, clearly not").is_err());
    }
}
