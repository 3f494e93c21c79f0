//! The finance reports end to end: JSON and CSV agree, business days, a
//! payment changed after the close, CSV injection, errors.

use serde_json::Value;

use crate::helpers::*;

/// A Jodo payment event with the fields the reports group by.
#[allow(clippy::too_many_arguments)]
fn payment(
    event: &str,
    event_id: &str,
    id: &str,
    amount: &str,
    paid_at: &str,
    mode: &str,
    collector: &str,
    ts: i64,
) -> String {
    format!(
        r#"{{"event":"direct.payment.{event}","event_id":"{event_id}","version":"1.0","timestamp":{ts},"payload":{{"jodo_student_id":"S1","payment":{{"id":"{id}","amount":{amount},"mode":"{mode}","transaction_id":"T","settlement_utr":"","notes":"n","paid_at":"{paid_at}","details":[{{"fee_component":"TUITION_FEE","amount":"{amount}"}}]}},"student":{{"identifier":"id-S1","custom_identifier":"c","collector_code":"{collector}","academic_year_start":2025,"academic_year_end":2026,"primary_contact_number":"9876543210"}}}}}}"#
    )
}

/// Runs `registrar` with `args` on the app's database, writing to `out`.
fn cli_report(app: &TestApp, args: &[&str], out: &std::path::Path) {
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(args)
        .arg("--db")
        .arg(&app.config.db_path)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
}

/// P1, 500 in cash paid on 10 March (event e1).
async fn add_p1(app: &TestApp) {
    app.accept_jodo(&payment(
        "added",
        "e1",
        "P1",
        "500",
        "2025-03-10T05:00:00Z",
        "cash",
        "BR1",
        1_741_582_800,
    ))
    .await;
}

/// P1, 500 in cash paid on 10 March, and P2, 700 by UPI on 11 March
/// (events e1 and e2).
async fn add_march_payments(app: &TestApp) {
    add_p1(app).await;
    app.accept_jodo(&payment(
        "added",
        "e2",
        "P2",
        "700",
        "2025-03-11T05:00:00Z",
        "upi",
        "BR1",
        1_741_669_200,
    ))
    .await;
}

/// P1 cancelled (event e3).
async fn cancel_p1(app: &TestApp) {
    app.accept_jodo(&payment(
        "cancelled",
        "e3",
        "P1",
        "500",
        "2025-03-10T05:00:00Z",
        "cash",
        "BR1",
        1_741_600_000,
    ))
    .await;
}

async fn csv_rows(app: &TestApp, path: &str) -> (String, Vec<Vec<String>>) {
    let r = app.get(path).await;
    assert_eq!(r.status(), 200, "GET {path}");
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    let body = r.bytes().await.unwrap();
    let mut rd = csv::Reader::from_reader(&body[..]);
    let mut rows = vec![rd.headers().unwrap().iter().map(String::from).collect()];
    for rec in rd.records() {
        rows.push(rec.unwrap().iter().map(String::from).collect());
    }
    (disposition, rows)
}

