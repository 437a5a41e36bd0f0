//! Used nonces on PostgreSQL, recorded in batches.
//!
//! Every ACME request redeems a nonce, about seven an issuance: as one
//! statement each they were a fifth of the hub's round trips to the
//! database. Here a redemption is queued; a few workers each take what has
//! queued up and record it with one statement, whose `RETURNING` tells
//! which nonces were new. When the database keeps up, a batch holds one
//! nonce and waits for nothing; under load the queue fills while the
//! workers' statements are in flight, and one round trip serves many
//! requests (group commit, as the SQLite writer does for writes).

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::Row;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::StoreError;
use crate::store::engine::held::Connections;

type Answer = oneshot::Sender<Result<bool, StoreError>>;

struct Redemption {
    nonce: String,
    expires_at: i64,
    answer: Answer,
}

/// The most nonces one statement records.
const MAX_BATCH: usize = 256;

/// How long a batch may take. Every ACME request waits for its nonce, so a
/// connection that stopped answering (a dropped TCP session is only noticed
/// much later) must not hold them all: past this the batch fails, and its
/// connection, abandoned mid-command, is closed (see [`crate::store::engine::held`]).
const RECORD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Records used nonces on `connections`, one batch per connection at a time.
#[derive(Clone)]
pub(crate) struct UsedNonces {
    queue: mpsc::UnboundedSender<Redemption>,
}

impl UsedNonces {
    /// Starts `workers` workers on the runtime; they end when the last
    /// `UsedNonces` is dropped.
    pub(crate) fn start(connections: Connections, workers: usize) -> Self {
        let (queue, redemptions) = mpsc::unbounded_channel();
        let redemptions = Arc::new(Mutex::new(redemptions));
        for _ in 0..workers {
            tokio::spawn(work(connections.clone(), redemptions.clone()));
        }
        Self { queue }
    }

    /// Records `nonce` as used; false when it was used before (a replay).
    /// `nonce` is base64url (the caller has checked its MAC), so it never
    /// holds the separator the batch is sent with.
    pub(crate) async fn redeem(&self, nonce: &str, expires_at: i64) -> Result<bool, StoreError> {
        let stopped = || StoreError::Write("the nonce recorder has stopped".into());
        if nonce.is_empty() || nonce.contains(SEPARATOR) {
            return Ok(false);
        }
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Redemption {
                nonce: nonce.to_string(),
                expires_at,
                answer,
            })
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// Between the nonces (and the expiry times) of a batch; [`RECORD`] splits
/// on the same.
const SEPARATOR: &str = " ";

/// One statement for a whole batch: the nonces and their expiry times as
/// two lists (sqlx's `Any` driver binds no arrays).
const RECORD: &str = "INSERT INTO used_nonces (nonce, expires_at) \
     SELECT n, e::bigint FROM unnest(string_to_array($1, ' '), string_to_array($2, ' ')) AS b(n, e) \
     ON CONFLICT (nonce) DO NOTHING RETURNING nonce";

async fn work(
    connections: Connections,
    redemptions: Arc<Mutex<mpsc::UnboundedReceiver<Redemption>>>,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = redemptions.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        record(&connections, batch).await;
    }
}

/// Records `batch` and answers each of its callers. A nonce twice in one
/// batch is new at most for the first.
async fn record(connections: &Connections, batch: Vec<Redemption>) {
    metrics::histogram!("acmehub_db_nonce_batch").record(batch.len() as f64);
    let join =
        |f: fn(&Redemption) -> String| batch.iter().map(f).collect::<Vec<_>>().join(SEPARATOR);
    let query = sqlx::query(RECORD)
        .bind(join(|r| r.nonce.clone()))
        .bind(join(|r| r.expires_at.to_string()));
    let recorded = tokio::time::timeout(RECORD_TIMEOUT, connections.fetch_all(query))
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut.into()));
    let mut new: HashSet<String> = match recorded {
        Ok(rows) => match rows.iter().map(|r| r.try_get(0)).collect() {
            Ok(new) => new,
            Err(e) => return fail(batch, &e.into()),
        },
        Err(e) => return fail(batch, &e),
    };
    for redemption in batch {
        let fresh = new.remove(&redemption.nonce);
        let _ = redemption.answer.send(Ok(fresh));
    }
}

fn fail(batch: Vec<Redemption>, e: &StoreError) {
    tracing::error!(nonces = batch.len(), error = %e, "recording used nonces failed");
    for redemption in batch {
        let _ = redemption
            .answer
            .send(Err(StoreError::Write(e.to_string())));
    }
}
