//! A projection store records the [`PROJECTION_VERSION`] it was built with,
//! and the server rebuilds a store whose version is not the current one. A
//! change to the projection schema, or to the kinds of change a fold
//! handles, without a bump would have the server serve a store built for
//! other tables or other events as if it were current.
//!
//! This test describes both (the store's `sqlite_master` as
//! [`store::create_schema`] makes it, and every fold's table, key and
//! kinds), hashes the description, and compares it with
//! `tests/fixtures/projection_fingerprint.txt`, which records the version
//! and the fingerprint it was last recorded with, and the description
//! itself so a review sees what changed. It fails while the description
//! changed under the same version. After a bump,
//! `UPDATE_FINGERPRINT=1 cargo test --test projection_fingerprint` records
//! the new version with the new fingerprint; it never records a changed
//! fingerprint under the recorded version.

use std::path::Path;

use registrar::event::{EnrollmentChange, LearnerChange, PaymentChange, StudentChange};
use registrar::projection::entities::{Enrollments, Learners, Payments, Students};
use registrar::projection::{store, Entity, Kind, PROJECTION_VERSION};
use rusqlite::Connection;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/projection_fingerprint.txt"
);

const HOW_TO_UPDATE: &str = "UPDATE_FINGERPRINT=1 cargo test --test projection_fingerprint";

/// Every kind of a fold's change enum: the `ALL` that `named_kinds!`
/// generates from the same list as the variants.
trait AllKinds: Kind + 'static {
    fn all() -> &'static [Self];
}

impl AllKinds for StudentChange {
    fn all() -> &'static [Self] {
        StudentChange::ALL
    }
}

impl AllKinds for PaymentChange {
    fn all() -> &'static [Self] {
        PaymentChange::ALL
    }
}

impl AllKinds for LearnerChange {
    fn all() -> &'static [Self] {
        LearnerChange::ALL
    }
}

impl AllKinds for EnrollmentChange {
    fn all() -> &'static [Self] {
        EnrollmentChange::ALL
    }
}

/// One line per fold: its tables, its key and the kinds it handles, read
/// through the entity's own `Change` type (a fold given another change enum
/// does not compile here until that enum has `AllKinds`).
fn fold<E: Entity>() -> String
where
    E::Change: AllKinds,
{
    let kinds: Vec<&str> = E::Change::all().iter().map(|k| k.as_str()).collect();
    format!(
        "fold {} ({} by {}): {}",
        E::CURRENT,
        E::HISTORY,
        E::KEY,
        kinds.join(" ")
    )
}

