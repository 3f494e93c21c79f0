//! The hash chain: the audit head, `registrar verify` (with and without a pin)
//! against tampered logs, and the append-only triggers.

use std::path::Path;

use rusqlite::Connection;

use crate::fixtures::*;
use crate::helpers::*;
use crate::ingest::events;

/// What a `registrar` run printed and how it exited.
#[derive(Debug)]
pub(crate) struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `registrar` binary with `args`, with every `REGISTRAR_*` variable
/// of the test's own environment removed and `env` added. Runs off the async
/// threads, so a server in the same test keeps serving meanwhile.
pub(crate) async fn registrar(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRAR_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .args(&args)
            .envs(env)
            .env("RUST_LOG", "warn")
            .output()
            .expect("running registrar");
        CliOutput {
            code: out.status.code().expect("an exit code"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("the CLI task")
}

/// `registrar verify --db PATH [--pin PIN]`.
pub(crate) async fn verify(db: &Path, pin: Option<&str>) -> CliOutput {
    let db = db.to_str().unwrap();
    match pin {
        None => registrar(&["verify", "--db", db], &[]).await,
        Some(pin) => registrar(&["verify", "--db", db, "--pin", pin], &[]).await,
    }
}

/// The chain hash, written here from the documented encoding v1 (not with
/// the crate's own function), so a change to the encoding fails the tests.
pub(crate) fn link_hash(
    prev: &[u8],
    seq: u64,
    source: &str,
    received_at: i64,
    body_hash: &[u8],
) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    h.update(b"registrar.chain.v1\0");
    h.update(prev);
    h.update(&seq.to_be_bytes());
    h.update(&[source.len() as u8]);
    h.update(source.as_bytes());
    h.update(&received_at.to_be_bytes());
    h.update(body_hash);
    h.finalize().as_bytes().to_vec()
}

/// One row's chain fields.
pub(crate) struct Link {
    pub seq: u64,
    pub source: String,
    pub received_at: i64,
    pub body: Vec<u8>,
    pub body_hash: Vec<u8>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Rewrites row `seq`'s body as `forged` and recomputes every hash from
/// there to the head, the tree's too (with the crate's own code, as a
/// forger could), and drops the checkpoints it cannot sign again: a forgery
/// nothing in the file can tell. `rows` are the log's rows from seq 1.
/// Returns the new chain hashes, from `seq` on.
pub(crate) fn forge_and_rechain(
    conn: &Connection,
    rows: &[Link],
    seq: u64,
    forged: &str,
) -> Vec<Vec<u8>> {
    let start = (seq - 1) as usize;
    let mut prev = rows[start - 1].hash.clone();
    let mut hashes = Vec::new();
    for row in &rows[start..] {
        let body = if row.seq == seq {
            forged.as_bytes().to_vec()
        } else {
            row.body.clone()
        };
        let body_hash = blake3::hash(&body).as_bytes().to_vec();
        let hash = link_hash(&prev, row.seq, &row.source, row.received_at, &body_hash);
        conn.execute(
            "UPDATE events SET body = ?1, body_hash = ?2, prev_hash = ?3, hash = ?4 WHERE seq = ?5",
            (&body, &body_hash, &prev, &hash, row.seq as i64),
        )
        .unwrap();
        hashes.push(hash.clone());
        prev = hash;
    }
    rebuild_tree(conn);
    hashes
}

/// Replaces the log's tree with the one its rows give now, and drops every
/// checkpoint, around their triggers.
pub(crate) fn rebuild_tree(conn: &Connection) {
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS tree_hashes_no_delete; DROP TRIGGER IF EXISTS checkpoints_no_delete;
         DELETE FROM tree_hashes; DELETE FROM checkpoints;",
    )
    .unwrap();
    let mut tree = registrar::log::merkle::MemoryHashes::new();
    for row in links(conn) {
        let body_hash: [u8; 32] = row.body_hash.as_slice().try_into().unwrap();
        tree.push(&registrar::log::tree::leaf(
            row.seq,
            &row.source,
            row.received_at,
            &body_hash,
        ));
    }
    for (idx, hash) in tree.stored().iter().enumerate() {
        conn.execute(
            "INSERT INTO tree_hashes (idx, hash) VALUES (?1, ?2)",
            (idx as i64, &hash[..]),
        )
        .unwrap();
    }
}

pub(crate) fn links(conn: &Connection) -> Vec<Link> {
    let mut stmt = conn
        .prepare(
            "SELECT seq, source, received_at, body, body_hash, prev_hash, hash
             FROM events ORDER BY seq",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(Link {
                seq: r.get::<_, i64>(0)? as u64,
                source: r.get(1)?,
                received_at: r.get(2)?,
                body: r.get(3)?,
                body_hash: r.get(4)?,
                prev_hash: r.get(5)?,
                hash: r.get(6)?,
            })
        })
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// A server with three events: two Jodo, one Toolzz.
pub(crate) async fn app_with_three_events() -> TestApp {
    let app = spawn_app().await;
    assert_eq!(accepted(app.post_jodo(SEED_DROPPED).await).await, 1);
    let b = jodo_student("registered", "evt-audit-2", "s2", 1655448964);
    assert_eq!(accepted(app.post_jodo(&b).await).await, 2);
    assert_eq!(accepted(app.post_toolzz(SEED_ENROLLMENT).await).await, 3);
    app
}

