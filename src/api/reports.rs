//! `/v1/reports/...`: the finance reports ([`crate::report`]) in JSON, or in
//! CSV with `?format=csv` or `Accept: text/csv`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorAnswer;
use crate::http::params::{enum_schema, resolve, schema_type, Bound, Params, Text};
use crate::http::{stream, ApiError, AppState};
use crate::projection::entities::PaymentStatus;
use crate::report::{self, Format, Report, Request};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(day_book))
        .routes(routes!(payments))
        .routes(routes!(statement))
        .routes(routes!(changes))
        .routes(routes!(status_changes))
}

schema_type!(
    /// The values of a [`Format`].
    Formats => enum_schema::<Format>
);

schema_type!(
    /// The values of a [`PaymentStatus`].
    PaymentStatuses => enum_schema::<PaymentStatus>
);

/// What a report was asked for beyond its filters: the range (None for a
/// statement, which has none), the times and the format.
struct Asked<'a> {
    range: Option<(Option<&'a str>, Option<&'a str>)>,
    as_of: Option<&'a str>,
    known_at: Option<&'a str>,
    format: Option<Format>,
}

/// Declares a report's query: the range (when it has one), its filters,
/// then the times and the format every report takes, each documented once
/// here. Unknown parameters (a filter another report takes) are a 400.
macro_rules! report_query {
    ($(#[$doc:meta])* $name:ident, range: $range:tt, { $($filters:tt)* }) => {
        $(#[$doc])*
        #[derive(Deserialize, IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            $($filters)*
            /// Provider time: what was true then; default now. A date means
            /// the end of that business day.
            #[param(inline, value_type = Option<Bound>)]
            as_of: Option<String>,
            /// Receipt time: what registrar had received by then; default
            /// now. A date means the end of that business day.
            #[param(inline, value_type = Option<Bound>)]
            known_at: Option<String>,
            /// `csv` (also with `Accept: text/csv`); default `json`.
            #[param(inline, value_type = Option<Formats>)]
            format: Option<Format>,
        }

        impl $name {
            fn asked(&self) -> Asked<'_> {
                Asked {
                    range: report_query!(@range $range self),
                    as_of: self.as_of.as_deref(),
                    known_at: self.known_at.as_deref(),
                    format: self.format,
                }
            }
        }
    };
    (@range true $q:ident) => { Some((Some($q.from.as_str()), Some($q.to.as_str()))) };
    (@range false $q:ident) => { None };
}

report_query!(
    /// `/v1/reports/day-book`'s parameters.
    DayBookQuery, range: true, {
        /// First business date (`yyyy-mm-dd`, from its start in the business
        /// zone) or RFC 3339 time.
        #[param(inline, value_type = Bound, example = "2024-03-01")]
        from: String,
        /// Last business date (to its end) or RFC 3339 time: not before
        /// `from`, less than 366 days after it.
        #[param(inline, value_type = Bound, example = "2024-03-31")]
        to: String,
        /// Jodo's payment mode (cash, cheque, ...): an open set.
        #[param(inline, value_type = Option<Text>)]
        mode: Option<String>,
        #[param(inline, value_type = Option<Text>)]
        collector_code: Option<String>,
    }
);

report_query!(
    /// `/v1/reports/payments`'s parameters.
    PaymentsReportQuery, range: true, {
        /// First paid_at: a business date (`yyyy-mm-dd`, from its start) or
        /// RFC 3339 time.
        #[param(inline, value_type = Bound, example = "2024-03-01")]
        from: String,
        /// Last paid_at: a business date (to its end) or RFC 3339 time: not
        /// before `from`, less than 366 days after it.
        #[param(inline, value_type = Bound, example = "2024-03-31")]
        to: String,
        #[param(inline, value_type = Option<PaymentStatuses>)]
        status: Option<PaymentStatus>,
        /// Jodo's payment mode (cash, cheque, ...): an open set.
        #[param(inline, value_type = Option<Text>)]
        mode: Option<String>,
        #[param(inline, value_type = Option<Text>)]
        collector_code: Option<String>,
    }
);

report_query!(
    /// `/v1/reports/statement/{student_id}`'s parameters.
    StatementQuery, range: false, {}
);

report_query!(
    /// `/v1/reports/changes`'s parameters.
    ChangesQuery, range: true, {
        /// First receipt: a business date (`yyyy-mm-dd`, from its start) or
        /// RFC 3339 time.
        #[param(inline, value_type = Bound, example = "2024-03-01")]
        from: String,
        /// Last receipt: a business date (to its end) or RFC 3339 time: not
        /// before `from`, less than 366 days after it.
        #[param(inline, value_type = Bound, example = "2024-03-31")]
        to: String,
    }
);

report_query!(
    /// `/v1/reports/status-changes`'s parameters.
    StatusChangesQuery, range: true, {
        /// First provider time: a business date (`yyyy-mm-dd`, from its
        /// start) or RFC 3339 time.
        #[param(inline, value_type = Bound, example = "2024-03-01")]
        from: String,
        /// Last provider time: a business date (to its end) or RFC 3339
        /// time: not before `from`, less than 366 days after it.
        #[param(inline, value_type = Bound, example = "2024-03-31")]
        to: String,
        /// Grade code or name.
        #[param(inline, value_type = Option<Text>)]
        grade: Option<String>,
    }
);

/// The checkpoint a report names.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // The document's description of what report::write writes.
pub struct ReportCheckpoint {
    /// Its tree size: at least the report's seq.
    tree_size: u64,
    /// Its root hash, base64.
    root: String,
}

