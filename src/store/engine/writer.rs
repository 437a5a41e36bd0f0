//! The hot writes of the ACME flow (new orders, challenge and issuance
//! state), as lists of statements that either backend runs.
//!
//! On PostgreSQL, which has many connections and commits concurrently, a
//! write is a transaction of its own.
//!
//! On SQLite a write is queued to one thread with a connection of its own,
//! which runs whatever has queued up inside one transaction (group commit)
//! and commits once for all of them. That matters twice over. A durable
//! commit waits for an fsync of the write-ahead log, and SQLite has one
//! writer, so one transaction per write is bounded by the disk's sync
//! rate. And each statement through sqlx's SQLite driver is a round trip to
//! its worker thread; on a loaded machine each such wake-up waits for a
//! core, so a write of a few statements took about half a millisecond.
//! Here the statements of a batch run one after another on one thread.
//!
//! Each write in a batch has a savepoint, so one that fails (a guard that
//! matched no row, a constraint) is undone alone. No caller hears of its
//! write until the commit that holds it is durable. While a batch runs,
//! the writer holds the pool's one writing connection, so sqlx's writes
//! and these never overlap (no `SQLITE_BUSY` on either side).

use std::borrow::Cow;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::held::Connections;
use crate::store::StoreError;

type Result<T> = std::result::Result<T, StoreError>;

/// A value bound to a statement parameter (typed, so that a NULL has the
/// column's type on PostgreSQL).
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_string()))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(Some(v.clone()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_string))
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Self {
        Arg::Blob(Some(v))
    }
}

/// What a statement that changed no row means for its write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IfNone {
    /// Nothing: go on.
    Continue,
    /// The write fails with [`StoreError::Guard`] and is undone.
    Guard,
    /// The write's remaining statements are skipped; what ran is kept.
    Stop,
}

/// One statement with `$N` placeholders and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
    if_none: IfNone,
}

impl Statement {
    pub(crate) fn new(sql: impl Into<Cow<'static, str>>, args: Vec<Arg>) -> Self {
        Self {
            sql: sql.into(),
            args,
            if_none: IfNone::Continue,
        }
    }

    /// The write fails with [`StoreError::Guard`] (and is undone) when
    /// this statement changes no row.
    pub(crate) fn guard(mut self) -> Self {
        self.if_none = IfNone::Guard;
        self
    }

    /// The write's later statements run only if this one changed a row.
    pub(crate) fn or_stop(mut self) -> Self {
        self.if_none = IfNone::Stop;
        self
    }

    /// After it changed `rows`: whether the write's next statements run,
    /// or [`StoreError::Guard`] when its guard refuses the write.
    pub(super) fn goes_on(&self, rows: u64) -> Result<bool> {
        match (rows, self.if_none) {
            (0, IfNone::Guard) => Err(StoreError::Guard),
            (0, IfNone::Stop) => Ok(false),
            _ => Ok(true),
        }
    }

    /// It as a sqlx query with its arguments bound.
    pub(super) fn query(&self) -> Query<'_, Any, AnyArguments> {
        let mut query = match &self.sql {
            Cow::Borrowed(sql) => sqlx::query(*sql),
            Cow::Owned(sql) => sqlx::query(sqlx::AssertSqlSafe(sql.clone())),
        };
        for arg in &self.args {
            query = match arg {
                Arg::Int(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.as_deref()),
                Arg::Blob(v) => query.bind(v.as_deref()),
            };
        }
        query
    }

    /// Runs it through sqlx (PostgreSQL, or inside a transaction of the
    /// pool's) and returns the rows it changed.
    pub(crate) async fn execute(&self, conn: &mut AnyConnection) -> sqlx::Result<u64> {
        Ok(self.query().execute(conn).await?.rows_affected())
    }

    pub(super) fn sql(&self) -> &str {
        &self.sql
    }

    /// Binds its arguments to `stmt` (prepared from its SQL), `$N` by name.
    pub(super) fn bind_sqlite(&self, stmt: &mut rusqlite::Statement<'_>) -> rusqlite::Result<()> {
        // As PostgreSQL would: every argument has its `$N`, and every `$N`
        // an argument (a missing one would bind NULL).
        if stmt.parameter_count() != self.args.len() {
            return Err(rusqlite::Error::InvalidParameterCount(
                self.args.len(),
                stmt.parameter_count(),
            ));
        }
        for (i, arg) in self.args.iter().enumerate() {
            let name = format!("${}", i + 1);
            let Some(index) = stmt.parameter_index(&name)? else {
                return Err(rusqlite::Error::InvalidParameterName(name));
            };
            match arg {
                Arg::Int(v) => stmt.raw_bind_parameter(index, v)?,
                Arg::Text(v) => stmt.raw_bind_parameter(index, v.as_deref())?,
                Arg::Blob(v) => stmt.raw_bind_parameter(index, v.as_deref())?,
            }
        }
        Ok(())
    }

    /// Runs it on a SQLite connection and returns the rows it changed.
    fn execute_sqlite(&self, conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
        let mut stmt = conn.prepare_cached(&self.sql)?;
        self.bind_sqlite(&mut stmt)?;
        Ok(stmt.raw_execute()? as u64)
    }
}

