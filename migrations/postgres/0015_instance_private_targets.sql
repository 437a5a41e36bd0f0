-- Whether an instance's validation may reach private and loopback
-- addresses: 1 yes, 0 no, NULL the hub's `[validation]
-- allow_private_targets`. Link-local, multicast and the like are never
-- reached, whatever this says.
ALTER TABLE instances ADD COLUMN allow_private_targets BIGINT;
