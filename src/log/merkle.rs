//! The log as an RFC 9162 Merkle tree: the leaf encoding, the hashes kept so
//! that any tree size can be rooted and proven from O(log n) of them, the
//! proofs, and the verifiers an auditor runs offline.
//!
//! Leaf entry, version 1 (the chain's fields, [`super::chain`], without
//! `prev_hash`), and the tree's hashes (RFC 9162 §2.1.1, SHA-256):
//!
//! ```text
//! entry = "registrar.leaf.v1" 0x00
//!       || seq                  u64, big-endian
//!       || len(source)          u8
//!       || source               ASCII ("jodo" | "toolzz")
//!       || received_at          i64 unix microseconds, big-endian
//!       || body_hash            32 bytes = blake3(body)
//!
//! leaf_hash = SHA-256(0x00 || entry)          leaf index i is seq i + 1
//! node_hash = SHA-256(0x01 || left || right)
//! MTH({})   = SHA-256()                       the empty tree
//! MTH(D[n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))
//!             k the largest power of two below n
//! ```
//!
//! A redacted body keeps its leaf: the entry holds the body's hash, not the
//! body. Every field has a fixed width or a length prefix and the domain tag
//! names the version, as in the chain.
//!
//! **Stored hashes** (Go's sumdb `tlog`, the layout C2SP `tlog-tiles` serves):
//! the hash of every complete subtree (2^L leaves starting at a multiple of
//! 2^L) is stored once, when its last leaf arrives, at a dense index,
//! [`stored_hash_index`]. Adding leaf `n` stores its leaf hash and one hash
//! per subtree it completes (1 + the trailing ones of `n`): just under two per
//! leaf on average, [`stored_hash_count`]. Those never change, and any tree
//! size up to the leaves stored is a left-to-right run of complete subtrees,
//! so roots ([`root`]) and proofs ([`inclusion_proof`],
//! [`consistency_proof`]) of any past size read O(log n) stored hashes, in
//! one call to [`StoredHashes::read`]. The storage is the caller's: a table,
//! [`MemoryHashes`], or tiles. [`Frontier`] keeps the O(log n) hashes an
//! appender needs, so adding a leaf reads nothing.
//!
//! The verifiers, [`verify_inclusion`] and [`verify_consistency`], are RFC
//! 9162 §2.1.3.2 and §2.1.4.2 and read nothing: an auditor runs them on a
//! proof, a root and a size alone.

use sha2::{Digest, Sha256};

use super::chain;

/// A SHA-256 digest: a leaf, a node or a root.
pub type Hash = [u8; 32];

/// The domain separation tag of leaf encoding v1.
pub const LEAF_TAG_V1: &[u8] = b"registrar.leaf.v1\0";

/// The encoded length of an entry without its source.
const ENTRY_FIXED_LEN: usize = LEAF_TAG_V1.len() + 8 + 1 + 8 + 32;

/// The root of the empty tree: SHA-256 of nothing (RFC 9162 §2.1.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The most leaves a tree may have. Stored hash indexes run to about twice
/// the leaf count and are kept in SQLite's signed 64-bit INTEGER, so leaves
/// stay below 2^62. (The log's seq is an INTEGER too.)
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// The most hashes a proof may hold. An inclusion proof has one per level
/// (at most 62 below [`MAX_TREE_SIZE`]), a consistency proof at most one
/// more. The verifiers refuse longer ones before hashing anything, so a
/// hostile bundle costs an auditor no more than a real one.
pub const MAX_PROOF_HASHES: usize = 64;

/// The entry bytes of one event (see the module's encoding).
pub fn entry_bytes(
    seq: u64,
    source: &str,
    received_at_micros: i64,
    body_hash: &chain::Hash,
) -> Vec<u8> {
    assert!(
        source.len() <= usize::from(u8::MAX),
        "source name too long for the encoding"
    );
    assert!(source.is_ascii(), "a source name is ASCII");
    let mut e = Vec::with_capacity(ENTRY_FIXED_LEN + source.len());
    e.extend_from_slice(LEAF_TAG_V1);
    e.extend_from_slice(&seq.to_be_bytes());
    e.push(source.len() as u8);
    e.extend_from_slice(source.as_bytes());
    e.extend_from_slice(&received_at_micros.to_be_bytes());
    e.extend_from_slice(body_hash);
    e
}

