//! The day book and changes-since pages and their CSV, and the console's
//! one adapter to the finance reports: every call into [`crate::report`]
//! and [`crate::projection::query::reports`] is in this file.
//!
//! Pages render the reports' typed data ([`data::day_book`],
//! [`data::changes`]): money stays integer minor units until the rupee
//! formatter shows it. The CSV link runs the report itself with the same
//! parameters, streamed as the API streams it ([`stream::report`] with
//! [`Format::Csv`]): the download is what the page shows, and the same
//! bytes as `GET /v1/reports/...?format=csv`.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use std::collections::BTreeMap;

use chrono::{Datelike, Days, Months, NaiveDate, TimeZone};
use chrono_tz::Tz;
use maud::{html, Markup};
use rusqlite::Connection;

use super::html::{empty, opt, rupees, rupees_text, segment, when, when_micros};
use super::viewer::Viewer;
use super::{ConsoleError, ConsoleState, Ctx, Html, Query};
use crate::http::{stream, ApiError};
use crate::projection::entities::PaymentState;
use crate::projection::query::payments::Revision;
use crate::projection::query::reports::{self as data, Change, DayKey, Figures, Times};
// What the student page renders, typed as the statement report has it.
pub use crate::projection::query::reports::{KnownPayment, Statement};
use crate::report::{self, Format, Range, Report, Request};

/// `as_of` and `known_at` as every report reads them (business zone; now
/// when not given).
pub fn times(as_of: Option<&str>, known_at: Option<&str>, zone: Tz) -> Result<Times, ApiError> {
    Ok(report::parse_times(
        as_of,
        known_at,
        zone,
        crate::ledger::now_micros(),
    )?)
}

/// A payment's revisions folded as known at and as of `times`.
pub fn fold_known(revs: Vec<Revision>, times: Times) -> Option<(PaymentState, Vec<Revision>)> {
    data::fold_known(revs, times)
}

/// A student's statement as known at and as of `times`
/// ([`data::statement`]): the profile, the status events and the payments
/// folded at those times. Not found when the student was not known then.
pub fn statement(
    conn: &Connection,
    times: Times,
    jodo_student_id: &str,
) -> Result<Statement, ApiError> {
    data::statement(conn, times, jodo_student_id)?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "student {jodo_student_id:?} was not known at the time set"
        ))
    })
}

/// The first and last day of the month `day` is in.
fn month_of(day: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = day.with_day(1).expect("every month has a first day");
    let last = first
        .checked_add_months(Months::new(1))
        .and_then(|d| d.checked_sub_days(Days::new(1)))
        .unwrap_or(day);
    (first, last)
}

/// Today in the business zone.
fn today(zone: Tz) -> NaiveDate {
    zone.from_utc_datetime(&chrono::Utc::now().naive_utc())
        .date_naive()
}

/// The day book's figures, as [`data::day_book`] adds them up, and the log
/// seq the store reflected when they were read.
pub struct DayBook {
    pub seq: u64,
    pub lines: BTreeMap<DayKey, Figures>,
}

impl DayBook {
    fn read(
        conn: &Connection,
        range: &Range,
        times: Times,
        zone: Tz,
        mode: Option<&str>,
        collector_code: Option<&str>,
    ) -> Result<DayBook, ApiError> {
        Ok(DayBook {
            seq: data::position(conn)?,
            lines: data::day_book(
                conn,
                times,
                range.from,
                range.to,
                zone,
                mode,
                collector_code,
            )?,
        })
    }

    /// Subtotals per business day.
    fn days(&self) -> BTreeMap<NaiveDate, Figures> {
        let mut days: BTreeMap<NaiveDate, Figures> = BTreeMap::new();
        for ((date, _, _), f) in &self.lines {
            days.entry(*date).or_default().merge(f);
        }
        days
    }

