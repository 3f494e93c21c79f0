//! The Jodo parser and authentication, body plus headers.
//!
//! Input: `X-Jodo-Signature` NUL custom header NUL body (a header's repeated
//! values separated by `\n`; a signature of exactly `=` stands for the
//! body's correct one, so the authenticated path is reached); with fewer
//! NULs, the whole input is an unsigned body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registrar::auth::{self, JodoSecrets, Presented};
use registrar::event::Source;
use registrar::sources::{self, ParseContext};

#[path = "common.rs"]
mod common;

const SECRET: &[u8] = b"fuzz-jodo-secret";
const HEADER_VALUE: &[u8] = b"fuzz-custom-header";

fuzz_target!(|data: &[u8]| {
    let ([signature, custom], body) = common::split::<2>(data);
    if let Ok(parsed) = sources::parse(Source::Jodo, body, &ParseContext::default()) {
        common::check_accepted(body, &parsed);
    }
    let good = auth::sign(SECRET, body);
    let signatures: Vec<&[u8]> = common::values(signature)
        .into_iter()
        .map(|v| if v == b"=" { good.as_bytes() } else { v })
        .collect();
    let customs = common::values(custom);
    let secrets = JodoSecrets {
        secret: Some(SECRET),
        header: Some(("x-school-key", HEADER_VALUE)),
    };
    let outcome = auth::check_jodo(
        &secrets,
        body,
        Presented::from_values(signatures.iter().copied()),
        Presented::from_values(customs.iter().copied()),
    );
    // Authenticated exactly when each header was sent once, right.
    let expected = signatures == [good.as_bytes()] && customs == [HEADER_VALUE];
    assert_eq!(
        outcome.refusal().is_none(),
        expected,
        "signatures {signatures:?}, custom header {customs:?}: {outcome:?}"
    );
});
