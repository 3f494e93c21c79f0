//! Recomputes the hash chain and reports the first fault.

use rusqlite::Connection;

use super::chain::{self, Hash, GENESIS};
use super::to_hash;

/// What verify proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub events: u64,
    pub head_seq: u64,
    pub head_hash: Hash,
}

/// The first thing wrong with the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainFault {
    #[error("seq {expected} is missing (the next row has seq {found})")]
    Gap { expected: u64, found: u64 },
    #[error("seq {seq}: the body does not match its body_hash")]
    BodyHash { seq: u64 },
    #[error("seq {seq}: prev_hash does not match the hash of seq {}", seq - 1)]
    Link { seq: u64 },
    #[error("seq {seq}: the stored hash does not match the recomputed hash")]
    Hash { seq: u64 },
    #[error("pin {seq}: the log holds hash {found} there, not the pinned one")]
    PinMismatch { seq: u64, found: String },
    #[error("pin {seq}: the log ends at seq {head}, before the pinned seq")]
    PinMissing { seq: u64, head: u64 },
}

/// Verify's outcome: a fault, or a database error.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the chain is broken: {0}")]
    Fault(#[from] ChainFault),
    #[error("could not read the log: {0}")]
    Db(#[from] rusqlite::Error),
}

/// Threads verify splits the log across at most.
pub const MAX_VERIFY_THREADS: usize = 4;

/// Below this many events verify runs on one thread.
const PARALLEL_FROM: u64 = 100_000;

/// Walks the whole log, streaming (constant memory), and checks that seqs are
/// gapless from 1, every body matches its hash, every `prev_hash` is the
/// previous row's hash and every hash recomputes. With `pin`, also checks
/// that the log holds that hash at that seq.
///
/// Rows up to the head never change (append-only), so a large log is split
/// into seq ranges verified in parallel, each on its own read connection;
/// each range also checks its link to the one before. The fault reported is
/// the one with the lowest seq, as a sequential walk would find first.
pub fn verify(conn: &Connection, pin: Option<(u64, Hash)>) -> Result<Verified, VerifyError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_VERIFY_THREADS);
    verify_split(conn, pin, threads, PARALLEL_FROM)
}

