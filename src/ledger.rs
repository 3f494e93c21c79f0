//! The one writer: appends to the log and projects, in one transaction.
//!
//! A dedicated thread owns the only write connection. Requests reach it over a
//! bounded queue ([`crate::config::Config::queue_depth`]); it takes up to
//! `max_batch` at a time and commits them together (group commit: one fsync
//! for the batch), each delivery inside its own savepoint so a failure in one
//! does not fail the others. Every request awaits its own result, sent only
//! after the commit: a 2xx means durable.
//!
//! Rebuilds run here too, a chunk at a time whenever the queue is empty, so
//! ingest keeps flowing while the shadow tables fill.

use std::thread::JoinHandle;

use bytes::Bytes;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::event::Delivery;
use crate::log::{self, AppendOutcome, Head, NewEntry};
use crate::projection::rebuild::{Rebuild, RebuildReport, Step, REBUILD_CHUNK};
use crate::projection::{ProjectionError, Projector};
use crate::quarantine::{self, Reject};
use crate::sources::ParseContext;

/// Why the ledger could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database refused the write (disk full, locked, read-only, I/O).
    #[error("storage unavailable: {0}")]
    Storage(String),
    /// The writer's queue is full.
    #[error("the writer is busy")]
    Busy,
    /// The writer has stopped (shutting down, or it died).
    #[error("the writer has stopped")]
    Closed,
    /// A projection invariant failed: a bug, not a bad delivery.
    #[error("projection failed: {0}")]
    Projection(ProjectionError),
    /// A rebuild is not possible now.
    #[error("{0}")]
    Rejected(String),
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError::Storage(e.to_string())
    }
}

impl From<ProjectionError> for LedgerError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::Db(e) => LedgerError::from(e),
            other => LedgerError::Projection(other),
        }
    }
}

/// An append's result, with the time it was stamped with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub outcome: AppendOutcome,
    /// Set when a conflicting delivery was quarantined.
    pub quarantine_id: Option<i64>,
}

type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

enum Command {
    Append {
        delivery: Box<Delivery>,
        /// The raw body, shared with the HTTP layer without copying.
        body: Bytes,
        conflict: Box<Reject>,
        reply: Reply<Appended>,
    },
    Quarantine {
        reject: Box<Reject>,
        reply: Reply<(i64, bool)>,
    },
    Rebuild {
        reply: Reply<RebuildReport>,
    },
    Shutdown,
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub queue_depth: usize,
    pub max_batch: usize,
    pub quarantine_cap: u64,
    pub parse: ParseContext,
}

/// A handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Command>,
}

/// Owns the writer thread; [`Writer::shutdown`] drains and joins it.
pub struct Writer {
    tx: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer on `conn`, which must be migrated and projected.
    pub fn start(conn: Connection, cfg: LedgerConfig) -> (Writer, Ledger) {
        assert!(
            cfg.queue_depth > 0 && cfg.max_batch > 0,
            "queue depth and batch size must be positive"
        );
        let (tx, rx) = mpsc::channel(cfg.queue_depth);
        let thread = std::thread::Builder::new()
            .name("registrar-writer".into())
            .spawn(move || run(conn, rx, cfg))
            .expect("spawning the writer thread");
        (
            Writer {
                tx: tx.clone(),
                thread: Some(thread),
            },
            Ledger { tx },
        )
    }

    /// Processes everything queued before this call, then stops the thread.
    pub async fn shutdown(mut self) {
        let _ = self.tx.send(Command::Shutdown).await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Ledger {
    /// Appends a validated delivery (or finds it already there). A delivery
    /// whose key is taken by another body is quarantined as `conflict`.
    pub async fn append(
        &self,
        delivery: Delivery,
        body: Bytes,
        conflict: Reject,
    ) -> Result<Appended, LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Append {
            delivery: Box::new(delivery),
            body,
            conflict: Box::new(conflict),
            reply,
        })?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// Keeps a rejected delivery. Returns its id and whether one was evicted.
    pub async fn quarantine(&self, reject: Reject) -> Result<(i64, bool), LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Quarantine {
            reject: Box::new(reject),
            reply,
        })?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// Rebuilds every projection; resolves when the new tables are live. A
    /// request while a rebuild runs joins it.
    pub async fn rebuild(&self) -> Result<RebuildReport, LedgerError> {
        let (reply, rx) = oneshot::channel();
        // A rebuild request may wait for room: it is rare and admin-only.
        self.tx
            .send(Command::Rebuild { reply })
            .await
            .map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    fn send(&self, cmd: Command) -> Result<(), LedgerError> {
        self.tx.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LedgerError::Busy,
            mpsc::error::TrySendError::Closed(_) => LedgerError::Closed,
        })
    }
}

