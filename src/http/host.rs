//! The guard against DNS rebinding. A server with something open (no read
//! token, no admin token, or no provider secret: a loopback server as `make
//! run` starts it) would answer any page a browser loads from a site whose
//! name its owner points at 127.0.0.1: that page is then same-origin with
//! the server and could read the ledger or post to it. Such a request
//! carries the attacker's name in `Host`; a server with something open
//! answers only to an IP address, `localhost`, or the host of `--public-url`.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::tokens::admin_token;
use super::{ApiError, AppState};
use crate::config::Settings;

/// Whether anything answers without a credential.
pub fn anything_open(config: &Settings) -> bool {
    config.read_token.is_none() || admin_token(config).is_none() || config.is_unsigned()
}

/// The name a `Host` value (or a URL's authority) names, without its port.
fn host_name(authority: &str) -> &str {
    match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    }
}

/// Whether `headers` name this server by an address (never rebound), as
/// `localhost`, or by the host of `--public-url`.
pub fn named_as_ours(config: &Settings, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = host_name(host);
    if name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok() {
        return true;
    }
    config.public_url.as_deref().is_some_and(|url| {
        let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = authority.split('/').next().unwrap_or("");
        host_name(authority).eq_ignore_ascii_case(name)
    })
}

/// The middleware: with anything open, a request by another name is 403.
pub async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if anything_open(&app.config) && !named_as_ours(&app.config, req.headers()) {
        return ApiError::Forbidden(
            "this server has no token or secret for some routes, so it answers only to an IP \
             address, localhost or its --public-url host"
                .into(),
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(host: &str, public_url: Option<&str>) -> bool {
        let mut config = Settings::new(std::path::PathBuf::from("x.db"));
        config.public_url = public_url.map(String::from);
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        named_as_ours(&config, &headers)
    }

    #[test]
    fn addresses_localhost_and_the_public_host_are_ours_and_other_names_are_not() {
        assert!(named("127.0.0.1:8080", None));
        assert!(named("[::1]:8080", None));
        assert!(named("10.0.0.5", None));
        assert!(named("LOCALHOST:8080", None));
        assert!(named(
            "erp.school.example",
            Some("https://erp.school.example:8443/x")
        ));
        assert!(!named("attacker.example", None));
        assert!(!named(
            "attacker.example:8080",
            Some("https://erp.school.example")
        ));
        assert!(!named("localhost.attacker.example", None));
    }
}
