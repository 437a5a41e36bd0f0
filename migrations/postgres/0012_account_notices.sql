-- Each replica keeps the accounts it reads in memory; this tells every
-- replica (on channel acmehub_accounts, at commit) which account changed
-- or went away, whatever wrote it.
CREATE FUNCTION acmehub_account_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('acmehub_accounts', OLD.id);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER accounts_notify AFTER UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION acmehub_account_changed();