/// Now, in unix microseconds.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Command>, cfg: LedgerConfig) {
    let live = Projector::live();
    let mut rebuild: Option<(Rebuild, Vec<Reply<RebuildReport>>)> = None;
    let mut batch = Vec::with_capacity(cfg.max_batch);
    loop {
        // With a rebuild under way, ingest goes first and the rebuild takes
        // the idle moments; otherwise sleep until something arrives.
        let first = if rebuild.is_some() {
            match rx.try_recv() {
                Ok(cmd) => Some(cmd),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        } else {
            match rx.blocking_recv() {
                Some(cmd) => Some(cmd),
                None => return,
            }
        };
        let Some(first) = first else {
            let (job, _) = rebuild.as_mut().expect("checked above");
            match job.step(&mut conn, REBUILD_CHUNK) {
                Ok(Step::Continue { .. }) => {}
                Ok(Step::Done(report)) => {
                    tracing::info!(
                        events = report.events,
                        skipped = report.skipped,
                        seconds = report.seconds,
                        "rebuild done"
                    );
                    let (_, waiters) = rebuild.take().expect("checked above");
                    for w in waiters {
                        let _ = w.send(Ok(report.clone()));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "rebuild failed");
                    let msg = e.to_string();
                    let (_, waiters) = rebuild.take().expect("checked above");
                    for w in waiters {
                        let _ =
                            w.send(Err(LedgerError::Rejected(format!("rebuild failed: {msg}"))));
                    }
                }
            }
            continue;
        };
        batch.push(first);
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
        let mut stop = false;
        let mut writes = Vec::with_capacity(batch.len());
        for cmd in batch.drain(..) {
            match cmd {
                Command::Rebuild { reply } => match &mut rebuild {
                    Some((_, waiters)) => waiters.push(reply),
                    None => match Rebuild::start(&mut conn, cfg.parse) {
                        Ok(job) => rebuild = Some((job, vec![reply])),
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                        }
                    },
                },
                Command::Shutdown => stop = true,
                other => writes.push(other),
            }
        }
        if !writes.is_empty() {
            commit_batch(&mut conn, &live, &cfg, writes);
        }
        if stop {
            // A rebuild still under way is abandoned; its shadow tables are
            // dropped by the next one. Its waiters learn that it stopped.
            return;
        }
    }
}

/// A command's result, sent once its transaction has committed.
enum Done {
    Append(Result<Appended, LedgerError>),
    Quarantine(Result<(i64, bool), LedgerError>),
}

impl Done {
    /// The failure `e` for `cmd`.
    fn failed(cmd: &Command, e: LedgerError) -> Done {
        match cmd {
            Command::Append { .. } => Done::Append(Err(e)),
            _ => Done::Quarantine(Err(e)),
        }
    }
}

/// Why a batch's transaction did not commit.
enum BatchFailure {
    /// One command failed; nothing was committed.
    Command(LedgerError),
    /// The transaction itself failed (begin or commit).
    Storage(rusqlite::Error),
}

/// Commits `writes` (appends and quarantines) together: one transaction, one
/// fsync (group commit). If one of them fails, the batch is rolled back and
/// run again one command per transaction, so a failure in one delivery does
/// not fail the others. Failures are rare, so the common path carries no
/// per-delivery savepoint (whose sub-journal writes cost a fifth of the
/// writer's I/O).
fn commit_batch(conn: &mut Connection, live: &Projector, cfg: &LedgerConfig, writes: Vec<Command>) {
    let received_at = now_micros();
    let done: Vec<Done> = match run_in_transaction(conn, live, cfg, &writes, received_at) {
        Ok(done) => done,
        Err(BatchFailure::Storage(e)) => {
            tracing::error!(error = %e, "batch commit failed; answering 503 for the whole batch");
            writes
                .iter()
                .map(|w| Done::failed(w, LedgerError::from(clone_error(&e))))
                .collect()
        }
        Err(BatchFailure::Command(e)) if writes.len() == 1 => vec![Done::failed(&writes[0], e)],
        Err(BatchFailure::Command(_)) => writes
            .iter()
            .map(|w| {
                match run_in_transaction(conn, live, cfg, std::slice::from_ref(w), received_at) {
                    Ok(mut done) => done.pop().expect("one command, one result"),
                    Err(BatchFailure::Command(e)) => Done::failed(w, e),
                    Err(BatchFailure::Storage(e)) => Done::failed(w, LedgerError::from(e)),
                }
            })
            .collect(),
    };
    assert_eq!(done.len(), writes.len(), "every command gets one answer");
    for (cmd, result) in writes.into_iter().zip(done) {
        match (cmd, result) {
            (Command::Append { reply, .. }, Done::Append(r)) => {
                let _ = reply.send(r);
            }
            (Command::Quarantine { reply, .. }, Done::Quarantine(r)) => {
                let _ = reply.send(r);
            }
            _ => unreachable!("results follow their commands"),
        }
    }
}

fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// Runs `writes` in one transaction and commits it, or rolls it all back.
fn run_in_transaction(
    conn: &mut Connection,
    live: &Projector,
    cfg: &LedgerConfig,
    writes: &[Command],
    received_at: i64,
) -> Result<Vec<Done>, BatchFailure> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(BatchFailure::Storage)?;
    // Read the head inside the write transaction: another process (the
    // CLI's readmit or rebuild) may have appended since the last batch.
    let mut head = log::head(&tx).map_err(BatchFailure::Storage)?;
    let start = head;
    let mut done = Vec::with_capacity(writes.len());
    for cmd in writes {
        match cmd {
            Command::Append {
                delivery,
                body,
                conflict,
                ..
            } => {
                let appended = append_one(
                    &tx,
                    live,
                    &mut head,
                    delivery,
                    body,
                    received_at,
                    conflict,
                    cfg,
                )
                .map_err(BatchFailure::Command)?;
                done.push(Done::Append(Ok(appended)));
            }
            Command::Quarantine { reject, .. } => {
                let kept = quarantine_one(&tx, reject, cfg.quarantine_cap)
                    .map_err(|e| BatchFailure::Command(e.into()))?;
                done.push(Done::Quarantine(Ok(kept)));
            }
            Command::Rebuild { .. } | Command::Shutdown => unreachable!("handled by run"),
        }
    }
    // The projections now hold every event appended here: record it once.
    if head.seq > start.seq {
        live.advance_range(&tx, start.seq + 1, head.seq, 0)
            .map_err(|e| BatchFailure::Command(e.into()))?;
    }
    tx.commit().map_err(BatchFailure::Storage)?;
    Ok(done)
}

#[allow(clippy::too_many_arguments)]
fn append_one(
    conn: &Connection,
    live: &Projector,
    head: &mut Head,
    d: &Delivery,
    body: &[u8],
    received_at: i64,
    conflict: &Reject,
    cfg: &LedgerConfig,
) -> Result<Appended, LedgerError> {
    let outcome = append_unrecorded(conn, live, head, d, body, received_at)?;
    let quarantine_id = match outcome {
        AppendOutcome::Conflict { seq } => {
            let mut reject = conflict.clone();
            reject.reason = format!("{} (the original is seq {seq})", reject.reason);
            Some(quarantine_one(conn, &reject, cfg.quarantine_cap)?.0)
        }
        _ => None,
    };
    Ok(Appended {
        outcome,
        quarantine_id,
    })
}

/// Appends one delivery and projects it, inside the caller's transaction,
/// recording the projections' new position. Used by the CLI's readmit.
pub fn append_delivery(
    conn: &Connection,
    live: &Projector,
    head: &mut Head,
    d: &Delivery,
    body: &[u8],
    received_at: i64,
) -> Result<AppendOutcome, LedgerError> {
    let outcome = append_unrecorded(conn, live, head, d, body, received_at)?;
    if let AppendOutcome::Appended { seq } = outcome {
        live.advance_range(conn, seq, seq, 0)?;
    }
    Ok(outcome)
}

