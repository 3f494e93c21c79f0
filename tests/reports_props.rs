//! The finance reports reconcile: for any close K and later time L, the day
//! book known at L minus the day book known at K is exactly the net effect of
//! the payment revisions the changes report lists as received in (K, L]
//! (a payment first received then is a change from nothing); and a report
//! known at K does not move when more deliveries arrive.
//!
//! Random payment histories: adds, updates and cancellations of a few
//! payments, amounts, days and modes drawn at random, provider times out of
//! order, each delivery received at its own time; the projector's own path
//! (`projector::apply_batch`, through `support/store.rs`) builds the store.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use registrar::event::Source;
use registrar::projection::entities::{PaymentState, PaymentStatus};
use registrar::projection::query::payments;
use registrar::projection::query::reports::{self, DayKey, Times};

#[path = "support/store.rs"]
mod test_store;
use test_store::{append, fresh_db, TestDb};

/// Provider time of the first delivery: 2025-03-03 10:40 UTC.
const EPOCH: i64 = 1_741_000_000;
/// Far enough ahead that `as_of` leaves nothing out.
const AS_OF_ALL: i64 = 4_102_444_800;
const MODES: [&str; 3] = ["cash", "cheque", "upi"];
const ZONE: chrono_tz::Tz = chrono_tz::Asia::Kolkata;
/// Payments P0.. the deliveries name.
const PAYMENTS: usize = 4;
/// 2025-03-02T00:00:00Z and 2025-03-04T10:00:00Z: a range some paid_at
/// values fall in and some do not.
/// 2025-02-01T00:00:00Z and 2025-04-30T00:00:00Z: the day book's range,
/// around every paid_at (a report covers at most a year).
const FEBRUARY: i64 = 1_738_368_000;
const APRIL: i64 = 1_745_971_200;
const MARCH_2: i64 = 1_740_873_600;
const MARCH_4: i64 = 1_741_082_400;

#[derive(Debug, Clone)]
struct Delivery {
    payment: usize,
    /// 0 added, 1 updated, 2 cancelled.
    kind: usize,
    amount_minor: u32,
    day: u32,
    mode: usize,
    /// Provider time, in hours after EPOCH: out of order on purpose.
    hour: i64,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (
        0usize..PAYMENTS,
        0usize..3,
        0u32..500_000,
        1u32..6,
        0usize..3,
        0i64..48,
    )
        .prop_map(|(payment, kind, amount_minor, day, mode, hour)| Delivery {
            payment,
            kind,
            amount_minor,
            day,
            mode,
            hour,
        })
}

/// The student the payments belong to, registered before any delivery, with
/// the collector code a payment without one of its own is counted under.
const STUDENT: &str = r#"{"event":"masterdata.student.registered","event_id":"reg-S1","version":"1.0","timestamp":1740000000,"payload":{"jodo_student_id":"S1","student":{"identifier":"id-S1","custom_identifier":"c","collector_code":"BRS","grade":{"code":"G1","name":"Grade 1"},"academic_year_start":2025,"academic_year_end":2026,"primary_contact_number":"9876543210"}}}"#;
const STUDENT_COLLECTOR: &str = "BRS";

