-- Projections: state derived from the event log, disposable and rebuilt on demand.
--
-- The schema of the projection store, a SQLite file of its own (`--projections`).
-- Not a migration: because projections are rebuilt from the log, changing this
-- file needs none. Bump projection::PROJECTION_VERSION and the server rebuilds
-- the store into a fresh file at start.
--
-- Every current-state table keeps `head_at`/`head_seq`: the (provider time, seq)
-- of the latest event it derives from. Order is by provider time, ties by seq,
-- never by arrival. `doc` is the full state as JSON (see src/projection/*.rs);
-- the other columns exist to filter and index.
--
-- The indexes after the `@history-indexes` and `@read-indexes` markers are
-- created separately by a rebuild, each after the pass that fills their tables
-- (see src/projection/rebuild.rs).
--
-- History rows keep `received_at`: when registrar received the event (unix
-- microseconds), so a report can say what was known at a time.

CREATE TABLE projection_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    -- Last event seq applied to these tables.
    last_seq    INTEGER NOT NULL,
    -- PROJECTION_VERSION these tables were built with.
    version     INTEGER NOT NULL,
    -- Events that could not be projected (reported by rebuild).
    skipped     INTEGER NOT NULL DEFAULT 0,
    -- Counts builds: after a crash between a rebuild's completion and the
    -- removal of the file it replaced, the higher generation wins.
    generation  INTEGER NOT NULL,
    -- 0 while a build fills the file (its tables are not consistent yet).
    complete    INTEGER NOT NULL DEFAULT 0
);

-- Jodo students, keyed by jodo_student_id.
CREATE TABLE students (
    jodo_student_id   TEXT PRIMARY KEY,
    identifier        TEXT,
    custom_identifier TEXT,
    grade_code        TEXT,
    collector_code    TEXT,
    -- 'active' or 'dropped'.
    status            TEXT    NOT NULL,
    -- Lower-cased text `q=` searches: ids, identifiers, grade, contacts.
    search            TEXT    NOT NULL,
    head_at           INTEGER NOT NULL,
    head_seq          INTEGER NOT NULL,
    -- The tally (store::Tally): events folded, first and last received (unix
    -- microseconds), whatever their provider-time order.
    revisions         INTEGER NOT NULL,
    first_received_at INTEGER NOT NULL,
    last_received_at  INTEGER NOT NULL,
    doc               TEXT    NOT NULL
);

-- Every registered, dropped and activated event of a student.
CREATE TABLE student_history (
    seq             INTEGER PRIMARY KEY,
    -- The student's jodo_student_id.
    entity          TEXT    NOT NULL,
    -- 'registered', 'dropped' or 'activated'.
    kind            TEXT    NOT NULL,
    at              INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    -- The student's profile as the event carried it.
    doc             TEXT    NOT NULL
);

-- Jodo manual payments, keyed by payment id.
CREATE TABLE payments (
    payment_id         TEXT PRIMARY KEY,
    -- 'recorded' or 'cancelled'.
    status             TEXT    NOT NULL,
    mode               TEXT    NOT NULL,
    -- Unix seconds UTC.
    paid_at            INTEGER NOT NULL,
    -- Integer minor units (paise).
    amount_minor       INTEGER NOT NULL,
    jodo_student_id    TEXT,
    student_identifier TEXT,
    collector_code     TEXT,
    transaction_id     TEXT,
    -- Provider time of the first cancellation, unix seconds.
    cancelled_at       INTEGER,
    head_at            INTEGER NOT NULL,
    head_seq           INTEGER NOT NULL,
    -- The tally, as in students.
    revisions          INTEGER NOT NULL,
    first_received_at  INTEGER NOT NULL,
    last_received_at   INTEGER NOT NULL,
    doc                TEXT    NOT NULL
);

-- Every revision of a payment, with the event that made it.
CREATE TABLE payment_revisions (
    seq        INTEGER PRIMARY KEY,
    -- The payment id.
    entity     TEXT    NOT NULL,
    -- 'added', 'updated' or 'cancelled'.
    kind       TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    event_id   TEXT    NOT NULL,
    doc        TEXT    NOT NULL
);

-- Toolzz users, from members.created and members.updated.
CREATE TABLE learners (
    user_id  TEXT PRIMARY KEY,
    head_at  INTEGER NOT NULL,
    head_seq INTEGER NOT NULL,
    revisions         INTEGER NOT NULL,
    first_received_at INTEGER NOT NULL,
    last_received_at  INTEGER NOT NULL,
    doc      TEXT    NOT NULL
);

-- Every members.* event of a learner.
CREATE TABLE learner_revisions (
    seq     INTEGER PRIMARY KEY,
    -- The Toolzz user id.
    entity  TEXT    NOT NULL,
    -- 'created' or 'updated'.
    kind    TEXT    NOT NULL,
    at      INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    -- Toolzz has no event id: always NULL, kept for one history shape.
    event_id TEXT,
    doc     TEXT    NOT NULL
);

-- Toolzz enrollments, keyed by enrollment id.
CREATE TABLE enrollments (
    enrollment_id TEXT PRIMARY KEY,
    user_id       TEXT    NOT NULL,
    course_id     TEXT    NOT NULL,
    -- 'active', 'inactive' or 'completed'.
    status        TEXT    NOT NULL,
    head_at       INTEGER NOT NULL,
    head_seq      INTEGER NOT NULL,
    revisions         INTEGER NOT NULL,
    first_received_at INTEGER NOT NULL,
    last_received_at  INTEGER NOT NULL,
    doc           TEXT    NOT NULL
);

-- Every enrollment and completion event of an enrollment.
CREATE TABLE enrollment_events (
    seq           INTEGER PRIMARY KEY,
    -- The enrollment id.
    entity        TEXT    NOT NULL,
    -- 'enrolled' or 'completed'.
    kind          TEXT    NOT NULL,
    at            INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    -- Toolzz has no event id: always NULL, kept for one history shape.
    event_id      TEXT,
    doc           TEXT    NOT NULL
);

-- Certificates issued, joined to enrollments by (user_id, course_id) when read.
CREATE TABLE certificates (
    seq       INTEGER PRIMARY KEY,
    user_id   TEXT    NOT NULL,
    course_id TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    doc       TEXT    NOT NULL
);

-- @history-indexes
-- The indexes of the history tables. A rebuild creates them after it has
-- loaded every history row (one sort instead of a random insert per event).
-- Covers GET /v1/students/{id}/history (kind, event_id): no table lookups.
CREATE INDEX student_history_order ON student_history (entity, at, seq, kind, event_id);
CREATE INDEX payment_revisions_order ON payment_revisions (entity, at, seq);
-- The payments a report as known at K or as of T must fold from their
-- revisions (received after K, or happening after T); every other payment's
-- current row is already that fold. Also the changes report's window.
CREATE INDEX payment_revisions_received ON payment_revisions (received_at, entity);
CREATE INDEX payment_revisions_at ON payment_revisions (at, entity);
CREATE INDEX learner_revisions_order ON learner_revisions (entity, at, seq);
CREATE INDEX enrollment_events_order ON enrollment_events (entity, at, seq);
CREATE INDEX certificates_user_course ON certificates (user_id, course_id, at, seq);

-- @read-indexes
-- The indexes the read API filters by. A rebuild creates them after its fold
-- pass has written every current row.
CREATE INDEX students_identifier ON students (identifier);
CREATE INDEX students_custom_identifier ON students (custom_identifier);
-- A student's payments come in (paid_at, payment_id) order, the order of
-- GET /v1/students/{id}/payments: two ordered range scans merged, no sort.
CREATE INDEX payments_student ON payments (jodo_student_id, paid_at, payment_id);
CREATE INDEX payments_identifier ON payments (student_identifier, paid_at, payment_id);
-- The register and the day book (query::reports::lines) walk a year of
-- payments in (paid_at, payment_id) order reading every column they show:
-- covered here, they read this index alone, never the rows with their
-- documents (a third of the time, and of the memory touched). Also the order
-- of GET /v1/payments.
CREATE INDEX payments_paid_at ON payments (paid_at, payment_id, status, mode, amount_minor,
    collector_code, jodo_student_id, student_identifier, transaction_id, cancelled_at,
    revisions, first_received_at, last_received_at);
CREATE INDEX enrollments_user ON enrollments (user_id);
CREATE INDEX enrollments_course ON enrollments (course_id);
