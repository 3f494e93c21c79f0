//! registrar's benchmark: every figure beside a floor measured in the same run.
//!
//! `make bench` (or `make bench-quick`) runs, in order:
//! 1. the storage floor: the ingest run's bodies into a bare SQLite table with
//!    the log's pragmas, in batches of the writer's size; and the same with one
//!    transaction per event;
//! 2. the HTTP floor: a handler that reads the body and answers 200 at once,
//!    under the ingest run's client load;
//! 3. ingest: `registrar serve` (the release binary) under N signed deliveries
//!    from C keep-alive clients; then the log is checked against every answer
//!    and `registrar verify` must pass; the same signed deliveries beside a
//!    flood of unsigned ones; and the server's CPU per delivery with the
//!    tree kept and with `--without-tree`, in interleaved pairs;
//! 4. rebuild: a large log written through the library (without its tree,
//!    which is then built from scratch, timed, and checkpointed),
//!    `registrar rebuild` timed (and its peak memory), beside the read floor
//!    (scan and parse);
//! 5. verify on the same log;
//! 6. reads: the student routes, inclusion proofs and event bundles at
//!    random seqs, under C clients on the large database, beside a GET
//!    floor, each with the server's CPU per request;
//! 7. the finance reports from the command line on the same store;
//! 8. `registrar backup` of the large log while the server ingests new
//!    deliveries: its time, and the ingest p99 during it beside before it.
//!
//! It prints one table and writes it to `target/bench.json`. A missed
//! performance target prints FAIL; a failed correctness check (a lost or
//! duplicated event, a broken chain) also makes the process exit 1.

#[path = "bench/generate.rs"]
mod generate;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/machine.rs"]
mod machine;
#[path = "bench/process.rs"]
mod process;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/storage.rs"]
mod storage;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use axum::body::Bytes;
use clap::Parser;
use registrar::config;
use registrar::event::Source;
use registrar::sources::jodo;

use generate::{GenConfig, Generator, Rng};
use load::{LoadRun, Req};
use process::Server;
use report::{thousands, Report};

#[derive(Parser, Debug)]
#[command(
    name = "registrar_bench",
    about = "registrar's benchmark (see benches/bench.rs)"
)]
struct Args {
    /// Deliveries sent in the ingest run [default: 100000; 10000 with --quick].
    #[arg(long)]
    n: Option<usize>,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 64)]
    c: usize,
    /// Smaller run: N=10,000 and a 100,000-event log for rebuild.
    #[arg(long)]
    quick: bool,
    /// Events in the large log [default: 1000000; 100000 with --quick].
    #[arg(long)]
    log_events: Option<u64>,
    /// Requests per read route [default: 20000; 5000 with --quick].
    #[arg(long)]
    reads: Option<usize>,
    /// Skip parts: `ingest` (steps 1-3) and/or `large` (steps 4-6).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Keep the temporary directory (databases, server logs) and print it.
    #[arg(long)]
    keep: bool,
    /// Passed by `cargo bench`. Without it (`cargo test --all-targets` runs
    /// bench targets too), the benchmark does not run.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: serve the HTTP floor on ADDR.
    #[arg(long, hide = true, value_name = "ADDR")]
    http_floor_server: Option<String>,
}

