//! The finance reports as answers: their parameters parsed and validated
//! (shared by `/v1/reports/...` and `registrar report`), and their rendering
//! as JSON and as CSV. The data comes from [`crate::projection::query::reports`];
//! HTTP and the CLI call [`run`], so both produce the same bytes.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, SecondsFormat, TimeZone};
use chrono_tz::Tz;
use rusqlite::Connection;
use serde_json::{json, Value};

use crate::money::Total;
use crate::projection::entities::PaymentStatus;
use crate::projection::query::reports::{self as data, Figures, KnownPayment, Times};
use crate::projection::ProjectionError;

/// The zone business days are counted in unless configured.
pub const DEFAULT_BUSINESS_ZONE: Tz = chrono_tz::Asia::Kolkata;

/// The longest range a report covers: a year (a leap year's 366 days). It
/// bounds the rows one answer reads and holds.
pub const MAX_RANGE_DAYS: i64 = 366;

/// A parameter that does not parse or validate: answered 400 naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ParamError {
    pub name: &'static str,
    pub message: String,
}

fn bad(name: &'static str, message: impl Into<String>) -> ParamError {
    ParamError {
        name,
        message: message.into(),
    }
}

/// The reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    DayBook {
        mode: Option<String>,
        collector_code: Option<String>,
    },
    Payments {
        status: Option<PaymentStatus>,
        mode: Option<String>,
        collector_code: Option<String>,
    },
    Statement {
        jodo_student_id: String,
    },
    Changes,
    StatusChanges {
        grade: Option<String>,
    },
}

impl Report {
    pub fn name(&self) -> &'static str {
        match self {
            Report::DayBook { .. } => "day-book",
            Report::Payments { .. } => "payments",
            Report::Statement { .. } => "statement",
            Report::Changes => "changes",
            Report::StatusChanges { .. } => "status-changes",
        }
    }
}

/// A validated range: instants (seconds) and the text given, for the filename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
    pub label: String,
}

/// Everything a report needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub report: Report,
    /// None for a statement.
    pub range: Option<Range>,
    pub times: Times,
    pub zone: Tz,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
}

/// The start of a business date, unix seconds.
fn day_start(d: NaiveDate, zone: Tz) -> i64 {
    let local = d.and_time(NaiveTime::MIN);
    zone.from_local_datetime(&local)
        .earliest()
        .map(|t| t.timestamp())
        .unwrap_or_else(|| local.and_utc().timestamp())
}

/// The last microsecond of a business date.
fn day_end_micros(d: NaiveDate, zone: Tz) -> i64 {
    let next = d.checked_add_days(Days::new(1)).unwrap_or(d);
    day_start(next, zone) * 1_000_000 - 1
}

/// An instant: RFC 3339, or `yyyy-mm-dd` meaning the start (or with `end`
/// the end) of that business day. Microseconds.
pub fn parse_time(name: &'static str, text: &str, zone: Tz, end: bool) -> Result<i64, ParamError> {
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(if end {
            day_end_micros(d, zone)
        } else {
            day_start(d, zone) * 1_000_000
        });
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|_| bad(name, "must be an RFC 3339 time or a date yyyy-mm-dd"))
}

/// `as_of` and `known_at`, both defaulting to `now` (microseconds).
pub fn parse_times(
    as_of: Option<&str>,
    known_at: Option<&str>,
    zone: Tz,
    now: i64,
) -> Result<Times, ParamError> {
    let as_of = match as_of {
        Some(t) => parse_time("as_of", t, zone, true)?,
        None => now,
    };
    let known_at = match known_at {
        Some(t) => parse_time("known_at", t, zone, true)?,
        None => now,
    };
    Ok(Times {
        as_of: as_of.div_euclid(1_000_000),
        known_at,
    })
}

