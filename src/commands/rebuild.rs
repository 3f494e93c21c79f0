//! `registrar rebuild`: build the projection store afresh from the log,
//! with no server running (a running server rebuilds with
//! `POST /v1/admin/rebuild`).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{DbArg, ProjectionsArg, ZoneArg};
use crate::db;
use crate::projection::{projector, rebuild, store};
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
    // A running server holds the lock: it swaps files under its readers
    // itself, so the offline command must not.
    let _lock = crate::server::lock_projections(projections)
        .map_err(|e| anyhow::anyhow!("{e}: rebuild it with POST /v1/admin/rebuild"))?;
    // Files a power loss may have torn are deleted before the build, not
    // after: the new file is fsynced and must survive the choice below.
    projector::discard_if_torn(projections).context("checking the projection store")?;
    let head = {
        let conn = db::open_ro(db).with_context(|| format!("opening {}", db.display()))?;
        crate::log::head(&conn)?.seq
    };
    let generation = store::peek(projections).map_or(0, |s| s.generation + 1);
    let target = projector::generation_path(projections, generation);
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(head);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events ({per_sec}, eta {eta})",
            )
            .expect("a valid template"),
        );
        Some(bar)
    } else {
        None
    };
    let built = rebuild::build(
        &target,
        db,
        ParseContext {
            toolzz_zone: args.zone.toolzz_zone,
        },
        generation,
        |done| {
            if let Some(bar) = &bar {
                bar.set_position(done);
            }
        },
    );
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = store::remove(&target);
            return Err(e).context("rebuilding");
        }
    };
    // The new file has the highest generation: choosing the store puts it
    // in place and removes the old one.
    projector::open_store(projections, head, false).context("putting the new store in place")?;
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
