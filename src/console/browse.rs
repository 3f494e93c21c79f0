//! Overview, students, one student, one payment.

use axum::extract::{Path, State};
use axum::Extension;
use maud::{html, Markup};

use super::html::{empty, opt, rupees, segment, when, when_micros};
use super::reports::{
    self, collections_by_mode, figure_cells, figure_heads, fold_known, KnownPayment,
};
use super::viewer::Viewer;
use super::{ConsoleError, ConsoleState, Ctx, Html, Query};
use crate::event::PaymentRecord;
use crate::http::params::resolve;
use crate::http::ApiError;
use crate::projection::entities::{PaymentStatus, StudentStatus};
use crate::projection::query::payments::{self, Revision};
use crate::projection::query::students;
use crate::{log, quarantine};

/// Students per page of the list.
pub const STUDENTS_PER_PAGE: u32 = 50;
/// A student's payments one page lists at most (a student has a few a
/// year); past it the page says how many there are.
pub const MAX_STUDENT_PAYMENTS: usize = 500;

page_query!(TimesQuery {});

/// `GET /console`: where the ledger stands.
pub async fn overview(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(q, pairs): Query<TimesQuery>,
) -> Result<Html, ConsoleError> {
    let (head, pending) = c
        .app
        .log
        .run(|conn| Ok((log::head(conn)?, quarantine::pending(conn)?)))
        .await?;
    let position = c.app.live.position();
    let (lag_events, lag) = c.app.live.lag();
    let health = c.app.live.health();
    let zone = c.app.config.business_zone;
    let t = q.times(zone)?;
    let collections = c
        .app
        .projections(move |conn| collections_by_mode(conn, t, zone))
        .await?;
    let last_verify = c.verify.lock().expect("verify lock").summary();
    let ctx = Ctx::new(&c, &viewer, pairs);
    let dz = ctx.zone();
    let (first, last) = (
        collections.month.0.to_string(),
        collections.month.1.to_string(),
    );
    let body = html! {
        section.cards aria-label="Where the ledger stands" {
            div.card {
                h2 { "Log head" }
                p.big { "seq " (head.seq) }
                p.hash title="hash of the newest event" { code { (hex::encode(head.hash)) } }
                p { a href=(ctx.href("/console/events", &[])) { "Read the events" } }
            }
            div.card {
                h2 { "Projections" }
                p.big { "seq " (position) }
                p {
                    @if lag_events == 0 { "Up to date with the log." }
                    @else { (lag_events) " events behind (" (format!("{:.1}", lag.as_secs_f64())) " s)." }
                }
                @if let Some(f) = &health.failed { p.error role="alert" { "The projector stopped: " (f) } }
                @if health.rebuilding.is_some() { p { "A rebuild is running." } }
            }
            div.card {
                h2 { "Last verify" }
                (last_verify.render(dz))
                p { a href=(ctx.href("/console/integrity", &[])) { "Integrity" } }
            }
            div.card {
                h2 { "Quarantine" }
                p.big { (pending) " pending" }
                p { a href=(ctx.href("/console/quarantine", &[])) { "Deal with rejected deliveries" } }
            }
        }
        section aria-labelledby="collections" {
            h2 #collections {
                @if ctx.times.as_of.is_some() { "Collections on " (collections.day) " by mode" }
                @else { "Today's collections by mode" }
            }
            @if collections.modes.is_empty() {
                (empty(&format!("No payments recorded on {}.", collections.day)))
            } @else {
                table {
                    caption { "Payments paid on " (collections.day) " (business day, " (zone.name()) ")" }
                    thead { tr { th scope="col" { "Mode" } (figure_heads()) } }
                    tbody {
                        @for (mode, f) in &collections.modes {
                            tr { td { (mode) } (figure_cells(f)) }
                        }
                    }
                    tfoot { tr { th scope="row" { "Total" } (figure_cells(&collections.totals)) } }
                }
            }
            p { a href=(ctx.href("/console/day-book", &[("from", &first), ("to", &last)])) { "Open the day book for this month" } }
        }
    };
    Ok(ctx.render("Overview", "/console", body))
}

page_query!(StudentsQuery {
    q: Option<String>,
    status: Option<StudentStatus>,
    grade: Option<String>,
    collector_code: Option<String>,
    after: Option<String>,
});

