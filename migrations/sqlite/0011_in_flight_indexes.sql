-- Indexes on a status column alone matched most rows (every finished
-- order, challenge and certificate is `valid`), yet SQLite, without
-- statistics, preferred them: finding a reusable authorization walked
-- every valid challenge, and moving orders to `ready` every pending one.
-- What needs a status index looks for work in flight, or for revoked
-- certificates (the CRL), which few rows are: partial indexes over those
-- rows only, which a query for another
-- status cannot use, and which cost nothing when a row leaves them.
DROP INDEX orders_status;
DROP INDEX challenges_status;
DROP INDEX certificates_status;
CREATE INDEX challenges_processing ON challenges (updated_at) WHERE status = 'processing';
CREATE INDEX certificates_signing ON certificates (created_at) WHERE status = 'signing';
CREATE INDEX certificates_revoked ON certificates (issuer, not_after) WHERE status = 'revoked';
