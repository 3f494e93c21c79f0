//! The finance reports' data, each as of a provider time and as known at a
//! receipt time ([`Times`]). Rendering (JSON, CSV) is [`crate::report`]'s.
//!
//! A payment as known at K and as of T is the fold, with the same
//! [`Entity::step`] the projector uses, of its revisions received at or
//! before K whose provider time is at or before T. What counts as recorded
//! is the fold's status ([`PaymentStatus`]): recorded until a cancellation.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::payments::{self, revision, Revision};
use crate::event::{StudentChange, StudentProfile};
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

/// A payment as known at and as of [`Times`].
#[derive(Debug, Clone)]
pub struct KnownPayment {
    pub state: PaymentState,
    /// The revisions folded, in (provider time, seq) order.
    pub revisions: Vec<Revision>,
    /// The student it links to ([`payments::linked_student`]).
    pub linked: Option<String>,
    /// Its collector code: its own, else its student's.
    pub collector_code: Option<String>,
}

impl KnownPayment {
    /// When registrar first received any revision of it, microseconds.
    pub fn first_received(&self) -> i64 {
        self.revisions
            .iter()
            .map(|r| r.received_at)
            .min()
            .unwrap_or(i64::MAX)
    }
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

const REVISIONS_KNOWN: &str =
    "SELECT seq, kind, at, received_at, event_id, doc FROM payment_revisions
     WHERE received_at <= ?1 AND at <= ?2 ORDER BY entity, at, seq";

/// Every payment as known at and as of `times`, whose paid_at falls in
/// [from, to] (unix seconds, inclusive), in (paid_at, payment_id) order.
pub fn payments_known(
    conn: &Connection,
    times: Times,
    from: i64,
    to: i64,
) -> Result<Vec<KnownPayment>, ProjectionError> {
    let mut stmt = conn.prepare_cached(REVISIONS_KNOWN)?;
    let mut rows = stmt.query((times.known_at, times.as_of))?;
    let mut out = Vec::new();
    let mut current: Vec<Revision> = Vec::new();
    let flush = |revs: &mut Vec<Revision>, out: &mut Vec<(PaymentState, Vec<Revision>)>| {
        if let Some(k) = fold_known(std::mem::take(revs), times) {
            if (from..=to).contains(&k.0.record.paid_at) {
                out.push(k);
            }
        }
    };
    let mut folded = Vec::new();
    while let Some(r) = rows.next()? {
        let rev = revision(r)?;
        if current
            .last()
            .is_some_and(|l| l.record.payment_id != rev.record.payment_id)
        {
            flush(&mut current, &mut folded);
        }
        current.push(rev);
    }
    flush(&mut current, &mut folded);
    for (state, revisions) in folded {
        out.push(known(conn, state, revisions)?);
    }
    out.sort_by(|a, b| {
        (a.state.record.paid_at, &a.state.record.payment_id)
            .cmp(&(b.state.record.paid_at, &b.state.record.payment_id))
    });
    Ok(out)
}

fn known(
    conn: &Connection,
    state: PaymentState,
    revisions: Vec<Revision>,
) -> Result<KnownPayment, ProjectionError> {
    let linked = payments::linked_student(conn, &state.record)?;
    let collector_code = match (&state.record.collector_code, &linked) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(s)) => payments::student_collector(conn, s)?,
        (None, None) => None,
    };
    Ok(KnownPayment {
        state,
        revisions,
        linked,
        collector_code,
    })
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
    pub change: StudentChange,
    pub at: i64,
    pub received_at: i64,
    /// None in a statement's timeline (the history keeps it for the route).
    pub event_id: Option<String>,
    pub profile: StudentProfile,
}

const STATUS_CHANGES: &str =
    "SELECT entity, kind, at, received_at, event_id, doc FROM student_history
     WHERE at >= ?1 AND at <= ?2 AND at <= ?3 AND received_at <= ?4 ORDER BY at, seq";

/// Students registered, dropped and re-activated with a provider time in
/// [from, to] (seconds), of grade `grade` (a code or a name) if given.
pub fn status_changes(
    conn: &Connection,
    times: Times,
    from: i64,
    to: i64,
    grade: Option<&str>,
) -> Result<Vec<StatusChange>, ProjectionError> {
    let mut stmt = conn.prepare_cached(STATUS_CHANGES)?;
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
            change: h.change,
            at: h.at,
            received_at: h.received_at,
            event_id: None,
            profile: h.data,
        })
        .collect();
    let payments = payments_known(conn, times, i64::MIN, i64::MAX)?
        .into_iter()
        .filter(|p| p.linked.as_deref() == Some(jodo_student_id))
        .collect();
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
    pub fn add(&mut self, p: &PaymentState) {
        let minor = i128::from(p.record.amount.minor());
        match p.status {
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

    pub fn merge(&mut self, o: &Figures) {
        self.recorded_count += o.recorded_count;
        self.recorded_total += o.recorded_total;
        self.cancelled_count += o.cancelled_count;
        self.cancelled_total += o.cancelled_total;
    }
}

/// A day book key: business date, mode, collector code.
pub type DayKey = (chrono::NaiveDate, String, Option<String>);

/// The day book: figures per (business date, mode, collector code).
pub fn day_book(
    payments: &[KnownPayment],
    zone: chrono_tz::Tz,
    mode: Option<&str>,
    collector_code: Option<&str>,
) -> BTreeMap<DayKey, Figures> {
    let mut out: BTreeMap<DayKey, Figures> = BTreeMap::new();
    for p in payments {
        let r = &p.state.record;
        if mode.is_some_and(|m| m != r.mode) {
            continue;
        }
        if collector_code.is_some_and(|c| Some(c) != p.collector_code.as_deref()) {
            continue;
        }
        let date = business_date(r.paid_at, zone);
        out.entry((date, r.mode.clone(), p.collector_code.clone()))
            .or_default()
            .add(&p.state);
    }
    out
}

/// The business date of a unix time.
pub fn business_date(secs: i64, zone: chrono_tz::Tz) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .with_timezone(&zone)
        .date_naive()
}
