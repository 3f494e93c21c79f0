//! The storage and read floors, the large log, and the ingest run's check.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use registrar::db;
use registrar::event::Source;
use registrar::log::checkpoints::Maker;
use registrar::log::note::SigningKey;
use registrar::log::{self, AppendOutcome, NewEntry};
use registrar::sources::{self, ParseContext, Parsed};

use super::generate::{Delivery, GenConfig, Generator};
use super::load::LoadRun;

const BARE_TABLE: &str = "CREATE TABLE bare (seq INTEGER PRIMARY KEY, source TEXT NOT NULL, key TEXT NOT NULL, body BLOB NOT NULL)";
const BARE_INSERT: &str = "INSERT INTO bare (seq, source, key, body) VALUES (?1, ?2, ?3, ?4)";

/// Inserts `sends` into a bare table with the log's pragmas (through
/// [`db::open_rw`]), `batch` rows per transaction. Returns events/s.
pub fn storage_floor(path: &Path, sends: &[&Delivery], batch: usize) -> Result<f64> {
    let mut conn = db::open_rw(path)?;
    conn.execute_batch(BARE_TABLE)?;
    let started = Instant::now();
    for (b, chunk) in sends.chunks(batch).enumerate() {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(BARE_INSERT)?;
            for (i, d) in chunk.iter().enumerate() {
                let seq = (b * batch + i + 1) as i64;
                stmt.execute((seq, d.source.as_str(), &d.key, &d.body))?;
            }
        }
        tx.commit()?;
    }
    Ok(sends.len() as f64 / started.elapsed().as_secs_f64())
}

/// The same, one transaction (one fsync) per event. Returns events/s.
pub fn per_event_commit(path: &Path, sends: &[&Delivery]) -> Result<f64> {
    let mut conn = db::open_rw(path)?;
    conn.execute_batch(BARE_TABLE)?;
    let started = Instant::now();
    for (i, d) in sends.iter().enumerate() {
        let tx = conn.transaction()?;
        tx.prepare_cached(BARE_INSERT)?.execute((
            (i + 1) as i64,
            d.source.as_str(),
            &d.key,
            &d.body,
        ))?;
        tx.commit()?;
    }
    Ok(sends.len() as f64 / started.elapsed().as_secs_f64())
}

/// One generated event, parsed, ready to append.
struct Prepared {
    source: Source,
    event_type: String,
    event_version: String,
    dedupe_key: String,
    subject: Option<String>,
    occurred_at: i64,
    body: Vec<u8>,
}

/// The large log, and what the reads need to know about it.
pub struct LargeLog {
    pub events: u64,
    pub seconds: f64,
    /// Students with a history, to read back.
    pub students: Vec<String>,
}

/// Events per transaction while generating the large log.
const GENERATE_TX: usize = 50_000;

/// Writes `n` events straight into a new log at `path` through the library
/// (`log::append` in transactions of [`GENERATE_TX`]), no projections and
/// no tree ([`build_tree`] adds it, timed apart). A second thread generates
/// and parses while this one appends.
pub fn generate_log(path: &Path, n: u64, cfg: GenConfig) -> Result<LargeLog> {
    let started = Instant::now();
    let mut conn = db::open_rw(path)?;
    db::migrate(&mut conn)?;
    // This connection only: a page cache that holds the indexes, so random
    // dedupe keys do not thrash it. The file is the same as the server's.
    conn.pragma_update(None, "cache_size", -1_048_576)?;
    let (tx_batches, rx_batches) = mpsc::sync_channel::<Vec<Prepared>>(4);
    let producer = std::thread::Builder::new().name("generator".into()).spawn(
        move || -> Result<Vec<String>> {
            let mut gen = Generator::new(cfg);
            let ctx = ParseContext::default();
            let mut left = n;
            while left > 0 {
                let take = left.min(5_000);
                left -= take;
                let mut batch = Vec::with_capacity(take as usize);
                for _ in 0..take {
                    let d = gen.next_delivery();
                    let parsed = match sources::parse(d.source, &d.body, &ctx) {
                        Ok(Parsed::Delivery(p)) => p,
                        Ok(Parsed::Ping) => anyhow::bail!("the generator produced a ping"),
                        Err(e) => anyhow::bail!(
                            "the generator produced an invalid body ({e}): {}",
                            String::from_utf8_lossy(&d.body)
                        ),
                    };
                    batch.push(Prepared {
                        source: d.source,
                        event_type: parsed.event_type,
                        event_version: parsed.event_version,
                        dedupe_key: parsed.dedupe_key,
                        subject: parsed.subject,
                        occurred_at: parsed.occurred_at,
                        body: d.body,
                    });
                }
                if tx_batches.send(batch).is_err() {
                    break;
                }
            }
            Ok(gen.registered_students())
        },
    )?;
    // received_at: a plausible arrival time per event, one millisecond apart.
    let mut received_at = 1_717_200_000_000_000i64;
    let mut in_tx = 0usize;
    let mut tx = conn.transaction()?;
    let mut tail = log::tail_without_tree(&tx)?;
    for batch in rx_batches {
        for p in batch {
            received_at += 1_000;
            let outcome = log::append(
                &tx,
                &mut tail,
                &NewEntry {
                    source: p.source.as_str(),
                    event_type: &p.event_type,
                    event_version: &p.event_version,
                    dedupe_key: &p.dedupe_key,
                    subject: p.subject.as_deref(),
                    occurred_at: p.occurred_at,
                    received_at,
                    body: &p.body,
                },
            )?;
            anyhow::ensure!(
                matches!(outcome, AppendOutcome::Appended { .. }),
                "generated event {} was not new: {outcome:?}",
                p.dedupe_key
            );
            in_tx += 1;
            if in_tx == GENERATE_TX {
                tx.commit()?;
                tx = conn.transaction()?;
                in_tx = 0;
            }
        }
    }
    tx.commit()?;
    let students = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the generator thread panicked"))??;
    let head = tail.head();
    anyhow::ensure!(head.seq == n, "the log holds {} events, not {n}", head.seq);
    Ok(LargeLog {
        events: n,
        seconds: started.elapsed().as_secs_f64(),
        students,
    })
}

