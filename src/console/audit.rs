//! Events (the audit trail and one event's hashes and body), the
//! quarantine (pending rejects, a reject's body, readmit), and integrity
//! (verify in the background, pins).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chrono_tz::Tz;
use maud::{html, Markup};
use serde::Deserialize;

use super::html::{empty, opt, pretty_body, when, when_micros};
use super::viewer::Viewer;
use super::{json_download, parse_form, ConsoleError, ConsoleState, Ctx, Html, Query};
use crate::event::Source;
use crate::http::ApiError;
use crate::ledger::{now_micros, PinError, ReadmitError, Readmitted};
use crate::log::pins::{self, PinCheck};
use crate::log::verify::{self, Verified, VerifyError};
use crate::log::{self, chain};
use crate::log::{bundle, checkpoints};
use crate::{db, quarantine};

/// Events per page of the audit trail.
pub const EVENTS_PER_PAGE: u32 = 50;
/// Rejected deliveries per page of the quarantine.
pub const QUARANTINE_PER_PAGE: u32 = 50;
/// Most bytes of a body shown on a page (pretty-printed); a longer one is
/// cut, and the page says so. Real bodies are a few KiB.
pub const MAX_BODY_SHOWN: usize = 256 * 1024;
/// How often the integrity page reloads itself while verify runs, seconds.
pub const VERIFY_REFRESH_SECS: u32 = 2;

page_query!(EventsQuery {
    source: Option<Source>,
    event_type: Option<String>,
    subject: Option<String>,
    after: Option<u64>,
});

/// `GET /console/events`: the log in seq order, filtered.
pub async fn events(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(q, pairs): Query<EventsQuery>,
) -> Result<Html, ConsoleError> {
    let times = q.times(c.app.config.business_zone)?;
    let after = crate::http::params::seq_param("after", q.after.unwrap_or(0))?;
    // The trail as known at / as of the times set: events received by then,
    // events that happened by then.
    let filter = log::EventFilter {
        source: q.source,
        event_type: q.event_type.clone(),
        subject: q.subject.clone(),
        received_by: q.known_at.is_some().then_some(times.known_at),
        occurred_by: q.as_of.is_some().then_some(times.as_of),
    };
    let mut rows = c
        .app
        .log
        .run(move |conn| Ok(log::list(conn, &filter, after, EVENTS_PER_PAGE + 1)?))
        .await?;
    let more = rows.len() > EVENTS_PER_PAGE as usize;
    rows.truncate(EVENTS_PER_PAGE as usize);
    let ctx = Ctx::new(&c, &viewer, pairs);
    let dz = ctx.zone();
    let source = q.source.map(Source::as_str).unwrap_or("");
    let next = more.then(|| {
        let last = rows.last().map_or(0, |e| e.seq).to_string();
        ctx.href(
            "/console/events",
            &[
                ("source", source),
                ("event_type", q.event_type.as_deref().unwrap_or("")),
                ("subject", q.subject.as_deref().unwrap_or("")),
                ("after", &last),
            ],
        )
    });
    let body = html! {
        form.filters method="get" action="/console/events" {
            label for="source" { "Source" }
            select #source name="source" {
                option value="" { "any" }
                option value="jodo" selected[source == "jodo"] { "Jodo" }
                option value="toolzz" selected[source == "toolzz"] { "Toolzz" }
            }
            label for="event_type" { "Type" }
            input #event_type type="text" name="event_type" value=[q.event_type.as_deref()] placeholder="e.g. direct.payment.added" size="26";
            label for="subject" { "Subject" }
            input #subject type="text" name="subject" value=[q.subject.as_deref()] placeholder="student, payment or user id" size="20";
            @if let Some(a) = &ctx.times.as_of { input type="hidden" name="as_of" value=(a); }
            @if let Some(k) = &ctx.times.known_at { input type="hidden" name="known_at" value=(k); }
            button type="submit" { "Filter" }
        }
        @if ctx.times.is_set() { p.hint { "The audit trail lists the events received by the known-at time and that happened by the as-of time." } }
        @if rows.is_empty() {
            (empty("No event matches these filters."))
        } @else {
            table {
                caption { "Events in the log, oldest first" }
                thead { tr {
                    th scope="col" { "Seq" } th scope="col" { "Source" } th scope="col" { "Type" }
                    th scope="col" { "Subject" } th scope="col" { "Provider time" } th scope="col" { "Received" }
                } }
                tbody {
                    @for e in &rows {
                        tr {
                            td { a href=(ctx.href(&format!("/console/events/{}", e.seq), &[])) { (e.seq) } }
                            td { (e.source) }
                            td { (e.event_type) }
                            td { @match &e.subject {
                                Some(s) => a href=(ctx.href("/console/events", &[("subject", s)])) { (s) },
                                None => span.none { "—" },
                            } }
                            td { (when(e.occurred_at, dz)) }
                            td { (when_micros(e.received_at, dz)) }
                        }
                    }
                }
            }
        }
        @if let Some(n) = next { p.pager { a href=(n) rel="next" { "Next page" } } }
    };
    Ok(ctx.render("Events", "/console/events", body))
}

