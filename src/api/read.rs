//! The read API over the projections and the log (`/v1`).
//!
//! Money is a decimal string with two places; times are RFC 3339 UTC; lists
//! answer `{"items": [...], "next_cursor": ...}` and page with `limit`
//! (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and an opaque `cursor`.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::Json;
use base64::Engine;
use chrono::{DateTime, NaiveDate, SecondsFormat};
use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::event::{FeeDetail, PaymentRecord, StudentProfile};
use crate::log::{self, chain, StoredEvent, EVENT_COLUMNS};
use crate::money::Total;
use crate::projection::entities::{EnrollmentState, LearnerState, PaymentState, StudentState};
use crate::projection::query::{self, Lookup};
use crate::projection::ProjectionError;

/// Items per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
/// Items per page at most: bounds the work and memory of one request.
pub const MAX_LIMIT: u32 = 1000;

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        ApiError::Internal(format!("projection: {e}"))
    }
}

/// A query string parsed into `T`, or a 400 in the API's error shape.
/// Unknown parameters are rejected (a typo must not silently widen a query).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        check_query(q)?;
        serde_urlencoded::from_str(q)
            .map(Params)
            .map_err(|e| ApiError::bad_request(format!("query string: {e}")))
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
/// `%` not followed by two hex digits. (Public, hidden, for the fuzz targets
/// in `fuzz/`; ingest decodes the Toolzz token with it.)
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
fn seq_param(name: &str, seq: u64) -> Result<i64, ApiError> {
    i64::try_from(seq)
        .map_err(|_| ApiError::bad_request(format!("{name} must be at most {}", i64::MAX)))
}

/// `limit` and `cursor`, validated.
struct Page {
    limit: u32,
    cursor: Option<Value>,
}

impl Page {
    fn new(limit: Option<u32>, cursor: Option<&str>) -> Result<Page, ApiError> {
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
    fn text_key(&self) -> Result<Option<String>, ApiError> {
        match &self.cursor {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad_cursor()),
        }
    }

