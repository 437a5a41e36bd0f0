//! Rate-limit counters: hits per fixed window. Owns the `rate_counters`
//! table; never decides a limit (that is `policy` and `orders`).

use super::engine::Fields;
use super::{Result, Store};

impl Store {
    /// Counts one hit in a fixed window and returns the window's total.
    pub async fn hit_counter(&self, counter: &str, window_start: i64) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO rate_counters (counter, window_start, hits) VALUES ($1, $2, 1) \
             ON CONFLICT (counter, window_start) DO UPDATE SET hits = rate_counters.hits + 1 \
             RETURNING hits",
        )
        .bind(counter)
        .bind(window_start)
        .fetch_one(&self.pool)
        .await?;
        row.field("hits")
    }

    /// A window's total without counting.
    pub async fn counter(&self, counter: &str, window_start: i64) -> Result<i64> {
        let row =
            sqlx::query("SELECT hits FROM rate_counters WHERE counter = $1 AND window_start = $2")
                .bind(counter)
                .bind(window_start)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(r) => r.field("hits")?,
            None => 0,
        })
    }

    /// Forgets windows that started before `before`, and those of counters
    /// named `*:{short_tag}:*` (one-second windows) that started before `short_before`.
    pub async fn prune_counters(
        &self,
        before: i64,
        short_tag: &str,
        short_before: i64,
    ) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM rate_counters WHERE window_start < $1 \
             OR (counter LIKE $2 AND window_start < $3)",
        )
        .bind(before)
        .bind(format!("%:{short_tag}:%"))
        .bind(short_before)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }
}