/// The origin of the large log's checkpoint; its server is started with it.
pub const LOG_ORIGIN: &str = "registrar/bench";

/// What [`build_tree`] did.
pub struct TreeBuild {
    pub leaves: u64,
    pub took: Duration,
}

/// Builds the tree of a log made without one from scratch, through the
/// library's catch-up (`log::tail`: every leaf from the events, stored, in
/// one transaction: the writer's build at start does the same in steps),
/// then makes a signed checkpoint at the head, as a server would, for the
/// proofs to be served against. Only the build is timed.
pub fn build_tree(path: &Path) -> Result<TreeBuild> {
    let mut conn = db::open_rw(path)?;
    let tx = conn.transaction()?;
    anyhow::ensure!(
        log::tree::size(&tx)? == 0,
        "the large log already has a tree"
    );
    let started = Instant::now();
    let tail = log::tail(&tx)?;
    tx.commit()?;
    let took = started.elapsed();
    let leaves = tail.head().seq;
    let root = tail.root().context("log::tail keeps the tree")?;
    let key = SigningKey::from_seed(LOG_ORIGIN, &[7; 32])?;
    let maker = Maker {
        origin: LOG_ORIGIN.to_string(),
        signer: Some(Arc::new(key)),
        dir: None,
    };
    let tx = conn.transaction()?;
    let made = maker.make_if_moved(&tx, leaves, root, 1_717_200_000_000_000)?;
    tx.commit()?;
    anyhow::ensure!(made.checkpoint().signed, "the checkpoint is signed");
    Ok(TreeBuild { leaves, took })
}

/// The read floor: scans the log as rebuild reads it and parses every body,
/// projecting nothing. Returns (events, elapsed).
pub fn read_floor(path: &Path) -> Result<(u64, Duration)> {
    let conn = db::open_ro(path)?;
    let ctx = ParseContext::default();
    let started = Instant::now();
    let mut stmt =
        conn.prepare("SELECT seq, source, occurred_at, body FROM events ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut events = 0u64;
    let mut checksum = 0i64;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let source = Source::parse(r.get_ref(1)?.as_str()?).context("unknown source")?;
        let occurred_at: i64 = r.get(2)?;
        let body = r.get_ref(3)?.as_blob()?;
        let parsed = sources::parse(source, body, &ctx)
            .map_err(|e| anyhow::anyhow!("seq {seq} does not parse: {e}"))?;
        if let Parsed::Delivery(d) = parsed {
            checksum = checksum.wrapping_add(d.occurred_at ^ occurred_at);
        }
        events += 1;
    }
    std::hint::black_box(checksum);
    Ok((events, started.elapsed()))
}

/// What the check of the ingest run found.
#[derive(Debug, Default)]
pub struct IngestCheck {
    /// Distinct deliveries acknowledged (200 accepted or duplicate).
    pub acked_events: usize,
    pub log_rows: usize,
    /// Acknowledged deliveries missing from the log (or at another seq).
    pub lost: usize,
    /// Dedupe keys in the log more than once, or accepted more than once.
    pub duplicated: usize,
    /// Duplicate sends not answered "duplicate" with the original's seq.
    pub bad_duplicate_answers: usize,
    /// Log rows nobody was told about (no 200 for them).
    pub unacked_rows: usize,
    pub problems: Vec<String>,
}

