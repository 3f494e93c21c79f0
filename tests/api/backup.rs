//! `registrar backup` and `registrar restore`, end to end through the
//! binary: a backup taken while deliveries are posted is a verified prefix
//! of the log; a restored backup is served, its projections rebuilt; a
//! restore refuses a log a server holds, or one it would shorten, unless
//! forced; a backup refuses an existing destination.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audit::{links, registrar, CliOutput};
use crate::fixtures::*;
use crate::helpers::*;

/// `registrar backup --db DB DEST [--force]`.
async fn backup(db: &Path, dest: &Path, force: bool) -> CliOutput {
    let (db, dest) = (db.to_str().unwrap(), dest.to_str().unwrap());
    let mut args = vec!["backup", "--db", db, dest];
    if force {
        args.push("--force");
    }
    registrar(&args, &[]).await
}

/// `registrar restore SRC --db DB [--force]`.
async fn restore(src: &Path, db: &Path, force: bool) -> CliOutput {
    let (src, db) = (src.to_str().unwrap(), db.to_str().unwrap());
    let mut args = vec!["restore", src, "--db", db];
    if force {
        args.push("--force");
    }
    registrar(&args, &[]).await
}

/// How long a restarted server may take to build its projection store of a
/// few events (a slow CI machine, not the build itself).
const BUILD_WAIT: Duration = Duration::from_secs(60);

/// The seq and hex hash of `ok: backup of N events, head SEQ HASH`,
/// asserting N is SEQ.
fn printed_head(out: &CliOutput) -> (u64, String) {
    assert_eq!(out.code, 0, "{out:?}");
    let line = out.stdout.trim();
    let rest = line
        .strip_prefix("ok: backup of ")
        .unwrap_or_else(|| panic!("not a backup's verdict: {line:?}"));
    let words: Vec<&str> = rest.split(' ').collect();
    assert_eq!(words.len(), 5, "{line:?}");
    assert_eq!((words[1], words[2]), ("events,", "head"), "{line:?}");
    let n: u64 = words[0].parse().unwrap();
    let seq: u64 = words[3].parse().unwrap();
    assert_eq!(n, seq, "{line:?}");
    assert_eq!(words[4].len(), 64, "{line:?}");
    (seq, words[4].to_string())
}

/// The log's head at `db`, with its hash in hex.
fn head_of(db: &Path) -> (u64, String) {
    let conn = registrar::db::open_ro(db).unwrap();
    let head = registrar::log::head(&conn).unwrap();
    (head.seq, hex::encode(head.hash))
}

/// Posts `n` distinct student registrations named `{tag}-{i}`.
async fn post_students(app: &TestApp, tag: &str, n: usize) -> u64 {
    let mut last = 0;
    for i in 0..n {
        let id = format!("{tag}-{i}");
        last = app
            .accept_jodo(&jodo_student(
                "registered",
                &format!("evt-{id}"),
                &id,
                1_700_000_000,
            ))
            .await;
    }
    last
}