    /// Subtotals per mode.
    fn modes(&self) -> BTreeMap<String, Figures> {
        let mut modes: BTreeMap<String, Figures> = BTreeMap::new();
        for ((_, mode, _), f) in &self.lines {
            modes.entry(mode.clone()).or_default().merge(f);
        }
        modes
    }

    fn totals(&self) -> Figures {
        let mut totals = Figures::default();
        for f in self.lines.values() {
            totals.merge(f);
        }
        totals
    }
}

/// A day's collections: the day, the figures of each mode, the totals.
pub struct Collections {
    pub day: NaiveDate,
    /// The first and last day of the day's month (the day book's range).
    pub month: (NaiveDate, NaiveDate),
    pub modes: BTreeMap<String, Figures>,
    pub totals: Figures,
}

/// The collections by mode of the business day of `times.as_of` (today
/// when no as-of time is set: it defaults to now), as known at
/// `times.known_at`: that day's day book, its lines summed per mode.
pub fn collections_by_mode(
    conn: &Connection,
    times: Times,
    zone: Tz,
) -> Result<Collections, ApiError> {
    let day = data::business_date(times.as_of, zone);
    let range = report::parse_range(Some(&day.to_string()), Some(&day.to_string()), zone)?;
    let book = DayBook::read(conn, &range, times, zone, None, None)?;
    Ok(Collections {
        day,
        month: month_of(day),
        modes: book.modes(),
        totals: book.totals(),
    })
}

page_query!(DayBookQuery {
    from: Option<String>,
    to: Option<String>,
    mode: Option<String>,
    collector_code: Option<String>,
});

impl DayBookQuery {
    /// The range asked for; this month by default.
    fn range(&self, zone: Tz) -> Result<(String, String, Range), ApiError> {
        let (first, last) = month_of(today(zone));
        let from = self.from.clone().unwrap_or_else(|| first.to_string());
        let to = self.to.clone().unwrap_or_else(|| last.to_string());
        let range = report::parse_range(Some(&from), Some(&to), zone)?;
        Ok((from, to, range))
    }

    fn report(&self) -> Report {
        Report::DayBook {
            mode: self.mode.clone(),
            collector_code: self.collector_code.clone(),
        }
    }
}

/// A report as CSV, streamed off the async workers as the API streams it
/// ([`stream::report`]).
async fn csv(
    c: &ConsoleState,
    report: Report,
    range: Range,
    times: Times,
    zone: Tz,
) -> Result<Response, ConsoleError> {
    let request = Request {
        report,
        range: Some(range),
        times,
        zone,
        checkpoint: c.app.newest_checkpoint().await?,
    };
    Ok(stream::report(c.app.live.clone(), Format::Csv, move |_| Ok(request)).await?)
}

/// The figures cells of a line.
pub fn figure_cells(f: &Figures) -> Markup {
    html! {
        td.num { (f.recorded_count) }
        td.num { (rupees(f.recorded_total)) }
        td.num { (f.cancelled_count) }
        td.num { (rupees(f.cancelled_total)) }
    }
}

pub fn figure_heads() -> Markup {
    html! {
        th scope="col" { "Recorded" }
        th scope="col" { "Recorded total" }
        th scope="col" { "Cancelled" }
        th scope="col" { "Cancelled total" }
    }
}