/// `from` and `to`, both required: at most [`MAX_RANGE_DAYS`] apart, `to`
/// not before `from`.
pub fn parse_range(from: Option<&str>, to: Option<&str>, zone: Tz) -> Result<Range, ParamError> {
    let f_text = from.ok_or_else(|| bad("from", "is required"))?;
    let t_text = to.ok_or_else(|| bad("to", "is required"))?;
    let f = parse_time("from", f_text, zone, false)?;
    let t = parse_time("to", t_text, zone, true)?;
    if t < f {
        return Err(bad("to", "must not be before from"));
    }
    if t - f >= MAX_RANGE_DAYS * 86_400 * 1_000_000 {
        return Err(bad(
            "to",
            format!("is more than {MAX_RANGE_DAYS} days after from"),
        ));
    }
    Ok(Range {
        from: f.div_euclid(1_000_000),
        to: t.div_euclid(1_000_000),
        label: format!("{}_{}", file_part(f_text), file_part(t_text)),
    })
}

/// Text safe in a filename: letters, digits, `-`; anything else is `-`.
fn file_part(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A rendered report.
pub struct Rendered {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// `attachment; filename=...` for CSV.
    pub disposition: Option<String>,
}

/// Why a report could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("writing CSV: {0}")]
    Csv(String),
}

fn rfc3339(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

fn rfc3339_micros(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_else(|| micros.to_string())
}

fn money(minor: i128) -> String {
    Total::from_minor(minor).to_string()
}

/// A cell a spreadsheet would execute (`=`, `+`, `-`, `@`, tab, CR first)
/// prefixed with `'`, as OWASP advises against CSV injection.
pub fn neutralise(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_string(),
    }
}

/// A text cell: neutralised; empty for none.
fn cell(text: Option<&str>) -> String {
    text.map(neutralise).unwrap_or_default()
}

fn figures_json(f: &Figures) -> Value {
    json!({
        "recorded_count": f.recorded_count,
        "recorded_total": money(f.recorded_total),
        "cancelled_count": f.cancelled_count,
        "cancelled_total": money(f.cancelled_total),
    })
}

