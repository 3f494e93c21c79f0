//! Payments: the register, one payment with its revisions, a student's
//! payments and their total.
//!
//! How a payment links to its student, stated once: by the payment's own
//! `jodo_student_id`, else by the student whose `identifier` the payment
//! names (the lowest jodo_student_id if several share it). Its collector
//! code is its own, else that student's.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};

use super::doc;
use crate::event::{PaymentChange, PaymentRecord};
use crate::money::Total;
use crate::projection::entities::{PaymentState, PaymentStatus};
use crate::projection::{Kind, ProjectionError};

/// The collector code of payment row `p`: its own, else that of the student
/// it links to (by its jodo_student_id, else the lowest jodo_student_id
/// whose identifier it names). The rule of [`linked_student`] and
/// [`student_collector`] for SQL that aggregates many payments; SQLite's
/// COALESCE runs a lookup only for a payment without a code of its own.
#[macro_export]
#[doc(hidden)]
macro_rules! payment_collector {
    () => {
        "COALESCE(p.collector_code, CASE
            WHEN p.jodo_student_id IS NOT NULL THEN
                (SELECT s.collector_code FROM students s WHERE s.jodo_student_id = p.jodo_student_id)
            ELSE
                (SELECT s.collector_code FROM students s WHERE s.identifier = p.student_identifier
                  ORDER BY s.jodo_student_id LIMIT 1)
            END)"
    };
}