/// A delivery's body. Payment P3 names its student by identifier only, and
/// odd payments carry no collector code of their own: the reports link them
/// through the student.
fn body(d: &Delivery, i: usize) -> String {
    let kind = ["added", "updated", "cancelled"][d.kind];
    let amount = format!("{}.{:02}", d.amount_minor / 100, d.amount_minor % 100);
    let student_id = if d.payment == 3 {
        String::new()
    } else {
        r#""jodo_student_id":"S1","#.to_string()
    };
    let collector = if d.payment.is_multiple_of(2) {
        format!(r#""BR{}""#, d.payment)
    } else {
        "null".to_string()
    };
    format!(
        r#"{{"event":"direct.payment.{kind}","event_id":"ev-{i}","version":"1.0","timestamp":{ts},"payload":{{{student_id}"payment":{{"id":"P{p}","amount":{amount},"mode":"{mode}","transaction_id":"T","settlement_utr":"","notes":"n","paid_at":"2025-03-0{day}T10:00:00Z","details":[{{"fee_component":"TUITION_FEE","amount":"{amount}"}}]}},"student":{{"identifier":"id-S1","custom_identifier":"c","collector_code":{collector},"academic_year_start":2025,"academic_year_end":2026,"primary_contact_number":"9876543210"}}}}}}"#,
        ts = EPOCH + d.hour * 3600,
        p = d.payment,
        mode = MODES[d.mode],
        day = d.day,
    )
}

/// When delivery `i` is received, microseconds: each at its own time.
fn received_at(i: usize) -> i64 {
    (i as i64 + 1) * 1_000
}

/// Just after `n` deliveries were received.
fn after(n: usize) -> i64 {
    n as i64 * 1_000 + 500
}

/// The day book known at `known_at`, as signed figures per key.
fn day_book(db: &TestDb, known_at: i64) -> Book {
    let times = Times {
        as_of: AS_OF_ALL,
        known_at,
    };
    let figures = reports::day_book(&db.conn, times, FEBRUARY, APRIL, ZONE, None, None).unwrap();
    // The register's lines add up to the same day book.
    let mut from_lines: BTreeMap<DayKey, reports::Figures> = BTreeMap::new();
    reports::lines(&db.conn, times, FEBRUARY, APRIL, |l| {
        let key = (
            reports::business_date(l.paid_at, ZONE),
            l.mode.clone(),
            l.collector_code.clone(),
        );
        from_lines.entry(key).or_default().add(l.status, l.amount);
        Ok::<_, registrar::projection::ProjectionError>(())
    })
    .unwrap();
    assert_eq!(
        figures, from_lines,
        "the day book and the register disagree"
    );
    let mut book = Book::new();
    for (key, f) in figures {
        let e = book.entry(key).or_default();
        e[0] += f.recorded_count as i128;
        e[1] += f.recorded_total;
        e[2] += f.cancelled_count as i128;
        e[3] += f.cancelled_total;
    }
    book
}
/// recorded count and total, cancelled count and total, per key.
type Book = BTreeMap<DayKey, [i128; 4]>;

/// Adds `sign` times what one payment state contributes to a day book.
fn contribute(book: &mut Book, s: &PaymentState, sign: i128) {
    let r = &s.record;
    let key = (
        reports::business_date(r.paid_at, ZONE),
        r.mode.clone(),
        Some(r.collector_code.clone().unwrap_or(STUDENT_COLLECTOR.into())),
    );
    let e = book.entry(key).or_default();
    let minor = i128::from(r.amount.minor());
    match s.status {
        PaymentStatus::Recorded => {
            e[0] += sign;
            e[1] += sign * minor;
        }
        PaymentStatus::Cancelled => {
            e[2] += sign;
            e[3] += sign * minor;
        }
    }
}

fn nonzero(book: Book) -> Book {
    book.into_iter()
        .filter(|(_, v)| v.iter().any(|x| *x != 0))
        .collect()
}

/// What a report line says of a payment, compared field by field.
type LineFields = (
    String,
    i64,
    i64,
    PaymentStatus,
    String,
    Option<i64>,
    u64,
    i64,
    i64,
);

/// The lines of payments paid in [from, to] as the reports read them
/// (current rows where they are the fold, refolds where not).
fn lines(db: &TestDb, times: Times, from: i64, to: i64) -> Vec<LineFields> {
    let mut out = Vec::new();
    reports::lines(&db.conn, times, from, to, |l| {
        out.push((
            l.payment_id.clone(),
            l.paid_at,
            l.amount.minor(),
            l.status,
            l.mode.clone(),
            l.cancelled_at,
            l.revisions,
            l.first_received_at,
            l.last_received_at,
        ));
        Ok::<_, registrar::projection::ProjectionError>(())
    })
    .unwrap();
    out
}

/// The same, each payment folded from its revisions: the definition.
fn folded_lines(db: &TestDb, times: Times, from: i64, to: i64) -> Vec<LineFields> {
    let mut out = Vec::new();
    for p in 0..PAYMENTS {
        let revs = payments::revisions(&db.conn, &format!("P{p}")).unwrap();
        let Some((s, revs)) = reports::fold_known(revs, times) else {
            continue;
        };
        let r = &s.record;
        if !(from..=to).contains(&r.paid_at) {
            continue;
        }
        let received = revs.iter().map(|v| v.received_at);
        out.push((
            r.payment_id.clone(),
            r.paid_at,
            r.amount.minor(),
            s.status,
            r.mode.clone(),
            s.cancelled_at,
            revs.len() as u64,
            received.clone().min().unwrap(),
            received.max().unwrap(),
        ));
    }
    out.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    out
}

fn check(deliveries: &[Delivery], k: usize, l: usize) -> Result<(), TestCaseError> {
    let (k, l) = (k.min(l), k.max(l));
    let mut db = fresh_db();
    append(&mut db, Source::Jodo, STUDENT, 0);
    db.catch_up();
    let mut book_k_then = None;
    for (i, d) in deliveries.iter().enumerate() {
        if i == k {
            book_k_then = Some(day_book(&db, after(k)));
        }
        append(&mut db, Source::Jodo, &body(d, i), received_at(i));
        db.catch_up();
    }
    let book_k = day_book(&db, after(k));
    if let Some(then) = book_k_then {
        prop_assert_eq!(&then, &book_k, "the day book known at K moved");
    }
    let book_l = day_book(&db, after(l));
    // The day book at K plus every change received in (K, L].
    let times = Times {
        as_of: AS_OF_ALL,
        known_at: after(l),
    };
    let changes = reports::changes(&db.conn, times, after(k) + 1, after(l)).unwrap();
    let mut expected = book_k;
    for c in &changes {
        if let Some(old) = &c.old {
            contribute(&mut expected, old, -1);
        }
        if let Some(new) = &c.new {
            contribute(&mut expected, new, 1);
        }
    }
    prop_assert_eq!(nonzero(expected), nonzero(book_l));
    // The lines the reports stream are each payment's fold, whether read
    // from its current row or refolded: known at K, at L, now, and as of a
    // provider time in the middle of the deliveries'.
    let n = deliveries.len();
    for times in [
        Times {
            as_of: AS_OF_ALL,
            known_at: after(k),
        },
        Times {
            as_of: AS_OF_ALL,
            known_at: after(l),
        },
        Times {
            as_of: AS_OF_ALL,
            known_at: after(n),
        },
        Times {
            as_of: EPOCH + 24 * 3600,
            known_at: after(n),
        },
    ] {
        for (from, to) in [(0, AS_OF_ALL), (MARCH_2, MARCH_4)] {
            prop_assert_eq!(
                lines(&db, times, from, to),
                folded_lines(&db, times, from, to),
                "times {:?}, paid in [{}, {}]",
                times,
                from,
                to
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_day_book_known_later_is_the_one_known_at_the_close_plus_the_changes_received_between(
        deliveries in prop::collection::vec(delivery(), 1..24),
        k in 0usize..24,
        l in 0usize..24,
    ) {
        let n = deliveries.len();
        check(&deliveries, k.min(n), l.min(n))?;
    }
}
