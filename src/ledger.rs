//! The one writer: appends to the log, and nothing else.
//!
//! A dedicated thread owns the only write connection of the log file.
//! Requests reach it over a bounded queue ([`crate::config::Config::queue_depth`]);
//! it takes up to `max_batch` at a time and commits them together (group
//! commit: one fsync for the batch). Every request awaits its own result,
//! sent only once the commit is on disk: a 2xx means durable. The fsync runs
//! on a thread of its own ([`sync`]) while the writer commits the next batch.
//! No projection is written here: once a batch is on disk the writer tells
//! its [`CommitListener`] (the projector) how far the log goes, and the
//! projector follows.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::auth::{JodoKeys, JodoSecrets};
use crate::event::{Delivery, Event, Sequenced};
use crate::log::pins::Pin;
use crate::log::{self, AppendOutcome, Head, NewEntry};
use crate::metrics::Metrics;
use crate::quarantine::{self, Reject};
use crate::sources::ParseContext;

mod sync;
pub use sync::SyncError;
use sync::{Broken, Syncer};

/// Why the ledger could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database refused the write (disk full, locked, read-only, I/O),
    /// or the WAL could not be made durable. Shared: one failed commit fails
    /// every command of its batch.
    #[error("storage unavailable: {0}")]
    Storage(Arc<StorageError>),
    /// The writer's queue is full.
    #[error("the writer is busy")]
    Busy,
    /// The writer has stopped (shutting down, or it died).
    #[error("the writer has stopped")]
    Closed,
}

/// Why the log could not be written, or what was written made durable.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Unsynced(#[from] Arc<SyncError>),
}

impl From<StorageError> for LedgerError {
    fn from(e: StorageError) -> Self {
        LedgerError::Storage(Arc::new(e))
    }
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Db(e).into()
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
        reply: Reply<Kept>,
    },
    /// Work on the log file's own schema between batches (the upgrade from
    /// a release that kept projections in it drops them this way).
    Maintain {
        work: Maintenance,
        reply: Reply<()>,
    },
    /// Readmit a quarantined delivery ([`readmit`]) from the server (the
    /// console), through this one writer rather than a second connection.
    Readmit {
        id: i64,
        force: bool,
        /// The keys the delivery's signature is checked against again.
        jodo: JodoKeys,
        reply: oneshot::Sender<Result<Readmitted, ReadmitError>>,
    },
    /// Record the log's head as a pin ([`log::pins::record`]).
    Pin {
        note: String,
        reply: oneshot::Sender<Result<Pin, PinError>>,
    },
    Shutdown,
}

/// A one-off change to the log file, run by the writer in its own transaction.
pub type Maintenance = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;

/// Handed the events of every commit that appended some, in seq order
/// (the last is the log's new head).
pub type CommitListener = std::sync::Arc<dyn Fn(Vec<Sequenced>) + Send + Sync>;

/// Settings of the writer.
#[derive(Clone)]
pub struct LedgerConfig {
    pub queue_depth: usize,
    pub max_batch: usize,
    pub quarantine_cap: u64,
    pub parse: ParseContext,
    pub on_commit: Option<CommitListener>,
    pub metrics: Option<std::sync::Arc<Metrics>>,
}

/// A handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Command>,
    /// Unauthenticated rejects: a queue of their own, served after the main
    /// one, so they never take an authenticated delivery's place.
    low: mpsc::Sender<Command>,
    failure: Failure,
    /// Set by the fsync thread when an fsync fails (see `is_running`).
    broken: Broken,
}

/// Unauthenticated rejects waiting for the writer at most; past it they are
/// shed (counted, not kept). Small: anyone can send them.
pub const LOW_QUEUE_DEPTH: usize = 64;
/// Unauthenticated rejects written per batch at most, after the
/// authenticated commands: they never hold up a batch of deliveries.
pub const LOW_PER_BATCH: usize = 16;