/// The hash of a leaf whose entry is `entry`: SHA-256(0x00 || entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The leaf index of the event with seq `seq` (seqs start at 1).
pub fn leaf_index(seq: u64) -> u64 {
    assert!(seq >= 1, "seqs start at 1");
    seq - 1
}

/// One leaf's entry, decoded: what an offline check compares with the body
/// and the bundle's other fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafEntry {
    pub seq: u64,
    pub source: String,
    /// Unix microseconds.
    pub received_at: i64,
    /// blake3 of the body.
    pub body_hash: chain::Hash,
}

/// Why bytes are not a v1 leaf entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("the entry does not start with the tag \"registrar.leaf.v1\" 0x00")]
    UnknownTag,
    #[error("the entry ends inside its {field}")]
    Truncated { field: &'static str },
    #[error("the entry's source is not ASCII")]
    SourceNotAscii,
    #[error("the entry's seq is 0; seqs start at 1")]
    ZeroSeq,
    #[error("{extra} bytes follow the entry's body hash")]
    TrailingBytes { extra: usize },
}

impl LeafEntry {
    /// The entry's bytes (see the module's encoding).
    pub fn encode(&self) -> Vec<u8> {
        entry_bytes(self.seq, &self.source, self.received_at, &self.body_hash)
    }

    /// Its leaf hash.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.encode())
    }

    /// Its index in the tree.
    pub fn leaf_index(&self) -> u64 {
        leaf_index(self.seq)
    }

    /// Decodes an entry; exactly the bytes [`LeafEntry::encode`] writes.
    pub fn parse(bytes: &[u8]) -> Result<LeafEntry, EntryError> {
        let rest = bytes
            .strip_prefix(LEAF_TAG_V1)
            .ok_or(EntryError::UnknownTag)?;
        let (seq, rest) = take::<8>(rest, "seq")?;
        let (len, rest) = take::<1>(rest, "source length")?;
        let len = usize::from(len[0]);
        if rest.len() < len {
            return Err(EntryError::Truncated { field: "source" });
        }
        let (source, rest) = rest.split_at(len);
        if !source.is_ascii() {
            return Err(EntryError::SourceNotAscii);
        }
        let (received_at, rest) = take::<8>(rest, "received_at")?;
        let (body_hash, rest) = take::<32>(rest, "body hash")?;
        if !rest.is_empty() {
            return Err(EntryError::TrailingBytes { extra: rest.len() });
        }
        let seq = u64::from_be_bytes(seq);
        if seq == 0 {
            return Err(EntryError::ZeroSeq);
        }
        Ok(LeafEntry {
            seq,
            // ASCII, checked above.
            source: source.iter().map(|&b| char::from(b)).collect(),
            received_at: i64::from_be_bytes(received_at),
            body_hash,
        })
    }
}

/// The first `N` bytes of `bytes` and the rest, or which field ran short.
fn take<'a, const N: usize>(
    bytes: &'a [u8],
    field: &'static str,
) -> Result<([u8; N], &'a [u8]), EntryError> {
    if bytes.len() < N {
        return Err(EntryError::Truncated { field });
    }
    let (head, rest) = bytes.split_at(N);
    Ok((head.try_into().expect("split at N"), rest))
}

// ---------------------------------------------------------------------------
// Stored hashes.

/// Where the stored hashes live. The tree functions ask for all the hashes
/// one operation needs in one call.
pub trait StoredHashes {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The hashes at `indexes` ([`stored_hash_index`]), one for each, in the
    /// same order. The tree functions always ask in increasing index order.
    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error>;
}

/// Why a root or a proof could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TreeError<E: std::error::Error + 'static> {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    LeafNotInTree { index: u64, size: u64 },
    #[error("no consistency proof from a tree of {from} leaves to a smaller one of {to}")]
    SizesReversed { from: u64, to: u64 },
    #[error("a tree of {size} leaves is past the limit of {MAX_TREE_SIZE}")]
    TooLarge { size: u64 },
    #[error("reading stored hashes")]
    Read(#[source] E),
}

