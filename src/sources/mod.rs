//! Parsing and validating deliveries, one module per provider.
//!
//! Pure functions from raw bytes to [`Delivery`]: no I/O, no clock, no database.
//! Each provider has one place ([`jodo::parse`], [`toolzz::parse`]) that turns a
//! payload version into the current [`crate::event::Event`] (the upcaster), so
//! a new payload version is one function, not edits across the projections.

pub mod jodo;
pub mod toolzz;

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::{Delivery, Source};
use crate::money::Money;

/// Why a delivery failed validation. `path` names the field, as a dotted path
/// from the body's root (`payload.payment.amount`); `message` says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub path: String,
    pub message: String,
}

impl ParseError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ParseError {
        ParseError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Nests an error from a sub-document under `prefix`.
    fn under(mut self, prefix: &str) -> ParseError {
        self.path = if self.path.is_empty() || self.path == "." {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// What a provider's body turned out to be.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // Ping is rare; boxing the common case buys nothing.
pub enum Parsed {
    Delivery(Delivery),
    /// Subscription tooling's liveness probe: answered 200, not logged.
    Ping,
}

/// Settings that parsing depends on.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    /// The zone Toolzz's zone-less `send_at` is read in.
    pub toolzz_zone: chrono_tz::Tz,
}

impl Default for ParseContext {
    fn default() -> Self {
        ParseContext {
            toolzz_zone: chrono_tz::America::Sao_Paulo,
        }
    }
}

/// Earliest provider time stored: 0000-01-01T00:00:00Z. Every stored time must
/// be shown as RFC 3339, whose years have exactly four digits.
pub const MIN_TIME: i64 = -62_167_219_200;
/// Latest provider time stored: 9999-12-31T23:59:59Z (see [`MIN_TIME`]).
pub const MAX_TIME: i64 = 253_402_300_799;

/// Longest event type (Jodo `event`) or slug (Toolzz `event.slug`) accepted.
/// Real ones are under 40 bytes; the type is stored in an indexed column and
/// written to every log line, so an unbounded one is a cost and a log flood.
pub const MAX_EVENT_TYPE_LEN: usize = 100;

/// Whether `b` may appear in an event type or slug: ASCII letters, digits,
/// `.`, `_` and `-`, the alphabet of every documented type. Nothing that
/// could forge a log line or an SQL `LIKE` pattern.
pub fn is_event_type_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Checks an event type or slug: non-empty, at most [`MAX_EVENT_TYPE_LEN`]
/// bytes, only [`is_event_type_byte`] characters. The message never repeats
/// the value (it may be huge or hostile).
pub(crate) fn check_event_type(path: &str, text: &str) -> Result<(), ParseError> {
    if text.is_empty() {
        return Err(ParseError::new(path, "must not be empty"));
    }
    if text.len() > MAX_EVENT_TYPE_LEN {
        return Err(ParseError::new(
            path,
            format!("is longer than {MAX_EVENT_TYPE_LEN} bytes"),
        ));
    }
    if !text.bytes().all(is_event_type_byte) {
        return Err(ParseError::new(
            path,
            "may hold only ASCII letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(())
}

/// Checks that a provider time (unix seconds UTC) is one RFC 3339 can show.
pub(crate) fn check_time(path: &str, secs: i64) -> Result<i64, ParseError> {
    if (MIN_TIME..=MAX_TIME).contains(&secs) {
        Ok(secs)
    } else {
        Err(ParseError::new(path, time_range_message(secs)))
    }
}

fn time_range_message(secs: i64) -> String {
    TimeError::OutOfRange(secs).to_string()
}

/// Why a provider's time or date text is refused; the message follows the
/// field's path in a [`ParseError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum TimeError {
    #[error("is not a {what} in the format {format}, exactly: {text:?}")]
    Shape {
        what: &'static str,
        format: &'static str,
        text: String,
    },
    #[error("is not a {what} in the format {format} ({reason}): {text:?}")]
    Invalid {
        what: &'static str,
        format: &'static str,
        reason: chrono::ParseError,
        text: String,
    },
    #[error("{text:?} does not exist in zone {zone}")]
    NotInZone { text: String, zone: chrono_tz::Tz },
    #[error("{0} is outside 0000-01-01T00:00:00Z..9999-12-31T23:59:59Z (unix seconds {MIN_TIME}..{MAX_TIME}), which RFC 3339 cannot show")]
    OutOfRange(i64),
}

/// A delivery body must be UTF-8 (RFC 8259 section 8.1). serde_json checks
/// the strings it decodes but skips over unknown fields unchecked, so the
/// whole body is checked first.
pub(crate) fn check_utf8(body: &[u8]) -> Result<(), ParseError> {
    std::str::from_utf8(body).map(|_| ()).map_err(|e| {
        ParseError::new(
            "",
            format!(
                "body is not valid JSON: not UTF-8 (RFC 8259) at byte {}",
                e.valid_up_to()
            ),
        )
    })
}

/// Checks that a kept-raw sub-document is a JSON object (`payload`, `data`),
/// whatever the event type: an unknown type is stored, so its envelope is
/// held to the documented shape too.
pub(crate) fn check_object(raw: &RawValue, path: &str) -> Result<(), ParseError> {
    if raw.get().starts_with('{') {
        Ok(())
    } else {
        Err(ParseError::new(path, "must be a JSON object"))
    }
}

/// Whether `text` has exactly the shape `shape`, where `d` stands for one
/// ASCII digit and every other byte for itself. chrono's `%m` and `%d`
/// accept one digit and its parser skips some spaces; the providers'
/// formats are documented as exact, so the shape is checked first.
pub(crate) fn has_shape(text: &str, shape: &str) -> bool {
    text.len() == shape.len()
        && text.bytes().zip(shape.bytes()).all(|(t, s)| match s {
            b'd' => t.is_ascii_digit(),
            s => t == s,
        })
}

/// The name of a type either provider documents, `None` for any other: the
/// ingest metrics label a delivery by its type only when it is one of
/// these, so a sender cannot grow the series.
pub fn known_type(name: &str) -> Option<&'static str> {
    jodo::JodoType::parse(name)
        .map(jodo::JodoType::as_str)
        .or_else(|| toolzz::ToolzzType::parse(name).map(toolzz::ToolzzType::as_str))
}

/// Parses a body from `source`.
pub fn parse(source: Source, body: &[u8], ctx: &ParseContext) -> Result<Parsed, ParseError> {
    match source {
        Source::Jodo => jodo::parse(body).map(Parsed::Delivery),
        Source::Toolzz => toolzz::parse(body, ctx),
    }
}

/// Deserializes `T` from JSON text, turning serde's error into a [`ParseError`]
/// whose path names the offending field.
pub(crate) fn from_json<'a, T: Deserialize<'a>>(text: &'a [u8]) -> Result<T, ParseError> {
    // Every envelope and sub-document is an object; serde would otherwise
    // also fill a struct from an array of its fields in order.
    if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
                Err(e) => ParseError::new("", format!("body is not valid JSON: {e}")),
                Ok(_) => ParseError::new("", "must be a JSON object"),
            },
        );
    }
    // The fast path: valid input needs no path tracking. Only a failure is
    // parsed again, tracking the path, to say where it failed.
    if let Ok(value) = serde_json::from_slice(text) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // serde reports a missing field at its parent: move it onto the field.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            let parent = if path == "." { String::new() } else { path };
            let path = if parent.is_empty() {
                field.to_string()
            } else {
                format!("{parent}.{field}")
            };
            return ParseError::new(path, "is missing");
        }
        // Drop serde_json's " at line 1 column 42": the path says where.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        if inner.is_syntax() || inner.is_eof() {
            return ParseError::new("", format!("body is not valid JSON: {message}"));
        }
        ParseError::new(if path == "." { String::new() } else { path }, message)
    })?;
    de.end()
        .map_err(|e| ParseError::new("", format!("body is not valid JSON: {e}")))?;
    Ok(value)
}

