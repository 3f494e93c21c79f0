//! A student's statement: the profile, the status timeline, every payment
//! with its revisions, and the totals recorded and cancelled.

use chrono_tz::Tz;
use rusqlite::Connection;
use serde_json::{json, Map};

use super::sink::{money, rfc3339, rfc3339_micros, Sink, Text};
use super::ReportError;
use crate::projection::query::reports::{self as data, business_date, Figures, Times};

const HEADER: &[&str] = &[
    "payment_id",
    "paid_at",
    "business_date",
    "amount",
    "status",
    "mode",
    "revisions",
    "cancelled_at",
];

#[derive(serde::Serialize)]
struct Row<'a> {
    payment_id: Text<'a>,
    paid_at: String,
    business_date: chrono::NaiveDate,
    amount: String,
    status: &'static str,
    mode: Text<'a>,
    revisions: usize,
    cancelled_at: Option<String>,
}

pub(super) fn write(
    conn: &Connection,
    times: Times,
    zone: Tz,
    jodo_student_id: &str,
    mut sink: Sink,
) -> Result<(), ReportError> {
    let st = data::statement(conn, times, jodo_student_id)?
        .ok_or_else(|| ReportError::NotFound(format!("no student has id {jodo_student_id:?}")))?;
    let p = &st.student.profile;
    sink.head(
        "student",
        json!({
            "jodo_student_id": p.jodo_student_id,
            "identifier": p.identifier,
            "custom_identifier": p.custom_identifier,
            "grade": p.grade.as_ref().map(|g| g.code.clone()),
            "status": st.student.status.as_str(),
            "status_since": rfc3339(st.student.status_since),
            "registered_at": st.student.registered_at.map(rfc3339),
        }),
    );
    sink.head(
        "timeline",
        st.timeline
            .iter()
            .map(|t| json!({"event": t.change.as_str(), "at": rfc3339(t.at), "received_at": rfc3339_micros(t.received_at)}))
            .collect(),
    );
    sink.begin("payments", HEADER)?;
    let mut totals = Figures::default();
    for k in &st.payments {
        let r = &k.state.record;
        totals.add(k.state.status, r.amount);
        let cancelled_at = k.state.cancelled_at.map(rfc3339);
        if sink.is_csv() {
            sink.item(&Row {
                payment_id: sink.text(&r.payment_id),
                paid_at: rfc3339(r.paid_at),
                business_date: business_date(r.paid_at, zone),
                amount: r.amount.to_string(),
                status: k.state.status.as_str(),
                mode: sink.text(&r.mode),
                revisions: k.revisions.len(),
                cancelled_at,
            })?;
            continue;
        }
        sink.item(&json!({
            "payment_id": r.payment_id,
            "paid_at": rfc3339(r.paid_at),
            "business_date": business_date(r.paid_at, zone).to_string(),
            "amount": r.amount.to_string(),
            "status": k.state.status.as_str(),
            "mode": r.mode,
            "cancelled_at": cancelled_at,
            "revisions": k.revisions.iter().map(|v| json!({
                "event": v.change.as_str(),
                "at": rfc3339(v.at),
                "received_at": rfc3339_micros(v.received_at),
                "event_id": v.event_id,
                "seq": v.seq,
                "amount": v.record.amount.to_string(),
                "mode": v.record.mode,
                "paid_at": rfc3339(v.record.paid_at),
            })).collect::<Vec<_>>(),
        }))?;
    }
    let mut tail = Map::new();
    tail.insert("total_recorded".into(), json!(money(totals.recorded_total)));
    tail.insert(
        "total_cancelled".into(),
        json!(money(totals.cancelled_total)),
    );
    sink.end(tail)
}
