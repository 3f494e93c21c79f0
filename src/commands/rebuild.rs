//! `registrar rebuild`: build the projection store afresh from the log,
//! with no server running (a running server rebuilds with
//! `POST /v1/admin/rebuild`).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{DbArg, ProjectionsArg, ZoneArg};
use crate::projection::rebuild::{self, RebuildError};
use crate::sources::ParseContext;

#[derive(Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    projections: ProjectionsArg,
    #[command(flatten)]
    zone: ZoneArg,
}

pub fn run(args: RebuildArgs) -> Result<ExitCode> {
    let db = &args.db.db;
    let projections = &args.projections.path(db);
    if !db.exists() {
        bail!("no database at {}", db.display());
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events ({per_sec}, eta {eta})",
            )
            .expect("a valid template"),
        )
    });
    let rebuilt = rebuild::offline(
        db,
        projections,
        ParseContext {
            toolzz_zone: args.zone.toolzz_zone,
        },
        |done, head| {
            if let Some(bar) = &bar {
                bar.set_length(head);
                bar.set_position(done);
            }
        },
    );
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = match rebuilt {
        Ok(r) => r,
        Err(RebuildError::Locked(e)) => bail!("{e}: rebuild it with POST /v1/admin/rebuild"),
        Err(e) => return Err(e).context("rebuilding the projection store"),
    };
    println!(
        "rebuilt: {} events replayed ({} passed over) in {:.2} s (load {:.2} s, fold {:.2} s), {:.0} events/s, into {}",
        report.events,
        report.skipped,
        report.seconds,
        report.load_seconds,
        report.fold_seconds,
        report.events_per_second,
        projections.display()
    );
    Ok(ExitCode::SUCCESS)
}
