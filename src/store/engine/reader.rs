//! The ACME flow's hot reads (accounts, orders, authorizations, challenges,
//! certificates), on either backend, with one row type for both.
//!
//! On SQLite a read runs on the calling thread, on a read-only connection of
//! its own (WAL: readers never wait for the writer, and see every commit
//! made before they start). Through sqlx each statement was a round trip to
//! the connection's worker thread and back, two thread wake-ups per query,
//! some ten queries an issuance: about a fifth of the hub's CPU per
//! issuance went to that hand-off, not to SQLite. A point read by an
//! indexed key on pages the OS has cached takes tens of microseconds, as
//! long as verifying a request's signature, which also runs inline; a read
//! never waits on a lock except while SQLite recovers a WAL after a crash
//! (see [`READ_BUSY_TIMEOUT`]). Only the flow's bounded point reads come
//! here; listings and scans go through sqlx's pool.
//!
//! On PostgreSQL a read is a round trip anyway: it goes through the flow's
//! held connections (see [`super::held`]).

use std::sync::{Arc, Mutex};

use rusqlite::types::{FromSql, Value, ValueRef};
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _};

use super::held;
use super::writer::Statement;
use crate::store::StoreError;

type Result<T> = std::result::Result<T, StoreError>;

/// Where the hot reads go.
#[derive(Clone)]
pub(crate) enum Reader {
    Sqlite(Arc<SqliteReaders>),
    Postgres(held::Connections),
}

impl Reader {
    /// Every row `statement` returns.
    pub(crate) async fn fetch_all(&self, statement: &Statement) -> Result<Vec<Row>> {
        match self {
            Reader::Sqlite(readers) => readers.read(statement, usize::MAX),
            Reader::Postgres(connections) => Ok(connections
                .fetch_all(statement.query())
                .await?
                .into_iter()
                .map(Row::Any)
                .collect()),
        }
    }

    /// The first row `statement` returns, if any.
    pub(crate) async fn fetch_optional(&self, statement: &Statement) -> Result<Option<Row>> {
        match self {
            Reader::Sqlite(readers) => Ok(readers.read(statement, 1)?.pop()),
            Reader::Postgres(connections) => Ok(connections
                .fetch_optional(statement.query())
                .await?
                .map(Row::Any)),
        }
    }
}

/// How long a SQLite read waits for a lock. Readers of a WAL database take
/// none that the writer holds; one waits only while another connection
/// recovers the WAL after a crash, which happens once, at start. Short,
/// since it holds a thread of the runtime: a read that times out fails
/// with an internal error.
const READ_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

/// Read-only connections to one SQLite file, opened when first needed and
/// kept: a read never awaits, so no more run at once than threads run
/// requests, and no more connections are ever opened.
pub(crate) struct SqliteReaders {
    path: String,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl SqliteReaders {
    /// Readers of the SQLite file at `path`, which exists (the writer
    /// created and migrated it).
    pub(crate) fn new(path: &str) -> Result<Self> {
        // Fail at start, not at the first request, if the file cannot be read.
        let first = open(path)?;
        Ok(Self {
            path: path.to_string(),
            idle: Mutex::new(vec![first]),
        })
    }

    /// Up to `limit` rows of `statement`, on an idle connection (or a new
    /// one), which goes back to the idle ones after.
    fn read(&self, statement: &Statement, limit: usize) -> Result<Vec<Row>> {
        // A poisoned lock only means another reader panicked while popping
        // or pushing a connection; the list itself is still whole.
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open(&self.path)?,
        };
        let rows = query(&conn, statement, limit);
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        rows
    }

    /// How many connections wait to be reused.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn open(path: &str) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Read(format!("opening {path}: {e}")))?;
    conn.busy_timeout(READ_BUSY_TIMEOUT).map_err(read_error)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn query(conn: &rusqlite::Connection, statement: &Statement, limit: usize) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(statement.sql()).map_err(read_error)?;
    statement.bind_sqlite(&mut stmt).map_err(read_error)?;
    let columns: Arc<[String]> = stmt.column_names().into_iter().map(String::from).collect();
    let mut found = stmt.raw_query();
    let mut rows = Vec::new();
    while rows.len() < limit {
        let Some(row) = found.next().map_err(read_error)? else {
            break;
        };
        let values = (0..columns.len())
            .map(|i| row.get::<_, Value>(i))
            .collect::<rusqlite::Result<_>>()
            .map_err(read_error)?;
        rows.push(Row::Sqlite(SqliteRow {
            columns: columns.clone(),
            values,
        }));
    }
    Ok(rows)
}

/// Like a database error through sqlx: internal, never shown to a client.
fn read_error(e: rusqlite::Error) -> StoreError {
    StoreError::Read(e.to_string())
}

/// A row a [`Reader`] returned.
pub(crate) enum Row {
    Any(AnyRow),
    Sqlite(SqliteRow),
}

/// A SQLite row, copied out of its statement.
pub(crate) struct SqliteRow {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

/// A value a column can be read as, on either backend.
pub(crate) trait Field: FromSql + for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> {}
impl<T: FromSql + for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>> Field for T {}

/// Columns read by name, whichever backend the row came from.
pub(crate) trait Fields {
    fn field<T: Field>(&self, name: &str) -> Result<T>;

    /// A boolean, stored as an integer (0 is false).
    fn flag(&self, name: &str) -> Result<bool> {
        Ok(self.field::<i64>(name)? != 0)
    }

    /// A value stored as JSON text; `Corrupt` names it `what`.
    fn json<T: serde::de::DeserializeOwned>(&self, name: &str, what: &str) -> Result<T> {
        serde_json::from_str(&self.field::<String>(name)?)
            .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
    }
}

impl Fields for AnyRow {
    fn field<T: Field>(&self, name: &str) -> Result<T> {
        Ok(self.try_get(name)?)
    }
}

impl Fields for SqliteRow {
    fn field<T: Field>(&self, name: &str) -> Result<T> {
        // The last of equal names, as sqlx's rows.
        let index = self
            .columns
            .iter()
            .rposition(|c| c == name)
            .ok_or_else(|| StoreError::Read(format!("no column {name}")))?;
        T::column_result(ValueRef::from(&self.values[index]))
            .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))
    }
}

impl Fields for Row {
    fn field<T: Field>(&self, name: &str) -> Result<T> {
        match self {
            Row::Any(row) => row.field(name),
            Row::Sqlite(row) => row.field(name),
        }
    }
}
