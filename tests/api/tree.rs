//! The log's Merkle tree and its checkpoints, end to end: the tree the
//! server keeps equals the one recomputed from the log across restarts, a
//! readmission by the CLI and an upgrade; a signed checkpoint after the
//! interval; `registrar key generate`; `registrar verify` on the tree and
//! the checkpoints; a key file that cannot be read refuses the start.

use std::path::Path;
use std::time::Duration;

use registrar::config::read_signing_key;
use registrar::log::checkpoints::Maker;
use registrar::log::merkle::{self, MemoryHashes};
use registrar::log::{self, note, tree};
use rusqlite::Connection;

use crate::audit::{forge_and_rechain, links, registrar, verify, CliOutput};
use crate::fixtures::*;
use crate::helpers::*;

/// The tree recomputed from the log's rows alone (RFC 9162 through the
/// crate's merkle core, which tests/merkle_independent.rs checks against
/// the RFC written out).
fn recomputed(conn: &Connection) -> MemoryHashes {
    let mut t = MemoryHashes::new();
    for row in links(conn) {
        let body_hash: [u8; 32] = row.body_hash.as_slice().try_into().unwrap();
        t.push(&tree::leaf(
            row.seq,
            &row.source,
            row.received_at,
            &body_hash,
        ));
    }
    t
}

/// Every stored hash, asserting dense indexes.
fn stored(conn: &Connection) -> Vec<merkle::Hash> {
    let mut stmt = conn
        .prepare("SELECT idx, hash FROM tree_hashes ORDER BY idx")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .unwrap();
    rows.enumerate()
        .map(|(i, r)| {
            let (idx, hash) = r.unwrap();
            assert_eq!(idx, i as i64, "dense stored indexes");
            hash.try_into().unwrap()
        })
        .collect()
}

/// Asserts the stored tree is the recomputed one, over `events` events.
fn assert_tree_is_the_logs(db: &Path, events: u64) {
    let conn = registrar::db::open_ro(db).unwrap();
    let want = recomputed(&conn);
    assert_eq!(want.leaves(), events);
    assert_eq!(stored(&conn), want.stored());
    assert_eq!(log::tail(&conn).unwrap().root(), Some(want.root()));
}

/// The ids of the quarantined deliveries, in order.
fn quarantine_ids(db: &Path) -> Vec<i64> {
    let conn = registrar::db::open_ro(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT id FROM quarantine ORDER BY id")
        .unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

#[tokio::test]
async fn the_tree_stays_the_logs_across_duplicates_a_cli_readmit_and_a_restart() {
    let app = spawn_app().await;
    for i in 0..5 {
        let b = jodo_student(
            "registered",
            &format!("e-{i}"),
            &format!("S{i}"),
            1_700_000_000,
        );
        app.accept_jodo(&b).await;
    }
    // A retry adds no leaf.
    let b = jodo_student("registered", "e-1", "S1", 1_700_000_000);
    let r = app.post_jodo(&b).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.log_head(), 5);
    // A delivery refused for its signature, readmitted by the CLI while the
    // server runs: another connection appends under the writer.
    let b = jodo_student("registered", "e-q", "SQ", 1_700_000_000);
    let r = app
        .post_jodo_with(&b, &[("X-Jodo-Signature", "sha256=00")])
        .await;
    assert_eq!(r.status(), 401);
    let id = *quarantine_ids(&app.db_path).last().unwrap();
    let db = app.db_path.to_str().unwrap().to_string();
    let out = registrar(
        &[
            "quarantine",
            "readmit",
            &id.to_string(),
            "--db",
            &db,
            "--force",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("readmitted {id}: appended as seq 6")
    );
    // The writer's kept tail is stale now: it reads it again.
    let b = jodo_student("registered", "e-6", "S6", 1_700_000_000);
    assert_eq!(app.accept_jodo(&b).await, 7);
    assert_tree_is_the_logs(&app.db_path, 7);
    let (dir, config) = app.stop().await;
    let app = start(dir, config).await;
    let b = jodo_student("registered", "e-7", "S7", 1_700_000_000);
    assert_eq!(app.accept_jodo(&b).await, 8);
    assert_tree_is_the_logs(&app.db_path, 8);
    let db = app.db_path.clone();
    let _dir = app.stop().await;
    let out = verify(&db, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("tree ok: 8 leaves"), "{out:?}");
}

#[tokio::test]
async fn a_log_made_before_the_tree_gets_it_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("registrar.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/legacy-v3.db"),
        &db,
    )
    .unwrap();
    // Migrated but not served: no tree yet, and verify says so.
    {
        let mut conn = registrar::db::open_rw(&db).unwrap();
        registrar::db::migrate(&mut conn).unwrap();
        assert_eq!(tree::size(&conn).unwrap(), 0);
    }
    let out = verify(&db, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("the stored tree holds 0 of the 12 leaves"),
        "{out:?}"
    );
    let mut settings = registrar::config::Settings::new(&db);
    settings.jodo_secret = Some(JODO_SECRET.into());
    settings.toolzz_token = Some(TOOLZZ_TOKEN.into());
    let app = start(dir, settings.validate().unwrap()).await;
    let seq = app
        .accept_jodo(&jodo_student("registered", "e-new", "S3", 1_700_000_800))
        .await;
    assert_eq!(seq, 13);
    assert_tree_is_the_logs(&app.db_path, 13);
    let _dir = app.stop().await;
    let out = verify(&db, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("note:"), "{out:?}");
}

