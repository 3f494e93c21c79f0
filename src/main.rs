//! The `registrar` command line: parses the arguments and calls the
//! library's command ([`registrar::commands`]); nothing else.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use registrar::commands::{
    backup, key, proof, quarantine, rebuild, report, restore, serve, verify,
};

#[derive(Parser)]
#[command(
    name = "registrar",
    version,
    about = "Hash-chained event log and projections for Jodo and Toolzz webhooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive webhooks and serve the read API.
    Serve(serve::ServeArgs),
    /// A finance report, read from the projection store (the same bytes as
    /// GET /v1/reports/NAME with the same times).
    Report(report::ReportArgs),
    /// Recompute the hash chain and re-derive each row's columns from its
    /// body; exit 1 at the first fault.
    Verify(verify::VerifyArgs),
    /// Build the projection store afresh from the log (with no server
    /// running; a running server rebuilds with POST /v1/admin/rebuild).
    Rebuild(rebuild::RebuildArgs),
    /// An online, verified copy of the log while a server runs:
    /// `registrar backup --db PATH DEST`.
    Backup(backup::BackupArgs),
    /// A backup put in place of a log no server holds (the projection store
    /// is rebuilt at the next start): `registrar restore SRC --db PATH`.
    Restore(restore::RestoreArgs),
    /// Inspect and readmit rejected deliveries.
    Quarantine {
        #[command(subcommand)]
        command: quarantine::QuarantineCommand,
    },
    /// Keys that sign checkpoints: `registrar key generate --out PATH`.
    Key {
        #[command(subcommand)]
        command: key::KeyCommand,
    },
    /// Offline proofs: `registrar proof check BUNDLE --key VERIFIER_KEY`.
    Proof {
        #[command(subcommand)]
        command: proof::ProofCommand,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // A log line that cannot be written (the disk holding the log file
        // is full) is dropped. By default the logger reports it with
        // eprintln!, to the same full stderr, which panics: in a handler
        // that was a 500, in the writer thread the end of ingest.
        .log_internal_errors(false)
        // Colour only for a person at a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let ran = match Cli::parse().command {
        Command::Serve(args) => serve::run(args),
        Command::Report(args) => report::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Rebuild(args) => rebuild::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Restore(args) => restore::run(args),
        Command::Quarantine { command } => quarantine::run(command),
        Command::Key { command } => key::run(command),
        Command::Proof { command } => proof::run(command),
    };
    ran.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}
