//! The projection store's files: where they are, opening them (with their
//! pragmas), the marker of writes not yet on disk, the generations a rebuild
//! leaves beside the configured path, the choice among them at start, their
//! removal, and the lock. The tables inside are [`super::store`]'s: this
//! module runs no statement on them itself, and calls it for the tables of
//! a file it creates, marks complete or reads the state of.
//!
//! The files of the store configured at `path` (`--projections`):
//! - `path`: the live store, and SQLite's companions `path-wal`, `path-shm`,
//!   `path-journal` ([`companions`]);
//! - `path.gN`: a store a rebuild of generation N built ([`generation_path`]),
//!   swapped in by the projector, or chosen at the next start
//!   ([`open_store`]);
//! - `path.unsynced`: the marker of a store written without fsync
//!   ([`marker_path`], see "Deferred flushing" below);
//! - `path.lock`: held by the one process that may swap these files
//!   ([`lock`]): a running server, or an offline rebuild.
//!
//! A store file is made in one of two ways:
//! - by a build ([`create_for_build`]): a fresh file with no journal and no
//!   fsync, since a failed build is deleted, not recovered; it is marked
//!   complete by [`finish_build`], which turns it into a live file;
//! - live ([`open_writer`]): WAL with `synchronous=NORMAL`, or `OFF` while
//!   the server runs ([`StoreSync`]). A process crash may lose the last
//!   transactions, never corrupt the file, and the projector then resumes
//!   from the position stored in the same transactions as the rows.
//!
//! # Deferred flushing
//!
//! The live store is written without a single fsync while the server runs,
//! and a marker file says so.
//!
//! Why: every fsync of the projection store (SQLite's, at each of its
//! checkpoints under `synchronous=NORMAL`) asks the disk to flush its whole
//! write cache, so the log's own fsync, the one a 2xx waits for, queued
//! behind megabytes of derived pages. Measured in interleaved runs of `make
//! bench -- --skip large`: with the store on `synchronous=OFF`, ingest +38 to
//! +46%, p99 from 31-35 ms to 20-23 ms, projection lag p99 from 117-220 ms to
//! 56-64 ms (README, "What bounds each missed target").
//!
//! Why it is safe:
//! - A process crash (kill -9, a panic, the OOM killer) loses nothing that
//!   was written: the pages are in the OS page cache, and a WAL database is
//!   consistent there whatever the sync setting. The projector resumes from
//!   the position stored in its last transaction, as before.
//! - Only the machine going down (power loss, a kernel crash) can leave the
//!   file torn. So before the first unsynced write the server writes a marker,
//!   `<store>.unsynced`, holding the kernel's boot id, and makes it durable. A
//!   clean stop fsyncs the store and its WAL, then removes the marker ([`end`]).
//!   At start, a marker from another boot means the machine went down with
//!   writes not yet on disk: every store file is deleted and rebuilt from the
//!   log, which is the one durable truth ([`discard_if_torn`]). A marker from
//!   this boot (the process died, the machine did not) is trusted.
//! - Where the boot id cannot be read (not Linux), nothing is deferred: the
//!   store keeps `synchronous=NORMAL`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::store::{self, StoreState};
use super::ProjectionError;

/// Where Linux tells the current boot apart from every other one.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The marker's size at most: a boot id is 36 characters. A longer file is
/// not one we wrote, and is read as "another boot".
const MARKER_MAX_BYTES: u64 = 64;

/// Page cache of the projector's connection, in KiB. The projector's writes
/// land on current rows and index pages all over the file; a miss costs a
/// pread. Bounded, so memory stays flat.
pub const WRITER_CACHE_KIB: i64 = 16 * 1024;

// ---------------------------------------------------------------------------
// Paths.

/// The store's companion files, which SQLite names after it.
pub fn companions(path: &Path) -> [PathBuf; 3] {
    [
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
        with_suffix(path, "-journal"),
    ]
}

/// The marker beside the store at `path`.
pub fn marker_path(path: &Path) -> PathBuf {
    with_suffix(path, ".unsynced")
}

/// The file a build of `generation` writes: beside the configured path, so a
/// rename at the next start is atomic.
pub fn generation_path(path: &Path, generation: i64) -> PathBuf {
    with_suffix(path, &format!(".g{generation}"))
}

