//! The HTTP API: the read resources (`/v1`), admin (`/v1/admin`), health,
//! metrics and the OpenAPI document.
//!
//! Nothing below HTTP knows HTTP. Handlers see validated input only: query
//! strings are parsed by typed extractors ([`crate::http::params`]). What
//! this module shares with the webhooks and the console lives in
//! [`crate::http`]; [`crate::server`] composes the three.
//!
//! Each route is declared once, by its handler's `#[utoipa::path]`: the
//! router is built from those declarations (`routes!`), and so is the
//! OpenAPI document ([`openapi`]). The three groups below differ in what
//! guards them, and [`guarded`] puts the guard on a group's routes and
//! into its operations' descriptions at once.

mod admin;
mod events;
mod health;
mod learners;
mod log;
pub(crate) mod openapi;
mod payments;
mod reports;
mod students;

use axum::middleware;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{RefOr, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::params::{parse_query, NoParams};
use crate::http::tokens::{require_admin_token, require_read_token};
use crate::http::{consistency, AppState};

/// Open to anyone: health, metrics and this document.
fn open() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::document))
}

/// The read resources: `/v1`, one router per module.
fn read() -> OpenApiRouter<AppState> {
    students::router()
        .merge(payments::router())
        .merge(learners::router())
        .merge(events::router())
        .merge(reports::router())
        .merge(log::router())
        .routes(routes!(admin::audit_head))
}

/// Admin actions: `/v1/admin`.
fn admin() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin::rebuild))
        .routes(routes!(admin::checkpoint))
        .routes(routes!(admin::status))
}

/// Which token guards a group.
#[derive(Clone, Copy)]
enum Token {
    Read,
    Admin,
}

/// Puts `token` and read-your-writes ([`consistency::layer`]) on every
/// route of `group`, and writes both into its operations: the security
/// requirement, the 401, `min_seq`, the position header and the 503.
/// Layers run outside in: the token is checked before any wait.
fn guarded(
    group: OpenApiRouter<AppState>,
    token: Token,
    state: &AppState,
) -> OpenApiRouter<AppState> {
    let scheme = match token {
        Token::Read => openapi::READ_TOKEN,
        Token::Admin => openapi::ADMIN_TOKEN,
    };
    let group = describe(group, |op| {
        op.security = Some(vec![SecurityRequirement::new(scheme, Vec::<String>::new())]);
        op.responses
            .responses
            .insert("401".into(), RefOr::T(unauthorized()));
        consistency::document(op);
    });
    let group = group.route_layer(middleware::from_fn_with_state(
        state.clone(),
        consistency::layer,
    ));
    match token {
        Token::Read => group.route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_read_token,
        )),
        Token::Admin => group.route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_admin_token,
        )),
    }
}

/// The 401 of a guarded route.
fn unauthorized() -> Response {
    serde_json::from_value(serde_json::json!({
        "description": "The bearer token is missing or wrong",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorAnswer" } } }
    }))
    .expect("a valid response")
}

/// Applies `f` to every operation of `group`'s document.
fn describe(
    mut group: OpenApiRouter<AppState>,
    f: impl Fn(&mut Operation),
) -> OpenApiRouter<AppState> {
    for item in group.get_openapi_mut().paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
            &mut item.query,
        ]
        .into_iter()
        .flatten()
        {
            f(op);
        }
        for op in item.additional_operations.values_mut() {
            f(op);
        }
    }
    group
}

/// The API: health and the document open (`security: []`), `/v1` behind
/// the read token, `/v1/admin` behind the admin token.
pub fn router(state: AppState) -> OpenApiRouter<AppState> {
    let open = describe(open(), |op| op.security = Some(Vec::new()));
    open.merge(guarded(read(), Token::Read, &state))
        .merge(guarded(admin(), Token::Admin, &state))
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
        parse_query::<log::CheckpointsQuery>(query).is_ok(),
        parse_query::<log::InclusionQuery>(query).is_ok(),
        parse_query::<log::ConsistencyQuery>(query).is_ok(),
        parse_query::<reports::DayBookQuery>(query).is_ok(),
        parse_query::<reports::PaymentsReportQuery>(query).is_ok(),
        parse_query::<reports::StatementQuery>(query).is_ok(),
        parse_query::<reports::ChangesQuery>(query).is_ok(),
        parse_query::<reports::StatusChangesQuery>(query).is_ok(),
        parse_query::<NoParams>(query).is_ok(),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}
