//! The projector: one thread that follows the log into the projection store.
//!
//! The writer wakes it after each commit ([`Projector::committed`]), handing
//! it the events it appended, already parsed; the projector applies them in
//! seq order in large transactions, bounded by [`BATCH_EVENTS`] and
//! [`BATCH_TIME`], storing its position in the same transaction. The store
//! commits without waiting for the disk (`synchronous=NORMAL`, or `OFF`
//! while the server runs: see [`super::files`]): after a crash the projector
//! resumes from the position the store kept, which is exactly the rows it
//! kept. Events it was not handed (after a restart, past [`HANDOFF_EVENTS`]
//! waiting, or appended by another process) it reads from the log and parses
//! ([`super::reparse`]).
//!
//! A write error stops it loudly (logged, `/readyz` fails): it never skips an
//! event. An event that no longer parses (a parser got stricter since it was
//! accepted) is passed over, counted in the store and logged by seq.
//!
//! Rebuilds run beside it, on a thread of their own ([`super::rebuild`]):
//! the projector keeps the live file current while the new one is built,
//! then applies what the new file lacks and swaps it in. Which file it
//! starts on was chosen before it started ([`super::files::open_store`]).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::files::{self, StoreSync};
use super::live::{LiveStore, StoreFile};
use super::rebuild::{self, Built, RebuildError, RebuildReport};
use super::store::{self, Projectable};
use super::ProjectionError;
use crate::event::Sequenced;
use crate::log::LogReader;
use crate::sources::ParseContext;

/// Events applied in one projection transaction at most: bounds the memory
/// of a batch and how long a crash can set the projection back.
pub const BATCH_EVENTS: usize = 8_192;
/// Time one projection transaction runs at most before it commits: bounds
/// how stale a read can be while the projector is busy.
pub const BATCH_TIME: Duration = Duration::from_millis(100);
/// The least time between two projection commits under load. Every commit
/// writes each page it dirtied to the WAL, and consecutive events dirty the
/// same pages (index leaves, the newest history pages): a commit every few
/// events would write those pages again and again. Waiting this long lets
/// one commit take all that arrived meanwhile; at low load the last commit
/// is long past and nothing waits.
pub const MIN_COMMIT_INTERVAL: Duration = Duration::from_millis(10);
/// How long the projector sleeps with nothing to do before it looks at the
/// log's head itself. The writer wakes it after every commit; this only
/// catches appends made by another process (the CLI's `quarantine readmit`
/// beside a running server), at the cost of one indexed query a second.
pub const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Parsed events handed over by the writer and waiting for the projector, at
/// most. Past it the waiting ones are dropped and read back from the log
/// instead: memory stays bounded when the projector falls behind.
pub const HANDOFF_EVENTS: usize = 16_384;
/// Events read from the log per query while applying.
const READ_CHUNK: usize = 1_024;

type RebuildReply = oneshot::Sender<Result<RebuildReport, RebuildError>>;

/// What the projector has been asked to do.
#[derive(Default)]
struct Inbox {
    /// The log's head as last published by the writer.
    head: u64,
    /// Events the writer handed over, in seq order, not applied yet.
    handed: VecDeque<Sequenced>,
    stop: bool,
    /// Waiters for a rebuild (one runs at a time; later requests join it).
    rebuild_waiters: Vec<RebuildReply>,
    rebuild_requested: bool,
    /// A build is running or waiting to be swapped in.
    building: bool,
    /// A finished build, ready to be caught up and swapped in.
    built: Option<Result<Built, ProjectionError>>,
}

/// Settings of the projector.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// The configured store path (`--projections`): the live file at start.
    pub path: PathBuf,
    /// The log file, read with connections of the projector's own.
    pub log_path: PathBuf,
    pub parse: ParseContext,
    /// How the live store's writes reach the disk ([`files::Opened::sync`]).
    pub sync: StoreSync,
}

/// A handle to the projector thread; cheap to clone.
#[derive(Clone)]
pub struct Projector {
    inbox: Arc<(Mutex<Inbox>, Condvar)>,
    live: Arc<LiveStore>,
}

