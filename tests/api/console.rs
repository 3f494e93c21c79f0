//! The audit console: every page renders for a seeded database, with the
//! right status for signed-out, read and admin sessions; CSRF is enforced;
//! what a provider sent is escaped.

use std::time::Duration;

use registrar::clock::ManualClock;
use registrar::console::session::{FAILED_SIGN_IN_BURST, FAILED_SIGN_IN_RATE};
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;

use crate::fixtures::{jodo_payment, jodo_student};
use crate::helpers::{spawn_app_with, TestApp};

const READ: &str = "console-read-token";
const ADMIN: &str = "console-admin-token";
const HOSTILE: &str = "<script>alert(1)</script>";

/// A server with read and admin tokens and a small seeded ledger: two
/// students (one with a hostile identifier), a payment and its revision,
/// a cancelled payment, and one rejected delivery in the quarantine.
async fn seeded() -> TestApp {
    let app = spawn_app_with(|c| {
        c.read_token = Some(READ.into());
        c.admin_token = Some(ADMIN.into());
    })
    .await;
    app.accept_jodo(&jodo_student("registered", "e-1", "s1", 1_700_000_000))
        .await;
    let mut hostile: serde_json::Value =
        serde_json::from_str(&jodo_student("registered", "e-2", "s-evil", 1_700_000_001)).unwrap();
    hostile["payload"]["student"]["identifier"] = HOSTILE.into();
    hostile["payload"]["student"]["notes"][0]["value"] = "<img src=x onerror=alert(2)>".into();
    app.accept_jodo(&hostile.to_string()).await;
    let pay = |event: &str, id: &str, amount: &str, ts: i64| {
        jodo_payment(event, id, "p1", Some("s1"), amount, ts)
    };
    app.accept_jodo(&pay("added", "e-3", "100000.50", 1_700_000_100))
        .await;
    app.accept_jodo(&pay("updated", "e-4", "100500.50", 1_700_000_200))
        .await;
    app.accept_jodo(&jodo_payment(
        "added",
        "e-5",
        "p2",
        Some("s1"),
        "500",
        1_700_000_300,
    ))
    .await;
    app.accept_jodo(&jodo_payment(
        "cancelled",
        "e-6",
        "p2",
        Some("s1"),
        "500",
        1_700_000_400,
    ))
    .await;
    // A valid delivery with a wrong signature: kept, readmittable when an
    // admin vouches for it.
    let late = jodo_payment("added", "e-7", "p3", Some("s1"), "42", 1_700_000_500);
    let r = app
        .post_jodo_with(&late, &[("X-Jodo-Signature", "sha256=00")])
        .await;
    assert_eq!(r.status(), 401);
    wait_for_projections(&app).await;
    app
}

/// Waits until the projections hold everything the log holds.
async fn wait_for_projections(app: &TestApp) {
    let head = app.log_head();
    for _ in 0..500 {
        let status: serde_json::Value = app
            .client
            .get(app.url("/v1/admin/status"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["projections"]["last_seq"].as_u64() >= Some(head) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the projections did not reach seq {head}");
}

/// A browser that does not follow redirects, so each answer can be checked.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// A browser on another machine: connecting from another loopback address.
fn browser_at(last_octet: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, last_octet]))
        .build()
        .unwrap()
}

