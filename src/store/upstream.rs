//! The relay's records: CA accounts at upstream CAs, the upstream state of
//! relayed orders (with their leases), and the certificates upstream issued.
//! Owns `ca_accounts` and `upstream_orders`; never talks to a CA (`issuance`).

use super::engine::Fields;
use super::{CertificateIssuer, Environment, FromRow, Result, Store, column, conflict, guard};
use crate::policy::Identifier;

status_enum!(
    /// Whether a CA account is registered at its CA.
    CaAccountStatus {
        /// Not yet, or its directory or binding changed since: a test registers it.
        Unregistered => "unregistered",
        Valid => "valid",
        /// Registering failed; failover passes it over.
        Error => "error",
    }
);

status_enum!(
    /// How far a relayed order got at its upstream CA.
    UpstreamOrderState {
        /// No upstream order yet.
        New => "new",
        Authorizing => "authorizing",
        /// Authorized upstream, waiting for the client's CSR.
        Ready => "ready",
        /// The CSR went upstream.
        Finalizing => "finalizing",
        Valid => "valid",
        Failed => "failed",
    }
);

/// An account at an upstream CA, owned by one instance (DESIGN: *CA account*).
/// Its ACME account key (in `credentials`) and EAB HMAC key are sealed by
/// `secrets` (owner `ca-account`); its `Debug` leaves both out.
#[derive(Clone)]
pub struct CaAccount {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub description: String,
    /// A known CA (`letsencrypt`, `zerossl`, ...) or `custom`.
    pub ca: String,
    pub directory_url: String,
    pub environment: Environment,
    pub email: String,
    pub eab_kid: Option<String>,
    pub sealed_eab_hmac: Option<Vec<u8>>,
    pub allow_wildcard: bool,
    pub dns_ttl: i64,
    pub api_timeout_s: i64,
    pub priority: i64,
    pub preferred: bool,
    pub trusted_roots_pem: Option<String>,
    pub caa_identities: Vec<String>,
    /// The profiles the CA's directory offers, name to description.
    pub profiles: std::collections::BTreeMap<String, String>,
    /// The upstream account URL once registered.
    pub account_url: Option<String>,
    /// instant-acme's account credentials (JSON), sealed.
    pub sealed_credentials: Option<Vec<u8>>,
    pub status: CaAccountStatus,
    pub status_detail: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for CaAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaAccount")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("ca", &self.ca)
            .field("directory_url", &self.directory_url)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A downstream order relayed upstream.
#[derive(Debug, Clone)]
pub struct UpstreamOrder {
    pub order_id: String,
    pub instance_id: String,
    pub ca_account_id: Option<String>,
    pub upstream_url: Option<String>,
    pub state: UpstreamOrderState,
    pub csr: Option<Vec<u8>>,
    /// JSON array of `{"account", "error"}` for accounts that failed.
    pub attempts: String,
    pub error: Option<String>,
    /// The worker that holds (or last held) the lease; its writes are
    /// guarded on it.
    pub lease_owner: Option<String>,
}

/// A certificate an upstream CA issued for a relayed order.
#[derive(Debug, Clone)]
pub struct RelayedCertificate {
    pub order_id: String,
    pub instance_id: String,
    pub account_id: String,
    pub serial: String,
    pub issuer: CertificateIssuer,
    pub identifiers: Vec<Identifier>,
    pub spki: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Vec<u8>,
    pub chain_pem: String,
    /// The upstream CA's alternate chains (RFC 8555 §7.4.2), PEM each.
    pub alternate_chains: Vec<String>,
    /// RFC 9773 certificate identifier, so downstream ARI answers for it.
    pub ari_id: Option<String>,
}

impl FromRow for CaAccount {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(CaAccount {
            id: r.field("id")?,
            instance_id: r.field("instance_id")?,
            name: r.field("name")?,
            description: r.field("description")?,
            ca: r.field("ca")?,
            directory_url: r.field("directory_url")?,
            environment: Environment::parse(&r.field::<String>("environment")?)?,
            email: r.field("email")?,
            eab_kid: r.field("eab_kid")?,
            sealed_eab_hmac: r.field("eab_hmac")?,
            allow_wildcard: r.flag("allow_wildcard")?,
            dns_ttl: r.field("dns_ttl")?,
            api_timeout_s: r.field("api_timeout_s")?,
            priority: r.field("priority")?,
            preferred: r.flag("preferred")?,
            trusted_roots_pem: r.field("trusted_roots_pem")?,
            caa_identities: r.json("caa_identities", "caa_identities")?,
            profiles: r.json("profiles", "profiles")?,
            account_url: r.field("account_url")?,
            sealed_credentials: r.field("credentials")?,
            status: CaAccountStatus::parse(&r.field::<String>("status")?)?,
            status_detail: r.field("status_detail")?,
            created_at: r.field("created_at")?,
            updated_at: r.field("updated_at")?,
        })
    }
}

fn profiles_json(a: &CaAccount) -> String {
    serde_json::to_string(&a.profiles).unwrap_or_else(|_| "{}".into())
}

impl FromRow for UpstreamOrder {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(UpstreamOrder {
            order_id: r.field("order_id")?,
            instance_id: r.field("instance_id")?,
            ca_account_id: r.field("ca_account_id")?,
            upstream_url: r.field("upstream_url")?,
            state: UpstreamOrderState::parse(&r.field::<String>("state")?)?,
            csr: r.field("csr")?,
            attempts: r.field("attempts")?,
            error: r.field("error")?,
            lease_owner: r.field("lease_owner")?,
        })
    }
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
        rows.iter().map(CaAccount::from_row).collect()
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

    pub async fn upstream_order(&self, order_id: &str) -> Result<Option<UpstreamOrder>> {
        let row = sqlx::query("SELECT * FROM upstream_orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(UpstreamOrder::from_row).transpose()
    }

    /// Relayed orders a worker should move on (for resuming after a restart).
    pub async fn active_upstream_orders(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT order_id FROM upstream_orders WHERE state IN ('new', 'authorizing', 'finalizing') \
             OR (state = 'ready' AND csr IS NOT NULL)",
        )
        .fetch_all(&self.pool)
        .await?;
        column(&rows, "order_id")
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
