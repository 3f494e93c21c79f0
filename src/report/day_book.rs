//! The day book: per business day, mode and collector code, the count and
//! total of recorded and of cancelled payments; subtotals per day, totals.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use rusqlite::Connection;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::sink::{money, Sink, Text};
use super::{Range, ReportError};
use crate::projection::query::reports::{self as data, Figures, Times};

const HEADER: &[&str] = &[
    "date",
    "mode",
    "collector_code",
    "recorded_count",
    "recorded_total",
    "cancelled_count",
    "cancelled_total",
];

/// Fields in [`HEADER`]'s order: the CSV record and the JSON item.
#[derive(Serialize)]
struct Item<'a> {
    date: NaiveDate,
    mode: Text<'a>,
    collector_code: Text<'a>,
    recorded_count: u64,
    recorded_total: String,
    cancelled_count: u64,
    cancelled_total: String,
}

#[derive(Serialize)]
struct FiguresOut {
    recorded_count: u64,
    recorded_total: String,
    cancelled_count: u64,
    cancelled_total: String,
}

impl From<&Figures> for FiguresOut {
    fn from(f: &Figures) -> Self {
        FiguresOut {
            recorded_count: f.recorded_count,
            recorded_total: money(f.recorded_total),
            cancelled_count: f.cancelled_count,
            cancelled_total: money(f.cancelled_total),
        }
    }
}

fn figures_json(f: &Figures) -> Value {
    serde_json::to_value(FiguresOut::from(f)).expect("figures serialize")
}

pub(super) fn write(
    conn: &Connection,
    times: Times,
    range: &Range,
    zone: Tz,
    mode: Option<&str>,
    collector_code: Option<&str>,
    mut sink: Sink,
) -> Result<(), ReportError> {
    let book = data::day_book(
        conn,
        times,
        range.from,
        range.to,
        zone,
        mode,
        collector_code,
    )?;
    sink.begin("items", HEADER)?;
    let mut days: BTreeMap<NaiveDate, Figures> = BTreeMap::new();
    let mut totals = Figures::default();
    for ((date, mode, collector), f) in &book {
        days.entry(*date).or_default().merge(f);
        totals.merge(f);
        sink.item(&Item {
            date: *date,
            mode: sink.text(mode),
            collector_code: sink.opt(collector.as_deref()),
            recorded_count: f.recorded_count,
            recorded_total: money(f.recorded_total),
            cancelled_count: f.cancelled_count,
            cancelled_total: money(f.cancelled_total),
        })?;
    }
    let days: Vec<Value> = days
        .iter()
        .map(|(d, f)| {
            let mut v = json!({"date": d.to_string()});
            if let (Some(o), Value::Object(fo)) = (v.as_object_mut(), figures_json(f)) {
                o.extend(fo);
            }
            v
        })
        .collect();
    let mut tail = Map::new();
    tail.insert("days".into(), Value::Array(days));
    tail.insert("totals".into(), figures_json(&totals));
    sink.end(tail)
}
