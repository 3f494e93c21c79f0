//! The quarantine: `registrar quarantine list` and `readmit`, and the cap's
//! eviction order.

use registrar::sources::jodo;
use serde_json::Value;

use crate::audit::{registrar, CliOutput};
use crate::fixtures::*;
use crate::helpers::*;
use crate::ingest::{duplicate, events, quarantined, refused};

/// The secret the provider switched to before the server was told.
const ROTATED_SECRET: &str = "rotated-jodo-secret";

/// `registrar quarantine list --db PATH [extra...]`.
async fn list(app: &TestApp, extra: &[&str]) -> CliOutput {
    let mut args = vec!["quarantine", "list", "--db", app.db_path.to_str().unwrap()];
    args.extend_from_slice(extra);
    registrar(&args, &[]).await
}

/// `list --json [--all]`, parsed, asserting exit 0.
async fn list_json(app: &TestApp, all: bool) -> Vec<Value> {
    let out = if all {
        list(app, &["--json", "--all"]).await
    } else {
        list(app, &["--json"]).await
    };
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// `registrar quarantine readmit ID --db PATH [--force]` with this env.
async fn readmit(app: &TestApp, id: i64, force: bool, env: &[(&str, &str)]) -> CliOutput {
    let id = id.to_string();
    let mut args = vec![
        "quarantine",
        "readmit",
        &id,
        "--db",
        app.db_path.to_str().unwrap(),
    ];
    if force {
        args.push("--force");
    }
    registrar(&args, env).await
}

/// POSTs a Jodo body signed with `secret`.
async fn post_signed(app: &TestApp, body: &str, secret: &str) -> reqwest::Response {
    let sig = jodo::sign(secret.as_bytes(), body.as_bytes());
    app.post_jodo_with(body, &[("X-Jodo-Signature", &sig)])
        .await
}

/// The quarantine ids, in order.
fn ids(app: &TestApp) -> Vec<i64> {
    quarantined(&app.conn()).iter().map(|r| r.id).collect()
}

fn evictions(app: &TestApp) -> i64 {
    app.conn()
        .query_row(
            "SELECT value FROM counters WHERE name = 'quarantine_evictions'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn quarantine_list_shows_pending_rejects_oldest_first() {
    let app = spawn_app().await;
    refused(
        post_signed(&app, SEED_DROPPED, ROTATED_SECRET).await,
        401,
        "unauthorized",
    )
    .await;
    refused(app.post_toolzz("{").await, 400, "invalid_delivery").await;
    assert_eq!(accepted(app.post_jodo(SEED_DROPPED).await).await, 1);
    refused(app.post_jodo(SEED_REGISTERED).await, 409, "conflict").await;

    let entries = list_json(&app, false).await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    let summary: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e["id"].as_i64().unwrap(),
                e["source"].as_str().unwrap(),
                e["http_status"].as_u64().unwrap(),
                e["code"].as_str().unwrap(),
                e["authenticated"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "jodo", 401, "unauthorized", false),
            (2, "toolzz", 400, "invalid_delivery", true),
            (3, "jodo", 409, "conflict", true),
        ]
    );
    for e in &entries {
        assert!(e["readmitted_seq"].is_null() && e["readmitted_at"].is_null());
        assert_eq!(e["body_truncated"], false);
        assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(e.get("body").is_none(), "the list does not print bodies");
    }
    assert!(entries[0]["reason"]
        .as_str()
        .unwrap()
        .contains("X-Jodo-Signature does not match"));
    assert!(entries[1]["reason"]
        .as_str()
        .unwrap()
        .starts_with("body is not valid JSON"));

    // The table form: a header and one line per entry.
    let out = list(&app, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{out:?}");
    assert!(lines[0].trim_start().starts_with("id") && lines[0].ends_with("reason"));
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&first[..5], ["1", first[1], "jodo", "401", "pending"]);
    assert!(
        lines[3].contains("409") && lines[3].contains("already received with a different body")
    );
    // Paging.
    let after = list(&app, &["--json", "--after", "1", "--limit", "1"]).await;
    let paged: Vec<Value> = after
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(paged.len(), 1);
    assert_eq!(paged[0]["id"], 2);
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_signed_with_a_rotated_secret_is_readmitted_with_that_secret() {
    let app = spawn_app().await;
    let body = jodo_student("registered", "evt-rotated", "s1", 1655448963);
    refused(
        post_signed(&app, &body, ROTATED_SECRET).await,
        401,
        "unauthorized",
    )
    .await;
    let id = quarantined(&app.conn())[0].id;

    // With the server's (old) secret it still does not authenticate.
    let out = readmit(&app, id, false, &[("REGISTRAR_JODO_SECRET", JODO_SECRET)]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .starts_with("not readmitted: still not authenticated"),
        "{out:?}"
    );
    assert!(events(&app.conn()).is_empty());

    // With the secret it was signed with, it is appended.
    let out = readmit(
        &app,
        id,
        false,
        &[("REGISTRAR_JODO_SECRET", ROTATED_SECRET)],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("readmitted {id}: appended as seq 1")
    );
    let rows = events(&app.conn());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].body, body.as_bytes());
    assert_eq!(rows[0].dedupe_key, "evt-rotated");
    assert_eq!(quarantined(&app.conn())[0].readmitted_seq, Some(1));

    // It leaves the pending list but stays in --all, marked.
    assert!(list_json(&app, false).await.is_empty());
    let all = list_json(&app, true).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["readmitted_seq"], 1);
    assert!(all[0]["readmitted_at"].is_i64());

    // Readmitting twice is refused.
    let out = readmit(
        &app,
        id,
        false,
        &[("REGISTRAR_JODO_SECRET", ROTATED_SECRET)],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "not readmitted: already readmitted as seq 1"
    );
    assert_eq!(events(&app.conn()).len(), 1);

    // The running server sees the readmitted event: its retry is a duplicate,
    // the next event follows it, and the projections kept up.
    assert_eq!(duplicate(app.post_jodo(&body).await).await, 1);
    assert_eq!(accepted(app.post_jodo(SEED_DROPPED).await).await, 2);
    let status = app.get_json("/v1/admin/status").await;
    assert_eq!(status["projections"]["last_seq"], 2);
    assert_eq!(status["quarantine"]["pending"], 0);
    registrar::log::verify::verify(
        &app.conn(),
        &registrar::log::verify::Options::deep(Default::default()),
    )
    .expect("the chain verifies");
    app.stop().await;
}