#[tokio::test]
async fn a_chain_rewritten_without_its_tree_is_named_by_verify() {
    let app = crate::audit::app_with_three_events().await;
    let rows = links(&app.conn());
    let db = app.db_path.clone();
    let (_dir, conn) = crate::audit::stop_and_open_for_tampering(app).await;
    let old_tree: Vec<(i64, Vec<u8>)> = {
        let mut stmt = conn
            .prepare("SELECT idx, hash FROM tree_hashes ORDER BY idx")
            .unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(Result::unwrap).collect()
    };
    // The forger recomputes the chain from seq 2 (and the derived columns)
    // but leaves the tree as it was.
    let forged = jodo_student("registered", "evt-audit-2", "forged", 1655448964);
    forge_and_rechain(&conn, &rows, 2, &forged);
    conn.execute("UPDATE events SET subject = 'forged' WHERE seq = 2", [])
        .unwrap();
    conn.execute("DELETE FROM tree_hashes", []).unwrap();
    for (idx, hash) in &old_tree {
        conn.execute(
            "INSERT INTO tree_hashes (idx, hash) VALUES (?1, ?2)",
            (idx, hash),
        )
        .unwrap();
    }
    drop(conn);
    let out = verify(&db, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    // Leaf 1 (seq 2) stores its own hash at index 1.
    assert_eq!(
        out.stdout.trim(),
        "FAILED: seq 2: the tree's stored hash 1 does not match the hash recomputed from the log"
    );
}

/// `registrar key generate --out PATH --name NAME`.
async fn generate(out: &Path, name: &str) -> CliOutput {
    registrar(
        &[
            "key",
            "generate",
            "--out",
            out.to_str().unwrap(),
            "--name",
            name,
        ],
        &[],
    )
    .await
}

#[tokio::test]
async fn a_generated_key_signs_checkpoints_that_its_printed_verifier_checks() {
    const ORIGIN: &str = "registrar/school-1";
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("signing.key");
    let out = generate(&path, ORIGIN).await;
    assert_eq!(out.code, 0, "{out:?}");
    let verifier = note::VerifierKey::parse(out.stdout.trim()).unwrap();
    assert_eq!(verifier.name(), ORIGIN);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // Never over an existing key.
    let before = std::fs::read(&path).unwrap();
    let again = generate(&path, ORIGIN).await;
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stdout.is_empty(), "{again:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // The server signs with it; here, its maker on the stopped log.
    let key = read_signing_key(&path).unwrap();
    assert_eq!(key.verifier(), verifier);
    let app = crate::audit::app_with_three_events().await;
    let db = app.db_path.clone();
    let _dir = app.stop().await;
    let conn = registrar::db::open_rw(&db).unwrap();
    let maker = Maker {
        signer: Some(std::sync::Arc::new(key)),
        ..Maker::unsigned(ORIGIN)
    };
    let tail = log::tail(&conn).unwrap();
    let made = maker
        .make_if_moved(&conn, 3, tail.root().expect("the tree is kept"), 1)
        .unwrap();
    let cp = note::open(made.checkpoint().note.as_bytes(), &verifier).unwrap();
    assert_eq!((cp.size, cp.root), (3, recomputed(&conn).root()));
    drop(conn);

    let db_text = db.to_str().unwrap();
    let key_text = verifier.to_string();
    let out = registrar(
        &["verify", "--db", db_text, "--verifier-key", &key_text],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "checkpoints ok: 1 (0 unsigned), 1 signatures checked with {key_text}"
        )),
        "{out:?}"
    );
    // The key the server reads works as well as the printed one.
    let out = registrar(
        &["verify", "--db", db_text],
        &[("REGISTRAR_SIGNING_KEY_FILE", path.to_str().unwrap())],
    )
    .await;
    assert!(out.stdout.contains("1 signatures checked"), "{out:?}");
    // Another key finds no signature of its own.
    let (_, stranger) = note::generate_key(ORIGIN).unwrap();
    let out = registrar(
        &["verify", "--db", db_text, "--verifier-key", &stranger],
        &[],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.starts_with(
            "FAILED: checkpoint 3: the note has no signature by the key registrar/school-1+"
        ),
        "{out:?}"
    );
    // A byte of the signature changed.
    let conn = registrar::db::open_rw(&db).unwrap();
    conn.execute_batch("DROP TRIGGER checkpoints_no_update")
        .unwrap();
    let note: String = conn
        .query_row("SELECT note FROM checkpoints", [], |r| r.get(0))
        .unwrap();
    let at = note.len() - 8;
    let swapped = if &note[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swapped}{}", &note[..at], &note[at + 1..]);
    conn.execute("UPDATE checkpoints SET note = ?1", [&forged])
        .unwrap();
    drop(conn);
    let out = registrar(
        &["verify", "--db", db_text, "--verifier-key", &key_text],
        &[],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .starts_with("FAILED: checkpoint 3: the signature by the key registrar/school-1+"),
        "{out:?}"
    );
}

