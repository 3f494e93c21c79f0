//! The finance reports' data, each as of a provider time and as known at a
//! receipt time ([`Times`]). Rendering (JSON, CSV) is [`crate::report`]'s.
//!
//! A payment as known at K and as of T is the fold, with the same
//! [`Entity::step`] the projector uses, of its revisions received at or
//! before K whose provider time is at or before T. What counts as recorded
//! is the fold's status ([`PaymentStatus`]): recorded until a cancellation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use rusqlite::Connection;

use super::payments::{self, Links, Revision};
use crate::event::{StudentChange, StudentProfile};
use crate::money::Money;
use crate::projection::entities::{PaymentState, PaymentStatus, Payments, StudentState};
use crate::projection::{store, Entity, Kind, ProjectionError};

/// The two times of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// Provider time, unix seconds: events that happened after it are left out.
    pub as_of: i64,
    /// Receipt time, unix microseconds: events received after it are left out.
    pub known_at: i64,
}

impl Times {
    fn includes(&self, r: &Revision) -> bool {
        r.at <= self.as_of && r.received_at <= self.known_at
    }
}

/// The log seq the store reflects (the answer's `seq`).
pub fn position(conn: &Connection) -> Result<u64, ProjectionError> {
    Ok(store::position(conn)?)
}

/// Folds revisions (any order) that `times` includes.
pub fn fold_known(mut revs: Vec<Revision>, times: Times) -> Option<(PaymentState, Vec<Revision>)> {
    revs.retain(|r| times.includes(r));
    revs.sort_by_key(|r| (r.at, r.seq));
    let mut state = None;
    for r in &revs {
        state = Some(Payments::step(state, r.change, r.record.clone(), r.at));
    }
    state.map(|s| (s, revs))
}

/// The payments whose current row is not their fold as known at and as of
/// `times`: those with a revision received after `known_at` or happening
/// after `as_of`. Two range scans of the revisions' indexes: empty for the
/// present, and for a close a month ago what was received or changed since.
const REFOLDED: &str = "SELECT entity FROM payment_revisions WHERE received_at > ?1
     UNION SELECT entity FROM payment_revisions WHERE at > ?2";