/// Owns the writer thread; [`Writer::shutdown`] drains and joins it.
pub struct Writer {
    tx: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// The last commit's failure, if it failed: the log cannot be written now
/// (disk full, read-only). Cleared by the next commit that succeeds.
type Failure = Arc<Mutex<Option<Arc<StorageError>>>>;

impl Writer {
    /// Starts the writer on `conn`, which must be migrated and projected.
    pub fn start(conn: Connection, cfg: LedgerConfig) -> (Writer, Ledger) {
        assert!(
            cfg.queue_depth > 0 && cfg.max_batch > 0,
            "queue depth and batch size must be positive"
        );
        let (tx, rx) = mpsc::channel(cfg.queue_depth);
        let (low, low_rx) = mpsc::channel(LOW_QUEUE_DEPTH);
        let failure = Failure::default();
        let broken = Broken::default();
        let (f, b) = (Arc::clone(&failure), Arc::clone(&broken));
        let thread = std::thread::Builder::new()
            .name("registrar-writer".into())
            .spawn(move || run(conn, rx, low_rx, cfg, f, b))
            .expect("spawning the writer thread");
        (
            Writer {
                tx: tx.clone(),
                thread: Some(thread),
            },
            Ledger {
                tx,
                low,
                failure,
                broken,
            },
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

    /// Keeps a rejected delivery. Returns its id and whether one was
    /// evicted, or `None` when it was not kept. An unauthenticated one goes
    /// through its own small queue and is shed ([`LedgerError::Busy`]) when
    /// that is full.
    pub async fn quarantine(&self, reject: Reject) -> Result<Kept, LedgerError> {
        let (reply, rx) = oneshot::channel();
        let queue = if reject.authenticated {
            &self.tx
        } else {
            &self.low
        };
        let cmd = Command::Quarantine {
            reject: Box::new(reject),
            reply,
        };
        queue.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LedgerError::Busy,
            mpsc::error::TrySendError::Closed(_) => LedgerError::Closed,
        })?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// Runs `work` on the log file between batches, in its own transaction.
    pub async fn maintain(&self, work: Maintenance) -> Result<(), LedgerError> {
        let (reply, rx) = oneshot::channel();
        // May wait for room: it is rare and internal.
        self.tx
            .send(Command::Maintain { work, reply })
            .await
            .map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// Readmits quarantined delivery `id` ([`readmit`]) between batches. The
    /// projector finds what it appended by itself (within
    /// [`crate::projection::projector::IDLE_CHECK`]), as after a readmit by
    /// the CLI.
    pub async fn readmit(
        &self,
        id: i64,
        force: bool,
        jodo: JodoKeys,
    ) -> Result<Readmitted, ReadmitError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Readmit {
            id,
            force,
            jodo,
            reply,
        })?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// Records the log's head as a pin with `note`, between batches.
    pub async fn pin(&self, note: String) -> Result<Pin, PinError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Pin { note, reply })?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// Whether the writer thread is still taking requests. False from the
    /// moment an fsync fails, before that batch is answered: the writer
    /// itself notices a moment later.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed() && self.broken.get().is_none()
    }

