//! What a backup of a large log costs, and what it costs a writer appending
//! meanwhile: ignored (a measurement, not a check; its asserts only check
//! that each copy is the log it was taken from):
//!
//! ```text
//! cargo test --test backup_cost -- --ignored --nocapture
//! BACKUP_COST_N=1000000 BACKUP_COST_ROUNDS=5 cargo test --test backup_cost -- --ignored --nocapture
//! ```
//!
//! Writes a log of N deliveries of ~600 bytes through `log::append` in
//! transactions of 512 (as tests/tree_cost.rs does), then runs a writer
//! flat out, as the server's does: transactions of [`BATCH`] appends,
//! committed with `synchronous=NORMAL`, then the WAL fsynced, with PASSIVE
//! checkpoints once a second on a thread of their own. Each commit's time
//! (append, commit, fsync) is recorded:
//! - with nothing else running (the baseline);
//! - while `registrar backup`'s copy runs (the online backup API,
//!   [`PAGES_PER_STEP`] pages a step, from one held snapshot);
//! - while `VACUUM INTO` makes the same copy (the alternative).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use registrar::log::backup::{self, PAGES_PER_STEP};
use registrar::log::{self, NewEntry};
use rusqlite::Connection;

/// The writer's transactions: a batch of deliveries, as group commit makes.
const BATCH: usize = 32;

/// How many commits the baseline makes.
const BASELINE_COMMITS: usize = 2_000;

/// Rounds of the two copies, interleaved.
fn rounds() -> usize {
    std::env::var("BACKUP_COST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn n() -> usize {
    std::env::var("BACKUP_COST_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// A student event of about 600 bytes, unique by `i`.
fn body(i: usize) -> String {
    format!(
        r#"{{"event":"masterdata.student.registered","event_id":"evt-{i:012}","version":"1.0","timestamp":{},"payload":{{"jodo_student_id":"student-{i:09}","student":{{"identifier":"ID{i:09}","custom_identifier":"CUST-{i:09}","collector_code":null,"grade":{{"code":"M1BLUE","name":"Montessori 1"}},"academic_year_start":2024,"academic_year_end":2025,"primary_contact_number":"9876543210","primary_contact_email":"parent-{i}@example.com","notes":[{{"key":"registration_number","value":"REG{i:09}"}},{{"key":"house","value":"blue"}}]}}}}}}"#,
        1_700_000_000 + i
    )
}

/// Appends deliveries `from..to` in transactions of `tx_size`, returning
/// each transaction's time (appends, commit and the WAL's fsync).
fn append(conn: &mut Connection, wal: &Path, from: usize, to: usize, tx_size: usize) -> Duration {
    let started = Instant::now();
    let tx = conn.transaction().unwrap();
    let mut tail = log::tail(&tx).unwrap();
    for i in from..to.min(from + tx_size) {
        let (key, body) = (format!("evt-{i:012}"), body(i));
        let entry = NewEntry {
            source: "jodo",
            event_type: "masterdata.student.registered",
            event_version: "1.0",
            dedupe_key: &key,
            subject: None,
            occurred_at: 1_700_000_000 + i as i64,
            received_at: i as i64,
            body: body.as_bytes(),
        };
        log::append(&tx, &mut tail, &entry).unwrap();
    }
    tx.commit().unwrap();
    std::fs::File::open(wal).unwrap().sync_data().unwrap();
    started.elapsed()
}

/// Commit times' summary: count, p50, p99, max in ms.
fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    format!(
        "{} commits of {BATCH}, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*times.last().unwrap())
    )
}

/// Runs the writer on `conn` until `stop` (or `limit` commits), from
/// delivery `next` on; returns its commit times and the next delivery.
fn writer(
    conn: &mut Connection,
    wal: &Path,
    mut next: usize,
    stop: &AtomicBool,
    limit: usize,
) -> (Vec<Duration>, usize) {
    let mut times = Vec::new();
    while !stop.load(Ordering::Relaxed) && times.len() < limit {
        times.push(append(conn, wal, next, usize::MAX, BATCH));
        next += BATCH;
    }
    (times, next)
}

/// PASSIVE checkpoints once a second until `stopped` disconnects, as the
/// server's checkpointer runs.
fn checkpointer(path: PathBuf, stopped: Receiver<()>) {
    let conn = registrar::db::open_rw(&path).unwrap();
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_secs(1)) {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .unwrap();
    }
}

/// The server's two connections on the log, open from the first phase to
/// the last as in a running server (closing the last connection to a log
/// folds its WAL in and deletes it, which a server never does between two
/// copies): the writer's, and the checkpointer's thread.
struct Server {
    path: PathBuf,
    wal: PathBuf,
    writer: Connection,
    next: usize,
    stop_checkpoints: Option<Sender<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(path: &Path, next: usize) -> Server {
        let writer = registrar::db::open_rw(path).unwrap();
        writer.pragma_update(None, "synchronous", "NORMAL").unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        let (stop, stopped) = channel();
        let checkpointer = {
            let path = path.to_path_buf();
            std::thread::spawn(move || checkpointer(path, stopped))
        };
        Server {
            path: path.to_path_buf(),
            wal: backup::companions(path)[0].clone(),
            writer,
            next,
            stop_checkpoints: Some(stop),
            checkpointer: Some(checkpointer),
        }
    }

    /// Runs `copy` while the writer appends (at most `limit` commits);
    /// returns the writer's commit times and the copy's own report.
    fn under_writer<T: Send>(
        &mut self,
        limit: usize,
        copy: impl FnOnce(&Path) -> T + Send,
    ) -> (Vec<Duration>, T) {
        let stop = AtomicBool::new(false);
        let (conn, wal, next, path) = (&mut self.writer, &self.wal, self.next, &self.path);
        let (times, out, next) = std::thread::scope(|s| {
            let w = s.spawn(|| writer(conn, wal, next, &stop, limit));
            let out = copy(path);
            // The copy's end stops an unlimited writer; a limited one (the
            // baseline) makes all its commits.
            if limit == usize::MAX {
                stop.store(true, Ordering::Relaxed);
            }
            let (times, next) = w.join().unwrap();
            (times, out, next)
        });
        self.next = next;
        (times, out)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop_checkpoints.take());
        if let Some(t) = self.checkpointer.take() {
            let _ = t.join();
        }
    }
}

