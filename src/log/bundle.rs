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
use super::note;
use super::tree::{self, HashCache, ProofError};

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
/// snapshot, so the checkpoint and the proof agree; the tree's upper
/// levels through `cache`.
pub fn of_event(conn: &Connection, cache: &HashCache, seq: u64) -> Result<Bundle, BundleError> {
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
    let proof = tree::inclusion(conn, cache, seq, checkpoint.size)?;
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

// ---------------------------------------------------------------------------
// The offline check: nothing but the bundle and the verifier key.

/// The links of a bundle's chain of evidence, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The body hashes to body_hash (blake3).
    Body,
    /// The entry decodes, carries body_hash, and its seq is leaf_index + 1.
    Entry,
    /// The leaf (SHA-256(0x00 || entry)) is at an index inside the tree.
    Leaf,
    /// The inclusion proof leads from the leaf to the checkpoint's root, at
    /// the checkpoint's size.
    Root,
    /// The checkpoint is signed by the verifier key, for its origin.
    Signature,
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Link::Body => "body",
            Link::Entry => "entry",
            Link::Leaf => "leaf",
            Link::Root => "root",
            Link::Signature => "signature",
        })
    }
}

/// Why a bundle does not prove its delivery: the first link that broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("the body is not base64")]
    BodyNotBase64,
    #[error("body_hash is not 64 lowercase hex digits")]
    BodyHashMalformed,
    #[error("a redacted bundle carries a body")]
    RedactedWithBody,
    #[error("the body hashes to {actual}, not to body_hash {expected}")]
    BodyMismatch { expected: String, actual: String },
    #[error("the entry is not base64")]
    EntryNotBase64,
    #[error(transparent)]
    EntryMalformed(#[from] merkle::EntryError),
    #[error("the entry's body hash is not body_hash")]
    EntryBodyHash,
    #[error("the entry's seq {entry} is not leaf_index + 1 ({expected})")]
    EntrySeq { entry: u64, expected: u64 },
    #[error("the bundle's seq {bundle} is not the entry's {entry}")]
    BundleSeq { bundle: u64, entry: u64 },
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    LeafNotInTree { index: u64, size: u64 },
    #[error("the checkpoint's text: {0}")]
    CheckpointText(note::CheckpointError),
    #[error("the bundle's tree_size {bundle} is not the checkpoint's size {checkpoint}")]
    SizeMismatch { bundle: u64, checkpoint: u64 },
    #[error("an inclusion hash is not the base64 of 32 bytes")]
    HashNotBase64,
    #[error("the inclusion proof: {0}")]
    Inclusion(merkle::ProofError),
    #[error(transparent)]
    Signature(note::NoteError),
    #[error("the signed checkpoint is not the one the proof was checked against")]
    SignedTextDiffers,
    #[error("the checkpoint's origin {origin:?} is not the key's name {key:?}")]
    Origin { origin: String, key: String },
}

impl CheckError {
    /// The link that broke.
    pub fn link(&self) -> Link {
        match self {
            CheckError::BodyNotBase64
            | CheckError::BodyHashMalformed
            | CheckError::RedactedWithBody
            | CheckError::BodyMismatch { .. } => Link::Body,
            CheckError::EntryNotBase64
            | CheckError::EntryMalformed(_)
            | CheckError::EntryBodyHash
            | CheckError::EntrySeq { .. }
            | CheckError::BundleSeq { .. } => Link::Entry,
            CheckError::LeafNotInTree { .. } => Link::Leaf,
            CheckError::CheckpointText(_)
            | CheckError::SizeMismatch { .. }
            | CheckError::HashNotBase64
            | CheckError::Inclusion(_) => Link::Root,
            CheckError::Signature(_)
            | CheckError::SignedTextDiffers
            | CheckError::Origin { .. } => Link::Signature,
        }
    }
}

/// What a bundle that checks proves: this entry is leaf `leaf_index` of the
/// log `checkpoint.origin` at `checkpoint.size` leaves, signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    pub entry: merkle::LeafEntry,
    pub checkpoint: note::Checkpoint,
}