/// `registrar serve` on `dir` with `env`, which must refuse to start: its
/// output, within a bound (a server that started would never return).
async fn refused_start(dir: &Path, env: &[(&str, &str)]) -> CliOutput {
    let db = dir.join("registrar.db");
    let db_text = db.to_str().unwrap().to_string();
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--db",
        &db_text,
        "--log-origin",
        "registrar/school-1",
    ];
    let run = registrar(&args, env);
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the server refused to start rather than serving");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(!db.exists(), "no log is created: {out:?}");
    out
}

#[tokio::test]
async fn a_signing_key_file_that_cannot_be_read_or_names_another_log_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.key");
    let out = refused_start(
        dir.path(),
        &[("REGISTRAR_SIGNING_KEY_FILE", missing.to_str().unwrap())],
    )
    .await;
    assert!(
        out.stderr.contains("REGISTRAR_SIGNING_KEY_FILE") && out.stderr.contains("no-such.key"),
        "{out:?}"
    );
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "PRIVATE+KEY+nonsense\n").unwrap();
    let out = refused_start(
        dir.path(),
        &[("REGISTRAR_SIGNING_KEY_FILE", garbage.to_str().unwrap())],
    )
    .await;
    assert!(out.stderr.contains("not a signing key"), "{out:?}");
    let other = dir.path().join("other.key");
    assert_eq!(generate(&other, "registrar/school-2").await.code, 0);
    let out = refused_start(
        dir.path(),
        &[("REGISTRAR_SIGNING_KEY_FILE", other.to_str().unwrap())],
    )
    .await;
    assert!(
        out.stderr
            .contains("the signing key is named \"registrar/school-2\" but --log-origin is \"registrar/school-1\""),
        "{out:?}"
    );
}

#[tokio::test]
async fn the_server_makes_a_signed_checkpoint_after_its_interval_and_publishes_it() {
    const ORIGIN: &str = "registrar/school-1";
    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("signing.key");
    let out = generate(&key_path, ORIGIN).await;
    let verifier = note::VerifierKey::parse(out.stdout.trim()).unwrap();
    let published = keys.path().join("published");
    let app = spawn_app_with(|s| {
        s.log_origin = ORIGIN.into();
        s.signing_key = Some(std::sync::Arc::new(read_signing_key(&key_path).unwrap()));
        s.checkpoint_dir = Some(published.clone());
    })
    .await;
    for i in 0..3 {
        let b = jodo_student(
            "registered",
            &format!("e-{i}"),
            &format!("S{i}"),
            1_700_000_000,
        );
        app.accept_jodo(&b).await;
    }
    // The interval passes on a paused clock: no real wait.
    tokio::time::pause();
    tokio::time::advance(registrar::config::DEFAULT_CHECKPOINT_INTERVAL).await;
    let newest = published.join("checkpoint");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !newest.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint was published"
        );
        // Lets the timer and the server run; the paused clock does not
        // make this a wait.
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    tokio::time::resume();
    let note_text = std::fs::read_to_string(&newest).unwrap();
    let cp = note::open(note_text.as_bytes(), &verifier).unwrap();
    assert_eq!((cp.origin.as_str(), cp.size), (ORIGIN, 3));
    assert_eq!(
        std::fs::read_to_string(published.join("checkpoints").join("3")).unwrap(),
        note_text
    );
    let conn = registrar::db::open_ro(&app.db_path).unwrap();
    assert_eq!(cp.root, recomputed(&conn).root());
    let stored = registrar::log::checkpoints::newest(&conn).unwrap().unwrap();
    assert_eq!((stored.size, stored.note.as_str()), (3, note_text.as_str()));
    drop(conn);
    app.stop().await;
}

