//! Queries for the certificates the hub manages itself.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::acme::guard;
use super::records::*;
use super::{Store, StoreError, conflict, pick_by_id};

type Result<T> = std::result::Result<T, StoreError>;

fn json<T: serde::de::DeserializeOwned>(r: &AnyRow, column: &str) -> Result<T> {
    serde_json::from_str(&r.try_get::<String, _>(column)?)
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn managed_from_row(r: &AnyRow) -> Result<ManagedCertificate> {
    Ok(ManagedCertificate {
        id: r.try_get("id")?,
        instance_id: r.try_get("instance_id")?,
        name: r.try_get("name")?,
        identifiers: json(r, "identifiers")?,
        key_type: KeyType::parse(&r.try_get::<String, _>("key_type")?)?,
        profile: r.try_get("profile")?,
        auto_renew: r.try_get::<i64, _>("auto_renew")? != 0,
        renew_before_days: r.try_get("renew_before_days")?,
        keep_key: r.try_get::<i64, _>("keep_key")? != 0,
        tags: json(r, "tags")?,
        status: ManagedStatus::parse(&r.try_get::<String, _>("status")?)?,
        step: r.try_get("step")?,
        missing: json(r, "missing")?,
        sealed_key: r.try_get("sealed_key")?,
        csr: r.try_get("csr")?,
        order_id: r.try_get("order_id")?,
        certificate_id: r.try_get("certificate_id")?,
        next_renewal_at: r.try_get("next_renewal_at")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        failures: r.try_get("failures")?,
        error: r.try_get("error")?,
        history: json(r, "history")?,
        expiry_notified: r.try_get("expiry_notified")?,
        renew_requested: r.try_get::<i64, _>("renew_requested")? != 0,
        next_sealed_key: r.try_get("next_sealed_key")?,
        next_csr: r.try_get("next_csr")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

impl Store {
    pub async fn insert_managed(&self, m: &ManagedCertificate) -> Result<()> {
        sqlx::query(
            "INSERT INTO managed_certificates (id, instance_id, name, identifiers, key_type, profile, \
             auto_renew, renew_before_days, keep_key, tags, status, step, missing, next_attempt_at, \
             history, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)",
        )
        .bind(&m.id)
        .bind(&m.instance_id)
        .bind(&m.name)
        .bind(to_json(&m.identifiers))
        .bind(m.key_type.as_str())
        .bind(&m.profile)
        .bind(i64::from(m.auto_renew))
        .bind(m.renew_before_days)
        .bind(i64::from(m.keep_key))
        .bind(to_json(&m.tags))
        .bind(m.status.as_str())
        .bind(&m.step)
        .bind(to_json(&m.missing))
        .bind(m.next_attempt_at)
        .bind(to_json(&m.history))
        .bind(m.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            conflict(
                e,
                format!("a managed certificate named {:?} exists", m.name),
            )
        })?;
        Ok(())
    }

    /// Records the job's progress (not the settings, not a renewal request).
    pub async fn update_managed(&self, m: &ManagedCertificate) -> Result<()> {
        let r = sqlx::query(
            "UPDATE managed_certificates SET status = $1, step = $2, missing = $3, sealed_key = $4, \
             csr = $5, order_id = $6, certificate_id = $7, next_renewal_at = $8, next_attempt_at = $9, \
             failures = $10, error = $11, history = $12, updated_at = $13, next_sealed_key = $14, \
             next_csr = $15, expiry_notified = $16 WHERE id = $17",
        )
        .bind(m.status.as_str())
        .bind(&m.step)
        .bind(to_json(&m.missing))
        .bind(m.sealed_key.clone())
        .bind(m.csr.clone())
        .bind(&m.order_id)
        .bind(&m.certificate_id)
        .bind(m.next_renewal_at)
        .bind(m.next_attempt_at)
        .bind(m.failures)
        .bind(&m.error)
        .bind(to_json(&m.history))
        .bind(crate::util::now())
        .bind(m.next_sealed_key.clone())
        .bind(m.next_csr.clone())
        .bind(m.expiry_notified)
        .bind(&m.id)
        .execute(&self.pool)
        .await?;
        guard(r.rows_affected())
    }

    /// The settings an operator may change, and nothing else.
    pub async fn update_managed_settings(&self, m: &ManagedCertificate) -> Result<()> {
        let r = sqlx::query(
            "UPDATE managed_certificates SET auto_renew = $1, renew_before_days = $2, keep_key = $3, \
             tags = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(i64::from(m.auto_renew))
        .bind(m.renew_before_days)
        .bind(i64::from(m.keep_key))
        .bind(to_json(&m.tags))
        .bind(crate::util::now())
        .bind(&m.id)
        .execute(&self.pool)
        .await?;
        guard(r.rows_affected())
    }

    /// Asks for a renewal now; `Guard` while an issuance is in flight.
    pub async fn request_managed_renewal(&self, id: &str) -> Result<()> {
        let r = sqlx::query(
            "UPDATE managed_certificates SET renew_requested = 1, failures = 0, next_attempt_at = 0 \
             WHERE id = $1 AND order_id IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        guard(r.rows_affected())
    }

    pub async fn clear_managed_renewal_request(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE managed_certificates SET renew_requested = 0 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn managed_certificates(&self, instance_id: &str) -> Result<Vec<ManagedCertificate>> {
        let rows =
            sqlx::query("SELECT * FROM managed_certificates WHERE instance_id = $1 ORDER BY name")
                .bind(instance_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(managed_from_row).collect()
    }

    /// A managed certificate by id or name, within one instance.
    pub async fn managed_certificate(
        &self,
        instance_id: &str,
        id_or_name: &str,
    ) -> Result<Option<ManagedCertificate>> {
        let rows = sqlx::query(
            "SELECT * FROM managed_certificates WHERE instance_id = $1 AND (id = $2 OR name = $2)",
        )
        .bind(instance_id)
        .bind(id_or_name)
        .fetch_all(&self.pool)
        .await?;
        pick_by_id(rows, id_or_name, managed_from_row, |m| &m.id)
    }

    pub async fn managed_by_id(&self, id: &str) -> Result<Option<ManagedCertificate>> {
        let row = sqlx::query("SELECT * FROM managed_certificates WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(managed_from_row).transpose()
    }

    /// Ids of managed certificates whose next step is due.
    pub async fn due_managed(&self, now: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM managed_certificates WHERE next_attempt_at <= $1 AND lease_until < $1 \
             ORDER BY next_attempt_at LIMIT 500",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Takes the job's lease until `until`; false when another worker holds it.
    pub async fn lease_managed(&self, id: &str, now: i64, until: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE managed_certificates SET lease_until = $1 WHERE id = $2 AND lease_until < $3",
        )
        .bind(until)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn release_managed(&self, id: &str, held_until: i64) -> Result<()> {
        sqlx::query(
            "UPDATE managed_certificates SET lease_until = 0 WHERE id = $1 AND lease_until = $2",
        )
        .bind(id)
        .bind(held_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_managed(&self, id: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM managed_certificates WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        guard(r.rows_affected())
    }
}
