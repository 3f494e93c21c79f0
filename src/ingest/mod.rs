//! The webhooks: `POST /webhooks/jodo` and `POST /webhooks/toolzz[/{token}]`,
//! a channel of their own beside [`crate::api`] and [`crate::console`]
//! (they authenticate themselves; [`observe`] counts every answer).
//!
//! Order of checks: size (413), authentication (401), validation (400), then
//! the writer (200 accepted or duplicate, 409 conflict, 503). Every rejection
//! is quarantined with its body before it is answered.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::Json;
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{Map, Value};

mod observe;

use axum::middleware;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{self, Kept, Presented};
use crate::event::Source;
use crate::http::error::ErrorAnswer;
use crate::http::params::percent_decode;
use crate::http::{ApiError, AppState};
use crate::ledger::{now_micros, LedgerError};
use crate::log::AppendOutcome;
use crate::quarantine::Reject;
use crate::sources::{self, Parsed};

/// The webhook routes, each declared once by its handler's
/// `#[utoipa::path]` (which also writes it into the OpenAPI document) and
/// each answer counted by [`observe::deliveries`]. They authenticate
/// themselves (a signature, a token in the path): `security: []`.
pub fn router(state: AppState) -> OpenApiRouter<AppState> {
    let mut routes = OpenApiRouter::new()
        .routes(routes!(jodo))
        .routes(routes!(toolzz_without_token))
        .routes(routes!(toolzz_with_token));
    for item in routes.get_openapi_mut().paths.paths.values_mut() {
        if let Some(op) = item.post.as_mut() {
            op.security = Some(Vec::new());
        }
    }
    routes.route_layer(middleware::from_fn_with_state(state, observe::deliveries))
}

/// The answer to a stored (or recognised) delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestAnswer {
    /// "accepted", "duplicate" or "ping".
    #[schema(schema_with = outcome_schema)]
    pub status: &'static str,
    /// The delivery's seq in the log (absent for a ping).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub seq: Option<u64>,
}

fn outcome_schema() -> utoipa::openapi::schema::Schema {
    crate::http::params::schema(serde_json::json!({
        "type": "string", "enum": ["accepted", "duplicate", "ping"]
    }))
}

/// Request headers worth keeping with a reject. Never a secret. What
/// authentication needs again on readmission (the signature, whether the
/// custom header matched) is kept by [`auth::Kept`].
const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "user-agent",
    "x-forwarded-for",
    "x-real-ip",
];

/// The refusals of every webhook route, declared once for the document (the
/// handlers answer them as an [`ApiError`]; this type is only described,
/// never built).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum Refusals {
    #[response(
        status = 400,
        description = "Not JSON, a known event failing validation, or a query parameter; quarantined"
    )]
    Invalid(ErrorAnswer),
    #[response(status = 401, description = "Authentication failed; quarantined")]
    Unauthenticated(ErrorAnswer),
    #[response(
        status = 409,
        description = "A Jodo event_id already stored with another body; quarantined"
    )]
    Conflict(ErrorAnswer),
    #[response(
        status = 413,
        description = "The body is over the limit; quarantined, cut at the limit"
    )]
    TooLarge(ErrorAnswer),
    #[response(
        status = 503,
        description = "The log cannot be written now; nothing stored"
    )]
    Unavailable(ErrorAnswer),
}

#[utoipa::path(post, path = "/webhooks/jodo", tag = "webhooks", summary = "Receive a Jodo delivery",
    params(("X-Jodo-Signature" = Option<String>, Header, description = "Lowercase hex HMAC-SHA256 of the raw body; required when a secret is configured")),
    request_body(content = Object, content_type = "application/json",
        description = "The provider's delivery, verbatim"),
    responses(
        (status = 200, description = "Stored (accepted), already stored (duplicate) or a ping", body = IngestAnswer),
        Refusals,
    ))]
