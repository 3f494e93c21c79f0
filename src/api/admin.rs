//! Audit and admin endpoints.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use crate::http::params::{NoParams, Params};
use crate::http::{ApiError, AppState};
use crate::log;
use crate::projection::rebuild::RebuildReport;
use crate::quarantine;

/// The head of the chain, for an auditor to record and later `--pin`.
#[derive(Debug, Serialize)]
pub struct HeadAnswer {
    pub seq: u64,
    pub hash: String,
}

/// `GET /v1/audit/head`.
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

/// `POST /v1/admin/rebuild`: builds the projections into a fresh file and
/// answers once it serves reads. A request while a rebuild runs joins it.
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

/// `GET /v1/admin/status`: log head, projection position and lag, the
/// projector's health, quarantine size.
pub async fn status(
    State(app): State<AppState>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({
        "log": { "seq": head.seq, "hash": hex::encode(head.hash) },
        "projections": {
            "last_seq": app.live.position(),
            "lag_events": lag_events,
            "lag_seconds": lag.as_secs_f64(),
            "running": health.running,
            "failed": health.failed,
            "rebuilding": health.rebuilding,
            "rebuilds": health.rebuilds,
            "file": app.live.file().map(|f| f.path().display().to_string()),
        },
        "quarantine": { "pending": pending, "evictions": evictions },
    })))
}
