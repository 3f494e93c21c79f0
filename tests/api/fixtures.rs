//! Provider bodies: the documentation's examples, and builders for variants.
#![allow(dead_code)]

use serde_json::{json, Value};

/// A Jodo student event (registered, dropped, activated) as documented.
pub fn jodo_student(event: &str, event_id: &str, student_id: &str, timestamp: i64) -> String {
    json!({
        "event": format!("masterdata.student.{event}"),
        "event_id": event_id,
        "version": "1.0",
        "timestamp": timestamp,
        "payload": {
            "jodo_student_id": student_id,
            "student": {
                "identifier": format!("id-{student_id}"),
                "custom_identifier": format!("cust-{student_id}"),
                "collector_code": null,
                "grade": { "code": "M1BLUE", "name": "Montessori 1" },
                "academic_year_start": 2022,
                "academic_year_end": 2023,
                "primary_contact_number": "9876543210",
                "primary_contact_email": "parent@example.com",
                "notes": [ { "key": "registration_number", "value": "REG12345" } ]
            }
        }
    })
    .to_string()
}

/// A Jodo manual payment event (added, updated, cancelled). `amount` is JSON
/// number text, so exactness can be tested.
pub fn jodo_payment(
    event: &str,
    event_id: &str,
    payment_id: &str,
    student_id: Option<&str>,
    amount: &str,
    timestamp: i64,
) -> String {
    let student_field = match student_id {
        Some(id) => format!(r#""jodo_student_id":"{id}","#),
        None => String::new(),
    };
    let identifier = student_id
        .map(|s| format!("id-{s}"))
        .unwrap_or_else(|| "id-orphan".into());
    format!(
        r#"{{"event":"direct.payment.{event}","event_id":"{event_id}","version":"1.0","timestamp":{timestamp},"payload":{{{student_field}"payment":{{"id":"{payment_id}","amount":{amount},"mode":"cash","transaction_id":"TXN-{payment_id}","settlement_utr":"","notes":"paid at the office","paid_at":"2022-01-29T10:05:45Z","details":[{{"fee_component":"TUITION_FEE","amount":"{amount}"}}]}},"student":{{"identifier":"{identifier}","custom_identifier":"cust","collector_code":"COL1","academic_year_start":2022,"academic_year_end":2023,"primary_contact_number":"9876543210"}}}}}}"#
    )
}

/// The documentation's masterdata.student.dropped example, verbatim.
pub const SEED_DROPPED: &str = r#"{ "event": "masterdata.student.dropped", "event_id": "f8093bb5-29c7-4b3a-a99b-298520233820", "version": "1.0", "timestamp": 1655448963, "payload": { "jodo_student_id": "student_1234", "student": { "identifier": "1234", "custom_identifier": "cust_1234", "collector_code": null, "grade": { "code": "M1BLUE", "name": "Montessori 1" }, "academic_year_start": 2022, "academic_year_end": 2023, "primary_contact_number": "9876543210", "primary_contact_email": "parent@example.com", "notes": [ { "key": "registration_number", "value": "REG12345" } ] } }}"#;

/// The documentation's masterdata.student.registered example, verbatim (it
/// reuses the dropped example's event_id: send one of them with another id).
pub const SEED_REGISTERED: &str = r#"{ "event": "masterdata.student.registered", "event_id": "f8093bb5-29c7-4b3a-a99b-298520233820", "version": "1.0", "timestamp": 1655448963, "payload": { "jodo_student_id": "student_1234", "student": { "identifier": "1234", "custom_identifier": "cust_1234", "collector_code": null, "grade": { "code": "M1BLUE", "name": "Montessori 1" }, "academic_year_start": 2022, "academic_year_end": 2023, "primary_contact_number": "9876543210", "primary_contact_email": "parent@example.com", "notes": [ { "key": "registration_number", "value": "REG12345" } ] } }}"#;

/// The documentation's activities.course.enrollment example, verbatim.
pub const SEED_ENROLLMENT: &str = r#"{ "event": { "name": "Atividades - Nova matrícula", "slug": "activities.course.enrollment", "send_at": "2023-07-03 12:53:41" }, "data": { "institution": { "id": 12345 }, "course": { "id": 123456, "name": "Course Name" }, "enrollment": { "id": 11, "date_expire": null, "course_id": 123456789, "actived": 1, "status": 1 }, "user": { "id": 987654321, "name": "Student", "email": "student@toolzz.com", "cpf": "123.456.789-99", "nickname": null, "uuid": null } }}"#;

/// The documentation's members.updated example, verbatim.
pub const SEED_MEMBERS_UPDATED: &str = r#"{
"event": {
"name": "Membros - Edição de dados de usuário",
"slug": "members.updated",
"send_at": "2023-07-03 14:29:26",
"acao": "atualização"
},
"data": {
"user": {
"id": 123456,
"name": "Student",
"email": "student@toolzz.com",
"institution": [
{
"id": 12345,
"schools": [
{
"id": 123456789,
"role_id": 4,
"created_at": "29/06/2022 15:14:10",
"updated_at": "03/07/2023 14:29:04"
}
]
}
],
"cpf": "123.456.789-99",
"nickname": null,
"uuid": null
}
}
}"#;

