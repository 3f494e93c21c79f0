//! Checkpoints: the tree's size and root as a note ([`super::note`]), kept in
//! the log file (`checkpoints`, `schema/004_tree.sql`, append-only) and,
//! when a folder is configured, published as files for an auditor or a
//! witness to collect.
//!
//! Made by the writer only ([`crate::ledger::Ledger::checkpoint`]), in its
//! own transaction, when the head moved since the newest one: sizes only
//! grow, and each has one checkpoint. Signed when the server has a key;
//! otherwise the note is the checkpoint's text alone and [`Signing`] says so.
//!
//! Files in the folder, each written to a temporary name, fsynced and
//! renamed into place (a reader never sees half a note), then the folder
//! fsynced:
//!
//! ```text
//! <dir>/checkpoint            the newest note
//! <dir>/checkpoints/<size>    every note published, by tree size
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Row};

use super::merkle::Hash;
use super::note::{self, Checkpoint, CheckpointError, SigningKey, VerifierKey};
use super::to_hash;

/// Checkpoints listed at most by [`after`]: a day of them at the shortest
/// interval allowed is far fewer, and a client pages on with the last size.
pub const MAX_LISTED: u32 = 1_000;

/// One checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The tree size: the log's head seq when it was made.
    pub size: u64,
    pub root: Hash,
    /// The note exactly as served.
    pub note: String,
    /// Unix microseconds.
    pub made_at: i64,
    /// Whether the note carries the server's signature.
    pub signed: bool,
}

/// Whether checkpoints are signed, and by which key: what `/readyz` and the
/// console show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    Signed {
        verifier: Box<VerifierKey>,
    },
    /// No signing key is configured: checkpoints are made and kept, but
    /// prove nothing to anyone who does not trust this server's file.
    Unsigned,
}

/// How the writer makes checkpoints: the log's name, its key, and where the
/// notes are published.
#[derive(Debug, Clone)]
pub struct Maker {
    /// The checkpoint's first line (`--log-origin`).
    pub origin: String,
    /// Signs every note when set.
    pub signer: Option<Arc<SigningKey>>,
    /// Where notes are published as files (`--checkpoint-dir`).
    pub dir: Option<PathBuf>,
}

/// What a request for a checkpoint did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made {
    /// The head had moved: a new checkpoint.
    New(Stored),
    /// The newest checkpoint is at the head already.
    Unchanged(Stored),
}

impl Made {
    /// The newest checkpoint, new or not.
    pub fn checkpoint(&self) -> &Stored {
        match self {
            Made::New(s) | Made::Unchanged(s) => s,
        }
    }
}

impl Maker {
    /// Unsigned, unpublished checkpoints of the log named `origin`.
    pub fn unsigned(origin: &str) -> Maker {
        Maker {
            origin: origin.to_string(),
            signer: None,
            dir: None,
        }
    }

    pub fn signing(&self) -> Signing {
        match &self.signer {
            Some(key) => Signing::Signed {
                verifier: Box::new(key.verifier()),
            },
            None => Signing::Unsigned,
        }
    }

    /// The note for `checkpoint`: signed with the key when there is one,
    /// else the checkpoint's text alone.
    pub fn note(&self, checkpoint: &Checkpoint) -> (String, bool) {
        match &self.signer {
            Some(key) => (note::sign(checkpoint, key), true),
            None => (checkpoint.to_body(), false),
        }
    }

    /// Makes and stores the checkpoint of the tree of `size` leaves with
    /// root `root` (the head now, inside the caller's write transaction)
    /// unless the newest is at that size already. The first checkpoint is
    /// made whatever the size, even of the empty log, so there is always
    /// one to serve once the writer has been asked.
    pub fn make_if_moved(
        &self,
        conn: &Connection,
        size: u64,
        root: Hash,
        made_at: i64,
    ) -> Result<Made, MakeError> {
        if let Some(newest) = newest(conn)? {
            if newest.size == size {
                if newest.root != root {
                    return Err(MakeError::RootChanged { size });
                }
                return Ok(Made::Unchanged(newest));
            }
            if newest.size > size {
                return Err(MakeError::PastHead {
                    size: newest.size,
                    head: size,
                });
            }
        }
        let checkpoint = Checkpoint::new(&self.origin, size, root)?;
        let (note, signed) = self.note(&checkpoint);
        let stored = Stored {
            size,
            root,
            note,
            made_at,
            signed,
        };
        insert(conn, &stored)?;
        Ok(Made::New(stored))
    }