impl IngestCheck {
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.bad_duplicate_answers == 0
    }
}

/// Compares the answers of the ingest run with the log at `path` (the server
/// stopped). `order` maps each send to its delivery in `distinct`.
pub fn check_ingest(
    path: &Path,
    distinct: &[Delivery],
    order: &[usize],
    run: &LoadRun,
) -> Result<IngestCheck> {
    let mut check = IngestCheck::default();
    let conn = db::open_ro(path)?;
    let mut in_log: HashMap<(String, String), Vec<u64>> = HashMap::new();
    let mut stmt = conn.prepare("SELECT seq, source, dedupe_key FROM events ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let seq = r.get::<_, i64>(0)? as u64;
        in_log.entry((r.get(1)?, r.get(2)?)).or_default().push(seq);
        check.log_rows += 1;
    }
    // Per delivery: the answers its sends got.
    let mut answers: Vec<Vec<(&str, Option<u64>)>> = vec![Vec::new(); distinct.len()];
    for (send, &d) in order.iter().enumerate() {
        if let Some(reply) = run.answers[send].as_ref().and_then(|a| a.reply.as_ref()) {
            answers[d].push((reply.status.as_str(), reply.seq));
        }
    }
    let mut acked_keys = 0usize;
    for (d, got) in distinct.iter().zip(&answers) {
        let key = (d.source.as_str().to_string(), d.key.clone());
        let logged = in_log.get(&key);
        if let Some(seqs) = logged {
            if seqs.len() > 1 {
                check.duplicated += 1;
                note(
                    &mut check,
                    format!("{} is in the log at seqs {seqs:?}", d.key),
                );
            }
        }
        if got.is_empty() {
            continue;
        }
        acked_keys += 1;
        let accepted: Vec<_> = got.iter().filter(|(s, _)| *s == "accepted").collect();
        if accepted.len() > 1 {
            check.duplicated += 1;
            note(
                &mut check,
                format!("{} was accepted {} times", d.key, accepted.len()),
            );
        }
        let seq = got[0].1;
        match (logged, seq) {
            (Some(seqs), Some(seq)) if seqs.first() == Some(&seq) => {}
            _ => {
                check.lost += 1;
                note(
                    &mut check,
                    format!("{} was answered {got:?} but the log has {logged:?}", d.key),
                );
            }
        }
        for (status, s) in got.iter() {
            if !matches!(*status, "accepted" | "duplicate") || *s != seq {
                check.bad_duplicate_answers += 1;
                note(&mut check, format!("{} was answered {got:?}", d.key));
                break;
            }
        }
        if accepted.is_empty() && got.len() == 1 {
            // Answered only "duplicate", yet sent as a new delivery once: the
            // other send failed after the commit. Not a loss; noted.
            note(
                &mut check,
                format!("{} was only ever answered duplicate", d.key),
            );
        }
    }
    check.acked_events = acked_keys;
    check.unacked_rows = check.log_rows.saturating_sub(acked_keys);
    Ok(check)
}

/// Keeps the first few problems for the report.
fn note(check: &mut IngestCheck, msg: String) {
    if check.problems.len() < 10 {
        check.problems.push(msg);
    }
}

/// The finance floor: a bare SELECT of the current payment rows whose
/// paid_at falls in [from, to] (business dates read as UTC days), reading
/// each document. Returns (rows, elapsed).
pub fn payments_floor(store: &Path, from: &str, to: &str) -> Result<(u64, Duration)> {
    let conn = registrar::projection::files::open_reader(store)?;
    let day = |d: &str, end: bool| -> Result<i64> {
        let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")?;
        let t = if end {
            date.and_hms_opt(23, 59, 59)
        } else {
            date.and_hms_opt(0, 0, 0)
        };
        Ok(t.context("a time of day")?.and_utc().timestamp())
    };
    let (from, to) = (day(from, false)?, day(to, true)?);
    let started = Instant::now();
    let mut stmt = conn.prepare("SELECT doc FROM payments WHERE paid_at BETWEEN ?1 AND ?2")?;
    let mut rows = stmt.query((from, to))?;
    let (mut n, mut bytes) = (0u64, 0usize);
    while let Some(r) = rows.next()? {
        bytes += r.get_ref(0)?.as_bytes()?.len();
        n += 1;
    }
    std::hint::black_box(bytes);
    Ok((n, started.elapsed()))
}
