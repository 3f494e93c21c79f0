//! The `registrar` command line: a thin layer over the library.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use registrar::config::{self, Config};
use registrar::ledger::{self, Readmitted};
use registrar::log::verify::{self, VerifyError};
use registrar::projection::rebuild::{self, RebuildError};
use registrar::sources::ParseContext;
use registrar::{db, quarantine, server};

/// Where the database lives unless told otherwise.
const DEFAULT_DB: &str = "data/registrar.db";

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

#[derive(Args, Clone)]
struct DbArg {
    /// The log: an SQLite file (created on first start).
    #[arg(long, env = "REGISTRAR_DB", default_value = DEFAULT_DB)]
    db: PathBuf,
}

#[derive(Args, Clone)]
struct ProjectionsArg {
    /// The projection store, an SQLite file of its own [default: beside the
    /// log, `<log name>.projections.db`].
    #[arg(long, env = "REGISTRAR_PROJECTIONS")]
    projections: Option<PathBuf>,
}

impl ProjectionsArg {
    fn path(&self, db: &Path) -> PathBuf {
        self.projections
            .clone()
            .unwrap_or_else(|| config::default_projections_path(db))
    }
}

#[derive(Args)]
struct ZoneArg {
    /// The zone Toolzz `send_at` is read in.
    #[arg(
        long,
        env = "REGISTRAR_TOOLZZ_ZONE",
        default_value = "America/Sao_Paulo"
    )]
    toolzz_zone: chrono_tz::Tz,
}

#[derive(Subcommand)]
enum Command {
    /// Receive webhooks and serve the read API.
    Serve(ServeArgs),
    /// A finance report, read from the projection store (the same bytes as
    /// GET /v1/reports/NAME with the same times).
    Report(ReportArgs),
    /// Recompute the hash chain and re-derive each row's columns from its
    /// body; exit 1 at the first fault.
    Verify {
        #[command(flatten)]
        db: DbArg,
        /// Also prove the log still has HASH at SEQ (a head recorded earlier).
        #[arg(long, env = "REGISTRAR_PIN", value_name = "SEQ:HASH")]
        pin: Option<String>,
        /// Check the chain only: do not parse each body again to re-derive
        /// event_type, event_version, dedupe_key, subject and occurred_at.
        #[arg(long)]
        fast: bool,
        /// Must be the zone the server reads Toolzz times in.
        #[command(flatten)]
        zone: ZoneArg,
    },
    /// Build the projection store afresh from the log (with no server
    /// running; a running server rebuilds with POST /v1/admin/rebuild).
    Rebuild {
        #[command(flatten)]
        db: DbArg,
        #[command(flatten)]
        projections: ProjectionsArg,
        #[command(flatten)]
        zone: ZoneArg,
    },
    /// Inspect and readmit rejected deliveries.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    projections: ProjectionsArg,
    /// Address to listen on.
    #[arg(long, env = "REGISTRAR_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Allow binding a non-loopback address with no provider secret set.
    #[arg(long, env = "REGISTRAR_ALLOW_UNSIGNED")]
    allow_unsigned: bool,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "REGISTRAR_MAX_BODY_BYTES", default_value_t = config::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Rejected deliveries kept at most.
    #[arg(long, env = "REGISTRAR_QUARANTINE_CAP", default_value_t = config::DEFAULT_QUARANTINE_CAP)]
    quarantine_cap: u64,
    /// Deliveries waiting for the writer at most (then 503).
    #[arg(long, env = "REGISTRAR_QUEUE_DEPTH", default_value_t = config::DEFAULT_QUEUE_DEPTH)]
    queue_depth: usize,
    /// Deliveries committed in one transaction at most.
    #[arg(long, env = "REGISTRAR_MAX_BATCH", default_value_t = config::DEFAULT_MAX_BATCH)]
    max_batch: usize,
    /// How long a read with `min_seq` waits for the projections, in
    /// milliseconds (at most 10000).
    #[arg(long, env = "REGISTRAR_MIN_SEQ_WAIT_MS", default_value_t = config::DEFAULT_MIN_SEQ_WAIT.as_millis() as u64)]
    min_seq_wait_ms: u64,
    /// Unauthenticated rejects kept per second at most; past it they are
    /// answered and counted, not kept.
    #[arg(long, env = "REGISTRAR_UNAUTHENTICATED_RATE", default_value_t = config::DEFAULT_UNAUTHENTICATED_RATE)]
    unauthenticated_rate: u32,
    /// Projection lag past which /readyz fails, in milliseconds.
    #[arg(long, env = "REGISTRAR_MAX_LAG_MS", default_value_t = config::DEFAULT_MAX_LAG.as_millis() as u64)]
    max_lag_ms: u64,
    /// How long a client may take to send a request's head, in milliseconds.
    #[arg(long, env = "REGISTRAR_HEADER_READ_TIMEOUT_MS", default_value_t = config::DEFAULT_HEADER_READ_TIMEOUT.as_millis() as u64)]
    header_read_timeout_ms: u64,
    /// How long an idle keep-alive connection stays open, in milliseconds.
    #[arg(long, env = "REGISTRAR_IDLE_TIMEOUT_MS", default_value_t = config::DEFAULT_IDLE_TIMEOUT.as_millis() as u64)]
    idle_timeout_ms: u64,
    /// At SIGTERM, how long requests in progress may take before the
    /// connections left are closed, in milliseconds.
    #[arg(long, env = "REGISTRAR_SHUTDOWN_GRACE_MS", default_value_t = config::DEFAULT_SHUTDOWN_GRACE.as_millis() as u64)]
    shutdown_grace_ms: u64,
    #[command(flatten)]
    business: BusinessZoneArg,
    #[command(flatten)]
    zone: ZoneArg,
    /// The address people reach the console at (e.g. https://registrar.school.in);
    /// when it is https the session cookie is marked Secure.
    #[arg(long, env = "REGISTRAR_PUBLIC_URL")]
    public_url: Option<String>,
    /// How long a console session lasts without a request, in minutes.
    #[arg(long, env = "REGISTRAR_SESSION_IDLE_MINUTES", default_value_t = config::DEFAULT_SESSION_IDLE.as_secs() / 60)]
    session_idle_minutes: u64,
    /// The zone the console shows times in [default: the business zone].
    #[arg(long, env = "REGISTRAR_DISPLAY_ZONE")]
    display_zone: Option<chrono_tz::Tz>,
}

