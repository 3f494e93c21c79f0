//! Console sessions: sign-in with the read or admin token, a random session
//! id in an HttpOnly, SameSite=Strict cookie, the session kept server-side
//! in memory (never the token), a CSRF token per session, idle expiry, and
//! failed sign-ins rate-limited and logged without the token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::html::bare;
use super::viewer::{Role, Viewer};
use super::{ConsoleError, ConsoleState, Html, Query};
use crate::clock::Clock;
use crate::config::Settings;
use crate::http::tokens::{admin_token, check_token};
use crate::http::ApiError;

/// The session cookie's name.
pub const COOKIE: &str = "registrar_session";
/// Sessions kept at most; past it the least recently used is ended. Bounds
/// memory whatever a client does (an open console makes one per visitor
/// without a cookie).
pub const MAX_SESSIONS: usize = 1_000;
/// Failed sign-ins allowed at once before they are refused (429).
pub const FAILED_SIGN_IN_BURST: u32 = 5;
/// Clients whose failed sign-ins are counted at once (see
/// [`crate::http::rate::KeyedRateLimit`]).
pub const MAX_SIGN_IN_CLIENTS: usize = 1024;
/// Failed sign-ins allowed per second after the burst, on average: one
/// every ten seconds, far below guessing speed.
pub const FAILED_SIGN_IN_RATE: f64 = 0.1;
/// Longest token accepted in the sign-in form (a real one is tens of bytes).
pub const MAX_TOKEN_BYTES: usize = 1_024;

struct Session {
    role: Role,
    csrf: String,
    signed_in: bool,
    last_seen: Instant,
}

/// The sessions, in memory: a restart signs everyone out.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
    /// What idle time is measured by (a test's is manual).
    clock: Clock,
}

/// 32 random bytes, hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source");
    hex::encode(bytes)
}

impl Sessions {
    pub fn new(idle: Duration, clock: Clock) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
            clock,
        }
    }

    fn start(&self, role: Role, signed_in: bool) -> Viewer {
        let mut map = self.map.lock().expect("sessions lock");
        let now = self.clock.now();
        let idle = self.idle;
        map.retain(|_, s| now.duration_since(s.last_seen) < idle);
        if map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                map.remove(&id);
            }
        }
        let id = random_token();
        let session = Session {
            role,
            csrf: random_token(),
            signed_in,
            last_seen: now,
        };
        let viewer = Viewer {
            role,
            csrf: session.csrf.clone(),
            signed_in,
            id: id.clone(),
        };
        map.insert(id, session);
        viewer
    }

    /// The session `id`, touched; None when unknown or idle too long.
    fn get(&self, id: &str) -> Option<Viewer> {
        let mut map = self.map.lock().expect("sessions lock");
        let now = self.clock.now();
        let s = map.get_mut(id)?;
        if now.duration_since(s.last_seen) >= self.idle {
            map.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(Viewer {
            role: s.role,
            csrf: s.csrf.clone(),
            signed_in: s.signed_in,
            id: id.to_string(),
        })
    }

    fn end(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(id);
    }
}

/// The session id in the request's cookie, if any.
fn cookie_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value for session `id`: HttpOnly, SameSite=Strict,
/// scoped to the console, `Secure` when the console is served over https.
fn set_cookie(config: &Settings, id: &str) -> HeaderValue {
    let secure = if config.is_https() { "; Secure" } else { "" };
    let v = format!("{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict{secure}");
    HeaderValue::from_str(&v).expect("a hex id is a valid header value")
}

fn clear_cookie(config: &Settings) -> HeaderValue {
    let secure = if config.is_https() { "; Secure" } else { "" };
    let v = format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    HeaderValue::from_str(&v).expect("a valid header value")
}

/// Whether the console is open: no read token, so no sign-in (loopback only).
pub fn is_open(config: &Settings) -> bool {
    config.read_token.is_none()
}

/// The role an open console's visitor gets without signing in: admin when
/// no admin token is set either (as `/v1/admin` is then open too).
fn open_role(config: &Settings) -> Role {
    if admin_token(config).is_none() {
        Role::Admin
    } else {
        Role::Read
    }
}

