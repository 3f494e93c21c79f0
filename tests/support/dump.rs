//! Every row of a projection store, for comparing two of them (shared by
//! the property test and the end-to-end tests).
#![allow(dead_code)]

use std::collections::BTreeMap;

use registrar::projection::store::TABLES;
use rusqlite::types::Value;
use rusqlite::Connection;

pub type Rows = Vec<Vec<Value>>;
pub type Dump = BTreeMap<&'static str, Rows>;

fn columns(conn: &Connection, table: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .expect("table_info");
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("columns")
        .collect::<Result<Vec<_>, _>>()
        .expect("columns");
    assert!(!names.is_empty(), "no table {table}");
    names
}

/// Every row of every projection table, ordered by all the columns kept.
/// `omit` names columns left out (in every table).
pub fn dump(conn: &Connection, omit: &[&str]) -> Dump {
    let mut out = BTreeMap::new();
    for &table in TABLES {
        let kept: Vec<String> = columns(conn, table)
            .into_iter()
            .filter(|c| !omit.contains(&c.as_str()))
            .collect();
        let list = kept.join(", ");
        let mut stmt = conn
            .prepare(&format!("SELECT {list} FROM {table} ORDER BY {list}"))
            .expect("select");
        let rows = stmt
            .query_map([], |r| {
                (0..kept.len())
                    .map(|i| r.get::<_, Value>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("rows")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows");
        out.insert(table, rows);
    }
    out
}
