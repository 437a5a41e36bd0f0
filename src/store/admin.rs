//! Queries for what operators manage: instances, access keys, API tokens,
//! the audit log, rate-limit counters, and the inventory views of orders and
//! certificates.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::acme::{certificate_from_row, challenges_to_json, instance_from_row, order_from_row};
use super::records::*;
use super::{Store, StoreError, conflict, pick_by_id};

type Result<T> = std::result::Result<T, StoreError>;

fn access_key_from_row(r: &AnyRow) -> Result<AccessKey> {
    let patterns: String = r.try_get("allowed_identifiers")?;
    let validation: String = r.try_get("validation")?;
    Ok(AccessKey {
        id: r.try_get("id")?,
        instance_id: r.try_get("instance_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        kid: r.try_get("kid")?,
        hmac_key: r.try_get("hmac_key")?,
        allowed_identifiers: serde_json::from_str(&patterns)
            .map_err(|e| StoreError::Corrupt(format!("allowed_identifiers: {e}")))?,
        allow_wildcard: r.try_get::<i64, _>("allow_wildcard")? != 0,
        validation: validation.parse().map_err(StoreError::Corrupt)?,
        expires_at: r.try_get("expires_at")?,
        status: AccessKeyStatus::parse(&r.try_get::<String, _>("status")?)?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn ui_user_from_row(r: &AnyRow) -> Result<UiUser> {
    Ok(UiUser {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        password_hash: r.try_get("password_hash")?,
        scope: r.try_get("scope")?,
        role: r.try_get("role")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        failed_logins: r.try_get("failed_logins")?,
        locked_until: r.try_get("locked_until")?,
    })
}

fn token_from_row(r: &AnyRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        scope: r.try_get("scope")?,
        role: r.try_get("role")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn event_from_row(r: &AnyRow) -> Result<Event> {
    Ok(Event {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        instance_id: r.try_get("instance_id")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        object_type: r.try_get("object_type")?,
        object_id: r.try_get("object_id")?,
        detail: r.try_get("detail")?,
    })
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// `LIKE` text matching `text` literally.
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Which certificates an inventory listing shows.
#[derive(Debug, Clone, Default)]
pub struct CertificateFilter {
    /// `active`, `expired` or `revoked`.
    pub status: Option<String>,
    /// Certificates with this identifier, or one under it.
    pub identifier: Option<String>,
    /// Active certificates whose `not_after` falls within this many days.
    pub expiring_within_days: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// Which orders an admin listing shows.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub account_id: Option<String>,
    pub limit: i64,
    pub offset: i64,
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

impl Store {
    // ---- instances ----

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
        .bind(json(&i.rate_limits))
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
        rows.iter().map(instance_from_row).collect()
    }

    /// An instance by id or, failing that, by name.
    pub async fn instance_by_ref(&self, id_or_name: &str) -> Result<Option<Instance>> {
        let rows = sqlx::query("SELECT * FROM instances WHERE id = $1 OR name = $1")
            .bind(id_or_name)
            .fetch_all(&self.pool)
            .await?;
        pick_by_id(rows, id_or_name, instance_from_row, |i| &i.id)
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
        .bind(json(&i.rate_limits))
        .bind(i.updated_at)
        .bind(&i.id)
        .bind(i.environment.as_str())
        .bind(i64::from(i.failover))
        .bind(i.allow_private_targets.map(i64::from))
        .execute(&self.pool)
        .await?;
        super::acme::guard(r.rows_affected())
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
        Ok(InstanceUsage {
            accounts: row.try_get("accounts")?,
            access_keys: row.try_get("access_keys")?,
            certificates: row.try_get("certificates")?,
            settings: row.try_get("settings")?,
        })
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
        if busy.try_get::<i64, _>("n")? > 0 {
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
        super::acme::guard(r.rows_affected())?;
        tx.commit().await?;
        self.forget_accounts();
        Ok(())
    }

    // ---- access keys ----

    /// Inserts an access key; `Conflict` when its name is taken in the instance.
    pub async fn insert_access_key(&self, k: &AccessKey) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO access_keys (id, instance_id, name, description, kid, hmac_key, \
             allowed_identifiers, allow_wildcard, validation, expires_at, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&k.id)
        .bind(&k.instance_id)
        .bind(&k.name)
        .bind(&k.description)
        .bind(&k.kid)
        .bind(k.hmac_key.clone())
        .bind(json(&k.allowed_identifiers))
        .bind(i64::from(k.allow_wildcard))
        .bind(k.validation.as_str())
        .bind(k.expires_at)
        .bind(k.status.as_str())
        .bind(k.created_at)
        .bind(k.updated_at)
        .execute(&self.pool)
        .await;
        result.map_err(|e| {
            conflict(
                e,
                format!(
                    "an access key named {:?} already exists in this instance",
                    k.name
                ),
            )
        })?;
        Ok(())
    }

    pub async fn access_keys(&self, instance_id: &str) -> Result<Vec<AccessKey>> {
        let rows =
            sqlx::query("SELECT * FROM access_keys WHERE instance_id = $1 ORDER BY created_at, id")
                .bind(instance_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(access_key_from_row).collect()
    }

    /// An access key of the instance by id or, failing that, by name.
    pub async fn access_key(
        &self,
        instance_id: &str,
        id_or_name: &str,
    ) -> Result<Option<AccessKey>> {
        let rows = sqlx::query(
            "SELECT * FROM access_keys WHERE instance_id = $1 AND (id = $2 OR name = $2)",
        )
        .bind(instance_id)
        .bind(id_or_name)
        .fetch_all(&self.pool)
        .await?;
        pick_by_id(rows, id_or_name, access_key_from_row, |k| &k.id)
    }

    /// The access key an EAB `kid` names, within one instance.
    pub async fn access_key_by_kid(
        &self,
        instance_id: &str,
        kid: &str,
    ) -> Result<Option<AccessKey>> {
        let row = sqlx::query("SELECT * FROM access_keys WHERE instance_id = $1 AND kid = $2")
            .bind(instance_id)
            .bind(kid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(access_key_from_row).transpose()
    }

    /// Writes the mutable fields of an access key that is not revoked.
    /// `Guard` when it was revoked meanwhile (revocation is final).
    pub async fn update_access_key(&self, k: &AccessKey) -> Result<()> {
        let r = sqlx::query(
            "UPDATE access_keys SET description = $1, allowed_identifiers = $2, allow_wildcard = $3, \
             validation = $4, expires_at = $5, status = $6, updated_at = $7 \
             WHERE id = $8 AND status <> 'revoked'",
        )
        .bind(&k.description)
        .bind(json(&k.allowed_identifiers))
        .bind(i64::from(k.allow_wildcard))
        .bind(k.validation.as_str())
        .bind(k.expires_at)
        .bind(k.status.as_str())
        .bind(k.updated_at)
        .bind(&k.id)
        .execute(&self.pool)
        .await?;
        super::acme::guard(r.rows_affected())
    }

    /// How many accounts each access key of the instance has bound.
    pub async fn access_key_account_counts(
        &self,
        instance_id: &str,
    ) -> Result<std::collections::HashMap<String, i64>> {
        let rows = sqlx::query(
            "SELECT access_key_id, COUNT(*) AS n FROM accounts \
             WHERE instance_id = $1 AND access_key_id IS NOT NULL GROUP BY access_key_id",
        )
        .bind(instance_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("access_key_id")?, r.try_get("n")?)))
            .collect()
    }

    // ---- API tokens ----

    /// Inserts a token with the SHA-256 of its secret; `Conflict` when the name is taken.
    pub async fn insert_token(&self, t: &ApiToken, token_hash: &str) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, scope, role, created_by, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(token_hash)
        .bind(&t.scope)
        .bind(&t.role)
        .bind(&t.created_by)
        .bind(t.created_at)
        .execute(&self.pool)
        .await;
        result.map_err(|e| conflict(e, format!("a token named {:?} already exists", t.name)))?;
        Ok(())
    }

    // ---- console sessions ----

    /// Stores a console session (by the hash of its cookie secret).
    pub async fn insert_ui_session(&self, s: &UiSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO ui_sessions (id_hash, subject, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.id_hash)
        .bind(&s.subject)
        .bind(&s.csrf)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The console session whose cookie secret hashes to `id_hash`, unless it
    /// has expired at `now`.
    pub async fn ui_session(&self, id_hash: &str, now: i64) -> Result<Option<UiSession>> {
        let row = sqlx::query("SELECT * FROM ui_sessions WHERE id_hash = $1 AND expires_at > $2")
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(UiSession {
                id_hash: r.try_get("id_hash")?,
                subject: r.try_get("subject")?,
                csrf: r.try_get("csrf")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Moves a console session's idle deadline.
    pub async fn touch_ui_session(&self, id_hash: &str, expires_at: i64) -> Result<()> {
        sqlx::query("UPDATE ui_sessions SET expires_at = $2 WHERE id_hash = $1")
            .bind(id_hash)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends every console session of a subject (`token:<id>`, `user:<id>`).
    pub async fn delete_ui_sessions_of(&self, subject: &str) -> Result<u64> {
        let r = sqlx::query("DELETE FROM ui_sessions WHERE subject = $1")
            .bind(subject)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Ends a console session (signing out).
    pub async fn delete_ui_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM ui_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- console users ----

    /// Stores a console user; `Conflict` when the name is taken.
    pub async fn insert_ui_user(&self, u: &UiUser) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO ui_users (id, name, password_hash, scope, role, created_by, created_at, failed_logins, locked_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0)",
        )
        .bind(&u.id)
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(&u.scope)
        .bind(&u.role)
        .bind(&u.created_by)
        .bind(u.created_at)
        .execute(&self.pool)
        .await;
        result.map_err(|e| conflict(e, format!("a user named {:?} already exists", u.name)))?;
        Ok(())
    }

    pub async fn ui_users(&self) -> Result<Vec<UiUser>> {
        let rows = sqlx::query("SELECT * FROM ui_users ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(ui_user_from_row).collect()
    }

    /// A console user by id or name.
    pub async fn ui_user(&self, id_or_name: &str) -> Result<Option<UiUser>> {
        let rows = sqlx::query("SELECT * FROM ui_users WHERE id = $1 OR name = $1")
            .bind(id_or_name)
            .fetch_all(&self.pool)
            .await?;
        pick_by_id(rows, id_or_name, ui_user_from_row, |u| &u.id)
    }

    /// Deletes a console user and ends its sessions, in one transaction;
    /// `Guard` when there was no such user.
    pub async fn delete_ui_user(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ui_sessions WHERE subject = $1")
            .bind(format!("user:{id}"))
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM ui_users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Guard);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Notes that sign-ins as this user from some client address are
    /// refused until `until` (shown to admins; the lock itself is counted
    /// per address, in memory, by `policy::SignInFailures`).
    pub async fn note_sign_in_lock(&self, id: &str, until: i64) -> Result<()> {
        sqlx::query("UPDATE ui_users SET locked_until = $2 WHERE id = $1")
            .bind(id)
            .bind(until)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Drops console sessions that expired before `now`.
    pub async fn prune_ui_sessions(&self, now: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// The unrevoked token whose secret hashes to `token_hash`.
    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let row =
            sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    pub async fn token(&self, id_or_name: &str) -> Result<Option<ApiToken>> {
        let rows = sqlx::query("SELECT * FROM api_tokens WHERE id = $1 OR name = $1")
            .bind(id_or_name)
            .fetch_all(&self.pool)
            .await?;
        pick_by_id(rows, id_or_name, token_from_row, |t| &t.id)
    }

    /// Revokes a token. `Guard` when it was revoked already.
    pub async fn revoke_token(&self, id: &str, at: i64) -> Result<()> {
        let r = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        super::acme::guard(r.rows_affected())
    }

    // ---- audit log ----

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
        rows.iter().map(event_from_row).collect()
    }

    // ---- rate-limit counters ----

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
        Ok(row.try_get("hits")?)
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
            Some(r) => r.try_get("hits")?,
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

    // ---- inventory ----

    /// An instance's certificates (issued or revoked), newest first.
    pub async fn certificates_for_instance(
        &self,
        instance_id: &str,
        f: &CertificateFilter,
        now: i64,
    ) -> Result<Vec<Certificate>> {
        let mut sql = String::from(
            "SELECT * FROM certificates WHERE instance_id = $1 AND status IN ('valid', 'revoked')",
        );
        match f.status.as_deref() {
            Some("active") => sql.push_str(" AND status = 'valid' AND not_after > $2"),
            Some("expired") => sql.push_str(" AND status = 'valid' AND not_after <= $2"),
            Some("revoked") => sql.push_str(" AND status = 'revoked' AND $2 = $2"),
            _ => sql.push_str(" AND $2 = $2"),
        }
        if f.expiring_within_days.is_some() {
            sql.push_str(" AND status = 'valid' AND not_after > $2 AND not_after <= $3");
        } else {
            sql.push_str(" AND $3 = $3");
        }
        if f.identifier.is_some() {
            sql.push_str(
                " AND (identifiers LIKE $4 ESCAPE '\\' OR identifiers LIKE $5 ESCAPE '\\')",
            );
        } else {
            sql.push_str(" AND $4 = $5");
        }
        sql.push_str(" ORDER BY created_at DESC, id LIMIT $6 OFFSET $7");
        let (exact, under) = match &f.identifier {
            Some(v) => {
                let v = like_escape(v);
                (format!("%\"value\":\"{v}\"%"), format!("%.{v}\"%"))
            }
            None => (String::new(), String::new()),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(instance_id)
            .bind(now)
            .bind(now + f.expiring_within_days.unwrap_or(0) * 86400)
            .bind(exact)
            .bind(under)
            .bind(f.limit)
            .bind(f.offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(certificate_from_row).collect()
    }

    /// A certificate of the instance by id or by serial (hex).
    pub async fn certificate_by_ref(
        &self,
        instance_id: &str,
        id_or_serial: &str,
    ) -> Result<Option<Certificate>> {
        let rows = sqlx::query(
            "SELECT * FROM certificates WHERE instance_id = $1 AND (id = $2 OR serial = $3)",
        )
        .bind(instance_id)
        .bind(id_or_serial)
        .bind(id_or_serial.to_ascii_lowercase())
        .fetch_all(&self.pool)
        .await?;
        pick_by_id(rows, id_or_serial, certificate_from_row, |c| &c.id)
    }

    /// An instance's orders, newest first, with their authorization ids.
    pub async fn orders_for_instance(
        &self,
        instance_id: &str,
        f: &OrderFilter,
    ) -> Result<Vec<Order>> {
        let mut sql = String::from("SELECT * FROM orders WHERE instance_id = $1");
        sql.push_str(if f.status.is_some() {
            " AND status = $2"
        } else {
            " AND $2 = $2"
        });
        sql.push_str(if f.account_id.is_some() {
            " AND account_id = $3"
        } else {
            " AND $3 = $3"
        });
        sql.push_str(" ORDER BY created_at DESC, id LIMIT $4 OFFSET $5");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(instance_id)
            .bind(f.status.map(OrderStatus::as_str).unwrap_or_default())
            .bind(f.account_id.clone().unwrap_or_default())
            .bind(f.limit)
            .bind(f.offset)
            .fetch_all(&self.pool)
            .await?;
        let mut orders: Vec<Order> = rows.iter().map(order_from_row).collect::<Result<_>>()?;
        for order in &mut orders {
            let rows = sqlx::query(
                "SELECT authz_id FROM order_authorizations WHERE order_id = $1 ORDER BY position",
            )
            .bind(&order.id)
            .fetch_all(&self.pool)
            .await?;
            order.authz_ids = rows
                .iter()
                .map(|r| r.try_get("authz_id"))
                .collect::<std::result::Result<_, _>>()?;
        }
        Ok(orders)
    }
}

/// The INSERT of one audit event: a statement of the write that makes the
/// change it records (see [`super::writer`]), or alone.
pub(super) fn event_statement(e: &Event) -> super::writer::Statement {
    super::writer::Statement::new(
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
