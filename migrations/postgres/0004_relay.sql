-- Upstream CA accounts per instance, and the instance settings the relay
-- reads (PostgreSQL).
ALTER TABLE instances ADD COLUMN environment TEXT NOT NULL DEFAULT 'production';
ALTER TABLE instances ADD COLUMN failover BIGINT NOT NULL DEFAULT 1;

CREATE TABLE ca_accounts (
    id                TEXT PRIMARY KEY,
    instance_id       TEXT NOT NULL REFERENCES instances (id),
    name              TEXT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    ca                TEXT NOT NULL,
    directory_url     TEXT NOT NULL,
    environment       TEXT NOT NULL,
    email             TEXT NOT NULL,
    eab_kid           TEXT,
    eab_hmac          BYTEA,
    allow_wildcard    BIGINT NOT NULL,
    dns_ttl           BIGINT NOT NULL,
    api_timeout_s     BIGINT NOT NULL,
    priority          BIGINT NOT NULL,
    preferred         BIGINT NOT NULL,
    trusted_roots_pem TEXT,
    caa_identities    TEXT NOT NULL,
    account_url       TEXT,
    credentials       BYTEA,
    status            TEXT NOT NULL,
    status_detail     TEXT NOT NULL DEFAULT '',
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (instance_id, name)
);

-- A downstream order relayed to an upstream CA: which account took it, the
-- upstream order URL (recorded before any upstream challenge is answered),
-- the client's CSR once finalized, and a lease so one worker runs it.
CREATE TABLE upstream_orders (
    order_id      TEXT PRIMARY KEY REFERENCES orders (id),
    instance_id   TEXT NOT NULL REFERENCES instances (id),
    ca_account_id TEXT,
    upstream_url  TEXT,
    state         TEXT NOT NULL,
    csr           BYTEA,
    attempts      TEXT NOT NULL DEFAULT '[]',
    error         TEXT,
    lease_until   BIGINT NOT NULL DEFAULT 0,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX upstream_orders_state ON upstream_orders (state);
