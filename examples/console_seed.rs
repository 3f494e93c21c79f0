//! Seeds a running server with a small school's ledger for the audit
//! console's end-to-end test (`make e2e`) and the README's screenshots:
//! signed Jodo deliveries (students, payments with revisions and a
//! cancellation, one student with a hostile identifier) and two rejects
//! for the quarantine (a wrong signature, a body that does not validate).
//!
//! ```text
//! console_seed BASE_URL
//! ```
//!
//! The Jodo secret comes from `REGISTRAR_JODO_SECRET`, as for the server.
//! Payments fall in March 2024 (the day book's month in the test) and today
//! (the overview's collections).

use registrar::auth;
use serde_json::{json, Value};

/// One request's longest wait (a commit takes milliseconds).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Unix seconds of 2024-03-`day` at `hour`:00 UTC.
fn march(day: u32, hour: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(2024, 3, day)
        .and_then(|d| d.and_hms_opt(hour, 0, 0))
        .expect("a valid date")
        .and_utc()
        .timestamp()
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .expect("a valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

struct Student<'a> {
    id: &'a str,
    identifier: &'a str,
    custom: &'a str,
    grade: (&'a str, &'a str),
    collector: Option<&'a str>,
    phone: &'a str,
    email: &'a str,
}

fn student_body(event: &str, event_id: &str, s: &Student, timestamp: i64) -> Value {
    json!({
        "event": format!("masterdata.student.{event}"),
        "event_id": event_id,
        "version": "1.0",
        "timestamp": timestamp,
        "payload": {
            "jodo_student_id": s.id,
            "student": {
                "identifier": s.identifier,
                "custom_identifier": s.custom,
                "collector_code": s.collector,
                "grade": { "code": s.grade.0, "name": s.grade.1 },
                "academic_year_start": 2023,
                "academic_year_end": 2024,
                "primary_contact_number": s.phone,
                "primary_contact_email": s.email,
                "notes": [ { "key": "registration_number", "value": format!("REG-{}", s.identifier) } ]
            }
        }
    })
}

struct Payment<'a> {
    id: &'a str,
    student: &'a str,
    amount: &'a str,
    mode: &'a str,
    paid_at: i64,
    notes: &'a str,
}

