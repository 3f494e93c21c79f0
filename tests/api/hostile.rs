//! Hostile and careless input (issue 11): each test guards one case that was
//! once accepted, answered outside the error shape, or made the server panic.

use crate::fixtures::*;
use crate::helpers::*;
use crate::ingest::{events, quarantined, refused};

#[tokio::test]
async fn a_students_payments_of_the_maximum_amount_are_totalled_without_a_panic() {
    let app = spawn_app().await;
    app.accept_jodo(&jodo_student("registered", "e-reg", "s1", 1655448963))
        .await;
    for i in 0..3 {
        let body = jodo_payment(
            "added",
            &format!("e-pay-{i}"),
            &format!("pay_{i}"),
            Some("s1"),
            "1000000000000",
            1655448964 + i,
        );
        app.accept_jodo(&body).await;
    }
    // One page holds them all: summed in Rust.
    let all = app.get_json("/v1/students/s1/payments").await;
    assert_eq!(all["total_recorded"], "3000000000000.00");
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    // Paged: summed by SQL.
    let page = app.get_json("/v1/students/s1/payments?limit=1").await;
    assert_eq!(page["total_recorded"], "3000000000000.00");
    // The server is still up.
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_amount_over_the_documented_maximum_is_refused_400() {
    let app = spawn_app().await;
    let body = jodo_payment("added", "e1", "pay_1", Some("s1"), "1000000000000.01", 1);
    let message = refused(app.post_jodo(&body).await, 400, "invalid_delivery").await;
    assert!(message.starts_with("payload.payment.amount"), "{message}");
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_refused_400_and_quarantined_with_its_exact_bytes() {
    let app = spawn_app().await;
    let mut jodo = jodo_student("registered", "e-utf8", "s1", 1655448963).into_bytes();
    // A non-UTF-8 byte in an extra field that no struct reads.
    let at = jodo.len() - 1;
    jodo.splice(
        at..at,
        br#","extra":"caf"#.iter().copied().chain([0xe9, b'"']),
    );
    refused(app.post_jodo_bytes(&jodo).await, 400, "invalid_delivery").await;

    let latin1: Vec<u8> = SEED_ENROLLMENT.chars().map(|c| c as u32 as u8).collect();
    assert!(std::str::from_utf8(&latin1).is_err());
    let path = format!("/webhooks/toolzz/{TOOLZZ_TOKEN}");
    refused(
        app.post_bytes(&path, &latin1, &[]).await,
        400,
        "invalid_delivery",
    )
    .await;

    assert!(events(&app.conn()).is_empty());
    let q = quarantined(&app.conn());
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].body, jodo);
    assert_eq!(q[1].body, latin1);
    app.stop().await;
}

