//! The four projected entities and their folds.
//!
//! A `step` says what one event means for the state; it runs in provider-time
//! order only (see the module above), so it may assume every earlier event
//! has been folded already.

use serde::{Deserialize, Serialize};

use super::Entity;
use crate::event::{EnrollmentRecord, LearnerProfile, PaymentRecord, StudentProfile};

/// A student's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudentStatus {
    Active,
    Dropped,
}

impl StudentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StudentStatus::Active => "active",
            StudentStatus::Dropped => "dropped",
        }
    }
}

/// A student's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudentState {
    /// The profile the latest event carried.
    pub profile: StudentProfile,
    pub status: StudentStatus,
    /// Provider time of the event that started the current status.
    pub status_since: i64,
    /// Provider time of the first registration, if one was received.
    pub registered_at: Option<i64>,
}

pub struct Students;

impl Entity for Students {
    const CURRENT: &'static str = "students";
    const HISTORY: &'static str = "student_history";
    const KEY: &'static str = "jodo_student_id";
    type Data = StudentProfile;
    type State = StudentState;

    fn step(
        prev: Option<StudentState>,
        kind: &str,
        data: &StudentProfile,
        at: i64,
        _seq: i64,
    ) -> StudentState {
        let status = if kind == "dropped" {
            StudentStatus::Dropped
        } else {
            StudentStatus::Active
        };
        let status_since = match &prev {
            Some(p) if p.status == status => p.status_since,
            _ => at,
        };
        let registered_at = prev
            .and_then(|p| p.registered_at)
            .or((kind == "registered").then_some(at));
        StudentState {
            profile: data.clone(),
            status,
            status_since,
            registered_at,
        }
    }

    type IndexKey = (String, Option<String>);
    fn index_key(s: &StudentState) -> Self::IndexKey {
        (
            s.profile.identifier.clone(),
            s.profile.custom_identifier.clone(),
        )
    }

    fn update_sql(p: &str) -> String {
        format!(
            "UPDATE {p}students SET grade_code = ?4, collector_code = ?5, status = ?6, search = ?7,
                head_at = ?8, head_seq = ?9, doc = ?10
             WHERE jodo_student_id = ?1"
        )
    }

    fn upsert_sql(p: &str) -> String {
        format!(
            "INSERT INTO {p}students (jodo_student_id, identifier, custom_identifier, grade_code, collector_code,
                                      status, search, head_at, head_seq, doc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (jodo_student_id) DO UPDATE SET
                identifier = excluded.identifier, custom_identifier = excluded.custom_identifier,
                grade_code = excluded.grade_code, collector_code = excluded.collector_code,
                status = excluded.status, search = excluded.search,
                head_at = excluded.head_at, head_seq = excluded.head_seq, doc = excluded.doc"
        )
    }

    fn upsert(
        stmt: &mut rusqlite::CachedStatement,
        key: &str,
        s: &StudentState,
        head: (i64, i64),
        doc: &str,
    ) -> rusqlite::Result<usize> {
        let p = &s.profile;
        let search = [
            Some(p.jodo_student_id.as_str()),
            Some(p.identifier.as_str()),
            p.custom_identifier.as_deref(),
            p.grade.as_ref().map(|g| g.name.as_str()),
            p.grade.as_ref().map(|g| g.code.as_str()),
            p.primary_contact_email.as_deref(),
            p.primary_contact_number.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\u{1f}")
        .to_lowercase();
        stmt.execute(rusqlite::params![
            key,
            p.identifier,
            p.custom_identifier,
            p.grade.as_ref().map(|g| &g.code),
            p.collector_code,
            s.status.as_str(),
            search,
            head.0,
            head.1,
            doc
        ])
    }
}

/// A payment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    Recorded,
    Cancelled,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Recorded => "recorded",
            PaymentStatus::Cancelled => "cancelled",
        }
    }
}

/// A payment's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentState {
    /// The fields the latest revision carried.
    pub record: PaymentRecord,
    pub status: PaymentStatus,
    /// Provider time of the first cancellation.
    pub cancelled_at: Option<i64>,
}

pub struct Payments;

impl Entity for Payments {
    const CURRENT: &'static str = "payments";
    const HISTORY: &'static str = "payment_revisions";
    const KEY: &'static str = "payment_id";
    type Data = PaymentRecord;
    type State = PaymentState;

    /// A cancellation is final: Jodo has no event that restores a cancelled
    /// payment, so a later update is kept as a revision but does not revive it.
    fn step(
        prev: Option<PaymentState>,
        kind: &str,
        data: &PaymentRecord,
        at: i64,
        _seq: i64,
    ) -> PaymentState {
        let cancelled_at = prev
            .and_then(|p| p.cancelled_at)
            .or((kind == "cancelled").then_some(at));
        PaymentState {
            record: data.clone(),
            status: if cancelled_at.is_some() {
                PaymentStatus::Cancelled
            } else {
                PaymentStatus::Recorded
            },
            cancelled_at,
        }
    }

    type IndexKey = (i64, Option<String>, Option<String>);
    fn index_key(s: &PaymentState) -> Self::IndexKey {
        let r = &s.record;
        (
            r.paid_at,
            r.jodo_student_id.clone(),
            r.student_identifier.clone(),
        )
    }

    fn update_sql(p: &str) -> String {
        format!(
            "UPDATE {p}payments SET status = ?2, mode = ?3, amount_minor = ?5, collector_code = ?8,
                head_at = ?9, head_seq = ?10, doc = ?11
             WHERE payment_id = ?1"
        )
    }

