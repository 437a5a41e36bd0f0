-- A write the store sends as one statement (data-modifying CTEs, see
-- src/store/held.rs) passes each guarded part's changed-row count through
-- this: none changed means the state was not what the write expected, and
-- the error undoes the whole statement. The store maps SQLSTATE AHGRD to
-- its Guard error.
CREATE FUNCTION acmehub_guard(changed bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF changed = 0 THEN
        RAISE EXCEPTION 'a guarded write changed no row' USING ERRCODE = 'AHGRD';
    END IF;
    RETURN changed;
END
$$;
