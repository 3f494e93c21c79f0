//! Toolzz deliveries: envelope `{event:{name, slug, send_at, acao?}, data}`.
//! No event id and no signature: the dedupe key is a hash of the body, and the
//! secret lives in the URL (checked by the API layer).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    check_date, check_event_type, check_local_time, check_object, check_utf8, from_json, from_raw,
    local_time, non_blank, Flag, Id, NumberText, ParseContext, ParseError, Parsed, TimeFormat,
};
use crate::event::{
    named_kinds, Certificate, Delivery, EnrollmentChange, EnrollmentRecord, Event, LearnerChange,
    LearnerProfile, SchoolMembership, Source,
};

/// `send_at`'s format (zone-less; read in [`ParseContext::toolzz_zone`]).
pub const SEND_AT_FORMAT: TimeFormat = TimeFormat {
    chrono: "%Y-%m-%d %H:%M:%S",
    shape: "dddd-dd-dd dd:dd:dd",
    name: "yyyy-MM-dd HH:mm:ss",
};
/// The format of dates inside `institution[].schools[]`.
pub const SCHOOL_DATE_FORMAT: TimeFormat = TimeFormat {
    chrono: "%d/%m/%Y %H:%M:%S",
    shape: "dd/dd/dddd dd:dd:dd",
    name: "dd/MM/yyyy HH:mm:ss",
};

named_kinds! {
    /// The Toolzz event slugs registrar knows (the envelope's `event.slug`).
    /// Any other is stored as [`Event::Unrecognized`]: Toolzz may add slugs.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ToolzzType {
        MembersCreated => "members.created",
        MembersUpdated => "members.updated",
        CourseEnrollment => "activities.course.enrollment",
        CourseCompleted => "activities.course.completed",
        CertificateIssued => "activities.certificate.issued",
    }
}

impl ToolzzType {
    /// The known slug `text`, `None` for any other.
    pub fn parse(text: &str) -> Option<ToolzzType> {
        ToolzzType::ALL.iter().copied().find(|t| t.as_str() == text)
    }
}

/// The dedupe key of a Toolzz body: `blake3:` and the hex of its hash.
pub fn dedupe_key(body: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(body).to_hex())
}

