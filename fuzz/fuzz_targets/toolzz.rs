//! The Toolzz parser and URL-token authentication.
//!
//! Input: the raw token path segment NUL body; with no NUL, the whole input
//! is a body sent to the bare `/webhooks/toolzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registrar::http::params::percent_decode;
use registrar::auth;
use registrar::event::Source;
use registrar::sources::{self, ParseContext};

#[path = "common.rs"]
mod common;

const TOKEN: &[u8] = b"fuzz-toolzz-token";

fuzz_target!(|data: &[u8]| {
    let ([segment], body) = common::split::<1>(data);
    if let Ok(parsed) = sources::parse(Source::Toolzz, body, &ParseContext::default()) {
        common::check_accepted(body, &parsed);
    }
    // As ingest does: a segment that does not decode is compared as sent.
    let token = segment.map(|s| {
        let text = String::from_utf8_lossy(s);
        percent_decode(&text, false).unwrap_or_else(|| text.as_bytes().to_vec())
    });
    let outcome = auth::check_toolzz(Some(TOKEN), token.as_deref());
    assert_eq!(
        outcome.is_ok(),
        token.as_deref() == Some(TOKEN),
        "{token:?}"
    );
    assert!(auth::check_toolzz(None, token.as_deref()).is_ok() == token.is_none());
});
