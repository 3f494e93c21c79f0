//! `GET /openapi.json`: the API described for clients and auditors. A test
//! checks that its paths are exactly [`super::ROUTES`].

use axum::Json;
use serde_json::{json, Value};

use crate::http::params::{NoParams, Params};

fn q(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": { "type": "string" }, "description": description })
}

fn p(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" }, "description": description })
}

fn page() -> [Value; 2] {
    [
        json!({ "name": "limit", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 1, "maximum": crate::http::params::MAX_LIMIT, "default": crate::http::params::DEFAULT_LIMIT } }),
        q("cursor", "Opaque; the next_cursor of the previous page."),
    ]
}

fn ok(schema: &str, description: &str) -> Value {
    json!({
        "200": { "description": description, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } },
        "default": { "description": "Error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
    })
}

fn list_of(item: &str) -> Value {
    json!({ "type": "object", "properties": {
        "items": { "type": "array", "items": { "$ref": format!("#/components/schemas/{item}") } },
        "next_cursor": { "type": "string", "nullable": true } } })
}

/// A `/v1` read: every one takes `min_seq` (read-your-writes) and answers
/// with the position its projections had reached.
fn get(summary: &str, mut params: Vec<Value>, schema: &str) -> Value {
    params.push(json!({ "name": "min_seq", "in": "query", "required": false,
        "description": "Answer only once the projections reach this log seq (the seq of an ingest answer); waits up to --min-seq-wait-ms, else 503 with Retry-After. Also as the header X-Registrar-Min-Seq.",
        "schema": { "type": "integer", "minimum": 0 } }));
    let mut responses = ok(schema, summary);
    responses["200"]["headers"] = json!({ "X-Registrar-Position": {
        "description": "The log seq the projections had reached when this answer was read",
        "schema": { "type": "integer" } } });
    json!({ "get": { "summary": summary, "parameters": params, "responses": responses } })
}

