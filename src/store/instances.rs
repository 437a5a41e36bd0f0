//! Instances, the hub's tenants: their rows, and what refers to one before
//! it may go. Owns the `instances` table; never decides which settings an
//! instance may take (that is `tenancy`).

use super::engine::{Fields, Statement};
use super::{
    FromRow, Result, Store, StoreError, challenge_type, conflict, guard, pick_by_id, to_json,
};
use crate::policy::{ChallengeType, RateLimits};
use crate::util::{now, random_id};

status_enum!(
    /// Where an instance's certificates come from.
    Issuer {
        /// The hub's own CA signs them.
        Local => "local",
        /// Orders are relayed to the instance's CA accounts (the relay).
        Upstream => "upstream",
    }
);

status_enum!(
    /// Which CAs may serve an instance: a staging CA account never serves
    /// a production instance, nor the reverse.
    Environment { Production => "production", Staging => "staging" }
);

/// A tenant of the hub.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub description: String,
    pub issuer: Issuer,
    /// newAccount must carry an External Account Binding (RFC 8555 §7.3.4).
    pub external_account_required: bool,
    /// Validity of issued certificates; `None` = the hub's `[ca]` default.
    pub cert_validity_days: Option<i64>,
    /// Challenge types offered (stored as a JSON array of their names).
    pub allowed_challenges: Vec<ChallengeType>,
    pub rate_limits: RateLimits,
    /// Which CA accounts may serve it.
    pub environment: Environment,
    /// Move an order to the next CA account when one fails.
    pub failover: bool,
    /// Validation (and notifications set by instance-scoped tokens) may
    /// reach private and loopback addresses; `None` = the hub's
    /// `[validation] allow_private_targets`.
    pub allow_private_targets: Option<bool>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What still refers to an instance (a delete is refused while any is non-zero).
#[derive(Debug, Clone, Copy, Default)]
pub struct InstanceUsage {
    pub accounts: i64,
    pub access_keys: i64,
    pub certificates: i64,
    /// Credentials, zone bindings, delegations, CA accounts, managed
    /// certificates and notification channels.
    pub settings: i64,
}

/// An instance's allowed challenges, stored as a JSON array of their names.
fn challenges_from_json(text: &str) -> Result<Vec<ChallengeType>> {
    serde_json::from_str::<Vec<String>>(text)
        .map_err(|e| StoreError::Corrupt(format!("allowed_challenges: {e}")))?
        .iter()
        .map(|name| challenge_type(name))
        .collect()
}