/// The stored index of the `k`th hash from the left at `level` (0: leaves):
/// the hash of leaves `[k·2^level, (k+1)·2^level)`.
///
/// Leaf `j` stores 1 + trailing_ones(j) hashes, so leaves `0..n` store
/// `n + Σ_{j<n} trailing_ones(j) = 2n − popcount(n)` (Legendre). A subtree's
/// hash is stored by its last leaf `n`, right after that leaf's own hash and
/// the `level − 1` smaller subtrees it completes first.
pub fn stored_hash_index(level: u8, k: u64) -> u64 {
    assert!(level < 63, "no level past the tree's height");
    assert!(
        k < MAX_TREE_SIZE >> level,
        "no subtree past the largest tree"
    );
    let last = ((k + 1) << level) - 1;
    stored_before(last) + u64::from(level)
}

/// How many hashes a tree of `leaves` leaves stores.
pub fn stored_hash_count(leaves: u64) -> u64 {
    assert!(leaves <= MAX_TREE_SIZE, "past the largest tree");
    stored_before(leaves)
}

/// The leaf that stores the hash at stored index `index`, and the hash's
/// level: the inverse of [`stored_hash_index`] (which is
/// `stored_hash_index(level, leaf >> level)`). A storage that keeps each
/// leaf's hashes in one row (its own and the subtrees it completes, at
/// consecutive indexes) finds a hash's row with it.
pub fn stored_hash_leaf(index: u64) -> (u64, u8) {
    assert!(
        index < stored_hash_count(MAX_TREE_SIZE),
        "past the largest tree"
    );
    // stored_before(n) = 2n - popcount(n) lies in [2n - 63, 2n], so the
    // leaf is at most 32 past index / 2.
    let mut leaf = index / 2;
    while stored_before(leaf + 1) <= index {
        leaf += 1;
    }
    let level = index - stored_before(leaf);
    assert!(
        level <= u64::from(leaf.trailing_ones()),
        "a leaf stores 1 + trailing_ones hashes"
    );
    (leaf, level as u8)
}

/// Hashes stored by leaves `0..n`.
fn stored_before(n: u64) -> u64 {
    2 * n - u64::from(n.count_ones())
}

/// The hashes to store when leaf `n` (0-based: the tree grows from `n` to
/// `n + 1` leaves) with hash `leaf` is added, each with its stored index: its
/// leaf hash at `stored_hash_index(0, n)`, then one per subtree it completes,
/// at the following indexes. Reads one stored hash per completed subtree
/// (none for an even `n`); [`Frontier::push`] gives the same without reading.
pub fn hashes_to_store<R: StoredHashes>(
    n: u64,
    leaf: &Hash,
    reader: &R,
) -> Result<Vec<(u64, Hash)>, TreeError<R::Error>> {
    if n >= MAX_TREE_SIZE {
        return Err(TreeError::TooLarge { size: n + 1 });
    }
    // Each trailing one of n is a left sibling, complete since its last leaf,
    // that leaf n's subtree now joins: at level i, subtree (n >> i) - 1.
    let completes = n.trailing_ones() as u8;
    let indexes: Vec<u64> = (0..completes)
        .rev()
        .map(|level| stored_hash_index(level, (n >> level) - 1))
        .collect();
    let siblings = read_exactly(reader, &indexes)?;
    let first = stored_hash_index(0, n);
    let mut out = Vec::with_capacity(1 + usize::from(completes));
    let mut h = *leaf;
    out.push((first, h));
    // `siblings` is in increasing index order: the highest level first.
    for (i, sibling) in siblings.iter().rev().enumerate() {
        h = node_hash(sibling, &h);
        out.push((first + 1 + i as u64, h));
    }
    Ok(out)
}

/// Reads `indexes`, asserting the reader's side of the contract.
fn read_exactly<R: StoredHashes>(
    reader: &R,
    indexes: &[u64],
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    debug_assert!(indexes.windows(2).all(|w| w[0] < w[1]), "indexes increase");
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read(indexes).map_err(TreeError::Read)?;
    assert_eq!(
        hashes.len(),
        indexes.len(),
        "a StoredHashes reader returns one hash per index"
    );
    Ok(hashes)
}

/// Leaves `[lo, hi)`: one hash of a proof is the MTH of a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    lo: u64,
    hi: u64,
}

