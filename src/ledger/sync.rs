//! The log's fsync, on a thread of its own: group commit, pipelined.
//!
//! The write connection commits with `synchronous=NORMAL`: SQLite writes a
//! batch's frames to the WAL and returns without an fsync. The batch then
//! waits here: this thread fsyncs the WAL file, and only then is anyone told
//! (the projector handed the events, every request of the batch answered).
//! Meanwhile the writer commits the next batch, so the disk's flush and the
//! writer's work overlap instead of taking turns, and one fsync covers every
//! batch that queued while the previous one ran. A 2xx still means the
//! delivery is on disk, as with `synchronous=FULL`, which fsyncs the WAL
//! inside each commit.
//!
//! Checkpoints keep their own fsyncs: the checkpointer's connection runs
//! `synchronous=FULL`, and SQLite fsyncs the WAL before it copies a frame into
//! the database file, and the database file before the WAL is written over.
//!
//! An fsync that fails is not tried again: the kernel may have dropped the
//! pages it could not write, and a second fsync could succeed without them.
//! The batch and every later one are answered with the error, and the writer
//! stops (`/readyz` fails) until a restart lets SQLite recover the WAL.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// Committed batches waiting for their fsync at most. Past it the writer
/// waits: it cannot run further ahead of the disk than this.
pub const SYNC_QUEUE: usize = 8;

/// The log's WAL could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("the log's WAL could not be synced to disk: {0}")]
pub struct SyncError(#[source] std::io::Error);

/// Why the fsync failed, once it has: shared with whoever reports readiness,
/// and set before the failed batch is answered. Set once, never cleared: a
/// failed fsync is not tried again.
pub type Broken = Arc<OnceLock<Arc<SyncError>>>;

/// The fsync thread, answering items of type `T` once the WAL holding them
/// is on disk. Dropping it answers everything queued, then joins the thread.
pub struct Syncer<T: Send + 'static> {
    wal: PathBuf,
    tx: Option<SyncSender<T>>,
    thread: Option<JoinHandle<()>>,
    broken: Broken,
}

impl<T: Send + 'static> Syncer<T> {
    /// Starts the thread for the WAL file `wal`. `answer` is called with each
    /// item, in the order sent, and whether its fsync succeeded; `broken`
    /// records the first failure.
    pub fn start(
        wal: PathBuf,
        broken: Broken,
        mut answer: impl FnMut(T, Result<(), &Arc<SyncError>>) + Send + 'static,
    ) -> Syncer<T> {
        let (tx, rx) = sync_channel::<T>(SYNC_QUEUE);
        let (path, state) = (wal.clone(), Arc::clone(&broken));
        let thread = std::thread::Builder::new()
            .name("registrar-fsync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut ready = vec![first];
                    ready.extend(rx.try_iter());
                    let synced = sync(&path, &state);
                    for item in ready {
                        answer(item, synced.as_ref().map(|_| ()));
                    }
                }
            })
            .expect("spawning the fsync thread");
        Syncer {
            wal,
            tx: Some(tx),
            thread: Some(thread),
            broken,
        }
    }

    /// Queues `item` to be answered after the next fsync of the WAL. Waits
    /// while [`SYNC_QUEUE`] batches are queued.
    pub fn send(&self, item: T) {
        let tx = self.tx.as_ref().expect("sending before drop");
        // The thread only ends when the sender is dropped.
        tx.send(item).expect("the fsync thread is running");
    }

    /// Fsyncs the WAL on the calling thread, for a command the writer answers
    /// itself (a readmit, a pin): everything committed so far is then on disk.
    pub fn sync_now(&self) -> Result<(), Arc<SyncError>> {
        sync(&self.wal, &self.broken)
    }

    /// Why the WAL could not be made durable, once it could not.
    pub fn broken(&self) -> Option<Arc<SyncError>> {
        self.broken.get().cloned()
    }
}

impl<T: Send + 'static> Drop for Syncer<T> {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fsyncs the file at `wal` unless an earlier fsync failed. The file is
/// opened by name each time: SQLite may truncate it but keeps its name, and
/// an fsync through any descriptor flushes the file's pages.
fn sync(wal: &Path, broken: &Broken) -> Result<(), Arc<SyncError>> {
    if let Some(e) = broken.get() {
        return Err(Arc::clone(e));
    }
    let synced = std::fs::File::open(wal).and_then(|f| f.sync_data());
    synced.map_err(|e| {
        tracing::error!(error = %e, wal = %wal.display(), "fsync failed: the writer stops; restart the server");
        // Two threads failing at once (the fsync thread and a command the
        // writer answers itself): the first failure is the one kept.
        Arc::clone(broken.get_or_init(|| Arc::new(SyncError(e))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Each answer: the item and the fsync's error, if any.
    type Answers = Arc<Mutex<Vec<(u32, Result<(), String>)>>>;

    /// A syncer over a WAL file in `dir` that records every answer.
    fn recording(dir: &tempfile::TempDir) -> (PathBuf, Syncer<u32>, Answers) {
        let wal = dir.path().join("log.db-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let answered = Answers::default();
        let seen = Arc::clone(&answered);
        let syncer = Syncer::start(
            wal.clone(),
            Broken::default(),
            move |n: u32, r: Result<(), &Arc<SyncError>>| {
                seen.lock().unwrap().push((n, r.map_err(|e| e.to_string())));
            },
        );
        (wal, syncer, answered)
    }

    #[test]
    fn every_item_is_answered_in_order_once_the_file_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let (_, syncer, answered) = recording(&dir);
        for n in 0..100 {
            syncer.send(n);
        }
        drop(syncer);
        let answered = answered.lock().unwrap();
        assert_eq!(*answered, (0..100).map(|n| (n, Ok(()))).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_fsync_fails_its_batch_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, syncer, answered) = recording(&dir);
        syncer.send(1);
        assert!(syncer.sync_now().is_ok());
        // Item 1 is answered by the fsync thread on its own time: wait for
        // that answer before the file goes, or a late thread syncs after it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while answered.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "item 1 never answered"
            );
            std::thread::yield_now();
        }
        // The file gone stands for a failed fsync.
        std::fs::remove_file(&wal).unwrap();
        assert!(syncer.sync_now().is_err());
        // Back again: a later fsync would succeed, but must not be trusted.
        std::fs::write(&wal, b"frames").unwrap();
        syncer.send(2);
        assert!(syncer.broken().is_some());
        drop(syncer);
        let answered = answered.lock().unwrap();
        assert_eq!(answered[0], (1, Ok(())));
        assert_eq!(answered[1].0, 2);
        assert!(
            answered[1]
                .1
                .as_ref()
                .is_err_and(|e| e.contains("could not be synced")),
            "{answered:?}"
        );
    }
}