/// Deserializes a sub-document (kept raw so numbers keep their text).
pub(crate) fn from_raw<T: DeserializeOwned>(raw: &RawValue, prefix: &str) -> Result<T, ParseError> {
    from_json(raw.get().as_bytes()).map_err(|e| e.under(prefix))
}

/// An identifier sent as a string or an integer, stored as a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-empty string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                if v.trim().is_empty() {
                    return Err(E::custom("must not be empty"));
                }
                Ok(Id(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Money sent as a JSON number (`2000.5`) or a decimal string (`"2000.50"`),
/// read from its text, never through `f64`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonMoney(pub Money);

impl<'de> Deserialize<'de> for JsonMoney {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JsonMoney, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(d)?;
        let text = raw.get();
        let text = if let Some(s) = text.strip_prefix('"') {
            s.strip_suffix('"')
                .ok_or_else(|| de::Error::custom("is not a decimal amount"))?
        } else {
            text
        };
        Money::parse(text)
            .map(JsonMoney)
            .map_err(|e| de::Error::custom(format!("amount {e}: {text}")))
    }
}

/// A number kept as its JSON text (for values registrar only displays).
#[derive(Debug, Clone)]
pub(crate) struct NumberText(pub String);

impl<'de> Deserialize<'de> for NumberText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NumberText, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(d)?;
        let text = raw.get();
        match text.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(s) => Ok(NumberText(s.to_string())),
            None if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                Ok(NumberText(text.to_string()))
            }
            None => Err(de::Error::custom("expected a number")),
        }
    }
}

