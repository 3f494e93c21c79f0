//! The audit console: HTML pages where finance staff audit the ledger, at
//! `/console` (`GET /` leads there).
//!
//! Server-rendered with maud (compile-time checked, every value escaped), no
//! JavaScript: every page works with scripts off and prints cleanly. Pages
//! read only through [`crate::projection::query`], [`crate::report`] (from
//! one adapter, [`reports`]), [`crate::log`] and [`crate::quarantine`];
//! what changes something (readmit, verify, a pin) goes through the ledger's
//! one writer, needs the admin role and a CSRF token, and is a POST.
//!
//! - [`session`]: sign-in, sessions, roles, CSRF.
//! - [`html`]: the page frame, money and time formatting.
//! - [`browse`]: overview, students, a student, a payment.
//! - [`reports`]: day book and changes since (and their CSV), the adapter
//!   to the finance reports.
//! - [`audit`]: events, quarantine, integrity (verify and pins).

/// A page's query: its own filters plus `as_of` and `known_at` (every page
/// takes them), unknown parameters refused. (serde's `flatten` cannot be
/// combined with `deny_unknown_fields`, hence a macro.)
macro_rules! page_query {
    ($name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(pub $field: $ty,)*
            pub as_of: Option<String>,
            pub known_at: Option<String>,
        }

        impl $name {
            /// The times asked for, validated (a page that lists things as
            /// they are now still refuses a malformed time).
            #[allow(dead_code)]
            pub fn times(
                &self,
                zone: chrono_tz::Tz,
            ) -> Result<crate::projection::query::reports::Times, crate::http::ApiError> {
                crate::console::reports::times(self.as_of.as_deref(), self.known_at.as_deref(), zone)
            }
        }
    };
}

mod audit;
mod browse;
mod html;
mod reports;
pub mod session;
mod viewer;

use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::de::DeserializeOwned;

use crate::http::params::parse_query;
use crate::http::rate::KeyedRateLimit;
use crate::http::{ApiError, AppState};
use html::{Frame, TimeView};
use session::Sessions;
use viewer::Viewer;

/// The stylesheet, served by the binary.
const STYLE: &str = include_str!("style.css");

/// The security headers of every console answer: no script at all, styles
/// and forms from this origin only, never framed.
const CSP: &str = "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's state beside the API's: sessions, the sign-in limit, verify.
pub struct Console {
    app: AppState,
    sessions: Sessions,
    /// Failed sign-ins, per client address.
    failed_sign_ins: KeyedRateLimit<std::net::IpAddr>,
    verify: Mutex<audit::VerifyState>,
}

#[derive(Clone)]
pub struct ConsoleState(Arc<Console>);

impl std::ops::Deref for ConsoleState {
    type Target = Console;
    fn deref(&self) -> &Console {
        &self.0
    }
}

/// The console's routes, with their state: merged into the API's router.
pub fn router(app: AppState) -> Router {
    let state = ConsoleState(Arc::new(Console {
        sessions: Sessions::new(app.config.session_idle, app.config.clock.clone()),
        failed_sign_ins: KeyedRateLimit::new(
            session::FAILED_SIGN_IN_RATE,
            session::FAILED_SIGN_IN_BURST,
            session::MAX_SIGN_IN_CLIENTS,
            app.config.clock.clone(),
        ),
        verify: Mutex::new(audit::VerifyState::default()),
        app,
    }));
    let pages = Router::new()
        .route("/console", get(browse::overview))
        .route("/console/students", get(browse::students))
        .route("/console/students/{id}", get(browse::student))
        .route("/console/payments/{id}", get(browse::payment))
        .route(
            "/console/payments/{id}/bundle.json",
            get(browse::payment_bundle),
        )
        .route("/console/day-book", get(reports::day_book))
        .route("/console/day-book.csv", get(reports::day_book_csv))
        .route("/console/changes", get(reports::changes))
        .route("/console/changes.csv", get(reports::changes_csv))
        .route("/console/events", get(audit::events))
        .route("/console/events/{seq}", get(audit::event))
        .route(
            "/console/events/{seq}/bundle.json",
            get(audit::event_bundle),
        )
        .route("/console/quarantine", get(audit::quarantine))
        .route("/console/quarantine/{id}", get(audit::quarantined))
        .route("/console/quarantine/{id}/readmit", post(audit::readmit))
        .route("/console/integrity", get(audit::integrity))
        .route("/console/integrity/verify", post(audit::run_verify))
        .route("/console/integrity/pins", post(audit::record_pin))
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/{*rest}", get(not_found).post(not_found))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            session::require_session,
        ));
    let open = Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/style.css", get(style))
        .route(
            "/console/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        );
    pages
        .merge(open)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

async fn not_found() -> ConsoleError {
    ConsoleError(ApiError::NotFound("no such page in the console".into()))
}

/// Adds the security headers to every console answer; pages are not cached
/// (they show personal data and change with the ledger).
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// An HTML page answer.
pub struct Html(pub Markup);

impl IntoResponse for Html {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            self.0.into_string(),
        )
            .into_response()
    }
}

