//! Pins: heads of the chain an auditor recorded, with a note, kept in the
//! log file (append-only, like the events: `schema/003_pins.sql`).
//!
//! A pin is what `registrar verify --pin SEQ:HASH` takes; kept here, the
//! console can check every one against the log at any time. Written only
//! by the ledger's writer ([`crate::ledger::Ledger::pin`]).

use rusqlite::{Connection, OptionalExtension};

use super::chain::Hash;
use super::{head, to_hash};

/// The longest note kept with a pin, in characters: a sentence or two.
pub const MAX_NOTE_CHARS: usize = 500;
/// Pins listed at most (newest first).
pub const MAX_LISTED: u32 = 200;

/// A recorded pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub id: i64,
    pub seq: u64,
    pub hash: Hash,
    pub note: String,
    /// Unix microseconds.
    pub recorded_at: i64,
}

impl Pin {
    /// `SEQ:HASH`, as `registrar verify --pin` takes it.
    pub fn as_arg(&self) -> String {
        format!("{}:{}", self.seq, hex::encode(self.hash))
    }
}

/// What checking a pin against the log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// The log holds the pinned hash at the pinned seq.
    Holds,
    /// The log holds another hash there (it was rewritten).
    Differs { found: Hash },
    /// The log ends before the pinned seq (it was cut).
    Missing { head: u64 },
}

/// Why a pin was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A pin is only worth keeping with the reason it was taken.
    #[error("a pin needs a note saying why it was recorded")]
    EmptyNote,
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// Records the log's current head with `note`, trimmed and cut to
/// [`MAX_NOTE_CHARS`], inside the caller's write transaction. The one place
/// a note is trimmed: one that is empty then is refused.
pub fn record(conn: &Connection, note: &str, at: i64) -> Result<Pin, RecordError> {
    let note: String = note.trim().chars().take(MAX_NOTE_CHARS).collect();
    if note.is_empty() {
        return Err(RecordError::EmptyNote);
    }
    let h = head(conn)?;
    conn.prepare_cached("INSERT INTO pins (seq, hash, note, recorded_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute((h.seq as i64, &h.hash[..], &note, at))?;
    Ok(Pin {
        id: conn.last_insert_rowid(),
        seq: h.seq,
        hash: h.hash,
        note,
        recorded_at: at,
    })
}

/// The newest pins, at most `limit`.
pub fn list(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<Pin>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, seq, hash, note, recorded_at FROM pins ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(Pin {
            id: r.get(0)?,
            seq: r.get::<_, i64>(1)? as u64,
            hash: to_hash(&r.get::<_, Vec<u8>>(2)?),
            note: r.get(3)?,
            recorded_at: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Checks `pin` against the log: one indexed lookup.
pub fn check(conn: &Connection, pin: &Pin) -> rusqlite::Result<PinCheck> {
    if pin.seq == 0 {
        // The head of an empty log: nothing to hold.
        return Ok(PinCheck::Holds);
    }
    let found: Option<Vec<u8>> = conn
        .prepare_cached("SELECT hash FROM events WHERE seq = ?1")?
        .query_row([pin.seq as i64], |r| r.get(0))
        .optional()?;
    Ok(match found {
        None => PinCheck::Missing {
            head: head(conn)?.seq,
        },
        Some(h) if to_hash(&h) == pin.hash => PinCheck::Holds,
        Some(h) => PinCheck::Differs { found: to_hash(&h) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::log::test_log as log_of;

    #[test]
    fn a_pin_records_the_head_and_holds_until_the_log_is_rewritten() {
        let (_dir, conn) = log_of(3);
        let pin = record(&conn, "  month end  ", 7).unwrap();
        assert_eq!((pin.seq, pin.note.as_str()), (3, "month end"));
        assert_eq!(list(&conn, 10).unwrap(), vec![pin.clone()]);
        assert_eq!(check(&conn, &pin).unwrap(), PinCheck::Holds);
        conn.execute_batch(
            "DROP TRIGGER events_no_update; UPDATE events SET hash = zeroblob(32) WHERE seq = 3;",
        )
        .unwrap();
        assert_eq!(
            check(&conn, &pin).unwrap(),
            PinCheck::Differs { found: [0; 32] }
        );
        conn.execute_batch("DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq = 3;")
            .unwrap();
        assert_eq!(check(&conn, &pin).unwrap(), PinCheck::Missing { head: 2 });
    }

    #[test]
    fn pins_cannot_be_updated_or_deleted() {
        let (_dir, conn) = log_of(1);
        record(&conn, "x", 1).unwrap();
        let update = conn.execute("UPDATE pins SET note = 'y'", []);
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = conn.execute("DELETE FROM pins", []);
        assert!(delete.unwrap_err().to_string().contains("append-only"));
    }

    #[test]
    fn a_note_of_only_whitespace_is_refused_and_nothing_is_recorded() {
        let (_dir, conn) = log_of(1);
        for note in ["", "  \t\n "] {
            assert!(matches!(
                record(&conn, note, 1),
                Err(RecordError::EmptyNote)
            ));
        }
        assert_eq!(list(&conn, 10).unwrap(), vec![]);
    }

    #[test]
    fn a_long_note_is_cut_to_the_limit() {
        let (_dir, conn) = log_of(1);
        let pin = record(&conn, &"é".repeat(MAX_NOTE_CHARS + 10), 1).unwrap();
        assert_eq!(pin.note.chars().count(), MAX_NOTE_CHARS);
    }
}
