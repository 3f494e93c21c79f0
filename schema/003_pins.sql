-- 003: pins, heads of the chain an auditor recorded with a note.
--
-- A pin says "on this day the log ended at SEQ with HASH"; checked later, it
-- proves the log still holds that hash at that seq (nothing before it was
-- rewritten). Rows are only ever appended, like the events: the triggers
-- below abort every UPDATE and DELETE.

CREATE TABLE pins (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The head recorded: its seq and hash (32 bytes).
    seq         INTEGER NOT NULL,
    hash        BLOB    NOT NULL CHECK (length(hash) = 32),
    -- What the auditor wrote with it (free text, bounded by the writer).
    note        TEXT    NOT NULL,
    -- When it was recorded, unix microseconds UTC.
    recorded_at INTEGER NOT NULL
);

CREATE TRIGGER pins_no_update BEFORE UPDATE ON pins
BEGIN
    SELECT RAISE(ABORT, 'pins are append-only: UPDATE refused');
END;

CREATE TRIGGER pins_no_delete BEFORE DELETE ON pins
BEGIN
    SELECT RAISE(ABORT, 'pins are append-only: DELETE refused');
END;
