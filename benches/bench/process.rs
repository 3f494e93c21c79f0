//! Child processes: the `registrar` binary (serve, verify, rebuild) and the
//! HTTP floor's server, with readiness, stopping and peak memory.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The release binary cargo built for this bench.
pub const REGISTRAR: &str = env!("CARGO_BIN_EXE_registrar");

pub const JODO_SECRET: &str = "bench-jodo-secret-7f3a9c";
pub const TOOLZZ_TOKEN: &str = "bench-toolzz-token-51d2e8";

/// A port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// `registrar` with the bench's environment: secrets set, info logging.
pub fn registrar() -> Command {
    let mut cmd = Command::new(REGISTRAR);
    cmd.env("REGISTRAR_JODO_SECRET", JODO_SECRET)
        .env("REGISTRAR_TOOLZZ_TOKEN", TOOLZZ_TOKEN)
        .env_remove("REGISTRAR_JODO_HEADER")
        .env_remove("REGISTRAR_READ_TOKEN")
        .env_remove("REGISTRAR_ADMIN_TOKEN")
        .env_remove("REGISTRAR_DB")
        .env("RUST_LOG", "info");
    cmd
}

/// Clock ticks per second in `/proc/PID/stat` (USER_HZ: 100 on every Linux
/// this runs on).
const CLOCK_TICKS: f64 = 100.0;

/// A server running in a child process.
pub struct Server {
    child: Child,
    pub base: String,
    pub log: PathBuf,
    name: &'static str,
}

impl Server {
    /// `registrar serve --db DB --listen 127.0.0.1:PORT`, logging to `log`.
    pub fn registrar(db: &Path, log: &Path) -> Result<Server> {
        Server::registrar_with(db, log, &[])
    }

    /// The same with more flags.
    pub fn registrar_with(db: &Path, log: &Path, flags: &[&str]) -> Result<Server> {
        let port = free_port()?;
        let mut cmd = registrar();
        cmd.arg("serve")
            .arg("--db")
            .arg(db)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(flags);
        Server::spawn(cmd, port, log, "registrar serve")
    }

    /// The CPU time (user and system) the server has used so far, in
    /// seconds, from `/proc/PID/stat` (clock ticks of [`CLOCK_TICKS`]).
    pub fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .context("reading the server's /proc/PID/stat")?;
        // The fields after the command name, which is in parentheses and
        // may hold spaces: utime and stime are the 12th and 13th of them.
        let after = &stat[stat.rfind(')').context("no command name in stat")? + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| -> Result<u64> {
            Ok(fields.get(i).context("stat has too few fields")?.parse()?)
        };
        Ok((ticks(11)? + ticks(12)?) as f64 / CLOCK_TICKS)
    }

    /// This bench binary again, as the HTTP floor's server.
    pub fn floor(log: &Path) -> Result<Server> {
        let port = free_port()?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("--http-floor-server")
            .arg(format!("127.0.0.1:{port}"));
        Server::spawn(cmd, port, log, "HTTP floor server")
    }

    fn spawn(mut cmd: Command, port: u16, log: &Path, name: &'static str) -> Result<Server> {
        let file = std::fs::File::create(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
            name,
        })
    }

    /// Waits until `GET /healthz` answers 200.
    pub async fn ready(&mut self, client: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} before it was ready; its log:\n{}",
                    self.name,
                    tail(&self.log)
                );
            }
            let ok = client
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} was not ready after 180 s", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for a clean exit (SIGKILL after 60 s).
    pub fn stop(mut self) -> Result<ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let status = self.child.wait()?;
                bail!(
                    "{} did not stop within 60 s of SIGTERM ({status})",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The end of a log file, for error messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A finished child process.
#[derive(Debug)]
pub struct Measured {
    pub status: ExitStatus,
    pub wall: Duration,
    /// Peak resident memory (VmHWM), in KiB, as last seen.
    pub peak_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion, polling `/proc/PID/status` for VmHWM every 10 ms.
pub fn run_measured(mut cmd: Command) -> Result<Measured> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting a child process")?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Some(hwm) = vm_hwm(&status_path) {
            peak_kib = peak_kib.max(hwm);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let wall = started.elapsed();
    Ok(Measured {
        status,
        wall,
        peak_kib,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn vm_hwm(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
