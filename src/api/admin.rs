//! Audit and admin endpoints.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use super::read::{NoParams, Params};
use super::{ApiError, AppState};
use crate::log;
use crate::projection::rebuild::RebuildReport;
use crate::projection::Projector;
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
    let head = app.readers.run(|conn| Ok(log::head(conn)?)).await?;
    Ok(Json(HeadAnswer {
        seq: head.seq,
        hash: hex::encode(head.hash),
    }))
}

/// `POST /v1/admin/rebuild`: answers when the rebuilt projections are live.
pub async fn rebuild(
    State(app): State<AppState>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<RebuildReport>, ApiError> {
    Ok(Json(app.ledger.rebuild().await?))
}

/// `GET /v1/admin/status`: log head, projection position, quarantine size.
pub async fn status(
    State(app): State<AppState>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<Value>, ApiError> {
    app.readers
        .run(|conn| {
            // One snapshot (see `Readers::run`): the projections must hold
            // exactly the log's head, since both are written in the same
            // transaction.
            let head = log::head(conn)?;
            let projected = Projector::live().last_seq(conn)?;
            let pending: i64 = conn.query_row(
                "SELECT COUNT(*) FROM quarantine WHERE readmitted_at IS NULL",
                [],
                |r| r.get(0),
            )?;
            let evictions = quarantine::evictions(conn)?;
            if projected != head.seq {
                return Err(ApiError::Internal(format!(
                    "projections hold seq {projected}, the log {}",
                    head.seq
                )));
            }
            Ok(Json(json!({
                "log": { "seq": head.seq, "hash": hex::encode(head.hash) },
                "projections": { "last_seq": projected },
                "quarantine": { "pending": pending, "evictions": evictions },
            })))
        })
        .await
}
