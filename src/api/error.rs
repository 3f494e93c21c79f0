//! The one error type of the HTTP API.
//!
//! Every error answers `{"error":{"code":"...","message":"..."}}`. A 4xx's
//! message is safe to show the client (it names a field, never a secret); a
//! 5xx's is opaque to the client and the cause is logged once, here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::ledger::LedgerError;
use crate::projection::live::ReadError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or fails validation.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: authentication failed.
    #[error("{0}")]
    Unauthorized(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: a Jodo event_id repeated with another body.
    #[error("{0}")]
    Conflict(String),
    /// 413: body over the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
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
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable { .. } | ApiError::NotReady { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::NotReady { .. } => "not_ready",
            ApiError::Internal(_) => "internal",
        }
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
            | ApiError::NotReady { retry_after: s, .. } => Some(s),
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
