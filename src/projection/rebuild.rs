//! Building a projection store from the log into a fresh file.
//!
//! A build writes a new file beside the live one, with no journal and no
//! fsync (a failed build is deleted, not recovered), in two passes that
//! stream so memory stays flat:
//! 1. load: every event up to the log's head at the start appends its history
//!    row (the history tables are not indexed yet, so these are rowid
//!    appends). Reading the log and parsing run on their own threads, the
//!    parsing on [`PARSERS`] of them, so a build uses both cores;
//! 2. fold: the history tables are indexed in one sort each, then each
//!    entity's history is read in (provider time, seq) order and folded once
//!    into its current row; then the read indexes are built.
//!
//! The file is then marked complete and handed to the projector, which
//! applies what arrived meanwhile and swaps it in (see [`super::projector`]);
//! or, offline ([`offline`]), put in place by the same choice a server makes
//! at start ([`files::open_store`]), the projector catching it up there.
//! The fold is the same `step` the incremental path uses, over the same
//! sorted history, so a rebuild equals an incremental build by construction
//! (and the property test checks it).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::files::{self, LockError};
use super::store::{self, Projectable};
use super::ProjectionError;
use crate::event::Event;
use crate::log::{LogReader, LoggedEvent};
use crate::sources::ParseContext;

/// Threads that parse during a build's load pass: the machine's two cores,
/// beside the thread that writes.
pub const PARSERS: usize = 2;
/// Events per batch passed between a build's threads.
const PIPELINE_BATCH: usize = 1_024;
/// Batches in flight per parser at most: bounds the pipeline's memory (a few
/// MiB of bodies).
const PIPELINE_DEPTH: usize = 2;

/// Logged events with their parsed domain events (`None`: no longer parses).
type ParsedBatch = Vec<(LoggedEvent, Option<Event>)>;

/// What a finished rebuild did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebuildReport {
    /// Events replayed (projected or passed over).
    pub events: u64,
    /// Events passed over because they no longer parse (logged by seq).
    pub skipped: u64,
    /// The log's seq the new projections hold when they went live.
    pub last_seq: u64,
    /// The build, from the first read of the log to the file marked complete.
    pub seconds: f64,
    pub events_per_second: f64,
    /// The load pass (read, parse, history rows).
    pub load_seconds: f64,
    /// The fold pass, with the indexes.
    pub fold_seconds: f64,
    /// Applying what arrived during the build, before the swap.
    pub catch_up_seconds: f64,
}

/// Why a rebuild did not put a new store in place. The store serving reads,
/// if any, stays.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Building the file, catching it up or putting it in place failed.
    /// Shared: every request that joined the rebuild hears the same failure.
    #[error(transparent)]
    Failed(Arc<ProjectionError>),
    /// The projector stopped (the server shutting down, or a write error)
    /// before the rebuild finished.
    #[error("the projector stopped before the rebuild finished")]
    Stopped,
    /// Another process holds the store's files (an offline rebuild beside a
    /// running server).
    #[error(transparent)]
    Locked(#[from] LockError),
}

impl From<ProjectionError> for RebuildError {
    fn from(e: ProjectionError) -> Self {
        RebuildError::Failed(Arc::new(e))
    }
}

/// A store file a build completed, beside the configured one, not yet in
/// place.
pub struct Built {
    pub path: PathBuf,
    pub report: RebuildReport,
}

