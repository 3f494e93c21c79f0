//! Copies of the log file, whole and consistent: an online backup taken
//! while a server appends, and the copy a restore puts in place of a log no
//! server holds ([`super::lock`]).
//!
//! A copy is made with SQLite's online backup API, [`PAGES_PER_STEP`] pages
//! at a time, from one read snapshot of the source that the copy holds open
//! from its first page to its last:
//! - In WAL mode a reader never blocks the writer, so the server keeps
//!   committing during every step; the snapshot only keeps the checkpointer
//!   from copying frames past it into the database file until the copy ends
//!   (the WAL grows by what is appended meanwhile).
//! - Without the snapshot held, SQLite restarts a backup from its first page
//!   whenever another connection commits between two steps: under steady
//!   ingest a large log's copy would never end.
//! - Bounded steps, rather than one call for the whole file, keep each call
//!   short and the copy's progress visible, and leave the page cache and the
//!   disk to the writer between steps.
//!
//! `VACUUM INTO` (the alternative) holds the same kind of snapshot but
//! rebuilds every table and index row by row: more CPU on a machine the
//! copy shares with the server, for a file no more consistent. See the
//! commit that chose this for the measurements.
//!
//! The copy is written to a temporary file beside its destination
//! ([`staging_path`]), in rollback-journal mode (one self-contained file,
//! which `sqlite3` or a file copy can read without companions), fsynced,
//! then renamed into place and the directory fsynced: the destination is
//! either the old file or the whole new copy, never part of one. The
//! staging file is locked while a copy writes it, so two copies to one
//! destination cannot delete each other's.

use std::ffi::c_int;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;

use super::{head, Head};

/// Pages the backup copies per step: 1,024 pages of 4 KiB, 4 MiB. A step
/// reads them from the snapshot (the OS page cache, mostly) and writes them
/// to the copy's page cache in about a millisecond or two; the server's
/// writer commits during and between steps either way (WAL), so the bound
/// is on how long one call runs, not on a lock.
pub const PAGES_PER_STEP: c_int = 1024;

/// Steps between two fsyncs of the copy while it is written: 2 steps, 8
/// MiB. One fsync of the whole file at its end queued the writer's next WAL
/// fsync behind hundreds of MiB of the copy's dirty pages: in every copy of
/// a 200 MB log under a steady writer (tests/backup_cost.rs) one commit
/// took 118-184 ms, against a 4-12 ms maximum without a copy. Flushed every
/// 32 MiB, the worst commit took 30-33 ms; every 8 MiB, 12-27 ms.
pub const SYNC_EVERY_STEPS: u64 = 2;

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The head of the snapshot copied, read back from the copy.
    pub head: Head,
    /// Pages copied, and the steps that copied them.
    pub pages: u64,
    pub steps: u64,
    /// The longest step, and the whole copy (fsyncs and rename included).
    pub longest_step: Duration,
    pub elapsed: Duration,
}

/// Why a copy could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{} already exists (pass --force to replace it)", .0.display())]
    Exists(PathBuf),
    #[error("reading the log {}: {source}", .path.display())]
    Source {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("writing the copy {}: {source}", .path.display())]
    Dest {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the copy's head (seq {copied}) is not the snapshot's (seq {snapshot})")]
    ReadBack { snapshot: u64, copied: u64 },
    #[error("{} is being written by another copy to the same destination", .0.display())]
    Staging(PathBuf),
    #[error("the backup step answered {0:?} although the snapshot is held")]
    Step(StepResult),
}

/// The temporary file a copy to `dest` is written to: beside it, so the
/// rename into place is atomic.
pub fn staging_path(dest: &Path) -> PathBuf {
    with_suffix(dest, ".partial")
}