#[tokio::test]
async fn a_payment_at_20_00_utc_on_1_june_falls_on_2_june_in_the_day_book_in_json_and_csv() {
    let app = spawn_app().await;
    app.accept_jodo(&payment(
        "added",
        "e1",
        "P1",
        "2000.50",
        "2025-06-01T20:00:00Z",
        "cash",
        "BR1",
        1_748_808_000,
    ))
    .await;
    app.accept_jodo(&payment(
        "added",
        "e2",
        "P2",
        "1000",
        "2025-06-01T10:00:00Z",
        "cash",
        "BR1",
        1_748_772_000,
    ))
    .await;
    let j = app
        .get_json("/v1/reports/day-book?from=2025-06-01&to=2025-06-02")
        .await;
    let items = j["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{j}");
    assert_eq!(items[0]["date"], "2025-06-01");
    assert_eq!(items[0]["recorded_total"], "1000.00");
    assert_eq!(items[1]["date"], "2025-06-02");
    assert_eq!(items[1]["recorded_total"], "2000.50");
    assert_eq!(items[1]["collector_code"], "BR1");
    assert_eq!(j["totals"]["recorded_total"], "3000.50");
    assert_eq!(j["days"].as_array().unwrap().len(), 2);
    assert!(j["seq"].as_u64().unwrap() >= 2);
    for k in ["as_of", "known_at"] {
        assert!(j[k].is_string(), "{j}");
    }
    let (disposition, rows) = csv_rows(
        &app,
        "/v1/reports/day-book?from=2025-06-01&to=2025-06-02&format=csv",
    )
    .await;
    assert_eq!(
        disposition,
        "attachment; filename=\"day-book_2025-06-01_2025-06-02.csv\""
    );
    assert_eq!(
        rows[0],
        [
            "date",
            "mode",
            "collector_code",
            "recorded_count",
            "recorded_total",
            "cancelled_count",
            "cancelled_total"
        ]
    );
    for (row, item) in rows[1..].iter().zip(items) {
        for (i, name) in rows[0].iter().enumerate() {
            let v = &item[name.as_str()];
            let text = v
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| v.to_string());
            assert_eq!(row[i], text, "{name}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_march_day_book_known_at_the_close_differs_from_today_by_what_the_changes_report_lists()
{
    let app = spawn_app().await;
    add_march_payments(&app).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let close = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    cancel_p1(&app).await;
    app.accept_jodo(&payment(
        "updated",
        "e4",
        "P2",
        "750",
        "2025-03-11T05:00:00Z",
        "upi",
        "BR1",
        1_741_700_000,
    ))
    .await;

    let enc = close.replace('+', "%2B");
    let then = app
        .get_json(&format!(
            "/v1/reports/day-book?from=2025-03-01&to=2025-03-31&known_at={enc}"
        ))
        .await;
    let now = app
        .get_json("/v1/reports/day-book?from=2025-03-01&to=2025-03-31")
        .await;
    assert_eq!(then["totals"]["recorded_total"], "1200.00", "{then}");
    assert_eq!(then["totals"]["cancelled_count"], 0);
    assert_eq!(now["totals"]["recorded_total"], "750.00", "{now}");
    assert_eq!(now["totals"]["cancelled_total"], "500.00");

    // The changes report's window is of receipt times: today's.
    let today = chrono::Utc::now().date_naive();
    let (from, to) = (today.pred_opt().unwrap(), today.succ_opt().unwrap());
    let changes = app
        .get_json(&format!("/v1/reports/changes?from={from}&to={to}"))
        .await;
    let late: Vec<&Value> = changes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["event"] != "added")
        .collect();
    assert_eq!(late.len(), 2, "{changes}");
    assert_eq!(late[0]["payment_id"], "P1");
    assert!(late[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["field"] == "status" && f["old"] == "recorded" && f["new"] == "cancelled"));
    assert!(late[1]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["field"] == "amount" && f["old"] == "700.00" && f["new"] == "750.00"));

    let reg = app
        .get_json("/v1/reports/payments?from=2025-03-01&to=2025-03-31")
        .await;
    assert!(
        reg["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["changed_after_close"] == true),
        "{reg}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_text_cell_a_spreadsheet_would_execute_is_prefixed_with_a_quote() {
    let app = spawn_app().await;
    app.accept_jodo(&payment(
        "added",
        "e1",
        "P1",
        "10",
        "2025-06-01T05:00:00Z",
        "=HYPERLINK(1)",
        "@BR",
        1_748_754_000,
    ))
    .await;
    let (_, rows) = csv_rows(
        &app,
        "/v1/reports/payments?from=2025-06-01&to=2025-06-01&format=csv",
    )
    .await;
    let mode = rows[0].iter().position(|h| h == "mode").unwrap();
    let collector = rows[0].iter().position(|h| h == "collector_code").unwrap();
    assert_eq!(rows[1][mode], "'=HYPERLINK(1)");
    assert_eq!(rows[1][collector], "'@BR");
    app.stop().await;
}

#[tokio::test]
async fn a_report_answers_400_naming_the_parameter_for_a_bad_range_date_or_status() {
    let app = spawn_app().await;
    for (q, name) in [
        ("from=2025-01-01&to=2026-01-03", "to"),
        ("from=2025-02-01&to=2025-01-01", "to"),
        ("from=2025-13-01&to=2025-12-01", "from"),
        ("from=2025-01-01", "to"),
        ("from=2025-01-01&to=2025-01-02&status=lost", "status"),
        (
            "from=2025-01-01&to=2025-01-02&known_at=yesterday",
            "known_at",
        ),
    ] {
        let (status, body) = json(app.get(&format!("/v1/reports/payments?{q}")).await).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(name),
            "{q}: {body}"
        );
    }
    let (status, _) = json(app.get("/v1/reports/statement/nobody").await).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_statement_lists_the_students_payments_with_their_revisions_and_totals() {
    let app = spawn_app().await;
    app.accept_jodo(&crate::fixtures::jodo_student(
        "registered",
        "s1",
        "S1",
        1_740_000_000,
    ))
    .await;
    add_march_payments(&app).await;
    cancel_p1(&app).await;
    let s = app.get_json("/v1/reports/statement/S1").await;
    assert_eq!(s["total_recorded"], "700.00", "{s}");
    assert_eq!(s["total_cancelled"], "500.00");
    assert_eq!(s["payments"][0]["revisions"].as_array().unwrap().len(), 2);
    assert_eq!(s["timeline"][0]["event"], "registered");
    let sc = app
        .get_json("/v1/reports/status-changes?from=2025-02-01&to=2025-02-28")
        .await;
    assert_eq!(sc["items"][0]["jodo_student_id"], "S1", "{sc}");
    app.stop().await;
}

#[tokio::test]
async fn the_cli_writes_the_same_bytes_as_the_http_route_for_the_same_times() {
    let app = spawn_app().await;
    for (i, (day, mode)) in [
        ("2025-03-03", "cash"),
        ("2025-03-04", "=cmd"),
        ("2025-03-04", "cheque"),
    ]
    .into_iter()
    .enumerate()
    {
        app.accept_jodo(&payment(
            "added",
            &format!("e{i}"),
            &format!("P{i}"),
            "150.25",
            &format!("{day}T06:00:00Z"),
            mode,
            "BR1",
            1_741_000_000 + i as i64,
        ))
        .await;
    }
    let times = "as_of=2025-04-01T00:00:00Z&known_at=2099-01-01T00:00:00Z";
    for (name, format) in [
        ("day-book", "csv"),
        ("payments", "csv"),
        ("day-book", "json"),
    ] {
        let path =
            format!("/v1/reports/{name}?from=2025-03-01&to=2025-03-31&{times}&format={format}");
        let r = app.get(&path).await;
        assert_eq!(r.status(), 200, "{path}");
        let http = r.bytes().await.unwrap();
        let out = app
            .config
            .db_path
            .with_file_name(format!("{name}.{format}"));
        cli_report(
            &app,
            &[
                "report",
                name,
                "--from",
                "2025-03-01",
                "--to",
                "2025-03-31",
                "--as-of",
                "2025-04-01T00:00:00Z",
                "--known-at",
                "2099-01-01T00:00:00Z",
                "--format",
                format,
            ],
            &out,
        );
        let written = std::fs::read(&out).unwrap();
        assert!(!written.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&written),
            String::from_utf8_lossy(&http),
            "{name} as {format}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_report_known_at_a_close_is_identical_before_and_after_later_deliveries() {
    let app = spawn_app().await;
    add_p1(&app).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let close = chrono::Utc::now()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        .replace('+', "%2B");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let paths: Vec<String> = ["day-book", "payments", "changes"]
        .iter()
        .flat_map(|name| {
            ["json", "csv"].map(|f| {
                format!("/v1/reports/{name}?from=2025-03-01&to=2025-03-31&known_at={close}&as_of=2025-04-01&format={f}")
            })
        })
        .collect();
    let mut before = Vec::new();
    for p in &paths {
        before.push(app.get(p).await.text().await.unwrap());
    }
    // Late revisions, a new payment in March, and a late delivery dated
    // before the close: none was known at the close.
    app.accept_jodo(&payment(
        "updated",
        "e2",
        "P1",
        "650",
        "2025-03-10T05:00:00Z",
        "cash",
        "BR1",
        1_741_600_000,
    ))
    .await;
    app.accept_jodo(&payment(
        "added",
        "e3",
        "P2",
        "80",
        "2025-03-20T05:00:00Z",
        "upi",
        "BR2",
        1_742_446_800,
    ))
    .await;
    app.accept_jodo(&payment(
        "cancelled",
        "e4",
        "P1",
        "650",
        "2025-03-10T05:00:00Z",
        "cash",
        "BR1",
        1_741_590_000,
    ))
    .await;
    for (p, b) in paths.iter().zip(&before) {
        let after = app.get(p).await.text().await.unwrap();
        // The answer states the log position it read: that alone moves.
        let strip = |t: &str| {
            t.lines()
                .map(|l| {
                    let v: Result<Value, _> = serde_json::from_str(l);
                    match v {
                        Ok(mut v) if v.is_object() => {
                            v["seq"] = Value::Null;
                            v.to_string()
                        }
                        _ => l.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&after), strip(b), "{p}");
    }
    // And today's differ, so the test can fail.
    let now = app
        .get_json("/v1/reports/day-book?from=2025-03-01&to=2025-03-31")
        .await;
    assert_eq!(now["totals"]["recorded_total"], "80.00", "{now}");
    app.stop().await;
}

#[tokio::test]
async fn a_register_of_many_chunks_streams_whole_and_its_csv_json_and_cli_agree() {
    let app = spawn_app().await;
    // Enough payments that the CSV spans several of the route's chunks.
    const PAYMENTS: usize = 1_000;
    for i in 0..PAYMENTS {
        app.accept_jodo(&payment(
            "added",
            &format!("e{i}"),
            &format!("P{i:04}"),
            "1500.25",
            &format!("2025-03-{:02}T06:00:00Z", 1 + i % 28),
            ["cash", "upi", "=cmd"][i % 3],
            "BR1",
            1_741_000_000 + i as i64,
        ))
        .await;
    }
    let path = "/v1/reports/payments?from=2025-03-01&to=2025-03-31";
    let r = app.get(&format!("{path}&format=csv")).await;
    assert_eq!(r.status(), 200);
    let csv_body = r.bytes().await.unwrap();
    assert!(csv_body.len() > 64 * 1024, "{} bytes", csv_body.len());
    let mut rd = csv::Reader::from_reader(&csv_body[..]);
    let ids: Vec<String> = rd.records().map(|r| r.unwrap()[0].to_string()).collect();
    let json: Value = app.get(path).await.json().await.unwrap();
    let items = json["items"].as_array().unwrap();
    assert_eq!(ids.len(), PAYMENTS);
    assert_eq!(items.len(), PAYMENTS);
    for (id, item) in ids.iter().zip(items) {
        assert_eq!(id, item["payment_id"].as_str().unwrap());
    }
    let out = app.config.db_path.with_file_name("register.csv");
    cli_report(
        &app,
        &[
            "report",
            "payments",
            "--from",
            "2025-03-01",
            "--to",
            "2025-03-31",
            "--as-of",
            json["as_of"].as_str().unwrap(),
            "--known-at",
            json["known_at"].as_str().unwrap(),
            "--format",
            "csv",
        ],
        &out,
    );
    let mut rd = csv::Reader::from_path(&out).unwrap();
    let cli_ids: Vec<String> = rd.records().map(|r| r.unwrap()[0].to_string()).collect();
    assert_eq!(cli_ids, ids);
    app.stop().await;
}
