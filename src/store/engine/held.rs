//! A few long-lived PostgreSQL connections for the ACME flow's hot path,
//! handed out without the round trips sqlx's pool spends on each checkout.
//!
//! sqlx's pool pings a connection every time one goes back to it (and,
//! by default, again when it is taken), to catch a connection left in an
//! unknown state by a caller that went away mid-command. An issuance takes
//! a connection some twenty-five times, so on PostgreSQL those pings were
//! as many round trips as the queries themselves. Here the same hazard is
//! handled where it arises: a [`Held`] connection knows whether a command
//! is in flight, and one dropped meanwhile is closed, never reused. A
//! connection idle for more than [`TRUSTED_IDLE`] is pinged before reuse
//! (the server may have dropped it); one that fails at the transport level
//! is closed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, ConnectOptions, Connection, Executor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::writer::{self, Changed, Statement};
use crate::store::StoreError;

/// How long a caller waits for a connection, and for a new one to open.
const WAIT: Duration = Duration::from_secs(10);

/// A connection idle for less than this is reused without a ping. Under
/// load connections come back within milliseconds, so this costs nothing
/// then; a connection the database (or a proxy) dropped while it sat idle
/// is caught before a request uses it, unless it went in the last tenth of
/// a second, which is as likely as losing one mid-command.
const TRUSTED_IDLE: Duration = Duration::from_millis(100);

/// Up to `max` connections to one database, opened when first needed.
#[derive(Clone)]
pub(crate) struct Connections(Arc<Inner>);

struct Inner {
    options: AnyConnectOptions,
    /// Statements each new connection runs first.
    setup: Vec<&'static str>,
    /// Connections not in use, with when each was last given back.
    idle: Mutex<Vec<(AnyConnection, Instant)>>,
    permits: Arc<Semaphore>,
}

impl Connections {
    pub(crate) fn new(options: AnyConnectOptions, setup: Vec<&'static str>, max: usize) -> Self {
        Self(Arc::new(Inner {
            options,
            setup,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max)),
        }))
    }

    /// A connection of its own for the caller until the [`Held`] drops.
    pub(crate) async fn get(&self) -> Result<Held, sqlx::Error> {
        let permit = tokio::time::timeout(WAIT, self.0.permits.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let held = |conn| Held {
            conn: Some(conn),
            busy: false,
            pool: self.0.clone(),
            _permit: permit,
        };
        loop {
            let idle = self.0.idle.lock().expect("idle connections").pop();
            let Some((mut conn, since)) = idle else { break };
            if since.elapsed() < TRUSTED_IDLE || conn.ping().await.is_ok() {
                return Ok(held(conn));
            }
        }
        let conn = tokio::time::timeout(WAIT, self.open())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        Ok(held(conn))
    }

    /// How many connections wait to be reused.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.0.idle.lock().expect("idle connections").len()
    }

    async fn open(&self) -> Result<AnyConnection, sqlx::Error> {
        let mut conn = self.0.options.connect().await?;
        for statement in &self.0.setup {
            conn.execute(*statement).await?;
        }
        Ok(conn)
    }

    pub(crate) async fn fetch_optional(
        &self,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<Option<AnyRow>, StoreError> {
        Ok(self.get().await?.fetch_optional(query).await?)
    }

    pub(crate) async fn fetch_all(
        &self,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>, StoreError> {
        Ok(self.get().await?.fetch_all(query).await?)
    }
}

/// A connection taken from [`Connections`]; given back when dropped.
pub(crate) struct Held {
    /// `None` once it is known broken.
    conn: Option<AnyConnection>,
    /// A command is in flight: should this be dropped now (its caller went
    /// away), the connection's state is unknown, so it is closed.
    busy: bool,
    pool: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl Held {
    /// Runs `command` on the connection, marked busy meanwhile. One that
    /// fails below the SQL level is closed, and so are the idle ones: they
    /// were opened to the same server, and are likely gone with it.
    async fn run<T>(
        &mut self,
        command: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let conn = self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        self.busy = true;
        let result = command(conn).await;
        self.busy = false;
        if let Err(e) = &result
            && !matches!(e, sqlx::Error::Database(_))
        {
            self.conn = None;
            self.pool.idle.lock().expect("idle connections").clear();
        }
        result
    }

    pub(crate) async fn fetch_optional(
        &mut self,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<Option<AnyRow>, sqlx::Error> {
        self.run(async |conn| query.fetch_optional(conn).await)
            .await
    }

    pub(crate) async fn fetch_all(
        &mut self,
        query: Query<'_, Any, AnyArguments>,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        self.run(async |conn| query.fetch_all(conn).await).await
    }

    /// Runs `statements` as one transaction (see [`super::writer`]).
    pub(crate) async fn transaction(
        &mut self,
        statements: &[Statement],
    ) -> Result<Changed, StoreError> {
        self.run(async |conn| transaction(conn, statements).await)
            .await?
    }

    /// Runs `statements`, none of which reads what another changes, as
    /// one statement (see [`writer::merged`]).
    pub(crate) async fn at_once(
        &mut self,
        statements: &[Statement],
    ) -> Result<Changed, StoreError> {
        let Some(merged) = writer::merged(statements) else {
            return self.transaction(statements).await;
        };
        let result = self.fetch_optional(merged.query()).await;
        writer::merged_outcome(result, statements)
    }
}

/// One statement alone runs without BEGIN and COMMIT around it (two round
/// trips fewer): on its own it is atomic, and changing no row undoes nothing.
/// The outer error is the connection's; the inner, why the write was undone.
async fn transaction(
    conn: &mut AnyConnection,
    statements: &[Statement],
) -> Result<Result<Changed, StoreError>, sqlx::Error> {
    if let [statement] = statements {
        let rows = statement.execute(conn).await?;
        return Ok(statement.goes_on(rows).map(|_| vec![rows]));
    }
    let mut tx = conn.begin().await?;
    let mut changed = Vec::with_capacity(statements.len());
    for statement in statements {
        let rows = match statement.execute(&mut tx).await {
            Ok(rows) => rows,
            Err(e) => {
                tx.rollback().await?;
                return Err(e);
            }
        };
        changed.push(rows);
        match statement.goes_on(rows) {
            Ok(true) => {}
            Ok(false) => break,
            Err(refused) => {
                tx.rollback().await?;
                return Ok(Err(refused));
            }
        }
    }
    tx.commit().await?;
    Ok(Ok(changed))
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !self.busy
        {
            self.pool
                .idle
                .lock()
                .expect("idle connections")
                .push((conn, Instant::now()));
        }
    }
}
