-- isoswitch-pg schema, version 6: fewer writes per transaction.
--
-- Every switched transaction writes about three decisions, two journal records and a
-- pending reversal; on a 2-core machine the database's CPU per transaction bounds the
-- switch's throughput. Two costs per row that bought nothing:
--
-- * host_decision_seq: an index per decision kept only so that the whole view of a
--   part could be read in order (at start, and after a refused group). Those reads
--   now take every row of the part with its seq and sort them in the node (they read
--   every row anyway; a sort in the server would spill to disk beyond work_mem).
-- * The foreign keys of journal_record and pending_reversal on journal_part: a
--   referential check (a row lock on the part's journal_part row) per written row.
--   The journal guards the same thing itself: every append first renews the part's
--   lease (`UPDATE journal_part ... WHERE owner = node`) and writes nothing when that
--   row is gone or another node's; a part is retired only with its journal_part row
--   locked and no pending reversal left, its records deleted first.
DROP INDEX host_decision_seq;
ALTER TABLE journal_record DROP CONSTRAINT journal_record_part_fkey;
ALTER TABLE pending_reversal DROP CONSTRAINT pending_reversal_part_fkey;