/// Waits until the server's projections hold the log to `seq` (a restarted
/// server with no store builds one first: reads answer 503 until then, and
/// each read waits up to its min_seq wait), for up to `within`.
async fn caught_up(app: &TestApp, seq: u64, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let r = app
            .client
            .get(app.url(&format!("/v1/admin/status?min_seq={seq}")))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            return r.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "not caught up to {seq}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_deliveries_are_posted_is_a_verified_prefix_of_the_log_whose_printed_head_matches(
) {
    let app = spawn_app().await;
    post_students(&app, "before", 50).await;
    let acknowledged = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (started, mut running) = tokio::sync::watch::channel(0u64);
    let poster = {
        let (client, base) = (app.client.clone(), app.base.clone());
        let (acknowledged, done) = (Arc::clone(&acknowledged), Arc::clone(&done));
        tokio::spawn(async move {
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) {
                let id = format!("during-{i}");
                let body = jodo_student("registered", &format!("evt-{id}"), &id, 1_700_000_000);
                let seq = accepted(post_signed_jodo(&client, &base, body).await.unwrap()).await;
                acknowledged.store(seq, Ordering::Relaxed);
                let _ = started.send(seq);
                i += 1;
            }
            i
        })
    };
    // The backup starts once deliveries are flowing: everything
    // acknowledged by then must be in it.
    running.wait_for(|seq| *seq >= 60).await.unwrap();
    let before = acknowledged.load(Ordering::Relaxed);
    let dest = app.db_path.with_file_name("backup.db");
    let out = backup(&app.db_path, &dest, false).await;
    done.store(true, Ordering::Relaxed);
    let posted_during = poster.await.unwrap();
    let (seq, hash) = printed_head(&out);
    assert!(seq >= before, "the backup ends at {seq}, before {before}");
    assert!(posted_during > 10, "{posted_during}");
    let log = app.conn();
    let backup_conn = registrar::db::open_ro(&dest).unwrap();
    let rows = |conn| {
        links(conn)
            .into_iter()
            .map(|l| (l.seq, l.received_at, l.body, l.hash))
            .collect::<Vec<_>>()
    };
    let (log_rows, copied) = (rows(&log), rows(&backup_conn));
    assert_eq!(copied.len() as u64, seq);
    assert!(
        copied[..] == log_rows[..seq as usize],
        "the backup is the log's first {seq} events"
    );
    assert_eq!(hex::encode(&log_rows[seq as usize - 1].3), hash);
    // The copy is one file: no WAL beside it for a restore to miss.
    assert!(!dest.with_file_name("backup.db-wal").exists());
    let verified = crate::audit::verify(&dest, None).await;
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified
            .stdout
            .starts_with(&format!("ok: {seq} events, head {seq} {hash}")),
        "{verified:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_backup_refuses_an_existing_destination_unless_forced() {
    let app = spawn_app().await;
    post_students(&app, "s", 3).await;
    let dest = app.db_path.with_file_name("backup.db");
    std::fs::write(&dest, b"yesterday's backup").unwrap();
    let refused = backup(&app.db_path, &dest, false).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("already exists"), "{refused:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"yesterday's backup");
    let forced = backup(&app.db_path, &dest, true).await;
    assert_eq!(printed_head(&forced), head_of(&app.db_path));
    app.stop().await;
}

#[tokio::test]
async fn a_restore_refuses_a_log_held_by_a_running_server() {
    let app = spawn_app().await;
    post_students(&app, "s", 3).await;
    let dest = app.db_path.with_file_name("backup.db");
    printed_head(&backup(&app.db_path, &dest, false).await);
    post_students(&app, "after", 2).await;
    let head = head_of(&app.db_path);
    for force in [false, true] {
        let refused = restore(&dest, &app.db_path, force).await;
        assert_eq!(refused.code, 2, "{refused:?}");
        assert!(refused.stderr.contains("running server"), "{refused:?}");
        assert_eq!(head_of(&app.db_path), head);
    }
    // Still the server's: it keeps appending to the same file.
    let seq = post_students(&app, "later", 1).await;
    assert_eq!(head_of(&app.db_path).0, seq);
    app.stop().await;
}

