//! Bundles: one JSON document that proves one delivery offline, against the
//! newest checkpoint that covers it. Made here from the log file (the body,
//! the leaf, the inclusion proof, the checkpoint's note); read back and
//! checked link by link by `registrar proof check`
//! ([`crate::commands::proof`]), which needs nothing but the bundle and the
//! verifier key.
//!
//! ```text
//! {
//!   "seq": 7,                      the event's seq (leaf_index + 1)
//!   "body": "<base64>",            the exact bytes stored (standard base64, padded)
//!   "body_hash": "<hex>",          blake3 of the body, 64 lowercase hex digits
//!   "entry": "<base64>",           the leaf's entry bytes (README: leaf encoding v1)
//!   "leaf_index": 6,
//!   "tree_size": 9,                the checkpoint's size
//!   "inclusion": ["<base64>", …],  RFC 9162 inclusion path, leaf's sibling first
//!   "checkpoint": "<note text>",   the signed note, exactly as served
//!   "redacted": false
//! }
//! ```

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::checkpoints;
use super::merkle;
use super::tree::{self, ProofError};

/// One delivery's proof, as served and as `proof check` reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub seq: u64,
    /// Base64 of the body's exact bytes.
    pub body: String,
    /// blake3 of the body, hex.
    pub body_hash: String,
    /// Base64 of the leaf's entry bytes.
    pub entry: String,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Base64 hashes, RFC 9162 order.
    pub inclusion: Vec<String>,
    /// The checkpoint's note text.
    pub checkpoint: String,
    /// Whether the body was removed (its leaf stays). Always false until
    /// redaction exists.
    pub redacted: bool,
}

/// Why a bundle was not made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("no event has seq {seq}")]
    NoSuchEvent { seq: u64 },
    /// The event came after the newest checkpoint (or none exists yet):
    /// there is nothing signed to prove it against until the next one.
    #[error("seq {seq} is not covered by a checkpoint yet (newest: {})", newest.map_or("none".to_string(), |n| n.to_string()))]
    NotCheckpointed { seq: u64, newest: Option<u64> },
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// The bundle of the event with seq `seq`, against the newest checkpoint
/// (which covers every seq up to its size). Reads inside the caller's
/// snapshot, so the checkpoint and the proof agree.
pub fn of_event(conn: &Connection, seq: u64) -> Result<Bundle, BundleError> {
    let event = super::get(conn, seq)?.ok_or(BundleError::NoSuchEvent { seq })?;
    let checkpoint = checkpoints::newest(conn)?;
    let checkpoint = match checkpoint {
        Some(c) if c.size >= seq => c,
        other => {
            return Err(BundleError::NotCheckpointed {
                seq,
                newest: other.map(|c| c.size),
            })
        }
    };
    let proof = tree::inclusion(conn, seq, checkpoint.size)?;
    let entry = merkle::entry_bytes(seq, &event.source, event.received_at, &event.body_hash);
    // The stored leaf is the one this event's row encodes, unless the file
    // was edited around its triggers (verify names that).
    debug_assert_eq!(merkle::leaf_hash(&entry), proof.leaf_hash);
    Ok(Bundle {
        seq,
        body: BASE64.encode(&event.body),
        body_hash: hex::encode(event.body_hash),
        entry: BASE64.encode(&entry),
        leaf_index: proof.leaf_index,
        tree_size: proof.tree_size,
        inclusion: proof.hashes.iter().map(|h| BASE64.encode(h)).collect(),
        checkpoint: checkpoint.note,
        redacted: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{self, chain, checkpoints::Maker, note};

    #[test]
    fn a_bundle_proves_its_event_against_the_newest_checkpoint_covering_it() {
        let (_dir, conn) = log::test_log(9);
        assert!(matches!(
            of_event(&conn, 3),
            Err(BundleError::NotCheckpointed {
                seq: 3,
                newest: None
            })
        ));
        let maker = Maker::unsigned("registrar/test");
        let root5 = tree::stored_root(&conn, 5).unwrap();
        maker.make_if_moved(&conn, 5, root5, 1).unwrap();
        assert!(matches!(
            of_event(&conn, 6),
            Err(BundleError::NotCheckpointed {
                seq: 6,
                newest: Some(5)
            })
        ));
        assert!(matches!(
            of_event(&conn, 10),
            Err(BundleError::NoSuchEvent { seq: 10 })
        ));
        let root9 = log::tail(&conn).unwrap().root();
        maker.make_if_moved(&conn, 9, root9, 2).unwrap();
        for seq in 1..=9 {
            let b = of_event(&conn, seq).unwrap();
            let event = log::get(&conn, seq).unwrap().unwrap();
            assert_eq!(BASE64.decode(&b.body).unwrap(), event.body);
            assert_eq!(b.body_hash, hex::encode(chain::body_hash(&event.body)));
            assert_eq!((b.seq, b.leaf_index, b.tree_size), (seq, seq - 1, 9));
            assert!(!b.redacted);
            let cp = note::Checkpoint::parse(&b.checkpoint).unwrap();
            assert_eq!((cp.size, cp.root), (9, root9));
            let entry = merkle::LeafEntry::parse(&BASE64.decode(&b.entry).unwrap()).unwrap();
            assert_eq!(entry.seq, seq);
            assert_eq!(entry.body_hash, event.body_hash);
            let path: Vec<merkle::Hash> = b
                .inclusion
                .iter()
                .map(|h| BASE64.decode(h).unwrap().try_into().unwrap())
                .collect();
            merkle::verify_inclusion(&entry.leaf_hash(), b.leaf_index, 9, &path, &root9).unwrap();
            // The JSON reads back to the same bundle.
            let json = serde_json::to_string(&b).unwrap();
            assert_eq!(serde_json::from_str::<Bundle>(&json).unwrap(), b);
        }
    }
}
