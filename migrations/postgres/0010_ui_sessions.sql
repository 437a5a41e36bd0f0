-- Web console sessions: the cookie carries a random secret, the table its
-- SHA-256 and the hash of the token the operator signed in with, so that
-- revoking the token ends its sessions, and signing out ends one on every
-- replica. `csrf` is the form token of the session.
CREATE TABLE ui_sessions (
    id_hash     TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);