fn lock_path(path: &Path) -> PathBuf {
    with_suffix(path, ".lock")
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The store files at `path`: the configured one and its rebuilt siblings
/// (`path.gN`), present or not.
fn store_files(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let prefix = format!("{}.g", name.to_string_lossy());
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                let generation = file
                    .strip_prefix(&prefix)
                    .filter(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|g| g.parse().ok());
                if let Some(generation) = generation {
                    files.push(generation_path(path, generation));
                }
            }
        }
    }
    files
}

/// Deletes a store file and its companions; missing ones are fine.
pub fn remove(path: &Path) -> io::Result<()> {
    for p in std::iter::once(path.to_path_buf()).chain(companions(path)) {
        remove_if_present(&p)?;
    }
    Ok(())
}

/// Moves the store file at `from`, which no connection has open, to `to`,
/// replacing the store there (companions and all).
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    remove(to)?;
    std::fs::rename(from, to)?;
    // The WAL was folded in before (a checkpoint, or the last connection's
    // close): companions left under the old name hold nothing, and must not
    // pair with a later file of that name.
    for c in companions(from) {
        let _ = std::fs::remove_file(c);
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Fsyncs the directory holding `path`, so a file created, renamed or
/// removed there stays so after a power loss.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

// ---------------------------------------------------------------------------
// The lock.

/// The store's lock file, held until dropped: a server holds it while it
/// runs, so an offline `registrar rebuild` cannot swap files under it, and a
/// rebuild holds it while it builds and swaps.
#[must_use = "the lock is released when it is dropped"]
pub struct Lock {
    _file: File,
}

/// Why the store's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{} is held by another registrar process (a running server?)", .0.display())]
    Held(PathBuf),
    #[error("the projection store's lock file {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Takes the lock of the store at `path` (creating its directory), or says
/// another process holds it. Never waits.
pub fn lock(path: &Path) -> Result<Lock, LockError> {
    let lock_path = lock_path(path);
    let io = |source| LockError::Io {
        path: lock_path.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held(lock_path)),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

// ---------------------------------------------------------------------------
// Opening, and the pragmas each way of opening sets.

/// How the live store's writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreSync {
    /// `synchronous=NORMAL`: SQLite fsyncs at each checkpoint (the CLI, tests,
    /// and any system without a boot id).
    Checkpoints,
    /// `synchronous=OFF`, with the marker written: flushed once, at a clean
    /// stop ([`end`]).
    Deferred,
}

impl StoreSync {
    /// Sets the connection's `synchronous` to match.
    fn apply(self, conn: &Connection) -> rusqlite::Result<()> {
        let value = match self {
            StoreSync::Checkpoints => "NORMAL",
            StoreSync::Deferred => "OFF",
        };
        conn.pragma_update(None, "synchronous", value)
    }
}

/// Creates a fresh store file for a build at `path` (replacing whatever is
/// there): tables with their primary keys only, no journal, no fsync, one
/// connection holding it exclusively.
pub fn create_for_build(path: &Path, generation: i64) -> Result<Connection, ProjectionError> {
    remove(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let conn = Connection::open(path)?;
    // A build that fails is deleted and started again, so it needs neither a
    // rollback journal nor fsync: the fastest way SQLite can write a file.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = OFF;
         PRAGMA synchronous = OFF;
         PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA cache_size = -{};",
        store::BUILD_CACHE_KIB
    ))?;
    store::create_build_tables(&conn, generation)?;
    Ok(conn)
}

/// Ends a build: closes the build connection, turns the file into a live one
/// (WAL) and marks it complete, durably, so a restart may pick it.
pub fn finish_build(conn: Connection, path: &Path) -> Result<(), ProjectionError> {
    conn.close().map_err(|(_, e)| e)?;
    let conn = Connection::open(path)?;
    wal(&conn)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    store::mark_complete(&conn)?;
    Ok(())
}

/// Opens the projector's write connection on a complete store file, its
/// writes reaching the disk as `sync` says.
pub fn open_writer(path: &Path, sync: StoreSync) -> Result<Connection, ProjectionError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(crate::db::BUSY_TIMEOUT)?;
    wal(&conn)?;
    // Derived data: a crash may lose the last transactions (never corrupt the
    // file in WAL mode); the position is in the same transactions, so the
    // projector replays exactly what was lost. Deferred, not even a
    // checkpoint fsyncs: see "Deferred flushing" above for what covers a
    // power loss.
    sync.apply(&conn)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    Ok(conn)
}