    fn upsert_sql(p: &str) -> String {
        format!(
            "INSERT INTO {p}payments (payment_id, status, mode, paid_at, amount_minor, jodo_student_id,
                                      student_identifier, collector_code, head_at, head_seq, doc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (payment_id) DO UPDATE SET
                status = excluded.status, mode = excluded.mode, paid_at = excluded.paid_at,
                amount_minor = excluded.amount_minor, jodo_student_id = excluded.jodo_student_id,
                student_identifier = excluded.student_identifier, collector_code = excluded.collector_code,
                head_at = excluded.head_at, head_seq = excluded.head_seq, doc = excluded.doc"
        )
    }

    fn upsert(
        stmt: &mut rusqlite::CachedStatement,
        key: &str,
        s: &PaymentState,
        head: (i64, i64),
        doc: &str,
    ) -> rusqlite::Result<usize> {
        let r = &s.record;
        stmt.execute(rusqlite::params![
            key,
            s.status.as_str(),
            r.mode,
            r.paid_at,
            r.amount.minor(),
            r.jodo_student_id,
            r.student_identifier,
            r.collector_code,
            head.0,
            head.1,
            doc
        ])
    }
}

/// A learner's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnerState {
    /// The profile the latest members.* event carried.
    pub profile: LearnerProfile,
    /// Provider time of the first members.created, if received.
    pub created_at: Option<i64>,
    /// Provider time of the latest members.* event.
    pub updated_at: i64,
}

pub struct Learners;

impl Entity for Learners {
    const CURRENT: &'static str = "learners";
    const HISTORY: &'static str = "learner_revisions";
    const KEY: &'static str = "user_id";
    type Data = LearnerProfile;
    type State = LearnerState;

    fn step(
        prev: Option<LearnerState>,
        kind: &str,
        data: &LearnerProfile,
        at: i64,
        _seq: i64,
    ) -> LearnerState {
        let created_at = prev
            .and_then(|p| p.created_at)
            .or((kind == "created").then_some(at));
        LearnerState {
            profile: data.clone(),
            created_at,
            updated_at: at,
        }
    }

    // No indexed column besides the key.
    type IndexKey = ();
    fn index_key(_: &LearnerState) -> Self::IndexKey {}

    fn update_sql(p: &str) -> String {
        Self::upsert_sql(p)
    }

    fn upsert_sql(p: &str) -> String {
        format!(
            "INSERT INTO {p}learners (user_id, head_at, head_seq, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id) DO UPDATE SET
                head_at = excluded.head_at, head_seq = excluded.head_seq, doc = excluded.doc"
        )
    }

    fn upsert(
        stmt: &mut rusqlite::CachedStatement,
        key: &str,
        _s: &LearnerState,
        head: (i64, i64),
        doc: &str,
    ) -> rusqlite::Result<usize> {
        stmt.execute(rusqlite::params![key, head.0, head.1, doc])
    }
}

/// An enrollment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrollmentStatus {
    Active,
    Inactive,
    Completed,
}

impl EnrollmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentStatus::Active => "active",
            EnrollmentStatus::Inactive => "inactive",
            EnrollmentStatus::Completed => "completed",
        }
    }
}

/// An enrollment's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentState {
    /// The fields the latest event carried.
    pub record: EnrollmentRecord,
    pub status: EnrollmentStatus,
    /// Provider time of the first enrollment event, if received.
    pub enrolled_at: Option<i64>,
    /// Provider time of the first completion, if received.
    pub completed_at: Option<i64>,
}

pub struct Enrollments;

impl Entity for Enrollments {
    const CURRENT: &'static str = "enrollments";
    const HISTORY: &'static str = "enrollment_events";
    const KEY: &'static str = "enrollment_id";
    type Data = EnrollmentRecord;
    type State = EnrollmentState;

    /// Completion is final for an enrollment (a new attempt is a new
    /// enrollment id); otherwise `enrollment.status` says active or inactive.
    fn step(
        prev: Option<EnrollmentState>,
        kind: &str,
        data: &EnrollmentRecord,
        at: i64,
        _seq: i64,
    ) -> EnrollmentState {
        let (enrolled_at, completed_at) = match &prev {
            Some(p) => (p.enrolled_at, p.completed_at),
            None => (None, None),
        };
        let enrolled_at = enrolled_at.or((kind == "enrolled").then_some(at));
        let completed_at = completed_at.or((kind == "completed").then_some(at));
        let status = if completed_at.is_some() {
            EnrollmentStatus::Completed
        } else if data.status_flag {
            EnrollmentStatus::Active
        } else {
            EnrollmentStatus::Inactive
        };
        EnrollmentState {
            record: data.clone(),
            status,
            enrolled_at,
            completed_at,
        }
    }

    type IndexKey = (String, String);
    fn index_key(s: &EnrollmentState) -> Self::IndexKey {
        (s.record.user_id.clone(), s.record.course_id.clone())
    }

    fn update_sql(p: &str) -> String {
        format!(
            "UPDATE {p}enrollments SET status = ?4, head_at = ?5, head_seq = ?6, doc = ?7
             WHERE enrollment_id = ?1"
        )
    }

    fn upsert_sql(p: &str) -> String {
        format!(
            "INSERT INTO {p}enrollments (enrollment_id, user_id, course_id, status, head_at, head_seq, doc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (enrollment_id) DO UPDATE SET
                user_id = excluded.user_id, course_id = excluded.course_id, status = excluded.status,
                head_at = excluded.head_at, head_seq = excluded.head_seq, doc = excluded.doc"
        )
    }

    fn upsert(
        stmt: &mut rusqlite::CachedStatement,
        key: &str,
        s: &EnrollmentState,
        head: (i64, i64),
        doc: &str,
    ) -> rusqlite::Result<usize> {
        stmt.execute(rusqlite::params![
            key,
            s.record.user_id,
            s.record.course_id,
            s.status.as_str(),
            head.0,
            head.1,
            doc
        ])
    }
}
