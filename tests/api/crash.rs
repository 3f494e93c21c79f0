//! kill -9 of the real binary while the projector applies a batch and while
//! a rebuild runs: after a restart the projections equal a fresh rebuild
//! from the log, and every acknowledged delivery is in the log.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use registrar::projection::rebuild;
use registrar::sources::ParseContext;

use crate::fixtures::*;
use crate::helpers::*;
use crate::support::dump;

fn log_head(dir: &Path) -> u64 {
    let conn = registrar::db::open_ro(&dir.join("registrar.db")).unwrap();
    registrar::log::head(&conn).unwrap().seq
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
    let client = reqwest::Client::new();
    // Many deliveries in flight; the kill lands while the projector is
    // behind, in the middle of a batch.
    let mut acked = BTreeSet::new();
    let mut sends: FuturesUnordered<_> = (0..2_000)
        .map(|i| {
            let (client, base) = (client.clone(), proc.base.clone());
            async move {
                let r = post_signed_jodo(&client, &base, body(i)).await.ok()?;
                let v: serde_json::Value = r.json().await.ok()?;
                v["seq"].as_u64()
            }
        })
        .collect();
    while let Some(seq) = sends.next().await {
        if let Some(seq) = seq {
            acked.insert(seq);
        }
        if acked.len() == 1_500 {
            break;
        }
    }
    proc.kill9();
    drop(sends);
    let head = log_head(dir.path());
    assert!(
        acked.iter().all(|s| *s <= head),
        "an acknowledged delivery was lost"
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
    // Kill once the build has started writing its file.
    let building = dir.path().join("registrar.projections.db.g0");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !building.exists() {
        assert!(Instant::now() < deadline, "no build started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    proc.kill9();
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
