//! The tamper suite: every way of editing the `events` table around its
//! triggers and constraints that an attacker with the file could try, each
//! answered by `registrar verify` with `FAILED: seq N: ...` and exit 1,
//! never an error exit. (The swapped pair, the cut tail and the pinned
//! re-chain of one row are in `audit.rs`.)

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tempfile::TempDir;

use crate::audit::{
    app_with_three_events, forge_and_rechain, link_hash, links, verify, CliOutput, Link,
};
use crate::fixtures::*;

/// A log of three events (seq 1 and 2 Jodo, seq 3 Toolzz), written by the
/// server and checkpointed into one file, copied for each case.
struct Base {
    _dir: TempDir,
    db: PathBuf,
    rows: Vec<Link>,
}

async fn base() -> Base {
    let app = app_with_three_events().await;
    let db = app.db_path.clone();
    let (dir, _) = app.stop().await;
    let conn = Connection::open(&db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let rows = links(&conn);
    Base {
        _dir: dir,
        db,
        rows,
    }
}

impl Base {
    /// A fresh copy of the database.
    fn copy(&self) -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("copy.db");
        std::fs::copy(&self.db, &db).unwrap();
        (dir, db)
    }
}

/// Opens `db` as an attacker would: the append-only triggers dropped and
/// CHECK constraints ignored.
fn open_for_tampering(db: &Path) -> Connection {
    let conn = Connection::open(db).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS events_no_update; DROP TRIGGER IF EXISTS events_no_delete;
         PRAGMA ignore_check_constraints = ON;",
    )
    .unwrap();
    conn
}

/// Rewrites the stored schema of `events` without its NOT NULL constraints
/// (PRAGMA writable_schema), so a column can be set to NULL.
fn drop_not_null(db: &Path) {
    let conn = open_for_tampering(db);
    let sql: String = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let version: i64 = conn
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch("PRAGMA writable_schema = ON").unwrap();
    conn.execute(
        "UPDATE sqlite_schema SET sql = ?1 WHERE name = 'events'",
        [sql.replace("NOT NULL", "")],
    )
    .unwrap();
    conn.execute_batch(&format!(
        "PRAGMA schema_version = {}; PRAGMA writable_schema = OFF;",
        version + 1
    ))
    .unwrap();
}