pub async fn jodo(
    State(app): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestAnswer>, ApiError> {
    let started = Instant::now();
    let mut kept = kept_headers(&headers);
    let body = read_body(&app, Source::Jodo, &mut kept, body).await?;
    let signatures = || {
        headers
            .get_all(auth::SIGNATURE_HEADER)
            .iter()
            .map(|v| v.as_bytes())
    };
    let custom_header = match &app.config.jodo_header {
        None => Presented::Absent,
        Some((name, _)) => {
            Presented::from_values(headers.get_all(name.as_str()).iter().map(|v| v.as_bytes()))
        }
    };
    let outcome = auth::check_jodo(
        &app.config.jodo_secrets(),
        &body,
        Presented::from_values(signatures()),
        custom_header,
    );
    // Kept with any reject from here on, so readmit can re-check it.
    Kept::of_jodo(signatures(), &outcome).write(&mut kept);
    if let Some(refusal) = outcome.refusal() {
        let err = ApiError::Unauthorized(refusal.to_string());
        return Err(reject(&app, Source::Jodo, kept, body, err, false, started).await);
    }
    accept(&app, Source::Jodo, uri.query(), kept, body, started).await
}

/// The token is read from the raw path, not with axum's `Path<String>`: a
/// segment that does not decode to UTF-8 (`%ff`) is a wrong token, answered
/// 401 and quarantined like any other, not a framework 400.
#[utoipa::path(post, path = "/webhooks/toolzz/{token}", tag = "webhooks", summary = "Receive a Toolzz delivery",
    params(("token" = String, Path, description = "The secret configured as REGISTRAR_TOOLZZ_TOKEN")),
    request_body(content = Object, content_type = "application/json",
        description = "The provider's delivery, verbatim"),
    responses(
        (status = 200, description = "Stored (accepted), already stored (duplicate) or a ping", body = IngestAnswer),
        Refusals,
    ))]
pub async fn toolzz_with_token(
    State(app): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestAnswer>, ApiError> {
    let raw = uri.path().rsplit_once('/').map_or("", |(_, t)| t);
    let token = percent_decode(raw, false).unwrap_or_else(|| raw.as_bytes().to_vec());
    toolzz(app, Some(token), uri, headers, body).await
}

/// Only when no Toolzz token is configured; otherwise a 401.
#[utoipa::path(post, path = "/webhooks/toolzz", tag = "webhooks", summary = "Receive a Toolzz delivery without a token",
    request_body(content = Object, content_type = "application/json",
        description = "The provider's delivery, verbatim"),
    responses(
        (status = 200, description = "Stored (accepted), already stored (duplicate) or a ping", body = IngestAnswer),
        Refusals,
    ))]
