//! Recomputes the hash chain, re-derives the columns the chain does not
//! cover, recomputes the tree and checks its stored hashes and every
//! checkpoint, and reports the first fault.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};

use super::chain::{self, Hash, GENESIS};
use super::checkpoints::{self, Stored};
use super::merkle::{self, Frontier};
use super::note::{self, Checkpoint, VerifierKey};
use super::to_hash;
use super::tree::{self, StoreError};
use crate::event::Source;
use crate::sources::{self, ParseContext, Parsed};

/// What verify proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub events: u64,
    pub head_seq: u64,
    pub head_hash: Hash,
    /// Events whose columns were re-derived from their body (0 with `--fast`).
    pub rederived: u64,
    /// Events whose body this version's parser no longer accepts (a parser
    /// got stricter since they were appended): their chain is checked, their
    /// derived columns cannot be. The first such seq, and how many.
    pub unparsed: Option<(u64, u64)>,
    /// The tree and the checkpoints.
    pub tree: TreeVerified,
}

/// What verify proved of the tree and the checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeVerified {
    /// The leaves recomputed: the events in the tree's walk (its own read
    /// snapshot, so a running server may have appended since the chain's).
    pub leaves: u64,
    /// The root over them, recomputed from the log.
    pub root: merkle::Hash,
    /// The leaves whose stored hashes were checked: all of them, unless the
    /// tree is not built yet (a log made before the tree, until the
    /// server's next start).
    pub stored_leaves: u64,
    /// Checkpoints whose note and root were checked.
    pub checkpoints: u64,
    /// Of those, the signatures checked with the verifier key.
    pub signatures: u64,
    /// Of those, made without a key (nothing to check a signature on).
    pub unsigned: u64,
}

/// The first thing wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainFault {
    #[error("seq {expected} is missing (the next row has seq {found})")]
    Gap { expected: u64, found: u64 },
    #[error("seq {seq}: {column} is {found}, not {expected} as the schema says")]
    Malformed {
        seq: u64,
        column: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("seq {seq}: the body does not match its body_hash")]
    BodyHash { seq: u64 },
    #[error("seq {seq}: prev_hash does not match the hash of seq {}", seq - 1)]
    Link { seq: u64 },
    #[error("seq {seq}: the stored hash does not match the recomputed hash")]
    Hash { seq: u64 },
    #[error("seq {seq}: {column} is {stored}, but the body says {derived}")]
    Derived {
        seq: u64,
        column: &'static str,
        stored: String,
        derived: String,
    },
    #[error("pin {seq}: the log holds hash {found} there, not the pinned one")]
    PinMismatch { seq: u64, found: String },
    #[error("pin {seq}: the log ends at seq {head}, before the pinned seq")]
    PinMissing { seq: u64, head: u64 },
    #[error(
        "seq {seq}: the tree's stored hash {index} does not match the hash recomputed from the log"
    )]
    TreeHash { seq: u64, index: u64 },
    #[error("seq {seq}: the tree's stored hash {index} is missing")]
    TreeMissing { seq: u64, index: u64 },
    #[error("seq {seq}: the tree's stored hash {index} is not a BLOB of 32 bytes")]
    TreeMalformed { seq: u64, index: u64 },
    #[error("the tree has {leaves} leaves, past the log's head at seq {head}")]
    TreePastHead { leaves: u64, head: u64 },
    #[error("checkpoint {size}: the log ends at seq {head}, before it")]
    CheckpointPastHead { size: u64, head: u64 },
    #[error("checkpoint {size}: the note is not a checkpoint: {error}")]
    CheckpointNote {
        size: u64,
        error: note::CheckpointError,
    },
    #[error("checkpoint {size}: {error}")]
    CheckpointSignature { size: u64, error: note::NoteError },
    #[error("checkpoint {size}: the note's size or root is not its row's")]
    CheckpointMismatch { size: u64 },
    /// The server refuses a key not named its origin, so a note signed by
    /// the key names another log.
    #[error("checkpoint {size}: its origin is not the name of the key that signed it")]
    CheckpointOrigin { size: u64 },
    #[error(
        "checkpoint {size}: its root is not the tree's root at that size, recomputed from the log"
    )]
    CheckpointRoot { size: u64 },
}

/// Verify's outcome: a fault, or a database error.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the chain is broken: {0}")]
    Fault(#[from] ChainFault),
    #[error("could not read the log: {0}")]
    Db(#[from] rusqlite::Error),
}

impl ChainFault {
    /// What kind of fault, as a fixed word. A fault's text can carry a
    /// column's value (a subject is a student id): a server log gets this
    /// and [`ChainFault::seq`], the person who ran verify the text.
    pub fn code(&self) -> &'static str {
        match self {
            ChainFault::Gap { .. } => "gap",
            ChainFault::Malformed { .. } => "malformed",
            ChainFault::BodyHash { .. } => "body_hash",
            ChainFault::Link { .. } => "link",
            ChainFault::Hash { .. } => "hash",
            ChainFault::Derived { .. } => "derived",
            ChainFault::PinMismatch { .. } => "pin_mismatch",
            ChainFault::PinMissing { .. } => "pin_missing",
            ChainFault::TreeHash { .. } => "tree_hash",
            ChainFault::TreeMissing { .. } => "tree_missing",
            ChainFault::TreeMalformed { .. } => "tree_malformed",
            ChainFault::TreePastHead { .. } => "tree_past_head",
            ChainFault::CheckpointPastHead { .. } => "checkpoint_past_head",
            ChainFault::CheckpointNote { .. } => "checkpoint_note",
            ChainFault::CheckpointSignature { .. } => "checkpoint_signature",
            ChainFault::CheckpointMismatch { .. } => "checkpoint_mismatch",
            ChainFault::CheckpointOrigin { .. } => "checkpoint_origin",
            ChainFault::CheckpointRoot { .. } => "checkpoint_root",
        }
    }
}

