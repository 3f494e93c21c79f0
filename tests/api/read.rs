//! The read API end to end: every endpoint and filter, and the ordering
//! scenarios that arrival-order projections get wrong.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::fixtures::*;
use crate::helpers::*;

fn statuses(items: &Value, field: &str) -> Vec<String> {
    items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[field].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn a_drop_delivered_before_its_registration_leaves_the_student_dropped() {
    let app = spawn_app().await;
    accepted(
        app.post_jodo(&jodo_student("dropped", "e-drop", "S1", 200))
            .await,
    )
    .await;
    accepted(
        app.post_jodo(&jodo_student("registered", "e-reg", "S1", 100))
            .await,
    )
    .await;

    let s = app.get_json("/v1/students/S1").await;
    assert_eq!(s["status"], "dropped");
    assert_eq!(s["status_since"], "1970-01-01T00:03:20Z");
    assert_eq!(s["registered_at"], "1970-01-01T00:01:40Z");

    let h = app.get_json("/v1/students/S1/history").await;
    assert_eq!(statuses(&h, "event"), ["registered", "dropped"]);
    assert_eq!(h["items"][0]["event_id"], "e-reg");
    assert_eq!(h["items"][0]["seq"], 2);
    app.stop().await;
}

#[tokio::test]
async fn an_activation_after_a_drop_makes_the_student_active_since_the_activation() {
    let app = spawn_app().await;
    accepted(
        app.post_jodo(&jodo_student("registered", "e1", "S1", 100))
            .await,
    )
    .await;
    accepted(
        app.post_jodo(&jodo_student("activated", "e3", "S1", 300))
            .await,
    )
    .await;
    accepted(
        app.post_jodo(&jodo_student("dropped", "e2", "S1", 200))
            .await,
    )
    .await;
    let s = app.get_json("/v1/students/S1").await;
    assert_eq!(s["status"], "active");
    assert_eq!(s["status_since"], "1970-01-01T00:05:00Z");
    let h = app.get_json("/v1/students/S1/history").await;
    assert_eq!(
        statuses(&h, "event"),
        ["registered", "dropped", "activated"]
    );
    app.stop().await;
}

#[tokio::test]
async fn payments_that_arrive_before_the_registration_link_to_the_student() {
    let app = spawn_app().await;
    // By jodo_student_id, and (second payment) only by the student identifier.
    accepted(
        app.post_jodo(&jodo_payment("added", "p1", "PAY1", Some("S1"), "2000", 50))
            .await,
    )
    .await;
    let orphan =
        jodo_payment("added", "p2", "PAY2", None, "1499.5", 60).replace("id-orphan", "id-S1");
    accepted(app.post_jodo(&orphan).await).await;
    accepted(
        app.post_jodo(&jodo_student("registered", "e-reg", "S1", 100))
            .await,
    )
    .await;

    let p = app.get_json("/v1/students/S1/payments").await;
    let ids: BTreeSet<_> = statuses(&p, "payment_id").into_iter().collect();
    assert_eq!(
        ids,
        BTreeSet::from(["PAY1".to_string(), "PAY2".to_string()])
    );
    assert_eq!(p["total_recorded"], "3499.50");
    // Paged, the total still counts every payment, not just the page's.
    let first = app.get_json("/v1/students/S1/payments?limit=1").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert_eq!(first["total_recorded"], "3499.50");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .get_json(&format!("/v1/students/S1/payments?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(second["total_recorded"], "3499.50");
    assert!(second["next_cursor"].is_null());
    assert_ne!(
        first["items"][0]["payment_id"],
        second["items"][0]["payment_id"]
    );
    let single = app.get_json("/v1/payments/PAY2").await;
    assert_eq!(
        single["jodo_student_id"], "S1",
        "linked through the identifier"
    );
    assert_eq!(single["student_identifier"], "id-S1");
    app.stop().await;
}

#[tokio::test]
async fn a_stale_update_older_than_the_cancellation_does_not_revive_the_payment() {
    let app = spawn_app().await;
    accepted(
        app.post_jodo(&jodo_payment(
            "added",
            "p1",
            "PAY1",
            Some("S1"),
            "2000",
            100,
        ))
        .await,
    )
    .await;
    accepted(
        app.post_jodo(&jodo_payment(
            "cancelled",
            "p3",
            "PAY1",
            Some("S1"),
            "2000",
            300,
        ))
        .await,
    )
    .await;
    accepted(
        app.post_jodo(&jodo_payment(
            "updated",
            "p2",
            "PAY1",
            Some("S1"),
            "2500.25",
            200,
        ))
        .await,
    )
    .await;
    accepted(
        app.post_jodo(&jodo_student("registered", "e-reg", "S1", 10))
            .await,
    )
    .await;

    let p = app.get_json("/v1/payments/PAY1").await;
    assert_eq!(p["status"], "cancelled");
    assert_eq!(p["cancelled_at"], "1970-01-01T00:05:00Z");
    let revs: Vec<_> = p["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(revs, ["added", "updated", "cancelled"]);
    assert_eq!(p["revisions"][1]["amount"], "2500.25");
    let sp = app.get_json("/v1/students/S1/payments").await;
    assert_eq!(
        sp["total_recorded"], "0.00",
        "cancelled payments are listed, not counted"
    );
    assert_eq!(sp["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn as_of_answers_before_between_and_after_the_events() {
    let app = spawn_app().await;
    accepted(
        app.post_jodo(&jodo_student("registered", "e1", "S1", 1_700_000_000))
            .await,
    )
    .await;
    accepted(
        app.post_jodo(&jodo_student("dropped", "e2", "S1", 1_700_100_000))
            .await,
    )
    .await;
    // Before the registration: not registered yet.
    let r = app.get("/v1/students/S1?as_of=2023-11-14T00:00:00Z").await;
    assert_eq!(r.status(), 404);
    // Between: active.
    let s = app
        .get_json("/v1/students/S1?as_of=2023-11-15T00:00:00Z")
        .await;
    assert_eq!(s["status"], "active");
    // Exactly at the drop: dropped (at or before).
    let s = app
        .get_json("/v1/students/S1?as_of=2023-11-16T02:00:00Z")
        .await;
    assert_eq!(s["status"], "dropped");
    // After, with an offset.
    let s = app
        .get_json("/v1/students/S1?as_of=2030-01-01T05:30:00%2B05:30")
        .await;
    assert_eq!(s["status"], "dropped");
    let r = app.get("/v1/students/S1?as_of=yesterday").await;
    let (status, body) = json(r).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("as_of"));
    app.stop().await;
}

#[tokio::test]
async fn a_student_is_found_by_identifier_and_custom_identifier() {
    let app = spawn_app().await;
    accepted(
        app.post_jodo(&jodo_student("registered", "e1", "S1", 100))
            .await,
    )
    .await;
    for id in ["S1", "id-S1", "cust-S1"] {
        let s = app.get_json(&format!("/v1/students/{id}")).await;
        assert_eq!(s["jodo_student_id"], "S1");
        assert_eq!(s["grade"]["code"], "M1BLUE");
        assert_eq!(s["notes"][0]["value"], "REG12345");
    }
    let (status, body) = json(app.get("/v1/students/nobody").await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_changed_identifier_finds_the_student_and_the_old_one_no_longer_does() {
    // Guards the update path that leaves indexed columns alone when they
    // keep their values: when they change, the indexes must follow.
    let app = spawn_app().await;
    app.accept_jodo(&jodo_student("registered", "e1", "S1", 100))
        .await;
    app.accept_jodo(&jodo_student("dropped", "e2", "S1", 200))
        .await;
    let renamed = jodo_student("activated", "e3", "S1", 300)
        .replace("\"id-S1\"", "\"id-S1-new\"")
        .replace("\"cust-S1\"", "\"cust-S1-new\"");
    app.accept_jodo(&renamed).await;
    for id in ["S1", "id-S1-new", "cust-S1-new"] {
        let s = app.get_json(&format!("/v1/students/{id}")).await;
        assert_eq!(s["jodo_student_id"], "S1", "found by {id}");
        assert_eq!(s["status"], "active");
    }
    for old in ["id-S1", "cust-S1"] {
        let (status, _) = json(app.get(&format!("/v1/students/{old}")).await).await;
        assert_eq!(status, 404, "{old} is no longer the student's");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_payment_update_that_moves_paid_at_moves_it_in_the_date_filter() {
    let app = spawn_app().await;
    let added = jodo_payment("added", "p1", "PAY1", Some("S1"), "100.00", 100);
    app.accept_jodo(&added).await;
    let moved = jodo_payment("updated", "p2", "PAY1", Some("S1"), "120.00", 200)
        .replace("2022-01-29T10:05:45Z", "2022-03-01T08:00:00Z");
    app.accept_jodo(&moved).await;
    let january = app
        .get_json("/v1/payments?from=2022-01-01&to=2022-01-31")
        .await;
    assert_eq!(january["items"].as_array().map(Vec::len), Some(0));
    let march = app
        .get_json("/v1/payments?from=2022-03-01&to=2022-03-31")
        .await;
    assert_eq!(statuses(&march, "payment_id"), ["PAY1"]);
    assert_eq!(march["items"][0]["amount"], "120.00");
    app.stop().await;
}

#[tokio::test]
async fn the_student_list_filters_and_pages() {
    let app = spawn_app().await;
    for i in 0..5 {
        accepted(
            app.post_jodo(&jodo_student(
                "registered",
                &format!("r{i}"),
                &format!("S{i}"),
                100,
            ))
            .await,
        )
        .await;
    }
    accepted(
        app.post_jodo(&jodo_student("dropped", "d1", "S1", 200))
            .await,
    )
    .await;
    let dropped = app.get_json("/v1/students?status=dropped").await;
    assert_eq!(statuses(&dropped, "jodo_student_id"), ["S1"]);
    let active = app
        .get_json("/v1/students?status=active&grade=M1BLUE")
        .await;
    assert_eq!(active["items"].as_array().unwrap().len(), 4);
    let by_name = app.get_json("/v1/students?grade=Montessori%201").await;
    assert_eq!(by_name["items"].as_array().unwrap().len(), 5);
    let q = app.get_json("/v1/students?q=cust-s3").await;
    assert_eq!(statuses(&q, "jodo_student_id"), ["S3"]);
    let none = app.get_json("/v1/students?collector_code=NOPE").await;
    assert!(none["items"].as_array().unwrap().is_empty());

    // Paging: 2 + 2 + 1, no repeats, cursor ends with null.
    let mut seen = Vec::new();
    let mut path = "/v1/students?limit=2".to_string();
    loop {
        let page = app.get_json(&path).await;
        seen.extend(statuses(&page, "jodo_student_id"));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/students?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["S0", "S1", "S2", "S3", "S4"]);

    for bad in [
        "status=gone",
        "limit=0",
        "limit=1001",
        "cursor=%%%",
        "nosuch=1",
    ] {
        let (status, body) = json(app.get(&format!("/v1/students?{bad}")).await).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_payment_list_filters_by_date_status_mode_and_collector() {
    let app = spawn_app().await;
    accepted(
        app.post_jodo(&jodo_payment("added", "p1", "PAY1", Some("S1"), "100", 100))
            .await,
    )
    .await;
    let cheque = jodo_payment("added", "p2", "PAY2", Some("S2"), "200", 100)
        .replace("\"cash\"", "\"cheque\"")
        .replace("2022-01-29T10:05:45Z", "2022-02-10T08:00:00Z")
        .replace("COL1", "COL2");
    accepted(app.post_jodo(&cheque).await).await;
    accepted(
        app.post_jodo(&jodo_payment(
            "cancelled",
            "p3",
            "PAY1",
            Some("S1"),
            "100",
            300,
        ))
        .await,
    )
    .await;

    let jan = app
        .get_json("/v1/payments?from=2022-01-01&to=2022-01-31")
        .await;
    assert_eq!(statuses(&jan, "payment_id"), ["PAY1"]);
    let feb = app
        .get_json("/v1/payments?from=2022-02-10T08:00:00Z&to=2022-02-10T08:00:00Z")
        .await;
    assert_eq!(
        statuses(&feb, "payment_id"),
        ["PAY2"],
        "bounds are inclusive"
    );
    let cancelled = app.get_json("/v1/payments?status=cancelled").await;
    assert_eq!(statuses(&cancelled, "payment_id"), ["PAY1"]);
    let cheques = app.get_json("/v1/payments?mode=cheque").await;
    assert_eq!(statuses(&cheques, "payment_id"), ["PAY2"]);
    let col2 = app.get_json("/v1/payments?collector_code=COL2").await;
    assert_eq!(statuses(&col2, "payment_id"), ["PAY2"]);
    let all = app.get_json("/v1/payments").await;
    assert_eq!(all["items"][0]["amount"], "100.00");
    assert_eq!(
        all["items"][0]["details"][0]["fee_component"],
        "TUITION_FEE"
    );

    let (status, _) = json(app.get("/v1/payments?from=2022-03-01&to=2022-01-01").await).await;
    assert_eq!(status, 400);
    let (status, _) = json(app.get("/v1/payments?from=March").await).await;
    assert_eq!(status, 400);
    let (status, _) = json(app.get("/v1/payments/NOPE").await).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn learners_show_schools_enrollments_completion_and_certificates() {
    let app = spawn_app().await;
    let created = toolzz_member(
        "members.created",
        "2023-07-01 10:00:00",
        987654321,
        "First Name",
    );
    accepted(app.post_toolzz(&created.to_string()).await).await;
    accepted(app.post_toolzz(SEED_ENROLLMENT).await).await;
    let updated = toolzz_member(
        "members.updated",
        "2023-07-02 10:00:00",
        987654321,
        "Second Name",
    );
    accepted(app.post_toolzz(&updated.to_string()).await).await;
    let completed = SEED_COURSE_COMPLETED.replace("12:53:41", "18:00:00");
    accepted(app.post_toolzz(&completed).await).await;
    let cert = serde_json::json!({
        "event": { "name": "Atividades - Certificado emitido", "slug": "activities.certificate.issued", "send_at": "2023-07-04 09:00:00" },
        "data": { "institution": { "id": 12345 }, "user": { "id": 987654321, "name": "Student", "email": "student@toolzz.com" },
                  "course": { "id": 123456, "name": "Course Name", "workload": 10, "enrolled_at": "2023-07-03", "concluded_at": "2023-07-03" },
                  "school": { "id": 1, "name": "School", "managers": [] },
                  "certificate": { "certified_at": "2023-07-04 09:00:00", "type": "achievement", "approval_rate": 87.5 } }
    });
    accepted(app.post_toolzz(&cert.to_string()).await).await;

    let l = app.get_json("/v1/learners/987654321").await;
    assert_eq!(l["name"], "Second Name");
    assert_eq!(l["schools"][0]["school_id"], "99");
    assert_eq!(
        l["created_at"], "2023-07-01T13:00:00Z",
        "send_at is read in America/Sao_Paulo"
    );
    let e = &l["enrollments"][0];
    assert_eq!(e["enrollment_id"], "11");
    assert_eq!(e["course_id"], "123456");
    assert_eq!(e["status"], "completed");
    assert_eq!(e["enrolled_at"], "2023-07-03T15:53:41Z");
    assert_eq!(e["completed_at"], "2023-07-03T21:00:00Z");
    assert_eq!(e["certificate"]["type"], "achievement");
    assert_eq!(e["certificate"]["approval_rate"], "87.5");

    let (status, _) = json(app.get("/v1/learners/1").await).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn the_enrollment_list_filters_by_user_course_and_status() {
    let app = spawn_app().await;
    accepted(
        app.post_toolzz(&toolzz_enrollment(
            "activities.course.enrollment",
            "2023-07-03 10:00:00",
            1,
            10,
            100,
            1,
        ))
        .await,
    )
    .await;
    accepted(
        app.post_toolzz(&toolzz_enrollment(
            "activities.course.enrollment",
            "2023-07-03 10:00:00",
            2,
            10,
            200,
            0,
        ))
        .await,
    )
    .await;
    accepted(
        app.post_toolzz(&toolzz_enrollment(
            "activities.course.enrollment",
            "2023-07-03 10:00:00",
            3,
            20,
            100,
            1,
        ))
        .await,
    )
    .await;
    let u10 = app.get_json("/v1/enrollments?user_id=10").await;
    assert_eq!(statuses(&u10, "enrollment_id"), ["1", "2"]);
    let c100 = app.get_json("/v1/enrollments?course_id=100").await;
    assert_eq!(statuses(&c100, "enrollment_id"), ["1", "3"]);
    let inactive = app.get_json("/v1/enrollments?status=inactive").await;
    assert_eq!(statuses(&inactive, "enrollment_id"), ["2"]);
    assert_eq!(inactive["items"][0]["active"], false);
    // A learner seen only in enrollments is still found.
    let l = app.get_json("/v1/learners/20").await;
    assert_eq!(l["enrollments"].as_array().unwrap().len(), 1);
    assert_eq!(l["name"], "Student");
    let (status, _) = json(app.get("/v1/enrollments?status=done").await).await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test]
async fn the_audit_trail_lists_events_with_their_hashes_and_original_body() {
    let app = spawn_app().await;
    accepted(
        app.post_jodo(&jodo_student("registered", "e1", "S1", 100))
            .await,
    )
    .await;
    accepted(app.post_toolzz(SEED_ENROLLMENT).await).await;
    accepted(
        app.post_jodo(&jodo_payment("added", "p1", "PAY1", Some("S1"), "10", 100))
            .await,
    )
    .await;

    let all = app.get_json("/v1/events").await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["prev_hash"], "0".repeat(64));
    assert_eq!(items[1]["prev_hash"], items[0]["hash"]);
    assert_eq!(items[1]["body"]["data"]["course"]["name"], "Course Name");
    assert_eq!(items[1]["occurred_at"], "2023-07-03T15:53:41Z");
    assert_eq!(items[0]["body_intact"], true);

    let toolzz = app.get_json("/v1/events?source=toolzz").await;
    assert_eq!(toolzz["items"].as_array().unwrap().len(), 1);
    assert!(toolzz["items"][0]["dedupe_key"]
        .as_str()
        .unwrap()
        .starts_with("blake3:"));
    let typed = app.get_json("/v1/events?type=direct.payment.added").await;
    assert_eq!(typed["items"][0]["subject"], "PAY1");
    let subject = app.get_json("/v1/events?subject=S1").await;
    assert_eq!(subject["items"].as_array().unwrap().len(), 1);
    let after = app.get_json("/v1/events?after_seq=2").await;
    assert_eq!(after["items"][0]["seq"], 3);
    let paged = app.get_json("/v1/events?limit=2").await;
    let cursor = paged["next_cursor"].as_str().unwrap();
    let rest = app
        .get_json(&format!("/v1/events?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["items"][0]["seq"], 3);
    assert!(rest["next_cursor"].is_null());

    let one = app.get_json("/v1/events/2").await;
    assert_eq!(one["type"], "activities.course.enrollment");
    let head = app.get_json("/v1/audit/head").await;
    assert_eq!(head["seq"], 3);
    assert_eq!(head["hash"], items[2]["hash"]);
    assert_eq!(json(app.get("/v1/events/99").await).await.0, 404);
    assert_eq!(json(app.get("/v1/events/abc").await).await.0, 400);
    app.stop().await;
}

#[tokio::test]
async fn the_read_token_guards_v1_and_the_admin_token_guards_admin() {
    let app = spawn_app_with(|c| {
        c.read_token = Some("reader".into());
        c.admin_token = Some("admin".into());
    })
    .await;
    let get = |path: &str, token: Option<&str>| {
        let mut r = app.client.get(app.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(get("/v1/students", None).await.unwrap().status(), 401);
    assert_eq!(
        get("/v1/students", Some("wrong")).await.unwrap().status(),
        401
    );
    assert_eq!(
        get("/v1/students", Some("reader")).await.unwrap().status(),
        200
    );
    assert_eq!(
        get("/v1/admin/status", Some("reader"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get("/v1/admin/status", Some("admin"))
            .await
            .unwrap()
            .status(),
        200
    );
    // Webhooks and the document stay reachable without the read token.
    assert_eq!(get("/openapi.json", None).await.unwrap().status(), 200);
    assert_eq!(app.post_jodo(SEED_DROPPED).await.status(), 200);
    app.stop().await;
}

/// Whether a concrete path is one a documented path template matches.
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
    let app = spawn_app().await;
    let doc = app.get_json("/openapi.json").await;
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            assert!(methods.contains(&method.as_str()), "{method} {path}");
            documented.insert((method, path.clone()));
        }
    }
    // The webhooks, the API, admin and health are all in it.
    for (method, path) in [
        ("POST", "/webhooks/jodo"),
        ("POST", "/webhooks/toolzz/{token}"),
        ("GET", "/healthz"),
        ("GET", "/openapi.json"),
        ("GET", "/v1/students/{id}/payments"),
        ("GET", "/v1/reports/statement/{student_id}"),
        ("POST", "/v1/admin/rebuild"),
    ] {
        assert!(
            documented.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is not documented"
        );
    }
    let paths: BTreeSet<_> = documented.iter().map(|(_, p)| p.clone()).collect();
    let concrete = |path: &str| {
        path.split('/')
            .map(|s| if s.starts_with('{') { "1" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    };
    let request = |method: &str, path: &str| {
        let r = app.client.request(method.parse().unwrap(), app.url(path));
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    // On every documented path, each documented method is served (neither
    // the fallback nor a 405), and every other method is a 405: the router
    // serves no method the document does not declare.
    for path in &paths {
        for method in methods {
            let (status, text) = request(method, &concrete(path)).await;
            if documented.contains(&(method.to_string(), path.clone())) {
                assert!(
                    !text.contains("no such route") && status != 405,
                    "{method} {path} is documented but not served: {status} {text}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is served but not documented");
            }
        }
    }
    // Paths beside the documented ones (each prefix, each with one more
    // segment) that no documented path matches fall to the fallback: the
    // router serves no path the document does not declare.
    let mut probes = BTreeSet::new();
    for path in &paths {
        let segments: Vec<_> = concrete(path).split('/').map(String::from).collect();
        for end in 2..segments.len() {
            probes.insert(segments[..end].join("/"));
        }
        probes.insert(format!("{}/more", concrete(path)));
    }
    probes.retain(|probe| !paths.iter().any(|t| matches_template(t, probe)));
    assert!(probes.contains("/v1/reports"), "{probes:?}");
    for probe in &probes {
        for method in ["GET", "POST"] {
            let (status, text) = request(method, probe).await;
            assert!(
                status == 404 && text.contains("no such route"),
                "{method} {probe} is served but not documented: {status} {text}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_names_the_token_each_route_takes_and_the_503_of_min_seq() {
    let app = spawn_app_with(|c| {
        c.read_token = Some("reader".into());
        c.admin_token = Some("admin".into());
        // The 503 below comes after this wait.
        c.min_seq_wait = std::time::Duration::from_millis(10);
    })
    .await;
    let doc = app.get_json("/openapi.json").await;
    assert!(doc.get("security").is_none(), "no global requirement");
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let concrete = path
                .split('/')
                .map(|s| if s.starts_with('{') { "1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let status = |token: Option<&'static str>| {
                let mut r = app
                    .client
                    .request(method.to_uppercase().parse().unwrap(), app.url(&concrete));
                if let Some(t) = token {
                    r = r.bearer_auth(t);
                }
                async move { r.send().await.unwrap().status().as_u16() }
            };
            let security = op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{path}"));
            let scheme = security
                .first()
                .and_then(|s| s.as_object())
                .and_then(|s| s.keys().next().cloned());
            match scheme.as_deref() {
                // Open: health, metrics, the document (and the webhooks,
                // which authenticate their deliveries themselves).
                None => {
                    assert!(!path.starts_with("/v1/"), "{path} is open");
                    if method == "get" {
                        assert_ne!(status(None).await, 401, "{path}");
                    }
                }
                Some(scheme) => {
                    let (right, wrong) = match scheme {
                        "read_token" => ("reader", "admin"),
                        "admin_token" => ("admin", "reader"),
                        other => panic!("{path}: unknown scheme {other}"),
                    };
                    assert_eq!(path.starts_with("/v1/admin/"), scheme == "admin_token");
                    assert_eq!(status(None).await, 401, "{path} without a token");
                    assert_eq!(status(Some(wrong)).await, 401, "{path} with {wrong}");
                    assert_ne!(status(Some(right)).await, 401, "{path} with {right}");
                    assert!(op["responses"]["401"].is_object(), "{path}");
                    // Read-your-writes: min_seq, and its 503 with Retry-After.
                    let params = op["parameters"].as_array().unwrap();
                    assert!(
                        params
                            .iter()
                            .any(|p| p["name"] == "min_seq" && p["in"] == "query"),
                        "{path}"
                    );
                    let not_ready = &op["responses"]["503"];
                    assert!(not_ready["headers"]["Retry-After"].is_object(), "{path}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["read_token"]["scheme"],
        "bearer"
    );
    // Every /v1 operation (the None arm refuses an open one), and there are some.
    assert!(checked > 10, "{checked} guarded operations");
    // And a min_seq past the head is that 503, with Retry-After.
    let r = app
        .client
        .get(app.url("/v1/students?min_seq=1000"))
        .bearer_auth("reader")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    app.stop().await;
}

#[tokio::test]
async fn a_rebuild_yields_the_same_projections_and_loses_no_concurrent_delivery() {
    let app = spawn_app().await;
    for i in 0..300 {
        let sid = format!("S{}", i % 40);
        accepted(
            app.post_jodo(&jodo_student(
                if i % 3 == 0 { "dropped" } else { "registered" },
                &format!("s{i}"),
                &sid,
                1000 - i,
            ))
            .await,
        )
        .await;
        accepted(
            app.post_jodo(&jodo_payment(
                "added",
                &format!("p{i}"),
                &format!("PAY{i}"),
                Some(&sid),
                "10.5",
                100 + i,
            ))
            .await,
        )
        .await;
    }
    let before_students = app.get_json("/v1/students?limit=1000").await;
    let before_payments = app.get_json("/v1/payments?limit=1000").await;

    // Deliveries keep arriving while the rebuild runs.
    let writer = {
        let (client, base) = (app.client.clone(), app.base.clone());
        tokio::spawn(async move {
            let mut acked = 0;
            for i in 0..200 {
                let body = jodo_payment(
                    "added",
                    &format!("late{i}"),
                    &format!("LATE{i}"),
                    Some("S1"),
                    "1",
                    5000 + i,
                );
                let r = post_signed_jodo(&client, &base, body).await.unwrap();
                assert_eq!(r.status(), 200);
                acked += 1;
            }
            acked
        })
    };
    let report = app
        .client
        .post(app.url("/v1/admin/rebuild"))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 200);
    let report: Value = report.json().await.unwrap();
    assert!(report["events"].as_u64().unwrap() >= 600, "{report}");
    assert_eq!(writer.await.unwrap(), 200);

    let after_students = app.get_json("/v1/students?limit=1000").await;
    assert_eq!(
        before_students, after_students,
        "a rebuild reproduces the students"
    );
    let after_payments = app.get_json("/v1/payments?limit=1000").await;
    assert_eq!(
        after_payments["items"].as_array().unwrap().len(),
        500,
        "300 before + 200 during the rebuild"
    );
    for p in before_payments["items"].as_array().unwrap() {
        assert!(after_payments["items"].as_array().unwrap().contains(p));
    }
    let status = app.get_json("/v1/admin/status").await;
    assert_eq!(status["log"]["seq"], 800);
    assert_eq!(status["projections"]["last_seq"], 800);
    app.stop().await;
}

/// Index name and definition of every projection table.
async fn projection_indexes(app: &TestApp) -> BTreeSet<(String, String)> {
    let conn = app.store_conn().await;
    let mut stmt = conn
        .prepare("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .unwrap();
    rows.map(|r| r.unwrap())
        .filter(|(_, table, _)| registrar::projection::store::TABLES.contains(&table.as_str()))
        .map(|(name, _, sql)| (name, sql))
        .collect()
}

#[tokio::test]
async fn a_rebuild_recreates_every_projection_index() {
    let app = spawn_app().await;
    accepted(
        app.post_jodo(&jodo_student("registered", "e1", "S1", 100))
            .await,
    )
    .await;
    let before = projection_indexes(&app).await;
    assert!(before.len() >= 12, "{before:?}");
    let r = app
        .client
        .post(app.url("/v1/admin/rebuild"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(projection_indexes(&app).await, before);
    app.stop().await;
}