#[derive(Args)]
struct BusinessZoneArg {
    /// The zone business days (report dates) are counted in.
    #[arg(long, env = "REGISTRAR_BUSINESS_ZONE", default_value = "Asia/Kolkata")]
    business_zone: chrono_tz::Tz,
}

/// A payment's status, as the command line names it.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StatusArg {
    Recorded,
    Cancelled,
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
struct ReportArgs {
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
    format: registrar::report::Format,
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

#[derive(Subcommand)]
enum QuarantineCommand {
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
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Verify {
            db,
            pin,
            fast,
            zone,
        } => verify_cmd(&db.db, pin.as_deref(), fast, zone.toolzz_zone),
        Command::Rebuild {
            db,
            projections,
            zone,
        } => rebuild_cmd(&db.db, &projections.path(&db.db), zone.toolzz_zone),
        Command::Quarantine { command } => quarantine_cmd(command),
        Command::Report(args) => report_cmd(args),
    }
}

/// A secret from the environment; empty counts as unset.
fn secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn config_from_env(db: &Path, zone: chrono_tz::Tz) -> Result<Config> {
    let mut cfg = Config::new(db);
    cfg.jodo_secret = secret("REGISTRAR_JODO_SECRET");
    cfg.jodo_header = secret("REGISTRAR_JODO_HEADER")
        .map(|h| config::parse_header(&h))
        .transpose()
        .map_err(|e| anyhow::anyhow!("REGISTRAR_JODO_HEADER: {e}"))?;
    cfg.toolzz_token = secret("REGISTRAR_TOOLZZ_TOKEN");
    cfg.read_token = secret("REGISTRAR_READ_TOKEN");
    cfg.admin_token = secret("REGISTRAR_ADMIN_TOKEN");
    cfg.parse = ParseContext { toolzz_zone: zone };
    Ok(cfg)
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    let mut cfg = config_from_env(&args.db.db, args.zone.toolzz_zone)?;
    if args.max_body_bytes == 0
        || args.quarantine_cap == 0
        || args.queue_depth == 0
        || args.max_batch == 0
        || args.header_read_timeout_ms == 0
        || args.idle_timeout_ms == 0
    {
        bail!(
            "--max-body-bytes, --quarantine-cap, --queue-depth, --max-batch, --header-read-timeout-ms \
             and --idle-timeout-ms must be positive"
        );
    }
    cfg.header_read_timeout = std::time::Duration::from_millis(args.header_read_timeout_ms);
    cfg.idle_timeout = std::time::Duration::from_millis(args.idle_timeout_ms);
    cfg.shutdown_grace = std::time::Duration::from_millis(args.shutdown_grace_ms);
    cfg.max_body_bytes = args.max_body_bytes;
    cfg.quarantine_cap = args.quarantine_cap;
    cfg.queue_depth = args.queue_depth;
    cfg.max_batch = args.max_batch;
    cfg.projections_path = args.projections.path(&args.db.db);
    cfg.min_seq_wait = std::time::Duration::from_millis(args.min_seq_wait_ms);
    if cfg.min_seq_wait > config::MAX_MIN_SEQ_WAIT {
        bail!(
            "--min-seq-wait-ms is at most {}",
            config::MAX_MIN_SEQ_WAIT.as_millis()
        );
    }
    cfg.max_lag = std::time::Duration::from_millis(args.max_lag_ms);
    cfg.unauthenticated_rate = args.unauthenticated_rate;
    cfg.business_zone = args.business.business_zone;
    cfg.session_idle = std::time::Duration::from_secs(args.session_idle_minutes.saturating_mul(60));
    if cfg.session_idle.is_zero() || cfg.session_idle > config::MAX_SESSION_IDLE {
        bail!(
            "--session-idle-minutes must be between 1 and {}",
            config::MAX_SESSION_IDLE.as_secs() / 60
        );
    }
    if let Some(url) = &args.public_url {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            bail!("--public-url must start with http:// or https://");
        }
    }
    cfg.public_url = args.public_url;
    cfg.display_zone = args.display_zone;
    let addrs: Vec<SocketAddr> = args
        .listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {:?} is not an address", args.listen))?
        .collect();
    let addr = *addrs
        .first()
        .with_context(|| format!("--listen {:?} resolves to nothing", args.listen))?;
    if cfg.is_unsigned() {
        if !addr.ip().is_loopback() && !args.allow_unsigned {
            bail!(
                "refusing to listen on {addr} with no provider secret set: anyone who can reach it could write to \
                 the event log. Set REGISTRAR_JODO_SECRET and REGISTRAR_TOOLZZ_TOKEN (see README), or pass \
                 --allow-unsigned if this network is trusted."
            );
        }
        tracing::warn!(%addr, "no provider secrets set: deliveries are not authenticated");
    }
    if cfg.read_token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "REGISTRAR_READ_TOKEN is not set: the read API is open to anyone who can reach it");
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tracing::info!(
            %addr,
            db = %cfg.db_path.display(),
            projections = %cfg.projections_path.display(),
            "registrar listening"
        );
        server::serve(listener, cfg, shutdown_signal())
            .await
            .context("running the server")?;
        tracing::info!("stopped cleanly");
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight deliveries");
}

