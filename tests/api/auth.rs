//! Authentication: the Jodo signature and custom header, the Toolzz URL token,
//! the rate unauthenticated rejects are kept at, and `serve`'s refusal to
//! listen publicly without any secret.

use std::time::Duration;

use hmac::{Hmac, Mac};
use registrar::clock::ManualClock;
use registrar::sources::jodo;
use sha2::Sha256;

use crate::audit::registrar;
use crate::fixtures::*;
use crate::helpers::*;
use crate::ingest::{events, quarantined, refused};

const CUSTOM_HEADER: &str = "x-jodo-token";
const CUSTOM_VALUE: &str = "custom-header-value-7f3a";

/// The signature computed here with `hmac`, not with the crate's `sign`.
fn independent_signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Sends `SEED_DROPPED` with these headers; asserts a 401 whose message
/// contains `expected`, nothing appended, and the body quarantined as
/// unauthenticated. Returns the quarantine row's headers.
async fn assert_jodo_refused(
    app: &TestApp,
    headers: &[(&str, &str)],
    expected: &str,
) -> serde_json::Value {
    let before = quarantined(&app.conn()).len();
    let r = app.post_jodo_with(SEED_DROPPED, headers).await;
    let message = refused(r, 401, "unauthorized").await;
    assert!(message.contains(expected), "{expected:?} in {message:?}");
    assert!(events(&app.conn()).is_empty(), "nothing is appended");
    let q = quarantined(&app.conn());
    assert_eq!(q.len(), before + 1, "the delivery is quarantined");
    let row = q.last().unwrap();
    assert_eq!(
        (row.source.as_str(), row.http_status, row.code.as_str()),
        ("jodo", 401, "unauthorized")
    );
    assert!(!row.authenticated);
    assert!(!row.body_truncated);
    assert_eq!(row.body, SEED_DROPPED.as_bytes());
    assert_eq!(row.reason, message);
    row.headers.clone()
}

