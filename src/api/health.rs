//! `GET /healthz` (the process is up), `GET /readyz` (it can do its job
//! now) and `GET /metrics` (Prometheus text format).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::ErrorAnswer;
use crate::http::params::{NoParams, Params};
use crate::http::AppState;
use crate::log::checkpoints;
use crate::quarantine;

/// Liveness: the process is up
///
/// Answers `ok` while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses(
        (status = 200, description = "The process is up", content_type = "text/plain", body = String, example = "ok"),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
    ))]
pub async fn healthz(Params(NoParams {}): Params<NoParams>) -> &'static str {
    "ok"
}

/// What `/readyz` found.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// Whether the log file answers and the writer is running.
    pub log: Check,
    /// Whether the projector follows the log and how far behind it is.
    pub projector: ProjectorCheck,
    /// Whether checkpoints are signed, and the newest one's size. Unsigned
    /// checkpoints leave the server ready: they are said, not failed.
    pub checkpoints: CheckpointsCheck,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointsCheck {
    /// Whether checkpoints carry the server's signature.
    pub signed: bool,
    /// The verifier key (`name+keyid+base64`) that checks them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub verifier_key: Option<String>,
    /// The newest checkpoint's tree size, once one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub newest_size: Option<u64>,
    /// What is missing, when they are unsigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub problem: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub problem: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectorCheck {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub problem: Option<String>,
    pub position: u64,
    pub log_head: u64,
    pub lag_events: u64,
    pub lag_seconds: f64,
    /// Events loaded by a rebuild under way.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub rebuilding: Option<u64>,
}

/// Readiness
///
/// 200 when the log is writable, the projector runs and its lag is under
/// `--max-lag-ms`; 503 with the same body, saying why, otherwise.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
        (status = 503, description = "Not ready; the body says why", body = Readiness),
    ))]
pub async fn readyz(
    State(app): State<AppState>,
    Params(NoParams {}): Params<NoParams>,
) -> impl IntoResponse {
    let log = match (app.ledger.is_running(), log_writable(&app).await) {
        (false, _) => Check {
            ok: false,
            problem: Some("the log writer has stopped".into()),
        },
        (true, Err(e)) => Check {
            ok: false,
            problem: Some(e),
        },
        (true, Ok(())) => Check {
            ok: true,
            problem: None,
        },
    };
    let health = app.live.health();
    let (lag_events, lag) = app.live.lag();
    let problem = if let Some(failed) = &health.failed {
        Some(format!("the projector stopped: {failed}"))
    } else if !health.running {
        Some("the projector is not running".into())
    } else if app.live.file().is_none() {
        Some("the projections are being built; reads answer 503 until then".into())
    } else if lag > app.config.max_lag {
        Some(format!(
            "the projections are {:.1} s behind the log (bound {:.1} s)",
            lag.as_secs_f64(),
            app.config.max_lag.as_secs_f64()
        ))
    } else {
        None
    };
    let projector = ProjectorCheck {
        ok: problem.is_none(),
        problem,
        position: app.live.position(),
        log_head: app.live.log_head(),
        lag_events,
        lag_seconds: lag.as_secs_f64(),
        rebuilding: health.rebuilding,
    };
    let checkpoints = checkpoints_check(&app).await;
    let ready = log.ok && projector.ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            log,
            projector,
            checkpoints,
        }),
    )
}

/// Whether checkpoints are signed, and how far they reach.
async fn checkpoints_check(app: &AppState) -> CheckpointsCheck {
    let newest_size = app
        .log
        .run(|conn| Ok(checkpoints::newest_size(conn)?))
        .await
        .ok()
        .flatten();
    match &app.config.signing_key {
        Some(key) => CheckpointsCheck {
            signed: true,
            verifier_key: Some(key.verifier().to_string()),
            newest_size,
            problem: None,
        },
        None => CheckpointsCheck {
            signed: false,
            verifier_key: None,
            newest_size,
            problem: Some(
                "checkpoints are not signed: set REGISTRAR_SIGNING_KEY_FILE to a key from `registrar key generate`"
                    .into(),
            ),
        },
    }
}

/// Whether the log file can take a write: the writer's last commit did not
/// fail, and the file is not read-only.
async fn log_writable(app: &AppState) -> Result<(), String> {
    if let Some(e) = app.ledger.last_failure() {
        return Err(format!("the last commit failed: {e}"));
    }
    let meta = std::fs::metadata(&app.config.db_path).map_err(|e| format!("the log file: {e}"))?;
    if meta.permissions().readonly() {
        return Err("the log file is read-only".into());
    }
    Ok(())
}

/// Metrics
///
/// Every metric, in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
    ))]
pub async fn metrics(
    State(app): State<AppState>,
    Params(NoParams {}): Params<NoParams>,
) -> impl IntoResponse {
    let m = &app.metrics;
    let (lag_events, lag) = app.live.lag();
    m.log_head.set(app.live.log_head() as i64);
    m.projection_position.set(app.live.position() as i64);
    m.projection_lag_events.set(lag_events as i64);
    m.projection_lag_seconds.set(lag.as_secs_f64());
    let health = app.live.health();
    m.projector_running
        .set(i64::from(health.running && health.failed.is_none()));
    m.rebuild_running
        .set(i64::from(health.rebuilding.is_some()));
    m.rebuilds
        .inc_by(health.rebuilds.saturating_sub(m.rebuilds.get()));
    let quarantine = app
        .log
        .run(|conn| {
            let pending = quarantine::pending(conn)?;
            let evictions = quarantine::evictions(conn)?;
            Ok((pending, evictions))
        })
        .await;
    if let Ok((pending, evictions)) = quarantine {
        m.quarantine_pending.set(pending);
        m.quarantine_evictions.set(evictions as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}
