-- isoswitch-pg schema, version 3: host decisions written in groups.
--
-- A node with deferred commits (PgIdempotency::defer_sync) writes the decisions made
-- since its last group in one statement of one transaction (group commit). When one of
-- them cannot be written as it was made (another node decided on its key first, or
-- decided the other kind meanwhile: the decision was made on a stale view), the
-- statement calls this function, which aborts the transaction: nothing of the group is
-- written, and every decision in it is made again on what is stored now.
CREATE FUNCTION isoswitch_refuse_group(written bigint, expected bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'decision group refused: % of its % decisions can be written as made',
        written, expected
        USING ERRCODE = 'IS001';
END
$$;
