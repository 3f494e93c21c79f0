//! Connections: the header-read and idle timeouts, and a shutdown bounded by
//! its grace period that still answers the deliveries in progress.
//!
//! The timeouts are tested on tokio's paused clock (`start_paused`): it moves
//! only when every task of the test's runtime, the server's included, waits
//! on a timer, and then straight to the next one. A client on loopback is
//! no such wait (what it writes is readable when the write returns), so the
//! clock moves only while both sides wait for a timeout to fire: each
//! timeout is checked to the millisecond, on both sides, and none is slept
//! through. The timeouts are multiples of 8 ms: a connection looks at its
//! clocks every eighth of its shorter timeout, so one look falls on the
//! limit itself, and a connection closed at the limit rather than past it
//! fails the test.

use std::time::Duration;

use registrar::sources::jodo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::fixtures::*;
use crate::helpers::*;

/// Reads until the server closes the connection (or `limit` passes);
/// returns what it sent and when it closed (on tokio's clock).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Instant>) {
    let mut got = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&got).into(), Some(Instant::now()))
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), None),
        }
    }
}

/// Whether the server still accepts connections.
async fn accepts(app_addr: std::net::SocketAddr) -> bool {
    TcpStream::connect(app_addr).await.is_ok()
}

/// Sends `GET /healthz` on `stream` and asserts the 200.
async fn healthz(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_finishes_its_headers_is_closed_after_the_header_timeout() {
    let header = Duration::from_millis(400);
    let app = spawn_app_with(|c| {
        c.header_read_timeout = header;
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let began = Instant::now();
    stream
        .write_all(b"POST /webhooks/jodo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: applic")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let closed = closed.expect("the connection was closed");
    let after = closed - began;
    assert!(
        after > header && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    let body: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    app.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout_not_the_idle_one() {
    let header = Duration::from_millis(240);
    let idle = Duration::from_secs(60);
    let app = spawn_app_with(|c| {
        c.header_read_timeout = header;
        c.idle_timeout = idle;
    })
    .await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let began = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let after = closed.expect("a silent connection stayed open") - began;
    assert!(after > header && after < idle, "closed after {after:?}");
    app.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_and_not_before() {
    let idle = Duration::from_millis(800);
    let app = spawn_app_with(|c| {
        c.header_read_timeout = Duration::from_secs(60);
        c.idle_timeout = idle;
    })
    .await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    // Requests spaced a millisecond under the idle timeout keep the
    // connection open...
    healthz(&mut stream).await;
    for _ in 0..2 {
        tokio::time::advance(idle - Duration::from_millis(1)).await;
        healthz(&mut stream).await;
    }
    // ...and with nothing more sent it closes, silently, once the idle
    // timeout has passed.
    let answered = Instant::now();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let after = closed.expect("the idle connection was closed") - answered;
    assert!(
        after > idle && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
    assert_eq!(answer, "");
    app.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_completes_within_the_grace_period_while_a_client_holds_an_unfinished_request() {
    let grace = Duration::from_millis(500);
    let app = spawn_app_with(|c| {
        c.shutdown_grace = grace;
        // Long clocks: only the grace period can close these connections.
        c.header_read_timeout = Duration::from_secs(60);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    // One client stops mid-head, another mid-body.
    let mut mid_head = TcpStream::connect(app.addr).await.unwrap();
    mid_head
        .write_all(b"POST /webhooks/jodo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut mid_body = TcpStream::connect(app.addr).await.unwrap();
    mid_body
        .write_all(b"POST /webhooks/jodo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"event\":")
        .await
        .unwrap();
    // On the paused clock this returns once the server has taken in what
    // the clients sent (nothing left to do but wait on timers).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = app.stop_in_background();
    let (took, _dir) = tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("the server stopped within 5 s")
        .unwrap();
    assert!(
        took >= grace && took < Duration::from_secs(3),
        "stopped after {took:?}, with a grace of {grace:?}"
    );
    for stream in [&mut mid_head, &mut mid_body] {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(2)).await;
        assert!(closed.is_some(), "a connection outlived the server");
    }
}

#[tokio::test]
async fn an_in_flight_delivery_is_still_answered_200_and_committed_when_shutdown_begins() {
    let app = spawn_app_with(|c| c.shutdown_grace = Duration::from_secs(10)).await;
    let addr = app.addr;
    let db_path = app.db_path.clone();
    let body = jodo_student(
        "masterdata.student.registered",
        "evt-in-flight",
        "s-1",
        1_700_000_000,
    );
    let sig = jodo::sign(JODO_SECRET.as_bytes(), body.as_bytes());
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /webhooks/jodo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Jodo-Signature: {sig}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = app.stop_in_background();
    // Shutdown has begun once the listener is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while accepts(addr).await {
        assert!(Instant::now() < deadline, "the server kept accepting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stream.write_all(rest).await.unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("\"status\":\"accepted\""), "{answer}");
    let (_, _dir) = tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stopped")
        .unwrap();
    let conn = registrar::db::open_ro(&db_path).unwrap();
    let committed: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM events WHERE dedupe_key = 'evt-in-flight'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(committed, 1);
}
