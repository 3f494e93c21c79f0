//! The projector and the two stores: read-your-writes, health, metrics, the
//! upgrade from a release that kept projections in the log file, and a
//! projector that stops on a write error instead of skipping an event.

use std::time::Duration;

use serde_json::Value;

use crate::fixtures::*;
use crate::helpers::*;

/// A GET without the helper's automatic `min_seq`.
async fn raw_get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request sent")
}

fn position(r: &reqwest::Response) -> u64 {
    r.headers()
        .get("x-registrar-position")
        .expect("every read answer carries X-Registrar-Position")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_read_with_min_seq_is_answered_once_the_projections_hold_that_seq() {
    let app = spawn_app().await;
    app.accept_jodo(&jodo_student("registered", "e1", "S1", 100))
        .await;
    let seq = app
        .accept_jodo(&jodo_student("dropped", "e2", "S1", 200))
        .await;
    let r = raw_get(&app, &format!("/v1/students/S1?min_seq={seq}"), &[]).await;
    assert_eq!(r.status(), 200);
    assert!(position(&r) >= seq);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "dropped", "{body}");
    // The header form does the same.
    let r = raw_get(
        &app,
        "/v1/students/S1",
        &[("X-Registrar-Min-Seq", &seq.to_string())],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(position(&r) >= seq);
    app.stop().await;
}

#[tokio::test]
async fn a_read_for_a_seq_not_reached_in_time_answers_503_with_retry_after() {
    let app = spawn_app_with(|c| c.min_seq_wait = Duration::from_millis(50)).await;
    let seq = app
        .accept_jodo(&jodo_student("registered", "e1", "S1", 100))
        .await;
    let r = raw_get(&app, &format!("/v1/students?min_seq={}", seq + 1000), &[]).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let (_, body) = json(r).await;
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    app.stop().await;
}

#[tokio::test]
async fn min_seq_leaves_the_routes_own_parameters_strict() {
    let app = spawn_app().await;
    let seq = app
        .accept_jodo(&jodo_student("registered", "e1", "S1", 100))
        .await;
    let r = raw_get(
        &app,
        &format!("/v1/students?status=active&min_seq={seq}"),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let (status, body) = json(raw_get(&app, "/v1/students?min_seq=abc", &[]).await).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = json(raw_get(&app, "/v1/students?min_seq=1&nope=1", &[]).await).await;
    assert_eq!(status, 400, "an unknown parameter stays an error: {body}");
    let (status, _) = json(
        raw_get(
            &app,
            "/v1/students?min_seq=1",
            &[("X-Registrar-Min-Seq", "2")],
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "the two forms must agree");
    app.stop().await;
}

#[tokio::test]
async fn every_read_answer_says_the_position_of_the_projections() {
    let app = spawn_app().await;
    let seq = app
        .accept_jodo(&jodo_student("registered", "e1", "S1", 100))
        .await;
    for path in [
        "/v1/events",
        "/v1/audit/head",
        "/v1/admin/status",
        "/v1/payments",
    ] {
        let r = raw_get(&app, &format!("{path}?min_seq={seq}"), &[]).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(position(&r), seq, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn readyz_and_healthz_answer_200_when_the_log_and_projector_are_well() {
    let app = spawn_app().await;
    app.accept_jodo(&jodo_student("registered", "e1", "S1", 100))
        .await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    let (status, body) = json(app.get("/readyz").await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["projector"]["ok"], true);
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_deliveries_by_source_type_and_outcome_in_prometheus_text() {
    let app = spawn_app().await;
    let body = jodo_student("registered", "e1", "S1", 100);
    app.accept_jodo(&body).await;
    assert_eq!(app.post_jodo(&body).await.status(), 200); // a duplicate
    assert_eq!(app.post_jodo_with(&body, &[]).await.status(), 401);
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    for line in [
        r#"registrar_deliveries_total{source="jodo",event_type="masterdata.student.registered",outcome="accepted"} 1"#,
        r#"registrar_deliveries_total{source="jodo",event_type="masterdata.student.registered",outcome="duplicate"} 1"#,
        r#"registrar_deliveries_total{source="jodo",event_type="unknown",outcome="rejected_unauthenticated"} 1"#,
        "registrar_quarantine_pending 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    for name in [
        "registrar_ingest_latency_seconds_bucket",
        "registrar_writer_batch_size_bucket",
        "registrar_writer_queue_depth",
        "registrar_projection_position_seq",
        "registrar_projection_lag_events",
        "registrar_projection_lag_seconds",
        "registrar_rebuilds_total",
        "registrar_quarantine_evictions",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_projection_write_error_stops_the_projector_loudly_and_skips_nothing() {
    let app = spawn_app().await;
    let first = app
        .accept_jodo(&jodo_student("registered", "e1", "S1", 100))
        .await;
    let _ = app.get_json("/v1/students/S1").await;
    // Make the next projection write fail.
    let store = app.store_conn().await;
    store
        .execute_batch(
            "CREATE TRIGGER injected BEFORE INSERT ON student_history
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    app.accept_jodo(&jodo_student("dropped", "e2", "S1", 200))
        .await;
    let mut ready = Value::Null;
    for _ in 0..200 {
        let (status, body) = json(app.get("/readyz").await).await;
        if status == 503 {
            ready = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ready["projector"]["ok"], false, "{ready}");
    assert!(
        ready["projector"]["problem"]
            .as_str()
            .unwrap()
            .contains("stopped"),
        "{ready}"
    );
    // Nothing was skipped: the projections still stand at the first event.
    let r = raw_get(&app, "/v1/students/S1", &[]).await;
    assert_eq!(position(&r), first);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "active");
    // Mended and restarted, the projector goes on from where it stopped.
    store.execute_batch("DROP TRIGGER injected").unwrap();
    drop(store);
    let (dir, config) = app.stop().await;
    let app = start(dir, config).await;
    let body = app.get_json("/v1/students/S1").await;
    assert_eq!(body["status"], "dropped", "{body}");
    app.stop().await;
}

/// The tables a release before the split kept in the log file.
fn legacy_tables(conn: &rusqlite::Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN
             ('projection_state', 'students', 'payments', 'student_history', 'certificates')",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test]
async fn a_database_made_by_the_previous_release_is_upgraded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("registrar.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/legacy-v3.db"),
        &db,
    )
    .unwrap();
    assert_eq!(
        legacy_tables(&registrar::db::open_rw(&db).unwrap()).len(),
        5
    );
    let mut settings = registrar::config::Settings::new(&db);
    settings.jodo_secret = Some(JODO_SECRET.into());
    settings.toolzz_token = Some(TOOLZZ_TOKEN.into());
    let app = start(dir, settings.validate().unwrap()).await;
    // Ingest is served at once, on the same log.
    let seq = app
        .accept_jodo(&jodo_student("registered", "e-new", "S3", 1_700_000_800))
        .await;
    assert_eq!(seq, 13, "the twelve events of the old release stay");
    // The projections are rebuilt from the log into their own file.
    let s2 = app.get_json("/v1/students/S2").await;
    assert_eq!(s2["status"], "dropped", "{s2}");
    let p1 = app.get_json("/v1/payments/P1").await;
    assert_eq!(p1["amount"], "1600.00", "{p1}");
    let p2 = app.get_json("/v1/payments/P2").await;
    assert_eq!(p2["status"], "cancelled", "{p2}");
    let enrollments = app.get_json("/v1/enrollments").await;
    assert!(!enrollments["items"].as_array().unwrap().is_empty());
    assert_eq!(app.get_json("/v1/students/S3").await["status"], "active");
    // The old tables leave the log file once the new store serves reads.
    let mut left = Vec::new();
    for _ in 0..200 {
        left = legacy_tables(&app.conn());
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(left.is_empty(), "still in the log file: {left:?}");
    assert!(app.config.projections_path.exists());
    // The chain and the quarantine are untouched.
    let (_, quarantine) = json(app.get("/v1/admin/status").await).await;
    assert_eq!(quarantine["quarantine"]["pending"], 1);
    let (dir, _) = app.stop().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["verify", "--db"])
        .arg(dir.path().join("registrar.db"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn a_projection_version_bump_rebuilds_in_the_background_while_ingest_goes_on() {
    let app = spawn_app().await;
    for i in 0..50 {
        app.accept_jodo(&jodo_student(
            "registered",
            &format!("e{i}"),
            &format!("S{i}"),
            100 + i,
        ))
        .await;
    }
    let _ = app.get_json("/v1/students/S49").await;
    let store_path = app.config.projections_path.clone();
    let (dir, config) = app.stop().await;
    // As if the store had been built by an older release.
    rusqlite::Connection::open(&store_path)
        .unwrap()
        .execute("UPDATE projection_state SET version = version - 1", [])
        .unwrap();
    let app = start(dir, config).await;
    // Ingest does not wait for the rebuild.
    let seq = app
        .accept_jodo(&jodo_student("dropped", "late", "S7", 500))
        .await;
    assert_eq!(seq, 51);
    // A read is answered 503 with Retry-After while no usable store exists,
    // then from the rebuilt one.
    let r = raw_get(&app, "/v1/students/S7", &[]).await;
    assert!(
        r.status() == 200 || (r.status() == 503 && r.headers().get("retry-after").is_some()),
        "{}",
        r.status()
    );
    let s7 = app.get_json("/v1/students/S7").await;
    assert_eq!(s7["status"], "dropped", "{s7}");
    let list = app.get_json("/v1/students?limit=1000").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 50);
    app.stop().await;
}
