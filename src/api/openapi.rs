//! `GET /openapi.json`: the API described for clients and auditors.
//!
//! Nothing here lists a route: each handler's `#[utoipa::path]` declares
//! its method, path, parameters and answers, and `utoipa-axum` routes it
//! from that same declaration ([`super::router`], [`crate::ingest::router`]).
//! What a route group adds (the token, read-your-writes) is written into
//! the document by the code that adds it. This module gives the document's
//! frame ([`base`]: title, security schemes, the error shape) and serves
//! the finished document, which [`serve`] hands to the route.

use axum::extract::Extension;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub use crate::http::error::ErrorAnswer;
use crate::http::params::{NoParams, Params};
use crate::http::AppState;

/// The name of the read token's security scheme (`/v1`).
pub const READ_TOKEN: &str = "read_token";
/// The name of the admin token's security scheme (`/v1/admin`).
pub const ADMIN_TOKEN: &str = "admin_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "registrar",
        description = "Hash-chained event log of Jodo and Toolzz webhooks, and projections derived from it. Money is a decimal string with two places; times are RFC 3339 UTC; lists page with limit and an opaque cursor. Every query parameter a route does not list is refused with 400.",
    ),
    components(schemas(ErrorAnswer)),
    modifiers(&Tokens),
)]
struct Frame;

/// The bearer tokens' schemes.
struct Tokens;

impl Modify for Tokens {
    fn modify(&self, api: &mut Document) {
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            READ_TOKEN,
            bearer("REGISTRAR_READ_TOKEN, as `Authorization: Bearer <token>`. Without one configured, /v1 is open."),
        );
        components.add_security_scheme(
            ADMIN_TOKEN,
            bearer("REGISTRAR_ADMIN_TOKEN, as `Authorization: Bearer <token>`; without one configured, the read token; without either, open."),
        );
    }
}

/// The document's frame, before any route is added.
pub fn base() -> Document {
    let mut doc = Frame::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}

/// The finished document, serialized once.
#[derive(Clone)]
pub(super) struct Served(Bytes);

/// The routes of `channels`, with the document their declarations made
/// handed to `GET /openapi.json` ([`document`]).
pub fn serve(channels: OpenApiRouter<AppState>) -> Router<AppState> {
    let (router, doc) = OpenApiRouter::with_openapi(base())
        .merge(channels)
        .split_for_parts();
    let json = serde_json::to_vec(&doc).expect("the document serializes");
    router.layer(Extension(Served(Bytes::from(json))))
}

/// This document
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses(
        (status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object),
        (status = 400, description = "A query parameter was given (none is taken)", body = ErrorAnswer),
    ))]
pub(super) async fn document(
    Extension(Served(json)): Extension<Served>,
    Params(NoParams {}): Params<NoParams>,
) -> Response {
    let mut response = json.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
