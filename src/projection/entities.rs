//! The four projected entities and their folds.
//!
//! A `step` says what one event means for the state; it runs in provider-time
//! order only (see the module above), so it may assume every earlier event
//! has been folded already. Each step matches the entity's typed change
//! exhaustively: a new kind of change does not compile until its step says
//! what it means. No SQL here: see [`super::store`].

use serde::{Deserialize, Serialize};

use super::Entity;
use crate::event::{
    EnrollmentChange, EnrollmentRecord, LearnerChange, LearnerProfile, PaymentChange,
    PaymentRecord, StudentChange, StudentProfile,
};

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

impl StudentState {
    /// The lower-cased text `q=` searches: ids, identifiers, grade, contacts,
    /// separated by a unit separator so a search cannot match across two.
    pub fn search_text(&self) -> String {
        let p = &self.profile;
        [
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
        .to_lowercase()
    }
}

pub struct Students;

impl Entity for Students {
    const CURRENT: &'static str = "students";
    const HISTORY: &'static str = "student_history";
    const KEY: &'static str = "jodo_student_id";
    type Change = StudentChange;
    type Data = StudentProfile;
    type State = StudentState;

    fn step(
        prev: Option<StudentState>,
        change: StudentChange,
        data: StudentProfile,
        at: i64,
    ) -> StudentState {
        let status = match change {
            StudentChange::Registered | StudentChange::Activated => StudentStatus::Active,
            StudentChange::Dropped => StudentStatus::Dropped,
        };
        let status_since = match &prev {
            Some(p) if p.status == status => p.status_since,
            _ => at,
        };
        let registered_here = match change {
            StudentChange::Registered => Some(at),
            StudentChange::Dropped | StudentChange::Activated => None,
        };
        let registered_at = prev.and_then(|p| p.registered_at).or(registered_here);
        StudentState {
            profile: data,
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

    /// The status [`PaymentStatus::as_str`] stored.
    pub fn parse(text: &str) -> Option<PaymentStatus> {
        [PaymentStatus::Recorded, PaymentStatus::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == text)
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
    type Change = PaymentChange;
    type Data = PaymentRecord;
    type State = PaymentState;

    /// A cancellation is final: Jodo has no event that restores a cancelled
    /// payment, so a later update is kept as a revision but does not revive it.
    fn step(
        prev: Option<PaymentState>,
        change: PaymentChange,
        data: PaymentRecord,
        at: i64,
    ) -> PaymentState {
        let cancelled_here = match change {
            PaymentChange::Cancelled => Some(at),
            PaymentChange::Added | PaymentChange::Updated => None,
        };
        let cancelled_at = prev.and_then(|p| p.cancelled_at).or(cancelled_here);
        PaymentState {
            record: data,
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
    type Change = LearnerChange;
    type Data = LearnerProfile;
    type State = LearnerState;

    fn step(
        prev: Option<LearnerState>,
        change: LearnerChange,
        data: LearnerProfile,
        at: i64,
    ) -> LearnerState {
        let created_here = match change {
            LearnerChange::Created => Some(at),
            LearnerChange::Updated => None,
        };
        LearnerState {
            profile: data,
            created_at: prev.and_then(|p| p.created_at).or(created_here),
            updated_at: at,
        }
    }

    // No indexed column besides the key.
    type IndexKey = ();
    fn index_key(_: &LearnerState) -> Self::IndexKey {}
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
    type Change = EnrollmentChange;
    type Data = EnrollmentRecord;
    type State = EnrollmentState;

    /// Completion is final for an enrollment (a new attempt is a new
    /// enrollment id); otherwise `enrollment.status` says active or inactive.
    fn step(
        prev: Option<EnrollmentState>,
        change: EnrollmentChange,
        data: EnrollmentRecord,
        at: i64,
    ) -> EnrollmentState {
        let (enrolled_at, completed_at) = match &prev {
            Some(p) => (p.enrolled_at, p.completed_at),
            None => (None, None),
        };
        let (enrolled_here, completed_here) = match change {
            EnrollmentChange::Enrolled => (Some(at), None),
            EnrollmentChange::Completed => (None, Some(at)),
        };
        let enrolled_at = enrolled_at.or(enrolled_here);
        let completed_at = completed_at.or(completed_here);
        let status = if completed_at.is_some() {
            EnrollmentStatus::Completed
        } else if data.status_flag {
            EnrollmentStatus::Active
        } else {
            EnrollmentStatus::Inactive
        };
        EnrollmentState {
            record: data,
            status,
            enrolled_at,
            completed_at,
        }
    }

    type IndexKey = (String, String);
    fn index_key(s: &EnrollmentState) -> Self::IndexKey {
        (s.record.user_id.clone(), s.record.course_id.clone())
    }
}
