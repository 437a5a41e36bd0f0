//! Orders, authorizations and challenges (RFC 8555 §7.1.3-7.1.6): their
//! rows, and every state transition as one guarded write. Owns the `orders`,
//! `authorizations`, `challenges` and `order_authorizations` tables; never
//! decides whether a transition is allowed (that is `orders`).

use super::audit::event_statement;
use super::engine::{Fields, Statement};
use super::{
    Event, FromRow, Result, Store, StoreError, challenge_type, column, identifiers_to_json,
};
use crate::policy::{ChallengeType, Identifier};
use crate::util::{now, ordered_id};

status_enum!(
    /// RFC 8555 §7.1.6 order states.
    OrderStatus { Pending => "pending", Ready => "ready", Processing => "processing", Valid => "valid", Invalid => "invalid" }
);

status_enum!(
    /// RFC 8555 §7.1.6 authorization states.
    AuthzStatus { Pending => "pending", Valid => "valid", Invalid => "invalid", Deactivated => "deactivated", Expired => "expired", Revoked => "revoked" }
);

status_enum!(
    /// RFC 8555 §7.1.6 challenge states.
    ChallengeStatus { Pending => "pending", Processing => "processing", Valid => "valid", Invalid => "invalid" }
);

/// An order (RFC 8555 §7.1.3). The error is an RFC 7807 problem as JSON text.
#[derive(Debug, Clone)]
pub struct Order {
    pub id: String,
    pub instance_id: String,
    pub account_id: String,
    pub status: OrderStatus,
    pub identifiers: Vec<Identifier>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub expires_at: i64,
    pub error: Option<String>,
    pub certificate_id: Option<String>,
    pub replaces: Option<String>,
    /// The ACME profile the client asked for (draft-ietf-acme-profiles).
    pub profile: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Authorization ids, in the order of the identifiers.
    pub authz_ids: Vec<String>,
}

/// An authorization (RFC 8555 §7.1.4) with its challenges.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub id: String,
    pub instance_id: String,
    pub account_id: String,
    /// The identifier without a wildcard label; `wildcard` says if it had one.
    pub identifier: Identifier,
    pub wildcard: bool,
    pub status: AuthzStatus,
    pub expires_at: i64,
    pub challenges: Vec<Challenge>,
}

/// A challenge (RFC 8555 §7.1.5). The error is problem JSON text.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: String,
    pub authz_id: String,
    pub kind: ChallengeType,
    pub token: String,
    pub status: ChallengeStatus,
    pub validated_at: Option<i64>,
    pub error: Option<String>,
}

/// What a new order asks for: its authorizations are created (or reused) with it.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// Relayed to an upstream CA: its `upstream_orders` row is written in
    /// the same transaction as the order.
    pub relayed: bool,
    pub instance_id: String,
    pub account_id: String,
    pub identifiers: Vec<Identifier>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub expires_at: i64,
    pub replaces: Option<String>,
    pub profile: Option<String>,
    pub authorizations: Vec<NewAuthz>,
}

impl NewOrder {
    /// How many of its authorizations are still to become valid (the
    /// order's `unready`): new ones not made valid by a policy; a reused one
    /// is valid already. None: the order starts `ready`.
    pub(super) fn unready(&self) -> i64 {
        self.authorizations
            .iter()
            .filter(|authz| matches!(authz, NewAuthz::Create { valid: false, .. }))
            .count() as i64
    }
}

/// One authorization of a new order: either an existing valid one to reuse, or
/// a new pending one with its challenges.
#[derive(Debug, Clone)]
pub enum NewAuthz {
    Reuse(String),
    Create {
        identifier: Identifier,
        wildcard: bool,
        expires_at: i64,
        /// `(kind, token)` pairs.
        challenges: Vec<(ChallengeType, String)>,
        /// Created valid (a pre-authorizing policy); no challenge to answer.
        valid: bool,
    },
}

/// A challenge `processing` for longer than a validation takes.
#[derive(Debug, Clone)]
pub struct StaleChallenge {
    pub challenge_id: String,
    pub instance_id: String,
    /// Its `updated_at`: the claim is guarded on it.
    pub since: i64,
}

/// Which orders an admin listing shows.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub account_id: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

impl FromRow for Order {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(Order {
            id: r.field("id")?,
            instance_id: r.field("instance_id")?,
            account_id: r.field("account_id")?,
            status: OrderStatus::parse(&r.field::<String>("status")?)?,
            identifiers: r.json("identifiers", "identifiers")?,
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
}

impl FromRow for Authorization {
    fn from_row(r: &impl Fields) -> Result<Self> {
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
            wildcard: r.flag("wildcard")?,
            status: AuthzStatus::parse(&r.field::<String>("status")?)?,
            expires_at: r.field("expires_at")?,
            challenges: Vec::new(),
        })
    }
}

impl Challenge {
    /// The challenge in a row of [`Store::authorization_where`]'s query
    /// (its columns prefixed `c_`), of authorization `authz_id`; none when
    /// the authorization has no challenge.
    fn from_joined_row(r: &impl Fields, authz_id: &str) -> Result<Option<Self>> {
        let Some(id) = r.field::<Option<String>>("c_id")? else {
            return Ok(None);
        };
        Ok(Some(Challenge {
            id,
            authz_id: authz_id.to_string(),
            kind: challenge_type(&r.field::<String>("c_kind")?)?,
            token: r.field("c_token")?,
            status: ChallengeStatus::parse(&r.field::<String>("c_status")?)?,
            validated_at: r.field("c_validated_at")?,
            error: r.field("c_error")?,
        }))
    }
}

impl FromRow for StaleChallenge {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(StaleChallenge {
            challenge_id: r.field("id")?,
            instance_id: r.field("instance_id")?,
            since: r.field("updated_at")?,
        })
    }
}

impl Store {
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
        statements.extend(event(&order).map(|e| event_statement(&e)));
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
        let mut order = Order::from_row(first)?;
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
        column(&rows, "id")
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
        let mut orders: Vec<Order> = rows.iter().map(Order::from_row).collect::<Result<_>>()?;
        for order in &mut orders {
            let rows = sqlx::query(
                "SELECT authz_id FROM order_authorizations WHERE order_id = $1 ORDER BY position",
            )
            .bind(&order.id)
            .fetch_all(&self.pool)
            .await?;
            order.authz_ids = column(&rows, "authz_id")?;
        }
        Ok(orders)
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
        let mut authz = Authorization::from_row(first)?;
        for row in &rows {
            if let Some(challenge) = Challenge::from_joined_row(row, &authz.id)? {
                authz.challenges.push(challenge);
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
        rows.iter().map(StaleChallenge::from_row).collect()
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