/// The rows each statement that ran changed, in order (fewer than the
/// statements when one stopped the write).
pub(crate) type Changed = Vec<u64>;

/// The SQLSTATE of `acmehub_guard` (PostgreSQL migration 0013).
const GUARD_SQLSTATE: &str = "AHGRD";

/// `statements`, none of which reads what another changes, as a single
/// PostgreSQL statement (one round trip, atomic on its own): each becomes a
/// data-modifying CTE whose changed rows are counted, and a guarded one's
/// count passes through `acmehub_guard`, whose error undoes the whole. A
/// statement after one that stops the write when it changes nothing runs
/// only if that one changed a row: its `WHERE` clause also asks for a row
/// of the stopping one's CTE (see [`gated`]).
/// `None` when that cannot be said in SQL: a statement after a stopping one
/// that is not an `UPDATE` or `DELETE ... WHERE`, or is guarded (its guard
/// would refuse the write when it was skipped).
pub(super) fn merged(statements: &[Statement]) -> Option<Statement> {
    let mut ctes = Vec::with_capacity(statements.len());
    let mut counts = Vec::with_capacity(statements.len());
    let mut args = Vec::new();
    let mut gates: Vec<String> = Vec::new();
    for (i, statement) in statements.iter().enumerate() {
        let mut sql = renumbered(&statement.sql, args.len());
        if !gates.is_empty() {
            if statement.if_none == IfNone::Guard {
                return None;
            }
            sql = gated(&sql, &gates.join(" AND "))?;
        }
        ctes.push(format!("w{i} AS ({sql} RETURNING 1)"));
        args.extend(statement.args.iter().cloned());
        let count = format!("(SELECT count(*) FROM w{i})");
        counts.push(match statement.if_none {
            IfNone::Guard => format!("acmehub_guard({count})"),
            _ => count,
        });
        if statement.if_none == IfNone::Stop {
            gates.push(format!("EXISTS (SELECT 1 FROM w{i})"));
        }
    }
    let sql = format!("WITH {} SELECT {}", ctes.join(", "), counts.join(", "));
    Some(Statement::new(sql, args))
}

/// `sql`, an `UPDATE` or `DELETE` whose `WHERE` clause comes last, with
/// `condition` added to that clause; `None` for any other statement. Only
/// the statement's own `WHERE` counts (not a subquery's), and its condition
/// is kept whole in parentheses (an `OR` in it stays an `OR` of its own).
fn gated(sql: &str, condition: &str) -> Option<String> {
    let upper = sql.to_ascii_uppercase();
    if !(upper.starts_with("UPDATE ") || upper.starts_with("DELETE ")) {
        return None;
    }
    let clause = *top_level(&upper, " WHERE ")?.last()? + " WHERE ".len();
    let tail = &upper[clause..];
    for word in [" RETURNING ", " ORDER BY ", " LIMIT "] {
        if !top_level(tail, word)?.is_empty() {
            return None;
        }
    }
    let (head, own) = sql.split_at(clause);
    Some(format!("{head}({own}) AND {condition}"))
}

/// Where `word` occurs in `sql` outside parentheses and quoted text;
/// `None` when those are not balanced.
fn top_level(sql: &str, word: &str) -> Option<Vec<usize>> {
    let (mut depth, mut quoted, mut found) = (0usize, None, Vec::new());
    for (at, byte) in sql.bytes().enumerate() {
        match (quoted, byte) {
            (Some(quote), _) if byte == quote => quoted = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quoted = Some(byte),
            (None, b'(') => depth += 1,
            (None, b')') => depth = depth.checked_sub(1)?,
            (None, _) if depth == 0 && sql.as_bytes()[at..].starts_with(word.as_bytes()) => {
                found.push(at)
            }
            _ => {}
        }
    }
    (depth == 0 && quoted.is_none()).then_some(found)
}