/// Stops the server and opens its database with the triggers dropped, as an
/// attacker with file access would.
pub(crate) async fn stop_and_open_for_tampering(app: TestApp) -> (tempfile::TempDir, Connection) {
    let db = app.db_path.clone();
    let (dir, _) = app.stop().await;
    let conn = registrar::db::open_rw(&db).unwrap();
    conn.execute_batch("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;")
        .unwrap();
    (dir, conn)
}

#[tokio::test]
async fn the_audit_head_starts_empty_and_follows_each_append() {
    let app = spawn_app().await;
    let head = app.get_json("/v1/audit/head").await;
    assert_eq!(head["seq"], 0);
    assert_eq!(head["hash"], "0".repeat(64));

    assert_eq!(accepted(app.post_jodo(SEED_DROPPED).await).await, 1);
    assert_eq!(accepted(app.post_toolzz(SEED_ENROLLMENT).await).await, 2);
    let rows = links(&app.conn());
    let head = app.get_json("/v1/audit/head").await;
    assert_eq!(head["seq"], 2);
    assert_eq!(head["hash"], hex::encode(&rows[1].hash));

    // The chain recomputes from the documented encoding.
    let mut prev = vec![0u8; 32];
    for row in &rows {
        assert_eq!(row.body_hash, blake3::hash(&row.body).as_bytes().to_vec());
        assert_eq!(row.prev_hash, prev, "seq {}", row.seq);
        let expected = link_hash(&prev, row.seq, &row.source, row.received_at, &row.body_hash);
        assert_eq!(row.hash, expected, "seq {}", row.seq);
        prev = row.hash.clone();
    }
    let status = app.get_json("/v1/admin/status").await;
    assert_eq!(status["log"], head);
    app.stop().await;
}

#[tokio::test]
async fn verify_passes_on_an_untouched_log_and_prints_the_head() {
    let app = app_with_three_events().await;
    let head = app.get_json("/v1/audit/head").await;
    // While the server runs, too.
    let out = verify(&app.db_path, None).await;
    let expected = format!("ok: 3 events, head 3 {}", head["hash"].as_str().unwrap());
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, expected.as_str()),
        "{out:?}"
    );
    let db = app.db_path.clone();
    let _dir = app.stop().await;
    let out = verify(&db, None).await;
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, expected.as_str()),
        "{out:?}"
    );
}