/// DDL as SQLite stores it, without `--` comments and with every run of
/// white space one space: a comment or realignment is not a schema change.
/// (A `/* */` comment still counts: the schema has none, and counting one
/// errs on the side of a needless bump.)
fn normalized(sql: &str) -> String {
    let mut out = String::new();
    let mut quote = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '-' && chars.peek() == Some(&'-') => {
                while chars.next_if(|&c| c != '\n').is_some() {}
            }
            None => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The projection as the code defines it now, one line per table, index and fold.
fn describe() -> String {
    let conn = Connection::open_in_memory().unwrap();
    store::create_schema(&conn).unwrap();
    let mut lines: Vec<String> = conn
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        .unwrap()
        .query_map([], |r| {
            let (kind, name, sql): (String, String, Option<String>) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            // An automatic index (of a PRIMARY KEY or UNIQUE) has no SQL.
            let sql = sql.map_or_else(|| "(automatic)".to_string(), |s| normalized(&s));
            Ok(format!("{kind} {name}: {sql}"))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    lines.push(fold::<Students>());
    lines.push(fold::<Payments>());
    lines.push(fold::<Learners>());
    lines.push(fold::<Enrollments>());
    lines.join("\n") + "\n"
}

fn fingerprint(description: &str) -> String {
    blake3::hash(description.as_bytes()).to_hex().to_string()
}

/// What the fixture records.
struct Recorded {
    version: i64,
    fingerprint: String,
    description: String,
}

const HEADER: &str = "\
# The projection schema and fold kinds, as of the PROJECTION_VERSION below.
# Written by tests/projection_fingerprint.rs (see there); do not edit by hand.
";

fn render(r: &Recorded) -> String {
    format!(
        "{HEADER}version {}\nfingerprint {}\n\n{}",
        r.version, r.fingerprint, r.description
    )
}

fn parse(text: &str) -> Recorded {
    let body = text
        .strip_prefix(HEADER)
        .expect("the fixture starts with its header");
    let (head, description) = body
        .split_once("\n\n")
        .expect("a blank line ends the fixture's head");
    let mut version = None;
    let mut fingerprint = None;
    for line in head.lines() {
        match line.split_once(' ') {
            Some(("version", v)) => version = Some(v.parse().expect("the version is an integer")),
            Some(("fingerprint", f)) => fingerprint = Some(f.to_string()),
            _ => panic!("the fixture's head has an unexpected line {line:?}"),
        }
    }
    Recorded {
        version: version.expect("the fixture records a version"),
        fingerprint: fingerprint.expect("the fixture records a fingerprint"),
        description: description.to_string(),
    }
}

/// The first line where two descriptions differ, for the failure message.
fn first_difference(recorded: &str, now: &str) -> String {
    let (mut r, mut n) = (recorded.lines(), now.lines());
    for number in 1.. {
        match (r.next(), n.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (None, None) => break,
            (a, b) => {
                return format!(
                    "line {number}:\n  recorded: {}\n  now:      {}",
                    a.unwrap_or("(none)"),
                    b.unwrap_or("(none)")
                )
            }
        }
    }
    "none in the text".to_string()
}

fn update_requested() -> bool {
    std::env::var_os("UPDATE_FINGERPRINT").is_some_and(|v| v == "1")
}

#[test]
fn the_projection_schema_and_fold_kinds_change_only_with_a_projection_version_bump() {
    let description = describe();
    let now = Recorded {
        version: PROJECTION_VERSION,
        fingerprint: fingerprint(&description),
        description,
    };
    let path = Path::new(FIXTURE);
    let Ok(text) = std::fs::read_to_string(path) else {
        if update_requested() {
            std::fs::write(path, render(&now)).unwrap();
            return;
        }
        panic!("{FIXTURE} is missing: run {HOW_TO_UPDATE} to record it, and commit it");
    };
    let recorded = parse(&text);
    assert_eq!(
        fingerprint(&recorded.description),
        recorded.fingerprint,
        "{FIXTURE} was edited by hand: restore it from git"
    );
    if recorded.version == now.version {
        assert!(
            recorded.fingerprint == now.fingerprint,
            "The projection schema or the kinds a fold handles changed, but PROJECTION_VERSION \
             is still {}: a store built before the change would be served as current. Bump \
             PROJECTION_VERSION in src/projection/mod.rs (saying what changed), then run \
             {HOW_TO_UPDATE} and commit {FIXTURE}.\nFirst difference, {}",
            now.version,
            first_difference(&recorded.description, &now.description)
        );
        return;
    }
    assert!(
        now.version > recorded.version,
        "PROJECTION_VERSION went back from {} to {}: a version names one schema; bump it past {}",
        recorded.version,
        now.version,
        recorded.version
    );
    if update_requested() {
        std::fs::write(path, render(&now)).unwrap();
        return;
    }
    panic!(
        "PROJECTION_VERSION is {} but {FIXTURE} records {}: run {HOW_TO_UPDATE} to record \
         the new version with the current fingerprint, and commit the fixture.",
        now.version, recorded.version
    );
}

#[test]
fn a_comment_or_realignment_in_the_ddl_is_not_a_schema_change_but_a_new_word_is() {
    let before = "CREATE TABLE t (\n    a  TEXT, -- the a\n    b INTEGER -- 'x\n)";
    let aligned = "CREATE TABLE t ( a TEXT,\n b INTEGER )";
    assert_eq!(normalized(before), normalized(aligned));
    assert_eq!(normalized(before), "CREATE TABLE t ( a TEXT, b INTEGER )");
    assert_ne!(
        normalized(before),
        normalized("CREATE TABLE t ( a TEXT NOT NULL, b INTEGER )")
    );
    // `--` inside a quoted literal is not a comment.
    assert_eq!(
        normalized("CHECK (a <> '--x') -- why"),
        "CHECK (a <> '--x')"
    );
}