    /// Writes `stored` as the newest note and under its size in the
    /// folder, unless its file is there already; nothing without a folder.
    pub fn publish(&self, stored: &Stored) -> std::io::Result<()> {
        match &self.dir {
            Some(dir) => publish(dir, stored),
            None => Ok(()),
        }
    }
}

/// Why a checkpoint was not made.
#[derive(Debug, thiserror::Error)]
pub enum MakeError {
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
    #[error("the log origin cannot be a checkpoint's first line: {0}")]
    Origin(#[from] CheckpointError),
    /// The tree was rewritten under a checkpoint: never signed over.
    #[error("the tree's root at size {size} is not the root checkpointed at that size")]
    RootChanged { size: u64 },
    /// The log was cut below its newest checkpoint.
    #[error("the newest checkpoint is of size {size}, past the log's head {head}")]
    PastHead { size: u64, head: u64 },
}

const COLUMNS: &str = "size, root, note, made_at, signed";

fn from_row(r: &Row) -> rusqlite::Result<Stored> {
    Ok(Stored {
        size: r.get::<_, i64>(0)? as u64,
        root: to_hash(&r.get::<_, Vec<u8>>(1)?),
        note: r.get(2)?,
        made_at: r.get(3)?,
        signed: r.get(4)?,
    })
}

/// Stores `stored`; its size must be new (the table's key).
pub fn insert(conn: &Connection, stored: &Stored) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO checkpoints (size, root, note, made_at, signed) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute((
        stored.size as i64,
        &stored.root[..],
        &stored.note,
        stored.made_at,
        stored.signed,
    ))?;
    Ok(())
}

/// The newest checkpoint (the largest size), if any.
pub fn newest(conn: &Connection) -> rusqlite::Result<Option<Stored>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM checkpoints ORDER BY size DESC LIMIT 1"
    ))?
    .query_row([], from_row)
    .optional()
}

/// The newest checkpoint's size, if any: what proofs are bounded by.
pub fn newest_size(conn: &Connection) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached("SELECT MAX(size) FROM checkpoints")?
        .query_row([], |r| r.get::<_, Option<i64>>(0))
        .map(|s| s.map(|s| s as u64))
}

/// The checkpoint of size `size`, if one was made.
pub fn at(conn: &Connection, size: u64) -> rusqlite::Result<Option<Stored>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM checkpoints WHERE size = ?1"
    ))?
    .query_row([size as i64], from_row)
    .optional()
}

/// Up to `limit` checkpoints of sizes past `size`, oldest first.
pub fn after(conn: &Connection, size: u64, limit: u32) -> rusqlite::Result<Vec<Stored>> {
    from_size(conn, size.saturating_add(1), limit)
}

/// Up to `limit` checkpoints of sizes from `size` on, oldest first.
pub fn from_size(conn: &Connection, size: u64, limit: u32) -> rusqlite::Result<Vec<Stored>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM checkpoints WHERE size >= ?1 ORDER BY size LIMIT ?2"
    ))?;
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let rows = stmt.query_map((size, limit.min(MAX_LISTED)), from_row)?;
    rows.collect()
}

/// The file of the checkpoint of size `size` in `dir`.
pub fn file_of(dir: &Path, size: u64) -> PathBuf {
    dir.join("checkpoints").join(size.to_string())
}

/// Writes `stored` to `<dir>/checkpoints/<size>` and `<dir>/checkpoint`,
/// unless the first exists already (published before a restart).
fn publish(dir: &Path, stored: &Stored) -> std::io::Result<()> {
    let by_size = file_of(dir, stored.size);
    if by_size.exists() {
        return Ok(());
    }
    let folder = by_size.parent().expect("under checkpoints/");
    fs::create_dir_all(folder)?;
    write_atomically(&by_size, stored.note.as_bytes())?;
    write_atomically(&dir.join("checkpoint"), stored.note.as_bytes())
}