/// SQLite's companions of the database file at `path`.
pub fn companions(path: &Path) -> [PathBuf; 3] {
    [
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
        with_suffix(path, "-journal"),
    ]
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `registrar backup`: copies the log at `src` to `dest` while a server may
/// be appending to it. Refuses an existing `dest` unless `force`.
pub fn backup(src: &Path, dest: &Path, force: bool) -> Result<Copied, CopyError> {
    if !force && dest.exists() {
        return Err(CopyError::Exists(dest.to_path_buf()));
    }
    let started = Instant::now();
    let staged = stage(src, dest)?;
    staged.commit(started)
}

/// A copy written to [`staging_path`] and fsynced, not yet in place: put
/// there by [`Staged::commit`], deleted if dropped first.
#[derive(Debug)]
pub struct Staged {
    dest: PathBuf,
    tmp: PathBuf,
    copied: Copied,
    committed: bool,
    /// The staging file's lock, held until the copy is in place or deleted.
    lock: Option<File>,
}

impl Staged {
    /// What was copied (its `elapsed` so far).
    pub fn copied(&self) -> &Copied {
        &self.copied
    }

    /// Renames the copy over the destination, after deleting the
    /// destination's companions (a WAL left beside the new file would be
    /// replayed into it), and fsyncs the directory. A destination that is a
    /// log must first be retired ([`retire`]): its WAL folded in, so that a
    /// crash before the rename leaves it whole.
    pub fn commit(mut self, started: Instant) -> Result<Copied, CopyError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| CopyError::Io { what, path, source }
        };
        for c in companions(&self.dest) {
            remove_if_present(&c).map_err(io("removing", &c))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(io("renaming into", &self.dest))?;
        self.committed = true;
        sync_dir(&self.dest).map_err(io("syncing the directory of", &self.dest))?;
        let mut copied = self.copied.clone();
        copied.elapsed = started.elapsed();
        Ok(copied)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Copies one snapshot of the log at `src` to [`staging_path`]`(dest)` and
/// makes it durable; the caller puts it in place with [`Staged::commit`].
pub fn stage(src: &Path, dest: &Path) -> Result<Staged, CopyError> {
    stage_stepped(src, dest, PAGES_PER_STEP, || {})
}

/// [`stage`], `pages` per step, calling `between` after each step but the
/// last (where a test commits to the source).
fn stage_stepped(
    src: &Path,
    dest: &Path,
    pages: c_int,
    mut between: impl FnMut(),
) -> Result<Staged, CopyError> {
    let started = Instant::now();
    let tmp = staging_path(dest);
    let source = |source| CopyError::Source {
        path: src.to_path_buf(),
        source,
    };
    let dest_err = |source| CopyError::Dest {
        path: tmp.clone(),
        source,
    };
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| CopyError::Io { what, path, source }
    };
    // The staging file, locked while this copy writes it: a second copy to
    // the same destination (a timer's beside a manual one) is refused
    // rather than deleting the first's file under it. Unlocked, it is one a
    // killed copy left: emptied and reused. (An flock, which SQLite's own
    // fcntl locks on the same file do not see.)
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&tmp)
        .map_err(io("opening", &tmp))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(CopyError::Staging(tmp)),
        Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", &tmp)(e)),
    }
    file.set_len(0).map_err(io("emptying", &tmp))?;
    for p in companions(&tmp) {
        remove_if_present(&p).map_err(io("removing a stale", &p))?;
    }
    let src_conn = crate::db::open_ro(src).map_err(source)?;
    // The snapshot, held from the first step to the last (see the module's
    // header): a deferred BEGIN takes it at its first read.
    src_conn.execute_batch("BEGIN").map_err(source)?;
    let snapshot = head(&src_conn).map_err(source)?;
    let mut staged = Staged {
        dest: dest.to_path_buf(),
        tmp: tmp.clone(),
        copied: Copied {
            head: snapshot,
            pages: 0,
            steps: 0,
            longest_step: Duration::ZERO,
            elapsed: Duration::ZERO,
        },
        committed: false,
        lock: None,
    };
    {
        let mut dst = Connection::open(&tmp).map_err(dest_err)?;
        // Nothing to roll back to and nothing to sync page by page: a copy
        // cut short is deleted, and the file is fsynced as it is written
        // ([`SYNC_EVERY_STEPS`]) and once more at its end.
        dst.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
            .map_err(dest_err)?;
        {
            let backup = Backup::new(&src_conn, &mut dst).map_err(dest_err)?;
            loop {
                let step = Instant::now();
                let result = backup.step(pages).map_err(dest_err)?;
                let took = step.elapsed();
                let c = &mut staged.copied;
                c.steps += 1;
                c.longest_step = c.longest_step.max(took);
                match result {
                    StepResult::More => {
                        if c.steps.is_multiple_of(SYNC_EVERY_STEPS) {
                            file.sync_data().map_err(|source| CopyError::Io {
                                what: "syncing",
                                path: tmp.clone(),
                                source,
                            })?;
                        }
                        between()
                    }
                    StepResult::Done => break,
                    // Only a lock another connection holds answers these:
                    // the source's read lock is already ours, the copy is
                    // no one else's.
                    other => return Err(CopyError::Step(other)),
                }
            }
            staged.copied.pages = backup.progress().pagecount as u64;
        }
        // The copied header says WAL, as the log's does: one file instead,
        // which opens read-only without companions.
        dst.execute_batch("PRAGMA journal_mode = DELETE;")
            .map_err(dest_err)?;
        let copied = head(&dst).map_err(dest_err)?;
        if copied != snapshot {
            return Err(CopyError::ReadBack {
                snapshot: snapshot.seq,
                copied: copied.seq,
            });
        }
        dst.close().map_err(|(_, e)| dest_err(e))?;
    }
    src_conn.execute_batch("COMMIT").map_err(source)?;
    drop(src_conn);
    file.sync_all().map_err(|source| CopyError::Io {
        what: "syncing",
        path: tmp.clone(),
        source,
    })?;
    staged.copied.elapsed = started.elapsed();
    staged.lock = Some(file);
    Ok(staged)
}