/// `sql` with each `$N` parameter moved to `$(N + by)`.
fn renumbered(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(n) = rest[..digits].parse::<usize>() {
            out.push_str(&(n + by).to_string());
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// What the merged write of `statements` says in its one row: the rows
/// each statement changed, up to the first that stopped the write (as
/// [`Statement::goes_on`] reads them one by one), or `Guard` when
/// `acmehub_guard` refused it.
pub(super) fn merged_outcome(
    result: sqlx::Result<Option<AnyRow>>,
    statements: &[Statement],
) -> Result<Changed> {
    let row = match result {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(GUARD_SQLSTATE) => {
            return Err(StoreError::Guard);
        }
        result => {
            result?.ok_or_else(|| StoreError::Write("a merged write returned no row".into()))?
        }
    };
    let mut changed = Vec::with_capacity(statements.len());
    for (i, statement) in statements.iter().enumerate() {
        let rows = row.try_get::<i64, _>(i)? as u64;
        changed.push(rows);
        if !statement.goes_on(rows)? {
            break;
        }
    }
    Ok(changed)
}

/// The most writes one transaction takes, so that a long queue still
/// commits (and answers) in steps.
const MAX_BATCH: usize = 128;

struct Job {
    statements: Vec<Statement>,
    answer: oneshot::Sender<Result<Changed>>,
}

/// Where writes go: the group-commit thread on a SQLite file, else a
/// transaction of their own on PostgreSQL.
#[derive(Clone)]
pub(crate) struct Writer(Route);

#[derive(Clone)]
enum Route {
    Direct(Connections),
    Queue(mpsc::UnboundedSender<Job>),
}

impl Writer {
    /// Each write a transaction of its own on one of `connections`.
    pub(crate) fn direct(connections: Connections) -> Self {
        Self(Route::Direct(connections))
    }

    /// Group commit on the SQLite file at `path`, which `pool` (its one
    /// writing connection) has created and migrated; `pragmas` are those
    /// the pool's connections run. The thread ends when the last `Writer`
    /// is dropped.
    pub(crate) fn sqlite(pool: AnyPool, path: &str, pragmas: &[&str]) -> Result<Self> {
        let fail = |e: &dyn std::fmt::Display| StoreError::Write(format!("opening {path}: {e}"));
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail(&e))?;
        for pragma in pragmas {
            conn.execute_batch(pragma).map_err(|e| fail(&e))?;
        }
        conn.set_prepared_statement_cache_capacity(64);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(&e))?;
        let (queue, jobs) = mpsc::unbounded_channel();
        let lock = pool;
        std::thread::Builder::new()
            .name("acmehub-db-writer".into())
            .spawn(move || runtime.block_on(commit_batches(lock, conn, jobs)))
            .map_err(|e| fail(&e))?;
        Ok(Self(Route::Queue(queue)))
    }

    /// An error once the SQLite writer thread has stopped (it never should),
    /// so that `/readyz` tells.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.0 {
            Route::Queue(queue) if queue.is_closed() => {
                Err(StoreError::Write("the database writer has stopped".into()))
            }
            _ => Ok(()),
        }
    }

    /// Runs `statements` as one write and returns, once it is committed,
    /// the rows each changed. On SQLite a queued write runs to its end even
    /// if the caller goes away (as a statement sent to a database would);
    /// on PostgreSQL it is rolled back with the caller's transaction.
    pub(crate) async fn write(&self, statements: Vec<Statement>) -> Result<Changed> {
        match &self.0 {
            Route::Direct(connections) => connections.get().await?.transaction(&statements).await,
            Route::Queue(queue) => queued(queue, statements).await,
        }
    }

    /// As [`Self::write`], for statements none of which reads what another
    /// changes: on PostgreSQL they go as one statement (see [`merged`]),
    /// one round trip instead of one each and two for BEGIN and COMMIT.
    pub(crate) async fn write_at_once(&self, statements: Vec<Statement>) -> Result<Changed> {
        match &self.0 {
            Route::Direct(connections) => connections.get().await?.at_once(&statements).await,
            Route::Queue(queue) => queued(queue, statements).await,
        }
    }
}

