//! The event log: append with dedupe, the hash chain, reads and verify.
//! [`merkle`]: the log as an RFC 9162 Merkle tree (leaf encoding, stored
//! hashes, proofs, offline verifiers); [`tree`]: its stored hashes in the
//! log file, kept by [`append`]; [`note`]: checkpoints, signed as C2SP
//! notes; [`checkpoints`]: the checkpoints made, kept and published;
//! [`bundle`]: one event's proof against the newest checkpoint, for an
//! auditor to check offline; [`backup`]: whole, consistent copies of the
//! log file (an online backup, a restore's copy); [`lock`]: the lock a
//! process holds while it writes or replaces the log.
//!
//! The log knows nothing derived from it but its own tree: no projection, no
//! HTTP. Every row is written by [`append`] inside the writer's transaction,
//! with its leaf's hashes, and checked again by [`verify`] when read back.

pub mod backup;
pub mod bundle;
pub(crate) mod chain;
pub mod checkpoints;
pub mod lock;
pub mod merkle;
pub mod note;
pub mod pins;
pub mod tree;
pub mod verify;

use rusqlite::{Connection, OptionalExtension, Row};

use chain::{Hash, GENESIS};
use merkle::Frontier;

use crate::event::Source;

/// The newest event: its seq (0 for an empty log) and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Hash,
}

impl Head {
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: GENESIS,
    };
}

/// Reads the head of the log.
pub fn head(conn: &Connection) -> rusqlite::Result<Head> {
    // Cached: the writer reads the head once per batch.
    let row = conn
        .prepare_cached("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?;
    Ok(match row {
        None => Head::EMPTY,
        Some((seq, hash)) => Head {
            seq: seq as u64,
            hash: to_hash(&hash),
        },
    })
}

/// An event about to be appended.
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    pub source: &'a str,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub dedupe_key: &'a str,
    pub subject: Option<&'a str>,
    pub occurred_at: i64,
    pub received_at: i64,
    pub body: &'a [u8],
}

/// What [`append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Appended at this seq.
    Appended { seq: u64 },
    /// The same delivery (same key, same body) is already at this seq.
    Duplicate { seq: u64 },
    /// The key is already at this seq with a different body.
    Conflict { seq: u64 },
}

/// The end of the log as an appender needs it: the head, and the tree's
/// right border ([`Frontier`]) over the same events. Read by [`tail`]
/// inside a write transaction; moved by [`append`]. A writer may keep it
/// across transactions while the head it read next is still this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    head: Head,
    /// `None` for a writer that keeps no tree ([`tail_without_tree`]).
    frontier: Option<Frontier>,
}

impl Tail {
    /// The newest event.
    pub fn head(&self) -> Head {
        self.head
    }

    /// The tree's root over every event to the head; `None` when this
    /// tail keeps no tree.
    pub fn root(&self) -> Option<merkle::Hash> {
        self.frontier.as_ref().map(Frontier::root)
    }

    /// The tail of the empty log.
    pub fn empty() -> Tail {
        Tail {
            head: Head::EMPTY,
            frontier: Some(Frontier::new()),
        }
    }
}

/// Reads the end of the log: its head, and the frontier of its tree (two
/// indexed reads). A tree behind its log (a log made before the tree
/// existed whose tree the writer has not finished building) is first caught
/// up here, inside the caller's transaction; a tree past it (a log cut below
/// its tree) is an error.
pub fn tail(conn: &Connection) -> Result<Tail, tree::StoreError> {
    let head = head(conn)?;
    let leaves = tree::size(conn)?;
    if leaves > head.seq {
        return Err(tree::StoreError::PastHead {
            leaves,
            head: head.seq,
        });
    }
    let mut frontier = tree::frontier(conn, leaves)?;
    if leaves < head.seq {
        tracing::info!(
            leaves,
            head = head.seq,
            "the tree is behind the log: adding the missing leaves"
        );
        tree::extend(conn, &mut frontier, head.seq, u64::MAX)?;
    }
    assert_eq!(frontier.leaves(), head.seq, "one leaf per event");
    Ok(Tail {
        head,
        frontier: Some(frontier),
    })
}

/// The end of the log for a writer that keeps no tree: appends through it
/// store no leaf. Only `serve --without-tree` asks for it, so that `make
/// bench` can measure what keeping the tree costs a delivery (README,
/// Benchmark); the next start without that flag adds the missing leaves
/// ([`tail`], and the writer's build at start) before any checkpoint.
pub fn tail_without_tree(conn: &Connection) -> rusqlite::Result<Tail> {
    Ok(Tail {
        head: head(conn)?,
        frontier: None,
    })
}

