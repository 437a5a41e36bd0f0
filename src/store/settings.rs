//! Hub-wide settings (the nonce key, say) that every process must agree on.
//! Owns the `settings` table; never knows what a value means.

use super::engine::Fields;
use super::{Result, Store, StoreError};

impl Store {
    /// Reads a hub-wide setting (e.g. the nonce key).
    pub async fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.field("value")?),
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
