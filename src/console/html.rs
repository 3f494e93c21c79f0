//! The console's page frame and the formatting every page shares: money in
//! rupees with Indian digit grouping, times in the display zone with UTC on
//! hover, links that keep the page's time settings.
//!
//! Everything is rendered with maud, which escapes every interpolated value:
//! what a provider sent is shown as text, never markup.

use chrono::{DateTime, SecondsFormat};
use chrono_tz::Tz;
use maud::{html, Markup, DOCTYPE};

use super::viewer::{Role, Viewer};

/// The parts of the console, as the navigation lists them: (path, label).
pub const NAV: &[(&str, &str)] = &[
    ("/console", "Overview"),
    ("/console/students", "Students"),
    ("/console/day-book", "Day book"),
    ("/console/changes", "Changes since"),
    ("/console/events", "Events"),
    ("/console/quarantine", "Quarantine"),
    ("/console/integrity", "Integrity"),
];

/// Rupees with Indian digit grouping: the last three digits, then groups
/// of two (`₹1,00,000.50`); a minus sign before the symbol when negative.
pub fn rupees(minor: i128) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let whole = (abs / 100).to_string();
    let paise = abs % 100;
    let grouped = if whole.len() <= 3 {
        whole
    } else {
        let (head, last3) = whole.split_at(whole.len() - 3);
        let mut groups: Vec<&str> = Vec::new();
        let mut end = head.len();
        while end > 0 {
            let start = end.saturating_sub(2);
            groups.push(&head[start..end]);
            end = start;
        }
        groups.reverse();
        format!("{},{last3}", groups.join(","))
    };
    format!("{sign}₹{grouped}.{paise:02}")
}

/// A decimal amount as the reports and the API write it (`1500.25`,
/// `-3.10`), in minor units. None for anything else.
pub fn parse_minor(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i128 = whole.parse().ok()?;
    let frac: i128 = format!("{frac:0<2}").parse().ok()?;
    let minor = whole.checked_mul(100)?.checked_add(frac)?;
    Some(if negative { -minor } else { minor })
}

/// A decimal amount from a report shown in rupees; shown as given when it
/// does not parse (never expected).
pub fn rupees_text(text: &str) -> String {
    parse_minor(text).map_or_else(|| text.to_string(), rupees)
}

/// An instant (unix seconds) in the display zone, with UTC on hover and in
/// the `datetime` attribute.
pub fn when(secs: i64, zone: Tz) -> Markup {
    match DateTime::from_timestamp(secs, 0) {
        Some(t) => {
            let utc = t.to_rfc3339_opts(SecondsFormat::Secs, true);
            let local = t.with_timezone(&zone).format("%d %b %Y, %H:%M:%S %Z");
            html! { time datetime=(utc) title={ (utc) " (UTC)" } { (local) } }
        }
        None => html! { (secs) },
    }
}

/// An instant in unix microseconds, as [`when`].
pub fn when_micros(micros: i64, zone: Tz) -> Markup {
    when(micros.div_euclid(1_000_000), zone)
}

/// A path with its query: `params` (empty values left out), then the page's
/// time settings, so a link keeps the time the reader chose.
pub fn href(path: &str, params: &[(&str, &str)], times: &TimeView) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    for (k, v) in times.pairs() {
        q.append_pair(k, v);
    }
    let q = q.finish();
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    }
}

/// A path segment, percent-encoded (ids a provider chose can hold `/`, `?`).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `as_of` and `known_at` a page was asked for, as given.
#[derive(Debug, Clone, Default)]
pub struct TimeView {
    pub as_of: Option<String>,
    pub known_at: Option<String>,
}

impl TimeView {
    pub fn is_set(&self) -> bool {
        self.as_of.is_some() || self.known_at.is_some()
    }

    fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        if let Some(a) = &self.as_of {
            out.push(("as_of", a.as_str()));
        }
        if let Some(k) = &self.known_at {
            out.push(("known_at", k.as_str()));
        }
        out
    }
}

/// What the frame of every page needs besides its body.
pub struct Frame<'a> {
    pub title: &'a str,
    /// The page's own path, for the navigation and the time control.
    pub path: &'a str,
    /// The page's other query parameters, kept by the time control.
    pub keep: &'a [(String, String)],
    pub times: &'a TimeView,
    pub viewer: &'a Viewer,
    /// The console is open (no read token): said in a banner.
    pub open: bool,
    /// Seconds after which the page reloads itself (a verify in progress).
    pub refresh: Option<u32>,
}

