//! Ingest: the documented examples, validation, dedupe, size, unknown types,
//! concurrency, restart and the 503 path.

use std::collections::{BTreeMap, BTreeSet};

use registrar::log::{StoredEvent, EVENT_COLUMNS};
use registrar::sources::jodo;
use rusqlite::Connection;
use serde_json::{json, Value};

use crate::fixtures::*;
use crate::helpers::*;

/// Every `events` row, in seq order.
pub(crate) fn events(conn: &Connection) -> Vec<StoredEvent> {
    let mut stmt = conn
        .prepare(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY seq"))
        .unwrap();
    let rows = stmt.query_map([], StoredEvent::from_row).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// One `quarantine` row, as the tests look at it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuarantineRow {
    pub id: i64,
    pub source: String,
    pub http_status: u16,
    pub code: String,
    pub reason: String,
    pub authenticated: bool,
    pub headers: Value,
    pub body: Vec<u8>,
    pub body_truncated: bool,
    pub readmitted_seq: Option<i64>,
}

/// Every `quarantine` row, in id order.
pub(crate) fn quarantined(conn: &Connection) -> Vec<QuarantineRow> {
    let mut stmt = conn
        .prepare(
            "SELECT id, source, http_status, code, reason, authenticated, headers, body,
                    body_truncated, readmitted_seq
             FROM quarantine ORDER BY id",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            let headers: String = r.get(6)?;
            Ok(QuarantineRow {
                id: r.get(0)?,
                source: r.get(1)?,
                http_status: r.get(2)?,
                code: r.get(3)?,
                reason: r.get(4)?,
                authenticated: r.get(5)?,
                headers: serde_json::from_str(&headers).expect("headers are JSON"),
                body: r.get(7)?,
                body_truncated: r.get(8)?,
                readmitted_seq: r.get(9)?,
            })
        })
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// Asserts a 200 `duplicate` and returns its seq.
pub(crate) async fn duplicate(r: reqwest::Response) -> u64 {
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "duplicate", "{body}");
    body["seq"].as_u64().expect("a duplicate answer has a seq")
}

/// Asserts an error answer with this status and code; returns its message.
pub(crate) async fn refused(r: reqwest::Response, status: u16, code: &str) -> String {
    let (got, body) = json(r).await;
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    body["error"]["message"]
        .as_str()
        .expect("an error has a message")
        .to_string()
}

/// The dedupe key a Toolzz body must get, computed here independently.
fn toolzz_key(body: &str) -> String {
    format!("blake3:{}", blake3::hash(body.as_bytes()).to_hex())
}

const SEED_EVENT_ID: &str = "f8093bb5-29c7-4b3a-a99b-298520233820";

