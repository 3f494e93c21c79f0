//! What keeping the tree costs an append: ignored (a measurement, not a
//! check), run in release on purpose:
//!
//! ```text
//! cargo test --release --test tree_cost -- --ignored --nocapture
//! TREE_COST_N=20000 valgrind --tool=callgrind target/release/deps/tree_cost-* --ignored --exact VARIANT
//! ```
//!
//! Each variant appends N deliveries of ~600 bytes to a fresh log in
//! transactions of 512 (the writer's largest batch), `synchronous=NORMAL`
//! as the writer runs, with the statements `log::append` runs: the dedupe
//! lookup and the event's row, then the tree's part, which is what differs:
//!
//! - `none`: no tree (the append as it was before the tree);
//! - `per_hash`: the layout kept, one `tree_hashes` row per stored hash
//!   (1 + trailing_ones(n) rows for leaf n, two on average);
//! - `per_leaf`: the alternative, one row per leaf holding its hashes
//!   concatenated;
//! - `log_append`: `log::append` itself, which should cost what `per_hash`
//!   does.
//!
//! `build_and_verify` times what a log made before the tree costs: building
//! its tree from the log (as the writer does at start) and a verify.

use std::time::Instant;

use registrar::log::merkle::Frontier;
use registrar::log::{self, tree, NewEntry};
use rusqlite::{Connection, OptionalExtension};

const TX: usize = 512;

fn n() -> usize {
    std::env::var("TREE_COST_N")
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    None,
    PerHash,
    PerLeaf,
    LogAppend,
}

fn fresh() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = registrar::db::open_rw(&dir.path().join("log.db")).unwrap();
    registrar::db::migrate(&mut conn).unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch("CREATE TABLE tree_leaves (leaf INTEGER PRIMARY KEY, hashes BLOB NOT NULL)")
        .unwrap();
    (dir, conn)
}

/// The chain hash, as log::chain computes it (private to the crate).
fn link_hash(prev: &[u8; 32], seq: u64, source: &str, at: i64, body_hash: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"registrar.chain.v1\0");
    h.update(prev);
    h.update(&seq.to_be_bytes());
    h.update(&[source.len() as u8]);
    h.update(source.as_bytes());
    h.update(&at.to_be_bytes());
    h.update(body_hash);
    *h.finalize().as_bytes()
}

/// Runs one variant: seconds of CPU (this thread) and of wall time.
fn run(variant: Variant) -> (f64, f64) {
    let (_dir, _conn, cpu, wall) = run_kept(variant);
    (cpu, wall)
}