/// The largest power of two strictly below `n` (RFC 9162's `k`), `n > 1`.
fn split(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

/// The complete subtrees of a span, left to right (decreasing sizes), as
/// (level, k): the stored hashes its MTH folds from the right.
fn complete_subtrees(span: Span, out: &mut Vec<(u8, u64)>) {
    let mut lo = span.lo;
    while lo < span.hi {
        let size = span.hi - lo;
        let level = 63 - size.leading_zeros() as u8;
        // A span of the RFC's recursion starts at a multiple of every
        // power of two not larger than itself.
        assert_eq!(
            lo & ((1 << level) - 1),
            0,
            "a subtree starts at a multiple of its size"
        );
        out.push((level, lo >> level));
        lo += 1 << level;
    }
}

/// The MTH of each span from the stored hashes, in one read.
fn span_hashes<R: StoredHashes>(
    spans: &[Span],
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    // Read in leaf order, which is increasing stored index order: a subtree
    // that ends earlier was stored earlier.
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| spans[i].lo);
    let mut subtrees = Vec::new();
    let mut counts = vec![0; spans.len()];
    for &i in &order {
        let before = subtrees.len();
        complete_subtrees(spans[i], &mut subtrees);
        counts[i] = subtrees.len() - before;
    }
    let indexes: Vec<u64> = subtrees
        .iter()
        .map(|&(l, k)| stored_hash_index(l, k))
        .collect();
    let hashes = read_exactly(reader, &indexes)?;
    let mut out = vec![[0u8; 32]; spans.len()];
    let mut at = 0;
    for &i in &order {
        let own = &hashes[at..at + counts[i]];
        at += counts[i];
        let (last, rest) = own.split_last().expect("a span is not empty");
        out[i] = rest
            .iter()
            .rev()
            .fold(*last, |right, left| node_hash(left, &right));
    }
    assert_eq!(at, hashes.len(), "every hash read belongs to a span");
    Ok(out)
}

/// The root (MTH) of the tree of the first `size` leaves.
pub fn root<R: StoredHashes>(size: u64, reader: &R) -> Result<Hash, TreeError<R::Error>> {
    if size > MAX_TREE_SIZE {
        return Err(TreeError::TooLarge { size });
    }
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    Ok(span_hashes(&[Span { lo: 0, hi: size }], reader)?[0])
}

/// The inclusion proof of leaf `index` in the tree of the first `size`
/// leaves: RFC 9162's PATH(index, D[size]), from the leaf's sibling up.
pub fn inclusion_proof<R: StoredHashes>(
    index: u64,
    size: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if size > MAX_TREE_SIZE {
        return Err(TreeError::TooLarge { size });
    }
    if index >= size {
        return Err(TreeError::LeafNotInTree { index, size });
    }
    // PATH(m, D[lo:hi]) = PATH(m, D[lo:lo+k]) : MTH(D[lo+k:hi]) if m < lo+k,
    //                     PATH(m, D[lo+k:hi]) : MTH(D[lo:lo+k]) otherwise;
    // walked from the root down, so reversed at the end.
    let mut spans = Vec::new();
    let (mut lo, mut hi) = (0, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            spans.push(Span { lo: lo + k, hi });
            hi = lo + k;
        } else {
            spans.push(Span { lo, hi: lo + k });
            lo += k;
        }
    }
    spans.reverse();
    assert!(spans.len() <= MAX_PROOF_HASHES);
    span_hashes(&spans, reader)
}

/// The consistency proof that the tree of the first `from` leaves is a
/// prefix of the tree of the first `to`: RFC 9162's PROOF(from, D[to]),
/// bottom up. Empty when `from` is 0 or `to`.
pub fn consistency_proof<R: StoredHashes>(
    from: u64,
    to: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    if to > MAX_TREE_SIZE {
        return Err(TreeError::TooLarge { size: to });
    }
    if from > to {
        return Err(TreeError::SizesReversed { from, to });
    }
    if from == 0 || from == to {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[lo:hi], b):
    //   m = hi: {} if b, else {MTH(D[lo:hi])}
    //   m <= lo+k: SUBPROOF(m, D[lo:lo+k], b) : MTH(D[lo+k:hi])
    //   m > lo+k:  SUBPROOF(m, D[lo+k:hi], false) : MTH(D[lo:lo+k])
    // walked from the root down, so reversed at the end.
    let mut spans = Vec::new();
    let (mut lo, mut hi, mut whole) = (0, to, true);
    while from != hi {
        let k = split(hi - lo);
        if from <= lo + k {
            spans.push(Span { lo: lo + k, hi });
            hi = lo + k;
        } else {
            spans.push(Span { lo, hi: lo + k });
            lo += k;
            whole = false;
        }
    }
    if !whole {
        spans.push(Span { lo, hi });
    }
    spans.reverse();
    assert!(spans.len() <= MAX_PROOF_HASHES);
    span_hashes(&spans, reader)
}