#[tokio::test]
async fn a_delivery_signed_with_the_secret_is_accepted() {
    let app = spawn_app().await;
    let sig = independent_signature(JODO_SECRET, SEED_DROPPED);
    assert_eq!(
        sig,
        jodo::sign(JODO_SECRET.as_bytes(), SEED_DROPPED.as_bytes())
    );
    let r = app
        .post_jodo_with(SEED_DROPPED, &[("X-Jodo-Signature", &sig)])
        .await;
    assert_eq!(accepted(r).await, 1);
    assert!(quarantined(&app.conn()).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_signed_with_another_secret_is_refused_401_and_quarantined() {
    let app = spawn_app().await;
    let sig = independent_signature("another-secret", SEED_DROPPED);
    let headers = assert_jodo_refused(
        &app,
        &[("X-Jodo-Signature", &sig)],
        "X-Jodo-Signature does not match",
    )
    .await;
    // The signature given is kept (it is no secret), so readmit can re-check it.
    assert_eq!(headers["x-jodo-signature"], sig.as_str());
    app.stop().await;
}

/// Posts `SEED_DROPPED` unsigned; asserts the 401.
async fn post_unsigned(app: &TestApp) {
    refused(
        app.post_jodo_with(SEED_DROPPED, &[]).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn unauthenticated_rejects_past_their_rate_are_answered_and_counted_and_kept_as_it_refills() {
    let clock = ManualClock::new();
    let app = spawn_app_with(|c| {
        c.unauthenticated_rate = 2;
        c.clock = clock.clone().into();
    })
    .await;
    let kept = || quarantined(&app.conn()).len();
    for _ in 0..3 {
        post_unsigned(&app).await;
    }
    assert_eq!(kept(), 2, "a burst of as many as the rate is kept");
    // One more is kept every half second (a margin each side: the budget
    // is counted in f64).
    clock.advance(Duration::from_millis(450));
    post_unsigned(&app).await;
    assert_eq!(kept(), 2, "none is kept before half a second");
    clock.advance(Duration::from_millis(100));
    post_unsigned(&app).await;
    assert_eq!(kept(), 3, "one is kept after it");
    post_unsigned(&app).await;
    assert_eq!(kept(), 3, "and only one");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let shed: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("registrar_unauthenticated_shed_total "))
        .expect("the shed counter")
        .parse()
        .unwrap();
    assert_eq!(shed, 3, "every reject not kept is counted: {metrics}");
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_without_a_signature_is_refused_401() {
    let app = spawn_app().await;
    let headers = assert_jodo_refused(&app, &[], "X-Jodo-Signature is missing").await;
    assert!(headers.get("x-jodo-signature").is_none());
    app.stop().await;
}

#[tokio::test]
async fn a_short_signature_is_refused_401() {
    let app = spawn_app().await;
    let sig = independent_signature(JODO_SECRET, SEED_DROPPED);
    for short in [&sig[..63], &sig[..32], &sig[..2]] {
        assert_jodo_refused(
            &app,
            &[("X-Jodo-Signature", short)],
            "X-Jodo-Signature does not match",
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_signature_with_extra_digits_is_refused_401() {
    let app = spawn_app().await;
    let sig = format!("{}00", independent_signature(JODO_SECRET, SEED_DROPPED));
    assert_jodo_refused(
        &app,
        &[("X-Jodo-Signature", &sig)],
        "X-Jodo-Signature does not match",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_uppercase_hex_signature_is_refused_401_by_design() {
    let app = spawn_app().await;
    let sig = independent_signature(JODO_SECRET, SEED_DROPPED).to_uppercase();
    assert!(sig.bytes().any(|b| b.is_ascii_uppercase()));
    assert_jodo_refused(
        &app,
        &[("X-Jodo-Signature", &sig)],
        "64 lowercase hex digits",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_empty_signature_is_refused_401() {
    let app = spawn_app().await;
    assert_jodo_refused(
        &app,
        &[("X-Jodo-Signature", "")],
        "X-Jodo-Signature does not match",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_signature_of_another_body_is_refused_401() {
    let app = spawn_app().await;
    // Signed before one byte of the body changed in transit.
    let original = SEED_DROPPED.replace("student_1234", "student_1235");
    let sig = independent_signature(JODO_SECRET, &original);
    assert_jodo_refused(
        &app,
        &[("X-Jodo-Signature", &sig)],
        "X-Jodo-Signature does not match",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn without_a_jodo_secret_an_unsigned_delivery_is_accepted() {
    let app = spawn_app_with(|c| c.jodo_secret = None).await;
    assert_eq!(
        accepted(app.post_jodo_with(SEED_DROPPED, &[]).await).await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn the_custom_header_is_required_when_configured() {
    let app = spawn_app_with(|c| {
        c.jodo_header = Some((CUSTOM_HEADER.into(), CUSTOM_VALUE.into()));
    })
    .await;
    let sig = jodo::sign(JODO_SECRET.as_bytes(), SEED_DROPPED.as_bytes());
    let missing = assert_jodo_refused(
        &app,
        &[("X-Jodo-Signature", &sig)],
        "the required custom header is missing",
    )
    .await;
    assert_eq!(missing["custom_header"], "missing");
    let wrong_value = "not-the-custom-value";
    let wrong = assert_jodo_refused(
        &app,
        &[("X-Jodo-Signature", &sig), (CUSTOM_HEADER, wrong_value)],
        "the required custom header does not match",
    )
    .await;
    assert_eq!(wrong["custom_header"], "mismatch");
    // Neither the expected value nor the one given is ever stored.
    for row in quarantined(&app.conn()) {
        let kept = format!("{} {}", row.headers, row.reason);
        assert!(!kept.contains(CUSTOM_VALUE), "{kept}");
        assert!(!kept.contains(wrong_value), "{kept}");
    }
    // Right (header names are case-insensitive).
    let r = app
        .post_jodo_with(
            SEED_DROPPED,
            &[("X-Jodo-Signature", &sig), ("X-Jodo-Token", CUSTOM_VALUE)],
        )
        .await;
    assert_eq!(accepted(r).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn the_custom_header_does_not_excuse_a_bad_signature() {
    let app = spawn_app_with(|c| {
        c.jodo_header = Some((CUSTOM_HEADER.into(), CUSTOM_VALUE.into()));
    })
    .await;
    let sig = independent_signature("another-secret", SEED_DROPPED);
    let headers = assert_jodo_refused(
        &app,
        &[("X-Jodo-Signature", &sig), (CUSTOM_HEADER, CUSTOM_VALUE)],
        "X-Jodo-Signature does not match",
    )
    .await;
    assert_eq!(headers["custom_header"], "matched");
    app.stop().await;
}

#[tokio::test]
async fn the_custom_header_alone_is_enough_without_a_secret() {
    let app = spawn_app_with(|c| {
        c.jodo_secret = None;
        c.jodo_header = Some((CUSTOM_HEADER.into(), CUSTOM_VALUE.into()));
    })
    .await;
    assert_jodo_refused(&app, &[], "the required custom header is missing").await;
    let r = app
        .post_jodo_with(SEED_DROPPED, &[(CUSTOM_HEADER, CUSTOM_VALUE)])
        .await;
    assert_eq!(accepted(r).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_toolzz_delivery_with_the_right_url_token_is_accepted() {
    let app = spawn_app().await;
    let r = app
        .post_raw(&format!("/webhooks/toolzz/{TOOLZZ_TOKEN}"), SEED_ENROLLMENT)
        .await;
    assert_eq!(accepted(r).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_toolzz_delivery_with_a_wrong_token_is_refused_and_the_token_is_not_kept() {
    let app = spawn_app().await;
    // Same length as the real token, a prefix of it, and something else.
    let same_length = format!("{}X", &TOOLZZ_TOKEN[..TOOLZZ_TOKEN.len() - 1]);
    let wrong = [same_length.as_str(), &TOOLZZ_TOKEN[..4], "wrong-token-abc"];
    for token in wrong {
        let r = app
            .post_raw(&format!("/webhooks/toolzz/{token}"), SEED_ENROLLMENT)
            .await;
        let message = refused(r, 401, "unauthorized").await;
        assert!(
            message.contains("the token in the URL is wrong"),
            "{message}"
        );
    }
    assert!(events(&app.conn()).is_empty());
    let q = quarantined(&app.conn());
    assert_eq!(q.len(), 3);
    for (row, token) in q.iter().zip(wrong) {
        assert_eq!(
            (row.source.as_str(), row.http_status, row.authenticated),
            ("toolzz", 401, false)
        );
        assert_eq!(row.body, SEED_ENROLLMENT.as_bytes());
        let kept = format!("{} {}", row.headers, row.reason);
        assert!(!kept.contains(token), "the URL token is not kept: {kept}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_toolzz_delivery_without_the_token_is_refused_when_one_is_configured() {
    let app = spawn_app().await;
    let message = refused(
        app.post_raw("/webhooks/toolzz", SEED_ENROLLMENT).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(message.contains("/webhooks/toolzz/{token}"), "{message}");
    assert!(events(&app.conn()).is_empty());
    let q = quarantined(&app.conn());
    assert_eq!((q.len(), q[0].authenticated), (1, false));
    app.stop().await;
}

#[tokio::test]
async fn a_toolzz_ping_with_a_wrong_token_is_refused() {
    let app = spawn_app().await;
    let r = app
        .post_raw("/webhooks/toolzz/wrong", r#"{"event_type":"PING"}"#)
        .await;
    refused(r, 401, "unauthorized").await;
    assert_eq!(quarantined(&app.conn()).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn without_a_toolzz_token_the_bare_path_accepts_and_a_token_path_is_refused() {
    let app = spawn_app_with(|c| c.toolzz_token = None).await;
    assert_eq!(
        accepted(app.post_raw("/webhooks/toolzz", SEED_ENROLLMENT).await).await,
        1
    );
    let r = app
        .post_raw("/webhooks/toolzz/anything", SEED_COURSE_COMPLETED)
        .await;
    let message = refused(r, 401, "unauthorized").await;
    assert!(message.contains("no Toolzz token configured"), "{message}");
    assert_eq!(events(&app.conn()).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn serve_refuses_a_public_address_without_secrets_unless_allow_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("refused.db");
    let out = registrar(
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--db",
            db.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--allow-unsigned"), "{out:?}");
    assert!(!db.exists(), "nothing is opened before refusing");
}

#[tokio::test]
async fn serve_listens_on_a_public_address_when_a_secret_is_set() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("public.db");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registrar"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REGISTRAR_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(["serve", "--listen", "0.0.0.0:0", "--db"])
        .arg(&db)
        .env("REGISTRAR_JODO_SECRET", "a-secret")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It opens the database once it is listening; it must not exit first.
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        if db.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(exited, None, "serve exited: {stderr}");
    assert!(
        still_running && db.exists(),
        "serve did not start: {stderr}"
    );
}

/// A GET of `path` naming the server as `host`.
async fn status_by_name(app: &TestApp, path: &str, host: &str) -> u16 {
    app.client
        .get(app.url(path))
        .header("Host", host)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_server_with_open_routes_answers_only_to_its_addresses_localhost_and_public_host() {
    // No read or admin token: /v1 is open to whoever can reach the server.
    let app = spawn_app().await;
    // A page of a site whose name was rebound to 127.0.0.1 (DNS rebinding).
    assert_eq!(
        status_by_name(&app, "/v1/students", "attacker.example").await,
        403
    );
    assert_eq!(
        status_by_name(&app, "/healthz", "attacker.example:80").await,
        403
    );
    let r = app
        .client
        .post(app.url("/webhooks/jodo"))
        .header("Host", "attacker.example")
        .body(SEED_DROPPED)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(events(&app.conn()).is_empty(), "nothing is appended");
    assert_eq!(
        status_by_name(&app, "/v1/students", "localhost:1").await,
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn a_server_with_every_credential_set_answers_to_any_name() {
    let app = spawn_app_with(|c| {
        c.read_token = Some("read-token".into());
        c.admin_token = Some("admin-token".into());
    })
    .await;
    assert_eq!(
        status_by_name(&app, "/healthz", "registrar.behind-a-proxy.example").await,
        200
    );
    app.stop().await;
}
