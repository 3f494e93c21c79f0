//! A small pool of read-only connections on the log file, and the cache of
//! the tree's upper levels that proofs read through.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::ApiError;
use crate::db;
use crate::log::tree::{self, HashCache};

/// A small pool of read-only connections on the log file.
///
/// Reads run inline on the async worker that handles the request: they are
/// indexed lookups over a local file (tens of microseconds) and pages of at
/// most [`super::params::MAX_LIMIT`] rows, so a hop to a blocking thread
/// would cost as much as the query. At most one read per worker runs at a
/// time.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// The tree's upper levels, which every proof reads, in memory.
    tree: HashCache,
}

/// Idle read connections kept at most.
pub const MAX_IDLE_READERS: usize = 8;

impl Readers {
    pub fn new(path: PathBuf) -> Readers {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
            tree: HashCache::new(),
        }
    }

    /// The cache proofs read the tree's upper levels through.
    pub fn tree(&self) -> &HashCache {
        &self.tree
    }

    /// Fills [`Self::tree`] from the file on a thread of its own (a scan of
    /// the tree's table: about a second per million events), so that the
    /// first proofs after a start do not each read the upper levels from the
    /// file. Proofs are answered meanwhile, reading what is not cached yet.
    pub fn warm_tree(self: &Arc<Self>) {
        let readers = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("tree-cache".into())
            .spawn(move || {
                let warmed = db::open_ro(&readers.path)
                    .map_err(tree::StoreError::from)
                    .and_then(|conn| readers.tree.warm(&conn));
                match warmed {
                    Ok(hashes) => tracing::debug!(hashes, "the tree's upper levels are cached"),
                    Err(e) => tracing::warn!(error = %e, "could not cache the tree's upper levels"),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the tree cache's thread");
        }
    }

    /// Runs `f` on a read connection, inside one read transaction: every
    /// query of a request sees the same snapshot (a student resolved by one
    /// query still exists for the next, a page and its total agree), and
    /// SQLite takes its read locks once per request, not once per statement.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Connection) -> Result<T, ApiError>,
    {
        let conn = self.idle.lock().expect("reader pool lock").pop();
        let conn = match conn {
            Some(c) => c,
            None => db::open_ro(&self.path)?,
        };
        conn.prepare_cached("BEGIN")?.execute([])?;
        let result = f(&conn);
        // End the snapshot whatever `f` returned: a pooled connection must
        // not hand an old snapshot to the next request, nor hold back WAL
        // checkpoints. One that cannot end it is dropped, not pooled.
        if !conn.is_autocommit() {
            let ended = conn
                .prepare_cached("COMMIT")
                .and_then(|mut s| s.execute([]));
            if ended.is_err() && conn.execute_batch("ROLLBACK").is_err() {
                return result;
            }
        }
        let mut idle = self.idle.lock().expect("reader pool lock");
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}
