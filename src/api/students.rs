//! `/v1/students`: the list, one student (as of a time), their history and
//! their payments.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::payments::PaymentView;
use crate::event::StudentProfile;
use crate::http::params::{paginate, parse_instant, resolve, rfc3339, Listing, Page, Params};
use crate::http::{ApiError, AppState};
use crate::money::Total;
use crate::projection::entities::{StudentState, StudentStatus};
use crate::projection::query::{self, payments, students};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/students", get(list_students))
        .route("/v1/students/{id}", get(get_student))
        .route("/v1/students/{id}/history", get(student_history))
        .route("/v1/students/{id}/payments", get(student_payments))
}

/// A student as the API shows it: the latest profile, then the status.
#[derive(Serialize)]
pub struct StudentView {
    #[serde(flatten)]
    pub profile: StudentProfile,
    pub status: &'static str,
    pub status_since: String,
    pub registered_at: Option<String>,
}

impl From<StudentState> for StudentView {
    fn from(s: StudentState) -> Self {
        StudentView {
            profile: s.profile,
            status: s.status.as_str(),
            status_since: rfc3339(s.status_since),
            registered_at: s.registered_at.map(rfc3339),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentsQuery {
    status: Option<StudentStatus>,
    grade: Option<String>,
    collector_code: Option<String>,
    q: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/students`.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsOfQuery {
    as_of: Option<String>,
}

/// `GET /v1/students/{id}[?as_of=]`.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct HistoryItem {
    pub event: &'static str,
    pub at: String,
    pub seq: u64,
    pub event_id: String,
}

/// `GET /v1/students/{id}/history`: registered, dropped and activated events
/// in provider-time order.
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
#[derive(Serialize)]
pub struct StudentPayments {
    pub items: Vec<PaymentView>,
    pub next_cursor: Option<String>,
    pub total_recorded: String,
}

/// `GET /v1/students/{id}/payments`: linked by jodo_student_id, or by the
/// student identifier when the payment has no jodo_student_id.
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
