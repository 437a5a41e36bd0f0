-- How many of a pending order's authorizations are not yet valid. The
-- write that makes an authorization valid takes one off each of its
-- pending orders and moves the order to ready when none is left, in the
-- same UPDATE: on PostgreSQL a concurrent such write waits for the row and
-- then counts from the newest value, so two authorizations of one order
-- that become valid at once leave it ready (the status of the other
-- authorization, read from a snapshot, could not tell). Orders that are
-- not pending keep 0; it means nothing for them.
ALTER TABLE orders ADD COLUMN unready INTEGER NOT NULL DEFAULT 0;
UPDATE orders SET unready = (
    SELECT count(*) FROM order_authorizations oa JOIN authorizations a ON a.id = oa.authz_id
    WHERE oa.order_id = orders.id AND a.status <> 'valid'
) WHERE status = 'pending';
-- Orders left pending with every authorization valid (two of them made
-- valid at the same moment, before the count): ready, as they should be.
-- Finalize still refuses one that has expired.
UPDATE orders SET status = 'ready' WHERE status = 'pending' AND unready = 0;
