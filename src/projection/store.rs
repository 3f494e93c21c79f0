//! The projection store's tables: every statement that writes them, and the
//! state row (position, version, generation, complete). The folds in
//! [`super::entities`] hold no SQL; the files themselves (opening them, their
//! pragmas, generations, removal) are [`super::files`]'s, which calls in here
//! for the tables of a file it creates or marks complete. Every function takes
//! a connection: nothing here opens one.

use std::sync::OnceLock;

use rusqlite::{Connection, OptionalExtension};

use super::entities::{
    EnrollmentState, Enrollments, LearnerState, Learners, PaymentState, Payments, StudentState,
    Students,
};
use super::{Entity, HistoryRow, Kind, ProjectionError, PROJECTION_VERSION};
use crate::event::Event;

/// The projection DDL (see the file's header).
const SCHEMA: &str = include_str!("../../schema/projections.sql");
/// Separates the history indexes in the schema.
const HISTORY_INDEXES_MARKER: &str = "-- @history-indexes";
/// Separates the read indexes in the schema.
const READ_INDEXES_MARKER: &str = "-- @read-indexes";

/// Every projection table. The log file of a release before the split held
/// these (and `next_` copies during a rebuild); see
/// [`crate::server::drop_legacy_projections`].
pub const TABLES: &[&str] = &[
    "projection_state",
    "students",
    "student_history",
    "payments",
    "payment_revisions",
    "learners",
    "learner_revisions",
    "enrollments",
    "enrollment_events",
    "certificates",
];

/// Page cache of a build's connection, in KiB, while it loads and folds.
pub const BUILD_CACHE_KIB: i64 = 32 * 1024;

/// Page cache, and so sorter memory, while a build creates its indexes.
pub const INDEX_BUILD_CACHE_KIB: i64 = 16 * 1024;

/// The state row of a store file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreState {
    /// The last log seq these tables reflect.
    pub last_seq: u64,
    /// The [`PROJECTION_VERSION`] the file was built with.
    pub version: i64,
    /// Events passed over because they no longer parse.
    pub skipped: u64,
    /// Counts builds: a rebuilt file has a higher generation than the one it
    /// replaces, which decides between two complete files after a crash.
    pub generation: i64,
    /// False while a build is filling the file: its tables are not
    /// consistent yet, and a file left so by a crash is deleted.
    pub complete: bool,
}

impl StoreState {
    /// Whether the read API can serve from this file.
    pub fn usable(&self) -> bool {
        self.complete && self.version == PROJECTION_VERSION
    }
}

/// One logged event as the projections see it.
#[derive(Debug, Clone, Copy)]
pub struct Projectable<'a> {
    pub seq: u64,
    /// Provider time, unix seconds.
    pub occurred_at: i64,
    /// When registrar received it, unix microseconds.
    pub received_at: i64,
    pub event: &'a Event,
}

impl<'a> Projectable<'a> {
    /// A logged event with the domain event parsed from its body.
    pub fn logged(e: &crate::log::LoggedEvent, event: &'a Event) -> Projectable<'a> {
        Projectable {
            seq: e.seq,
            occurred_at: e.occurred_at,
            received_at: e.received_at,
            event,
        }
    }

    /// An event the writer handed over.
    pub fn handed(e: &'a crate::event::Sequenced) -> Projectable<'a> {
        Projectable {
            seq: e.seq,
            occurred_at: e.occurred_at,
            received_at: e.received_at,
            event: &e.event,
        }
    }
}

/// What the store keeps of an entity's events beside its folded state: the
/// newest by provider time (its head), how many there were, and when the
/// first and the last were received. Counts and receipt times do not depend
/// on the order events are folded in, so a late delivery adds to them like
/// any other; a report reads them off the current row instead of its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Provider time (unix seconds) and seq of the newest event.
    pub head: (i64, i64),
    pub revisions: i64,
    /// Unix microseconds.
    pub first_received_at: i64,
    pub last_received_at: i64,
}

impl Tally {
    /// The tally of one event.
    fn of(at: i64, seq: i64, received_at: i64) -> Tally {
        Tally {
            head: (at, seq),
            revisions: 1,
            first_received_at: received_at,
            last_received_at: received_at,
        }
    }