/// Writes `bytes` to `path` through a temporary file in the same folder,
/// fsynced before and after the rename, so `path` holds the old note or
/// the new one, whole, even across a crash.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let folder = path.parent().expect("a file in a folder");
    let name = path.file_name().expect("a file name").to_string_lossy();
    let temp = folder.join(format!(".{name}.tmp"));
    {
        let mut f = fs::File::create(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&temp, path)?;
    fs::File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::merkle;

    fn maker() -> Maker {
        Maker::unsigned("registrar/test")
    }

    #[test]
    fn a_checkpoint_is_made_once_per_size_and_only_forward() {
        let (_dir, conn) = crate::log::test_log(0);
        let m = maker();
        let first = m.make_if_moved(&conn, 0, merkle::EMPTY_ROOT, 1).unwrap();
        assert!(matches!(&first, Made::New(s) if s.size == 0 && !s.signed));
        assert_eq!(
            m.make_if_moved(&conn, 0, merkle::EMPTY_ROOT, 2).unwrap(),
            Made::Unchanged(first.checkpoint().clone())
        );
        assert!(matches!(
            m.make_if_moved(&conn, 0, [1; 32], 3),
            Err(MakeError::RootChanged { size: 0 })
        ));
        let second = m.make_if_moved(&conn, 5, [2; 32], 4).unwrap();
        assert!(matches!(second, Made::New(_)));
        assert!(matches!(
            m.make_if_moved(&conn, 4, [2; 32], 5),
            Err(MakeError::PastHead { size: 5, head: 4 })
        ));
        assert_eq!(newest_size(&conn).unwrap(), Some(5));
        assert_eq!(newest(&conn).unwrap().as_ref(), Some(second.checkpoint()));
        assert_eq!(at(&conn, 0).unwrap().as_ref(), Some(first.checkpoint()));
        assert_eq!(at(&conn, 3).unwrap(), None);
        assert_eq!(
            after(&conn, 0, 10).unwrap(),
            vec![second.checkpoint().clone()]
        );
        assert_eq!(after(&conn, 5, 10).unwrap(), vec![]);
        // An unsigned note is the checkpoint's text alone.
        assert_eq!(
            note::Checkpoint::parse(&second.checkpoint().note).unwrap(),
            Checkpoint::new("registrar/test", 5, [2; 32]).unwrap()
        );
    }

    #[test]
    fn checkpoints_cannot_be_updated_or_deleted() {
        let (_dir, conn) = crate::log::test_log(0);
        maker()
            .make_if_moved(&conn, 0, merkle::EMPTY_ROOT, 1)
            .unwrap();
        let update = conn.execute("UPDATE checkpoints SET note = 'x'", []);
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = conn.execute("DELETE FROM checkpoints", []);
        assert!(delete.unwrap_err().to_string().contains("append-only"));
    }

    #[test]
    fn a_signed_checkpoint_opens_with_the_makers_verifier() {
        let (_dir, conn) = crate::log::test_log(0);
        let key = SigningKey::from_seed("registrar/test", &[3; 32]).unwrap();
        let verifier = key.verifier();
        let m = Maker {
            signer: Some(Arc::new(key)),
            ..maker()
        };
        assert_eq!(
            m.signing(),
            Signing::Signed {
                verifier: Box::new(verifier.clone())
            }
        );
        assert_eq!(maker().signing(), Signing::Unsigned);
        let made = m.make_if_moved(&conn, 7, [9; 32], 1).unwrap();
        let stored = made.checkpoint();
        assert!(stored.signed);
        assert_eq!(
            note::open(stored.note.as_bytes(), &verifier).unwrap(),
            Checkpoint::new("registrar/test", 7, [9; 32]).unwrap()
        );
    }

    #[test]
    fn a_published_checkpoint_is_the_newest_file_and_one_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let m = Maker {
            dir: Some(dir.path().to_path_buf()),
            ..maker()
        };
        let stored = |size: u64, note: &str| Stored {
            size,
            root: [0; 32],
            note: note.into(),
            made_at: 0,
            signed: false,
        };
        m.publish(&stored(3, "three\n")).unwrap();
        m.publish(&stored(8, "eight\n")).unwrap();
        let read = |p: PathBuf| fs::read_to_string(p).unwrap();
        assert_eq!(read(dir.path().join("checkpoint")), "eight\n");
        assert_eq!(read(file_of(dir.path(), 3)), "three\n");
        assert_eq!(read(file_of(dir.path(), 8)), "eight\n");
        // Published already: left as it is, the newest file too.
        m.publish(&stored(3, "again\n")).unwrap();
        assert_eq!(read(file_of(dir.path(), 3)), "three\n");
        assert_eq!(read(dir.path().join("checkpoint")), "eight\n");
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }
}
