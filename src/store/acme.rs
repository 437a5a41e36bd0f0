//! Queries for the ACME objects: instances, nonces, accounts, orders,
//! authorizations, challenges and certificates.

use sqlx::Row;

use super::reader::Fields;
use super::records::*;
use super::writer::Statement;
use super::{CertificateDownload, Store, StoreError, unique_violation};
use crate::policy::{ChallengeType, Identifier};
use crate::util::{now, ordered_id, random_id};

type Result<T> = std::result::Result<T, StoreError>;

fn identifiers_from_json(text: &str) -> Result<Vec<Identifier>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("identifiers: {e}")))
}

fn identifiers_to_json(ids: &[Identifier]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// A stored challenge type (its ACME name).
fn challenge_type(text: &str) -> Result<ChallengeType> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("challenge type {text:?}")))
}

/// An instance's allowed challenges, stored as a JSON array of their names.
fn challenges_from_json(text: &str) -> Result<Vec<ChallengeType>> {
    serde_json::from_str::<Vec<String>>(text)
        .map_err(|e| StoreError::Corrupt(format!("allowed_challenges: {e}")))?
        .iter()
        .map(|name| challenge_type(name))
        .collect()
}

pub(super) fn challenges_to_json(challenges: &[ChallengeType]) -> String {
    let names: Vec<&str> = challenges.iter().map(|c| c.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

pub(super) fn instance_from_row(r: &impl Fields) -> Result<Instance> {
    let challenges: String = r.field("allowed_challenges")?;
    let limits: String = r.field("rate_limits")?;
    Ok(Instance {
        id: r.field("id")?,
        name: r.field("name")?,
        description: r.field("description")?,
        issuer: Issuer::parse(&r.field::<String>("issuer")?)?,
        external_account_required: r.field::<i64>("external_account_required")? != 0,
        cert_validity_days: r.field("cert_validity_days")?,
        allowed_challenges: challenges_from_json(&challenges)?,
        rate_limits: serde_json::from_str(&limits)
            .map_err(|e| StoreError::Corrupt(format!("rate_limits: {e}")))?,
        environment: Environment::parse(&r.field::<String>("environment")?)?,
        failover: r.field::<i64>("failover")? != 0,
        allow_private_targets: r
            .field::<Option<i64>>("allow_private_targets")?
            .map(|v| v != 0),
        created_at: r.field("created_at")?,
        updated_at: r.field("updated_at")?,
    })
}

fn account_from_row(r: &impl Fields) -> Result<Account> {
    let contact: String = r.field("contact")?;
    Ok(Account {
        id: r.field("id")?,
        instance_id: r.field("instance_id")?,
        key_thumbprint: r.field("key_thumbprint")?,
        jwk: r.field("jwk")?,
        status: AccountStatus::parse(&r.field::<String>("status")?)?,
        contact: serde_json::from_str(&contact)
            .map_err(|e| StoreError::Corrupt(format!("contact: {e}")))?,
        tos_agreed: r.field::<i64>("tos_agreed")? != 0,
        access_key_id: r.field("access_key_id")?,
        created_at: r.field("created_at")?,
    })
}

pub(super) fn order_from_row(r: &impl Fields) -> Result<Order> {
    Ok(Order {
        id: r.field("id")?,
        instance_id: r.field("instance_id")?,
        account_id: r.field("account_id")?,
        status: OrderStatus::parse(&r.field::<String>("status")?)?,
        identifiers: identifiers_from_json(&r.field::<String>("identifiers")?)?,
        not_before: r.field("not_before")?,
        not_after: r.field("not_after")?,
        expires_at: r.field("expires_at")?,
        error: r.field("error")?,
        certificate_id: r.field("certificate_id")?,
        replaces: r.field("replaces")?,
        profile: r.field("profile")?,
        created_at: r.field("created_at")?,
        updated_at: r.field("updated_at")?,
        authz_ids: Vec::new(),
    })
}

pub(super) fn authz_from_row(r: &impl Fields) -> Result<Authorization> {
    let kind: String = r.field("identifier_type")?;
    let value: String = r.field("identifier_value")?;
    Ok(Authorization {
        id: r.field("id")?,
        instance_id: r.field("instance_id")?,
        account_id: r.field("account_id")?,
        identifier: Identifier {
            kind: kind
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("identifier type {kind}")))?,
            value,
        },
        wildcard: r.field::<i64>("wildcard")? != 0,
        status: AuthzStatus::parse(&r.field::<String>("status")?)?,
        expires_at: r.field("expires_at")?,
        challenges: Vec::new(),
    })
}