/// The role `token` signs in as, through the API's one token check.
fn role_of(config: &Settings, token: &str) -> Option<Role> {
    let admin = admin_token(config);
    if admin.is_some() && check_token(Some(token), admin).is_ok() {
        return Some(Role::Admin);
    }
    let read = config.read_token.as_deref();
    if read.is_some() && check_token(Some(token), read).is_ok() {
        return Some(Role::Read);
    }
    None
}

/// Middleware of every console page: finds the session, or starts one on an
/// open console, or sends a signed-out visitor to sign in (a GET) or
/// answers 401 (anything else).
pub async fn require_session(
    State(c): State<ConsoleState>,
    mut req: Request,
    next: Next,
) -> Response {
    let config = &c.app.config;
    if let Some(viewer) = cookie_id(req.headers()).and_then(|id| c.sessions.get(id)) {
        req.extensions_mut().insert(viewer);
        return next.run(req).await;
    }
    if is_open(config) {
        let viewer = c.sessions.start(open_role(config), false);
        let cookie = set_cookie(config, &viewer.id);
        req.extensions_mut().insert(viewer);
        let mut response = next.run(req).await;
        response.headers_mut().append(header::SET_COOKIE, cookie);
        return response;
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        let target = req
            .uri()
            .path_and_query()
            .map_or("/console", |p| p.as_str());
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("next", target);
        return Redirect::to(&format!("/console/sign-in?{}", q.finish())).into_response();
    }
    ConsoleError(ApiError::Unauthorized(
        "you are signed out: sign in, then try again".into(),
    ))
    .into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SignInQuery {
    next: Option<String>,
}

/// Only a path of the console is followed after sign-in (never another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/console".into(),
    }
}

fn sign_in_form(next: &str, message: Option<&str>, open: bool) -> maud::Markup {
    bare(
        "Sign in",
        html! {
            @if open {
                p.banner.open role="note" {
                    "This console is open (no read token is set): sign in only to act as admin."
                }
            }
            @if let Some(m) = message {
                p.error role="alert" { (m) }
            }
            form method="post" action="/console/sign-in" {
                input type="hidden" name="next" value=(next);
                p {
                    label for="token" { "Access token (read or admin)" }
                    input #token type="password" name="token" autocomplete="current-password" required;
                }
                p { button type="submit" { "Sign in" } }
            }
            p.hint { "Ask whoever runs registrar for the read token (to audit) or the admin token (to readmit, run verify and record pins)." }
        },
    )
}

