//! A log file and its projection store for the library-level property
//! tests: the writer's append path and the projector's apply path, without
//! a server.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::PathBuf;

use registrar::event::{Delivery, Sequenced, Source};
use registrar::log::{self, AppendOutcome, LogReader};
use registrar::projection::files::{self, StoreSync};
use registrar::projection::{projector, rebuild, store};
use registrar::sources::{self, ParseContext, Parsed};
use registrar::{db, ledger};
use rusqlite::{Connection, TransactionBehavior};
use tempfile::TempDir;

/// A log file and its projection store, as the server opens them; the
/// projector's work is done by the same function it runs
/// ([`projector::apply_batch`]), called after every delivery.
pub struct TestDb {
    pub dir: TempDir,
    pub log: Connection,
    pub reader: LogReader,
    /// The projection store's write connection (its tables are what the
    /// tests compare).
    pub conn: Connection,
}

impl TestDb {
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registrar.db")
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("registrar.projections.db")
    }

    /// Applies every logged event the store lacks, as the projector does.
    pub fn catch_up(&mut self) {
        let head = self.reader.head().expect("head");
        while store::position(&self.conn).expect("position") < head {
            projector::apply_batch(
                &mut self.conn,
                &self.reader,
                &ParseContext::default(),
                head,
                &mut VecDeque::new(),
            )
            .expect("apply");
        }
    }

    /// Closes the store and opens it again, as a restarted server does.
    pub fn restart_projector(&mut self) {
        let head = self.reader.head().expect("head");
        let placeholder = Connection::open_in_memory().expect("placeholder");
        drop(std::mem::replace(&mut self.conn, placeholder));
        let opened = files::open_store(&self.store_path(), head, false).expect("reopen");
        assert!(opened.file.is_some(), "the store survives a restart");
        self.conn = opened.writer.expect("a writer");
    }

    /// Builds a fresh store file from the log (as a rebuild does) and
    /// returns a connection on it.
    pub fn rebuilt(&self) -> (Connection, rebuild::RebuildReport) {
        let path = self.dir.path().join("rebuilt.db");
        let report = rebuild::build(&path, &self.log_path(), ParseContext::default(), 1, |_| {})
            .expect("rebuild");
        (
            files::open_writer(&path, StoreSync::Checkpoints).expect("open rebuilt"),
            report,
        )
    }
}

pub fn fresh_db() -> TestDb {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log_path = dir.path().join("registrar.db");
    let mut log = db::open_rw(&log_path).expect("open");
    // Only for speed: durability across power loss is not under test here.
    log.pragma_update(None, "synchronous", "OFF")
        .expect("synchronous");
    db::migrate(&mut log).expect("migrate");
    let opened = files::open_store(&dir.path().join("registrar.projections.db"), 0, false)
        .expect("a projection store");
    let conn = opened.writer.expect("an empty log gets a store at once");
    conn.pragma_update(None, "synchronous", "OFF")
        .expect("synchronous");
    TestDb {
        reader: LogReader::open(&log_path).expect("log reader"),
        dir,
        log,
        conn,
    }
}

/// A generated body, parsed as ingest parses it.
pub fn parse(source: Source, body: &str) -> Delivery {
    match sources::parse(source, body.as_bytes(), &ParseContext::default()) {
        Ok(Parsed::Delivery(d)) => d,
        other => panic!("generated body did not parse ({other:?}): {body}"),
    }
}

/// The writer's path for one delivery (parse, then append, reading the head
/// inside the transaction), without the projector. Returns what the writer
/// hands the projector when it appended.
pub fn append(
    db: &mut TestDb,
    source: Source,
    body: &str,
    received_at: i64,
) -> (AppendOutcome, Option<Sequenced>) {
    let delivery = parse(source, body);
    let tx = db
        .log
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .expect("begin");
    let mut tail = log::tail(&tx).expect("tail");
    let outcome = ledger::append_delivery(&tx, &mut tail, &delivery, body.as_bytes(), received_at)
        .expect("append_delivery");
    tx.commit().expect("commit");
    let handed = match outcome {
        AppendOutcome::Appended { seq } => Some(Sequenced {
            seq,
            occurred_at: delivery.occurred_at,
            received_at,
            event: delivery.event,
        }),
        _ => None,
    };
    (outcome, handed)
}