page_query!(TimesOnly {});

/// `GET /console/events/{seq}`: one event's hashes, its link to the one
/// before, and its original body, pretty-printed and escaped.
/// `GET /console/events/{seq}/bundle.json`: the event's bundle, the same
/// document as `GET /v1/events/{seq}/bundle`, for `registrar proof check`.
pub async fn event_bundle(
    State(c): State<ConsoleState>,
    Path(seq): Path<String>,
) -> Result<Response, ConsoleError> {
    let seq = crate::http::params::seq_path(&seq)?;
    let cache = c.app.log.tree();
    let b = c
        .app
        .log
        .run(move |conn| Ok(bundle::of_event(conn, cache, seq)?))
        .await?;
    Ok(json_download(&b, &format!("event-{seq}-bundle.json")))
}

pub async fn event(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(seq): Path<String>,
    Query(q, pairs): Query<TimesOnly>,
) -> Result<Html, ConsoleError> {
    q.times(c.app.config.business_zone)?;
    let seq = crate::http::params::seq_path(&seq)?;
    let (e, prev, head) = c
        .app
        .log
        .run(move |conn| {
            let e = log::get(conn, seq)?
                .ok_or_else(|| ApiError::NotFound(format!("no event has seq {seq}")))?;
            let prev = if seq > 1 {
                log::get(conn, seq - 1)?
            } else {
                None
            };
            Ok((e, prev, log::head(conn)?.seq))
        })
        .await?;
    let ctx = Ctx::new(&c, &viewer, pairs);
    let dz = ctx.zone();
    let body_ok = chain::body_hash(&e.body) == e.body_hash;
    let expected_prev = match &prev {
        Some(p) => p.hash,
        None => chain::GENESIS,
    };
    let link_ok = e.prev_hash == expected_prev;
    let hash_ok =
        chain::link_hash(&e.prev_hash, e.seq, &e.source, e.received_at, &e.body_hash) == e.hash;
    let (text, cut) = pretty_body(&e.body, MAX_BODY_SHOWN);
    let check = |ok: bool, yes: &str, no: &str| -> Markup {
        if ok {
            html! { span.ok { "✓ " (yes) } }
        } else {
            html! { span.bad { "✗ " (no) } }
        }
    };
    let body = html! {
        dl.profile {
            dt { "Source" } dd { (e.source) }
            dt { "Type" } dd { (e.event_type) " " span.meta { "version " (opt(Some(&e.event_version))) } }
            dt { "Dedupe key" } dd { code { (e.dedupe_key) } }
            dt { "Subject" } dd { @match &e.subject {
                Some(s) => a href=(ctx.href("/console/events", &[("subject", s)])) { (s) },
                None => span.none { "—" },
            } }
            dt { "Provider time" } dd { (when(e.occurred_at, dz)) }
            dt { "Received" } dd { (when_micros(e.received_at, dz)) }
            dt { "Body hash" } dd { code { (hex::encode(e.body_hash)) } " " (check(body_ok, "the body matches it", "the body does not match it")) }
            dt { "Previous hash" } dd {
                code { (hex::encode(e.prev_hash)) } " "
                (check(link_ok, "matches the event before", "does not match the event before"))
                @if e.seq > 1 { " · " a href=(ctx.href(&format!("/console/events/{}", e.seq - 1), &[])) rel="prev" { "seq " (e.seq - 1) } }
            }
            dt { "Hash" } dd { code { (hex::encode(e.hash)) } " " (check(hash_ok, "recomputes", "does not recompute")) }
            dt { "Proof" } dd {
                a download href=(format!("/console/events/{}/bundle.json", e.seq)) { "Download its bundle" }
                " " span.meta { "(checked offline with registrar proof check)" }
            }
        }
        p.pager {
            @if e.seq > 1 { a href=(ctx.href(&format!("/console/events/{}", e.seq - 1), &[])) { "← seq " (e.seq - 1) } " · " }
            // The head has no next event yet: no link to a page that is a 404.
            @if e.seq < head { a href=(ctx.href(&format!("/console/events/{}", e.seq + 1), &[])) { "seq " (e.seq + 1) " →" } }
        }
        h2 { "Original body" }
        @if cut { p.hint { "The body is longer than " (MAX_BODY_SHOWN / 1024) " KiB: only its start is shown." } }
        pre.body tabindex="0" aria-label="Original body" { code { (text) } }
    };
    let title = format!("Event {}", e.seq);
    Ok(ctx.render(&title, &format!("/console/events/{}", e.seq), body))
}

