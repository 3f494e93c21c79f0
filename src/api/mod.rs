//! The HTTP API: the read resources (`/v1`), admin (`/v1/admin`), health,
//! metrics and the OpenAPI document.
//!
//! Nothing below HTTP knows HTTP. Handlers see validated input only: query
//! strings are parsed by typed extractors ([`crate::http::params`]). What
//! this module shares with the webhooks and the console lives in
//! [`crate::http`]; [`crate::server`] composes the three.

pub mod admin;
pub mod events;
pub mod health;
pub mod learners;
pub mod openapi;
pub mod payments;
pub mod reports;
pub mod students;

use axum::middleware;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use crate::http::params::{parse_query, NoParams};
use crate::http::tokens::{require_admin_token, require_read_token};
use crate::http::{consistency, AppState};

/// Every route of this module, as (method, path). The router is built from
/// this table, and a test checks the OpenAPI document against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/audit/head"),
    ("GET", "/v1/students"),
    ("GET", "/v1/students/{id}"),
    ("GET", "/v1/students/{id}/history"),
    ("GET", "/v1/students/{id}/payments"),
    ("GET", "/v1/payments"),
    ("GET", "/v1/payments/{payment_id}"),
    ("GET", "/v1/learners/{user_id}"),
    ("GET", "/v1/enrollments"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/{seq}"),
    ("GET", "/v1/reports/day-book"),
    ("GET", "/v1/reports/payments"),
    ("GET", "/v1/reports/statement/{student_id}"),
    ("GET", "/v1/reports/changes"),
    ("GET", "/v1/reports/status-changes"),
    ("POST", "/v1/admin/rebuild"),
    ("GET", "/v1/admin/status"),
];

/// Whether `path` is one of the resources of the read API, each routed by
/// its own module's `router()`.
fn is_resource(path: &str) -> bool {
    path.starts_with("/v1/") && !path.starts_with("/v1/admin/") && path != "/v1/audit/head"
}

/// The read API's resources, one router per module.
fn resources() -> Router<AppState> {
    students::router()
        .merge(payments::router())
        .merge(learners::router())
        .merge(events::router())
        .merge(reports::router())
}

/// The handler of a route outside the resources.
fn handler(method: &str, path: &str) -> MethodRouter<AppState> {
    match (method, path) {
        ("GET", "/healthz") => get(health::healthz),
        ("GET", "/readyz") => get(health::readyz),
        ("GET", "/metrics") => get(health::metrics),
        ("GET", "/openapi.json") => get(openapi::document),
        ("GET", "/v1/audit/head") => get(admin::audit_head),
        ("POST", "/v1/admin/rebuild") => post(admin::rebuild),
        ("GET", "/v1/admin/status") => get(admin::status),
        other => unreachable!("route {other:?} is in ROUTES but has no handler"),
    }
}

/// The API: documents and health open, `/v1` behind the read token,
/// `/v1/admin` behind the admin token.
pub fn router(state: AppState) -> Router<AppState> {
    let (mut read, mut admin, mut open) = (resources(), Router::new(), Router::new());
    for (method, path) in ROUTES {
        if is_resource(path) {
            continue;
        }
        let h = handler(method, path);
        if path.starts_with("/v1/admin/") {
            admin = admin.route(path, h);
        } else if path.starts_with("/v1/") {
            read = read.route(path, h);
        } else {
            open = open.route(path, h);
        }
    }
    // Layers run outside in: the token is checked before any wait.
    let read = read
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            consistency::layer,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_read_token,
        ));
    let admin = admin
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            consistency::layer,
        ))
        .route_layer(middleware::from_fn_with_state(state, require_admin_token));
    open.merge(read).merge(admin)
}

/// For the fuzz targets in `fuzz/` (not an API): parses a query string as
/// every route's parameters would, and returns how many routes accept it.
#[doc(hidden)]
pub fn fuzz_query(query: &str) -> usize {
    [
        parse_query::<students::StudentsQuery>(query).is_ok(),
        parse_query::<students::AsOfQuery>(query).is_ok(),
        parse_query::<students::PageQuery>(query).is_ok(),
        parse_query::<payments::PaymentsQuery>(query).is_ok(),
        parse_query::<learners::EnrollmentsQuery>(query).is_ok(),
        parse_query::<events::EventsQuery>(query).is_ok(),
        parse_query::<NoParams>(query).is_ok(),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}