pub(super) fn certificate_from_row(r: &impl Fields) -> Result<Certificate> {
    Ok(Certificate {
        id: r.field("id")?,
        instance_id: r.field("instance_id")?,
        account_id: r.field("account_id")?,
        order_id: r.field("order_id")?,
        serial: r.field("serial")?,
        status: CertificateStatus::parse(&r.field::<String>("status")?)?,
        issuer: CertificateIssuer::parse(&r.field::<String>("issuer")?)?,
        identifiers: identifiers_from_json(&r.field::<String>("identifiers")?)?,
        spki: r.field("spki")?,
        not_before: r.field("not_before")?,
        not_after: r.field("not_after")?,
        der: r.field("der")?,
        chain_pem: r.field("chain_pem")?,
        alternate_chains: match r.field::<Option<String>>("alternate_chains")? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("alternate_chains: {e}")))?,
            None => Vec::new(),
        },
        ari_id: r.field("ari_id")?,
        revoked_at: r.field("revoked_at")?,
        revocation_reason: r.field("revocation_reason")?,
    })
}

impl Store {
    // ---- instances ----

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
        row.as_ref().map(instance_from_row).transpose()
    }

    // ---- nonces ----

    /// Records a nonce as used. False when it was used before (a replay).
    pub async fn redeem_nonce(&self, nonce: &str, expires_at: i64) -> Result<bool> {
        if let Some(nonces) = &self.nonces {
            return nonces.redeem(nonce, expires_at).await;
        }
        let changed = self
            .write(vec![Statement::new(
                "INSERT INTO used_nonces (nonce, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (nonce) DO NOTHING",
                vec![nonce.into(), expires_at.into()],
            )])
            .await?;
        Ok(changed == [1])
    }

    /// Forgets used nonces that could no longer be accepted anyway.
    pub async fn prune_nonces(&self, now: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM used_nonces WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    // ---- accounts ----

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
        row.as_ref().map(account_from_row).transpose()
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
        let account = row.as_ref().map(account_from_row).transpose()?;
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

    // ---- orders ----

    /// A valid, unexpired authorization of this account for the identifier
    /// that was proven by a challenge of one of `kinds`, to reuse. An
    /// authorization that a policy made valid without a challenge is never
    /// reused: the policy may have changed since.
    pub async fn reusable_authz(
        &self,
        account_id: &str,
        identifier: &Identifier,
        wildcard: bool,
        valid_until: i64,
        kinds: &[ChallengeType],
    ) -> Result<Option<String>> {
        let rows = self.reader.fetch_all(&Statement::new(
            "SELECT a.id, c.kind FROM authorizations a JOIN challenges c ON c.authz_id = a.id \
             WHERE a.account_id = $1 AND a.identifier_type = $2 AND a.identifier_value = $3 \
             AND a.wildcard = $4 AND a.status = 'valid' AND a.expires_at > $5 AND c.status = 'valid' \
             ORDER BY a.expires_at DESC LIMIT 20",
            vec![
                account_id.into(),
                identifier.kind.as_str().into(),
                (&identifier.value).into(),
                i64::from(wildcard).into(),
                valid_until.into(),
            ],
        ))
        .await?;
        for row in rows {
            let kind = challenge_type(&row.field::<String>("kind")?)?;
            if kinds.contains(&kind) {
                return Ok(Some(row.field("id")?));
            }
        }
        Ok(None)
    }

    /// Creates an order with its authorizations and challenges, and the
    /// audit event that `event` makes of it, in one transaction. The order
    /// starts `ready` when every authorization is already valid.
    pub async fn create_order(
        &self,
        new: &NewOrder,
        event: impl FnOnce(&Order) -> Option<Event>,
    ) -> Result<Order> {
        let created_at = now();
        let status = if new.unready() == 0 {
            OrderStatus::Ready
        } else {
            OrderStatus::Pending
        };
        let authz_ids: Vec<String> = new
            .authorizations
            .iter()
            .map(|authz| match authz {
                NewAuthz::Reuse(existing) => existing.clone(),
                NewAuthz::Create { .. } => ordered_id(),
            })
            .collect();
        let order = Order {
            id: ordered_id(),
            instance_id: new.instance_id.clone(),
            account_id: new.account_id.clone(),
            status,
            identifiers: new.identifiers.clone(),
            not_before: new.not_before,
            not_after: new.not_after,
            expires_at: new.expires_at,
            error: None,
            certificate_id: None,
            replaces: new.replaces.clone(),
            profile: new.profile.clone(),
            created_at,
            updated_at: created_at,
            authz_ids,
        };
        let mut statements = order_statements(new, &order);
        statements.extend(event(&order).map(|e| super::admin::event_statement(&e)));
        self.write_at_once(statements).await?;
        Ok(order)
    }

    /// An order of the instance with its authorizations' ids, in one query.
    pub async fn order(&self, instance_id: &str, id: &str) -> Result<Option<Order>> {
        if let Some(order) = self.finished.order(id) {
            return Ok((order.instance_id == instance_id).then_some(order));
        }
        // By id alone, the instance checked here: with both in the query,
        // PostgreSQL without statistics (a fresh database) may pick the
        // instance's index and read every order of the instance.
        let rows = self
            .reader
            .fetch_all(&Statement::new(
                "SELECT o.*, oa.authz_id AS linked_authz FROM orders o \
                 LEFT JOIN order_authorizations oa ON oa.order_id = o.id \
                 WHERE o.id = $1 ORDER BY oa.position",
                vec![id.into()],
            ))
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut order = order_from_row(first)?;
        if order.instance_id != instance_id {
            return Ok(None);
        }
        for row in &rows {
            if let Some(authz_id) = row.field::<Option<String>>("linked_authz")? {
                order.authz_ids.push(authz_id);
            }
        }
        Ok(Some(order))
    }

    /// The ids of an account's orders, newest first, one page at a time.
    pub async fn order_ids_for_account(
        &self,
        account_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM orders WHERE account_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
        )
        .bind(account_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    // ---- authorizations and challenges ----

    pub async fn authorization(
        &self,
        instance_id: &str,
        id: &str,
    ) -> Result<Option<Authorization>> {
        self.authorization_where("a.id = $2", instance_id, id).await
    }

    /// The authorization matching `condition` (on `a`, with `$2` = `key`)
    /// within an instance, and its challenges, in one query.
    async fn authorization_where(
        &self,
        condition: &'static str,
        instance_id: &str,
        key: &str,
    ) -> Result<Option<Authorization>> {
        let sql = format!(
            "SELECT a.*, c.id AS c_id, c.kind AS c_kind, c.token AS c_token, c.status AS c_status, \
             c.validated_at AS c_validated_at, c.error AS c_error \
             FROM authorizations a LEFT JOIN challenges c ON c.authz_id = a.id \
             WHERE a.instance_id = $1 AND {condition} ORDER BY c.kind"
        );
        let rows = self
            .reader
            .fetch_all(&Statement::new(sql, vec![instance_id.into(), key.into()]))
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut authz = authz_from_row(first)?;
        for row in &rows {
            if let Some(id) = row.field::<Option<String>>("c_id")? {
                authz.challenges.push(Challenge {
                    id,
                    authz_id: authz.id.clone(),
                    kind: challenge_type(&row.field::<String>("c_kind")?)?,
                    token: row.field("c_token")?,
                    status: ChallengeStatus::parse(&row.field::<String>("c_status")?)?,
                    validated_at: row.field("c_validated_at")?,
                    error: row.field("c_error")?,
                });
            }
        }
        Ok(Some(authz))
    }

    /// The latest order an authorization belongs to.
    pub async fn order_of_authz(&self, authz_id: &str) -> Result<Option<String>> {
        let row = self.reader.fetch_optional(&Statement::new(
            "SELECT oa.order_id FROM order_authorizations oa JOIN orders o ON o.id = oa.order_id \
             WHERE oa.authz_id = $1 ORDER BY o.created_at DESC, o.id LIMIT 1",
            vec![authz_id.into()],
        ))
        .await?;
        row.map(|r| r.field("order_id")).transpose()
    }

    /// A challenge and the authorization it belongs to, within one instance.
    pub async fn challenge(
        &self,
        instance_id: &str,
        id: &str,
    ) -> Result<Option<(Challenge, Authorization)>> {
        let authz = self
            .authorization_where(
                "a.id = (SELECT authz_id FROM challenges WHERE id = $2)",
                instance_id,
                id,
            )
            .await?;
        let Some(authz) = authz else { return Ok(None) };
        let challenge = authz.challenges.iter().find(|c| c.id == id).cloned();
        Ok(challenge.map(|c| (c, authz)))
    }

    /// Moves a pending challenge of a pending, unexpired authorization to
    /// `processing`. False when another request got there first or the
    /// authorization is no longer pending.
    pub async fn start_challenge(&self, challenge_id: &str, now: i64) -> Result<bool> {
        let changed = self
            .write(vec![Statement::new(
                "UPDATE challenges SET status = 'processing', updated_at = $1 \
                 WHERE id = $2 AND status = 'pending' AND EXISTS (SELECT 1 FROM authorizations a \
                 WHERE a.id = challenges.authz_id AND a.status = 'pending' AND a.expires_at > $1)",
                vec![now.into(), challenge_id.into()],
            )])
            .await?;
        Ok(changed == [1])
    }

    /// Records a validation outcome and carries it to the authorization and
    /// its orders, in one transaction (RFC 8555 §7.1.6 state machine).
    /// `error` is the problem JSON for an invalid outcome; it is also recorded
    /// on each order that becomes invalid. True when the authorization took
    /// the outcome; false when it had already moved on (another challenge of
    /// it, or a deactivation), which only the challenge records.
    pub async fn finish_challenge(
        &self,
        challenge_id: &str,
        authz_id: &str,
        error: Option<&str>,
        authz_valid_until: i64,
        now: i64,
    ) -> Result<bool> {
        let status = if error.is_some() { "invalid" } else { "valid" };
        let challenge = Statement::new(
            "UPDATE challenges SET status = $1, validated_at = $2, error = $3, updated_at = $4 \
             WHERE id = $5 AND authz_id = $6 AND status = 'processing'",
            vec![
                status.into(),
                error.is_none().then_some(now).into(),
                error.into(),
                now.into(),
                challenge_id.into(),
                authz_id.into(),
            ],
        )
        .guard();
        let authz = match error {
            Some(_) => Statement::new(
                "UPDATE authorizations SET status = 'invalid' WHERE id = $1 AND status = 'pending'",
                vec![authz_id.into()],
            ),
            None => Statement::new(
                "UPDATE authorizations SET status = 'valid', expires_at = $1 WHERE id = $2 AND status = 'pending'",
                vec![authz_valid_until.into(), authz_id.into()],
            ),
        };
        let changed = self
            .write_at_once(vec![
                challenge,
                authz.or_stop(),
                orders_of_authz(authz_id, error, now),
            ])
            .await?;
        Ok(changed.get(1) == Some(&1))
    }

    /// Deactivates an authorization (RFC 8555 §7.5.2); orders relying on it become invalid.
    pub async fn deactivate_authz(&self, authz_id: &str) -> Result<()> {
        let deactivate = Statement::new(
            "UPDATE authorizations SET status = 'deactivated' WHERE id = $1 AND status IN ('pending', 'valid')",
            vec![authz_id.into()],
        )
        .guard();
        let error = r#"{"type":"urn:ietf:params:acme:error:unauthorized","detail":"an authorization of this order was deactivated"}"#;
        self.write_at_once(vec![
            deactivate,
            orders_of_authz(authz_id, Some(error), now()),
        ])
        .await?;
        Ok(())
    }

    /// Challenges left `processing` (e.g. by a restart), to validate again.
    pub async fn processing_challenges(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .stale_challenges(i64::MAX)
            .await?
            .into_iter()
            .map(|c| (c.challenge_id, c.instance_id))
            .collect())
    }

    /// Challenges `processing` since before `stale_before`: a validation
    /// never takes that long, so its process died (or lost its database).
    pub async fn stale_challenges(&self, stale_before: i64) -> Result<Vec<StaleChallenge>> {
        let rows = sqlx::query(
            "SELECT c.id, a.instance_id, c.updated_at FROM challenges c \
             JOIN authorizations a ON a.id = c.authz_id \
             WHERE c.status = 'processing' AND c.updated_at < $1",
        )
        .bind(stale_before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StaleChallenge {
                    challenge_id: r.try_get("id")?,
                    instance_id: r.try_get("instance_id")?,
                    since: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Takes over a stale challenge's validation: true for exactly one of
    /// the processes that try (its `processing` time restarts at `now`).
    pub async fn claim_challenge(&self, stale: &StaleChallenge, now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE challenges SET updated_at = $1 \
             WHERE id = $2 AND status = 'processing' AND updated_at = $3",
        )
        .bind(now)
        .bind(&stale.challenge_id)
        .bind(stale.since)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    // ---- finalization and certificates ----

    /// Moves a ready order to `processing` and records the certificate to be
    /// signed (serial, key, names, validity) in the same transaction, so a
    /// crash after this point resumes with the same serial instead of losing
    /// or duplicating the certificate. `Guard` when the order was not ready.
    pub async fn begin_issuance(&self, intent: &CertificateIntent) -> Result<Certificate> {
        let now = now();
        let cert = Certificate {
            id: ordered_id(),
            instance_id: intent.instance_id.clone(),
            account_id: intent.account_id.clone(),
            order_id: intent.order_id.clone(),
            serial: intent.serial.clone(),
            status: CertificateStatus::Signing,
            issuer: intent.issuer.clone(),
            identifiers: intent.identifiers.clone(),
            spki: intent.spki.clone(),
            not_before: intent.not_before,
            not_after: intent.not_after,
            der: None,
            chain_pem: None,
            alternate_chains: Vec::new(),
            ari_id: None,
            revoked_at: None,
            revocation_reason: None,
        };
        self.write_at_once(vec![
            Statement::new(
                "UPDATE orders SET status = 'processing', updated_at = $1 WHERE id = $2 AND status = 'ready' AND expires_at > $1",
                vec![now.into(), (&cert.order_id).into()],
            )
            .guard(),
            Statement::new(
                "INSERT INTO certificates (id, instance_id, account_id, order_id, serial, status, issuer, \
                 identifiers, spki, not_before, not_after, der, chain_pem, ari_id, revoked_at, revocation_reason, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 'signing', $6, $7, $8, $9, $10, NULL, NULL, NULL, NULL, NULL, $11)",
                vec![
                    (&cert.id).into(),
                    (&cert.instance_id).into(),
                    (&cert.account_id).into(),
                    (&cert.order_id).into(),
                    (&cert.serial).into(),
                    cert.issuer.to_string().into(),
                    identifiers_to_json(&cert.identifiers).into(),
                    cert.spki.clone().into(),
                    cert.not_before.into(),
                    cert.not_after.into(),
                    now.into(),
                ],
            ),
        ])
        .await?;
        Ok(cert)
    }

    /// Stores the signed certificate, makes its order valid and appends the
    /// audit event, in one transaction. False when the order had left
    /// `processing` (it stays as it was); `Guard` when the certificate was
    /// stored already.
    pub async fn complete_issuance(
        &self,
        cert: &Certificate,
        der: &[u8],
        chain_pem: &str,
        ari_id: &str,
        event: Option<&Event>,
        now: i64,
    ) -> Result<bool> {
        let cert_id = cert.id.as_str();
        let mut statements = vec![
            Statement::new(
                "UPDATE certificates SET status = 'valid', der = $1, chain_pem = $2, ari_id = $3 \
                 WHERE id = $4 AND status = 'signing'",
                vec![
                    der.to_vec().into(),
                    chain_pem.into(),
                    ari_id.into(),
                    cert_id.into(),
                ],
            )
            .guard(),
            Statement::new(
                "UPDATE orders SET status = 'valid', certificate_id = $1, updated_at = $2 \
                 WHERE id = (SELECT order_id FROM certificates WHERE id = $1) AND status = 'processing'",
                vec![cert_id.into(), now.into()],
            ),
        ];
        statements.extend(event.map(super::admin::event_statement));
        let changed = self.write_at_once(statements).await?;
        self.finished.chain_issued(
            cert_id,
            CertificateDownload {
                instance_id: cert.instance_id.clone(),
                account_id: cert.account_id.clone(),
                issuer: cert.issuer.clone(),
                chain_pem: Some(chain_pem.to_string()),
                alternate_chains: Vec::new(),
            },
        );
        Ok(changed.get(1) == Some(&1))
    }

    /// An order this process has just made valid, as it wrote it: final, so
    /// [`Store::order`] answers with it from memory for a while (see
    /// [`super::finished`]).
    pub fn order_made_valid(&self, order: &Order) {
        self.finished.order_valid(order);
    }

    /// What downloading certificate `id` of `instance_id` needs; a chain
    /// this process has just issued comes from memory.
    pub async fn certificate_download(
        &self,
        instance_id: &str,
        id: &str,
    ) -> Result<Option<CertificateDownload>> {
        if let Some(download) = self.finished.chain(id) {
            return Ok((download.instance_id == instance_id).then_some(download));
        }
        Ok(self
            .certificate(instance_id, id)
            .await?
            .map(|c| CertificateDownload {
                instance_id: c.instance_id,
                account_id: c.account_id,
                issuer: c.issuer,
                chain_pem: c.chain_pem,
                alternate_chains: c.alternate_chains,
            }))
    }

    /// Marks an order invalid after issuance failed for good.
    pub async fn fail_order(&self, order_id: &str, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE orders SET status = 'invalid', error = $1, updated_at = $2 \
             WHERE id = $3 AND status IN ('pending', 'ready', 'processing')",
        )
        .bind(error)
        .bind(now())
        .bind(order_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends an issuance the CA could not sign: the certificate intent becomes
    /// `failed` and its order `invalid` with `error` (a problem document), in
    /// one transaction with `event`, so no `signing` row is left for a resume
    /// to take up again. True when this call ended it (false: another worker
    /// finished or failed it first).
    pub async fn fail_issuance(
        &self,
        cert: &Certificate,
        error: &str,
        event: Option<&Event>,
    ) -> Result<bool> {
        let mut statements = vec![
            Statement::new(
                "UPDATE certificates SET status = 'failed' WHERE id = $1 AND status = 'signing'",
                vec![(&cert.id).into()],
            )
            .guard(),
            Statement::new(
                "UPDATE orders SET status = 'invalid', error = $1, updated_at = $2 \
                 WHERE id = $3 AND status = 'processing'",
                vec![error.into(), now().into(), (&cert.order_id).into()],
            ),
        ];
        statements.extend(event.map(super::admin::event_statement));
        match self.write_at_once(statements).await {
            Ok(_) => Ok(true),
            Err(StoreError::Guard) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Certificates whose signing was recorded before `stale_before` but not
    /// finished, and that no process has taken over since `now`.
    pub async fn unsigned_certificates(
        &self,
        stale_before: i64,
        now: i64,
    ) -> Result<Vec<(Certificate, i64)>> {
        let rows = sqlx::query(
            "SELECT * FROM certificates WHERE status = 'signing' AND created_at < $1 AND lease_until < $2",
        )
        .bind(stale_before)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((certificate_from_row(r)?, r.try_get("lease_until")?)))
            .collect()
    }

    /// Takes over signing a certificate until `until`: true for exactly one
    /// of the processes that try with the `lease` they read.
    pub async fn claim_signing(
        &self,
        certificate_id: &str,
        lease: i64,
        until: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE certificates SET lease_until = $1 \
             WHERE id = $2 AND status = 'signing' AND lease_until = $3",
        )
        .bind(until)
        .bind(certificate_id)
        .bind(lease)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// A certificate of the instance (by id alone, as [`Self::order`]).
    pub async fn certificate(&self, instance_id: &str, id: &str) -> Result<Option<Certificate>> {
        let row = self
            .reader
            .fetch_optional(&Statement::new(
                "SELECT * FROM certificates WHERE id = $1",
                vec![id.into()],
            ))
            .await?;
        let cert = row.as_ref().map(certificate_from_row).transpose()?;
        Ok(cert.filter(|c| c.instance_id == instance_id))
    }

    pub async fn certificate_by_serial(&self, serial: &str) -> Result<Option<Certificate>> {
        let row = self
            .reader
            .fetch_optional(&Statement::new(
                "SELECT * FROM certificates WHERE serial = $1",
                vec![serial.into()],
            ))
            .await?;
        row.as_ref().map(certificate_from_row).transpose()
    }

    pub async fn certificate_by_ari_id(
        &self,
        instance_id: &str,
        ari_id: &str,
    ) -> Result<Option<Certificate>> {
        let row = sqlx::query("SELECT * FROM certificates WHERE instance_id = $1 AND ari_id = $2")
            .bind(instance_id)
            .bind(ari_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(certificate_from_row).transpose()
    }

    /// Revokes a valid certificate. `Guard` when it was already revoked.
    pub async fn revoke_certificate(&self, id: &str, reason: i64, at: i64) -> Result<()> {
        let r = sqlx::query(
            "UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2 \
             WHERE id = $3 AND status = 'valid'",
        )
        .bind(at)
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?;
        guard(r.rows_affected())
    }

    /// Every revoked, unexpired certificate of an issuer, for its CRL.
    pub async fn revoked_certificates(
        &self,
        issuer: &CertificateIssuer,
        now: i64,
    ) -> Result<Vec<RevokedCertificate>> {
        let rows = sqlx::query(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE issuer = $1 AND status = 'revoked' AND not_after > $2 ORDER BY revoked_at",
        )
        .bind(issuer.to_string())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RevokedCertificate {
                    serial: r.try_get("serial")?,
                    revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.unwrap_or(0),
                    reason: r
                        .try_get::<Option<i64>, _>("revocation_reason")?
                        .unwrap_or(0),
                })
            })
            .collect()
    }
}

pub(super) fn guard(rows: u64) -> Result<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::Guard)
    }
}

