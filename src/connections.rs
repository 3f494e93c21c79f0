//! The accept loop: one HTTP/1.1 connection per task, with a header-read
//! timeout, an idle keep-alive timeout, and a graceful shutdown bounded by a
//! grace period.
//!
//! Written by hand rather than with `axum::serve`, which has neither timeout
//! and, at shutdown, waits without bound for a client holding an unfinished
//! request: one stalled client could keep the process up forever.
//!
//! The clocks: a connection *expects a head* from its accept, and again from
//! the first byte read after its last answer; if the head is not complete
//! within the header-read timeout the connection gets `408` in the error
//! shape and is closed. A connection with no request in progress and no byte
//! of a new one is *idle*; it is closed silently after the idle timeout.
//! While a request is being served (its body read, its delivery committed)
//! neither clock runs: the writer's queue and the body limit bound that.
//! (hyper's own `header_read_timeout` is off: it also counts the idle time
//! between keep-alive requests, so the two timeouts could not differ.)
//!
//! Both clocks are tokio's ([`tokio::time::Instant`], [`tokio::time::sleep`]),
//! never the system's directly: a test pauses tokio's time and advances it
//! by hand, so a timeout is tested to the millisecond without waiting for it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::http::ApiError;

/// How long an accept error (out of file descriptors, mostly) pauses the
/// loop: retrying at once would spin a core while nothing can change, and
/// connections closing meanwhile free descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The longest sleep between two checks of a connection's clocks. Each
/// check is a few atomic loads; a shorter timeout checks more often (see
/// [`tick`]).
const MAX_TICK: Duration = Duration::from_millis(250);

/// How long the `408` written to a client whose head timed out may take: a
/// client that does not read must not hold the task.
const TIMEOUT_ANSWER_WRITE: Duration = Duration::from_secs(1);

/// The limits a connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From accept (or the first byte after an answer) to a complete head.
    pub header_read: Duration,
    /// A keep-alive connection with nothing in progress is closed after this.
    pub idle: Duration,
    /// At shutdown, how long in-flight requests may take before every
    /// connection left is closed.
    pub grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops
/// accepting, lets requests in progress finish for up to `grace`, and closes
/// every connection left. Returns once every connection task has ended.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            // Reap finished connections so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tasks.spawn(connection(stream, peer, app.clone(), timeouts, stop_rx.clone()));
                }
                // The client gave up before we accepted: nothing to do.
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::error!(error = %e, "accepting a connection failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    if !tasks.is_empty() {
        tracing::info!(
            connections = tasks.len(),
            grace_ms = timeouts.grace.as_millis() as u64,
            "stopped accepting; finishing requests in progress"
        );
    }
    let drained = tokio::time::timeout(timeouts.grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "grace period over: closing connections with unfinished requests"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// How often a connection checks its clocks: often enough that a timeout
/// fires within about an eighth of itself, at most every [`MAX_TICK`].
fn tick(t: &Timeouts) -> Duration {
    (t.header_read.min(t.idle) / 8).clamp(Duration::from_millis(5), MAX_TICK)
}

/// What a connection is doing, shared by its reads (which see a new head
/// begin) and its service (which sees requests start and end). Times are
/// milliseconds since the connection's accept, plus one; 0 means "not set".
struct Activity {
    born: Instant,
    in_flight: AtomicU32,
    /// When the head now expected began: the accept, or the first byte read
    /// after the last answer.
    head_since: AtomicU64,
    /// When the last request ended.
    idle_since: AtomicU64,
}

/// Which clock ran out.
#[derive(Debug, PartialEq)]
enum Expired {
    Head,
    Idle,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            born: Instant::now(),
            in_flight: AtomicU32::new(0),
            // The first head is expected from the accept: a client that
            // connects and sends nothing is held to the header timeout.
            head_since: AtomicU64::new(1),
            idle_since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.born.elapsed().as_millis() as u64 + 1
    }

    /// Bytes arrived: with no request in progress they begin a head.
    fn read_some(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_since.compare_exchange(
                0,
                self.now(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        InFlight(Arc::clone(self))
    }

    fn expired(&self, t: &Timeouts) -> Option<Expired> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.now();
        let past =
            |since: u64, limit: Duration| now.saturating_sub(since) > limit.as_millis() as u64;
        match self.head_since.load(Ordering::Acquire) {
            0 if past(self.idle_since.load(Ordering::Acquire), t.idle) => Some(Expired::Idle),
            0 => None,
            since if past(since, t.header_read) => Some(Expired::Head),
            _ => None,
        }
    }
}

/// A request in progress; its end starts the idle clock.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, noting every read in its connection's [`Activity`].
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// One connection, until the client closes it, a clock runs out, or the
/// server stops (gracefully: the request in progress is answered first).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let guard = activity.request_started();
            let mut app = app.clone();
            // The client's address, for whoever limits per client (failed
            // console sign-ins), as axum's `ConnectInfo` extractor reads it.
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            async move {
                let response = tower_service::Service::call(&mut app, req.map(Body::new)).await;
                drop(guard);
                response
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Our own clocks replace hyper's (see the module comment).
    builder.header_read_timeout(None);
    let mut conn = builder.serve_connection(io, service);
    let mut stopping = false;
    let tick = tick(&timeouts);
    loop {
        tokio::select! {
            served = &mut conn => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                // Closes an idle connection now; one with a request in
                // progress after its answer.
                Pin::new(&mut conn).graceful_shutdown();
            }
            _ = tokio::time::sleep(tick) => match activity.expired(&timeouts) {
                None => {}
                Some(Expired::Idle) => return,
                Some(Expired::Head) => {
                    tracing::debug!(%peer, "closing a connection whose request head timed out");
                    let stream = conn.into_parts().io.into_inner().stream;
                    answer_timeout(stream, &timeouts).await;
                    return;
                }
            },
        }
    }
}