/// Owns the projector thread; [`ProjectorThread::stop`] lets it finish its
/// batch and joins it.
pub struct ProjectorThread {
    handle: Projector,
    thread: Option<JoinHandle<()>>,
}

impl Projector {
    /// Starts the projector over `live`. `writer` is the live file's write
    /// connection when one is usable; without one, a build runs first and
    /// reads answer 503 until it is swapped in.
    pub fn start(
        cfg: ProjectorConfig,
        live: Arc<LiveStore>,
        writer: Option<Connection>,
        log_head: u64,
    ) -> (ProjectorThread, Projector) {
        let inbox = Inbox {
            head: log_head,
            rebuild_requested: writer.is_none(),
            building: writer.is_none(),
            ..Inbox::default()
        };
        let handle = Projector {
            inbox: Arc::new((Mutex::new(inbox), Condvar::new())),
            live,
        };
        let h = handle.clone();
        let thread = std::thread::Builder::new()
            .name("registrar-projector".into())
            .spawn(move || h.run(cfg, writer))
            .expect("spawning the projector thread");
        (
            ProjectorThread {
                handle: handle.clone(),
                thread: Some(thread),
            },
            handle,
        )
    }

    /// The writer committed `events` (in seq order): wake the projector.
    pub fn committed(&self, events: Vec<Sequenced>) {
        let Some(head) = events.last().map(|e| e.seq) else {
            return;
        };
        self.live.log_advanced(head);
        self.with_inbox(|i| {
            i.head = i.head.max(head);
            if i.handed.len() + events.len() > HANDOFF_EVENTS {
                i.handed.clear();
            }
            i.handed.extend(events);
        });
    }

    /// Rebuilds the store into a fresh file; resolves once the new file
    /// serves reads. A request while a rebuild runs joins it.
    pub async fn rebuild(&self) -> Result<RebuildReport, RebuildError> {
        let (tx, rx) = oneshot::channel();
        self.with_inbox(|i| {
            i.rebuild_waiters.push(tx);
            if !i.building {
                i.building = true;
                i.rebuild_requested = true;
            }
        });
        rx.await.map_err(|_| RebuildError::Stopped)?
    }

    /// Resolves once a store serves reads: at once when one does, else by
    /// joining the build in progress (the one at start) or starting one.
    /// Unlike [`Projector::rebuild`], it never builds a second store after
    /// the first: the start's build may finish before this is called.
    pub async fn serving(&self) -> Result<(), RebuildError> {
        let (tx, rx) = oneshot::channel();
        let mut reply = Some(tx);
        self.with_inbox(|i| {
            // Under the inbox's lock: a finished build swapped its file in
            // before it cleared `building`, so one of the two is seen.
            if !i.building && self.live.file().is_some() {
                return;
            }
            if !i.building {
                i.building = true;
                i.rebuild_requested = true;
            }
            i.rebuild_waiters.extend(reply.take());
        });
        if reply.is_some() {
            return Ok(());
        }
        rx.await.map_err(|_| RebuildError::Stopped)?.map(|_| ())
    }

    fn with_inbox(&self, f: impl FnOnce(&mut Inbox)) {
        let (lock, cv) = &*self.inbox;
        f(&mut lock.lock().expect("projector inbox lock"));
        cv.notify_all();
    }

