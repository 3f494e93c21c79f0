//! `/v1/reports/...`: the finance reports ([`crate::report`]) in JSON, or in
//! CSV with `?format=csv` or `Accept: text/csv`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::http::params::{resolve, Params};
use crate::http::{stream, ApiError, AppState};
use crate::projection::entities::PaymentStatus;
use crate::report::{self, Format, Report, Request};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/reports/day-book", get(day_book))
        .route("/v1/reports/payments", get(payments))
        .route("/v1/reports/statement/{student_id}", get(statement))
        .route("/v1/reports/changes", get(changes))
        .route("/v1/reports/status-changes", get(status_changes))
}

/// The parameters every report takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    as_of: Option<String>,
    known_at: Option<String>,
    format: Option<Format>,
    mode: Option<String>,
    collector_code: Option<String>,
    status: Option<PaymentStatus>,
    grade: Option<String>,
}

impl ReportQuery {
    /// Rejects a filter the report does not take.
    fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for (name, set) in [
            ("mode", self.mode.is_some()),
            ("collector_code", self.collector_code.is_some()),
            ("status", self.status.is_some()),
            ("grade", self.grade.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
        ] {
            if set && !allowed.contains(&name) {
                return Err(ApiError::bad_request(format!(
                    "{name}: this report does not take it"
                )));
            }
        }
        Ok(())
    }
}

fn format(q: &ReportQuery, headers: &HeaderMap) -> Format {
    if let Some(f) = q.format {
        return f;
    }
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|m| m.trim().starts_with("text/csv")));
    if wants_csv {
        Format::Csv
    } else {
        Format::Json
    }
}

async fn answer(
    app: AppState,
    q: ReportQuery,
    headers: HeaderMap,
    report: Report,
    student: Option<String>,
) -> Result<Response, ApiError> {
    let zone = app.config.business_zone;
    let times = report::parse_times(
        q.as_of.as_deref(),
        q.known_at.as_deref(),
        zone,
        crate::ledger::now_micros(),
    )?;
    let range = match report {
        Report::Statement { .. } => None,
        _ => Some(report::parse_range(
            q.from.as_deref(),
            q.to.as_deref(),
            zone,
        )?),
    };
    let format = format(&q, &headers);
    // The report runs on a blocking thread, on one snapshot held until its
    // last row is written ([`stream::report`]).
    stream::report(app.live.clone(), format, move |conn| {
        let report = match (report, student) {
            (Report::Statement { .. }, Some(id)) => Report::Statement {
                jodo_student_id: resolve(conn, &id)?,
            },
            (r, _) => r,
        };
        Ok(Request {
            report,
            range,
            times,
            zone,
        })
    })
    .await
}

/// `GET /v1/reports/day-book`.
pub async fn day_book(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<ReportQuery>,
) -> Result<Response, ApiError> {
    q.only(&["from", "to", "mode", "collector_code"])?;
    let r = Report::DayBook {
        mode: q.mode.clone(),
        collector_code: q.collector_code.clone(),
    };
    answer(app, q, headers, r, None).await
}

/// `GET /v1/reports/payments`: the register.
pub async fn payments(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<ReportQuery>,
) -> Result<Response, ApiError> {
    q.only(&["from", "to", "mode", "collector_code", "status"])?;
    let r = Report::Payments {
        status: q.status,
        mode: q.mode.clone(),
        collector_code: q.collector_code.clone(),
    };
    answer(app, q, headers, r, None).await
}

/// `GET /v1/reports/statement/{student_id}`.
pub async fn statement(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Params(q): Params<ReportQuery>,
) -> Result<Response, ApiError> {
    q.only(&[])?;
    let r = Report::Statement {
        jodo_student_id: String::new(),
    };
    answer(app, q, headers, r, Some(id)).await
}

/// `GET /v1/reports/changes`.
pub async fn changes(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<ReportQuery>,
) -> Result<Response, ApiError> {
    q.only(&["from", "to"])?;
    answer(app, q, headers, Report::Changes, None).await
}

/// `GET /v1/reports/status-changes`.
pub async fn status_changes(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<ReportQuery>,
) -> Result<Response, ApiError> {
    q.only(&["from", "to", "grade"])?;
    let r = Report::StatusChanges {
        grade: q.grade.clone(),
    };
    answer(app, q, headers, r, None).await
}
