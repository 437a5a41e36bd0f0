-- The networks an acme-dns registration may be updated from (acme-dns's
-- `allowfrom`), as a JSON array of CIDR texts; empty: from anywhere.
ALTER TABLE acme_dns_accounts ADD COLUMN allowfrom TEXT NOT NULL DEFAULT '[]';
