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

/// Walks the whole log in seq order, streaming (constant memory), and checks
/// that seqs are gapless from 1, every body matches its hash, every
/// `prev_hash` is the previous row's hash and every hash recomputes. With
/// `pin`, also checks that the log holds that hash at that seq.
pub fn verify(conn: &Connection, pin: Option<(u64, Hash)>) -> Result<Verified, VerifyError> {
    verify_with_progress(conn, pin, |_| {})
}

/// [`verify`], calling `progress` with the seq reached every so often.
pub fn verify_with_progress(
    conn: &Connection,
    pin: Option<(u64, Hash)>,
    mut progress: impl FnMut(u64),
) -> Result<Verified, VerifyError> {
    /// How often `progress` is called.
    const PROGRESS_EVERY: u64 = 65_536;
    // One read transaction, so the walk sees one consistent snapshot.
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        let mut stmt =
            conn.prepare("SELECT seq, source, received_at, body, body_hash, prev_hash, hash FROM events ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        let mut expected_seq = 1u64;
        let mut prev: Hash = GENESIS;
        let mut pin_found = None;
        while let Some(r) = rows.next()? {
            let seq = r.get::<_, i64>(0)? as u64;
            if seq != expected_seq {
                return Err(ChainFault::Gap {
                    expected: expected_seq,
                    found: seq,
                }
                .into());
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
            if chain::body_hash(body) != body_hash {
                return Err(ChainFault::BodyHash { seq }.into());
            }
            if prev_hash != prev {
                return Err(ChainFault::Link { seq }.into());
            }
            if chain::link_hash(&prev, seq, source, received_at, &body_hash) != hash {
                return Err(ChainFault::Hash { seq }.into());
            }
            if let Some((pin_seq, _)) = pin {
                if pin_seq == seq {
                    pin_found = Some(hash);
                }
            }
            prev = hash;
            expected_seq += 1;
            if seq.is_multiple_of(PROGRESS_EVERY) {
                progress(seq);
            }
        }
        let head_seq = expected_seq - 1;
        if let Some((pin_seq, pin_hash)) = pin {
            match pin_found {
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
    })();
    conn.execute_batch("COMMIT")?;
    result
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