/// Opens a read-only connection for the read API: memory-mapped, plans
/// kept stable, a larger statement cache (see [`crate::db::open_ro`]).
pub fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    crate::db::open_ro(path)
}

/// Puts the file `conn` is open on in WAL mode, which every live store is in
/// (readers beside the one writer).
fn wal(conn: &Connection) -> Result<(), ProjectionError> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(ProjectionError::Invariant(format!(
            "the projection store stayed in journal mode {mode}"
        )));
    }
    Ok(())
}

/// Reads the state of the store file at `path` without changing it; `None`
/// when there is no readable store there.
fn peek(path: &Path) -> Option<StoreState> {
    if !path.exists() {
        return None;
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    store::state(&conn).ok().flatten()
}

// ---------------------------------------------------------------------------
// The marker of deferred flushing (see the module's header).

/// What the marker says about the store files found at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// No marker: the last server stopped cleanly, or never deferred.
    Clean,
    /// A marker from this boot: the last server process died, the machine
    /// did not; the page cache holds every write.
    ThisBoot,
    /// A marker from another boot (or one that cannot be read): the machine
    /// went down with writes that may never have reached the disk.
    OtherBoot,
}

/// The boot id of the running kernel, when the system has one.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string(BOOT_ID_PATH).ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// Reads the marker of the store at `path` against the boot `now`.
fn found(path: &Path, now: Option<&str>) -> io::Result<Found> {
    let file = match File::open(marker_path(path)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Clean),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(file, MARKER_MAX_BYTES), &mut text)?;
    Ok(match now {
        Some(now) if text.trim() == now => Found::ThisBoot,
        _ => Found::OtherBoot,
    })
}

/// Before the first unsynced write: records the boot `now` in the marker,
/// durably (the file, then its directory). With no boot id nothing is
/// deferred and no marker is written.
fn begin(path: &Path, now: Option<&str>) -> io::Result<StoreSync> {
    let Some(now) = now else {
        return Ok(StoreSync::Checkpoints);
    };
    let mut file = File::create(marker_path(path))?;
    file.write_all(now.as_bytes())?;
    file.sync_all()?;
    sync_dir(path)?;
    Ok(StoreSync::Deferred)
}