/// Queues `statements` for the SQLite writer and waits for their commit.
async fn queued(queue: &mpsc::UnboundedSender<Job>, statements: Vec<Statement>) -> Result<Changed> {
    let (answer, answered) = oneshot::channel();
    let gone = || StoreError::Write("the database writer has stopped".into());
    queue.send(Job { statements, answer }).map_err(|_| gone())?;
    answered.await.map_err(|_| gone())?
}

/// How long a write waits for others to join its commit, when writes are
/// queuing up (see [`commit_batches`]).
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// Writes queued behind the first that make it wait [`GATHER`], and
/// enough that it commits at once.
const QUEUING: usize = 2;
const GATHERED: usize = 16;

/// The group-commit loop: takes the writes queued since the last commit.
///
/// A commit is one fsync, and it rewrites every page its writes touched,
/// including the last page of each table and index, which every write of
/// an issuance shares; the readers' page caches are dropped after each
/// commit too. So when writes are queuing faster than they commit (a few
/// already wait behind the first), the next commit waits up to [`GATHER`]
/// for more, as PostgreSQL's `commit_delay` does when enough other
/// transactions are active. Seen here at 64 clients: 1.7 commits an
/// issuance without it, 1.0 with it. With a few clients the queue stays
/// short and no write waits (there a wait only adds to each request's
/// time: waiting whenever the last commit held two writes cut commits to
/// 0.4 an issuance at 64 clients, but cost a quarter of the throughput at
/// 4 clients).
async fn commit_batches(
    pool: AnyPool,
    conn: rusqlite::Connection,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    while let Some(first) = jobs.recv().await {
        if (QUEUING..GATHERED).contains(&jobs.len()) {
            tokio::time::sleep(GATHER).await;
        }
        // The pool's writing connection, held so that no sqlx write runs
        // meanwhile.
        let held = match pool.acquire().await {
            Ok(held) => held,
            Err(e) => {
                let _ = first.answer.send(Err(e.into()));
                continue;
            }
        };
        let started = std::time::Instant::now();
        let mut answers = Vec::new();
        let outcome = commit_batch(&conn, first, &mut jobs, &mut answers);
        // Whatever failed, no transaction stays open: it would hold SQLite's
        // write lock against sqlx's writes. (Should this ROLLBACK fail too,
        // the next batch's BEGIN fails, and this runs again after it.)
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        drop(held);
        metrics::histogram!("acmehub_db_commit_writes").record(answers.len() as f64);
        metrics::histogram!("acmehub_db_commit_seconds").record(started.elapsed().as_secs_f64());
        if let Err(e) = &outcome {
            tracing::error!(writes = answers.len(), error = %e, "a batch of database writes was not saved");
        }
        for (answer, result) in answers {
            let result = match (&outcome, result) {
                (Err(e), Ok(_)) => Err(StoreError::Write(e.to_string())),
                (_, result) => result,
            };
            let _ = answer.send(result);
        }
    }
}

type Answer = (oneshot::Sender<Result<Changed>>, Result<Changed>);

/// Runs `first` and what else is queued (up to [`MAX_BATCH`]) in one
/// transaction, each under a savepoint, and commits. `Err` when nothing of
/// it was saved.
fn commit_batch(
    conn: &rusqlite::Connection,
    first: Job,
    jobs: &mut mpsc::UnboundedReceiver<Job>,
    answers: &mut Vec<Answer>,
) -> rusqlite::Result<()> {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        answers.push((first.answer, Err(StoreError::Write(e.to_string()))));
        return Ok(());
    }
    let mut next = Some(first);
    while let Some(job) = next.take() {
        let ran = conn.execute_batch("SAVEPOINT w").and_then(|()| {
            let result = run(conn, &job.statements);
            if let Err(failed) = &result {
                conn.execute_batch("ROLLBACK TO w").inspect_err(|e| {
                    tracing::error!(write = %failed, error = %e, "undoing a failed database write");
                })?;
            }
            conn.execute_batch("RELEASE w")?;
            Ok(result)
        });
        match ran {
            Ok(result) => answers.push((job.answer, result)),
            Err(e) => {
                answers.push((job.answer, Err(StoreError::Write(e.to_string()))));
                return Err(e);
            }
        }
        if answers.len() < MAX_BATCH {
            next = jobs.try_recv().ok();
        }
    }
    conn.execute_batch("COMMIT")
}

