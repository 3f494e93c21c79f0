//! Jodo deliveries: envelope `{event_id, event, timestamp, version, payload}`,
//! signed with `X-Jodo-Signature` (lowercase hex HMAC-SHA256 of the raw body).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    check_event_type, check_object, check_time, check_utf8, from_json, from_raw, non_blank, Id,
    JsonMoney, ParseError, Rfc3339,
};
use crate::event::{
    named_kinds, Delivery, Event, FeeDetail, Grade, Note, PaymentChange, PaymentRecord, Source,
    StudentChange, StudentProfile,
};

/// Signing lives in [`crate::auth`]; re-exported for tests and the benchmark.
pub use crate::auth::{sign, SIGNATURE_HEADER};

/// Longest `event_id` accepted; real ones are UUIDs.
const MAX_EVENT_ID_LEN: usize = 200;

#[derive(Deserialize)]
struct Envelope<'a> {
    event_id: String,
    event: String,
    timestamp: i64,
    /// A string, as documented (`"1.0"`): a number would be stored as
    /// whatever text it happened to be written with.
    version: String,
    /// Borrowed: parsed again, typed, by the upcaster.
    #[serde(borrow)]
    payload: &'a RawValue,
}

named_kinds! {
    /// The Jodo event types registrar knows (the envelope's `event`). Any
    /// other is stored as [`Event::Unrecognized`]: Jodo may add types.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum JodoType {
        StudentRegistered => "masterdata.student.registered",
        StudentDropped => "masterdata.student.dropped",
        StudentActivated => "masterdata.student.activated",
        PaymentAdded => "direct.payment.added",
        PaymentUpdated => "direct.payment.updated",
        PaymentCancelled => "direct.payment.cancelled",
    }
}

impl JodoType {
    /// The known type named `text`, `None` for any other.
    pub fn parse(text: &str) -> Option<JodoType> {
        JodoType::ALL.iter().copied().find(|t| t.as_str() == text)
    }
}

/// Parses and validates a Jodo body.
pub fn parse(body: &[u8]) -> Result<Delivery, ParseError> {
    check_utf8(body)?;
    let env: Envelope = from_json(body)?;
    if env.event_id.trim().is_empty() {
        return Err(ParseError::new("event_id", "must not be empty"));
    }
    if env.event_id.len() > MAX_EVENT_ID_LEN {
        return Err(ParseError::new(
            "event_id",
            format!("is longer than {MAX_EVENT_ID_LEN} bytes"),
        ));
    }
    check_event_type("event", &env.event)?;
    if env.timestamp <= 0 {
        return Err(ParseError::new(
            "timestamp",
            "must be a positive unix time in seconds",
        ));
    }
    check_time("timestamp", env.timestamp)?;
    check_object(env.payload, "payload")?;
    let version = env.version;
    let event = match JodoType::parse(&env.event) {
        Some(kind) => upcast(kind, &version, &env.event_id, env.payload)?,
        None => Event::Unrecognized,
    };
    let subject = match event.subject() {
        Some(subject) => Some(subject.to_string()),
        None => probe_student_id(env.payload),
    };
    Ok(Delivery {
        source: Source::Jodo,
        event_type: env.event,
        event_version: version,
        dedupe_key: env.event_id,
        subject,
        occurred_at: env.timestamp,
        event,
    })
}

/// The upcaster: every supported `(event, version)` becomes the current event.
/// Version 2 of a payload would be one more arm here, converting into the
/// same [`Event`].
fn upcast(
    kind: JodoType,
    version: &str,
    event_id: &str,
    payload: &RawValue,
) -> Result<Event, ParseError> {
    let student = |change| -> Result<Event, ParseError> {
        let p: StudentPayloadV1 = from_raw(payload, "payload")?;
        Ok(Event::Student {
            change,
            event_id: event_id.to_string(),
            student: p.into_profile(),
        })
    };
    let payment = |change| -> Result<Event, ParseError> {
        let p: PaymentPayloadV1 = from_raw(payload, "payload")?;
        Ok(Event::Payment {
            change,
            event_id: event_id.to_string(),
            payment: p.into_record()?,
        })
    };
    if !matches!(version, "1.0" | "1") {
        return Err(ParseError::new(
            "version",
            format!(
                "{version:?} is not a supported version of {}",
                kind.as_str()
            ),
        ));
    }
    match kind {
        JodoType::StudentRegistered => student(StudentChange::Registered),
        JodoType::StudentDropped => student(StudentChange::Dropped),
        JodoType::StudentActivated => student(StudentChange::Activated),
        JodoType::PaymentAdded => payment(PaymentChange::Added),
        JodoType::PaymentUpdated => payment(PaymentChange::Updated),
        JodoType::PaymentCancelled => payment(PaymentChange::Cancelled),
    }
}

