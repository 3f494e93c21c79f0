//! The normalized events: what a delivery means, whatever provider or payload
//! version it came in. Names are past tense; the sources' upcasters produce
//! these, the projections consume them.

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Where a delivery came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Jodo,
    Toolzz,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Jodo => "jodo",
            Source::Toolzz => "toolzz",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "jodo" => Some(Source::Jodo),
            "toolzz" => Some(Source::Toolzz),
            _ => None,
        }
    }
}

/// A delivery that passed validation: the envelope facts the log stores, and
/// the domain event the projections apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub source: Source,
    /// Provider event type (Jodo `event`, Toolzz `event.slug`).
    pub event_type: String,
    /// Provider payload version ('' for Toolzz).
    pub event_version: String,
    /// Idempotency key (Jodo `event_id`, Toolzz `blake3:<hex of body>`).
    pub dedupe_key: String,
    /// Who the event is about, when known.
    pub subject: Option<String>,
    /// Provider time, unix seconds UTC.
    pub occurred_at: i64,
    pub event: Event,
}

/// An event as the log numbered it: what the writer hands the projector
/// after a commit, so the projector need not read and parse it again.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequenced {
    pub seq: u64,
    /// Provider time, unix seconds.
    pub occurred_at: i64,
    /// When registrar received it, unix microseconds.
    pub received_at: i64,
    pub event: Event,
}

/// What happened, in registrar's own terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Student {
        change: StudentChange,
        event_id: String,
        student: StudentProfile,
    },
    Payment {
        change: PaymentChange,
        event_id: String,
        payment: PaymentRecord,
    },
    Learner {
        change: LearnerChange,
        learner: LearnerProfile,
    },
    Enrollment {
        change: EnrollmentChange,
        enrollment: EnrollmentRecord,
    },
    CertificateIssued(Certificate),
    /// A type registrar does not project (yet). Kept in the log so a later
    /// projection can use it on rebuild.
    Unrecognized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudentChange {
    Registered,
    Dropped,
    Activated,
}

impl StudentChange {
    pub fn as_str(self) -> &'static str {
        match self {
            StudentChange::Registered => "registered",
            StudentChange::Dropped => "dropped",
            StudentChange::Activated => "activated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grade {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub key: String,
    pub value: String,
}

/// A Jodo student profile as one event carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudentProfile {
    pub jodo_student_id: String,
    pub identifier: String,
    pub custom_identifier: Option<String>,
    pub collector_code: Option<String>,
    pub grade: Option<Grade>,
    pub academic_year_start: Option<i32>,
    pub academic_year_end: Option<i32>,
    pub primary_contact_number: Option<String>,
    pub primary_contact_email: Option<String>,
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentChange {
    Added,
    Updated,
    Cancelled,
}

impl PaymentChange {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentChange::Added => "added",
            PaymentChange::Updated => "updated",
            PaymentChange::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeDetail {
    pub fee_component: String,
    pub amount: Money,
}

/// A Jodo manual payment as one event carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub payment_id: String,
    pub amount: Money,
    pub mode: String,
    pub transaction_id: Option<String>,
    pub settlement_utr: Option<String>,
    pub notes: Option<String>,
    /// Unix seconds UTC.
    pub paid_at: i64,
    pub details: Vec<FeeDetail>,
    pub jodo_student_id: Option<String>,
    pub student_identifier: Option<String>,
    pub collector_code: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LearnerChange {
    Created,
    Updated,
}

impl LearnerChange {
    pub fn as_str(self) -> &'static str {
        match self {
            LearnerChange::Created => "created",
            LearnerChange::Updated => "updated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchoolMembership {
    pub institution_id: String,
    pub school_id: String,
    pub role_id: Option<String>,
    /// The provider's text, `dd/MM/yyyy HH:mm:ss`, validated at ingest.
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// A Toolzz user as one members.* event carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnerProfile {
    pub user_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub cpf: Option<String>,
    pub nickname: Option<String>,
    pub uuid: Option<String>,
    pub phone: Option<String>,
    pub date_of_birth: Option<String>,
    pub schools: Vec<SchoolMembership>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrollmentChange {
    Enrolled,
    Completed,
}

impl EnrollmentChange {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentChange::Enrolled => "enrolled",
            EnrollmentChange::Completed => "completed",
        }
    }
}

/// A Toolzz enrollment as one event carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentRecord {
    pub enrollment_id: String,
    pub institution_id: Option<String>,
    pub course_id: String,
    pub course_name: Option<String>,
    pub user_id: String,
    pub user_name: Option<String>,
    pub user_email: Option<String>,
    /// `enrollment.actived`.
    pub active: bool,
    /// `enrollment.status` (1 active, 0 inactive).
    pub status_flag: bool,
    /// `yyyy-MM-dd`, validated at ingest.
    pub date_expire: Option<String>,
}

/// A Toolzz certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub user_id: String,
    pub course_id: String,
    pub course_name: Option<String>,
    /// The provider's text.
    pub certified_at: Option<String>,
    /// 'participation' or 'achievement'.
    pub kind: Option<String>,
    /// The provider's number, as text (never through f64).
    pub approval_rate: Option<String>,
}
