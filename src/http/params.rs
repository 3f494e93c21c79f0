//! What every read route shares: the query-string extractor, paging and
//! cursors, time formats and resolving a student id.
//!
//! Money is a decimal string with two places; times are RFC 3339 UTC; lists
//! answer `{"items": [...], "next_cursor": ...}` and page with `limit`
//! (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and an opaque `cursor`.
//!
//! The OpenAPI document's schemas for these parameters are here too, beside
//! what they describe: [`Limit`], [`Cursor`], the time formats ([`Instant`],
//! [`Bound`]), [`Seq`], and [`Closed`], which reads a closed set's values
//! from the type the server parses it into. A query struct names them with
//! `#[param(inline, value_type = ...)]`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use chrono::{DateTime, NaiveDate, SecondsFormat};
use rusqlite::Connection;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::openapi::schema::Schema;
use utoipa::ToSchema;

use super::ApiError;
use crate::projection::query::{self, Unresolved};

/// Items per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
/// Items per page at most: bounds the work and memory of one request.
pub const MAX_LIMIT: u32 = 1000;

/// A query string parsed into `T`, or a 400 in the API's error shape.
/// Unknown parameters are rejected (a typo must not silently widen a query).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(Params)
    }
}

/// A query string checked ([`check_query`]) and parsed into `T`, or a 400
/// naming the parameter at fault (`status: unknown variant ...`).
pub fn parse_query<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    check_query(q)?;
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::bad_request(format!("query string: {}", e.inner()))
        } else {
            ApiError::bad_request(format!("query string: {path}: {}", e.inner()))
        }
    })
}

/// For the fuzz targets in `fuzz/` (not an API): decodes `cursor` as every
/// list route would, and checks that every key it decodes to is encoded
/// back to a cursor that decodes to the same key.
#[doc(hidden)]
pub fn fuzz_cursor(cursor: &str) {
    let Ok(page) = Page::new(None, Some(cursor)) else {
        return;
    };
    let again = |v: &Value| {
        let p = Page::new(None, Some(&encode_cursor(v))).expect("an issued cursor decodes");
        assert_eq!(p.cursor.as_ref(), Some(v), "a cursor round-trips");
        p
    };
    if let Ok(Some(k)) = page.text_key() {
        assert_eq!(again(&Value::from(k.clone())).text_key().unwrap(), Some(k));
    }
    if let Ok(Some((a, b))) = page.int_text_key() {
        let v = Value::from(vec![Value::from(a), Value::from(b.clone())]);
        assert_eq!(again(&v).int_text_key().unwrap(), Some((a, b)));
    }
    if let Ok(Some((a, b))) = page.int_int_key() {
        let v = Value::from(vec![Value::from(a), Value::from(b)]);
        assert_eq!(again(&v).int_int_key().unwrap(), Some((a, b)));
    }
}

/// The query of a route that takes no parameters: any parameter is a 400,
/// as on every other route (a typo must not pass for a filter).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Checks every name and value of a query string once percent-decoded (`+`
/// is a space): a malformed escape, text that is not UTF-8 (which
/// serde_urlencoded would turn into U+FFFD and match on) or a control
/// character (NUL, newline, ...: no filter value needs one, and a NUL would
/// pass into SQL text) is a 400.
pub fn check_query(query: &str) -> Result<(), ApiError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        for part in [name, value] {
            let bytes = percent_decode(part, true).ok_or_else(|| {
                ApiError::bad_request("query string: a malformed percent-escape (expected %XX)")
            })?;
            let text = String::from_utf8(bytes).map_err(|_| {
                ApiError::bad_request("query string: a parameter is not UTF-8 once percent-decoded")
            })?;
            if text.chars().any(char::is_control) {
                return Err(ApiError::bad_request(
                    "query string: a parameter holds a control character (NUL, newline, ...)",
                ));
            }
        }
    }
    Ok(())
}

/// Percent-decoding of a path segment, or with `form` of one query name or
/// value (`application/x-www-form-urlencoded`: `+` is a space). None for a
/// `%` not followed by two hex digits.
#[doc(hidden)]
pub fn percent_decode(text: &str, form: bool) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// A seq from a query or cursor: SQLite stores seqs as `i64`, so a larger
/// number is a 400, never a wrap to a negative seq (which would page from 1).
pub(crate) fn seq_param(name: &str, seq: u64) -> Result<i64, ApiError> {
    i64::try_from(seq)
        .map_err(|_| ApiError::bad_request(format!("{name} must be at most {}", i64::MAX)))
}

/// A seq from a path segment (read as text, so a bad one is a 400 in the
/// error shape, not the framework's): a number within [`seq_param`]'s bound.
pub(crate) fn seq_path(text: &str) -> Result<u64, ApiError> {
    let seq: u64 = text
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{text:?} is not a seq")))?;
    seq_param("seq", seq)?;
    Ok(seq)
}

