//! Projections: current state derived from the log, disposable, rebuilt on demand.
//!
//! Every entity (student, payment, learner, enrollment) keeps a history table
//! with one row per event that touched it, and a current-state row that is the
//! fold of that history in provider-time order (ties by seq), never in arrival
//! order. Applying an event inserts its history row, then:
//! - if the event is newer than the entity's head, folds it onto the current
//!   state (the common, in-order case: O(1));
//! - otherwise re-folds the entity's whole history (late or out-of-order
//!   delivery: O(history of that one entity)).
//!
//! Both paths use the same `step` function, so an incremental build, a rebuild
//! in log order and a build in time order come out identical. The fold steps
//! in [`entities`] hold no business rules beyond what each field means.

pub mod entities;
pub mod query;
pub mod rebuild;

use rusqlite::{Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::Event;
use entities::{Enrollments, Learners, Payments, Students};

/// Bump when the projection tables or the fold change: the server then
/// rebuilds every projection from the log at start.
///
/// 2: a student's payments indexed in (paid_at, payment_id) order.
/// 3: the student history index covers the history route.
pub const PROJECTION_VERSION: i64 = 3;

/// The projection DDL template (see the file's header).
const TEMPLATE: &str = include_str!("../../schema/projections.sql");

/// Every projection table, in creation order.
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

/// Separates the history indexes in the template.
const HISTORY_INDEXES_MARKER: &str = "-- @history-indexes";
/// Separates the read indexes in the template.
const READ_INDEXES_MARKER: &str = "-- @read-indexes";

/// The shadow prefix a rebuild fills before its swap.
pub const SHADOW_PREFIX: &str = "next_";

/// Errors while projecting.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
    #[error("stored projection state is not valid JSON: {0}")]
    Doc(#[from] serde_json::Error),
    #[error("projection invariant broken: {0}")]
    Invariant(String),
}

/// One set of projection tables (live or shadow) and the SQL to write them.
/// The SQL is built once, so the hot path only looks up cached statements.
#[derive(Debug, Clone)]
pub struct Projector {
    prefix: &'static str,
    set_state: String,
    get_state: String,
    certificate: String,
    students: EntitySql,
    payments: EntitySql,
    learners: EntitySql,
    enrollments: EntitySql,
}

/// The statements of one entity kind.
#[derive(Debug, Clone)]
pub(crate) struct EntitySql {
    insert_history: String,
    head: String,
    scan: String,
    history: String,
    pub(crate) upsert: String,
    update: String,
}

impl EntitySql {
    fn new<E: Entity>(prefix: &str) -> EntitySql {
        let (cur, hist, key) = (E::CURRENT, E::HISTORY, E::KEY);
        EntitySql {
            insert_history: format!(
                "INSERT INTO {prefix}{hist} (seq, entity, kind, at, event_id, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ),
            head: format!("SELECT head_at, head_seq, doc FROM {prefix}{cur} WHERE {key} = ?1"),
            scan: format!(
                "SELECT entity, seq, kind, at, doc FROM {prefix}{hist} WHERE entity > ?1 ORDER BY entity, at, seq"
            ),
            history: format!("SELECT seq, kind, at, doc FROM {prefix}{hist} WHERE entity = ?1 ORDER BY at, seq"),
            upsert: E::upsert_sql(prefix),
            update: E::update_sql(prefix),
        }
    }
}

impl Projector {
    /// The live tables the read API serves.
    pub fn live() -> Projector {
        Projector::with_prefix("")
    }

    /// The shadow tables a rebuild fills.
    pub fn shadow() -> Projector {
        Projector::with_prefix(SHADOW_PREFIX)
    }

    fn with_prefix(prefix: &'static str) -> Projector {
        Projector {
            prefix,
            set_state: format!("UPDATE {prefix}projection_state SET last_seq = ?1, skipped = skipped + ?2 WHERE id = 1"),
            get_state: format!("SELECT last_seq FROM {prefix}projection_state WHERE id = 1"),
            certificate: format!(
                "INSERT INTO {prefix}certificates (seq, user_id, course_id, at, doc) VALUES (?1, ?2, ?3, ?4, ?5)"
            ),
            students: EntitySql::new::<Students>(prefix),
            payments: EntitySql::new::<Payments>(prefix),
            learners: EntitySql::new::<Learners>(prefix),
            enrollments: EntitySql::new::<Enrollments>(prefix),
        }
    }

    /// Creates this projector's tables with every index (and its state row
    /// at seq 0).
    pub fn create_tables(&self, conn: &Connection, generation: i64) -> rusqlite::Result<()> {
        self.create_tables_without_indexes(conn, generation)?;
        self.create_history_indexes(conn, generation)?;
        self.create_read_indexes(conn, generation)
    }

    /// Creates the tables with their primary keys only. A rebuild fills them
    /// first and indexes them afterwards, one sort per index.
    pub fn create_tables_without_indexes(
        &self,
        conn: &Connection,
        generation: i64,
    ) -> rusqlite::Result<()> {
        conn.execute_batch(&self.template(generation).0)?;
        conn.execute(
            &format!(
                "INSERT INTO {}projection_state (id, last_seq, version, skipped, generation) VALUES (1, 0, ?1, 0, ?2)",
                self.prefix
            ),
            (PROJECTION_VERSION, generation),
        )?;
        Ok(())
    }

    /// Creates the history tables' indexes.
    pub fn create_history_indexes(
        &self,
        conn: &Connection,
        generation: i64,
    ) -> rusqlite::Result<()> {
        conn.execute_batch(&self.template(generation).1)
    }

    /// Creates the indexes the read API filters current rows by.
    pub fn create_read_indexes(&self, conn: &Connection, generation: i64) -> rusqlite::Result<()> {
        conn.execute_batch(&self.template(generation).2)
    }

    /// The template for this prefix and generation: (tables, history
    /// indexes, read indexes).
    fn template(&self, generation: i64) -> (String, String, String) {
        let sql = TEMPLATE
            .replace("{p}", self.prefix)
            .replace("{g}", &generation.to_string());
        let (tables, rest) = sql
            .split_once(HISTORY_INDEXES_MARKER)
            .expect("the template has the history marker");
        let (history, read) = rest
            .split_once(READ_INDEXES_MARKER)
            .expect("the template has the read marker");
        (tables.to_string(), history.to_string(), read.to_string())
    }

    /// Drops this projector's tables, if present.
    pub fn drop_tables(&self, conn: &Connection) -> rusqlite::Result<()> {
        for t in TABLES.iter().rev() {
            conn.execute_batch(&format!("DROP TABLE IF EXISTS {}{t}", self.prefix))?;
        }
        Ok(())
    }

    /// The last seq these tables hold.
    pub fn last_seq(&self, conn: &Connection) -> rusqlite::Result<u64> {
        conn.prepare_cached(&self.get_state)?
            .query_row([], |r| r.get::<_, i64>(0))
            .map(|s| s as u64)
    }

    /// Applies event `seq` (provider time `at`). Events must be applied in seq
    /// order, each once: checked against the stored last seq.
    pub fn apply(
        &self,
        conn: &Connection,
        seq: u64,
        at: i64,
        event: &Event,
    ) -> Result<(), ProjectionError> {
        self.apply_event(conn, seq, at, event)?;
        self.advance(conn, seq, 0)
    }

    fn advance(&self, conn: &Connection, seq: u64, skipped: u64) -> Result<(), ProjectionError> {
        self.advance_range(conn, seq, seq, skipped)
    }

    /// Records that events `first..=last` were applied (`skipped` of them
    /// passed over), checking that they follow the stored last seq. A replay
    /// calls this once per chunk rather than once per event.
    pub(crate) fn advance_range(
        &self,
        conn: &Connection,
        first: u64,
        last: u64,
        skipped: u64,
    ) -> Result<(), ProjectionError> {
        let held = self.last_seq(conn)?;
        if held + 1 != first || last < first {
            return Err(ProjectionError::Invariant(format!(
                "{}projections hold seq {held} and were given seqs {first}..={last}",
                self.prefix
            )));
        }
        conn.prepare_cached(&self.set_state)?
            .execute((last as i64, skipped as i64))?;
        Ok(())
    }

    /// Applies one event's effect without recording its seq (see
    /// [`Projector::advance_range`]).
    pub(crate) fn apply_event(
        &self,
        conn: &Connection,
        seq: u64,
        at: i64,
        event: &Event,
    ) -> Result<(), ProjectionError> {
        self.dispatch(conn, seq, at, event, Mode::Apply)
    }

    /// Records one event's history row only (a rebuild's load pass; the
    /// fold pass then derives the current rows).
    pub(crate) fn load_event(
        &self,
        conn: &Connection,
        seq: u64,
        at: i64,
        event: &Event,
    ) -> Result<(), ProjectionError> {
        self.dispatch(conn, seq, at, event, Mode::HistoryOnly)
    }

    fn dispatch(
        &self,
        conn: &Connection,
        seq: u64,
        at: i64,
        event: &Event,
        mode: Mode,
    ) -> Result<(), ProjectionError> {
        let seq = seq as i64;
        match event {
            Event::Student {
                change,
                event_id,
                student,
            } => apply_entity::<Students>(
                conn,
                mode,
                &self.students,
                &student.jodo_student_id,
                change.as_str(),
                Some(event_id),
                student,
                at,
                seq,
            ),
            Event::Payment {
                change,
                event_id,
                payment,
            } => apply_entity::<Payments>(
                conn,
                mode,
                &self.payments,
                &payment.payment_id,
                change.as_str(),
                Some(event_id),
                payment,
                at,
                seq,
            ),
            Event::Learner { change, learner } => apply_entity::<Learners>(
                conn,
                mode,
                &self.learners,
                &learner.user_id,
                change.as_str(),
                None,
                learner,
                at,
                seq,
            ),
            Event::Enrollment { change, enrollment } => apply_entity::<Enrollments>(
                conn,
                mode,
                &self.enrollments,
                &enrollment.enrollment_id,
                change.as_str(),
                None,
                enrollment,
                at,
                seq,
            ),
            Event::CertificateIssued(c) => {
                conn.prepare_cached(&self.certificate)?.execute((
                    seq,
                    &c.user_id,
                    &c.course_id,
                    at,
                    serde_json::to_string(c)?,
                ))?;
                Ok(())
            }
            Event::Unrecognized => Ok(()),
        }
    }
}

/// One kind of projected entity: its tables and its fold.
pub trait Entity {
    /// Current-state table, history table, and the current table's key column.
    const CURRENT: &'static str;
    const HISTORY: &'static str;
    const KEY: &'static str;
    /// What one event says about the entity.
    type Data: Serialize + DeserializeOwned;
    /// The entity's state after a run of events.
    type State: Serialize + DeserializeOwned;
    /// Folds one event onto the state. Called in (at, seq) order only.
    fn step(
        prev: Option<Self::State>,
        kind: &str,
        data: &Self::Data,
        at: i64,
        seq: i64,
    ) -> Self::State;
    /// The values of the current row's indexed columns.
    type IndexKey: PartialEq;
    fn index_key(state: &Self::State) -> Self::IndexKey;
    /// The upsert of the current-state row, for tables with `prefix`.
    fn upsert_sql(prefix: &str) -> String;
    /// The UPDATE of an existing current row whose indexed columns keep their
    /// values: it sets every other column and leaves the indexed ones out,
    /// with the upsert's parameter numbers (so [`Entity::upsert`] binds both).
    /// SQLite rewrites an index entry whenever its column is SET, even to the
    /// same value: one or two more dirty pages, in the WAL and fsynced, for
    /// most events (a payment's update, a student's drop).
    fn update_sql(prefix: &str) -> String;
    /// Writes the current-state row with the statement from `upsert_sql` or
    /// `update_sql`; returns the rows changed.
    fn upsert(
        stmt: &mut rusqlite::CachedStatement,
        key: &str,
        state: &Self::State,
        head: (i64, i64),
        doc: &str,
    ) -> rusqlite::Result<usize>;
}

/// A history row read back.
pub struct HistoryRow<D> {
    pub seq: i64,
    pub kind: String,
    pub at: i64,
    pub data: D,
}

/// Folds history rows (already in (at, seq) order) into a state.
pub fn fold<E: Entity>(rows: &[HistoryRow<E::Data>]) -> Option<E::State> {
    let mut state = None;
    for r in rows {
        debug_assert!(r.at >= 0);
        state = Some(E::step(state, &r.kind, &r.data, r.at, r.seq));
    }
    state
}

/// Reads an entity's history, in (at, seq) order.
pub(crate) fn read_history<E: Entity>(
    conn: &Connection,
    sql: &str,
    key: &str,
) -> Result<Vec<HistoryRow<E::Data>>, ProjectionError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([key])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let doc: String = r.get(3)?;
        out.push(HistoryRow {
            seq: r.get(0)?,
            kind: r.get(1)?,
            at: r.get(2)?,
            data: serde_json::from_str(&doc)?,
        });
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn apply_entity<E: Entity>(
    conn: &Connection,
    mode: Mode,
    sql: &EntitySql,
    key: &str,
    kind: &str,
    event_id: Option<&str>,
    data: &E::Data,
    at: i64,
    seq: i64,
) -> Result<(), ProjectionError> {
    let data_doc = serde_json::to_string(data)?;
    conn.prepare_cached(&sql.insert_history)?
        .execute((seq, key, kind, at, event_id, &data_doc))?;
    if mode == Mode::HistoryOnly {
        return Ok(());
    }
    let head: Option<(i64, i64, String)> = conn
        .prepare_cached(&sql.head)?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    // The entity's head after this event: the later of the two.
    let new_head = match &head {
        Some((h_at, h_seq, _)) if (*h_at, *h_seq) > (at, seq) => (*h_at, *h_seq),
        _ => (at, seq),
    };
    // The state, and whether the row's indexed columns keep their values.
    let (state, index_unchanged) = match head {
        None => (E::step(None, kind, data, at, seq), false),
        Some((head_at, head_seq, doc)) if (at, seq) > (head_at, head_seq) => {
            let prev: E::State = serde_json::from_str(&doc)?;
            let before = E::index_key(&prev);
            let state = E::step(Some(prev), kind, data, at, seq);
            let same = E::index_key(&state) == before;
            (state, same)
        }
        Some(_) => {
            // Late delivery: re-fold the entity's history in provider-time order.
            let rows = read_history::<E>(conn, &sql.history, key)?;
            let state = fold::<E>(&rows)
                .ok_or_else(|| ProjectionError::Invariant(format!("history of {key} is empty")))?;
            (state, false)
        }
    };
    let doc = serde_json::to_string(&state)?;
    let write = if index_unchanged {
        &sql.update
    } else {
        &sql.upsert
    };
    let changed = E::upsert(
        &mut conn.prepare_cached(write)?,
        key,
        &state,
        new_head,
        &doc,
    )?;
    // An update of a row that is not there would lose the event silently.
    if changed != 1 {
        return Err(ProjectionError::Invariant(format!(
            "writing the current row of {key} changed {changed} rows"
        )));
    }
    Ok(())
}

/// Whether applying an event also updates the entity's current row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Apply,
    HistoryOnly,
}

/// Which entity kinds the fold pass walks, in order.
pub(crate) const FOLD_KINDS: usize = 4;

impl Projector {
    /// The fold pass of a rebuild, for entity kind `kind` (0..FOLD_KINDS):
    /// walks the history in (entity, at, seq) order from after entity
    /// `after`, folds each entity once and writes its current row, stopping at
    /// the first entity boundary past `limit` rows. Returns the last entity
    /// written (to resume after) and the rows read; `None` when the kind is done.
    pub(crate) fn fold_chunk(
        &self,
        conn: &Connection,
        kind: usize,
        after: Option<&str>,
        limit: u64,
    ) -> Result<(Option<String>, u64), ProjectionError> {
        match kind {
            0 => fold_entities::<Students>(conn, &self.students, after, limit),
            1 => fold_entities::<Payments>(conn, &self.payments, after, limit),
            2 => fold_entities::<Learners>(conn, &self.learners, after, limit),
            3 => fold_entities::<Enrollments>(conn, &self.enrollments, after, limit),
            _ => unreachable!("there are {FOLD_KINDS} entity kinds"),
        }
    }
}

fn fold_entities<E: Entity>(
    conn: &Connection,
    sql: &EntitySql,
    after: Option<&str>,
    limit: u64,
) -> Result<(Option<String>, u64), ProjectionError> {
    let mut stmt = conn.prepare_cached(&sql.scan)?;
    // '' sorts before every key: entity keys are never empty (the parsers
    // reject empty ids).
    let mut rows = stmt.query([after.unwrap_or("")])?;
    let mut upsert = conn.prepare_cached(&sql.upsert)?;
    let mut read = 0u64;
    // The entity being folded: key, state so far, head (at, seq).
    let mut current: Option<(String, E::State, (i64, i64))> = None;
    let mut last_written = None;
    let mut flush =
        |entity: String, state: E::State, head: (i64, i64)| -> Result<String, ProjectionError> {
            let doc = serde_json::to_string(&state)?;
            let changed = E::upsert(&mut upsert, &entity, &state, head, &doc)?;
            debug_assert_eq!(changed, 1, "folded {entity} written once");
            Ok(entity)
        };
    let text = |v: rusqlite::types::ValueRef<'_>| -> Result<String, ProjectionError> {
        Ok(v.as_str()
            .map_err(|e| ProjectionError::Invariant(e.to_string()))?
            .to_string())
    };
    while let Some(r) = rows.next()? {
        let entity = text(r.get_ref(0)?)?;
        let same = matches!(&current, Some((e, _, _)) if *e == entity);
        if !same && read >= limit {
            // Past the limit at an entity boundary: stop; resume after the last.
            if let Some((e, state, head)) = current.take() {
                last_written = Some(flush(e, state, head)?);
            }
            return Ok((last_written, read));
        }
        let seq: i64 = r.get(1)?;
        let kind = text(r.get_ref(2)?)?;
        let at: i64 = r.get(3)?;
        let data: E::Data = serde_json::from_str(&text(r.get_ref(4)?)?)?;
        let prev = match current.take() {
            Some((e, state, head)) if same => {
                // Rows come in (at, seq) order: each is the newest so far.
                debug_assert!((at, seq) > head, "history of {e} out of order");
                Some(state)
            }
            Some((e, state, head)) => {
                last_written = Some(flush(e, state, head)?);
                None
            }
            None => None,
        };
        current = Some((entity, E::step(prev, &kind, &data, at, seq), (at, seq)));
        read += 1;
    }
    if let Some((e, state, head)) = current.take() {
        flush(e, state, head)?;
    }
    Ok((None, read))
}

/// Reads the live tables' version and generation, if they exist.
pub fn live_version(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projection_state')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    conn.query_row(
        "SELECT version, generation FROM projection_state WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}
