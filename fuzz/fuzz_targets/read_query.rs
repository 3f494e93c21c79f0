//! The read API's query strings, cursors and `min_seq`.
//!
//! Input: a query string, optionally followed by NUL and an
//! `X-Registrar-Min-Seq` header value. The query is also tried as a cursor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registrar::api;
use registrar::http::{consistency, params};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let ([query], header) = common::split::<1>(data);
    let (query, header) = match query {
        Some(q) => (q, header),
        None => (data, &b""[..]),
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    api::fuzz_query(query);
    params::fuzz_cursor(query);
    consistency::fuzz_min_seq(query, header);
});
