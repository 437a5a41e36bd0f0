//! Who may use the hub: access keys (EAB), admin API tokens, console users
//! and their sessions. Owns those four tables; stores only hashes and sealed
//! keys, and never checks a secret or a scope (that is `tenancy`).

use super::engine::Fields;
use super::{FromRow, Result, Store, StoreError, conflict, guard, pick_by_id, to_json};
use crate::policy::ValidationMode;

status_enum!(
    /// An access key's state: only `active` keys bind new accounts and let
    /// their accounts order; `revoked` is final.
    AccessKeyStatus { Active => "active", Disabled => "disabled", Revoked => "revoked" }
);

/// An EAB key pair with its policy (DESIGN: *access key*). Its `Debug`
/// leaves the HMAC key out.
#[derive(Clone)]
pub struct AccessKey {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub description: String,
    /// The EAB key identifier clients send.
    pub kid: String,
    /// The HMAC key, sealed by `secrets` (owner `access-key`).
    pub hmac_key: Vec<u8>,
    /// Pattern texts as given (normalized on use by `policy::Pattern`).
    pub allowed_identifiers: Vec<String>,
    pub allow_wildcard: bool,
    pub validation: ValidationMode,
    pub expires_at: Option<i64>,
    pub status: AccessKeyStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("instance_id", &self.instance_id)
            .field("name", &self.name)
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .field("allowed_identifiers", &self.allowed_identifiers)
            .field("validation", &self.validation)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// An admin API token; only the SHA-256 of the secret is stored.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    /// `admin` or `instance:NAME`.
    pub scope: String,
    /// `read` or `write`.
    pub role: String,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A web console session. The cookie holds a secret; only its SHA-256 is
/// stored, with who signed in.
#[derive(Debug, Clone)]
pub struct UiSession {
    pub id_hash: String,
    /// `token:<SHA-256 of the token>` or `user:<id>`.
    pub subject: String,
    /// The session's form token (CSRF).
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A web console user: a name and an argon2id password, with the scope and
/// role an API token would have.
#[derive(Debug, Clone)]
pub struct UiUser {
    pub id: String,
    pub name: String,
    /// PHC string; never leaves the store and the sign-in check.
    pub password_hash: String,
    /// `admin` or `instance:ID`.
    pub scope: String,
    /// `read` or `write`.
    pub role: String,
    pub created_by: String,
    pub created_at: i64,
    /// No longer counted: failures count per client address, in memory
    /// (`policy::SignInFailures`); the column stays for existing databases.
    pub failed_logins: i64,
    /// Sign-ins as this user are refused from some client address until
    /// then (0: never); shown to admins, not consulted at sign-in.
    pub locked_until: i64,
}

impl FromRow for AccessKey {
    fn from_row(r: &impl Fields) -> Result<Self> {
        let validation: String = r.field("validation")?;
        Ok(AccessKey {
            id: r.field("id")?,
            instance_id: r.field("instance_id")?,
            name: r.field("name")?,
            description: r.field("description")?,
            kid: r.field("kid")?,
            hmac_key: r.field("hmac_key")?,
            allowed_identifiers: r.json("allowed_identifiers", "allowed_identifiers")?,
            allow_wildcard: r.flag("allow_wildcard")?,
            validation: validation.parse().map_err(StoreError::Corrupt)?,
            expires_at: r.field("expires_at")?,
            status: AccessKeyStatus::parse(&r.field::<String>("status")?)?,
            created_at: r.field("created_at")?,
            updated_at: r.field("updated_at")?,
        })
    }
}

impl FromRow for ApiToken {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(ApiToken {
            id: r.field("id")?,
            name: r.field("name")?,
            scope: r.field("scope")?,
            role: r.field("role")?,
            created_by: r.field("created_by")?,
            created_at: r.field("created_at")?,
            revoked_at: r.field("revoked_at")?,
        })
    }
}

impl FromRow for UiUser {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(UiUser {
            id: r.field("id")?,
            name: r.field("name")?,
            password_hash: r.field("password_hash")?,
            scope: r.field("scope")?,
            role: r.field("role")?,
            created_by: r.field("created_by")?,
            created_at: r.field("created_at")?,
            failed_logins: r.field("failed_logins")?,
            locked_until: r.field("locked_until")?,
        })
    }
}

impl FromRow for UiSession {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(UiSession {
            id_hash: r.field("id_hash")?,
            subject: r.field("subject")?,
            csrf: r.field("csrf")?,
            created_at: r.field("created_at")?,
            expires_at: r.field("expires_at")?,
        })
    }
}

impl Store {
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
        .bind(to_json(&k.allowed_identifiers))
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
        rows.iter().map(AccessKey::from_row).collect()
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
        pick_by_id(rows, id_or_name, |k: &AccessKey| &k.id)
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
        row.as_ref().map(AccessKey::from_row).transpose()
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
        .bind(to_json(&k.allowed_identifiers))
        .bind(i64::from(k.allow_wildcard))
        .bind(k.validation.as_str())
        .bind(k.expires_at)
        .bind(k.status.as_str())
        .bind(k.updated_at)
        .bind(&k.id)
        .execute(&self.pool)
        .await?;
        guard(r.rows_affected())
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
            .map(|r| Ok((r.field("access_key_id")?, r.field("n")?)))
            .collect()
    }

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

    /// The unrevoked token whose secret hashes to `token_hash`.
    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let row =
            sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(ApiToken::from_row).transpose()
    }

    pub async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(ApiToken::from_row).collect()
    }

    pub async fn token(&self, id_or_name: &str) -> Result<Option<ApiToken>> {
        let rows = sqlx::query("SELECT * FROM api_tokens WHERE id = $1 OR name = $1")
            .bind(id_or_name)
            .fetch_all(&self.pool)
            .await?;
        pick_by_id(rows, id_or_name, |t: &ApiToken| &t.id)
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
        guard(r.rows_affected())
    }

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
        rows.iter().map(UiUser::from_row).collect()
    }

    /// A console user by id or name.
    pub async fn ui_user(&self, id_or_name: &str) -> Result<Option<UiUser>> {
        let rows = sqlx::query("SELECT * FROM ui_users WHERE id = $1 OR name = $1")
            .bind(id_or_name)
            .fetch_all(&self.pool)
            .await?;
        pick_by_id(rows, id_or_name, |u: &UiUser| &u.id)
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
        row.as_ref().map(UiSession::from_row).transpose()
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

    /// Drops console sessions that expired before `now`.
    pub async fn prune_ui_sessions(&self, now: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}
