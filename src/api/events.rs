//! `/v1/events`: the log itself, as an auditor reads it. Reads the log file,
//! not the projection store.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::ErrorAnswer;
use crate::event::Source;
use crate::http::params::{
    bad_cursor, enum_schema, paginate, rfc3339, rfc3339_micros, schema_type, seq_param, Cursor,
    Limit, Listing, NoParams, Page, Params, Seq, Text,
};
use crate::http::{ApiError, AppState};
use crate::log::{self, chain, StoredEvent};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event))
}

/// One event of the log, as an auditor sees it.
#[derive(Serialize, ToSchema)]
#[schema(as = Event)]
pub struct EventView {
    pub seq: u64,
    #[schema(schema_with = enum_schema::<Source>)]
    pub source: String,
    /// The provider's event type.
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: String,
    pub dedupe_key: String,
    pub subject: Option<String>,
    #[schema(format = DateTime)]
    pub occurred_at: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub body_hash: String,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub prev_hash: String,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hash: String,
    /// Whether the body still hashes to body_hash (checked as it is read).
    pub body_intact: bool,
    /// The original body, verbatim (null if it is no longer JSON).
    #[schema(value_type = Value)]
    pub body: Box<RawValue>,
}

impl From<StoredEvent> for EventView {
    fn from(e: StoredEvent) -> Self {
        let body_intact = chain::body_hash(&e.body) == e.body_hash;
        let body = String::from_utf8(e.body)
            .ok()
            .and_then(|s| RawValue::from_string(s).ok())
            .unwrap_or_else(|| RawValue::from_string("null".into()).expect("null is JSON"));
        EventView {
            seq: e.seq,
            source: e.source,
            event_type: e.event_type,
            version: e.event_version,
            dedupe_key: e.dedupe_key,
            subject: e.subject,
            occurred_at: rfc3339(e.occurred_at),
            received_at: rfc3339_micros(e.received_at),
            body_hash: hex::encode(e.body_hash),
            prev_hash: hex::encode(e.prev_hash),
            hash: hex::encode(e.hash),
            body_intact,
            body,
        }
    }
}

schema_type!(
    /// The values of a [`Source`].
    Sources => enum_schema::<Source>
);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events after this seq (a cursor, when given, wins).
    #[param(inline, value_type = Option<Seq>)]
    after_seq: Option<u64>,
    #[param(inline, value_type = Option<Sources>)]
    source: Option<Source>,
    /// The provider's event type.
    #[serde(rename = "type")]
    #[param(rename = "type", inline, value_type = Option<Text>)]
    event_type: Option<String>,
    /// Student id, payment id or Toolzz user id.
    #[param(inline, value_type = Option<Text>)]
    subject: Option<String>,
    #[param(inline, value_type = Option<Limit>)]
    limit: Option<u32>,
    #[param(inline, value_type = Option<Cursor>)]
    cursor: Option<String>,
}

/// The audit trail
///
/// The log itself, in seq order.
#[utoipa::path(get, path = "/v1/events", tag = "audit",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of the log", body = Listing<EventView>),
        (status = 400, description = "A parameter is unknown or does not parse", body = ErrorAnswer),
    ))]
pub async fn list_events(
    State(app): State<AppState>,
    Params(q): Params<EventsQuery>,
) -> Result<Json<Listing<EventView>>, ApiError> {
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let cursor_seq = match &page.cursor {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(bad_cursor)?),
    };
    let cursor_seq = cursor_seq.map(|s| seq_param("cursor", s)).transpose()?;
    let after_seq = q.after_seq.map(|s| seq_param("after_seq", s)).transpose()?;
    let after = cursor_seq.or(after_seq).unwrap_or(0);
    app.log
        .run(move |conn| {
            let filter = log::EventFilter {
                source: q.source,
                event_type: q.event_type,
                subject: q.subject,
                ..log::EventFilter::default()
            };
            let rows = log::list(conn, &filter, after, page.limit + 1)?;
            paginate(
                rows,
                page.limit,
                |e| Value::from(e.seq),
                |e| Ok(EventView::from(e)),
            )
        })
        .await
        .map(Json)
}

/// An event's seq in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read as text by the handler (a bad one is a 400 in the API's shape).
pub(super) struct EventSeq {
    #[param(inline, value_type = Seq, example = 1)]
    seq: u64,
}

/// One event of the log
#[utoipa::path(get, path = "/v1/events/{seq}", tag = "audit",
    params(EventSeq),
    responses(
        (status = 200, description = "The event", body = EventView),
        (status = 400, description = "The seq is not a number, or a query parameter was given", body = ErrorAnswer),
        (status = 404, description = "No event has this seq", body = ErrorAnswer),
    ))]
pub async fn get_event(
    State(app): State<AppState>,
    Path(seq): Path<String>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<EventView>, ApiError> {
    let seq = crate::http::params::seq_path(&seq)?;
    app.log
        .run(move |conn| {
            let e = log::get(conn, seq)?
                .ok_or_else(|| ApiError::NotFound(format!("no event has seq {seq}")))?;
            Ok(Json(EventView::from(e)))
        })
        .await
}