impl VerifyError {
    /// What kind of failure, as a fixed word with no value in it: what a
    /// server log may say ([`ChainFault::code`]; `db` for a read error).
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Fault(f) => f.code(),
            VerifyError::Db(_) => "db",
        }
    }

    /// The seq of a fault; None for a read error.
    pub fn seq(&self) -> Option<u64> {
        match self {
            VerifyError::Fault(f) => Some(f.seq()),
            VerifyError::Db(_) => None,
        }
    }
}

/// Threads verify splits the log across at most.
pub const MAX_VERIFY_THREADS: usize = 4;

/// Below this many events verify runs on one thread (chain only: hashing is
/// fast enough that a thread's start-up would dominate).
const PARALLEL_FROM: u64 = 100_000;

/// Below this many events verify runs on one thread when it also re-parses
/// every body, which costs microseconds per event: worth a second core
/// much sooner.
const PARALLEL_FROM_REDERIVING: u64 = 10_000;

/// How far a running verify has come, for whoever watches it (the console's
/// integrity page): the events checked so far of the head it walks to.
#[derive(Debug, Default)]
pub struct Progress {
    pub checked: AtomicU64,
    pub total: AtomicU64,
}

/// Events a range checks between two updates of [`Progress::checked`]: often
/// enough to watch, rare enough to cost nothing.
const PROGRESS_EVERY: u64 = 4_096;

/// What to check beyond the chain (the tree and the checkpoints' roots are
/// always checked).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Also prove the log holds this hash at this seq (a head recorded earlier).
    pub pin: Option<(u64, Hash)>,
    /// Re-derive `event_type`, `event_version`, `dedupe_key`, `subject` and
    /// `occurred_at` from each body with this parsing context (the zone the
    /// server reads Toolzz times in). None (`--fast`): the chain only.
    pub rederive: Option<ParseContext>,
    /// Check every signed checkpoint's signature with this key. None: their
    /// text and roots only.
    pub verifier: Option<VerifierKey>,
}

impl Options {
    /// Every check: the chain and the columns re-derived with `ctx`.
    pub fn deep(ctx: ParseContext) -> Options {
        Options {
            pin: None,
            rederive: Some(ctx),
            verifier: None,
        }
    }
}

/// Walks the whole log, streaming (constant memory), and checks that every
/// row reads as the schema says (types, NULLs, 32-byte hashes, the body a
/// BLOB), seqs are gapless from 1, every body matches its hash, every
/// `prev_hash` is the previous row's hash and every hash recomputes; with
/// [`Options::rederive`], that the columns the chain does not cover are what
/// the parser derives from the body. With a pin, also checks that the log
/// holds that hash at that seq. A fault is an `Err(Fault)`, never a database
/// error.
///
/// Once the chain is sound, the tree is recomputed from the log, leaf by
/// leaf through a [`Frontier`], and every stored hash compared with it; each
/// checkpoint's note is read (its signature checked with
/// [`Options::verifier`]), must name its row's size and root, and that root
/// must be the recomputed tree's at that size. A stored tree shorter than
/// the log is not a fault (see [`TreeVerified::stored_leaves`]); one longer
/// is.
///
/// Rows up to the head never change (append-only), so a large log is split
/// into seq ranges verified in parallel, each on its own read connection;
/// each range also checks its link to the one before. The fault reported is
/// the one with the lowest seq, as a sequential walk would find first.
pub fn verify(conn: &Connection, options: &Options) -> Result<Verified, VerifyError> {
    verify_watched(conn, options, &Progress::default())
}

/// [`verify`], counting the events checked in `progress` as it goes.
pub fn verify_watched(
    conn: &Connection,
    options: &Options,
    progress: &Progress,
) -> Result<Verified, VerifyError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_VERIFY_THREADS);
    let parallel_from = if options.rederive.is_some() {
        PARALLEL_FROM_REDERIVING
    } else {
        PARALLEL_FROM
    };
    verify_split(conn, options, threads, parallel_from, progress)
}