/// Whether payment row `p` has collector code ?N: its own, else its
/// student's. Each EXISTS is one indexed lookup.
macro_rules! collector_is {
    ($n:literal) => {
        concat!(
            "(p.collector_code = ?",
            $n,
            " OR (p.collector_code IS NULL AND (
               EXISTS (SELECT 1 FROM students s WHERE s.jodo_student_id = p.jodo_student_id
                       AND s.collector_code = ?",
            $n,
            ")
               OR (p.jodo_student_id IS NULL AND EXISTS (SELECT 1 FROM students s
                       WHERE s.identifier = p.student_identifier AND s.collector_code = ?",
            $n,
            ")))))"
        )
    };
}

/// What `GET /v1/payments` filters by; `None` does not filter.
#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    /// paid_at at or after, unix seconds.
    pub from: Option<i64>,
    /// paid_at at or before, unix seconds.
    pub to: Option<i64>,
    pub status: Option<PaymentStatus>,
    /// Free text: Jodo names the modes.
    pub mode: Option<String>,
    pub collector_code: Option<String>,
}

/// A payment's current state and the student it links to.
#[derive(Debug, Clone)]
pub struct LinkedPayment {
    pub state: PaymentState,
    /// The payment's own jodo_student_id, else that of the student whose
    /// identifier it names.
    pub linked: Option<String>,
}

/// The register's page: the cursor's row value comes first, so SQLite walks
/// `payments_paid_at` from it in order.
const PAYMENTS_PAGE: &str = concat!(
    "SELECT p.doc FROM payments p
     WHERE (p.paid_at, p.payment_id) > (?6, ?7) AND p.paid_at <= ?2 AND p.paid_at >= ?1
       AND (?3 IS NULL OR p.status = ?3)
       AND (?4 IS NULL OR p.mode = ?4)
       AND (?5 IS NULL OR ",
    collector_is!(5),
    ")
     ORDER BY p.paid_at, p.payment_id LIMIT ?8"
);

/// Up to `limit` payments after (paid_at, payment_id) `after`, in that order.
pub fn list(
    conn: &Connection,
    filter: &PaymentFilter,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<LinkedPayment>, ProjectionError> {
    let (a_at, a_id) = after.unwrap_or((i64::MIN, String::new()));
    let mut stmt = conn.prepare_cached(PAYMENTS_PAGE)?;
    let rows = stmt.query_map(
        (
            filter.from.unwrap_or(i64::MIN),
            filter.to.unwrap_or(i64::MAX),
            filter.status.map(PaymentStatus::as_str),
            &filter.mode,
            &filter.collector_code,
            a_at,
            a_id,
            i64::from(limit),
        ),
        |r| r.get::<_, String>(0),
    )?;
    let mut out = Vec::new();
    for row in rows {
        out.push(linked_payment(conn, doc(&row?)?)?);
    }
    Ok(out)
}

/// One payment and the student it links to.
pub fn get(conn: &Connection, payment_id: &str) -> Result<Option<LinkedPayment>, ProjectionError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT doc FROM payments WHERE payment_id = ?1")?
        .query_row([payment_id], |r| r.get(0))
        .optional()?;
    text.map(|t| linked_payment(conn, doc(&t)?)).transpose()
}

fn linked_payment(
    conn: &Connection,
    state: PaymentState,
) -> Result<LinkedPayment, ProjectionError> {
    Ok(LinkedPayment {
        linked: linked_student(conn, &state.record)?,
        state,
    })
}

/// The student a payment record links to: the rule of this module's header,
/// the one place it is written in Rust (one indexed lookup).
pub fn linked_student(
    conn: &Connection,
    record: &PaymentRecord,
) -> Result<Option<String>, ProjectionError> {
    if let Some(id) = &record.jodo_student_id {
        return Ok(Some(id.clone()));
    }
    match &record.student_identifier {
        Some(identifier) => student_by_identifier(conn, identifier),
        None => Ok(None),
    }
}

/// The student whose identifier a payment names: the lowest
/// jodo_student_id if several share it.
fn student_by_identifier(
    conn: &Connection,
    identifier: &str,
) -> Result<Option<String>, ProjectionError> {
    Ok(conn
        .prepare_cached(
            "SELECT jodo_student_id FROM students WHERE identifier = ?1 ORDER BY jodo_student_id LIMIT 1",
        )?
        .query_row([identifier], |r| r.get(0))
        .optional()?)
}

/// The collector code of a student (what a payment without one of its own
/// is counted under).
pub fn student_collector(
    conn: &Connection,
    jodo_student_id: &str,
) -> Result<Option<String>, ProjectionError> {
    Ok(conn
        .prepare_cached("SELECT collector_code FROM students WHERE jodo_student_id = ?1")?
        .query_row([jodo_student_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// [`linked_student`] and [`student_collector`] for a report over many
/// payments, remembered per student: most payments carry their student's id
/// and collector code and need neither; the others repeat a few students.
/// Holds what it looked up, never the payments.
#[derive(Default)]
pub struct Links {
    /// identifier → the student it links to.
    by_identifier: HashMap<String, Option<String>>,
    /// jodo_student_id → collector code.
    collector: HashMap<String, Option<String>>,
}

impl Links {
    /// The student whose identifier a payment names ([`linked_student`]).
    fn student_of(
        &mut self,
        conn: &Connection,
        identifier: &str,
    ) -> Result<Option<&str>, ProjectionError> {
        if !self.by_identifier.contains_key(identifier) {
            let found = student_by_identifier(conn, identifier)?;
            self.by_identifier.insert(identifier.to_string(), found);
        }
        Ok(self.by_identifier[identifier].as_deref())
    }

    /// A student's collector code ([`student_collector`]).
    fn collector_of(
        &mut self,
        conn: &Connection,
        jodo_student_id: &str,
    ) -> Result<Option<&str>, ProjectionError> {
        if !self.collector.contains_key(jodo_student_id) {
            let found = student_collector(conn, jodo_student_id)?;
            self.collector.insert(jodo_student_id.to_string(), found);
        }
        Ok(self.collector[jodo_student_id].as_deref())
    }

    /// The student a payment links to: its own jodo_student_id, else the
    /// one its identifier names.
    pub fn linked<'a>(
        &'a mut self,
        conn: &Connection,
        jodo_student_id: Option<&'a str>,
        identifier: Option<&str>,
    ) -> Result<Option<&'a str>, ProjectionError> {
        match (jodo_student_id, identifier) {
            (Some(id), _) => Ok(Some(id)),
            (None, Some(identifier)) => self.student_of(conn, identifier),
            (None, None) => Ok(None),
        }
    }

    /// A payment's collector code: its own, else its linked student's.
    pub fn collector<'a>(
        &'a mut self,
        conn: &Connection,
        own: Option<&'a str>,
        linked: Option<&str>,
    ) -> Result<Option<&'a str>, ProjectionError> {
        match (own, linked) {
            (Some(own), _) => Ok(Some(own)),
            (None, Some(student)) => self.collector_of(conn, student),
            (None, None) => Ok(None),
        }
    }
}

/// One revision of a payment, with the event that made it.
#[derive(Debug, Clone)]
pub struct Revision {
    pub seq: i64,
    pub change: PaymentChange,
    /// Provider time, unix seconds.
    pub at: i64,
    /// When registrar received it, unix microseconds.
    pub received_at: i64,
    pub event_id: String,
    pub record: PaymentRecord,
}

/// A payment's revisions in (provider time, seq) order.
pub fn revisions(conn: &Connection, payment_id: &str) -> Result<Vec<Revision>, ProjectionError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, kind, at, received_at, event_id, doc FROM payment_revisions
          WHERE entity = ?1 ORDER BY at, seq",
    )?;
    let mut rows = stmt.query([payment_id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(revision(r)?);
    }
    Ok(out)
}

/// A row `seq, kind, at, received_at, event_id, doc` of payment_revisions.
pub(crate) fn revision(r: &rusqlite::Row) -> Result<Revision, ProjectionError> {
    let kind: String = r.get(1)?;
    Ok(Revision {
        seq: r.get(0)?,
        change: PaymentChange::parse(&kind).ok_or_else(|| {
            ProjectionError::Invariant(format!("payment_revisions holds an unknown kind {kind:?}"))
        })?,
        at: r.get(2)?,
        received_at: r.get(3)?,
        event_id: r.get(4)?,
        record: doc(&r.get::<_, String>(5)?)?,
    })
}

/// A student's payments: linked by jodo_student_id (?1), or by identifier
/// (?2) when the payment has none. Two ordered range scans of the
/// `payments_student`/`payments_identifier` indexes, merged: no sort. (An OR
/// across the two columns makes SQLite scan every payment.)
macro_rules! linked_payments {
    () => {
        "WITH linked AS (
            SELECT paid_at, payment_id, doc, status, amount_minor FROM payments
             WHERE jodo_student_id = ?1
            UNION ALL
            SELECT paid_at, payment_id, doc, status, amount_minor FROM payments
             WHERE jodo_student_id IS NULL AND student_identifier = ?2)"
    };
}

/// One page of a student's payments after the cursor (?3, ?4), ?5 rows.
pub(crate) const STUDENT_PAYMENTS_PAGE: &str = concat!(
    linked_payments!(),
    " SELECT paid_at, payment_id, doc, status, amount_minor FROM linked
     WHERE (paid_at, payment_id) > (?3, ?4) ORDER BY paid_at, payment_id LIMIT ?5"
);

/// The sum of a student's recorded payments, in two halves: the amounts'
/// high bits (above 2^32) and low bits, each summed in SQLite's `i64`, then
/// joined in an `i128` ([`Total`]). A plain `SUM` would fail with
/// "integer overflow" once a student had ~92,000 payments of the maximum
/// amount; each half overflows only past 2^31 payments.
const STUDENT_PAYMENTS_TOTAL: &str = concat!(
    linked_payments!(),
    " SELECT COALESCE(SUM(amount_minor >> 32), 0), COALESCE(SUM(amount_minor & 4294967295), 0)
       FROM linked WHERE status = 'recorded'"
);

/// The ids of a student's payments, current links.
const STUDENT_PAYMENT_IDS: &str = concat!(linked_payments!(), " SELECT payment_id FROM linked");

/// The ids of the payments linked to a student now.
pub fn ids_of_student(
    conn: &Connection,
    jodo_student_id: &str,
    identifier: Option<&str>,
) -> Result<Vec<String>, ProjectionError> {
    Ok(conn
        .prepare_cached(STUDENT_PAYMENT_IDS)?
        .query_map((jodo_student_id, identifier), |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// Up to `limit` of a student's payments after (paid_at, payment_id)
/// `after`, in that order.
pub fn of_student(
    conn: &Connection,
    jodo_student_id: &str,
    identifier: Option<&str>,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<PaymentState>, ProjectionError> {
    let (a_at, a_id) = after.unwrap_or((i64::MIN, String::new()));
    let mut stmt = conn.prepare_cached(STUDENT_PAYMENTS_PAGE)?;
    let rows = stmt.query_map(
        (jodo_student_id, identifier, a_at, a_id, i64::from(limit)),
        |r| r.get::<_, String>(2),
    )?;
    let mut out = Vec::new();
    for row in rows {
        out.push(doc(&row?)?);
    }
    Ok(out)
}

/// The sum of a student's recorded payments.
pub fn student_total_recorded(
    conn: &Connection,
    jodo_student_id: &str,
    identifier: Option<&str>,
) -> Result<Total, ProjectionError> {
    let (high, low): (i64, i64) = conn
        .prepare_cached(STUDENT_PAYMENTS_TOTAL)?
        .query_row((jodo_student_id, identifier), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok(Total::from_minor(
        (i128::from(high) << 32) + i128::from(low),
    ))
}

/// The sum of the recorded payments among `states`.
pub fn total_recorded<'a>(states: impl IntoIterator<Item = &'a PaymentState>) -> Total {
    states
        .into_iter()
        .filter(|s| s.status == PaymentStatus::Recorded)
        .map(|s| s.record.amount)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::store;

    #[test]
    fn a_students_payments_page_is_read_in_index_order_without_a_sort() {
        let conn = Connection::open_in_memory().unwrap();
        store::create_schema(&conn).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {STUDENT_PAYMENTS_PAGE}"))
            .unwrap()
            .query_map(("s", "i", 0, "", 10), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        assert!(plan.contains("payments_student"), "{plan}");
        assert!(plan.contains("payments_identifier"), "{plan}");
    }

    #[test]
    fn the_register_is_read_in_paid_at_order_without_a_sort() {
        let conn = Connection::open_in_memory().unwrap();
        store::create_schema(&conn).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {PAYMENTS_PAGE}"))
            .unwrap()
            .query_map(
                (
                    0,
                    1,
                    None::<String>,
                    None::<String>,
                    None::<String>,
                    0,
                    "",
                    10,
                ),
                |r| r.get(3),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