#[tokio::test]
async fn readyz_says_when_checkpoints_are_unsigned_and_names_the_verifier_key_when_they_are_signed()
{
    let app = spawn_app().await;
    let (status, body) = json(app.get("/readyz").await).await;
    assert_eq!(
        status, 200,
        "unsigned checkpoints leave the server ready: {body}"
    );
    assert_eq!(body["checkpoints"]["signed"], false, "{body}");
    assert!(
        body["checkpoints"]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("REGISTRAR_SIGNING_KEY_FILE")),
        "{body}"
    );
    app.stop().await;

    const ORIGIN: &str = "registrar/school-1";
    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("signing.key");
    let out = generate(&key_path, ORIGIN).await;
    let app = spawn_app_with(|s| {
        s.log_origin = ORIGIN.into();
        s.signing_key = Some(std::sync::Arc::new(read_signing_key(&key_path).unwrap()));
    })
    .await;
    let (status, body) = json(app.get("/readyz").await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checkpoints"]["signed"], true, "{body}");
    assert_eq!(
        body["checkpoints"]["verifier_key"],
        out.stdout.trim(),
        "{body}"
    );
    assert!(body["checkpoints"].get("problem").is_none(), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_report_names_the_checkpoint_that_covers_its_seq_once_one_does() {
    let app = spawn_app().await;
    let seq = app
        .accept_jodo(&jodo_student("registered", "e-1", "S1", 1_700_000_000))
        .await;
    let path = format!("/v1/reports/status-changes?from=2023-11-01&to=2023-11-30&min_seq={seq}");
    let before = app.get_json(&path).await;
    assert!(
        before["checkpoint"].is_null(),
        "no checkpoint yet: {before}"
    );
    // The interval passes on a paused clock: no real wait.
    tokio::time::pause();
    tokio::time::advance(registrar::config::DEFAULT_CHECKPOINT_INTERVAL).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let made = loop {
        if let Some(cp) = log::checkpoints::newest(&app.conn()).unwrap() {
            break cp;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint was made"
        );
        tokio::task::yield_now().await;
        std::thread::yield_now();
    };
    tokio::time::resume();
    assert_eq!(made.size, seq);
    let root = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, made.root);
    let after = app.get_json(&path).await;
    assert_eq!(after["checkpoint"]["tree_size"], seq, "{after}");
    assert_eq!(after["checkpoint"]["root"], root.as_str(), "{after}");
    let csv = app
        .client
        .get(app.url(&format!("{path}&format=csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        csv.headers()["x-registrar-checkpoint"].to_str().unwrap(),
        format!("{seq} {root}")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_admin_makes_a_checkpoint_on_demand_and_again_gets_the_same_one_until_the_head_moves() {
    let app = spawn_app().await;
    let seq = app
        .accept_jodo(&jodo_student("registered", "e-1", "S1", 1_700_000_000))
        .await;
    let made = |app: &TestApp| {
        let r = app.client.post(app.url("/v1/admin/checkpoint")).send();
        async move {
            let r = r.await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let first = made(&app).await;
    assert_eq!(first["new"], true, "{first}");
    assert_eq!(first["tree_size"], seq, "{first}");
    assert_eq!(first["signed"], false, "{first}");
    let stored = log::checkpoints::newest(&app.conn()).unwrap().unwrap();
    assert_eq!(first["note"], stored.note.as_str());
    let again = made(&app).await;
    assert_eq!(again["new"], false, "the head did not move: {again}");
    assert_eq!(again["note"], first["note"]);
    app.accept_jodo(&jodo_student("registered", "e-2", "S2", 1_700_000_001))
        .await;
    let next = made(&app).await;
    assert_eq!(
        (next["new"].clone(), next["tree_size"].clone()),
        (true.into(), (seq + 1).into())
    );
    app.stop().await;
}