    /// This tally with one more event.
    fn with(self, at: i64, seq: i64, received_at: i64) -> Tally {
        Tally {
            head: self.head.max((at, seq)),
            revisions: self.revisions + 1,
            first_received_at: self.first_received_at.min(received_at),
            last_received_at: self.last_received_at.max(received_at),
        }
    }
}

/// Creates the tables of a build's file on `conn`, with their primary keys
/// only (the indexes come after the passes that fill them), and its state
/// row: position 0, not complete.
pub fn create_build_tables(conn: &Connection, generation: i64) -> rusqlite::Result<()> {
    let (tables, _, _) = schema();
    conn.execute_batch(tables)?;
    conn.execute(
        "INSERT INTO projection_state (id, last_seq, version, skipped, generation, complete)
         VALUES (1, 0, ?1, 0, ?2, 0)",
        (PROJECTION_VERSION, generation),
    )?;
    Ok(())
}

/// Creates every table and index on `conn`, empty and complete (for tests
/// and query plans).
pub fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    conn.execute(
        "INSERT INTO projection_state (id, last_seq, version, skipped, generation, complete)
         VALUES (1, 0, ?1, 0, 0, 1)",
        [PROJECTION_VERSION],
    )?;
    Ok(())
}

/// Creates the history tables' indexes (a build does it after loading every
/// history row: one sort instead of a random insert per event).
pub fn create_history_indexes(conn: &Connection) -> rusqlite::Result<()> {
    create_indexes(conn, schema().1)
}

/// Creates the indexes the read API filters current rows by.
pub fn create_read_indexes(conn: &Connection) -> rusqlite::Result<()> {
    create_indexes(conn, schema().2)
}

/// Runs CREATE INDEX statements on a build's connection with a smaller page
/// cache: SQLite gives each index's sorter as much memory as the page cache
/// before it spills to a temporary file, and the two together would pass the
/// rebuild's memory budget on a large log (118.7 MB on 1M events with the
/// register's covering index, against 100 MB).
fn create_indexes(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("PRAGMA cache_size = -{INDEX_BUILD_CACHE_KIB};"))?;
    conn.execute_batch(sql)?;
    conn.execute_batch(&format!("PRAGMA cache_size = -{BUILD_CACHE_KIB};"))
}

/// Marks a built file's tables complete: a restart may pick the file.
pub fn mark_complete(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("UPDATE projection_state SET complete = 1 WHERE id = 1", [])?;
    Ok(())
}

/// Reads a store file's state row; `None` when the file has none (not a
/// store, or a build that died before writing it).
pub fn state(conn: &Connection) -> rusqlite::Result<Option<StoreState>> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projection_state')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    let has_complete: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM pragma_table_info('projection_state') WHERE name = 'complete')",
        [],
        |r| r.get(0),
    )?;
    let sql = if has_complete {
        "SELECT last_seq, version, skipped, generation, complete FROM projection_state WHERE id = 1"
    } else {
        // Written by a release before the split (projections in the log
        // file): complete whenever present.
        "SELECT last_seq, version, skipped, generation, 1 FROM projection_state WHERE id = 1"
    };
    conn.query_row(sql, [], |r| {
        Ok(StoreState {
            last_seq: r.get::<_, i64>(0)? as u64,
            version: r.get(1)?,
            skipped: r.get::<_, i64>(2)? as u64,
            generation: r.get(3)?,
            complete: r.get(4)?,
        })
    })
    .optional()
}

/// The last seq these tables reflect.
pub fn position(conn: &Connection) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT last_seq FROM projection_state WHERE id = 1")?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|s| s as u64)
}

/// Records that events `first..=last` were applied (`skipped` of them passed
/// over), checking that they follow the stored position: the projector never
/// skips or repeats an event.
pub fn advance(
    conn: &Connection,
    first: u64,
    last: u64,
    skipped: u64,
) -> Result<(), ProjectionError> {
    let held = position(conn)?;
    if held + 1 != first || last < first {
        return Err(ProjectionError::Invariant(format!(
            "the projections hold seq {held} and were given seqs {first}..={last}"
        )));
    }
    conn.prepare_cached(
        "UPDATE projection_state SET last_seq = ?1, skipped = skipped + ?2 WHERE id = 1",
    )?
    .execute((last as i64, skipped as i64))?;
    Ok(())
}

