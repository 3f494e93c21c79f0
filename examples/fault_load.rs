//! Load for `scripts/faults.sh`: signed Jodo and Toolzz deliveries from
//! concurrent keep-alive clients, each acknowledged one written to a file as
//! `seq sha256(body)` the moment its 200 arrives, so the script can check
//! that every acknowledged delivery is in the log after a kill -9.
//!
//! ```text
//! fault_load BASE_URL TAG COUNT CONCURRENCY ACKED_FILE
//! ```
//!
//! Secrets come from `REGISTRAR_JODO_SECRET` and `REGISTRAR_TOOLZZ_TOKEN`,
//! as for the server. A client stops at its first connection error (the
//! server was killed); the whole run stops after [`MAX_RUN`] in any case.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registrar::auth;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The longest a run may take, whatever happens to the server: the script
/// must stop by itself.
const MAX_RUN: Duration = Duration::from_secs(60);
/// One request's longest wait (a commit takes milliseconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Every n-th delivery resends the one before it (a provider retry).
const RETRY_EVERY: usize = 10;

fn body(tag: &str, i: usize) -> (bool, String) {
    let ts = 1_700_000_000 + i as i64;
    let student = format!("{tag}-s{}", i / 4);
    match i % 4 {
        n @ (0 | 1) => {
            let event = if n == 0 { "registered" } else { "dropped" };
            let b = json!({
                "event": format!("masterdata.student.{event}"),
                "event_id": format!("{tag}-e{i}"), "version": "1.0", "timestamp": ts,
                "payload": { "jodo_student_id": student, "student": {
                    "identifier": format!("id-{student}"), "custom_identifier": null,
                    "collector_code": null, "grade": { "code": "G1", "name": "Grade 1" },
                    "academic_year_start": 2024, "academic_year_end": 2025 } }
            });
            (true, b.to_string())
        }
        2 => {
            let b = json!({
                "event": "direct.payment.added", "event_id": format!("{tag}-e{i}"),
                "version": "1.0", "timestamp": ts,
                "payload": { "jodo_student_id": student, "payment": {
                    "id": format!("{tag}-p{i}"), "amount": 1500.25, "mode": "cash",
                    "paid_at": "2024-03-01T10:00:00Z",
                    "details": [{ "fee_component": "TUITION_FEE", "amount": "1500.25" }] } }
            });
            (true, b.to_string())
        }
        _ => {
            let b = json!({
                "event": { "name": "Atividades - Nova matrícula", "slug": "activities.course.enrollment",
                           "send_at": "2024-03-01 10:00:00" },
                "data": { "institution": { "id": 1 }, "course": { "id": i, "name": "Course" },
                          "enrollment": { "id": i, "date_expire": null, "course_id": i, "actived": 1, "status": 1 },
                          "user": { "id": 1_000_000 + i / 4, "name": "Learner", "email": "l@example.com" } }
            });
            (false, b.to_string())
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, tag, count, concurrency, acked] = args.as_slice() else {
        eprintln!("usage: fault_load BASE_URL TAG COUNT CONCURRENCY ACKED_FILE");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("COUNT is a number");
    let concurrency: usize = concurrency.parse().expect("CONCURRENCY is a number");
    let secret = std::env::var("REGISTRAR_JODO_SECRET").expect("REGISTRAR_JODO_SECRET");
    let token = std::env::var("REGISTRAR_TOOLZZ_TOKEN").expect("REGISTRAR_TOOLZZ_TOKEN");
    let acked = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(acked)
        .expect("opening ACKED_FILE");
    let acked = Arc::new(Mutex::new(acked));
    let next = Arc::new(AtomicUsize::new(0));
    let counts = Arc::new([(); 3].map(|_| AtomicUsize::new(0))); // acked, refused, failed
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("a client");
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, base, tag, secret, token) = (
            client.clone(),
            base.clone(),
            tag.clone(),
            secret.clone(),
            token.clone(),
        );
        let (next, acked, counts) = (next.clone(), acked.clone(), counts.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let n = if i > 0 && i % RETRY_EVERY == 0 {
                    i - 1
                } else {
                    i
                };
                let (jodo, body) = body(&tag, n);
                let req = if jodo {
                    client.post(format!("{base}/webhooks/jodo")).header(
                        "X-Jodo-Signature",
                        auth::sign(secret.as_bytes(), body.as_bytes()),
                    )
                } else {
                    client.post(format!("{base}/webhooks/toolzz/{token}"))
                };
                let answer = match req.body(body.clone()).send().await {
                    Ok(r) => r,
                    Err(_) => {
                        counts[2].fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                let status = answer.status();
                let Ok(text) = answer.text().await else {
                    counts[2].fetch_add(1, Ordering::Relaxed);
                    return;
                };
                if status.is_success() {
                    let v: serde_json::Value = serde_json::from_str(&text).expect("a JSON answer");
                    let seq = v["seq"].as_u64().expect("a seq in a 200");
                    let hash = hex::encode(Sha256::digest(body.as_bytes()));
                    let mut f = acked.lock().unwrap();
                    writeln!(f, "{seq} {hash}").expect("writing ACKED_FILE");
                    counts[0].fetch_add(1, Ordering::Relaxed);
                } else {
                    counts[1].fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let all = futures::future::join_all(workers);
    if tokio::time::timeout(MAX_RUN, all).await.is_err() {
        eprintln!("fault_load: stopped after {MAX_RUN:?}");
    }
    println!(
        "acked {} refused {} failed {}",
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        counts[2].load(Ordering::Relaxed)
    );
}
