//! The database engine under the store: connecting and migrating, sqlx's
//! `Any` pool, the SQLite group-commit [`writer`] and on-thread [`reader`]s,
//! and PostgreSQL's [`held`] connections for the ACME flow. It knows
//! statements and rows, never a table or a record.

pub(super) mod held;
pub(super) mod reader;
pub(super) mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor, Row};

pub(super) use reader::{Field, Fields};
pub(super) use writer::Statement;

use super::cache::{AccountCache, UsedNonces, follow_postgres};
use super::{Backend, Store, StoreError};

/// A URL's part before `?`, and its `name=value` parameters.
fn url_params(url: &str) -> (&str, Vec<&str>) {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    (base, query.split('&').filter(|p| !p.is_empty()).collect())
}

/// The inverse of [`url_params`].
fn with_params(base: &str, params: &[&str]) -> String {
    if params.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", params.join("&"))
    }
}

/// Takes the hub's own `synchronous=full|normal` parameter off a SQLite URL
/// and returns the PRAGMA for it. `full` (the default) makes every commit
/// durable: the WAL is synced before COMMIT returns, so a power cut never
/// loses an issued certificate's record. `normal` syncs only at
/// checkpoints: faster, but the last commits can be lost to a power cut
/// (never to a crash of the hub alone).
fn sqlite_synchronous(url: &str) -> Result<(String, &'static str), StoreError> {
    let (base, params) = url_params(url);
    let mut pragma = "PRAGMA synchronous = FULL";
    let mut rest = Vec::new();
    for pair in params {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                pragma = match value.to_ascii_lowercase().as_str() {
                    "full" => "PRAGMA synchronous = FULL",
                    "normal" => "PRAGMA synchronous = NORMAL",
                    other => {
                        return Err(StoreError::Config(format!(
                            "synchronous={other} in the database URL: use full or normal"
                        )));
                    }
                }
            }
            _ => rest.push(pair),
        }
    }
    Ok((with_params(base, &rest), pragma))
}

/// What every writing SQLite connection runs first (sqlx's and the
/// group-commit writer's alike); `synchronous` from [`sqlite_synchronous`].
/// Temporary storage (the statement journals of multi-row statements) in
/// memory: on disk each was a file created and unlinked, several a second
/// under load.
fn sqlite_pragmas(synchronous: &'static str) -> [&'static str; 5] {
    [
        "PRAGMA journal_mode = WAL",
        synchronous,
        "PRAGMA foreign_keys = ON",
        "PRAGMA busy_timeout = 5000",
        "PRAGMA temp_store = MEMORY",
    ]
}

/// On PostgreSQL, the connections of the ACME flow's hot path (reads and
/// writes), and those of everything else (sqlx's pool).
const POSTGRES_FLOW_CONNECTIONS: usize = 10;

const POSTGRES_POOL_CONNECTIONS: u32 = 10;

/// What the flow's PostgreSQL connections run first. Every statement they
/// run finds its rows by key. On a fresh database the planner has no
/// statistics and takes each table for a few pages, so it would rather scan
/// one than use its key, and a prepared statement keeps that plan: seen
/// here, marking an order ready read the whole orders table, costing more
/// with every order until autovacuum's first ANALYZE (a minute or more
/// later). A scan is only chosen here when no index can serve the query.
const POSTGRES_FLOW_SETUP: &[&str] = &["SET enable_seqscan = off"];

/// On PostgreSQL, how many connections record used nonces (about seven an
/// issuance), each with a worker that records a batch at a time (see
/// [`super::cache`]). One: while its statement is in flight the next batch
/// gathers. At 64 clients a statement then records 3.4 nonces (2.2
/// statements an issuance) where two connections recorded 2.1 (3.6), and
/// the hub did 321 instead of 304 issuances/s in alternating runs. (Four
/// flow connections instead of ten did worse.) The nonce connection
/// commits asynchronously (no wait for the WAL's fsync; the commit is
/// visible to every replica at once). A crash of PostgreSQL itself can
/// forget the last fraction of a second of redemptions, so a nonce
/// redeemed then could be accepted once more within its lifetime: a replay
/// of a request its signer already made, which only someone who saw the
/// request inside TLS could send. Boulder keeps its nonces in memory, with
/// the same trade.
const POSTGRES_NONCE_CONNECTIONS: usize = 1;

async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
        Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(pool).await?,
    }
    Ok(())
}