/// The document.
pub fn spec() -> Value {
    let [limit, cursor] = page();
    let webhook = |summary: &str, extra: Vec<Value>| {
        json!({ "post": {
            "summary": summary,
            "parameters": extra,
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
            "responses": {
                "200": { "description": "Stored (accepted), already stored (duplicate) or a ping", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/IngestAnswer" } } } },
                "400": { "description": "Not JSON, or a known event failing validation; quarantined" },
                "401": { "description": "Authentication failed; quarantined" },
                "409": { "description": "Jodo event_id already stored with another body; quarantined" },
                "413": { "description": "Body over the limit; quarantined" },
                "503": { "description": "The log cannot be written; nothing stored" }
            } } })
    };
    let s = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "registrar",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Hash-chained event log of Jodo and Toolzz webhooks, and projections derived from it. Money is a decimal string with two places; times are RFC 3339 UTC."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "object", "properties": {
                    "code": { "type": "string" }, "message": { "type": "string" } } } } },
                "IngestAnswer": { "type": "object", "properties": {
                    "status": { "type": "string", "enum": ["accepted", "duplicate", "ping"] },
                    "seq": { "type": "integer" } } },
                "Head": { "type": "object", "properties": { "seq": { "type": "integer" }, "hash": { "type": "string" } } },
                "Student": { "type": "object", "properties": {
                    "jodo_student_id": { "type": "string" }, "identifier": { "type": "string" },
                    "custom_identifier": { "type": "string", "nullable": true }, "collector_code": { "type": "string", "nullable": true },
                    "grade": { "type": "object", "nullable": true, "properties": { "code": { "type": "string" }, "name": { "type": "string" } } },
                    "academic_year_start": { "type": "integer" }, "academic_year_end": { "type": "integer" },
                    "primary_contact_number": { "type": "string", "nullable": true }, "primary_contact_email": { "type": "string", "nullable": true },
                    "notes": { "type": "array", "items": { "type": "object", "properties": { "key": { "type": "string" }, "value": { "type": "string" } } } },
                    "status": { "type": "string", "enum": ["active", "dropped"] },
                    "status_since": { "type": "string", "format": "date-time" },
                    "registered_at": { "type": "string", "format": "date-time", "nullable": true } } },
                "StudentList": list_of("Student"),
                "HistoryItem": { "type": "object", "properties": {
                    "event": { "type": "string", "enum": ["registered", "dropped", "activated"] },
                    "at": { "type": "string", "format": "date-time" }, "seq": { "type": "integer" }, "event_id": { "type": "string" } } },
                "History": list_of("HistoryItem"),
                "Detail": { "type": "object", "properties": { "fee_component": { "type": "string" }, "amount": { "type": "string", "example": "1000.50" } } },
                "Revision": { "type": "object", "properties": {
                    "seq": { "type": "integer" }, "event": { "type": "string", "enum": ["added", "updated", "cancelled"] },
                    "at": { "type": "string", "format": "date-time" }, "event_id": { "type": "string" },
                    "amount": { "type": "string" }, "mode": { "type": "string" }, "transaction_id": { "type": "string", "nullable": true },
                    "settlement_utr": { "type": "string", "nullable": true }, "notes": { "type": "string", "nullable": true },
                    "paid_at": { "type": "string", "format": "date-time" }, "details": { "type": "array", "items": s("Detail") } } },
                "Payment": { "type": "object", "properties": {
                    "payment_id": { "type": "string" }, "amount": { "type": "string", "example": "2000.50" },
                    "status": { "type": "string", "enum": ["recorded", "cancelled"] }, "mode": { "type": "string" },
                    "transaction_id": { "type": "string", "nullable": true }, "settlement_utr": { "type": "string", "nullable": true },
                    "notes": { "type": "string", "nullable": true }, "paid_at": { "type": "string", "format": "date-time" },
                    "details": { "type": "array", "items": s("Detail") },
                    "jodo_student_id": { "type": "string", "nullable": true }, "student_identifier": { "type": "string", "nullable": true },
                    "collector_code": { "type": "string", "nullable": true }, "cancelled_at": { "type": "string", "format": "date-time", "nullable": true },
                    "revisions": { "type": "array", "items": s("Revision"), "description": "On GET /v1/payments/{payment_id} only." } } },
                "PaymentList": list_of("Payment"),
                "StudentPayments": { "type": "object", "properties": {
                    "items": { "type": "array", "items": s("Payment") }, "next_cursor": { "type": "string", "nullable": true },
                    "total_recorded": { "type": "string", "description": "Sum of recorded (not cancelled) payments." } } },
                "Enrollment": { "type": "object", "properties": {
                    "enrollment_id": { "type": "string" }, "course_id": { "type": "string" }, "course_name": { "type": "string", "nullable": true },
                    "user_id": { "type": "string" }, "institution_id": { "type": "string", "nullable": true }, "active": { "type": "boolean" },
                    "status": { "type": "string", "enum": ["active", "inactive", "completed"] },
                    "date_expire": { "type": "string", "format": "date", "nullable": true },
                    "enrolled_at": { "type": "string", "format": "date-time", "nullable": true },
                    "completed_at": { "type": "string", "format": "date-time", "nullable": true },
                    "certificate": { "type": "object", "nullable": true } } },
                "EnrollmentList": list_of("Enrollment"),
                "Learner": { "type": "object", "properties": {
                    "user_id": { "type": "string" }, "name": { "type": "string", "nullable": true }, "email": { "type": "string", "nullable": true },
                    "schools": { "type": "array", "items": { "type": "object" } }, "enrollments": { "type": "array", "items": s("Enrollment") } } },
                "Report": { "type": "object", "description": "report, as_of, known_at, seq, business_zone, then the report's items" },
                "Event": { "type": "object", "properties": {
                    "seq": { "type": "integer" }, "source": { "type": "string", "enum": ["jodo", "toolzz"] }, "type": { "type": "string" },
                    "version": { "type": "string" }, "dedupe_key": { "type": "string" }, "subject": { "type": "string", "nullable": true },
                    "occurred_at": { "type": "string", "format": "date-time" }, "received_at": { "type": "string", "format": "date-time" },
                    "body_hash": { "type": "string" }, "prev_hash": { "type": "string" }, "hash": { "type": "string" },
                    "body_intact": { "type": "boolean" }, "body": { "type": "object" } } },
                "EventList": list_of("Event"),
                "RebuildReport": { "type": "object", "properties": {
                    "events": { "type": "integer" }, "skipped": { "type": "integer" }, "last_seq": { "type": "integer" },
                    "seconds": { "type": "number" }, "events_per_second": { "type": "number" },
                    "load_seconds": { "type": "number" }, "fold_seconds": { "type": "number" },
                    "catch_up_seconds": { "type": "number" } } },
                "Status": { "type": "object" }
            }
        },
        "paths": {
            "/webhooks/jodo": webhook("Receive a Jodo delivery (signed with X-Jodo-Signature)", vec![
                json!({ "name": "X-Jodo-Signature", "in": "header", "required": false, "schema": { "type": "string" },
                        "description": "Lowercase hex HMAC-SHA256 of the raw body; required when a secret is configured." })]),
            "/webhooks/toolzz": webhook("Receive a Toolzz delivery (only when no token is configured)", vec![]),
            "/webhooks/toolzz/{token}": webhook("Receive a Toolzz delivery", vec![p("token", "The secret configured as REGISTRAR_TOOLZZ_TOKEN.")]),
            "/healthz": { "get": { "summary": "Liveness: the process is up", "responses": { "200": { "description": "ok" } } } },
            "/readyz": { "get": { "summary": "Readiness: the log is writable, the projector runs and its lag is under --max-lag-ms",
                "responses": { "200": { "description": "ready" }, "503": { "description": "not ready; the body says why" } } } },
            "/metrics": { "get": { "summary": "Metrics in Prometheus text format", "responses": { "200": { "description": "OpenMetrics text" } } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3" } } } },
            "/v1/audit/head": get("The head of the hash chain, to record and later pass to verify --pin", vec![], "Head"),
            "/v1/students": get("Students", vec![
                q("status", "active or dropped"), q("grade", "Grade code or name"), q("collector_code", "Collector code"),
                q("q", "Text in ids, identifiers, grade or contacts"), limit.clone(), cursor.clone()], "StudentList"),
            "/v1/students/{id}": get("A student by jodo_student_id, identifier or custom_identifier", vec![
                p("id", "jodo_student_id, identifier or custom_identifier"),
                q("as_of", "RFC 3339: the student as they stood then, from events with provider time at or before it")], "Student"),
            "/v1/students/{id}/history": get("Registered, dropped and activated events in provider-time order", vec![
                p("id", "jodo_student_id, identifier or custom_identifier"), limit.clone(), cursor.clone()], "History"),
            "/v1/students/{id}/payments": get("A student's payments and the total recorded", vec![
                p("id", "jodo_student_id, identifier or custom_identifier"), limit.clone(), cursor.clone()], "StudentPayments"),
            "/v1/payments": get("Manual payments by paid_at", vec![
                q("from", "RFC 3339 or yyyy-mm-dd, inclusive"), q("to", "RFC 3339 or yyyy-mm-dd (the whole day), inclusive"),
                q("status", "recorded or cancelled"), q("mode", "cash, cheque, ..."), q("collector_code", "Collector code"),
                limit.clone(), cursor.clone()], "PaymentList"),
            "/v1/payments/{payment_id}": get("A payment with every revision", vec![p("payment_id", "Jodo payment id")], "Payment"),
            "/v1/learners/{user_id}": get("A Toolzz learner with schools and enrollments", vec![p("user_id", "Toolzz user id")], "Learner"),
            "/v1/enrollments": get("Toolzz enrollments", vec![
                q("user_id", "Toolzz user id"), q("course_id", "Course id"), q("status", "active, inactive or completed"),
                limit.clone(), cursor.clone()], "EnrollmentList"),
            "/v1/events": get("The audit trail: the log in seq order", vec![
                q("after_seq", "Only events after this seq"), q("source", "jodo or toolzz"), q("type", "Provider event type"),
                q("subject", "Student id, payment id or Toolzz user id"), limit, cursor], "EventList"),
            "/v1/events/{seq}": get("One event of the log", vec![p("seq", "The event's seq")], "Event"),
            "/v1/reports/day-book": get("Per business day, mode and collector code: count and total of recorded and of cancelled payments; subtotals per day; totals (JSON, or CSV with format=csv or Accept: text/csv)",
                vec![q("from", "First business date (yyyy-mm-dd) or RFC 3339 time"), q("to", "Last business date or time, at most 366 days after from"), q("mode", "Payment mode"), q("collector_code", "Collector code"), q("as_of", "Provider time: what was true then (default now)"), q("known_at", "Receipt time: what registrar had received by then (default now)"), q("format", "json or csv")], "Report"),
            "/v1/reports/payments": get("The payment register",
                vec![q("from", "First date or time of paid_at"), q("to", "Last date or time of paid_at"), q("status", "recorded or cancelled"), q("mode", "Payment mode"), q("collector_code", "Collector code"), q("as_of", "Provider time"), q("known_at", "Receipt time"), q("format", "json or csv")], "Report"),
            "/v1/reports/statement/{student_id}": get("A student's statement: profile, status timeline, payments with revisions, totals",
                vec![p("student_id", "jodo_student_id, identifier or custom identifier"), q("as_of", "Provider time"), q("known_at", "Receipt time"), q("format", "json or csv")], "Report"),
            "/v1/reports/changes": get("Payment revisions received in the window, each changed field's old and new value",
                vec![q("from", "First date or time of receipt"), q("to", "Last date or time of receipt"), q("as_of", "Provider time"), q("known_at", "Receipt time"), q("format", "json or csv")], "Report"),
            "/v1/reports/status-changes": get("Students registered, dropped and re-activated in the window",
                vec![q("from", "First date or time"), q("to", "Last date or time"), q("grade", "Grade code or name"), q("as_of", "Provider time"), q("known_at", "Receipt time"), q("format", "json or csv")], "Report"),
            "/v1/admin/rebuild": { "post": { "summary": "Rebuild every projection from the log; answers when the new projections are live",
                "security": [{ "bearer": [] }], "responses": ok("RebuildReport", "Rebuilt") } },
            "/v1/admin/status": get("Log head, projection position, quarantine size", vec![], "Status"),
        },
        "security": [{ "bearer": [] }]
    })
}

pub async fn document(Params(NoParams {}): Params<NoParams>) -> Json<Value> {
    Json(spec())
}
