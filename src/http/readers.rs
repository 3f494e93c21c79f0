//! A small pool of read-only connections on the log file.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::ApiError;
use crate::db;

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
}

/// Idle read connections kept at most.
pub const MAX_IDLE_READERS: usize = 8;

impl Readers {
    pub fn new(path: PathBuf) -> Readers {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
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
