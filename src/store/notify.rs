//! Notification channels and the outbox their notifications wait in. Owns
//! `notification_channels` and `notifications`; never delivers (`notify`).

use super::engine::Fields;
use super::{FromRow, Result, Store, conflict, guard, pick_by_id};

status_enum!(
    /// How a notification channel delivers.
    ChannelKind {
        /// An HTTP POST signed with HMAC-SHA256.
        Webhook => "webhook",
        /// SMTP with STARTTLS.
        Email => "email",
    }
);

status_enum!(
    /// A notification in the outbox.
    NotificationStatus {
        /// Due (again) at its `next_attempt_at`.
        Pending => "pending",
        Sent => "sent",
        /// Given up on: too many attempts, or its channel is gone.
        Failed => "failed",
    }
);

/// Where an instance's notifications go.
#[derive(Debug, Clone)]
pub struct NotificationChannel {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub kind: ChannelKind,
    /// Non-secret settings (webhook `url`; email `host`, `port`, `from`, `to`, ...).
    pub config: serde_json::Value,
    /// The webhook's HMAC key or the SMTP password, sealed.
    pub sealed_secret: Option<Vec<u8>>,
    /// Events sent here; empty means all.
    pub events: Vec<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One notification to deliver to one channel.
#[derive(Debug, Clone)]
pub struct Notification {
    pub id: String,
    pub channel_id: String,
    pub instance_id: String,
    pub event: String,
    /// The JSON body.
    pub payload: String,
    pub status: NotificationStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

impl FromRow for NotificationChannel {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(NotificationChannel {
            id: r.field("id")?,
            instance_id: r.field("instance_id")?,
            name: r.field("name")?,
            kind: ChannelKind::parse(&r.field::<String>("kind")?)?,
            config: r.json("config", "channel config")?,
            sealed_secret: r.field("sealed_secret")?,
            events: r.json("events", "channel events")?,
            enabled: r.flag("enabled")?,
            created_at: r.field("created_at")?,
            updated_at: r.field("updated_at")?,
        })
    }
}

impl FromRow for Notification {
    fn from_row(r: &impl Fields) -> Result<Self> {
        Ok(Notification {
            id: r.field("id")?,
            channel_id: r.field("channel_id")?,
            instance_id: r.field("instance_id")?,
            event: r.field("event")?,
            payload: r.field("payload")?,
            status: NotificationStatus::parse(&r.field::<String>("status")?)?,
            attempts: r.field("attempts")?,
            next_attempt_at: r.field("next_attempt_at")?,
            last_error: r.field("last_error")?,
            created_at: r.field("created_at")?,
            sent_at: r.field("sent_at")?,
        })
    }
}

impl Store {
    pub async fn insert_channel(&self, c: &NotificationChannel) -> Result<()> {
        sqlx::query(
            "INSERT INTO notification_channels (id, instance_id, name, kind, config, sealed_secret, \
             events, enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(&c.id)
        .bind(&c.instance_id)
        .bind(&c.name)
        .bind(c.kind.as_str())
        .bind(c.config.to_string())
        .bind(c.sealed_secret.clone())
        .bind(serde_json::to_string(&c.events).unwrap_or_else(|_| "[]".into()))
        .bind(i64::from(c.enabled))
        .bind(c.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict(e, format!("a channel named {:?} exists", c.name)))?;
        Ok(())
    }

    pub async fn channels(&self, instance_id: &str) -> Result<Vec<NotificationChannel>> {
        let rows =
            sqlx::query("SELECT * FROM notification_channels WHERE instance_id = $1 ORDER BY name")
                .bind(instance_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(NotificationChannel::from_row).collect()
    }

    pub async fn channel(
        &self,
        instance_id: &str,
        id_or_name: &str,
    ) -> Result<Option<NotificationChannel>> {
        let rows = sqlx::query(
            "SELECT * FROM notification_channels WHERE instance_id = $1 AND (id = $2 OR name = $2)",
        )
        .bind(instance_id)
        .bind(id_or_name)
        .fetch_all(&self.pool)
        .await?;
        pick_by_id(rows, id_or_name, |c: &NotificationChannel| &c.id)
    }

    /// Deletes a channel and what is still queued for it.
    pub async fn delete_channel(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM notifications WHERE channel_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM notification_channels WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        guard(r.rows_affected())?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn enqueue_notification(&self, n: &Notification) -> Result<()> {
        sqlx::query(
            "INSERT INTO notifications (id, channel_id, instance_id, event, payload, status, attempts, \
             next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
        )
        .bind(&n.id)
        .bind(&n.channel_id)
        .bind(&n.instance_id)
        .bind(&n.event)
        .bind(&n.payload)
        .bind(n.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Pending notifications that are due (not leased).
    pub async fn due_notifications(&self, now: i64) -> Result<Vec<Notification>> {
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1 \
             AND lease_until < $1 ORDER BY next_attempt_at LIMIT 100",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Notification::from_row).collect()
    }

    /// Takes one notification for delivery until `until`; false when
    /// another worker has it or it went out meanwhile.
    pub async fn lease_notification(&self, id: &str, now: i64, until: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE notifications SET lease_until = $1 WHERE id = $2 AND lease_until < $3 \
             AND status = 'pending'",
        )
        .bind(until)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records a delivery attempt: sent, or when to try again (or failed for good).
    pub async fn record_delivery(
        &self,
        id: &str,
        status: NotificationStatus,
        attempts: i64,
        next_attempt_at: i64,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE notifications SET status = $1, attempts = $2, next_attempt_at = $3, last_error = $4, \
             lease_until = 0, sent_at = CASE WHEN $1 = 'sent' THEN $5 ELSE sent_at END WHERE id = $6",
        )
        .bind(status.as_str())
        .bind(attempts)
        .bind(next_attempt_at)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest notifications of an instance, newest first.
    pub async fn notifications(&self, instance_id: &str, limit: i64) -> Result<Vec<Notification>> {
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE instance_id = $1 ORDER BY created_at DESC, id LIMIT $2",
        )
        .bind(instance_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Notification::from_row).collect()
    }
}
