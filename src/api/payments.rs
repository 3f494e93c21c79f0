//! `/v1/payments`: the register and one payment with its revisions.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorAnswer;
use crate::event::{FeeDetail, PaymentChange};
use crate::http::params::{
    enum_schema, paginate, parse_bound, rfc3339, schema_type, Bound, Cursor, Limit, Listing,
    NoParams, Page, Params, Text,
};
use crate::http::{ApiError, AppState};
use crate::projection::entities::{PaymentState, PaymentStatus};
use crate::projection::query::payments::{self, PaymentFilter, Revision};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_payments))
        .routes(routes!(get_payment))
}

/// Money: a decimal string with two places.
pub(super) fn money_schema() -> utoipa::openapi::schema::Schema {
    crate::http::params::schema(json!({
        "type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$", "examples": ["2000.50"]
    }))
}

#[derive(Serialize, ToSchema)]
#[schema(as = Detail)]
pub struct DetailView {
    pub fee_component: String,
    #[schema(schema_with = money_schema)]
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
#[derive(Serialize, ToSchema)]
#[schema(as = Payment)]
pub struct PaymentView {
    pub payment_id: String,
    #[schema(schema_with = money_schema)]
    pub amount: String,
    #[schema(schema_with = enum_schema::<PaymentStatus>)]
    pub status: &'static str,
    /// Jodo's payment mode (cash, cheque, ...): an open set.
    pub mode: String,
    pub transaction_id: Option<String>,
    pub settlement_utr: Option<String>,
    pub notes: Option<String>,
    #[schema(format = DateTime)]
    pub paid_at: String,
    pub details: Vec<DetailView>,
    /// The payment's own jodo_student_id, else that of the student whose
    /// identifier it names.
    pub jodo_student_id: Option<String>,
    pub student_identifier: Option<String>,
    pub collector_code: Option<String>,
    #[schema(format = DateTime)]
    pub cancelled_at: Option<String>,
    /// On `GET /v1/payments/{payment_id}` only: every revision, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
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
#[derive(Serialize, ToSchema)]
#[schema(as = Revision)]
pub struct RevisionView {
    pub seq: u64,
    #[schema(schema_with = enum_schema::<PaymentChange>)]
    pub event: &'static str,
    #[schema(format = DateTime)]
    pub at: String,
    pub event_id: String,
    #[schema(schema_with = money_schema)]
    pub amount: String,
    pub mode: String,
    pub transaction_id: Option<String>,
    pub settlement_utr: Option<String>,
    pub notes: Option<String>,
    #[schema(format = DateTime)]
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

schema_type!(
    /// The values of a [`PaymentStatus`].
    PaymentStatuses => enum_schema::<PaymentStatus>
);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PaymentsQuery {
    /// First paid_at, inclusive: RFC 3339, or a date (from its start, UTC).
    /// Not after `to`.
    #[param(inline, value_type = Option<Bound>)]
    from: Option<String>,
    /// Last paid_at, inclusive: RFC 3339, or a date (to its end, UTC).
    #[param(inline, value_type = Option<Bound>)]
    to: Option<String>,
    #[param(inline, value_type = Option<PaymentStatuses>)]
    status: Option<PaymentStatus>,
    /// Jodo's payment mode (cash, cheque, ...): an open set.
    #[param(inline, value_type = Option<Text>)]
    mode: Option<String>,
    #[param(inline, value_type = Option<Text>)]
    collector_code: Option<String>,
    #[param(inline, value_type = Option<Limit>)]
    limit: Option<u32>,
    #[param(inline, value_type = Option<Cursor>)]
    cursor: Option<String>,
}

/// Manual payments
///
/// Ordered by paid_at, then payment id. `from` and `to` bound paid_at, both
/// inclusive; a date means the whole day; `from` after `to` is a 400.
#[utoipa::path(get, path = "/v1/payments", tag = "payments",
    params(PaymentsQuery),
    responses(
        (status = 200, description = "A page of payments", body = Listing<PaymentView>),
        (status = 400, description = "A parameter is unknown or does not parse, or from is after to", body = ErrorAnswer),
    ))]
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

/// A payment's id in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read by axum's `Path<String>`; this names it for the document.
pub(super) struct PaymentId {
    /// Jodo's payment id.
    #[param(min_length = 1, example = "pay_5001")]
    payment_id: String,
}

/// A payment with every revision
#[utoipa::path(get, path = "/v1/payments/{payment_id}", tag = "payments",
    params(PaymentId),
    responses(
        (status = 200, description = "The payment, with its revisions", body = PaymentView),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
        (status = 404, description = "No such payment", body = ErrorAnswer),
    ))]
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
