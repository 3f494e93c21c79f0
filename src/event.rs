//! The normalized events: what a delivery means, whatever provider or payload
//! version it came in. Names are past tense; the sources' upcasters produce
//! these, the projections consume them.

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Declares an enum of named kinds from one list of `Variant => "name"`
/// pairs, with `ALL` (every variant, in declaration order) and `as_str` (its
/// name) generated from that same list: no variant can be missing from
/// either, and every `match` on the enum elsewhere stays exhaustive, so the
/// compiler points at each place a new kind must be handled.
macro_rules! named_kinds {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every kind, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The kind's name, as sent or stored.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }
    };
}
pub(crate) use named_kinds;

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

impl Event {
    /// Who the event is about (the log's `subject`), `None` for an
    /// unrecognized type, whose source may probe its payload instead.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Event::Student { student, .. } => Some(&student.jodo_student_id),
            Event::Payment { payment, .. } => Some(&payment.payment_id),
            Event::Learner { learner, .. } => Some(&learner.user_id),
            Event::Enrollment { enrollment, .. } => Some(&enrollment.user_id),
            Event::CertificateIssued(c) => Some(&c.user_id),
            Event::Unrecognized => None,
        }
    }
}

named_kinds! {
    /// What an event did to a Jodo student. Stored in `student_history.kind`
    /// by [`StudentChange::as_str`]; the serde name must agree (checked by
    /// the projection's `Kind::parse`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum StudentChange {
        Registered => "registered",
        Dropped => "dropped",
        Activated => "activated",
    }
}

impl StudentChange {
    /// Whether the status-changes report lists this kind: whether it
    /// registers, drops or re-activates the student. A new kind must say.
    pub const fn is_status_change(self) -> bool {
        match self {
            StudentChange::Registered | StudentChange::Dropped | StudentChange::Activated => true,
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

named_kinds! {
    /// What an event did to a Jodo payment (`payment_revisions.kind`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum PaymentChange {
        Added => "added",
        Updated => "updated",
        Cancelled => "cancelled",
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

named_kinds! {
    /// What an event did to a Toolzz learner (`learner_revisions.kind`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum LearnerChange {
        Created => "created",
        Updated => "updated",
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

named_kinds! {
    /// What an event did to a Toolzz enrollment (`enrollment_events.kind`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum EnrollmentChange {
        Enrolled => "enrolled",
        Completed => "completed",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of every change enum: (its name, its serde name).
    fn names() -> Vec<Vec<(&'static str, String)>> {
        fn of<K: Copy + Serialize>(
            all: &[K],
            as_str: fn(K) -> &'static str,
        ) -> Vec<(&'static str, String)> {
            all.iter()
                .map(|k| {
                    (
                        as_str(*k),
                        serde_json::to_value(k)
                            .unwrap()
                            .as_str()
                            .unwrap()
                            .to_string(),
                    )
                })
                .collect()
        }
        vec![
            of(StudentChange::ALL, StudentChange::as_str),
            of(PaymentChange::ALL, PaymentChange::as_str),
            of(LearnerChange::ALL, LearnerChange::as_str),
            of(EnrollmentChange::ALL, EnrollmentChange::as_str),
        ]
    }

    #[test]
    fn every_change_kind_is_stored_under_its_serde_name_and_no_two_share_one() {
        for kinds in names() {
            for (stored, serde) in &kinds {
                assert_eq!(stored, serde);
            }
            let distinct: std::collections::BTreeSet<_> = kinds.iter().map(|k| k.0).collect();
            assert_eq!(distinct.len(), kinds.len(), "{kinds:?}");
        }
    }
}
