//! The audit log's rows: append-only, one event per change, written in the
//! same transaction as the change where the store makes it. Owns the
//! `events` table; never decides what is worth an event (that is `audit`).

use super::engine::{Fields, Statement};
use super::{FromRow, Result, Store};

#[derive(Debug, Clone)]
pub struct Event {
    pub seq: i64,
    pub at: i64,
    pub instance_id: Option<String>,
    /// `token:NAME`, `acme-account:ID`, or `hub`.
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    /// JSON object text; never a secret.
    pub detail: String,
}

/// Which events an audit listing shows (newest first).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// `Some(None)`: hub-wide events only is not offered; `None`: every instance.
    pub instance_ids: Option<Vec<String>>,
    pub action: Option<String>,
    pub object_id: Option<String>,
    /// Only events older than this sequence number (the cursor).
    pub before: Option<i64>,
    pub limit: i64,
}

impl FromRow for Event {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(Event {
            seq: r.field("seq")?,
            at: r.field("at")?,
            instance_id: r.field("instance_id")?,
            actor: r.field("actor")?,
            action: r.field("action")?,
            object_type: r.field("object_type")?,
            object_id: r.field("object_id")?,
            detail: r.field("detail")?,
        })
    }
}

impl Store {
    /// Appends an event (the log is append-only: nothing updates or deletes it).
    pub async fn insert_event(&self, e: &Event) -> Result<()> {
        event_statement(e)
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(())
    }

    pub async fn events(&self, f: &EventFilter) -> Result<Vec<Event>> {
        let mut sql = String::from("SELECT * FROM events WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let mut param = |sql: &mut String, clause: &str, value: String| {
            binds.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(ids) = &f.instance_ids {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(" AND instance_id IN (");
            for (n, id) in ids.iter().enumerate() {
                if n > 0 {
                    sql.push_str(", ");
                }
                param(&mut sql, "?", id.clone());
            }
            sql.push(')');
        }
        if let Some(action) = &f.action {
            param(&mut sql, " AND action = ?", action.clone());
        }
        if let Some(object_id) = &f.object_id {
            param(&mut sql, " AND object_id = ?", object_id.clone());
        }
        let n = binds.len();
        sql.push_str(&format!(
            " AND seq < ${} ORDER BY seq DESC LIMIT ${}",
            n + 1,
            n + 2
        ));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            query = query.bind(b);
        }
        let rows = query
            .bind(f.before.unwrap_or(i64::MAX))
            .bind(f.limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Event::from_row).collect()
    }
}

/// The INSERT of one audit event: a statement of the write that makes the
/// change it records (see [`super::engine::writer`]), or alone.
pub(super) fn event_statement(e: &Event) -> Statement {
    Statement::new(
        "INSERT INTO events (at, instance_id, actor, action, object_type, object_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            e.at.into(),
            (&e.instance_id).into(),
            e.actor.as_str().into(),
            e.action.as_str().into(),
            e.object_type.as_str().into(),
            e.object_id.as_str().into(),
            e.detail.as_str().into(),
        ],
    )
}
