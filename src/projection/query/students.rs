//! Students: the list, one student, a page of their history.

use rusqlite::{Connection, OptionalExtension};

use super::{doc, keyed_docs};
use crate::event::StudentChange;
use crate::projection::entities::{StudentState, StudentStatus};
use crate::projection::{Kind, ProjectionError};

/// What `GET /v1/students` filters by; `None` does not filter.
#[derive(Debug, Clone, Default)]
pub struct StudentFilter {
    pub status: Option<StudentStatus>,
    /// A grade code or a grade name.
    pub grade: Option<String>,
    pub collector_code: Option<String>,
    /// Text searched in ids, identifiers, grade and contacts, any case.
    pub text: Option<String>,
}

/// The page of students after `after` (by jodo_student_id), `limit` rows.
const STUDENTS_PAGE: &str = "SELECT jodo_student_id, doc FROM students
     WHERE (?1 IS NULL OR status = ?1)
       AND (?2 IS NULL OR grade_code = ?2 OR json_extract(doc, '$.profile.grade.name') = ?2)
       AND (?3 IS NULL OR collector_code = ?3)
       AND (?4 IS NULL OR search LIKE ?4 ESCAPE '\\')
       AND jodo_student_id > COALESCE(?5, '')
     ORDER BY jodo_student_id LIMIT ?6";

/// Up to `limit` students after `after`, in jodo_student_id order.
pub fn list(
    conn: &Connection,
    filter: &StudentFilter,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<(String, StudentState)>, ProjectionError> {
    let like = filter
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| format!("%{}%", like_escape(&t.to_lowercase())));
    let mut stmt = conn.prepare_cached(STUDENTS_PAGE)?;
    let rows = stmt.query_map(
        (
            filter.status.map(StudentStatus::as_str),
            &filter.grade,
            &filter.collector_code,
            like,
            after,
            i64::from(limit),
        ),
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
    )?;
    keyed_docs(rows)
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The student's current state.
pub fn get(
    conn: &Connection,
    jodo_student_id: &str,
) -> Result<Option<StudentState>, ProjectionError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT doc FROM students WHERE jodo_student_id = ?1")?
        .query_row([jodo_student_id], |r| r.get(0))
        .optional()?;
    text.map(|t| doc(&t)).transpose()
}

/// The student's identifier (what a payment without a jodo_student_id names).
pub fn identifier(
    conn: &Connection,
    jodo_student_id: &str,
) -> Result<Option<String>, ProjectionError> {
    Ok(conn
        .prepare_cached("SELECT identifier FROM students WHERE jodo_student_id = ?1")?
        .query_row([jodo_student_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// One event of a student's history, as the history route lists it.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub change: StudentChange,
    pub at: i64,
    pub seq: i64,
    pub event_id: String,
}

/// One page of a student's history (?1) after the cursor (?2, ?3), ?4 rows;
/// answered from the covering `student_history_order` index.
pub(crate) const STUDENT_HISTORY_PAGE: &str = "SELECT kind, at, seq, event_id FROM student_history
     WHERE entity = ?1 AND (at, seq) > (?2, ?3) ORDER BY at, seq LIMIT ?4";

/// Up to `limit` history entries after (at, seq) `after`, in (at, seq) order.
pub fn history_page(
    conn: &Connection,
    jodo_student_id: &str,
    after: Option<(i64, i64)>,
    limit: u32,
) -> Result<Vec<HistoryEntry>, ProjectionError> {
    let (a_at, a_seq) = after.unwrap_or((i64::MIN, i64::MIN));
    let mut stmt = conn.prepare_cached(STUDENT_HISTORY_PAGE)?;
    let mut rows = stmt.query((jodo_student_id, a_at, a_seq, i64::from(limit)))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let kind: String = r.get(0)?;
        out.push(HistoryEntry {
            change: StudentChange::parse(&kind).ok_or_else(|| {
                ProjectionError::Invariant(format!(
                    "student_history holds an unknown kind {kind:?}"
                ))
            })?,
            at: r.get(1)?,
            seq: r.get(2)?,
            event_id: r.get(3)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::store;

    #[test]
    fn a_students_history_page_is_read_from_the_index_alone() {
        let conn = Connection::open_in_memory().unwrap();
        store::create_schema(&conn).unwrap();
        let plan: String = conn
            .query_row(
                &format!("EXPLAIN QUERY PLAN {STUDENT_HISTORY_PAGE}"),
                ("s", 0, 0, 10),
                |r| r.get(3),
            )
            .unwrap();
        assert!(
            plan.contains("COVERING INDEX student_history_order"),
            "{plan}"
        );
    }

    /// Plans are fixed at prepare time on read connections: an optional
    /// `(? IS NULL OR id > ?)` would scan every earlier student on each page.
    #[test]
    fn a_page_of_students_starts_at_its_cursor_without_scanning_what_came_before() {
        let conn = Connection::open_in_memory().unwrap();
        store::create_schema(&conn).unwrap();
        let p: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {STUDENTS_PAGE}"))
            .unwrap()
            .query_map(
                (
                    None::<&str>,
                    None::<&str>,
                    None::<&str>,
                    None::<&str>,
                    Some("s"),
                    10,
                ),
                |r| r.get(3),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let p = p.join("\n");
        assert!(p.contains("jodo_student_id>"), "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");
    }
}