/// [`verify`] with the split chosen: `threads` ranges once the log has at
/// least `parallel_from` events.
fn verify_split(
    conn: &Connection,
    pin: Option<(u64, Hash)>,
    threads: usize,
    parallel_from: u64,
) -> Result<Verified, VerifyError> {
    let head_seq: u64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| {
        r.get::<_, i64>(0)
    })? as u64;
    let path = conn
        .path()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from);
    let ranges: Vec<(u64, u64)> = match path {
        Some(_) if threads > 1 && head_seq >= parallel_from => {
            let per = head_seq.div_ceil(threads as u64);
            (0..threads as u64)
                .map(|i| (i * per + 1, ((i + 1) * per).min(head_seq)))
                .filter(|(a, b)| a <= b)
                .collect()
        }
        _ => vec![(1, head_seq)],
    };
    let results: Vec<Result<RangeOutcome, VerifyError>> = if ranges.len() == 1 {
        vec![verify_range(conn, ranges[0], pin)]
    } else {
        let path = path.expect("checked above");
        std::thread::scope(|scope| {
            let handles: Vec<_> = ranges
                .iter()
                .map(|&range| {
                    let path = path.clone();
                    scope.spawn(move || {
                        let conn = crate::db::open_ro(&path)?;
                        verify_range(&conn, range, pin)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a verify thread panicked"))
                .collect()
        })
    };
    // Stitch the ranges: each must start from the previous range's last hash
    // (checked when the previous range is sound: otherwise its own fault has
    // a lower seq); then the first fault by seq wins.
    let mut outcomes = Vec::with_capacity(results.len());
    for r in results {
        outcomes.push(r?);
    }
    let mut faults: Vec<ChainFault> = outcomes.iter().filter_map(|o| o.fault.clone()).collect();
    let mut prev: Option<Hash> = Some(GENESIS);
    for o in &outcomes {
        if let (Some(p), Some(first)) = (prev, o.first_prev) {
            if first != p {
                faults.push(ChainFault::Link { seq: o.range.0 });
            }
        }
        prev = if o.fault.is_none() {
            Some(o.last_hash)
        } else {
            None
        };
    }
    if let Some(f) = faults.into_iter().min_by_key(ChainFault::seq) {
        return Err(f.into());
    }
    let prev = outcomes.last().map_or(GENESIS, |o| o.last_hash);
    if let Some((pin_seq, pin_hash)) = pin {
        let found = outcomes.iter().find_map(|o| o.pin_found);
        match found {
            None => {
                return Err(ChainFault::PinMissing {
                    seq: pin_seq,
                    head: head_seq,
                }
                .into())
            }
            Some(found) if found != pin_hash => {
                return Err(ChainFault::PinMismatch {
                    seq: pin_seq,
                    found: hex::encode(found),
                }
                .into())
            }
            Some(_) => {}
        }
    }
    Ok(Verified {
        events: head_seq,
        head_seq,
        head_hash: prev,
    })
}

/// What one range proved, or its first fault.
struct RangeOutcome {
    range: (u64, u64),
    /// The first row's prev_hash (checked against the previous range).
    first_prev: Option<Hash>,
    last_hash: Hash,
    pin_found: Option<Hash>,
    fault: Option<ChainFault>,
}

fn verify_range(
    conn: &Connection,
    range: (u64, u64),
    pin: Option<(u64, Hash)>,
) -> Result<RangeOutcome, VerifyError> {
    let (from, to) = range;
    // One read transaction: one consistent snapshot.
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        let mut stmt = conn.prepare(
            "SELECT seq, source, received_at, body, body_hash, prev_hash, hash FROM events
             WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query((from as i64, to as i64))?;
        let mut expected_seq = from;
        let mut first_prev = None;
        let mut prev: Option<Hash> = None;
        let mut pin_found = None;
        let failed = |first_prev, fault: ChainFault| RangeOutcome {
            range,
            first_prev,
            last_hash: GENESIS,
            pin_found: None,
            fault: Some(fault),
        };
        while let Some(r) = rows.next()? {
            let seq = r.get::<_, i64>(0)? as u64;
            if seq != expected_seq {
                return Ok(failed(
                    first_prev,
                    ChainFault::Gap {
                        expected: expected_seq,
                        found: seq,
                    },
                ));
            }
            let source = r.get_ref(1)?.as_str().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    1,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?;
            let received_at: i64 = r.get(2)?;
            let body = r.get_ref(3)?.as_blob().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    3,
                    rusqlite::types::Type::Blob,
                    Box::new(e),
                )
            })?;
            let body_hash = to_hash(r.get_ref(4)?.as_blob().unwrap_or_default());
            let prev_hash = to_hash(r.get_ref(5)?.as_blob().unwrap_or_default());
            let hash = to_hash(r.get_ref(6)?.as_blob().unwrap_or_default());
            if prev.is_none() {
                first_prev = Some(prev_hash);
            }
            if chain::body_hash(body) != body_hash {
                return Ok(failed(first_prev, ChainFault::BodyHash { seq }));
            }
            if prev.is_some_and(|p| p != prev_hash) {
                return Ok(failed(first_prev, ChainFault::Link { seq }));
            }
            if chain::link_hash(&prev_hash, seq, source, received_at, &body_hash) != hash {
                return Ok(failed(first_prev, ChainFault::Hash { seq }));
            }
            if pin.is_some_and(|(pin_seq, _)| pin_seq == seq) {
                pin_found = Some(hash);
            }
            prev = Some(hash);
            expected_seq += 1;
        }
        // The range's last rows are missing: a gap before the next range.
        // (The last range ends at MAX(seq), so it cannot end short.)
        if expected_seq <= to {
            let found: Option<i64> = conn.query_row(
                "SELECT MIN(seq) FROM events WHERE seq > ?1",
                [to as i64],
                |r| r.get(0),
            )?;
            let found = found.map_or(to + 1, |f| f as u64);
            return Ok(failed(
                first_prev,
                ChainFault::Gap {
                    expected: expected_seq,
                    found,
                },
            ));
        }
        Ok(RangeOutcome {
            range,
            first_prev,
            last_hash: prev.unwrap_or(GENESIS),
            pin_found,
            fault: None,
        })
    })();
    conn.execute_batch("COMMIT")?;
    result
}

impl ChainFault {
    /// The seq a fault is about, to report the first one.
    pub fn seq(&self) -> u64 {
        match self {
            ChainFault::Gap { expected, .. } => *expected,
            ChainFault::BodyHash { seq }
            | ChainFault::Link { seq }
            | ChainFault::Hash { seq }
            | ChainFault::PinMismatch { seq, .. }
            | ChainFault::PinMissing { seq, .. } => *seq,
        }
    }
}