#[tokio::test]
async fn every_documented_example_is_accepted_in_order_with_its_type_and_subject() {
    let app = spawn_app().await;
    // The registered example reuses the dropped example's event_id; real
    // deliveries do not (PROVIDERS.md), so it is sent with its own.
    let registered = SEED_REGISTERED.replace(SEED_EVENT_ID, "0c6f1d2e-registered-example");
    let activated = jodo_student("activated", "evt-activated", "student_1234", 1655449000);
    let added = jodo_payment(
        "added",
        "evt-pay-added",
        "pay_1",
        Some("student_1234"),
        "2000",
        1655450000,
    );
    let updated = jodo_payment(
        "updated",
        "evt-pay-updated",
        "pay_1",
        Some("student_1234"),
        "2000.0",
        1655450100,
    );
    let cancelled = jodo_payment(
        "cancelled",
        "evt-pay-cancelled",
        "pay_1",
        None,
        "1499.5",
        1655450200,
    );
    let created =
        toolzz_member("members.created", "2023-07-03 14:00:00", 123456, "Student").to_string();
    // (source, body, event_type, subject, occurred_at when pinned)
    let cases: Vec<(&str, &str, &str, &str, Option<i64>)> = vec![
        (
            "jodo",
            SEED_DROPPED,
            "masterdata.student.dropped",
            "student_1234",
            Some(1655448963),
        ),
        (
            "jodo",
            &registered,
            "masterdata.student.registered",
            "student_1234",
            Some(1655448963),
        ),
        (
            "jodo",
            &activated,
            "masterdata.student.activated",
            "student_1234",
            Some(1655449000),
        ),
        ("jodo", &added, "direct.payment.added", "pay_1", None),
        ("jodo", &updated, "direct.payment.updated", "pay_1", None),
        (
            "jodo",
            &cancelled,
            "direct.payment.cancelled",
            "pay_1",
            None,
        ),
        (
            "toolzz",
            SEED_ENROLLMENT,
            "activities.course.enrollment",
            "987654321",
            // 2023-07-03 12:53:41 in São Paulo (UTC-3).
            Some(1688399621),
        ),
        (
            "toolzz",
            SEED_MEMBERS_UPDATED,
            "members.updated",
            "123456",
            None,
        ),
        (
            "toolzz",
            SEED_COURSE_COMPLETED,
            "activities.course.completed",
            "987654321",
            None,
        ),
        (
            "toolzz",
            SEED_TRAIL_COMPLETED,
            "activities.trail.completed",
            "123456798",
            None,
        ),
        ("toolzz", &created, "members.created", "123456", None),
    ];
    for (i, (source, body, ..)) in cases.iter().enumerate() {
        let r = match *source {
            "jodo" => app.post_jodo(body).await,
            _ => app.post_toolzz(body).await,
        };
        assert_eq!(accepted(r).await, i as u64 + 1, "case {i}: {body}");
    }
    let rows = events(&app.conn());
    assert_eq!(rows.len(), cases.len());
    for (row, (source, body, event_type, subject, occurred_at)) in rows.iter().zip(&cases) {
        assert_eq!(row.source, *source);
        assert_eq!(row.event_type, *event_type);
        assert_eq!(row.subject.as_deref(), Some(*subject), "{event_type}");
        assert_eq!(row.body, body.as_bytes(), "the exact bytes are kept");
        if let Some(at) = occurred_at {
            assert_eq!(row.occurred_at, *at, "{event_type}");
        }
        if *source == "jodo" {
            assert_eq!(row.event_version, "1.0");
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(row.dedupe_key, v["event_id"].as_str().unwrap());
        } else {
            assert_eq!(row.event_version, "");
            assert_eq!(row.dedupe_key, toolzz_key(body));
        }
    }
    let status = app.get_json("/v1/admin/status").await;
    assert_eq!(status["log"]["seq"], 11);
    assert_eq!(status["projections"]["last_seq"], 11);
    assert!(quarantined(&app.conn()).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_integer_jodo_student_id_is_stored_as_a_string() {
    let app = spawn_app().await;
    let body = jodo_student("registered", "evt-int", "x", 1655448963)
        .replace(r#""jodo_student_id":"x""#, r#""jodo_student_id":1234567"#);
    assert!(
        body.contains("1234567"),
        "the fixture changed shape: {body}"
    );
    assert_eq!(accepted(app.post_jodo(&body).await).await, 1);
    assert_eq!(events(&app.conn())[0].subject.as_deref(), Some("1234567"));
    app.stop().await;
}

#[tokio::test]
async fn a_retried_delivery_is_answered_duplicate_with_the_original_seq() {
    let app = spawn_app().await;
    let a = jodo_student("registered", "evt-a", "s1", 1655448963);
    let b = jodo_student("registered", "evt-b", "s2", 1655448964);
    let t = toolzz_enrollment(
        "activities.course.enrollment",
        "2023-07-03 12:53:41",
        11,
        77,
        5,
        1,
    );
    assert_eq!(accepted(app.post_jodo(&a).await).await, 1);
    assert_eq!(accepted(app.post_jodo(&b).await).await, 2);
    assert_eq!(accepted(app.post_toolzz(&t).await).await, 3);
    assert_eq!(duplicate(app.post_jodo(&a).await).await, 1);
    assert_eq!(duplicate(app.post_toolzz(&t).await).await, 3);
    assert_eq!(duplicate(app.post_jodo(&b).await).await, 2);
    assert_eq!(duplicate(app.post_jodo(&a).await).await, 1);
    let rows = events(&app.conn());
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        quarantined(&app.conn()).is_empty(),
        "a duplicate is no reject"
    );
    assert_eq!(app.get_json("/v1/audit/head").await["seq"], 3);
    app.stop().await;
}

#[tokio::test]
async fn a_toolzz_body_differing_only_in_whitespace_is_a_separate_event() {
    // Toolzz has no event id: the dedupe key is the hash of the exact bytes.
    let app = spawn_app().await;
    assert_eq!(accepted(app.post_toolzz(SEED_ENROLLMENT).await).await, 1);
    let spaced = format!("{SEED_ENROLLMENT} ");
    assert_eq!(accepted(app.post_toolzz(&spaced).await).await, 2);
    let rows = events(&app.conn());
    assert_ne!(rows[0].dedupe_key, rows[1].dedupe_key);
    app.stop().await;
}

#[tokio::test]
async fn a_reused_jodo_event_id_with_another_body_is_a_409_and_the_body_is_quarantined() {
    let app = spawn_app().await;
    assert_eq!(accepted(app.post_jodo(SEED_DROPPED).await).await, 1);
    // The documentation's registered example, verbatim: same event_id.
    let message = refused(app.post_jodo(SEED_REGISTERED).await, 409, "conflict").await;
    assert!(message.contains("seq 1"), "{message}");

    let rows = events(&app.conn());
    assert_eq!(rows.len(), 1, "the conflicting body is not appended");
    assert_eq!(
        rows[0].body,
        SEED_DROPPED.as_bytes(),
        "the original is kept"
    );
    let q = quarantined(&app.conn());
    assert_eq!(q.len(), 1);
    assert_eq!(
        (q[0].source.as_str(), q[0].http_status, q[0].code.as_str()),
        ("jodo", 409, "conflict")
    );
    assert!(q[0].authenticated, "it was signed correctly");
    assert!(!q[0].body_truncated);
    assert_eq!(q[0].body, SEED_REGISTERED.as_bytes());
    assert!(q[0].reason.contains(SEED_EVENT_ID), "{}", q[0].reason);
    assert!(
        q[0].reason.contains("the original is seq 1"),
        "{}",
        q[0].reason
    );

    // The original still dedupes; the conflict is refused again.
    assert_eq!(duplicate(app.post_jodo(SEED_DROPPED).await).await, 1);
    refused(app.post_jodo(SEED_REGISTERED).await, 409, "conflict").await;
    assert_eq!(quarantined(&app.conn()).len(), 2);
    assert_eq!(events(&app.conn()).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn malformed_json_is_answered_400_and_quarantined() {
    let app = spawn_app().await;
    let bad = ["{not json", "", &format!("{SEED_DROPPED} trailing")];
    for body in bad {
        let message = refused(app.post_jodo(body).await, 400, "invalid_delivery").await;
        assert!(
            message.starts_with("body is not valid JSON"),
            "{body:?}: {message}"
        );
    }
    let cut = r#"{"event":{"slug":"members.updated","#;
    let message = refused(app.post_toolzz(cut).await, 400, "invalid_delivery").await;
    assert!(message.starts_with("body is not valid JSON"), "{message}");

    assert!(events(&app.conn()).is_empty());
    let q = quarantined(&app.conn());
    assert_eq!(q.len(), 4);
    for (row, body) in q.iter().zip(bad.iter().copied().chain([cut])) {
        assert_eq!(
            (row.http_status, row.code.as_str()),
            (400, "invalid_delivery")
        );
        assert!(row.authenticated, "it passed authentication");
        assert_eq!(row.body, body.as_bytes());
    }
    assert_eq!(
        (q[0].source.as_str(), q[3].source.as_str()),
        ("jodo", "toolzz")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_known_event_missing_a_field_is_refused_with_the_fields_path() {
    let app = spawn_app().await;
    let no_identifier = SEED_DROPPED.replace(r#""identifier": "1234","#, "");
    let payment = jodo_payment("added", "evt-p", "pay_9", Some("s9"), "2000", 1655448963);
    let no_amount = payment.replacen(r#""amount":2000,"#, "", 1);
    let no_event_id = SEED_DROPPED.replace(&format!(r#""event_id": "{SEED_EVENT_ID}","#), "");
    let jodo_cases = [
        (no_identifier, "payload.student.identifier: is missing"),
        (no_amount, "payload.payment.amount: is missing"),
        (no_event_id, "event_id: is missing"),
    ];
    for (body, expected) in &jodo_cases {
        assert_ne!(body, SEED_DROPPED, "the replacement did nothing");
        let message = refused(app.post_jodo(body).await, 400, "invalid_delivery").await;
        assert_eq!(message, *expected);
    }
    let enrollment: Value = serde_json::from_str(SEED_ENROLLMENT).unwrap();
    let mut no_user = enrollment.clone();
    no_user["data"].as_object_mut().unwrap().remove("user");
    let mut no_slug = enrollment.clone();
    no_slug["event"].as_object_mut().unwrap().remove("slug");
    let mut bad_send_at = enrollment;
    bad_send_at["event"]["send_at"] = json!("03/07/2023 12:53:41");
    let toolzz_cases = [
        (no_user, "data.user: is missing"),
        (no_slug, "event.slug: is missing"),
        (bad_send_at, "event.send_at: "),
    ];
    for (body, expected) in &toolzz_cases {
        let message = refused(
            app.post_toolzz(&body.to_string()).await,
            400,
            "invalid_delivery",
        )
        .await;
        assert!(message.starts_with(expected), "{expected}: {message}");
    }
    assert!(events(&app.conn()).is_empty());
    let q = quarantined(&app.conn());
    assert_eq!(q.len(), 6);
    assert!(q.iter().all(|r| r.http_status == 400 && r.authenticated));
    assert_eq!(q[1].reason, "payload.payment.amount: is missing");
    app.stop().await;
}

#[tokio::test]
async fn a_payment_amount_with_three_decimals_or_a_minus_sign_is_refused_at_its_path() {
    let app = spawn_app().await;
    let too_precise = jodo_payment("added", "evt-1", "pay_1", Some("s1"), "10.001", 1655448963);
    let message = refused(app.post_jodo(&too_precise).await, 400, "invalid_delivery").await;
    assert!(message.starts_with("payload.payment.amount: "), "{message}");
    assert!(
        message.contains("more than two decimal places"),
        "{message}"
    );

    let negative = jodo_payment("added", "evt-2", "pay_2", Some("s1"), "-5", 1655448963);
    let message = refused(app.post_jodo(&negative).await, 400, "invalid_delivery").await;
    assert!(message.starts_with("payload.payment.amount: "), "{message}");
    assert!(message.contains("negative"), "{message}");

    // Two decimals, and the smallest amount, are fine.
    let cents = jodo_payment("added", "evt-3", "pay_3", Some("s1"), "0.01", 1655448963);
    assert_eq!(accepted(app.post_jodo(&cents).await).await, 1);
    let exact = jodo_payment("added", "evt-4", "pay_4", Some("s1"), "1000.50", 1655448963);
    assert_eq!(accepted(app.post_jodo(&exact).await).await, 2);

    let q = quarantined(&app.conn());
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].body, too_precise.as_bytes());
    assert_eq!(q[1].body, negative.as_bytes());
    app.stop().await;
}

#[tokio::test]
async fn unknown_event_types_are_stored_with_their_type_subject_and_dedupe_key() {
    let app = spawn_app().await;
    let flex = r#"{"event":"flex.instalment.debited","event_id":"evt-flex-1","version":"1.0","timestamp":1700000000,"payload":{"jodo_student_id":42,"instalment":{"number":3,"amount":1234.567}}}"#;
    let shop = r#"{"event":{"name":"Loja - Resgate de produto","slug":"shop.product.redemption","send_at":"2023-07-03 12:53:41"},"data":{"institution":{"id":"12345"},"user":{"id":"555","name":"Student"},"product":{"id":"77","amount":"10.50"}}}"#;
    assert_eq!(accepted(app.post_jodo(flex).await).await, 1);
    assert_eq!(accepted(app.post_toolzz(shop).await).await, 2);
    // Retries of unknown types still dedupe.
    assert_eq!(duplicate(app.post_jodo(flex).await).await, 1);
    assert_eq!(duplicate(app.post_toolzz(shop).await).await, 2);

    let rows = events(&app.conn());
    assert_eq!(rows.len(), 2);
    let f = &rows[0];
    assert_eq!(
        (
            f.source.as_str(),
            f.event_type.as_str(),
            f.event_version.as_str(),
            f.dedupe_key.as_str(),
            f.subject.as_deref(),
            f.occurred_at,
        ),
        (
            "jodo",
            "flex.instalment.debited",
            "1.0",
            "evt-flex-1",
            Some("42"),
            1700000000
        )
    );
    assert_eq!(f.body, flex.as_bytes());
    let s = &rows[1];
    assert_eq!(
        (
            s.source.as_str(),
            s.event_type.as_str(),
            s.dedupe_key.clone(),
            s.subject.as_deref(),
            s.occurred_at,
        ),
        (
            "toolzz",
            "shop.product.redemption",
            toolzz_key(shop),
            Some("555"),
            1688399621
        )
    );
    assert_eq!(s.body, shop.as_bytes());
    assert!(quarantined(&app.conn()).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_toolzz_ping_is_answered_ping_and_not_logged() {
    let app = spawn_app().await;
    for body in [r#"{"event_type":"PING"}"#, r#"{"event_type":"ping"}"#] {
        let (status, answer) = json(app.post_toolzz(body).await).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer, json!({ "status": "ping" }), "no seq for a ping");
    }
    assert!(events(&app.conn()).is_empty());
    assert!(quarantined(&app.conn()).is_empty());
    assert_eq!(app.get_json("/v1/audit/head").await["seq"], 0);
    // The first real event still gets seq 1.
    assert_eq!(accepted(app.post_toolzz(SEED_ENROLLMENT).await).await, 1);
    app.stop().await;
}

/// Pads a JSON body with trailing spaces to exactly `len` bytes.
fn padded(body: &str, len: usize) -> String {
    assert!(body.len() <= len);
    format!("{body}{}", " ".repeat(len - body.len()))
}

#[tokio::test]
async fn an_oversized_body_is_answered_413_and_quarantined_cut_at_the_limit() {
    const LIMIT: usize = 1024;
    let app = spawn_app_with(|c| c.max_body_bytes = LIMIT).await;
    // Exactly at the limit is fine.
    let at_limit = padded(SEED_DROPPED, LIMIT);
    assert_eq!(accepted(app.post_jodo(&at_limit).await).await, 1);

    // One byte over, correctly signed: still too large.
    let over = padded(
        &jodo_student("registered", "evt-big", "s1", 1655448963),
        LIMIT + 1,
    );
    let message = refused(app.post_jodo(&over).await, 413, "payload_too_large").await;
    assert!(message.contains(&LIMIT.to_string()), "{message}");
    // Far over, for Toolzz with the right token.
    let big = padded(SEED_ENROLLMENT, 4 * LIMIT);
    refused(app.post_toolzz(&big).await, 413, "payload_too_large").await;

    assert_eq!(events(&app.conn()).len(), 1);
    let q = quarantined(&app.conn());
    assert_eq!(q.len(), 2);
    for (row, sent, source) in [(&q[0], &over, "jodo"), (&q[1], &big, "toolzz")] {
        assert_eq!(row.source, source);
        assert_eq!(
            (row.http_status, row.code.as_str()),
            (413, "payload_too_large")
        );
        assert!(row.body_truncated);
        assert!(!row.authenticated, "the body was never authenticated");
        assert_eq!(row.body.len(), LIMIT, "cut at the limit");
        assert_eq!(row.body, sent.as_bytes()[..LIMIT]);
        assert_eq!(row.headers["body_limit"], LIMIT);
    }
    app.stop().await;
}

/// One delivery of the concurrency test.
#[derive(Clone)]
enum Delivery {
    Jodo(String),
    Toolzz(String),
}

impl Delivery {
    fn body(&self) -> &str {
        match self {
            Delivery::Jodo(b) | Delivery::Toolzz(b) => b,
        }
    }

    async fn send(&self, client: &reqwest::Client, base: &str) -> reqwest::Response {
        let req = match self {
            Delivery::Jodo(body) => client
                .post(format!("{base}/webhooks/jodo"))
                .header(
                    "X-Jodo-Signature",
                    jodo::sign(JODO_SECRET.as_bytes(), body.as_bytes()),
                )
                .body(body.clone()),
            Delivery::Toolzz(body) => client
                .post(format!("{base}/webhooks/toolzz/{TOOLZZ_TOKEN}"))
                .body(body.clone()),
        };
        req.send().await.expect("request sent")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_deliveries_are_stored_exactly_once_with_gapless_seqs() {
    let app = spawn_app().await;
    let mut unique = Vec::new();
    for i in 0..90u64 {
        unique.push(Delivery::Jodo(jodo_student(
            "registered",
            &format!("evt-conc-{i}"),
            &format!("stu-{i}"),
            1655448963 + i as i64,
        )));
    }
    for i in 0..70u64 {
        unique.push(Delivery::Toolzz(toolzz_enrollment(
            "activities.course.enrollment",
            "2023-07-03 12:53:41",
            1000 + i,
            5000 + i,
            42,
            1,
        )));
    }
    // 40 identical retries, 20 of each provider, interleaved with the rest.
    let mut all: Vec<Delivery> = Vec::new();
    for (i, d) in unique.iter().enumerate() {
        all.push(d.clone());
        if i < 20 || (90..110).contains(&i) {
            all.push(d.clone());
        }
    }
    assert_eq!((unique.len(), all.len()), (160, 200));

    let mut tasks = tokio::task::JoinSet::new();
    for d in all {
        let client = app.client.clone();
        let base = app.base.clone();
        tasks.spawn(async move {
            let r = d.send(&client, &base).await;
            let (status, answer) = json(r).await;
            (d.body().to_string(), status, answer)
        });
    }
    // body -> (accepted count, seqs answered)
    let mut answers: BTreeMap<String, (usize, BTreeSet<u64>)> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (body, status, answer) = done.expect("task");
        assert_eq!(status, 200, "{answer}");
        let entry = answers.entry(body).or_default();
        match answer["status"].as_str() {
            Some("accepted") => entry.0 += 1,
            Some("duplicate") => {}
            other => panic!("unexpected status {other:?}: {answer}"),
        }
        entry.1.insert(answer["seq"].as_u64().expect("a seq"));
    }
    assert_eq!(answers.len(), 160);
    for (body, (accepted, seqs)) in &answers {
        assert_eq!(*accepted, 1, "accepted exactly once: {body}");
        assert_eq!(seqs.len(), 1, "every answer names the same seq: {body}");
    }

    let rows = events(&app.conn());
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=160).collect::<Vec<_>>(),
        "gapless from 1"
    );
    for row in &rows {
        let body = String::from_utf8(row.body.clone()).unwrap();
        let (_, seqs) = answers.get(&body).expect("a stored body was sent");
        assert_eq!(seqs.iter().next(), Some(&row.seq));
    }
    let keys: BTreeSet<_> = rows.iter().map(|r| (&r.source, &r.dedupe_key)).collect();
    assert_eq!(keys.len(), 160);
    assert_eq!(rows.iter().filter(|r| r.source == "jodo").count(), 90);
    let verified = registrar::log::verify::verify(
        &app.conn(),
        &registrar::log::verify::Options::deep(Default::default()),
    )
    .expect("the chain verifies");
    assert_eq!(verified.head_seq, 160);
    let status = app.get_json("/v1/admin/status").await;
    assert_eq!(status["projections"]["last_seq"], 160);
    assert!(quarantined(&app.conn()).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_every_event_and_dedupe_still_works() {
    let app = spawn_app().await;
    let a = jodo_student("registered", "evt-r1", "s1", 1655448963);
    assert_eq!(accepted(app.post_jodo(SEED_DROPPED).await).await, 1);
    assert_eq!(accepted(app.post_jodo(&a).await).await, 2);
    assert_eq!(accepted(app.post_toolzz(SEED_ENROLLMENT).await).await, 3);
    let head = app.get_json("/v1/audit/head").await;
    let before = events(&app.conn());

    let (dir, config) = app.stop().await;
    let app = start(dir, config).await;
    assert_eq!(app.get_json("/v1/audit/head").await, head);
    assert_eq!(events(&app.conn()), before);
    assert_eq!(duplicate(app.post_jodo(SEED_DROPPED).await).await, 1);
    assert_eq!(duplicate(app.post_jodo(&a).await).await, 2);
    assert_eq!(duplicate(app.post_toolzz(SEED_ENROLLMENT).await).await, 3);
    refused(app.post_jodo(SEED_REGISTERED).await, 409, "conflict").await;
    let b = jodo_student("registered", "evt-r2", "s2", 1655448964);
    assert_eq!(accepted(app.post_jodo(&b).await).await, 4);
    let status = app.get_json("/v1/admin/status").await;
    assert_eq!(status["projections"]["last_seq"], 4);
    assert_eq!(status["quarantine"]["pending"], 1);
    registrar::log::verify::verify(
        &app.conn(),
        &registrar::log::verify::Options::deep(Default::default()),
    )
    .expect("the chain verifies");
    app.stop().await;
}

#[tokio::test]
async fn a_locked_database_is_answered_503_and_nothing_is_stored() {
    // Slow by nature: the writer waits out its 5 s busy timeout.
    let app = spawn_app().await;
    let lock = app.conn();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let r = app.post_jodo(SEED_DROPPED).await;
    let message = refused(r, 503, "unavailable").await;
    assert!(message.contains("nothing was stored"), "{message}");
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);

    assert!(events(&app.conn()).is_empty());
    assert!(quarantined(&app.conn()).is_empty(), "a 503 is not a reject");
    // The provider's retry is accepted as the first event.
    assert_eq!(accepted(app.post_jodo(SEED_DROPPED).await).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_the_database_refuses_is_answered_503_and_the_chain_stays_gapless() {
    let app = spawn_app().await;
    // Fault injection: the database refuses one event type's insert, as a
    // full disk or an I/O error would.
    app.conn()
        .execute_batch(
            "CREATE TRIGGER refuse_test_events BEFORE INSERT ON events
             WHEN NEW.event_type = 'test.refused'
             BEGIN SELECT RAISE(ABORT, 'simulated storage failure'); END;",
        )
        .unwrap();
    let refused_body = |i: usize| {
        format!(
            r#"{{"event":"test.refused","event_id":"evt-refused-{i}","version":"1.0","timestamp":1700000000,"payload":{{}}}}"#
        )
    };
    let mut deliveries = Vec::new();
    for i in 0..30 {
        if i % 3 == 0 {
            deliveries.push((false, refused_body(i)));
        } else {
            deliveries.push((
                true,
                jodo_student("registered", &format!("evt-ok-{i}"), "s1", 1655448963),
            ));
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (ok, body) in deliveries.clone() {
        let d = Delivery::Jodo(body);
        let client = app.client.clone();
        let base = app.base.clone();
        tasks.spawn(async move {
            let (status, answer) = json(d.send(&client, &base).await).await;
            (ok, status, answer)
        });
    }
    let mut seqs = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (ok, status, answer) = done.unwrap();
        if ok {
            assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
            seqs.push(answer["seq"].as_u64().unwrap());
        } else {
            assert_eq!(status, 503, "{answer}");
            assert_eq!(answer["error"]["code"], "unavailable");
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    let rows = events(&app.conn());
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| r.event_type != "test.refused"));
    registrar::log::verify::verify(
        &app.conn(),
        &registrar::log::verify::Options::deep(Default::default()),
    )
    .expect("the chain verifies");
    assert_eq!(
        app.get_json("/v1/admin/status").await["projections"]["last_seq"],
        20
    );

    // Once the database takes writes again, the retries are appended.
    app.conn()
        .execute_batch("DROP TRIGGER refuse_test_events")
        .unwrap();
    for (i, (_, body)) in deliveries.iter().filter(|(ok, _)| !ok).enumerate() {
        assert_eq!(accepted(app.post_jodo(body).await).await, 21 + i as u64);
    }
    registrar::log::verify::verify(
        &app.conn(),
        &registrar::log::verify::Options::deep(Default::default()),
    )
    .expect("the chain verifies");
    app.stop().await;
}

#[tokio::test]
async fn a_json_array_in_place_of_an_envelope_is_rejected_and_quarantined() {
    let app = spawn_app().await;
    let array = r#"["evt-arr","flex.instalment.debited",1700000000,"1.0",{}]"#;
    let (status, body) = json(app.post_jodo(array).await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["message"], "must be a JSON object");
    let (status, _) = json(
        app.post_toolzz(r#"[{"slug":"x","send_at":"2023-07-03 12:53:41"},{}]"#)
            .await,
    )
    .await;
    assert_eq!(status, 400);
    let conn = app.conn();
    let logged: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    let kept: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM quarantine WHERE http_status = 400",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((logged, kept), (0, 2));
    app.stop().await;
}
