//! The log file's holder: a lock file beside it, `<log>.lock`, held by the
//! one process that writes the log or replaces it, a running server or a
//! `registrar restore`.
//!
//! Why a file of its own: SQLite's locks last a transaction, so nothing in
//! the log file says a server has it open between two commits, and a restore
//! that renamed another file over it then would leave the server appending
//! to the unlinked old file (every acknowledged delivery after that lost).
//! The lock is the projection store's (an advisory `flock` on a file beside
//! the one it guards, taken without waiting, released when the process ends
//! however it ends): a `kill -9` leaves no stale holder behind.
//!
//! Readers (`registrar verify`, `registrar backup`) take no lock: they read
//! a snapshot while the server appends.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The log's lock file, held until dropped.
#[must_use = "the lock is released when it is dropped"]
#[derive(Debug)]
pub struct Held {
    _file: File,
}

/// Why the log's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("the log {} is held by another registrar process (a running server?): {} is locked", .log.display(), .lock.display())]
    Held { log: PathBuf, lock: PathBuf },
    #[error("the log's lock file {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// The lock file of the log at `path`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Takes the lock of the log at `path` (creating its directory), or says
/// another process holds it. Never waits.
pub fn hold(path: &Path) -> Result<Held, HoldError> {
    let lock = lock_path(path);
    let io = |source| HoldError::Io {
        path: lock.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Held { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(HoldError::Held {
            log: path.to_path_buf(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_of_a_log_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("log.db");
        let held = hold(&path).unwrap();
        let refused = hold(&path).unwrap_err();
        assert!(
            matches!(&refused, HoldError::Held { lock, .. } if *lock == lock_path(&path)),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("running server"));
        drop(held);
        drop(hold(&path).expect("free again once the first is dropped"));
    }
}