/// The statements that write a new order (`order`, made from `new`), its
/// new authorizations with their challenges, and the links between them.
fn order_statements(new: &NewOrder, order: &Order) -> Vec<Statement> {
    let (id, created_at) = (&order.id, order.created_at);
    let mut statements = vec![Statement::new(
        "INSERT INTO orders (id, instance_id, account_id, status, identifiers, not_before, not_after, \
         expires_at, error, certificate_id, replaces, profile, created_at, updated_at, unready) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10, $11, $11, $12)",
        vec![
            id.into(),
            (&new.instance_id).into(),
            (&new.account_id).into(),
            order.status.as_str().into(),
            identifiers_to_json(&new.identifiers).into(),
            new.not_before.into(),
            new.not_after.into(),
            new.expires_at.into(),
            (&new.replaces).into(),
            (&new.profile).into(),
            created_at.into(),
            new.unready().into(),
        ],
    )];
    for (position, (authz, authz_id)) in new.authorizations.iter().zip(&order.authz_ids).enumerate()
    {
        if let NewAuthz::Create {
            identifier,
            wildcard,
            expires_at,
            challenges,
            valid,
        } = authz
        {
            statements.push(Statement::new(
                "INSERT INTO authorizations (id, instance_id, account_id, identifier_type, \
                 identifier_value, wildcard, status, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    authz_id.into(),
                    (&new.instance_id).into(),
                    (&new.account_id).into(),
                    identifier.kind.as_str().into(),
                    (&identifier.value).into(),
                    i64::from(*wildcard).into(),
                    (if *valid { "valid" } else { "pending" }).into(),
                    (*expires_at).into(),
                    created_at.into(),
                ],
            ));
            if !challenges.is_empty() {
                // One statement for all of them: $1 authz, $2 time, then id, kind, token per row.
                let rows: Vec<String> = (0..challenges.len())
                    .map(|i| {
                        let at = 3 + 3 * i;
                        format!(
                            "(${at}, $1, ${}, ${}, 'pending', NULL, NULL, $2)",
                            at + 1,
                            at + 2
                        )
                    })
                    .collect();
                let mut args = vec![authz_id.into(), created_at.into()];
                for (kind, token) in challenges {
                    args.extend([ordered_id().into(), kind.as_str().into(), token.into()]);
                }
                statements.push(Statement::new(
                    format!(
                        "INSERT INTO challenges (id, authz_id, kind, token, status, validated_at, error, updated_at) VALUES {}",
                        rows.join(", ")
                    ),
                    args,
                ));
            }
        }
        statements.push(Statement::new(
            "INSERT INTO order_authorizations (order_id, authz_id, position) VALUES ($1, $2, $3)",
            vec![id.into(), authz_id.into(), (position as i64).into()],
        ));
    }
    if new.relayed {
        statements.push(Statement::new(
            "INSERT INTO upstream_orders (order_id, instance_id, state, updated_at) VALUES ($1, $2, 'new', $3)",
            vec![id.into(), (&new.instance_id).into(), created_at.into()],
        ));
    }
    statements
}