/// Parses `SEQ:HEX` as given to `--pin`.
pub fn parse_pin(text: &str) -> Result<(u64, Hash), String> {
    let (seq, hash) = text.split_once(':').ok_or("expected SEQ:HASH")?;
    let seq: u64 = seq
        .trim()
        .parse()
        .map_err(|_| format!("{seq:?} is not a seq"))?;
    let bytes = hex::decode(hash.trim()).map_err(|_| format!("{hash:?} is not hex"))?;
    if bytes.len() != 32 {
        return Err("the hash must be 32 bytes (64 hex digits)".into());
    }
    Ok((seq, to_hash(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{append, Head, NewEntry};

    /// A log of `n` events in a temporary file, triggers dropped so tests can tamper.
    fn log_of(n: u64) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::db::open_rw(&dir.path().join("v.db")).unwrap();
        crate::db::migrate(&mut conn).unwrap();
        let tx = conn.transaction().unwrap();
        let mut head = Head::EMPTY;
        for i in 0..n {
            let body = format!("{{\"n\":{i}}}");
            let key = format!("k{i}");
            let entry = NewEntry {
                source: "jodo",
                event_type: "t",
                event_version: "1.0",
                dedupe_key: &key,
                subject: None,
                occurred_at: 1,
                received_at: i as i64,
                body: body.as_bytes(),
            };
            append(&tx, &mut head, &entry).unwrap();
        }
        tx.commit().unwrap();
        conn.execute_batch("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;")
            .unwrap();
        (dir, conn)
    }

    fn split(conn: &Connection) -> Result<Verified, VerifyError> {
        verify_split(conn, None, 3, 1)
    }

    fn fault(r: Result<Verified, VerifyError>) -> ChainFault {
        match r {
            Err(VerifyError::Fault(f)) => f,
            other => panic!("expected a fault, got {other:?}"),
        }
    }

    #[test]
    fn a_split_verify_agrees_with_a_single_walk() {
        let (_dir, conn) = log_of(50);
        let one = verify_split(&conn, None, 1, u64::MAX).unwrap();
        let three = split(&conn).unwrap();
        assert_eq!(one, three);
        assert_eq!(three.head_seq, 50);
        let (_d, empty) = log_of(0);
        assert_eq!(split(&empty).unwrap().head_hash, GENESIS);
    }

    #[test]
    fn a_split_verify_reports_the_first_fault_wherever_the_ranges_fall() {
        // Ranges of 50 over 3 threads: 1-17, 18-34, 35-50.
        let (_dir, conn) = log_of(50);
        conn.execute("UPDATE events SET body = x'00' WHERE seq = 40", [])
            .unwrap();
        conn.execute("UPDATE events SET body = x'00' WHERE seq = 30", [])
            .unwrap();
        assert_eq!(fault(split(&conn)), ChainFault::BodyHash { seq: 30 });

        let (_dir, conn) = log_of(50);
        // The last row of the first range: a gap seen at the boundary.
        conn.execute("DELETE FROM events WHERE seq = 17", [])
            .unwrap();
        assert_eq!(
            fault(split(&conn)),
            ChainFault::Gap {
                expected: 17,
                found: 18
            }
        );

        let (_dir, conn) = log_of(50);
        // A rewritten first row of the second range, with a recomputed hash:
        // only the link across the boundary can tell.
        conn.execute(
            "UPDATE events SET prev_hash = zeroblob(32) WHERE seq = 18",
            [],
        )
        .unwrap();
        let row: (String, i64, Vec<u8>) = conn
            .query_row(
                "SELECT source, received_at, body_hash FROM events WHERE seq = 18",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let h = chain::link_hash(&GENESIS, 18, &row.0, row.1, &to_hash(&row.2));
        conn.execute("UPDATE events SET hash = ?1 WHERE seq = 18", [&h[..]])
            .unwrap();
        assert_eq!(fault(split(&conn)), ChainFault::Link { seq: 18 });

        let (_dir, conn) = log_of(50);
        let good = split(&conn).unwrap();
        let pinned = conn
            .query_row("SELECT hash FROM events WHERE seq = 20", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .unwrap();
        assert!(verify_split(&conn, Some((20, to_hash(&pinned))), 3, 1).is_ok());
        assert!(matches!(
            fault(verify_split(&conn, Some((20, good.head_hash)), 3, 1)),
            ChainFault::PinMismatch { seq: 20, .. }
        ));
        assert!(matches!(
            fault(verify_split(&conn, Some((99, good.head_hash)), 3, 1)),
            ChainFault::PinMissing { .. }
        ));
    }
}
