//! `/v1/events`: the log itself, as an auditor reads it. Reads the log file,
//! not the projection store.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::http::params::{
    bad_cursor, paginate, rfc3339, rfc3339_micros, seq_param, Listing, NoParams, Page, Params,
};
use crate::http::{ApiError, AppState};
use crate::log::{self, chain, StoredEvent};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", get(list_events))
        .route("/v1/events/{seq}", get(get_event))
}

/// One event of the log, as an auditor sees it.
#[derive(Serialize)]
pub struct EventView {
    pub seq: u64,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: String,
    pub dedupe_key: String,
    pub subject: Option<String>,
    pub occurred_at: String,
    pub received_at: String,
    pub body_hash: String,
    pub prev_hash: String,
    pub hash: String,
    /// Whether the body still hashes to body_hash (checked as it is read).
    pub body_intact: bool,
    /// The original body, verbatim.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    after_seq: Option<u64>,
    source: Option<crate::event::Source>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    subject: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/events`: the log in seq order.
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

/// `GET /v1/events/{seq}`.
pub async fn get_event(
    State(app): State<AppState>,
    Path(seq): Path<String>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<EventView>, ApiError> {
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{seq:?} is not a seq")))?;
    seq_param("seq", seq)?;
    app.log
        .run(move |conn| {
            let e = log::get(conn, seq)?
                .ok_or_else(|| ApiError::NotFound(format!("no event has seq {seq}")))?;
            Ok(Json(EventView::from(e)))
        })
        .await
}