    fn run(self, cfg: ProjectorConfig, writer: Option<Connection>) {
        self.live.update_health(|h| h.running = true);
        let result = self.follow(&cfg, writer);
        if result.is_ok() && cfg.sync == StoreSync::Deferred {
            // A clean stop: the store's writes go to disk and the marker
            // goes. A failed flush leaves the marker, so a power loss
            // before the next start still has the store rebuilt.
            let live = self.live.file();
            if let Err(e) = files::end(&cfg.path, live.as_ref().map(|f| f.path())) {
                tracing::error!(error = %e, "could not flush the projection store at stop");
            }
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "the projector stopped: projections no longer follow the log");
            self.live.update_health(|h| h.failed = Some(e.to_string()));
        }
        self.live.update_health(|h| h.running = false);
        let waiters = std::mem::take(&mut self.inbox.0.lock().expect("inbox").rebuild_waiters);
        for w in waiters {
            let _ = w.send(Err(RebuildError::Stopped));
        }
    }

    /// The projector's loop; returns on stop, or on the first write error.
    fn follow(
        &self,
        cfg: &ProjectorConfig,
        mut writer: Option<Connection>,
    ) -> Result<(), ProjectionError> {
        let log = LogReader::open(&cfg.log_path)?;
        let mut build: Option<JoinHandle<()>> = None;
        // Handed-over events taken from the inbox, not applied yet.
        let mut handed = VecDeque::new();
        let mut last_commit = Instant::now() - MIN_COMMIT_INTERVAL;
        loop {
            // Wait for work: new events, a rebuild to start or adopt, or stop.
            let (head, stop, start_build, built) = {
                let (lock, cv) = &*self.inbox;
                let mut inbox = lock.lock().expect("projector inbox lock");
                loop {
                    let position = self.live.position();
                    let behind = writer.is_some() && inbox.head > position;
                    let start = inbox.rebuild_requested && build.is_none();
                    if inbox.stop || start || inbox.built.is_some() {
                        break;
                    }
                    // Behind, but committed a moment ago: let the next
                    // commit take more events (see MIN_COMMIT_INTERVAL).
                    let settle = MIN_COMMIT_INTERVAL.saturating_sub(last_commit.elapsed());
                    if behind && settle.is_zero() {
                        break;
                    }
                    let wait = if behind { settle } else { IDLE_CHECK };
                    let (next, waited) =
                        cv.wait_timeout(inbox, wait).expect("projector inbox lock");
                    if behind {
                        inbox = next;
                        continue;
                    }
                    inbox = next;
                    if waited.timed_out() {
                        // Appends by another process (the CLI's readmit
                        // beside a running server) wake no one: look.
                        drop(inbox);
                        let head = log.head()?;
                        self.live.log_advanced(head);
                        inbox = lock.lock().expect("projector inbox lock");
                        inbox.head = inbox.head.max(head);
                    }
                }
                let start = inbox.rebuild_requested && build.is_none();
                if start {
                    inbox.rebuild_requested = false;
                }
                if handed.len() + inbox.handed.len() > HANDOFF_EVENTS {
                    handed.clear();
                }
                handed.append(&mut inbox.handed);
                (inbox.head, inbox.stop, start, inbox.built.take())
            };
            if let Some(built) = built {
                build.take().map(|t| t.join());
                // Shared: every waiter hears the same failure.
                let outcome = built
                    .and_then(|b| self.adopt(cfg, &log, &mut writer, b))
                    .map_err(Arc::new);
                let waiters = {
                    let mut inbox = self.inbox.0.lock().expect("inbox");
                    inbox.building = false;
                    std::mem::take(&mut inbox.rebuild_waiters)
                };
                self.live.update_health(|h| h.rebuilding = None);
                match &outcome {
                    Ok(r) => tracing::info!(
                        events = r.events,
                        seconds = r.seconds,
                        events_per_second = r.events_per_second,
                        "rebuilt projections swapped in"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "rebuild failed; the live projections stay")
                    }
                }
                for w in waiters {
                    let _ = w.send(outcome.clone().map_err(RebuildError::Failed));
                }
                continue;
            }
            if start_build {
                self.live.update_health(|h| {
                    h.rebuilding = Some(0);
                    h.rebuilds += 1;
                });
                build = Some(self.spawn_build(cfg));
            }
            if stop {
                // A build under way is abandoned: its file is deleted at the
                // next start, since it was never marked complete.
                return Ok(());
            }
            if let Some(conn) = &mut writer {
                if head > self.live.position() {
                    last_commit = Instant::now();
                    let position = apply_batch(conn, &log, &cfg.parse, head, &mut handed)?;
                    self.live.projected(position);
                }
            }
        }
    }

    /// Builds a fresh file on its own thread; reports to the inbox.
    fn spawn_build(&self, cfg: &ProjectorConfig) -> JoinHandle<()> {
        let me = self.clone();
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("registrar-rebuild".into())
            .spawn(move || {
                let live = me.live.file().map(|f| f.path().to_path_buf());
                let result = rebuild::build_next(
                    &cfg.path,
                    live.as_deref(),
                    &cfg.log_path,
                    cfg.parse,
                    |done| me.live.update_health(|h| h.rebuilding = Some(done)),
                );
                me.with_inbox(|i| i.built = Some(result));
            })
            .expect("spawning the rebuild thread")
    }

    /// Catches a built file up with the log and swaps it in.
    fn adopt(
        &self,
        cfg: &ProjectorConfig,
        log: &LogReader,
        writer: &mut Option<Connection>,
        built: Built,
    ) -> Result<RebuildReport, ProjectionError> {
        let started = Instant::now();
        let mut built = built;
        if self.live.file().is_none() {
            // Nothing reads a store yet (the build at start): the new file
            // can take the configured name at once.
            files::rename(&built.path, &cfg.path)?;
            built.path = cfg.path.clone();
        }
        let mut conn = files::open_writer(&built.path, cfg.sync)?;
        let mut position = store::position(&conn)?;
        loop {
            let head = log.head()?;
            if position >= head {
                break;
            }
            position = apply_batch(&mut conn, log, &cfg.parse, head, &mut VecDeque::new())?;
        }
        // The old writer goes first; readers of the old file finish on it.
        *writer = Some(conn);
        self.live.swap(StoreFile::new(built.path.clone()), position);
        let mut report = built.report;
        report.last_seq = position;
        report.catch_up_seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}