/// Applies one event's effect (history row and current row) without
/// recording the position (see [`advance`]).
pub fn apply(conn: &Connection, ev: &Projectable) -> Result<(), ProjectionError> {
    dispatch(conn, ev, Mode::Apply)
}

/// Writes one event's history row only: a build's load pass, after which
/// [`fold_all`] derives the current rows.
pub fn load(conn: &Connection, ev: &Projectable) -> Result<(), ProjectionError> {
    dispatch(conn, ev, Mode::HistoryOnly)
}

/// Whether applying an event also updates the entity's current row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Apply,
    HistoryOnly,
}

fn dispatch(conn: &Connection, ev: &Projectable, mode: Mode) -> Result<(), ProjectionError> {
    let s = sql();
    match ev.event {
        Event::Student {
            change,
            event_id,
            student,
        } => apply_entity::<Students>(
            conn,
            mode,
            &s.students,
            &student.jodo_student_id,
            *change,
            Some(event_id),
            student,
            ev,
        ),
        Event::Payment {
            change,
            event_id,
            payment,
        } => apply_entity::<Payments>(
            conn,
            mode,
            &s.payments,
            &payment.payment_id,
            *change,
            Some(event_id),
            payment,
            ev,
        ),
        Event::Learner { change, learner } => apply_entity::<Learners>(
            conn,
            mode,
            &s.learners,
            &learner.user_id,
            *change,
            None,
            learner,
            ev,
        ),
        Event::Enrollment { change, enrollment } => apply_entity::<Enrollments>(
            conn,
            mode,
            &s.enrollments,
            &enrollment.enrollment_id,
            *change,
            None,
            enrollment,
            ev,
        ),
        Event::CertificateIssued(c) => {
            conn.prepare_cached(
                "INSERT INTO certificates (seq, user_id, course_id, at, received_at, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute((
                ev.seq as i64,
                &c.user_id,
                &c.course_id,
                ev.occurred_at,
                ev.received_at,
                serde_json::to_string(c)?,
            ))?;
            Ok(())
        }
        Event::Unrecognized => Ok(()),
    }
}

/// An entity kind as stored: its current row's columns and how to write it.
pub trait Stored: Entity {
    /// The upsert of the current-state row.
    const UPSERT: &'static str;
    /// The UPDATE of an existing current row whose indexed columns keep their
    /// values: it sets every other column, with the upsert's parameter
    /// numbers (so [`Stored::bind`] serves both). SQLite rewrites an index
    /// entry whenever its column is SET, even to the same value: one or two
    /// more dirty pages for most events (a payment's update, a student's drop).
    const UPDATE: &'static str;
    /// This kind's statements among all of them.
    fn statements(all: &Sql) -> &EntitySql;
    /// Writes the current row with `stmt` (one of the two above).
    fn bind(
        stmt: &mut rusqlite::CachedStatement,
        key: &str,
        state: &Self::State,
        tally: &Tally,
        doc: &str,
    ) -> rusqlite::Result<usize>;
}

/// The tally's columns, the same in every current table (see [`Tally`]).
macro_rules! tally_set {
    () => {
        "head_at = excluded.head_at, head_seq = excluded.head_seq,
            revisions = excluded.revisions, first_received_at = excluded.first_received_at,
            last_received_at = excluded.last_received_at, doc = excluded.doc"
    };
}

impl Stored for Students {
    fn statements(all: &Sql) -> &EntitySql {
        &all.students
    }
    const UPSERT: &'static str = concat!(
        "INSERT INTO students (jodo_student_id, identifier, custom_identifier, grade_code,
                                  collector_code, status, search, head_at, head_seq,
                                  revisions, first_received_at, last_received_at, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (jodo_student_id) DO UPDATE SET
            identifier = excluded.identifier, custom_identifier = excluded.custom_identifier,
            grade_code = excluded.grade_code, collector_code = excluded.collector_code,
            status = excluded.status, search = excluded.search, ",
        tally_set!()
    );
    const UPDATE: &'static str =
        "UPDATE students SET grade_code = ?4, collector_code = ?5, status = ?6,
            search = ?7, head_at = ?8, head_seq = ?9, revisions = ?10,
            first_received_at = ?11, last_received_at = ?12, doc = ?13
         WHERE jodo_student_id = ?1";

    fn bind(
        stmt: &mut rusqlite::CachedStatement,
        key: &str,
        s: &StudentState,
        t: &Tally,
        doc: &str,
    ) -> rusqlite::Result<usize> {
        let p = &s.profile;
        write(
            stmt,
            &[
                &key,
                &p.identifier,
                &p.custom_identifier,
                &p.grade.as_ref().map(|g| &g.code),
                &p.collector_code,
                &s.status.as_str(),
                &s.search_text(),
            ],
            t,
            doc,
        )
    }
}

