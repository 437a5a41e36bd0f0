-- Web console users: a name and an argon2id password (PHC string), with the
-- same scope and role as an API token. Failed sign-ins are counted; past
-- the limit the user is locked until `locked_until`.
CREATE TABLE ui_users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    scope         TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until  BIGINT NOT NULL DEFAULT 0
);

-- Web console sessions: the cookie carries a random secret, the table its
-- SHA-256 and who signed in (`token:<SHA-256 of the token>` or
-- `user:<id>`), so that revoking the token or deleting the user ends its
-- sessions, and signing out ends one on every replica. `csrf` is the
-- session's form token.
CREATE TABLE ui_sessions (
    id_hash     TEXT PRIMARY KEY,
    subject     TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);
CREATE INDEX ui_sessions_subject ON ui_sessions (subject);