/// After an authorization changed, moves the pending orders that use it:
/// this one failed -> `invalid`; this one became valid -> one fewer to go
/// (`unready`), and `ready` when it was the last.
///
/// Both are one `UPDATE` of the order rows that reads nothing but them, so
/// writes about one order's authorizations never need to see each other's:
/// on PostgreSQL the later waits for the earlier's row and then reevaluates
/// on the newest version (the count goes 2 -> 1 -> 0 and the order becomes
/// ready). Reading the other authorizations' status instead, each write
/// would see from its snapshot the other still pending, and leave the order
/// pending for good. The valid case must run only when this write made the
/// authorization valid (the statement before it stops the write otherwise),
/// else a second challenge of one authorization would count it twice.
///
/// The order is also ready when every other authorization of it is valid
/// as this write reads them: the count alone cannot tell for orders a
/// replica still running the code before the count (during a rolling
/// upgrade) made (count 0, which never reaches 1) or moved on (an
/// authorization made valid without taking one off). A count too high or
/// below zero only ever keeps an order pending; this check finds it ready.
fn orders_of_authz(authz_id: &str, error: Option<&str>, now: i64) -> Statement {
    match error {
        Some(error) => Statement::new(
            "UPDATE orders SET status = 'invalid', error = $1, updated_at = $2 WHERE status IN ('pending', 'ready') \
             AND id IN (SELECT order_id FROM order_authorizations WHERE authz_id = $3)",
            vec![error.into(), now.into(), authz_id.into()],
        ),
        None => Statement::new(
            "UPDATE orders SET unready = unready - 1, \
             status = CASE WHEN unready = 1 OR NOT EXISTS (SELECT 1 FROM order_authorizations oa \
             JOIN authorizations a ON a.id = oa.authz_id WHERE oa.order_id = orders.id \
             AND oa.authz_id <> $2 AND a.status <> 'valid') THEN 'ready' ELSE status END, updated_at = $1 \
             WHERE status = 'pending' AND id IN (SELECT order_id FROM order_authorizations WHERE authz_id = $2)",
            vec![now.into(), authz_id.into()],
        ),
    }
}