/// `GET /console/students`: search and filters, paged.
pub async fn students(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(q, pairs): Query<StudentsQuery>,
) -> Result<Html, ConsoleError> {
    q.times(c.app.config.business_zone)?;
    let filter = students::StudentFilter {
        status: q.status,
        grade: q.grade.clone(),
        collector_code: q.collector_code.clone(),
        text: q.q.clone(),
    };
    let after = q.after.clone();
    let mut rows = c
        .app
        .projections(move |conn| {
            Ok(students::list(
                conn,
                &filter,
                after.as_deref(),
                STUDENTS_PER_PAGE + 1,
            )?)
        })
        .await?;
    let more = rows.len() > STUDENTS_PER_PAGE as usize;
    rows.truncate(STUDENTS_PER_PAGE as usize);
    let ctx = Ctx::new(&c, &viewer, pairs);
    let dz = ctx.zone();
    let status = q.status.map(StudentStatus::as_str).unwrap_or("");
    let next = more.then(|| {
        let last = rows.last().map(|(id, _)| id.as_str()).unwrap_or("");
        ctx.href(
            "/console/students",
            &[
                ("q", q.q.as_deref().unwrap_or("")),
                ("status", status),
                ("grade", q.grade.as_deref().unwrap_or("")),
                ("collector_code", q.collector_code.as_deref().unwrap_or("")),
                ("after", last),
            ],
        )
    });
    let body = html! {
        form.filters method="get" action="/console/students" role="search" {
            label for="q" { "Search" }
            input #q type="search" name="q" value=[q.q.as_deref()] placeholder="identifier, Jodo id, phone, email" size="30";
            label for="status" { "Status" }
            select #status name="status" {
                option value="" { "any" }
                option value="active" selected[status == "active"] { "active" }
                option value="dropped" selected[status == "dropped"] { "dropped" }
            }
            label for="grade" { "Grade" }
            input #grade type="text" name="grade" value=[q.grade.as_deref()] placeholder="code or name" size="14";
            label for="collector_code" { "Collector" }
            input #collector_code type="text" name="collector_code" value=[q.collector_code.as_deref()] size="10";
            @if let Some(a) = &ctx.times.as_of { input type="hidden" name="as_of" value=(a); }
            @if let Some(k) = &ctx.times.known_at { input type="hidden" name="known_at" value=(k); }
            button type="submit" { "Search" }
        }
        @if ctx.times.is_set() {
            p.hint { "The list shows students as they are now; open one to see them at the time set." }
        }
        @if rows.is_empty() {
            (empty("No student matches these filters."))
        } @else {
            table {
                caption { "Students" @if q.after.is_some() { " (continued)" } }
                thead { tr {
                    th scope="col" { "Jodo id" } th scope="col" { "Identifier" } th scope="col" { "Custom identifier" }
                    th scope="col" { "Grade" } th scope="col" { "Status" } th scope="col" { "Since" }
                    th scope="col" { "Collector" } th scope="col" { "Contact" }
                } }
                tbody {
                    @for (id, s) in &rows {
                        tr {
                            td { a href=(ctx.href(&format!("/console/students/{}", segment(id)), &[])) { (id) } }
                            td { (s.profile.identifier) }
                            td { (opt(s.profile.custom_identifier.as_deref())) }
                            td { (opt(s.profile.grade.as_ref().map(|g| g.name.as_str()))) }
                            td { (s.status.as_str()) }
                            td { (when(s.status_since, dz)) }
                            td { (opt(s.profile.collector_code.as_deref())) }
                            td { (opt(s.profile.primary_contact_number.as_deref())) }
                        }
                    }
                }
            }
        }
        @if let Some(n) = next { p.pager { a href=(n) rel="next" { "Next page" } } }
    };
    Ok(ctx.render("Students", "/console/students", body))
}