/// A whole page: head, banners, navigation, the time control, the body.
pub fn page(f: &Frame, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(f.title, f.refresh))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    p.brand { a href="/console" { "registrar" } " audit console" }
                    nav aria-label="Console" {
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    @let here = *path == f.path || (path.len() > 8 && f.path.starts_with(path));
                                    a href=(href(path, &[], f.times)) aria-current=[here.then_some("page")] { (label) }
                                }
                            }
                        }
                    }
                    div.who {
                        (role_label(f.viewer.role))
                        @if f.viewer.signed_in {
                            form.inline method="post" action="/console/sign-out" {
                                input type="hidden" name="csrf" value=(f.viewer.csrf);
                                button type="submit" { "Sign out" }
                            }
                        } @else if !f.open || f.viewer.role == Role::Read {
                            " · " a href="/console/sign-in" { "Sign in" }
                        }
                    }
                }
                @if f.open {
                    p.banner.open role="note" {
                        "Open console: no read token is set, so anyone who can reach this server can read it. "
                        "This is only allowed on a loopback address; set REGISTRAR_READ_TOKEN to require sign-in."
                    }
                }
                @if f.times.is_set() {
                    p.banner.times role="status" {
                        "Showing the ledger "
                        @if let Some(a) = &f.times.as_of { "as of " strong { (a) } }
                        @if f.times.as_of.is_some() && f.times.known_at.is_some() { " and " }
                        @if let Some(k) = &f.times.known_at { "as known at " strong { (k) } }
                        ". "
                        a href=(href_keep(f.path, f.keep)) { "Back to now" }
                    }
                }
                (time_control(f))
                main #main {
                    h1 { (f.title) }
                    (body)
                }
                footer.bottom {
                    p { "Amounts in rupees; times in the display zone (UTC on hover). Provider data is shown exactly as sent." }
                }
            }
        }
    }
}

fn role_label(role: Role) -> Markup {
    match role {
        Role::Admin => html! { span.role { "Admin" } },
        Role::Read => html! { span.role { "Read only" } },
    }
}

/// A path with the given pairs as its query, nothing else.
fn href_keep(path: &str, keep: &[(String, String)]) -> String {
    let pairs: Vec<(&str, &str)> = keep.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    href(path, &pairs, &TimeView::default())
}

/// The one control that sets `as_of` and `known_at` on any page, keeping
/// its other filters.
fn time_control(f: &Frame) -> Markup {
    html! {
        form.times method="get" action=(f.path) aria-label="Point in time" {
            @for (k, v) in f.keep {
                input type="hidden" name=(k) value=(v);
            }
            label for="as_of" { "As of (provider time)" }
            input #as_of type="text" name="as_of" value=[f.times.as_of.as_deref()]
                placeholder="yyyy-mm-dd or RFC 3339" size="22";
            label for="known_at" { "Known at (received by)" }
            input #known_at type="text" name="known_at" value=[f.times.known_at.as_deref()]
                placeholder="yyyy-mm-dd or RFC 3339" size="22";
            button type="submit" { "Set time" }
        }
    }
}

/// Every page's `<head>`: `refresh` reloads it after that many seconds.
fn head(title: &str, refresh: Option<u32>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @if let Some(s) = refresh {
                meta http-equiv="refresh" content=(s);
            }
            title { (title) " · registrar audit console" }
            link rel="stylesheet" href="/console/style.css";
        }
    }
}