/// [`verify`] with the split chosen: `threads` ranges once the log has at
/// least `parallel_from` events.
fn verify_split(
    conn: &Connection,
    options: &Options,
    threads: usize,
    parallel_from: u64,
    progress: &Progress,
) -> Result<Verified, VerifyError> {
    let pin = options.pin;
    let head_seq: u64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| {
        r.get::<_, i64>(0)
    })? as u64;
    progress.total.store(head_seq, Ordering::Relaxed);
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
        vec![verify_range(conn, ranges[0], options, progress)]
    } else {
        let path = path.expect("checked above");
        std::thread::scope(|scope| {
            let handles: Vec<_> = ranges
                .iter()
                .map(|&range| {
                    let path = path.clone();
                    scope.spawn(move || {
                        let conn = crate::db::open_ro(&path)?;
                        verify_range(&conn, range, options, progress)
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
    progress.checked.store(head_seq, Ordering::Relaxed);
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
    let unparsed = outcomes.iter().filter_map(|o| o.unparsed).fold(
        None,
        |acc: Option<(u64, u64)>, (first, n)| match acc {
            None => Some((first, n)),
            Some((f, m)) => Some((f.min(first), m + n)),
        },
    );
    let tree = verify_tree(conn, options.verifier.as_ref())?;
    Ok(Verified {
        events: head_seq,
        head_seq,
        head_hash: prev,
        rederived: outcomes.iter().map(|o| o.rederived).sum(),
        unparsed,
        tree,
    })
}

/// The tree's walk in one read snapshot of its own.
fn verify_tree(
    conn: &Connection,
    verifier: Option<&VerifierKey>,
) -> Result<TreeVerified, VerifyError> {
    conn.execute_batch("BEGIN")?;
    let result = walk_tree(conn, verifier);
    conn.execute_batch("COMMIT")?;
    result
}

/// A stored tree that cannot be read, as the fault it is (a database error
/// stays one).
fn store_fault(e: StoreError) -> VerifyError {
    let seq_of = |index| merkle::stored_hash_leaf(index).0 + 1;
    let fault = match e {
        StoreError::Db(e) => return VerifyError::Db(e),
        StoreError::Missing { index } => ChainFault::TreeMissing {
            seq: seq_of(index),
            index,
        },
        StoreError::Torn { index } => ChainFault::TreeMalformed {
            seq: seq_of(index),
            index,
        },
        // An index past any tree: no leaf stored it.
        StoreError::Malformed { index } => ChainFault::TreeMalformed { seq: 0, index },
        StoreError::PastHead { leaves, head } => ChainFault::TreePastHead { leaves, head },
        StoreError::BadEvent { seq, what } => ChainFault::Malformed {
            seq,
            column: "events",
            expected: "a row a leaf can be made of",
            found: what.to_string(),
        },
    };
    VerifyError::Fault(fault)
}

/// Recomputes the tree from the log, comparing every stored hash and every
/// checkpoint on the way.
fn walk_tree(
    conn: &Connection,
    verifier: Option<&VerifierKey>,
) -> Result<TreeVerified, VerifyError> {
    let head: u64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| {
        r.get::<_, i64>(0)
    })? as u64;
    let stored_leaves = tree::size(conn).map_err(store_fault)?;
    if stored_leaves > head {
        return Err(ChainFault::TreePastHead {
            leaves: stored_leaves,
            head,
        }
        .into());
    }
    let mut done = TreeVerified {
        leaves: 0,
        root: merkle::EMPTY_ROOT,
        stored_leaves,
        checkpoints: 0,
        signatures: 0,
        unsigned: 0,
    };
    let mut frontier = Frontier::new();
    let mut cps = Checkpoints::new(conn)?;
    cps.check_at(&frontier, verifier, &mut done)?;
    while frontier.leaves() < head {
        let rows = tree::leaves_after(conn, frontier.leaves(), head, tree::READ_BATCH)
            .map_err(store_fault)?;
        let expected = frontier.leaves() + 1;
        match rows.first() {
            Some(first) if first.seq == expected => {}
            first => {
                return Err(ChainFault::Gap {
                    expected,
                    found: first.map_or(head + 1, |r| r.seq),
                }
                .into())
            }
        }
        // The stored hashes of this batch's leaves, as far as the tree is
        // stored: one range read.
        let last = rows.last().expect("not empty").seq;
        let stored = tree::stored_range(
            conn,
            merkle::stored_hash_count(frontier.leaves()),
            merkle::stored_hash_count(last.min(stored_leaves)),
        )?;
        let mut stored = stored.into_iter();
        for row in rows {
            if row.seq != frontier.leaves() + 1 {
                return Err(ChainFault::Gap {
                    expected: frontier.leaves() + 1,
                    found: row.seq,
                }
                .into());
            }
            let hashes = frontier.push(&row.leaf);
            if row.seq <= stored_leaves {
                for (index, hash) in hashes {
                    let seq = row.seq;
                    match stored.next() {
                        Some((at, _)) if at != index => {
                            return Err(ChainFault::TreeMissing { seq, index }.into())
                        }
                        None => return Err(ChainFault::TreeMissing { seq, index }.into()),
                        Some((_, None)) => {
                            return Err(ChainFault::TreeMalformed { seq, index }.into())
                        }
                        Some((_, Some(found))) if found != hash => {
                            return Err(ChainFault::TreeHash { seq, index }.into())
                        }
                        Some((_, Some(_))) => {}
                    }
                }
            }
            cps.check_at(&frontier, verifier, &mut done)?;
        }
    }
    if let Some(c) = cps.next_stored()? {
        return Err(ChainFault::CheckpointPastHead { size: c.size, head }.into());
    }
    done.leaves = frontier.leaves();
    done.root = frontier.root();
    Ok(done)
}

/// The checkpoints in size order, read a page at a time as the walk
/// reaches their sizes.
struct Checkpoints<'c> {
    conn: &'c Connection,
    page: std::vec::IntoIter<Stored>,
    /// The size the next page starts from.
    from: u64,
    /// Whether the last page read was full, so another may follow: once
    /// not, the walk asks no more (it asks after every leaf).
    more: bool,
}

impl<'c> Checkpoints<'c> {
    fn new(conn: &'c Connection) -> rusqlite::Result<Checkpoints<'c>> {
        Ok(Checkpoints {
            conn,
            page: Vec::new().into_iter(),
            from: 0,
            more: true,
        })
    }

    /// The next checkpoint by size, without taking it.
    fn next_stored(&mut self) -> rusqlite::Result<Option<&Stored>> {
        if self.page.as_slice().is_empty() && self.more {
            let page = checkpoints::from_size(self.conn, self.from, checkpoints::MAX_LISTED)?;
            self.more = page.len() == checkpoints::MAX_LISTED as usize;
            if let Some(last) = page.last() {
                self.from = last.size + 1;
            }
            self.page = page.into_iter();
        }
        Ok(self.page.as_slice().first())
    }

    /// Checks the checkpoints of the frontier's size against it.
    fn check_at(
        &mut self,
        frontier: &Frontier,
        verifier: Option<&VerifierKey>,
        done: &mut TreeVerified,
    ) -> Result<(), VerifyError> {
        while let Some(c) = self.next_stored()? {
            if c.size != frontier.leaves() {
                debug_assert!(c.size > frontier.leaves(), "walked in size order");
                return Ok(());
            }
            let c = self.page.next().expect("peeked");
            check_checkpoint(&c, &frontier.root(), verifier, done)?;
        }
        Ok(())
    }
}

/// One checkpoint against the tree's root at its size: its note first (the
/// signature when a verifier is given), then the note against its row,
/// then the root against the recomputed one.
fn check_checkpoint(
    c: &Stored,
    root: &merkle::Hash,
    verifier: Option<&VerifierKey>,
    done: &mut TreeVerified,
) -> Result<(), ChainFault> {
    let size = c.size;
    let noted = match (c.signed, verifier) {
        (true, Some(v)) => {
            let opened = note::open(c.note.as_bytes(), v)
                .map_err(|error| ChainFault::CheckpointSignature { size, error })?;
            // note::open leaves the origin to its caller.
            if opened.origin != v.name() {
                return Err(ChainFault::CheckpointOrigin { size });
            }
            done.signatures += 1;
            opened
        }
        (true, None) => {
            // The text before the signatures, unchecked.
            let text = c.note.rfind("\n\n").map(|i| &c.note[..=i]).ok_or(
                ChainFault::CheckpointSignature {
                    size,
                    error: note::NoteError::Malformed(note::Malformed::NoSignatures),
                },
            )?;
            Checkpoint::parse(text).map_err(|error| ChainFault::CheckpointNote { size, error })?
        }
        (false, _) => {
            done.unsigned += 1;
            Checkpoint::parse(&c.note)
                .map_err(|error| ChainFault::CheckpointNote { size, error })?
        }
    };
    if noted.size != c.size || noted.root != c.root {
        return Err(ChainFault::CheckpointMismatch { size });
    }
    if c.root != *root {
        return Err(ChainFault::CheckpointRoot { size });
    }
    done.checkpoints += 1;
    Ok(())
}

/// What one range proved, or its first fault.
struct RangeOutcome {
    range: (u64, u64),
    /// The first row's prev_hash (checked against the previous range).
    first_prev: Option<Hash>,
    last_hash: Hash,
    pin_found: Option<Hash>,
    rederived: u64,
    /// The first seq whose body no longer parses, and how many.
    unparsed: Option<(u64, u64)>,
    fault: Option<ChainFault>,
}

/// The columns verify reads, in order.
const VERIFY_COLUMNS: &str = "seq, source, event_type, event_version, dedupe_key, subject, \
                              occurred_at, received_at, body, body_hash, prev_hash, hash";

/// One row, read as the schema says it must be (see `schema/001_event_log.sql`).
struct CheckedRow<'a> {
    source: &'a str,
    event_type: &'a str,
    event_version: &'a str,
    dedupe_key: &'a str,
    subject: Option<&'a str>,
    occurred_at: i64,
    received_at: i64,
    body: &'a [u8],
    body_hash: Hash,
    prev_hash: Hash,
    hash: Hash,
}

/// How a stored value looks, for a fault's message.
fn describe(v: ValueRef) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(_) => "an INTEGER".into(),
        ValueRef::Real(_) => "a REAL".into(),
        ValueRef::Text(_) => "TEXT".into(),
        ValueRef::Blob(b) => format!("a BLOB of {} bytes", b.len()),
    }
}

impl<'a> CheckedRow<'a> {
    /// Reads row `r` (at `seq`), or the first column that is not what the
    /// schema says: a fault, not an error, since only an edit made around
    /// the schema can produce it.
    fn read(r: &'a Row, seq: u64) -> Result<CheckedRow<'a>, ChainFault> {
        let malformed =
            |column: &'static str, expected: &'static str, found: String| ChainFault::Malformed {
                seq,
                column,
                expected,
                found,
            };
        // Column i as text: TEXT holding UTF-8.
        let text = |i: usize, column: &'static str| -> Result<Option<&'a str>, ChainFault> {
            match r
                .get_ref(i)
                .map_err(|e| malformed(column, "TEXT", e.to_string()))?
            {
                ValueRef::Null => Ok(None),
                ValueRef::Text(t) => std::str::from_utf8(t)
                    .map(Some)
                    .map_err(|_| malformed(column, "TEXT", "TEXT that is not UTF-8".into())),
                other => Err(malformed(column, "TEXT", describe(other))),
            }
        };
        let required = |i: usize, column: &'static str| -> Result<&'a str, ChainFault> {
            text(i, column)?.ok_or_else(|| malformed(column, "TEXT", "NULL".into()))
        };
        let integer = |i: usize, column: &'static str| -> Result<i64, ChainFault> {
            match r
                .get_ref(i)
                .map_err(|e| malformed(column, "an INTEGER", e.to_string()))?
            {
                ValueRef::Integer(v) => Ok(v),
                other => Err(malformed(column, "an INTEGER", describe(other))),
            }
        };
        let hash = |i: usize, column: &'static str| -> Result<Hash, ChainFault> {
            match r
                .get_ref(i)
                .map_err(|e| malformed(column, "a BLOB of 32 bytes", e.to_string()))?
            {
                ValueRef::Blob(b) if b.len() == 32 => Ok(to_hash(b)),
                other => Err(malformed(column, "a BLOB of 32 bytes", describe(other))),
            }
        };
        let source = required(1, "source")?;
        if Source::parse(source).is_none() {
            return Err(malformed(
                "source",
                "'jodo' or 'toolzz'",
                format!("{:?}", shorten(source)),
            ));
        }
        let body = match r
            .get_ref(8)
            .map_err(|e| malformed("body", "a BLOB", e.to_string()))?
        {
            ValueRef::Blob(b) => b,
            ValueRef::Text(_) => {
                return Err(malformed("body", "a BLOB", "stored as TEXT".into()));
            }
            other => return Err(malformed("body", "a BLOB", describe(other))),
        };
        Ok(CheckedRow {
            source,
            event_type: required(2, "event_type")?,
            event_version: required(3, "event_version")?,
            dedupe_key: required(4, "dedupe_key")?,
            subject: text(5, "subject")?,
            occurred_at: integer(6, "occurred_at")?,
            received_at: integer(7, "received_at")?,
            body,
            body_hash: hash(9, "body_hash")?,
            prev_hash: hash(10, "prev_hash")?,
            hash: hash(11, "hash")?,
        })
    }

    /// Parses the body again and compares what the writer derived from it.
    /// `Ok(false)`: the body no longer parses (nothing to compare).
    fn rederive(&self, seq: u64, ctx: &ParseContext) -> Result<bool, ChainFault> {
        let source = Source::parse(self.source).expect("checked by read");
        let derived = match sources::parse(source, self.body, ctx) {
            Ok(Parsed::Delivery(d)) => d,
            Ok(Parsed::Ping) => {
                return Err(ChainFault::Derived {
                    seq,
                    column: "event_type",
                    stored: format!("{:?}", shorten(self.event_type)),
                    derived: "a ping, which is never logged".into(),
                })
            }
            Err(_) => return Ok(false),
        };
        let differs = |column: &'static str, stored: String, derived: String| {
            Err(ChainFault::Derived {
                seq,
                column,
                stored,
                derived,
            })
        };
        let text = |s: &str| format!("{:?}", shorten(s));
        let opt = |s: Option<&str>| s.map_or("NULL".to_string(), text);
        if self.event_type != derived.event_type {
            return differs(
                "event_type",
                text(self.event_type),
                text(&derived.event_type),
            );
        }
        if self.event_version != derived.event_version {
            return differs(
                "event_version",
                text(self.event_version),
                text(&derived.event_version),
            );
        }
        if self.dedupe_key != derived.dedupe_key {
            return differs(
                "dedupe_key",
                text(self.dedupe_key),
                text(&derived.dedupe_key),
            );
        }
        if self.subject != derived.subject.as_deref() {
            return differs(
                "subject",
                opt(self.subject),
                opt(derived.subject.as_deref()),
            );
        }
        if self.occurred_at != derived.occurred_at {
            return differs(
                "occurred_at",
                self.occurred_at.to_string(),
                derived.occurred_at.to_string(),
            );
        }
        Ok(true)
    }
}