// ---------------------------------------------------------------------------
// Verifiers: no stored hashes, nothing but the proof.

/// Why a proof does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    LeafNotInTree { index: u64, size: u64 },
    #[error("a tree of {from} leaves cannot be a prefix of a smaller one of {to}")]
    SizesReversed { from: u64, to: u64 },
    #[error("the proof has {len} hashes, more than any tree needs ({MAX_PROOF_HASHES})")]
    TooLong { len: usize },
    #[error("the proof has {got} hashes where these sizes need {expected}")]
    WrongLength { expected: usize, got: usize },
    #[error("the inclusion proof leads to another root")]
    RootMismatch,
    #[error("the consistency proof does not lead to the old root")]
    OldRootMismatch,
    #[error("the consistency proof does not lead to the new root")]
    NewRootMismatch,
}

/// How many hashes the inclusion proof of leaf `index` in a tree of `size`
/// holds (`index < size`): the levels below the node where the leaf's path
/// and the last leaf's part (`inner`), plus the left siblings above it on
/// the tree's right border (`border`).
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    assert!(index < size);
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    // (A shift by 64, for sizes past 2^63, leaves nothing.)
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// How many hashes the consistency proof from `from` to `to` leaves holds.
pub fn consistency_proof_len(from: u64, to: u64) -> usize {
    assert!(from <= to);
    if from == 0 || from == to {
        return 0;
    }
    // The inclusion path of the old tree's last leaf, less the levels inside
    // the old tree's rightmost complete subtree, whose hash opens the proof
    // unless that subtree is the whole old tree (the verifier has its root).
    let shift = from.trailing_zeros() as usize;
    let seed = usize::from(!from.is_power_of_two());
    seed + inclusion_proof_len(from - 1, to) - shift
}

