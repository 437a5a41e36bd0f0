-- Who holds a relayed order's lease: every write of its worker is guarded
-- on it, so a worker whose lease lapsed (and was taken over) cannot write.
ALTER TABLE upstream_orders ADD COLUMN lease_owner TEXT;
