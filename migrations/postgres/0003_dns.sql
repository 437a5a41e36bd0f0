-- Stored credentials, DNS zone bindings, delegations into the technical zone,
-- and the TXT records the hub serves there (PostgreSQL).
CREATE TABLE credentials (
    id           TEXT PRIMARY KEY,
    instance_id  TEXT NOT NULL REFERENCES instances (id),
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    config       TEXT NOT NULL,
    secret       BYTEA NOT NULL,
    fingerprint  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    UNIQUE (instance_id, name)
);

CREATE TABLE dns_zones (
    id            TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL REFERENCES instances (id),
    zone          TEXT NOT NULL,
    credential_id TEXT NOT NULL REFERENCES credentials (id),
    provider      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    UNIQUE (instance_id, zone)
);
CREATE INDEX dns_zones_credential ON dns_zones (credential_id);

CREATE TABLE delegations (
    id          TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (id),
    domain      TEXT NOT NULL,
    label       TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    checked_at  BIGINT,
    created_at  BIGINT NOT NULL,
    UNIQUE (instance_id, domain)
);

-- acme-dns registrations: a label in the technical zone and the hash of its key.
CREATE TABLE acme_dns_accounts (
    username    TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (id),
    key_hash    TEXT NOT NULL,
    label       TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE zone_records (
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (name, value)
);