/// Appends `entry` after `tail`, or finds it already there. On `Appended`,
/// `tail` moves to the new event and the event's leaf (and the subtrees it
/// completes) is stored in the tree; the caller's transaction makes both
/// durable together. A duplicate or a conflict adds nothing. After an
/// error the caller rolls its transaction back and reads the tail again.
pub fn append(
    conn: &Connection,
    tail: &mut Tail,
    entry: &NewEntry,
) -> rusqlite::Result<AppendOutcome> {
    let body_hash = chain::body_hash(entry.body);
    let existing = conn
        .prepare_cached("SELECT seq, body_hash FROM events WHERE source = ?1 AND dedupe_key = ?2")?
        .query_row((entry.source, entry.dedupe_key), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .optional()?;
    if let Some((seq, existing_hash)) = existing {
        let seq = seq as u64;
        return Ok(if existing_hash == body_hash {
            AppendOutcome::Duplicate { seq }
        } else {
            AppendOutcome::Conflict { seq }
        });
    }
    let head = &mut tail.head;
    if let Some(frontier) = &tail.frontier {
        assert_eq!(frontier.leaves(), head.seq, "one leaf per event");
    }
    let seq = head.seq + 1;
    let hash = chain::link_hash(&head.hash, seq, entry.source, entry.received_at, &body_hash);
    conn.prepare_cached(
        "INSERT INTO events (seq, source, event_type, event_version, dedupe_key, subject, occurred_at,
                             received_at, body, body_hash, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(rusqlite::params![
        seq as i64,
        entry.source,
        entry.event_type,
        entry.event_version,
        entry.dedupe_key,
        entry.subject,
        entry.occurred_at,
        entry.received_at,
        entry.body,
        &body_hash[..],
        &head.hash[..],
        &hash[..],
    ])?;
    // The log is gapless and linked: the row just written follows the head.
    debug_assert_eq!(conn.last_insert_rowid(), seq as i64);
    *head = Head { seq, hash };
    if let Some(frontier) = &mut tail.frontier {
        let leaf = tree::leaf(seq, entry.source, entry.received_at, &body_hash);
        tree::insert(conn, &frontier.push(&leaf))?;
        assert_eq!(frontier.leaves(), seq, "one leaf per event");
    }
    Ok(AppendOutcome::Appended { seq })
}

/// One event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: u64,
    pub source: String,
    pub event_type: String,
    pub event_version: String,
    pub dedupe_key: String,
    pub subject: Option<String>,
    pub occurred_at: i64,
    pub received_at: i64,
    pub body: Vec<u8>,
    pub body_hash: Hash,
    pub prev_hash: Hash,
    pub hash: Hash,
}

/// The column list [`StoredEvent::from_row`] reads.
pub const EVENT_COLUMNS: &str =
    "seq, source, event_type, event_version, dedupe_key, subject, occurred_at, \
                                 received_at, body, body_hash, prev_hash, hash";

impl StoredEvent {
    pub fn from_row(r: &Row) -> rusqlite::Result<StoredEvent> {
        Ok(StoredEvent {
            seq: r.get::<_, i64>(0)? as u64,
            source: r.get(1)?,
            event_type: r.get(2)?,
            event_version: r.get(3)?,
            dedupe_key: r.get(4)?,
            subject: r.get(5)?,
            occurred_at: r.get(6)?,
            received_at: r.get(7)?,
            body: r.get(8)?,
            body_hash: to_hash(&r.get::<_, Vec<u8>>(9)?),
            prev_hash: to_hash(&r.get::<_, Vec<u8>>(10)?),
            hash: to_hash(&r.get::<_, Vec<u8>>(11)?),
        })
    }
}

/// One event by seq.
pub fn get(conn: &Connection, seq: u64) -> rusqlite::Result<Option<StoredEvent>> {
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?1"
    ))?
    .query_row([seq as i64], StoredEvent::from_row)
    .optional()
}

/// What the audit trail filters by; `None` does not filter.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub source: Option<Source>,
    pub event_type: Option<String>,
    pub subject: Option<String>,
    /// Received at or before, unix microseconds: the log as known then.
    pub received_by: Option<i64>,
    /// Provider time at or before, unix seconds.
    pub occurred_by: Option<i64>,
}