/// Before a log at `path` is replaced: folds its WAL into the file and
/// empties it (a TRUNCATE checkpoint), so that deleting the companions
/// loses nothing the file needs, should the process stop before the new
/// file is renamed in. The caller holds the log ([`super::lock::hold`]).
pub fn retire(path: &Path) -> rusqlite::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let conn = crate::db::open_rw(path)?;
    let (busy, _, _): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if busy != 0 {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("another connection kept the WAL checkpoint from finishing".into()),
        ));
    }
    conn.close().map_err(|(_, e)| e)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Fsyncs the directory holding `path`, so a rename there survives a power
/// loss.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_holds_every_event_and_its_head_and_no_staging_file_is_left() {
        let (dir, conn) = crate::log::test_log(300);
        let src = dir.path().join("log.db");
        let dest = dir.path().join("copy.db");
        let copied = backup(&src, &dest, false).unwrap();
        assert_eq!(copied.head, head(&conn).unwrap());
        assert_eq!(copied.head.seq, 300);
        assert!(copied.pages > 0 && copied.steps >= 1, "{copied:?}");
        assert!(!staging_path(&dest).exists());
        let copy = crate::db::open_ro(&dest).unwrap();
        let mode: String = copy
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
        assert_eq!(head(&copy).unwrap(), copied.head);
    }

    #[test]
    fn a_copy_refuses_an_existing_destination_unless_forced() {
        let (dir, _conn) = crate::log::test_log(3);
        let src = dir.path().join("log.db");
        let dest = dir.path().join("copy.db");
        std::fs::write(&dest, b"not a log").unwrap();
        let refused = backup(&src, &dest, false).unwrap_err();
        assert!(
            matches!(&refused, CopyError::Exists(p) if *p == dest),
            "{refused:?}"
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"not a log");
        assert_eq!(backup(&src, &dest, true).unwrap().head.seq, 3);
    }

    #[test]
    fn a_copy_taken_while_the_log_grows_between_its_steps_is_the_log_it_started_from() {
        // An unpinned backup restarts at every commit another connection
        // makes between two steps: this one would never end (the cap fails
        // it instead). The held snapshot copies the log as it was.
        let (dir, conn) = crate::log::test_log(2_000);
        let before = head(&conn).unwrap();
        let src = dir.path().join("log.db");
        let dest = dir.path().join("copy.db");
        let mut tail = crate::log::tail(&conn).unwrap();
        let mut appended = 0;
        let staged = stage_stepped(&src, &dest, 1, || {
            appended += 1;
            assert!(appended < 10_000, "the copy keeps restarting");
            let key = format!("more{appended}");
            let entry = crate::log::NewEntry {
                source: "jodo",
                event_type: "t",
                event_version: "1.0",
                dedupe_key: &key,
                subject: None,
                occurred_at: 1,
                received_at: 5_000 + appended,
                body: b"{}",
            };
            crate::log::append(&conn, &mut tail, &entry).unwrap();
        })
        .unwrap();
        let copied = staged.commit(Instant::now()).unwrap();
        assert!(appended > 10, "the log grew during the copy: {appended}");
        assert_eq!(head(&conn).unwrap().seq, before.seq + appended as u64);
        assert_eq!(copied.head, before);
        let copy = crate::db::open_ro(&dest).unwrap();
        assert_eq!(head(&copy).unwrap(), before);
        let options = crate::log::verify::Options::default();
        let verified = crate::log::verify::verify(&copy, &options).unwrap();
        assert_eq!(
            (verified.head_seq, verified.head_hash),
            (before.seq, before.hash)
        );
    }

    #[test]
    fn a_second_copy_to_the_same_destination_is_refused_while_the_first_is_staged() {
        let (dir, _conn) = crate::log::test_log(3);
        let (src, dest) = (dir.path().join("log.db"), dir.path().join("copy.db"));
        let first = stage(&src, &dest).unwrap();
        let refused = stage(&src, &dest).unwrap_err();
        assert!(
            matches!(&refused, CopyError::Staging(p) if *p == staging_path(&dest)),
            "{refused:?}"
        );
        assert_eq!(first.commit(Instant::now()).unwrap().head.seq, 3);
        assert_eq!(backup(&src, &dest, true).unwrap().head.seq, 3);
    }

    #[test]
    fn a_staging_file_a_killed_copy_left_is_reused() {
        let (dir, _conn) = crate::log::test_log(3);
        let dest = dir.path().join("copy.db");
        std::fs::write(staging_path(&dest), b"half a copy").unwrap();
        let copied = backup(&dir.path().join("log.db"), &dest, false).unwrap();
        assert_eq!(copied.head.seq, 3);
        assert!(!staging_path(&dest).exists());
    }

    #[test]
    fn a_staged_copy_dropped_before_its_commit_leaves_nothing_behind() {
        let (dir, _conn) = crate::log::test_log(3);
        let dest = dir.path().join("copy.db");
        let staged = stage(&dir.path().join("log.db"), &dest).unwrap();
        assert!(staging_path(&dest).exists());
        drop(staged);
        assert!(!staging_path(&dest).exists());
        assert!(!dest.exists());
    }

    #[test]
    fn retiring_a_log_folds_its_wal_in_so_its_companions_can_go() {
        let (dir, conn) = crate::log::test_log(50);
        let path = dir.path().join("log.db");
        let wal = &companions(&path)[0];
        assert!(std::fs::metadata(wal).unwrap().len() > 0);
        // Another connection still open (as a log cut short by kill -9
        // leaves its WAL): the checkpoint alone must empty the WAL.
        retire(&path).unwrap();
        assert_eq!(std::fs::metadata(wal).unwrap().len(), 0);
        drop(conn);
        for c in companions(&path) {
            remove_if_present(&c).unwrap();
        }
        let conn = crate::db::open_ro(&path).unwrap();
        assert_eq!(head(&conn).unwrap().seq, 50);
    }
}
