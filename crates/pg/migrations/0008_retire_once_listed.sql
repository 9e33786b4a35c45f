-- isoswitch-pg schema, version 8: a dead journal is retired only once it was listed.
--
-- Since version 7 an original in flight has no pending row until a node lists what a
-- dead part leaves in doubt (journal_part.in_doubt_listed). A node built for version 6
-- or older knows nothing of that: if it is still running when a newer node applies
-- version 7 (a rolling deploy; a node checks the schema version when it starts), it
-- retires a dead part once no pending row is left, without listing it, and the
-- originals that part left in doubt would never be reversed. The schema itself now
-- refuses to delete a journal_part row that was not listed: such a retirement fails
-- and is rolled back whole (the old node deletes the part's records first, in the same
-- transaction), and the part waits for a node that lists it first.
CREATE FUNCTION isoswitch_refuse_unlisted_retire() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journal part % not retired: what it leaves in doubt was never listed',
        OLD.part
        USING ERRCODE = 'IS002';
END
$$;
CREATE TRIGGER journal_part_retired_once_listed
    BEFORE DELETE ON journal_part
    FOR EACH ROW WHEN (NOT OLD.in_doubt_listed)
    EXECUTE FUNCTION isoswitch_refuse_unlisted_retire();
