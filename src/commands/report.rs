//! `registrar report NAME`: a finance report read from the projection store,
//! the same bytes as `GET /v1/reports/NAME` with the same times.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{BusinessZoneArg, DbArg, ProjectionsArg};
use crate::projection::entities::PaymentStatus;
use crate::projection::{files, query};
use crate::report::{self, Format, Report, Request};

/// The buffer a report is written through to its file or stdout.
const REPORT_BUFFER: usize = 256 * 1024;

/// A payment's status, as the command line names it.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StatusArg {
    Recorded,
    Cancelled,
}

impl From<StatusArg> for PaymentStatus {
    fn from(s: StatusArg) -> PaymentStatus {
        match s {
            StatusArg::Recorded => PaymentStatus::Recorded,
            StatusArg::Cancelled => PaymentStatus::Cancelled,
        }
    }
}

/// The finance reports, by name.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportName {
    DayBook,
    Payments,
    Statement,
    Changes,
    StatusChanges,
}

#[derive(Args)]
pub struct ReportArgs {
    name: ReportName,
    /// The student of a statement: jodo_student_id, identifier or custom identifier.
    #[arg(long, required_if_eq("name", "statement"))]
    student: Option<String>,
    /// The range's first day or instant (RFC 3339 or yyyy-mm-dd).
    #[arg(long)]
    from: Option<String>,
    /// The range's last day or instant (RFC 3339 or yyyy-mm-dd, inclusive).
    #[arg(long)]
    to: Option<String>,
    /// What was true then (provider time) [default: now].
    #[arg(long)]
    as_of: Option<String>,
    /// What registrar had received by then [default: now].
    #[arg(long)]
    known_at: Option<String>,
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// day-book, payments: only this mode.
    #[arg(long)]
    mode: Option<String>,
    /// day-book, payments: only this collector code.
    #[arg(long)]
    collector_code: Option<String>,
    /// payments: only this status.
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// status-changes: only this grade.
    #[arg(long)]
    grade: Option<String>,
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    projections: ProjectionsArg,
    #[command(flatten)]
    business: BusinessZoneArg,
}

/// The log's newest checkpoint, which the report names when it covers the
/// report's seq; none when the log file is not here (a store copied alone).
fn newest_checkpoint(db: &std::path::Path) -> Result<Option<report::Checkpoint>> {
    if !db.exists() {
        return Ok(None);
    }
    let conn = crate::db::open_ro(db).with_context(|| format!("opening {}", db.display()))?;
    // A log no server of this release has opened yet has no checkpoints.
    let has_table: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints')",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(None);
    }
    Ok(crate::log::checkpoints::newest(&conn)?
        .as_ref()
        .map(report::Checkpoint::from))
}

pub fn run(args: ReportArgs) -> Result<ExitCode> {
    let zone = args.business.business_zone;
    let path = args.projections.path(&args.db.db);
    if !path.exists() {
        bail!(
            "no projection store at {} (start `registrar serve` once, or run `registrar rebuild`)",
            path.display()
        );
    }
    let times = report::parse_times(
        args.as_of.as_deref(),
        args.known_at.as_deref(),
        zone,
        crate::ledger::now_micros(),
    )?;
    let range = match args.name {
        ReportName::Statement => None,
        _ => Some(report::parse_range(
            args.from.as_deref(),
            args.to.as_deref(),
            zone,
        )?),
    };
    let conn = files::open_reader(&path).with_context(|| format!("opening {}", path.display()))?;
    // Read through SQLite's own bounded page cache, not a memory map: a
    // year's report touches every page of its index once, and mapped pages
    // would count in this process's memory as it goes.
    conn.pragma_update(None, "mmap_size", 0)?;
    // One snapshot for the whole report, as the HTTP route reads it.
    conn.execute_batch("BEGIN")?;
    let report = match args.name {
        ReportName::DayBook => Report::DayBook {
            mode: args.mode,
            collector_code: args.collector_code,
        },
        ReportName::Payments => Report::Payments {
            status: args.status.map(PaymentStatus::from),
            mode: args.mode,
            collector_code: args.collector_code,
        },
        ReportName::Statement => {
            let id = args.student.unwrap_or_default();
            Report::Statement {
                jodo_student_id: query::resolve_student(&conn, &id)?.one(&id)?,
            }
        }
        ReportName::Changes => Report::Changes,
        ReportName::StatusChanges => Report::StatusChanges { grade: args.grade },
    };
    let req = Request {
        report,
        range,
        times,
        zone,
        checkpoint: newest_checkpoint(&args.db.db)?,
    };
    // Written as the rows are read: a year's register never sits in memory.
    let (sink, target): (Box<dyn Write + Send>, String) = match &args.out {
        Some(file) => (
            Box::new(
                std::fs::File::create(file)
                    .with_context(|| format!("creating {}", file.display()))?,
            ),
            file.display().to_string(),
        ),
        None => (Box::new(std::io::stdout()), "standard output".into()),
    };
    let mut out = std::io::BufWriter::with_capacity(REPORT_BUFFER, sink);
    report::write(&conn, &req, args.format, &mut out)
        .with_context(|| format!("writing {target}"))?;
    out.flush().with_context(|| format!("writing {target}"))?;
    conn.execute_batch("COMMIT")?;
    Ok(ExitCode::SUCCESS)
}
