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
        let sig = registrar::auth::sign(JODO_SECRET.as_bytes(), body.as_bytes());
        let r = client
            .post(format!("{base}/webhooks/jodo"))
            .header("X-Jodo-Signature", sig)
            .body(body)
            .send()
            .await
            .expect("an answer");
        answers.push(r.status().as_u16());
    }
    server.kill9();
    assert_eq!(answers, [200; 5]);
}
