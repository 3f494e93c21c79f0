//! `registrar restore SRC --db PATH`: puts a backup in place of the log.
//!
//! In order:
//! 1. SRC is verified (chain, tree, checkpoints' roots): a fault exits 1
//!    and nothing changes.
//! 2. The log is held ([`crate::log::lock`]) and so is the projection store
//!    beside it ([`files::lock`]): a running server holds both, and the
//!    restore is refused.
//! 3. The log at PATH, if any, must be a prefix of the backup: one with
//!    more events (the restore would lose them) or with another event at a
//!    seq the backup holds (another log) is refused unless `--force`.
//! 4. SRC is copied beside PATH and fsynced ([`crate::log::backup::stage`]).
//! 5. The projection store is deleted ([`files::discard`]): it follows the
//!    old log, and the next `registrar serve` rebuilds it from the restored
//!    one (reads answer 503 until it is built; ingest is served at once).
//!    Deleted before the new log is in place, so no crash between the two
//!    can leave a store served against a log it does not follow.
//! 6. The old log's WAL is folded in ([`crate::log::backup::retire`]), its
//!    companions deleted, the copy renamed over it and the directory
//!    fsynced.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::{DbArg, ProjectionsArg};
use crate::db;
use crate::log::{self, backup, lock, verify, Head};
use crate::projection::files;

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup to restore (a file `registrar backup` wrote).
    src: PathBuf,
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    projections: ProjectionsArg,
    /// Replace a log with events the backup does not hold.
    #[arg(long)]
    force: bool,
}

/// Why the log at `--db` is not replaced without `--force`.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{} holds {has} events, the backup {backup}: restoring it would lose {} (pass --force to restore anyway)", .log.display(), .has - .backup)]
    Longer { log: PathBuf, has: u64, backup: u64 },
    #[error("{} holds another event at seq {seq} than the backup (another log?): pass --force to replace it", .log.display())]
    Diverged { log: PathBuf, seq: u64 },
    #[error("{} cannot be read as a log ({source}): pass --force to replace it", .log.display())]
    Unreadable {
        log: PathBuf,
        source: rusqlite::Error,
    },
}

pub fn run(args: RestoreArgs) -> Result<ExitCode> {
    let db_path = &args.db.db;
    let projections = args.projections.path(db_path);
    let src = super::existing(&args.src)?;
    let src_conn =
        db::open_ro(src).with_context(|| format!("opening the backup {}", src.display()))?;
    let verified = match verify::verify(&src_conn, &verify::Options::default()) {
        Ok(v) => v,
        Err(verify::VerifyError::Fault(f)) => {
            println!("FAILED: the backup {}: {f}", src.display());
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e).context("verifying the backup"),
    };
    let restored = Head {
        seq: verified.head_seq,
        hash: verified.head_hash,
    };
    let _log = lock::hold(db_path)?;
    let _store = files::lock(&projections)?;
    if let Some(refused) = replaceable(db_path, &src_conn, restored)? {
        if !args.force {
            return Err(refused.into());
        }
        eprintln!("--force: {refused}");
    }
    drop(src_conn);
    let started = std::time::Instant::now();
    let staged = backup::stage(src, db_path)?;
    assert_eq!(
        staged.copied().head,
        restored,
        "the copy holds the head verified"
    );
    files::discard(&projections).context("removing the projection store")?;
    if let Err(e) = backup::retire(db_path) {
        // Only a log that cannot be read gets here (refused above unless
        // forced): its companions are deleted with it.
        eprintln!("note: the old log's WAL was not folded in ({e}); it is replaced whole");
    }
    staged.commit(started)?;
    println!(
        "ok: restored {} events, head {} {}",
        restored.seq,
        restored.seq,
        hex::encode(restored.hash)
    );
    println!(
        "the projection store {} was removed: the next `registrar serve` rebuilds it from the log",
        projections.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Why the log at `path` may not be replaced by the backup read by
/// `backup`, whose head is `restored`; None for no log, or one the backup
/// extends.
fn replaceable(
    path: &Path,
    backup: &rusqlite::Connection,
    restored: Head,
) -> Result<Option<Refused>> {
    if !path.exists() {
        return Ok(None);
    }
    let log = path.to_path_buf();
    let current = match db::open_ro(path).and_then(|c| log::head(&c)) {
        Ok(head) => head,
        Err(source) => return Ok(Some(Refused::Unreadable { log, source })),
    };
    if current.seq > restored.seq {
        return Ok(Some(Refused::Longer {
            log,
            has: current.seq,
            backup: restored.seq,
        }));
    }
    if current.seq > 0 {
        let there = log::get(backup, current.seq).context("reading the backup")?;
        if there.map(|e| e.hash) != Some(current.hash) {
            return Ok(Some(Refused::Diverged {
                log,
                seq: current.seq,
            }));
        }
    }
    Ok(None)
}