#[tokio::test]
async fn a_time_rfc3339_cannot_show_is_refused_400_naming_the_field() {
    let app = spawn_app().await;
    let body = jodo_student("registered", "e1", "s1", i64::MAX);
    let message = refused(app.post_jodo(&body).await, 400, "invalid_delivery").await;
    assert!(message.starts_with("timestamp: "), "{message}");
    let body = jodo_payment("added", "e2", "pay_1", Some("s1"), "5", 1)
        .replace("2022-01-29T10:05:45Z", "9999-12-31T23:59:59-00:01");
    let message = refused(app.post_jodo(&body).await, 400, "invalid_delivery").await;
    assert!(
        message.starts_with("payload.payment.paid_at: "),
        "{message}"
    );
    assert!(events(&app.conn()).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn loose_send_at_school_dates_and_date_expire_are_refused_400() {
    let app = spawn_app().await;
    for bad in [
        " 2023-07-03 12:53:41",
        "2023-7-3 12:53:41",
        "2023-07-03  12:53:41",
    ] {
        let body = SEED_ENROLLMENT.replace("2023-07-03 12:53:41", bad);
        let message = refused(app.post_toolzz(&body).await, 400, "invalid_delivery").await;
        assert!(message.starts_with("event.send_at: "), "{bad:?}: {message}");
    }
    let body = SEED_MEMBERS_UPDATED.replace("03/07/2023 14:29:04", "3/7/2023 14:29:04");
    let message = refused(app.post_toolzz(&body).await, 400, "invalid_delivery").await;
    assert!(
        message.starts_with("data.user.institution[0].schools[0].updated_at: "),
        "{message}"
    );
    let body = SEED_ENROLLMENT.replace(r#""date_expire": null"#, r#""date_expire": "2024-1-5""#);
    let message = refused(app.post_toolzz(&body).await, 400, "invalid_delivery").await;
    assert!(
        message.starts_with("data.enrollment.date_expire: "),
        "{message}"
    );
    assert!(events(&app.conn()).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn envelopes_need_an_object_payload_or_data_a_string_version_and_a_bounded_type() {
    let app = spawn_app().await;
    let null_payload = r#"{"event":"flex.instalment.debited","event_id":"e1","version":"1.0","timestamp":1,"payload":null}"#;
    let message = refused(app.post_jodo(null_payload).await, 400, "invalid_delivery").await;
    assert_eq!(message, "payload: must be a JSON object");

    let string_data = r#"{"event":{"name":"n","slug":"shop.product.redemption","send_at":"2023-07-03 12:53:41"},"data":"x"}"#;
    let message = refused(app.post_toolzz(string_data).await, 400, "invalid_delivery").await;
    assert_eq!(message, "data: must be a JSON object");

    let numeric_version = SEED_DROPPED.replace(r#""version": "1.0""#, r#""version": 1.0"#);
    let message = refused(
        app.post_jodo(&numeric_version).await,
        400,
        "invalid_delivery",
    )
    .await;
    assert!(message.starts_with("version: "), "{message}");

    let huge_type = format!(
        r#"{{"event":"{}","event_id":"e2","version":"1.0","timestamp":1,"payload":{{}}}}"#,
        "x".repeat(500_000)
    );
    let message = refused(app.post_jodo(&huge_type).await, 400, "invalid_delivery").await;
    assert!(message.starts_with("event: is longer than"), "{message}");
    assert!(message.len() < 200, "the type is not echoed back");
    assert!(events(&app.conn()).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn two_signature_headers_are_refused_401_even_when_the_first_is_good() {
    let app = spawn_app().await;
    let body = jodo_student("registered", "e1", "s1", 1655448963);
    let good = registrar::sources::jodo::sign(JODO_SECRET.as_bytes(), body.as_bytes());
    let r = app
        .post_jodo_with(
            &body,
            &[
                ("X-Jodo-Signature", &good),
                ("X-Jodo-Signature", &"0".repeat(64)),
            ],
        )
        .await;
    let message = refused(r, 401, "unauthorized").await;
    assert!(message.contains("more than once"), "{message}");
    let r = app
        .post_jodo_with(
            &body,
            &[("X-Jodo-Signature", &good), ("X-Jodo-Signature", &good)],
        )
        .await;
    refused(r, 401, "unauthorized").await;
    assert!(events(&app.conn()).is_empty());
    assert_eq!(quarantined(&app.conn()).len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn seqs_and_cursors_beyond_i64_are_refused_400_not_wrapped() {
    let app = spawn_app().await;
    app.accept_jodo(SEED_DROPPED).await;
    for big in ["18446744073709551615", "9223372036854775808"] {
        let r = app.get(&format!("/v1/events?after_seq={big}")).await;
        refused(r, 400, "invalid_request").await;
        let cursor = base64_url(big);
        let r = app.get(&format!("/v1/events?cursor={cursor}")).await;
        refused(r, 400, "invalid_request").await;
        refused(
            app.get(&format!("/v1/events/{big}")).await,
            400,
            "invalid_request",
        )
        .await;
    }
    // The largest seq SQLite can hold is a valid (empty) page.
    let page = app
        .get_json("/v1/events?after_seq=9223372036854775807")
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    app.stop().await;
}

/// base64url without padding, as the API's cursors are.
fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn unknown_query_parameters_are_refused_400_on_every_route() {
    let app = spawn_app().await;
    let seq = app
        .accept_jodo(&jodo_payment("added", "e1", "pay_1", Some("s1"), "5", 1))
        .await;
    app.accept_jodo(&jodo_student("registered", "e2", "s1", 2))
        .await;
    app.post_toolzz(SEED_ENROLLMENT).await;
    for path in [
        format!("/v1/events/{seq}?foo=1"),
        "/v1/payments/pay_1?foo=1".into(),
        "/v1/learners/987654321?foo=1".into(),
        "/v1/audit/head?foo=1".into(),
        "/v1/admin/status?foo=1".into(),
        "/v1/students/s1?foo=1".into(),
        "/v1/students?foo=1".into(),
        "/healthz?foo=1".into(),
        "/openapi.json?foo=1".into(),
    ] {
        let message = refused(app.get(&path).await, 400, "invalid_request").await;
        assert!(message.contains("foo"), "{path}: {message}");
        // Without the parameter the same route answers.
        let bare = path.trim_end_matches("?foo=1");
        assert_eq!(app.get(bare).await.status(), 200, "{bare}");
    }
    let r = app
        .client
        .post(app.url("/v1/admin/rebuild?foo=1"))
        .send()
        .await
        .unwrap();
    refused(r, 400, "invalid_request").await;
    // A webhook takes none either: refused after authentication, quarantined.
    let body = jodo_student("registered", "e3", "s3", 3);
    let sig = registrar::sources::jodo::sign(JODO_SECRET.as_bytes(), body.as_bytes());
    let r = app
        .post_bytes(
            "/webhooks/jodo?foo=1",
            body.as_bytes(),
            &[("X-Jodo-Signature", &sig)],
        )
        .await;
    refused(r, 400, "invalid_request").await;
    let q = quarantined(&app.conn());
    assert_eq!((q.len(), q[0].authenticated), (1, true));
    app.stop().await;
}

#[tokio::test]
async fn control_characters_and_bad_escapes_in_query_values_are_refused_400() {
    let app = spawn_app().await;
    app.accept_jodo(&jodo_student("registered", "e1", "s1", 1))
        .await;
    for q in [
        "q=%00", "q=a%0Ab", "q=%7F", "q=%C2%85", "q=%ff", "q=%zz", "q=%4",
    ] {
        let r = app.get(&format!("/v1/students?{q}")).await;
        refused(r, 400, "invalid_request").await;
    }
    // A plain search still works, and matches only what it should.
    let found = app.get_json("/v1/students?q=s1").await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    let none = app.get_json("/v1/students?q=nobody").await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    app.stop().await;
}

/// Asserts an answer in the error shape with this status and code; returns it.
async fn shaped(r: reqwest::Response, status: u16, code: &str) -> reqwest::header::HeaderMap {
    let headers = r.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(content_type.as_deref(), Some("application/json"));
    refused(r, status, code).await;
    headers
}

#[tokio::test]
async fn a_method_a_route_does_not_serve_is_405_in_the_error_shape_with_allow() {
    let app = spawn_app().await;
    let token_path = format!("/webhooks/toolzz/{TOOLZZ_TOKEN}");
    for path in ["/webhooks/jodo", "/webhooks/toolzz", token_path.as_str()] {
        for method in ["GET", "PUT", "DELETE", "PATCH"] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = app
                .client
                .request(method, app.url(path))
                .send()
                .await
                .unwrap();
            let headers = shaped(r, 405, "method_not_allowed").await;
            assert_eq!(headers["allow"], "POST", "{path}");
        }
    }
    let r = app
        .client
        .post(app.url("/v1/students"))
        .send()
        .await
        .unwrap();
    let headers = shaped(r, 405, "method_not_allowed").await;
    assert!(headers["allow"].to_str().unwrap().contains("GET"));
    assert!(quarantined(&app.conn()).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_path_segment_that_does_not_decode_is_400_in_the_error_shape() {
    let app = spawn_app().await;
    for path in [
        "/v1/students/%ff",
        "/v1/students/%ff/history",
        "/v1/students/%ff/payments",
        "/v1/payments/%ff",
        "/v1/learners/%ff",
        "/v1/events/%ff",
    ] {
        shaped(app.get(path).await, 400, "invalid_request").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_toolzz_token_that_does_not_decode_is_401_in_the_error_shape_and_quarantined() {
    let app = spawn_app().await;
    let r = app
        .post_bytes("/webhooks/toolzz/%ff", SEED_ENROLLMENT.as_bytes(), &[])
        .await;
    shaped(r, 401, "unauthorized").await;
    let q = quarantined(&app.conn());
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].http_status, q[0].authenticated), (401, false));
    assert_eq!(q[0].body, SEED_ENROLLMENT.as_bytes());
    // A token that is only percent-encoded still matches.
    let encoded: String = TOOLZZ_TOKEN.bytes().map(|b| format!("%{b:02X}")).collect();
    let r = app
        .post_bytes(
            &format!("/webhooks/toolzz/{encoded}"),
            SEED_ENROLLMENT.as_bytes(),
            &[],
        )
        .await;
    assert_eq!(accepted(r).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn an_overlong_target_is_414_and_overlarge_headers_431_in_the_error_shape() {
    let app = spawn_app().await;
    let long = format!(
        "/v1/students/{}",
        "a".repeat(registrar::http::error::MAX_URI_BYTES)
    );
    shaped(app.get(&long).await, 414, "uri_too_long").await;
    let big = "b".repeat(registrar::http::error::MAX_HEADER_BYTES);
    let r = app
        .client
        .get(app.url("/v1/students"))
        .header("x-padding", big)
        .send()
        .await
        .unwrap();
    shaped(r, 431, "header_fields_too_large").await;
    // Within the limits, the same route answers.
    assert_eq!(app.get("/v1/students").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_route_is_404_in_the_error_shape() {
    let app = spawn_app().await;
    shaped(app.get("/nowhere").await, 404, "not_found").await;
    app.stop().await;
}
