//! What every read route shares: the query-string extractor, paging and
//! cursors, time formats and resolving a student id.
//!
//! Money is a decimal string with two places; times are RFC 3339 UTC; lists
//! answer `{"items": [...], "next_cursor": ...}` and page with `limit`
//! (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and an opaque `cursor`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use chrono::{DateTime, NaiveDate, SecondsFormat};
use rusqlite::Connection;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
#[derive(Serialize)]
pub struct Listing<T> {
    pub items: Vec<T>,
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