    /// The cursor as an [integer, text] key.
    fn int_text_key(&self) -> Result<Option<(i64, String)>, ApiError> {
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
    fn int_int_key(&self) -> Result<Option<(i64, i64)>, ApiError> {
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

fn bad_cursor() -> ApiError {
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
fn paginate<R, T>(
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
fn parse_instant(name: &str, text: &str) -> Result<i64, ApiError> {
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
fn parse_bound(name: &str, text: &str, end_of_day: bool) -> Result<i64, ApiError> {
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

fn one_of(name: &str, value: &Option<String>, allowed: &[&str]) -> Result<(), ApiError> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::bad_request(format!(
            "{name} must be one of {}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

fn parse_doc<T: DeserializeOwned>(doc: &str) -> Result<T, ApiError> {
    serde_json::from_str(doc)
        .map_err(|e| ApiError::Internal(format!("stored projection is not valid: {e}")))
}

// ----- students -----

/// A student as the API shows it: the latest profile, then the status.
#[derive(Serialize)]
pub struct StudentView {
    #[serde(flatten)]
    pub profile: StudentProfile,
    pub status: &'static str,
    pub status_since: String,
    pub registered_at: Option<String>,
}

impl From<StudentState> for StudentView {
    fn from(s: StudentState) -> Self {
        StudentView {
            profile: s.profile,
            status: s.status.as_str(),
            status_since: rfc3339(s.status_since),
            registered_at: s.registered_at.map(rfc3339),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentsQuery {
    status: Option<String>,
    grade: Option<String>,
    collector_code: Option<String>,
    q: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/students`.
pub async fn list_students(
    State(app): State<AppState>,
    Params(q): Params<StudentsQuery>,
) -> Result<Json<Listing<StudentView>>, ApiError> {
    one_of("status", &q.status, &["active", "dropped"])?;
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let after = page.text_key()?;
    app.projections(move |conn| {
        let mut sql = String::from("SELECT jodo_student_id, doc FROM students WHERE 1 = 1");
        let mut args: Vec<Sql> = Vec::new();
        if let Some(s) = q.status {
            sql.push_str(" AND status = ?");
            args.push(Sql::Text(s));
        }
        if let Some(g) = q.grade {
            sql.push_str(" AND (grade_code = ? OR json_extract(doc, '$.profile.grade.name') = ?)");
            args.push(Sql::Text(g.clone()));
            args.push(Sql::Text(g));
        }
        if let Some(c) = q.collector_code {
            sql.push_str(" AND collector_code = ?");
            args.push(Sql::Text(c));
        }
        if let Some(text) = q.q.filter(|t| !t.trim().is_empty()) {
            sql.push_str(" AND search LIKE ? ESCAPE '\\'");
            args.push(Sql::Text(format!(
                "%{}%",
                like_escape(&text.trim().to_lowercase())
            )));
        }
        let rows = keyed_page(conn, sql, args, "jodo_student_id", after, page.limit)?;
        paginate(
            rows,
            page.limit,
            |(id, _)| Value::from(id.clone()),
            |(_, doc)| Ok(StudentView::from(parse_doc::<StudentState>(&doc)?)),
        )
    })
    .await
    .map(Json)
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Runs `sql` (selecting `key, doc` with its filters in `args`) for the page
/// of rows after key `after`, in key order, fetching one more than `limit` so
/// [`paginate`] can tell whether another page follows.
fn keyed_page(
    conn: &Connection,
    mut sql: String,
    mut args: Vec<Sql>,
    key: &str,
    after: Option<String>,
    limit: u32,
) -> Result<Vec<(String, String)>, ApiError> {
    if let Some(a) = after {
        sql.push_str(&format!(" AND {key} > ?"));
        args.push(Sql::Text(a));
    }
    sql.push_str(&format!(" ORDER BY {key} LIMIT ?"));
    args.push(Sql::Integer(i64::from(limit) + 1));
    query_rows(conn, &sql, args, |r| Ok((r.get(0)?, r.get(1)?)))
}

fn query_rows<T>(
    conn: &Connection,
    sql: &str,
    args: Vec<Sql>,
    f: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
) -> Result<Vec<T>, ApiError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params_from_iter(args), f)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Resolves a student id path parameter, or 404 / 409.
fn resolve(conn: &Connection, id: &str) -> Result<String, ApiError> {
    match query::resolve_student(conn, id)? {
        Lookup::Found(j) => Ok(j),
        Lookup::NotFound => Err(ApiError::NotFound(format!("no student has id {id:?}"))),
        Lookup::Ambiguous(ids) => Err(ApiError::Conflict(format!(
            "{id:?} is the identifier of several students ({}); use the jodo_student_id",
            ids.join(", ")
        ))),
    }
}

fn load_student(conn: &Connection, jodo_student_id: &str) -> Result<StudentState, ApiError> {
    let doc: String = conn
        .prepare_cached("SELECT doc FROM students WHERE jodo_student_id = ?1")?
        .query_row([jodo_student_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| ApiError::NotFound(format!("no student has id {jodo_student_id:?}")))?;
    parse_doc(&doc)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsOfQuery {
    as_of: Option<String>,
}

/// `GET /v1/students/{id}[?as_of=]`.
pub async fn get_student(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Params(q): Params<AsOfQuery>,
) -> Result<Json<StudentView>, ApiError> {
    let as_of = q
        .as_of
        .as_deref()
        .map(|t| parse_instant("as_of", t))
        .transpose()?;
    app.projections(move |conn| {
        let jid = resolve(conn, &id)?;
        let state = match as_of {
            None => load_student(conn, &jid)?,
            Some(at) => query::student_as_of(conn, &jid, at)?.ok_or_else(|| {
                ApiError::NotFound(format!(
                    "student {jid:?} had no registration or status event by {}",
                    rfc3339(at)
                ))
            })?,
        };
        Ok(Json(StudentView::from(state)))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct HistoryItem {
    pub event: String,
    pub at: String,
    pub seq: u64,
    pub event_id: String,
}

/// One page of a student's history (?1) after the cursor (?2, ?3), ?4 rows;
/// answered from the covering `student_history_order` index.
const STUDENT_HISTORY_PAGE: &str = "SELECT kind, at, seq, event_id FROM student_history
     WHERE entity = ?1 AND (at, seq) > (?2, ?3) ORDER BY at, seq LIMIT ?4";

/// `GET /v1/students/{id}/history`: registered, dropped and activated events
/// in provider-time order.
pub async fn student_history(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Params(q): Params<PageQuery>,
) -> Result<Json<Listing<HistoryItem>>, ApiError> {
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let after = page.int_int_key()?;
    app.projections(move |conn| {
        let jid = resolve(conn, &id)?;
        let (a_at, a_seq) = after.unwrap_or((i64::MIN, i64::MIN));
        let rows = query_rows(
            conn,
            STUDENT_HISTORY_PAGE,
            vec![
                Sql::Text(jid),
                Sql::Integer(a_at),
                Sql::Integer(a_seq),
                Sql::Integer(i64::from(page.limit) + 1),
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
        )?;
        paginate(
            rows,
            page.limit,
            |(_, at, seq, _)| json!([at, seq]),
            |(kind, at, seq, event_id)| {
                Ok(HistoryItem {
                    event: kind,
                    at: rfc3339(at),
                    seq: seq as u64,
                    event_id,
                })
            },
        )
    })
    .await
    .map(Json)
}

// ----- payments -----

#[derive(Serialize)]
pub struct DetailView {
    pub fee_component: String,
    pub amount: String,
}

fn details(d: &[FeeDetail]) -> Vec<DetailView> {
    d.iter()
        .map(|d| DetailView {
            fee_component: d.fee_component.clone(),
            amount: d.amount.to_string(),
        })
        .collect()
}

/// A payment as the API shows it.
#[derive(Serialize)]
pub struct PaymentView {
    pub payment_id: String,
    pub amount: String,
    pub status: &'static str,
    pub mode: String,
    pub transaction_id: Option<String>,
    pub settlement_utr: Option<String>,
    pub notes: Option<String>,
    pub paid_at: String,
    pub details: Vec<DetailView>,
    /// The payment's own jodo_student_id, else that of the student whose
    /// identifier it names.
    pub jodo_student_id: Option<String>,
    pub student_identifier: Option<String>,
    pub collector_code: Option<String>,
    pub cancelled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revisions: Option<Vec<RevisionView>>,
}

impl PaymentView {
    fn new(s: PaymentState, linked: Option<String>) -> PaymentView {
        let r = s.record;
        PaymentView {
            payment_id: r.payment_id,
            amount: r.amount.to_string(),
            status: s.status.as_str(),
            mode: r.mode,
            transaction_id: r.transaction_id,
            settlement_utr: r.settlement_utr,
            notes: r.notes,
            paid_at: rfc3339(r.paid_at),
            details: details(&r.details),
            jodo_student_id: r.jodo_student_id.or(linked),
            student_identifier: r.student_identifier,
            collector_code: r.collector_code,
            cancelled_at: s.cancelled_at.map(rfc3339),
            revisions: None,
        }
    }
}

/// One revision of a payment, with the event that made it.
#[derive(Serialize)]
pub struct RevisionView {
    pub seq: u64,
    pub event: String,
    pub at: String,
    pub event_id: String,
    pub amount: String,
    pub mode: String,
    pub transaction_id: Option<String>,
    pub settlement_utr: Option<String>,
    pub notes: Option<String>,
    pub paid_at: String,
    pub details: Vec<DetailView>,
}

/// The jodo_student_id a payment row links to (SQL over `payments p`).
const LINKED: &str = "COALESCE(p.jodo_student_id, (SELECT s.jodo_student_id FROM students s
                      WHERE s.identifier = p.student_identifier ORDER BY s.jodo_student_id LIMIT 1))";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsQuery {
    from: Option<String>,
    to: Option<String>,
    status: Option<String>,
    mode: Option<String>,
    collector_code: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/payments`: ordered by paid_at, then payment id. `from` and `to`
/// bound paid_at, both inclusive; a date means the whole day.
pub async fn list_payments(
    State(app): State<AppState>,
    Params(q): Params<PaymentsQuery>,
) -> Result<Json<Listing<PaymentView>>, ApiError> {
    one_of("status", &q.status, &["recorded", "cancelled"])?;
    let from = q
        .from
        .as_deref()
        .map(|t| parse_bound("from", t, false))
        .transpose()?;
    let to =
        q.to.as_deref()
            .map(|t| parse_bound("to", t, true))
            .transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(ApiError::bad_request("from must not be after to"));
        }
    }
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let after = page.int_text_key()?;
    app.projections(move |conn| {
            let mut sql = format!("SELECT p.paid_at, p.payment_id, p.doc, {LINKED} FROM payments p WHERE 1 = 1");
            let mut args: Vec<Sql> = Vec::new();
            if let Some(f) = from {
                sql.push_str(" AND p.paid_at >= ?");
                args.push(Sql::Integer(f));
            }
            if let Some(t) = to {
                sql.push_str(" AND p.paid_at <= ?");
                args.push(Sql::Integer(t));
            }
            if let Some(s) = q.status {
                sql.push_str(" AND p.status = ?");
                args.push(Sql::Text(s));
            }
            if let Some(m) = q.mode {
                sql.push_str(" AND p.mode = ?");
                args.push(Sql::Text(m));
            }
            if let Some(c) = q.collector_code {
                // The payment's own collector code, else its student's. Each
                // EXISTS is one indexed lookup.
                sql.push_str(
                    " AND (p.collector_code = ? OR (p.collector_code IS NULL AND (
                       EXISTS (SELECT 1 FROM students s WHERE s.jodo_student_id = p.jodo_student_id
                               AND s.collector_code = ?)
                       OR (p.jodo_student_id IS NULL AND EXISTS (SELECT 1 FROM students s
                               WHERE s.identifier = p.student_identifier AND s.collector_code = ?)))))",
                );
                args.push(Sql::Text(c.clone()));
                args.push(Sql::Text(c.clone()));
                args.push(Sql::Text(c));
            }
            if let Some((at, id)) = after {
                sql.push_str(" AND (p.paid_at, p.payment_id) > (?, ?)");
                args.push(Sql::Integer(at));
                args.push(Sql::Text(id));
            }
            sql.push_str(" ORDER BY p.paid_at, p.payment_id LIMIT ?");
            args.push(Sql::Integer(i64::from(page.limit) + 1));
            let rows = query_rows(conn, &sql, args, |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Option<String>>(3)?))
            })?;
            paginate(rows, page.limit, |(at, id, _, _)| json!([at, id]), |(_, _, doc, linked)| {
                Ok(PaymentView::new(parse_doc(&doc)?, linked))
            })
        })
        .await
        .map(Json)
}

/// `GET /v1/payments/{payment_id}`, with every revision.
pub async fn get_payment(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<PaymentView>, ApiError> {
    app.projections(move |conn| {
            let row: Option<(String, Option<String>)> = conn
                .prepare_cached(&format!("SELECT p.doc, {LINKED} FROM payments p WHERE p.payment_id = ?1"))?
                .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (doc, linked) = row.ok_or_else(|| ApiError::NotFound(format!("no payment has id {id:?}")))?;
            let mut view = PaymentView::new(parse_doc(&doc)?, linked);
            let revisions = query_rows(
                conn,
                "SELECT seq, kind, at, event_id, doc FROM payment_revisions WHERE entity = ?1 ORDER BY at, seq",
                vec![Sql::Text(id)],
                |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?, r.get::<_, String>(4)?))
                },
            )?;
            let revisions = revisions
                .into_iter()
                .map(|(seq, kind, at, event_id, doc)| {
                    let r: PaymentRecord = parse_doc(&doc)?;
                    Ok(RevisionView {
                        seq: seq as u64,
                        event: kind,
                        at: rfc3339(at),
                        event_id,
                        amount: r.amount.to_string(),
                        mode: r.mode,
                        transaction_id: r.transaction_id,
                        settlement_utr: r.settlement_utr,
                        notes: r.notes,
                        paid_at: rfc3339(r.paid_at),
                        details: details(&r.details),
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            // Read-back invariant: the current row is the fold of its revisions.
            if revisions.is_empty() {
                return Err(ApiError::Internal(format!("payment {} has no revisions", view.payment_id)));
            }
            view.revisions = Some(revisions);
            Ok(Json(view))
        })
        .await
}

/// A student's payments, with the sum of those recorded (not cancelled).
#[derive(Serialize)]
pub struct StudentPayments {
    pub items: Vec<PaymentView>,
    pub next_cursor: Option<String>,
    pub total_recorded: String,
}

/// A student's payments: linked by jodo_student_id (?1), or by identifier
/// (?2) when the payment has none. Two ordered range scans of the
/// `payments_student`/`payments_identifier` indexes, merged: no sort. (An OR
/// across the two columns makes SQLite scan every payment.)
macro_rules! linked_payments {
    () => {
        "WITH linked AS (
            SELECT paid_at, payment_id, doc, status, amount_minor FROM payments
             WHERE jodo_student_id = ?1
            UNION ALL
            SELECT paid_at, payment_id, doc, status, amount_minor FROM payments
             WHERE jodo_student_id IS NULL AND student_identifier = ?2)"
    };
}

/// One page of a student's payments after the cursor (?3, ?4), ?5 rows.
const STUDENT_PAYMENTS_PAGE: &str = concat!(
    linked_payments!(),
    " SELECT paid_at, payment_id, doc, status, amount_minor FROM linked
     WHERE (paid_at, payment_id) > (?3, ?4) ORDER BY paid_at, payment_id LIMIT ?5"
);

/// The sum of a student's recorded payments, in two halves: the amounts'
/// high bits (above 2^32) and low bits, each summed in SQLite's `i64`, then
/// joined in an `i128` ([`Total`]). A plain `SUM` would fail with
/// "integer overflow" once a student had ~92,000 payments of the maximum
/// amount; each half overflows only past 2^31 payments.
const STUDENT_PAYMENTS_TOTAL: &str = concat!(
    linked_payments!(),
    " SELECT COALESCE(SUM(amount_minor >> 32), 0), COALESCE(SUM(amount_minor & 4294967295), 0)
       FROM linked WHERE status = 'recorded'"
);

/// `GET /v1/students/{id}/payments`: linked by jodo_student_id, or by the
/// student identifier when the payment has no jodo_student_id.
pub async fn student_payments(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Params(q): Params<PageQuery>,
) -> Result<Json<StudentPayments>, ApiError> {
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let after = page.int_text_key()?;
    app.projections(move |conn| {
        let jid = resolve(conn, &id)?;
        let identifier: Option<String> = conn
            .prepare_cached("SELECT identifier FROM students WHERE jodo_student_id = ?1")?
            .query_row([&jid], |r| r.get(0))?;
        let (a_at, a_id) = after.clone().unwrap_or((i64::MIN, String::new()));
        let rows = query_rows(
            conn,
            STUDENT_PAYMENTS_PAGE,
            vec![
                Sql::Text(jid.clone()),
                identifier.clone().map_or(Sql::Null, Sql::Text),
                Sql::Integer(a_at),
                Sql::Text(a_id),
                Sql::Integer(i64::from(page.limit) + 1),
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )?;
        // All of them on this one page: the total is their sum. Otherwise
        // one more query sums them all.
        let total = if after.is_none() && rows.len() <= page.limit as usize {
            rows.iter()
                .filter(|r| r.3 == "recorded")
                .map(|r| i128::from(r.4))
                .sum()
        } else {
            let (high, low): (i64, i64) = conn
                .prepare_cached(STUDENT_PAYMENTS_TOTAL)?
                .query_row((&jid, &identifier), |r| Ok((r.get(0)?, r.get(1)?)))?;
            (i128::from(high) << 32) + i128::from(low)
        };
        let listing = paginate(
            rows,
            page.limit,
            |r| json!([r.0, r.1]),
            |r| Ok(PaymentView::new(parse_doc(&r.2)?, Some(jid.clone()))),
        )?;
        Ok(Json(StudentPayments {
            items: listing.items,
            next_cursor: listing.next_cursor,
            total_recorded: Total::from_minor(total).to_string(),
        }))
    })
    .await
}

// ----- learners and enrollments -----

#[derive(Serialize)]
pub struct CertificateView {
    pub issued_at: String,
    pub certified_at: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub approval_rate: Option<String>,
}

#[derive(Serialize)]
pub struct EnrollmentView {
    pub enrollment_id: String,
    pub course_id: String,
    pub course_name: Option<String>,
    pub user_id: String,
    pub institution_id: Option<String>,
    pub active: bool,
    pub status: &'static str,
    pub date_expire: Option<String>,
    pub enrolled_at: Option<String>,
    pub completed_at: Option<String>,
    pub certificate: Option<CertificateView>,
}

fn enrollment_view(conn: &Connection, s: EnrollmentState) -> Result<EnrollmentView, ApiError> {
    let r = s.record;
    let cert: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT at, doc FROM certificates WHERE user_id = ?1 AND course_id = ?2 ORDER BY at DESC, seq DESC LIMIT 1",
        )?
        .query_row((&r.user_id, &r.course_id), |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let certificate = match cert {
        None => None,
        Some((at, doc)) => {
            let c: crate::event::Certificate = parse_doc(&doc)?;
            Some(CertificateView {
                issued_at: rfc3339(at),
                certified_at: c.certified_at,
                kind: c.kind,
                approval_rate: c.approval_rate,
            })
        }
    };
    Ok(EnrollmentView {
        enrollment_id: r.enrollment_id,
        course_id: r.course_id,
        course_name: r.course_name,
        user_id: r.user_id,
        institution_id: r.institution_id,
        active: r.active,
        status: s.status.as_str(),
        date_expire: r.date_expire,
        enrolled_at: s.enrolled_at.map(rfc3339),
        completed_at: s.completed_at.map(rfc3339),
        certificate,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentsQuery {
    user_id: Option<String>,
    course_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/enrollments`.
pub async fn list_enrollments(
    State(app): State<AppState>,
    Params(q): Params<EnrollmentsQuery>,
) -> Result<Json<Listing<EnrollmentView>>, ApiError> {
    one_of("status", &q.status, &["active", "inactive", "completed"])?;
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let after = page.text_key()?;
    app.projections(move |conn| {
        let mut sql = String::from("SELECT enrollment_id, doc FROM enrollments WHERE 1 = 1");
        let mut args: Vec<Sql> = Vec::new();
        for (col, v) in [
            ("user_id", q.user_id),
            ("course_id", q.course_id),
            ("status", q.status),
        ] {
            if let Some(v) = v {
                sql.push_str(&format!(" AND {col} = ?"));
                args.push(Sql::Text(v));
            }
        }
        let rows = keyed_page(conn, sql, args, "enrollment_id", after, page.limit)?;
        paginate(
            rows,
            page.limit,
            |(id, _)| Value::from(id.clone()),
            |(_, doc)| enrollment_view(conn, parse_doc(&doc)?),
        )
    })
    .await
    .map(Json)
}

#[derive(Serialize)]
pub struct SchoolView {
    pub institution_id: String,
    pub school_id: String,
    pub role_id: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

#[derive(Serialize)]
pub struct LearnerView {
    pub user_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub cpf: Option<String>,
    pub nickname: Option<String>,
    pub uuid: Option<String>,
    pub phone: Option<String>,
    pub date_of_birth: Option<String>,
    /// Provider time of members.created, when received.
    pub created_at: Option<String>,
    /// Provider time of the latest members.* event; null when the learner is
    /// known only from enrollments.
    pub updated_at: Option<String>,
    pub schools: Vec<SchoolView>,
    pub enrollments: Vec<EnrollmentView>,
}

/// `GET /v1/learners/{user_id}`: profile, schools and enrollments. A user
/// seen only in enrollment events is shown with the name and e-mail those
/// carried.
pub async fn get_learner(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<LearnerView>, ApiError> {
    app.projections(move |conn| {
            let learner: Option<String> = conn
                .prepare_cached("SELECT doc FROM learners WHERE user_id = ?1")?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            let learner: Option<LearnerState> = learner.map(|d| parse_doc(&d)).transpose()?;
            let docs = query_rows(
                conn,
                &format!("SELECT doc FROM enrollments WHERE user_id = ?1 ORDER BY enrollment_id LIMIT {MAX_LIMIT}"),
                vec![Sql::Text(id.clone())],
                |r| r.get::<_, String>(0),
            )?;
            let states: Vec<EnrollmentState> = docs.iter().map(|d| parse_doc(d)).collect::<Result<_, _>>()?;
            if learner.is_none() && states.is_empty() {
                return Err(ApiError::NotFound(format!("no learner has user id {id:?}")));
            }
            let fallback = states.iter().max_by_key(|s| s.enrolled_at).map(|s| (s.record.user_name.clone(), s.record.user_email.clone()));
            let enrollments = states.into_iter().map(|s| enrollment_view(conn, s)).collect::<Result<Vec<_>, _>>()?;
            let view = match learner {
                Some(l) => {
                    let p = l.profile;
                    LearnerView {
                        user_id: p.user_id,
                        name: p.name,
                        email: p.email,
                        cpf: p.cpf,
                        nickname: p.nickname,
                        uuid: p.uuid,
                        phone: p.phone,
                        date_of_birth: p.date_of_birth,
                        created_at: l.created_at.map(rfc3339),
                        updated_at: Some(rfc3339(l.updated_at)),
                        schools: p
                            .schools
                            .into_iter()
                            .map(|s| SchoolView {
                                institution_id: s.institution_id,
                                school_id: s.school_id,
                                role_id: s.role_id,
                                created_at: s.created_at,
                                updated_at: s.updated_at,
                            })
                            .collect(),
                        enrollments,
                    }
                }
                None => {
                    let (name, email) = fallback.unwrap_or((None, None));
                    LearnerView {
                        user_id: id,
                        name,
                        email,
                        cpf: None,
                        nickname: None,
                        uuid: None,
                        phone: None,
                        date_of_birth: None,
                        created_at: None,
                        updated_at: None,
                        schools: Vec::new(),
                        enrollments,
                    }
                }
            };
            Ok(Json(view))
        })
        .await
}

// ----- the audit trail -----

/// One event of the log, as an auditor sees it.
#[derive(Serialize)]
pub struct EventView {
    pub seq: u64,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: String,
    pub dedupe_key: String,
    pub subject: Option<String>,
    pub occurred_at: String,
    pub received_at: String,
    pub body_hash: String,
    pub prev_hash: String,
    pub hash: String,
    /// Whether the body still hashes to body_hash (checked as it is read).
    pub body_intact: bool,
    /// The original body, verbatim.
    pub body: Box<RawValue>,
}

impl From<StoredEvent> for EventView {
    fn from(e: StoredEvent) -> Self {
        let body_intact = chain::body_hash(&e.body) == e.body_hash;
        let body = String::from_utf8(e.body)
            .ok()
            .and_then(|s| RawValue::from_string(s).ok())
            .unwrap_or_else(|| RawValue::from_string("null".into()).expect("null is JSON"));
        EventView {
            seq: e.seq,
            source: e.source,
            event_type: e.event_type,
            version: e.event_version,
            dedupe_key: e.dedupe_key,
            subject: e.subject,
            occurred_at: rfc3339(e.occurred_at),
            received_at: rfc3339_micros(e.received_at),
            body_hash: hex::encode(e.body_hash),
            prev_hash: hex::encode(e.prev_hash),
            hash: hex::encode(e.hash),
            body_intact,
            body,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    after_seq: Option<u64>,
    source: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    subject: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/events`: the log in seq order.
pub async fn list_events(
    State(app): State<AppState>,
    Params(q): Params<EventsQuery>,
) -> Result<Json<Listing<EventView>>, ApiError> {
    one_of("source", &q.source, &["jodo", "toolzz"])?;
    let page = Page::new(q.limit, q.cursor.as_deref())?;
    let cursor_seq = match &page.cursor {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(bad_cursor)?),
    };
    let cursor_seq = cursor_seq.map(|s| seq_param("cursor", s)).transpose()?;
    let after_seq = q.after_seq.map(|s| seq_param("after_seq", s)).transpose()?;
    let after = cursor_seq.or(after_seq).unwrap_or(0);
    app.log
        .run(move |conn| {
            let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?");
            let mut args: Vec<Sql> = vec![Sql::Integer(after)];
            for (col, v) in [
                ("source", q.source),
                ("event_type", q.event_type),
                ("subject", q.subject),
            ] {
                if let Some(v) = v {
                    sql.push_str(&format!(" AND {col} = ?"));
                    args.push(Sql::Text(v));
                }
            }
            sql.push_str(" ORDER BY seq LIMIT ?");
            args.push(Sql::Integer(i64::from(page.limit) + 1));
            let rows = query_rows(conn, &sql, args, StoredEvent::from_row)?;
            paginate(
                rows,
                page.limit,
                |e| Value::from(e.seq),
                |e| Ok(EventView::from(e)),
            )
        })
        .await
        .map(Json)
}

/// `GET /v1/events/{seq}`.
pub async fn get_event(
    State(app): State<AppState>,
    Path(seq): Path<String>,
    Params(NoParams {}): Params<NoParams>,
) -> Result<Json<EventView>, ApiError> {
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{seq:?} is not a seq")))?;
    seq_param("seq", seq)?;
    app.log
        .run(move |conn| {
            let e = log::get(conn, seq)?
                .ok_or_else(|| ApiError::NotFound(format!("no event has seq {seq}")))?;
            Ok(Json(EventView::from(e)))
        })
        .await
}

/// For the fuzz targets in `fuzz/` (not an API): runs a query string through
/// every parsing step the list and item routes take before reading
/// anything, as each route would, and returns how many routes accepted it.
/// Panics if a parser breaks its own contract (a cursor this API issued
/// that it does not read back).
#[doc(hidden)]
pub fn fuzz_query(query: &str) -> usize {
    fn parsed<T: DeserializeOwned>(query: &str) -> Option<T> {
        check_query(query).ok()?;
        serde_urlencoded::from_str(query).ok()
    }
    let mut accepted = 0;
    if let Some(q) = parsed::<StudentsQuery>(query) {
        let ok = one_of("status", &q.status, &["active", "dropped"]).is_ok()
            && Page::new(q.limit, q.cursor.as_deref())
                .and_then(|p| p.text_key())
                .is_ok();
        accepted += usize::from(ok);
    }
    if let Some(q) = parsed::<AsOfQuery>(query) {
        let ok = q
            .as_of
            .as_deref()
            .map(|t| parse_instant("as_of", t))
            .transpose()
            .is_ok();
        accepted += usize::from(ok);
    }
    if let Some(q) = parsed::<PageQuery>(query) {
        let page = Page::new(q.limit, q.cursor.as_deref());
        accepted += usize::from(page.as_ref().is_ok_and(|p| p.int_int_key().is_ok()));
        accepted += usize::from(page.is_ok_and(|p| p.int_text_key().is_ok()));
    }
    if let Some(q) = parsed::<PaymentsQuery>(query) {
        let from = q
            .from
            .as_deref()
            .map(|t| parse_bound("from", t, false))
            .transpose();
        let to =
            q.to.as_deref()
                .map(|t| parse_bound("to", t, true))
                .transpose();
        let ok = one_of("status", &q.status, &["recorded", "cancelled"]).is_ok()
            && from.is_ok()
            && to.is_ok()
            && Page::new(q.limit, q.cursor.as_deref())
                .and_then(|p| p.int_text_key())
                .is_ok();
        accepted += usize::from(ok);
    }
    if let Some(q) = parsed::<EnrollmentsQuery>(query) {
        let ok = Page::new(q.limit, q.cursor.as_deref())
            .and_then(|p| p.text_key())
            .is_ok();
        accepted += usize::from(ok);
    }
    if let Some(q) = parsed::<EventsQuery>(query) {
        let ok = one_of("source", &q.source, &["jodo", "toolzz"]).is_ok()
            && Page::new(q.limit, q.cursor.as_deref())
                .and_then(|p| {
                    p.cursor
                        .map(|v| v.as_u64().ok_or_else(bad_cursor))
                        .transpose()
                })
                .and_then(|c| c.map(|s| seq_param("cursor", s)).transpose())
                .is_ok()
            && q.after_seq
                .map(|s| seq_param("after_seq", s))
                .transpose()
                .is_ok();
        accepted += usize::from(ok);
    }
    if parsed::<NoParams>(query).is_some() {
        accepted += 1;
    }
    accepted
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
        assert_eq!(again(&json!(k)).text_key().unwrap(), Some(k));
    }
    if let Ok(Some((a, b))) = page.int_text_key() {
        assert_eq!(again(&json!([a, b])).int_text_key().unwrap(), Some((a, b)));
    }
    if let Ok(Some((a, b))) = page.int_int_key() {
        assert_eq!(again(&json!([a, b])).int_int_key().unwrap(), Some((a, b)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::store;

    #[test]
    fn a_students_payments_page_is_read_in_index_order_without_a_sort() {
        let conn = Connection::open_in_memory().unwrap();
        store::create_schema(&conn).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {STUDENT_PAYMENTS_PAGE}"))
            .unwrap()
            .query_map(("s", "i", 0, "", 10), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        assert!(plan.contains("payments_student"), "{plan}");
        assert!(plan.contains("payments_identifier"), "{plan}");
    }

    #[test]
    fn a_students_history_page_is_read_from_the_index_alone() {
        let conn = Connection::open_in_memory().unwrap();
        store::create_schema(&conn).unwrap();
        let plan: String = conn
            .query_row(
                &format!("EXPLAIN QUERY PLAN {STUDENT_HISTORY_PAGE}"),
                ("s", 0, 0, 10),
                |r| r.get(3),
            )
            .unwrap();
        assert!(
            plan.contains("COVERING INDEX student_history_order"),
            "{plan}"
        );
    }
}