async fn sign_in_from(client: &reqwest::Client, app: &TestApp, token: &str) -> u16 {
    client
        .post(app.url("/console/sign-in"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A signed-in session: its cookie and its CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn sign_in(app: &TestApp, token: &str) -> Session {
    let r = browser()
        .post(app.url("/console/sign-in"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={token}&next=%2Fconsole%2Fintegrity"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "a right token signs in");
    assert_eq!(r.headers()[LOCATION], "/console/integrity");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains(token), "the cookie never holds the token");
    let cookie = set.split(';').next().unwrap().to_string();
    let page = get(app, Some(&cookie), "/console/integrity").await;
    assert_eq!(page.0, 200);
    let csrf = page
        .1
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page has a form with a CSRF token")
        .to_string();
    Session { cookie, csrf }
}

async fn get(app: &TestApp, cookie: Option<&str>, path: &str) -> (u16, String) {
    let mut req = browser().get(app.url(path));
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(app: &TestApp, cookie: Option<&str>, path: &str, form: &str) -> reqwest::Response {
    let mut req = browser()
        .post(app.url(path))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form.to_string());
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    req.send().await.unwrap()
}

/// Every page of the console, with its filters.
const PAGES: &[&str] = &[
    "/console",
    "/console/students",
    "/console/students?q=s1&status=active&grade=M1BLUE",
    "/console/students/s1",
    "/console/students/id-s1?as_of=2023-11-14T22:15:00Z",
    "/console/payments/p1",
    "/console/payments/p1?known_at=2023-11-14T22:15:00Z",
    "/console/day-book?from=2022-01-01&to=2022-01-31",
    "/console/day-book.csv?from=2022-01-01&to=2022-01-31",
    "/console/changes?from=2023-01-01&to=2023-12-31",
    "/console/changes.csv?from=2023-01-01&to=2023-12-31",
    "/console/events",
    "/console/events?source=jodo&subject=s1",
    "/console/events/1",
    "/console/quarantine",
    "/console/quarantine?all=true",
    "/console/quarantine/1",
    "/console/integrity",
];

/// The admin actions, each a POST.
const ACTIONS: &[&str] = &[
    "/console/quarantine/1/readmit",
    "/console/integrity/verify",
    "/console/integrity/pins",
];

#[tokio::test]
async fn the_root_leads_to_the_console() {
    let app = seeded().await;
    let r = browser().get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/console");
}

#[tokio::test]
async fn a_signed_out_visitor_is_sent_to_sign_in_and_cannot_act() {
    let app = seeded().await;
    for page in PAGES {
        let r = browser().get(app.url(page)).send().await.unwrap();
        assert_eq!(r.status(), 303, "{page}");
        let to = r.headers()[LOCATION].to_str().unwrap();
        assert!(
            to.starts_with("/console/sign-in?next=%2Fconsole"),
            "{page}: {to}"
        );
    }
    for action in ACTIONS {
        let r = post(&app, None, action, "csrf=x&note=n").await;
        assert_eq!(r.status(), 401, "{action}");
        assert!(r.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    let (status, page) = get(&app, None, "/console/sign-in").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"<label for="token">"#), "{page}");
    let (status, _) = get(&app, Some("registrar_session=forged"), "/console").await;
    assert_eq!(status, 303, "an unknown session id is signed out");
}

#[tokio::test]
async fn every_page_renders_for_a_read_session_with_the_security_headers() {
    let app = seeded().await;
    let s = sign_in(&app, READ).await;
    for page in PAGES {
        let r = browser()
            .get(app.url(page))
            .header("Cookie", &s.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{page}");
        let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'none'"), "{page}: {csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.headers()["referrer-policy"], "same-origin");
        let kind = r.headers()[CONTENT_TYPE].to_str().unwrap().to_string();
        let body = r.text().await.unwrap();
        if page.contains(".csv") {
            assert!(kind.starts_with("text/csv"), "{page}: {kind}");
        } else {
            assert!(kind.starts_with("text/html"), "{page}: {kind}");
            assert!(!body.contains("<script"), "{page} has no script");
            assert!(body.contains("Read only"), "{page} names the role");
            assert!(!body.contains(READ), "{page} never shows a token");
        }
    }
}

#[tokio::test]
async fn pages_show_what_the_ledger_holds() {
    let app = seeded().await;
    let s = sign_in(&app, READ).await;
    let c = Some(s.cookie.as_str());
    let (_, student) = get(&app, c, "/console/students/s1").await;
    assert!(student.contains("₹1,00,500.50"), "the total recorded");
    assert!(student.contains("₹500.00"), "the total cancelled");
    assert!(student.contains(r#"href="/console/payments/p1""#));
    assert!(student.contains(r#"href="/console/events?subject=s1""#));
    let (_, payment) = get(&app, c, "/console/payments/p1").await;
    assert!(payment.contains("Revision 2: updated"), "{payment}");
    assert!(
        payment.contains(r#"<td class="changed">₹1,00,500.50"#),
        "{payment}"
    );
    assert!(payment.contains(r#"href="/console/events/3""#));
    assert!(
        payment.contains(r#"<form class="times" method="get" action="/console/payments/p1""#),
        "the time control stays on the page"
    );
    // Known at a time before the update, the payment is the first revision.
    let (_, before) = get(&app, c, "/console/payments/p1?known_at=2000-01-01").await;
    assert!(before.contains("not known at the time set"), "{before}");
    assert!(before.contains("as known at"), "the banner shows the time");
    let (_, book) = get(&app, c, "/console/day-book?from=2022-01-01&to=2022-01-31").await;
    assert!(book.contains("₹1,00,500.50"), "{book}");
    let (_, empty) = get(&app, c, "/console/students?q=nobody-has-this").await;
    assert!(empty.contains("No student matches these filters."));
    let (_, event) = get(&app, c, "/console/events/1").await;
    assert!(
        event.contains("✓ recomputes") && event.contains("&quot;event_id&quot;: &quot;e-1&quot;")
    );
}

#[tokio::test]
async fn the_audit_trail_lists_what_was_received_and_had_happened_by_the_times_set() {
    let app = seeded().await;
    let s = sign_in(&app, READ).await;
    let c = Some(s.cookie.as_str());
    let (_, all) = get(&app, c, "/console/events").await;
    assert!(all.contains(r#"href="/console/events/4""#), "{all}");
    // Between the payment's addition (provider time 22:15:00) and update (22:16:40).
    let (_, as_of) = get(&app, c, "/console/events?as_of=2023-11-14T22:16:00Z").await;
    // Links keep the time set: `/console/events/3?as_of=...`.
    assert!(as_of.contains(r#"href="/console/events/3?"#), "{as_of}");
    assert!(!as_of.contains(r#"href="/console/events/4?"#), "{as_of}");
    let (_, known) = get(&app, c, "/console/events?known_at=2000-01-01").await;
    assert!(known.contains("No event matches these filters."), "{known}");
}

#[tokio::test]
async fn the_day_book_csv_is_the_reports_csv() {
    let app = seeded().await;
    let s = sign_in(&app, READ).await;
    let range = "from=2022-01-01&to=2022-01-31";
    let (status, console) = get(
        &app,
        Some(&s.cookie),
        &format!("/console/day-book.csv?{range}"),
    )
    .await;
    assert_eq!(status, 200);
    let api = app
        .client
        .get(app.url(&format!("/v1/reports/day-book?format=csv&{range}")))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(console, api);
    assert!(console.lines().count() > 1, "{console}");
}

#[tokio::test]
async fn hostile_strings_are_escaped() {
    let app = seeded().await;
    let s = sign_in(&app, READ).await;
    for page in [
        "/console/students/s-evil",
        "/console/students?q=script",
        "/console/events/2",
        "/console/students?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ] {
        let (status, body) = get(&app, Some(&s.cookie), page).await;
        assert_eq!(status, 200, "{page}");
        assert!(
            !body.contains(HOSTILE),
            "{page} shows the identifier as markup"
        );
        assert!(!body.contains("<img src=x"), "{page}");
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page} shows it as text"
        );
    }
}

#[tokio::test]
async fn a_read_session_cannot_readmit_verify_or_record_a_pin() {
    let app = seeded().await;
    let s = sign_in(&app, READ).await;
    for action in ACTIONS {
        let form = format!("csrf={}&note=n", s.csrf);
        let r = post(&app, Some(&s.cookie), action, &form).await;
        assert_eq!(r.status(), 403, "{action}");
    }
    let (_, q) = get(&app, Some(&s.cookie), "/console/quarantine/1").await;
    assert!(q.contains("Readmitting needs the admin role."));
    assert!(
        !q.contains("/readmit"),
        "no readmit form for a read session"
    );
}

#[tokio::test]
async fn an_admin_post_without_its_csrf_token_is_refused() {
    let app = seeded().await;
    let s = sign_in(&app, ADMIN).await;
    for action in ACTIONS {
        for form in ["note=n".to_string(), "csrf=wrong&note=n".to_string()] {
            let r = post(&app, Some(&s.cookie), action, &form).await;
            let status = r.status().as_u16();
            assert!(status == 403 || status == 400, "{action} {form}: {status}");
        }
    }
    let head = app.log_head();
    let other = sign_in(&app, ADMIN).await;
    let r = post(
        &app,
        Some(&s.cookie),
        "/console/integrity/pins",
        &format!("csrf={}&note=n", other.csrf),
    )
    .await;
    assert_eq!(r.status(), 403, "another session's token does not pass");
    assert_eq!(app.log_head(), head, "nothing was written");
    let (_, page) = get(&app, Some(&s.cookie), "/console/integrity").await;
    assert!(page.contains("No pin has been recorded."));
}

#[tokio::test]
async fn an_admin_readmits_records_a_pin_and_runs_verify() {
    let app = seeded().await;
    let s = sign_in(&app, ADMIN).await;
    let c = Some(s.cookie.as_str());
    let head = app.log_head();
    // Without vouching, a delivery whose signature was wrong stays out.
    let r = post(
        &app,
        c,
        "/console/quarantine/1/readmit",
        &format!("csrf={}", s.csrf),
    )
    .await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("still not authenticated"));
    let r = post(
        &app,
        c,
        "/console/quarantine/1/readmit",
        &format!("csrf={}&force=true", s.csrf),
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(app.log_head(), head + 1, "readmitted into the log");
    let (_, entry) = get(&app, c, "/console/quarantine/1").await;
    assert!(entry.contains("readmitted"), "{entry}");
    let (_, pending) = get(&app, c, "/console/quarantine").await;
    assert!(pending.contains("No rejected delivery is waiting."));

    let r = post(
        &app,
        c,
        "/console/integrity/pins",
        &format!("csrf={}&note=March+close+%3Cb%3E", s.csrf),
    )
    .await;
    assert_eq!(r.status(), 303);
    let r = post(
        &app,
        c,
        "/console/integrity/verify",
        &format!("csrf={}", s.csrf),
    )
    .await;
    assert_eq!(r.status(), 303);
    let mut page = String::new();
    for _ in 0..500 {
        page = get(&app, c, "/console/integrity").await.1;
        if page.contains("The chain is intact") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(page.contains("The chain is intact"), "{page}");
    assert!(page.contains("✓ holds"), "{page}");
    assert!(page.contains("March close &lt;b&gt;"), "{page}");
    assert!(
        page.contains(&format!("{}:", head + 1)),
        "the pin is the head"
    );
    let (_, overview) = get(&app, c, "/console").await;
    assert!(overview.contains("The chain is intact"), "{overview}");
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_repeated_failures_are_rate_limited() {
    let app = seeded().await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let r = post(&app, None, "/console/sign-in", "token=guess").await;
        assert!(r.headers().get(SET_COOKIE).is_none());
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5]);
    assert_eq!(statuses[5..], [429; 2]);
    let r = post(&app, None, "/console/sign-in", &format!("token={ADMIN}")).await;
    assert_eq!(
        r.status(),
        429,
        "not even a right token is tried while limited"
    );
    // The limit is that client's: another one still signs in.
    assert_eq!(sign_in_from(&browser_at(2), &app, ADMIN).await, 303);
}

#[tokio::test]
async fn right_tokens_do_not_spend_a_clients_sign_in_budget() {
    let app = seeded().await;
    let client = browser_at(3);
    for _ in 0..8 {
        assert_eq!(sign_in_from(&client, &app, READ).await, 303);
    }
    assert_eq!(sign_in_from(&client, &app, "guess").await, 401);
}

#[tokio::test]
async fn an_open_console_refuses_a_name_other_than_loopback_or_its_public_url() {
    let app =
        spawn_app_with(|c| c.public_url = Some("https://registrar.school.example:8443/".into()))
            .await;
    let status = |host: &'static str| {
        let app = &app;
        async move {
            browser()
                .get(app.url("/console"))
                .header("Host", host)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // A page of another site whose name was rebound to 127.0.0.1.
    assert_eq!(status("attacker.example").await, 403);
    assert_eq!(status("localhost:8080").await, 200);
    assert_eq!(status("[::1]:8080").await, 200);
    assert_eq!(status("registrar.school.example").await, 200);
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let app = seeded().await;
    let s = sign_in(&app, READ).await;
    let r = post(&app, Some(&s.cookie), "/console/sign-out", "csrf=wrong").await;
    assert_eq!(r.status(), 403, "sign-out takes the CSRF token too");
    let r = post(
        &app,
        Some(&s.cookie),
        "/console/sign-out",
        &format!("csrf={}", s.csrf),
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let (status, _) = get(&app, Some(&s.cookie), "/console").await;
    assert_eq!(status, 303, "the old cookie no longer works");
}

#[tokio::test]
async fn sessions_expire_after_the_idle_time() {
    let clock = ManualClock::new();
    let idle = Duration::from_secs(5 * 60);
    let app = spawn_app_with(|c| {
        c.read_token = Some(READ.into());
        c.session_idle = idle;
        c.clock = clock.clone().into();
    })
    .await;
    let s = sign_in(&app, READ).await;
    assert_eq!(get(&app, Some(&s.cookie), "/console/events").await.0, 200);
    clock.advance(idle - Duration::from_millis(1));
    assert_eq!(
        get(&app, Some(&s.cookie), "/console/events").await.0,
        200,
        "a moment before the idle time the session still works"
    );
    clock.advance(idle);
    assert_eq!(
        get(&app, Some(&s.cookie), "/console/events").await.0,
        303,
        "the idle time without a request ends it"
    );
}

#[tokio::test]
async fn a_clients_failed_sign_ins_are_tried_again_as_its_budget_refills() {
    let clock = ManualClock::new();
    let app = spawn_app_with(|c| {
        c.read_token = Some(READ.into());
        c.clock = clock.clone().into();
    })
    .await;
    let client = browser();
    for _ in 0..FAILED_SIGN_IN_BURST {
        assert_eq!(sign_in_from(&client, &app, "guess").await, 401);
    }
    assert_eq!(sign_in_from(&client, &app, "guess").await, 429);
    // One more failed sign-in is allowed every 1 / FAILED_SIGN_IN_RATE
    // seconds (a margin each side: the budget is counted in f64).
    let every = Duration::from_secs_f64(1.0 / FAILED_SIGN_IN_RATE);
    let margin = Duration::from_millis(100);
    clock.advance(every - margin);
    assert_eq!(
        sign_in_from(&client, &app, READ).await,
        429,
        "still limited just before the next try is due"
    );
    clock.advance(2 * margin);
    assert_eq!(
        sign_in_from(&client, &app, "guess").await,
        401,
        "the token is tried again once it is due"
    );
    assert_eq!(
        sign_in_from(&client, &app, READ).await,
        429,
        "and only once"
    );
    clock.advance(every + margin);
    assert_eq!(sign_in_from(&client, &app, READ).await, 303);
}

#[tokio::test]
async fn an_open_console_says_so_and_needs_no_sign_in() {
    let app = spawn_app_with(|_| {}).await;
    let r = browser().get(app.url("/console")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get(SET_COOKIE).is_some(), "a session for CSRF");
    let body = r.text().await.unwrap();
    assert!(body.contains("Open console"), "{body}");
    assert!(
        body.contains("Admin"),
        "no token at all: admin, as /v1/admin is"
    );
}

#[tokio::test]
async fn an_https_public_url_marks_the_cookie_secure() {
    let app = spawn_app_with(|c| {
        c.read_token = Some(READ.into());
        c.public_url = Some("https://registrar.example".into());
    })
    .await;
    let r = post(&app, None, "/console/sign-in", &format!("token={READ}")).await;
    assert_eq!(r.status(), 303);
    assert!(r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("; Secure"));
}

#[tokio::test]
async fn errors_are_pages_and_the_api_keeps_its_json() {
    let app = seeded().await;
    let s = sign_in(&app, READ).await;
    for (path, status) in [
        ("/console/students/nobody", 404),
        ("/console/payments/nothing", 404),
        ("/console/events/999", 404),
        ("/console/no-such-page", 404),
        ("/console/students?status=gone", 400),
        ("/console/students?typo=1", 400),
        ("/console/day-book?from=2022-01-01&to=2024-01-01", 400),
        ("/console/payments/p1?as_of=yesterday", 400),
    ] {
        let r = browser()
            .get(app.url(path))
            .header("Cookie", &s.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert!(r.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    let r = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}

#[tokio::test]
async fn an_events_body_is_shown_exactly_as_sent_only_reindented() {
    let app = seeded().await;
    let s = sign_in(&app, READ).await;
    // Seq 3 is the payment added with `"amount":100000.50`, a JSON number:
    // read into a value and written back it would be `100000.5`.
    let (_, event) = get(&app, Some(&s.cookie), "/console/events/3").await;
    assert!(event.contains("&quot;amount&quot;: 100000.50,"), "{event}");
    // Keys in the order sent: `version` before `timestamp`, not sorted.
    let version = event.find("&quot;version&quot;: ").unwrap();
    let timestamp = event.find("&quot;timestamp&quot;: ").unwrap();
    assert!(version < timestamp, "{event}");
}

#[tokio::test]
async fn the_overview_shows_the_collections_of_the_as_of_day_when_one_is_set() {
    let app = seeded().await;
    // A payment paid on 14 Nov 2023 (business day in Kolkata), reported the
    // day before it was paid so any as-of time that day includes it.
    let paid = jodo_payment("added", "e-8", "p-nov", Some("s1"), "777.70", 1_699_900_000)
        .replace("2022-01-29T10:05:45Z", "2023-11-14T06:00:00Z");
    app.accept_jodo(&paid).await;
    wait_for_projections(&app).await;
    let s = sign_in(&app, READ).await;
    let (_, page) = get(&app, Some(&s.cookie), "/console?as_of=2023-11-14").await;
    assert!(page.contains("Collections on 2023-11-14 by mode"), "{page}");
    assert!(page.contains("Payments paid on 2023-11-14"), "{page}");
    assert!(page.contains("₹777.70"), "{page}");
    assert!(
        page.contains(
            r#"href="/console/day-book?from=2023-11-01&amp;to=2023-11-30&amp;as_of=2023-11-14""#
        ),
        "{page}"
    );
    let (_, now) = get(&app, Some(&s.cookie), "/console").await;
    assert!(now.contains("Today's collections by mode"), "{now}");
    assert!(!now.contains("₹777.70"), "{now}");
}

#[tokio::test]
async fn the_changes_page_shows_a_changed_amount_in_rupees_and_other_fields_as_they_are() {
    let app = seeded().await;
    let s = sign_in(&app, READ).await;
    // Received just now: the range is the days around today.
    let today = chrono::Utc::now().date_naive();
    let (from, to) = (today.pred_opt().unwrap(), today.succ_opt().unwrap());
    let (_, page) = get(
        &app,
        Some(&s.cookie),
        &format!("/console/changes?from={from}&to={to}"),
    )
    .await;
    assert!(
        page.contains("<strong>amount</strong>: <del>₹1,00,000.50</del> → <ins>₹1,00,500.50</ins>"),
        "{page}"
    );
    assert!(
        page.contains("<strong>status</strong>: <del>recorded</del> → <ins>cancelled</ins>"),
        "{page}"
    );
}

#[tokio::test]
async fn an_event_links_to_the_next_one_only_when_there_is_one() {
    let app = seeded().await;
    let s = sign_in(&app, READ).await;
    let c = Some(s.cookie.as_str());
    let (_, first) = get(&app, c, "/console/events/1").await;
    assert!(first.contains(r#"href="/console/events/2""#), "{first}");
    let head = app.log_head();
    let (_, last) = get(&app, c, &format!("/console/events/{head}")).await;
    let next = format!(r#"href="/console/events/{}""#, head + 1);
    assert!(!last.contains(&next), "{last}");
    let prev = format!(r#"href="/console/events/{}""#, head - 1);
    assert!(
        last.contains(&prev),
        "the one before is still linked: {last}"
    );
}

#[tokio::test]
async fn a_pin_whose_note_is_only_whitespace_is_refused_with_a_page_saying_why() {
    let app = seeded().await;
    let s = sign_in(&app, ADMIN).await;
    let c = Some(s.cookie.as_str());
    let r = post(
        &app,
        c,
        "/console/integrity/pins",
        &format!("csrf={}&note=+++", s.csrf),
    )
    .await;
    assert_eq!(r.status(), 400);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("a pin needs a note saying why it was recorded"),
        "{page}"
    );
    let (_, integrity) = get(&app, c, "/console/integrity").await;
    assert!(
        integrity.contains("No pin has been recorded."),
        "{integrity}"
    );
    // A note is kept trimmed.
    let r = post(
        &app,
        c,
        "/console/integrity/pins",
        &format!("csrf={}&note=++March+close++", s.csrf),
    )
    .await;
    assert_eq!(r.status(), 303);
    let (_, integrity) = get(&app, c, "/console/integrity").await;
    assert!(integrity.contains("<td>March close</td>"), "{integrity}");
}

#[tokio::test]
async fn the_integrity_page_says_when_there_are_more_pins_than_it_lists() {
    let app = seeded().await;
    let s = sign_in(&app, ADMIN).await;
    let c = Some(s.cookie.as_str());
    let listed = registrar::log::pins::MAX_LISTED;
    let form = |n: u32| format!("csrf={}&note=pin-{n}", s.csrf);
    for n in 1..=listed {
        let r = post(&app, c, "/console/integrity/pins", &form(n)).await;
        assert_eq!(r.status(), 303);
    }
    let (_, page) = get(&app, c, "/console/integrity").await;
    assert!(!page.contains("pins of more"), "all {listed} are listed");
    assert!(page.contains("<td>pin-1</td>"), "the oldest is listed");
    let r = post(&app, c, "/console/integrity/pins", &form(listed + 1)).await;
    assert_eq!(r.status(), 303);
    let (_, page) = get(&app, c, "/console/integrity").await;
    assert!(
        page.contains(&format!("Showing the newest {listed} pins of more.")),
        "{page}"
    );
    assert!(!page.contains("<td>pin-1</td>"), "the oldest is not listed");
    assert!(page.contains(&format!("<td>pin-{}</td>", listed + 1)));
}

#[tokio::test]
async fn a_student_page_lists_a_payment_that_was_theirs_at_the_time_set_though_it_moved_since() {
    let app = seeded().await;
    // Paid by s1 at 22:30 (provider time), moved to s-evil at 22:40.
    let added = jodo_payment("added", "e-8", "p-moved", Some("s1"), "250", 1_700_001_000);
    let moved = jodo_payment(
        "updated",
        "e-9",
        "p-moved",
        Some("s-evil"),
        "250",
        1_700_001_600,
    );
    app.accept_jodo(&added).await;
    app.accept_jodo(&moved).await;
    wait_for_projections(&app).await;
    let s = sign_in(&app, READ).await;
    let c = Some(s.cookie.as_str());
    let link = r#"href="/console/payments/p-moved"#;
    let (_, then) = get(&app, c, "/console/students/s1?as_of=2023-11-14T22:35:00Z").await;
    assert!(then.contains(link), "{then}");
    let (_, now) = get(&app, c, "/console/students/s1").await;
    assert!(!now.contains(link), "{now}");
    let (_, theirs) = get(&app, c, "/console/students/s-evil").await;
    assert!(theirs.contains(link), "{theirs}");
}

#[tokio::test]
async fn the_integrity_page_says_checkpoints_are_unsigned_and_shows_the_newest_once_made() {
    let app = seeded().await;
    let s = sign_in(&app, READ).await;
    let (_, page) = get(&app, Some(&s.cookie), "/console/integrity").await;
    assert!(page.contains("Signed checkpoints"), "{page}");
    assert!(
        page.contains("Checkpoints are not signed: no signing key is configured."),
        "{page}"
    );
    assert!(page.contains("No checkpoint has been made yet."), "{page}");
    // The interval passes on a paused clock: no real wait.
    tokio::time::pause();
    tokio::time::advance(registrar::config::DEFAULT_CHECKPOINT_INTERVAL).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let made = loop {
        if let Some(cp) = registrar::log::checkpoints::newest(&app.conn()).unwrap() {
            break cp;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint was made"
        );
        // Lets the timer and the writer run; the paused clock does not make
        // this a wait.
        tokio::task::yield_now().await;
        std::thread::yield_now();
    };
    tokio::time::resume();
    let (_, page) = get(&app, Some(&s.cookie), "/console/integrity").await;
    assert!(
        page.contains(&format!("The newest, of size {}", made.size)),
        "{page}"
    );
    assert!(page.contains("(unsigned)"), "{page}");
    assert!(page.contains(made.note.lines().next().unwrap()), "{page}");
    // Anyone signed in downloads an event's or a payment's bundle, the
    // documents the read API serves.
    let (_, event) = get(&app, Some(&s.cookie), "/console/events/1").await;
    assert!(
        event.contains(r#"href="/console/events/1/bundle.json""#),
        "{event}"
    );
    let r = browser()
        .get(app.url("/console/events/1/bundle.json"))
        .header("Cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let b: registrar::log::bundle::Bundle = r.json().await.unwrap();
    assert_eq!((b.seq, b.leaf_index, b.tree_size), (1, 0, made.size));
    assert_eq!(b.checkpoint, made.note);
    let (_, payment) = get(&app, Some(&s.cookie), "/console/payments/p1").await;
    assert!(payment.contains(r#"href="/console/payments/p1/bundle.json""#));
    let r = browser()
        .get(app.url("/console/payments/p1/bundle.json"))
        .header("Cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["payment_id"], "p1");
    assert!(!doc["revisions"].as_array().unwrap().is_empty(), "{doc}");
    let (status, _) = get(&app, Some(&s.cookie), "/console/payments/nope/bundle.json").await;
    assert_eq!(status, 404);
}
