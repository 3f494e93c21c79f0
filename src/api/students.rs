//! `/v1/students`: the list, one student (as of a time), their history and
//! their payments.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorAnswer;
use super::payments::PaymentView;
use crate::event::{Grade, Note, StudentChange, StudentProfile};
use crate::http::params::{
    enum_schema, paginate, parse_instant, resolve, rfc3339, schema_type, Cursor, Instant, Limit,
    Listing, Page, Params, Text,
};
use crate::http::{ApiError, AppState};
use crate::money::Total;
use crate::projection::entities::{StudentState, StudentStatus};
use crate::projection::query::{self, payments, students};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_students))
        .routes(routes!(get_student))
        .routes(routes!(student_history))
        .routes(routes!(student_payments))
}

/// A student as the API shows it: the latest profile, then the status.
#[derive(Serialize, ToSchema)]
#[schema(as = Student)]
pub struct StudentView {
    pub jodo_student_id: String,
    pub identifier: String,
    pub custom_identifier: Option<String>,
    pub collector_code: Option<String>,
    pub grade: Option<GradeView>,
    pub academic_year_start: Option<i32>,
    pub academic_year_end: Option<i32>,
    pub primary_contact_number: Option<String>,
    pub primary_contact_email: Option<String>,
    pub notes: Vec<NoteView>,
    #[schema(schema_with = enum_schema::<StudentStatus>)]
    pub status: &'static str,
    /// Provider time of the event that started the current status.
    #[schema(format = DateTime)]
    pub status_since: String,
    /// Provider time of the first registration, if one was received.
    #[schema(format = DateTime)]
    pub registered_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Grade)]
pub struct GradeView {
    pub code: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Note)]
pub struct NoteView {
    pub key: String,
    pub value: String,
}

impl From<StudentState> for StudentView {
    fn from(s: StudentState) -> Self {
        // Every field named: a field added to the profile does not compile
        // until the view (and so the document) says what it shows.
        let StudentProfile {
            jodo_student_id,
            identifier,
            custom_identifier,
            collector_code,
            grade,
            academic_year_start,
            academic_year_end,
            primary_contact_number,
            primary_contact_email,
            notes,
        } = s.profile;
        StudentView {
            jodo_student_id,
            identifier,
            custom_identifier,
            collector_code,
            grade: grade.map(|Grade { code, name }| GradeView { code, name }),
            academic_year_start,
            academic_year_end,
            primary_contact_number,
            primary_contact_email,
            notes: notes
                .into_iter()
                .map(|Note { key, value }| NoteView { key, value })
                .collect(),
            status: s.status.as_str(),
            status_since: rfc3339(s.status_since),
            registered_at: s.registered_at.map(rfc3339),
        }
    }
}

schema_type!(
    /// The values of a [`StudentStatus`].
    StudentStatuses => enum_schema::<StudentStatus>
);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StudentsQuery {
    #[param(inline, value_type = Option<StudentStatuses>)]
    status: Option<StudentStatus>,
    /// Grade code or name.
    #[param(inline, value_type = Option<Text>)]
    grade: Option<String>,
    #[param(inline, value_type = Option<Text>)]
    collector_code: Option<String>,
    /// Text in ids, identifiers, grade or contacts.
    #[param(inline, value_type = Option<Text>)]
    q: Option<String>,
    #[param(inline, value_type = Option<Limit>)]
    limit: Option<u32>,
    #[param(inline, value_type = Option<Cursor>)]
    cursor: Option<String>,
}

/// Students
///
/// Ordered by jodo_student_id.
#[utoipa::path(get, path = "/v1/students", tag = "students",
    params(StudentsQuery),
    responses(
        (status = 200, description = "A page of students", body = Listing<StudentView>),
        (status = 400, description = "A parameter is unknown or does not parse", body = ErrorAnswer),
    ))]
pub async fn list_students(
    State(app): State<AppState>,
    Params(q): Params<StudentsQuery>,
) -> Result<Json<Listing<StudentView>>, ApiError> {
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let after = page.text_key()?;
    let filter = students::StudentFilter {
        status: q.status,
        grade: q.grade,
        collector_code: q.collector_code,
        text: q.q,
    };
    app.projections(move |conn| {
        let rows = students::list(conn, &filter, after.as_deref(), page.limit + 1)?;
        paginate(
            rows,
            page.limit,
            |(id, _)| Value::from(id.clone()),
            |(_, s)| Ok(StudentView::from(s)),
        )
    })
    .await
    .map(Json)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// The student as they stood then, from events with provider time at or
    /// before it.
    #[param(inline, value_type = Option<Instant>)]
    as_of: Option<String>,
}

/// A student
///
/// By jodo_student_id, identifier or custom_identifier; with `as_of`, as
/// they stood then.
#[utoipa::path(get, path = "/v1/students/{id}", tag = "students",
    params(StudentId, AsOfQuery),
    responses(
        (status = 200, description = "The student", body = StudentView),
        (status = 400, description = "A parameter is unknown or does not parse", body = ErrorAnswer),
        (status = 404, description = "No such student (by then)", body = ErrorAnswer),
        (status = 409, description = "The identifier of several students", body = ErrorAnswer),
    ))]
