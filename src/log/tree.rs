//! The tree's stored hashes in the log file (`tree_hashes`,
//! `schema/004_tree.sql`): every statement that reads or writes them, the
//! reader [`merkle`]'s roots and proofs run on, and the catch-up that builds
//! the tree from the log.
//!
//! Written only by [`super::append`] (one leaf with its event, in the same
//! transaction: [`insert`]) and by [`extend`] (the leaves of events appended
//! before the tree existed). Never changed: a stored hash is the hash of a
//! complete subtree, which no later leaf alters.
//!
//! Proofs ([`inclusion`], [`consistency`], [`root`]) answer for any tree
//! size up to the newest checkpoint's ([`super::checkpoints`]): a size an
//! auditor can hold a signed root for.

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use super::checkpoints;
use super::merkle::{self, Frontier, Hash, StoredHashes, TreeError};

/// Why the stored tree could not be read or extended.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
    /// A hash the tree's size says is stored is not: the table was edited
    /// around its triggers.
    #[error("stored hash {index} is missing from the tree")]
    Missing { index: u64 },
    #[error("stored hash {index} is not a BLOB of 32 bytes")]
    Malformed { index: u64 },
    /// The highest stored index is not the last hash of its leaf: a leaf's
    /// hashes are written together, so the table was edited.
    #[error("the tree's last stored hash, {index}, leaves its leaf half written")]
    Torn { index: u64 },
    /// More leaves than events: the log was cut below its tree.
    #[error("the tree has {leaves} leaves but the log ends at seq {head}")]
    PastHead { leaves: u64, head: u64 },
    /// An event row the tree's leaf is made from is not as the schema says.
    #[error("seq {seq}: {what}, so its leaf cannot be made")]
    BadEvent { seq: u64, what: &'static str },
}

/// The stored hashes of the tree in the log file, read through `conn`: one
/// query per [`StoredHashes::read`], for the hashes not in the cache when
/// there is one.
pub struct SqlHashes<'c> {
    conn: &'c Connection,
    cache: Option<&'c HashCache>,
}

impl<'c> SqlHashes<'c> {
    pub fn new(conn: &'c Connection) -> SqlHashes<'c> {
        SqlHashes { conn, cache: None }
    }

    /// Reads through `cache` first, and keeps in it what it reads.
    pub fn cached(conn: &'c Connection, cache: &'c HashCache) -> SqlHashes<'c> {
        SqlHashes {
            conn,
            cache: Some(cache),
        }
    }
}

/// The lowest level whose stored hashes [`HashCache`] keeps. Every proof
/// needs about one hash per level; the levels from here up hold one hash
/// per 2^8 leaves, so on a log of a million events they are a few thousand
/// hashes that every proof shares, and the levels below are the ones a
/// random proof reads from the file anyway.
pub const CACHED_FROM_LEVEL: u8 = 4;
/// Stored indexes at most between the first and the last of one read for
/// it to be a range scan rather than a lookup per hash: the stored range of
/// a subtree of 2^[`CACHED_FROM_LEVEL`] leaves, and a little more.
const MAX_RANGE_READ: u64 = 2 << CACHED_FROM_LEVEL;
/// Hashes a [`HashCache`] keeps at most: 2 MiB of hashes (a log of 2^24
/// events has this many from [`CACHED_FROM_LEVEL`] up). Past it, further
/// hashes are read from the file each time.
pub const MAX_CACHED_HASHES: usize = 1 << 18;

/// The upper levels of the stored tree, kept in memory once read, shared
/// by the readers that serve proofs. Never stale: a stored hash is the hash
/// of a complete subtree, which no later leaf changes, and the table refuses
/// updates. Filled as proofs read it, never emptied.
#[derive(Debug, Default)]
pub struct HashCache {
    hashes: std::sync::RwLock<std::collections::HashMap<u64, Hash>>,
}

impl HashCache {
    pub fn new() -> HashCache {
        HashCache::default()
    }