/// PROVIDERS.md's activities.course.completed example, verbatim.
pub const SEED_COURSE_COMPLETED: &str = r#"{"event":{"name":"Atividades - Curso concluído","slug":"activities.course.completed","send_at":"2023-07-03 12:53:41"},"data":{"institution":{"id":12345},"course":{"id":123456,"name":"Course Name"},"enrollment":{"id":11,"date_expire":null,"course_id":123456789,"actived":1,"status":1},"user":{"id":987654321,"name":"Student","email":"student@toolzz.com","cpf":"123.456.789-99","nickname":null,"uuid":null}}}"#;

/// PROVIDERS.md's activities.trail.completed example, verbatim.
pub const SEED_TRAIL_COMPLETED: &str = r#"{"event":{"name":"Atividades - Trilha concluída","slug":"activities.trail.completed","send_at":"2022-03-10 18:56:47"},"data":{"institution":{"id":12345},"user":{"id":123456798,"name":"Student","email":"student@toolzz.com"},"trail":{"id":987654,"name":"Trail Name","finished_at":"2022-03-10 18:56:47","courses":[{"id":123456,"title":"Course Name"}]}}}"#;

/// A Toolzz enrollment-shaped event (enrollment or completed) for variants.
pub fn toolzz_enrollment(
    slug: &str,
    send_at: &str,
    enrollment_id: u64,
    user_id: u64,
    course_id: u64,
    status: u8,
) -> String {
    json!({
        "event": { "name": "Atividades", "slug": slug, "send_at": send_at },
        "data": {
            "institution": { "id": 12345 },
            "course": { "id": course_id, "name": format!("Course {course_id}") },
            "enrollment": { "id": enrollment_id, "date_expire": null, "course_id": course_id, "actived": status, "status": status },
            "user": { "id": user_id, "name": "Student", "email": "student@toolzz.com", "cpf": "123.456.789-99", "nickname": null, "uuid": null }
        }
    })
    .to_string()
}

/// A members.created / members.updated body for variants.
pub fn toolzz_member(slug: &str, send_at: &str, user_id: u64, name: &str) -> Value {
    json!({
        "event": { "name": "Membros", "slug": slug, "send_at": send_at, "acao": "cadastro" },
        "data": { "user": {
            "id": user_id, "name": name, "email": "student@toolzz.com",
            "institution": [ { "id": 12345, "schools": [ { "id": 99, "role_id": 4, "created_at": "29/06/2022 15:14:10", "updated_at": "03/07/2023 14:29:04" } ] } ],
            "cpf": "123.456.789-99", "nickname": null, "uuid": null
        } }
    })
}
