//! Learners and enrollments (Toolzz).

use rusqlite::{Connection, OptionalExtension};

use super::{doc, keyed_docs};
use crate::event::Certificate;
use crate::projection::entities::{EnrollmentState, EnrollmentStatus, LearnerState};
use crate::projection::ProjectionError;

/// Enrollments of one user read at most: bounds one learner's answer.
pub const MAX_ENROLLMENTS_PER_LEARNER: i64 = 1000;

/// What `GET /v1/enrollments` filters by; `None` does not filter.
#[derive(Debug, Clone, Default)]
pub struct EnrollmentFilter {
    pub user_id: Option<String>,
    pub course_id: Option<String>,
    pub status: Option<EnrollmentStatus>,
}

/// The enrollments page, in three forms so each can use its index: plans
/// are fixed at prepare time (read connections keep them stable), so an
/// optional `user_id = ?` would be a filter, never an index lookup. The
/// cursor's `COALESCE(?, '')` is a range on the key either way (keys are never
/// empty: the parsers reject empty ids).
const ENROLLMENTS_PAGE: &str = "SELECT enrollment_id, doc FROM enrollments
     WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR course_id = ?2)
       AND (?3 IS NULL OR status = ?3) AND enrollment_id > COALESCE(?4, '')
     ORDER BY enrollment_id LIMIT ?5";
const ENROLLMENTS_OF_USER_PAGE: &str =
    "SELECT enrollment_id, doc FROM enrollments INDEXED BY enrollments_user
     WHERE user_id = ?1 AND (?2 IS NULL OR course_id = ?2)
       AND (?3 IS NULL OR status = ?3) AND enrollment_id > COALESCE(?4, '')
     ORDER BY enrollment_id LIMIT ?5";
const ENROLLMENTS_OF_COURSE_PAGE: &str =
    "SELECT enrollment_id, doc FROM enrollments INDEXED BY enrollments_course
     WHERE (?1 IS NULL OR user_id = ?1) AND course_id = ?2
       AND (?3 IS NULL OR status = ?3) AND enrollment_id > COALESCE(?4, '')
     ORDER BY enrollment_id LIMIT ?5";

/// Up to `limit` enrollments after `after`, in enrollment_id order.
pub fn enrollments(
    conn: &Connection,
    filter: &EnrollmentFilter,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<(String, EnrollmentState)>, ProjectionError> {
    let sql = match (&filter.user_id, &filter.course_id) {
        (Some(_), _) => ENROLLMENTS_OF_USER_PAGE,
        (None, Some(_)) => ENROLLMENTS_OF_COURSE_PAGE,
        (None, None) => ENROLLMENTS_PAGE,
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(
        (
            &filter.user_id,
            &filter.course_id,
            filter.status.map(EnrollmentStatus::as_str),
            after,
            i64::from(limit),
        ),
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
    )?;
    keyed_docs(rows)
}

/// A user's enrollments, in enrollment_id order, at most
/// [`MAX_ENROLLMENTS_PER_LEARNER`].
pub fn of_user(conn: &Connection, user_id: &str) -> Result<Vec<EnrollmentState>, ProjectionError> {
    let mut stmt = conn.prepare_cached(
        "SELECT doc FROM enrollments WHERE user_id = ?1 ORDER BY enrollment_id LIMIT ?2",
    )?;
    let rows = stmt.query_map((user_id, MAX_ENROLLMENTS_PER_LEARNER), |r| {
        r.get::<_, String>(0)
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(doc(&row?)?);
    }
    Ok(out)
}

/// The learner's current state.
pub fn get(conn: &Connection, user_id: &str) -> Result<Option<LearnerState>, ProjectionError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT doc FROM learners WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get(0))
        .optional()?;
    text.map(|t| doc(&t)).transpose()
}

/// The latest certificate issued for (user, course), with its provider time.
pub fn certificate(
    conn: &Connection,
    user_id: &str,
    course_id: &str,
) -> Result<Option<(i64, Certificate)>, ProjectionError> {
    let row: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT at, doc FROM certificates WHERE user_id = ?1 AND course_id = ?2 ORDER BY at DESC, seq DESC LIMIT 1",
        )?
        .query_row((user_id, course_id), |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(at, text)| Ok((at, doc(&text)?))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::store;

    fn plan(sql: &str) -> String {
        let conn = Connection::open_in_memory().unwrap();
        store::create_schema(&conn).unwrap();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows: Vec<String> = stmt
            .query_map((Some("u"), Some("c"), None::<&str>, Some("e"), 10), |r| {
                r.get(3)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.join("\n")
    }

    #[test]
    fn enrollments_of_one_user_or_course_are_found_through_their_index() {
        assert!(plan(ENROLLMENTS_OF_USER_PAGE).contains("USING INDEX enrollments_user"));
        assert!(plan(ENROLLMENTS_OF_COURSE_PAGE).contains("USING INDEX enrollments_course"));
    }

    #[test]
    fn a_page_of_enrollments_starts_at_its_cursor_without_scanning_what_came_before() {
        let p = plan(ENROLLMENTS_PAGE);
        assert!(p.contains("enrollment_id>"), "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");
    }
}
