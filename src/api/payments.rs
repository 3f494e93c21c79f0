//! `/v1/payments`: the register and one payment with its revisions.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::event::FeeDetail;
use crate::http::params::{paginate, parse_bound, rfc3339, Listing, NoParams, Page, Params};
use crate::http::{ApiError, AppState};
use crate::projection::entities::{PaymentState, PaymentStatus};
use crate::projection::query::payments::{self, PaymentFilter, Revision};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/payments", get(list_payments))
        .route("/v1/payments/{payment_id}", get(get_payment))
}

#[derive(Serialize)]
pub struct DetailView {
    pub fee_component: String,
    pub amount: String,
}

fn details(d: &[FeeDetail]) -> Vec<DetailView> {
    d.iter()
        .map(|d| DetailView {
            fee_component: d.fee_component.clone(),
            amount: d.amount.to_string(),
        })
        .collect()
}

/// A payment as the API shows it.
#[derive(Serialize)]
pub struct PaymentView {
    pub payment_id: String,
    pub amount: String,
    pub status: &'static str,
    pub mode: String,
    pub transaction_id: Option<String>,
    pub settlement_utr: Option<String>,
    pub notes: Option<String>,
    pub paid_at: String,
    pub details: Vec<DetailView>,
    /// The payment's own jodo_student_id, else that of the student whose
    /// identifier it names.
    pub jodo_student_id: Option<String>,
    pub student_identifier: Option<String>,
    pub collector_code: Option<String>,
    pub cancelled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revisions: Option<Vec<RevisionView>>,
}

impl PaymentView {
    pub fn new(s: PaymentState, linked: Option<String>) -> PaymentView {
        let r = s.record;
        PaymentView {
            payment_id: r.payment_id,
            amount: r.amount.to_string(),
            status: s.status.as_str(),
            mode: r.mode,
            transaction_id: r.transaction_id,
            settlement_utr: r.settlement_utr,
            notes: r.notes,
            paid_at: rfc3339(r.paid_at),
            details: details(&r.details),
            jodo_student_id: r.jodo_student_id.or(linked),
            student_identifier: r.student_identifier,
            collector_code: r.collector_code,
            cancelled_at: s.cancelled_at.map(rfc3339),
            revisions: None,
        }
    }
}

/// One revision of a payment, with the event that made it.
#[derive(Serialize)]
pub struct RevisionView {
    pub seq: u64,
    pub event: &'static str,
    pub at: String,
    pub event_id: String,
    pub amount: String,
    pub mode: String,
    pub transaction_id: Option<String>,
    pub settlement_utr: Option<String>,
    pub notes: Option<String>,
    pub paid_at: String,
    pub details: Vec<DetailView>,
}

impl From<Revision> for RevisionView {
    fn from(v: Revision) -> Self {
        let r = v.record;
        RevisionView {
            seq: v.seq as u64,
            event: v.change.as_str(),
            at: rfc3339(v.at),
            event_id: v.event_id,
            amount: r.amount.to_string(),
            mode: r.mode,
            transaction_id: r.transaction_id,
            settlement_utr: r.settlement_utr,
            notes: r.notes,
            paid_at: rfc3339(r.paid_at),
            details: details(&r.details),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsQuery {
    from: Option<String>,
    to: Option<String>,
    status: Option<PaymentStatus>,
    mode: Option<String>,
    collector_code: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/payments`: ordered by paid_at, then payment id. `from` and `to`
/// bound paid_at, both inclusive; a date means the whole day.
pub async fn list_payments(
    State(app): State<AppState>,
    Params(q): Params<PaymentsQuery>,
) -> Result<Json<Listing<PaymentView>>, ApiError> {
    let from = q
        .from
        .as_deref()
        .map(|t| parse_bound("from", t, false))
        .transpose()?;
    let to =
        q.to.as_deref()
            .map(|t| parse_bound("to", t, true))
            .transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(ApiError::bad_request("from must not be after to"));
        }
    }
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let after = page.int_text_key()?;
    let filter = PaymentFilter {
        from,
        to,
        status: q.status,
        mode: q.mode,
        collector_code: q.collector_code,
    };
    app.projections(move |conn| {
        let rows = payments::list(conn, &filter, after, page.limit + 1)?;
        paginate(
            rows,
            page.limit,
            |p| json!([p.state.record.paid_at, p.state.record.payment_id]),
            |p| Ok(PaymentView::new(p.state, p.linked)),
        )
    })
    .await
    .map(Json)
}

/// `GET /v1/payments/{payment_id}`, with every revision.
pub async fn get_payment(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<PaymentView>, ApiError> {
    app.projections(move |conn| {
        let p = payments::get(conn, &id)?
            .ok_or_else(|| ApiError::NotFound(format!("no payment has id {id:?}")))?;
        let mut view = PaymentView::new(p.state, p.linked);
        let revisions = payments::revisions(conn, &id)?;
        // Read-back invariant: the current row is the fold of its revisions.
        if revisions.is_empty() {
            return Err(ApiError::Internal(format!(
                "payment {} has no revisions",
                view.payment_id
            )));
        }
        view.revisions = Some(revisions.into_iter().map(RevisionView::from).collect());
        Ok(Json(view))
    })
    .await
}