/// Checks `bundle` link by link ([`Link`]) with `key`, reading nothing
/// else. The signature comes last so each earlier link is named by what
/// the bundle itself holds; a bundle is proven only if all five hold.
pub fn check(bundle: &Bundle, key: &note::VerifierKey) -> Result<Proven, CheckError> {
    // Body.
    // Lowercase only: one text per hash, so no byte of it can change
    // without the check seeing it.
    let body_hash: [u8; 32] = hex::decode(&bundle.body_hash)
        .ok()
        .and_then(|h| h.try_into().ok())
        .filter(|h: &[u8; 32]| hex::encode(h) == bundle.body_hash)
        .ok_or(CheckError::BodyHashMalformed)?;
    let body = BASE64
        .decode(&bundle.body)
        .map_err(|_| CheckError::BodyNotBase64)?;
    if bundle.redacted {
        // The leaf is kept; the body is gone, so the hash stands alone.
        if !body.is_empty() {
            return Err(CheckError::RedactedWithBody);
        }
    } else {
        let actual = super::chain::body_hash(&body);
        if actual != body_hash {
            return Err(CheckError::BodyMismatch {
                expected: bundle.body_hash.clone(),
                actual: hex::encode(actual),
            });
        }
    }
    // Entry.
    let entry_bytes = BASE64
        .decode(&bundle.entry)
        .map_err(|_| CheckError::EntryNotBase64)?;
    let entry = merkle::LeafEntry::parse(&entry_bytes)?;
    if entry.body_hash != body_hash {
        return Err(CheckError::EntryBodyHash);
    }
    let expected = bundle.leaf_index.saturating_add(1);
    if entry.seq != expected {
        return Err(CheckError::EntrySeq {
            entry: entry.seq,
            expected,
        });
    }
    if bundle.seq != entry.seq {
        return Err(CheckError::BundleSeq {
            bundle: bundle.seq,
            entry: entry.seq,
        });
    }
    // Leaf.
    if bundle.leaf_index >= bundle.tree_size {
        return Err(CheckError::LeafNotInTree {
            index: bundle.leaf_index,
            size: bundle.tree_size,
        });
    }
    let leaf = merkle::leaf_hash(&entry_bytes);
    // Root: the checkpoint's text is the note up to its blank line (all of
    // it for an unsigned note, whose signature link then fails).
    let text = match bundle.checkpoint.rfind("\n\n") {
        Some(split) => &bundle.checkpoint[..split + 1],
        None => &bundle.checkpoint[..],
    };
    let checkpoint = note::Checkpoint::parse(text).map_err(CheckError::CheckpointText)?;
    if bundle.tree_size != checkpoint.size {
        return Err(CheckError::SizeMismatch {
            bundle: bundle.tree_size,
            checkpoint: checkpoint.size,
        });
    }
    if bundle.inclusion.len() > merkle::MAX_PROOF_HASHES {
        return Err(CheckError::Inclusion(merkle::ProofError::TooLong {
            len: bundle.inclusion.len(),
        }));
    }
    let path = bundle
        .inclusion
        .iter()
        .map(|h| {
            BASE64
                .decode(h)
                .ok()
                .and_then(|h| <merkle::Hash>::try_from(h).ok())
                .ok_or(CheckError::HashNotBase64)
        })
        .collect::<Result<Vec<_>, _>>()?;
    merkle::verify_inclusion(
        &leaf,
        bundle.leaf_index,
        checkpoint.size,
        &path,
        &checkpoint.root,
    )
    .map_err(CheckError::Inclusion)?;
    // Signature.
    let signed = note::open(bundle.checkpoint.as_bytes(), key).map_err(CheckError::Signature)?;
    if signed != checkpoint {
        return Err(CheckError::SignedTextDiffers);
    }
    if checkpoint.origin != key.name() {
        return Err(CheckError::Origin {
            origin: checkpoint.origin,
            key: key.name().to_string(),
        });
    }
    Ok(Proven { entry, checkpoint })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{self, chain, checkpoints::Maker, note};

    #[test]
    fn a_bundle_proves_its_event_against_the_newest_checkpoint_covering_it() {
        let (_dir, conn) = log::test_log(9);
        assert!(matches!(
            of_event(&conn, &HashCache::new(), 3),
            Err(BundleError::NotCheckpointed {
                seq: 3,
                newest: None
            })
        ));
        let maker = Maker::unsigned("registrar/test");
        let root5 = tree::stored_root(&conn, 5).unwrap();
        maker.make_if_moved(&conn, 5, root5, 1).unwrap();
        assert!(matches!(
            of_event(&conn, &HashCache::new(), 6),
            Err(BundleError::NotCheckpointed {
                seq: 6,
                newest: Some(5)
            })
        ));
        assert!(matches!(
            of_event(&conn, &HashCache::new(), 10),
            Err(BundleError::NoSuchEvent { seq: 10 })
        ));
        let root9 = log::tail(&conn).unwrap().root().unwrap();
        maker.make_if_moved(&conn, 9, root9, 2).unwrap();
        for seq in 1..=9 {
            let b = of_event(&conn, &HashCache::new(), seq).unwrap();
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

    /// A signed bundle of event 5 of a log of 11 (a path with a left and a
    /// right sibling), and its key.
    fn signed_bundle() -> (Bundle, note::VerifierKey) {
        let (_dir, conn) = log::test_log(11);
        let key = || note::SigningKey::from_seed("registrar/test", &[3; 32]).unwrap();
        let maker = Maker {
            signer: Some(std::sync::Arc::new(key())),
            ..Maker::unsigned("registrar/test")
        };
        let root = log::tail(&conn).unwrap().root().unwrap();
        maker.make_if_moved(&conn, 11, root, 1).unwrap();
        (
            of_event(&conn, &HashCache::new(), 5).unwrap(),
            key().verifier(),
        )
    }

    /// `text` with its byte `i` changed (kept ASCII, so the JSON field is
    /// still a string).
    fn flipped(text: &str, i: usize) -> String {
        let mut bytes = text.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_good_bundle_checks_and_says_what_it_proves() {
        let (b, key) = signed_bundle();
        let proven = check(&b, &key).unwrap();
        assert_eq!(proven.entry.seq, 5);
        assert_eq!(proven.checkpoint.size, 11);
        assert_eq!(proven.checkpoint.origin, "registrar/test");
    }

    #[test]
    fn changing_any_byte_of_a_bundle_fails_its_check_naming_the_link() {
        let (good, key) = signed_bundle();
        let fails = |b: &Bundle| check(b, &key).map(|_| ()).map_err(|e| e.link());
        // Any byte of the body (its base64 text, and each decoded byte).
        let body = BASE64.decode(&good.body).unwrap();
        for i in 0..body.len() {
            let mut changed = body.clone();
            changed[i] ^= 1;
            let b = Bundle {
                body: BASE64.encode(&changed),
                ..good.clone()
            };
            assert_eq!(fails(&b), Err(Link::Body), "body byte {i}");
        }
        for i in 0..good.body_hash.len() {
            let b = Bundle {
                body_hash: flipped(&good.body_hash, i),
                ..good.clone()
            };
            assert_eq!(fails(&b), Err(Link::Body), "body_hash byte {i}");
        }
        // Any byte of the entry: its tag, seq, body hash are the entry
        // link's; its source and time change the leaf, so the root's.
        let entry = BASE64.decode(&good.entry).unwrap();
        for i in 0..entry.len() {
            let mut changed = entry.clone();
            changed[i] ^= 1;
            let b = Bundle {
                entry: BASE64.encode(&changed),
                ..good.clone()
            };
            let link = fails(&b).unwrap_err();
            assert!(
                matches!(link, Link::Entry | Link::Root),
                "entry byte {i}: {link}"
            );
        }
        // Any byte of any inclusion hash.
        for (h, hash) in good.inclusion.iter().enumerate() {
            let raw = BASE64.decode(hash).unwrap();
            for i in 0..raw.len() {
                let mut changed = raw.clone();
                changed[i] ^= 1;
                let mut b = good.clone();
                b.inclusion[h] = BASE64.encode(&changed);
                assert_eq!(fails(&b), Err(Link::Root), "hash {h} byte {i}");
            }
        }
        // A hash missing or added.
        let mut b = good.clone();
        b.inclusion.pop();
        assert_eq!(fails(&b), Err(Link::Root));
        // The size, in the bundle or in the note.
        for size in [10, 12] {
            let b = Bundle {
                tree_size: size,
                ..good.clone()
            };
            assert_eq!(fails(&b), Err(Link::Root), "tree_size {size}");
        }
        let b = Bundle {
            checkpoint: good.checkpoint.replacen("\n11\n", "\n12\n", 1),
            ..good.clone()
        };
        assert_eq!(fails(&b), Err(Link::Root));
        // The leaf index and seq.
        let b = Bundle {
            leaf_index: 5,
            ..good.clone()
        };
        assert_eq!(fails(&b), Err(Link::Entry));
        let b = Bundle {
            seq: 6,
            ..good.clone()
        };
        assert_eq!(fails(&b), Err(Link::Entry));
        // Any byte of the signature line after the key's name.
        let sig_at = good.checkpoint.rfind(' ').unwrap() + 1;
        for i in sig_at..good.checkpoint.len() - 1 {
            let b = Bundle {
                checkpoint: flipped(&good.checkpoint, i),
                ..good.clone()
            };
            assert_eq!(fails(&b), Err(Link::Signature), "signature byte {i}");
        }
        // Another key, and no signature at all.
        let other = note::SigningKey::from_seed("registrar/test", &[4; 32]).unwrap();
        assert_eq!(
            check(&good, &other.verifier()).unwrap_err().link(),
            Link::Signature
        );
        let text_only = good.checkpoint[..good.checkpoint.rfind("\n\n").unwrap() + 1].to_string();
        let b = Bundle {
            checkpoint: text_only,
            ..good.clone()
        };
        assert_eq!(fails(&b), Err(Link::Signature));
    }
}