    /// How many hashes it holds.
    pub fn len(&self) -> usize {
        self.hashes.read().expect("hash cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads every stored hash at [`CACHED_FROM_LEVEL`] and above from the
    /// file (one scan of the table, in index order), while there is room:
    /// what a server does once at start, off the request path, so that its
    /// proofs find the upper levels here from the first. Returns how many it
    /// holds after.
    pub fn warm(&self, conn: &Connection) -> Result<usize, StoreError> {
        let mut stmt = conn.prepare("SELECT idx, hash FROM tree_hashes ORDER BY idx")?;
        let mut rows = stmt.query([])?;
        let room = MAX_CACHED_HASHES.saturating_sub(self.len());
        let mut upper = Vec::new();
        while let Some(r) = rows.next()? {
            if upper.len() >= room {
                break;
            }
            let index = u64::try_from(r.get::<_, i64>(0)?)
                .map_err(|_| StoreError::Malformed { index: 0 })?;
            if index >= merkle::stored_hash_count(merkle::MAX_TREE_SIZE) {
                return Err(StoreError::Malformed { index });
            }
            if merkle::stored_hash_leaf(index).1 >= CACHED_FROM_LEVEL {
                upper.push((index, hash_at(r.get_ref(1)?, index)?));
            }
        }
        self.keep(&upper);
        Ok(self.len())
    }

    /// The cached hash of each index, `None` where it is not cached.
    fn get_all(&self, indexes: &[u64]) -> Vec<Option<Hash>> {
        let hashes = self.hashes.read().expect("hash cache lock");
        indexes.iter().map(|i| hashes.get(i).copied()).collect()
    }

    /// Keeps the hashes just read from the file that are at
    /// [`CACHED_FROM_LEVEL`] or above, while there is room.
    fn keep(&self, read: &[(u64, Hash)]) {
        let upper: Vec<&(u64, Hash)> = read
            .iter()
            .filter(|(index, _)| merkle::stored_hash_leaf(*index).1 >= CACHED_FROM_LEVEL)
            .collect();
        if upper.is_empty() {
            return;
        }
        let mut hashes = self.hashes.write().expect("hash cache lock");
        for &&(index, hash) in &upper {
            if hashes.len() >= MAX_CACHED_HASHES {
                return;
            }
            let kept = *hashes.entry(index).or_insert(hash);
            assert_eq!(kept, hash, "a stored hash never changes");
        }
    }
}

impl StoredHashes for SqlHashes<'_> {
    type Error = StoreError;

    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        let Some(cache) = self.cache else {
            return self.read_file(indexes);
        };
        let cached = cache.get_all(indexes);
        let missing: Vec<u64> = indexes
            .iter()
            .zip(&cached)
            .filter(|(_, h)| h.is_none())
            .map(|(&i, _)| i)
            .collect();
        let read = if missing.is_empty() {
            Vec::new()
        } else {
            self.read_file(&missing)?
        };
        let read: Vec<(u64, Hash)> = missing.into_iter().zip(read).collect();
        cache.keep(&read);
        let mut from_file = read.into_iter().map(|(_, h)| h);
        let out: Vec<Hash> = cached
            .into_iter()
            .map(|h| {
                h.or_else(|| from_file.next())
                    .expect("one hash read per miss")
            })
            .collect();
        assert_eq!(out.len(), indexes.len(), "one hash per index asked");
        Ok(out)
    }
}

