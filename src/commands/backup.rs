//! `registrar backup --db PATH DEST`: an online, consistent copy of the log
//! file while a server runs and appends ([`crate::log::backup`]), made
//! durable and put in place atomically, then verified: its chain, its tree
//! and its checkpoints' roots. Prints `ok: backup of N events, head SEQ
//! HASH`; exits 1 when the copy holds a fault (it is a faithful copy of a
//! log with that fault, and stays at DEST), 2 when no copy could be made.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::{existing, DbArg};
use crate::db;
use crate::log::backup;
use crate::log::verify::{self, VerifyError};

#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    db: DbArg,
    /// Where the copy goes: one SQLite file (no -wal beside it).
    dest: PathBuf,
    /// Replace DEST if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: BackupArgs) -> Result<ExitCode> {
    let src = existing(&args.db.db)?;
    let copied = backup::backup(src, &args.dest, args.force)?;
    // On stderr: stdout keeps the one verdict line scripts read.
    eprintln!(
        "copied {} pages in {} steps (the longest {:.1} ms) in {:.2} s",
        copied.pages,
        copied.steps,
        copied.longest_step.as_secs_f64() * 1e3,
        copied.elapsed.as_secs_f64()
    );
    let conn = db::open_ro(&args.dest)
        .with_context(|| format!("opening the copy {}", args.dest.display()))?;
    // The chain, the tree and the checkpoints' notes and roots: what the
    // copy must hold to be the log. The columns are not re-derived from the
    // bodies (that checks the parser against the log, not the copy against
    // it; `registrar verify --db DEST` does it), nor signatures checked
    // without a key.
    match verify::verify(&conn, &verify::Options::default()) {
        Ok(v) => {
            assert_eq!(
                (v.head_seq, v.head_hash),
                (copied.head.seq, copied.head.hash),
                "verify read the head the copy was made with"
            );
            println!(
                "ok: backup of {} events, head {} {}",
                v.events,
                v.head_seq,
                hex::encode(v.head_hash)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Fault(f)) => {
            println!("FAILED: the copy at {}: {f}", args.dest.display());
            Ok(ExitCode::from(1))
        }
        Err(e @ VerifyError::Db(_)) => Err(e).context("verifying the copy"),
    }
}