impl Store {
    /// Connects (creating a SQLite file if needed) and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let (url, synchronous) = match backend {
            Backend::Sqlite => sqlite_synchronous(url)?,
            Backend::Postgres => (url.to_string(), ""),
        };
        let (url, pool_options) = match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                };
                // SQLite allows one writer; a single connection avoids
                // SQLITE_BUSY on lock upgrades inside transactions. A file
                // connection does not go stale, so it is not pinged (a
                // round trip to its thread) on every acquire.
                (
                    url,
                    AnyPoolOptions::new()
                        .max_connections(1)
                        .test_before_acquire(false),
                )
            }
            Backend::Postgres => (
                url.to_string(),
                AnyPoolOptions::new().max_connections(POSTGRES_POOL_CONNECTIONS),
            ),
        };
        let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        for pragma in sqlite_pragmas(synchronous) {
                            conn.execute(pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        migrate(&pool, backend).await?;
        let (reader, writer, nonces) = match backend {
            Backend::Sqlite => {
                // The file the pool opened (none for an in-memory database,
                // which the writer's and readers' connections could not share).
                let file: String =
                    sqlx::query("SELECT file FROM pragma_database_list WHERE name = 'main'")
                        .fetch_one(&pool)
                        .await?
                        .try_get("file")?;
                if file.is_empty() {
                    return Err(StoreError::Config(
                        "an in-memory SQLite database is not supported: name a file".into(),
                    ));
                }
                let writer =
                    writer::Writer::sqlite(pool.clone(), &file, &sqlite_pragmas(synchronous))?;
                let readers = reader::SqliteReaders::new(&file)?;
                (reader::Reader::Sqlite(Arc::new(readers)), writer, None)
            }
            Backend::Postgres => {
                let nonces = UsedNonces::start(
                    held::Connections::new(
                        options.clone(),
                        vec!["SET synchronous_commit = off"],
                        POSTGRES_NONCE_CONNECTIONS,
                    ),
                    POSTGRES_NONCE_CONNECTIONS,
                );
                let flow = held::Connections::new(
                    options,
                    POSTGRES_FLOW_SETUP.to_vec(),
                    POSTGRES_FLOW_CONNECTIONS,
                );
                (
                    reader::Reader::Postgres(flow.clone()),
                    writer::Writer::direct(flow),
                    Some(nonces),
                )
            }
        };
        let accounts = match backend {
            Backend::Sqlite => AccountCache::live(),
            Backend::Postgres => follow_postgres(&url),
        };
        Ok(Self {
            accounts,
            finished: Arc::default(),
            pool,
            reader,
            nonces,
            writer,
            backend,
        })
    }

    /// Runs `statements` as one write (one transaction) and returns, once
    /// it is committed, the rows each changed: on SQLite together with the
    /// other writes queued meanwhile (group commit, see [`writer`]), on
    /// PostgreSQL alone.
    pub(crate) async fn write(
        &self,
        statements: Vec<writer::Statement>,
    ) -> Result<writer::Changed, StoreError> {
        self.writer.write(statements).await
    }

    /// As [`Self::write`], for statements none of which reads what another
    /// changes (a statement after one that stops the write may depend on
    /// that one having changed a row, nothing else): on PostgreSQL they go
    /// as one statement, one round trip in place of one each plus BEGIN and
    /// COMMIT (see [`writer::merged`]).
    pub(crate) async fn write_at_once(
        &self,
        statements: Vec<writer::Statement>,
    ) -> Result<writer::Changed, StoreError> {
        self.writer.write_at_once(statements).await
    }

    /// A cheap round trip for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        self.writer.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlite_url_takes_a_synchronous_setting() {
        let full = "PRAGMA synchronous = FULL";
        assert_eq!(
            sqlite_synchronous("sqlite:///d/a.db").unwrap(),
            ("sqlite:///d/a.db".into(), full)
        );
        assert_eq!(
            sqlite_synchronous("sqlite:///d/a.db?synchronous=normal").unwrap(),
            ("sqlite:///d/a.db".into(), "PRAGMA synchronous = NORMAL")
        );
        assert_eq!(
            sqlite_synchronous("sqlite:///d/a.db?mode=rwc&synchronous=FULL").unwrap(),
            ("sqlite:///d/a.db?mode=rwc".into(), full)
        );
        let err = sqlite_synchronous("sqlite:///d/a.db?synchronous=off").unwrap_err();
        assert!(err.to_string().contains("use full or normal"), "{err}");
    }
}
