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

pub(super) fn write(
    conn: &Connection,
    times: Times,
    range: &Range,
    zone: Tz,
    filter: Filter,
    mut sink: Sink,
) -> Result<(), ReportError> {
    sink.begin("items", HEADER)?;
    let mut days = BusinessDays::new(zone);
    data::lines(conn, times, range.from, range.to, |l| {
        if !filter.keeps(l) {
            return Ok(());
        }
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
    })?;
    sink.end(Map::new())
}

/// Whether a revision was received after the first one and after the
/// business day of its paid_at had ended (the day was closed).
fn changed_after_close(l: &Line, closed_at: i64) -> bool {
    l.last_received_at > l.first_received_at && l.last_received_at > closed_at
}