/// A bare page for errors and sign-in: no navigation, no time control.
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, None))
            body {
                header.top { p.brand { a href="/console" { "registrar" } " audit console" } }
                main #main.narrow {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The empty state of a list.
pub fn empty(text: &str) -> Markup {
    html! { p.empty role="status" { (text) } }
}

/// An optional text cell.
pub fn opt(text: Option<&str>) -> Markup {
    match text {
        Some(t) if !t.is_empty() => html! { (t) },
        _ => html! { span.none { "—" } },
    }
}

/// Spaces per level of a pretty-printed body.
const BODY_INDENT: usize = 2;

/// A body as sent, re-indented when it is JSON, else the text as received
/// (lossy UTF-8); cut to `limit` bytes on a character boundary; and
/// whether it was cut.
///
/// JSON is re-indented token by token, never parsed into values: a parse
/// would sort keys, collapse duplicates and rewrite numbers (`1500.50` as
/// `1500.5`), and the page promises the body exactly as sent.
pub fn pretty_body(body: &[u8], limit: usize) -> (String, bool) {
    let text = if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        reindent_json(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    if text.len() <= limit {
        return (text, false);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_string(), true)
}

/// Valid JSON re-indented: a newline and indent after `{`, `[` and `,` and
/// before `}` and `]`, a space after `:`, whitespace between tokens
/// dropped, and every other byte (strings, numbers, literals) copied as it
/// is. An empty object or array stays `{}` / `[]`.
fn reindent_json(body: &[u8]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(body.len() + body.len() / 4);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.resize(out.len() + depth * BODY_INDENT, b' ');
    };
    let mut bytes = body.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                // The next token, past whitespace: a close keeps `{}` whole.
                while bytes.next_if(u8::is_ascii_whitespace).is_some() {}
                if matches!(bytes.peek(), Some(b'}' | b']')) {
                    out.extend(bytes.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            b if b.is_ascii_whitespace() => {}
            b => out.push(b),
        }
    }
    // Only whole bytes of valid UTF-8 were copied, and ASCII added.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rupees_are_grouped_the_indian_way() {
        assert_eq!(rupees(0), "₹0.00");
        assert_eq!(rupees(5), "₹0.05");
        assert_eq!(rupees(99_999), "₹999.99");
        assert_eq!(rupees(100_000), "₹1,000.00");
        assert_eq!(rupees(10_000_050), "₹1,00,000.50");
        assert_eq!(rupees(1_234_567_890), "₹1,23,45,678.90");
        assert_eq!(rupees(100_000_000_000_000), "₹10,00,00,00,00,000.00");
    }

    #[test]
    fn negative_rupees_carry_their_sign_before_the_symbol() {
        assert_eq!(rupees(-1), "-₹0.01");
        assert_eq!(rupees(-10_000_050), "-₹1,00,000.50");
        assert_eq!(rupees(i128::MIN + 1).chars().next(), Some('-'));
    }

    #[test]
    fn report_decimals_parse_to_minor_units() {
        assert_eq!(parse_minor("1500.25"), Some(150_025));
        assert_eq!(parse_minor("1500.5"), Some(150_050));
        assert_eq!(parse_minor("7"), Some(700));
        assert_eq!(parse_minor("-3.10"), Some(-310));
        assert_eq!(parse_minor("0.00"), Some(0));
        for bad in ["", "-", "1.234", "1e3", "₹1", "1,000.00", ".5"] {
            assert_eq!(parse_minor(bad), None, "{bad:?}");
        }
        assert_eq!(rupees_text("100000.50"), "₹1,00,000.50");
    }

    #[test]
    fn a_time_shows_in_the_display_zone_with_utc_in_its_attributes() {
        let m = when(0, chrono_tz::Asia::Kolkata).into_string();
        assert!(m.contains("01 Jan 1970, 05:30:00 IST"), "{m}");
        assert!(m.contains(r#"datetime="1970-01-01T00:00:00Z""#), "{m}");
    }

    #[test]
    fn a_segment_is_percent_encoded() {
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(segment("student_1234"), "student_1234");
    }

    #[test]
    fn links_keep_the_time_settings_and_drop_empty_filters() {
        let t = TimeView {
            as_of: Some("2024-03-31".into()),
            known_at: None,
        };
        assert_eq!(
            href("/console/students", &[("q", "a&b"), ("status", "")], &t),
            "/console/students?q=a%26b&as_of=2024-03-31"
        );
        assert_eq!(href("/console", &[], &TimeView::default()), "/console");
    }

    #[test]
    fn a_hostile_value_is_escaped() {
        let m = opt(Some("<script>alert(1)</script>")).into_string();
        assert_eq!(m, "&lt;script&gt;alert(1)&lt;/script&gt;");
    }

    #[test]
    fn a_long_body_is_cut_on_a_character_boundary() {
        let (text, cut) = pretty_body("\"ééééé\"".as_bytes(), 4);
        assert!(cut);
        assert_eq!(text, "\"é");
        let (text, cut) = pretty_body(b"{\"a\":1}", 100);
        assert!(!cut);
        assert_eq!(text, "{\n  \"a\": 1\n}");
    }

    #[test]
    fn a_body_keeps_its_duplicate_keys_key_order_and_numbers_as_sent() {
        let sent = br#"{"b":1500.50,"a":1,"b":2,"big":12345678901234567890123}"#;
        let (text, cut) = pretty_body(sent, 1000);
        assert!(!cut);
        assert_eq!(
            text,
            "{\n  \"b\": 1500.50,\n  \"a\": 1,\n  \"b\": 2,\n  \"big\": 12345678901234567890123\n}"
        );
    }

    #[test]
    fn a_body_is_reindented_with_its_strings_untouched() {
        let sent = br#" { "s" : "a {,} [:] \"q\" \\" , "n":[ 1 ,{"x":[]},{ }] } "#;
        let (text, _) = pretty_body(sent, 1000);
        assert_eq!(
            text,
            concat!(
                "{\n",
                "  \"s\": \"a {,} [:] \\\"q\\\" \\\\\",\n",
                "  \"n\": [\n",
                "    1,\n",
                "    {\n",
                "      \"x\": []\n",
                "    },\n",
                "    {}\n",
                "  ]\n",
                "}"
            )
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_shown_as_received() {
        let sent = b"amount=1500.50&note={,}  \xff";
        let (text, cut) = pretty_body(sent, 1000);
        assert!(!cut);
        assert_eq!(text, "amount=1500.50&note={,}  \u{fffd}");
        let (text, _) = pretty_body(br#"{"a": 1"#, 1000);
        assert_eq!(text, r#"{"a": 1"#, "cut JSON is not JSON: shown raw");
    }
}
