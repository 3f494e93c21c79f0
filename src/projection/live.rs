//! The live projection store as readers see it: which file serves reads, the
//! position it has reached, and the projector's health.
//!
//! A rebuild swaps the file: new reads use the new one at once, reads under
//! way finish on the old one, and the old file is deleted when its last
//! reader is done (its [`StoreFile`] is dropped).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::watch;

use super::{files, store};

/// Writer commits whose time is kept for the lag at most; past it the newest
/// are merged (see [`LiveStore::log_advanced`]).
pub const MAX_TRACKED_COMMITS: usize = 65_536;

/// Idle read connections kept per store file at most.
pub const MAX_IDLE_READERS: usize = 8;

/// One store file and its pool of read connections.
pub struct StoreFile {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Set when a newer file replaced this one: the last reader deletes it.
    retired: AtomicBool,
}

impl StoreFile {
    pub fn new(path: PathBuf) -> StoreFile {
        StoreFile {
            path,
            idle: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn take(&self) -> rusqlite::Result<Connection> {
        match self.idle.lock().expect("reader pool lock").pop() {
            Some(c) => Ok(c),
            None => files::open_reader(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().expect("reader pool lock");
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }
}

impl Drop for StoreFile {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            // Close every connection before the files go.
            self.idle.lock().map(|mut v| v.clear()).ok();
            match files::remove(&self.path) {
                Ok(()) => {
                    tracing::info!(path = %self.path.display(), "old projection store removed")
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "could not remove the old projection store")
                }
            }
        }
    }
}

/// Why a read could not be served from the projections.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No usable store yet (first build, or a rebuild after a version bump).
    #[error("the projections are being built")]
    Building,
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// What the projector reports about itself.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Set when the projector stopped on an error: it never skips an event.
    pub failed: Option<String>,
    /// Whether its thread is running.
    pub running: bool,
    /// A rebuild under way: events loaded so far.
    pub rebuilding: Option<u64>,
    pub rebuilds: u64,
}

/// Shared between the projector (writes) and the read API (reads).
pub struct LiveStore {
    current: RwLock<Option<Arc<StoreFile>>>,
    position: watch::Sender<u64>,
    /// The log's head as the writer last published it. Read for the lag and
    /// readiness only; nothing waits on it (the projector has its own inbox).
    log_head: AtomicU64,
    /// The writer's commits the projection has not reached yet: (last seq of
    /// the commit, when it was committed), oldest first. The age of the
    /// first is the projection's lag in time.
    unprojected: Mutex<VecDeque<(u64, Instant)>>,
    health: Mutex<Health>,
}

impl LiveStore {
    /// Serves reads from the store file at `current`, when there is one.
    pub fn new(current: Option<PathBuf>, position: u64, log_head: u64) -> LiveStore {
        LiveStore {
            current: RwLock::new(current.map(|p| Arc::new(StoreFile::new(p)))),
            position: watch::Sender::new(position),
            log_head: AtomicU64::new(log_head),
            unprojected: Mutex::new(
                (log_head > position)
                    .then(|| (log_head, Instant::now()))
                    .into_iter()
                    .collect(),
            ),
            health: Mutex::new(Health::default()),
        }
    }

    /// The store file serving reads now, if any.
    pub fn file(&self) -> Option<Arc<StoreFile>> {
        self.current.read().expect("live store lock").clone()
    }

    /// Makes `file` the one new reads use; the previous one is deleted when
    /// its last reader is done.
    pub fn swap(&self, file: StoreFile, position: u64) {
        let old = self
            .current
            .write()
            .expect("live store lock")
            .replace(Arc::new(file));
        if let Some(old) = old {
            old.retired.store(true, Ordering::Release);
        }
        self.projected(position);
    }

    /// Runs `f` on a read connection of the current file inside one read
    /// transaction, so every query of a request sees one snapshot. Returns
    /// the position that snapshot reflects beside `f`'s result.
    pub fn read<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<(T, u64), E>
    where
        E: From<ReadError>,
    {
        let file = self.file().ok_or(ReadError::Building)?;
        let conn = file.take().map_err(ReadError::from)?;
        conn.prepare_cached("BEGIN")
            .and_then(|mut s| s.execute([]))
            .map_err(ReadError::from)?;
        let position = store::position(&conn).map_err(ReadError::from);
        let result = match position {
            Ok(p) => f(&conn).map(|t| (t, p)),
            Err(e) => Err(e.into()),
        };
        // End the snapshot whatever `f` returned: a pooled connection must
        // not hand an old snapshot to the next request, nor hold back WAL
        // checkpoints. One that cannot end it is dropped, not pooled.
        let ended = conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]));
        if ended.is_ok() || conn.execute_batch("ROLLBACK").is_ok() {
            file.give_back(conn);
        }
        result
    }

    /// The position the projector has committed.
    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// Waits until the projection reaches `seq`, for at most `wait`. Returns
    /// whether it did.
    pub async fn wait_for(&self, seq: u64, wait: Duration) -> bool {
        let mut rx = self.position.subscribe();
        tokio::time::timeout(wait, rx.wait_for(|p| *p >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The projector committed up to `position`.
    pub fn projected(&self, position: u64) {
        self.position.send_replace(position);
        let mut pending = self.unprojected.lock().expect("lag lock");
        while pending.front().is_some_and(|(seq, _)| *seq <= position) {
            pending.pop_front();
        }
    }

    /// The writer committed up to `head`.
    pub fn log_advanced(&self, head: u64) {
        self.log_head.fetch_max(head, Ordering::AcqRel);
        if head > self.position() {
            let mut pending = self.unprojected.lock().expect("lag lock");
            let full = pending.len() >= MAX_TRACKED_COMMITS;
            match pending.back_mut() {
                Some(last) if last.0 >= head => {}
                // Full: fold this commit into the last one kept. Its events
                // then count as committed a little earlier: the lag reads
                // high, never low.
                Some(last) if full => last.0 = head,
                _ => pending.push_back((head, Instant::now())),
            }
        }
    }

    pub fn log_head(&self) -> u64 {
        self.log_head.load(Ordering::Acquire)
    }

    /// How far the projection is behind: events, and the age of the oldest
    /// committed event it lacks.
    pub fn lag(&self) -> (u64, Duration) {
        let events = self.log_head().saturating_sub(self.position());
        let age = match self.unprojected.lock().expect("lag lock").front() {
            Some((_, t)) if events > 0 => t.elapsed(),
            _ => Duration::ZERO,
        };
        (events, age)
    }

    pub fn health(&self) -> Health {
        self.health.lock().expect("health lock").clone()
    }

    pub fn update_health(&self, f: impl FnOnce(&mut Health)) {
        f(&mut self.health.lock().expect("health lock"));
    }
}
