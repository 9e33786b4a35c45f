-- isoswitch-pg schema, version 1.
-- Nothing here holds a PIN block, track data or a working key in clear: journal
-- records carry the original without DE 35/36/45/52 and without its MAC (as the file
-- journal does), sessions are AES-256-GCM sealed snapshots. Version 1 keeps the PAN
-- in clear (journal and decision payloads, host_ledger.pan); version 2
-- (0002_sealed.sql) seals them under the data keys.

-- A node's journal: `<journal>@<node>`, leased to its owner.
CREATE TABLE journal_part (
    part        text PRIMARY KEY,
    journal     text NOT NULL,
    owner       text NOT NULL,
    lease_until timestamptz NOT NULL
);

-- The engine's records, in order (payload = JournalRecord::encode).
CREATE TABLE journal_record (
    part    text NOT NULL REFERENCES journal_part (part),
    seq     bigserial NOT NULL,
    payload bytea NOT NULL,
    PRIMARY KEY (part, seq)
);

-- Reversals journaled and not yet acknowledged, for other nodes to claim when the
-- owning node's lease runs out.
CREATE TABLE pending_reversal (
    part        text NOT NULL REFERENCES journal_part (part),
    txn         bigint NOT NULL,
    journal     text NOT NULL,
    tag         bigint NOT NULL,
    reason      smallint NOT NULL,
    message     bytea NOT NULL,
    claimed_by  text,
    claim_until timestamptz,
    PRIMARY KEY (part, txn)
);
CREATE INDEX pending_reversal_journal ON pending_reversal (journal);

-- The host's decisions: one per key and kind (1 original, 2 reversal, 3 admitted),
-- payload = StoreRecord::encode. A second decision of the same kind is refused
-- (INSERT ... ON CONFLICT DO NOTHING), so a decision and its effect happen once.
CREATE TABLE host_decision (
    part     text NOT NULL,
    terminal text NOT NULL,
    merchant text NOT NULL,
    batch    integer NOT NULL,
    stan     integer NOT NULL,
    kind     smallint NOT NULL,
    seq      bigserial NOT NULL,
    payload  bytea NOT NULL,
    PRIMARY KEY (part, terminal, merchant, batch, stan, kind)
);
CREATE INDEX host_decision_seq ON host_decision (part, seq);

-- The ledger per card, moved in the same statement as the decision that moves it.
CREATE TABLE host_ledger (
    part  text NOT NULL,
    pan   text NOT NULL,
    total numeric NOT NULL,
    PRIMARY KEY (part, pan)
);

-- STAN / RRN: the first value no node has leased yet; the batch.
CREATE TABLE counters (
    part      text PRIMARY KEY,
    next_stan integer NOT NULL CHECK (next_stan BETWEEN 1 AND 999999),
    batch     integer NOT NULL CHECK (batch BETWEEN 1 AND 999999),
    next_rrn  bigint NOT NULL CHECK (next_rrn BETWEEN 1 AND 999999999999)
);

-- Sealed terminal session snapshots (the latest per terminal).
CREATE TABLE terminal_session (
    part       text NOT NULL,
    terminal   text NOT NULL,
    merchant   text NOT NULL,
    generation bigint NOT NULL,
    sealed     bytea NOT NULL,
    PRIMARY KEY (part, terminal, merchant)
);

-- Sealed upstream link snapshots (zone keys) and their generation.
CREATE TABLE upstream_session (
    part       text NOT NULL,
    link       text NOT NULL,
    terminal   text NOT NULL,
    merchant   text NOT NULL,
    generation bigint NOT NULL,
    sealed     bytea NOT NULL,
    PRIMARY KEY (part, link)
);
