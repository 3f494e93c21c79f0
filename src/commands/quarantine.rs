//! `registrar quarantine list|show|readmit`: rejected deliveries, kept with
//! their reason, inspected and run again.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::{open_existing, DbArg, ZoneArg};
use crate::config::Settings;
use crate::ledger::{self, Readmitted};
use crate::quarantine;
use crate::sources::ParseContext;

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// List quarantined deliveries, oldest first.
    List {
        #[command(flatten)]
        db: DbArg,
        /// Include those already readmitted.
        #[arg(long)]
        all: bool,
        /// Start after this id.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one quarantined delivery's body to stdout.
    Show {
        id: i64,
        #[command(flatten)]
        db: DbArg,
    },
    /// Run a quarantined delivery again through validation and append.
    Readmit {
        id: i64,
        #[command(flatten)]
        db: DbArg,
        /// Vouch for a delivery whose authentication cannot be re-checked.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        zone: ZoneArg,
    },
}

pub fn run(command: QuarantineCommand) -> Result<ExitCode> {
    match command {
        QuarantineCommand::List {
            db,
            all,
            after,
            limit,
            json,
        } => list(&db, all, after, limit, json),
        QuarantineCommand::Show { id, db } => {
            let conn = open_existing(&db.db)?;
            let entry = quarantine::get(&conn, id)?
                .with_context(|| format!("no quarantined delivery has id {id}"))?;
            std::io::stdout().write_all(&entry.reject.body)?;
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Readmit {
            id,
            db,
            force,
            zone,
        } => readmit(&db, id, force, &zone),
    }
}

fn list(db: &DbArg, all: bool, after: i64, limit: u32, json: bool) -> Result<ExitCode> {
    let conn = open_existing(&db.db)?;
    let entries = quarantine::list(&conn, after, limit, !all).context("listing the quarantine")?;
    if json {
        for e in &entries {
            println!("{}", serde_json::to_string(e)?);
        }
    } else {
        println!(
            "{:>6}  {:<20}  {:<6}  {:>4}  {:<10}  reason",
            "id", "received_at", "source", "http", "state"
        );
        for e in &entries {
            let at = chrono::DateTime::from_timestamp_micros(e.reject.received_at)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
            let state = match e.readmitted_seq {
                Some(seq) => format!("seq {seq}"),
                None => "pending".into(),
            };
            println!(
                "{:>6}  {:<20}  {:<6}  {:>4}  {:<10}  {}",
                e.id, at, e.reject.source, e.reject.http_status, state, e.reject.reason
            );
        }
    }
    let evicted = quarantine::evictions(&conn)?;
    if evicted > 0 {
        eprintln!("{evicted} entries were evicted over time because the quarantine was full");
    }
    Ok(ExitCode::SUCCESS)
}

fn readmit(db: &DbArg, id: i64, force: bool, zone: &ZoneArg) -> Result<ExitCode> {
    let mut conn = open_existing(&db.db)?;
    // The secrets the server checks deliveries against, from the same
    // environment variables.
    let settings = Settings::new(&db.db).secrets_from_env()?;
    let parse = ParseContext {
        toolzz_zone: zone.toolzz_zone,
    };
    match ledger::readmit(&mut conn, id, &settings.jodo_secrets(), &parse, force) {
        Ok(Readmitted::Appended { seq }) => println!("readmitted {id}: appended as seq {seq}"),
        Ok(Readmitted::Duplicate { seq }) => {
            println!("readmitted {id}: already in the log as seq {seq}")
        }
        Err(e) => {
            println!("not readmitted: {e}");
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