/// `limit` and `cursor`, validated.
pub(crate) struct Page {
    pub limit: u32,
    pub cursor: Option<Value>,
}

impl Page {
    pub fn new(limit: Option<u32>, cursor: Option<&str>) -> Result<Page, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let cursor = match cursor {
            None | Some("") => None,
            Some(c) => Some(decode_cursor(c)?),
        };
        Ok(Page { limit, cursor })
    }

    /// The cursor as a [text] key.
    pub fn text_key(&self) -> Result<Option<String>, ApiError> {
        match &self.cursor {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad_cursor()),
        }
    }

    /// The cursor as an [integer, text] key.
    pub fn int_text_key(&self) -> Result<Option<(i64, String)>, ApiError> {
        match &self.cursor {
            None => Ok(None),
            Some(v) => match v.as_array().map(|a| a.as_slice()) {
                Some([Value::Number(n), Value::String(s)]) => {
                    Ok(Some((n.as_i64().ok_or_else(bad_cursor)?, s.clone())))
                }
                _ => Err(bad_cursor()),
            },
        }
    }

    /// The cursor as an [integer, integer] key.
    pub fn int_int_key(&self) -> Result<Option<(i64, i64)>, ApiError> {
        match &self.cursor {
            None => Ok(None),
            Some(v) => match v.as_array().map(|a| a.as_slice()) {
                Some([Value::Number(a), Value::Number(b)]) => Ok(Some((
                    a.as_i64().ok_or_else(bad_cursor)?,
                    b.as_i64().ok_or_else(bad_cursor)?,
                ))),
                _ => Err(bad_cursor()),
            },
        }
    }
}

pub(crate) fn bad_cursor() -> ApiError {
    ApiError::bad_request("cursor is not one this API issued")
}

fn encode_cursor(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn decode_cursor(c: &str) -> Result<Value, ApiError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad_cursor())?;
    serde_json::from_slice(&bytes).map_err(|_| bad_cursor())
}

/// A page of items.
#[derive(Serialize, ToSchema)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// The `cursor` of the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Trims `rows` (fetched with limit + 1) to the page, and the cursor to the next.
pub(crate) fn paginate<R, T>(
    mut rows: Vec<R>,
    limit: u32,
    key: impl Fn(&R) -> Value,
    view: impl Fn(R) -> Result<T, ApiError>,
) -> Result<Listing<T>, ApiError> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(&key(r)))
    } else {
        None
    };
    let items = rows.into_iter().map(view).collect::<Result<Vec<_>, _>>()?;
    Ok(Listing { items, next_cursor })
}

/// RFC 3339 UTC, whole seconds.
pub fn rfc3339(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

/// RFC 3339 UTC, microseconds.
pub fn rfc3339_micros(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_else(|| micros.to_string())
}

/// An instant parameter: RFC 3339 (any offset).
pub(crate) fn parse_instant(name: &str, text: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be an RFC 3339 time such as 2024-04-01T00:00:00Z"
            ))
        })
}

/// A range bound: RFC 3339, or a date `yyyy-mm-dd` meaning the whole day
/// (its start for `from`, its end for `to`).
pub(crate) fn parse_bound(name: &str, text: &str, end_of_day: bool) -> Result<i64, ApiError> {
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp();
        return Ok(if end_of_day { start + 86_399 } else { start });
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be an RFC 3339 time or a date yyyy-mm-dd"
            ))
        })
}

/// Resolves a student id path parameter, or 404 / 409.
pub(crate) fn resolve(conn: &Connection, id: &str) -> Result<String, ApiError> {
    query::resolve_student(conn, id)?
        .one(id)
        .map_err(|e| match e {
            Unresolved::NotFound(_) => ApiError::NotFound(e.to_string()),
            Unresolved::Ambiguous { .. } => ApiError::Conflict(e.to_string()),
        })
}

/// A schema written as JSON: the few the types cannot give (a format that
/// is one of two, a bound from a constant).
pub fn schema(value: Value) -> Schema {
    serde_json::from_value(value).expect("a schema written in this module is valid")
}