/// [`append_delivery`] without recording the projections' position: the
/// writer records it once per batch.
fn append_unrecorded(
    conn: &Connection,
    live: &Projector,
    head: &mut Head,
    d: &Delivery,
    body: &[u8],
    received_at: i64,
) -> Result<AppendOutcome, LedgerError> {
    let entry = NewEntry {
        source: d.source.as_str(),
        event_type: &d.event_type,
        event_version: &d.event_version,
        dedupe_key: &d.dedupe_key,
        subject: d.subject.as_deref(),
        occurred_at: d.occurred_at,
        received_at,
        body,
    };
    let outcome = log::append(conn, head, &entry)?;
    if let AppendOutcome::Appended { seq } = outcome {
        live.apply_event(conn, seq, d.occurred_at, &d.event)?;
    }
    Ok(outcome)
}

fn quarantine_one(conn: &Connection, reject: &Reject, cap: u64) -> rusqlite::Result<(i64, bool)> {
    let (id, evicted) = quarantine::insert(conn, reject, cap)?;
    if evicted {
        tracing::warn!(
            cap,
            "quarantine full: evicted one entry (unauthenticated first)"
        );
    }
    Ok((id, evicted))
}

/// What a readmission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readmitted {
    Appended {
        seq: u64,
    },
    /// Already in the log (the provider's retry got through meanwhile).
    Duplicate {
        seq: u64,
    },
}

/// Why a quarantined delivery was not readmitted. It stays in quarantine.
#[derive(Debug, thiserror::Error)]
pub enum ReadmitError {
    #[error("no quarantined delivery has id {0}")]
    NotFound(i64),
    #[error("already readmitted as seq {0}")]
    AlreadyReadmitted(u64),
    #[error("the body was cut at the size limit when it was rejected, so the whole delivery was never received")]
    Truncated,
    #[error("still not authenticated: {0}")]
    Unauthenticated(String),
    #[error("still invalid: {0}")]
    Invalid(crate::sources::ParseError),
    #[error("it is a ping, not an event")]
    Ping,
    #[error("its event_id is in the log at seq {0} with a different body")]
    Conflict(u64),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<rusqlite::Error> for ReadmitError {
    fn from(e: rusqlite::Error) -> Self {
        ReadmitError::Ledger(e.into())
    }
}

/// Runs quarantined delivery `id` again through authentication (as far as
/// what was kept allows), validation and the append path, and marks it
/// readmitted. `force` vouches for a delivery whose authentication cannot be
/// re-checked (a Toolzz URL token is never kept).
pub fn readmit(
    conn: &mut Connection,
    id: i64,
    config: &crate::config::Config,
    force: bool,
) -> Result<Readmitted, ReadmitError> {
    use crate::auth::{self, JodoSecrets, Kept};
    use crate::event::Source;
    use crate::sources::{self, Parsed};

    let entry = quarantine::get(conn, id)?.ok_or(ReadmitError::NotFound(id))?;
    if let Some(seq) = entry.readmitted_seq {
        return Err(ReadmitError::AlreadyReadmitted(seq));
    }
    if entry.reject.body_truncated {
        return Err(ReadmitError::Truncated);
    }
    let source = Source::parse(&entry.reject.source).ok_or_else(|| {
        ReadmitError::Unauthenticated(format!("unknown source {:?}", entry.reject.source))
    })?;
    let body = &entry.reject.body;
    if !force {
        let recheck = match source {
            Source::Jodo => auth::recheck_jodo(
                &Kept::read(&entry.reject.headers),
                &JodoSecrets::of(config),
                entry.reject.authenticated,
                body,
            ),
            Source::Toolzz => auth::recheck_toolzz(entry.reject.authenticated),
        };
        recheck.map_err(|r| ReadmitError::Unauthenticated(r.to_string()))?;
    }
    let delivery = match sources::parse(source, body, &config.parse) {
        Ok(Parsed::Delivery(d)) => d,
        Ok(Parsed::Ping) => return Err(ReadmitError::Ping),
        Err(e) => return Err(ReadmitError::Invalid(e)),
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut head = log::head(&tx)?;
    let now = now_micros();
    let outcome = append_delivery(&tx, &Projector::live(), &mut head, &delivery, body, now)?;
    let result = match outcome {
        AppendOutcome::Appended { seq } => Readmitted::Appended { seq },
        AppendOutcome::Duplicate { seq } => Readmitted::Duplicate { seq },
        AppendOutcome::Conflict { seq } => return Err(ReadmitError::Conflict(seq)),
    };
    let seq = match result {
        Readmitted::Appended { seq } | Readmitted::Duplicate { seq } => seq,
    };
    quarantine::mark_readmitted(&tx, id, now, seq)?;
    tx.commit()?;
    Ok(result)
}