#[tokio::test]
async fn a_restore_refuses_a_longer_log_without_force_and_replaces_it_with_force() {
    let app = spawn_app().await;
    post_students(&app, "kept", 3).await;
    let dest = app.db_path.with_file_name("backup.db");
    let backed_up = printed_head(&backup(&app.db_path, &dest, false).await);
    post_students(&app, "lost", 2).await;
    let (dir, config) = app.stop().await;
    let db = config.db_path.clone();
    let longer = head_of(&db);
    assert_eq!(longer.0, 5);
    let refused = restore(&dest, &db, false).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("holds 5 events, the backup 3"),
        "{refused:?}"
    );
    assert_eq!(head_of(&db), longer);
    let forced = restore(&dest, &db, true).await;
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(
        forced
            .stdout
            .starts_with(&format!("ok: restored 3 events, head 3 {}", backed_up.1)),
        "{forced:?}"
    );
    assert_eq!(head_of(&db), backed_up);
    let app = start(dir, config).await;
    caught_up(&app, 3, BUILD_WAIT).await;
    assert_eq!(app.get("/v1/students/kept-2").await.status(), 200);
    assert_eq!(app.get("/v1/students/lost-0").await.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn a_restored_backup_is_served_whole_with_its_projections_rebuilt_not_the_old_logs() {
    // The backup of one log restored over another, shorter one: the old
    // log's projection store is behind the backup's head, so only its
    // removal keeps its students from being served beside the backup's.
    let source = spawn_app().await;
    let mut seqs = Vec::new();
    for i in 0..8 {
        let id = format!("restored-{i}");
        seqs.push(
            source
                .accept_jodo(&jodo_student(
                    "registered",
                    &format!("evt-{id}"),
                    &id,
                    1_700_000_000,
                ))
                .await,
        );
    }
    let payment = jodo_payment(
        "added",
        "evt-pay",
        "pay-1",
        Some("restored-0"),
        "1500.50",
        1_700_000_100,
    );
    seqs.push(source.accept_jodo(&payment).await);
    let dest = source.db_path.with_file_name("backup.db");
    let (seq, _) = printed_head(&backup(&source.db_path, &dest, false).await);
    assert_eq!(seq, 9);
    let other = spawn_app().await;
    post_students(&other, "other", 2).await;
    let (dir, config) = other.stop().await;
    let refused = restore(&dest, &config.db_path, false).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("another event at seq 2"),
        "{refused:?}"
    );
    let forced = restore(&dest, &config.db_path, true).await;
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(forced.stdout.contains("rebuilds it"), "{forced:?}");
    let app = start(dir, config).await;
    caught_up(&app, seq, BUILD_WAIT).await;
    for s in seqs {
        let event = app.get_json(&format!("/v1/events/{s}")).await;
        assert_eq!(event["seq"], s, "{event}");
    }
    assert_eq!(app.get("/v1/events/10").await.status(), 404);
    for i in 0..8 {
        assert_eq!(
            app.get(&format!("/v1/students/restored-{i}"))
                .await
                .status(),
            200
        );
    }
    assert_eq!(app.get("/v1/payments/pay-1").await.status(), 200);
    for i in 0..2 {
        assert_eq!(
            app.get(&format!("/v1/students/other-{i}")).await.status(),
            404,
            "a student of the replaced log"
        );
    }
    source.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_restore_refuses_a_log_whose_server_keeps_its_projection_store_elsewhere() {
    // The store's lock is not where restore looks for it: the log's own
    // lock is what tells the server is there.
    let app = spawn_app_with(|s| {
        s.projections_path = s.db_path.with_file_name("elsewhere.projections.db");
    })
    .await;
    post_students(&app, "s", 3).await;
    let dest = app.db_path.with_file_name("backup.db");
    printed_head(&backup(&app.db_path, &dest, false).await);
    let head = head_of(&app.db_path);
    let (src, db) = (dest.to_str().unwrap(), app.db_path.to_str().unwrap());
    let refused = registrar(&["restore", src, "--db", db, "--force"], &[]).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("registrar.db.lock"), "{refused:?}");
    assert_eq!(head_of(&app.db_path), head);
    app.stop().await;
}

#[tokio::test]
async fn a_restore_of_a_backup_with_a_fault_exits_1_and_changes_nothing() {
    let app = spawn_app().await;
    post_students(&app, "s", 3).await;
    let dest = app.db_path.with_file_name("backup.db");
    printed_head(&backup(&app.db_path, &dest, false).await);
    let (dir, config) = app.stop().await;
    let tampered = rusqlite::Connection::open(&dest).unwrap();
    tampered
        .execute_batch(
            "DROP TRIGGER events_no_update;
             UPDATE events SET body = CAST('{}' AS BLOB) WHERE seq = 2;",
        )
        .unwrap();
    drop(tampered);
    let before = head_of(&config.db_path);
    let store = registrar::config::default_projections_path(&config.db_path);
    assert!(store.exists());
    for force in [false, true] {
        let refused = restore(&dest, &config.db_path, force).await;
        assert_eq!(refused.code, 1, "{refused:?}");
        assert!(refused.stdout.starts_with("FAILED"), "{refused:?}");
        assert!(refused.stdout.contains("seq 2"), "{refused:?}");
    }
    assert_eq!(head_of(&config.db_path), before);
    assert!(store.exists(), "the projection store is kept");
    drop(dir);
}

/// Deliveries the measurement below posts at once, each client in turn.
const LOAD_CLIENTS: usize = 8;