impl SqlHashes<'_> {
    /// Reads `indexes` (increasing) from the file, in one statement.
    fn read_file(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        if let [index] = *indexes {
            // One hash (a proof's leaf): a point read, without the list's
            // JSON, costs half as much.
            let mut stmt = self
                .conn
                .prepare_cached("SELECT hash FROM tree_hashes WHERE idx = ?1")?;
            let mut rows = stmt.query([i64::try_from(index).unwrap_or(i64::MAX)])?;
            return match rows.next()? {
                Some(r) => Ok(vec![hash_at(r.get_ref(0)?, index)?]),
                None => Err(StoreError::Missing { index }),
            };
        }
        debug_assert!(indexes.windows(2).all(|w| w[0] < w[1]), "indexes increase");
        let (first, last) = (indexes[0], indexes[indexes.len() - 1]);
        if last - first < MAX_RANGE_READ {
            // Close together (a proof's lower levels, below the cache's,
            // lie within one small subtree's stored range): one seek and a
            // short scan costs less than a seek per hash.
            let wanted: std::collections::HashSet<u64> = indexes.iter().copied().collect();
            let found: Vec<(u64, Option<Hash>)> = stored_range(self.conn, first, last + 1)?
                .into_iter()
                .filter(|(i, _)| wanted.contains(i))
                .collect();
            let mut out = Vec::with_capacity(indexes.len());
            let mut found = found.into_iter();
            for &index in indexes {
                match found.next() {
                    Some((i, Some(h))) if i == index => out.push(h),
                    Some((i, None)) if i == index => return Err(StoreError::Malformed { index }),
                    Some(_) | None => return Err(StoreError::Missing { index }),
                }
            }
            return Ok(out);
        }
        // One statement for any number of indexes: the list goes in as a
        // JSON array, so the SQL stays static (and cached) whatever its
        // length. The rows come back in index order, the order asked.
        let list = format!(
            "[{}]",
            indexes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut stmt = self.conn.prepare_cached(
            "SELECT idx, hash FROM tree_hashes
             WHERE idx IN (SELECT value FROM json_each(?1)) ORDER BY idx",
        )?;
        let mut rows = stmt.query([list])?;
        let mut out = Vec::with_capacity(indexes.len());
        let mut wanted = indexes.iter();
        while let Some(r) = rows.next()? {
            let idx = r.get::<_, i64>(0)? as u64;
            let expected = *wanted.next().ok_or(StoreError::Missing { index: idx })?;
            if idx != expected {
                return Err(StoreError::Missing { index: expected });
            }
            out.push(hash_at(r.get_ref(1)?, idx)?);
        }
        if let Some(&index) = wanted.next() {
            return Err(StoreError::Missing { index });
        }
        assert_eq!(out.len(), indexes.len(), "one hash per index asked");
        Ok(out)
    }
}

/// A stored hash, read strictly: a BLOB of 32 bytes.
fn hash_at(v: ValueRef, index: u64) -> Result<Hash, StoreError> {
    match v {
        ValueRef::Blob(b) => b.try_into().map_err(|_| StoreError::Malformed { index }),
        _ => Err(StoreError::Malformed { index }),
    }
}

/// Writes one leaf's hashes, as [`Frontier::push`] returned them: its own
/// and one per subtree it completes, at consecutive indexes.
pub fn insert(conn: &Connection, hashes: &[(u64, Hash)]) -> rusqlite::Result<()> {
    assert!(!hashes.is_empty(), "a leaf stores at least its own hash");
    assert!(
        hashes.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "a leaf's hashes are stored at consecutive indexes"
    );
    let mut stmt = conn.prepare_cached("INSERT INTO tree_hashes (idx, hash) VALUES (?1, ?2)")?;
    for (idx, hash) in hashes {
        stmt.execute((*idx as i64, &hash[..]))?;
    }
    Ok(())
}

/// How many leaves the stored tree holds: read off its highest stored index
/// (one seek), which must be the last hash of its leaf.
pub fn size(conn: &Connection) -> Result<u64, StoreError> {
    let max: Option<i64> = conn
        .prepare_cached("SELECT MAX(idx) FROM tree_hashes")?
        .query_row([], |r| r.get(0))?;
    let Some(max) = max else { return Ok(0) };
    let index = u64::try_from(max).map_err(|_| StoreError::Malformed { index: 0 })?;
    if index >= merkle::stored_hash_count(merkle::MAX_TREE_SIZE) {
        return Err(StoreError::Malformed { index });
    }
    let (leaf, level) = merkle::stored_hash_leaf(index);
    if u32::from(level) != leaf.trailing_ones() {
        return Err(StoreError::Torn { index });
    }
    Ok(leaf + 1)
}

/// The frontier of the stored tree's first `leaves` leaves (one read).
pub fn frontier(conn: &Connection, leaves: u64) -> Result<Frontier, StoreError> {
    Frontier::load(leaves, &SqlHashes::new(conn)).map_err(flatten)
}

/// A tree error whose storage failed, as that failure; the others cannot
/// happen for the sizes the stored tree itself reports.
fn flatten(e: TreeError<StoreError>) -> StoreError {
    match e {
        TreeError::Read(e) => e,
        TreeError::TooLarge { size } => StoreError::PastHead {
            leaves: size,
            head: merkle::MAX_TREE_SIZE,
        },
        e @ (TreeError::LeafNotInTree { .. } | TreeError::SizesReversed { .. }) => {
            panic!("the tree's own sizes are consistent: {e}")
        }
    }
}

/// The leaf of the event with these chain fields (see [`merkle`]'s
/// encoding).
pub fn leaf(seq: u64, source: &str, received_at: i64, body_hash: &[u8; 32]) -> Hash {
    merkle::leaf_hash(&merkle::entry_bytes(seq, source, received_at, body_hash))
}