impl Stored for Payments {
    fn statements(all: &Sql) -> &EntitySql {
        &all.payments
    }
    const UPSERT: &'static str = concat!(
        "INSERT INTO payments (payment_id, status, mode, paid_at, amount_minor, jodo_student_id,
                                  student_identifier, collector_code, transaction_id, cancelled_at,
                                  head_at, head_seq, revisions, first_received_at, last_received_at, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (payment_id) DO UPDATE SET
            status = excluded.status, mode = excluded.mode, paid_at = excluded.paid_at,
            amount_minor = excluded.amount_minor, jodo_student_id = excluded.jodo_student_id,
            student_identifier = excluded.student_identifier, collector_code = excluded.collector_code,
            transaction_id = excluded.transaction_id, cancelled_at = excluded.cancelled_at, ",
        tally_set!()
    );
    const UPDATE: &'static str =
        "UPDATE payments SET status = ?2, mode = ?3, amount_minor = ?5, collector_code = ?8,
            transaction_id = ?9, cancelled_at = ?10, head_at = ?11, head_seq = ?12,
            revisions = ?13, first_received_at = ?14, last_received_at = ?15, doc = ?16
         WHERE payment_id = ?1";

    fn bind(
        stmt: &mut rusqlite::CachedStatement,
        key: &str,
        s: &PaymentState,
        t: &Tally,
        doc: &str,
    ) -> rusqlite::Result<usize> {
        let r = &s.record;
        write(
            stmt,
            &[
                &key,
                &s.status.as_str(),
                &r.mode,
                &r.paid_at,
                &r.amount.minor(),
                &r.jodo_student_id,
                &r.student_identifier,
                &r.collector_code,
                &r.transaction_id,
                &s.cancelled_at,
            ],
            t,
            doc,
        )
    }
}

impl Stored for Learners {
    fn statements(all: &Sql) -> &EntitySql {
        &all.learners
    }
    const UPSERT: &'static str = concat!(
        "INSERT INTO learners (user_id, head_at, head_seq, revisions, first_received_at,
                               last_received_at, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (user_id) DO UPDATE SET ",
        tally_set!()
    );
    // No indexed column besides the key.
    const UPDATE: &'static str = Self::UPSERT;

    fn bind(
        stmt: &mut rusqlite::CachedStatement,
        key: &str,
        _s: &LearnerState,
        t: &Tally,
        doc: &str,
    ) -> rusqlite::Result<usize> {
        write(stmt, &[&key], t, doc)
    }
}

impl Stored for Enrollments {
    fn statements(all: &Sql) -> &EntitySql {
        &all.enrollments
    }
    const UPSERT: &'static str = concat!(
        "INSERT INTO enrollments (enrollment_id, user_id, course_id, status, head_at, head_seq,
                                  revisions, first_received_at, last_received_at, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (enrollment_id) DO UPDATE SET
            user_id = excluded.user_id, course_id = excluded.course_id, status = excluded.status, ",
        tally_set!()
    );
    const UPDATE: &'static str =
        "UPDATE enrollments SET status = ?4, head_at = ?5, head_seq = ?6, revisions = ?7,
            first_received_at = ?8, last_received_at = ?9, doc = ?10
         WHERE enrollment_id = ?1";

    fn bind(
        stmt: &mut rusqlite::CachedStatement,
        key: &str,
        s: &EnrollmentState,
        t: &Tally,
        doc: &str,
    ) -> rusqlite::Result<usize> {
        write(
            stmt,
            &[
                &key,
                &s.record.user_id,
                &s.record.course_id,
                &s.status.as_str(),
            ],
            t,
            doc,
        )
    }
}

