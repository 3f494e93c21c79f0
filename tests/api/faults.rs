//! Faults around the process rather than the database (the database's own
//! faults are in `scripts/faults.sh`).

use std::process::Stdio;

use crate::fixtures::*;
use crate::helpers::*;

#[tokio::test]
async fn a_log_destination_that_cannot_be_written_does_not_break_ingest() {
    // stderr on /dev/full: every log line fails with ENOSPC, as when the
    // disk holding the server's log file is full. The logger once reported
    // that on stderr again, which panics: handlers answered 500 and the
    // writer thread died, so ingest stayed 503 after the disk was freed.
    let dev_full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_binary(dir.path(), Stdio::from(dev_full)).await;
    let (client, base) = (reqwest::Client::new(), server.base.clone());
    let mut answers = Vec::new();
    for i in 0..5 {
        let body = jodo_student(
            "registered",
            &format!("evt-full-{i}"),
            &format!("s{i}"),
            1_700_000_000,
        );
        let r = post_signed_jodo(&client, &base, body)
            .await
            .expect("an answer");
        answers.push(r.status().as_u16());
    }
    server.kill9();
    assert_eq!(answers, [200; 5]);
}

#[tokio::test]
async fn a_delivery_whose_fsync_fails_is_not_acknowledged_and_the_writer_stops() {
    let app = spawn_app().await;
    let first = jodo_student("registered", "evt-sync-1", "s1", 1_700_000_000);
    assert_eq!(app.post_jodo(&first).await.status(), 200);
    // The WAL's name gone: the fsync thread cannot open it, which stands for
    // an fsync the disk refused. SQLite keeps writing to the open file.
    let wal = app.db_path.with_file_name(format!(
        "{}-wal",
        app.db_path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::remove_file(&wal).expect("the log's WAL exists while the server runs");
    let second = jodo_student("registered", "evt-sync-2", "s2", 1_700_000_001);
    let answer = app.post_jodo(&second).await;
    assert_eq!(answer.status(), 503, "not durable, so not acknowledged");
    // Every later delivery is refused too, even with the file back: a
    // second fsync could succeed without the pages the first one lost.
    std::fs::write(&wal, b"").unwrap();
    let third = jodo_student("registered", "evt-sync-3", "s3", 1_700_000_002);
    assert_eq!(app.post_jodo(&third).await.status(), 503);
    let (status, _) = json(app.get("/readyz").await).await;
    assert_eq!(status, 503, "readiness reports the stopped writer");
}
