-- Certificates the hub manages itself (issue: managed certificates): the
-- key (sealed like a credential) and CSR it made, the order in flight, the
-- certificate now served, when to renew, and what happened so far.
CREATE TABLE managed_certificates (
    id                TEXT PRIMARY KEY,
    instance_id       TEXT NOT NULL REFERENCES instances (id),
    name              TEXT NOT NULL,
    identifiers       TEXT NOT NULL,
    key_type          TEXT NOT NULL,
    profile           TEXT,
    auto_renew        BIGINT NOT NULL,
    renew_before_days BIGINT,
    keep_key          BIGINT NOT NULL DEFAULT 0,
    tags              TEXT NOT NULL DEFAULT '[]',
    status            TEXT NOT NULL,
    step              TEXT NOT NULL DEFAULT '',
    missing           TEXT NOT NULL DEFAULT '[]',
    sealed_key        BLOB,
    csr               BLOB,
    order_id          TEXT,
    certificate_id    TEXT,
    next_renewal_at   BIGINT,
    next_attempt_at   BIGINT NOT NULL DEFAULT 0,
    failures          BIGINT NOT NULL DEFAULT 0,
    error             TEXT,
    history           TEXT NOT NULL DEFAULT '[]',
    lease_until       BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (instance_id, name)
);
CREATE INDEX managed_certificates_due ON managed_certificates (next_attempt_at);