/// The head of the copy at `path`, verified.
fn verified(path: &Path) -> u64 {
    let conn = registrar::db::open_ro(path).unwrap();
    let v = log::verify::verify(&conn, &log::verify::Options::default()).unwrap();
    v.head_seq
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn a_backup_of_a_large_log_under_a_steady_writer() {
    let n = n();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    {
        let mut conn = registrar::db::open_rw(&path).unwrap();
        registrar::db::migrate(&mut conn).unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        let wal = backup::companions(&path)[0].clone();
        let started = Instant::now();
        let mut i = 0;
        while i < n {
            append(&mut conn, &wal, i, n, 512);
            i += 512;
        }
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        println!(
            "log: {n} events, {:.0} MB, written in {:.1} s",
            size as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    // Alone: the copy with no writer.
    let alone = backup::backup(&path, &dir.path().join("alone.db"), false).unwrap();
    assert_eq!(alone.head.seq, n as u64);
    println!(
        "backup alone: {:.2} s, {} pages in {} steps of {PAGES_PER_STEP}, longest step {:.1} ms",
        alone.elapsed.as_secs_f64(),
        alone.pages,
        alone.steps,
        alone.longest_step.as_secs_f64() * 1e3
    );
    std::fs::remove_file(dir.path().join("alone.db")).unwrap();

    let mut server = Server::start(&path, n);
    let (times, ()) = server.under_writer(BASELINE_COMMITS, |_| ());
    println!("writer alone:                {}", summary(times));
    for round in 1..=rounds() {
        println!("round {round}:");
        let dest = dir.path().join(format!("online{round}.db"));
        let before = server.next as u64;
        let (times, copied) = server.under_writer(usize::MAX, |path| {
            backup::backup(path, &dest, false).unwrap()
        });
        assert!(copied.head.seq >= before);
        assert_eq!(verified(&dest), copied.head.seq);
        std::fs::remove_file(&dest).unwrap();
        println!(
            "  writer during backup API:  {} | the copy: {:.2} s, {} steps, longest {:.1} ms",
            summary(times),
            copied.elapsed.as_secs_f64(),
            copied.steps,
            copied.longest_step.as_secs_f64() * 1e3
        );

        let dest = dir.path().join(format!("vacuum{round}.db"));
        let before = server.next as u64;
        let (times, took) = server.under_writer(usize::MAX, |path| {
            let started = Instant::now();
            let conn = registrar::db::open_ro(path).unwrap();
            conn.execute("VACUUM INTO ?1", [dest.to_str().unwrap()])
                .unwrap();
            std::fs::File::open(&dest).unwrap().sync_all().unwrap();
            started.elapsed()
        });
        assert!(verified(&dest) >= before);
        std::fs::remove_file(&dest).unwrap();
        println!(
            "  writer during VACUUM INTO: {} | the copy: {:.2} s",
            summary(times),
            took.as_secs_f64()
        );
    }
}
