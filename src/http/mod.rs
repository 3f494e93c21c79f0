//! What the HTTP channels share, below all of them: the server's state
//! ([`AppState`]), read connections on the log ([`Readers`]), the one error
//! type ([`ApiError`], [`error`]), query-string parsing ([`params`]), rate
//! limits ([`rate`]), the token checks ([`tokens`]), read-your-writes
//! ([`consistency`]), reports streamed off the async workers ([`stream`]) and the guard against DNS rebinding ([`host`]).
//!
//! The channels themselves are siblings above this module, and none imports
//! another: [`crate::ingest`] (the webhooks), [`crate::api`] (`/v1`, admin,
//! health) and [`crate::console`] (`/console`). [`crate::server`] composes
//! them in one place.

pub mod consistency;
pub mod error;
pub(crate) mod host;
pub mod params;
pub(crate) mod rate;
mod readers;
pub(crate) mod stream;
pub(crate) mod tokens;

use std::sync::Arc;

use rusqlite::Connection;

use crate::config::Config;
use crate::ledger::Ledger;
use crate::log::{bundle, checkpoints};
use crate::metrics::Metrics;
use crate::projection::live::LiveStore;
use crate::projection::projector::Projector;
use crate::projection::query::payments;
use crate::report;
pub use error::ApiError;
pub use readers::Readers;

/// What every handler shares: one `Arc`, so the copy axum makes for every
/// layer and handler of every request is one counter increment, not one per
/// field.
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl AppState {
    pub fn new(app: App) -> AppState {
        AppState(Arc::new(app))
    }
}

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// The server's parts, behind [`AppState`].
pub struct App {
    pub config: Arc<Config>,
    pub ledger: Ledger,
    /// Read connections on the log file.
    pub log: Arc<Readers>,
    /// The projection store serving reads, and the projector's position.
    pub live: Arc<LiveStore>,
    pub projector: Projector,
    pub metrics: Arc<Metrics>,
    /// Unauthenticated rejects kept per second at most.
    pub unauthenticated: Arc<rate::RateLimit>,
}

impl App {
    /// Runs `f` on one snapshot of the projection store and notes its
    /// position for the answer's `X-Registrar-Position`. 503 while no usable
    /// store exists.
    pub async fn projections<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let (value, position) = self.live.read(f)?;
        consistency::record(position);
        Ok(value)
    }

    /// The bundle of every event that made a revision of payment `id`,
    /// oldest first: the payment's proof, for the API and the console alike.
    pub async fn payment_bundles(&self, id: String) -> Result<Vec<bundle::Bundle>, ApiError> {
        let seqs = self
            .projections({
                let id = id.clone();
                move |conn| {
                    let revisions = payments::revisions(conn, &id)?;
                    if revisions.is_empty() {
                        return Err(ApiError::NotFound(format!("no payment has id {id:?}")));
                    }
                    Ok(revisions.iter().map(|r| r.seq as u64).collect::<Vec<_>>())
                }
            })
            .await?;
        let cache = self.log.tree();
        self.log
            .run(move |conn| {
                seqs.into_iter()
                    .map(|seq| Ok(bundle::of_event(conn, cache, seq)?))
                    .collect()
            })
            .await
    }

    /// The log's newest checkpoint, as a report names it.
    pub async fn newest_checkpoint(&self) -> Result<Option<report::Checkpoint>, ApiError> {
        self.log
            .run(|conn| {
                Ok(checkpoints::newest(conn)?
                    .as_ref()
                    .map(report::Checkpoint::from))
            })
            .await
    }
}