    /// Why the last commit failed, when it did.
    pub fn last_failure(&self) -> Option<Arc<StorageError>> {
        self.failure.lock().expect("failure lock").clone()
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

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Command>,
    mut low: mpsc::Receiver<Command>,
    cfg: LedgerConfig,
    failure: Failure,
    broken: Broken,
) {
    // A runtime of the writer's own, only to wait on both queues at once.
    let waiter = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("the writer's waiting runtime");
    let syncer = start_syncer(&conn, &cfg, broken);
    let mut batch = Vec::with_capacity(cfg.max_batch + LOW_PER_BATCH);
    loop {
        if let Some(broken) = syncer.as_ref().and_then(Syncer::broken) {
            // Nothing written from here on could be promised durable: stop,
            // so readiness fails and queued requests are answered 503.
            *failure.lock().expect("failure lock") = Some(Arc::new(broken.into()));
            return;
        }
        let first = waiter.block_on(async {
            tokio::select! {
                biased;
                cmd = rx.recv() => cmd,
                Some(cmd) = low.recv() => Some(cmd),
            }
        });
        let Some(first) = first else { return };
        batch.push(first);
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
        for _ in 0..LOW_PER_BATCH {
            match low.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
        if let Some(m) = &cfg.metrics {
            m.writer_queue_depth.set(rx.len() as i64);
            m.batch_size.observe(batch.len() as f64);
        }
        let mut stop = false;
        let mut writes = Vec::with_capacity(batch.len());
        for cmd in batch.drain(..) {
            match cmd {
                Command::Maintain { work, reply } => {
                    let done = conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .and_then(|tx| {
                            work(&tx)?;
                            tx.commit()
                        })
                        .map_err(LedgerError::from)
                        .and_then(|()| durable(&syncer));
                    let _ = reply.send(done);
                }
                Command::Readmit {
                    id,
                    force,
                    jodo,
                    reply,
                } => {
                    let done = readmit(&mut conn, id, &jodo.secrets(), &cfg.parse, force)
                        .and_then(|r| durable(&syncer).map(|()| r).map_err(ReadmitError::from));
                    let _ = reply.send(done);
                }
                Command::Pin { note, reply } => {
                    let done = conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .map_err(PinError::from)
                        .and_then(|tx| {
                            let pin = log::pins::record(&tx, &note, now_micros())?;
                            tx.commit()?;
                            durable(&syncer)?;
                            Ok(pin)
                        });
                    let _ = reply.send(done);
                }
                Command::Shutdown => stop = true,
                other => writes.push(other),
            }
        }
        if !writes.is_empty() {
            let (committed, outcome) = commit_batch(&mut conn, &cfg, writes);
            *failure.lock().expect("failure lock") = outcome.err();
            match &syncer {
                Some(s) => s.send(committed),
                None => committed.answer(&cfg, Ok(())),
            }
        }
        if stop {
            return;
        }
    }
}

/// A command's result, sent once its transaction has committed.
enum Done {
    Append(Result<Appended, LedgerError>),
    Quarantine(Result<Kept, LedgerError>),
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
fn commit_batch(
    conn: &mut Connection,
    cfg: &LedgerConfig,
    writes: Vec<Command>,
) -> (Committed, Result<(), Arc<StorageError>>) {
    let received_at = now_micros();
    let mut failed = None;
    let done: Vec<Done> = match run_in_transaction(conn, cfg, &writes, received_at) {
        Ok(done) => done,
        Err(BatchFailure::Storage(e)) => {
            tracing::error!(error = %e, "batch commit failed; answering 503 for the whole batch");
            let e = Arc::new(StorageError::Db(e));
            failed = Some(Arc::clone(&e));
            writes
                .iter()
                .map(|w| Done::failed(w, LedgerError::Storage(Arc::clone(&e))))
                .collect()
        }
        Err(BatchFailure::Command(e)) if writes.len() == 1 => vec![Done::failed(&writes[0], e)],
        Err(BatchFailure::Command(_)) => writes
            .iter()
            .map(
                |w| match run_in_transaction(conn, cfg, std::slice::from_ref(w), received_at) {
                    Ok(mut done) => done.pop().expect("one command, one result"),
                    Err(BatchFailure::Command(e)) => Done::failed(w, e),
                    Err(BatchFailure::Storage(e)) => Done::failed(w, LedgerError::from(e)),
                },
            )
            .collect(),
    };
    assert_eq!(done.len(), writes.len(), "every command gets one answer");
    let committed = Committed {
        writes,
        done,
        received_at,
    };
    (committed, failed.map_or(Ok(()), Err))
}

/// A batch committed to the WAL, not answered until the WAL is on disk.
struct Committed {
    writes: Vec<Command>,
    /// One result per command, in their order.
    done: Vec<Done>,
    received_at: i64,
}

impl Committed {
    /// Hands the projector what was appended, then answers every command;
    /// with `synced` an error, every command that succeeded fails with it
    /// instead and the projector hears of nothing.
    fn answer(self, cfg: &LedgerConfig, synced: Result<(), &Arc<SyncError>>) {
        let Committed {
            mut writes,
            mut done,
            received_at,
        } = self;
        if let Err(e) = synced {
            let e = Arc::new(StorageError::Unsynced(Arc::clone(e)));
            let failed = || LedgerError::Storage(Arc::clone(&e));
            for d in &mut done {
                match d {
                    Done::Append(r @ Ok(_)) => *r = Err(failed()),
                    Done::Quarantine(r @ Ok(_)) => *r = Err(failed()),
                    // Failed already: keeps its own reason.
                    Done::Append(Err(_)) | Done::Quarantine(Err(_)) => {}
                }
            }
        }
        // Hand the projector what was appended before answering: a client
        // that reads right after its 2xx then waits the shortest time.
        if let Some(listener) = &cfg.on_commit {
            let mut appended = Vec::new();
            for (cmd, d) in writes.iter_mut().zip(&done) {
                if let (
                    Command::Append { delivery, .. },
                    Done::Append(Ok(Appended {
                        outcome: AppendOutcome::Appended { seq },
                        ..
                    })),
                ) = (cmd, d)
                {
                    appended.push(Sequenced {
                        seq: *seq,
                        occurred_at: delivery.occurred_at,
                        received_at,
                        // Answered below without it: no copy needed.
                        event: std::mem::replace(&mut delivery.event, Event::Unrecognized),
                    });
                }
            }
            if !appended.is_empty() {
                debug_assert!(appended.windows(2).all(|w| w[0].seq < w[1].seq));
                listener(appended);
            }
        }
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
}

/// The fsync thread for the log file `conn` writes, with the connection
/// switched to commit without one. `None` for a database with no file (in
/// memory), which keeps `synchronous=FULL` and answers at commit.
fn start_syncer(
    conn: &Connection,
    cfg: &LedgerConfig,
    broken: Broken,
) -> Option<Syncer<Committed>> {
    let path = conn.path().filter(|p| !p.is_empty())?;
    let wal = std::path::PathBuf::from(format!("{path}-wal"));
    if let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
        tracing::warn!(error = %e, "the log stays synchronous=FULL: fsync at each commit");
        return None;
    }
    let cfg = cfg.clone();
    Some(Syncer::start(wal, broken, move |c: Committed, synced| {
        c.answer(&cfg, synced)
    }))
}

/// Makes everything committed so far durable before the writer answers a
/// command itself (SQLite did it at commit when there is no fsync thread).
fn durable(syncer: &Option<Syncer<Committed>>) -> Result<(), LedgerError> {
    match syncer {
        Some(s) => s.sync_now().map_err(|e| StorageError::from(e).into()),
        None => Ok(()),
    }
}

/// Runs `writes` in one transaction and commits it, or rolls it all back.
fn run_in_transaction(
    conn: &mut Connection,
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
    let mut done = Vec::with_capacity(writes.len());
    for cmd in writes {
        match cmd {
            Command::Append {
                delivery,
                body,
                conflict,
                ..
            } => {
                let appended =
                    append_one(&tx, &mut head, delivery, body, received_at, conflict, cfg)
                        .map_err(BatchFailure::Command)?;
                done.push(Done::Append(Ok(appended)));
            }
            Command::Quarantine { reject, .. } => {
                let kept = quarantine_one(&tx, reject, cfg.quarantine_cap)
                    .map_err(|e| BatchFailure::Command(e.into()))?;
                done.push(Done::Quarantine(Ok(kept)));
            }
            Command::Maintain { .. }
            | Command::Readmit { .. }
            | Command::Pin { .. }
            | Command::Shutdown => unreachable!("handled by run"),
        }
    }
    tx.commit().map_err(BatchFailure::Storage)?;
    Ok(done)
}

fn append_one(
    conn: &Connection,
    head: &mut Head,
    d: &Delivery,
    body: &[u8],
    received_at: i64,
    conflict: &Reject,
    cfg: &LedgerConfig,
) -> Result<Appended, LedgerError> {
    let outcome = append_delivery(conn, head, d, body, received_at)?;
    let quarantine_id = match outcome {
        AppendOutcome::Conflict { seq } => {
            let mut reject = conflict.clone();
            reject.reason = format!("{} (the original is seq {seq})", reject.reason);
            quarantine_one(conn, &reject, cfg.quarantine_cap)?.map(|(id, _)| id)
        }
        _ => None,
    };
    Ok(Appended {
        outcome,
        quarantine_id,
    })
}

/// Appends one delivery inside the caller's transaction (the writer's
/// batch, or the CLI's readmit).
pub fn append_delivery(
    conn: &Connection,
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
    Ok(log::append(conn, head, &entry)?)
}

fn quarantine_one(conn: &Connection, reject: &Reject, cap: u64) -> rusqlite::Result<Kept> {
    let kept = quarantine::insert(conn, reject, cap)?;
    match kept {
        Some((_, true)) => tracing::warn!(
            cap,
            "quarantine full: evicted one entry (unauthenticated first)"
        ),
        None => tracing::debug!(
            cap,
            "quarantine full of authenticated rejects: an unauthenticated one was not kept"
        ),
        Some((_, false)) => {}
    }
    Ok(kept)
}

/// A quarantine insert's result: the row's id and whether one was evicted;
/// `None` when an unauthenticated reject was not kept (see [`quarantine`]).
pub type Kept = Option<(i64, bool)>;

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

/// Why a pin was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// Its note was empty once trimmed ([`log::pins::record`]).
    #[error(transparent)]
    Refused(log::pins::RecordError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<log::pins::RecordError> for PinError {
    fn from(e: log::pins::RecordError) -> Self {
        match e {
            log::pins::RecordError::Db(e) => PinError::Ledger(e.into()),
            refused => PinError::Refused(refused),
        }
    }
}

impl From<rusqlite::Error> for PinError {
    fn from(e: rusqlite::Error) -> Self {
        PinError::Ledger(e.into())
    }
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
    jodo: &JodoSecrets,
    parse: &ParseContext,
    force: bool,
) -> Result<Readmitted, ReadmitError> {
    use crate::auth::{self, Kept};
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
                jodo,
                entry.reject.authenticated,
                body,
            ),
            Source::Toolzz => auth::recheck_toolzz(entry.reject.authenticated),
        };
        recheck.map_err(|r| ReadmitError::Unauthenticated(r.to_string()))?;
    }
    let delivery = match sources::parse(source, body, parse) {
        Ok(Parsed::Delivery(d)) => d,
        Ok(Parsed::Ping) => return Err(ReadmitError::Ping),
        Err(e) => return Err(ReadmitError::Invalid(e)),
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut head = log::head(&tx)?;
    let now = now_micros();
    let outcome = append_delivery(&tx, &mut head, &delivery, body, now)?;
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