/// 1/0 or true/false.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Flag, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("1, 0, true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Flag, E> {
                match v {
                    0 => Ok(Flag(false)),
                    1 => Ok(Flag(true)),
                    _ => Err(E::custom(format!("expected 1 or 0, got {v}"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Flag, E> {
                self.visit_u64(u64::try_from(v).map_err(|_| E::custom("expected 1 or 0"))?)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                match v {
                    "1" | "true" => Ok(Flag(true)),
                    "0" | "false" => Ok(Flag(false)),
                    _ => Err(E::custom(format!("expected 1 or 0, got {v:?}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// An RFC 3339 time (`2022-01-29T10:05:45Z`, any offset), as unix seconds
/// UTC, within [`MIN_TIME`]..=[`MAX_TIME`] (an offset can move a four-digit
/// year out of range in UTC).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rfc3339(pub i64);

impl<'de> Deserialize<'de> for Rfc3339 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rfc3339, D::Error> {
        let s = String::deserialize(d)?;
        let secs = DateTime::parse_from_rfc3339(&s)
            .map(|t| t.timestamp())
            .map_err(|e| de::Error::custom(format!("is not an RFC 3339 time ({e}): {s:?}")))?;
        if !(MIN_TIME..=MAX_TIME).contains(&secs) {
            return Err(de::Error::custom(time_range_message(secs)));
        }
        Ok(Rfc3339(secs))
    }
}

/// A zone-less local time format: chrono's pattern, and the exact shape
/// ([`has_shape`]) and documented name of its text.
#[derive(Debug, Clone, Copy)]
pub struct TimeFormat {
    pub chrono: &'static str,
    pub shape: &'static str,
    pub name: &'static str,
}

/// Reads a zone-less local time in `zone`, as unix seconds UTC within
/// [`MIN_TIME`]..=[`MAX_TIME`]. The text must have exactly the format's shape.
/// A time that falls in a daylight-saving gap is an error; an ambiguous one
/// takes the earlier instant.
pub(crate) fn local_time(
    text: &str,
    format: TimeFormat,
    zone: chrono_tz::Tz,
) -> Result<i64, TimeError> {
    let naive = check_local_time(text, format)?;
    let secs = zone
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
        .ok_or_else(|| TimeError::NotInZone {
            text: text.to_string(),
            zone,
        })?;
    if !(MIN_TIME..=MAX_TIME).contains(&secs) {
        return Err(TimeError::OutOfRange(secs));
    }
    Ok(secs)
}

/// Checks a zone-less local time: exactly the format's shape, and a real
/// date and time.
pub(crate) fn check_local_time(text: &str, format: TimeFormat) -> Result<NaiveDateTime, TimeError> {
    if !has_shape(text, format.shape) {
        return Err(TimeError::Shape {
            what: "time",
            format: format.name,
            text: text.to_string(),
        });
    }
    NaiveDateTime::parse_from_str(text, format.chrono).map_err(|reason| TimeError::Invalid {
        what: "time",
        format: format.name,
        reason,
        text: text.to_string(),
    })
}

/// Checks a `yyyy-MM-dd` date, exactly.
pub(crate) fn check_date(text: &str) -> Result<(), TimeError> {
    const FORMAT: &str = "yyyy-MM-dd";
    if !has_shape(text, "dddd-dd-dd") {
        return Err(TimeError::Shape {
            what: "date",
            format: FORMAT,
            text: text.to_string(),
        });
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|_| ())
        .map_err(|reason| TimeError::Invalid {
            what: "date",
            format: FORMAT,
            reason,
            text: text.to_string(),
        })
}

/// Treats an empty or blank string as absent.
pub(crate) fn non_blank(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_either_provider_knows_is_a_known_type_and_any_other_is_not() {
        let jodo = jodo::JodoType::ALL.iter().map(|t| t.as_str());
        let toolzz = toolzz::ToolzzType::ALL.iter().map(|t| t.as_str());
        for name in jodo.chain(toolzz) {
            assert_eq!(known_type(name), Some(name));
        }
        for other in ["flex.instalment.debited", "members", "", "MEMBERS.CREATED"] {
            assert_eq!(known_type(other), None, "{other:?}");
        }
    }
}
