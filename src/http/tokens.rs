//! The bearer tokens: the read token for `/v1`, the admin token for
//! `/v1/admin` (and the console's admin role), one constant-time check for
//! both and for the console's sign-in form.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};
use crate::auth::secret_eq;
use crate::config::Settings;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn check_bearer(headers: &HeaderMap, expected: Option<&str>) -> Result<(), ApiError> {
    check_token(bearer(headers), expected)
}

/// The one token check, for bearer headers and the console's sign-in form:
/// `given` must equal `expected` (compared in constant time); with nothing
/// expected, anything passes (a loopback server without tokens).
pub fn check_token(given: Option<&str>, expected: Option<&str>) -> Result<(), ApiError> {
    match expected {
        None => Ok(()),
        Some(token) => match given {
            Some(given) if secret_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::Unauthorized("the bearer token is wrong".into())),
            None => Err(ApiError::Unauthorized(
                "this endpoint needs `Authorization: Bearer <token>`".into(),
            )),
        },
    }
}

/// The middleware of `/v1`: the read token.
pub async fn require_read_token(
    State(s): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_bearer(req.headers(), s.config.read_token.as_deref())?;
    Ok(next.run(req).await)
}

/// The token admin actions take: the admin token; without one configured,
/// the read token; without either, none (open like the rest of a loopback
/// server).
pub fn admin_token(config: &Settings) -> Option<&str> {
    config
        .admin_token
        .as_deref()
        .or(config.read_token.as_deref())
}

/// The middleware of `/v1/admin`: [`admin_token`].
pub async fn require_admin_token(
    State(s): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_bearer(req.headers(), admin_token(&s.config))?;
    Ok(next.run(req).await)
}
