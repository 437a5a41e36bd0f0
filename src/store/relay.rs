//! Queries for upstream CA accounts.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::acme::guard;
use super::records::*;
use super::{Store, StoreError, conflict};

type Result<T> = std::result::Result<T, StoreError>;

fn ca_account_from_row(r: &AnyRow) -> Result<CaAccount> {
    let caa: String = r.try_get("caa_identities")?;
    Ok(CaAccount {
        id: r.try_get("id")?,
        instance_id: r.try_get("instance_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        ca: r.try_get("ca")?,
        directory_url: r.try_get("directory_url")?,
        environment: Environment::parse(&r.try_get::<String, _>("environment")?)?,
        email: r.try_get("email")?,
        eab_kid: r.try_get("eab_kid")?,
        sealed_eab_hmac: r.try_get("eab_hmac")?,
        allow_wildcard: r.try_get::<i64, _>("allow_wildcard")? != 0,
        dns_ttl: r.try_get("dns_ttl")?,
        api_timeout_s: r.try_get("api_timeout_s")?,
        priority: r.try_get("priority")?,
        preferred: r.try_get::<i64, _>("preferred")? != 0,
        trusted_roots_pem: r.try_get("trusted_roots_pem")?,
        caa_identities: serde_json::from_str(&caa)
            .map_err(|e| StoreError::Corrupt(format!("caa_identities: {e}")))?,
        profiles: serde_json::from_str(&r.try_get::<String, _>("profiles")?)
            .map_err(|e| StoreError::Corrupt(format!("profiles: {e}")))?,
        account_url: r.try_get("account_url")?,
        sealed_credentials: r.try_get("credentials")?,
        status: CaAccountStatus::parse(&r.try_get::<String, _>("status")?)?,
        status_detail: r.try_get("status_detail")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn profiles_json(a: &CaAccount) -> String {
    serde_json::to_string(&a.profiles).unwrap_or_else(|_| "{}".into())
}

impl Store {
    pub async fn insert_ca_account(&self, a: &CaAccount) -> Result<()> {
        sqlx::query(
            "INSERT INTO ca_accounts (id, instance_id, name, description, ca, directory_url, environment, \
             email, eab_kid, eab_hmac, allow_wildcard, dns_ttl, api_timeout_s, priority, preferred, \
             trusted_roots_pem, caa_identities, account_url, credentials, status, status_detail, \
             created_at, updated_at, profiles) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20, $21, $22, $23, $24)",
        )
        .bind(&a.id)
        .bind(&a.instance_id)
        .bind(&a.name)
        .bind(&a.description)
        .bind(&a.ca)
        .bind(&a.directory_url)
        .bind(a.environment.as_str())
        .bind(&a.email)
        .bind(&a.eab_kid)
        .bind(a.sealed_eab_hmac.clone())
        .bind(i64::from(a.allow_wildcard))
        .bind(a.dns_ttl)
        .bind(a.api_timeout_s)
        .bind(a.priority)
        .bind(i64::from(a.preferred))
        .bind(&a.trusted_roots_pem)
        .bind(serde_json::to_string(&a.caa_identities).unwrap_or_else(|_| "[]".into()))
        .bind(&a.account_url)
        .bind(a.sealed_credentials.clone())
        .bind(a.status.as_str())
        .bind(&a.status_detail)
        .bind(a.created_at)
        .bind(a.updated_at)
        .bind(profiles_json(a))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            conflict(
                e,
                format!("a CA account named {:?} already exists in this instance", a.name),
            )
        })?;
        Ok(())
    }

    /// An instance's CA accounts, preferred first, then by priority.
    pub async fn ca_accounts(&self, instance_id: &str) -> Result<Vec<CaAccount>> {
        let rows = sqlx::query(
            "SELECT * FROM ca_accounts WHERE instance_id = $1 ORDER BY preferred DESC, priority, name",
        )
        .bind(instance_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ca_account_from_row).collect()
    }

    /// A CA account of the instance by id or name.
    pub async fn ca_account(
        &self,
        instance_id: &str,
        id_or_name: &str,
    ) -> Result<Option<CaAccount>> {
        let all = self.ca_accounts(instance_id).await?;
        let by_id = all.iter().position(|a| a.id == id_or_name);
        let by_name = all.iter().position(|a| a.name == id_or_name);
        Ok(by_id.or(by_name).map(|i| all[i].clone()))
    }

    /// Writes every mutable field of a CA account.
    pub async fn update_ca_account(&self, a: &CaAccount) -> Result<()> {
        self.write_ca_account(a, false).await
    }

    /// Writes a CA account that has just been registered upstream, unless
    /// another process registered it first: `Guard` then, and the
    /// account as stored is the one to use.
    pub async fn register_ca_account(&self, a: &CaAccount) -> Result<()> {
        self.write_ca_account(a, true).await
    }

    async fn write_ca_account(&self, a: &CaAccount, unregistered_only: bool) -> Result<()> {
        let r = sqlx::query(
            "UPDATE ca_accounts SET description = $1, directory_url = $2, environment = $3, email = $4, \
             eab_kid = $5, eab_hmac = $6, allow_wildcard = $7, dns_ttl = $8, api_timeout_s = $9, \
             priority = $10, preferred = $11, trusted_roots_pem = $12, caa_identities = $13, \
             account_url = $14, credentials = $15, status = $16, status_detail = $17, updated_at = $18, \
             profiles = $19 WHERE id = $20 AND ($21 = 0 OR credentials IS NULL)",
        )
        .bind(&a.description)
        .bind(&a.directory_url)
        .bind(a.environment.as_str())
        .bind(&a.email)
        .bind(&a.eab_kid)
        .bind(a.sealed_eab_hmac.clone())
        .bind(i64::from(a.allow_wildcard))
        .bind(a.dns_ttl)
        .bind(a.api_timeout_s)
        .bind(a.priority)
        .bind(i64::from(a.preferred))
        .bind(&a.trusted_roots_pem)
        .bind(serde_json::to_string(&a.caa_identities).unwrap_or_else(|_| "[]".into()))
        .bind(&a.account_url)
        .bind(a.sealed_credentials.clone())
        .bind(a.status.as_str())
        .bind(&a.status_detail)
        .bind(a.updated_at)
        .bind(profiles_json(a))
        .bind(&a.id)
        .bind(i64::from(unregistered_only))
        .execute(&self.pool)
        .await?;
        guard(r.rows_affected())
    }

    /// Makes `id` the instance's only preferred account.
    pub async fn prefer_ca_account(&self, instance_id: &str, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE ca_accounts SET preferred = 0 WHERE instance_id = $1 AND id <> $2")
            .bind(instance_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE ca_accounts SET preferred = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_ca_account(&self, id: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM ca_accounts WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        guard(r.rows_affected())
    }
}

fn upstream_order_from_row(r: &AnyRow) -> Result<UpstreamOrder> {
    Ok(UpstreamOrder {
        order_id: r.try_get("order_id")?,
        instance_id: r.try_get("instance_id")?,
        ca_account_id: r.try_get("ca_account_id")?,
        upstream_url: r.try_get("upstream_url")?,
        state: UpstreamOrderState::parse(&r.try_get::<String, _>("state")?)?,
        csr: r.try_get("csr")?,
        attempts: r.try_get("attempts")?,
        error: r.try_get("error")?,
        lease_owner: r.try_get("lease_owner")?,
    })
}

impl Store {
    pub async fn upstream_order(&self, order_id: &str) -> Result<Option<UpstreamOrder>> {
        let row = sqlx::query("SELECT * FROM upstream_orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(upstream_order_from_row).transpose()
    }

    /// Relayed orders a worker should move on (for resuming after a restart).
    pub async fn active_upstream_orders(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT order_id FROM upstream_orders WHERE state IN ('new', 'authorizing', 'finalizing') \
             OR (state = 'ready' AND csr IS NOT NULL)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("order_id")?)).collect()
    }

    /// Takes the order's lease until `until` for `owner` (a worker's random
    /// id); false when another worker holds it.
    pub async fn lease_upstream_order(
        &self,
        order_id: &str,
        now: i64,
        until: i64,
        owner: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE upstream_orders SET lease_until = $1, lease_owner = $2 \
             WHERE order_id = $3 AND lease_until < $4",
        )
        .bind(until)
        .bind(owner)
        .bind(order_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Extends `owner`'s lease to `until`; false when another worker took
    /// the order (after the lease lapsed).
    pub async fn extend_upstream_order(
        &self,
        order_id: &str,
        owner: &str,
        until: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE upstream_orders SET lease_until = $1 WHERE order_id = $2 AND lease_owner = $3",
        )
        .bind(until)
        .bind(order_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Drops every lease (relayed orders, managed certificates, periodic
    /// jobs): for a single-process store at start-up, when no worker of
    /// this process runs yet and no other process can hold one.
    pub async fn release_all_leases(&self) -> Result<()> {
        sqlx::query("UPDATE upstream_orders SET lease_until = 0 WHERE lease_until <> 0")
            .execute(&self.pool)
            .await?;
        sqlx::query("UPDATE managed_certificates SET lease_until = 0 WHERE lease_until <> 0")
            .execute(&self.pool)
            .await?;
        sqlx::query("UPDATE job_leases SET lease_until = 0 WHERE lease_until <> 0")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives `owner`'s lease back, unless another worker holds it now.
    pub async fn release_upstream_order(&self, order_id: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE upstream_orders SET lease_until = 0 WHERE order_id = $1 AND lease_owner = $2",
        )
        .bind(order_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records progress: the account, the upstream URL, the state, the
    /// attempts so far. Guarded on the lease owner `u` was read with:
    /// `Guard` when another worker has taken the order since.
    pub async fn update_upstream_order(&self, u: &UpstreamOrder) -> Result<()> {
        let r = sqlx::query(
            "UPDATE upstream_orders SET ca_account_id = $1, upstream_url = $2, state = $3, \
             attempts = $4, error = $5, updated_at = $6 \
             WHERE order_id = $7 AND COALESCE(lease_owner, '') = $8",
        )
        .bind(&u.ca_account_id)
        .bind(&u.upstream_url)
        .bind(u.state.as_str())
        .bind(&u.attempts)
        .bind(&u.error)
        .bind(crate::util::now())
        .bind(&u.order_id)
        .bind(u.lease_owner.clone().unwrap_or_default())
        .execute(&self.pool)
        .await?;
        guard(r.rows_affected())
    }

    /// Downstream finalize of a relayed order: `ready` -> `processing` with the
    /// client's CSR kept for upstream, in one guarded transaction.
    pub async fn begin_relayed_issuance(&self, order_id: &str, csr: &[u8]) -> Result<()> {
        let now = crate::util::now();
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE orders SET status = 'processing', updated_at = $1 WHERE id = $2 AND status = 'ready' AND expires_at > $1",
        )
        .bind(now)
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
        guard(r.rows_affected())?;
        let r =
            sqlx::query("UPDATE upstream_orders SET csr = $1, updated_at = $2 WHERE order_id = $3")
                .bind(csr.to_vec())
                .bind(now)
                .bind(order_id)
                .execute(&mut *tx)
                .await?;
        guard(r.rows_affected())?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores the upstream certificate and makes the order valid, once.
    pub async fn complete_relayed_issuance(&self, c: &RelayedCertificate) -> Result<String> {
        let id = crate::util::random_id();
        let now = crate::util::now();
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE orders SET status = 'valid', certificate_id = $1, updated_at = $2 WHERE id = $3 AND status = 'processing'",
        )
        .bind(&id)
        .bind(now)
        .bind(&c.order_id)
        .execute(&mut *tx)
        .await?;
        guard(r.rows_affected())?;
        sqlx::query(
            "INSERT INTO certificates (id, instance_id, account_id, order_id, serial, status, issuer, \
             identifiers, spki, not_before, not_after, der, chain_pem, ari_id, revoked_at, revocation_reason, created_at, \
             alternate_chains) \
             VALUES ($1, $2, $3, $4, $5, 'valid', $6, $7, $8, $9, $10, $11, $12, $14, NULL, NULL, $13, $15)",
        )
        .bind(&id)
        .bind(&c.instance_id)
        .bind(&c.account_id)
        .bind(&c.order_id)
        .bind(&c.serial)
        .bind(c.issuer.to_string())
        .bind(serde_json::to_string(&c.identifiers).unwrap_or_else(|_| "[]".into()))
        .bind(c.spki.clone())
        .bind(c.not_before)
        .bind(c.not_after)
        .bind(c.der.clone())
        .bind(&c.chain_pem)
        .bind(now)
        .bind(&c.ari_id)
        .bind(
            (!c.alternate_chains.is_empty())
                .then(|| serde_json::to_string(&c.alternate_chains).unwrap_or_default()),
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE upstream_orders SET state = 'valid', updated_at = $1 WHERE order_id = $2",
        )
        .bind(now)
        .bind(&c.order_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }
}