/// Events read per query by [`extend`] and by verify's recomputation: a
/// bounded buffer, far more than one query's overhead.
pub const READ_BATCH: u64 = 4_096;

/// One event's leaf fields, as [`leaves_after`] reads them.
pub struct LeafRow {
    pub seq: u64,
    pub leaf: Hash,
}

/// The leaves of up to `limit` events after seq `after` and up to `to`, in
/// seq order. Refuses a row that is not as the schema says (a leaf made of
/// it would be a guess).
pub fn leaves_after(
    conn: &Connection,
    after: u64,
    to: u64,
    limit: u64,
) -> Result<Vec<LeafRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, source, received_at, body_hash FROM events
         WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
    )?;
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let mut rows = stmt.query((clamp(after), clamp(to), clamp(limit)))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let seq = r.get::<_, i64>(0)? as u64;
        let bad = |what| StoreError::BadEvent { seq, what };
        let source = match r.get_ref(1)? {
            ValueRef::Text(t) if t.is_ascii() && t.len() <= usize::from(u8::MAX) => {
                std::str::from_utf8(t).expect("ASCII")
            }
            _ => return Err(bad("source is not short ASCII TEXT")),
        };
        let received_at = match r.get_ref(2)? {
            ValueRef::Integer(v) => v,
            _ => return Err(bad("received_at is not an INTEGER")),
        };
        let body_hash: [u8; 32] = match r.get_ref(3)? {
            ValueRef::Blob(b) => b.try_into().map_err(|_| bad("body_hash is not 32 bytes"))?,
            _ => return Err(bad("body_hash is not a BLOB")),
        };
        out.push(LeafRow {
            seq,
            leaf: leaf(seq, source, received_at, &body_hash),
        });
    }
    Ok(out)
}

/// Pushes the leaves of the events after `frontier`'s up to seq `to`, at
/// most `limit` of them, and stores their hashes: how a tree made after its
/// log catches up (the writer at start, in bounded steps; [`super::tail`]
/// in one). Returns how many leaves it added. The log is gapless, so a
/// missing seq is an error, not a skipped leaf.
pub fn extend(
    conn: &Connection,
    frontier: &mut Frontier,
    to: u64,
    limit: u64,
) -> Result<u64, StoreError> {
    let mut added = 0;
    while added < limit && frontier.leaves() < to {
        let want = (limit - added).min(READ_BATCH);
        let rows = leaves_after(conn, frontier.leaves(), to, want)?;
        if rows.is_empty() {
            return Err(StoreError::BadEvent {
                seq: frontier.leaves() + 1,
                what: "the event is missing",
            });
        }
        for row in rows {
            let next = frontier.leaves() + 1;
            if row.seq != next {
                return Err(StoreError::BadEvent {
                    seq: next,
                    what: "the event is missing",
                });
            }
            insert(conn, &frontier.push(&row.leaf))?;
            assert_eq!(frontier.leaves(), row.seq, "one leaf per event");
            added += 1;
        }
    }
    Ok(added)
}

/// The stored hashes at indexes `[from, to)`, in index order, as the table
/// holds them: an index it lacks is absent from the list, and a value that
/// is not a 32-byte BLOB is `None` (verify's walk names either).
pub fn stored_range(
    conn: &Connection,
    from: u64,
    to: u64,
) -> rusqlite::Result<Vec<(u64, Option<Hash>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT idx, hash FROM tree_hashes WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
    )?;
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let mut rows = stmt.query((clamp(from), clamp(to)))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let idx = r.get::<_, i64>(0)? as u64;
        out.push((idx, hash_at(r.get_ref(1)?, idx).ok()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Proofs, for the read API.

/// Why a proof was not made.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// Only sizes an auditor can hold a checkpoint for are proven.
    #[error("tree size {size} is past the newest checkpoint ({})", newest.map_or("none yet".to_string(), |n| n.to_string()))]
    PastCheckpoint { size: u64, newest: Option<u64> },
    #[error("seq {seq} is not in the tree of {size} leaves")]
    SeqNotInTree { seq: u64, size: u64 },
    #[error("no consistency proof from a tree of {from} leaves to a smaller one of {to}")]
    SizesReversed { from: u64, to: u64 },
    #[error("reading the tree: {0}")]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ProofError {
    fn from(e: rusqlite::Error) -> Self {
        ProofError::Store(e.into())
    }
}

impl From<TreeError<StoreError>> for ProofError {
    fn from(e: TreeError<StoreError>) -> Self {
        match e {
            TreeError::LeafNotInTree { index, size } => ProofError::SeqNotInTree {
                seq: index + 1,
                size,
            },
            TreeError::SizesReversed { from, to } => ProofError::SizesReversed { from, to },
            TreeError::TooLarge { size } => ProofError::PastCheckpoint { size, newest: None },
            TreeError::Read(e) => ProofError::Store(e),
        }
    }
}

/// An inclusion proof of one event, RFC 9162's PATH from the leaf's sibling
/// up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    pub seq: u64,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    pub hashes: Vec<Hash>,
}

