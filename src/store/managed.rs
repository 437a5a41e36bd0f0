//! Certificates the hub manages itself: settings, the job's progress and
//! its lease. Owns the `managed_certificates` table; never orders or renews
//! (that is `managed`).

use super::engine::Fields;
use super::{FromRow, Result, Store, column, conflict, guard, pick_by_id, to_json};
use crate::policy::Identifier;

status_enum!(
    /// Where a managed certificate stands: `draft` → `csr` → `pending`
    /// (waiting for DNS) → `active` → `expired` / `revoked`; `failed` while
    /// it has never been issued and its last attempt failed.
    ManagedStatus {
        Draft => "draft",
        Csr => "csr",
        Pending => "pending",
        Active => "active",
        Expired => "expired",
        Revoked => "revoked",
        Failed => "failed",
    }
);

status_enum!(
    /// The key a managed certificate is made with: ECDSA on P-256 or
    /// P-384, or RSA of 2048, 3072 or 4096 bits.
    KeyType {
        EcP256 => "ec-p256",
        EcP384 => "ec-p384",
        Rsa2048 => "rsa-2048",
        Rsa3072 => "rsa-3072",
        Rsa4096 => "rsa-4096",
    }
);

/// A certificate the hub manages itself: it holds the key, issues through
/// the instance's issuer and renews on its own.
#[derive(Debug, Clone)]
pub struct ManagedCertificate {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub identifiers: Vec<Identifier>,
    pub key_type: KeyType,
    pub profile: Option<String>,
    pub auto_renew: bool,
    pub renew_before_days: Option<i64>,
    /// Keep the key across renewals (a new key each time otherwise).
    pub keep_key: bool,
    pub tags: Vec<String>,
    pub status: ManagedStatus,
    /// What the job is doing or waiting on, in words.
    pub step: String,
    /// Per identifier, what DNS still lacks (`{"identifier", "detail", ...}`).
    pub missing: Vec<serde_json::Value>,
    /// The private key (PKCS#8 DER), sealed.
    pub sealed_key: Option<Vec<u8>>,
    pub csr: Option<Vec<u8>>,
    /// The order in flight, if any.
    pub order_id: Option<String>,
    /// The certificate served now.
    pub certificate_id: Option<String>,
    pub next_renewal_at: Option<i64>,
    pub next_attempt_at: i64,
    /// Failed attempts in a row.
    pub failures: i64,
    pub error: Option<String>,
    /// Attempts and their outcomes, oldest first.
    pub history: Vec<serde_json::Value>,
    /// The expiry reminder (days before expiry) last sent for the current certificate.
    pub expiry_notified: Option<i64>,
    /// An operator asked for a renewal now.
    pub renew_requested: bool,
    /// A renewal's new key (sealed) and CSR, until its certificate is
    /// issued; the key served stays the current certificate's meanwhile.
    pub next_sealed_key: Option<Vec<u8>>,
    pub next_csr: Option<Vec<u8>>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl FromRow for ManagedCertificate {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(ManagedCertificate {
            id: r.field("id")?,
            instance_id: r.field("instance_id")?,
            name: r.field("name")?,
            identifiers: r.json("identifiers", "identifiers")?,
            key_type: KeyType::parse(&r.field::<String>("key_type")?)?,
            profile: r.field("profile")?,
            auto_renew: r.flag("auto_renew")?,
            renew_before_days: r.field("renew_before_days")?,
            keep_key: r.flag("keep_key")?,
            tags: r.json("tags", "tags")?,
            status: ManagedStatus::parse(&r.field::<String>("status")?)?,
            step: r.field("step")?,
            missing: r.json("missing", "missing")?,
            sealed_key: r.field("sealed_key")?,
            csr: r.field("csr")?,
            order_id: r.field("order_id")?,
            certificate_id: r.field("certificate_id")?,
            next_renewal_at: r.field("next_renewal_at")?,
            next_attempt_at: r.field("next_attempt_at")?,
            failures: r.field("failures")?,
            error: r.field("error")?,
            history: r.json("history", "history")?,
            expiry_notified: r.field("expiry_notified")?,
            renew_requested: r.flag("renew_requested")?,
            next_sealed_key: r.field("next_sealed_key")?,
            next_csr: r.field("next_csr")?,
            created_at: r.field("created_at")?,
            updated_at: r.field("updated_at")?,
        })
    }
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
        rows.iter().map(ManagedCertificate::from_row).collect()
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
        pick_by_id(rows, id_or_name, |m: &ManagedCertificate| &m.id)
    }

    pub async fn managed_by_id(&self, id: &str) -> Result<Option<ManagedCertificate>> {
        let row = sqlx::query("SELECT * FROM managed_certificates WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(ManagedCertificate::from_row).transpose()
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
        column(&rows, "id")
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

    /// Asks the managed certificates serving `certificate_id` to look again now.
    pub async fn nudge_managed(&self, certificate_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE managed_certificates SET next_attempt_at = 0 WHERE certificate_id = $1",
        )
        .bind(certificate_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
