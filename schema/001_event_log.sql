-- 001: the event log, the source of truth.
--
-- One row per accepted delivery. Rows are only ever appended: the triggers below
-- abort every UPDATE and DELETE, and the hash chain (see README "Hash chain")
-- makes any edit made around the triggers detectable by `registrar verify`.
-- This file is never edited once released; later changes go in new files.

CREATE TABLE events (
    -- Gapless sequence 1, 2, 3, ... assigned by the single writer.
    seq           INTEGER PRIMARY KEY,
    -- 'jodo' or 'toolzz'.
    source        TEXT    NOT NULL CHECK (source IN ('jodo', 'toolzz')),
    -- Provider event type: Jodo `event`, Toolzz `event.slug`. Unknown types are kept too.
    event_type    TEXT    NOT NULL,
    -- Provider payload version (Jodo `version`; Toolzz has none and stores '').
    event_version TEXT    NOT NULL,
    -- Idempotency key: Jodo `event_id`; Toolzz 'blake3:' || hex(blake3(body)).
    dedupe_key    TEXT    NOT NULL,
    -- Who the event is about: Jodo student id or payment id, Toolzz user id; NULL when unknown.
    subject       TEXT,
    -- The provider's own time of the event, unix seconds UTC
    -- (Jodo `timestamp`; Toolzz `send_at` read in the configured zone).
    occurred_at   INTEGER NOT NULL,
    -- When registrar accepted the delivery, unix microseconds UTC. Part of the chain.
    received_at   INTEGER NOT NULL,
    -- The exact bytes the provider sent.
    body          BLOB    NOT NULL,
    -- blake3(body), 32 bytes. The chain covers this, not the body, so a future
    -- redaction of personal data can replace the body without breaking the chain.
    body_hash     BLOB    NOT NULL CHECK (length(body_hash) = 32),
    -- The previous row's hash; 32 zero bytes for seq 1.
    prev_hash     BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    -- blake3 over (prev_hash, seq, source, received_at, body_hash), encoding v1.
    hash          BLOB    NOT NULL CHECK (length(hash) = 32),
    UNIQUE (source, dedupe_key)
);

-- Serves the audit trail's filters.
CREATE INDEX events_by_subject ON events (subject, seq);
CREATE INDEX events_by_type ON events (event_type, seq);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: UPDATE refused');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: DELETE refused');
END;