impl ProjectorThread {
    /// Lets the projector finish its batch, then joins it.
    pub fn stop(mut self) {
        self.handle.with_inbox(|i| i.stop = true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Applies the events after the store's position, up to `head`, in one
/// transaction bounded by [`BATCH_EVENTS`] and [`BATCH_TIME`]: those in
/// `handed` as they are, the others read from the log and parsed. Returns
/// the new position.
pub fn apply_batch(
    conn: &mut Connection,
    log: &LogReader,
    ctx: &ParseContext,
    head: u64,
    handed: &mut VecDeque<Sequenced>,
) -> Result<u64, ProjectionError> {
    let started = Instant::now();
    let tx = conn.transaction()?;
    let first = store::position(&tx)? + 1;
    let mut next = first;
    let mut skipped = 0u64;
    while next <= head && ((next - first) as usize) < BATCH_EVENTS && started.elapsed() < BATCH_TIME
    {
        // Handed-over events the store already has (applied from the log
        // after a drop) are stale.
        while handed.front().is_some_and(|e| e.seq < next) {
            handed.pop_front();
        }
        if let Some(e) = handed.front().filter(|e| e.seq == next) {
            store::apply(&tx, &Projectable::handed(e))?;
            handed.pop_front();
            next += 1;
            continue;
        }
        // Not handed over: read up to the next handed-over one from the log.
        let until = handed.front().map_or(head, |e| e.seq - 1);
        let room = (BATCH_EVENTS - (next - first) as usize)
            .min(READ_CHUNK)
            .min((until + 1 - next) as usize);
        let events = log.read_after(next - 1, room)?;
        if events.is_empty() {
            break;
        }
        for e in &events {
            // Events come gapless and in order: asserted where they are used.
            if e.seq != next {
                return Err(ProjectionError::Invariant(format!(
                    "the log gave seq {} where {next} was expected",
                    e.seq
                )));
            }
            match super::reparse(e, ctx) {
                Some(event) => store::apply(&tx, &Projectable::logged(e, &event))?,
                None => skipped += 1,
            }
            next += 1;
        }
    }
    let last = next - 1;
    if last >= first {
        store::advance(&tx, first, last, skipped)?;
    }
    tx.commit()?;
    Ok(last.max(first - 1))
}