/// Runs `sql` on a copy of the base log and returns verify's output.
async fn verify_after(base: &Base, sql: &str, loose: bool) -> CliOutput {
    let (_dir, db) = base.copy();
    if loose {
        drop_not_null(&db);
    }
    let conn = open_for_tampering(&db);
    conn.execute_batch(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(conn);
    verify(&db, None).await
}

/// Asserts verify failed with `expected` at the start of its output.
fn assert_fault(out: &CliOutput, expected: &str, case: &str) {
    assert_eq!(out.code, 1, "{case}: {out:?}");
    assert!(
        out.stdout.starts_with(expected),
        "{case}: expected {expected:?}, got {out:?}"
    );
    assert!(out.stderr.is_empty(), "{case}: {out:?}");
}

#[tokio::test]
async fn verify_names_an_edited_body_whether_stored_as_blob_or_as_text() {
    let base = base().await;
    for (sql, expected) in [
        (
            "UPDATE events SET body = CAST(replace(CAST(body AS TEXT), 'student_1234', 'student_9999') AS BLOB) WHERE seq = 1",
            "FAILED: seq 1: the body does not match its body_hash",
        ),
        // SQLite's || yields TEXT: this once made verify exit with an error.
        (
            "UPDATE events SET body = CAST(body AS BLOB) || X'20' WHERE seq = 1",
            "FAILED: seq 1: body is stored as TEXT, not a BLOB",
        ),
        // The same bytes, only retyped.
        (
            "UPDATE events SET body = CAST(body AS TEXT) WHERE seq = 2",
            "FAILED: seq 2: body is stored as TEXT, not a BLOB",
        ),
    ] {
        assert_fault(&verify_after(&base, sql, false).await, expected, sql);
    }
}

#[tokio::test]
async fn verify_names_every_column_set_to_another_value() {
    let base = base().await;
    for (sql, expected) in [
        (
            "UPDATE events SET seq = 10 WHERE seq = 2",
            "FAILED: seq 2 is missing (the next row has seq 3)",
        ),
        (
            "UPDATE events SET source = 'toolzz' WHERE seq = 1",
            "FAILED: seq 1: the stored hash does not match the recomputed hash",
        ),
        (
            "UPDATE events SET source = 'other' WHERE seq = 1",
            "FAILED: seq 1: source is \"other\", not 'jodo' or 'toolzz'",
        ),
        (
            "UPDATE events SET event_type = 'masterdata.student.registered' WHERE seq = 1",
            "FAILED: seq 1: event_type is \"masterdata.student.registered\", but the body says \"masterdata.student.dropped\"",
        ),
        (
            "UPDATE events SET event_version = '2.0' WHERE seq = 1",
            "FAILED: seq 1: event_version is \"2.0\", but the body says \"1.0\"",
        ),
        (
            "UPDATE events SET dedupe_key = 'forged' WHERE seq = 2",
            "FAILED: seq 2: dedupe_key is \"forged\", but the body says \"evt-audit-2\"",
        ),
        (
            "UPDATE events SET subject = 'someone' WHERE seq = 3",
            "FAILED: seq 3: subject is \"someone\", but the body says \"987654321\"",
        ),
        (
            "UPDATE events SET occurred_at = occurred_at + 3600 WHERE seq = 3",
            "FAILED: seq 3: occurred_at is 1688403221, but the body says 1688399621",
        ),
        (
            "UPDATE events SET received_at = received_at + 1 WHERE seq = 2",
            "FAILED: seq 2: the stored hash does not match the recomputed hash",
        ),
        (
            "UPDATE events SET body_hash = zeroblob(32) WHERE seq = 2",
            "FAILED: seq 2: the body does not match its body_hash",
        ),
        (
            "UPDATE events SET prev_hash = zeroblob(32) WHERE seq = 3",
            "FAILED: seq 3: prev_hash does not match the hash of seq 2",
        ),
        (
            "UPDATE events SET hash = zeroblob(32) WHERE seq = 2",
            "FAILED: seq 2: the stored hash does not match the recomputed hash",
        ),
    ] {
        assert_fault(&verify_after(&base, sql, false).await, expected, sql);
    }
}

#[tokio::test]
async fn verify_names_every_column_set_to_null() {
    let base = base().await;
    for column in [
        "source",
        "event_type",
        "event_version",
        "dedupe_key",
        "occurred_at",
        "received_at",
        "body",
        "body_hash",
        "prev_hash",
        "hash",
    ] {
        let sql = format!("UPDATE events SET {column} = NULL WHERE seq = 2");
        let expected = format!("FAILED: seq 2: {column} is NULL, not ");
        assert_fault(&verify_after(&base, &sql, true).await, &expected, &sql);
    }
    // subject may be NULL, but not when the body names a subject.
    let sql = "UPDATE events SET subject = NULL WHERE seq = 2";
    let out = verify_after(&base, sql, true).await;
    assert_fault(
        &out,
        "FAILED: seq 2: subject is NULL, but the body says \"s2\"",
        sql,
    );
    // seq is the rowid: SQLite itself refuses a NULL or a non-integer.
    let (_dir, db) = base.copy();
    drop_not_null(&db);
    let conn = open_for_tampering(&db);
    for value in ["NULL", "'x'", "1.5"] {
        let sql = format!("UPDATE events SET seq = {value} WHERE seq = 2");
        assert!(conn.execute_batch(&sql).is_err(), "{sql}");
    }
}

#[tokio::test]
async fn verify_names_every_column_set_to_another_type() {
    let base = base().await;
    for (column, value, found) in [
        ("source", "X'6a6f646f'", "a BLOB of 4 bytes, not TEXT"),
        ("event_type", "X'00'", "a BLOB of 1 bytes, not TEXT"),
        ("event_version", "X'00'", "a BLOB of 1 bytes, not TEXT"),
        ("dedupe_key", "X'00'", "a BLOB of 1 bytes, not TEXT"),
        ("subject", "X'00'", "a BLOB of 1 bytes, not TEXT"),
        ("occurred_at", "'soon'", "TEXT, not an INTEGER"),
        ("received_at", "1.5", "a REAL, not an INTEGER"),
        ("body", "42", "an INTEGER, not a BLOB"),
        ("body_hash", "'x'", "TEXT, not a BLOB of 32 bytes"),
        (
            "prev_hash",
            "zeroblob(31)",
            "a BLOB of 31 bytes, not a BLOB of 32 bytes",
        ),
        (
            "hash",
            "zeroblob(33)",
            "a BLOB of 33 bytes, not a BLOB of 32 bytes",
        ),
        (
            "event_type",
            "CAST(X'ff' AS TEXT)",
            "TEXT that is not UTF-8, not TEXT",
        ),
    ] {
        let sql = format!("UPDATE events SET {column} = {value} WHERE seq = 2");
        let expected = format!("FAILED: seq 2: {column} is {found}");
        assert_fault(&verify_after(&base, &sql, false).await, &expected, &sql);
    }
}

#[tokio::test]
async fn verify_names_a_deleted_row_and_a_row_inserted_in_the_middle() {
    let base = base().await;
    let out = verify_after(&base, "DELETE FROM events WHERE seq = 2", false).await;
    assert_fault(
        &out,
        "FAILED: seq 2 is missing (the next row has seq 3)",
        "delete",
    );

    // Insert a well-formed, correctly chained row at seq 2, moving the rest
    // up: the row after it no longer links.
    let (_dir, db) = base.copy();
    let conn = open_for_tampering(&db);
    conn.execute_batch(
        "UPDATE events SET seq = 4 WHERE seq = 3; UPDATE events SET seq = 3 WHERE seq = 2;",
    )
    .unwrap();
    let body = jodo_student("activated", "evt-inserted", "s2", 1655448965);
    let body_hash = blake3::hash(body.as_bytes()).as_bytes().to_vec();
    let first = &base.rows[0];
    let received_at = first.received_at + 1;
    let hash = link_hash(&first.hash, 2, "jodo", received_at, &body_hash);
    conn.execute(
        "INSERT INTO events (seq, source, event_type, event_version, dedupe_key, subject,
                             occurred_at, received_at, body, body_hash, prev_hash, hash)
         VALUES (2, 'jodo', 'masterdata.student.activated', '1.0', 'evt-inserted', 's2',
                 1655448965, ?1, ?2, ?3, ?4, ?5)",
        (received_at, body.as_bytes(), &body_hash, &first.hash, &hash),
    )
    .unwrap();
    drop(conn);
    let out = verify(&db, None).await;
    assert_fault(
        &out,
        "FAILED: seq 3: prev_hash does not match the hash of seq 2",
        "insert",
    );
}