/// Refuses a size past the newest checkpoint's.
fn checkpointed(conn: &Connection, size: u64) -> Result<(), ProofError> {
    let newest = checkpoints::newest_size(conn)?;
    match newest {
        Some(n) if size <= n => Ok(()),
        _ => Err(ProofError::PastCheckpoint { size, newest }),
    }
}

/// The proof that the event with seq `seq` is in the tree of `tree_size`
/// leaves, a size no later than the newest checkpoint's, reading the upper
/// levels through `cache`.
pub fn inclusion(
    conn: &Connection,
    cache: &HashCache,
    seq: u64,
    tree_size: u64,
) -> Result<Inclusion, ProofError> {
    checkpointed(conn, tree_size)?;
    if seq == 0 || seq > tree_size {
        return Err(ProofError::SeqNotInTree {
            seq,
            size: tree_size,
        });
    }
    let leaf_index = merkle::leaf_index(seq);
    let reader = SqlHashes::cached(conn, cache);
    let hashes = merkle::inclusion_proof(leaf_index, tree_size, &reader)?;
    let leaf_hash = reader.read(&[merkle::stored_hash_index(0, leaf_index)])?[0];
    Ok(Inclusion {
        seq,
        leaf_index,
        tree_size,
        leaf_hash,
        hashes,
    })
}