/// `GET /console/day-book`.
pub async fn day_book(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(q, pairs): Query<DayBookQuery>,
) -> Result<Html, ConsoleError> {
    let zone = c.app.config.business_zone;
    let (from, to, range) = q.range(zone)?;
    let t = q.times(zone)?;
    let (mode, collector) = (q.mode.clone(), q.collector_code.clone());
    let book = c
        .app
        .projections(move |conn| {
            DayBook::read(conn, &range, t, zone, mode.as_deref(), collector.as_deref())
        })
        .await?;
    let ctx = Ctx::new(&c, &viewer, pairs);
    let params = [
        ("from", from.as_str()),
        ("to", to.as_str()),
        ("mode", q.mode.as_deref().unwrap_or("")),
        ("collector_code", q.collector_code.as_deref().unwrap_or("")),
    ];
    let csv = ctx.href("/console/day-book.csv", &params);
    let body = html! {
        form.filters method="get" action="/console/day-book" {
            (range_inputs(&from, &to, "Paid from", "Paid to"))
            label for="mode" { "Mode" }
            input #mode type="text" name="mode" value=[q.mode.as_deref()] placeholder="any";
            label for="collector_code" { "Collector" }
            input #collector_code type="text" name="collector_code" value=[q.collector_code.as_deref()] placeholder="any";
            (time_hidden(&ctx))
            button type="submit" { "Run" }
        }
        p.actions {
            a.button href=(csv) download { "Download CSV" }
            " "
            span.hint { "Payments by business day (" (zone.name()) "), mode and collector; the ledger up to seq " (book.seq) "." }
        }
        @if book.lines.is_empty() {
            (empty("No payments in this range."))
        } @else {
            table {
                caption { "Day book, " (from) " to " (to) }
                thead { tr {
                    th scope="col" { "Date" } th scope="col" { "Mode" } th scope="col" { "Collector" }
                    (figure_heads())
                } }
                tbody {
                    @for ((date, mode, collector), f) in &book.lines {
                        tr {
                            td { (date) } td { (mode) } td { (opt(collector.as_deref())) }
                            (figure_cells(f))
                        }
                    }
                }
                tfoot { tr {
                    th scope="row" colspan="3" { "Total" }
                    (figure_cells(&book.totals()))
                } }
            }
            table {
                caption { "Totals by day" }
                thead { tr { th scope="col" { "Date" } (figure_heads()) } }
                tbody {
                    @for (date, f) in &book.days() {
                        tr { td { (date) } (figure_cells(f)) }
                    }
                }
            }
        }
    };
    Ok(ctx.render("Day book", "/console/day-book", body))
}

/// The from/to date inputs of a report's filter form.
fn range_inputs(from: &str, to: &str, from_label: &str, to_label: &str) -> Markup {
    html! {
        label for="from" { (from_label) }
        input #from type="text" name="from" value=(from) placeholder="yyyy-mm-dd" size="12" required;
        label for="to" { (to_label) }
        input #to type="text" name="to" value=(to) placeholder="yyyy-mm-dd" size="12" required;
    }
}

/// A filter form keeps the page's time settings.
fn time_hidden(ctx: &Ctx) -> Markup {
    html! {
        @if let Some(a) = &ctx.times.as_of { input type="hidden" name="as_of" value=(a); }
        @if let Some(k) = &ctx.times.known_at { input type="hidden" name="known_at" value=(k); }
    }
}

/// `GET /console/day-book.csv`: the page's report, as CSV.
pub async fn day_book_csv(
    State(c): State<ConsoleState>,
    Query(q, _): Query<DayBookQuery>,
) -> Result<Response, ConsoleError> {
    let zone = c.app.config.business_zone;
    let (_, _, range) = q.range(zone)?;
    let t = q.times(zone)?;
    csv(&c, q.report(), range, t, zone).await
}

page_query!(ChangesQuery {
    from: Option<String>,
    to: Option<String>,
});

impl ChangesQuery {
    /// Received from the first of this month to today by default.
    fn range(&self, zone: Tz) -> Result<(String, String, Range), ApiError> {
        let day = today(zone);
        let from = self
            .from
            .clone()
            .unwrap_or_else(|| month_of(day).0.to_string());
        let to = self.to.clone().unwrap_or_else(|| day.to_string());
        let range = report::parse_range(Some(&from), Some(&to), zone)?;
        Ok((from, to, range))
    }
}

/// The payment revisions received in `range` (whole seconds, so to its
/// last microsecond), as the changes report reads them.
fn changes_in(conn: &Connection, range: &Range, times: Times) -> Result<Vec<Change>, ApiError> {
    let from = range.from.saturating_mul(1_000_000);
    let to = range.to.saturating_mul(1_000_000).saturating_add(999_999);
    Ok(data::changes(conn, times, from, to)?)
}