/// Runs a current row's write: the entity's own columns (`own`, from ?1),
/// then the tally's and the document, which every current table ends with.
fn write(
    stmt: &mut rusqlite::CachedStatement,
    own: &[&dyn rusqlite::ToSql],
    t: &Tally,
    doc: &str,
) -> rusqlite::Result<usize> {
    let tail: [&dyn rusqlite::ToSql; 6] = [
        &t.head.0,
        &t.head.1,
        &t.revisions,
        &t.first_received_at,
        &t.last_received_at,
        &doc,
    ];
    stmt.execute(rusqlite::params_from_iter(own.iter().chain(tail.iter())))
}

/// The statements of one entity kind, built once from its table names.
pub struct EntitySql {
    insert_history: String,
    head: String,
    history: String,
    scan: String,
}

impl EntitySql {
    fn new<E: Entity>() -> EntitySql {
        let (cur, hist, key) = (E::CURRENT, E::HISTORY, E::KEY);
        EntitySql {
            insert_history: format!(
                "INSERT INTO {hist} (seq, entity, kind, at, received_at, event_id, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ),
            head: format!(
                "SELECT head_at, head_seq, revisions, first_received_at, last_received_at, doc
                 FROM {cur} WHERE {key} = ?1"
            ),
            history: format!(
                "SELECT seq, kind, at, received_at, doc FROM {hist} WHERE entity = ?1 ORDER BY at, seq"
            ),
            scan: format!(
                "SELECT entity, seq, kind, at, received_at, doc FROM {hist} ORDER BY entity, at, seq"
            ),
        }
    }
}

pub struct Sql {
    students: EntitySql,
    payments: EntitySql,
    learners: EntitySql,
    enrollments: EntitySql,
}

fn sql() -> &'static Sql {
    static SQL: OnceLock<Sql> = OnceLock::new();
    SQL.get_or_init(|| Sql {
        students: EntitySql::new::<Students>(),
        payments: EntitySql::new::<Payments>(),
        learners: EntitySql::new::<Learners>(),
        enrollments: EntitySql::new::<Enrollments>(),
    })
}

/// The schema split at its markers: (tables, history indexes, read indexes).
fn schema() -> (&'static str, &'static str, &'static str) {
    let (tables, rest) = SCHEMA
        .split_once(HISTORY_INDEXES_MARKER)
        .expect("the schema has the history marker");
    let (history, read) = rest
        .split_once(READ_INDEXES_MARKER)
        .expect("the schema has the read marker");
    (tables, history, read)
}

/// Reads an entity's history in (provider time, seq) order.
pub fn history<E: Stored>(
    conn: &Connection,
    key: &str,
) -> Result<Vec<HistoryRow<E>>, ProjectionError> {
    read_history::<E>(conn, &E::statements(sql()).history, key)
}

fn read_history<E: Entity>(
    conn: &Connection,
    sql: &str,
    key: &str,
) -> Result<Vec<HistoryRow<E>>, ProjectionError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([key])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(HistoryRow {
            seq: r.get(0)?,
            change: kind::<E>(r.get_ref(1)?)?,
            at: r.get(2)?,
            received_at: r.get(3)?,
            data: serde_json::from_slice(r.get_ref(4)?.as_bytes()?)?,
        });
    }
    Ok(out)
}

/// A stored kind read back as the entity's typed change.
fn kind<E: Entity>(v: rusqlite::types::ValueRef<'_>) -> Result<E::Change, ProjectionError> {
    let text = v.as_str()?;
    E::Change::parse(text).ok_or_else(|| {
        ProjectionError::Invariant(format!("{} holds an unknown kind {text:?}", E::HISTORY))
    })
}