/// A report in JSON: where and when it was read, then its own items
/// (`format=csv` gives the same rows as CSV).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // The document's description of what report::write writes.
pub struct ReportAnswer {
    /// The report's name, as in its path.
    report: String,
    #[schema(format = DateTime)]
    as_of: String,
    #[schema(format = DateTime)]
    known_at: String,
    /// The log seq the projections held.
    seq: u64,
    /// The newest signed checkpoint when it covers `seq` (also in the
    /// `X-Registrar-Checkpoint` header, `<tree size> <base64 root>`, in CSV
    /// as in JSON); null until one does.
    checkpoint: Option<ReportCheckpoint>,
    /// The zone business dates are counted in (IANA name).
    business_zone: String,
    /// The range, for the reports that take one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    to: Option<String>,
}

fn format(asked: Option<Format>, headers: &HeaderMap) -> Format {
    if let Some(f) = asked {
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
    asked: Asked<'_>,
    headers: HeaderMap,
    report: Report,
    student: Option<String>,
) -> Result<Response, ApiError> {
    let zone = app.config.business_zone;
    let times = report::parse_times(
        asked.as_of,
        asked.known_at,
        zone,
        crate::ledger::now_micros(),
    )?;
    let range = asked
        .range
        .map(|(from, to)| report::parse_range(from, to, zone))
        .transpose()?;
    let format = format(asked.format, &headers);
    let checkpoint = app.newest_checkpoint().await?;
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
            checkpoint,
        })
    })
    .await
}

/// The day book
///
/// Per business day, mode and collector code: count and total of recorded
/// and of cancelled payments; subtotals per day; totals. JSON, or CSV with
/// `format=csv` or `Accept: text/csv`.
#[utoipa::path(get, path = "/v1/reports/day-book", tag = "reports",
    params(DayBookQuery),
    responses(
        (status = 200, description = "The report", content(
            (ReportAnswer = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A parameter is unknown, missing or does not parse, or the range is backwards or longer than 366 days", body = ErrorAnswer),
    ))]
pub async fn day_book(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<DayBookQuery>,
) -> Result<Response, ApiError> {
    let r = Report::DayBook {
        mode: q.mode.clone(),
        collector_code: q.collector_code.clone(),
    };
    answer(app, q.asked(), headers, r, None).await
}

/// The payment register
///
/// Every payment with paid_at in the range, as it stood at `as_of` given
/// what had been received by `known_at`. JSON or CSV.
#[utoipa::path(get, path = "/v1/reports/payments", tag = "reports",
    params(PaymentsReportQuery),
    responses(
        (status = 200, description = "The report", content(
            (ReportAnswer = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A parameter is unknown, missing or does not parse, or the range is backwards or longer than 366 days", body = ErrorAnswer),
    ))]
pub async fn payments(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<PaymentsReportQuery>,
) -> Result<Response, ApiError> {
    let r = Report::Payments {
        status: q.status,
        mode: q.mode.clone(),
        collector_code: q.collector_code.clone(),
    };
    answer(app, q.asked(), headers, r, None).await
}

/// A student's id in a report's path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read by axum's `Path<String>`; this names it for the document.
struct StatementStudent {
    /// jodo_student_id, identifier or custom_identifier.
    #[param(min_length = 1, example = "stu_1001")]
    student_id: String,
}

/// A student's statement
///
/// Profile, status timeline, payments with revisions, totals. JSON or CSV.
#[utoipa::path(get, path = "/v1/reports/statement/{student_id}", tag = "reports",
    params(StatementStudent, StatementQuery),
    responses(
        (status = 200, description = "The report", content(
            (ReportAnswer = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A parameter is unknown or does not parse", body = ErrorAnswer),
        (status = 404, description = "No such student", body = ErrorAnswer),
        (status = 409, description = "The identifier of several students", body = ErrorAnswer),
    ))]
pub async fn statement(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Params(q): Params<StatementQuery>,
) -> Result<Response, ApiError> {
    let r = Report::Statement {
        jodo_student_id: String::new(),
    };
    answer(app, q.asked(), headers, r, Some(id)).await
}

/// Payment changes
///
/// Payment revisions received in the range, each changed field's old and
/// new value. JSON or CSV.
#[utoipa::path(get, path = "/v1/reports/changes", tag = "reports",
    params(ChangesQuery),
    responses(
        (status = 200, description = "The report", content(
            (ReportAnswer = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A parameter is unknown, missing or does not parse, or the range is backwards or longer than 366 days", body = ErrorAnswer),
    ))]
pub async fn changes(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<ChangesQuery>,
) -> Result<Response, ApiError> {
    answer(app, q.asked(), headers, Report::Changes, None).await
}

/// Status changes
///
/// Students registered, dropped and re-activated in the range. JSON or CSV.
#[utoipa::path(get, path = "/v1/reports/status-changes", tag = "reports",
    params(StatusChangesQuery),
    responses(
        (status = 200, description = "The report", content(
            (ReportAnswer = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A parameter is unknown, missing or does not parse, or the range is backwards or longer than 366 days", body = ErrorAnswer),
    ))]
pub async fn status_changes(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<StatusChangesQuery>,
) -> Result<Response, ApiError> {
    let r = Report::StatusChanges {
        grade: q.grade.clone(),
    };
    answer(app, q.asked(), headers, r, None).await
}