/// For unknown types: the student id, when the payload has one.
fn probe_student_id(payload: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        jodo_student_id: Option<Id>,
    }
    serde_json::from_str::<Probe>(payload.get())
        .ok()?
        .jodo_student_id
        .map(|id| id.0)
}

#[derive(Deserialize)]
struct StudentPayloadV1 {
    jodo_student_id: Id,
    student: StudentV1,
}

#[derive(Deserialize)]
struct StudentV1 {
    identifier: Id,
    #[serde(default)]
    custom_identifier: Option<String>,
    #[serde(default)]
    collector_code: Option<String>,
    grade: GradeV1,
    academic_year_start: i32,
    academic_year_end: i32,
    #[serde(default)]
    primary_contact_number: Option<String>,
    #[serde(default)]
    primary_contact_email: Option<String>,
    #[serde(default)]
    notes: Option<Vec<NoteV1>>,
}

#[derive(Deserialize)]
struct GradeV1 {
    code: String,
    name: String,
}

#[derive(Deserialize)]
struct NoteV1 {
    key: String,
    #[serde(default)]
    value: Option<String>,
}

impl StudentPayloadV1 {
    fn into_profile(self) -> StudentProfile {
        let s = self.student;
        StudentProfile {
            jodo_student_id: self.jodo_student_id.0,
            identifier: s.identifier.0,
            custom_identifier: non_blank(s.custom_identifier),
            collector_code: non_blank(s.collector_code),
            grade: Some(Grade {
                code: s.grade.code,
                name: s.grade.name,
            }),
            academic_year_start: Some(s.academic_year_start),
            academic_year_end: Some(s.academic_year_end),
            primary_contact_number: non_blank(s.primary_contact_number),
            primary_contact_email: non_blank(s.primary_contact_email),
            notes: s
                .notes
                .unwrap_or_default()
                .into_iter()
                .map(|n| Note {
                    key: n.key,
                    value: n.value.unwrap_or_default(),
                })
                .collect(),
        }
    }
}

#[derive(Deserialize)]
struct PaymentPayloadV1 {
    #[serde(default)]
    jodo_student_id: Option<Id>,
    payment: PaymentV1,
    #[serde(default)]
    student: Option<PaymentStudentV1>,
}

#[derive(Deserialize)]
struct PaymentV1 {
    id: Id,
    amount: JsonMoney,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    settlement_utr: Option<String>,
    #[serde(default)]
    notes: Option<String>,
    paid_at: Rfc3339,
    #[serde(default)]
    details: Option<Vec<DetailV1>>,
}

#[derive(Deserialize)]
struct DetailV1 {
    fee_component: String,
    amount: JsonMoney,
}

#[derive(Deserialize)]
struct PaymentStudentV1 {
    #[serde(default)]
    identifier: Option<Id>,
    #[serde(default)]
    collector_code: Option<String>,
}