/// One write's statements; what they changed, or why the write is undone.
fn run(conn: &rusqlite::Connection, statements: &[Statement]) -> Result<Changed> {
    let mut changed = Vec::with_capacity(statements.len());
    for statement in statements {
        let rows = statement.execute_sqlite(conn).map_err(sqlite_error)?;
        changed.push(rows);
        if !statement.goes_on(rows)? {
            break;
        }
    }
    Ok(changed)
}

/// Like a database error through sqlx: internal, never shown to a client.
fn sqlite_error(e: rusqlite::Error) -> StoreError {
    StoreError::Write(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered_past_the_earlier_statements() {
        assert_eq!(
            renumbered("UPDATE t SET a = $1, b = $12 WHERE c = $2 AND d = $1", 3),
            "UPDATE t SET a = $4, b = $15 WHERE c = $5 AND d = $4"
        );
        assert_eq!(renumbered("SELECT 1", 5), "SELECT 1");
        let merged = merged(&[
            Statement::new("DELETE FROM t WHERE a = $1", vec!["x".into()]),
            Statement::new(
                "UPDATE u SET b = $2 WHERE a = $1",
                vec!["y".into(), "z".into()],
            )
            .guard(),
        ])
        .unwrap();
        assert_eq!(
            merged.sql,
            "WITH w0 AS (DELETE FROM t WHERE a = $1 RETURNING 1), \
             w1 AS (UPDATE u SET b = $3 WHERE a = $2 RETURNING 1) \
             SELECT (SELECT count(*) FROM w0), acmehub_guard((SELECT count(*) FROM w1))"
        );
        assert_eq!(merged.args.len(), 3);
    }

    #[test]
    fn statements_after_a_stopping_one_are_gated_on_its_rows() {
        let merged = merged(&[
            Statement::new("UPDATE a SET s = 'v' WHERE id = $1", vec!["x".into()]).guard(),
            Statement::new("UPDATE b SET s = 'v' WHERE id = $1", vec!["y".into()]).or_stop(),
            Statement::new(
                "UPDATE c SET n = n - 1 WHERE s = 'p' OR id IN (SELECT c_id FROM d WHERE b_id = $1)",
                vec!["y".into()],
            ),
        ])
        .unwrap();
        assert_eq!(
            merged.sql,
            "WITH w0 AS (UPDATE a SET s = 'v' WHERE id = $1 RETURNING 1), \
             w1 AS (UPDATE b SET s = 'v' WHERE id = $2 RETURNING 1), \
             w2 AS (UPDATE c SET n = n - 1 WHERE (s = 'p' OR id IN (SELECT c_id FROM d WHERE b_id = $3)) \
             AND EXISTS (SELECT 1 FROM w1) RETURNING 1) \
             SELECT acmehub_guard((SELECT count(*) FROM w0)), (SELECT count(*) FROM w1), (SELECT count(*) FROM w2)"
        );
        let stop = || Statement::new("DELETE FROM t WHERE a = 1", vec![]).or_stop();
        // What cannot be gated is not merged (it runs as a transaction).
        for after in [
            Statement::new("INSERT INTO t (a) VALUES (1)", vec![]),
            Statement::new("DELETE FROM t", vec![]),
            Statement::new("UPDATE t SET a = 2 WHERE a = 1", vec![]).guard(),
            Statement::new("UPDATE t SET a = 2 WHERE a = 1 RETURNING a", vec![]),
            Statement::new("UPDATE t SET a = ')' WHERE (a = 1", vec![]),
        ] {
            assert!(
                super::merged(&[stop(), after.clone()]).is_none(),
                "{after:?}"
            );
        }
        // A WHERE inside quotes or a subquery is not the statement's own.
        assert_eq!(
            gated(
                "UPDATE t SET a = ' WHERE x' WHERE b IN (SELECT b FROM u WHERE c)",
                "g"
            )
            .as_deref(),
            Some("UPDATE t SET a = ' WHERE x' WHERE (b IN (SELECT b FROM u WHERE c)) AND g")
        );
        assert_eq!(
            gated("UPDATE t SET a = (SELECT 1 FROM u WHERE c)", "g"),
            None
        );
    }
}
