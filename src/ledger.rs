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
//!
//! The writer also keeps the log's tree ([`log::tree`]): every append stores
//! its leaf in the same transaction, from a [`Tail`] the writer keeps across
//! batches (so an append reads no stored hash). At start it builds the tree
//! of a log made before the tree existed, in bounded steps, before it serves.
//! Checkpoints ([`log::checkpoints`]) are made here too, on demand
//! ([`Ledger::checkpoint`]) and by [`CheckpointTimer`].

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::auth::{JodoKeys, JodoSecrets};
use crate::event::{Delivery, Event, Sequenced};
use crate::log::checkpoints::{self, Made, MakeError, Maker};
use crate::log::pins::Pin;
use crate::log::{self, tree, AppendOutcome, NewEntry, Tail};
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
    /// The tree's stored hashes could not be read or are not what the log
    /// says (a log cut below its tree).
    #[error("the log's tree: {0}")]
    Tree(#[from] tree::StoreError),
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

impl From<tree::StoreError> for LedgerError {
    fn from(e: tree::StoreError) -> Self {
        StorageError::Tree(e).into()
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
    /// An append or a quarantine, committed with the others of its batch.
    Write(Write),
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
    /// Make a checkpoint of the tree if the head moved since the newest.
    Checkpoint {
        reply: oneshot::Sender<Result<Made, CheckpointError>>,
    },
    Shutdown,
}

/// What a batch's one transaction writes (group commit); every other
/// command runs in a transaction of its own between batches.
enum Write {
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
    /// How checkpoints are made: origin, key, folder.
    pub checkpoints: Maker,
    /// Whether appends keep the log's tree: always, but for the benchmark's
    /// row that measures what it costs.
    pub tree: TreeUpkeep,
}

/// Whether the writer keeps the log's tree as it appends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TreeUpkeep {
    /// Each append stores its leaf in the same transaction.
    #[default]
    Kept,
    /// No leaf is stored and no checkpoint made (`serve --without-tree`,
    /// only for `make bench`'s tree-cost row): the next start that keeps
    /// the tree adds the missing leaves first.
    Skipped,
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
        self.send(Command::Write(Write::Append {
            delivery: Box::new(delivery),
            body,
            conflict: Box::new(conflict),
            reply,
        }))?;
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
        let cmd = Command::Write(Write::Quarantine {
            reject: Box::new(reject),
            reply,
        });
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

    /// Makes a checkpoint of the tree at the head, between batches, unless
    /// the newest checkpoint is at the head already: returns the newest,
    /// new or not. Signed when the writer has a key; published to the
    /// checkpoint folder, when there is one, before it returns.
    pub async fn checkpoint(&self) -> Result<Made, CheckpointError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Checkpoint { reply })?;
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
    if cfg.tree == TreeUpkeep::Skipped {
        tracing::warn!("--without-tree: appends keep no tree and no checkpoint is made");
    } else if let Err(e) = build_tree(&mut conn) {
        // Appends read the tail, which catches the tree up itself (in one
        // transaction) or refuses a log cut below its tree: each batch says
        // why it failed.
        tracing::error!(error = %e, "the log's tree could not be built at start");
    }
    publish_newest(&conn, &cfg.checkpoints);
    // The log's end as the last commit left it; None to read it again (at
    // start, and after any failure).
    let mut tail: Option<Tail> = None;
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
                Command::Checkpoint { reply } => {
                    let done = make_checkpoint(&mut conn, &mut tail, &cfg).and_then(|made| {
                        durable(&syncer)?;
                        Ok(made)
                    });
                    if let Ok(made) = &done {
                        publish(&cfg.checkpoints, made.checkpoint());
                    }
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
                Command::Write(write) => writes.push(write),
            }
        }
        if !writes.is_empty() {
            let (committed, outcome) = commit_batch(&mut conn, &cfg, &mut tail, writes);
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
    /// The failure `e` for `write`.
    fn failed(write: &Write, e: LedgerError) -> Done {
        match write {
            Write::Append { .. } => Done::Append(Err(e)),
            Write::Quarantine { .. } => Done::Quarantine(Err(e)),
        }
    }
}

