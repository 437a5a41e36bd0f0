-- Instances as tenants, access keys (EAB with a policy), API tokens, the audit
-- log and rate-limit counters (SQLite).
ALTER TABLE instances ADD COLUMN external_account_required BIGINT NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN cert_validity_days BIGINT;
ALTER TABLE instances ADD COLUMN allowed_challenges TEXT NOT NULL DEFAULT '["http-01","dns-01","tls-alpn-01"]';
ALTER TABLE instances ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE instances ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;

CREATE TABLE access_keys (
    id                  TEXT PRIMARY KEY,
    instance_id         TEXT NOT NULL REFERENCES instances (id),
    name                TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    kid                 TEXT NOT NULL UNIQUE,
    hmac_key            BLOB NOT NULL,
    allowed_identifiers TEXT NOT NULL,
    allow_wildcard      BIGINT NOT NULL,
    validation          TEXT NOT NULL,
    expires_at          BIGINT,
    status              TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (instance_id, name)
);

ALTER TABLE accounts ADD COLUMN access_key_id TEXT REFERENCES access_keys (id);
CREATE INDEX accounts_access_key ON accounts (access_key_id);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    token_hash   TEXT NOT NULL UNIQUE,
    scope        TEXT NOT NULL,
    role         TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          BIGINT NOT NULL,
    instance_id TEXT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX events_instance ON events (instance_id, seq);

-- Fixed-window counters: one row per (limit key, window start).
CREATE TABLE rate_counters (
    counter      TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    hits         BIGINT NOT NULL,
    PRIMARY KEY (counter, window_start)
);

CREATE INDEX certificates_instance ON certificates (instance_id, not_after);
CREATE INDEX orders_instance ON orders (instance_id, created_at);
