//! Running the server: takes an already-bound listener and a shutdown future,
//! so tests start it on port 0 in three lines.
//!
//! Start-up, in order: the log file (created and migrated), the projection
//! store (chosen among the files present, see
//! [`files::open_store`]), the log writer (which first builds the tree of a
//! log made before the tree existed), the projector, the checkpoint timer,
//! then the listener. Ingest is served at once; if no usable projection store exists
//! (first start on an existing log, a `PROJECTION_VERSION` bump, the upgrade
//! from a release that kept projections in the log file) it is built in the
//! background while reads answer 503.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use axum::middleware;
use axum::Router;

use crate::checkpoint::Checkpointer;
use crate::config::Config;
use crate::connections::{self, Timeouts};
use crate::http::error::{with_error_layers, ApiError};
use crate::http::rate::RateLimit;
use crate::http::{host, App, AppState, Readers};
use crate::ledger::{CheckpointTimer, LedgerConfig, Writer};
use crate::metrics::Metrics;
use crate::projection::files;
use crate::projection::live::LiveStore;
use crate::projection::projector::{Projector, ProjectorConfig};
use crate::projection::store;
use crate::{api, console, ingest};
use crate::{db, log};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening the database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("preparing the projections: {0}")]
    Projections(#[from] crate::projection::ProjectionError),
    #[error(transparent)]
    Locked(#[from] files::LockError),
    #[error(transparent)]
    LogHeld(#[from] log::lock::HoldError),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens (creating and migrating) the log, chooses the projection store,
/// starts the writer and the projector, and serves until `shutdown`
/// resolves. Then it stops accepting, lets requests in progress finish for
/// up to `config.shutdown_grace` (in-flight deliveries are committed and
/// answered), closes every connection left, and stops the checkpoint timer,
/// the writer, the projector (after its batch) and the WAL checkpointer, in
/// that order.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let open_err = |source| ServerError::Open {
        path: config.db_path.display().to_string(),
        source,
    };
    // Held while the server runs: an offline `registrar rebuild` must not
    // swap the store's files under the projector and its readers.
    let _lock = files::lock(&config.projections_path)?;
    // And the log: `registrar restore` must not rename a file over it.
    let _log_lock = log::lock::hold(&config.db_path)?;
    let mut conn = db::open_rw(&config.db_path).map_err(open_err)?;
    db::migrate(&mut conn).map_err(open_err)?;
    let log_head = log::head(&conn).map_err(open_err)?.seq;
    let legacy = has_legacy_projections(&conn).map_err(open_err)?;
    let opened = files::open_store(&config.projections_path, log_head, true)?;
    let store_ready = opened.file.is_some();
    if opened.file.is_none() {
        tracing::info!(
            log_head,
            "no usable projection store: building one in the background; reads answer 503 until it is done"
        );
    }
    let live = Arc::new(LiveStore::new(opened.file, opened.position, log_head));
    let metrics = Arc::new(Metrics::new());
    let (projector_thread, projector) = Projector::start(
        ProjectorConfig {
            path: config.projections_path.clone(),
            log_path: config.db_path.clone(),
            parse: config.parse,
            sync: opened.sync,
        },
        Arc::clone(&live),
        opened.writer,
        log_head,
    );
    // Checkpoints run on their own thread, off the writer's commits.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(open_err)?;
    let checkpointer = Checkpointer::start(config.db_path.clone());
    let wake = projector.clone();
    let (writer, ledger) = Writer::start(
        conn,
        LedgerConfig {
            queue_depth: config.queue_depth,
            max_batch: config.max_batch,
            quarantine_cap: config.quarantine_cap,
            parse: config.parse,
            on_commit: Some(Arc::new(move |events| wake.committed(events))),
            metrics: Some(Arc::clone(&metrics)),
            checkpoints: config.checkpoint_maker(),
            tree: config.tree,
        },
    );
    let checkpoint_timer = CheckpointTimer::start(ledger.clone(), config.checkpoint_interval);
    if legacy {
        // The log file of a release before the split also held the
        // projections: drop them once the new store serves reads.
        let (projector, ledger) = (projector.clone(), ledger.clone());
        tokio::spawn(async move {
            // Without a usable store the projector is building one: join it.
            if store_ready {
            } else if let Err(e) = projector.serving().await {
                tracing::error!(error = %e, "the projection store could not be built; the old tables stay in the log file");
                return;
            }
            match ledger.maintain(Box::new(drop_legacy_projections)).await {
                Ok(()) => tracing::info!("dropped the projection tables from the log file"),
                Err(e) => {
                    tracing::error!(error = %e, "could not drop the old projection tables from the log file")
                }
            }
        });
    }
    let timeouts = Timeouts {
        header_read: config.header_read_timeout,
        idle: config.idle_timeout,
        grace: config.shutdown_grace,
    };
    let log = Arc::new(Readers::new(config.db_path.clone()));
    log.warm_tree();
    let state = AppState::new(App {
        unauthenticated: Arc::new(RateLimit::per_second(
            config.unauthenticated_rate,
            config.clock.clone(),
        )),
        log,
        config: Arc::new(config),
        ledger,
        live,
        projector,
        metrics,
    });
    let app = router(state);
    let served = connections::serve(listener, app, timeouts, shutdown).await;
    checkpoint_timer.stop();
    writer.shutdown().await;
    tokio::task::spawn_blocking(move || projector_thread.stop())
        .await
        .ok();
    checkpointer.stop();
    served?;
    Ok(())
}

/// Every HTTP channel, composed in this one place: the webhooks
/// ([`ingest`]) and the API ([`api`]), routed from their declarations with
/// the OpenAPI document those make ([`api::openapi::serve`]), and the
/// console ([`console`], not in the document), behind
/// the guard against DNS rebinding ([`host::guard`]), with the error shape
/// and the caught panic ([`with_error_layers`]) around all of them. The
/// connection limits are [`connections::serve`]'s.
///
/// No request-tracing layer: a URI can carry the Toolzz token, and the
/// ingest handlers log one line per delivery themselves.
pub fn router(state: AppState) -> Router {
    let channels = ingest::router(state.clone()).merge(api::router(state.clone()));
    let app = api::openapi::serve(channels)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state.clone())
        .merge(console::router(state.clone()))
        .layer(middleware::from_fn_with_state(state, host::guard));
    with_error_layers(app)
}

/// Whether the log file still holds projection tables (a release before the
/// split kept them there, with `next_` copies during a rebuild).
pub fn has_legacy_projections(conn: &rusqlite::Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projection_state')",
        [],
        |r| r.get(0),
    )
}

/// Drops every projection table (and a rebuild's `next_` copies) from the
/// log file.
pub fn drop_legacy_projections(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    for t in store::TABLES.iter().rev() {
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS {t}; DROP TABLE IF EXISTS next_{t};"
        ))?;
    }
    Ok(())
}
