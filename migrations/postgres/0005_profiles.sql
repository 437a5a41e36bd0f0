-- ACME profiles (draft-ietf-acme-profiles): the profile a downstream order
-- asked for, and the profiles each upstream CA account's directory offers
-- (a JSON object, name to description, read at "Save and Test").
ALTER TABLE orders ADD COLUMN profile TEXT;
ALTER TABLE ca_accounts ADD COLUMN profiles TEXT NOT NULL DEFAULT '{}';

-- Alternate chains an upstream CA offered for a relayed certificate (RFC
-- 8555 §7.4.2), a JSON array of PEM chains, served unchanged downstream.
ALTER TABLE certificates ADD COLUMN alternate_chains TEXT;
