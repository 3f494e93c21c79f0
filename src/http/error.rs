//! The one error type of the HTTP API.
//!
//! Every error answers `{"error":{"code":"...","message":"..."}}`. A 4xx's
//! message is safe to show the client (it names a field, never a secret); a
//! 5xx's is opaque to the client and the cause is logged once, here.

use std::any::Any;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::ledger::LedgerError;
use crate::log::bundle::BundleError;
use crate::log::tree::ProofError;
use crate::projection::live::ReadError;
use crate::projection::ProjectionError;
use crate::report::{ParamError, ReportError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or fails validation.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: authentication failed.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but the role does not allow it (a read session
    /// asking for an admin action), or a form without its CSRF token.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: a Jodo event_id repeated with another body.
    #[error("{0}")]
    Conflict(String),
    /// 413: body over the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429: too many attempts (failed console sign-ins).
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u32 },
    /// 503: the log cannot be written (or the writer is saturated).
    #[error("storage unavailable")]
    Unavailable {
        cause: String,
        retry_after: Option<u32>,
    },
    /// 503: the projections cannot answer yet (being built, or behind the
    /// `min_seq` asked for); the message says which.
    #[error("{message}")]
    NotReady { message: String, retry_after: u32 },
    /// 500: a bug. The cause is logged, not shown.
    #[error("internal error")]
    Internal(String),
    /// 500: a handler panicked (a bug). Already logged once, by the panic
    /// hook, with its message and location: not logged again here.
    #[error("internal error")]
    Panicked,
    /// Any other rejection the framework produces (405, 414, 431, a path
    /// that does not decode, ...), put into the shape by [`error_shape`].
    #[error("{message}")]
    Framework { status: StatusCode, message: String },
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code: "invalid_request",
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable { .. } | ApiError::NotReady { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) | ApiError::Panicked => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Framework { status, .. } => *status,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::NotReady { .. } => "not_ready",
            ApiError::Internal(_) | ApiError::Panicked => "internal",
            ApiError::Framework { status, .. } => framework_code(*status),
        }
    }

    /// The answer's body, `{"error":{"code","message"}}`, for the few
    /// answers written outside axum (a request head that timed out).
    pub fn body(&self) -> String {
        json!({ "error": { "code": self.code(), "message": self.public_message() } }).to_string()
    }

    /// The message the client sees.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Unavailable {
                retry_after: Some(_),
                ..
            } => "the event log is busy; nothing was stored, retry later".into(),
            ApiError::Unavailable { .. } => {
                "the event log cannot be written now; nothing was stored, retry later".into()
            }
            ApiError::Internal(_) => "internal error; nothing was stored".into(),
            // A panic may follow a commit: promise nothing about storage.
            ApiError::Panicked => "internal error".into(),
            other => other.to_string(),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Busy => ApiError::Unavailable {
                cause: e.to_string(),
                retry_after: Some(1),
            },
            LedgerError::Storage(_) | LedgerError::Closed => ApiError::Unavailable {
                cause: e.to_string(),
                retry_after: None,
            },
        }
    }
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

/// The code of the 400 for a tree size past the newest checkpoint.
pub const BEYOND_CHECKPOINT: &str = "beyond_checkpoint";

impl From<ProofError> for ApiError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::PastCheckpoint { .. } => ApiError::BadRequest {
                code: BEYOND_CHECKPOINT,
                message: e.to_string(),
            },
            ProofError::SeqNotInTree { .. } | ProofError::SizesReversed { .. } => {
                ApiError::bad_request(e.to_string())
            }
            ProofError::Store(_) => ApiError::Internal(format!("tree: {e}")),
        }
    }
}

