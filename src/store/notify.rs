//! Queries for notification channels and the notification outbox.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::acme::guard;
use super::records::*;
use super::{Store, StoreError, conflict, pick_by_id};

type Result<T> = std::result::Result<T, StoreError>;

fn channel_from_row(r: &AnyRow) -> Result<NotificationChannel> {
    let config: String = r.try_get("config")?;
    let events: String = r.try_get("events")?;
    Ok(NotificationChannel {
        id: r.try_get("id")?,
        instance_id: r.try_get("instance_id")?,
        name: r.try_get("name")?,
        kind: ChannelKind::parse(&r.try_get::<String, _>("kind")?)?,
        config: serde_json::from_str(&config)
            .map_err(|e| StoreError::Corrupt(format!("channel config: {e}")))?,
        sealed_secret: r.try_get("sealed_secret")?,
        events: serde_json::from_str(&events)
            .map_err(|e| StoreError::Corrupt(format!("channel events: {e}")))?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn notification_from_row(r: &AnyRow) -> Result<Notification> {
    Ok(Notification {
        id: r.try_get("id")?,
        channel_id: r.try_get("channel_id")?,
        instance_id: r.try_get("instance_id")?,
        event: r.try_get("event")?,
        payload: r.try_get("payload")?,
        status: NotificationStatus::parse(&r.try_get::<String, _>("status")?)?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        sent_at: r.try_get("sent_at")?,
    })
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
        rows.iter().map(channel_from_row).collect()
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
        pick_by_id(rows, id_or_name, channel_from_row, |c| &c.id)
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
        rows.iter().map(notification_from_row).collect()
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
        rows.iter().map(notification_from_row).collect()
    }

    /// Asks the managed certificates serving `certificate_id` to look again now.
    pub async fn nudge_managed(&self, certificate_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE managed_certificates SET next_attempt_at = 0 WHERE certificate_id = $1",
        )
        .bind(certificate_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
