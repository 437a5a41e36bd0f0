-- Notification channels per instance (webhook, email) and the outbox of
-- notifications to deliver, retried with backoff.
CREATE TABLE notification_channels (
    id            TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL REFERENCES instances (id),
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    config        TEXT NOT NULL,
    sealed_secret BLOB,
    events        TEXT NOT NULL DEFAULT '[]',
    enabled       BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (instance_id, name)
);

CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,
    channel_id      TEXT NOT NULL REFERENCES notification_channels (id),
    instance_id     TEXT NOT NULL REFERENCES instances (id),
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    lease_until     BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at);

-- Which expiry reminder (days before) was sent for the current certificate.
ALTER TABLE managed_certificates ADD COLUMN expiry_notified BIGINT;
-- An operator asked for a renewal now (whatever auto_renew says).
ALTER TABLE managed_certificates ADD COLUMN renew_requested BIGINT NOT NULL DEFAULT 0;
-- A renewal's new key and CSR, kept apart until its certificate is issued.
ALTER TABLE managed_certificates ADD COLUMN next_sealed_key BLOB;
ALTER TABLE managed_certificates ADD COLUMN next_csr BLOB;