/// Runs the report on one snapshot of the store and renders it.
pub fn run(conn: &Connection, req: &Request, format: Format) -> Result<Rendered, ReportError> {
    let seq = data::position(conn)?;
    let zone = req.zone;
    let mut head = serde_json::Map::new();
    head.insert("report".into(), json!(req.report.name()));
    head.insert("as_of".into(), json!(rfc3339(req.times.as_of)));
    head.insert("known_at".into(), json!(rfc3339_micros(req.times.known_at)));
    head.insert("seq".into(), json!(seq));
    head.insert("business_zone".into(), json!(zone.name()));
    if let Some(r) = &req.range {
        head.insert("from".into(), json!(rfc3339(r.from)));
        head.insert("to".into(), json!(rfc3339(r.to)));
    }
    let range = req.range.clone().unwrap_or(Range {
        from: i64::MIN,
        to: i64::MAX,
        label: String::new(),
    });
    let header: Vec<&str>;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let label;
    match &req.report {
        Report::DayBook {
            mode,
            collector_code,
        } => {
            let pays = data::payments_known(conn, req.times, range.from, range.to)?;
            let book = data::day_book(&pays, zone, mode.as_deref(), collector_code.as_deref());
            let mut days: std::collections::BTreeMap<NaiveDate, Figures> = Default::default();
            let mut totals = Figures::default();
            let mut items = Vec::new();
            header = vec![
                "date",
                "mode",
                "collector_code",
                "recorded_count",
                "recorded_total",
                "cancelled_count",
                "cancelled_total",
            ];
            for ((date, mode, collector), f) in &book {
                days.entry(*date).or_default().merge(f);
                totals.merge(f);
                let mut item =
                    json!({"date": date.to_string(), "mode": mode, "collector_code": collector});
                item.as_object_mut()
                    .expect("an object")
                    .extend(figures_json(f).as_object().expect("an object").clone());
                items.push(item);
                rows.push(vec![
                    date.to_string(),
                    neutralise(mode),
                    cell(collector.as_deref()),
                    f.recorded_count.to_string(),
                    money(f.recorded_total),
                    f.cancelled_count.to_string(),
                    money(f.cancelled_total),
                ]);
            }
            let days: Vec<Value> = days
                .iter()
                .map(|(d, f)| {
                    let mut v = json!({"date": d.to_string()});
                    v.as_object_mut()
                        .expect("an object")
                        .extend(figures_json(f).as_object().expect("an object").clone());
                    v
                })
                .collect();
            head.insert("items".into(), Value::Array(items));
            head.insert("days".into(), Value::Array(days));
            head.insert("totals".into(), figures_json(&totals));
            label = format!("day-book_{}", range.label);
        }
        Report::Payments {
            status,
            mode,
            collector_code,
        } => {
            let pays = data::payments_known(conn, req.times, range.from, range.to)?;
            header = vec![
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
            let mut items = Vec::new();
            for p in pays.iter().filter(|p| {
                status.is_none_or(|s| s == p.state.status)
                    && mode.as_deref().is_none_or(|m| m == p.state.record.mode)
                    && collector_code
                        .as_deref()
                        .is_none_or(|c| Some(c) == p.collector_code.as_deref())
            }) {
                let r = &p.state.record;
                let late = changed_after_close(p, zone);
                items.push(json!({
                    "payment_id": r.payment_id,
                    "paid_at": rfc3339(r.paid_at),
                    "business_date": data::business_date(r.paid_at, zone).to_string(),
                    "amount": r.amount.to_string(),
                    "status": p.state.status.as_str(),
                    "mode": r.mode,
                    "collector_code": p.collector_code,
                    "jodo_student_id": p.linked,
                    "student_identifier": r.student_identifier,
                    "transaction_id": r.transaction_id,
                    "revisions": p.revisions.len(),
                    "cancelled_at": p.state.cancelled_at.map(rfc3339),
                    "changed_after_close": late,
                }));
                rows.push(vec![
                    neutralise(&r.payment_id),
                    rfc3339(r.paid_at),
                    data::business_date(r.paid_at, zone).to_string(),
                    r.amount.to_string(),
                    p.state.status.as_str().into(),
                    neutralise(&r.mode),
                    cell(p.collector_code.as_deref()),
                    cell(p.linked.as_deref()),
                    cell(r.student_identifier.as_deref()),
                    cell(r.transaction_id.as_deref()),
                    p.revisions.len().to_string(),
                    p.state.cancelled_at.map(rfc3339).unwrap_or_default(),
                    late.to_string(),
                ]);
            }
            head.insert("items".into(), Value::Array(items));
            label = format!("payments_{}", range.label);
        }
        Report::Statement { jodo_student_id } => {
            let st = data::statement(conn, req.times, jodo_student_id)?.ok_or_else(|| {
                ReportError::NotFound(format!("no student has id {jodo_student_id:?}"))
            })?;
            let p = &st.student.profile;
            head.insert(
                "student".into(),
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
            head.insert(
                "timeline".into(),
                st.timeline
                    .iter()
                    .map(|t| json!({"event": t.change.as_str(), "at": rfc3339(t.at), "received_at": rfc3339_micros(t.received_at)}))
                    .collect(),
            );
            header = vec![
                "payment_id",
                "paid_at",
                "business_date",
                "amount",
                "status",
                "mode",
                "revisions",
                "cancelled_at",
            ];
            let mut items = Vec::new();
            let mut totals = Figures::default();
            for k in &st.payments {
                let r = &k.state.record;
                totals.add(&k.state);
                items.push(json!({
                    "payment_id": r.payment_id,
                    "paid_at": rfc3339(r.paid_at),
                    "business_date": data::business_date(r.paid_at, zone).to_string(),
                    "amount": r.amount.to_string(),
                    "status": k.state.status.as_str(),
                    "mode": r.mode,
                    "cancelled_at": k.state.cancelled_at.map(rfc3339),
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
                }));
                rows.push(vec![
                    neutralise(&r.payment_id),
                    rfc3339(r.paid_at),
                    data::business_date(r.paid_at, zone).to_string(),
                    r.amount.to_string(),
                    k.state.status.as_str().into(),
                    neutralise(&r.mode),
                    k.revisions.len().to_string(),
                    k.state.cancelled_at.map(rfc3339).unwrap_or_default(),
                ]);
            }
            head.insert("payments".into(), Value::Array(items));
            head.insert("total_recorded".into(), json!(money(totals.recorded_total)));
            head.insert(
                "total_cancelled".into(),
                json!(money(totals.cancelled_total)),
            );
            label = format!("statement_{}", file_part(jodo_student_id));
        }
        Report::Changes => {
            let from = range.from.saturating_mul(1_000_000);
            let to = range.to.saturating_mul(1_000_000).saturating_add(999_999);
            let changes = data::changes(conn, req.times, from, to)?;
            header = vec![
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
            let mut items = Vec::new();
            for c in &changes {
                let v = &c.revision;
                items.push(json!({
                    "payment_id": v.record.payment_id,
                    "event": v.change.as_str(),
                    "received_at": rfc3339_micros(v.received_at),
                    "at": rfc3339(v.at),
                    "event_id": v.event_id,
                    "seq": v.seq,
                    "changes": c.changes.iter().map(|f| json!({"field": f.field, "old": f.old, "new": f.new})).collect::<Vec<_>>(),
                }));
                for f in &c.changes {
                    rows.push(vec![
                        neutralise(&v.record.payment_id),
                        v.change.as_str().into(),
                        rfc3339_micros(v.received_at),
                        data::business_date(v.received_at.div_euclid(1_000_000), zone).to_string(),
                        rfc3339(v.at),
                        neutralise(&v.event_id),
                        v.seq.to_string(),
                        f.field.into(),
                        cell(f.old.as_deref()),
                        cell(f.new.as_deref()),
                    ]);
                }
            }
            head.insert("items".into(), Value::Array(items));
            label = format!("changes_{}", range.label);
        }
        Report::StatusChanges { grade } => {
            let list =
                data::status_changes(conn, req.times, range.from, range.to, grade.as_deref())?;
            header = vec![
                "jodo_student_id",
                "identifier",
                "grade",
                "event",
                "at",
                "business_date",
                "received_at",
                "event_id",
            ];
            let mut items = Vec::new();
            for s in &list {
                let grade = s.profile.grade.as_ref().map(|g| g.code.clone());
                items.push(json!({
                    "jodo_student_id": s.jodo_student_id,
                    "identifier": s.profile.identifier,
                    "grade": grade,
                    "event": s.change.as_str(),
                    "at": rfc3339(s.at),
                    "business_date": data::business_date(s.at, zone).to_string(),
                    "received_at": rfc3339_micros(s.received_at),
                    "event_id": s.event_id,
                }));
                rows.push(vec![
                    neutralise(&s.jodo_student_id),
                    neutralise(&s.profile.identifier),
                    cell(grade.as_deref()),
                    s.change.as_str().into(),
                    rfc3339(s.at),
                    data::business_date(s.at, zone).to_string(),
                    rfc3339_micros(s.received_at),
                    cell(s.event_id.as_deref()),
                ]);
            }
            head.insert("items".into(), Value::Array(items));
            label = format!("status-changes_{}", range.label);
        }
    }
    match format {
        Format::Json => {
            let mut body = serde_json::to_vec(&Value::Object(head))
                .map_err(|e| ReportError::Csv(e.to_string()))?;
            body.push(b'\n');
            Ok(Rendered {
                body,
                content_type: "application/json",
                disposition: None,
            })
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let csv_err = |e: csv::Error| ReportError::Csv(e.to_string());
            w.write_record(&header).map_err(csv_err)?;
            for r in &rows {
                w.write_record(r).map_err(csv_err)?;
            }
            let body = w
                .into_inner()
                .map_err(|e| ReportError::Csv(e.to_string()))?;
            Ok(Rendered {
                body,
                content_type: "text/csv; charset=utf-8",
                disposition: Some(format!("attachment; filename=\"{label}.csv\"")),
            })
        }
    }
}

/// Whether a revision of the payment was received after the business day
/// of its paid_at had ended (the day was closed).
fn changed_after_close(p: &KnownPayment, zone: Tz) -> bool {
    let first = p.first_received();
    let close = day_end_micros(data::business_date(p.state.record.paid_at, zone), zone);
    p.revisions
        .iter()
        .any(|r| r.received_at > first && r.received_at > close)
}
