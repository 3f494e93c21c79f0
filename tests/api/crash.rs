//! kill -9 of the real binary while the projector applies a batch and while
//! a rebuild runs: after a restart the projections equal a fresh rebuild
//! from the log, and every acknowledged delivery is in the log.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::StreamExt;
use registrar::projection::rebuild;
use registrar::projection::store::{self, StoreState};
use registrar::sources::ParseContext;
use rusqlite::OpenFlags;

use crate::fixtures::*;
use crate::helpers::*;
use crate::support::dump;

fn log_head(dir: &Path) -> u64 {
    let conn = registrar::db::open_ro(&dir.join("registrar.db")).unwrap();
    registrar::log::head(&conn).unwrap().seq
}

/// Deliveries in flight at once while a test waits for a kill to land.
const IN_FLIGHT: usize = 256;

/// Events the projector is behind the log, by the server's own status, when
/// a test kills it to find it behind: more than it applies in the
/// millisecond the kill takes to land.
const BEHIND: u64 = 100;

/// The live projection store's path in `dir`.
fn store_path(dir: &Path) -> PathBuf {
    dir.join("registrar.projections.db")
}

/// The state row of the store file at `path`, as a killed server left it:
/// read-only, so nothing is checkpointed or changed before the restart.
/// `None` without a file or a readable row.
fn store_state(path: &Path) -> Option<StoreState> {
    let conn =
        rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    store::state(&conn).ok().flatten()
}

