//! Rebuilding every projection from the log.
//!
//! A rebuild fills shadow tables (`next_*`) in chunks of [`REBUILD_CHUNK`]
//! events, one transaction each, streaming the log so memory stays flat. The
//! live tables keep serving reads, and the writer keeps appending (and
//! projecting into the live tables) between chunks. The chunk that reaches the
//! log's head also swaps the shadow tables in, in the same transaction: a
//! reader sees the old state or the new, never a mix, and no event is missed.

use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::Serialize;

use super::{live_version, ProjectionError, Projector, PROJECTION_VERSION, SHADOW_PREFIX, TABLES};
use crate::event::Source;
use crate::sources::{self, ParseContext, Parsed};

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
    cursor: u64,
    skipped: u64,
    started: Instant,
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
        shadow.create_tables(&tx, generation)?;
        tx.commit()?;
        Ok(Rebuild {
            shadow,
            ctx,
            cursor: 0,
            skipped: 0,
            started: Instant::now(),
        })
    }

    /// Projects up to `limit` more events into the shadow tables, in one
    /// transaction; when that reaches the head of the log, swaps them in.
    pub fn step(&mut self, conn: &mut Connection, limit: u64) -> Result<Step, ProjectionError> {
        let tx = conn.transaction()?;
        let (done, skipped) = replay(&tx, &self.shadow, &self.ctx, self.cursor, limit)?;
        self.cursor += done;
        self.skipped += skipped;
        if done == limit {
            tx.commit()?;
            return Ok(Step::Continue {
                cursor: self.cursor,
            });
        }
        // Caught up with the head inside this transaction: nothing can be
        // appended before the swap commits, because this is the only writer.
        swap(&tx)?;
        tx.commit()?;
        let seconds = self.started.elapsed().as_secs_f64();
        Ok(Step::Done(RebuildReport {
            events: self.cursor,
            skipped: self.skipped,
            last_seq: self.cursor,
            seconds,
            events_per_second: if seconds > 0.0 {
                self.cursor as f64 / seconds
            } else {
                0.0
            },
        }))
    }

    /// Events projected so far.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }
}

/// Replays the events after `after`, at most `limit`, into `projector`.
/// Returns how many were replayed and how many of those were passed over.
fn replay(
    conn: &Connection,
    projector: &Projector,
    ctx: &ParseContext,
    after: u64,
    limit: u64,
) -> Result<(u64, u64), ProjectionError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, source, occurred_at, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = stmt.query((after as i64, limit as i64))?;
    let (mut done, mut skipped) = (0u64, 0u64);
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
        let parsed = source
            .ok_or_else(|| "unknown source".to_string())
            .and_then(|s| sources::parse(s, body, ctx).map_err(|e| e.to_string()));
        match parsed {
            Ok(Parsed::Delivery(d)) => projector.apply_event(conn, seq, occurred_at, &d.event)?,
            Ok(Parsed::Ping) | Err(_) => {
                // Accepted once, but no longer parses (a parser got stricter).
                // Passed over and counted, so one event cannot block every rebuild.
                tracing::warn!(
                    seq,
                    "event no longer parses; passed over by the projections"
                );
                skipped += 1;
            }
        }
        done += 1;
    }
    if done > 0 {
        projector.advance_range(conn, after + 1, after + done, skipped)?;
    }
    Ok((done, skipped))
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
                let (done, _) = replay(&tx, &live, &ctx, last, REBUILD_CHUNK)?;
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