/// A stored value cut for a message: a hostile column can be megabytes.
fn shorten(s: &str) -> &str {
    const SHOWN: usize = 80;
    match s.char_indices().nth(SHOWN) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn verify_range(
    conn: &Connection,
    range: (u64, u64),
    options: &Options,
    progress: &Progress,
) -> Result<RangeOutcome, VerifyError> {
    let (from, to) = range;
    let pin = options.pin;
    // One read transaction: one consistent snapshot.
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        let mut stmt = conn.prepare(&format!(
            "SELECT {VERIFY_COLUMNS} FROM events WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq"
        ))?;
        let mut rows = stmt.query((from as i64, to as i64))?;
        let mut expected_seq = from;
        let mut first_prev = None;
        let mut prev: Option<Hash> = None;
        let mut pin_found = None;
        let mut rederived = 0;
        let mut unparsed: Option<(u64, u64)> = None;
        let failed = |first_prev, fault: ChainFault| RangeOutcome {
            range,
            first_prev,
            last_hash: GENESIS,
            pin_found: None,
            rederived: 0,
            unparsed: None,
            fault: Some(fault),
        };
        while let Some(r) = rows.next()? {
            // `seq` is the rowid (INTEGER PRIMARY KEY): always an integer.
            let seq = r.get::<_, i64>(0)? as u64;
            if (seq - from) % PROGRESS_EVERY == PROGRESS_EVERY - 1 {
                progress
                    .checked
                    .fetch_add(PROGRESS_EVERY, Ordering::Relaxed);
            }
            if seq != expected_seq {
                return Ok(failed(
                    first_prev,
                    ChainFault::Gap {
                        expected: expected_seq,
                        found: seq,
                    },
                ));
            }
            let row = match CheckedRow::read(r, seq) {
                Ok(row) => row,
                Err(fault) => return Ok(failed(first_prev, fault)),
            };
            if prev.is_none() {
                first_prev = Some(row.prev_hash);
            }
            if chain::body_hash(row.body) != row.body_hash {
                return Ok(failed(first_prev, ChainFault::BodyHash { seq }));
            }
            if prev.is_some_and(|p| p != row.prev_hash) {
                return Ok(failed(first_prev, ChainFault::Link { seq }));
            }
            let recomputed = chain::link_hash(
                &row.prev_hash,
                seq,
                row.source,
                row.received_at,
                &row.body_hash,
            );
            if recomputed != row.hash {
                return Ok(failed(first_prev, ChainFault::Hash { seq }));
            }
            if let Some(ctx) = &options.rederive {
                match row.rederive(seq, ctx) {
                    Ok(true) => rederived += 1,
                    Ok(false) => {
                        let (first, n) = unparsed.unwrap_or((seq, 0));
                        unparsed = Some((first, n + 1));
                    }
                    Err(fault) => return Ok(failed(first_prev, fault)),
                }
            }
            if pin.is_some_and(|(pin_seq, _)| pin_seq == seq) {
                pin_found = Some(row.hash);
            }
            prev = Some(row.hash);
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
            rederived,
            unparsed,
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
            | ChainFault::Malformed { seq, .. }
            | ChainFault::Derived { seq, .. }
            | ChainFault::Link { seq }
            | ChainFault::Hash { seq }
            | ChainFault::PinMismatch { seq, .. }
            | ChainFault::PinMissing { seq, .. }
            | ChainFault::TreeHash { seq, .. }
            | ChainFault::TreeMissing { seq, .. }
            | ChainFault::TreeMalformed { seq, .. } => *seq,
            ChainFault::TreePastHead { head, .. } => head + 1,
            ChainFault::CheckpointPastHead { size, .. }
            | ChainFault::CheckpointNote { size, .. }
            | ChainFault::CheckpointSignature { size, .. }
            | ChainFault::CheckpointMismatch { size }
            | ChainFault::CheckpointOrigin { size }
            | ChainFault::CheckpointRoot { size } => *size,
        }
    }
}