#[tokio::test]
async fn an_unauthenticated_delivery_is_not_readmitted_when_its_signature_cannot_be_checked() {
    let app = spawn_app().await;
    let body = jodo_student("registered", "evt-forged", "s1", 1655448963);
    refused(
        post_signed(&app, &body, "an-attackers-guess").await,
        401,
        "unauthorized",
    )
    .await;
    refused(
        app.post_jodo_with(&body.replace("evt-forged", "evt-unsigned"), &[])
            .await,
        401,
        "unauthorized",
    )
    .await;
    // No REGISTRAR_JODO_SECRET in the environment: nothing to check against.
    for id in [1, 2] {
        let out = readmit(&app, id, false, &[]).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stdout
                .starts_with("not readmitted: still not authenticated"),
            "{out:?}"
        );
    }
    assert!(events(&app.conn()).is_empty());
    // --force vouches for it.
    let out = readmit(&app, 2, true, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(events(&app.conn())[0].dedupe_key, "evt-unsigned");
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_refused_for_its_custom_header_needs_force() {
    let app = spawn_app_with(|c| {
        c.jodo_header = Some(("x-jodo-token".into(), "header-value".into()));
    })
    .await;
    refused(app.post_jodo(SEED_DROPPED).await, 401, "unauthorized").await;
    let env = [
        ("REGISTRAR_JODO_SECRET", JODO_SECRET),
        ("REGISTRAR_JODO_HEADER", "X-Jodo-Token: header-value"),
    ];
    let out = readmit(&app, 1, false, &env).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("custom header"), "{out:?}");
    // Without the header in the environment either: still refused.
    let out = readmit(&app, 1, false, &env[..1]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("custom header"), "{out:?}");
    assert!(events(&app.conn()).is_empty());
    let out = readmit(&app, 1, true, &env).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(events(&app.conn()).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_that_stays_invalid_is_not_readmitted() {
    let app = spawn_app().await;
    let body = jodo_payment(
        "added",
        "evt-bad",
        "pay_1",
        Some("s1"),
        "10.001",
        1655448963,
    );
    refused(app.post_jodo(&body).await, 400, "invalid_delivery").await;
    let env = [("REGISTRAR_JODO_SECRET", JODO_SECRET)];
    let out = readmit(&app, 1, false, &env).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .starts_with("not readmitted: still invalid: payload.payment.amount: "),
        "{out:?}"
    );
    // --force vouches for authentication, not validity.
    let out = readmit(&app, 1, true, &env).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("still invalid"), "{out:?}");
    assert!(events(&app.conn()).is_empty());
    let pending = list_json(&app, false).await;
    assert_eq!(pending.len(), 1, "it stays in quarantine");
    assert!(pending[0]["readmitted_seq"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn a_conflicting_body_is_not_readmitted() {
    let app = spawn_app().await;
    assert_eq!(accepted(app.post_jodo(SEED_DROPPED).await).await, 1);
    refused(app.post_jodo(SEED_REGISTERED).await, 409, "conflict").await;
    let out = readmit(&app, 1, false, &[("REGISTRAR_JODO_SECRET", JODO_SECRET)]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "not readmitted: its event_id is in the log at seq 1 with a different body"
    );
    assert_eq!(events(&app.conn()).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_truncated_body_is_not_readmitted() {
    let app = spawn_app_with(|c| c.max_body_bytes = 256).await;
    refused(app.post_jodo(SEED_DROPPED).await, 413, "payload_too_large").await;
    let out = readmit(&app, 1, true, &[("REGISTRAR_JODO_SECRET", JODO_SECRET)]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("cut at the size limit"), "{out:?}");
    assert!(events(&app.conn()).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_toolzz_delivery_with_a_wrong_token_is_readmitted_only_with_force() {
    let app = spawn_app().await;
    refused(
        app.post_raw("/webhooks/toolzz/wrong-token", SEED_ENROLLMENT)
            .await,
        401,
        "unauthorized",
    )
    .await;
    let env = [("REGISTRAR_TOOLZZ_TOKEN", TOOLZZ_TOKEN)];
    // With or without the token in the environment: it was never kept.
    for env in [&env[..], &[]] {
        let out = readmit(&app, 1, false, env).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stdout
                .starts_with("not readmitted: still not authenticated"),
            "{out:?}"
        );
        assert!(out.stdout.contains("--force"), "{out:?}");
    }
    assert!(events(&app.conn()).is_empty());
    let out = readmit(&app, 1, true, &env).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "readmitted 1: appended as seq 1");
    let rows = events(&app.conn());
    assert_eq!(
        (rows[0].source.as_str(), rows[0].event_type.as_str()),
        ("toolzz", "activities.course.enrollment")
    );
    // The provider's retry with the right token is the same event.
    assert_eq!(duplicate(app.post_toolzz(SEED_ENROLLMENT).await).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn readmitting_a_delivery_already_in_the_log_marks_it_with_the_original_seq() {
    let app = spawn_app().await;
    let body = jodo_student("registered", "evt-retry", "s1", 1655448963);
    refused(
        post_signed(&app, &body, ROTATED_SECRET).await,
        401,
        "unauthorized",
    )
    .await;
    // Meanwhile the provider's retry, signed with the server's secret, got in.
    assert_eq!(accepted(app.post_jodo(&body).await).await, 1);
    let out = readmit(&app, 1, false, &[("REGISTRAR_JODO_SECRET", ROTATED_SECRET)]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "readmitted 1: already in the log as seq 1"
    );
    assert_eq!(events(&app.conn()).len(), 1);
    assert_eq!(quarantined(&app.conn())[0].readmitted_seq, Some(1));
    app.stop().await;
}

#[tokio::test]
async fn readmitting_an_unknown_id_fails() {
    let app = spawn_app().await;
    let out = readmit(&app, 42, false, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        "not readmitted: no quarantined delivery has id 42"
    );
    app.stop().await;
}

/// A signed, malformed Jodo body: a 400, kept as authenticated.
async fn invalid(app: &TestApp) {
    refused(app.post_jodo("{").await, 400, "invalid_delivery").await;
}

/// An unsigned Jodo body: a 401, kept as unauthenticated.
async fn unsigned(app: &TestApp) {
    refused(app.post_jodo_with("{", &[]).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_full_quarantine_evicts_unauthenticated_rejects_first_and_never_for_one() {
    let app = spawn_app_with(|c| c.quarantine_cap = 3).await;
    invalid(&app).await; // 1, authenticated
    unsigned(&app).await; // 2, unauthenticated
    invalid(&app).await; // 3, authenticated
    assert_eq!((ids(&app), evictions(&app)), (vec![1, 2, 3], 0));
    // Full: the unauthenticated row goes, though it is not the oldest.
    invalid(&app).await; // 4
    assert_eq!((ids(&app), evictions(&app)), (vec![1, 3, 4], 1));
    // Only authenticated rows left: an unauthenticated reject is answered
    // but not kept; it evicts nothing.
    unsigned(&app).await;
    assert_eq!((ids(&app), evictions(&app)), (vec![1, 3, 4], 1));
    // An authenticated one still evicts the oldest.
    invalid(&app).await; // 5
    assert_eq!((ids(&app), evictions(&app)), (vec![3, 4, 5], 2));
    let q = quarantined(&app.conn());
    assert!(q.iter().all(|r| r.authenticated));

    let status = app.get_json("/v1/admin/status").await;
    assert_eq!(status["quarantine"]["pending"], 3);
    assert_eq!(status["quarantine"]["evictions"], 2);
    let out = list(&app, &["--json"]).await;
    assert_eq!(out.stdout.lines().count(), 3);
    assert!(
        out.stderr.contains("2 entries were evicted"),
        "the list mentions evictions: {out:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_full_quarantine_evicts_a_readmitted_row_before_any_pending_one() {
    let app = spawn_app_with(|c| c.quarantine_cap = 3).await;
    unsigned(&app).await; // 1: the oldest, unauthenticated
    invalid(&app).await; // 2
    let body = jodo_student("registered", "evt-cap", "s1", 1655448963);
    refused(
        post_signed(&app, &body, ROTATED_SECRET).await,
        401,
        "unauthorized",
    )
    .await; // 3: the newest, readmitted below
    let out = readmit(&app, 3, false, &[("REGISTRAR_JODO_SECRET", ROTATED_SECRET)]).await;
    assert_eq!(out.code, 0, "{out:?}");
    invalid(&app).await; // 4
    assert_eq!((ids(&app), evictions(&app)), (vec![1, 2, 4], 1));
    // The readmitted event itself stays in the log.
    assert_eq!(events(&app.conn()).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn quarantine_counters_survive_a_restart() {
    let app = spawn_app_with(|c| c.quarantine_cap = 1).await;
    refused(app.post_jodo("{").await, 400, "invalid_delivery").await;
    refused(app.post_jodo("[").await, 400, "invalid_delivery").await;
    assert_eq!(evictions(&app), 1);
    let (dir, config) = app.stop().await;
    let app = start(dir, config).await;
    assert_eq!(evictions(&app), 1);
    refused(app.post_jodo("]").await, 400, "invalid_delivery").await;
    assert_eq!((ids(&app), evictions(&app)), (vec![3], 2));
    let q = quarantined(&app.conn());
    assert_eq!(q[0].body, b"]");
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_sent_with_two_signatures_keeps_both_and_is_readmitted_only_with_force() {
    let app = spawn_app().await;
    let body = jodo_student("registered", "evt-two-sigs", "s1", 1655448963);
    let good = jodo::sign(JODO_SECRET.as_bytes(), body.as_bytes());
    let r = app
        .post_jodo_with(
            &body,
            &[("X-Jodo-Signature", &good), ("X-Jodo-Signature", "bad")],
        )
        .await;
    refused(r, 401, "unauthorized").await;
    let row = &quarantined(&app.conn())[0];
    assert_eq!(
        row.headers["x-jodo-signature"],
        serde_json::json!([good, "bad"])
    );
    // The good one alone would verify, but which one was meant is not ours
    // to pick.
    let out = readmit(
        &app,
        row.id,
        false,
        &[("REGISTRAR_JODO_SECRET", JODO_SECRET)],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("more than once"), "{out:?}");
    assert!(events(&app.conn()).is_empty());
    let out = readmit(
        &app,
        row.id,
        true,
        &[("REGISTRAR_JODO_SECRET", JODO_SECRET)],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(events(&app.conn()).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_flood_of_unauthenticated_posts_is_counted_not_kept_and_signed_deliveries_go_through() {
    let app = spawn_app_with(|c| c.unauthenticated_rate = 5).await;
    let flood: Vec<_> = (0..300)
        .map(|i| {
            let (client, url) = (app.client.clone(), app.url("/webhooks/jodo"));
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .body(format!("{{\"flood\":{i}}}"))
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    for i in 0..100 {
        app.accept_jodo(&crate::fixtures::jodo_student(
            "registered",
            &format!("e{i}"),
            &format!("S{i}"),
            100 + i,
        ))
        .await;
    }
    for f in flood {
        assert_eq!(f.await.unwrap(), 401, "every flooding post is answered 401");
    }
    let kept = quarantined(&app.conn()).len();
    assert!(
        (1..=20).contains(&kept),
        "a burst of 5 and 5 a second kept, the rest counted: {kept}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let shed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("registrar_unauthenticated_shed_total "))
        .expect("the shed counter")
        .parse()
        .unwrap();
    assert_eq!(shed as usize + kept, 300, "{metrics}");
    app.stop().await;
}
