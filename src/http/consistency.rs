//! Read-your-writes on `/v1`: every answer says which log seq the
//! projections had reached (`X-Registrar-Position`), and a read may ask to
//! be answered only once they reach a seq (`min_seq=N` or
//! `X-Registrar-Min-Seq: N`), typically the `seq` its own delivery was
//! acknowledged with.

use std::cell::Cell;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::Response;

use serde_json::json;
use utoipa::openapi::path::{Operation, Parameter};
use utoipa::openapi::RefOr;

use super::{ApiError, AppState};

/// The answer's position header.
pub const POSITION_HEADER: HeaderName = HeaderName::from_static("x-registrar-position");
/// The request's header form of `min_seq`.
pub const MIN_SEQ_HEADER: HeaderName = HeaderName::from_static("x-registrar-min-seq");
/// The query parameter form.
const MIN_SEQ_PARAM: &str = "min_seq";

tokio::task_local! {
    /// The position of the projection snapshot a request read, set by
    /// [`AppState::projections`].
    static SNAPSHOT: Cell<Option<u64>>;
}

/// Records the position of the snapshot the current request reads.
pub fn record(position: u64) {
    // Outside a `/v1` request (a test calling a handler directly) there is
    // no answer to put it on.
    let _ = SNAPSHOT.try_with(|c| c.set(Some(position)));
}

/// The middleware: waits for `min_seq`, then answers with the position.
pub async fn layer(
    State(app): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (min_seq, req) = take_min_seq(req)?;
    if let Some(seq) = min_seq {
        if !app.live.wait_for(seq, app.config.min_seq_wait).await {
            return Err(ApiError::NotReady {
                message: format!(
                    "the projections have not reached seq {seq} yet (they are at {}); retry later",
                    app.live.position()
                ),
                retry_after: 1,
            });
        }
    }
    let (mut response, snapshot) = SNAPSHOT
        .scope(Cell::new(None), async {
            let response = next.run(req).await;
            (response, SNAPSHOT.with(|c| c.get()))
        })
        .await;
    // A route that read no projection (the audit trail, the log's head)
    // answers with where the projections are now.
    let position = snapshot.unwrap_or_else(|| app.live.position());
    response
        .headers_mut()
        .insert(POSITION_HEADER, HeaderValue::from(position));
    Ok(response)
}

/// What [`layer`] adds to an operation, written into its OpenAPI
/// description by the code that puts the layer on its route: the `min_seq`
/// parameter, the position header on a success, and the 503 with
/// `Retry-After` when the projections do not reach `min_seq` in time.
///
/// The header form `X-Registrar-Min-Seq` is described, not declared as a
/// parameter: given with a different query value it is a 400, which a
/// client generated from two independent parameters would not know.
pub fn document(op: &mut Operation) {
    let param: Parameter = serde_json::from_value(json!({
        "name": MIN_SEQ_PARAM, "in": "query", "required": false,
        "description": "Read-your-writes: answer only once the projections reach this log seq (the seq an ingest answer gave); waits up to --min-seq-wait-ms, else 503 with Retry-After. Also accepted as the header X-Registrar-Min-Seq (the two must agree).",
        "schema": { "type": "integer", "minimum": 0, "maximum": i64::MAX }
    }))
    .expect("a valid parameter");
    op.parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::T(param));
    let position = json!({
        "description": "The log seq the projections had reached when this answer was read.",
        "schema": { "type": "integer", "minimum": 0 }
    });
    for (status, answer) in op.responses.responses.iter_mut() {
        if let (true, RefOr::T(r)) = (status.starts_with('2'), answer) {
            r.headers.insert(
                "X-Registrar-Position".to_string(),
                RefOr::T(serde_json::from_value(position.clone()).expect("a valid header")),
            );
        }
    }
    let not_ready: utoipa::openapi::Response = serde_json::from_value(json!({
        "description": "The projections have not reached min_seq within the wait, or are being built from the log: retry after Retry-After seconds.",
        "headers": { "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "required": true,
            "schema": { "type": "integer", "minimum": 1 } } },
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorAnswer" } } }
    }))
    .expect("a valid response");
    op.responses
        .responses
        .insert("503".into(), RefOr::T(not_ready));
}

/// Takes `min_seq` out of the request (the query parameter, else the
/// header), so the route's own parameters stay strict.
fn take_min_seq(mut req: Request) -> Result<(Option<u64>, Request), ApiError> {
    let mut found = None;
    if let Some(query) = req.uri().query() {
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name == MIN_SEQ_PARAM {
                if found.is_some() {
                    return Err(ApiError::bad_request("min_seq is given twice"));
                }
                found = Some(parse_seq(value)?);
            } else if !pair.is_empty() {
                kept.push(pair);
            }
        }
        if found.is_some() {
            let path = req.uri().path();
            let rebuilt = if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            };
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(
                rebuilt
                    .parse()
                    .map_err(|_| ApiError::bad_request("the request's path is not valid"))?,
            );
            *req.uri_mut() = Uri::from_parts(parts)
                .map_err(|_| ApiError::bad_request("the request's path is not valid"))?;
        }
    }
    if let Some(h) = req.headers().get(&MIN_SEQ_HEADER) {
        let text = h
            .to_str()
            .map_err(|_| ApiError::bad_request("X-Registrar-Min-Seq must be a seq"))?;
        let seq = parse_seq(text)?;
        if found.is_some_and(|q| q != seq) {
            return Err(ApiError::bad_request(
                "min_seq and X-Registrar-Min-Seq disagree",
            ));
        }
        found = Some(seq);
    }
    Ok((found, req))
}

/// For the fuzz targets in `fuzz/` (not an API): takes `min_seq` out of a
/// `/v1` request with this query and header as the middleware does, and
/// returns it; checks that what is left of the query no longer holds it.
#[doc(hidden)]
pub fn fuzz_min_seq(query: &str, header: &[u8]) -> Option<u64> {
    let mut req = Request::new(axum::body::Body::empty());
    *req.uri_mut() = format!("/v1/events?{query}").parse().ok()?;
    if let Ok(v) = HeaderValue::from_bytes(header) {
        req.headers_mut().insert(MIN_SEQ_HEADER, v);
    }
    let (seq, req) = take_min_seq(req).ok()?;
    if let Some(s) = seq {
        assert!(s <= i64::MAX as u64, "min_seq {s} is past i64::MAX");
        if query.contains("min_seq=") {
            let left = req.uri().query().unwrap_or("");
            assert!(
                !left
                    .split('&')
                    .any(|p| p.split('=').next() == Some(MIN_SEQ_PARAM)),
                "min_seq is still in {left:?}"
            );
        }
    }
    seq
}

/// A seq as the log numbers them: decimal digits, at most i64::MAX.
fn parse_seq(text: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "min_seq must be a seq (1 to {}), not {text:?}",
            i64::MAX
        ))
    };
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse::<u64>()
        .ok()
        .filter(|s| *s <= i64::MAX as u64)
        .ok_or_else(bad)
}
