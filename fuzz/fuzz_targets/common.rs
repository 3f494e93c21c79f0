//! Shared by the targets: the input layout and what every accepted delivery
//! must satisfy.
#![allow(dead_code)]

use registrar::event::Delivery;
use registrar::sources::{self, Parsed};

/// Splits `fields` NUL-separated fields off the front of `data`; the rest
/// is the body. With fewer NULs, every field is absent and all of `data` is
/// the body (so a provider's example body is a seed as it is).
pub fn split<const N: usize>(data: &[u8]) -> ([Option<&[u8]>; N], &[u8]) {
    let mut fields = [None; N];
    let mut rest = data;
    for field in fields.iter_mut() {
        match rest.iter().position(|&b| b == 0) {
            Some(i) => {
                *field = Some(&rest[..i]);
                rest = &rest[i + 1..];
            }
            None => return ([None; N], data),
        }
    }
    (fields, rest)
}

/// The values of one header: `\n` separates repeated values; absent when
/// the field is.
pub fn values(field: Option<&[u8]>) -> Vec<&[u8]> {
    field.map_or_else(Vec::new, |f| f.split(|&b| b == b'\n').collect())
}

/// What the README promises of every delivery the parser accepts.
pub fn check_accepted(body: &[u8], parsed: &Parsed) {
    assert!(
        std::str::from_utf8(body).is_ok(),
        "a body that is not UTF-8 was accepted"
    );
    let Parsed::Delivery(d) = parsed else { return };
    check_delivery(d);
}

fn check_delivery(d: &Delivery) {
    assert!(
        (1..=sources::MAX_EVENT_TYPE_LEN).contains(&d.event_type.len())
            && d.event_type.bytes().all(sources::is_event_type_byte),
        "event type {:?} is out of bounds",
        d.event_type
    );
    assert!(
        (sources::MIN_TIME..=sources::MAX_TIME).contains(&d.occurred_at),
        "occurred_at {} is not representable in RFC 3339",
        d.occurred_at
    );
}
