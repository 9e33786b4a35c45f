-- isoswitch-pg schema, version 2: no clear PAN at rest (PCI DSS 3.5).
--
-- From this version on, the columns that hold a PAN or an original message are
-- sealed under the store's data keys (isoswitch_reversal::seal::DataKeys,
-- AES-256-GCM: key id (4 bytes) | nonce (12) | ciphertext | tag (16)), the same
-- sealing the file store uses for its records:
--   journal_record.payload     sealed JournalRecord::encode
--   pending_reversal.message   sealed original
--   host_decision.payload      sealed StoreRecord::encode
-- and the ledger is keyed by the PAN's keyed hash (DataKeys::pan_hash, AES-CMAC)
-- instead of the PAN.
--
-- Rows written in clear by version 1 are sealed in the same transaction: the store
-- runs its sealing step (isoswitch_pg::db::seal_clear_rows) where the marker line
-- below stands, after the first half of this file and before the second. A database
-- at version 1 therefore becomes version 2 with every row sealed, or stays at
-- version 1 untouched; a build that knows only version 1 refuses a version 2
-- database (schema too new) instead of writing clear rows into it.

ALTER TABLE host_ledger ADD COLUMN pan_hash bytea;

-- @seal-clear-rows

ALTER TABLE host_ledger DROP CONSTRAINT host_ledger_pkey;
ALTER TABLE host_ledger DROP COLUMN pan;
ALTER TABLE host_ledger ALTER COLUMN pan_hash SET NOT NULL;
ALTER TABLE host_ledger ADD PRIMARY KEY (part, pan_hash);