/// After the last write of a clean stop: makes the live store at `live`
/// durable (its file and its WAL), then removes the marker of the configured
/// store at `path`, durably.
pub fn end(path: &Path, live: Option<&Path>) -> io::Result<()> {
    if let Some(live) = live {
        let [wal, _shm, _journal] = companions(live);
        for file in [live.to_path_buf(), wal] {
            match File::open(&file) {
                Ok(f) => f.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    remove_if_present(&marker_path(path))?;
    sync_dir(path)
}

/// When the marker beside the store at `path` was left on another boot (the
/// machine went down with writes of a deferred store not yet on disk),
/// deletes every store file there and the marker: none can be trusted, and
/// the log rebuilds them. Returns whether it did.
pub fn discard_if_torn(path: &Path) -> Result<bool, ProjectionError> {
    let boot = boot_id();
    if found(path, boot.as_deref())? != Found::OtherBoot {
        return Ok(false);
    }
    tracing::warn!(
        path = %path.display(),
        "the machine went down while the projection store had writes not yet on disk: rebuilding it from the log"
    );
    discard(path)?;
    Ok(true)
}

/// Deletes every store file at `path` (the configured one and its rebuilt
/// siblings, with their companions) and the marker, durably: the next start
/// builds the store afresh from the log (`registrar restore`, which replaces
/// the log under it). The caller holds the [`lock`].
pub fn discard(path: &Path) -> Result<(), ProjectionError> {
    for p in store_files(path) {
        remove(&p)?;
    }
    end(path, None)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Generations, and the choice among them at start.

/// The generation a new build takes: above every store file present (the
/// configured one, and `live` when reads are served from a sibling), so the
/// choice at the next start prefers it.
pub fn next_generation(path: &Path, live: Option<&Path>) -> i64 {
    let live = live.and_then(peek).map(|s| s.generation);
    let configured = peek(path).map(|s| s.generation);
    live.max(configured).map_or(0, |g| g + 1)
}

/// The projection store chosen at start.
pub struct Opened {
    /// The live file, when a usable one exists: always the configured path.
    pub file: Option<PathBuf>,
    /// Its write connection.
    pub writer: Option<Connection>,
    /// The log seq it reflects (0 without one).
    pub position: u64,
    /// How its writes reach the disk from now on.
    pub sync: StoreSync,
}

/// Chooses the projection store at start, before anything else uses it:
/// of the files at `path` and its rebuilt siblings (`path.gN`), the complete
/// one of this [`super::PROJECTION_VERSION`] with the highest generation wins
/// and is renamed to `path`; every other is deleted (a build a crash cut
/// short, a file a rebuild replaced, another version). With none and an
/// empty log, an empty store is made at once; with none and events in the
/// log, `file` is `None` and the caller starts a build.
///
/// Files first go through [`discard_if_torn`]. With `defer`, the returned
/// writer and later ones defer their flushes, the marker written first.
pub fn open_store(path: &Path, log_head: u64, defer: bool) -> Result<Opened, ProjectionError> {
    discard_if_torn(path)?;
    let candidates = store_files(path);
    let best = candidates
        .iter()
        .filter_map(|p| peek(p).map(|s| (p.clone(), s)))
        // A store ahead of the log belongs to another log (one restored from
        // a backup): it cannot be caught up, only rebuilt.
        .filter(|(_, s)| s.usable() && s.last_seq <= log_head)
        .max_by_key(|(_, s)| s.generation);
    for p in &candidates {
        if best.as_ref().is_none_or(|(b, _)| b != p) && p.exists() {
            tracing::info!(path = %p.display(), "removing a projection store that is not the live one");
            remove(p)?;
        }
    }
    let sync = if defer {
        begin(path, boot_id().as_deref())?
    } else {
        StoreSync::Checkpoints
    };
    match best {
        Some((chosen, state)) => {
            if chosen != path {
                // Nothing has it open yet: fold its WAL in, then rename it.
                open_writer(&chosen, StoreSync::Checkpoints)?.query_row(
                    "PRAGMA wal_checkpoint(TRUNCATE)",
                    [],
                    |_| Ok(()),
                )?;
                rename(&chosen, path)?;
            }
            Ok(Opened {
                file: Some(path.to_path_buf()),
                writer: Some(open_writer(path, sync)?),
                position: state.last_seq,
                sync,
            })
        }
        None if log_head == 0 => {
            let conn = create_for_build(path, 0)?;
            store::create_history_indexes(&conn)?;
            store::create_read_indexes(&conn)?;
            finish_build(conn, path)?;
            Ok(Opened {
                file: Some(path.to_path_buf()),
                writer: Some(open_writer(path, sync)?),
                position: 0,
                sync,
            })
        }
        None => Ok(Opened {
            file: None,
            writer: None,
            position: 0,
            sync,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_marker_reads_as_a_clean_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        assert_eq!(found(&path, Some("boot-a")).unwrap(), Found::Clean);
    }

    #[test]
    fn a_marker_tells_this_boot_from_another_and_a_clean_stop_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        assert_eq!(begin(&path, Some("boot-a")).unwrap(), StoreSync::Deferred);
        assert_eq!(found(&path, Some("boot-a")).unwrap(), Found::ThisBoot);
        assert_eq!(found(&path, Some("boot-b")).unwrap(), Found::OtherBoot);
        // A system that cannot say which boot it is cannot trust the marker.
        assert_eq!(found(&path, None).unwrap(), Found::OtherBoot);
        end(&path, None).unwrap();
        assert_eq!(found(&path, Some("boot-a")).unwrap(), Found::Clean);
    }

    #[test]
    fn without_a_boot_id_nothing_is_deferred_and_no_marker_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        assert_eq!(begin(&path, None).unwrap(), StoreSync::Checkpoints);
        assert!(!marker_path(&path).exists());
    }

    #[test]
    fn a_second_lock_on_a_store_is_refused_while_the_first_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("p.db");
        let held = lock(&path).unwrap();
        let refused = lock(&path).map(drop).unwrap_err();
        assert!(
            matches!(&refused, LockError::Held(p) if *p == lock_path(&path)),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("another registrar process"));
        drop(held);
        drop(lock(&path).expect("free again once the first is dropped"));
    }

    #[test]
    fn this_machine_has_a_boot_id() {
        // The deferred mode is the one the server runs in on Linux; a boot
        // id that went missing would silently turn it off.
        if cfg!(target_os = "linux") {
            let id = boot_id().expect("a boot id");
            assert_eq!(id.len(), 36, "{id:?}");
        }
    }
}
