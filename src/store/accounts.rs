//! Downstream ACME accounts (RFC 8555 §7.1.2): their rows, and the writes
//! that drop an account from the cache whatever becomes of them. Owns the
//! `accounts` table; never checks a key or a binding (that is `orders`).

use super::engine::{Fields, Statement};
use super::{FromRow, Result, Store, StoreError, guard, unique_violation};
use crate::util::{now, random_id};

status_enum!(
    /// RFC 8555 §7.1.6 account states.
    AccountStatus { Valid => "valid", Deactivated => "deactivated", Revoked => "revoked" }
);

/// A downstream ACME account (RFC 8555 §7.1.2).
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub instance_id: String,
    pub key_thumbprint: String,
    /// The canonical public JWK, as JSON text.
    pub jwk: String,
    pub status: AccountStatus,
    pub contact: Vec<String>,
    pub tos_agreed: bool,
    /// The access key the account was registered with (EAB), if any.
    pub access_key_id: Option<String>,
    pub created_at: i64,
}

impl FromRow for Account {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(Account {
            id: r.field("id")?,
            instance_id: r.field("instance_id")?,
            key_thumbprint: r.field("key_thumbprint")?,
            jwk: r.field("jwk")?,
            status: AccountStatus::parse(&r.field::<String>("status")?)?,
            contact: r.json("contact", "contact")?,
            tos_agreed: r.flag("tos_agreed")?,
            access_key_id: r.field("access_key_id")?,
            created_at: r.field("created_at")?,
        })
    }
}

impl Store {
    /// Inserts an account; `Conflict` when its key already has one at this instance.
    pub async fn insert_account(
        &self,
        instance_id: &str,
        thumbprint: &str,
        jwk: &str,
        contact: &[String],
        tos_agreed: bool,
        access_key_id: Option<&str>,
    ) -> Result<Account> {
        let id = random_id();
        let created_at = now();
        let contact_json = serde_json::to_string(contact).unwrap_or_else(|_| "[]".into());
        let result = sqlx::query(
            "INSERT INTO accounts (id, instance_id, key_thumbprint, jwk, status, contact, tos_agreed, created_at, access_key_id) \
             VALUES ($1, $2, $3, $4, 'valid', $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(instance_id)
        .bind(thumbprint)
        .bind(jwk)
        .bind(&contact_json)
        .bind(i64::from(tos_agreed))
        .bind(created_at)
        .bind(access_key_id)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(Account {
                id,
                instance_id: instance_id.to_string(),
                key_thumbprint: thumbprint.to_string(),
                jwk: jwk.to_string(),
                status: AccountStatus::Valid,
                contact: contact.to_vec(),
                tos_agreed,
                access_key_id: access_key_id.map(str::to_string),
                created_at,
            }),
            Err(e) if unique_violation(&e) => Err(StoreError::Conflict(
                "an account with this key already exists".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn account_by_thumbprint(
        &self,
        instance_id: &str,
        thumbprint: &str,
    ) -> Result<Option<Account>> {
        let row = self
            .reader
            .fetch_optional(&Statement::new(
                "SELECT * FROM accounts WHERE instance_id = $1 AND key_thumbprint = $2",
                vec![instance_id.into(), thumbprint.into()],
            ))
            .await?;
        row.as_ref().map(Account::from_row).transpose()
    }

    pub async fn account(&self, instance_id: &str, id: &str) -> Result<Option<Account>> {
        let generation = match self.accounts.get(id) {
            Ok(account) => return Ok((account.instance_id == instance_id).then_some(account)),
            Err(generation) => generation,
        };
        let row = self
            .reader
            .fetch_optional(&Statement::new(
                "SELECT * FROM accounts WHERE instance_id = $1 AND id = $2",
                vec![instance_id.into(), id.into()],
            ))
            .await?;
        let account = row.as_ref().map(Account::from_row).transpose()?;
        if let Some(account) = &account {
            self.accounts.put(account, generation);
        }
        Ok(account)
    }

    /// Runs a write to account `id` (given the pool and the id) in a task of
    /// its own, so that it runs to its end even when the caller goes away (a
    /// client hanging up drops the request's future, but a command sent to
    /// the database still commits), and then, whatever the outcome, drops
    /// the cached account.
    async fn account_write<T, F, Fut>(&self, id: &str, write: F) -> Result<T>
    where
        F: FnOnce(sqlx::AnyPool, String) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        let id = id.to_string();
        let running = write(self.pool.clone(), id.clone());
        let task = tokio::spawn(async move {
            let outcome = running.await;
            store.forget_account(&id);
            outcome
        });
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Drops a cached account once its row changed (or may have).
    fn forget_account(&self, id: &str) {
        self.accounts.forget(id);
    }

    /// Drops every cached account (an instance went away).
    pub(super) fn forget_accounts(&self) {
        self.accounts.clear();
    }

    /// Binds an account registered without EAB to an access key (a later
    /// newAccount with a valid binding). `Guard` when it is bound already.
    pub async fn bind_account_key(&self, id: &str, access_key_id: &str) -> Result<()> {
        let key = access_key_id.to_string();
        self.account_write(id, move |pool, id| async move {
            let r = sqlx::query(
                "UPDATE accounts SET access_key_id = $1 WHERE id = $2 AND access_key_id IS NULL",
            )
            .bind(key)
            .bind(id)
            .execute(&pool)
            .await?;
            guard(r.rows_affected())
        })
        .await
    }

    /// Replaces the contact list of a valid account.
    pub async fn update_account_contact(&self, id: &str, contact: &[String]) -> Result<()> {
        let contact_json = serde_json::to_string(contact).unwrap_or_else(|_| "[]".into());
        self.account_write(id, move |pool, id| async move {
            let r =
                sqlx::query("UPDATE accounts SET contact = $1 WHERE id = $2 AND status = 'valid'")
                    .bind(contact_json)
                    .bind(id)
                    .execute(&pool)
                    .await?;
            guard(r.rows_affected())
        })
        .await
    }

    /// Deactivates a valid account and its pending authorizations (RFC 8555 §7.3.6).
    pub async fn deactivate_account(&self, id: &str) -> Result<()> {
        self.account_write(id, move |pool, id| async move {
            let mut tx = pool.begin().await?;
            let r = sqlx::query(
                "UPDATE accounts SET status = 'deactivated' WHERE id = $1 AND status = 'valid'",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            guard(r.rows_affected())?;
            sqlx::query(
                "UPDATE authorizations SET status = 'deactivated' WHERE account_id = $1 AND status = 'pending'",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Rolls an account over to a new key (RFC 8555 §7.3.5). Guarded on the old
    /// key so two concurrent key changes cannot both win; `Conflict` when the
    /// new key already belongs to an account.
    pub async fn change_account_key(
        &self,
        id: &str,
        old_thumbprint: &str,
        new_thumbprint: &str,
        new_jwk: &str,
    ) -> Result<()> {
        let (old, new, jwk) = (
            old_thumbprint.to_string(),
            new_thumbprint.to_string(),
            new_jwk.to_string(),
        );
        self.account_write(id, move |pool, id| async move {
            let result = sqlx::query(
                "UPDATE accounts SET key_thumbprint = $1, jwk = $2 \
                 WHERE id = $3 AND key_thumbprint = $4 AND status = 'valid'",
            )
            .bind(new)
            .bind(jwk)
            .bind(id)
            .bind(old)
            .execute(&pool)
            .await;
            match result {
                Ok(r) => guard(r.rows_affected()),
                Err(e) if unique_violation(&e) => Err(StoreError::Conflict(
                    "the new key is already in use by another account".into(),
                )),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }
}