/// `GET /console/sign-in`.
pub async fn sign_in_page(State(c): State<ConsoleState>, Query(q, _): Query<SignInQuery>) -> Html {
    let next = safe_next(q.next.as_deref());
    Html(sign_in_form(&next, None, is_open(&c.app.config)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInForm {
    token: String,
    next: Option<String>,
}

/// `POST /console/sign-in`: a right token starts a session of its role; a
/// wrong one is logged (never the token) and counted against the limit.
pub async fn sign_in(
    State(c): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: String,
) -> Result<Response, ConsoleError> {
    let form: SignInForm = super::parse_form(&body)?;
    let next = safe_next(form.next.as_deref());
    let config = &c.app.config;
    // Every attempt takes a token of this client's budget before the token
    // is tried (concurrent guesses cannot all slip past a look), and a right
    // one gives it back. Refusals are not logged: a flood would flood the log.
    let client = peer.ip();
    if !c.failed_sign_ins.allow(client) {
        return Err(ConsoleError(ApiError::TooManyRequests {
            message: "too many failed sign-ins: wait a minute and try again".into(),
            retry_after: 60,
        }));
    }
    let role = (form.token.len() <= MAX_TOKEN_BYTES)
        .then(|| role_of(config, form.token.trim()))
        .flatten();
    let Some(role) = role else {
        tracing::warn!(
            token_bytes = form.token.len(),
            "console sign-in failed: the token matches neither the read nor the admin token"
        );
        let page = sign_in_form(
            &next,
            Some("That token is not right. Check it and try again."),
            is_open(config),
        );
        return Ok((StatusCode::UNAUTHORIZED, Html(page)).into_response());
    };
    c.failed_sign_ins.refund(client);
    let viewer = c.sessions.start(role, true);
    tracing::info!(role = ?role, "console sign-in");
    let mut response = Redirect::to(&next).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(config, &viewer.id));
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrfForm {
    pub csrf: String,
}

/// `POST /console/sign-out`: ends the session, clears the cookie.
pub async fn sign_out(
    State(c): State<ConsoleState>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    body: String,
) -> Result<Response, ConsoleError> {
    let form: CsrfForm = super::parse_form(&body)?;
    viewer.check_csrf(&form.csrf)?;
    c.sessions.end(&viewer.id);
    let target = if is_open(&c.app.config) {
        "/console"
    } else {
        "/console/sign-in"
    };
    let mut response = Redirect::to(target).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear_cookie(&c.app.config));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// Sessions on a clock the test moves, and that clock.
    fn sessions(idle: Duration) -> (Sessions, ManualClock) {
        let time = ManualClock::new();
        (Sessions::new(idle, time.clone().into()), time)
    }

    #[test]
    fn a_session_expires_after_its_idle_time() {
        let idle = Duration::from_secs(30 * 60);
        let just_under = idle - Duration::from_millis(1);
        let (sessions, time) = sessions(idle);
        let v = sessions.start(Role::Read, true);
        assert!(sessions.get(&v.id).is_some());
        time.advance(just_under);
        assert!(
            sessions.get(&v.id).is_some(),
            "a moment before its idle time a session still works"
        );
        time.advance(just_under);
        assert!(
            sessions.get(&v.id).is_some(),
            "each request starts the idle time again"
        );
        time.advance(idle);
        assert!(
            sessions.get(&v.id).is_none(),
            "its whole idle time without a request ends it"
        );
    }

    #[test]
    fn sessions_are_bounded_and_the_least_recent_goes_first() {
        let (sessions, time) = sessions(Duration::from_secs(60 * 60));
        // Each step a moment after the last: "least recent" is defined.
        let tick = Duration::from_millis(1);
        let first = sessions.start(Role::Read, true);
        time.advance(tick);
        let second = sessions.start(Role::Read, true);
        for _ in 0..MAX_SESSIONS {
            time.advance(tick);
            assert!(sessions.get(&second.id).is_some());
            time.advance(tick);
            sessions.start(Role::Read, true);
        }
        assert!(sessions.map.lock().unwrap().len() <= MAX_SESSIONS);
        assert!(sessions.get(&first.id).is_none());
        assert!(sessions.get(&second.id).is_some());
    }

    #[test]
    fn ids_and_csrf_tokens_are_random_and_distinct() {
        let (sessions, _) = sessions(Duration::from_secs(60));
        let (a, b) = (
            sessions.start(Role::Read, true),
            sessions.start(Role::Read, true),
        );
        assert_ne!(a.id, b.id);
        assert_ne!(a.csrf, b.csrf);
        assert_ne!(a.id, a.csrf);
        assert_eq!(a.id.len(), 64);
    }

    #[test]
    fn only_console_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/console/students?q=a")),
            "/console/students?q=a"
        );
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/v1/students",
            "/console\\@evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console", "{bad}");
        }
        assert_eq!(safe_next(None), "/console");
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_https() {
        let mut config = Settings::new("x.db");
        let plain = set_cookie(&config, "abc");
        let plain = plain.to_str().unwrap();
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        config.public_url = Some("https://registrar.example".into());
        assert!(set_cookie(&config, "abc")
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
    }

    #[test]
    fn tokens_sign_in_as_their_role() {
        let mut config = Settings::new("x.db");
        config.read_token = Some("read-t".into());
        config.admin_token = Some("admin-t".into());
        assert_eq!(role_of(&config, "read-t"), Some(Role::Read));
        assert_eq!(role_of(&config, "admin-t"), Some(Role::Admin));
        assert_eq!(role_of(&config, "nope"), None);
        config.admin_token = None;
        assert_eq!(role_of(&config, "read-t"), Some(Role::Admin));
    }
}
