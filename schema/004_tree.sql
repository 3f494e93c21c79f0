-- 004: the log as a Merkle tree (RFC 9162), and its checkpoints.
--
-- Both tables are derived from `events` and can be recomputed from it
-- (`registrar verify` does): the tree's hashes are written by the append
-- that adds their leaf, in the same transaction; a log made before this
-- migration gets its tree from the writer at the next start. Rows are only
-- ever appended, like the events: the triggers below abort every UPDATE and
-- DELETE. See README "The Merkle tree and signed checkpoints".

-- The stored hashes: the hash of every complete subtree (2^L leaves starting
-- at a multiple of 2^L), stored once when its last leaf arrives, at a dense
-- index (log::merkle::stored_hash_index: leaf n stores its own hash, then
-- one per subtree it completes, 1 + trailing_ones(n) in all). Leaf i is the
-- event with seq i + 1. Any tree size up to the leaves stored is rooted and
-- proven from O(log n) of them.
CREATE TABLE tree_hashes (
    idx  INTEGER PRIMARY KEY,
    -- SHA-256: a leaf (0x00 || entry) or a node (0x01 || left || right).
    hash BLOB    NOT NULL CHECK (length(hash) = 32)
);

-- Every checkpoint made: the tree's size and root, and the note served for
-- it (a C2SP tlog-checkpoint, signed as a C2SP signed-note when the server
-- has a key).
CREATE TABLE checkpoints (
    -- The tree size (leaves = the log's head seq then). One checkpoint per size.
    size    INTEGER PRIMARY KEY CHECK (size >= 0),
    -- The tree's root at that size, 32 bytes.
    root    BLOB    NOT NULL CHECK (length(root) = 32),
    -- The note exactly as served: origin, size and base64 root lines, then,
    -- when signed, a blank line and the signature line.
    note    TEXT    NOT NULL,
    -- When it was made, unix microseconds UTC.
    made_at INTEGER NOT NULL,
    -- 1 when the note carries the server's signature, 0 when the server had
    -- no signing key (the note is then the checkpoint's text alone).
    signed  INTEGER NOT NULL CHECK (signed IN (0, 1))
);

CREATE TRIGGER tree_hashes_no_update BEFORE UPDATE ON tree_hashes
BEGIN
    SELECT RAISE(ABORT, 'the tree is append-only: UPDATE refused');
END;

CREATE TRIGGER tree_hashes_no_delete BEFORE DELETE ON tree_hashes
BEGIN
    SELECT RAISE(ABORT, 'the tree is append-only: DELETE refused');
END;

CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints are append-only: UPDATE refused');
END;

CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints are append-only: DELETE refused');
END;
