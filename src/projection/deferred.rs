//! Deferred flushing of the projection store: the live store is written
//! without a single fsync while the server runs, and a marker file says so.
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
//!   clean stop fsyncs the store and its WAL, then removes the marker. At
//!   start, a marker from another boot means the machine went down with
//!   writes not yet on disk: every store file is deleted and rebuilt from the
//!   log, which is the one durable truth. A marker from this boot (the
//!   process died, the machine did not) is trusted.
//! - Where the boot id cannot be read (not Linux), nothing is deferred: the
//!   store keeps `synchronous=NORMAL`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// Where Linux tells the current boot apart from every other one.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The marker's size at most: a boot id is 36 characters. A longer file is
/// not one we wrote, and is read as "another boot".
const MARKER_MAX_BYTES: u64 = 64;

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
    pub fn apply(self, conn: &Connection) -> rusqlite::Result<()> {
        let value = match self {
            StoreSync::Checkpoints => "NORMAL",
            StoreSync::Deferred => "OFF",
        };
        conn.pragma_update(None, "synchronous", value)
    }
}

/// What the marker says about the store files found at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No marker: the last server stopped cleanly, or never deferred.
    Clean,
    /// A marker from this boot: the last server process died, the machine
    /// did not; the page cache holds every write.
    ThisBoot,
    /// A marker from another boot (or one that cannot be read): the machine
    /// went down with writes that may never have reached the disk.
    OtherBoot,
}

/// The marker beside the store at `path`.
pub fn marker_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".unsynced");
    PathBuf::from(s)
}

/// The boot id of the running kernel, when the system has one.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string(BOOT_ID_PATH).ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// Reads the marker of the store at `path` against the boot `now`.
pub fn found(path: &Path, now: Option<&str>) -> io::Result<Found> {
    let marker = marker_path(path);
    let file = match File::open(&marker) {
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
pub fn begin(path: &Path, now: Option<&str>) -> io::Result<StoreSync> {
    let Some(now) = now else {
        return Ok(StoreSync::Checkpoints);
    };
    let marker = marker_path(path);
    let mut file = File::create(&marker)?;
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
        let [wal, _shm, _journal] = super::store::companions(live);
        for file in [live.to_path_buf(), wal] {
            match File::open(&file) {
                Ok(f) => f.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    match std::fs::remove_file(marker_path(path)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    sync_dir(path)
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
    fn this_machine_has_a_boot_id() {
        // The deferred mode is the one the server runs in on Linux; a boot
        // id that went missing would silently turn it off.
        if cfg!(target_os = "linux") {
            let id = boot_id().expect("a boot id");
            assert_eq!(id.len(), 36, "{id:?}");
        }
    }
}
