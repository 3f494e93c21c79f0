//! The finance reports as answers: their parameters parsed and validated
//! (shared by `/v1/reports/...` and `registrar report`), and their rendering
//! as JSON and as CSV, streamed as the rows are read ([`sink`]). The data
//! comes from [`crate::projection::query::reports`]; HTTP and the CLI call
//! [`write`], so both produce the same bytes.
//!
//! One file per report: [`day_book`], [`register`], [`statement`],
//! [`changes`], [`status_changes`].

mod changes;
mod day_book;
mod register;
mod sink;
mod statement;
mod status_changes;

use std::io::Write;

use chrono::{DateTime, Days, NaiveDate};
use chrono_tz::Tz;
use rusqlite::Connection;
use serde_json::json;

use crate::projection::entities::PaymentStatus;
use crate::projection::query::reports::{self as data, day_start, Times};
use crate::projection::ProjectionError;
pub use sink::neutralise;
use sink::{rfc3339, rfc3339_micros, Sink};

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
    /// The log's newest checkpoint when the report was asked for: the
    /// answer names it when it covers the report's seq.
    pub checkpoint: Option<Checkpoint>,
}

/// A checkpoint a report names: the tree size and root an auditor checks
/// the report's seq against (README, The Merkle tree and signed checkpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub size: u64,
    pub root: [u8; 32],
}

impl From<&crate::log::checkpoints::Stored> for Checkpoint {
    fn from(c: &crate::log::checkpoints::Stored) -> Checkpoint {
        Checkpoint {
            size: c.size,
            root: c.root,
        }
    }
}

impl Checkpoint {
    /// `<tree size> <base64 root>`, as the `X-Registrar-Checkpoint` header
    /// carries it.
    pub fn header_value(&self) -> String {
        format!("{} {}", self.size, base64_root(&self.root))
    }
}

fn base64_root(root: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(root)
}

impl Request {
    /// The checkpoint the answer names: the newest, when it covers `seq`.
    pub fn covering(&self, seq: u64) -> Option<Checkpoint> {
        self.checkpoint.filter(|c| c.size >= seq)
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
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

/// Why a report could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// Writing the answer failed (the file, or the client went away).
    #[error("writing the report: {0}")]
    Write(String),
}

impl From<std::io::Error> for ReportError {
    fn from(e: std::io::Error) -> Self {
        ReportError::Write(e.to_string())
    }
}

impl From<csv::Error> for ReportError {
    fn from(e: csv::Error) -> Self {
        ReportError::Write(e.to_string())
    }
}

impl From<serde_json::Error> for ReportError {
    fn from(e: serde_json::Error) -> Self {
        ReportError::Write(e.to_string())
    }
}

impl From<rusqlite::Error> for ReportError {
    fn from(e: rusqlite::Error) -> Self {
        ReportError::Projection(e.into())
    }
}

/// What an answer says of its body before the body: known from the request
/// alone, so HTTP can send its headers before the first row is read.
pub struct Headers {
    pub content_type: &'static str,
    /// `attachment; filename=...` for CSV.
    pub disposition: Option<String>,
    /// `X-Registrar-Checkpoint`: the checkpoint covering the report's seq
    /// ([`Request::covering`]), in CSV as in JSON.
    pub checkpoint: Option<String>,
}

impl Request {
    /// The answer's headers in `format`.
    pub fn headers(&self, format: Format) -> Headers {
        match format {
            Format::Json => Headers {
                content_type: "application/json",
                disposition: None,
                checkpoint: None,
            },
            Format::Csv => Headers {
                content_type: "text/csv; charset=utf-8",
                disposition: Some(format!("attachment; filename=\"{}.csv\"", self.label())),
                checkpoint: None,
            },
        }
    }

    /// The report and its range, for a filename.
    fn label(&self) -> String {
        match &self.report {
            Report::Statement { jodo_student_id } => {
                format!("statement_{}", file_part(jodo_student_id))
            }
            r => format!(
                "{}_{}",
                r.name(),
                self.range.as_ref().map(|g| g.label.as_str()).unwrap_or("")
            ),
        }
    }

    /// The range, or all time for a report that has none.
    fn range(&self) -> Range {
        self.range.clone().unwrap_or(Range {
            from: i64::MIN,
            to: i64::MAX,
            label: String::new(),
        })
    }
}

/// The log seq the store reflects, as a report's `seq` says it.
pub fn position(conn: &Connection) -> Result<u64, ReportError> {
    Ok(data::position(conn)?)
}

/// Runs the report on one snapshot of the store (the caller's transaction)
/// and writes its answer to `out` as it goes: rows are rendered as they are
/// read, so memory does not grow with the report.
pub fn write(
    conn: &Connection,
    req: &Request,
    format: Format,
    out: &mut (dyn Write + Send),
) -> Result<(), ReportError> {
    let seq = data::position(conn)?;
    let mut head = serde_json::Map::new();
    head.insert("report".into(), json!(req.report.name()));
    head.insert("as_of".into(), json!(rfc3339(req.times.as_of)));
    head.insert("known_at".into(), json!(rfc3339_micros(req.times.known_at)));
    head.insert("seq".into(), json!(seq));
    // Null until a checkpoint covers the seq (the next is made within the
    // checkpoint interval).
    head.insert(
        "checkpoint".into(),
        match req.covering(seq) {
            Some(c) => json!({ "tree_size": c.size, "root": base64_root(&c.root) }),
            None => serde_json::Value::Null,
        },
    );
    head.insert("business_zone".into(), json!(req.zone.name()));
    if let Some(r) = &req.range {
        head.insert("from".into(), json!(rfc3339(r.from)));
        head.insert("to".into(), json!(rfc3339(r.to)));
    }
    let range = req.range();
    let zone = req.zone;
    match &req.report {
        Report::DayBook {
            mode,
            collector_code,
        } => day_book::write(
            conn,
            req.times,
            &range,
            zone,
            mode.as_deref(),
            collector_code.as_deref(),
            Sink::new(format, out, head),
        ),
        Report::Payments {
            status,
            mode,
            collector_code,
        } => register::write(
            conn,
            req.times,
            &range,
            zone,
            register::Filter {
                status: *status,
                mode: mode.as_deref(),
                collector_code: collector_code.as_deref(),
            },
            Sink::new(format, out, head),
        ),
        Report::Statement { jodo_student_id } => statement::write(
            conn,
            req.times,
            zone,
            jodo_student_id,
            Sink::new(format, out, head),
        ),
        Report::Changes => {
            changes::write(conn, req.times, &range, zone, Sink::new(format, out, head))
        }
        Report::StatusChanges { grade } => status_changes::write(
            conn,
            req.times,
            &range,
            zone,
            grade.as_deref(),
            Sink::new(format, out, head),
        ),
    }
}
