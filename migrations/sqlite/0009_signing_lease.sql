-- A certificate left `signing` by a process that died is taken over by
-- exactly one other: the taker sets lease_until, guarded on its old value.
ALTER TABLE certificates ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
