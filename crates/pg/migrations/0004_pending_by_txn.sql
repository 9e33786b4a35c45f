-- isoswitch-pg schema, version 4: pending reversals keyed transaction first.
--
-- A journal batch removes the pending rows of the transactions it completed with
-- `DELETE ... WHERE part = $1 AND txn = ANY($2)`. Under the key (part, txn) the cached
-- (generic) plan of that statement scanned the index on `part` alone and filtered on
-- `txn`: the table is small but churns (one row in, one row out per transaction), so
-- that scan walked every dead index entry of the part since the last vacuum (about
-- 9,000 entries and 280 heap pages per batch at 2,000 transactions a second, 2 ms of
-- server time per batch). With `txn` leading, the only index that can serve the
-- statement probes one key per completed transaction, whatever the statistics say.
ALTER TABLE pending_reversal DROP CONSTRAINT pending_reversal_pkey;
ALTER TABLE pending_reversal ADD PRIMARY KEY (txn, part);