fn payment_body(event: &str, event_id: &str, p: &Payment, timestamp: i64) -> Value {
    // Amounts are JSON numbers, as Jodo sends them, written from their text.
    let amount: Value = serde_json::from_str(p.amount).expect("an amount");
    json!({
        "event": format!("direct.payment.{event}"),
        "event_id": event_id,
        "version": "1.0",
        "timestamp": timestamp,
        "payload": {
            "jodo_student_id": p.student,
            "payment": {
                "id": p.id, "amount": amount, "mode": p.mode,
                "transaction_id": format!("TXN-{}", p.id), "settlement_utr": "",
                "notes": p.notes, "paid_at": rfc3339(p.paid_at),
                "details": [ { "fee_component": "TUITION_FEE", "amount": p.amount } ]
            }
        }
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, base] = args.as_slice() else {
        eprintln!("usage: console_seed BASE_URL");
        std::process::exit(2);
    };
    let secret = std::env::var("REGISTRAR_JODO_SECRET").expect("REGISTRAR_JODO_SECRET");
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("a client");
    let post = |body: Value, signature: Option<String>| {
        let text = body.to_string();
        let sig = signature.unwrap_or_else(|| auth::sign(secret.as_bytes(), text.as_bytes()));
        let req = client
            .post(format!("{base}/webhooks/jodo"))
            .header("X-Jodo-Signature", sig)
            .body(text);
        async move {
            let r = req.send().await.expect("the server answers");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let students = [
        Student {
            id: "stu_1001",
            identifier: "1001",
            custom: "ADM-2023-1001",
            grade: ("G5A", "Grade 5 A"),
            collector: Some("COL1"),
            phone: "9876500001",
            email: "parent.1001@example.com",
        },
        Student {
            id: "stu_1002",
            identifier: "1002",
            custom: "ADM-2023-1002",
            grade: ("G3B", "Grade 3 B"),
            collector: Some("COL2"),
            phone: "9876500002",
            email: "parent.1002@example.com",
        },
        Student {
            id: "stu_evil",
            identifier: "<script>alert(1)</script>",
            custom: "\"><img src=x onerror=alert(2)>",
            grade: ("G1", "<b>Grade 1</b>"),
            collector: None,
            phone: "9876500003",
            email: "x@example.com",
        },
    ];
    let mut n = 0;
    let mut next_id = || {
        n += 1;
        format!("seed-{n:04}")
    };
    let mut accepted = 0;
    let mut expect_ok = |(status, text): (u16, String)| {
        assert_eq!(status, 200, "a seed delivery was refused: {text}");
        accepted += 1;
    };
    for (i, s) in students.iter().enumerate() {
        let b = student_body("registered", &next_id(), s, march(1, 8 + i as u32));
        expect_ok(post(b, None).await);
    }
    let dropped = student_body("dropped", &next_id(), &students[1], march(20, 9));
    expect_ok(post(dropped, None).await);
    let now = chrono::Utc::now().timestamp();
    let p1 = Payment {
        id: "pay_5001",
        student: "stu_1001",
        amount: "125000.50",
        mode: "cash",
        paid_at: march(5, 5),
        notes: "Term 4 fees, paid at the office",
    };
    let p1b = Payment {
        amount: "125500.50",
        mode: "upi",
        notes: "Term 4 fees; amount corrected",
        ..p1
    };
    let p2 = Payment {
        id: "pay_5002",
        student: "stu_1001",
        amount: "45000",
        mode: "cheque",
        paid_at: march(12, 6),
        notes: "Transport",
    };
    let p3 = Payment {
        id: "pay_5003",
        student: "stu_1002",
        amount: "30000",
        mode: "cash",
        paid_at: march(12, 7),
        notes: "Books",
    };
    let today = Payment {
        id: "pay_5004",
        student: "stu_1001",
        amount: "10000",
        mode: "cash",
        paid_at: now - 60,
        notes: "Activity fee",
    };
    let today_upi = Payment {
        id: "pay_5005",
        student: "stu_1002",
        amount: "2500.75",
        mode: "upi",
        paid_at: now - 30,
        notes: "Canteen",
    };
    let hostile = Payment {
        id: "pay_<i>5006</i>",
        student: "stu_evil",
        amount: "1",
        mode: "=cmd|'/c calc'!A1",
        paid_at: march(15, 6),
        notes: "<script>alert(3)</script>",
    };
    for (event, p, ts) in [
        ("added", &p1, march(5, 6)),
        ("updated", &p1b, march(6, 6)),
        ("added", &p2, march(12, 7)),
        ("cancelled", &p2, march(13, 7)),
        ("added", &p3, march(12, 8)),
        ("added", &hostile, march(15, 7)),
        ("added", &today, now - 50),
        ("added", &today_upi, now - 20),
    ] {
        expect_ok(post(payment_body(event, &next_id(), p, ts), None).await);
    }
    // The quarantine: a delivery with a wrong signature (readmittable when
    // an admin vouches for it) and one that does not validate.
    let late = Payment {
        id: "pay_5007",
        student: "stu_1002",
        amount: "1500",
        mode: "cash",
        paid_at: march(18, 6),
        notes: "Sent with a stale signature",
    };
    let (status, _) = post(
        payment_body("added", &next_id(), &late, march(18, 7)),
        Some("sha256=0000".into()),
    )
    .await;
    assert_eq!(status, 401, "a wrongly signed delivery is refused");
    let mut invalid = payment_body("added", &next_id(), &p3, march(19, 7));
    invalid["payload"]["payment"]["amount"] = json!("-12");
    let (status, _) = post(invalid, None).await;
    assert_eq!(status, 400, "an invalid delivery is refused");
    println!("seeded {accepted} deliveries and 2 rejects");
}
