//! What DNS-01 publishing keeps: stored credentials, zone bindings,
//! delegations, acme-dns registrations and the technical zone's TXT records.
//! Owns those tables; never talks to a DNS provider or server (`dns`, `zone`).

use super::engine::Fields;
use super::{FromRow, Result, Store, conflict, guard, pick_by_id};

status_enum!(
    /// A delegation's CNAME as last seen on the customer zone's
    /// authoritative servers.
    DelegationStatus {
        /// Absent on some server, or it could not be looked up.
        Missing => "missing",
        /// Some server has it pointing elsewhere.
        Mismatch => "mismatch",
        /// Every server has it, pointing at the delegation's label.
        Ok => "ok",
    }
);

/// A stored credential (DESIGN: *stored credential*). The secret is sealed
/// by `secrets` (owner `credential`); its `Debug` leaves it out.
#[derive(Clone)]
pub struct Credential {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    /// A provider kind from `dns::providers`, or `generic`.
    pub kind: String,
    pub description: String,
    /// Non-secret settings, a JSON object.
    pub config: serde_json::Value,
    pub sealed_secret: Vec<u8>,
    pub fingerprint: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_used_at: Option<i64>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("id", &self.id)
            .field("instance_id", &self.instance_id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Which credential answers DNS-01 for a zone of an instance.
#[derive(Debug, Clone)]
pub struct DnsZone {
    pub id: String,
    pub instance_id: String,
    /// Lowercase, no trailing dot.
    pub zone: String,
    pub credential_id: String,
    pub provider: String,
    pub created_at: i64,
}

/// `_acme-challenge.<domain> CNAME <label>.<technical zone>`.
#[derive(Debug, Clone)]
pub struct Delegation {
    pub id: String,
    pub instance_id: String,
    pub domain: String,
    pub label: String,
    pub status: DelegationStatus,
    pub detail: String,
    pub checked_at: Option<i64>,
    pub created_at: i64,
}

/// An acme-dns registration: `X-Api-User` and the hash of `X-Api-Key`.
#[derive(Debug, Clone)]
pub struct AcmeDnsAccount {
    pub username: String,
    pub instance_id: String,
    pub key_hash: String,
    pub label: String,
    /// Networks (CIDR) updates may come from; empty: anywhere.
    pub allowfrom: Vec<String>,
    pub created_at: i64,
}

/// What [`Store::add_zone_record`](super::Store::add_zone_record) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneRecordWrite {
    /// The value is served (new, or its expiry moved).
    Added,
    /// The name holds its most values already; nothing was written.
    Full {
        /// When the first of them expires (unix seconds).
        oldest_expires_at: Option<i64>,
    },
}

impl FromRow for Credential {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(Credential {
            id: r.field("id")?,
            instance_id: r.field("instance_id")?,
            name: r.field("name")?,
            kind: r.field("kind")?,
            description: r.field("description")?,
            config: r.json("config", "credential config")?,
            sealed_secret: r.field("secret")?,
            fingerprint: r.field("fingerprint")?,
            created_at: r.field("created_at")?,
            updated_at: r.field("updated_at")?,
            last_used_at: r.field("last_used_at")?,
        })
    }
}

impl FromRow for DnsZone {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(DnsZone {
            id: r.field("id")?,
            instance_id: r.field("instance_id")?,
            zone: r.field("zone")?,
            credential_id: r.field("credential_id")?,
            provider: r.field("provider")?,
            created_at: r.field("created_at")?,
        })
    }
}

impl FromRow for Delegation {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(Delegation {
            id: r.field("id")?,
            instance_id: r.field("instance_id")?,
            domain: r.field("domain")?,
            label: r.field("label")?,
            status: DelegationStatus::parse(&r.field::<String>("status")?)?,
            detail: r.field("detail")?,
            checked_at: r.field("checked_at")?,
            created_at: r.field("created_at")?,
        })
    }
}

