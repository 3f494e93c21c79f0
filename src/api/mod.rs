//! The HTTP API: ingest (webhooks), read (`/v1`), admin (`/v1/admin`),
//! health and metrics.
//!
//! Nothing below this module knows HTTP. Handlers see validated input only:
//! bodies are parsed by [`crate::sources`], query strings by typed extractors.

pub mod admin;
pub mod consistency;
pub mod error;
pub mod events;
pub mod health;
pub mod host;
pub mod ingest;
pub mod learners;
mod observe;
pub mod openapi;
pub mod params;
pub mod payments;
pub mod rate;
pub mod reports;
pub mod students;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use rusqlite::Connection;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::Config;
use crate::db;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::projection::live::LiveStore;
use crate::projection::projector::Projector;
pub use error::ApiError;

/// What every handler shares: one `Arc`, so the copy axum makes for every
/// layer and handler of every request is one counter increment, not one per
/// field.
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl AppState {
    pub fn new(app: App) -> AppState {
        AppState(Arc::new(app))
    }
}

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// The server's parts, behind [`AppState`].
pub struct App {
    pub config: Arc<Config>,
    pub ledger: Ledger,
    /// Read connections on the log file.
    pub log: Arc<Readers>,
    /// The projection store serving reads, and the projector's position.
    pub live: Arc<LiveStore>,
    pub projector: Projector,
    pub metrics: Arc<Metrics>,
    /// Unauthenticated rejects kept per second at most.
    pub unauthenticated: Arc<rate::RateLimit>,
}

impl App {
    /// Runs `f` on one snapshot of the projection store and notes its
    /// position for the answer's `X-Registrar-Position`. 503 while no usable
    /// store exists.
    pub async fn projections<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let (value, position) = self.live.read(f)?;
        consistency::record(position);
        Ok(value)
    }
}

/// A small pool of read-only connections on the log file.
///
/// Reads run inline on the async worker that handles the request: they are
/// indexed lookups over a local file (tens of microseconds) and pages of at
/// most [`params::MAX_LIMIT`] rows, so a hop to a blocking thread would cost as
/// much as the query. At most one read per worker runs at a time.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// Idle read connections kept at most.
pub const MAX_IDLE_READERS: usize = 8;

impl Readers {
    pub fn new(path: PathBuf) -> Readers {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a read connection, inside one read transaction: every
    /// query of a request sees the same snapshot (a student resolved by one
    /// query still exists for the next, a page and its total agree), and
    /// SQLite takes its read locks once per request, not once per statement.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Connection) -> Result<T, ApiError>,
    {
        let conn = self.idle.lock().expect("reader pool lock").pop();
        let conn = match conn {
            Some(c) => c,
            None => db::open_ro(&self.path)?,
        };
        conn.prepare_cached("BEGIN")?.execute([])?;
        let result = f(&conn);
        // End the snapshot whatever `f` returned: a pooled connection must
        // not hand an old snapshot to the next request, nor hold back WAL
        // checkpoints. One that cannot end it is dropped, not pooled.
        if !conn.is_autocommit() {
            let ended = conn
                .prepare_cached("COMMIT")
                .and_then(|mut s| s.execute([]));
            if ended.is_err() && conn.execute_batch("ROLLBACK").is_err() {
                return result;
            }
        }
        let mut idle = self.idle.lock().expect("reader pool lock");
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

/// Every route, as (method, path). The router is built from this table, and
/// a test checks the OpenAPI document against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/webhooks/jodo"),
    ("POST", "/webhooks/toolzz"),
    ("POST", "/webhooks/toolzz/{token}"),
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
        ("POST", "/webhooks/jodo") => post(ingest::jodo),
        ("POST", "/webhooks/toolzz") => post(ingest::toolzz_without_token),
        ("POST", "/webhooks/toolzz/{token}") => post(ingest::toolzz_with_token),
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

/// The whole API: webhooks and documents open (webhooks authenticate
/// themselves), `/v1` behind the read token, `/v1/admin` behind the admin token.
pub fn router(state: AppState) -> Router {
    let (mut read, mut admin) = (resources(), Router::new());
    let (mut webhooks, mut open) = (Router::new(), Router::new());
    for (method, path) in ROUTES {
        if is_resource(path) {
            continue;
        }
        let h = handler(method, path);
        if path.starts_with("/v1/admin/") {
            admin = admin.route(path, h);
        } else if path.starts_with("/v1/") {
            read = read.route(path, h);
        } else if path.starts_with("/webhooks/") {
            webhooks = webhooks.route(path, h);
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
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_admin_token,
        ));
    let webhooks = webhooks.route_layer(middleware::from_fn_with_state(
        state.clone(),
        observe::deliveries,
    ));
    let app = webhooks
        .merge(open)
        .merge(read)
        .merge(admin)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state.clone())
        .merge(crate::console::router(state.clone()))
        .layer(middleware::from_fn_with_state(state, host::guard));
    with_error_layers(app)
}

/// The layers every answer passes through: the error shape for what the
/// framework rejects ([`error::error_shape`]), and a caught panic answered
/// 500 in that shape, the server going on (defence in depth: a panic is a
/// bug with its own test).
pub fn with_error_layers(app: Router) -> Router {
    app.layer(middleware::from_fn(error::error_shape))
        .layer(CatchPanicLayer::custom(error::panic_response))
}

pub use crate::auth::secret_eq;

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
pub(crate) fn check_token(given: Option<&str>, expected: Option<&str>) -> Result<(), ApiError> {
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

async fn require_read_token(
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
pub(crate) fn admin_token(config: &Config) -> Option<&str> {
    config
        .admin_token
        .as_deref()
        .or(config.read_token.as_deref())
}

/// Admin endpoints take [`admin_token`].
async fn require_admin_token(
    State(s): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_bearer(req.headers(), admin_token(&s.config))?;
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

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
