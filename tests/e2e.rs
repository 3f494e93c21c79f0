//! The audit console in a real browser: headless Chromium driven over
//! WebDriver (chromedriver) against a server started on a seeded database.
//! Run by `make e2e` (scripts/e2e.sh starts everything and passes the
//! addresses in the environment); ignored by `make test`.
//!
//! The WebDriver protocol is a handful of JSON calls over HTTP, made here
//! with reqwest (already a dev-dependency) rather than a WebDriver crate and
//! its dependency tree. Assertions are on content, never pixels; every page
//! visited is saved as a PNG under `E2E_OUT` (target/e2e).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

/// The key W3C WebDriver names an element reference with.
/// Times a click finds its element again after it went stale.
const STALE_RETRIES: usize = 5;
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long one WebDriver call may take (a page load is milliseconds here).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a condition is waited for (a verify, the projector).
const WAIT: Duration = Duration::from_secs(20);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by scripts/e2e.sh"))
}

struct Browser {
    http: reqwest::Client,
    session: String,
    driver: String,
    base: String,
    out: PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        let driver = env("E2E_WEBDRIVER");
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1100",
            &format!("--user-data-dir={}", env("E2E_PROFILE")),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": env("E2E_CHROMIUM"), "args": args }
        } } });
        let r: Value = http
            .post(format!("{driver}/session"))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        let out = PathBuf::from(env("E2E_OUT"));
        std::fs::create_dir_all(&out).unwrap();
        Browser {
            http,
            session,
            driver,
            base: env("E2E_BASE"),
            out,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    /// A WebDriver command; its error value when it failed.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.driver, self.session);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        if r["value"].get("error").is_some() {
            return Err(r["value"].clone());
        }
        Ok(r["value"].clone())
    }

    async fn go(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn path(&self) -> String {
        let url = self.call(reqwest::Method::GET, "/url", None).await;
        url.as_str()
            .unwrap()
            .trim_start_matches(&self.base)
            .to_string()
    }

    /// Waits until the page shows `needle` (after a form posted to the same path).
    async fn showing(&self, needle: &str) {
        let deadline = std::time::Instant::now() + WAIT;
        while !self.page_text().await.contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "never showed {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's text no longer contains `needle`, without
    /// navigating: a form's submission is then known to have been answered,
    /// where a navigation right after the click could cancel it unsent.
    async fn gone(&self, needle: &str) {
        let deadline = std::time::Instant::now() + WAIT;
        while self.page_text().await.contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "still showed {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the browser is at `prefix` and the page has loaded (a
    /// click that submits a form may return before the next page is there).
    async fn at(&self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let path = self.path().await;
            let ready = self
                .call(
                    reqwest::Method::POST,
                    "/execute/sync",
                    Some(json!({ "script": "return document.readyState", "args": [] })),
                )
                .await;
            // A path with a query is matched as a prefix, one without as the
            // whole path (`/console` is not `/console/sign-in`).
            let here = if prefix.contains('?') {
                path.starts_with(prefix)
            } else {
                path.split('?').next() == Some(prefix)
            };
            if here && ready == "complete" {
                return path;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never reached {prefix}: at {path}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    /// Clicks the element `css` finds. A page that reloads itself (the
    /// integrity page while verify runs) or is still arriving can replace the
    /// element between finding and clicking it: then it is found again.
    async fn click(&self, css: &str) {
        for _ in 0..STALE_RETRIES {
            let e = self.find(css).await;
            let clicked = self
                .try_call(
                    reqwest::Method::POST,
                    &format!("/element/{e}/click"),
                    Some(json!({})),
                )
                .await;
            match clicked {
                Ok(_) => return,
                Err(e) if e["error"] == "stale element reference" => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("WebDriver click {css}: {e}"),
            }
        }
        panic!("{css} went stale {STALE_RETRIES} times");
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        let v = self
            .call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await;
        v.as_str().unwrap().to_string()
    }

    async fn attribute(&self, css: &str, name: &str) -> String {
        let e = self.find(css).await;
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{e}/attribute/{name}"),
                None,
            )
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// The visible text of the whole page (read by a script, so a page that
    /// reloads itself never leaves a stale element reference).
    async fn page_text(&self) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({ "script": "return document.body ? document.body.innerText : ''", "args": [] })),
            )
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    async fn screenshot(&self, name: &str) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        std::fs::write(self.out.join(format!("{name}.png")), png).unwrap();
    }

    async fn cookie(&self, name: &str) -> String {
        let v = self
            .call(reqwest::Method::GET, &format!("/cookie/{name}"), None)
            .await;
        v["value"].as_str().unwrap().to_string()
    }

    async fn quit(self) {
        let url = format!("{}/session/{}", self.driver, self.session);
        let _ = self.http.delete(url).send().await;
    }
}

/// Waits until the page's text contains `needle`, reloading `path`.
async fn wait_for_text(b: &Browser, path: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        b.go(path).await;
        let text = b.page_text().await;
        if text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} never showed {needle:?}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
#[ignore = "needs chromium, chromedriver and a seeded server: run by `make e2e`"]
async fn finance_staff_audit_the_ledger_in_a_real_browser() {
    use futures::FutureExt;
    let b = Browser::start().await;
    // Whatever happens, the browser is closed (chromedriver does not close
    // it when it is killed).
    let outcome = std::panic::AssertUnwindSafe(audit(&b)).catch_unwind().await;
    b.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The walk through the console a finance auditor makes.
async fn audit(b: &Browser) {
    // Signed out, the console sends the visitor to sign in.
    b.go("/").await;
    b.at("/console/sign-in").await;
    assert_eq!(b.text("h1").await, "Sign in");
    b.screenshot("sign-in").await;
    b.fill("#token", "not-the-token").await;
    b.click("button[type=submit]").await;
    b.showing("That token is not right").await;
    b.fill("#token", &env("E2E_ADMIN_TOKEN")).await;
    b.click("button[type=submit]").await;

    // The overview.
    assert_eq!(b.at("/console").await, "/console");
    let text = wait_for_text(b, "/console", "Today's collections by mode").await;
    assert!(
        text.contains("Log head") && text.contains("2 pending"),
        "{text}"
    );
    assert!(text.contains("₹12,500.75"), "today's collections: {text}");
    b.screenshot("overview").await;

    // Search a student, open them.
    b.click("nav a[href='/console/students']").await;
    b.fill("#q", "1001").await;
    b.click("form.filters button[type=submit]").await;
    b.at("/console/students?q=1001").await;
    b.screenshot("students").await;
    b.click("a[href='/console/students/stu_1001']").await;
    b.at("/console/students/stu_1001").await;
    let text = b.page_text().await;
    assert!(
        text.contains("Status timeline") && text.contains("ADM-2023-1001"),
        "{text}"
    );
    assert!(text.contains("Recorded: ₹1,35,500.50"), "{text}");
    assert!(text.contains("Cancelled: ₹45,000.00"), "{text}");
    b.screenshot("student").await;

    // Open a payment: every revision, the changed fields marked.
    b.click("a[href='/console/payments/pay_5001']").await;
    b.at("/console/payments/pay_5001").await;
    let text = b.page_text().await;
    assert!(text.contains("Revision 2: updated"), "{text}");
    let changed = b.text("td.changed").await;
    assert!(changed.starts_with("₹1,25,500.50"), "{changed}");
    b.screenshot("payment").await;

    // The same payment as known before its correction.
    b.fill("#known_at", "2024-03-05").await;
    b.click("form.times button[type=submit]").await;
    b.at("/console/payments/pay_5001?").await;
    let text = b.page_text().await;
    assert!(text.contains("as known at 2024-03-05"), "{text}");

    // The day book for March 2024, and its CSV against the JSON report.
    b.go("/console/day-book").await;
    b.fill("#from", "2024-03-01").await;
    b.fill("#to", "2024-03-31").await;
    b.click("form.filters button[type=submit]").await;
    b.at("/console/day-book?from=2024-03-01").await;
    let text = b.page_text().await;
    assert!(
        text.contains("Day book, 2024-03-01 to 2024-03-31"),
        "{text}"
    );
    assert!(text.contains("₹1,25,500.50"), "{text}");
    b.screenshot("day-book").await;
    let csv_path = b.attribute("a.button[download]", "href").await;
    let session = b.cookie("registrar_session").await;
    let csv = b
        .http
        .get(if csv_path.starts_with("http") {
            csv_path.clone()
        } else {
            format!("{}{csv_path}", b.base)
        })
        .header("Cookie", format!("registrar_session={session}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let report: Value = b
        .http
        .get(format!(
            "{}/v1/reports/day-book?from=2024-03-01&to=2024-03-31",
            b.base
        ))
        .bearer_auth(env("E2E_READ_TOKEN"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("date,mode,collector_code,recorded_count,recorded_total,cancelled_count,cancelled_total")
    );
    let items = report["items"].as_array().unwrap();
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), items.len(), "{csv}");
    for (row, item) in rows.iter().zip(items) {
        let expected = format!(
            "{},{},{},{},{},{},{}",
            item["date"].as_str().unwrap(),
            csv_cell(item["mode"].as_str().unwrap()),
            item["collector_code"].as_str().unwrap_or(""),
            item["recorded_count"],
            item["recorded_total"].as_str().unwrap(),
            item["cancelled_count"],
            item["cancelled_total"].as_str().unwrap(),
        );
        assert_eq!(*row, expected);
    }

    // Changes since the close.
    b.go("/console/changes?from=2024-03-01&to=2024-03-31").await;
    b.screenshot("changes").await;

    // An event's raw body, escaped.
    b.go("/console/events").await;
    b.screenshot("events").await;
    b.click("a[href='/console/events/1']").await;
    b.at("/console/events/1").await;
    let body = b.text("pre.body").await;
    assert!(body.contains("\"event_id\": \"seed-0001\""), "{body}");
    assert!(b.page_text().await.contains("✓ recomputes"));
    b.screenshot("event").await;

    // A hostile identifier is text, not markup.
    b.go("/console/students/stu_evil").await;
    assert_eq!(b.text("h1").await, "Student <script>alert(1)</script>");
    b.screenshot("hostile").await;

    // Readmit a quarantined delivery as admin.
    b.go("/console/quarantine").await;
    b.screenshot("quarantine").await;
    b.click("a[href='/console/quarantine/1']").await;
    b.at("/console/quarantine/1").await;
    b.click("#force").await;
    b.click("form.action button[type=submit]").await;
    b.showing("readmitted").await;
    let text = b.page_text().await;
    assert!(text.contains("readmitted"), "{text}");
    b.screenshot("readmitted").await;

    // Integrity: record a pin, run verify.
    b.go("/console/integrity").await;
    b.fill("#note", "March 2024 close").await;
    b.click("form.action[action='/console/integrity/pins'] button")
        .await;
    // The pin is listed once the page it posted to has loaded.
    b.showing("March 2024 close").await;
    b.click("form.action[action='/console/integrity/verify'] button")
        .await;
    // The answer to the POST replaces the page before it is reloaded: a
    // reload right after the click could cancel the submission unsent.
    b.gone("Not run since the server started.").await;
    let text = wait_for_text(b, "/console/integrity", "The chain is intact").await;
    assert!(
        text.contains("✓ holds") && text.contains("March 2024 close"),
        "{text}"
    );
    b.screenshot("integrity").await;

    // Sign out: the console is closed again.
    b.go("/console").await;
    b.click("form.inline button").await;
    b.at("/console/sign-in").await;
    b.go("/console/students").await;
    b.at("/console/sign-in").await;
}

/// A CSV cell as the csv crate writes it (quoted when it must be) after the
/// report's neutralising of formula-like text.
fn csv_cell(text: &str) -> String {
    let text = registrar::report::neutralise(text);
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}
