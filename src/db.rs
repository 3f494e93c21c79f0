//! Opening the SQLite database: pragmas and numbered migrations.
//!
//! Migrations are the numbered files in `schema/`, applied in order at start and
//! recorded in `schema_migrations`; a released file is never edited. The
//! projection tables are not migrated: see [`crate::projection`].

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

/// The numbered migrations, in order. Append only.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "001_event_log.sql",
        include_str!("../schema/001_event_log.sql"),
    ),
    (
        2,
        "002_quarantine.sql",
        include_str!("../schema/002_quarantine.sql"),
    ),
    (3, "003_pins.sql", include_str!("../schema/003_pins.sql")),
    (4, "004_tree.sql", include_str!("../schema/004_tree.sql")),
];

/// How long a connection waits for another's lock before answering busy.
/// Readers never wait in WAL mode; this bounds the writer and the CLI.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a read-write connection with the durability settings the log needs:
/// WAL, so readers never block the writer, and `synchronous=FULL`, so a
/// committed transaction survives power loss (the CLI, the checkpointer).
/// The server's writer turns that to NORMAL and fsyncs on a thread of its
/// own before it answers ([`crate::ledger`]).
pub fn open_rw(path: &Path) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            let _ = std::fs::create_dir_all(dir);
        }
    }
    let conn = Connection::open(path)?;
    configure(&conn)?;
    Ok(conn)
}

/// Opens a read-only connection (for the read API and verify).
pub fn open_ro(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Read pages straight from the OS page cache through a memory map
    // instead of a pread per page: reads hop between history rows, current
    // rows and indexes all over the file. Address space only, not memory.
    conn.pragma_update(None, "mmap_size", READER_MMAP_BYTES)?;
    // Without the query planner stability guarantee, SQLite marks a cached
    // statement whose plan looked at a bound value (`LIMIT ?`, a row-value
    // cursor) as expired on every new binding, and re-parses and re-plans it
    // on each request: a third of a paged read's CPU. Plans here never
    // depend on the values.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // The read API's statements (with its filter combinations) outnumber
    // rusqlite's default cache of 16; an evicted one is parsed again.
    conn.set_prepared_statement_cache_capacity(READER_STATEMENT_CACHE);
    Ok(conn)
}

/// Prepared statements cached per read connection.
pub const READER_STATEMENT_CACHE: usize = 128;

/// Memory map of a read connection: address space, not memory (the pages are
/// the OS page cache's). Past SQLite's compile-time cap (2 GiB unless raised
/// in `.cargo/config.toml`) reads fall back to pread.
pub const READER_MMAP_BYTES: i64 = 64 << 30;

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode stayed {mode}, WAL is required"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The writer's page cache (SQLite's default is 2 MiB). Projection upserts
    // and dedupe lookups touch index pages all over the file; keeping them in
    // memory saves a pread per miss. Bounded, so memory stays flat.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    Ok(())
}

/// Page cache of the write connection, in KiB.
pub const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// Applies the migrations not yet applied, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )",
    )?;
    for (version, name, sql) in MIGRATIONS {
        let tx = conn.transaction()?;
        let done: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if !done {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
                (version, name),
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// The bundled SQLite's version, for reports.
pub fn sqlite_version() -> &'static str {
    rusqlite::version()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    fn scratch_db() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = open_rw(&path).unwrap();
        migrate(&mut conn).unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER, b TEXT); CREATE INDEX t_a ON t (a, b);")
            .unwrap();
        (dir, path)
    }

    #[test]
    fn a_cached_read_statement_with_bound_limit_and_cursor_is_not_reprepared() {
        let (_dir, path) = scratch_db();
        let conn = open_ro(&path).unwrap();
        let sql = "SELECT a, b FROM t WHERE (a, b) > (?1, ?2) ORDER BY a, b LIMIT ?3";
        for (a, limit) in [(0, 10), (5, 101), (7, 3)] {
            let mut stmt = conn.prepare_cached(sql).unwrap();
            let n = stmt.query_map((a, "", limit), |_| Ok(())).unwrap().count();
            assert_eq!(n, 0);
            assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
        }
    }

    #[test]
    fn a_read_connection_maps_the_whole_file_beyond_two_gib() {
        let (_dir, path) = scratch_db();
        let conn = open_ro(&path).unwrap();
        let mmap: i64 = conn
            .query_row("PRAGMA mmap_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mmap, READER_MMAP_BYTES);
        assert!(mmap > 2 << 30);
    }
}