/// Why a `--pin` is refused.
#[derive(Debug, thiserror::Error)]
pub enum PinTextError {
    #[error("expected SEQ:HASH")]
    NoColon,
    #[error("{0:?} is not a seq")]
    Seq(String),
    #[error("{0:?} is not hex")]
    Hex(String),
    #[error("the hash must be 32 bytes (64 hex digits)")]
    Length,
}

/// Parses `SEQ:HEX` as given to `--pin`.
pub fn parse_pin(text: &str) -> Result<(u64, Hash), PinTextError> {
    let (seq, hash) = text.split_once(':').ok_or(PinTextError::NoColon)?;
    let seq: u64 = seq
        .trim()
        .parse()
        .map_err(|_| PinTextError::Seq(seq.to_string()))?;
    let bytes = hex::decode(hash.trim()).map_err(|_| PinTextError::Hex(hash.to_string()))?;
    if bytes.len() != 32 {
        return Err(PinTextError::Length);
    }
    Ok((seq, to_hash(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of `n` small events, triggers dropped (the tests tamper).
    fn log_of(n: u64) -> (tempfile::TempDir, Connection) {
        let (dir, conn) = crate::log::test_log(n);
        conn.execute_batch("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;")
            .unwrap();
        (dir, conn)
    }

    /// A log of `n` Jodo student events whose columns are what the parser
    /// derives, in a temporary file, triggers dropped.
    fn parsed_log_of(n: u64) -> (tempfile::TempDir, Connection) {
        let (dir, conn) = crate::log::test_log_with(n, |i| crate::log::TestEntry {
            event_type: "masterdata.student.registered",
            dedupe_key: format!("e{i}"),
            subject: Some(format!("s{i}")),
            occurred_at: 1_700_000_000 + i as i64,
            body: format!(
                r#"{{"event":"masterdata.student.registered","event_id":"e{i}","version":"1.0","timestamp":{},"payload":{{"jodo_student_id":"s{i}","student":{{"identifier":"{i}","grade":{{"code":"G","name":"G"}},"academic_year_start":2024,"academic_year_end":2025}}}}}}"#,
                1_700_000_000 + i
            ),
        });
        conn.execute_batch("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;")
            .unwrap();
        (dir, conn)
    }

    fn deep() -> Options {
        Options::deep(ParseContext::default())
    }

    #[test]
    fn a_split_rederiving_verify_reports_the_first_mismatch_wherever_the_ranges_fall() {
        let (_dir, conn) = parsed_log_of(50);
        let one = verify_split(&conn, &deep(), 1, u64::MAX, &Progress::default()).unwrap();
        let three = verify_split(&conn, &deep(), 3, 1, &Progress::default()).unwrap();
        assert_eq!(one, three);
        assert_eq!((three.rederived, three.unparsed), (50, None));
        conn.execute("UPDATE events SET subject = 'x' WHERE seq = 45", [])
            .unwrap();
        conn.execute("UPDATE events SET occurred_at = 1 WHERE seq = 20", [])
            .unwrap();
        assert!(matches!(
            fault(verify_split(&conn, &deep(), 3, 1, &Progress::default())),
            ChainFault::Derived {
                seq: 20,
                column: "occurred_at",
                ..
            }
        ));
        // The chain alone does not cover them.
        assert!(verify_split(&conn, &Options::default(), 3, 1, &Progress::default()).is_ok());
    }

    #[test]
    fn a_faults_code_names_its_kind_and_never_carries_a_columns_value() {
        let (_dir, conn) = parsed_log_of(3);
        conn.execute(
            "UPDATE events SET subject = 'student-9999' WHERE seq = 2",
            [],
        )
        .unwrap();
        let e = verify_split(&conn, &deep(), 1, u64::MAX, &Progress::default()).unwrap_err();
        assert!(
            e.to_string().contains("student-9999"),
            "the text says it: {e}"
        );
        assert_eq!((e.code(), e.seq()), ("derived", Some(2)));
        let db = VerifyError::Db(rusqlite::Error::InvalidQuery);
        assert_eq!((db.code(), db.seq()), ("db", None));
    }

    #[test]
    fn a_body_that_no_longer_parses_is_counted_and_its_chain_still_checked() {
        let (_dir, conn) = log_of(5);
        let v = verify_split(&conn, &deep(), 2, 1, &Progress::default()).unwrap();
        assert_eq!((v.rederived, v.unparsed), (0, Some((1, 5))));
        conn.execute("UPDATE events SET body = x'00' WHERE seq = 4", [])
            .unwrap();
        assert_eq!(
            fault(verify_split(&conn, &deep(), 2, 1, &Progress::default())),
            ChainFault::BodyHash { seq: 4 }
        );
    }

    fn split(conn: &Connection) -> Result<Verified, VerifyError> {
        verify_split(conn, &Options::default(), 3, 1, &Progress::default())
    }

    fn pinned(pin: (u64, Hash)) -> Options {
        Options {
            pin: Some(pin),
            rederive: None,
            verifier: None,
        }
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
        let one = verify_split(
            &conn,
            &Options::default(),
            1,
            u64::MAX,
            &Progress::default(),
        )
        .unwrap();
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
        let pinned_hash = conn
            .query_row("SELECT hash FROM events WHERE seq = 20", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .unwrap();
        assert!(verify_split(
            &conn,
            &pinned((20, to_hash(&pinned_hash))),
            3,
            1,
            &Progress::default()
        )
        .is_ok());
        assert!(matches!(
            fault(verify_split(
                &conn,
                &pinned((20, good.head_hash)),
                3,
                1,
                &Progress::default()
            )),
            ChainFault::PinMismatch { seq: 20, .. }
        ));
        assert!(matches!(
            fault(verify_split(
                &conn,
                &pinned((99, good.head_hash)),
                3,
                1,
                &Progress::default()
            )),
            ChainFault::PinMissing { .. }
        ));
    }

    #[test]
    fn a_watched_verify_counts_every_event_it_checked_of_the_head() {
        let (_dir, conn) = log_of(9_000);
        let progress = Progress::default();
        let v = verify_split(&conn, &Options::default(), 2, 1, &progress).unwrap();
        assert_eq!(v.events, 9_000);
        assert_eq!(progress.total.load(Ordering::Relaxed), 9_000);
        assert_eq!(progress.checked.load(Ordering::Relaxed), 9_000);
    }

    // ---- the tree and the checkpoints

    const ORIGIN: &str = "registrar/test";

    fn signer() -> note::SigningKey {
        note::SigningKey::from_seed(ORIGIN, &[5; 32]).unwrap()
    }

    /// A log of `n` events with a signed checkpoint at each of `sizes`, the
    /// triggers of every table dropped (the tests tamper).
    fn checkpointed_log(n: u64, sizes: &[u64]) -> (tempfile::TempDir, Connection) {
        let (dir, conn) = crate::log::test_log(n);
        let maker = checkpoints::Maker {
            signer: Some(std::sync::Arc::new(signer())),
            ..checkpoints::Maker::unsigned(ORIGIN)
        };
        for &size in sizes {
            let root = tree::stored_root(&conn, size).unwrap();
            maker.make_if_moved(&conn, size, root, 1).unwrap();
        }
        conn.execute_batch(
            "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;
             DROP TRIGGER tree_hashes_no_update; DROP TRIGGER tree_hashes_no_delete;
             DROP TRIGGER checkpoints_no_update; DROP TRIGGER checkpoints_no_delete;",
        )
        .unwrap();
        (dir, conn)
    }

    fn with_key() -> Options {
        Options {
            verifier: Some(signer().verifier()),
            ..Options::default()
        }
    }

    fn tree_fault(conn: &Connection) -> ChainFault {
        fault(verify_split(conn, &with_key(), 3, 1, &Progress::default()))
    }

    const SIZES: [u64; 5] = [0, 1, 17, 32, 50];

    #[test]
    fn a_sound_log_verifies_its_tree_and_every_checkpoint_and_signature() {
        let (_dir, conn) = checkpointed_log(50, &SIZES);
        let v = verify_split(&conn, &with_key(), 3, 1, &Progress::default()).unwrap();
        let mut want = merkle::MemoryHashes::new();
        for row in tree::leaves_after(&conn, 0, 50, 100).unwrap() {
            want.push(&row.leaf);
        }
        assert_eq!(
            v.tree,
            TreeVerified {
                leaves: 50,
                root: want.root(),
                stored_leaves: 50,
                checkpoints: 5,
                signatures: 5,
                unsigned: 0,
            }
        );
        // Without the key: the notes and roots, not the signatures.
        let v = verify(&conn, &Options::default()).unwrap();
        assert_eq!((v.tree.checkpoints, v.tree.signatures), (5, 0));
    }

    #[test]
    fn a_stored_hash_changed_missing_or_malformed_is_named_with_the_seq_that_stored_it() {
        // The pair (leaves 10, 11) is stored by leaf 11: seq 12.
        let index = merkle::stored_hash_index(1, 5);
        let (_dir, conn) = checkpointed_log(50, &[]);
        conn.execute(
            "UPDATE tree_hashes SET hash = zeroblob(32) WHERE idx = ?1",
            [index as i64],
        )
        .unwrap();
        assert_eq!(tree_fault(&conn), ChainFault::TreeHash { seq: 12, index });
        let (_dir, conn) = checkpointed_log(50, &[]);
        conn.execute("DELETE FROM tree_hashes WHERE idx = ?1", [index as i64])
            .unwrap();
        assert_eq!(
            tree_fault(&conn),
            ChainFault::TreeMissing { seq: 12, index }
        );
        let (_dir, conn) = checkpointed_log(50, &[]);
        conn.execute_batch("PRAGMA ignore_check_constraints = ON")
            .unwrap();
        conn.execute(
            "UPDATE tree_hashes SET hash = x'00' WHERE idx = ?1",
            [index as i64],
        )
        .unwrap();
        let f = tree_fault(&conn);
        assert_eq!(f, ChainFault::TreeMalformed { seq: 12, index });
        assert_eq!((f.code(), f.seq()), ("tree_malformed", 12));
    }

    #[test]
    fn a_log_cut_below_its_tree_or_a_checkpoint_is_named() {
        let (_dir, conn) = checkpointed_log(50, &SIZES);
        // A consistent shorter chain, but the tree still has the leaf.
        conn.execute("DELETE FROM events WHERE seq = 50", [])
            .unwrap();
        assert_eq!(
            tree_fault(&conn),
            ChainFault::TreePastHead {
                leaves: 50,
                head: 49
            }
        );
        // The tree cut too: the checkpoint of size 50 is past the log.
        conn.execute(
            "DELETE FROM tree_hashes WHERE idx >= ?1",
            [merkle::stored_hash_count(49) as i64],
        )
        .unwrap();
        assert_eq!(
            tree_fault(&conn),
            ChainFault::CheckpointPastHead { size: 50, head: 49 }
        );
    }

    #[test]
    fn a_changed_signature_note_or_root_of_a_checkpoint_is_named() {
        // A byte of the signature.
        let (_dir, conn) = checkpointed_log(50, &SIZES);
        let signed: String = conn
            .query_row("SELECT note FROM checkpoints WHERE size = 17", [], |r| {
                r.get(0)
            })
            .unwrap();
        let at = signed.len() - 10;
        let flipped = format!(
            "{}{}{}",
            &signed[..at],
            if &signed[at..=at] == "A" { "B" } else { "A" },
            &signed[at + 1..]
        );
        conn.execute(
            "UPDATE checkpoints SET note = ?1 WHERE size = 17",
            [&flipped],
        )
        .unwrap();
        assert!(matches!(
            tree_fault(&conn),
            ChainFault::CheckpointSignature {
                size: 17,
                error: note::NoteError::BadSignature { .. }
            }
        ));
        // Without the key the forged signature goes unseen: the note still
        // names its row's size and root.
        assert!(verify(&conn, &Options::default()).is_ok());

        // The row's root alone: its note says otherwise.
        let (_dir, conn) = checkpointed_log(50, &SIZES);
        conn.execute(
            "UPDATE checkpoints SET root = zeroblob(32) WHERE size = 32",
            [],
        )
        .unwrap();
        assert_eq!(
            tree_fault(&conn),
            ChainFault::CheckpointMismatch { size: 32 }
        );

        // A consistent forgery, unsigned: only the recomputed root tells.
        let (_dir, conn) = checkpointed_log(50, &SIZES);
        let forged = Checkpoint::new(ORIGIN, 32, [9; 32]).unwrap();
        conn.execute(
            "UPDATE checkpoints SET root = ?1, note = ?2, signed = 0 WHERE size = 32",
            (&forged.root[..], forged.to_body()),
        )
        .unwrap();
        let f = tree_fault(&conn);
        assert_eq!(f, ChainFault::CheckpointRoot { size: 32 });
        assert_eq!(
            f.to_string(),
            "checkpoint 32: its root is not the tree's root at that size, recomputed from the log"
        );

        // Signed by the key, but of another log.
        let (_dir, conn) = checkpointed_log(50, &SIZES);
        let other =
            Checkpoint::new("registrar/other", 32, tree::stored_root(&conn, 32).unwrap()).unwrap();
        conn.execute(
            "UPDATE checkpoints SET note = ?1 WHERE size = 32",
            [note::sign(&other, &signer())],
        )
        .unwrap();
        assert_eq!(tree_fault(&conn), ChainFault::CheckpointOrigin { size: 32 });

        // A note that is not a checkpoint.
        let (_dir, conn) = checkpointed_log(50, &SIZES);
        conn.execute(
            "UPDATE checkpoints SET note = 'hello', signed = 0 WHERE size = 1",
            [],
        )
        .unwrap();
        assert!(matches!(
            tree_fault(&conn),
            ChainFault::CheckpointNote { size: 1, .. }
        ));
    }

    #[test]
    fn a_log_whose_tree_is_not_built_verifies_with_the_root_recomputed() {
        let (_dir, conn) = checkpointed_log(50, &[]);
        let whole = verify(&conn, &Options::default()).unwrap().tree;
        conn.execute(
            "DELETE FROM tree_hashes WHERE idx >= ?1",
            [merkle::stored_hash_count(20) as i64],
        )
        .unwrap();
        let v = verify(&conn, &Options::default()).unwrap().tree;
        assert_eq!((v.leaves, v.root, v.stored_leaves), (50, whole.root, 20));
        conn.execute("DELETE FROM tree_hashes", []).unwrap();
        assert_eq!(
            verify(&conn, &Options::default())
                .unwrap()
                .tree
                .stored_leaves,
            0
        );
    }

    #[test]
    fn checkpoints_past_one_page_are_all_checked() {
        let (_dir, conn) = crate::log::test_log(1_300);
        let maker = checkpoints::Maker::unsigned(ORIGIN);
        let sizes = 0..=1_250u64;
        for size in sizes.clone() {
            let root = tree::stored_root(&conn, size).unwrap();
            maker.make_if_moved(&conn, size, root, 1).unwrap();
        }
        assert!(sizes.clone().count() > checkpoints::MAX_LISTED as usize);
        let v = verify(&conn, &Options::default()).unwrap().tree;
        assert_eq!((v.checkpoints, v.unsigned), (1_251, 1_251));
        // One on the second page, forged consistently.
        conn.execute_batch("DROP TRIGGER checkpoints_no_update")
            .unwrap();
        let forged = Checkpoint::new(ORIGIN, 1_100, [9; 32]).unwrap();
        conn.execute(
            "UPDATE checkpoints SET root = ?1, note = ?2 WHERE size = 1100",
            (&forged.root[..], forged.to_body()),
        )
        .unwrap();
        assert_eq!(
            fault(verify(&conn, &Options::default())),
            ChainFault::CheckpointRoot { size: 1_100 }
        );
    }
}
