-- A certificate left `signing` by a process that died is taken over by
-- exactly one other: the taker sets lease_until, guarded on its old value.
ALTER TABLE certificates ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;

-- Periodic work that one process should do at a time, whichever replica
-- it is (re-checking delegations, pruning): taken while lease_until has
-- passed and the last run is older than the job's period; `last_run` is
-- written when a run finishes, so a run whose process died is done again.
CREATE TABLE job_leases (
    job         TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    last_run    BIGINT NOT NULL
);
