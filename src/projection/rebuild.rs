//! Rebuilding every projection from the log.
//!
//! A rebuild fills shadow tables (`next_*`) in two passes, streaming so memory
//! stays flat:
//! 1. load: every event of the log appends its history row (the history
//!    tables are not indexed yet, so these are rowid appends);
//! 2. fold: the history tables are indexed in one sort, then each entity's
//!    history is read in (provider time, seq) order and folded once into its
//!    current row, written in key order; then the read indexes are built.
//!
//! Then events appended meanwhile are applied one by one (the incremental
//! path), and the chunk that reaches the log's head swaps the shadow tables
//! in, in the same transaction: a reader sees the old state or the new, never
//! a mix, and no event is missed. Every phase runs in chunks of about
//! [`REBUILD_CHUNK`] events, one transaction each; the live tables keep
//! serving reads, and the writer keeps appending between chunks.
//!
//! The fold is the same `step` the incremental path uses, over the same
//! sorted history, so a rebuild equals an incremental build by construction
//! (and the property test checks it).

use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;

use super::{
    live_version, ProjectionError, Projector, FOLD_KINDS, PROJECTION_VERSION, SHADOW_PREFIX, TABLES,
};
use crate::event::{Event, Source};
use crate::sources::{self, ParseContext, Parsed};

/// WAL pages between checkpoints during an offline rebuild (`registrar
/// rebuild`): 16,384 pages of 4 KiB, 64 MiB. Unbounded, the WAL would grow to
/// the size of the rebuilt projections and slow every page lookup.
pub const REBUILD_WAL_PAGES: i64 = 16_384;

/// Events per rebuild transaction. Bounds how long the writer is away from
/// ingest (a chunk takes tens of milliseconds) and how much one transaction
/// holds.
pub const REBUILD_CHUNK: u64 = 20_000;

/// What a finished rebuild did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebuildReport {
    /// Events replayed (projected or passed over).
    pub events: u64,
    /// Events passed over because they no longer parse (logged by seq).
    pub skipped: u64,
    /// The log's seq the new projections hold.
    pub last_seq: u64,
    pub seconds: f64,
    pub events_per_second: f64,
}

/// A rebuild under way.
#[derive(Debug)]
pub struct Rebuild {
    shadow: Projector,
    ctx: ParseContext,
    generation: i64,
    phase: Phase,
    /// Events loaded or applied into the shadow tables so far.
    cursor: u64,
    skipped: u64,
    started: Instant,
}

/// Where a rebuild is. Every phase runs in chunks, one transaction each, so
/// the writer can serve ingest in between.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Stream the log into the shadow history tables only (unindexed: rowid
    /// appends, no lookups).
    Load,
    /// Fold each entity's sorted history into its current row, kind by kind,
    /// resuming after entity `after`. Starts by indexing the history tables.
    Fold { kind: usize, after: Option<String> },
    /// Apply what arrived since the load, event by event, then swap.
    CatchUp,
}

/// The result of one chunk.
#[derive(Debug)]
pub enum Step {
    /// More to do; the shadow tables hold events up to this seq.
    Continue { cursor: u64 },
    /// Swapped in.
    Done(RebuildReport),
}

impl Rebuild {
    /// Drops any shadow tables a crashed rebuild left, and creates fresh ones.
    pub fn start(conn: &mut Connection, ctx: ParseContext) -> Result<Rebuild, ProjectionError> {
        let shadow = Projector::shadow();
        let generation = live_version(conn)?.map(|(_, g)| g + 1).unwrap_or(0);
        let tx = conn.transaction()?;
        shadow.drop_tables(&tx)?;
        shadow.create_tables_without_indexes(&tx, generation)?;
        tx.commit()?;
        Ok(Rebuild {
            shadow,
            ctx,
            generation,
            phase: Phase::Load,
            cursor: 0,
            skipped: 0,
            started: Instant::now(),
        })
    }

    /// Does up to about `limit` events' worth of work in one transaction;
    /// the chunk that catches up with the head of the log swaps the shadow
    /// tables in.
    pub fn step(&mut self, conn: &mut Connection, limit: u64) -> Result<Step, ProjectionError> {
        // The shadow tables are derived data: their chunks need not wait for
        // fsync. In WAL mode, NORMAL keeps the database consistent across a
        // crash (only the latest chunks can be lost, and the rebuild is then
        // redone). Every other transaction on this connection, the log's
        // appends above all, stays FULL: restored whatever the chunk did.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let started = Instant::now();
        let phase = format!("{:?}", self.phase);
        let result = self.step_inner(conn, limit);
        tracing::debug!(
            phase,
            cursor = self.cursor,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "rebuild chunk"
        );
        conn.pragma_update(None, "synchronous", "FULL")?;
        result
    }