fn open_existing(path: &Path) -> Result<rusqlite::Connection> {
    if !path.exists() {
        bail!(
            "no database at {} (start `registrar serve` once, or pass --db)",
            path.display()
        );
    }
    let mut conn = db::open_rw(path).with_context(|| format!("opening {}", path.display()))?;
    db::migrate(&mut conn).context("migrating the database")?;
    Ok(conn)
}

fn verify_cmd(path: &Path, pin: Option<&str>, fast: bool, zone: chrono_tz::Tz) -> Result<ExitCode> {
    let pin = pin
        .map(verify::parse_pin)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--pin: {e}"))?;
    if !path.exists() {
        bail!("no database at {}", path.display());
    }
    let conn = db::open_ro(path).with_context(|| format!("opening {}", path.display()))?;
    let options = verify::Options {
        pin,
        rederive: (!fast).then_some(ParseContext { toolzz_zone: zone }),
    };
    match verify::verify(&conn, &options) {
        Ok(v) => {
            println!(
                "ok: {} events, head {} {}",
                v.events,
                v.head_seq,
                hex::encode(v.head_hash)
            );
            if fast {
                println!("chain only (--fast): columns not re-derived from the bodies");
            }
            if let Some((first, n)) = v.unparsed {
                println!(
                    "note: {n} bodies (the first at seq {first}) no longer parse with this version's parser; their chain is sound, their columns were not re-derived"
                );
            }
            if let Some((seq, hash)) = pin {
                println!("pin ok: seq {seq} still has {}", hex::encode(hash));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Fault(f)) => {
            println!("FAILED: {f}");
            Ok(ExitCode::from(1))
        }
        Err(e @ VerifyError::Db(_)) => Err(e).context("verifying"),
    }
}

fn rebuild_cmd(db: &Path, projections: &Path, zone: chrono_tz::Tz) -> Result<ExitCode> {
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
        ParseContext { toolzz_zone: zone },
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

/// The buffer a report is written through to its file or stdout.
const REPORT_BUFFER: usize = 256 * 1024;

fn report_cmd(args: ReportArgs) -> Result<ExitCode> {
    use registrar::projection::entities::PaymentStatus;
    use registrar::projection::query::{self, Lookup};
    use registrar::report::{self, Report, Request};
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
        registrar::ledger::now_micros(),
    )?;
    let range = match args.name {
        ReportName::Statement => None,
        _ => Some(report::parse_range(
            args.from.as_deref(),
            args.to.as_deref(),
            zone,
        )?),
    };
    let status = args.status.map(|s| match s {
        StatusArg::Recorded => PaymentStatus::Recorded,
        StatusArg::Cancelled => PaymentStatus::Cancelled,
    });
    let conn = registrar::projection::files::open_reader(&path)
        .with_context(|| format!("opening {}", path.display()))?;
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
            status,
            mode: args.mode,
            collector_code: args.collector_code,
        },
        ReportName::Statement => {
            let id = args.student.unwrap_or_default();
            match query::resolve_student(&conn, &id)? {
                Lookup::Found(jodo_student_id) => Report::Statement { jodo_student_id },
                Lookup::NotFound => bail!("no student has id {id:?}"),
                Lookup::Ambiguous(ids) => bail!(
                    "{id:?} is the identifier of several students ({}); use the jodo_student_id",
                    ids.join(", ")
                ),
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
    };
    // Written as the rows are read: a year's register never sits in memory.
    let (sink, target): (Box<dyn std::io::Write + Send>, String) = match &args.out {
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
    use std::io::Write;
    out.flush().with_context(|| format!("writing {target}"))?;
    conn.execute_batch("COMMIT")?;
    Ok(ExitCode::SUCCESS)
}

fn quarantine_cmd(cmd: QuarantineCommand) -> Result<ExitCode> {
    match cmd {
        QuarantineCommand::List {
            db,
            all,
            after,
            limit,
            json,
        } => {
            let conn = open_existing(&db.db)?;
            let entries =
                quarantine::list(&conn, after, limit, !all).context("listing the quarantine")?;
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
                eprintln!(
                    "{evicted} entries were evicted over time because the quarantine was full"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Show { id, db } => {
            let conn = open_existing(&db.db)?;
            let entry = quarantine::get(&conn, id)?
                .with_context(|| format!("no quarantined delivery has id {id}"))?;
            use std::io::Write;
            std::io::stdout().write_all(&entry.reject.body)?;
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Readmit {
            id,
            db,
            force,
            zone,
        } => {
            let mut conn = open_existing(&db.db)?;
            let cfg = config_from_env(&db.db, zone.toolzz_zone)?;
            match ledger::readmit(&mut conn, id, &cfg, force) {
                Ok(Readmitted::Appended { seq }) => {
                    println!("readmitted {id}: appended as seq {seq}")
                }
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
    }
}