/// The server's `/v1/admin/status` now.
async fn status(base: &str) -> serde_json::Value {
    let r = reqwest::get(format!("{base}/v1/admin/status"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Waits until the restarted server's projections hold the whole log, then
/// compares them with a fresh rebuild of the same log.
async fn assert_equal_to_a_fresh_rebuild(dir: &Path, proc: &BinaryServer) {
    let head = log_head(dir);
    // A build after the kill may take longer than one read waits: retry.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/admin/status?min_seq={head}", proc.base))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break r.json::<serde_json::Value>().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "not caught up: {}",
            r.text().await.unwrap()
        );
    };
    assert_eq!(status["projections"]["last_seq"], head, "{status}");
    let live = PathBuf::from(status["projections"]["file"].as_str().unwrap());
    let fresh = dir.join("fresh.db");
    rebuild::build(
        &fresh,
        &dir.join("registrar.db"),
        ParseContext::default(),
        1,
        |_| {},
    )
    .expect("a fresh rebuild");
    let omit = ["generation", "complete"];
    let live = dump(&rusqlite::Connection::open(live).unwrap(), &omit);
    let fresh = dump(&rusqlite::Connection::open(&fresh).unwrap(), &omit);
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &live {
        assert_eq!(
            rows, &fresh[table],
            "table {table} differs from a fresh rebuild"
        );
    }
}

/// A history touching every Jodo entity, with late and repeated students.
fn body(i: usize) -> String {
    let student = format!("S{}", i % 97);
    match i % 4 {
        0 => jodo_student(
            "registered",
            &format!("e{i}"),
            &student,
            1_000 + (i as i64 % 500),
        ),
        1 => jodo_student(
            "dropped",
            &format!("e{i}"),
            &student,
            1_000 + (i as i64 % 700),
        ),
        2 => jodo_payment(
            "added",
            &format!("e{i}"),
            &format!("P{i}"),
            Some(&student),
            "10.50",
            2_000 + i as i64,
        ),
        _ => jodo_payment(
            "updated",
            &format!("e{i}"),
            &format!("P{}", i - 1),
            Some(&student),
            "11",
            3_000 + i as i64,
        ),
    }
}

#[tokio::test]
async fn a_kill_during_a_projector_batch_leaves_projections_equal_to_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let proc = spawn_binary(dir.path(), Stdio::null()).await;
    // Deliveries kept in flight until the kill, so the writer is still
    // committing when it lands. (All sent at once instead, the server
    // could commit the last of them, and the projector catch up, before
    // this side had read the answers it waits for.)
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let sending = {
        let (client, base, acked) = (reqwest::Client::new(), proc.base.clone(), acked.clone());
        tokio::spawn(
            futures::stream::iter(0..)
                .map(move |i| {
                    let (client, base) = (client.clone(), base.clone());
                    async move {
                        let r = post_signed_jodo(&client, &base, body(i)).await.ok()?;
                        let v: serde_json::Value = r.json().await.ok()?;
                        v["seq"].as_u64()
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .for_each(move |seq| {
                    acked.lock().unwrap().extend(seq);
                    async {}
                }),
        )
    };
    // Kill once 1,500 are acknowledged and the projector is far enough
    // behind that it cannot catch up before the kill lands.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = status(&proc.base).await;
        let behind = status["projections"]["lag_events"].as_u64().unwrap();
        if acked.lock().unwrap().len() >= 1_500 && behind >= BEHIND {
            break;
        }
        assert!(Instant::now() < deadline, "never {BEHIND} behind: {status}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    proc.kill9();
    sending.abort();
    let _ = sending.await;
    let head = log_head(dir.path());
    assert!(
        acked.lock().unwrap().iter().all(|s| *s <= head),
        "an acknowledged delivery was lost"
    );
    // The precondition, from the files the kill left: the store held less
    // than the log, so the restart has events to catch up.
    let projected = store_state(&store_path(dir.path()))
        .expect("the live store's state")
        .last_seq;
    assert!(
        projected < head,
        "the kill landed with the projector caught up ({projected} of {head}): nothing was tested"
    );
    let proc = spawn_binary(dir.path(), Stdio::null()).await;
    assert_equal_to_a_fresh_rebuild(dir.path(), &proc).await;
    proc.kill9();
}

#[tokio::test]
async fn a_kill_during_a_rebuild_leaves_projections_equal_to_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    // A log with no projection store: the server builds one at start.
    {
        let mut conn = registrar::db::open_rw(&dir.path().join("registrar.db")).unwrap();
        registrar::db::migrate(&mut conn).unwrap();
        let tx = conn.transaction().unwrap();
        let mut tail = registrar::log::tail(&tx).unwrap();
        for i in 0..20_000 {
            let b = body(i);
            let d = match registrar::sources::parse(
                registrar::event::Source::Jodo,
                b.as_bytes(),
                &ParseContext::default(),
            ) {
                Ok(registrar::sources::Parsed::Delivery(d)) => d,
                other => panic!("{other:?}"),
            };
            registrar::ledger::append_delivery(&tx, &mut tail, &d, b.as_bytes(), i as i64).unwrap();
        }
        tx.commit().unwrap();
    }
    let proc = spawn_binary(dir.path(), Stdio::null()).await;
    // Kill once the build has loaded its first events into its file (it
    // loads 20,000, then folds them).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = status(&proc.base).await;
        let p = &status["projections"];
        assert!(p["file"].is_null(), "the build finished first: {status}");
        if p["rebuilding"].as_u64() >= Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "no build started: {status}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    proc.kill9();
    // The precondition, from the files the kill left: the build's file,
    // not marked complete, and none put in place as the store.
    let building = dir.path().join("registrar.projections.db.g0");
    assert!(building.exists(), "no build's file: was it put in place?");
    assert!(
        !store_state(&building).is_some_and(|s| s.complete),
        "the build had finished when the kill landed"
    );
    assert!(!store_path(dir.path()).exists(), "a store was put in place");
    let proc = spawn_binary(dir.path(), Stdio::null()).await;
    assert_equal_to_a_fresh_rebuild(dir.path(), &proc).await;
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".g"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "a cut-short build was left: {leftovers:?}"
    );
    proc.kill9();
}

/// Posts `n` deliveries one after another; returns the last seq.
async fn deliver(base: &str, n: usize) -> u64 {
    let client = reqwest::Client::new();
    let mut last = 0;
    for i in 0..n {
        last = accepted(post_signed_jodo(&client, base, body(i)).await.unwrap()).await;
    }
    last
}

/// The server's status once its projections hold `seq`.
async fn status_at(base: &str, seq: u64) -> serde_json::Value {
    let r = reqwest::Client::new()
        .get(format!("{base}/v1/admin/status?min_seq={seq}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A binary server in a fresh directory that has taken `n` deliveries and
/// projected them; returns the last seq too.
async fn serving(n: usize) -> (tempfile::TempDir, BinaryServer, u64) {
    let dir = tempfile::tempdir().unwrap();
    let proc = spawn_binary(dir.path(), Stdio::null()).await;
    let seq = deliver(&proc.base, n).await;
    status_at(&proc.base, seq).await;
    (dir, proc, seq)
}

/// Asserts a restarted server kept its store: at `seq` with no rebuild.
async fn assert_kept_without_a_rebuild(proc: &BinaryServer, seq: u64) {
    let status = status_at(&proc.base, seq).await;
    assert_eq!(status["projections"]["last_seq"], seq, "{status}");
    assert_eq!(status["projections"]["rebuilds"], 0, "{status}");
}

fn marker(dir: &Path) -> PathBuf {
    registrar::projection::files::marker_path(&dir.join("registrar.projections.db"))
}

/// What the machine going down leaves beside a deferred store: the marker
/// of the boot that ended.
fn leave_a_marker_of_another_boot(dir: &Path) {
    std::fs::write(marker(dir), "00000000-0000-0000-0000-000000000000").unwrap();
}

#[tokio::test]
async fn a_power_loss_with_projection_writes_not_on_disk_has_the_store_rebuilt_at_the_next_start() {
    let (dir, proc, _) = serving(120).await;
    // While the server runs, the marker names this boot.
    let boot = registrar::projection::files::boot_id().expect("a boot id");
    assert_eq!(std::fs::read_to_string(marker(dir.path())).unwrap(), boot);
    proc.kill9();
    leave_a_marker_of_another_boot(dir.path());
    // And a store whose pages on disk disagree with its position (a row
    // from nowhere here). Trusted, it would stay wrong forever.
    let store = rusqlite::Connection::open(dir.path().join("registrar.projections.db")).unwrap();
    let torn = store
        .execute("UPDATE students SET status = 'torn' WHERE rowid = 1", [])
        .unwrap();
    assert_eq!(torn, 1);
    drop(store);
    let proc = spawn_binary(dir.path(), Stdio::null()).await;
    assert_equal_to_a_fresh_rebuild(dir.path(), &proc).await;
    assert_eq!(std::fs::read_to_string(marker(dir.path())).unwrap(), boot);
    proc.kill9();
}

#[tokio::test]
async fn a_kill_on_this_boot_keeps_the_projection_store_and_catches_it_up() {
    let (dir, proc, seq) = serving(40).await;
    proc.kill9();
    // The page cache kept every write: the store is trusted, not rebuilt.
    let proc = spawn_binary(dir.path(), Stdio::null()).await;
    assert_kept_without_a_rebuild(&proc, seq).await;
    proc.kill9();
}

#[tokio::test]
async fn a_clean_stop_flushes_the_projection_store_and_removes_its_marker() {
    let (dir, proc, seq) = serving(40).await;
    assert!(marker(dir.path()).exists(), "no marker while running");
    proc.terminate();
    assert!(
        !marker(dir.path()).exists(),
        "the marker outlived a clean stop"
    );
    // With no marker, even a start on another boot trusts the store.
    let proc = spawn_binary(dir.path(), Stdio::null()).await;
    assert_kept_without_a_rebuild(&proc, seq).await;
    proc.kill9();
}

#[tokio::test]
async fn an_offline_rebuild_after_a_power_loss_keeps_the_file_it_built() {
    let (dir, proc, seq) = serving(40).await;
    proc.kill9();
    leave_a_marker_of_another_boot(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["rebuild", "--db"])
        .arg(dir.path().join("registrar.db"))
        .output()
        .expect("running registrar rebuild");
    assert!(out.status.success(), "{out:?}");
    assert!(
        !marker(dir.path()).exists(),
        "the marker outlived the rebuild"
    );
    // The built file is the store now: a server starts on it, no rebuild.
    let proc = spawn_binary(dir.path(), Stdio::null()).await;
    assert_kept_without_a_rebuild(&proc, seq).await;
    proc.kill9();
}
