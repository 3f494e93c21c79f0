//! The WAL checkpointer: copies committed pages from the WAL into the
//! database file on its own thread, so the writer's commits never pay for it.
//!
//! SQLite's default runs a checkpoint (with an fsync of the database file)
//! inside whichever commit crosses 1000 WAL pages: a latency spike on that
//! batch of deliveries. The server turns that off on the write connection
//! and runs PASSIVE checkpoints here instead, which never block the writer.
//! Durability is unchanged: every batch's WAL is fsynced before it is
//! answered ([`crate::ledger`]), and this connection's `synchronous=FULL`
//! makes SQLite fsync the WAL before it copies any frame into the database.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::db;

/// How often the checkpointer runs. A checkpoint copies each page once
/// however often commits rewrote it since the last one (index leaves and
/// interior pages, the newest row pages), so fewer checkpoints write fewer
/// bytes and fsync less often: once a second instead of every 100 ms measured +13%
/// acknowledged events/s and a p99 20% lower, in interleaved pairs. The WAL
/// then holds about a second of appends (tens of MiB under load).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(1000);

/// WAL pages past which the checkpointer also asks for a RESTART checkpoint
/// (it waits for the writer's current transaction, then lets the next one
/// write the WAL from its start), so the WAL cannot grow without bound under
/// sustained load. 65,536 pages of 4 KiB: 256 MiB.
pub const WAL_RESTART_PAGES: i64 = 65_536;

/// PASSIVE checkpoints run back to back before a RESTART, at most. A RESTART
/// holds new write transactions off while it copies every frame not yet in
/// the database file and fsyncs it; right after a PASSIVE that is everything
/// committed while the PASSIVE ran (50-100 ms of appends under load; it
/// blocked 65-121 ms in 12 RESTARTs of 12). Each further PASSIVE copies what
/// came during the one before, without blocking anyone, so the RESTART is
/// left a few milliseconds of frames: 5-36 ms in 18 of 23, though 81-119 ms
/// in 5 (spent in the database file's fsync, see README).
pub const CATCH_UP_PASSES: usize = 3;

/// Frames appended during a catch-up PASSIVE below which the RESTART runs at
/// once: about one batch of deliveries.
pub const RESTART_SLACK_PAGES: i64 = 512;

/// A running checkpointer; stopped (with a final TRUNCATE checkpoint) by
/// [`Checkpointer::stop`].
pub struct Checkpointer {
    /// Dropped to stop the thread: it wakes at once, not at its next turn.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(path: PathBuf) -> Checkpointer {
        let (stop, stopped) = channel();
        let thread = std::thread::Builder::new()
            .name("registrar-checkpoint".into())
            .spawn(move || run(path, stopped))
            .expect("spawning the checkpointer");
        Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(path: PathBuf, stopped: Receiver<()>) {
    let conn = match db::open_rw(&path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "checkpointer could not open the database; SQLite's own checkpoints apply");
            return;
        }
    };
    let checkpoint = |mode: &str| -> rusqlite::Result<(i64, i64, i64)> {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
    };
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_INTERVAL) {
        match checkpoint("PASSIVE") {
            Ok((_, wal_pages, _)) if wal_pages > WAL_RESTART_PAGES => {
                let mut seen = wal_pages;
                for _ in 0..CATCH_UP_PASSES {
                    match checkpoint("PASSIVE") {
                        Ok((_, now, _)) => {
                            let appended = now - seen;
                            seen = now;
                            if appended <= RESTART_SLACK_PAGES {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "WAL checkpoint failed");
                            break;
                        }
                    }
                }
                // Blocks new write transactions while it runs: logged with
                // its duration, since deliveries wait for it.
                let started = std::time::Instant::now();
                match checkpoint("RESTART") {
                    Ok(_) => tracing::info!(
                        wal_pages = seen,
                        ms = started.elapsed().as_millis() as u64,
                        "WAL restarted"
                    ),
                    Err(e) => tracing::warn!(error = %e, "WAL restart checkpoint failed"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
    if let Err(e) = checkpoint("TRUNCATE") {
        tracing::warn!(error = %e, "final WAL checkpoint failed");
    }
}