impl FromRow for AcmeDnsAccount {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(AcmeDnsAccount {
            username: r.field("username")?,
            instance_id: r.field("instance_id")?,
            key_hash: r.field("key_hash")?,
            label: r.field("label")?,
            allowfrom: r.json("allowfrom", "acme-dns allowfrom")?,
            created_at: r.field("created_at")?,
        })
    }
}

impl Store {
    pub async fn insert_credential(&self, c: &Credential) -> Result<()> {
        sqlx::query(
            "INSERT INTO credentials (id, instance_id, name, kind, description, config, secret, \
             fingerprint, created_at, updated_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
        )
        .bind(&c.id)
        .bind(&c.instance_id)
        .bind(&c.name)
        .bind(&c.kind)
        .bind(&c.description)
        .bind(c.config.to_string())
        .bind(c.sealed_secret.clone())
        .bind(&c.fingerprint)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            conflict(
                e,
                format!(
                    "a credential named {:?} already exists in this instance",
                    c.name
                ),
            )
        })?;
        Ok(())
    }

    pub async fn credentials(&self, instance_id: &str) -> Result<Vec<Credential>> {
        let rows = sqlx::query("SELECT * FROM credentials WHERE instance_id = $1 ORDER BY name")
            .bind(instance_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Credential::from_row).collect()
    }

    /// A credential by id or name, within one instance.
    pub async fn credential(
        &self,
        instance_id: &str,
        id_or_name: &str,
    ) -> Result<Option<Credential>> {
        let rows = sqlx::query(
            "SELECT * FROM credentials WHERE instance_id = $1 AND (id = $2 OR name = $2)",
        )
        .bind(instance_id)
        .bind(id_or_name)
        .fetch_all(&self.pool)
        .await?;
        pick_by_id(rows, id_or_name, |c: &Credential| &c.id)
    }

    /// Writes description, config, sealed secret and fingerprint.
    pub async fn update_credential(&self, c: &Credential) -> Result<()> {
        let r = sqlx::query(
            "UPDATE credentials SET description = $1, config = $2, secret = $3, fingerprint = $4, \
             updated_at = $5 WHERE id = $6",
        )
        .bind(&c.description)
        .bind(c.config.to_string())
        .bind(c.sealed_secret.clone())
        .bind(&c.fingerprint)
        .bind(c.updated_at)
        .bind(&c.id)
        .execute(&self.pool)
        .await?;
        guard(r.rows_affected())
    }

    pub async fn touch_credential(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE credentials SET last_used_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a credential no zone binding uses; `Guard` when one does.
    pub async fn delete_credential(&self, id: &str) -> Result<()> {
        let r = sqlx::query(
            "DELETE FROM credentials WHERE id = $1 \
             AND NOT EXISTS (SELECT 1 FROM dns_zones WHERE credential_id = $1)",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        guard(r.rows_affected())
    }

    pub async fn insert_zone(&self, z: &DnsZone) -> Result<()> {
        sqlx::query(
            "INSERT INTO dns_zones (id, instance_id, zone, credential_id, provider, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&z.id)
        .bind(&z.instance_id)
        .bind(&z.zone)
        .bind(&z.credential_id)
        .bind(&z.provider)
        .bind(z.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            conflict(
                e,
                format!("zone {:?} is already bound in this instance", z.zone),
            )
        })?;
        Ok(())
    }

    pub async fn zones(&self, instance_id: &str) -> Result<Vec<DnsZone>> {
        let rows = sqlx::query("SELECT * FROM dns_zones WHERE instance_id = $1 ORDER BY zone")
            .bind(instance_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(DnsZone::from_row).collect()
    }

    pub async fn zones_of_credential(&self, credential_id: &str) -> Result<Vec<DnsZone>> {
        let rows = sqlx::query("SELECT * FROM dns_zones WHERE credential_id = $1 ORDER BY zone")
            .bind(credential_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(DnsZone::from_row).collect()
    }

    pub async fn delete_zone(&self, id: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM dns_zones WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        guard(r.rows_affected())
    }

    pub async fn insert_delegation(&self, d: &Delegation) -> Result<()> {
        sqlx::query(
            "INSERT INTO delegations (id, instance_id, domain, label, status, detail, checked_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&d.id)
        .bind(&d.instance_id)
        .bind(&d.domain)
        .bind(&d.label)
        .bind(d.status.as_str())
        .bind(&d.detail)
        .bind(d.checked_at)
        .bind(d.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict(e, format!("{:?} is already delegated in this instance", d.domain)))?;
        Ok(())
    }

    pub async fn delegations(&self, instance_id: &str) -> Result<Vec<Delegation>> {
        let rows = sqlx::query("SELECT * FROM delegations WHERE instance_id = $1 ORDER BY domain")
            .bind(instance_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Delegation::from_row).collect()
    }

    /// Every delegation of every instance (for the daily re-check).
    pub async fn all_delegations(&self) -> Result<Vec<Delegation>> {
        let rows = sqlx::query("SELECT * FROM delegations ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Delegation::from_row).collect()
    }

    pub async fn update_delegation_status(
        &self,
        id: &str,
        status: DelegationStatus,
        detail: &str,
        at: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE delegations SET status = $1, detail = $2, checked_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(detail)
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_delegation(&self, id: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM delegations WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        guard(r.rows_affected())
    }

    pub async fn insert_acme_dns_account(&self, a: &AcmeDnsAccount) -> Result<()> {
        sqlx::query(
            "INSERT INTO acme_dns_accounts (username, instance_id, key_hash, label, allowfrom, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&a.username)
        .bind(&a.instance_id)
        .bind(&a.key_hash)
        .bind(&a.label)
        .bind(serde_json::to_string(&a.allowfrom).expect("strings serialize"))
        .bind(a.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn acme_dns_account(&self, username: &str) -> Result<Option<AcmeDnsAccount>> {
        let row = sqlx::query("SELECT * FROM acme_dns_accounts WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(AcmeDnsAccount::from_row).transpose()
    }

    /// Adds a TXT value at `name`, kept until `expires_at`, unless `name`
    /// already holds `max_values` other live values. A value already there
    /// only has its expiry moved, whatever the count. One statement, so two
    /// writers on SQLite (one writer) cannot both take the last place; on
    /// PostgreSQL two concurrent writes of different values may (read
    /// committed), which overshoots the cap by the writes in flight at most.
    pub async fn add_zone_record(
        &self,
        name: &str,
        value: &str,
        now: i64,
        expires_at: i64,
        max_values: usize,
    ) -> Result<ZoneRecordWrite> {
        let max_values = i64::try_from(max_values).unwrap_or(i64::MAX);
        let added = sqlx::query(
            "INSERT INTO zone_records (name, value, created_at, expires_at) \
             SELECT $1, $2, CAST($3 AS BIGINT), CAST($4 AS BIGINT) \
             WHERE (SELECT COUNT(*) FROM zone_records \
                    WHERE name = $1 AND value <> $2 AND expires_at > $3) < $5 \
             ON CONFLICT (name, value) DO UPDATE SET expires_at = $4",
        )
        .bind(name)
        .bind(value)
        .bind(now)
        .bind(expires_at)
        .bind(max_values)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if added > 0 {
            return Ok(ZoneRecordWrite::Added);
        }
        let oldest_expires_at: Option<i64> = sqlx::query(
            "SELECT MIN(expires_at) AS oldest FROM zone_records WHERE name = $1 AND expires_at > $2",
        )
        .bind(name)
        .bind(now)
        .fetch_one(&self.pool)
        .await?
        .field("oldest")?;
        Ok(ZoneRecordWrite::Full { oldest_expires_at })
    }

    pub async fn remove_zone_record(&self, name: &str, value: &str) -> Result<()> {
        sqlx::query("DELETE FROM zone_records WHERE name = $1 AND value = $2")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every live TXT value of the technical zone, as `(name, value)`.
    pub async fn zone_records(&self, now: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT name, value FROM zone_records WHERE expires_at > $1 ORDER BY name, created_at",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.field("name")?, r.field("value")?)))
            .collect()
    }

    pub async fn prune_zone_records(&self, now: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM zone_records WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}
