//! Shared vocabulary of the Postgres backends: our [`Timestamp`] as a Postgres `timestamptz`
//! (binary, no conversion through text), database errors as [`AuthError`]s, and the one way a
//! backend runs a request off its actor's mailbox.

use crate::clock::Timestamp;
use crate::error::AuthError;
use bytes::{BufMut, BytesMut};
use std::future::Future;
use tokio_postgres::types::{accepts, to_sql_checked, FromSql, IsNull, ToSql, Type};

/// Microseconds from the Unix epoch to Postgres' epoch (2000-01-01T00:00:00Z).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

impl ToSql for Timestamp {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_i64(self.0.saturating_sub(PG_EPOCH_US));
        Ok(IsNull::No)
    }
    accepts!(TIMESTAMPTZ, TIMESTAMP);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Timestamp {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into().map_err(|_| "a timestamp is 8 bytes")?;
        // ±infinity are i64::MAX/MIN: saturate rather than wrap.
        Ok(Timestamp(i64::from_be_bytes(bytes).saturating_add(PG_EPOCH_US)))
    }
    accepts!(TIMESTAMPTZ, TIMESTAMP);
}

/// A failed statement or connection: a 500 for the client (never its text: it may name
/// tables and values), the detail kept as the error's source for the server log.
impl From<super::PgError> for AuthError {
    fn from(e: super::PgError) -> Self {
        AuthError::internal("Database error").with_source(e)
    }
}

impl From<tokio_postgres::Error> for AuthError {
    fn from(e: tokio_postgres::Error) -> Self {
        AuthError::from(super::PgError::from(e))
    }
}

/// The constraint a statement violated, when it failed on a unique constraint (23505).
pub fn unique_violation(e: &tokio_postgres::Error) -> Option<&str> {
    let db = e.as_db_error()?;
    (db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION).then(|| db.constraint().unwrap_or(""))
}

/// True when a transaction failed because Postgres chose it as a serialization or deadlock
/// victim: retrying it is safe and is what the caller should do.
pub fn is_retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| c == &SqlState::T_R_SERIALIZATION_FAILURE || c == &SqlState::T_R_DEADLOCK_DETECTED)
}

/// Runs one request of a Postgres-backed actor on its own task. The actor stays the single
/// entry point (supervised, with its mailbox), but a request no longer waits for the one
/// before it: ordering and exclusion come from Postgres (transactions, row locks, unique
/// constraints), which is what makes several nodes agree. Concurrency is bounded by the
/// connection pool (`GOTRUE_DB_MAX_POOL_SIZE`, waits time out) and, upstream, by the HTTP
/// connection cap.
pub fn spawn_request(request: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(request);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_the_binary_format() {
        for us in [0, 1, -1, PG_EPOCH_US, 1_764_547_200_123_456, i64::MAX - PG_EPOCH_US] {
            let mut buf = BytesMut::new();
            Timestamp(us).to_sql(&Type::TIMESTAMPTZ, &mut buf).unwrap();
            assert_eq!(Timestamp::from_sql(&Type::TIMESTAMPTZ, &buf).unwrap(), Timestamp(us));
        }
        // 2000-01-01T00:00:00Z is Postgres' zero.
        let mut buf = BytesMut::new();
        Timestamp(PG_EPOCH_US).to_sql(&Type::TIMESTAMPTZ, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0; 8]);
    }
}
