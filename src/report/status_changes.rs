//! Status changes: students registered, dropped and re-activated in the
//! window, by provider time.

use chrono_tz::Tz;
use rusqlite::Connection;
use serde::Serialize;
use serde_json::Map;

use super::sink::{rfc3339, rfc3339_micros, Sink, Text};
use super::{Range, ReportError};
use crate::projection::query::reports::{self as data, business_date, Times};

const HEADER: &[&str] = &[
    "jodo_student_id",
    "identifier",
    "grade",
    "event",
    "at",
    "business_date",
    "received_at",
    "event_id",
];

/// Fields in [`HEADER`]'s order: the CSV record and the JSON item.
#[derive(Serialize)]
struct Item<'a> {
    jodo_student_id: Text<'a>,
    identifier: Text<'a>,
    grade: Text<'a>,
    event: &'static str,
    at: String,
    business_date: chrono::NaiveDate,
    received_at: String,
    event_id: Text<'a>,
}

pub(super) fn write(
    conn: &Connection,
    times: Times,
    range: &Range,
    zone: Tz,
    grade: Option<&str>,
    mut sink: Sink,
) -> Result<(), ReportError> {
    let list = data::status_changes(conn, times, range.from, range.to, grade)?;
    sink.begin("items", HEADER)?;
    for s in &list {
        sink.item(&Item {
            jodo_student_id: sink.text(&s.jodo_student_id),
            identifier: sink.text(&s.profile.identifier),
            grade: sink.opt(s.profile.grade.as_ref().map(|g| g.code.as_str())),
            event: s.change.as_str(),
            at: rfc3339(s.at),
            business_date: business_date(s.at, zone),
            received_at: rfc3339_micros(s.received_at),
            event_id: sink.opt(s.event_id.as_deref()),
        })?;
    }
    sink.end(Map::new())
}
