//! `spawn_app()`: a fresh database in a temporary directory and a server on a
//! random port, stopped gracefully by `stop()`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use registrar::config::{Config, Settings};
use registrar::sources::jodo;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const JODO_SECRET: &str = "test-jodo-secret";
pub const TOOLZZ_TOKEN: &str = "test-toolzz-token";

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub db_path: PathBuf,
    pub config: Config,
    pub client: reqwest::Client,
    dir: TempDir,
    shutdown: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), registrar::server::ServerError>>,
}

/// A server with a Jodo secret and a Toolzz token, on a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the config adjusted first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut settings = Settings::new(dir.path().join("registrar.db"));
    settings.jodo_secret = Some(JODO_SECRET.into());
    settings.toolzz_token = Some(TOOLZZ_TOKEN.into());
    adjust(&mut settings);
    start(dir, settings.validate().expect("valid test settings")).await
}

/// Starts a server on `dir`'s database (used again after `stop` to restart).
pub async fn start(dir: TempDir, config: Config) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding port 0");
    let addr = listener.local_addr().unwrap();
    let (shutdown, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(registrar::server::serve(listener, config.clone(), async {
        let _ = rx.await;
    }));
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    // Wait until it answers (the database is opened before serving).
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    TestApp {
        addr,
        base,
        db_path: config.db_path.clone(),
        config,
        client,
        dir,
        shutdown,
        handle,
    }
}

impl TestApp {
    /// Stops gracefully; returns the directory and config to restart with.
    pub async fn stop(self) -> (TempDir, Config) {
        let _ = self.shutdown.send(());
        self.handle
            .await
            .expect("server task")
            .expect("server stopped cleanly");
        (self.dir, self.config)
    }

    /// Signals shutdown and stops in a task of its own, so a test can act
    /// while the server is stopping; the task returns how long the stop
    /// took (on tokio's clock, which a test may have paused), and the
    /// directory (kept until the test is done with it).
    pub fn stop_in_background(self) -> JoinHandle<(std::time::Duration, TempDir)> {
        tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            let (dir, _) = self.stop().await;
            (began.elapsed(), dir)
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a Jodo body signed with the test secret.
    pub async fn post_jodo(&self, body: &str) -> reqwest::Response {
        let sig = jodo::sign(JODO_SECRET.as_bytes(), body.as_bytes());
        self.post_jodo_with(body, &[("X-Jodo-Signature", &sig)])
            .await
    }

    /// POSTs a signed Jodo body and asserts it was accepted; returns its seq.
    pub async fn accept_jodo(&self, body: &str) -> u64 {
        accepted(self.post_jodo(body).await).await
    }

    /// POSTs a Jodo body with exactly these extra headers.
    pub async fn post_jodo_with(&self, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/webhooks/jodo"))
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request sent")
    }

    /// POSTs a Toolzz body to the URL with the test token.
    pub async fn post_toolzz(&self, body: &str) -> reqwest::Response {
        self.post_raw(&format!("/webhooks/toolzz/{TOOLZZ_TOKEN}"), body)
            .await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .body(body.to_string())
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs raw bytes (not necessarily UTF-8) with these headers.
    pub async fn post_bytes(
        &self,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request sent")
    }

    /// POSTs raw bytes to the Jodo endpoint, signed with the test secret.
    pub async fn post_jodo_bytes(&self, body: &[u8]) -> reqwest::Response {
        let sig = jodo::sign(JODO_SECRET.as_bytes(), body);
        self.post_bytes("/webhooks/jodo", body, &[("X-Jodo-Signature", &sig)])
            .await
    }

    /// GETs `path`. A `/v1` read waits, as the README tells integrators to,
    /// until the projections hold everything the log holds now
    /// (`X-Registrar-Min-Seq` with the log's head), so a test reads its own
    /// writes.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if path.starts_with("/v1/") {
            let head = self.log_head();
            if head > 0 {
                req = req.header("X-Registrar-Min-Seq", head.to_string());
            }
        }
        req.send().await.expect("request sent")
    }

    /// The log's head, read from the file.
    pub fn log_head(&self) -> u64 {
        let conn = registrar::db::open_ro(&self.db_path).expect("opening the log");
        registrar::log::head(&conn).expect("the log's head").seq
    }

    /// A connection to the projection store file serving reads now (after a
    /// rebuild, the new file).
    pub async fn store_conn(&self) -> rusqlite::Connection {
        let status = self.get_json("/v1/admin/status").await;
        let path = status["projections"]["file"]
            .as_str()
            .expect("a live projection store");
        rusqlite::Connection::open(path).expect("opening the projection store")
    }

    /// GETs and parses JSON, asserting 200.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// A read-write connection to the server's log file.
    pub fn conn(&self) -> rusqlite::Connection {
        registrar::db::open_rw(&self.db_path).expect("opening the test database")
    }
}

/// POSTs a Jodo body signed with the test secret to the server at `base`
/// (a [`BinaryServer`]'s, or a [`TestApp`]'s from a task of its own).
pub async fn post_signed_jodo(
    client: &reqwest::Client,
    base: &str,
    body: String,
) -> reqwest::Result<reqwest::Response> {
    let sig = jodo::sign(JODO_SECRET.as_bytes(), body.as_bytes());
    client
        .post(format!("{base}/webhooks/jodo"))
        .header("X-Jodo-Signature", sig)
        .body(body)
        .send()
        .await
}

/// Asserts a 200 `accepted` and returns its seq.
pub async fn accepted(r: reqwest::Response) -> u64 {
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted", "{body}");
    body["seq"].as_u64().expect("an accepted answer has a seq")
}

/// The JSON of a response, with its status.
pub async fn json(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

/// The real binary serving `dir`'s database on a free port (for kill -9
/// and for what only a process shows, like its stderr).
pub struct BinaryServer {
    pub child: std::process::Child,
    pub base: String,
}

/// Starts `registrar serve` on `dir/registrar.db` with the test's Jodo
/// secret, its stderr to `stderr`, and waits until it answers.
pub async fn spawn_binary(dir: &std::path::Path, stderr: std::process::Stdio) -> BinaryServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.join("registrar.db"))
        .env("REGISTRAR_JODO_SECRET", JODO_SECRET)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("starting registrar");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "registrar did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    BinaryServer { child, base }
}

impl BinaryServer {
    /// SIGKILL, then reap.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM (a clean stop), then reap; panics unless it exits 0.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let status = self.child.wait().expect("reaped");
        assert!(status.success(), "a clean stop exited {status}");
    }
}