    fn step_inner(&mut self, conn: &mut Connection, limit: u64) -> Result<Step, ProjectionError> {
        // Immediate: take the write lock before reading the log, so the chunk
        // that finds itself caught up really is (another process, such as the
        // CLI beside a running server, cannot append in between).
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        match self.phase.clone() {
            Phase::Load => {
                let (done, skipped) = replay(
                    &tx,
                    &self.shadow,
                    &self.ctx,
                    self.cursor,
                    limit,
                    Replay::Load,
                )?;
                self.cursor += done;
                self.skipped += skipped;
                if done < limit {
                    self.shadow.create_history_indexes(&tx, self.generation)?;
                    self.phase = Phase::Fold {
                        kind: 0,
                        after: None,
                    };
                }
            }
            Phase::Fold { kind, after } => {
                let (last, _) = self.shadow.fold_chunk(&tx, kind, after.as_deref(), limit)?;
                self.phase = match last {
                    Some(after) => Phase::Fold {
                        kind,
                        after: Some(after),
                    },
                    None if kind + 1 < FOLD_KINDS => Phase::Fold {
                        kind: kind + 1,
                        after: None,
                    },
                    None => {
                        self.shadow.create_read_indexes(&tx, self.generation)?;
                        Phase::CatchUp
                    }
                };
            }
            Phase::CatchUp => {
                let (done, skipped) = replay(
                    &tx,
                    &self.shadow,
                    &self.ctx,
                    self.cursor,
                    limit,
                    Replay::Apply,
                )?;
                self.cursor += done;
                self.skipped += skipped;
                if done == limit {
                    tx.commit()?;
                    return Ok(Step::Continue {
                        cursor: self.cursor,
                    });
                }
                // Caught up with the head inside this transaction, which holds
                // the write lock: nothing can be appended before the swap commits.
                swap(&tx)?;
                tx.commit()?;
                let seconds = self.started.elapsed().as_secs_f64();
                return Ok(Step::Done(RebuildReport {
                    events: self.cursor,
                    skipped: self.skipped,
                    last_seq: self.cursor,
                    seconds,
                    events_per_second: if seconds > 0.0 {
                        self.cursor as f64 / seconds
                    } else {
                        0.0
                    },
                }));
            }
        }
        tx.commit()?;
        Ok(Step::Continue {
            cursor: self.cursor,
        })
    }

    /// Events projected so far.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }
}

/// What a replay does with each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// History rows only (a rebuild's load pass).
    Load,
    /// History and current rows (catch-up, and making live tables current).
    Apply,
}

/// Events a reader sends the writer at once, and batches in flight at most:
/// bounds the memory of the pipeline (a few MiB).
const PIPELINE_BATCH: usize = 512;
const PIPELINE_DEPTH: usize = 8;

/// One event read back and parsed (`None`: no longer parses).
struct Replayed {
    seq: u64,
    occurred_at: i64,
    event: Option<Event>,
}

/// Replays the events after `after`, at most `limit`, into `projector`.
/// Returns how many were replayed and how many of those were passed over.
///
/// Reading and parsing the log runs on a second thread with its own
/// read-only connection, so it overlaps the writes. Its snapshot starts after
/// the caller's transaction took the write lock, so it sees every committed
/// event and nothing can be appended meanwhile.
fn replay(
    conn: &Connection,
    projector: &Projector,
    ctx: &ParseContext,
    after: u64,
    limit: u64,
    mode: Replay,
) -> Result<(u64, u64), ProjectionError> {
    let path = conn
        .path()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from);
    let (done, skipped) = match path {
        // An in-memory database has no second connection: read inline.
        None => {
            let mut batches = Vec::new();
            read_events(conn, ctx, after, limit, |batch| {
                batches.push(batch);
                true
            })?;
            apply_batches(conn, projector, after, batches, mode)?
        }
        Some(path) => {
            let ctx = *ctx;
            std::thread::scope(|scope| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Replayed>>(PIPELINE_DEPTH);
                let reader = scope.spawn(move || -> Result<(), ProjectionError> {
                    let rconn = crate::db::open_ro(&path)?;
                    read_events(&rconn, &ctx, after, limit, |batch| tx.send(batch).is_ok())
                });
                let applied = apply_batches(conn, projector, after, rx.iter(), mode);
                drop(rx); // stops the reader if applying failed
                let read = reader
                    .join()
                    .map_err(|_| ProjectionError::Invariant("the log reader panicked".into()))?;
                let applied = applied?;
                read?;
                Ok::<_, ProjectionError>(applied)
            })?
        }
    };
    if done > 0 {
        projector.advance_range(conn, after + 1, after + done, skipped)?;
    }
    Ok((done, skipped))
}