#[derive(Deserialize)]
struct PingProbe {
    #[serde(default)]
    event_type: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    event: Header,
    /// Borrowed: parsed again, typed, by the upcaster.
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct Header {
    slug: String,
    send_at: String,
}

/// Parses and validates a Toolzz body.
pub fn parse(body: &[u8], ctx: &ParseContext) -> Result<Parsed, ParseError> {
    check_utf8(body)?;
    // Only a body that mentions event_type can be a ping: skip a second
    // parse of every other delivery.
    let mentions_event_type = body.windows(12).any(|w| w == b"\"event_type\"");
    if let Some(Ok(PingProbe {
        event_type: Some(t),
    })) = mentions_event_type.then(|| serde_json::from_slice::<PingProbe>(body))
    {
        if t.eq_ignore_ascii_case("PING") {
            return Ok(Parsed::Ping);
        }
    }
    let env: Envelope = from_json(body)?;
    let slug = env.event.slug;
    check_event_type("event.slug", &slug)?;
    check_object(env.data, "data")?;
    let occurred_at = local_time(&env.event.send_at, SEND_AT_FORMAT, ctx.toolzz_zone)
        .map_err(|m| ParseError::new("event.send_at", m.to_string()))?;
    let event = match ToolzzType::parse(&slug) {
        Some(kind) => upcast(kind, env.data)?,
        None => Event::Unrecognized,
    };
    let subject = match event.subject() {
        Some(subject) => Some(subject.to_string()),
        None => probe_user_id(env.data),
    };
    Ok(Parsed::Delivery(Delivery {
        source: Source::Toolzz,
        event_type: slug,
        event_version: String::new(),
        dedupe_key: dedupe_key(body),
        subject,
        occurred_at,
        event,
    }))
}

/// The upcaster. Toolzz has no payload version; a future shape change is
/// handled here, by slug and shape, converting into the same [`Event`].
fn upcast(kind: ToolzzType, data: &RawValue) -> Result<Event, ParseError> {
    let learner = |change| -> Result<Event, ParseError> {
        let d: MemberData = from_raw(data, "data")?;
        Ok(Event::Learner {
            change,
            learner: d.user.into_profile()?,
        })
    };
    let enrollment = |change| -> Result<Event, ParseError> {
        let d: EnrollmentData = from_raw(data, "data")?;
        Ok(Event::Enrollment {
            change,
            enrollment: d.into_record()?,
        })
    };
    match kind {
        ToolzzType::MembersCreated => learner(LearnerChange::Created),
        ToolzzType::MembersUpdated => learner(LearnerChange::Updated),
        ToolzzType::CourseEnrollment => enrollment(EnrollmentChange::Enrolled),
        ToolzzType::CourseCompleted => enrollment(EnrollmentChange::Completed),
        ToolzzType::CertificateIssued => {
            let d: CertificateData = from_raw(data, "data")?;
            Ok(Event::CertificateIssued(d.into_certificate()))
        }
    }
}

/// For unknown slugs: `data.user.id`, when present.
fn probe_user_id(data: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct User {
        id: Option<Id>,
    }
    #[derive(Deserialize)]
    struct Probe {
        user: Option<User>,
    }
    serde_json::from_str::<Probe>(data.get())
        .ok()?
        .user?
        .id
        .map(|id| id.0)
}

#[derive(Deserialize)]
struct MemberData {
    user: MemberUser,
}

#[derive(Deserialize)]
struct MemberUser {
    id: Id,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    cpf: Option<String>,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    date_of_birth: Option<String>,
    #[serde(default)]
    institution: Option<Vec<Institution>>,
}

#[derive(Deserialize)]
struct Institution {
    id: Id,
    #[serde(default)]
    schools: Option<Vec<School>>,
}

#[derive(Deserialize)]
struct School {
    id: Id,
    #[serde(default)]
    role_id: Option<Id>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

impl MemberUser {
    fn into_profile(self) -> Result<LearnerProfile, ParseError> {
        let mut schools = Vec::new();
        for (i, inst) in self.institution.unwrap_or_default().into_iter().enumerate() {
            for (j, s) in inst.schools.unwrap_or_default().into_iter().enumerate() {
                for (field, value) in [("created_at", &s.created_at), ("updated_at", &s.updated_at)]
                {
                    if let Some(v) = value {
                        check_local_time(v, SCHOOL_DATE_FORMAT).map_err(|m| {
                            ParseError::new(
                                format!("data.user.institution[{i}].schools[{j}].{field}"),
                                m.to_string(),
                            )
                        })?;
                    }
                }
                schools.push(SchoolMembership {
                    institution_id: inst.id.0.clone(),
                    school_id: s.id.0,
                    role_id: s.role_id.map(|r| r.0),
                    created_at: s.created_at,
                    updated_at: s.updated_at,
                });
            }
        }
        Ok(LearnerProfile {
            user_id: self.id.0,
            name: non_blank(self.name),
            email: non_blank(self.email),
            cpf: non_blank(self.cpf),
            nickname: non_blank(self.nickname),
            uuid: non_blank(self.uuid),
            phone: non_blank(self.phone),
            date_of_birth: non_blank(self.date_of_birth),
            schools,
        })
    }
}

#[derive(Deserialize)]
struct EnrollmentData {
    #[serde(default)]
    institution: Option<IdOnly>,
    course: Course,
    enrollment: Enrollment,
    user: EnrollmentUser,
}

#[derive(Deserialize)]
struct IdOnly {
    id: Id,
}

#[derive(Deserialize)]
struct Course {
    id: Id,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Enrollment {
    id: Id,
    #[serde(default)]
    date_expire: Option<String>,
    actived: Flag,
    status: Flag,
}

#[derive(Deserialize)]
struct EnrollmentUser {
    id: Id,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

impl EnrollmentData {
    fn into_record(self) -> Result<EnrollmentRecord, ParseError> {
        let date_expire = non_blank(self.enrollment.date_expire);
        if let Some(d) = &date_expire {
            check_date(d)
                .map_err(|m| ParseError::new("data.enrollment.date_expire", m.to_string()))?;
        }
        Ok(EnrollmentRecord {
            enrollment_id: self.enrollment.id.0,
            institution_id: self.institution.map(|i| i.id.0),
            // The course object is the course; the documentation's example
            // disagrees with enrollment.course_id, which is therefore not used.
            course_id: self.course.id.0,
            course_name: non_blank(self.course.name),
            user_id: self.user.id.0,
            user_name: non_blank(self.user.name),
            user_email: non_blank(self.user.email),
            active: self.enrollment.actived.0,
            status_flag: self.enrollment.status.0,
            date_expire,
        })
    }
}

#[derive(Deserialize)]
struct CertificateData {
    user: IdOnly,
    course: Course,
    #[serde(default)]
    certificate: Option<CertificateV>,
}

#[derive(Deserialize)]
struct CertificateV {
    #[serde(default)]
    certified_at: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    approval_rate: Option<NumberText>,
}

impl CertificateData {
    fn into_certificate(self) -> Certificate {
        let c = self.certificate;
        Certificate {
            user_id: self.user.id.0,
            course_id: self.course.id.0,
            course_name: non_blank(self.course.name),
            certified_at: c.as_ref().and_then(|c| non_blank(c.certified_at.clone())),
            kind: c.as_ref().and_then(|c| non_blank(c.kind.clone())),
            approval_rate: c.and_then(|c| c.approval_rate.map(|r| r.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENROLLMENT: &str = r#"{ "event": { "name": "Atividades - Nova matrícula", "slug": "activities.course.enrollment", "send_at": "2023-07-03 12:53:41" }, "data": { "institution": { "id": 12345 }, "course": { "id": 123456, "name": "Course Name" }, "enrollment": { "id": 11, "date_expire": null, "course_id": 123456789, "actived": 1, "status": 1 }, "user": { "id": 987654321, "name": "Student", "email": "student@toolzz.com", "cpf": "123.456.789-99", "nickname": null, "uuid": null } }}"#;

    fn parse_delivery(body: &str) -> Delivery {
        match parse(body.as_bytes(), &ParseContext::default()).unwrap() {
            Parsed::Delivery(d) => d,
            Parsed::Ping => panic!("ping"),
        }
    }

    #[test]
    fn every_known_slug_is_read_back_from_its_name_and_no_two_share_one() {
        for kind in ToolzzType::ALL {
            assert_eq!(ToolzzType::parse(kind.as_str()), Some(*kind));
        }
        let names: std::collections::BTreeSet<_> =
            ToolzzType::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ToolzzType::ALL.len());
        assert_eq!(ToolzzType::parse("members"), None);
    }

    const MEMBER: &str = r#"{"event":{"name":"n","slug":"members.created","send_at":"2023-07-03 12:53:41"},"data":{"user":{"id":987654321}}}"#;
    const CERTIFICATE: &str = r#"{"event":{"name":"n","slug":"activities.certificate.issued","send_at":"2023-07-03 12:53:41"},"data":{"user":{"id":987654321},"course":{"id":123456}}}"#;

    #[test]
    fn every_known_slug_becomes_its_own_change_about_its_user() {
        for kind in ToolzzType::ALL {
            let (body, shown_as) = match kind {
                ToolzzType::MembersCreated => (MEMBER, "learner created"),
                ToolzzType::MembersUpdated => (MEMBER, "learner updated"),
                ToolzzType::CourseEnrollment => (ENROLLMENT, "enrollment enrolled"),
                ToolzzType::CourseCompleted => (ENROLLMENT, "enrollment completed"),
                ToolzzType::CertificateIssued => (CERTIFICATE, "certificate"),
            };
            let body = body
                .replace("members.created", kind.as_str())
                .replace("activities.course.enrollment", kind.as_str());
            let d = parse_delivery(&body);
            assert_eq!(d.event_type, kind.as_str());
            assert_eq!(d.subject.as_deref(), Some("987654321"), "{kind:?}");
            let became = match d.event {
                Event::Learner { change, .. } => format!("learner {}", change.as_str()),
                Event::Enrollment { change, .. } => format!("enrollment {}", change.as_str()),
                Event::CertificateIssued(_) => "certificate".to_string(),
                other => panic!("{kind:?} became {other:?}"),
            };
            assert_eq!(became, shown_as, "{kind:?}");
        }
    }

    #[test]
    fn an_unknown_slug_is_kept_unrecognized_with_the_user_its_data_names() {
        let d = parse_delivery(&MEMBER.replace("members.created", "members.deleted"));
        assert_eq!(d.event, Event::Unrecognized);
        assert_eq!(d.subject.as_deref(), Some("987654321"));
    }

    #[test]
    fn send_at_is_read_in_sao_paulo_by_default() {
        let d = parse_delivery(ENROLLMENT);
        // 2023-07-03 12:53:41 at UTC-3 is 15:53:41 UTC.
        assert_eq!(d.occurred_at, 1688399621);
        assert_eq!(d.subject.as_deref(), Some("987654321"));
        assert!(d.dedupe_key.starts_with("blake3:"));
    }

    #[test]
    fn a_bad_send_at_is_named() {
        let e = parse(
            ENROLLMENT
                .replace("2023-07-03 12:53:41", "03/07/2023")
                .as_bytes(),
            &ParseContext::default(),
        )
        .unwrap_err();
        assert_eq!(e.path, "event.send_at");
    }

    fn error_at(body: &str) -> ParseError {
        parse(body.as_bytes(), &ParseContext::default()).unwrap_err()
    }

    #[test]
    fn send_at_is_parsed_exactly_without_padding_short_fields_or_extra_spaces() {
        for bad in [
            " 2023-07-03 12:53:41",
            "2023-7-3 12:53:41",
            "2023-07-03  12:53:41",
            "2023-07-03 12:53:41 ",
            "2023-07-03T12:53:41",
            "+2023-07-03 12:53:41",
            "12023-07-03 12:53:41",
        ] {
            let e = error_at(&ENROLLMENT.replace("2023-07-03 12:53:41", bad));
            assert_eq!(e.path, "event.send_at", "{bad:?}");
        }
    }

    #[test]
    fn a_send_at_in_year_9999_that_the_zone_moves_into_year_10000_is_rejected() {
        let e = error_at(&ENROLLMENT.replace("2023-07-03 12:53:41", "9999-12-31 23:00:00"));
        assert_eq!(e.path, "event.send_at");
        assert!(e.message.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn school_dates_must_be_exactly_dd_mm_yyyy_hh_mm_ss() {
        let member = |created: &str| {
            format!(
                r#"{{"event":{{"name":"n","slug":"members.created","send_at":"2023-07-03 12:53:41"}},"data":{{"user":{{"id":1,"institution":[{{"id":2,"schools":[{{"id":3,"created_at":"{created}"}}]}}]}}}}}}"#
            )
        };
        assert!(parse(
            member("03/07/2023 14:29:04").as_bytes(),
            &ParseContext::default()
        )
        .is_ok());
        for bad in [
            "3/7/2023 14:29:04",
            "03/07/2023  14:29:04",
            "03/07/2023 14:29:4",
        ] {
            let e = error_at(&member(bad));
            assert_eq!(
                e.path, "data.user.institution[0].schools[0].created_at",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn date_expire_must_be_exactly_yyyy_mm_dd() {
        let with = |d: &str| {
            ENROLLMENT.replace(
                r#""date_expire": null"#,
                &format!(r#""date_expire": "{d}""#),
            )
        };
        assert!(parse(with("2024-01-05").as_bytes(), &ParseContext::default()).is_ok());
        for bad in ["2024-1-5", " 2024-01-05", "2024-01-05 ", "24-01-05"] {
            assert_eq!(
                error_at(&with(bad)).path,
                "data.enrollment.date_expire",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_unknown_slug_still_needs_a_data_object_and_a_bounded_slug() {
        let e = error_at(
            r#"{"event":{"name":"n","slug":"shop.product.redemption","send_at":"2023-07-03 12:53:41"},"data":"x"}"#,
        );
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("data", "must be a JSON object")
        );
        let slug = "s".repeat(crate::sources::MAX_EVENT_TYPE_LEN + 1);
        let e = error_at(&ENROLLMENT.replace("activities.course.enrollment", &slug));
        assert_eq!(e.path, "event.slug");
    }

    #[test]
    fn a_latin1_body_is_rejected_as_not_utf8() {
        let latin1: Vec<u8> = ENROLLMENT.chars().map(|c| c as u32 as u8).collect();
        let e = parse(&latin1, &ParseContext::default()).unwrap_err();
        assert!(e.message.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn ping_is_recognised() {
        assert_eq!(
            parse(br#"{"event_type":"PING"}"#, &ParseContext::default()).unwrap(),
            Parsed::Ping
        );
    }
}
