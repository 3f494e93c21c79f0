//! `/v1/reports/...`: the finance reports ([`crate::report`]) in JSON, or in
//! CSV with `?format=csv` or `Accept: text/csv`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::http::params::{resolve, Params};
use crate::http::{ApiError, AppState};
use crate::projection::entities::PaymentStatus;
use crate::report::{self, Format, ParamError, Report, ReportError, Request};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/reports/day-book", get(day_book))
        .route("/v1/reports/payments", get(payments))
        .route("/v1/reports/statement/{student_id}", get(statement))
        .route("/v1/reports/changes", get(changes))
        .route("/v1/reports/status-changes", get(status_changes))
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::NotFound(m) => ApiError::NotFound(m),
            ReportError::Projection(e) => e.into(),
            ReportError::Write(m) => ApiError::Internal(m),
        }
    }
}

/// The parameters every report takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    as_of: Option<String>,
    known_at: Option<String>,
    format: Option<Format>,
    mode: Option<String>,
    collector_code: Option<String>,
    status: Option<PaymentStatus>,
    grade: Option<String>,
}

impl ReportQuery {
    /// Rejects a filter the report does not take.
    fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for (name, set) in [
            ("mode", self.mode.is_some()),
            ("collector_code", self.collector_code.is_some()),
            ("status", self.status.is_some()),
            ("grade", self.grade.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
        ] {
            if set && !allowed.contains(&name) {
                return Err(ApiError::bad_request(format!(
                    "{name}: this report does not take it"
                )));
            }
        }
        Ok(())
    }
}

fn format(q: &ReportQuery, headers: &HeaderMap) -> Format {
    if let Some(f) = q.format {
        return f;
    }
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|m| m.trim().starts_with("text/csv")));
    if wants_csv {
        Format::Csv
    } else {
        Format::Json
    }
}

async fn answer(
    app: AppState,
    q: ReportQuery,
    headers: HeaderMap,
    report: Report,
    student: Option<String>,
) -> Result<Response, ApiError> {
    let zone = app.config.business_zone;
    let times = report::parse_times(
        q.as_of.as_deref(),
        q.known_at.as_deref(),
        zone,
        crate::ledger::now_micros(),
    )?;
    let range = match report {
        Report::Statement { .. } => None,
        _ => Some(report::parse_range(
            q.from.as_deref(),
            q.to.as_deref(),
            zone,
        )?),
    };
    let format = format(&q, &headers);
    let (tx, mut rx) = mpsc::channel(CHUNKS_QUEUED);
    let live = app.live.clone();
    let runtime = tokio::runtime::Handle::current();
    // The report runs on a blocking thread, on one snapshot held until its
    // last row is written: a year's register is thousands of rows, and an
    // async worker must not wait on SQLite or on a slow client meanwhile.
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks::new(tx, runtime);
        let read = live.read(|conn| {
            let report = match (report, student) {
                (Report::Statement { .. }, Some(id)) => Report::Statement {
                    jodo_student_id: resolve(conn, &id)?,
                },
                (r, _) => r,
            };
            let req = Request {
                report,
                range,
                times,
                zone,
            };
            out.start(report::position(conn)?, req.headers(format));
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
    crate::http::consistency::record(position);
    // An error before the first chunk is still an answer of its own (a
    // statement's unknown student is a 404); after it, the body is cut short.
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
    Ok(response)
}

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

/// `GET /v1/reports/day-book`.
pub async fn day_book(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<ReportQuery>,
) -> Result<Response, ApiError> {
    q.only(&["from", "to", "mode", "collector_code"])?;
    let r = Report::DayBook {
        mode: q.mode.clone(),
        collector_code: q.collector_code.clone(),
    };
    answer(app, q, headers, r, None).await
}

/// `GET /v1/reports/payments`: the register.
pub async fn payments(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<ReportQuery>,
) -> Result<Response, ApiError> {
    q.only(&["from", "to", "mode", "collector_code", "status"])?;
    let r = Report::Payments {
        status: q.status,
        mode: q.mode.clone(),
        collector_code: q.collector_code.clone(),
    };
    answer(app, q, headers, r, None).await
}

/// `GET /v1/reports/statement/{student_id}`.
pub async fn statement(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Params(q): Params<ReportQuery>,
) -> Result<Response, ApiError> {
    q.only(&[])?;
    let r = Report::Statement {
        jodo_student_id: String::new(),
    };
    answer(app, q, headers, r, Some(id)).await
}

/// `GET /v1/reports/changes`.
pub async fn changes(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<ReportQuery>,
) -> Result<Response, ApiError> {
    q.only(&["from", "to"])?;
    answer(app, q, headers, Report::Changes, None).await
}

/// `GET /v1/reports/status-changes`.
pub async fn status_changes(
    State(app): State<AppState>,
    headers: HeaderMap,
    Params(q): Params<ReportQuery>,
) -> Result<Response, ApiError> {
    q.only(&["from", "to", "grade"])?;
    let r = Report::StatusChanges {
        grade: q.grade.clone(),
    };
    answer(app, q, headers, r, None).await
}
