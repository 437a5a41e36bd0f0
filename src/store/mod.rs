//! The storage authority: the only module that writes SQL. One code path
//! serves SQLite and PostgreSQL through sqlx's `Any` driver with `$N`
//! placeholders; on SQLite the ACME flow's hot writes and reads run the
//! same statements through rusqlite instead ([`writer`], [`reader`]).
//! Every state transition is one transaction with a guard
//! (`UPDATE ... WHERE status = ...`), so two requests or replicas can never
//! both perform it. It never decides policy and never talks to the network.

mod account_cache;
mod acme;
mod admin;
mod dns;
mod finished;
mod held;
mod managed;
mod notify;
mod reader;
mod records;
mod relay;
mod used_nonces;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor, Row};

pub(crate) use account_cache::AccountCache;
pub use admin::{CertificateFilter, EventFilter, InstanceUsage, OrderFilter};
pub use finished::CertificateDownload;
pub use records::*;

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
    /// A read from SQLite on the calling thread failed (see [`reader`]).
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
    /// The ACME flow's hot reads (see [`reader`]): on SQLite read-only
    /// connections used on the calling thread, which do not queue behind a
    /// commit's fsync on the writer; on PostgreSQL the connections the
    /// flow's writes use too.
    reader: reader::Reader,
    /// Where used nonces are recorded on PostgreSQL (see
    /// [`POSTGRES_NONCE_CONNECTIONS`]); on SQLite nonces are redeemed in
    /// memory (`nonce`), and the writer records them if asked.
    nonces: Option<used_nonces::UsedNonces>,
    backend: Backend,
    /// Accounts read by id, kept in memory (see [`account_cache`]).
    accounts: Arc<AccountCache>,
    /// Valid orders and issued chains this process just wrote (see [`finished`]).
    finished: Arc<finished::Finished>,
    /// The hot writes: group-committed on SQLite (see [`writer`]).
    writer: writer::Writer,
}

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
/// [`used_nonces`]). One: while its statement is in flight the next batch
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
                let nonces = used_nonces::UsedNonces::start(
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
            Backend::Postgres => account_cache::follow_postgres(&url),
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

    pub fn backend(&self) -> Backend {
        self.backend
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

    /// Takes periodic job `job` for `owner` until `until`: true when no
    /// process holds it (its lease ended before `now`) and its last run
    /// finished before `due_before`. Of processes trying at once, one wins.
    pub async fn take_job(
        &self,
        job: &str,
        owner: &str,
        now: i64,
        until: i64,
        due_before: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO job_leases (job, owner, lease_until, last_run) VALUES ($1, $2, $3, 0) \
             ON CONFLICT (job) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
             WHERE job_leases.lease_until < $4 AND job_leases.last_run < $5",
        )
        .bind(job)
        .bind(owner)
        .bind(until)
        .bind(now)
        .bind(due_before)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records that `owner` finished a run of `job` at `now`, and gives the
    /// lease back (unless another process took it over meanwhile).
    pub async fn finish_job(&self, job: &str, owner: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE job_leases SET last_run = $1, lease_until = 0 WHERE job = $2 AND owner = $3",
        )
        .bind(now)
        .bind(job)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reads a hub-wide setting (e.g. the nonce key).
    pub async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("value")?),
            None => None,
        })
    }

    /// Stores a setting unless one exists, and returns the stored value, so
    /// that two processes starting at once agree on one value.
    pub async fn setting_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value.to_vec())
        .execute(&self.pool)
        .await?;
        self.setting(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("setting {name} vanished")))
    }
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Of the rows matching `id = X OR name = X`, the one whose id is X wins.
pub(crate) fn pick_by_id<T>(
    rows: Vec<sqlx::any::AnyRow>,
    wanted: &str,
    decode: impl Fn(&sqlx::any::AnyRow) -> Result<T, StoreError>,
    id: impl Fn(&T) -> &String,
) -> Result<Option<T>, StoreError> {
    let mut found: Vec<T> = rows.iter().map(decode).collect::<Result<_, _>>()?;
    let by_id = found.iter().position(|t| id(t) == wanted);
    Ok(match by_id {
        Some(i) => Some(found.swap_remove(i)),
        None => found.pop(),
    })
}

/// `Conflict(what)` for a unique-constraint refusal, else the database error.
fn conflict(e: sqlx::Error, what: String) -> StoreError {
    if unique_violation(&e) {
        StoreError::Conflict(what)
    } else {
        e.into()
    }
}

#[cfg(test)]
pub(crate) mod tests;
