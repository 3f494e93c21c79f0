//! The quarantine: rejected deliveries, kept with their reason.
//!
//! Bounded: when it holds [`crate::config::Config::quarantine_cap`] rows, the
//! next insert first evicts one, in this order: a row already readmitted, the
//! oldest unauthenticated reject, the oldest reject. An unauthenticated reject
//! never evicts an authenticated one: when only those are left it is not
//! kept (anyone can send those, so a flood of them must not push out what a
//! provider really sent). Evictions are counted in the `counters` table and
//! logged.

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

/// A rejected delivery, as kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reject {
    pub source: String,
    /// Unix microseconds.
    pub received_at: i64,
    pub http_status: u16,
    pub code: String,
    pub reason: String,
    pub authenticated: bool,
    /// The headers that matter, never a secret.
    pub headers: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub body_truncated: bool,
}

/// A kept reject with its id and readmission state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub id: i64,
    #[serde(flatten)]
    pub reject: Reject,
    pub readmitted_at: Option<i64>,
    pub readmitted_seq: Option<u64>,
}

/// Keeps `reject`, evicting one row first when `cap` rows are kept.
/// Returns the new row's id and whether a row was evicted; `None` when an
/// unauthenticated reject finds only authenticated ones to evict.
pub fn insert(
    conn: &Connection,
    reject: &Reject,
    cap: u64,
) -> rusqlite::Result<Option<(i64, bool)>> {
    assert!(cap > 0, "the quarantine cap must be positive");
    let count: i64 = conn.query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))?;
    let mut evicted = false;
    if count as u64 >= cap {
        let victim: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM quarantine
                 WHERE ?1 OR readmitted_at IS NOT NULL OR NOT authenticated
                 ORDER BY (readmitted_at IS NULL), authenticated, id LIMIT 1",
            )?
            .query_row([reject.authenticated], |r| r.get(0))
            .optional()?;
        if victim.is_none() && !reject.authenticated {
            return Ok(None);
        }
        if let Some(id) = victim {
            conn.execute("DELETE FROM quarantine WHERE id = ?1", [id])?;
            conn.execute(
                "UPDATE counters SET value = value + 1 WHERE name = 'quarantine_evictions'",
                [],
            )?;
            evicted = true;
        }
    }
    conn.prepare_cached(
        "INSERT INTO quarantine (source, received_at, http_status, code, reason, authenticated, headers, body,
                                 body_truncated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(rusqlite::params![
        reject.source,
        reject.received_at,
        reject.http_status,
        reject.code,
        reject.reason,
        reject.authenticated,
        serde_json::Value::Object(reject.headers.clone()).to_string(),
        reject.body,
        reject.body_truncated,
    ])?;
    Ok(Some((conn.last_insert_rowid(), evicted)))
}

const COLUMNS: &str =
    "id, source, received_at, http_status, code, reason, authenticated, headers, body, \
                       body_truncated, readmitted_at, readmitted_seq";

fn from_row(r: &rusqlite::Row) -> rusqlite::Result<Entry> {
    let headers: String = r.get(7)?;
    Ok(Entry {
        id: r.get(0)?,
        reject: Reject {
            source: r.get(1)?,
            received_at: r.get(2)?,
            http_status: r.get(3)?,
            code: r.get(4)?,
            reason: r.get(5)?,
            authenticated: r.get(6)?,
            headers: serde_json::from_str(&headers).unwrap_or_default(),
            body: r.get(8)?,
            body_truncated: r.get(9)?,
        },
        readmitted_at: r.get(10)?,
        readmitted_seq: r.get::<_, Option<i64>>(11)?.map(|s| s as u64),
    })
}

/// Kept rejects, oldest first, after id `after`, at most `limit`.
pub fn list(
    conn: &Connection,
    after: i64,
    limit: u32,
    pending_only: bool,
) -> rusqlite::Result<Vec<Entry>> {
    let filter = if pending_only {
        "AND readmitted_at IS NULL"
    } else {
        ""
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM quarantine WHERE id > ?1 {filter} ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map((after, limit), from_row)?;
    rows.collect()
}

/// One kept reject.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Entry>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM quarantine WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()
}

/// Marks a reject readmitted as `seq`.
pub fn mark_readmitted(conn: &Connection, id: i64, at: i64, seq: u64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE quarantine SET readmitted_at = ?2, readmitted_seq = ?3 WHERE id = ?1",
        (id, at, seq as i64),
    )?;
    Ok(())
}

/// How many rows were evicted since the database was created.
/// Rejected deliveries kept and not readmitted.
pub fn pending(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM quarantine WHERE readmitted_at IS NULL")?
        .query_row([], |r| r.get(0))
}

pub fn evictions(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT value FROM counters WHERE name = 'quarantine_evictions'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|v| v as u64)
}
