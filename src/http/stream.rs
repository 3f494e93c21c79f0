//! A report streamed to a client: it runs on a blocking thread, on one
//! snapshot of the projection store held until its last row is written, and
//! its bytes reach the client in chunks through a bounded queue. A year's
//! register is thousands of rows: no async worker waits on SQLite or on a
//! slow client meanwhile, and the answer never sits whole in memory. The API
//! (`/v1/reports/...`) and the console's CSV downloads answer through it.

use std::sync::Arc;

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rusqlite::Connection;
use tokio::sync::mpsc;

use super::{consistency, ApiError};
use crate::projection::live::LiveStore;
use crate::report::{self, Format, Request};

/// Runs the report `request` builds (on the snapshot, so a statement's
/// student is resolved in the same one) and streams it in `format`. An error
/// before the first chunk is an answer of its own (a statement's unknown
/// student is a 404); after it, the body is cut short.
pub async fn report(
    live: Arc<LiveStore>,
    format: Format,
    request: impl FnOnce(&Connection) -> Result<Request, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let (tx, mut rx) = mpsc::channel(CHUNKS_QUEUED);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks::new(tx, runtime);
        let read = live.read(|conn| {
            let req = request(conn)?;
            let position = report::position(conn)?;
            let mut head = req.headers(format);
            head.checkpoint = req.covering(position).map(|c| c.header_value());
            out.start(position, head);
            report::write(conn, &req, format, &mut out).map_err(ApiError::from)
        });
        match read {
            Ok(_) => out.finish(),
            Err(e) => out.fail(e),
        }
    });
    let (position, head) = match rx.recv().await {
        Some(Piece::Start(position, head)) => (position, head),
        Some(Piece::Failed(e)) => return Err(e),
        _ => {
            return Err(ApiError::Internal(
                "the report ended before it began".into(),
            ))
        }
    };
    consistency::record(position);
    let first = match rx.recv().await {
        Some(Piece::Bytes(b)) => Some(b),
        Some(Piece::Failed(e)) => return Err(e),
        Some(Piece::Start(..)) | None => None,
    };
    let rest = Receiver(rx);
    let body = match first {
        Some(b) => axum::body::Body::from_stream(Prepend(Some(b), rest)),
        None => axum::body::Body::from_stream(rest),
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(head.content_type),
    );
    if let Some(d) = head.disposition {
        if let Ok(v) = HeaderValue::from_str(&d) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    if let Some(c) = head.checkpoint {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.insert(CHECKPOINT_HEADER, v);
        }
    }
    Ok(response)
}

/// The checkpoint a report names: `<tree size> <base64 root>`, when one
/// covers the report's seq (its JSON says the same in `checkpoint`).
pub const CHECKPOINT_HEADER: HeaderName = HeaderName::from_static("x-registrar-checkpoint");

/// Bytes a report's answer is sent in.
const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks queued toward a slow client before the report waits for it: the
/// memory one report download holds is about this many chunks.
const CHUNKS_QUEUED: usize = 4;

/// What the report's thread tells the handler, in order: its start, then
/// chunks, then nothing (done) or a failure.
enum Piece {
    Start(u64, report::Headers),
    Bytes(Bytes),
    Failed(ApiError),
}

/// How long a report waits for a client to take its next chunk before it
/// gives up: the report holds a snapshot of the store (and so holds back its
/// WAL checkpoints) while it waits.
const CLIENT_STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The report's writer: gathers bytes into chunks and queues them.
struct Chunks {
    tx: mpsc::Sender<Piece>,
    buf: Vec<u8>,
    /// The runtime the handler runs on: the blocking thread waits on the
    /// queue through it, with a deadline.
    runtime: tokio::runtime::Handle,
}

impl Chunks {
    fn new(tx: mpsc::Sender<Piece>, runtime: tokio::runtime::Handle) -> Chunks {
        Chunks {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
            runtime,
        }
    }

    /// Queues a piece, waiting at most [`CLIENT_STALL_LIMIT`] for room.
    fn put(&self, piece: Piece) -> std::io::Result<()> {
        use std::io::{Error, ErrorKind};
        // The timer is made inside the future, so on the runtime it runs
        // on: the thread calling may be any (the register writes from one
        // of its own).
        let sent = self.runtime.block_on(async {
            tokio::time::timeout(CLIENT_STALL_LIMIT, self.tx.send(piece)).await
        });
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::new(ErrorKind::BrokenPipe, "the client went away")),
            Err(_) => Err(Error::new(
                ErrorKind::TimedOut,
                "the client took no data for too long",
            )),
        }
    }

    fn start(&mut self, position: u64, head: report::Headers) {
        let _ = self.put(Piece::Start(position, head));
    }

    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.put(Piece::Bytes(Bytes::from(chunk)))
    }

    fn finish(mut self) {
        if !self.buf.is_empty() {
            let _ = self.send();
        }
    }

    fn fail(self, e: ApiError) {
        // The code only: a message can carry what the caller asked for (a
        // student's identifier). A server error is logged where it is
        // answered, with its detail.
        tracing::warn!(code = e.code(), "a report failed");
        let _ = self.put(Piece::Failed(e));
    }
}

impl std::io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The chunks after the first, as the body's stream.
struct Receiver(mpsc::Receiver<Piece>);

impl futures_core::Stream for Receiver {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|piece| match piece? {
            Piece::Bytes(b) => Some(Ok(b)),
            Piece::Failed(e) => Some(Err(std::io::Error::other(e.to_string()))),
            Piece::Start(..) => Some(Err(std::io::Error::other("a report started twice"))),
        })
    }
}

/// A chunk already received, then the rest.
struct Prepend(Option<Bytes>, Receiver);

impl futures_core::Stream for Prepend {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if let Some(b) = self.0.take() {
            return std::task::Poll::Ready(Some(Ok(b)));
        }
        std::pin::Pin::new(&mut self.1).poll_next(cx)
    }
}