impl From<BundleError> for ApiError {
    fn from(e: BundleError) -> Self {
        match e {
            BundleError::NoSuchEvent { .. } | BundleError::NotCheckpointed { .. } => {
                ApiError::NotFound(e.to_string())
            }
            BundleError::Proof(e) => e.into(),
            BundleError::Db(e) => e.into(),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        ApiError::Internal(format!("projection: {e}"))
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Building => ApiError::NotReady {
                message: "the projections are being built from the log; retry later".into(),
                retry_after: 5,
            },
            ReadError::Db(e) => e.into(),
        }
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::Internal(format!("database: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Unavailable { cause, .. } => tracing::error!(cause = %cause, "answering 503"),
            ApiError::Internal(cause) => tracing::error!(cause = %cause, "answering 500"),
            _ => {}
        }
        let body = json!({ "error": { "code": self.code(), "message": self.public_message() } });
        let mut response = (self.status(), Json(body)).into_response();
        let retry_after = match self {
            ApiError::Unavailable {
                retry_after: Some(s),
                ..
            }
            | ApiError::NotReady { retry_after: s, .. }
            | ApiError::TooManyRequests { retry_after: s, .. } => Some(s),
            _ => None,
        };
        if let Some(s) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// The code of a status the framework produced.
fn framework_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::LENGTH_REQUIRED => "length_required",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "header_fields_too_large",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// Longest request target (path and query) served: a longer one is a 414 in
/// the error shape. The longest real one is a paged list with a cursor, a
/// few hundred bytes. (hyper itself answers 414 with an empty body past its
/// own, much larger, limit, before the request reaches the app.)
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Most bytes of header names and values served: more is a 431 in the error
/// shape. Providers send a dozen short headers. (hyper itself answers 431
/// with an empty body when the head overflows its read buffer, ~400 KiB,
/// before the request reaches the app.)
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Most bytes of a framework rejection's text kept as its message.
const MAX_FRAMEWORK_MESSAGE: usize = 300;

/// Middleware: every answer in the error shape. Refuses an overlong target
/// (414) or overlarge headers (431) itself, then rewrites any error response
/// that is not already JSON (axum's 405 with an empty body, its text/plain
/// 400 for a path segment that does not decode, ...) into
/// `{"error":{"code","message"}}`, keeping `Allow` and `Retry-After`.
pub async fn error_shape(req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return ApiError::Framework {
            status: StatusCode::URI_TOO_LONG,
            message: format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        }
        .into_response();
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return ApiError::Framework {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            message: format!("the request headers are larger than {MAX_HEADER_BYTES} bytes"),
        }
        .into_response();
    }
    let method = req.method().clone();
    let response = next.run(req).await;
    let status = response.status();
    // JSON is the API's shape; HTML is the console's error page, shaped
    // for a person by the console itself.
    let is_shaped = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_shaped {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The framework's own text, when it has one, says what was wrong.
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let allow = parts
        .headers
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok());
    let message = match (status, allow) {
        (StatusCode::METHOD_NOT_ALLOWED, Some(allow)) => {
            format!("{method} is not allowed here; allowed: {allow}")
        }
        _ if !text.is_empty() => {
            let mut end = text.len().min(MAX_FRAMEWORK_MESSAGE);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_string()
        }
        _ => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    };
    let mut shaped = ApiError::Framework { status, message }.into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            shaped.headers_mut().insert(name, v.clone());
        }
    }
    shaped
}

/// The answer to a handler's panic (tower-http's `CatchPanicLayer`): 500 in
/// the error shape. The panic hook has already logged it once; the server
/// goes on.
pub fn panic_response(_panic: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::Panicked.into_response()
}

/// The layers every answer passes through: the error shape for what the
/// framework rejects ([`error_shape`]), and a caught panic answered 500 in
/// that shape, the server going on (defence in depth: a panic is a bug with
/// its own test).
pub fn with_error_layers(app: axum::Router) -> axum::Router {
    app.layer(axum::middleware::from_fn(error_shape)).layer(
        tower_http::catch_panic::CatchPanicLayer::custom(panic_response),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;

    /// Serves `app` on a random local port; returns its base URL.
    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_in_the_error_shape_and_the_server_goes_on() {
        let app = with_error_layers(
            Router::new()
                .route(
                    "/panic",
                    get(|| async {
                        panic!("a test-only route panics");
                        #[allow(unreachable_code)]
                        ""
                    }),
                )
                .route("/ok", get(|| async { "ok" })),
        );
        let base = serve(app).await;
        let client = reqwest::Client::new();
        for _ in 0..2 {
            let r = client.get(format!("{base}/panic")).send().await.unwrap();
            assert_eq!(r.status(), 500);
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "internal", "{body}");
            assert_eq!(body["error"]["message"], "internal error", "{body}");
        }
        let r = client.get(format!("{base}/ok")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// Every error's body, `{"error":{"code":"...","message":"..."}}`, as the
/// OpenAPI document describes it ([`ApiError`] writes it with `json!`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // Read by the document only.
pub struct ErrorAnswer {
    error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// Machine-readable: invalid_request, unauthorized, not_found,
    /// conflict, not_ready, ...
    code: String,
    /// For a person; a 4xx's names the parameter at fault.
    message: String,
}