fn refolded(conn: &Connection, times: Times) -> Result<BTreeSet<String>, ProjectionError> {
    Ok(conn
        .prepare_cached(REFOLDED)?
        .query_map((times.known_at, times.as_of), |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// One payment as a report line: its fields as known at and as of [`Times`],
/// the student it links to, and its tally (how many revisions, when the
/// first and last were received).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub payment_id: String,
    /// Unix seconds.
    pub paid_at: i64,
    pub amount: Money,
    pub status: PaymentStatus,
    pub mode: String,
    /// Its own, else its student's.
    pub collector_code: Option<String>,
    /// The student it links to ([`payments::linked_student`]).
    pub linked: Option<String>,
    pub student_identifier: Option<String>,
    pub transaction_id: Option<String>,
    /// Provider time of the first cancellation, unix seconds.
    pub cancelled_at: Option<i64>,
    pub revisions: u64,
    /// Unix microseconds.
    pub first_received_at: i64,
    pub last_received_at: i64,
}

impl Line {
    fn empty() -> Line {
        Line {
            payment_id: String::new(),
            paid_at: 0,
            amount: Money::from_minor(0),
            status: PaymentStatus::Recorded,
            mode: String::new(),
            collector_code: None,
            linked: None,
            student_identifier: None,
            transaction_id: None,
            cancelled_at: None,
            revisions: 0,
            first_received_at: 0,
            last_received_at: 0,
        }
    }

    fn known(
        conn: &Connection,
        state: &PaymentState,
        revisions: &[Revision],
        links: &mut Links,
    ) -> Result<Line, ProjectionError> {
        let r = &state.record;
        let linked = links
            .linked(
                conn,
                r.jodo_student_id.as_deref(),
                r.student_identifier.as_deref(),
            )?
            .map(str::to_string);
        let collector_code = links
            .collector(conn, r.collector_code.as_deref(), linked.as_deref())?
            .map(str::to_string);
        Ok(Line {
            payment_id: r.payment_id.clone(),
            paid_at: r.paid_at,
            amount: r.amount,
            status: state.status,
            mode: r.mode.clone(),
            collector_code,
            linked,
            student_identifier: r.student_identifier.clone(),
            transaction_id: r.transaction_id.clone(),
            cancelled_at: state.cancelled_at,
            revisions: revisions.len() as u64,
            first_received_at: revisions.iter().map(|v| v.received_at).min().unwrap_or(0),
            last_received_at: revisions.iter().map(|v| v.received_at).max().unwrap_or(0),
        })
    }
}

/// The current rows of the payments paid in [?1, ?2], in (paid_at,
/// payment_id) order: a walk of `payments_paid_at`.
const CURRENT_LINES: &str =
    "SELECT payment_id, paid_at, amount_minor, status, mode, collector_code,
        jodo_student_id, student_identifier, transaction_id, cancelled_at, revisions,
        first_received_at, last_received_at
   FROM payments WHERE paid_at >= ?1 AND paid_at <= ?2 ORDER BY paid_at, payment_id";

/// Calls `each` with every payment as known at and as of `times` whose
/// paid_at falls in [from, to] (unix seconds, inclusive), in (paid_at,
/// payment_id) order.
///
/// A payment with no revision after either time is its current row, read
/// as it is; only the others ([`REFOLDED`]) are folded from their revisions,
/// held, sorted and merged in. So memory holds the students' links and the
/// refolded payments, never the range's payments: a year's register for
/// today streams in constant memory.
pub fn lines<E: From<ProjectionError>>(
    conn: &Connection,
    times: Times,
    from: i64,
    to: i64,
    mut each: impl FnMut(&Line) -> Result<(), E>,
) -> Result<(), E> {
    let mut links = Links::default();
    let skip = refolded(conn, times)?;
    let mut late = Vec::new();
    for id in &skip {
        if let Some((state, revs)) = fold_known(payments::revisions(conn, id)?, times) {
            if (from..=to).contains(&state.record.paid_at) {
                late.push(Line::known(conn, &state, &revs, &mut links)?);
            }
        }
    }
    late.sort_by(|a, b| (a.paid_at, &a.payment_id).cmp(&(b.paid_at, &b.payment_id)));
    let mut late = late.into_iter().peekable();
    let mut stmt = conn
        .prepare_cached(CURRENT_LINES)
        .map_err(ProjectionError::from)?;
    let mut rows = stmt.query((from, to)).map_err(ProjectionError::from)?;
    // One line, refilled for each row: its strings keep their buffers.
    let mut line = Line::empty();
    while let Some(r) = rows.next().map_err(ProjectionError::from)? {
        fill_line(conn, r, &mut links, &mut line)?;
        if skip.contains(&line.payment_id) {
            continue;
        }
        while let Some(l) =
            late.next_if(|l| (l.paid_at, &l.payment_id) < (line.paid_at, &line.payment_id))
        {
            each(&l)?;
        }
        each(&line)?;
    }
    for l in late {
        each(&l)?;
    }
    Ok(())
}

fn set(to: &mut String, from: &str) {
    to.clear();
    to.push_str(from);
}

fn set_opt(to: &mut Option<String>, from: Option<&str>) {
    match (to.as_mut(), from) {
        (Some(t), Some(f)) => set(t, f),
        (_, f) => *to = f.map(str::to_string),
    }
}

/// Reads a row of [`CURRENT_LINES`] into `line`.
fn fill_line(
    conn: &Connection,
    r: &rusqlite::Row,
    links: &mut Links,
    line: &mut Line,
) -> Result<(), ProjectionError> {
    let text =
        |i: usize| -> Result<Option<&str>, ProjectionError> { Ok(r.get_ref(i)?.as_str_or_null()?) };
    let status = text(3)?.unwrap_or_default();
    line.status = PaymentStatus::parse(status).ok_or_else(|| {
        ProjectionError::Invariant(format!("payments holds an unknown status {status:?}"))
    })?;
    set(&mut line.payment_id, text(0)?.unwrap_or_default());
    line.paid_at = r.get(1)?;
    line.amount = Money::from_minor(r.get(2)?);
    set(&mut line.mode, text(4)?.unwrap_or_default());
    let identifier = text(7)?;
    let linked = links.linked(conn, text(6)?, identifier)?;
    set_opt(&mut line.linked, linked);
    let collector = links.collector(conn, text(5)?, line.linked.as_deref())?;
    set_opt(&mut line.collector_code, collector);
    set_opt(&mut line.student_identifier, identifier);
    set_opt(&mut line.transaction_id, text(8)?);
    line.cancelled_at = r.get(9)?;
    line.revisions = r.get(10)?;
    line.first_received_at = r.get(11)?;
    line.last_received_at = r.get(12)?;
    Ok(())
}

/// A payment as known at and as of [`Times`], with its revisions.
#[derive(Debug, Clone)]
pub struct KnownPayment {
    pub state: PaymentState,
    /// The revisions folded, in (provider time, seq) order.
    pub revisions: Vec<Revision>,
    pub line: Line,
}

/// A student's payments as known at and as of `times`, with their
/// revisions, in (paid_at, payment_id) order: those linked to the student
/// now, and those refolded ([`REFOLDED`]) that linked to them then.
pub fn student_payments_known(
    conn: &Connection,
    times: Times,
    jodo_student_id: &str,
    identifier: Option<&str>,
) -> Result<Vec<KnownPayment>, ProjectionError> {
    let mut links = Links::default();
    let mut ids = refolded(conn, times)?;
    ids.extend(payments::ids_of_student(conn, jodo_student_id, identifier)?);
    let mut out = Vec::new();
    for id in ids {
        if let Some((state, revisions)) = fold_known(payments::revisions(conn, &id)?, times) {
            let line = Line::known(conn, &state, &revisions, &mut links)?;
            if line.linked.as_deref() == Some(jodo_student_id) {
                out.push(KnownPayment {
                    state,
                    revisions,
                    line,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (a.line.paid_at, &a.line.payment_id).cmp(&(b.line.paid_at, &b.line.payment_id))
    });
    Ok(out)
}

/// One changed field of a payment revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: &'static str,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// One revision received in a window, with what it changed in the payment
/// as registrar knew it: `old` is the fold of the revisions received before
/// it, `new` with it (both as of the report's `as_of`). The first revision
/// received of a payment has no old values.
#[derive(Debug, Clone)]
pub struct Change {
    pub revision: Revision,
    pub old: Option<PaymentState>,
    pub new: Option<PaymentState>,
    pub changes: Vec<FieldChange>,
}

const PAYMENTS_RECEIVED_IN: &str = "SELECT DISTINCT entity FROM payment_revisions
     WHERE received_at >= ?1 AND received_at <= ?2 ORDER BY entity";

/// Every payment revision received in [from, to] (microseconds, inclusive,
/// and not after `times.known_at`), in (received_at, seq) order.
pub fn changes(
    conn: &Connection,
    times: Times,
    from: i64,
    to: i64,
) -> Result<Vec<Change>, ProjectionError> {
    let to = to.min(times.known_at);
    let ids: Vec<String> = conn
        .prepare_cached(PAYMENTS_RECEIVED_IN)?
        .query_map((from, to), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for id in ids {
        let mut revs = payments::revisions(conn, &id)?;
        revs.sort_by_key(|r| (r.received_at, r.seq));
        for (i, r) in revs.iter().enumerate() {
            if !(from..=to).contains(&r.received_at) {
                continue;
            }
            let before = fold_known(revs[..i].to_vec(), times).map(|k| k.0);
            let after = fold_known(revs[..=i].to_vec(), times).map(|k| k.0);
            out.push(Change {
                revision: r.clone(),
                changes: diff(before.as_ref(), after.as_ref()),
                old: before,
                new: after,
            });
        }
    }
    out.sort_by_key(|c| (c.revision.received_at, c.revision.seq));
    Ok(out)
}

/// The fields of a payment a finance reader compares, as text.
fn fields(s: &PaymentState) -> [(&'static str, Option<String>); 10] {
    let r = &s.record;
    [
        ("status", Some(s.status.as_str().to_string())),
        ("amount", Some(r.amount.to_string())),
        ("mode", Some(r.mode.clone())),
        ("paid_at", Some(r.paid_at.to_string())),
        ("collector_code", r.collector_code.clone()),
        ("jodo_student_id", r.jodo_student_id.clone()),
        ("student_identifier", r.student_identifier.clone()),
        ("transaction_id", r.transaction_id.clone()),
        ("settlement_utr", r.settlement_utr.clone()),
        ("notes", r.notes.clone()),
    ]
}

fn diff(old: Option<&PaymentState>, new: Option<&PaymentState>) -> Vec<FieldChange> {
    let empty = || std::array::from_fn::<_, 10, _>(|_| ("", None));
    let o = old.map(fields);
    let n = new.map(fields);
    let names = n.as_ref().or(o.as_ref()).cloned().unwrap_or_else(empty);
    let mut out = Vec::new();
    for (i, (field, _)) in names.iter().enumerate() {
        let ov = o.as_ref().and_then(|f| f[i].1.clone());
        let nv = n.as_ref().and_then(|f| f[i].1.clone());
        if ov != nv {
            out.push(FieldChange {
                field,
                old: ov,
                new: nv,
            });
        }
    }
    out
}

/// One status event of a student.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub jodo_student_id: String,
    /// The log seq of the event (the console links it to its delivery).
    pub seq: i64,
    pub change: StudentChange,
    pub at: i64,
    pub received_at: i64,
    /// None in a statement's timeline (the history keeps it for the route).
    pub event_id: Option<String>,
    pub profile: StudentProfile,
}

/// The history rows of the kinds that are status changes
/// ([`StudentChange::is_status_change`]), named in the SQL as literals.
fn status_changes_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let kinds: Vec<String> = StudentChange::ALL
            .iter()
            .filter(|k| k.is_status_change())
            .map(|k| {
                // Our own names, written into the SQL: never anything to quote.
                assert!(k.as_str().bytes().all(|b| b.is_ascii_lowercase()));
                format!("'{}'", k.as_str())
            })
            .collect();
        format!(
            "SELECT entity, kind, at, received_at, event_id, doc, seq FROM student_history
             WHERE kind IN ({}) AND at >= ?1 AND at <= ?2 AND at <= ?3 AND received_at <= ?4
             ORDER BY at, seq",
            kinds.join(", ")
        )
    })
}

/// Students registered, dropped and re-activated with a provider time in
/// [from, to] (seconds), of grade `grade` (a code or a name) if given.
pub fn status_changes(
    conn: &Connection,
    times: Times,
    from: i64,
    to: i64,
    grade: Option<&str>,
) -> Result<Vec<StatusChange>, ProjectionError> {
    let mut stmt = conn.prepare_cached(status_changes_sql())?;
    let mut rows = stmt.query((from, to, times.as_of, times.known_at))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let kind: String = r.get(1)?;
        let profile: StudentProfile = super::doc(&r.get::<_, String>(5)?)?;
        if let Some(g) = grade {
            let matches = profile
                .grade
                .as_ref()
                .is_some_and(|pg| pg.code == g || pg.name == g);
            if !matches {
                continue;
            }
        }
        out.push(StatusChange {
            jodo_student_id: r.get(0)?,
            seq: r.get(6)?,
            change: StudentChange::parse(&kind).ok_or_else(|| {
                ProjectionError::Invariant(format!(
                    "student_history holds an unknown kind {kind:?}"
                ))
            })?,
            at: r.get(2)?,
            received_at: r.get(3)?,
            event_id: r.get(4)?,
            profile,
        });
    }
    Ok(out)
}

/// A student's statement: the student, their status events and payments.
#[derive(Debug, Clone)]
pub struct Statement {
    pub student: StudentState,
    pub timeline: Vec<StatusChange>,
    pub payments: Vec<KnownPayment>,
}

/// The statement of `jodo_student_id`, `None` when no such student was known.
pub fn statement(
    conn: &Connection,
    times: Times,
    jodo_student_id: &str,
) -> Result<Option<Statement>, ProjectionError> {
    let history: Vec<_> = super::student_history(conn, jodo_student_id)?
        .into_iter()
        .filter(|h| h.at <= times.as_of && h.received_at <= times.known_at)
        .collect();
    let Some(student) = crate::projection::fold::<crate::projection::entities::Students>(
        history
            .iter()
            .map(|h| crate::projection::HistoryRow {
                seq: h.seq,
                change: h.change,
                at: h.at,
                received_at: h.received_at,
                data: h.data.clone(),
            })
            .collect(),
    ) else {
        return Ok(None);
    };
    let timeline = history
        .into_iter()
        .map(|h| StatusChange {
            jodo_student_id: jodo_student_id.to_string(),
            seq: h.seq,
            change: h.change,
            at: h.at,
            received_at: h.received_at,
            event_id: None,
            profile: h.data,
        })
        .collect();
    let payments = student_payments_known(
        conn,
        times,
        jodo_student_id,
        Some(&student.profile.identifier),
    )?;
    Ok(Some(Statement {
        student,
        timeline,
        payments,
    }))
}

/// The four figures of a day book line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub recorded_count: u64,
    pub recorded_total: i128,
    pub cancelled_count: u64,
    pub cancelled_total: i128,
}

impl Figures {
    pub fn add(&mut self, status: PaymentStatus, amount: Money) {
        let minor = i128::from(amount.minor());
        match status {
            PaymentStatus::Recorded => {
                self.recorded_count += 1;
                self.recorded_total += minor;
            }
            PaymentStatus::Cancelled => {
                self.cancelled_count += 1;
                self.cancelled_total += minor;
            }
        }
    }

    /// Takes out one payment [`Figures::add`] put in; `None` if there was
    /// none of that status.
    fn take(&mut self, status: PaymentStatus, amount: Money) -> Option<()> {
        let minor = i128::from(amount.minor());
        let (count, total) = match status {
            PaymentStatus::Recorded => (&mut self.recorded_count, &mut self.recorded_total),
            PaymentStatus::Cancelled => (&mut self.cancelled_count, &mut self.cancelled_total),
        };
        *count = count.checked_sub(1)?;
        *total -= minor;
        Some(())
    }

    fn is_empty(&self) -> bool {
        self.recorded_count == 0 && self.cancelled_count == 0
    }

    pub fn merge(&mut self, o: &Figures) {
        self.recorded_count += o.recorded_count;
        self.recorded_total += o.recorded_total;
        self.cancelled_count += o.cancelled_count;
        self.cancelled_total += o.cancelled_total;
    }
}

/// A day book key: business date, mode, collector code.
pub type DayKey = (chrono::NaiveDate, String, Option<String>);

/// A business day's payments, what the day book adds up of them: read off
/// the covering index, with the collector code resolved in SQLite.
const DAY_PAYMENTS: &str = concat!(
    "SELECT p.mode, ",
    crate::payment_collector!(),
    ", p.status, p.amount_minor FROM payments p WHERE p.paid_at >= ?1 AND p.paid_at < ?2"
);

/// One business day's figures, keyed by mode and collector code as the
/// bytes SQLite hands over: a payment is added without a string allocated
/// or checked (they are, once per key, when the day is done).
#[derive(Default)]
struct DayFigures {
    by_key: HashMap<Vec<u8>, Figures>,
    scratch: Vec<u8>,
}

/// Separates a key's mode from its collector code; marks a missing one.
/// Neither byte occurs in UTF-8 text.
const KEY_SEPARATOR: u8 = 0xFF;
const NO_COLLECTOR: u8 = 0xFE;

impl DayFigures {
    fn add(&mut self, mode: &[u8], collector: Option<&[u8]>, status: PaymentStatus, amount: i64) {
        self.scratch.clear();
        self.scratch.extend_from_slice(mode);
        self.scratch.push(KEY_SEPARATOR);
        match collector {
            Some(c) => self.scratch.extend_from_slice(c),
            None => self.scratch.push(NO_COLLECTOR),
        }
        let figures = match self.by_key.get_mut(self.scratch.as_slice()) {
            Some(f) => f,
            None => self.by_key.entry(self.scratch.clone()).or_default(),
        };
        figures.add(status, Money::from_minor(amount));
    }

    /// The day's figures under their (mode, collector code).
    fn drain(
        &mut self,
    ) -> impl Iterator<Item = Result<((String, Option<String>), Figures), ProjectionError>> + '_
    {
        self.by_key.drain().map(|(key, f)| {
            let text = |b: &[u8]| {
                String::from_utf8(b.to_vec()).map_err(|e| {
                    ProjectionError::Invariant(format!(
                        "payments holds text that is not UTF-8: {e}"
                    ))
                })
            };
            let at = key
                .iter()
                .position(|b| *b == KEY_SEPARATOR)
                .ok_or_else(|| {
                    ProjectionError::Invariant("a day book key without its separator".into())
                })?;
            let (mode, collector) = (&key[..at], &key[at + 1..]);
            let collector = match collector {
                [NO_COLLECTOR] => None,
                c => Some(text(c)?),
            };
            Ok(((text(mode)?, collector), f))
        })
    }
}

/// One payment's current row, as [`CURRENT_LINES`] reads it.
const CURRENT_LINE: &str = "SELECT payment_id, paid_at, amount_minor, status, mode, collector_code,
        jodo_student_id, student_identifier, transaction_id, cancelled_at, revisions,
        first_received_at, last_received_at
   FROM payments WHERE payment_id = ?1";

/// The day book: figures per (business date, mode, collector code) of the
/// payments paid in [from, to] (unix seconds) as known at and as of `times`,
/// filtered by mode and collector code when given.
///
/// Today's figures are added up a business day at a time. The
/// payments whose current row is not their fold at `times` ([`REFOLDED`])
/// are then taken out as they stand and put back as folded.
pub fn day_book(
    conn: &Connection,
    times: Times,
    from: i64,
    to: i64,
    zone: chrono_tz::Tz,
    mode: Option<&str>,
    collector_code: Option<&str>,
) -> Result<BTreeMap<DayKey, Figures>, ProjectionError> {
    let keep = |m: &str, c: Option<&str>| {
        mode.is_none_or(|x| x == m) && collector_code.is_none_or(|x| Some(x) == c)
    };
    let mut book: BTreeMap<DayKey, Figures> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(DAY_PAYMENTS)?;
    let mut day = DayFigures::default();
    let mut start = from;
    while start <= to {
        let date = business_date(start, zone);
        let (_, end) = day_bounds(date, zone);
        // The next business day's start, or just past `to`.
        let stop = end.max(start.saturating_add(1)).min(to.saturating_add(1));
        let mut rows = stmt.query((start, stop))?;
        while let Some(r) = rows.next()? {
            let status = r.get_ref(2)?.as_str()?;
            let status = PaymentStatus::parse(status).ok_or_else(|| {
                ProjectionError::Invariant(format!("payments holds an unknown status {status:?}"))
            })?;
            day.add(
                r.get_ref(0)?.as_bytes()?,
                r.get_ref(1)?.as_bytes_or_null()?,
                status,
                r.get(3)?,
            );
        }
        for entry in day.drain() {
            let ((m, c), f) = entry?;
            if keep(&m, c.as_deref()) {
                book.insert((date, m, c), f);
            }
        }
        if stop == i64::MAX {
            break;
        }
        start = stop;
    }
    let mut links = Links::default();
    let mut stmt = conn.prepare_cached(CURRENT_LINE)?;
    let mut current = Line::empty();
    for id in refolded(conn, times)? {
        let mut rows = stmt.query([&id])?;
        if let Some(r) = rows.next()? {
            fill_line(conn, r, &mut links, &mut current)?;
            if (from..=to).contains(&current.paid_at)
                && keep(&current.mode, current.collector_code.as_deref())
            {
                let key = (
                    business_date(current.paid_at, zone),
                    current.mode.clone(),
                    current.collector_code.clone(),
                );
                let f = book.get_mut(&key).ok_or_else(|| {
                    ProjectionError::Invariant(format!(
                        "payment {id} is not in the day book it was summed in"
                    ))
                })?;
                f.take(current.status, current.amount).ok_or_else(|| {
                    ProjectionError::Invariant(format!(
                        "payment {id} is not in the day book it was summed in"
                    ))
                })?;
                if f.is_empty() {
                    book.remove(&key);
                }
            }
        }
        if let Some((state, revs)) = fold_known(payments::revisions(conn, &id)?, times) {
            let line = Line::known(conn, &state, &revs, &mut links)?;
            if (from..=to).contains(&line.paid_at)
                && keep(&line.mode, line.collector_code.as_deref())
            {
                book.entry((
                    business_date(line.paid_at, zone),
                    line.mode.clone(),
                    line.collector_code.clone(),
                ))
                .or_default()
                .add(line.status, line.amount);
            }
        }
    }
    Ok(book)
}

/// The business date of a unix time.
pub fn business_date(secs: i64, zone: chrono_tz::Tz) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .with_timezone(&zone)
        .date_naive()
}