/// The proof that the tree of `from` leaves is a prefix of the tree of `to`,
/// both no later than the newest checkpoint.
pub fn consistency(
    conn: &Connection,
    cache: &HashCache,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, ProofError> {
    if from > to {
        return Err(ProofError::SizesReversed { from, to });
    }
    checkpointed(conn, to)?;
    Ok(merkle::consistency_proof(
        from,
        to,
        &SqlHashes::cached(conn, cache),
    )?)
}

/// The root of the tree of `size` leaves, a size no later than the newest
/// checkpoint.
pub fn root(conn: &Connection, size: u64) -> Result<Hash, ProofError> {
    checkpointed(conn, size)?;
    Ok(merkle::root(size, &SqlHashes::new(conn))?)
}

/// The root of the stored tree's first `size` leaves, whether or not a
/// checkpoint covers it (the writer's check of its own frontier).
pub fn stored_root(conn: &Connection, size: u64) -> Result<Hash, StoreError> {
    merkle::root(size, &SqlHashes::new(conn)).map_err(flatten)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{self, checkpoints, NewEntry};

    /// The tree recomputed from the log's rows alone, in memory.
    fn recomputed(conn: &Connection) -> merkle::MemoryHashes {
        let mut t = merkle::MemoryHashes::new();
        for row in leaves_after(conn, 0, u64::MAX, u64::MAX).unwrap() {
            assert_eq!(t.push(&row.leaf) + 1, row.seq);
        }
        t
    }

    /// Every stored hash, in index order.
    fn stored(conn: &Connection) -> Vec<Hash> {
        let mut stmt = conn
            .prepare("SELECT idx, hash FROM tree_hashes ORDER BY idx")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .unwrap();
        rows.enumerate()
            .map(|(i, r)| {
                let (idx, hash) = r.unwrap();
                assert_eq!(idx, i as i64, "dense indexes");
                hash.try_into().unwrap()
            })
            .collect()
    }

    fn entry<'a>(key: &'a str, body: &'a str, at: i64) -> NewEntry<'a> {
        NewEntry {
            source: if key.len().is_multiple_of(3) {
                "toolzz"
            } else {
                "jodo"
            },
            event_type: "t",
            event_version: "1.0",
            dedupe_key: key,
            subject: None,
            occurred_at: 1,
            received_at: at,
            body: body.as_bytes(),
        }
    }

    #[test]
    fn the_tree_kept_by_appends_is_the_tree_recomputed_from_the_log() {
        let (_dir, mut conn) = log::test_log(0);
        for round in 0..7u64 {
            let tx = conn.transaction().unwrap();
            let mut tail = log::tail(&tx).unwrap();
            for i in 0..(round * 13 + 1) {
                let key = format!("k{round}-{i}");
                let body = format!("{{\"n\":\"{key}\"}}");
                let at = (round * 1000 + i) as i64;
                assert!(matches!(
                    log::append(&tx, &mut tail, &entry(&key, &body, at)).unwrap(),
                    log::AppendOutcome::Appended { .. }
                ));
                // A duplicate and a conflict add no leaf.
                let seq = tail.head().seq;
                assert_eq!(
                    log::append(&tx, &mut tail, &entry(&key, &body, at + 1)).unwrap(),
                    log::AppendOutcome::Duplicate { seq }
                );
                assert_eq!(
                    log::append(&tx, &mut tail, &entry(&key, "{}", at + 2)).unwrap(),
                    log::AppendOutcome::Conflict { seq }
                );
                assert_eq!(tail.head().seq, seq);
            }
            tx.commit().unwrap();
            let want = recomputed(&conn);
            assert_eq!(stored(&conn), want.stored());
            assert_eq!(size(&conn).unwrap(), want.leaves());
            assert_eq!(log::tail(&conn).unwrap().root().unwrap(), want.root());
            assert_eq!(stored_root(&conn, want.leaves()).unwrap(), want.root());
        }
    }

    #[test]
    fn a_tree_behind_its_log_is_caught_up_by_the_tail_to_the_same_hashes() {
        let (_dir, conn) = log::test_log(300);
        let whole = stored(&conn);
        // A log from before the tree: rows removed around the triggers.
        conn.execute_batch("DROP TRIGGER tree_hashes_no_delete; DELETE FROM tree_hashes;")
            .unwrap();
        assert_eq!(size(&conn).unwrap(), 0);
        let tail = log::tail(&conn).unwrap();
        assert_eq!(tail.head().seq, 300);
        assert_eq!(stored(&conn), whole);
        // Half built (a build stopped at a leaf's last hash).
        let keep = merkle::stored_hash_count(117) as i64;
        conn.execute("DELETE FROM tree_hashes WHERE idx >= ?1", [keep])
            .unwrap();
        assert_eq!(size(&conn).unwrap(), 117);
        let mut f = frontier(&conn, 117).unwrap();
        assert_eq!(extend(&conn, &mut f, 300, 50).unwrap(), 50);
        assert_eq!(size(&conn).unwrap(), 167);
        assert_eq!(log::tail(&conn).unwrap(), tail);
        assert_eq!(stored(&conn), whole);
    }

    #[test]
    fn a_tree_past_its_log_or_torn_is_refused() {
        let (_dir, conn) = log::test_log(8);
        conn.execute_batch(
            "DROP TRIGGER events_no_delete; DROP TRIGGER tree_hashes_no_delete;
             DELETE FROM events WHERE seq = 8;",
        )
        .unwrap();
        assert!(matches!(
            log::tail(&conn),
            Err(StoreError::PastHead { leaves: 8, head: 7 })
        ));
        // Leaf 7 (index 6) stores four hashes; keep only its first.
        let torn = merkle::stored_hash_index(0, 7) as i64;
        conn.execute("DELETE FROM tree_hashes WHERE idx > ?1", [torn])
            .unwrap();
        assert!(matches!(size(&conn), Err(StoreError::Torn { .. })));
    }

    #[test]
    fn a_hash_missing_from_the_middle_is_named_by_the_reader() {
        let (_dir, conn) = log::test_log(8);
        conn.execute_batch(
            "DROP TRIGGER tree_hashes_no_delete; DELETE FROM tree_hashes WHERE idx = 2;",
        )
        .unwrap();
        let reader = SqlHashes::new(&conn);
        assert_eq!(reader.read(&[0, 1]).unwrap().len(), 2);
        assert!(matches!(
            reader.read(&[1, 2, 3]),
            Err(StoreError::Missing { index: 2 })
        ));
        assert!(matches!(
            reader.read(&[14, 15]),
            Err(StoreError::Missing { index: 15 })
        ));
    }

    #[test]
    fn stored_hashes_cannot_be_updated_or_deleted() {
        let (_dir, conn) = log::test_log(2);
        let update = conn.execute("UPDATE tree_hashes SET hash = zeroblob(32)", []);
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = conn.execute("DELETE FROM tree_hashes", []);
        assert!(delete.unwrap_err().to_string().contains("append-only"));
    }

    #[test]
    fn proofs_through_a_cold_or_warm_cache_are_the_proofs_from_the_file() {
        // 600 leaves: subtrees at the cached levels, and a right border.
        let (_dir, conn) = log::test_log(600);
        let tail_root = log::tail(&conn).unwrap().root().expect("the tree is kept");
        checkpoints::Maker::unsigned("registrar/test")
            .make_if_moved(&conn, 600, tail_root, 1)
            .unwrap();
        let want = recomputed(&conn);
        let filled = HashCache::new();
        let warmed = HashCache::new();
        // Level 4 and up: 37 + 18 + 9 + 4 + 2 + 1 complete subtrees of 600.
        assert_eq!(warmed.warm(&conn).unwrap(), 71);
        for size in [1, 17, 255, 256, 257, 599, 600] {
            let r = merkle::root(size, &want).unwrap();
            for seq in (1..=size).step_by(7).chain([size]) {
                let cold = inclusion(&conn, &HashCache::new(), seq, size).unwrap();
                for cache in [&filled, &warmed] {
                    assert_eq!(inclusion(&conn, cache, seq, size).unwrap(), cold);
                }
                merkle::verify_inclusion(&cold.leaf_hash, cold.leaf_index, size, &cold.hashes, &r)
                    .unwrap();
            }
            for cache in [&filled, &warmed] {
                let proof = consistency(&conn, cache, size, 600).unwrap();
                merkle::verify_consistency(size, 600, &r, &tail_root, &proof).unwrap();
            }
        }
        assert!(!filled.is_empty());
        assert!(filled.len() <= 71, "only the cached levels are kept");
        assert_eq!(warmed.len(), 71);
    }

    #[test]
    fn proofs_answer_for_every_size_up_to_the_newest_checkpoint_and_no_further() {
        let (_dir, conn) = log::test_log(21);
        assert!(matches!(
            inclusion(&conn, &HashCache::new(), 1, 1),
            Err(ProofError::PastCheckpoint {
                size: 1,
                newest: None
            })
        ));
        let tail_root = log::tail(&conn).unwrap().root().expect("the tree is kept");
        checkpoints::Maker::unsigned("registrar/test")
            .make_if_moved(&conn, 21, tail_root, 1)
            .unwrap();
        let want = recomputed(&conn);
        for size in 0..=21 {
            let r = root(&conn, size).unwrap();
            assert_eq!(r, merkle::root(size, &want).unwrap());
            for seq in 1..=size {
                let p = inclusion(&conn, &HashCache::new(), seq, size).unwrap();
                assert_eq!(p.leaf_index, seq - 1);
                assert_eq!(
                    p.leaf_hash,
                    want.stored()[merkle::stored_hash_index(0, seq - 1) as usize]
                );
                merkle::verify_inclusion(&p.leaf_hash, p.leaf_index, size, &p.hashes, &r).unwrap();
            }
            let proof = consistency(&conn, &HashCache::new(), size, 21).unwrap();
            merkle::verify_consistency(size, 21, &r, &tail_root, &proof).unwrap();
        }
        assert!(matches!(
            inclusion(&conn, &HashCache::new(), 3, 22),
            Err(ProofError::PastCheckpoint {
                size: 22,
                newest: Some(21)
            })
        ));
        assert!(matches!(
            inclusion(&conn, &HashCache::new(), 0, 5),
            Err(ProofError::SeqNotInTree { seq: 0, size: 5 })
        ));
        assert!(matches!(
            inclusion(&conn, &HashCache::new(), 6, 5),
            Err(ProofError::SeqNotInTree { seq: 6, size: 5 })
        ));
        assert!(matches!(
            consistency(&conn, &HashCache::new(), 6, 5),
            Err(ProofError::SizesReversed { from: 6, to: 5 })
        ));
        assert!(matches!(
            consistency(&conn, &HashCache::new(), 6, 22),
            Err(ProofError::PastCheckpoint { .. })
        ));
    }
}
