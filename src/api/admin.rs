//! Audit and admin endpoints.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::json;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::openapi::ErrorAnswer;
use crate::http::params::{schema, NoParams, Params};
use crate::http::{ApiError, AppState};
use crate::ledger::CheckpointError;
use crate::log;
use crate::log::checkpoints::Made;
use crate::projection::rebuild::RebuildReport;
use crate::quarantine;

/// The head of the chain, for an auditor to record and later `--pin`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Head)]
pub struct HeadAnswer {
    pub seq: u64,
    /// The chain hash of the event at `seq` (hex; all zeros for an empty log).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hash: String,
}

/// The head of the hash chain
///
/// To record, and later pass to `registrar verify --pin`.
#[utoipa::path(get, path = "/v1/audit/head", tag = "audit",
    responses(
        (status = 200, description = "The head", body = HeadAnswer),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
    ))]
pub async fn audit_head(
    State(app): State<AppState>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<HeadAnswer>, ApiError> {
    let head = app.log.run(|conn| Ok(log::head(conn)?)).await?;
    Ok(Json(HeadAnswer {
        seq: head.seq,
        hash: hex::encode(head.hash),
    }))
}

/// The schema of a [`RebuildReport`], the projection's own type (which
/// knows nothing of the API).
struct RebuildAnswer;

impl utoipa::PartialSchema for RebuildAnswer {
    fn schema() -> RefOr<Schema> {
        RefOr::T(rebuild_report_schema())
    }
}

impl ToSchema for RebuildAnswer {
    fn name() -> std::borrow::Cow<'static, str> {
        "RebuildReport".into()
    }
}

fn rebuild_report_schema() -> Schema {
    let seconds = json!({ "type": "number", "minimum": 0 });
    let count = json!({ "type": "integer", "minimum": 0 });
    schema(json!({
        "type": "object",
        "required": ["events", "skipped", "last_seq", "seconds", "events_per_second",
            "load_seconds", "fold_seconds", "catch_up_seconds"],
        "properties": {
            "events": count, "skipped": count, "last_seq": count,
            "seconds": seconds, "events_per_second": seconds, "load_seconds": seconds,
            "fold_seconds": seconds, "catch_up_seconds": seconds,
        }
    }))
}

/// Rebuild every projection from the log
///
/// Builds the projections into a fresh file and answers once it serves
/// reads. A request while a rebuild runs joins it.
#[utoipa::path(post, path = "/v1/admin/rebuild", tag = "admin",
    responses(
        (status = 200, description = "Rebuilt: what the build did", body = RebuildAnswer),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
    ))]
pub async fn rebuild(
    State(app): State<AppState>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<RebuildReport>, ApiError> {
    app.projector
        .rebuild()
        .await
        .map(Json)
        .map_err(|e| ApiError::Internal(format!("rebuild: {e}")))
}

/// A checkpoint made on demand.
#[derive(Serialize, ToSchema)]
pub struct CheckpointAnswer {
    /// False when the newest checkpoint was already at the head.
    pub new: bool,
    /// Its tree size: the log's head.
    pub tree_size: u64,
    /// Its root hash, base64.
    pub root: String,
    /// Whether it carries the server's signature.
    pub signed: bool,
    /// The note, exactly as `GET /v1/log/checkpoint` serves it.
    pub note: String,
}

/// Make a checkpoint now
///
/// Through the one writer, as the timer makes them: of the log's head, signed
/// when a key is configured; when the newest is at the head already, that
/// one. For a close: make one, then hand its note to the auditor.
#[utoipa::path(post, path = "/v1/admin/checkpoint", tag = "admin",
    responses(
        (status = 200, description = "The checkpoint at the head", body = CheckpointAnswer),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
    ))]
pub async fn checkpoint(
    State(app): State<AppState>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<CheckpointAnswer>, ApiError> {
    let made = app.ledger.checkpoint().await.map_err(|e| match e {
        CheckpointError::Ledger(e) => ApiError::from(e),
        e => ApiError::Internal(format!("checkpoint: {e}")),
    })?;
    let new = matches!(made, Made::New(_));
    let cp = made.checkpoint();
    Ok(Json(CheckpointAnswer {
        new,
        tree_size: cp.size,
        root: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cp.root),
        signed: cp.signed,
        note: cp.note.clone(),
    }))
}

/// `GET /v1/admin/status`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// The log's head.
    pub log: HeadAnswer,
    pub projections: ProjectionStatus,
    pub quarantine: QuarantineStatus,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectionStatus {
    /// The log seq the projections hold.
    pub last_seq: u64,
    pub lag_events: u64,
    pub lag_seconds: f64,
    pub running: bool,
    /// Why the projector stopped, if it did.
    pub failed: Option<String>,
    /// A rebuild under way: events loaded so far.
    pub rebuilding: Option<u64>,
    pub rebuilds: u64,
    /// The projection store's file; null while none serves reads.
    pub file: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct QuarantineStatus {
    pub pending: i64,
    pub evictions: u64,
}

/// Log head, projection position and lag, quarantine size
#[utoipa::path(get, path = "/v1/admin/status", tag = "admin",
    responses(
        (status = 200, description = "The status", body = Status),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
    ))]
pub async fn status(
    State(app): State<AppState>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<Status>, ApiError> {
    let (head, pending, evictions) = app
        .log
        .run(|conn| {
            Ok((
                log::head(conn)?,
                quarantine::pending(conn)?,
                quarantine::evictions(conn)?,
            ))
        })
        .await?;
    let health = app.live.health();
    let (lag_events, lag) = app.live.lag();
    Ok(Json(Status {
        log: HeadAnswer {
            seq: head.seq,
            hash: hex::encode(head.hash),
        },
        projections: ProjectionStatus {
            last_seq: app.live.position(),
            lag_events,
            lag_seconds: lag.as_secs_f64(),
            running: health.running,
            failed: health.failed,
            rebuilding: health.rebuilding,
            rebuilds: health.rebuilds,
            file: app.live.file().map(|f| f.path().display().to_string()),
        },
        quarantine: QuarantineStatus { pending, evictions },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rebuild_reports_schema_names_exactly_the_fields_it_serializes() {
        // A struct literal: a field added to the report does not compile
        // here until this test (and so the schema) is looked at.
        let report = RebuildReport {
            events: 1,
            skipped: 0,
            last_seq: 1,
            seconds: 0.5,
            events_per_second: 2.0,
            load_seconds: 0.1,
            fold_seconds: 0.1,
            catch_up_seconds: 0.0,
        };
        let value = serde_json::to_value(&report).unwrap();
        let mut fields: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        let schema = serde_json::to_value(rebuild_report_schema()).unwrap();
        let mut documented: Vec<_> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut required: Vec<String> = serde_json::from_value(schema["required"].clone()).unwrap();
        fields.sort();
        documented.sort();
        required.sort();
        assert_eq!(fields, documented);
        assert_eq!(fields, required);
    }
}