page_query!(QuarantineQuery {
    all: Option<bool>,
    after: Option<i64>,
});

fn entry_state(e: &quarantine::Entry, ctx: &Ctx, zone: Tz) -> Markup {
    match (e.readmitted_at, e.readmitted_seq) {
        (Some(at), Some(seq)) => html! {
            "readmitted " (when_micros(at, zone)) " as "
            a href=(ctx.href(&format!("/console/events/{seq}"), &[])) { "seq " (seq) }
        },
        _ => html! { strong { "pending" } },
    }
}

/// `GET /console/quarantine`: rejected deliveries, oldest first.
pub async fn quarantine(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(q, pairs): Query<QuarantineQuery>,
) -> Result<Html, ConsoleError> {
    q.times(c.app.config.business_zone)?;
    let all = q.all.unwrap_or(false);
    let after = q.after.unwrap_or(0);
    let mut rows = c
        .app
        .log
        .run(move |conn| {
            Ok(quarantine::list(
                conn,
                after,
                QUARANTINE_PER_PAGE + 1,
                !all,
            )?)
        })
        .await?;
    let more = rows.len() > QUARANTINE_PER_PAGE as usize;
    rows.truncate(QUARANTINE_PER_PAGE as usize);
    let ctx = Ctx::new(&c, &viewer, pairs);
    let dz = ctx.zone();
    let next = more.then(|| {
        let last = rows.last().map_or(0, |e| e.id).to_string();
        let all = if all { "true" } else { "" };
        ctx.href("/console/quarantine", &[("all", all), ("after", &last)])
    });
    let body = html! {
        form.filters method="get" action="/console/quarantine" {
            input #all type="checkbox" name="all" value="true" checked[all];
            label for="all" { "Also show those already readmitted" }
            @if let Some(a) = &ctx.times.as_of { input type="hidden" name="as_of" value=(a); }
            @if let Some(k) = &ctx.times.known_at { input type="hidden" name="known_at" value=(k); }
            button type="submit" { "Show" }
        }
        @if rows.is_empty() {
            (empty(if all { "The quarantine is empty." } else { "No rejected delivery is waiting." }))
        } @else {
            table {
                caption { @if all { "Every kept reject" } @else { "Rejected deliveries waiting" } ", oldest first" }
                thead { tr {
                    th scope="col" { "Id" } th scope="col" { "Source" } th scope="col" { "Received" }
                    th scope="col" { "Answer" } th scope="col" { "Reason" } th scope="col" { "State" }
                } }
                tbody {
                    @for e in &rows {
                        tr {
                            td { a href=(ctx.href(&format!("/console/quarantine/{}", e.id), &[])) { (e.id) } }
                            td { (e.reject.source) @if !e.reject.authenticated { br; span.meta { "unauthenticated" } } }
                            td { (when_micros(e.reject.received_at, dz)) }
                            td { (e.reject.http_status) " " code { (e.reject.code) } }
                            td { (e.reject.reason) }
                            td { (entry_state(e, &ctx, dz)) }
                        }
                    }
                }
            }
        }
        @if let Some(n) = next { p.pager { a href=(n) rel="next" { "Next page" } } }
    };
    Ok(ctx.render("Quarantine", "/console/quarantine", body))
}

fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{text:?} is not a quarantine id")))
}

/// `GET /console/quarantine/{id}`: one reject, its body, readmit (admin).
pub async fn quarantined(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    Query(q, pairs): Query<TimesOnly>,
) -> Result<Html, ConsoleError> {
    q.times(c.app.config.business_zone)?;
    let id = parse_id(&id)?;
    let e = c
        .app
        .log
        .run(move |conn| {
            quarantine::get(conn, id)?
                .ok_or_else(|| ApiError::NotFound(format!("no quarantined delivery has id {id}")))
        })
        .await?;
    let ctx = Ctx::new(&c, &viewer, pairs);
    let dz = ctx.zone();
    let (text, cut) = pretty_body(&e.reject.body, MAX_BODY_SHOWN);
    let admin = viewer.role == super::viewer::Role::Admin;
    let body = html! {
        dl.profile {
            dt { "Source" } dd { (e.reject.source) }
            dt { "Received" } dd { (when_micros(e.reject.received_at, dz)) }
            dt { "Answered" } dd { (e.reject.http_status) " " code { (e.reject.code) } }
            dt { "Reason" } dd { (e.reject.reason) }
            dt { "Authenticated" } dd { @if e.reject.authenticated { "yes" } @else { "no" } }
            dt { "State" } dd { (entry_state(&e, &ctx, dz)) }
            @for (k, v) in &e.reject.headers {
                dt { "Header " code { (k) } } dd { code { (v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())) } }
            }
        }
        @if e.readmitted_seq.is_none() {
            @if admin {
                form.action method="post" action=(format!("/console/quarantine/{}/readmit", e.id)) {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    p {
                        input #force type="checkbox" name="force" value="true";
                        label for="force" { "Vouch for it: readmit even if its authentication cannot be checked again (a Toolzz token is never kept)" }
                    }
                    button type="submit" { "Readmit" }
                }
            } @else {
                p.hint { "Readmitting needs the admin role." }
            }
        }
        h2 { "Body as received" }
        @if e.reject.body_truncated { p.hint { "The body was cut at the size limit when it was rejected." } }
        @if cut { p.hint { "Only the first " (MAX_BODY_SHOWN / 1024) " KiB are shown." } }
        pre.body tabindex="0" aria-label="Body as received" { code { (text) } }
    };
    let title = format!("Rejected delivery {}", e.id);
    Ok(ctx.render(&title, &format!("/console/quarantine/{}", e.id), body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadmitForm {
    csrf: String,
    force: Option<bool>,
}

/// `POST /console/quarantine/{id}/readmit` (admin): through the ledger's
/// one writer, then back to the reject, which shows its new state.
pub async fn readmit(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ConsoleError> {
    viewer.require_admin()?;
    let form: ReadmitForm = parse_form(&body)?;
    viewer.check_csrf(&form.csrf)?;
    let id = parse_id(&id)?;
    let force = form.force.unwrap_or(false);
    let done = c
        .app
        .ledger
        .readmit(id, force, c.app.config.jodo_keys())
        .await
        .map_err(|e| match e {
            ReadmitError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ReadmitError::Ledger(l) => l.into(),
            other => ApiError::Conflict(format!("not readmitted: {other}")),
        })?;
    let seq = match done {
        Readmitted::Appended { seq } | Readmitted::Duplicate { seq } => seq,
    };
    tracing::info!(
        id,
        seq,
        force,
        "quarantined delivery readmitted from the console"
    );
    Ok(Redirect::to(&format!("/console/quarantine/{id}")).into_response())
}

/// The last verify and the one running, kept in memory (since start).
#[derive(Default, Clone)]
pub struct VerifyState {
    /// Started at (micros), and how far it has come.
    running: Option<(i64, Arc<verify::Progress>)>,
    last: Option<Finished>,
}

#[derive(Clone)]
struct Finished {
    started_at: i64,
    finished_at: i64,
    outcome: Result<Verified, String>,
}

impl VerifyState {
    pub fn summary(&self) -> VerifyState {
        self.clone()
    }

    pub fn render(&self, zone: Tz) -> Markup {
        html! {
            @if let Some((at, progress)) = &self.running {
                @let total = progress.total.load(Ordering::Relaxed);
                @let checked = progress.checked.load(Ordering::Relaxed).min(total);
                p role="status" {
                    "Running since " (when_micros(*at, zone)) ": "
                    (checked) " of " (total) " events checked"
                    @if total > 0 { " (" (checked * 100 / total) "%)" }
                    "…"
                }
                progress max=(total.max(1)) value=(checked) { (checked) " of " (total) }
            }
            @match &self.last {
                None => p { "Not run since the server started." },
                Some(f) => {
                    @match &f.outcome {
                        Ok(v) => p.ok {
                            "✓ The chain is intact: " (v.events) " events, head seq " (v.head_seq) "."
                            @if let Some((first, n)) = v.unparsed { " " (n) " bodies no longer parse (first: seq " (first) ")." }
                        },
                        Err(e) => p.bad role="alert" { "✗ " (e) },
                    }
                    p.meta { "Finished " (when_micros(f.finished_at, zone)) " (" (format!("{:.1}", (f.finished_at - f.started_at) as f64 / 1e6)) " s)." }
                }
            }
        }
    }
}

/// `GET /console/integrity`: verify, and the pins checked against the log.
pub async fn integrity(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(q, pairs): Query<TimesOnly>,
) -> Result<Html, ConsoleError> {
    q.times(c.app.config.business_zone)?;
    let (head, pins, more, newest) = c
        .app
        .log
        .run(|conn| {
            // One more than are listed, to know whether there are more.
            let mut list = pins::list(conn, pins::MAX_LISTED + 1)?;
            let more = list.len() > pins::MAX_LISTED as usize;
            list.truncate(pins::MAX_LISTED as usize);
            let mut checked = Vec::with_capacity(list.len());
            for p in list {
                let check = pins::check(conn, &p)?;
                checked.push((p, check));
            }
            let newest = checkpoints::newest(conn)?;
            Ok((log::head(conn)?, checked, more, newest))
        })
        .await?;
    let verifier = c
        .app
        .config
        .signing_key
        .as_ref()
        .map(|k| k.verifier().to_string());
    let state = c.verify.lock().expect("verify lock").summary();
    let ctx = Ctx::new(&c, &viewer, pairs);
    let dz = ctx.zone();
    let admin = viewer.role == super::viewer::Role::Admin;
    let body = html! {
        section aria-labelledby="verify" {
            h2 #verify { "Verify the chain" }
            p { "Recomputes every hash from the first event to the head (seq " (head.seq) ") and re-derives each event's columns from its body." }
            (state.render(dz))
            @if admin {
                @if state.running.is_none() {
                    form.action method="post" action="/console/integrity/verify" {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button type="submit" { "Run verify" }
                    }
                }
            } @else { p.hint { "Running verify needs the admin role." } }
        }
        section aria-labelledby="checkpoints" {
            h2 #checkpoints { "Signed checkpoints" }
            p { "A checkpoint states the log's size and Merkle root, signed by this server, in the C2SP format an auditor's own tools read. Anyone who keeps one can later check that the log still holds it and grew only by appending." }
            @match &verifier {
                Some(key) => {
                    p { "Verifier key (give it to auditors):" }
                    p { code.hash { (key) } }
                }
                None => {
                    p.error role="alert" { "Checkpoints are not signed: no signing key is configured. Set REGISTRAR_SIGNING_KEY_FILE to a key made by `registrar key generate`." }
                }
            }
            @match &newest {
                Some(cp) => {
                    p { "The newest, of size " (cp.size) ", made " (when_micros(cp.made_at, dz)) @if !cp.signed { " (unsigned)" } ":" }
                    pre.note { (cp.note) }
                }
                None => { (empty("No checkpoint has been made yet.")) }
            }
        }
        section aria-labelledby="pins" {
            h2 #pins { "Pins" }
            p { "A pin records the head of the chain with a note (for instance at a month's close). Each is checked against the log below: a pin that no longer holds means the log was rewritten or cut." }
            @if admin {
                form.action method="post" action="/console/integrity/pins" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    label for="note" { "Note" }
                    input #note type="text" name="note" maxlength=(pins::MAX_NOTE_CHARS) size="40" placeholder="e.g. March 2024 close" required;
                    button type="submit" { "Record the current head (seq " (head.seq) ")" }
                }
            } @else { p.hint { "Recording a pin needs the admin role." } }
            @if pins.is_empty() {
                (empty("No pin has been recorded."))
            } @else {
                @if more {
                    p.hint role="status" { "Showing the newest " (pins::MAX_LISTED) " pins of more." }
                }
                table {
                    caption { "Pins, newest first" @if more { " (the newest " (pins::MAX_LISTED) ")" } }
                    thead { tr {
                        th scope="col" { "Recorded" } th scope="col" { "Note" } th scope="col" { "Seq" }
                        th scope="col" { "Hash" } th scope="col" { "Check" }
                    } }
                    tbody {
                        @for (p, check) in &pins {
                            tr {
                                td { (when_micros(p.recorded_at, dz)) }
                                td { (p.note) }
                                td { a href=(ctx.href(&format!("/console/events/{}", p.seq), &[])) { (p.seq) } }
                                td { code.hash title="for registrar verify --pin" { (p.as_arg()) } }
                                td { @match check {
                                    PinCheck::Holds => span.ok { "✓ holds" },
                                    PinCheck::Differs { found } => span.bad { "✗ the log holds " code { (hex::encode(found)) } " there" },
                                    PinCheck::Missing { head } => span.bad { "✗ the log ends at seq " (head) },
                                } }
                            }
                        }
                    }
                }
            }
        }
    };
    let refresh = state.running.map(|_| VERIFY_REFRESH_SECS);
    Ok(ctx.render_with("Integrity", "/console/integrity", refresh, body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrfOnly {
    csrf: String,
}

/// `POST /console/integrity/verify` (admin): starts verify in the
/// background (one at a time) and goes back to the page, which reloads
/// itself until it is done.
pub async fn run_verify(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    body: String,
) -> Result<Response, ConsoleError> {
    viewer.require_admin()?;
    let form: CsrfOnly = parse_form(&body)?;
    viewer.check_csrf(&form.csrf)?;
    let progress = Arc::new(verify::Progress::default());
    let started = {
        let mut s = c.verify.lock().expect("verify lock");
        if s.running.is_some() {
            false
        } else {
            s.running = Some((now_micros(), progress.clone()));
            true
        }
    };
    if started {
        let console = c.clone();
        tokio::spawn(async move {
            let started_at = now_micros();
            let path = console.app.config.db_path.clone();
            let parse = console.app.config.parse;
            let outcome = tokio::task::spawn_blocking(move || {
                let conn = db::open_ro(&path).map_err(VerifyError::Db)?;
                verify::verify_watched(&conn, &verify::Options::deep(parse), &progress)
            })
            .await;
            // The server log gets a fault's kind and seq, never its text: that
            // can carry a column's value (a subject is a student id). The
            // page, for the admin who ran it, gets the text.
            let outcome = match outcome {
                Ok(Ok(v)) => {
                    tracing::info!(events = v.events, "console verify: the chain is intact");
                    Ok(v)
                }
                Ok(Err(e)) => {
                    tracing::error!(code = e.code(), seq = ?e.seq(), "console verify failed");
                    Err(e.to_string())
                }
                Err(join) => {
                    tracing::error!(panicked = join.is_panic(), "console verify stopped");
                    Err(format!("verify stopped: {join}"))
                }
            };
            let mut s = console.verify.lock().expect("verify lock");
            s.running = None;
            s.last = Some(Finished {
                started_at,
                finished_at: now_micros(),
                outcome,
            });
        });
    }
    Ok(Redirect::to("/console/integrity").into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinForm {
    csrf: String,
    note: String,
}

/// `POST /console/integrity/pins` (admin): records the head with a note,
/// through the ledger's one writer.
pub async fn record_pin(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    body: String,
) -> Result<Response, ConsoleError> {
    viewer.require_admin()?;
    let form: PinForm = parse_form(&body)?;
    viewer.check_csrf(&form.csrf)?;
    // The note is trimmed and checked once, where it is recorded.
    let pin = c.app.ledger.pin(form.note).await.map_err(|e| match e {
        PinError::Refused(r) => ApiError::bad_request(r.to_string()),
        PinError::Ledger(l) => l.into(),
    })?;
    tracing::info!(seq = pin.seq, "pin recorded from the console");
    Ok(Redirect::to("/console/integrity").into_response())
}