/// Targets on 2 cores (issues 4 and 8).
const INGEST_TARGET: f64 = 20_000.0;
const INGEST_VS_FLOOR: f64 = 0.5;
const INGEST_VS_PER_EVENT: f64 = 10.0;
const INGEST_P99_MS: f64 = 25.0;
const INGEST_MAX_MS: f64 = 100.0;
/// Issue 21: the server's CPU per acknowledged delivery, against the HTTP
/// floor's per request.
const INGEST_CPU_VS_FLOOR: f64 = 3.0;
/// Projection lag under the ingest load (issue 8).
const LAG_P99_MS: f64 = 250.0;
const LAG_CATCH_UP_MS: f64 = 1_000.0;
/// The finance reports' year (the generated log starts on 2024-01-01).
const FINANCE_FROM: &str = "2024-01-01";
const FINANCE_TO: &str = "2024-12-31";
/// Issue 9's targets.
const DAY_BOOK_MS: f64 = 250.0;
const REGISTER_VS_FLOOR: f64 = 0.5;
/// Clients posting unauthenticated bodies as fast as they can (issue 11).
const FLOOD_CLIENTS: usize = 16;
const FLOOD_P99_RATIO: f64 = 2.0;
/// How long the bench waits for the projections to catch up at most.
const LAG_CATCH_UP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
const REBUILD_TARGET: f64 = 200_000.0;
const REBUILD_VS_FLOOR: f64 = 0.5;
const REBUILD_PEAK_MB: f64 = 100.0;
const VERIFY_TARGET: f64 = 500_000.0;
/// Reads against the GET floor of the same run (issue 8).
const READ_P99_VS_FLOOR: f64 = 1.5;
const READ_VS_FLOOR: f64 = 0.5;
/// Issue 19: server CPU per delivery with the tree kept, against the same
/// server with `--without-tree`, in this many interleaved pairs of runs.
const TREE_COST_PAIRS: usize = 3;
const TREE_COST_MAX_RATIO: f64 = 1.05;
/// Issue 18: the ingest p99 while `registrar backup` copies the large log,
/// against the same load before it; the load is sent in chunks of this
/// many new deliveries, this many chunks before the backup.
const BACKUP_P99_RATIO: f64 = 2.0;
const BACKUP_LOAD_CHUNK: usize = 2_000;
const BACKUP_ALONE_CHUNKS: usize = 5;
/// Events the per-event-commit figure is measured on.
const PER_EVENT_SUBSET: usize = 2_000;
/// Each read route is loaded for at most this long.
const READS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(addr) = &args.http_floor_server {
        return match load::serve_floor(addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("HTTP floor server: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if !args.bench {
        // `cargo test --benches` (and so --all-targets) runs this binary
        // without --bench: the benchmark is not a test, so do nothing.
        println!("registrar_bench: run it with `make bench` (cargo bench passes --bench)");
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let mut report = Report::default();
    let result = run(&args, &mut report);
    let seconds = started.elapsed().as_secs_f64();
    println!();
    report.print();
    println!("\nwhole run: {seconds:.1} s");
    if let Some((mean, worst, phase)) = report.background_summary() {
        println!(
            "other processes on this machine used {mean:.2} cores on average during the run \
             (most: {worst:.2} during \"{phase}\"); figures are noisier the higher this is"
        );
    }
    if let Err(e) = write_json(&args, &report, seconds) {
        eprintln!("could not write target/bench.json: {e:#}");
    }
    if let Err(e) = result {
        eprintln!("\nbench failed: {e:#}");
        return ExitCode::from(2);
    }
    if report.correctness_failed() {
        eprintln!("\na correctness check failed (see the table)");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn n(args: &Args) -> usize {
    args.n.unwrap_or(if args.quick { 10_000 } else { 100_000 })
}

fn log_events(args: &Args) -> u64 {
    args.log_events
        .unwrap_or(if args.quick { 100_000 } else { 1_000_000 })
}

fn reads(args: &Args) -> usize {
    args.reads
        .unwrap_or(if args.quick { 5_000 } else { 20_000 })
}

fn run(args: &Args, report: &mut Report) -> Result<()> {
    anyhow::ensure!(args.c > 0, "--c must be positive");
    let dir = tempfile::Builder::new()
        .prefix("registrar-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let dir_path = dir.path().to_path_buf();
    if args.keep {
        eprintln!("keeping {}", dir_path.display());
        let _ = dir.keep();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = load::client(args.c);
    let skip = |part: &str| args.skip.iter().any(|s| s == part);
    if !skip("ingest") {
        ingest_part(args, report, &dir_path, &runtime, &client)?;
    }
    if !skip("large") {
        large_part(args, report, &dir_path, &runtime, &client)?;
    }
    Ok(())
}

/// A phase being timed, with the machine's other load over it.
struct Phase {
    name: String,
    cpu: machine::CpuSnap,
}

fn phase(name: &str) -> Phase {
    eprintln!("== {name}");
    Phase {
        name: name.to_string(),
        cpu: machine::snap(),
    }
}

fn done(p: Phase, report: &mut Report) {
    let seconds = machine::seconds(&p.cpu);
    let other = machine::other_cores(&p.cpu, &machine::snap());
    eprintln!("   ({seconds:.1} s; other processes used {other:.2} cores meanwhile)");
    report.background.push((p.name, seconds, other));
}

/// Steps 1-3: floors, then the ingest run and its checks.
fn ingest_part(
    args: &Args,
    report: &mut Report,
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
) -> Result<()> {
    let n = n(args);
    anyhow::ensure!(n >= 100, "--n must be at least 100");
    let t = phase(&format!("generating {n} deliveries"));
    let mut gen = Generator::new(GenConfig {
        seed: 0x1ce5_7a11,
        students: (n / 5).max(100),
        learners: (n / 10).max(100),
        late: 0.02,
    });
    let (distinct, order) = generate::with_duplicates(&mut gen, n, 7);
    let sends: Vec<&generate::Delivery> = order.iter().map(|&i| &distinct[i]).collect();
    describe_sizes(&distinct);
    let toolzz_path = format!("/webhooks/toolzz/{}", process::TOOLZZ_TOKEN);
    let reqs: Vec<Req> = {
        let prepared: Vec<Req> = distinct
            .iter()
            .map(|d| match d.source {
                Source::Jodo => Req {
                    body: Some(Bytes::from(d.body.clone())),
                    path: "/webhooks/jodo".into(),
                    signature: Some(jodo::sign(process::JODO_SECRET.as_bytes(), &d.body)),
                },
                Source::Toolzz => Req {
                    body: Some(Bytes::from(d.body.clone())),
                    path: toolzz_path.clone(),
                    signature: None,
                },
            })
            .collect();
        order.iter().map(|&i| prepared[i].clone()).collect()
    };
    let reqs = Arc::new(reqs);
    done(t, report);

    let t = phase("storage floor");
    let batch = config::DEFAULT_MAX_BATCH;
    let storage = storage::storage_floor(&dir.join("floor-batched.db"), &sends, batch)?;
    let subset = &sends[..PER_EVENT_SUBSET.min(sends.len())];
    let per_event = storage::per_event_commit(&dir.join("floor-per-event.db"), subset)?;
    eprintln!(
        "   batched: {} events/s; per-event commit: {} events/s",
        thousands(storage),
        thousands(per_event)
    );
    report.rate(
        &format!("storage floor (batches of {batch})"),
        storage,
        "events/s",
    );
    report.rate(
        &format!("per-event commit ({} events)", subset.len()),
        per_event,
        "events/s",
    );
    done(t, report);

    let t = phase(&format!("HTTP floor ({n} requests, {} clients)", args.c));
    let mut floor_server = Server::floor(&dir.join("floor-server.log"))?;
    let (floor_run, floor_cpu) = runtime.block_on(async {
        floor_server.ready(client).await?;
        let before = floor_server.cpu_seconds()?;
        let run = load::run(
            client,
            &floor_server.base,
            Arc::clone(&reqs),
            args.c,
            true,
            None,
        )
        .await;
        Ok::<_, anyhow::Error>((run, floor_server.cpu_seconds()? - before))
    })?;
    drop(floor_server);
    let floor_cpu_us = floor_cpu * 1e6 / n as f64;
    anyhow::ensure!(
        floor_run.count(200) == n,
        "the HTTP floor answered {:?} ({:?})",
        floor_run.status_counts(),
        floor_run.first_error
    );
    let http = n as f64 / floor_run.elapsed.as_secs_f64();
    let floor_lat = floor_run.latency_ms();
    eprintln!(
        "   {} req/s, p50 {:.2} ms, p99 {:.2} ms",
        thousands(http),
        floor_lat.p50,
        floor_lat.p99
    );
    report.rate("HTTP floor (200 at once)", http, "req/s");
    report.ms("HTTP floor latency p99", floor_lat.p99);
    done(t, report);

    let t = phase(&format!("ingest ({n} deliveries, {} clients)", args.c));
    let db = dir.join("ingest.db");
    let mut server = Server::registrar(&db, &dir.join("ingest-server.log"))?;
    let (run, lag, cpu) = runtime.block_on(async {
        server.ready(client).await?;
        let before = server.cpu_seconds()?;
        let sampler = load::LagSampler::start(client.clone(), server.base.clone());
        let run = load::run(client, &server.base, Arc::clone(&reqs), args.c, true, None).await;
        // From the last answer, how long until the projections hold the log.
        let caught_up = load::wait_caught_up(client, &server.base, LAG_CATCH_UP_DEADLINE).await;
        let samples = sampler.stop().await;
        let cpu = server.cpu_seconds()? - before;
        Ok::<_, anyhow::Error>((run, (samples, caught_up), cpu))
    })?;
    let log = server.log.clone();
    let stopped = server.stop()?;
    let acked = run
        .sent()
        .filter(|a| a.status == 200 && a.reply.is_some())
        .count();
    let rate = acked as f64 / run.elapsed.as_secs_f64();
    let lat = run.latency_ms();
    eprintln!(
        "   {} acked in {:.2} s: {} events/s; statuses {:?}",
        acked,
        run.elapsed.as_secs_f64(),
        thousands(rate),
        run.status_counts()
    );
    if let Some(e) = &run.first_error {
        eprintln!("   first transport error: {e}");
    }
    let floor = storage.min(http);
    let row = report.rate("ingest (acked events/s)", rate, "events/s");
    row.floor = Some(floor);
    row.ratio = Some(rate / floor);
    row.target = format!(
        ">= {} and >= {INGEST_VS_FLOOR}x min(storage, HTTP)",
        thousands(INGEST_TARGET)
    );
    row.pass = Some(rate >= INGEST_TARGET && rate >= INGEST_VS_FLOOR * floor);
    let row = report.rate("ingest vs per-event commit", rate, "events/s");
    row.floor = Some(per_event);
    row.ratio = Some(rate / per_event);
    row.target = format!(">= {INGEST_VS_PER_EVENT}x");
    row.pass = Some(rate >= INGEST_VS_PER_EVENT * per_event);
    // The server's own CPU from ready to caught up (the projector's share
    // included), per acknowledged delivery, beside the HTTP floor's per
    // request: the load client's share of the two cores counts in neither.
    let cpu_us = cpu * 1e6 / acked.max(1) as f64;
    eprintln!(
        "   server CPU: {cpu:.2} s, {cpu_us:.1} µs per acknowledged delivery; the HTTP floor's {floor_cpu_us:.1} µs per request"
    );
    let row = report.text(
        "ingest server CPU per acknowledged delivery",
        format!("{cpu_us:.1} µs"),
    );
    row.number = Some(cpu_us);
    row.unit = "µs";
    row.floor = Some(floor_cpu_us);
    row.ratio = Some(cpu_us / floor_cpu_us);
    row.target = format!("<= {INGEST_CPU_VS_FLOOR}x the HTTP floor's per request");
    row.pass = Some(cpu_us <= INGEST_CPU_VS_FLOOR * floor_cpu_us);
    report.ms("ingest latency p50", lat.p50);
    let row = report.ms("ingest latency p99", lat.p99);
    row.floor = Some(floor_lat.p99);
    row.target = format!("< {INGEST_P99_MS} ms");
    row.pass = Some(lat.p99 < INGEST_P99_MS);
    let row = report.ms("ingest latency max", lat.max);
    row.target = format!("< {INGEST_MAX_MS} ms");
    row.pass = Some(lat.max < INGEST_MAX_MS);
    let (mut samples, caught_up) = lag;
    let lag_p99 = load::Latency::of(&mut samples).p99;
    eprintln!(
        "   projection lag: {} samples, p99 {lag_p99:.1} ms; caught up {}",
        samples.len(),
        match caught_up {
            Some(d) => format!("{:.0} ms after the last answer", d.as_secs_f64() * 1e3),
            None => "never".into(),
        }
    );
    let row = report.ms("projection lag under load p99", lag_p99);
    row.target = format!("< {LAG_P99_MS} ms");
    row.pass = Some(!samples.is_empty() && lag_p99 < LAG_P99_MS);
    let catch_up_ms = caught_up.map_or(f64::INFINITY, |d| d.as_secs_f64() * 1e3);
    let row = report.ms("projections caught up after the last delivery", catch_up_ms);
    row.target = format!("< {LAG_CATCH_UP_MS} ms");
    row.pass = Some(catch_up_ms < LAG_CATCH_UP_MS);
    let not_ok: Vec<_> = run
        .status_counts()
        .into_iter()
        .filter(|(s, _)| *s != 200)
        .collect();
    report.check(
        "every delivery answered 200",
        not_ok.is_empty(),
        if not_ok.is_empty() {
            format!("{n} of {n}")
        } else {
            format!("other answers: {not_ok:?}")
        },
    );
    done(t, report);

    let t = phase("checking the ingest log");
    report.check(
        "server stopped cleanly on SIGTERM",
        stopped.success(),
        format!("{stopped}"),
    );
    if !stopped.success() {
        eprintln!("{}", process::tail(&log));
    }
    let check = storage::check_ingest(&db, &distinct, &order, &run)?;
    for p in &check.problems {
        eprintln!("   {p}");
    }
    report.check(
        "acked events in the log exactly once",
        check.ok(),
        format!(
            "{} acked, {} rows, {} lost, {} duplicated, {} bad duplicate answers",
            thousands(check.acked_events as f64),
            thousands(check.log_rows as f64),
            check.lost,
            check.duplicated,
            check.bad_duplicate_answers
        ),
    );
    if check.unacked_rows > 0 {
        eprintln!(
            "   note: {} rows were never acknowledged (a send failed after its commit)",
            check.unacked_rows
        );
    }
    let dup_sends = order.len() - distinct.len();
    let dup_answers = run
        .sent()
        .filter_map(|a| a.reply.as_ref())
        .filter(|r| r.status == "duplicate")
        .count();
    eprintln!("   {dup_sends} duplicate sends, {dup_answers} answered \"duplicate\"");
    let v = verify(&db)?;
    report.check(
        "registrar verify after ingest",
        v.status.success(),
        verify_summary(&v),
    );
    done(t, report);

    // Signed deliveries with and without a flood of unauthenticated posts,
    // each on a fresh server: the flood must not hold them up.
    let subset = (n / 5).max(100);
    let t = phase(&format!(
        "unauthenticated flood ({subset} signed deliveries, {FLOOD_CLIENTS} flooding clients)"
    ));
    let signed = Arc::new(reqs[..subset].to_vec());
    let mut p99 = [0.0f64; 2];
    let mut all_ok = true;
    for (i, flood) in [false, true].into_iter().enumerate() {
        let db = dir.join(format!("flood-{i}.db"));
        let mut server = Server::registrar(&db, &dir.join(format!("flood-{i}-server.log")))?;
        let (run, flooded) = runtime.block_on(async {
            server.ready(client).await?;
            let flooder = flood
                .then(|| load::Flood::start(client.clone(), server.base.clone(), FLOOD_CLIENTS));
            let run = load::run(
                client,
                &server.base,
                Arc::clone(&signed),
                args.c,
                true,
                None,
            )
            .await;
            let flooded = match flooder {
                Some(f) => f.stop().await,
                None => 0,
            };
            Ok::<_, anyhow::Error>((run, flooded))
        })?;
        server.stop()?;
        p99[i] = run.latency_ms().p99;
        all_ok &= run.count(200) == subset;
        eprintln!(
            "   {}: p99 {:.2} ms, {} of {subset} answered 200{}",
            if flood { "with the flood" } else { "alone" },
            p99[i],
            run.count(200),
            if flood {
                format!(", {flooded} unauthenticated posts meanwhile")
            } else {
                String::new()
            }
        );
    }
    let row = report.ms("signed p99 under an unauthenticated flood", p99[1]);
    row.floor = Some(p99[0]);
    row.ratio = Some(p99[1] / p99[0]);
    row.target = format!("<= {FLOOD_P99_RATIO}x without the flood");
    row.pass = Some(p99[1] <= FLOOD_P99_RATIO * p99[0]);
    report.check(
        "every signed delivery acknowledged during the flood",
        all_ok,
        format!("{subset} signed deliveries per run"),
    );
    done(t, report);
    tree_cost(args, report, dir, runtime, client, &reqs)
}

/// What keeping the tree costs a delivery (issue 19): the server's own CPU
/// (user and system, from `/proc`) from ready to caught up, per delivery, on
/// a fresh log with the tree kept and with `--without-tree`. The load
/// client shares the two cores, so throughput would measure it too; CPU per
/// delivery does not. Runs come in interleaved pairs, each pair in the
/// other order than the last, as the machine's speed drifts; each figure is
/// the median of its runs.
fn tree_cost(
    args: &Args,
    report: &mut Report,
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    reqs: &Arc<Vec<Req>>,
) -> Result<()> {
    let m = (n(args) / 2).max(100).min(reqs.len());
    let sends = Arc::new(reqs[..m].to_vec());
    let t = phase(&format!(
        "tree cost ({TREE_COST_PAIRS} pairs of runs of {m} deliveries, the tree kept and not)"
    ));
    const KEPT: usize = 0;
    const SKIPPED: usize = 1;
    // Microseconds of server CPU per delivery, per run: [kept, skipped].
    let mut per_delivery: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut all_ok = true;
    for pair in 0..TREE_COST_PAIRS {
        let order = if pair % 2 == 0 {
            [KEPT, SKIPPED]
        } else {
            [SKIPPED, KEPT]
        };
        for which in order {
            let flags: &[&str] = if which == KEPT {
                &[]
            } else {
                &["--without-tree"]
            };
            let name = format!("tree-cost-{pair}-{which}");
            let mut server = Server::registrar_with(
                &dir.join(format!("{name}.db")),
                &dir.join(format!("{name}-server.log")),
                flags,
            )?;
            let (run, cpu) = runtime.block_on(async {
                server.ready(client).await?;
                let before = server.cpu_seconds()?;
                let run =
                    load::run(client, &server.base, Arc::clone(&sends), args.c, true, None).await;
                let caught_up =
                    load::wait_caught_up(client, &server.base, LAG_CATCH_UP_DEADLINE).await;
                anyhow::ensure!(caught_up.is_some(), "the projections never caught up");
                let cpu = server.cpu_seconds()? - before;
                Ok::<_, anyhow::Error>((run, cpu))
            })?;
            server.stop()?;
            all_ok &= run.count(200) == m;
            let us = cpu * 1e6 / m as f64;
            eprintln!(
                "   {}: {us:.1} µs of server CPU per delivery ({cpu:.2} s for {m})",
                if which == KEPT {
                    "tree kept"
                } else {
                    "without the tree"
                }
            );
            per_delivery[which].push(us);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let runs = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let kept_runs = runs(&per_delivery[KEPT]);
    let skipped_runs = runs(&per_delivery[SKIPPED]);
    let kept = median(&mut per_delivery[KEPT]);
    let skipped = median(&mut per_delivery[SKIPPED]);
    let row = report.text(
        "server CPU per delivery, without the tree (median)",
        format!("{skipped:.1} µs (runs {skipped_runs})"),
    );
    row.number = Some(skipped);
    row.unit = "µs";
    let row = report.text(
        "server CPU per delivery, the tree kept (median)",
        format!("{kept:.1} µs (runs {kept_runs})"),
    );
    row.number = Some(kept);
    row.unit = "µs";
    row.floor = Some(skipped);
    row.ratio = Some(kept / skipped);
    row.target = format!("<= {TREE_COST_MAX_RATIO}x without the tree");
    row.pass = Some(kept <= TREE_COST_MAX_RATIO * skipped);
    report.check(
        "every delivery answered 200 in the tree-cost runs",
        all_ok,
        format!("{} runs of {m}", 2 * TREE_COST_PAIRS),
    );
    done(t, report);
    Ok(())
}

/// `registrar verify --fast --db PATH` as a child process: the chain only
/// (the target is the chain's); the re-parse of every body is timed apart.
fn verify(db: &Path) -> Result<process::Measured> {
    let mut cmd = process::registrar();
    cmd.arg("verify").arg("--fast").arg("--db").arg(db);
    let m = process::run_measured(cmd)?;
    if !m.status.success() {
        eprintln!("   verify: {}{}", m.stdout, m.stderr);
    }
    Ok(m)
}

/// Verify's verdict without the head hash: "ok: 1980 events".
fn verify_summary(v: &process::Measured) -> String {
    let out = v.stdout.trim();
    let short = out.split(", head").next().unwrap_or(out);
    if v.status.success() {
        short.to_string()
    } else {
        format!("{} {short}", v.status)
    }
}

/// A read route's path for one request, at a random student or seq.
type PathOf<'a> = dyn Fn(&mut Rng) -> String + 'a;

/// Whether a read route is held to the read targets or only measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Targeted {
    Yes,
    No,
}

/// Steps 4-6: the large log, rebuild, verify, reads.
fn large_part(
    args: &Args,
    report: &mut Report,
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
) -> Result<()> {
    let events = log_events(args);
    let db: PathBuf = dir.join("large.db");
    let t = phase(&format!("generating a log of {events} events"));
    let large = storage::generate_log(
        &db,
        events,
        GenConfig {
            seed: 0xb16_1095,
            students: (events / 10).max(100) as usize,
            learners: (events / 20).max(100) as usize,
            late: 0.02,
        },
    )?;
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "   {:.1} s ({} events/s), {:.0} MB, {} students",
        large.seconds,
        thousands(large.events as f64 / large.seconds),
        size as f64 / 1e6,
        large.students.len()
    );
    done(t, report);

    let t = phase("building the tree from scratch");
    let built = storage::build_tree(&db)?;
    let secs = built.took.as_secs_f64();
    eprintln!(
        "   {} leaves in {secs:.2} s ({} leaves/s)",
        thousands(built.leaves as f64),
        thousands(built.leaves as f64 / secs)
    );
    let row = report.text(
        &format!(
            "tree build from scratch ({} events)",
            thousands(built.leaves as f64)
        ),
        format!(
            "{secs:.2} s ({} leaves/s)",
            thousands(built.leaves as f64 / secs)
        ),
    );
    row.number = Some(secs);
    row.unit = "s";
    done(t, report);

    let t = phase("read floor (scan and parse)");
    let (scanned, took) = storage::read_floor(&db)?;
    let read_floor = scanned as f64 / took.as_secs_f64();
    eprintln!("   {} events/s", thousands(read_floor));
    report.rate("read floor (scan + parse)", read_floor, "events/s");
    done(t, report);

    let t = phase("registrar rebuild");
    let mut cmd = process::registrar();
    cmd.arg("rebuild").arg("--db").arg(&db);
    let rebuild = process::run_measured(cmd)?;
    eprintln!("   {}", rebuild.stdout.trim());
    if !rebuild.status.success() {
        eprintln!("{}", rebuild.stderr);
    }
    report.check(
        "registrar rebuild exits 0",
        rebuild.status.success(),
        format!("{}", rebuild.status),
    );
    let rate = events as f64 / rebuild.wall.as_secs_f64();
    let row = report.rate(
        &format!("rebuild ({} events)", thousands(events as f64)),
        rate,
        "events/s",
    );
    row.floor = Some(read_floor);
    row.ratio = Some(rate / read_floor);
    row.target = format!(
        ">= {} and >= {REBUILD_VS_FLOOR}x read floor",
        thousands(REBUILD_TARGET)
    );
    row.pass = Some(
        rebuild.status.success() && rate >= REBUILD_TARGET && rate >= REBUILD_VS_FLOOR * read_floor,
    );
    let store = registrar::config::default_projections_path(&db);
    for (name, path) in [
        ("log file after rebuild", &db),
        ("projection store after rebuild", &store),
    ] {
        let mb = std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1e6);
        let row = report.text(name, format!("{mb:.0} MB"));
        row.number = Some(mb);
        row.unit = "MB";
    }
    let peak_mb = rebuild.peak_kib as f64 * 1024.0 / 1e6;
    let row = report.text("rebuild peak memory (VmHWM)", format!("{peak_mb:.1} MB"));
    row.number = Some(peak_mb);
    row.unit = "MB";
    row.target = format!("< {REBUILD_PEAK_MB} MB");
    row.pass = Some(peak_mb < REBUILD_PEAK_MB);
    done(t, report);

    let t = phase("registrar verify");
    let v = verify(&db)?;
    eprintln!("   {}", v.stdout.trim());
    report.check(
        "registrar verify on the large log",
        v.status.success(),
        verify_summary(&v),
    );
    let rate = events as f64 / v.wall.as_secs_f64();
    let row = report.rate(
        &format!("verify ({} events)", thousands(events as f64)),
        rate,
        "events/s",
    );
    row.target = format!(">= {}", thousands(VERIFY_TARGET));
    row.pass = Some(v.status.success() && rate >= VERIFY_TARGET);
    done(t, report);

    let per_route = reads(args);
    let t = phase(&format!(
        "reads ({per_route} per route, {} clients)",
        args.c
    ));
    anyhow::ensure!(!large.students.is_empty(), "no student was registered");
    // The student routes at random students; the proofs (issue 19) at
    // random seqs, against the checkpoint at the log's head.
    // The bundle has no target of its own (issue 19: "beside the floor").
    let routes: [(&str, &PathOf, Targeted); 5] = [
        (
            "GET /v1/students/{id}",
            &|rng| format!("/v1/students/{}", rng.pick(&large.students)),
            Targeted::Yes,
        ),
        (
            "GET /v1/students/{id}/history",
            &|rng| format!("/v1/students/{}/history", rng.pick(&large.students)),
            Targeted::Yes,
        ),
        (
            "GET /v1/students/{id}/payments",
            &|rng| format!("/v1/students/{}/payments", rng.pick(&large.students)),
            Targeted::Yes,
        ),
        (
            "GET /v1/log/proof/inclusion",
            &|rng| {
                format!(
                    "/v1/log/proof/inclusion?seq={}&tree_size={events}",
                    1 + rng.below(events)
                )
            },
            Targeted::Yes,
        ),
        (
            "GET /v1/events/{seq}/bundle",
            &|rng| format!("/v1/events/{}/bundle", 1 + rng.below(events)),
            Targeted::No,
        ),
    ];
    let mut rng = Rng::new(42);
    let route_reqs: Vec<(&str, Arc<Vec<Req>>, Targeted)> = routes
        .iter()
        .map(|(name, path, targeted)| {
            let reqs = (0..per_route)
                .map(|_| Req {
                    body: None,
                    path: path(&mut rng),
                    signature: None,
                })
                .collect();
            (*name, Arc::new(reqs), *targeted)
        })
        .collect();
    // The GET floor: the first route's requests, answered 200 at once.
    let mut floor_server = Server::floor(&dir.join("get-floor-server.log"))?;
    let (get_floor, floor_cpu) = runtime.block_on(async {
        floor_server.ready(client).await?;
        let before = floor_server.cpu_seconds()?;
        let run = load::run(
            client,
            &floor_server.base,
            Arc::clone(&route_reqs[0].1),
            args.c,
            false,
            Some(READS_DEADLINE),
        )
        .await;
        Ok::<_, anyhow::Error>((run, floor_server.cpu_seconds()? - before))
    })?;
    drop(floor_server);
    let get_floor_lat = get_floor.latency_ms();
    let get_floor_rps = get_floor.sent().count() as f64 / get_floor.elapsed.as_secs_f64();
    let floor_cpu_us = floor_cpu * 1e6 / get_floor.sent().count().max(1) as f64;
    eprintln!(
        "   HTTP floor, GET: {} req/s, p50 {:.2} ms, p99 {:.2} ms, {floor_cpu_us:.1} µs of server CPU each",
        thousands(get_floor_rps),
        get_floor_lat.p50,
        get_floor_lat.p99
    );
    report.rate("HTTP floor, GET (200 at once)", get_floor_rps, "req/s");
    report.ms("HTTP floor, GET latency p99", get_floor_lat.p99);
    let mut server = Server::registrar_with(
        &db,
        &dir.join("reads-server.log"),
        &["--log-origin", storage::LOG_ORIGIN],
    )?;
    let runs: Vec<(&str, LoadRun, f64, Targeted)> = runtime.block_on(async {
        server.ready(client).await?;
        let mut runs = Vec::new();
        for (name, reqs, targeted) in &route_reqs {
            // One request first, to show what the route answers.
            let sample = client
                .get(format!("{}{}", server.base, reqs[0].path))
                .send()
                .await?;
            let status = sample.status();
            let text = sample.text().await.unwrap_or_default();
            let shown: String = text.chars().take(160).collect();
            eprintln!("   {name}: {status} {shown}");
            let cpu_before = server.cpu_seconds()?;
            let run = load::run(
                client,
                &server.base,
                Arc::clone(reqs),
                args.c,
                false,
                Some(READS_DEADLINE),
            )
            .await;
            let cpu = server.cpu_seconds()? - cpu_before;
            runs.push((*name, run, cpu, *targeted));
        }
        Ok::<_, anyhow::Error>(runs)
    })?;
    let stopped = server.stop()?;
    if !stopped.success() {
        eprintln!("   the reads server exited with {stopped}");
    }
    for (name, run, cpu, targeted) in runs {
        let lat = run.latency_ms();
        let statuses = run.status_counts();
        let all_200 = statuses.iter().all(|(s, _)| *s == 200);
        let answered = run.sent().count();
        let rps = answered as f64 / run.elapsed.as_secs_f64();
        let cpu_us = cpu * 1e6 / answered.max(1) as f64;
        eprintln!(
            "   {name}: {answered} of {} requests in {:.1} s, {} req/s, p50 {:.2} ms, p99 {:.2} ms, {cpu_us:.1} µs of server CPU each, statuses {statuses:?}",
            run.answers.len(),
            run.elapsed.as_secs_f64(),
            thousands(rps),
            lat.p50,
            lat.p99
        );
        let status_note = if all_200 {
            String::new()
        } else {
            format!(
                " [HTTP {}]",
                statuses
                    .iter()
                    .map(|(s, c)| format!("{s}: {c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let row = report.rate(&format!("{name} throughput{status_note}"), rps, "req/s");
        row.floor = Some(get_floor_rps);
        row.ratio = Some(rps / get_floor_rps);
        if targeted == Targeted::Yes {
            row.target = format!(">= {READ_VS_FLOOR}x the GET floor");
            row.pass = Some(rps >= READ_VS_FLOOR * get_floor_rps);
        }
        let row = report.text(
            &format!("{name} server CPU per request"),
            format!("{cpu_us:.1} µs"),
        );
        row.number = Some(cpu_us);
        row.unit = "µs";
        row.floor = Some(floor_cpu_us);
        row.ratio = Some(cpu_us / floor_cpu_us);
        report.ms(&format!("{name} p50{status_note}"), lat.p50);
        let row = report.ms(&format!("{name} p99{status_note}"), lat.p99);
        row.floor = Some(get_floor_lat.p99);
        row.ratio = Some(lat.p99 / get_floor_lat.p99);
        match targeted {
            Targeted::Yes => {
                row.target = format!("<= {READ_P99_VS_FLOOR}x the GET floor's, all 200");
                row.pass = Some(all_200 && lat.p99 <= READ_P99_VS_FLOOR * get_floor_lat.p99);
            }
            Targeted::No => {
                row.target = "all 200 (beside the floor)".into();
                row.pass = Some(all_200);
            }
        }
    }
    done(t, report);
    finance_part(report, dir, &db)?;
    backup_part(args, report, dir, runtime, client, &db)
}

/// Issue 18: `registrar backup` of the large log while the server ingests:
/// the backup's time, and the ingest p99 during it beside the p99 of the
/// same load just before it. New deliveries are sent in chunks until the
/// backup exits.
fn backup_part(
    args: &Args,
    report: &mut Report,
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    db: &Path,
) -> Result<()> {
    let t = phase("registrar backup of the large log under ingest");
    let mut gen = Generator::new(GenConfig {
        seed: 0xbac_c0de,
        students: 20_000,
        learners: 10_000,
        late: 0.0,
    });
    let toolzz_path = format!("/webhooks/toolzz/{}", process::TOOLZZ_TOKEN);
    let mut chunk = move || -> Arc<Vec<Req>> {
        Arc::new(
            (0..BACKUP_LOAD_CHUNK)
                .map(|_| {
                    let d = gen.next_delivery();
                    match d.source {
                        Source::Jodo => Req {
                            signature: Some(jodo::sign(process::JODO_SECRET.as_bytes(), &d.body)),
                            body: Some(Bytes::from(d.body)),
                            path: "/webhooks/jodo".into(),
                        },
                        Source::Toolzz => Req {
                            body: Some(Bytes::from(d.body)),
                            path: toolzz_path.clone(),
                            signature: None,
                        },
                    }
                })
                .collect(),
        )
    };
    let dest = dir.join("large-backup.db");
    let mut server = Server::registrar_with(
        db,
        &dir.join("backup-server.log"),
        &["--log-origin", storage::LOG_ORIGIN],
    )?;
    let (alone, during, backup, all_ok) = runtime.block_on(async {
        server.ready(client).await?;
        let mut all_ok = true;
        let mut alone = Vec::new();
        for _ in 0..BACKUP_ALONE_CHUNKS {
            let run = load::run(client, &server.base, chunk(), args.c, true, None).await;
            all_ok &= run.count(200) == BACKUP_LOAD_CHUNK;
            alone.extend(run.sent().map(|a| a.latency_us));
        }
        let mut cmd = process::registrar();
        cmd.arg("backup").arg("--db").arg(db).arg(&dest);
        let backup = std::thread::spawn(move || process::run_measured(cmd));
        let mut during = Vec::new();
        while !backup.is_finished() {
            let run = load::run(client, &server.base, chunk(), args.c, true, None).await;
            all_ok &= run.count(200) == BACKUP_LOAD_CHUNK;
            during.extend(run.sent().map(|a| a.latency_us));
        }
        let backup = backup
            .join()
            .map_err(|_| anyhow::anyhow!("the backup's thread panicked"))??;
        Ok::<_, anyhow::Error>((alone, during, backup, all_ok))
    })?;
    let stopped = server.stop()?;
    let out = backup.stdout.trim().to_string();
    eprintln!(
        "   {out} in {:.1} s; {} deliveries alone, {} during the backup",
        backup.wall.as_secs_f64(),
        alone.len(),
        during.len()
    );
    if !backup.status.success() {
        eprintln!("{}", backup.stderr);
    }
    let ok = backup.status.success() && out.starts_with("ok: backup of");
    report.check(
        "registrar backup under ingest: copied and verified",
        ok,
        out.split(", head").next().unwrap_or(&out).to_string(),
    );
    let row = report.text(
        "backup of the large log under ingest (wall)",
        format!("{:.1} s", backup.wall.as_secs_f64()),
    );
    row.number = Some(backup.wall.as_secs_f64());
    row.unit = "s";
    let (mut alone, mut during) = (alone, during);
    let alone = load::Latency::of(&mut alone).p99;
    let during_p99 = load::Latency::of(&mut during).p99;
    let row = report.ms("ingest p99 during the backup", during_p99);
    row.floor = Some(alone);
    row.ratio = Some(during_p99 / alone);
    row.target = format!("<= {BACKUP_P99_RATIO}x the same load before it");
    row.pass = Some(!during.is_empty() && during_p99 <= BACKUP_P99_RATIO * alone);
    report.check(
        "every delivery answered 200 around the backup; server stopped cleanly",
        all_ok && stopped.success(),
        format!("{stopped}"),
    );
    done(t, report);
    Ok(())
}

/// The finance reports on the large database (issue 9): a year's day book
/// and the same year's payment register as CSV, from the command line, each
/// beside a floor: a bare SELECT of the same payment rows.
fn finance_part(report: &mut Report, dir: &Path, db: &Path) -> Result<()> {
    let t = phase(&format!("finance reports ({FINANCE_FROM} to {FINANCE_TO})"));
    let store = registrar::config::default_projections_path(db);
    let (floor_rows, floor) = storage::payments_floor(&store, FINANCE_FROM, FINANCE_TO)?;
    let floor_rate = floor_rows as f64 / floor.as_secs_f64();
    eprintln!(
        "   floor: {floor_rows} payment rows in {:.0} ms",
        floor.as_secs_f64() * 1e3
    );
    report.rate(
        "payments floor (bare SELECT of the year)",
        floor_rate,
        "rows/s",
    );
    for (name, format) in [("day-book", "json"), ("payments", "csv")] {
        let out = dir.join(format!("{name}.{format}"));
        let mut cmd = process::registrar();
        cmd.args(["report", name, "--from", FINANCE_FROM, "--to", FINANCE_TO])
            .args(["--format", format, "--db"])
            .arg(db)
            .arg("--out")
            .arg(&out);
        let m = process::run_measured(cmd)?;
        if !m.status.success() {
            eprintln!("   {name}: {}{}", m.stdout, m.stderr);
        }
        let ms = m.wall.as_secs_f64() * 1e3;
        let peak_mb = m.peak_kib as f64 * 1024.0 / 1e6;
        let bytes = std::fs::metadata(&out).map_or(0, |m| m.len());
        eprintln!("   {name} ({format}): {ms:.0} ms, peak {peak_mb:.1} MB, {bytes} bytes");
        if name == "day-book" {
            let row = report.ms("a year's day book (CLI, JSON)", ms);
            row.target = format!("< {DAY_BOOK_MS} ms");
            row.pass = Some(m.status.success() && ms < DAY_BOOK_MS);
        } else {
            let rows = std::fs::read(&out)
                .map(|b| b.iter().filter(|c| **c == b'\n').count().saturating_sub(1))
                .unwrap_or(0);
            let rate = rows as f64 / m.wall.as_secs_f64();
            let row = report.rate("the year's payment register as CSV (CLI)", rate, "rows/s");
            row.floor = Some(floor_rate);
            row.ratio = Some(rate / floor_rate);
            row.target = format!(">= {REGISTER_VS_FLOOR}x the floor");
            row.pass = Some(m.status.success() && rate >= REGISTER_VS_FLOOR * floor_rate);
        }
        let row = report.text(
            &format!("{name} report peak memory"),
            format!("{peak_mb:.1} MB"),
        );
        row.number = Some(peak_mb);
        row.unit = "MB";
    }
    done(t, report);
    Ok(())
}

/// Prints the body sizes of the generated deliveries.
fn describe_sizes(distinct: &[generate::Delivery]) {
    let sizes: Vec<usize> = distinct.iter().map(|d| d.body.len()).collect();
    let total: usize = sizes.iter().sum();
    let min = sizes.iter().min().copied().unwrap_or(0);
    let max = sizes.iter().max().copied().unwrap_or(0);
    let jodo = distinct.iter().filter(|d| d.source == Source::Jodo).count();
    eprintln!(
        "   {} distinct deliveries ({jodo} Jodo), bodies {min}-{max} bytes, mean {:.0}",
        distinct.len(),
        total as f64 / sizes.len().max(1) as f64
    );
    let mut kinds: std::collections::BTreeMap<String, (usize, usize, usize, usize)> =
        Default::default();
    let ctx = registrar::sources::ParseContext::default();
    for d in distinct.iter().take(20_000) {
        if let Ok(registrar::sources::Parsed::Delivery(p)) =
            registrar::sources::parse(d.source, &d.body, &ctx)
        {
            let e = kinds.entry(p.event_type).or_insert((0, usize::MAX, 0, 0));
            e.0 += 1;
            e.1 = e.1.min(d.body.len());
            e.2 = e.2.max(d.body.len());
            e.3 += d.body.len();
        }
    }
    for (k, (n, lo, hi, sum)) in kinds {
        eprintln!(
            "     {k:<32} {n:>6}  {lo:>5}-{hi:>5} bytes, mean {}",
            sum / n
        );
    }
}

fn write_json(args: &Args, report: &Report, seconds: f64) -> Result<()> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target)?;
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    // Whether src/ (or anything else) differed from that commit when built.
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty());
    let doc = serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "sqlite_version": registrar::db::sqlite_version(),
        "commit": commit,
        "worktree_dirty": dirty,
        "finished_at": chrono::Utc::now().to_rfc3339(),
        "quick": args.quick,
        "n": n(args),
        "c": args.c,
        "log_events": log_events(args),
        "reads_per_route": reads(args),
        "max_batch": config::DEFAULT_MAX_BATCH,
        "seconds": seconds,
        "correctness_failed": report.correctness_failed(),
        "rows": report.json(),
        "other_processes_cores": report.background_json(),
    });
    let path = target.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
