//! Running the server: takes an already-bound listener and a shutdown future,
//! so tests start it on port 0 in three lines.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, AppState, Readers};
use crate::checkpoint::Checkpointer;
use crate::config::Config;
use crate::db;
use crate::ledger::{LedgerConfig, Writer};
use crate::projection::rebuild;

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
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens (creating and migrating) the database, makes the projections
/// current, and serves until `shutdown` resolves. In-flight deliveries are
/// committed and answered before it returns.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let open_err = |source| ServerError::Open {
        path: config.db_path.display().to_string(),
        source,
    };
    let mut conn = db::open_rw(&config.db_path).map_err(open_err)?;
    db::migrate(&mut conn).map_err(open_err)?;
    if let Some(report) = rebuild::ensure(&mut conn, config.parse)? {
        tracing::info!(
            events = report.events,
            seconds = report.seconds,
            "projections built from the log"
        );
    }
    // Checkpoints run on their own thread, off the writer's commits.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(open_err)?;
    let checkpointer = Checkpointer::start(config.db_path.clone());
    let (writer, ledger) = Writer::start(
        conn,
        LedgerConfig {
            queue_depth: config.queue_depth,
            max_batch: config.max_batch,
            quarantine_cap: config.quarantine_cap,
            parse: config.parse,
        },
    );
    let state = AppState {
        readers: Arc::new(Readers::new(config.db_path.clone())),
        config: Arc::new(config),
        ledger,
    };
    // No request-tracing layer: a URI can carry the Toolzz token, and the
    // ingest handlers log one line per delivery themselves.
    let app = api::router(state);
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    writer.shutdown().await;
    checkpointer.stop();
    served?;
    Ok(())
}
