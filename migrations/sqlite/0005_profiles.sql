-- ACME profiles (draft-ietf-acme-profiles): the profile a downstream order
-- asked for, and the profiles each upstream CA account's directory offers
-- (a JSON object, name to description, read at "Save and Test").
ALTER TABLE orders ADD COLUMN profile TEXT;
ALTER TABLE ca_accounts ADD COLUMN profiles TEXT NOT NULL DEFAULT '{}';