/// Streams events after `after` (at most `limit`), parsed, in batches to
/// `send`, which answers false to stop early.
fn read_events(
    conn: &Connection,
    ctx: &ParseContext,
    after: u64,
    limit: u64,
    mut send: impl FnMut(Vec<Replayed>) -> bool,
) -> Result<(), ProjectionError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, source, occurred_at, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = stmt.query((after as i64, limit as i64))?;
    let mut batch = Vec::with_capacity(PIPELINE_BATCH);
    let mut expected = after + 1;
    while let Some(r) = rows.next()? {
        let seq = r.get::<_, i64>(0)? as u64;
        // The log is gapless; a hole here means it was tampered with.
        if seq != expected {
            return Err(ProjectionError::Invariant(format!(
                "the log has seq {seq} where {expected} was expected"
            )));
        }
        expected += 1;
        let source = Source::parse(r.get_ref(1)?.as_str().unwrap_or_default());
        let occurred_at: i64 = r.get(2)?;
        let body = r.get_ref(3)?.as_blob().unwrap_or_default();
        let event = match source.map(|s| sources::parse(s, body, ctx)) {
            Some(Ok(Parsed::Delivery(d))) => Some(d.event),
            _ => None,
        };
        batch.push(Replayed {
            seq,
            occurred_at,
            event,
        });
        if batch.len() == PIPELINE_BATCH
            && !send(std::mem::replace(
                &mut batch,
                Vec::with_capacity(PIPELINE_BATCH),
            ))
        {
            return Ok(());
        }
    }
    if !batch.is_empty() {
        send(batch);
    }
    Ok(())
}

/// Applies batches of replayed events following seq `after`, in order.
/// Returns how many were applied and how many of those were passed over.
fn apply_batches(
    conn: &Connection,
    projector: &Projector,
    after: u64,
    batches: impl IntoIterator<Item = Vec<Replayed>>,
    mode: Replay,
) -> Result<(u64, u64), ProjectionError> {
    let (mut done, mut skipped) = (0u64, 0u64);
    for batch in batches {
        let n = batch.len() as u64;
        skipped += apply_batch(conn, projector, after + done, batch, mode)?;
        done += n;
    }
    Ok((done, skipped))
}

/// Applies a batch following seq `after`; returns how many were passed over.
fn apply_batch(
    conn: &Connection,
    projector: &Projector,
    after: u64,
    batch: Vec<Replayed>,
    mode: Replay,
) -> Result<u64, ProjectionError> {
    let mut skipped = 0;
    for (i, r) in batch.into_iter().enumerate() {
        // Batches arrive in order and whole: assert it where it is consumed.
        debug_assert_eq!(r.seq, after + 1 + i as u64);
        match r.event {
            Some(event) => match mode {
                Replay::Load => projector.load_event(conn, r.seq, r.occurred_at, &event)?,
                Replay::Apply => projector.apply_event(conn, r.seq, r.occurred_at, &event)?,
            },
            None => {
                // Accepted once, but no longer parses (a parser got stricter).
                // Passed over and counted, so one event cannot block every rebuild.
                tracing::warn!(
                    seq = r.seq,
                    "event no longer parses; passed over by the projections"
                );
                skipped += 1;
            }
        }
    }
    Ok(skipped)
}

/// Replaces the live tables with the shadow tables.
fn swap(conn: &Connection) -> rusqlite::Result<()> {
    for t in TABLES.iter().rev() {
        conn.execute_batch(&format!("DROP TABLE IF EXISTS {t}"))?;
    }
    for t in TABLES {
        conn.execute_batch(&format!("ALTER TABLE {SHADOW_PREFIX}{t} RENAME TO {t}"))?;
    }
    Ok(())
}

/// Rebuilds everything now, calling `progress(done, head)` after each chunk.
pub fn rebuild_all(
    conn: &mut Connection,
    ctx: ParseContext,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildReport, ProjectionError> {
    let head = crate::log::head(conn)?.seq;
    let mut job = Rebuild::start(conn, ctx)?;
    loop {
        match job.step(conn, REBUILD_CHUNK)? {
            Step::Continue { cursor } => progress(cursor, head.max(cursor)),
            Step::Done(report) => {
                progress(report.events, report.events);
                return Ok(report);
            }
        }
    }
}

/// Makes the live projections current at start: creates and fills them when
/// missing or built by another [`PROJECTION_VERSION`], and replays any events
/// they lack. Returns the rebuild report when a rebuild ran.
pub fn ensure(
    conn: &mut Connection,
    ctx: ParseContext,
) -> Result<Option<RebuildReport>, ProjectionError> {
    match live_version(conn)? {
        Some((version, _)) if version == PROJECTION_VERSION => {
            let live = Projector::live();
            loop {
                let tx = conn.transaction()?;
                let last = live.last_seq(&tx)?;
                let (done, _) = replay(&tx, &live, &ctx, last, REBUILD_CHUNK, Replay::Apply)?;
                tx.commit()?;
                if done < REBUILD_CHUNK {
                    return Ok(None);
                }
            }
        }
        _ => rebuild_all(conn, ctx, |_, _| {}).map(Some),
    }
}

/// How long ago a report's rebuild started, for logs.
pub fn took(report: &RebuildReport) -> Duration {
    Duration::from_secs_f64(report.seconds)
}