/// Latencies' summary: count, p50, p99, max in ms.
fn latencies(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    format!(
        "{} deliveries, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*times.last().unwrap())
    )
}

/// Posts from [`LOAD_CLIENTS`] clients at once, each `per_client`
/// deliveries or, with `until`, until it is set; returns every delivery's
/// time to its 200.
async fn load(
    app: &TestApp,
    tag: &str,
    per_client: usize,
    until: Option<Arc<AtomicBool>>,
) -> Vec<Duration> {
    let mut clients = Vec::new();
    for c in 0..LOAD_CLIENTS {
        let (client, base, tag, until) = (
            app.client.clone(),
            app.base.clone(),
            tag.to_string(),
            until.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for i in 0.. {
                let more = match &until {
                    Some(flag) => !flag.load(Ordering::Relaxed),
                    None => i < per_client,
                };
                if !more {
                    break;
                }
                let id = format!("{tag}-{c}-{i}");
                let body = jodo_student("registered", &format!("evt-{id}"), &id, 1_700_000_000);
                let started = Instant::now();
                accepted(post_signed_jodo(&client, &base, body).await.unwrap()).await;
                times.push(started.elapsed());
            }
            times
        }));
    }
    let mut times = Vec::new();
    for c in clients {
        times.extend(c.await.unwrap());
    }
    times
}

/// The server's ingest latency while `registrar backup` copies a large log
/// (BACKUP_LOAD_N events, 200,000 by default), against the same load with
/// no backup. A measurement, not a check:
///
/// ```text
/// cargo test --test api backup::ingest_latency -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn ingest_latency_while_a_backup_of_a_large_log_runs() {
    let n: usize = std::env::var("BACKUP_LOAD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = registrar::config::Settings::new(dir.path().join("registrar.db"));
    settings.jodo_secret = Some(JODO_SECRET.into());
    // The log written through the library, as a server would have.
    {
        let mut conn = registrar::db::open_rw(&settings.db_path).unwrap();
        registrar::db::migrate(&mut conn).unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        for from in (0..n).step_by(512) {
            let tx = conn.transaction().unwrap();
            let mut tail = registrar::log::tail(&tx).unwrap();
            for i in from..(from + 512).min(n) {
                let id = format!("seed-{i}");
                let key = format!("evt-{id}");
                let body = jodo_student("registered", &key, &id, 1_700_000_000);
                let entry = registrar::log::NewEntry {
                    source: "jodo",
                    event_type: "masterdata.student.registered",
                    event_version: "1.0",
                    dedupe_key: &key,
                    subject: Some(&id),
                    occurred_at: 1_700_000_000,
                    received_at: i as i64,
                    body: body.as_bytes(),
                };
                registrar::log::append(&tx, &mut tail, &entry).unwrap();
            }
            tx.commit().unwrap();
        }
    }
    let config = settings.validate().unwrap();
    let db = config.db_path.clone();
    let app = start(dir, config).await;
    // A million events take minutes to build in a debug build.
    caught_up(&app, n as u64, Duration::from_secs(900)).await;
    let size = std::fs::metadata(&db).unwrap().len();
    println!("log: {n} events, {:.0} MB", size as f64 / 1e6);
    for round in 1..=2 {
        let base = load(&app, &format!("base{round}"), 250, None).await;
        println!("round {round}, no backup:     {}", latencies(base));
        let dest = db.with_file_name(format!("backup{round}.db"));
        let done = Arc::new(AtomicBool::new(false));
        let copy = {
            let (done, db, dest) = (Arc::clone(&done), db.clone(), dest.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let out = backup(&db, &dest, false).await;
                done.store(true, Ordering::Relaxed);
                (out, started.elapsed())
            })
        };
        let times = load(&app, &format!("during{round}"), 0, Some(done)).await;
        let (out, took) = copy.await.unwrap();
        let (seq, _) = printed_head(&out);
        assert!(seq >= n as u64);
        println!(
            "round {round}, during backup: {} | backup of {seq} events in {:.2} s ({})",
            latencies(times),
            took.as_secs_f64(),
            out.stderr.trim()
        );
        std::fs::remove_file(&dest).unwrap();
    }
    app.stop().await;
}