/// `GET /console/students/{id}`: profile, status timeline, payments, as
/// the statement report has them at the times set.
pub async fn student(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    Query(q, pairs): Query<TimesQuery>,
) -> Result<Html, ConsoleError> {
    let zone = c.app.config.business_zone;
    let t = q.times(zone)?;
    let (jodo_student_id, statement) = c
        .app
        .projections(move |conn| {
            let jid = resolve(conn, &id)?;
            let statement = reports::statement(conn, t, &jid)?;
            Ok((jid, statement))
        })
        .await?;
    let ctx = Ctx::new(&c, &viewer, pairs);
    let dz = ctx.zone();
    let student = &statement.student;
    let p = &student.profile;
    // The totals count every payment, shown or not.
    let (mut recorded, mut cancelled) = (0i128, 0i128);
    for k in &statement.payments {
        let minor = i128::from(k.state.record.amount.minor());
        match k.state.status {
            PaymentStatus::Recorded => recorded += minor,
            PaymentStatus::Cancelled => cancelled += minor,
        }
    }
    let total = statement.payments.len();
    let shown = &statement.payments[..total.min(MAX_STUDENT_PAYMENTS)];
    let events = ctx.href("/console/events", &[("subject", &jodo_student_id)]);
    let body = html! {
        section aria-labelledby="profile" {
            h2 #profile { "Profile" }
            dl.profile {
                dt { "Jodo id" } dd { (jodo_student_id) }
                dt { "Identifier" } dd { (p.identifier) }
                dt { "Custom identifier" } dd { (opt(p.custom_identifier.as_deref())) }
                dt { "Status" } dd { strong { (student.status.as_str()) } " since " (when(student.status_since, dz)) }
                dt { "Registered" } dd { @match student.registered_at { Some(r) => (when(r, dz)), None => span.none { "—" } } }
                dt { "Grade" } dd { @match &p.grade { Some(g) => { (g.name) " (" (g.code) ")" }, None => span.none { "—" } } }
                dt { "Academic year" } dd {
                    @match (p.academic_year_start, p.academic_year_end) {
                        (Some(a), Some(b)) => { (a) "–" (b) },
                        _ => span.none { "—" },
                    }
                }
                dt { "Collector" } dd { (opt(p.collector_code.as_deref())) }
                dt { "Contact number" } dd { (opt(p.primary_contact_number.as_deref())) }
                dt { "Contact email" } dd { (opt(p.primary_contact_email.as_deref())) }
                @for n in &p.notes { dt { (n.key) } dd { (n.value) } }
            }
            p { a href=(events) { "Raw events about this student" } }
        }
        section aria-labelledby="timeline" {
            h2 #timeline { "Status timeline" }
            table {
                caption { "Status events, in provider-time order" }
                thead { tr { th scope="col" { "Event" } th scope="col" { "Provider time" } th scope="col" { "Received" } th scope="col" { "Delivery" } } }
                tbody {
                    @for h in &statement.timeline {
                        tr {
                            td { (h.change.as_str()) }
                            td { (when(h.at, dz)) }
                            td { (when_micros(h.received_at, dz)) }
                            td { a href=(ctx.href(&format!("/console/events/{}", h.seq), &[])) { "seq " (h.seq) } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="payments" {
            h2 #payments { "Payments" }
            p.totals {
                "Recorded: " strong { (rupees(recorded)) } " · Cancelled: " strong { (rupees(cancelled)) }
            }
            @if total > shown.len() {
                p.hint role="status" { "Showing the first " (shown.len()) " of " (total) " payments; the totals count them all." }
            }
            @if shown.is_empty() {
                (empty("No payments for this student."))
            } @else {
                (payments_table(&ctx, shown))
            }
        }
    };
    let title = format!("Student {}", p.identifier);
    let path = format!("/console/students/{}", segment(&jodo_student_id));
    Ok(ctx.render(&title, &path, body))
}

fn payments_table(ctx: &Ctx, pays: &[KnownPayment]) -> Markup {
    let dz = ctx.zone();
    html! {
        table {
            caption { "Payments, by paid time" }
            thead { tr {
                th scope="col" { "Payment" } th scope="col" { "Paid" } th scope="col" { "Amount" }
                th scope="col" { "Mode" } th scope="col" { "Status" } th scope="col" { "Revisions" }
            } }
            tbody {
                @for k in pays {
                    @let s = &k.state;
                    tr.(s.status.as_str()) {
                        td { a href=(ctx.href(&format!("/console/payments/{}", segment(&s.record.payment_id)), &[])) { (s.record.payment_id) } }
                        td { (when(s.record.paid_at, dz)) }
                        td.num { (rupees(i128::from(s.record.amount.minor()))) }
                        td { (s.record.mode) }
                        td { (s.status.as_str()) @if let Some(at) = s.cancelled_at { " " (when(at, dz)) } }
                        td.num { (k.revisions.len()) }
                    }
                }
            }
        }
    }
}

/// A payment record's fields as the revisions table shows them: (label,
/// the value compared between revisions, the cell).
fn fields(r: &PaymentRecord, zone: chrono_tz::Tz) -> Vec<(&'static str, String, Markup)> {
    // An optional text field's row: compared as its text, shown or marked absent.
    let text =
        |label, v: &Option<String>| (label, v.clone().unwrap_or_default(), opt(v.as_deref()));
    let details: Vec<String> = r
        .details
        .iter()
        .map(|d| format!("{}={}", d.fee_component, d.amount))
        .collect();
    vec![
        (
            "Amount",
            r.amount.to_string(),
            html! { (rupees(i128::from(r.amount.minor()))) },
        ),
        ("Mode", r.mode.clone(), html! { (r.mode) }),
        ("Paid at", r.paid_at.to_string(), when(r.paid_at, zone)),
        text("Transaction id", &r.transaction_id),
        text("Settlement UTR", &r.settlement_utr),
        text("Notes", &r.notes),
        (
            "Fee details",
            details.join(";"),
            html! {
                ul.details { @for d in &r.details { li { (d.fee_component) ": " (rupees(i128::from(d.amount.minor()))) } } }
            },
        ),
        text("Jodo student id", &r.jodo_student_id),
        text("Student identifier", &r.student_identifier),
        text("Collector", &r.collector_code),
    ]
}

/// `GET /console/payments/{id}`: current values and every revision side by
/// side, changed fields highlighted, each revision linked to its delivery.
/// `GET /console/payments/{id}/bundle.json`: the bundle of every revision,
/// the same document as `GET /v1/payments/{id}/bundle`.
pub async fn payment_bundle(
    State(c): State<ConsoleState>,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ConsoleError> {
    let revisions = c.app.payment_bundles(id.clone()).await?;
    // The file name keeps only what is safe in a header's quoted string.
    let safe: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    Ok(super::json_download(
        &serde_json::json!({ "payment_id": id, "revisions": revisions }),
        &format!("payment-{safe}-bundle.json"),
    ))
}

pub async fn payment(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    Query(q, pairs): Query<TimesQuery>,
) -> Result<Html, ConsoleError> {
    let zone = c.app.config.business_zone;
    let t = q.times(zone)?;
    let (linked, revs, known) = c
        .app
        .projections(move |conn| {
            let linked = payments::get(conn, &id)?
                .ok_or_else(|| ApiError::NotFound(format!("no payment has id {id:?}")))?;
            let revs: Vec<Revision> = payments::revisions(conn, &id)?;
            let known = fold_known(revs.clone(), t);
            Ok((linked, revs, known))
        })
        .await?;
    let ctx = Ctx::new(&c, &viewer, pairs);
    let dz = ctx.zone();
    let included: Vec<i64> = known
        .as_ref()
        .map(|(_, r)| r.iter().map(|r| r.seq).collect())
        .unwrap_or_default();
    let current = known.as_ref().map(|(s, _)| s);
    let rev_fields: Vec<_> = revs.iter().map(|r| fields(&r.record, dz)).collect();
    let now_fields = current.map(|s| fields(&s.record, dz));
    let pid = &linked.state.record.payment_id;
    let body = html! {
        @match current {
            None => p.banner.times { "This payment was not known at the time set; its revisions are listed below." },
            Some(s) => dl.profile {
                dt { "Status" } dd { strong { (s.status.as_str()) } @if let Some(at) = s.cancelled_at { " on " (when(at, dz)) } }
                dt { "Amount" } dd { (rupees(i128::from(s.record.amount.minor()))) }
                dt { "Student" } dd {
                    @match &linked.linked {
                        Some(sid) => a href=(ctx.href(&format!("/console/students/{}", segment(sid)), &[])) { (sid) },
                        None => span.none { "not linked to a known student" },
                    }
                }
                dt { "Raw events" } dd { a href=(ctx.href("/console/events", &[("subject", pid)])) { "Every delivery about this payment" } }
                dt { "Proof" } dd {
                    a download href=(format!("/console/payments/{}/bundle.json", segment(pid))) { "Download the bundle of every revision" }
                    " " span.meta { "(checked offline with registrar proof check)" }
                }
            }
        }
        // No table at all without revisions: headers over nothing say less
        // than the empty state.
        @if revs.is_empty() {
            (empty("No revisions are recorded for this payment."))
        } @else {
            div.scroll {
                table.revisions {
                    caption { "Current values and every revision, oldest first; changed fields are marked" }
                    thead {
                        tr {
                            th scope="col" { "Field" }
                            th scope="col" { "Current" @if ctx.times.is_set() { " (at the time set)" } }
                            @for (i, r) in revs.iter().enumerate() {
                                th scope="col" class=[(!included.contains(&r.seq)).then_some("excluded")] {
                                    "Revision " (i + 1) ": " (r.change.as_str()) br;
                                    span.meta { "provider " (when(r.at, dz)) } br;
                                    span.meta { "received " (when_micros(r.received_at, dz)) } br;
                                    a href=(ctx.href(&format!("/console/events/{}", r.seq), &[])) { "delivery seq " (r.seq) }
                                    @if !included.contains(&r.seq) { br; span.meta { "(not known at the time set)" } }
                                }
                            }
                        }
                    }
                    tbody {
                        @for (row, (label, _, _)) in rev_fields.first().map(|f| f.as_slice()).unwrap_or(&[]).iter().enumerate() {
                            tr {
                                th scope="row" { (label) }
                                td.current { @match &now_fields { Some(f) => (f[row].2), None => span.none { "—" } } }
                                @for (i, f) in rev_fields.iter().enumerate() {
                                    @let changed = i > 0 && rev_fields[i - 1][row].1 != f[row].1;
                                    td class=[changed.then_some("changed")] {
                                        (f[row].2)
                                        @if changed { span.visually-hidden { " (changed)" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let title = format!("Payment {pid}");
    let path = format!("/console/payments/{}", segment(pid));
    Ok(ctx.render(&title, &path, body))
}
