//! Versioned bincode envelope: one leading format byte, then bincode 2 (serde mode, standard
//! config). The byte lets a later release read records written by this one.

use crate::error::StoreError;
use serde::{de::DeserializeOwned, Serialize};

/// Current record format.
pub const V1: u8 = 1;

/// Encodes `value` as `[V1] ++ bincode(value)`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let body = bincode::serde::encode_to_vec(value, bincode::config::standard())?;
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(V1);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a record written by [`encode`]; `tree` names the source in errors.
pub fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&V1, rest)) => {
            let (value, used) = bincode::serde::decode_from_slice(rest, bincode::config::standard())?;
            if used != rest.len() {
                return Err(StoreError::Corrupt(format!("trailing bytes in a record of {tree}")));
            }
            Ok(value)
        }
        Some((&v, _)) => Err(StoreError::Version(v, tree)),
        None => Err(StoreError::Version(0, tree)),
    }
}