/// Writes `408` in the error shape and closes. Best effort: the client may
/// be gone or not reading.
async fn answer_timeout(mut stream: TcpStream, t: &Timeouts) {
    let body = ApiError::Framework {
        status: StatusCode::REQUEST_TIMEOUT,
        message: format!(
            "the request head was not complete within {} ms",
            t.header_read.as_millis()
        ),
    }
    .body();
    let answer = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(TIMEOUT_ANSWER_WRITE, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn timeouts(header_ms: u64, idle_ms: u64) -> Timeouts {
        Timeouts {
            header_read: Duration::from_millis(header_ms),
            idle: Duration::from_millis(idle_ms),
            grace: Duration::from_secs(1),
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn a_fresh_connection_is_held_to_the_header_timeout_not_the_idle_one() {
        let a = Activity::new();
        a.head_since.store(1, Ordering::Release);
        // An idle timeout shorter than the header one: only the latter counts.
        let t = timeouts(400, 100);
        advance(400 * MS).await;
        assert_eq!(a.expired(&t), None, "not at the header timeout");
        advance(MS).await;
        assert_eq!(a.expired(&t), Some(Expired::Head), "just past it");
    }

    #[tokio::test(start_paused = true)]
    async fn no_clock_runs_while_a_request_is_in_progress() {
        let a = Arc::new(Activity::new());
        let _guard = a.request_started();
        advance(Duration::from_secs(3_600)).await;
        assert_eq!(a.expired(&timeouts(400, 800)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_answer_the_idle_clock_runs_until_a_byte_starts_the_head_clock() {
        let t = timeouts(400, 800);
        let a = Arc::new(Activity::new());
        drop(a.request_started());
        advance(800 * MS).await;
        assert_eq!(a.expired(&t), None, "not at the idle timeout");
        advance(MS).await;
        assert_eq!(a.expired(&t), Some(Expired::Idle), "just past it");
        a.read_some();
        // The idle time is long past, but a head has begun: its clock rules.
        assert_eq!(a.expired(&t), None);
        advance(400 * MS).await;
        assert_eq!(a.expired(&t), None, "not at the header timeout");
        advance(MS).await;
        assert_eq!(a.expired(&t), Some(Expired::Head), "just past it");
    }
}
