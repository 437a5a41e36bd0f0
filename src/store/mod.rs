//! The storage authority: the only module that writes SQL. One code path
//! serves SQLite and PostgreSQL through sqlx's `Any` driver with `$N`
//! placeholders; on SQLite the ACME flow's hot writes and reads run the
//! same statements through rusqlite instead (see [`engine`]).
//! Every state transition is one transaction with a guard
//! (`UPDATE ... WHERE status = ...`), so two requests or replicas can never
//! both perform it. It never decides policy and never talks to the network.
//!
//! One file per aggregate holds its records, how a row becomes one
//! ([`FromRow`]) and the store's methods for it; [`engine`] runs the
//! statements and [`cache`] keeps what the flow reads again and again.

/// An enum stored as text: every value has one text, the same in the
/// database and on every wire that shows it, so changing a text is a
/// migration and a change of the API, never a rename.
macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// Its text, as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// The value whose text is `text`, if any (for input, which
            /// each caller refuses in its own words).
            pub fn from_text(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// A stored value; `Corrupt` when the text is none of them.
            pub fn parse(text: &str) -> Result<Self, $crate::store::StoreError> {
                Self::from_text(text).ok_or_else(|| $crate::store::StoreError::Corrupt(format!(
                    concat!("unknown ", stringify!($name), " {:?}"), text)))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod cache;
mod engine;

mod access;
mod accounts;
mod audit;
mod certificates;
mod dns;
mod instances;
mod leases;
mod managed;
mod nonces;
mod notify;
mod orders;
mod rate_counters;
mod settings;
mod upstream;

use std::sync::Arc;

use sqlx::AnyPool;
use sqlx::any::AnyRow;

use crate::policy::{ChallengeType, Identifier};
use engine::{Field, Fields};

pub use access::*;
pub use accounts::*;
pub use audit::*;
pub use cache::CertificateDownload;
pub use certificates::*;
pub use dns::*;
pub use instances::*;
pub use managed::*;
pub use notify::*;
pub use orders::*;
pub use upstream::*;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (e.g. an account key in use).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The guarded row was not in the expected state, or does not exist.
    #[error("state changed concurrently or row missing")]
    Guard,
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A write to SQLite through the group-commit writer failed.
    #[error("writing to the database: {0}")]
    Write(String),
    /// A read from SQLite on the calling thread failed (see [`engine::reader`]).
    #[error("reading the database: {0}")]
    Read(String),
    /// The database URL asks for something the store does not offer.
    #[error("{0}")]
    Config(String),
}

impl From<StoreError> for crate::error::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                crate::error::Error::new(crate::error::ErrorKind::Conflict, what)
            }
            other => crate::error::Error::internal("accessing the database", other),
        }
    }
}

/// Which database engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Every write, and reads in general. On SQLite one connection: SQLite
    /// has one writer, and a single writing connection never waits on a
    /// lock (no SQLITE_BUSY on lock upgrades inside transactions).
    pool: AnyPool,
    /// The ACME flow's hot reads (see [`engine::reader`]): on SQLite read-only
    /// connections used on the calling thread, which do not queue behind a
    /// commit's fsync on the writer; on PostgreSQL the connections the
    /// flow's writes use too.
    reader: engine::reader::Reader,
    /// Where used nonces are recorded on PostgreSQL (see [`cache`]); on
    /// SQLite nonces are redeemed in memory (`nonce`), and the writer
    /// records them if asked.
    nonces: Option<cache::UsedNonces>,
    backend: Backend,
    /// Accounts read by id, kept in memory (see [`cache`]).
    accounts: Arc<cache::AccountCache>,
    /// Valid orders and issued chains this process just wrote (see [`cache`]).
    finished: Arc<cache::Finished>,
    /// The hot writes: group-committed on SQLite (see [`engine::writer`]).
    writer: engine::writer::Writer,
}

impl Store {
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A record read from a row of its table: the one place that knows which
/// column holds which field, for every query that returns the record, on
/// either backend.
trait FromRow: Sized {
    fn from_row(r: &impl Fields) -> Result<Self>;
}

/// Column `name` of every row (ids, say).
fn column<T: Field>(rows: &[impl Fields], name: &str) -> Result<Vec<T>> {
    rows.iter().map(|r| r.field(name)).collect()
}

/// Of the rows matching `id = X OR name = X`, the one whose id is X wins.
fn pick_by_id<T: FromRow>(
    rows: Vec<AnyRow>,
    wanted: &str,
    id: impl Fn(&T) -> &String,
) -> Result<Option<T>> {
    let mut found: Vec<T> = rows.iter().map(T::from_row).collect::<Result<_>>()?;
    let by_id = found.iter().position(|t| id(t) == wanted);
    Ok(match by_id {
        Some(i) => Some(found.swap_remove(i)),
        None => found.pop(),
    })
}

/// `Guard` unless a guarded statement changed exactly one row.
fn guard(rows: u64) -> Result<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::Guard)
    }
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// `Conflict(what)` for a unique-constraint refusal, else the database error.
fn conflict(e: sqlx::Error, what: String) -> StoreError {
    if unique_violation(&e) {
        StoreError::Conflict(what)
    } else {
        e.into()
    }
}

/// A value as stored in a JSON column.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// Identifiers as stored in a JSON column (an empty array should they not
/// serialize, which they always do).
fn identifiers_to_json(ids: &[Identifier]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// A stored challenge type (its ACME name).
fn challenge_type(text: &str) -> Result<ChallengeType> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("challenge type {text:?}")))
}

#[cfg(test)]
pub(crate) mod tests;