pub async fn get_student(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Params(q): Params<AsOfQuery>,
) -> Result<Json<StudentView>, ApiError> {
    let as_of = q
        .as_of
        .as_deref()
        .map(|t| parse_instant("as_of", t))
        .transpose()?;
    app.projections(move |conn| {
        let jid = resolve(conn, &id)?;
        let state = match as_of {
            None => students::get(conn, &jid)?
                .ok_or_else(|| ApiError::NotFound(format!("no student has id {jid:?}")))?,
            Some(at) => query::student_as_of(conn, &jid, at)?.ok_or_else(|| {
                ApiError::NotFound(format!(
                    "student {jid:?} had no registration or status event by {}",
                    rfc3339(at)
                ))
            })?,
        };
        Ok(Json(StudentView::from(state)))
    })
    .await
}

/// A student's id in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read by axum's `Path<String>`; this names it for the document.
pub(super) struct StudentId {
    /// jodo_student_id, identifier or custom_identifier.
    #[param(min_length = 1, example = "stu_1001")]
    id: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(inline, value_type = Option<Limit>)]
    limit: Option<u32>,
    #[param(inline, value_type = Option<Cursor>)]
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryItem {
    #[schema(schema_with = enum_schema::<StudentChange>)]
    pub event: &'static str,
    #[schema(format = DateTime)]
    pub at: String,
    pub seq: u64,
    pub event_id: String,
}

/// A student's history
///
/// Registered, dropped and activated events in provider-time order.
#[utoipa::path(get, path = "/v1/students/{id}/history", tag = "students",
    params(StudentId, PageQuery),
    responses(
        (status = 200, description = "A page of the history", body = Listing<HistoryItem>),
        (status = 400, description = "A parameter is unknown or does not parse", body = ErrorAnswer),
        (status = 404, description = "No such student", body = ErrorAnswer),
        (status = 409, description = "The identifier of several students", body = ErrorAnswer),
    ))]
pub async fn student_history(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Params(q): Params<PageQuery>,
) -> Result<Json<Listing<HistoryItem>>, ApiError> {
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let after = page.int_int_key()?;
    app.projections(move |conn| {
        let jid = resolve(conn, &id)?;
        let rows = students::history_page(conn, &jid, after, page.limit + 1)?;
        paginate(
            rows,
            page.limit,
            |h| json!([h.at, h.seq]),
            |h| {
                Ok(HistoryItem {
                    event: h.change.as_str(),
                    at: rfc3339(h.at),
                    seq: h.seq as u64,
                    event_id: h.event_id,
                })
            },
        )
    })
    .await
    .map(Json)
}

/// A student's payments, with the sum of those recorded (not cancelled).
#[derive(Serialize, ToSchema)]
pub struct StudentPayments {
    pub items: Vec<PaymentView>,
    /// The `cursor` of the next page; null on the last.
    pub next_cursor: Option<String>,
    /// Sum of the recorded (not cancelled) payments, on every page.
    #[schema(schema_with = super::payments::money_schema)]
    pub total_recorded: String,
}

/// A student's payments
///
/// Linked by jodo_student_id, or by the student identifier when the
/// payment has no jodo_student_id; with the total recorded.
#[utoipa::path(get, path = "/v1/students/{id}/payments", tag = "students",
    params(StudentId, PageQuery),
    responses(
        (status = 200, description = "A page of the payments, and the total", body = StudentPayments),
        (status = 400, description = "A parameter is unknown or does not parse", body = ErrorAnswer),
        (status = 404, description = "No such student", body = ErrorAnswer),
        (status = 409, description = "The identifier of several students", body = ErrorAnswer),
    ))]
pub async fn student_payments(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Params(q): Params<PageQuery>,
) -> Result<Json<StudentPayments>, ApiError> {
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let after = page.int_text_key()?;
    app.projections(move |conn| {
        let jid = resolve(conn, &id)?;
        let identifier = students::identifier(conn, &jid)?;
        let rows = payments::of_student(
            conn,
            &jid,
            identifier.as_deref(),
            after.clone(),
            page.limit + 1,
        )?;
        // All of them on this one page: the total is their sum. Otherwise
        // one more query sums them all.
        let total: Total = if after.is_none() && rows.len() <= page.limit as usize {
            payments::total_recorded(&rows)
        } else {
            payments::student_total_recorded(conn, &jid, identifier.as_deref())?
        };
        let listing = paginate(
            rows,
            page.limit,
            |s| json!([s.record.paid_at, s.record.payment_id]),
            |s| Ok(PaymentView::new(s, Some(jid.clone()))),
        )?;
        Ok(Json(StudentPayments {
            items: listing.items,
            next_cursor: listing.next_cursor,
            total_recorded: total.to_string(),
        }))
    })
    .await
}
