//! Ingest metrics: a layer on the webhook routes counts every answer by
//! source, event type and outcome and times it; the handler notes what only
//! it knows (the event type, accepted or duplicate) in a task-local.

use std::cell::Cell;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::http::AppState;
use crate::metrics::{DeliveryLabels, SourceLabels};
use crate::sources;

tokio::task_local! {
    static NOTE: Cell<Note>;
}

/// What the handler learned about a delivery.
#[derive(Clone, Copy, Default)]
struct Note {
    event_type: Option<&'static str>,
    outcome: Option<&'static str>,
}

/// Notes the parsed delivery's event type: a type the sources know by its
/// name, anything else as `other`, so a sender cannot grow the series.
pub fn event_type(name: &str) {
    let label = sources::known_type(name).unwrap_or("other");
    let _ = NOTE.try_with(|n| {
        n.set(Note {
            event_type: Some(label),
            ..n.get()
        })
    });
}

/// Notes a 2xx outcome: accepted, duplicate or ping.
pub fn outcome(outcome: &'static str) {
    let _ = NOTE.try_with(|n| {
        n.set(Note {
            outcome: Some(outcome),
            ..n.get()
        })
    });
}

/// The layer on the webhook routes.
pub async fn deliveries(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let source = if req.uri().path().starts_with("/webhooks/jodo") {
        "jodo"
    } else {
        "toolzz"
    };
    let (response, note) = NOTE
        .scope(Cell::new(Note::default()), async {
            let response = next.run(req).await;
            (response, NOTE.with(|n| n.get()))
        })
        .await;
    let outcome = note.outcome.unwrap_or(match response.status() {
        StatusCode::BAD_REQUEST => "rejected_invalid",
        StatusCode::UNAUTHORIZED => "rejected_unauthenticated",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_success() => "accepted",
        _ => "error",
    });
    app.metrics
        .deliveries
        .get_or_create(&DeliveryLabels {
            source,
            event_type: note.event_type.unwrap_or("unknown"),
            outcome,
        })
        .inc();
    app.metrics
        .ingest_latency
        .get_or_create(&SourceLabels { source })
        .observe(started.elapsed().as_secs_f64());
    response
}