/// Checks that `proof` proves the leaf with hash `leaf` is at `index` in the
/// tree of `size` leaves whose root is `root` (RFC 9162 §2.1.3.2).
///
/// The size is only as good as the root it comes with: take both from one
/// signed checkpoint. (A proof can also fit a larger size whose tree has the
/// same path shape; only that size's root tells them apart.)
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::LeafNotInTree { index, size });
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::TooLong { len: proof.len() });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        // The length check above leaves no proof running past the root.
        assert_ne!(sn, 0, "inclusion_proof_len agrees with RFC 9162's walk");
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    assert_eq!(sn, 0, "inclusion_proof_len agrees with RFC 9162's walk");
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that `proof` proves the tree of `from` leaves with root `old_root`
/// is a prefix of the tree of `to` leaves with root `new_root` (RFC 9162
/// §2.1.4.2). The empty tree is a prefix of every tree, and a tree of
/// itself: both need an empty proof and the roots to match.
pub fn verify_consistency(
    from: u64,
    to: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if from > to {
        return Err(ProofError::SizesReversed { from, to });
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::TooLong { len: proof.len() });
    }
    let expected = consistency_proof_len(from, to);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    if from == 0 {
        if *old_root != EMPTY_ROOT {
            return Err(ProofError::OldRootMismatch);
        }
        return Ok(());
    }
    if from == to {
        if old_root != new_root {
            return Err(ProofError::NewRootMismatch);
        }
        return Ok(());
    }
    // Step 2: when the old tree is one complete subtree, its root opens the
    // path.
    let mut path = proof.iter();
    let seed = if from.is_power_of_two() {
        old_root
    } else {
        path.next().expect("the length check leaves a seed")
    };
    let (mut fn_, mut sn) = (from - 1, to - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in path {
        assert_ne!(sn, 0, "consistency_proof_len agrees with RFC 9162's walk");
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    assert_eq!(sn, 0, "consistency_proof_len agrees with RFC 9162's walk");
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Keeping the tree.

/// The right border of a tree: the roots of its complete subtrees, left to
/// right (one per set bit of the leaf count). All an appender needs: adding
/// a leaf gives the hashes to store without reading any, and the root of the
/// tree so far costs O(log n) hashes. Recomputing a tree from the log is
/// pushing every leaf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    leaves: u64,
    subtrees: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// The frontier of the tree of the first `leaves` stored leaves.
    pub fn load<R: StoredHashes>(leaves: u64, reader: &R) -> Result<Frontier, TreeError<R::Error>> {
        if leaves > MAX_TREE_SIZE {
            return Err(TreeError::TooLarge { size: leaves });
        }
        let mut subtrees = Vec::new();
        complete_subtrees(Span { lo: 0, hi: leaves }, &mut subtrees);
        let indexes: Vec<u64> = subtrees
            .iter()
            .map(|&(l, k)| stored_hash_index(l, k))
            .collect();
        let subtrees = read_exactly(reader, &indexes)?;
        Ok(Frontier { leaves, subtrees })
    }

    /// The number of leaves.
    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// Adds the next leaf and returns the hashes to store for it, each with
    /// its stored index (what [`hashes_to_store`] returns).
    pub fn push(&mut self, leaf: &Hash) -> Vec<(u64, Hash)> {
        let n = self.leaves;
        assert!(n < MAX_TREE_SIZE, "the tree is full");
        let first = stored_hash_index(0, n);
        let mut out = Vec::with_capacity(1 + n.trailing_ones() as usize);
        let mut h = *leaf;
        out.push((first, h));
        // Each trailing one of n is a complete subtree at the border's end
        // that the new leaf's subtree joins.
        for i in 0..u64::from(n.trailing_ones()) {
            let left = self.subtrees.pop().expect("one subtree per set bit");
            h = node_hash(&left, &h);
            out.push((first + 1 + i, h));
        }
        self.subtrees.push(h);
        self.leaves += 1;
        assert_eq!(self.subtrees.len() as u32, self.leaves.count_ones());
        out
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        match self.subtrees.split_last() {
            None => EMPTY_ROOT,
            Some((last, rest)) => rest
                .iter()
                .rev()
                .fold(*last, |right, left| node_hash(left, &right)),
        }
    }
}

/// Stored hashes in memory, for tests and for recomputing a tree from the
/// log: every stored hash in index order.
#[derive(Debug, Clone, Default)]
pub struct MemoryHashes {
    hashes: Vec<Hash>,
    frontier: Frontier,
}

/// A stored hash asked of a [`MemoryHashes`] that does not hold it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored hash {index} is not among the {stored} held")]
pub struct MissingHash {
    pub index: u64,
    pub stored: u64,
}

impl MemoryHashes {
    pub fn new() -> MemoryHashes {
        MemoryHashes::default()
    }

    /// Adds the next leaf; returns its index.
    pub fn push(&mut self, leaf: &Hash) -> u64 {
        let index = self.frontier.leaves();
        for (at, hash) in self.frontier.push(leaf) {
            assert_eq!(
                at,
                self.hashes.len() as u64,
                "stored hashes are appended in index order"
            );
            self.hashes.push(hash);
        }
        assert_eq!(
            self.hashes.len() as u64,
            stored_hash_count(self.frontier.leaves())
        );
        index
    }

    /// The number of leaves.
    pub fn leaves(&self) -> u64 {
        self.frontier.leaves()
    }

    /// The root of all the leaves.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Every stored hash, in index order.
    pub fn stored(&self) -> &[Hash] {
        &self.hashes
    }
}

impl StoredHashes for MemoryHashes {
    type Error = MissingHash;

    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, MissingHash> {
        indexes
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| self.hashes.get(i))
                    .copied()
                    .ok_or(MissingHash {
                        index,
                        stored: self.hashes.len() as u64,
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(n: u64) -> MemoryHashes {
        let mut t = MemoryHashes::new();
        for i in 0..n {
            t.push(&leaf_hash(&i.to_be_bytes()));
        }
        t
    }

    #[test]
    fn the_entry_encoding_is_stable() {
        // Pinned so an accidental change to the encoding fails loudly: every
        // signed checkpoint would stop matching its log. The value was
        // computed apart from this code (Python's hashlib and struct).
        let entry = entry_bytes(1, "jodo", 1_700_000_000_000_000, &[0x11; 32]);
        assert_eq!(hex::encode(leaf_hash(&entry)), PINNED_LEAF_V1);
    }

    const PINNED_LEAF_V1: &str = "e8f84dfa70a8327858b27d52569febeca87c7379597194baf0771da5ad1cdcc9";

    #[test]
    fn an_entry_is_the_chain_fields_without_prev_hash_in_order() {
        let body_hash = [7u8; 32];
        let e = entry_bytes(0x0102030405060708, "toolzz", -2, &body_hash);
        let mut want = b"registrar.leaf.v1\0".to_vec();
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        want.push(6);
        want.extend_from_slice(b"toolzz");
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        want.extend_from_slice(&body_hash);
        assert_eq!(e, want);
    }

    #[test]
    fn every_field_changes_the_leaf() {
        let leaf =
            |seq, source, at, body: &[u8; 32]| leaf_hash(&entry_bytes(seq, source, at, body));
        let base = leaf(1, "jodo", 5, &[1; 32]);
        assert_ne!(base, leaf(2, "jodo", 5, &[1; 32]));
        assert_ne!(base, leaf(1, "toolzz", 5, &[1; 32]));
        assert_ne!(base, leaf(1, "jodo", 6, &[1; 32]));
        assert_ne!(base, leaf(1, "jodo", 5, &[2; 32]));
    }

    #[test]
    fn an_entry_parses_back_to_its_fields() {
        let e = LeafEntry {
            seq: 42,
            source: "toolzz".into(),
            received_at: 1_700_000_000_123_456,
            body_hash: chain::body_hash(b"{\"a\":1}"),
        };
        assert_eq!(LeafEntry::parse(&e.encode()), Ok(e.clone()));
        assert_eq!(e.leaf_index(), 41);
        assert_eq!(e.leaf_hash(), leaf_hash(&e.encode()));
    }

    #[test]
    fn bytes_that_are_not_an_entry_say_why() {
        let good = entry_bytes(3, "jodo", 9, &[5; 32]);
        assert_eq!(
            LeafEntry::parse(b"registrar.chain.v1\0"),
            Err(EntryError::UnknownTag)
        );
        for cut in LEAF_TAG_V1.len()..good.len() {
            assert!(
                matches!(
                    LeafEntry::parse(&good[..cut]),
                    Err(EntryError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            LeafEntry::parse(&long),
            Err(EntryError::TrailingBytes { extra: 1 })
        );
        let mut zero = good.clone();
        zero[LEAF_TAG_V1.len()..LEAF_TAG_V1.len() + 8].fill(0);
        assert_eq!(LeafEntry::parse(&zero), Err(EntryError::ZeroSeq));
        let mut accented = good.clone();
        accented[LEAF_TAG_V1.len() + 9] = 0xc3;
        assert_eq!(LeafEntry::parse(&accented), Err(EntryError::SourceNotAscii));
    }

    #[test]
    fn stored_indexes_are_dense_in_the_order_hashes_complete() {
        // Leaf 0; leaf 1 and the pair (0,1); leaf 2; leaf 3, pair (2,3),
        // quad (0..4); leaf 4 ...
        let order = [
            (0, 0),
            (0, 1),
            (1, 0),
            (0, 2),
            (0, 3),
            (1, 1),
            (2, 0),
            (0, 4),
        ];
        for (i, &(level, k)) in order.iter().enumerate() {
            assert_eq!(stored_hash_index(level, k), i as u64, "level {level} k {k}");
        }
        assert_eq!(
            (0..9).map(stored_hash_count).collect::<Vec<_>>(),
            [0, 1, 3, 4, 7, 8, 10, 11, 15]
        );
    }

    #[test]
    fn every_stored_index_names_the_leaf_that_stored_it() {
        let mut t = MemoryHashes::new();
        for n in 0..600u64 {
            let before = t.stored().len() as u64;
            t.push(&leaf_hash(&n.to_be_bytes()));
            for index in before..t.stored().len() as u64 {
                let (leaf, level) = stored_hash_leaf(index);
                assert_eq!((leaf, u64::from(level)), (n, index - before));
                assert_eq!(stored_hash_index(level, leaf >> level), index);
            }
        }
        let last = stored_hash_count(MAX_TREE_SIZE) - 1;
        assert_eq!(stored_hash_leaf(last), (MAX_TREE_SIZE - 1, 62));
    }

    #[test]
    fn the_hashes_to_store_from_a_reader_are_the_frontiers() {
        let mut t = MemoryHashes::new();
        let mut f = Frontier::new();
        for i in 0..70u64 {
            let leaf = leaf_hash(&i.to_le_bytes());
            let want = hashes_to_store(i, &leaf, &t).unwrap();
            assert_eq!(f.push(&leaf), want, "leaf {i}");
            t.push(&leaf);
            assert_eq!(Frontier::load(i + 1, &t).unwrap(), f);
            assert_eq!(root(i + 1, &t).unwrap(), f.root());
        }
    }

    #[test]
    fn a_tree_answers_for_every_size_up_to_its_own() {
        let t = tree(13);
        for size in 1..=13 {
            let r = root(size, &t).unwrap();
            assert_eq!(r, tree(size).root());
            for index in 0..size {
                let proof = inclusion_proof(index, size, &t).unwrap();
                let leaf = leaf_hash(&index.to_be_bytes());
                assert_eq!(verify_inclusion(&leaf, index, size, &proof, &r), Ok(()));
            }
            for from in 0..=size {
                let proof = consistency_proof(from, size, &t).unwrap();
                let old = root(from, &t).unwrap();
                assert_eq!(verify_consistency(from, size, &old, &r, &proof), Ok(()));
            }
        }
    }

    #[test]
    fn asking_past_the_stored_leaves_is_a_read_error_not_a_panic() {
        let t = tree(5);
        assert!(matches!(
            root(6, &t),
            Err(TreeError::Read(MissingHash { .. }))
        ));
        assert!(matches!(inclusion_proof(0, 9, &t), Err(TreeError::Read(_))));
    }

    #[test]
    fn bad_arguments_are_named() {
        let t = tree(5);
        assert!(matches!(
            inclusion_proof(5, 5, &t),
            Err(TreeError::LeafNotInTree { index: 5, size: 5 })
        ));
        assert!(matches!(
            consistency_proof(4, 3, &t),
            Err(TreeError::SizesReversed { from: 4, to: 3 })
        ));
        assert!(matches!(
            root(MAX_TREE_SIZE + 1, &t),
            Err(TreeError::TooLarge { .. })
        ));
        let leaf = leaf_hash(b"");
        assert_eq!(
            verify_inclusion(&leaf, 3, 3, &[], &leaf),
            Err(ProofError::LeafNotInTree { index: 3, size: 3 })
        );
        assert_eq!(
            verify_consistency(3, 2, &leaf, &leaf, &[]),
            Err(ProofError::SizesReversed { from: 3, to: 2 })
        );
        assert_eq!(
            verify_inclusion(&leaf, 0, 2, &[leaf; MAX_PROOF_HASHES + 1], &leaf),
            Err(ProofError::TooLong {
                len: MAX_PROOF_HASHES + 1
            })
        );
    }

    #[test]
    fn the_empty_tree_is_a_prefix_of_every_tree_and_has_the_empty_root() {
        assert_eq!(hex::encode(EMPTY_ROOT), hex::encode(Sha256::digest([])));
        let t = tree(3);
        assert_eq!(root(0, &t).unwrap(), EMPTY_ROOT);
        assert_eq!(Frontier::new().root(), EMPTY_ROOT);
        let r = t.root();
        assert_eq!(verify_consistency(0, 3, &EMPTY_ROOT, &r, &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, 3, &r, &r, &[]),
            Err(ProofError::OldRootMismatch)
        );
    }

    #[test]
    fn the_verifiers_answer_for_any_sizes_without_panicking() {
        // Sizes come from an untrusted bundle: past the largest tree, right
        // to u64::MAX, a proof of the expected length is just wrong.
        let h = [3u8; 32];
        for size in [MAX_TREE_SIZE, MAX_TREE_SIZE + 1, u64::MAX - 1, u64::MAX] {
            for index in [0, 1, size / 2, size - 2, size - 1] {
                let proof = vec![h; inclusion_proof_len(index, size)];
                assert_eq!(
                    verify_inclusion(&h, index, size, &proof, &h),
                    Err(ProofError::RootMismatch),
                    "{index} of {size}"
                );
            }
            for from in [1, 2, 3, size / 2, size - 1, size] {
                let len = consistency_proof_len(from, size);
                let got = verify_consistency(from, size, &h, &[4; 32], &vec![h; len]);
                assert!(got.is_err(), "{from} to {size}");
            }
        }
    }
}