fn challenges_to_json(challenges: &[ChallengeType]) -> String {
    let names: Vec<&str> = challenges.iter().map(|c| c.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

impl FromRow for Instance {
    fn from_row(r: &impl Fields) -> Result<Self> {
        let challenges: String = r.field("allowed_challenges")?;
        Ok(Instance {
            id: r.field("id")?,
            name: r.field("name")?,
            description: r.field("description")?,
            issuer: Issuer::parse(&r.field::<String>("issuer")?)?,
            external_account_required: r.flag("external_account_required")?,
            cert_validity_days: r.field("cert_validity_days")?,
            allowed_challenges: challenges_from_json(&challenges)?,
            rate_limits: r.json("rate_limits", "rate_limits")?,
            environment: Environment::parse(&r.field::<String>("environment")?)?,
            failover: r.flag("failover")?,
            allow_private_targets: r
                .field::<Option<i64>>("allow_private_targets")?
                .map(|v| v != 0),
            created_at: r.field("created_at")?,
            updated_at: r.field("updated_at")?,
        })
    }
}

impl FromRow for InstanceUsage {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(InstanceUsage {
            accounts: r.field("accounts")?,
            access_keys: r.field("access_keys")?,
            certificates: r.field("certificates")?,
            settings: r.field("settings")?,
        })
    }
}

impl Store {
    /// Creates the instance unless it exists; returns it either way.
    pub async fn ensure_instance(&self, name: &str, issuer: Issuer) -> Result<Instance> {
        sqlx::query(
            "INSERT INTO instances (id, name, description, issuer, created_at, updated_at) \
             VALUES ($1, $2, '', $3, $4, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(random_id())
        .bind(name)
        .bind(issuer.as_str())
        .bind(now())
        .execute(&self.pool)
        .await?;
        self.instance_by_name(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("instance {name} vanished")))
    }

    pub async fn instance_by_name(&self, name: &str) -> Result<Option<Instance>> {
        let row = self
            .reader
            .fetch_optional(&Statement::new(
                "SELECT * FROM instances WHERE name = $1",
                vec![name.into()],
            ))
            .await?;
        row.as_ref().map(Instance::from_row).transpose()
    }

    /// Inserts an instance; `Conflict` when the name is taken.
    pub async fn insert_instance(&self, i: &Instance) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO instances (id, name, description, issuer, external_account_required, \
             cert_validity_days, allowed_challenges, rate_limits, created_at, updated_at, environment, failover, \
             allow_private_targets) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&i.id)
        .bind(&i.name)
        .bind(&i.description)
        .bind(i.issuer.as_str())
        .bind(i64::from(i.external_account_required))
        .bind(i.cert_validity_days)
        .bind(challenges_to_json(&i.allowed_challenges))
        .bind(to_json(&i.rate_limits))
        .bind(i.created_at)
        .bind(i.updated_at)
        .bind(i.environment.as_str())
        .bind(i64::from(i.failover))
        .bind(i.allow_private_targets.map(i64::from))
        .execute(&self.pool)
        .await;
        result
            .map_err(|e| conflict(e, format!("an instance named {:?} already exists", i.name)))?;
        Ok(())
    }

    pub async fn instances(&self) -> Result<Vec<Instance>> {
        let rows = sqlx::query("SELECT * FROM instances ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Instance::from_row).collect()
    }

    /// An instance by id or, failing that, by name.
    pub async fn instance_by_ref(&self, id_or_name: &str) -> Result<Option<Instance>> {
        let rows = sqlx::query("SELECT * FROM instances WHERE id = $1 OR name = $1")
            .bind(id_or_name)
            .fetch_all(&self.pool)
            .await?;
        pick_by_id(rows, id_or_name, |i: &Instance| &i.id)
    }

    /// Writes every setting of an existing instance.
    pub async fn update_instance(&self, i: &Instance) -> Result<()> {
        let r = sqlx::query(
            "UPDATE instances SET description = $1, issuer = $2, external_account_required = $3, \
             cert_validity_days = $4, allowed_challenges = $5, rate_limits = $6, updated_at = $7, \
             environment = $9, failover = $10, allow_private_targets = $11 WHERE id = $8",
        )
        .bind(&i.description)
        .bind(i.issuer.as_str())
        .bind(i64::from(i.external_account_required))
        .bind(i.cert_validity_days)
        .bind(challenges_to_json(&i.allowed_challenges))
        .bind(to_json(&i.rate_limits))
        .bind(i.updated_at)
        .bind(&i.id)
        .bind(i.environment.as_str())
        .bind(i64::from(i.failover))
        .bind(i.allow_private_targets.map(i64::from))
        .execute(&self.pool)
        .await?;
        guard(r.rows_affected())
    }

    /// What refers to an instance (revoked access keys do not count).
    pub async fn instance_usage(&self, id: &str) -> Result<InstanceUsage> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM accounts WHERE instance_id = $1) AS accounts, \
             (SELECT COUNT(*) FROM access_keys WHERE instance_id = $1 AND status <> 'revoked') AS access_keys, \
             (SELECT COUNT(*) FROM certificates WHERE instance_id = $1) AS certificates, \
             (SELECT COUNT(*) FROM credentials WHERE instance_id = $1) \
             + (SELECT COUNT(*) FROM dns_zones WHERE instance_id = $1) \
             + (SELECT COUNT(*) FROM delegations WHERE instance_id = $1) \
             + (SELECT COUNT(*) FROM ca_accounts WHERE instance_id = $1) \
             + (SELECT COUNT(*) FROM managed_certificates WHERE instance_id = $1) \
             + (SELECT COUNT(*) FROM notification_channels WHERE instance_id = $1) AS settings",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        InstanceUsage::from_row(&row)
    }

    /// Deletes an instance that holds nothing but revoked access keys (which
    /// go with it). `Guard` when an account, a usable access key or a
    /// certificate still refers to it: no record is lost.
    pub async fn delete_instance(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let busy = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM accounts WHERE instance_id = $1) \
             + (SELECT COUNT(*) FROM access_keys WHERE instance_id = $1 AND status <> 'revoked') \
             + (SELECT COUNT(*) FROM certificates WHERE instance_id = $1) \
             + (SELECT COUNT(*) FROM credentials WHERE instance_id = $1) \
             + (SELECT COUNT(*) FROM dns_zones WHERE instance_id = $1) \
             + (SELECT COUNT(*) FROM delegations WHERE instance_id = $1) \
             + (SELECT COUNT(*) FROM ca_accounts WHERE instance_id = $1) \
             + (SELECT COUNT(*) FROM managed_certificates WHERE instance_id = $1) \
             + (SELECT COUNT(*) FROM notification_channels WHERE instance_id = $1) AS n",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if busy.field::<i64>("n")? > 0 {
            return Err(StoreError::Guard);
        }
        sqlx::query("DELETE FROM access_keys WHERE instance_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        guard(r.rows_affected())?;
        tx.commit().await?;
        self.forget_accounts();
        Ok(())
    }
}