/// Business dates of times that mostly come in order: the day last found
/// answers the next time in it without asking the zone's rules again.
pub struct BusinessDays {
    zone: chrono_tz::Tz,
    /// [start, end) in unix seconds, and its date.
    last: Option<(i64, i64, chrono::NaiveDate)>,
}

impl BusinessDays {
    pub fn new(zone: chrono_tz::Tz) -> BusinessDays {
        BusinessDays { zone, last: None }
    }

    /// The business date of `secs` and the first second after that day.
    pub fn day(&mut self, secs: i64) -> (chrono::NaiveDate, i64) {
        if let Some((start, end, date)) = self.last {
            if (start..end).contains(&secs) {
                return (date, end);
            }
        }
        let date = business_date(secs, self.zone);
        let (start, end) = day_bounds(date, self.zone);
        self.last = Some((start, end, date));
        (date, end)
    }
}

/// [start, end) of a business date in unix seconds.
fn day_bounds(date: chrono::NaiveDate, zone: chrono_tz::Tz) -> (i64, i64) {
    let next = date.succ_opt().unwrap_or(date);
    (day_start(date, zone), day_start(next, zone))
}

/// The first instant of a business date, unix seconds: local midnight, or
/// where a zone's clock change skips midnight, the first hour that exists.
pub fn day_start(date: chrono::NaiveDate, zone: chrono_tz::Tz) -> i64 {
    use chrono::TimeZone;
    (0..3)
        .find_map(|h| {
            let local = date.and_hms_opt(h, 0, 0)?;
            zone.from_local_datetime(&local).earliest()
        })
        .map(|t| t.timestamp())
        .unwrap_or_else(|| date.and_time(chrono::NaiveTime::MIN).and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::store;

    fn plan(sql: &str, params: impl rusqlite::Params) -> String {
        let conn = Connection::open_in_memory().unwrap();
        store::create_schema(&conn).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(params, |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        plan.join("\n")
    }

    #[test]
    fn the_reports_read_a_years_payments_from_the_covering_index_alone_in_order() {
        let plan = plan(CURRENT_LINES, (0, 1));
        assert!(plan.contains("COVERING INDEX payments_paid_at"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn the_status_changes_are_the_history_rows_of_status_change_kinds_only() {
        let conn = Connection::open_in_memory().unwrap();
        store::create_schema(&conn).unwrap();
        let profile = StudentProfile {
            jodo_student_id: "s1".into(),
            identifier: "1".into(),
            custom_identifier: None,
            collector_code: None,
            grade: None,
            academic_year_start: None,
            academic_year_end: None,
            primary_contact_number: None,
            primary_contact_email: None,
            notes: Vec::new(),
        };
        let doc = serde_json::to_string(&profile).unwrap();
        // A kind no StudentChange stores: a status change is only a kind that
        // says it is one, not whatever the history table holds.
        for (seq, kind) in [(1, "registered"), (2, "renamed"), (3, "dropped")] {
            conn.execute(
                "INSERT INTO student_history (seq, entity, kind, at, received_at, event_id, doc)
                 VALUES (?1, 's1', ?2, ?1, ?1, 'e', ?3)",
                (seq, kind, &doc),
            )
            .unwrap();
        }
        let times = Times {
            as_of: 10,
            known_at: 10,
        };
        let found: Vec<_> = status_changes(&conn, times, 0, 10, None)
            .unwrap()
            .into_iter()
            .map(|s| (s.seq, s.change))
            .collect();
        assert_eq!(
            found,
            [(1, StudentChange::Registered), (3, StudentChange::Dropped)]
        );
    }

    #[test]
    fn the_payments_to_refold_are_found_by_two_index_range_scans() {
        let plan = plan(REFOLDED, (0, 1));
        assert!(plan.contains("payment_revisions_received"), "{plan}");
        assert!(plan.contains("payment_revisions_at"), "{plan}");
        assert!(!plan.contains("SCAN payment_revisions"), "{plan}");
    }
}