/// Up to `limit` events after seq `after` matching `filter`, in seq order
/// (the audit trail: `GET /v1/events` and the console's Events page).
pub fn list(
    conn: &Connection,
    filter: &EventFilter,
    after: i64,
    limit: u32,
) -> rusqlite::Result<Vec<StoredEvent>> {
    use rusqlite::types::Value as Sql;
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?");
    let mut args: Vec<Sql> = vec![Sql::Integer(after)];
    // Only the filters given are in the statement, so each combination is
    // planned for its own index (events_by_subject, events_by_type).
    for (col, v) in [
        ("source", filter.source.map(|s| s.as_str().to_string())),
        ("event_type", filter.event_type.clone()),
        ("subject", filter.subject.clone()),
    ] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col} = ?"));
            args.push(Sql::Text(v));
        }
    }
    for (col, v) in [
        ("received_at", filter.received_by),
        ("occurred_at", filter.occurred_by),
    ] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col} <= ?"));
            args.push(Sql::Integer(v));
        }
    }
    sql.push_str(" ORDER BY seq LIMIT ?");
    args.push(Sql::Integer(i64::from(limit)));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), StoredEvent::from_row)?;
    rows.collect()
}

/// A 32-byte hash from a blob. The schema's CHECK constraints guarantee the
/// length; a wrong one means the file was edited around them.
pub fn to_hash(bytes: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    if bytes.len() == 32 {
        h.copy_from_slice(bytes);
    }
    h
}

/// One logged event as the projections read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub seq: u64,
    pub source: Source,
    /// Provider time, unix seconds.
    pub occurred_at: i64,
    /// When registrar received it, unix microseconds.
    pub received_at: i64,
    pub body: Vec<u8>,
}

/// The read side of the log as the projections see it: its head and a seq
/// range. With [`append`] and the dedupe lookup inside it, this is all a
/// log must offer, so another store (PostgreSQL) can stand behind it
/// without the projector changing.
pub struct LogReader {
    conn: Connection,
}

impl LogReader {
    /// A read-only connection of its own on the log file. Not memory-mapped:
    /// it reads the log once, front to back, and a mapping would count every
    /// page of it in the process's resident memory.
    pub fn open(path: &std::path::Path) -> rusqlite::Result<LogReader> {
        let conn = crate::db::open_ro(path)?;
        conn.pragma_update(None, "mmap_size", 0)?;
        Ok(LogReader { conn })
    }

    /// The seq of the newest event (0 for an empty log).
    pub fn head(&self) -> rusqlite::Result<u64> {
        head(&self.conn).map(|h| h.seq)
    }

    /// Up to `limit` events after seq `after`, in seq order.
    pub fn read_after(&self, after: u64, limit: usize) -> rusqlite::Result<Vec<LoggedEvent>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, source, occurred_at, received_at, body FROM events
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map((after as i64, limit as i64), |r| {
            let source = r.get_ref(1)?.as_str()?;
            Ok(LoggedEvent {
                seq: r.get::<_, i64>(0)? as u64,
                source: Source::parse(source).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        format!("unknown source {source:?}").into(),
                    )
                })?,
                occurred_at: r.get(2)?,
                received_at: r.get(3)?,
                body: r.get(4)?,
            })
        })?;
        rows.collect()
    }
}

/// One event of a test log: what [`test_log_with`] appends as event `i`.
#[cfg(test)]
pub(crate) struct TestEntry {
    pub event_type: &'static str,
    pub dedupe_key: String,
    pub subject: Option<String>,
    pub occurred_at: i64,
    pub body: String,
}

/// A log of `n` small events in a temporary file, its triggers in place:
/// the tests of this module's parts build on it.
#[cfg(test)]
pub(crate) fn test_log(n: u64) -> (tempfile::TempDir, rusqlite::Connection) {
    test_log_with(n, |i| TestEntry {
        event_type: "t",
        dedupe_key: format!("k{i}"),
        subject: None,
        occurred_at: 1,
        body: format!("{{\"n\":{i}}}"),
    })
}

/// A log of the `n` events `entry` makes (received at 0, 1, ...), in a
/// temporary file, its triggers in place.
#[cfg(test)]
pub(crate) fn test_log_with(
    n: u64,
    entry: impl Fn(u64) -> TestEntry,
) -> (tempfile::TempDir, rusqlite::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = crate::db::open_rw(&dir.path().join("log.db")).unwrap();
    crate::db::migrate(&mut conn).unwrap();
    let tx = conn.transaction().unwrap();
    let mut tail = tail(&tx).unwrap();
    for i in 0..n {
        let e = entry(i);
        let new = NewEntry {
            source: "jodo",
            event_type: e.event_type,
            event_version: "1.0",
            dedupe_key: &e.dedupe_key,
            subject: e.subject.as_deref(),
            occurred_at: e.occurred_at,
            received_at: i as i64,
            body: e.body.as_bytes(),
        };
        append(&tx, &mut tail, &new).unwrap();
    }
    tx.commit().unwrap();
    (dir, conn)
}