#[tokio::test]
async fn verify_passes_on_an_empty_log() {
    let app = spawn_app().await;
    let db = app.db_path.clone();
    let _dir = app.stop().await;
    let out = verify(&db, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("ok: 0 events, head 0 {}", "0".repeat(64))
    );
}

#[tokio::test]
async fn verify_catches_an_edited_body() {
    let app = app_with_three_events().await;
    let db = app.db_path.clone();
    let (_dir, conn) = stop_and_open_for_tampering(app).await;
    let edited = SEED_DROPPED.replace("student_1234", "student_9999");
    let n = conn
        .execute(
            "UPDATE events SET body = ?1 WHERE seq = 1",
            [edited.as_bytes()],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(conn);
    let out = verify(&db, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "FAILED: seq 1: the body does not match its body_hash"
    );
}

#[tokio::test]
async fn verify_catches_an_edited_body_whose_body_hash_was_updated_too() {
    let app = app_with_three_events().await;
    let db = app.db_path.clone();
    let (_dir, conn) = stop_and_open_for_tampering(app).await;
    let edited = jodo_student("registered", "evt-audit-2", "s2-edited", 1655448964);
    let body_hash = blake3::hash(edited.as_bytes()).as_bytes().to_vec();
    conn.execute(
        "UPDATE events SET body = ?1, body_hash = ?2 WHERE seq = 2",
        (edited.as_bytes(), &body_hash),
    )
    .unwrap();
    drop(conn);
    let out = verify(&db, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "FAILED: seq 2: the stored hash does not match the recomputed hash"
    );
}

#[tokio::test]
async fn verify_catches_a_deleted_row() {
    let app = app_with_three_events().await;
    let db = app.db_path.clone();
    let (_dir, conn) = stop_and_open_for_tampering(app).await;
    assert_eq!(
        conn.execute("DELETE FROM events WHERE seq = 2", [])
            .unwrap(),
        1
    );
    drop(conn);
    let out = verify(&db, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "FAILED: seq 2 is missing (the next row has seq 3)"
    );
}

#[tokio::test]
async fn verify_catches_a_deleted_first_row() {
    let app = app_with_three_events().await;
    let db = app.db_path.clone();
    let (_dir, conn) = stop_and_open_for_tampering(app).await;
    conn.execute("DELETE FROM events WHERE seq = 1", [])
        .unwrap();
    drop(conn);
    let out = verify(&db, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "FAILED: seq 1 is missing (the next row has seq 2)"
    );
}

#[tokio::test]
async fn verify_catches_a_swapped_pair_of_rows() {
    let app = app_with_three_events().await;
    let db = app.db_path.clone();
    let (_dir, conn) = stop_and_open_for_tampering(app).await;
    conn.execute_batch(
        "UPDATE events SET seq = -2 WHERE seq = 2;
         UPDATE events SET seq = 2 WHERE seq = 3;
         UPDATE events SET seq = 3 WHERE seq = -2;",
    )
    .unwrap();
    let rows = events(&conn);
    assert_eq!(
        (rows[1].source.as_str(), rows[2].source.as_str()),
        ("toolzz", "jodo"),
        "the rows were swapped"
    );
    drop(conn);
    let out = verify(&db, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "FAILED: seq 2: prev_hash does not match the hash of seq 1"
    );
}

#[tokio::test]
async fn verify_pin_passes_for_a_recorded_head_after_later_appends() {
    let app = app_with_three_events().await;
    let pinned = app.get_json("/v1/audit/head").await;
    let pin = format!("3:{}", pinned["hash"].as_str().unwrap());
    let c = jodo_student("registered", "evt-audit-4", "s4", 1655448965);
    assert_eq!(accepted(app.post_jodo(&c).await).await, 4);
    let db = app.db_path.clone();
    let _dir = app.stop().await;
    let out = verify(&db, Some(&pin)).await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("ok: 4 events, head 4 "), "{out:?}");
    assert_eq!(
        lines[1],
        format!(
            "pin ok: seq 3 still has {}",
            pinned["hash"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn verify_pin_fails_when_the_pinned_row_was_rewritten_with_a_recomputed_chain() {
    let app = app_with_three_events().await;
    let rows = links(&app.conn());
    let pin = format!("2:{}", hex::encode(&rows[1].hash));
    let db = app.db_path.clone();
    let (_dir, conn) = stop_and_open_for_tampering(app).await;
    // Rewrite seq 2 and recompute every hash from there: a consistent forgery.
    let forged = jodo_student("registered", "evt-audit-2", "forged", 1655448964);
    let new_hashes = forge_and_rechain(&conn, &rows, 2, &forged);
    // The columns derived from the body too, or verify's re-parse would
    // already tell.
    conn.execute("UPDATE events SET subject = 'forged' WHERE seq = 2", [])
        .unwrap();
    drop(conn);
    // Without a pin the forgery is self-consistent...
    let out = verify(&db, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("ok: 3 events, head 3 "), "{out:?}");
    assert!(!out.stdout.contains(&hex::encode(&rows[2].hash)));
    // ...the recorded head catches it.
    let out = verify(&db, Some(&pin)).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!(
            "FAILED: pin 2: the log holds hash {} there, not the pinned one",
            hex::encode(&new_hashes[0])
        )
    );
}

#[tokio::test]
async fn verify_pin_fails_when_the_tail_was_cut_off() {
    let app = app_with_three_events().await;
    let head = app.get_json("/v1/audit/head").await;
    let pin = format!("3:{}", head["hash"].as_str().unwrap());
    let db = app.db_path.clone();
    let (_dir, conn) = stop_and_open_for_tampering(app).await;
    conn.execute("DELETE FROM events WHERE seq = 3", [])
        .unwrap();
    // The tree cut with it, or verify names the leaf past the head.
    rebuild_tree(&conn);
    drop(conn);
    // A cut tail is a consistent shorter log...
    let out = verify(&db, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("ok: 2 events, head 2 "), "{out:?}");
    // ...which the pin catches.
    let out = verify(&db, Some(&pin)).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "FAILED: pin 3: the log ends at seq 2, before the pinned seq"
    );
}

#[tokio::test]
async fn verify_refuses_a_malformed_pin() {
    let app = app_with_three_events().await;
    let db = app.db_path.clone();
    let _dir = app.stop().await;
    for pin in ["3", "x:00", "3:abcd", &format!("3:{}", "zz".repeat(32))] {
        let out = verify(&db, Some(pin)).await;
        assert_eq!(out.code, 2, "{pin}: {out:?}");
        assert!(out.stderr.contains("--pin"), "{pin}: {out:?}");
        assert!(out.stdout.is_empty(), "{pin}: {out:?}");
    }
}

#[tokio::test]
async fn the_log_triggers_refuse_update_and_delete() {
    let app = app_with_three_events().await;
    let conn = app.conn();
    let before = links(&conn);
    let err = conn
        .execute("UPDATE events SET body = x'00' WHERE seq = 1", [])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the event log is append-only: UPDATE refused"),
        "{err}"
    );
    let err = conn
        .execute("UPDATE events SET seq = 10 WHERE seq = 3", [])
        .unwrap_err();
    assert!(err.to_string().contains("UPDATE refused"), "{err}");
    let err = conn
        .execute("DELETE FROM events WHERE seq = 2", [])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the event log is append-only: DELETE refused"),
        "{err}"
    );
    let err = conn.execute("DELETE FROM events", []).unwrap_err();
    assert!(err.to_string().contains("DELETE refused"), "{err}");
    let after = links(&conn);
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((b.seq, &b.body, &b.hash), (a.seq, &a.body, &a.hash));
    }
    drop(conn);
    let out = verify(&app.db_path, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    // The server still appends after the refused statements.
    let d = jodo_student("registered", "evt-audit-4", "s4", 1655448965);
    assert_eq!(accepted(app.post_jodo(&d).await).await, 4);
    app.stop().await;
}