/// A JSON document answered as a download named `name`.
fn json_download(value: &impl serde::Serialize, name: &str) -> Response {
    let body = serde_json::to_vec_pretty(value).expect("a bundle serializes");
    (
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// The API's one error, answered as an HTML page: the API's own answer is
/// built first (so its logging and `Retry-After` apply unchanged), then its
/// JSON body is replaced with a page for people.
pub struct ConsoleError(pub ApiError);

/// Every error the API's [`ApiError`] is made from, made into a page.
macro_rules! console_error_from {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for ConsoleError {
            fn from(e: $t) -> Self {
                ConsoleError(e.into())
            }
        })*
    };
}

console_error_from!(
    ApiError,
    rusqlite::Error,
    crate::projection::ProjectionError,
    crate::projection::live::ReadError,
    crate::ledger::LedgerError,
    crate::report::ParamError,
    crate::report::ReportError,
);

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = self.0.public_message();
        let (mut parts, _) = self.0.into_response().into_parts();
        let title = match status {
            StatusCode::UNAUTHORIZED => "Signed out".to_string(),
            StatusCode::FORBIDDEN => "Not allowed".to_string(),
            StatusCode::NOT_FOUND => "Not found".to_string(),
            s => format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or("Error")),
        };
        let page = html::bare(
            &title,
            html! {
                p.error role="alert" { (message) }
                p { a href="/console" { "Back to the overview" } }
            },
        );
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, axum::body::Body::from(page.into_string()))
    }
}

/// Drops the pairs with an empty value: a GET form sends every field, and
/// an empty one means "any", not a value to validate.
fn without_empty(q: &str) -> String {
    q.split('&')
        .filter(|p| !p.is_empty() && !p.ends_with('='))
        .collect::<Vec<_>>()
        .join("&")
}

/// A page's query string parsed into `T` ([`parse_query`]: unknown
/// parameters and malformed values are a 400), with its pairs as given.
pub struct Query<T>(pub T, pub Vec<(String, String)>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ConsoleError> {
        let q = without_empty(parts.uri.query().unwrap_or(""));
        let value = parse_query(&q)?;
        let pairs = form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Query(value, pairs))
    }
}

/// A POSTed form parsed like a query string.
pub fn parse_form<T: DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    parse_query(body.trim())
}

/// What a page handler renders into the frame.
pub struct Ctx<'a> {
    pub console: &'a Console,
    pub viewer: &'a Viewer,
    pub times: TimeView,
    /// The page's query pairs other than the times (kept by the time control).
    pub keep: Vec<(String, String)>,
}

impl<'a> Ctx<'a> {
    pub fn new(console: &'a Console, viewer: &'a Viewer, pairs: Vec<(String, String)>) -> Self {
        let mut times = TimeView::default();
        let mut keep = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "as_of" => times.as_of = Some(v),
                "known_at" => times.known_at = Some(v),
                // A page number is not kept: a new time starts from the top.
                "after" => {}
                _ => keep.push((k, v)),
            }
        }
        Ctx {
            console,
            viewer,
            times,
            keep,
        }
    }

    pub fn zone(&self) -> chrono_tz::Tz {
        self.console.app.config.display_zone()
    }

    pub fn href(&self, path: &str, params: &[(&str, &str)]) -> String {
        html::href(path, params, &self.times)
    }

    /// The page: `body` in the frame; `path` is the page's own (the time
    /// control submits to it; the navigation marks the section it is in).
    pub fn render(&self, title: &str, path: &str, body: Markup) -> Html {
        self.render_with(title, path, None, body)
    }

    pub fn render_with(&self, title: &str, path: &str, refresh: Option<u32>, body: Markup) -> Html {
        Html(html::page(
            &Frame {
                title,
                path,
                keep: &self.keep,
                times: &self.times,
                viewer: self.viewer,
                open: session::is_open(&self.console.app.config),
                refresh,
            },
            body,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_form_fields_are_dropped_before_parsing() {
        assert_eq!(without_empty("q=&status=active&grade="), "status=active");
        assert_eq!(without_empty(""), "");
        assert_eq!(without_empty("a=1&&b"), "a=1&b");
    }
}