/// Why a batch's transaction did not commit.
enum BatchFailure {
    /// One command failed; nothing was committed.
    Command(LedgerError),
    /// The transaction itself failed (begin, the tail's read, or commit).
    Storage(StorageError),
}

impl From<rusqlite::Error> for BatchFailure {
    fn from(e: rusqlite::Error) -> Self {
        BatchFailure::Storage(e.into())
    }
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
    tail: &mut Option<Tail>,
    writes: Vec<Write>,
) -> (Committed, Result<(), Arc<StorageError>>) {
    let received_at = now_micros();
    let mut failed = None;
    let done: Vec<Done> = match run_in_transaction(conn, cfg, tail, &writes, received_at) {
        Ok(done) => done,
        Err(BatchFailure::Storage(e)) => {
            tracing::error!(error = %e, "batch commit failed; answering 503 for the whole batch");
            let e = Arc::new(e);
            failed = Some(Arc::clone(&e));
            writes
                .iter()
                .map(|w| Done::failed(w, LedgerError::Storage(Arc::clone(&e))))
                .collect()
        }
        Err(BatchFailure::Command(e)) if writes.len() == 1 => vec![Done::failed(&writes[0], e)],
        Err(BatchFailure::Command(_)) => writes
            .iter()
            .map(|w| {
                match run_in_transaction(conn, cfg, tail, std::slice::from_ref(w), received_at) {
                    Ok(mut done) => done.pop().expect("one command, one result"),
                    Err(BatchFailure::Command(e)) => Done::failed(w, e),
                    Err(BatchFailure::Storage(e)) => Done::failed(w, LedgerError::from(e)),
                }
            })
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
    writes: Vec<Write>,
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
                    Write::Append { delivery, .. },
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
                (Write::Append { reply, .. }, Done::Append(r)) => {
                    let _ = reply.send(r);
                }
                (Write::Quarantine { reply, .. }, Done::Quarantine(r)) => {
                    let _ = reply.send(r);
                }
                (Write::Append { .. }, Done::Quarantine(_))
                | (Write::Quarantine { .. }, Done::Append(_)) => {
                    unreachable!("results follow their commands")
                }
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
/// `tail` is the log's end the last commit left (None: read it); it is
/// left as this commit leaves it, or None when this one fails.
fn run_in_transaction(
    conn: &mut Connection,
    cfg: &LedgerConfig,
    tail: &mut Option<Tail>,
    writes: &[Write],
    received_at: i64,
) -> Result<Vec<Done>, BatchFailure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read the head inside the write transaction: another process (the
    // CLI's readmit) may have appended since the last batch. Taken: a
    // failure below leaves None, so the next batch reads the tail again.
    let mut end = current_tail(&tx, tail.take(), cfg.tree).map_err(BatchFailure::Storage)?;
    let mut done = Vec::with_capacity(writes.len());
    for write in writes {
        match write {
            Write::Append {
                delivery,
                body,
                conflict,
                ..
            } => {
                let appended =
                    append_one(&tx, &mut end, delivery, body, received_at, conflict, cfg)
                        .map_err(BatchFailure::Command)?;
                done.push(Done::Append(Ok(appended)));
            }
            Write::Quarantine { reject, .. } => {
                let kept = quarantine_one(&tx, reject, cfg.quarantine_cap)
                    .map_err(|e| BatchFailure::Command(e.into()))?;
                done.push(Done::Quarantine(Ok(kept)));
            }
        }
    }
    tx.commit()?;
    *tail = Some(end);
    Ok(done)
}

/// The log's end: `cached` when the head read now is still its head, else
/// read again (after a failed batch, or when another process appended).
fn current_tail(
    conn: &Connection,
    cached: Option<Tail>,
    tree: TreeUpkeep,
) -> Result<Tail, StorageError> {
    let head = log::head(conn)?;
    match (cached, tree) {
        (Some(t), _) if t.head() == head => Ok(t),
        (Some(_) | None, TreeUpkeep::Kept) => Ok(log::tail(conn)?),
        (Some(_) | None, TreeUpkeep::Skipped) => Ok(log::tail_without_tree(conn)?),
    }
}

fn append_one(
    conn: &Connection,
    tail: &mut Tail,
    d: &Delivery,
    body: &[u8],
    received_at: i64,
    conflict: &Reject,
    cfg: &LedgerConfig,
) -> Result<Appended, LedgerError> {
    let outcome = append_delivery(conn, tail, d, body, received_at)?;
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
/// batch, or the CLI's readmit), after `tail` ([`log::tail`]).
pub fn append_delivery(
    conn: &Connection,
    tail: &mut Tail,
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
    Ok(log::append(conn, tail, &entry)?)
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

/// Events whose leaves one transaction of the tree's build at start adds at
/// most: bounds the transaction (and the WAL it writes) on a large log made
/// before the tree existed, and spaces the progress lines.
pub const TREE_BUILD_BATCH: u64 = 100_000;

/// Builds the tree of a log made before the tree existed (or whose build
/// was interrupted), from where the stored tree ends, in transactions of
/// [`TREE_BUILD_BATCH`] events, logging its progress. Nothing to do (two
/// reads) when the tree is at the head.
fn build_tree(conn: &mut Connection) -> Result<(), StorageError> {
    let started = std::time::Instant::now();
    let mut announced = false;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let head = log::head(&tx)?.seq;
        let leaves = tree::size(&tx)?;
        if leaves > head {
            return Err(tree::StoreError::PastHead { leaves, head }.into());
        }
        if leaves == head {
            if announced {
                tracing::info!(
                    leaves,
                    seconds = started.elapsed().as_secs_f64(),
                    "the log's tree is built"
                );
            }
            return Ok(());
        }
        if !announced {
            tracing::info!(
                leaves,
                head,
                "building the log's tree from the log before serving"
            );
            announced = true;
        }
        let mut frontier = tree::frontier(&tx, leaves)?;
        tree::extend(&tx, &mut frontier, head, TREE_BUILD_BATCH)?;
        tx.commit()?;
        tracing::info!(
            leaves = frontier.leaves(),
            head,
            percent = frontier.leaves() * 100 / head,
            "building the log's tree"
        );
    }
}

/// Why a checkpoint was not made.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Refused(#[from] MakeError),
    /// The server runs `--without-tree` (the benchmark's cost row).
    #[error("this server keeps no tree (--without-tree), so it makes no checkpoint")]
    TreeNotKept,
    /// The root of the hashes stored differs from the one the writer kept:
    /// the tree was edited under the server, and is not signed over.
    #[error("the stored tree's root at size {size} is not the one the writer computed")]
    Diverged { size: u64 },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<rusqlite::Error> for CheckpointError {
    fn from(e: rusqlite::Error) -> Self {
        CheckpointError::Ledger(e.into())
    }
}

impl From<StorageError> for CheckpointError {
    fn from(e: StorageError) -> Self {
        CheckpointError::Ledger(e.into())
    }
}

/// Makes a checkpoint at the head in a transaction of its own unless the
/// newest is there already (see [`Maker::make_if_moved`]). A new one is
/// signed only once the root the writer kept equals the root of the hashes
/// stored (O(log n) reads, once per checkpoint).
fn make_checkpoint(
    conn: &mut Connection,
    tail: &mut Option<Tail>,
    cfg: &LedgerConfig,
) -> Result<Made, CheckpointError> {
    let maker = &cfg.checkpoints;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let end = current_tail(&tx, tail.take(), cfg.tree)?;
    let size = end.head().seq;
    let Some(root) = end.root() else {
        *tail = Some(end);
        return Err(CheckpointError::TreeNotKept);
    };
    if tree::stored_root(&tx, size).map_err(StorageError::from)? != root {
        return Err(CheckpointError::Diverged { size });
    }
    let made = maker.make_if_moved(&tx, size, root, now_micros())?;
    tx.commit()?;
    *tail = Some(end);
    if let Made::New(c) = &made {
        tracing::info!(size = c.size, signed = c.signed, "checkpoint made");
    }
    Ok(made)
}

/// Publishes `stored` to the checkpoint folder, if any. A failure is
/// logged, not returned: the checkpoint is kept in the log file, and the
/// next request or start publishes the newest again.
fn publish(maker: &Maker, stored: &checkpoints::Stored) {
    if let Err(e) = maker.publish(stored) {
        tracing::error!(error = %e, size = stored.size, "could not write the checkpoint to --checkpoint-dir");
    }
}

/// Publishes the newest checkpoint at start, in case the last run stopped
/// between storing it and writing its file.
fn publish_newest(conn: &Connection, maker: &Maker) {
    if maker.dir.is_none() {
        return;
    }
    match checkpoints::newest(conn) {
        Ok(Some(stored)) => publish(maker, &stored),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "could not read the newest checkpoint"),
    }
}

/// Asks the writer for a checkpoint every interval ([`Ledger::checkpoint`]:
/// a new one only when the head moved). A tokio task, so tests drive it
/// with paused time.
pub struct CheckpointTimer {
    task: tokio::task::JoinHandle<()>,
    ticks: tokio::sync::watch::Receiver<u64>,
}

impl CheckpointTimer {
    /// Starts the timer on the current runtime: the first request one
    /// `interval` from now.
    pub fn start(ledger: Ledger, interval: Duration) -> CheckpointTimer {
        assert!(!interval.is_zero(), "a checkpoint interval is positive");
        let (done, ticks) = tokio::sync::watch::channel(0u64);
        let mut next = tokio::time::Instant::now() + interval;
        let task = tokio::spawn(async move {
            loop {
                // One interval from the end of the last request, not a
                // fixed tick: never a burst to catch up after a stall, and
                // no timer pending while the writer works.
                tokio::time::sleep_until(next).await;
                match ledger.checkpoint().await {
                    Ok(_) => {}
                    Err(CheckpointError::Ledger(LedgerError::Closed)) => return,
                    Err(e) => tracing::error!(error = %e, "no checkpoint was made"),
                }
                done.send_modify(|n| *n += 1);
                next = tokio::time::Instant::now() + interval;
            }
        });
        CheckpointTimer { task, ticks }
    }

    /// Counts the timer's requests answered so far (a test waits on it).
    pub fn ticks(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ticks.clone()
    }

    /// Stops the timer; a request in flight is still carried out by the
    /// writer.
    pub fn stop(self) {
        self.task.abort();
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
    let mut tail = log::tail(&tx).map_err(LedgerError::from)?;
    let now = now_micros();
    let outcome = append_delivery(&tx, &mut tail, &delivery, body, now)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;
    use crate::log::{merkle, note};
    use crate::sources::{self, Parsed};

    /// A writer on a fresh log in a temporary folder.
    fn writer(dir: &tempfile::TempDir, checkpoints: Maker) -> (Writer, Ledger) {
        writer_keeping(dir, checkpoints, TreeUpkeep::Kept)
    }

    fn writer_keeping(
        dir: &tempfile::TempDir,
        checkpoints: Maker,
        tree: TreeUpkeep,
    ) -> (Writer, Ledger) {
        let mut conn = crate::db::open_rw(&dir.path().join("log.db")).unwrap();
        crate::db::migrate(&mut conn).unwrap();
        Writer::start(
            conn,
            LedgerConfig {
                queue_depth: 64,
                max_batch: 8,
                quarantine_cap: 100,
                parse: ParseContext::default(),
                on_commit: None,
                metrics: None,
                checkpoints,
                tree,
            },
        )
    }

    fn body(key: &str, student: &str) -> String {
        format!(
            r#"{{"event":"masterdata.student.registered","event_id":"{key}","version":"1.0","timestamp":1700000000,"payload":{{"jodo_student_id":"{student}","student":{{"identifier":"{student}","grade":{{"code":"G","name":"G"}},"academic_year_start":2024,"academic_year_end":2025}}}}}}"#
        )
    }

    fn reject(body: &str) -> Reject {
        Reject {
            source: "jodo".into(),
            received_at: 1,
            http_status: 409,
            code: "conflict".into(),
            reason: "conflict".into(),
            authenticated: true,
            headers: serde_json::Map::new(),
            body: body.as_bytes().to_vec(),
            body_truncated: false,
        }
    }

    fn delivery(body: &str) -> Delivery {
        match sources::parse(Source::Jodo, body.as_bytes(), &ParseContext::default()) {
            Ok(Parsed::Delivery(d)) => d,
            other => panic!("{other:?}"),
        }
    }

    async fn append(ledger: &Ledger, key: &str, student: &str) -> AppendOutcome {
        let b = body(key, student);
        let appended = ledger
            .append(delivery(&b), Bytes::from(b.clone()), reject(&b))
            .await
            .unwrap();
        appended.outcome
    }

    /// Appends through a connection of its own, as another process would.
    fn append_elsewhere(dir: &tempfile::TempDir, key: &str) {
        let mut conn = crate::db::open_rw(&dir.path().join("log.db")).unwrap();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let mut tail = log::tail(&tx).unwrap();
        let b = body(key, "elsewhere");
        append_delivery(&tx, &mut tail, &delivery(&b), b.as_bytes(), 5).unwrap();
        tx.commit().unwrap();
    }

    /// The tree recomputed from the log's rows, and the one stored.
    fn trees(dir: &tempfile::TempDir) -> (merkle::MemoryHashes, u64, merkle::Hash) {
        let conn = crate::db::open_ro(&dir.path().join("log.db")).unwrap();
        let mut want = merkle::MemoryHashes::new();
        for row in tree::leaves_after(&conn, 0, u64::MAX, u64::MAX).unwrap() {
            want.push(&row.leaf);
        }
        let size = tree::size(&conn).unwrap();
        let root = tree::stored_root(&conn, size).unwrap();
        // Every stored hash, not only those a root reads.
        let indexes: Vec<u64> = (0..merkle::stored_hash_count(size)).collect();
        let all = tree::SqlHashes::new(&conn);
        assert_eq!(
            merkle::StoredHashes::read(&all, &indexes).unwrap(),
            want.stored()
        );
        (want, size, root)
    }

    #[tokio::test]
    async fn the_writers_tree_equals_the_recomputed_one_across_batches_duplicates_another_process_and_a_readmit(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (w, ledger) = writer(&dir, Maker::unsigned("registrar/test"));
        // Concurrent deliveries: several batches.
        let outcomes = futures::future::join_all((0..30).map(|i| {
            let ledger = ledger.clone();
            async move { append(&ledger, &format!("e{i}"), "s").await }
        }))
        .await;
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, AppendOutcome::Appended { .. })));
        // A retry and a conflicting body add no leaf.
        assert!(matches!(
            append(&ledger, "e3", "s").await,
            AppendOutcome::Duplicate { .. }
        ));
        assert!(matches!(
            append(&ledger, "e3", "other").await,
            AppendOutcome::Conflict { .. }
        ));
        // Another process appends between two batches: the writer's kept
        // tail is stale, and read again.
        append_elsewhere(&dir, "x1");
        assert_eq!(
            append(&ledger, "e30", "s").await,
            AppendOutcome::Appended { seq: 32 }
        );
        // A readmission appends through the writer's other path.
        let b = body("q1", "s");
        let kept = ledger.quarantine(reject(&b)).await.unwrap();
        let (id, _) = kept.unwrap();
        assert_eq!(
            ledger.readmit(id, true, JodoKeys::default()).await.unwrap(),
            Readmitted::Appended { seq: 33 }
        );
        assert_eq!(
            append(&ledger, "e31", "s").await,
            AppendOutcome::Appended { seq: 34 }
        );
        let made = ledger.checkpoint().await.unwrap();
        w.shutdown().await;
        let (want, size, root) = trees(&dir);
        assert_eq!((size, want.leaves()), (34, 34));
        assert_eq!(root, want.root());
        assert_eq!(made.checkpoint().root, want.root());
    }

    #[tokio::test]
    async fn the_writer_builds_the_tree_of_a_log_made_before_it_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (w, ledger) = writer(&dir, Maker::unsigned("registrar/test"));
        for i in 0..40 {
            append(&ledger, &format!("e{i}"), "s").await;
        }
        w.shutdown().await;
        let (built, _, _) = trees(&dir);
        {
            let conn = crate::db::open_rw(&dir.path().join("log.db")).unwrap();
            conn.execute_batch(
                "DROP TRIGGER tree_hashes_no_delete; DELETE FROM tree_hashes;
                 CREATE TRIGGER tree_hashes_no_delete BEFORE DELETE ON tree_hashes
                 BEGIN SELECT RAISE(ABORT, 'append-only'); END;",
            )
            .unwrap();
            assert_eq!(tree::size(&conn).unwrap(), 0);
        }
        let (w, ledger) = writer(&dir, Maker::unsigned("registrar/test"));
        // Answered once the tree is built: the writer serves after it.
        assert_eq!(
            append(&ledger, "e40", "s").await,
            AppendOutcome::Appended { seq: 41 }
        );
        w.shutdown().await;
        let (again, size, root) = trees(&dir);
        assert_eq!(size, 41);
        assert_eq!(&again.stored()[..built.stored().len()], built.stored());
        assert_eq!(root, again.root());
    }

    #[tokio::test]
    async fn a_writer_without_the_tree_stores_no_leaf_and_the_next_start_adds_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let (w, ledger) =
            writer_keeping(&dir, Maker::unsigned("registrar/test"), TreeUpkeep::Skipped);
        for i in 0..12 {
            append(&ledger, &format!("e{i}"), "s").await;
        }
        assert!(matches!(
            ledger.checkpoint().await,
            Err(CheckpointError::TreeNotKept)
        ));
        w.shutdown().await;
        {
            let conn = crate::db::open_rw(&dir.path().join("log.db")).unwrap();
            assert_eq!(log::head(&conn).unwrap().seq, 12);
            assert_eq!(tree::size(&conn).unwrap(), 0);
        }
        let (w, ledger) = writer(&dir, Maker::unsigned("registrar/test"));
        assert_eq!(
            append(&ledger, "e12", "s").await,
            AppendOutcome::Appended { seq: 13 }
        );
        let made = ledger.checkpoint().await.unwrap();
        w.shutdown().await;
        let (want, size, root) = trees(&dir);
        assert_eq!((size, want.leaves()), (13, 13));
        assert_eq!(root, want.root());
        assert_eq!(made.checkpoint().root, want.root());
    }

    #[tokio::test]
    async fn a_checkpoint_on_demand_is_new_only_when_the_head_moved_and_opens_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = note::SigningKey::from_seed("registrar/test", &[4; 32]).unwrap();
        let verifier = key.verifier();
        let maker = Maker {
            signer: Some(Arc::new(key)),
            dir: Some(dir.path().join("published")),
            ..Maker::unsigned("registrar/test")
        };
        let (w, ledger) = writer(&dir, maker);
        // The first is made even of the empty log.
        let empty = ledger.checkpoint().await.unwrap();
        assert!(matches!(&empty, Made::New(c) if c.size == 0 && c.root == merkle::EMPTY_ROOT));
        for i in 0..5 {
            append(&ledger, &format!("e{i}"), "s").await;
        }
        let Made::New(five) = ledger.checkpoint().await.unwrap() else {
            panic!("the head moved");
        };
        assert_eq!(
            ledger.checkpoint().await.unwrap(),
            Made::Unchanged(five.clone())
        );
        w.shutdown().await;
        let (want, _, _) = trees(&dir);
        assert_eq!(five.size, 5);
        assert_eq!(five.root, want.root());
        assert!(five.signed);
        let opened = note::open(five.note.as_bytes(), &verifier).unwrap();
        assert_eq!(
            (opened.origin.as_str(), opened.size, opened.root),
            ("registrar/test", 5, want.root())
        );
        // Published: the newest, and one file per size.
        let published = dir.path().join("published");
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(published.join("checkpoint")), five.note);
        assert_eq!(read(checkpoints::file_of(&published, 5)), five.note);
        assert_eq!(
            read(checkpoints::file_of(&published, 0)),
            empty.checkpoint().note
        );
    }

    #[tokio::test]
    async fn without_a_key_checkpoints_are_made_unsigned_and_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let maker = Maker::unsigned("registrar/test");
        assert_eq!(maker.signing(), checkpoints::Signing::Unsigned);
        let (w, ledger) = writer(&dir, maker);
        append(&ledger, "e0", "s").await;
        let made = ledger.checkpoint().await.unwrap();
        w.shutdown().await;
        let c = made.checkpoint();
        assert!(!c.signed);
        assert_eq!(
            note::Checkpoint::parse(&c.note).unwrap(),
            note::Checkpoint::new("registrar/test", 1, c.root).unwrap()
        );
        assert!(
            !c.note.contains('\u{2014}'),
            "no signature line: {}",
            c.note
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_makes_a_checkpoint_after_each_interval_only_when_the_head_moved() {
        const INTERVAL: Duration = Duration::from_secs(60);
        let dir = tempfile::tempdir().unwrap();
        let (w, ledger) = writer(&dir, Maker::unsigned("registrar/test"));
        let timer = CheckpointTimer::start(ledger.clone(), INTERVAL);
        let ticks = timer.ticks();
        // Whatever the timer has asked by now is done once a request queued
        // after it is answered. Waited for on this thread (not awaited), so
        // the paused clock cannot run on to the timer by itself meanwhile.
        let settle = || async {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            futures::executor::block_on(ledger.maintain(Box::new(|_| Ok(())))).unwrap();
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        };
        // Appended by another connection, for the same reason.
        for i in 0..3 {
            append_elsewhere(&dir, &format!("x{i}"));
        }
        let conn = crate::db::open_ro(&dir.path().join("log.db")).unwrap();
        let sizes = || -> Vec<i64> {
            let mut stmt = conn
                .prepare("SELECT size FROM checkpoints ORDER BY size")
                .unwrap();
            let rows = stmt.query_map([], |r| r.get(0)).unwrap();
            rows.map(Result::unwrap).collect()
        };
        tokio::time::advance(INTERVAL - Duration::from_secs(1)).await;
        settle().await;
        assert_eq!(*ticks.borrow(), 0);
        assert_eq!(sizes(), Vec::<i64>::new(), "none before the interval");
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        assert_eq!(*ticks.borrow(), 1);
        assert_eq!(sizes(), vec![3]);
        // The head did not move: the next interval makes none.
        tokio::time::advance(INTERVAL).await;
        settle().await;
        assert_eq!(*ticks.borrow(), 2);
        assert_eq!(sizes(), vec![3]);
        append_elsewhere(&dir, "x3");
        tokio::time::advance(INTERVAL - Duration::from_secs(1)).await;
        settle().await;
        assert_eq!((*ticks.borrow(), sizes()), (2, vec![3]));
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        assert_eq!((*ticks.borrow(), sizes()), (3, vec![3, 4]));
        let (want, _, _) = trees(&dir);
        let newest = checkpoints::newest(&conn).unwrap().unwrap();
        assert_eq!((newest.size, newest.root), (4, want.root()));
        timer.stop();
        w.shutdown().await;
    }
}
