//! Every read of the projection store: typed filters in, typed rows out.
//! HTTP handlers and the `registrar report` command call these and render;
//! no SQL on the projection store lives anywhere else (the writes are in
//! [`super::store`]).
//!
//! The rules that give rows their meaning are stated here once:
//! - a payment links to its student by its own `jodo_student_id`, else by
//!   the student whose `identifier` it names ([`payments`]);
//! - a payment's collector code is its own, else its student's;
//! - a payment counts as recorded while no cancellation was folded into it
//!   ([`crate::projection::entities::PaymentStatus`]).
//!
//! - [`students`], [`payments`], [`learners`]: the resources of `/v1`.
//! - [`reports`]: the finance reports, as of a provider time and as known
//!   at a receipt time ([`Times`]).

pub(crate) mod learners;
pub mod payments;
pub mod reports;
pub(crate) mod students;

use rusqlite::{Connection, OptionalExtension};
use serde::de::DeserializeOwned;

use super::entities::{StudentState, Students};
use super::{fold, store, HistoryRow, ProjectionError};

/// Decodes a stored `doc`.
pub(crate) fn doc<T: DeserializeOwned>(text: &str) -> Result<T, ProjectionError> {
    Ok(serde_json::from_str(text)?)
}

/// Rows of (key, document) with each document decoded.
pub(crate) fn keyed_docs<T: DeserializeOwned>(
    rows: impl Iterator<Item = rusqlite::Result<(String, String)>>,
) -> Result<Vec<(String, T)>, ProjectionError> {
    rows.map(|row| {
        let (key, text) = row?;
        Ok((key, doc(&text)?))
    })
    .collect()
}

/// How a student id resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(String),
    NotFound,
    /// The id is an identifier or custom identifier shared by several students.
    Ambiguous(Vec<String>),
}

impl Lookup {
    /// The one student `id` names, or why it names none.
    pub fn one(self, id: &str) -> Result<String, Unresolved> {
        match self {
            Lookup::Found(jodo_student_id) => Ok(jodo_student_id),
            Lookup::NotFound => Err(Unresolved::NotFound(id.to_string())),
            Lookup::Ambiguous(ids) => Err(Unresolved::Ambiguous {
                id: id.to_string(),
                ids,
            }),
        }
    }
}

/// Why a student id names no one student: the same words for the API, the
/// console and the command line.
#[derive(Debug, thiserror::Error)]
pub enum Unresolved {
    #[error("no student has id {0:?}")]
    NotFound(String),
    #[error("{id:?} is the identifier of several students ({}); use the jodo_student_id", ids.join(", "))]
    Ambiguous { id: String, ids: Vec<String> },
}

/// Resolves `id` as a jodo_student_id, else an identifier, else a
/// custom_identifier, to a jodo_student_id.
pub fn resolve_student(conn: &Connection, id: &str) -> rusqlite::Result<Lookup> {
    let exact: Option<String> = conn
        .prepare_cached("SELECT jodo_student_id FROM students WHERE jodo_student_id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    if let Some(found) = exact {
        return Ok(Lookup::Found(found));
    }
    for column in ["identifier", "custom_identifier"] {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT jodo_student_id FROM students WHERE {column} = ?1 ORDER BY jodo_student_id LIMIT 11"
        ))?;
        let ids: Vec<String> = stmt
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        match ids.len() {
            0 => continue,
            1 => return Ok(Lookup::Found(ids.into_iter().next().expect("one"))),
            _ => return Ok(Lookup::Ambiguous(ids)),
        }
    }
    Ok(Lookup::NotFound)
}

/// A student's history, in (provider time, seq) order.
pub fn student_history(
    conn: &Connection,
    jodo_student_id: &str,
) -> Result<Vec<HistoryRow<Students>>, ProjectionError> {
    store::history::<Students>(conn, jodo_student_id)
}

/// The student as they stood at `at` (unix seconds): the fold of the events
/// whose provider time is at or before it. `None` when there were none.
pub fn student_as_of(
    conn: &Connection,
    jodo_student_id: &str,
    at: i64,
) -> Result<Option<StudentState>, ProjectionError> {
    let rows = student_history(conn, jodo_student_id)?;
    let upto: Vec<_> = rows.into_iter().take_while(|r| r.at <= at).collect();
    Ok(fold::<Students>(upto))
}