pub async fn toolzz_without_token(
    State(app): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestAnswer>, ApiError> {
    toolzz(app, None, uri, headers, body).await
}

async fn toolzz(
    app: AppState,
    token: Option<Vec<u8>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestAnswer>, ApiError> {
    let started = Instant::now();
    let mut kept = kept_headers(&headers);
    let body = read_body(&app, Source::Toolzz, &mut kept, body).await?;
    let expected = app.config.toolzz_token.as_deref().map(str::as_bytes);
    if let Err(refusal) = auth::check_toolzz(expected, token.as_deref()) {
        let err = ApiError::Unauthorized(refusal.to_string());
        return Err(reject(&app, Source::Toolzz, kept, body, err, false, started).await);
    }
    accept(&app, Source::Toolzz, uri.query(), kept, body, started).await
}

/// Parses, validates and appends an authenticated body. A webhook takes no
/// query parameters: one is a 400 like on every route (after
/// authentication, so the delivery is quarantined as authenticated).
async fn accept(
    app: &AppState,
    source: Source,
    query: Option<&str>,
    kept: Map<String, Value>,
    body: Bytes,
    started: Instant,
) -> Result<Json<IngestAnswer>, ApiError> {
    if query.is_some_and(|q| !q.is_empty()) {
        let err = ApiError::bad_request("this endpoint takes no query parameters");
        return Err(reject(app, source, kept, body, err, true, started).await);
    }
    let delivery = match sources::parse(source, &body, &app.config.parse) {
        Ok(Parsed::Delivery(d)) => d,
        Ok(Parsed::Ping) => {
            observe::outcome("ping");
            tracing::info!(source = source.as_str(), outcome = "ping", "delivery");
            return Ok(Json(IngestAnswer {
                status: "ping",
                seq: None,
            }));
        }
        Err(e) => {
            let err = ApiError::BadRequest {
                code: "invalid_delivery",
                message: e.to_string(),
            };
            return Err(reject(app, source, kept, body, err, true, started).await);
        }
    };
    let event_type = delivery.event_type.clone();
    observe::event_type(&event_type);
    let conflict = Reject {
        source: source.as_str().into(),
        received_at: now_micros(),
        http_status: 409,
        code: "conflict".into(),
        reason: format!(
            "event_id {:?} was already received with a different body",
            delivery.dedupe_key
        ),
        authenticated: true,
        headers: kept,
        body: body.to_vec(),
        body_truncated: false,
    };
    let appended = app.ledger.append(delivery, body, conflict).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let appended = match appended {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(
                source = source.as_str(),
                event_type,
                outcome = "unavailable",
                latency_ms,
                "delivery"
            );
            return Err(e.into());
        }
    };
    let (status, seq) = match appended.outcome {
        AppendOutcome::Appended { seq } => ("accepted", seq),
        AppendOutcome::Duplicate { seq } => ("duplicate", seq),
        AppendOutcome::Conflict { seq } => {
            tracing::info!(
                source = source.as_str(),
                event_type,
                seq,
                outcome = "conflict",
                latency_ms,
                "delivery"
            );
            return Err(ApiError::Conflict(format!(
                "this event_id is already in the log at seq {seq} with a different body; kept in quarantine"
            )));
        }
    };
    observe::outcome(status);
    tracing::info!(
        source = source.as_str(),
        event_type,
        seq,
        outcome = status,
        latency_ms,
        "delivery"
    );
    Ok(Json(IngestAnswer {
        status,
        seq: Some(seq),
    }))
}

/// Quarantines a rejected delivery, then answers with `err`.
async fn reject(
    app: &AppState,
    source: Source,
    kept: Map<String, Value>,
    body: Bytes,
    err: ApiError,
    authenticated: bool,
    started: Instant,
) -> ApiError {
    let truncated = matches!(err, ApiError::PayloadTooLarge(_));
    let r = Reject {
        source: source.as_str().into(),
        received_at: now_micros(),
        http_status: err.status().as_u16(),
        code: err.code().into(),
        reason: err.to_string(),
        authenticated,
        headers: kept,
        body: body.to_vec(),
        body_truncated: truncated,
    };
    // Anyone can send an unauthenticated reject: past the configured rate
    // they are counted, not kept, so a flood cannot fill the quarantine or
    // keep the writer busy.
    if !authenticated && !app.unauthenticated.allow() {
        app.metrics.unauthenticated_shed.inc();
        tracing::debug!(
            source = source.as_str(),
            "unauthenticated reject shed (rate)"
        );
        return err;
    }
    let quarantined = app.ledger.quarantine(r).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match quarantined {
        Ok(Some((id, _))) => tracing::info!(
            source = source.as_str(),
            outcome = "rejected",
            status = err.status().as_u16(),
            quarantine_id = id,
            latency_ms,
            "delivery"
        ),
        // Full of authenticated rejects, or its queue full: counted.
        Ok(None) | Err(LedgerError::Busy) if !authenticated => {
            app.metrics.unauthenticated_shed.inc();
        }
        // The provider still gets the 4xx (it will retry); the loss of the
        // quarantine copy is logged.
        Ok(None) | Err(_) => {
            tracing::error!(
                source = source.as_str(),
                "could not quarantine a rejected delivery"
            )
        }
    }
    err
}

/// Reads the body, keeping at most the limit. Over it: quarantined (cut at
/// the limit) and 413.
async fn read_body(
    app: &AppState,
    source: Source,
    kept: &mut Map<String, Value>,
    body: Body,
) -> Result<Bytes, ApiError> {
    let limit = app.config.max_body_bytes;
    let mut buf: Vec<u8> = Vec::new();
    let mut over = false;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("could not read the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            let room = limit - buf.len();
            if data.len() > room {
                buf.extend_from_slice(&data[..room]);
                over = true;
                break;
            }
            buf.extend_from_slice(&data);
        }
    }
    if over {
        kept.insert("body_limit".into(), Value::from(limit));
        let err = ApiError::PayloadTooLarge(format!(
            "the body is larger than the limit of {limit} bytes"
        ));
        return Err(reject(
            app,
            source,
            std::mem::take(kept),
            Bytes::from(buf),
            err,
            false,
            Instant::now(),
        )
        .await);
    }
    Ok(Bytes::from(buf))
}

fn kept_headers(headers: &HeaderMap) -> Map<String, Value> {
    let mut kept = Map::new();
    for name in KEPT_HEADERS {
        if let Some(v) = headers.get(*name).and_then(|v| v.to_str().ok()) {
            kept.insert((*name).into(), Value::from(v));
        }
    }
    kept
}