/// A free-text filter: any text without a control character, which
/// [`check_query`] refuses (Unicode's Cc: U+0000-U+001F, U+007F-U+009F).
pub fn text_schema() -> Schema {
    schema(json!({ "type": "string", "pattern": r"^[^\x00-\x1f\x7f-\x9f]*$" }))
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn limit_schema() -> Schema {
    schema(json!({
        "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT,
        "description": "Items per page."
    }))
}

/// `cursor`: what the server issued. Empty means the first page.
pub fn cursor_schema() -> Schema {
    schema(json!({
        "type": "string", "pattern": "^[A-Za-z0-9_-]*$",
        "description": "The next_cursor of the previous page (base64url, opaque); empty or absent for the first page. A cursor this API did not issue is refused with 400."
    }))
}

/// A seq as the log numbers them, or a count of events: 0 to `i64::MAX`
/// (SQLite stores them as `i64`, see [`seq_param`]).
pub fn seq_schema() -> Schema {
    schema(json!({ "type": "integer", "minimum": 0, "maximum": i64::MAX }))
}

/// An instant ([`parse_instant`]): RFC 3339, any offset.
pub fn instant_schema() -> Schema {
    schema(json!({ "type": "string", "format": "date-time" }))
}

/// A range bound ([`parse_bound`], and the reports' times): RFC 3339, or a
/// date `yyyy-mm-dd` meaning that whole day.
pub fn bound_schema() -> Schema {
    schema(json!({
        "anyOf": [
            { "type": "string", "format": "date" },
            { "type": "string", "format": "date-time" }
        ]
    }))
}

/// The schema of a closed set: a string, one of the names `T`'s
/// `Deserialize` accepts. Read from `T` itself ([`variants`]), so the
/// document cannot list a value the server refuses or miss one it takes.
pub fn enum_schema<T: DeserializeOwned>() -> Schema {
    schema(json!({ "type": "string", "enum": variants::<T>() }))
}

/// A parameter's schema as a type, for `#[param(inline, value_type = ...)]`
/// (which, unlike `schema_with`, keeps the field's doc comment and
/// whether it is required). A closed set's is
/// `schema_type!(Statuses => enum_schema::<Status>)`.
macro_rules! schema_type {
    ($(#[$meta:meta])* $name:ident => $schema:path) => {
        $(#[$meta])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::RefOr::T($schema())
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

pub(crate) use schema_type;

schema_type!(
    /// [`text_schema`].
    Text => text_schema
);
schema_type!(
    /// [`limit_schema`].
    Limit => limit_schema
);
schema_type!(
    /// [`cursor_schema`].
    Cursor => cursor_schema
);
schema_type!(
    /// [`seq_schema`].
    Seq => seq_schema
);
schema_type!(
    /// [`instant_schema`].
    Instant => instant_schema
);
schema_type!(
    /// [`bound_schema`].
    Bound => bound_schema
);

/// The names of a unit enum's variants as serde knows them (after
/// `rename_all`): a deserializer that records what `T`'s derived
/// `Deserialize` asks it for, then stops. Empty for a type that is not an
/// enum.
pub fn variants<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    use std::cell::Cell;

    struct Probe<'a>(&'a Cell<&'static [&'static str]>);

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not an enum"))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(variants);
            Err(de::Error::custom("probed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map struct identifier ignored_any
        }
    }

    let found = Cell::new(&[][..]);
    let _ = T::deserialize(Probe(&found));
    found.get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;
    use crate::projection::entities::{EnrollmentStatus, PaymentStatus, StudentStatus};

    #[test]
    fn the_documented_values_of_a_closed_set_are_those_its_type_parses() {
        assert_eq!(variants::<StudentStatus>(), ["active", "dropped"]);
        assert_eq!(variants::<Source>(), ["jodo", "toolzz"]);
        // Every one parses back, and a value outside them does not.
        for v in variants::<PaymentStatus>() {
            let parsed: PaymentStatus = serde_json::from_value(Value::from(*v)).unwrap();
            assert_eq!(parsed.as_str(), *v);
        }
        for v in variants::<EnrollmentStatus>() {
            let parsed: EnrollmentStatus = serde_json::from_value(Value::from(*v)).unwrap();
            assert_eq!(parsed.as_str(), *v);
        }
        assert!(serde_json::from_value::<PaymentStatus>(Value::from("lost")).is_err());
        assert!(variants::<String>().is_empty());
    }

    #[test]
    fn every_schema_written_as_json_here_is_one_utoipa_reads() {
        for s in [
            text_schema(),
            limit_schema(),
            cursor_schema(),
            seq_schema(),
            instant_schema(),
            bound_schema(),
            enum_schema::<StudentStatus>(),
        ] {
            let back = serde_json::to_value(&s).unwrap();
            assert!(back.is_object(), "{back}");
        }
        let limit = serde_json::to_value(limit_schema()).unwrap();
        assert_eq!(limit["maximum"], MAX_LIMIT);
        // Every character check_query refuses, and none it takes.
        let text = serde_json::to_value(text_schema()).unwrap();
        assert_eq!(text["pattern"], "^[^\\x00-\\x1f\\x7f-\\x9f]*$");
        for c in ['\0', '\n', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}'] {
            assert!(
                c.is_control() && check_query(&format!("q={c}")).is_err(),
                "{c:?}"
            );
        }
        for c in [' ', '~', '\u{a0}', 'é'] {
            assert!(
                !c.is_control() && check_query(&format!("q={c}")).is_ok(),
                "{c:?}"
            );
        }
        let bound = serde_json::to_value(bound_schema()).unwrap();
        assert_eq!(bound["anyOf"][0]["format"], "date");
    }
}
