//! Changes: every payment revision received in the window, each changed
//! field's old and new value side by side. JSON has one item per revision
//! with its changes; CSV one record per changed field.

use chrono_tz::Tz;
use rusqlite::Connection;
use serde_json::{json, Map};

use super::sink::{rfc3339, rfc3339_micros, Sink};
use super::{neutralise, Range, ReportError};
use crate::projection::query::reports::{self as data, business_date, Times};

const HEADER: &[&str] = &[
    "payment_id",
    "event",
    "received_at",
    "received_date",
    "at",
    "event_id",
    "seq",
    "field",
    "old",
    "new",
];

pub(super) fn write(
    conn: &Connection,
    times: Times,
    range: &Range,
    zone: Tz,
    mut sink: Sink,
) -> Result<(), ReportError> {
    let from = range.from.saturating_mul(1_000_000);
    let to = range.to.saturating_mul(1_000_000).saturating_add(999_999);
    let changes = data::changes(conn, times, from, to)?;
    sink.begin("items", HEADER)?;
    for c in &changes {
        let v = &c.revision;
        sink.json_item(&json!({
            "payment_id": v.record.payment_id,
            "event": v.change.as_str(),
            "received_at": rfc3339_micros(v.received_at),
            "at": rfc3339(v.at),
            "event_id": v.event_id,
            "seq": v.seq,
            "changes": c.changes.iter().map(|f| json!({"field": f.field, "old": f.old, "new": f.new})).collect::<Vec<_>>(),
        }))?;
        for f in &c.changes {
            sink.record([
                neutralise(&v.record.payment_id),
                v.change.as_str().into(),
                rfc3339_micros(v.received_at),
                business_date(v.received_at.div_euclid(1_000_000), zone).to_string(),
                rfc3339(v.at),
                neutralise(&v.event_id),
                v.seq.to_string(),
                f.field.into(),
                f.old.as_deref().map(neutralise).unwrap_or_default(),
                f.new.as_deref().map(neutralise).unwrap_or_default(),
            ])?;
        }
    }
    sink.end(Map::new())
}