#[allow(clippy::too_many_arguments)]
fn apply_entity<E: Stored>(
    conn: &Connection,
    mode: Mode,
    sql: &EntitySql,
    key: &str,
    change: E::Change,
    event_id: Option<&str>,
    data: &E::Data,
    ev: &Projectable,
) -> Result<(), ProjectionError> {
    let (seq, at) = (ev.seq as i64, ev.occurred_at);
    let data_doc = serde_json::to_string(data)?;
    conn.prepare_cached(&sql.insert_history)?.execute((
        seq,
        key,
        change.as_str(),
        at,
        ev.received_at,
        event_id,
        &data_doc,
    ))?;
    if mode == Mode::HistoryOnly {
        return Ok(());
    }
    let stored: Option<(Tally, String)> = conn
        .prepare_cached(&sql.head)?
        .query_row([key], |r| {
            let tally = Tally {
                head: (r.get(0)?, r.get(1)?),
                revisions: r.get(2)?,
                first_received_at: r.get(3)?,
                last_received_at: r.get(4)?,
            };
            Ok((tally, r.get(5)?))
        })
        .optional()?;
    let tally = match &stored {
        Some((t, _)) => t.with(at, seq, ev.received_at),
        None => Tally::of(at, seq, ev.received_at),
    };
    // The state, and whether the row's indexed columns keep their values.
    let (state, index_unchanged) = match stored {
        None => (E::step(None, change, data.clone(), at), false),
        Some((t, doc)) if (at, seq) > t.head => {
            let prev: E::State = serde_json::from_str(&doc)?;
            let before = E::index_key(&prev);
            let state = E::step(Some(prev), change, data.clone(), at);
            let same = E::index_key(&state) == before;
            (state, same)
        }
        Some(_) => {
            // Late delivery: re-fold the entity's history in provider-time order.
            let rows = read_history::<E>(conn, &sql.history, key)?;
            let state = super::fold::<E>(rows)
                .ok_or_else(|| ProjectionError::Invariant(format!("history of {key} is empty")))?;
            (state, false)
        }
    };
    let doc = serde_json::to_string(&state)?;
    let write = if index_unchanged {
        E::UPDATE
    } else {
        E::UPSERT
    };
    let changed = E::bind(&mut conn.prepare_cached(write)?, key, &state, &tally, &doc)?;
    // An update of a row that is not there would lose the event silently.
    if changed != 1 {
        return Err(ProjectionError::Invariant(format!(
            "writing the current row of {key} changed {changed} rows"
        )));
    }
    Ok(())
}

/// A build's fold pass: walks every entity kind's history in (entity,
/// provider time, seq) order, folds each entity once and writes its current
/// row. Returns the history rows read.
pub fn fold_all(conn: &Connection) -> Result<u64, ProjectionError> {
    let s = sql();
    Ok(fold_entities::<Students>(conn, &s.students)?
        + fold_entities::<Payments>(conn, &s.payments)?
        + fold_entities::<Learners>(conn, &s.learners)?
        + fold_entities::<Enrollments>(conn, &s.enrollments)?)
}

fn fold_entities<E: Stored>(conn: &Connection, sql: &EntitySql) -> Result<u64, ProjectionError> {
    let mut stmt = conn.prepare_cached(&sql.scan)?;
    let mut rows = stmt.query([])?;
    let mut upsert = conn.prepare_cached(E::UPSERT)?;
    let mut read = 0u64;
    // The entity being folded: key, state so far, tally.
    let mut current: Option<(String, E::State, Tally)> = None;
    let mut flush = |entity: &str, state: &E::State, tally: &Tally| {
        let doc = serde_json::to_string(state)?;
        let changed = E::bind(&mut upsert, entity, state, tally, &doc)?;
        debug_assert_eq!(changed, 1, "folded {entity} written once");
        Ok::<_, ProjectionError>(())
    };
    while let Some(r) = rows.next()? {
        let entity = r.get_ref(0)?.as_str()?;
        let seq: i64 = r.get(1)?;
        let change = kind::<E>(r.get_ref(2)?)?;
        let at: i64 = r.get(3)?;
        let received_at: i64 = r.get(4)?;
        // serde_json checks the UTF-8 of what it reads: no second pass.
        let data: E::Data = serde_json::from_slice(r.get_ref(5)?.as_bytes()?)?;
        let (key, prev, tally) = match current.take() {
            Some((e, state, t)) if e == entity => {
                // Rows come in (at, seq) order: each is the newest so far.
                debug_assert!((at, seq) > t.head, "history of {e} out of order");
                (e, Some(state), t.with(at, seq, received_at))
            }
            Some((e, state, t)) => {
                flush(&e, &state, &t)?;
                (entity.to_string(), None, Tally::of(at, seq, received_at))
            }
            None => (entity.to_string(), None, Tally::of(at, seq, received_at)),
        };
        let state = E::step(prev, change, data, at);
        current = Some((key, state, tally));
        read += 1;
    }
    if let Some((e, state, t)) = current.take() {
        flush(&e, &state, &t)?;
    }
    Ok(read)
}
