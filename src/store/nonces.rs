//! Used nonces (RFC 8555 §6.5): redeemed once, forgotten once expired.
//! Owns the `used_nonces` table; on PostgreSQL the batches go through
//! [`super::cache`]'s recorder. Never makes or checks a nonce (`nonce`).

use super::engine::Statement;
use super::{Result, Store};

impl Store {
    /// Records a nonce as used. False when it was used before (a replay).
    pub async fn redeem_nonce(&self, nonce: &str, expires_at: i64) -> Result<bool> {
        if let Some(nonces) = &self.nonces {
            return nonces.redeem(nonce, expires_at).await;
        }
        let changed = self
            .write(vec![Statement::new(
                "INSERT INTO used_nonces (nonce, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (nonce) DO NOTHING",
                vec![nonce.into(), expires_at.into()],
            )])
            .await?;
        Ok(changed == [1])
    }

    /// Forgets used nonces that could no longer be accepted anyway.
    pub async fn prune_nonces(&self, now: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM used_nonces WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}