/// The fields of a change that are money (the report writes them as
/// decimals): shown in rupees like every amount in the console.
const AMOUNT_FIELDS: &[&str] = &["amount"];

/// A changed field's old or new value: an amount in rupees, any other
/// field as it is.
fn change_value(field: &str, value: Option<&str>) -> Markup {
    match value {
        Some(v) if AMOUNT_FIELDS.contains(&field) => html! { (rupees_text(v)) },
        other => opt(other),
    }
}

/// `GET /console/changes`: revisions received in a range (after the close).
pub async fn changes(
    State(c): State<ConsoleState>,
    Extension(viewer): Extension<Viewer>,
    Query(q, pairs): Query<ChangesQuery>,
) -> Result<Html, ConsoleError> {
    let zone = c.app.config.business_zone;
    let (from, to, range) = q.range(zone)?;
    let t = q.times(zone)?;
    let (seq, list) = c
        .app
        .projections(move |conn| Ok((data::position(conn)?, changes_in(conn, &range, t)?)))
        .await?;
    let ctx = Ctx::new(&c, &viewer, pairs);
    let dz = ctx.zone();
    let csv = ctx.href(
        "/console/changes.csv",
        &[("from", from.as_str()), ("to", to.as_str())],
    );
    let body = html! {
        form.filters method="get" action="/console/changes" {
            (range_inputs(&from, &to, "Received from", "Received to"))
            (time_hidden(&ctx))
            button type="submit" { "Run" }
        }
        p.actions {
            a.button href=(csv) download { "Download CSV" }
            " " span.hint { "Every payment revision received in the range, field by field; the ledger up to seq " (seq) "." }
        }
        @if list.is_empty() {
            (empty("Nothing changed in this range."))
        } @else {
            table {
                caption { "Changes received " (from) " to " (to) }
                thead { tr {
                    th scope="col" { "Payment" } th scope="col" { "Event" } th scope="col" { "Received" }
                    th scope="col" { "Provider time" } th scope="col" { "Changed fields" } th scope="col" { "Delivery" }
                } }
                tbody {
                    @for i in &list {
                        @let r = &i.revision;
                        @let pid = &r.record.payment_id;
                        tr {
                            td { a href=(ctx.href(&format!("/console/payments/{}", segment(pid)), &[])) { (pid) } }
                            td { (r.change.as_str()) }
                            td { (when_micros(r.received_at, dz)) }
                            td { (when(r.at, dz)) }
                            td {
                                @if i.changes.is_empty() { span.none { "—" } }
                                ul.changes {
                                    @for f in &i.changes {
                                        li { strong { (f.field) } ": " del { (change_value(f.field, f.old.as_deref())) } " → " ins { (change_value(f.field, f.new.as_deref())) } }
                                    }
                                }
                            }
                            td { a href=(ctx.href(&format!("/console/events/{}", r.seq), &[])) { "seq " (r.seq) } }
                        }
                    }
                }
            }
        }
    };
    Ok(ctx.render("Changes since", "/console/changes", body))
}

/// `GET /console/changes.csv`.
pub async fn changes_csv(
    State(c): State<ConsoleState>,
    Query(q, _): Query<ChangesQuery>,
) -> Result<Response, ConsoleError> {
    let zone = c.app.config.business_zone;
    let (_, _, range) = q.range(zone)?;
    let t = q.times(zone)?;
    csv(&c, Report::Changes, range, t, zone).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_runs_from_its_first_to_its_last_day() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            month_of(d("2024-02-17")),
            (d("2024-02-01"), d("2024-02-29"))
        );
        assert_eq!(
            month_of(d("2023-12-31")),
            (d("2023-12-01"), d("2023-12-31"))
        );
    }
}
