//! The `registrar` commands, one file each: its arguments (a clap `Args`)
//! and the function that runs it. The binary (`src/main.rs`) only parses
//! the command line into these and calls them.
//!
//! - [`serve`]: receive webhooks, serve the API and the console.
//! - [`report`]: a finance report from the projection store.
//! - [`verify`]: the chain and every row's columns, against the bodies; the
//!   tree and its checkpoints.
//! - [`key`]: a new key for signing checkpoints.
//! - [`proof`]: a bundle checked offline, without the database.
//! - [`rebuild`]: the projection store afresh, offline.
//! - [`quarantine`]: list, show and readmit rejected deliveries.
//! - [`backup`]: an online, verified copy of the log while a server runs.
//! - [`restore`]: a backup put in place of a log no server holds.

pub mod backup;
pub mod key;
pub mod proof;
pub mod quarantine;
pub mod rebuild;
pub mod report;
pub mod restore;
pub mod serve;
pub mod verify;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::config;

/// Where the database lives unless told otherwise.
const DEFAULT_DB: &str = "data/registrar.db";

#[derive(Args, Clone)]
pub struct DbArg {
    /// The log: an SQLite file (created on first start).
    #[arg(long, env = "REGISTRAR_DB", default_value = DEFAULT_DB)]
    pub db: PathBuf,
}

#[derive(Args, Clone)]
pub struct ProjectionsArg {
    /// The projection store, an SQLite file of its own [default: beside the
    /// log, `<log name>.projections.db`].
    #[arg(long, env = "REGISTRAR_PROJECTIONS")]
    pub projections: Option<PathBuf>,
}

impl ProjectionsArg {
    fn path(&self, db: &Path) -> PathBuf {
        self.projections
            .clone()
            .unwrap_or_else(|| config::default_projections_path(db))
    }
}

#[derive(Args, Clone)]
pub struct ZoneArg {
    /// The zone Toolzz `send_at` is read in.
    #[arg(
        long,
        env = "REGISTRAR_TOOLZZ_ZONE",
        default_value = "America/Sao_Paulo"
    )]
    pub toolzz_zone: chrono_tz::Tz,
}

#[derive(Args, Clone)]
pub struct BusinessZoneArg {
    /// The zone business days (report dates) are counted in.
    #[arg(long, env = "REGISTRAR_BUSINESS_ZONE", default_value = "Asia/Kolkata")]
    pub business_zone: chrono_tz::Tz,
}

/// The log file, which must exist: a command other than `serve` never
/// creates one by mistake under a mistyped path.
fn existing(path: &Path) -> Result<&Path> {
    if !path.exists() {
        bail!(
            "no database at {} (start `registrar serve` once, or pass --db)",
            path.display()
        );
    }
    Ok(path)
}

/// The log file opened for writing and migrated.
fn open_existing(path: &Path) -> Result<rusqlite::Connection> {
    let path = existing(path)?;
    let mut conn =
        crate::db::open_rw(path).with_context(|| format!("opening {}", path.display()))?;
    crate::db::migrate(&mut conn).context("migrating the database")?;
    Ok(conn)
}