/// [`run`], keeping the log.
fn run_kept(variant: Variant) -> (tempfile::TempDir, Connection, f64, f64) {
    let n = n();
    let bodies: Vec<String> = (0..n).map(body).collect();
    let (dir, mut conn) = fresh();
    let cpu0 = thread_cpu();
    let wall0 = Instant::now();
    let mut prev = [0u8; 32];
    let mut frontier = Frontier::new();
    let mut i = 0;
    while i < n {
        let tx = conn.transaction().unwrap();
        // Only log::append reads the tail: the others keep their own.
        let mut tail = (variant == Variant::LogAppend).then(|| log::tail(&tx).unwrap());
        for (j, b) in bodies.iter().enumerate().skip(i).take(TX) {
            let key = format!("evt-{j:012}");
            let subject = format!("student-{j:09}");
            let at = 1_700_000_000_000_000 + j as i64;
            if variant == Variant::LogAppend {
                let entry = NewEntry {
                    source: "jodo",
                    event_type: "masterdata.student.registered",
                    event_version: "1.0",
                    dedupe_key: &key,
                    subject: Some(&subject),
                    occurred_at: 1_700_000_000,
                    received_at: at,
                    body: b.as_bytes(),
                };
                log::append(&tx, tail.as_mut().expect("read above"), &entry).unwrap();
                continue;
            }
            let body_hash = *blake3::hash(b.as_bytes()).as_bytes();
            let existing: Option<i64> = tx
                .prepare_cached("SELECT seq FROM events WHERE source = ?1 AND dedupe_key = ?2")
                .unwrap()
                .query_row(("jodo", &key), |r| r.get(0))
                .optional()
                .unwrap();
            assert!(existing.is_none());
            let seq = j as u64 + 1;
            let hash = link_hash(&prev, seq, "jodo", at, &body_hash);
            tx.prepare_cached(
                "INSERT INTO events (seq, source, event_type, event_version, dedupe_key, subject, occurred_at,
                                     received_at, body, body_hash, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .unwrap()
            .execute(rusqlite::params![
                seq as i64,
                "jodo",
                "masterdata.student.registered",
                "1.0",
                &key,
                &subject,
                1_700_000_000i64,
                at,
                b.as_bytes(),
                &body_hash[..],
                &prev[..],
                &hash[..],
            ])
            .unwrap();
            prev = hash;
            match variant {
                Variant::None | Variant::LogAppend => {}
                Variant::PerHash => {
                    let leaf = tree::leaf(seq, "jodo", at, &body_hash);
                    tree::insert(&tx, &frontier.push(&leaf)).unwrap();
                }
                Variant::PerLeaf => {
                    let leaf = tree::leaf(seq, "jodo", at, &body_hash);
                    let hashes = frontier.push(&leaf);
                    let mut row = Vec::with_capacity(32 * hashes.len());
                    for (_, h) in &hashes {
                        row.extend_from_slice(h);
                    }
                    tx.prepare_cached("INSERT INTO tree_leaves (leaf, hashes) VALUES (?1, ?2)")
                        .unwrap()
                        .execute((seq as i64 - 1, &row))
                        .unwrap();
                }
            }
        }
        tx.commit().unwrap();
        i += TX;
    }
    let cpu = thread_cpu() - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    let per = |s: f64| s * 1e6 / n as f64;
    println!(
        "{variant:?}: {n} appends, {:.2} us CPU and {:.2} us wall per append",
        per(cpu),
        per(wall)
    );
    (dir, conn, cpu, wall)
}

/// CPU seconds of this thread (user + system), from /proc.
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn none() {
    run(Variant::None);
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn per_hash() {
    run(Variant::PerHash);
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn per_leaf() {
    run(Variant::PerLeaf);
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn log_append() {
    run(Variant::LogAppend);
}

/// The variants interleaved, three rounds, medians.
#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn interleaved() {
    let variants = [
        Variant::None,
        Variant::PerHash,
        Variant::PerLeaf,
        Variant::LogAppend,
    ];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..3 {
        for (k, &v) in variants.iter().enumerate() {
            cpu[k].push(run(v).0);
        }
    }
    let n = n() as f64;
    for (k, v) in variants.iter().enumerate() {
        let mut c = cpu[k].clone();
        c.sort_by(f64::total_cmp);
        println!("median {v:?}: {:.2} us CPU per append", c[1] * 1e6 / n);
    }
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn build_and_verify() {
    let (_dir, mut conn, _, _) = run_kept(Variant::None);
    let n = n() as u64;
    let per = |s: f64| s * 1e6 / n as f64;
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let mut frontier = Frontier::new();
    while frontier.leaves() < n {
        let tx = conn.transaction().unwrap();
        tree::extend(&tx, &mut frontier, n, 100_000).unwrap();
        tx.commit().unwrap();
    }
    println!(
        "built the tree of {n} events: {:.2} s CPU, {:.2} s wall ({:.2} us CPU per event)",
        thread_cpu() - cpu0,
        wall0.elapsed().as_secs_f64(),
        per(thread_cpu() - cpu0)
    );
    let wall0 = Instant::now();
    let v = registrar::log::verify::verify(&conn, &Default::default()).unwrap();
    assert_eq!((v.tree.leaves, v.tree.stored_leaves), (n, n));
    println!(
        "verify --fast with the tree: {:.2} s wall for {n} events",
        wall0.elapsed().as_secs_f64()
    );
}