/// `registrar rebuild`, while no server runs: builds the store configured at
/// `projections` afresh from the log at `log_path`, then puts it in place
/// the way a server's start chooses its store ([`files::open_store`]).
/// `progress` hears the events loaded so far and the log's head.
pub fn offline(
    log_path: &Path,
    projections: &Path,
    ctx: ParseContext,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildReport, RebuildError> {
    // A running server holds the lock: it swaps files under its readers
    // itself, so this must not.
    let _lock = files::lock(projections)?;
    // Files a power loss may have torn are deleted before the build, not
    // after: the new file is fsynced and must survive the choice below.
    files::discard_if_torn(projections)?;
    let log = LogReader::open(log_path).map_err(ProjectionError::from)?;
    let head = log.head().map_err(ProjectionError::from)?;
    let built = build_next(projections, None, log_path, ctx, |done| {
        progress(done, head)
    })?;
    // The new file has the highest generation: the choice puts it in place
    // and removes the others. Against the log's head now, not before the
    // build: a readmit by the CLI may have appended meanwhile, and a store
    // ahead of the given head would be discarded as another log's.
    let head = log.head().map_err(ProjectionError::from)?;
    files::open_store(projections, head, false)?;
    Ok(built.report)
}

/// Builds a fresh store for the one configured at `path`, from the log at
/// `log_path`, into the file of the next generation ([`files::next_generation`]:
/// above every store file present; `live` is the file serving reads, when
/// there is one), so the choice at a start prefers it. The projector's
/// rebuilds and [`offline`] both build this way. On error the file is
/// deleted.
pub fn build_next(
    path: &Path,
    live: Option<&Path>,
    log_path: &Path,
    ctx: ParseContext,
    progress: impl FnMut(u64),
) -> Result<Built, ProjectionError> {
    let generation = files::next_generation(path, live);
    let target = files::generation_path(path, generation);
    match build(&target, log_path, ctx, generation, progress) {
        Ok(report) => Ok(Built {
            path: target,
            report,
        }),
        Err(e) => {
            // Not complete, so never chosen; deleted now rather than at the
            // next start. A failure to delete it changes nothing more.
            let _ = files::remove(&target);
            Err(e)
        }
    }
}

/// Builds a complete store file at `path` from the log at `log_path`, up to
/// the log's head when it starts. `progress` hears the events loaded so far.
/// On error the caller deletes the file.
pub fn build(
    path: &Path,
    log_path: &Path,
    ctx: ParseContext,
    generation: i64,
    mut progress: impl FnMut(u64),
) -> Result<RebuildReport, ProjectionError> {
    let started = Instant::now();
    let conn = files::create_for_build(path, generation)?;
    let head = LogReader::open(log_path)?.head()?;
    let (events, skipped) = std::thread::scope(|scope| -> Result<(u64, u64), ProjectionError> {
        // The reader deals batches to the parsers in turn; the writer takes
        // them back in the same turn, so events stay in seq order.
        let mut to_parsers = Vec::with_capacity(PARSERS);
        let mut from_parsers: Vec<Receiver<ParsedBatch>> = Vec::with_capacity(PARSERS);
        for _ in 0..PARSERS {
            let (raw_tx, raw_rx) = sync_channel::<Vec<LoggedEvent>>(PIPELINE_DEPTH);
            let (parsed_tx, parsed_rx) = sync_channel(PIPELINE_DEPTH);
            scope.spawn(move || {
                for batch in raw_rx {
                    let parsed: Vec<_> = batch
                        .into_iter()
                        .map(|e| {
                            let event = super::reparse(&e, &ctx);
                            (e, event)
                        })
                        .collect();
                    if parsed_tx.send(parsed).is_err() {
                        return;
                    }
                }
            });
            to_parsers.push(raw_tx);
            from_parsers.push(parsed_rx);
        }
        let reader = scope.spawn(move || -> Result<(), ProjectionError> {
            let log = LogReader::open(log_path)?;
            let mut after = 0u64;
            let mut turn = 0usize;
            while after < head {
                let want = PIPELINE_BATCH.min((head - after) as usize);
                let batch = log.read_after(after, want)?;
                let Some(last) = batch.last() else { break };
                after = last.seq;
                if to_parsers[turn % PARSERS].send(batch).is_err() {
                    break; // the writer stopped: its error is reported
                }
                turn += 1;
            }
            Ok(())
        });
        let mut next = 1u64;
        let mut skipped = 0u64;
        let mut turn = 0usize;
        conn.execute_batch("BEGIN")?;
        let written = (|| -> Result<(), ProjectionError> {
            while next <= head {
                let Ok(batch) = from_parsers[turn % PARSERS].recv() else {
                    break; // the reader stopped early: checked below
                };
                turn += 1;
                for (e, event) in &batch {
                    if e.seq != next {
                        return Err(ProjectionError::Invariant(format!(
                            "the log gave seq {} where {next} was expected",
                            e.seq
                        )));
                    }
                    match event {
                        Some(event) => store::load(&conn, &Projectable::logged(e, event))?,
                        None => skipped += 1,
                    }
                    next += 1;
                }
                progress(next - 1);
            }
            Ok(())
        })();
        drop(from_parsers); // stops the parsers, and so the reader, on error
        let read = reader
            .join()
            .map_err(|_| ProjectionError::Invariant("the log reader panicked".into()))?;
        written?;
        read?;
        if next - 1 != head {
            return Err(ProjectionError::Invariant(format!(
                "the log ended at seq {} before its head {head}",
                next - 1
            )));
        }
        if head > 0 {
            store::advance(&conn, 1, head, skipped)?;
        }
        conn.execute_batch("COMMIT")?;
        Ok((head, skipped))
    })?;
    let load_seconds = started.elapsed().as_secs_f64();
    conn.execute_batch("BEGIN")?;
    let t = Instant::now();
    store::create_history_indexes(&conn)?;
    let indexed = t.elapsed().as_secs_f64();
    store::fold_all(&conn)?;
    let folded = t.elapsed().as_secs_f64();
    store::create_read_indexes(&conn)?;
    let indexes = t.elapsed().as_secs_f64();
    conn.execute_batch("COMMIT")?;
    let committed = t.elapsed().as_secs_f64();
    files::finish_build(conn, path)?;
    tracing::info!(
        history_indexes_s = indexed,
        fold_s = folded - indexed,
        read_indexes_s = indexes - folded,
        commit_s = committed - indexes,
        finish_s = t.elapsed().as_secs_f64() - committed,
        "rebuild fold pass"
    );
    let seconds = started.elapsed().as_secs_f64();
    Ok(RebuildReport {
        events,
        skipped,
        last_seq: head,
        seconds,
        events_per_second: if seconds > 0.0 {
            events as f64 / seconds
        } else {
            0.0
        },
        load_seconds,
        fold_seconds: seconds - load_seconds,
        catch_up_seconds: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty, migrated log file in `dir`.
    fn empty_log(dir: &Path) -> PathBuf {
        let path = dir.join("registrar.db");
        crate::db::migrate(&mut crate::db::open_rw(&path).unwrap()).unwrap();
        path
    }

    #[test]
    fn an_offline_rebuild_puts_the_file_it_built_at_the_configured_path() {
        let dir = tempfile::tempdir().unwrap();
        let log = empty_log(dir.path());
        let projections = dir.path().join("registrar.projections.db");
        // The first build makes the store; the second replaces it with a
        // later generation, as over an existing store.
        for generation in [0, 1] {
            let report = offline(&log, &projections, ParseContext::default(), |_, _| {}).unwrap();
            assert_eq!((report.events, report.last_seq), (0, 0));
            let conn = files::open_writer(&projections, files::StoreSync::Checkpoints).unwrap();
            let state = store::state(&conn).unwrap().expect("a store in place");
            assert!(state.usable(), "{state:?}");
            assert_eq!(state.generation, generation);
            assert!(
                !files::generation_path(&projections, generation).exists(),
                "the built file was left beside the store"
            );
        }
    }

    #[test]
    fn an_offline_rebuild_is_refused_while_another_process_holds_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let log = empty_log(dir.path());
        let projections = dir.path().join("registrar.projections.db");
        let _server = files::lock(&projections).unwrap();
        let refused = offline(&log, &projections, ParseContext::default(), |_, _| {});
        assert!(
            matches!(refused, Err(RebuildError::Locked(LockError::Held(_)))),
            "{refused:?}"
        );
        assert!(!projections.exists(), "a refused rebuild wrote a store");
    }
}