#[tokio::test]
async fn a_tail_rechained_after_an_edit_is_caught_only_by_a_pin_recorded_before_the_edit() {
    let base = base().await;
    let rows = &base.rows;
    let (_dir, db) = base.copy();
    let conn = open_for_tampering(&db);
    // Edit seq 2 (its columns still match its body) and re-chain 2 and 3.
    let forged = jodo_student("registered", "evt-audit-2", "s2", 1655448964)
        .replace("9876543210", "9999999999");
    forge_and_rechain(&conn, rows, 2, &forged);
    drop(conn);
    // Self-consistent: the chain and every derived column check out.
    let out = verify(&db, None).await;
    assert_eq!(out.code, 0, "{out:?}");
    // A pin at a seq before the edited row cannot see it...
    let before_edit = format!("1:{}", hex::encode(&rows[0].hash));
    assert_eq!(verify(&db, Some(&before_edit)).await.code, 0);
    // ...a head recorded before the edit (at or after the edited seq) does.
    for (i, row) in rows.iter().enumerate().skip(1) {
        let pin = format!("{}:{}", row.seq, hex::encode(&row.hash));
        let out = verify(&db, Some(&pin)).await;
        assert_fault(
            &out,
            &format!("FAILED: pin {}: the log holds hash", i + 1),
            &pin,
        );
    }
}

#[tokio::test]
async fn fast_verify_checks_the_chain_but_not_the_derived_columns() {
    let base = base().await;
    let (_dir, db) = base.copy();
    let conn = open_for_tampering(&db);
    conn.execute_batch(
        "UPDATE events SET event_type = 'masterdata.student.registered' WHERE seq = 1",
    )
    .unwrap();
    drop(conn);
    let db_text = db.to_str().unwrap();
    let out = crate::audit::registrar(&["verify", "--db", db_text, "--fast"], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("chain only (--fast)"), "{out:?}");
    let out = verify(&db, None).await;
    assert_fault(&out, "FAILED: seq 1: event_type is", "full");
}
