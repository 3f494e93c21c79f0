//! Projections: current state derived from the log, in a store of their own,
//! disposable and rebuilt on demand.
//!
//! Every entity (student, payment, learner, enrollment) keeps a history table
//! with one row per event that touched it, and a current-state row that is the
//! fold of that history in provider-time order (ties by seq), never in arrival
//! order. Applying an event inserts its history row, then:
//! - if the event is newer than the entity's head, folds it onto the current
//!   state (the common, in-order case: O(1));
//! - otherwise re-folds the entity's whole history (late or out-of-order
//!   delivery: O(history of that one entity)).
//!
//! Both paths, and a rebuild's fold pass, use the same `step`, so an
//! incremental build, a rebuild in log order and a build in time order come
//! out identical.
//!
//! The modules, in layers from the bottom up: each imports only those
//! before it.
//!
//! - [`entities`]: the folds, pure, matching typed changes exhaustively.
//! - [`store`]: the store's tables: every statement that writes them, on a
//!   connection given.
//! - [`files`]: the store's files: paths, opening them with their pragmas,
//!   the live store unsynced while the server runs and the marker that has
//!   it rebuilt after a power loss, generations and the choice among them at
//!   start, removal, the lock.
//! - [`reparse`] (here): a logged event's body parsed again into its domain
//!   event, the one way the projector and a rebuild both read the log.
//! - [`rebuild`]: builds a fresh store file from the log; offline, puts it
//!   in place too.
//! - [`live`]: the file serving reads, its position and lag.
//! - [`projector`]: the thread that follows the log into the store, and
//!   swaps a rebuilt file in.
//! - [`query`]: reads whose meaning belongs to the projections.

pub mod entities;
pub mod files;
pub(crate) mod live;
pub mod projector;
pub mod query;
pub mod rebuild;
pub mod store;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::Event;
use crate::log::LoggedEvent;
use crate::sources::{self, ParseContext, Parsed};

/// Bump when the projection tables or the fold change: the server then
/// rebuilds the store from the log, in the background, at start.
///
/// 2: a student's payments indexed in (paid_at, payment_id) order.
/// 3: the student history index covers the history route.
/// 4: the projections move to their own file; history rows keep `received_at`.
/// 5: current rows keep a tally (events, first and last received); payments
///    keep transaction_id and cancelled_at; revisions indexed by receipt and
///    provider time (the finance reports read current rows, not history).
pub const PROJECTION_VERSION: i64 = 5;

/// Errors while projecting.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
    #[error("stored projection state is not valid JSON: {0}")]
    Doc(#[from] serde_json::Error),
    #[error("projection invariant broken: {0}")]
    Invariant(String),
    #[error("projection store file: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::types::FromSqlError> for ProjectionError {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        ProjectionError::Invariant(format!("a stored value has the wrong type: {e}"))
    }
}

/// The domain event of a logged delivery, parsed again from its body (the
/// log keeps bodies, not parsed events); `None` (logged by seq) when it no
/// longer parses: accepted once, but a parser got stricter since. The
/// projector and a rebuild both pass it over and count it, so one event
/// cannot stop the projections, and both skip the same events.
pub fn reparse(e: &LoggedEvent, ctx: &ParseContext) -> Option<Event> {
    match sources::parse(e.source, &e.body, ctx) {
        Ok(Parsed::Delivery(d)) => Some(d.event),
        Ok(Parsed::Ping) | Err(_) => {
            tracing::warn!(
                seq = e.seq,
                "event no longer parses; passed over by the projections"
            );
            None
        }
    }
}

/// A typed change as stored in a history row's `kind` column.
pub trait Kind: Copy + Sized {
    fn as_str(self) -> &'static str;
    fn parse(text: &str) -> Option<Self>;
}

/// One kind of projected entity and its fold.
pub trait Entity {
    /// Current-state table, history table, and the current table's key column.
    const CURRENT: &'static str;
    const HISTORY: &'static str;
    const KEY: &'static str;
    /// What kind of change an event made to the entity.
    type Change: Kind;
    /// What one event says about the entity.
    type Data: Serialize + DeserializeOwned + Clone;
    /// The entity's state after a run of events.
    type State: Serialize + DeserializeOwned;
    /// Folds one event onto the state. Called in (at, seq) order only. Takes
    /// the event's data by value: the state usually keeps it.
    fn step(
        prev: Option<Self::State>,
        change: Self::Change,
        data: Self::Data,
        at: i64,
    ) -> Self::State;
    /// The values of the current row's indexed columns: when a step keeps
    /// them, the store writes the row without touching its indexes.
    type IndexKey: PartialEq;
    fn index_key(state: &Self::State) -> Self::IndexKey;
}

/// A history row read back.
pub struct HistoryRow<E: Entity> {
    pub seq: i64,
    pub change: E::Change,
    /// Provider time, unix seconds.
    pub at: i64,
    /// When registrar received the event, unix microseconds.
    pub received_at: i64,
    pub data: E::Data,
}

/// Folds history rows (already in (at, seq) order) into a state.
pub fn fold<E: Entity>(rows: Vec<HistoryRow<E>>) -> Option<E::State> {
    let mut state = None;
    for r in rows {
        state = Some(E::step(state, r.change, r.data, r.at));
    }
    state
}

/// Each change enum is stored by its own name (`as_str`) and read back through
/// its serde name, which the derive keeps in step with the variants.
macro_rules! stored_kind {
    ($($t:ty),*) => {$(
        impl Kind for $t {
            fn as_str(self) -> &'static str {
                <$t>::as_str(self)
            }
            fn parse(text: &str) -> Option<Self> {
                use serde::Deserialize;
                let de = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(text);
                Self::deserialize(de).ok().filter(|k| k.as_str() == text)
            }
        }
    )*};
}

stored_kind!(
    crate::event::StudentChange,
    crate::event::PaymentChange,
    crate::event::LearnerChange,
    crate::event::EnrollmentChange
);