impl PaymentPayloadV1 {
    fn into_record(self) -> Result<PaymentRecord, ParseError> {
        let p = self.payment;
        let (student_identifier, collector_code) = match self.student {
            Some(s) => (s.identifier.map(|i| i.0), non_blank(s.collector_code)),
            None => (None, None),
        };
        let jodo_student_id = self.jodo_student_id.map(|i| i.0);
        if jodo_student_id.is_none() && student_identifier.is_none() {
            return Err(ParseError::new(
                "payload.student.identifier",
                "is missing, and there is no payload.jodo_student_id to link the payment to a student",
            ));
        }
        Ok(PaymentRecord {
            payment_id: p.id.0,
            amount: p.amount.0,
            mode: non_blank(p.mode).unwrap_or_else(|| "others".to_string()),
            transaction_id: non_blank(p.transaction_id),
            settlement_utr: non_blank(p.settlement_utr),
            notes: non_blank(p.notes),
            paid_at: p.paid_at.0,
            details: p
                .details
                .unwrap_or_default()
                .into_iter()
                .map(|d| FeeDetail {
                    fee_component: d.fee_component,
                    amount: d.amount.0,
                })
                .collect(),
            jodo_student_id,
            student_identifier,
            collector_code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DROPPED: &str = r#"{ "event": "masterdata.student.dropped", "event_id": "f8093bb5-29c7-4b3a-a99b-298520233820", "version": "1.0", "timestamp": 1655448963, "payload": { "jodo_student_id": "student_1234", "student": { "identifier": "1234", "custom_identifier": "cust_1234", "collector_code": null, "grade": { "code": "M1BLUE", "name": "Montessori 1" }, "academic_year_start": 2022, "academic_year_end": 2023, "primary_contact_number": "9876543210", "primary_contact_email": "parent@example.com", "notes": [ { "key": "registration_number", "value": "REG12345" } ] } }}"#;

    fn payment(amount: &str) -> String {
        format!(
            r#"{{"event":"direct.payment.added","event_id":"e1","version":"1.0","timestamp":1643450745,"payload":{{"payment":{{"id":"pay_1","amount":{amount},"mode":"cash","transaction_id":"TX1","settlement_utr":null,"notes":"n","paid_at":"2022-01-29T10:05:45Z","details":[{{"fee_component":"TUITION_FEE","amount":"1000.50"}}]}},"student":{{"identifier":"1234"}}}}}}"#
        )
    }

    #[test]
    fn every_known_type_is_read_back_from_its_name_and_no_two_share_one() {
        for kind in JodoType::ALL {
            assert_eq!(JodoType::parse(kind.as_str()), Some(*kind));
        }
        let names: std::collections::BTreeSet<_> =
            JodoType::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), JodoType::ALL.len());
        assert_eq!(JodoType::parse("masterdata.student"), None);
    }

    #[test]
    fn every_known_type_becomes_its_own_change_about_its_own_subject() {
        let (student, pay) = (DROPPED.to_string(), payment("5"));
        for kind in JodoType::ALL {
            let (body, expected, subject) = match kind {
                JodoType::StudentRegistered => (&student, "student registered", "student_1234"),
                JodoType::StudentDropped => (&student, "student dropped", "student_1234"),
                JodoType::StudentActivated => (&student, "student activated", "student_1234"),
                JodoType::PaymentAdded => (&pay, "payment added", "pay_1"),
                JodoType::PaymentUpdated => (&pay, "payment updated", "pay_1"),
                JodoType::PaymentCancelled => (&pay, "payment cancelled", "pay_1"),
            };
            let body = body
                .replace("masterdata.student.dropped", kind.as_str())
                .replace("direct.payment.added", kind.as_str());
            let d = parse(body.as_bytes()).unwrap();
            assert_eq!(d.event_type, kind.as_str());
            assert_eq!(d.subject.as_deref(), Some(subject), "{kind:?}");
            let became = match d.event {
                Event::Student { change, .. } => format!("student {}", change.as_str()),
                Event::Payment { change, .. } => format!("payment {}", change.as_str()),
                other => panic!("{kind:?} became {other:?}"),
            };
            assert_eq!(became, expected, "{kind:?}");
        }
    }

    #[test]
    fn a_known_type_in_an_unsupported_version_is_rejected_but_an_unknown_type_in_any_version_is_kept(
    ) {
        let body = DROPPED.replace(r#""version": "1.0""#, r#""version": "2.0""#);
        let e = parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.path, "version");
        assert_eq!(
            e.message,
            r#""2.0" is not a supported version of masterdata.student.dropped"#
        );
        let body = body.replace("masterdata.student.dropped", "masterdata.student.merged");
        assert_eq!(parse(body.as_bytes()).unwrap().event, Event::Unrecognized);
    }

    #[test]
    fn the_documented_drop_parses() {
        let d = parse(DROPPED.as_bytes()).unwrap();
        assert_eq!(d.dedupe_key, "f8093bb5-29c7-4b3a-a99b-298520233820");
        assert_eq!(d.occurred_at, 1655448963);
        assert_eq!(d.subject.as_deref(), Some("student_1234"));
        let Event::Student {
            change, student, ..
        } = d.event
        else {
            panic!("not a student event")
        };
        assert_eq!(change, StudentChange::Dropped);
        assert_eq!(student.collector_code, None);
        assert_eq!(student.notes[0].value, "REG12345");
    }

    #[test]
    fn an_integer_student_id_is_stored_as_a_string() {
        let body = DROPPED.replace(r#""student_1234""#, "1234567");
        let d = parse(body.as_bytes()).unwrap();
        assert_eq!(d.subject.as_deref(), Some("1234567"));
    }

    #[test]
    fn a_missing_field_is_named_by_its_path() {
        let body = DROPPED.replace(r#""identifier": "1234","#, "");
        let e = parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.path, "payload.student.identifier");
    }

    #[test]
    fn payment_amounts_are_exact() {
        for (text, minor) in [("2000", 200_000), ("2000.0", 200_000), ("1499.5", 149_950)] {
            let d = parse(payment(text).as_bytes()).unwrap();
            let Event::Payment { payment, .. } = d.event else {
                panic!()
            };
            assert_eq!(payment.amount.minor(), minor);
            assert_eq!(payment.details[0].amount.minor(), 100_050);
        }
    }

    #[test]
    fn an_amount_with_three_decimals_is_rejected_at_its_path() {
        let e = parse(payment("10.001").as_bytes()).unwrap_err();
        assert_eq!(e.path, "payload.payment.amount");
        assert!(e.message.contains("more than two decimal places"), "{e}");
        let e = parse(payment("-5").as_bytes()).unwrap_err();
        assert!(e.message.contains("negative"), "{e}");
    }

    #[test]
    fn an_unknown_type_is_kept_unrecognized() {
        let body = r#"{"event":"flex.instalment.debited","event_id":"x","version":"1.0","timestamp":1,"payload":{"jodo_student_id":42}}"#;
        let d = parse(body.as_bytes()).unwrap();
        assert_eq!(d.event, Event::Unrecognized);
        assert_eq!(d.subject.as_deref(), Some("42"));
    }

    #[test]
    fn an_envelope_or_payload_that_is_not_an_object_is_rejected() {
        let e = parse(br#"["x","flex.instalment.debited",1700000000,"1.0",{}]"#).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("", "must be a JSON object")
        );
        let body = r#"{"event":"masterdata.student.dropped","event_id":"x","version":"1.0","timestamp":1,"payload":["a"]}"#;
        let e = parse(body.as_bytes()).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("payload", "must be a JSON object")
        );
        let e = parse(b"[1, 2").unwrap_err();
        assert!(e.message.starts_with("body is not valid JSON"), "{e}");
    }

    #[test]
    fn a_body_with_a_byte_that_is_not_utf8_is_rejected_even_inside_an_unknown_field() {
        let mut body = br#"{"event":"flex.x","event_id":"x","version":"1.0","timestamp":1,"payload":{},"extra":"a"#.to_vec();
        body.extend_from_slice(b"\xff\"}");
        let e = parse(&body).unwrap_err();
        assert_eq!(e.path, "");
        assert!(e.message.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn a_timestamp_rfc3339_cannot_show_is_rejected_naming_the_field() {
        let body = DROPPED.replace("1655448963", "9223372036854775807");
        let e = parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.path, "timestamp");
        // The last second of year 9999 is still accepted.
        let body = DROPPED.replace("1655448963", "253402300799");
        assert_eq!(parse(body.as_bytes()).unwrap().occurred_at, 253402300799);
        let body = DROPPED.replace("1655448963", "253402300800");
        assert_eq!(parse(body.as_bytes()).unwrap_err().path, "timestamp");
    }

    #[test]
    fn a_paid_at_whose_offset_moves_it_out_of_four_digit_years_is_rejected() {
        let body = payment("5").replace("2022-01-29T10:05:45Z", "9999-12-31T23:59:59-01:00");
        let e = parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.path, "payload.payment.paid_at");
        let body = payment("5").replace("2022-01-29T10:05:45Z", "0000-01-01T00:00:00+01:00");
        assert_eq!(
            parse(body.as_bytes()).unwrap_err().path,
            "payload.payment.paid_at"
        );
    }

    #[test]
    fn a_version_sent_as_a_number_is_rejected() {
        let body = DROPPED.replace(r#""version": "1.0""#, r#""version": 1.0"#);
        assert_eq!(parse(body.as_bytes()).unwrap_err().path, "version");
    }

    #[test]
    fn an_unknown_type_still_needs_a_payload_object() {
        for payload in ["null", "\"x\"", "[]", "1"] {
            let body = format!(
                r#"{{"event":"flex.instalment.debited","event_id":"x","version":"1.0","timestamp":1,"payload":{payload}}}"#
            );
            let e = parse(body.as_bytes()).unwrap_err();
            assert_eq!(
                (e.path.as_str(), e.message.as_str()),
                ("payload", "must be a JSON object"),
                "{payload}"
            );
        }
    }

    #[test]
    fn an_event_type_over_the_length_limit_or_outside_the_charset_is_rejected_without_echoing_it() {
        let long = "a".repeat(crate::sources::MAX_EVENT_TYPE_LEN + 1);
        for event in [
            long.as_str(),
            "flex instalment",
            "flex\\nfake log line",
            "é.x",
            "",
        ] {
            let body = format!(
                r#"{{"event":"{event}","event_id":"x","version":"1.0","timestamp":1,"payload":{{}}}}"#
            );
            let e = parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.path, "event", "{event:?}");
            assert!(!e.message.contains("aaaa"), "{e}");
        }
        let ok = "a".repeat(crate::sources::MAX_EVENT_TYPE_LEN);
        let body = format!(
            r#"{{"event":"{ok}","event_id":"x","version":"1.0","timestamp":1,"payload":{{}}}}"#
        );
        assert!(parse(body.as_bytes()).is_ok());
    }
}
