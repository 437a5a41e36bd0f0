-- acmehub core schema (PostgreSQL). Times are unix seconds; flags are 0/1.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    issuer      TEXT NOT NULL DEFAULT 'local',
    created_at  BIGINT NOT NULL
);

CREATE TABLE used_nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_nonces_expiry ON used_nonces (expires_at);

CREATE TABLE accounts (
    id             TEXT PRIMARY KEY,
    instance_id    TEXT NOT NULL REFERENCES instances (id),
    key_thumbprint TEXT NOT NULL,
    jwk            TEXT NOT NULL,
    status         TEXT NOT NULL,
    contact        TEXT NOT NULL,
    tos_agreed     BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    UNIQUE (instance_id, key_thumbprint)
);

CREATE TABLE orders (
    id             TEXT PRIMARY KEY,
    instance_id    TEXT NOT NULL REFERENCES instances (id),
    account_id     TEXT NOT NULL REFERENCES accounts (id),
    status         TEXT NOT NULL,
    identifiers    TEXT NOT NULL,
    not_before     BIGINT,
    not_after      BIGINT,
    expires_at     BIGINT NOT NULL,
    error          TEXT,
    certificate_id TEXT,
    replaces       TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX orders_account ON orders (account_id, created_at);
CREATE INDEX orders_status ON orders (status);

CREATE TABLE authorizations (
    id               TEXT PRIMARY KEY,
    instance_id      TEXT NOT NULL REFERENCES instances (id),
    account_id       TEXT NOT NULL REFERENCES accounts (id),
    identifier_type  TEXT NOT NULL,
    identifier_value TEXT NOT NULL,
    wildcard         BIGINT NOT NULL,
    status           TEXT NOT NULL,
    expires_at       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX authorizations_reuse ON authorizations (account_id, identifier_type, identifier_value, status);

CREATE TABLE order_authorizations (
    order_id TEXT NOT NULL REFERENCES orders (id),
    authz_id TEXT NOT NULL REFERENCES authorizations (id),
    position BIGINT NOT NULL,
    PRIMARY KEY (order_id, authz_id)
);
CREATE INDEX order_authorizations_authz ON order_authorizations (authz_id);

CREATE TABLE challenges (
    id           TEXT PRIMARY KEY,
    authz_id     TEXT NOT NULL REFERENCES authorizations (id),
    kind         TEXT NOT NULL,
    token        TEXT NOT NULL,
    status       TEXT NOT NULL,
    validated_at BIGINT,
    error        TEXT,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX challenges_authz ON challenges (authz_id);
CREATE INDEX challenges_status ON challenges (status);

CREATE TABLE certificates (
    id                TEXT PRIMARY KEY,
    instance_id       TEXT NOT NULL REFERENCES instances (id),
    account_id        TEXT NOT NULL REFERENCES accounts (id),
    order_id          TEXT NOT NULL REFERENCES orders (id),
    serial            TEXT NOT NULL UNIQUE,
    status            TEXT NOT NULL,
    issuer            TEXT NOT NULL,
    identifiers       TEXT NOT NULL,
    spki              BYTEA NOT NULL,
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    der               BYTEA,
    chain_pem         TEXT,
    ari_id            TEXT,
    revoked_at        BIGINT,
    revocation_reason BIGINT,
    created_at        BIGINT NOT NULL
);
CREATE INDEX certificates_ari ON certificates (ari_id);
CREATE INDEX certificates_status ON certificates (status);
CREATE INDEX certificates_order ON certificates (order_id);
