//! The payment register: one line per payment with its current fields, its
//! student, its revision count, when it was cancelled, and whether it was
//! changed after its business day closed. Streamed: each line is written as
//! it is read.

use chrono::NaiveDate;
use chrono_tz::Tz;
use rusqlite::Connection;
use serde::Serialize;
use serde_json::Map;

use super::sink::{rfc3339, Sink, Text};
use super::{Range, ReportError};
use crate::projection::entities::PaymentStatus;
use crate::projection::query::reports::{self as data, BusinessDays, Line, Times};

const HEADER: &[&str] = &[
    "payment_id",
    "paid_at",
    "business_date",
    "amount",
    "status",
    "mode",
    "collector_code",
    "jodo_student_id",
    "student_identifier",
    "transaction_id",
    "revisions",
    "cancelled_at",
    "changed_after_close",
];

/// The register's filters; `None` does not filter.
pub(super) struct Filter<'a> {
    pub status: Option<PaymentStatus>,
    pub mode: Option<&'a str>,
    pub collector_code: Option<&'a str>,
}

impl Filter<'_> {
    fn keeps(&self, l: &Line) -> bool {
        self.status.is_none_or(|s| s == l.status)
            && self.mode.is_none_or(|m| m == l.mode)
            && self
                .collector_code
                .is_none_or(|c| Some(c) == l.collector_code.as_deref())
    }
}

/// Fields in [`HEADER`]'s order: the CSV record and the JSON item.
#[derive(Serialize)]
struct Item<'a> {
    payment_id: Text<'a>,
    paid_at: String,
    business_date: NaiveDate,
    amount: String,
    status: &'static str,
    mode: Text<'a>,
    collector_code: Text<'a>,
    jodo_student_id: Text<'a>,
    student_identifier: Text<'a>,
    transaction_id: Text<'a>,
    revisions: u64,
    cancelled_at: Option<String>,
    changed_after_close: bool,
}

/// Lines the reading thread hands the writing one at a time.
const LINES_PER_BATCH: usize = 1_024;
/// Batches in flight between the two: what the register holds at most.
const BATCHES_QUEUED: usize = 4;

/// What the reading thread sends the writing one.
enum Batch {
    Lines(Vec<Line>),
    /// Every line was read: the answer can be closed.
    Done,
}

/// Reads the lines on this thread and renders them on another: a year's
/// register is as much SQLite's work as CSV's or JSON's, and two cores do
/// both at once.
pub(super) fn write(
    conn: &Connection,
    times: Times,
    range: &Range,
    zone: Tz,
    filter: Filter,
    mut sink: Sink,
) -> Result<(), ReportError> {
    sink.begin("items", HEADER)?;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_QUEUED);
        let writer = scope.spawn(move || -> Result<(), ReportError> {
            let mut days = BusinessDays::new(zone);
            for batch in rx {
                match batch {
                    Batch::Lines(lines) => {
                        for l in &lines {
                            render(&mut sink, &mut days, l)?;
                        }
                    }
                    Batch::Done => return sink.end(Map::new()),
                }
            }
            // The reader stopped without finishing: the answer stays cut short.
            Err(ReportError::Write(
                "the register was not read to its end".into(),
            ))
        });
        let stopped = || ReportError::Write("the register's writer stopped".into());
        let mut batch = Vec::with_capacity(LINES_PER_BATCH);
        let read = data::lines(conn, times, range.from, range.to, |l| {
            if filter.keeps(l) {
                batch.push(l.clone());
            }
            if batch.len() == LINES_PER_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(LINES_PER_BATCH));
                tx.send(Batch::Lines(full)).map_err(|_| stopped())?;
            }
            Ok::<_, ReportError>(())
        })
        .and_then(|()| {
            tx.send(Batch::Lines(batch)).map_err(|_| stopped())?;
            tx.send(Batch::Done).map_err(|_| stopped())
        });
        drop(tx);
        let written = writer.join().expect("the register's writer panicked");
        // The writer's own error (the client went away) explains a send
        // that failed because of it.
        match (read, written) {
            (Err(e), _) if !matches!(e, ReportError::Write(_)) => Err(e),
            (_, Err(e)) => Err(e),
            (r, Ok(())) => r,
        }
    })
}

/// Writes one line of the register.
fn render(sink: &mut Sink, days: &mut BusinessDays, l: &Line) -> Result<(), ReportError> {
    // The day closed at its last microsecond.
    let (date, next_day) = days.day(l.paid_at);
    let closed_at = next_day * 1_000_000 - 1;
    sink.item(&Item {
        payment_id: sink.text(&l.payment_id),
        paid_at: rfc3339(l.paid_at),
        business_date: date,
        amount: l.amount.to_string(),
        status: l.status.as_str(),
        mode: sink.text(&l.mode),
        collector_code: sink.opt(l.collector_code.as_deref()),
        jodo_student_id: sink.opt(l.linked.as_deref()),
        student_identifier: sink.opt(l.student_identifier.as_deref()),
        transaction_id: sink.opt(l.transaction_id.as_deref()),
        revisions: l.revisions,
        cancelled_at: l.cancelled_at.map(rfc3339),
        changed_after_close: changed_after_close(l, closed_at),
    })
}

/// Whether a revision was received after the first one and after the
/// business day of its paid_at had ended (the day was closed).
fn changed_after_close(l: &Line, closed_at: i64) -> bool {
    l.last_received_at > l.first_received_at && l.last_received_at > closed_at
}
