//! The HTTP load client (shared by the HTTP floor, ingest and reads, so the
//! comparisons are fair) and the HTTP floor's server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde::Deserialize;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Req {
    /// POST with this body, or GET when `None`.
    pub body: Option<Bytes>,
    /// Path and query, appended to the base URL.
    pub path: String,
    /// `X-Jodo-Signature`, when signed.
    pub signature: Option<String>,
}

/// What the ingest API answers (`{"status":"accepted","seq":7}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Reply {
    pub status: String,
    #[serde(default)]
    pub seq: Option<u64>,
}

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status, or 0 when the request failed below HTTP.
    pub status: u16,
    pub latency_us: u32,
    /// The parsed ingest answer, when asked for and the status is 200.
    pub reply: Option<Reply>,
}

/// A finished load run: one answer per request, in request order (`None`
/// for a request not sent before the deadline).
#[derive(Debug)]
pub struct LoadRun {
    pub answers: Vec<Option<Answer>>,
    pub elapsed: Duration,
    /// The first transport error seen, if any.
    pub first_error: Option<String>,
}

impl LoadRun {
    /// The answers received.
    pub fn sent(&self) -> impl Iterator<Item = &Answer> {
        self.answers.iter().flatten()
    }

    pub fn count(&self, status: u16) -> usize {
        self.sent().filter(|a| a.status == status).count()
    }

    /// Status codes and their counts, ascending.
    pub fn status_counts(&self) -> Vec<(u16, usize)> {
        let mut m = std::collections::BTreeMap::new();
        for a in self.sent() {
            *m.entry(a.status).or_insert(0usize) += 1;
        }
        m.into_iter().collect()
    }

    /// p50, p99 and max latency of every answer, in milliseconds.
    pub fn latency_ms(&self) -> Latency {
        let mut l: Vec<u32> = self.sent().map(|a| a.latency_us).collect();
        Latency::of(&mut l)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(us: &mut [u32]) -> Latency {
        if us.is_empty() {
            return Latency::default();
        }
        us.sort_unstable();
        let rank = |q: f64| {
            let i = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1;
            us[i] as f64 / 1000.0
        };
        Latency {
            p50: rank(0.50),
            p99: rank(0.99),
            max: us[us.len() - 1] as f64 / 1000.0,
        }
    }
}

/// A keep-alive client with room for `c` idle connections.
pub fn client(c: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(c)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("building the HTTP client")
}

/// Opens the `c` keep-alive connections before a measured run (a few
/// `GET /healthz` from `c` tasks at once), so no figure pays for connecting.
async fn warm_up(client: &reqwest::Client, base: &str, c: usize) {
    let mut tasks = Vec::with_capacity(c);
    for _ in 0..c {
        let (client, url) = (client.clone(), format!("{base}/healthz"));
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                if let Ok(r) = client.get(&url).send().await {
                    let _ = r.bytes().await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Sends every request from `c` concurrent tasks pulling from a shared
/// index, and records each answer. `parse` asks for the ingest answer. With
/// a `deadline`, no request is started after it. The connections are opened
/// first, outside the measurement.
pub async fn run(
    client: &reqwest::Client,
    base: &str,
    reqs: Arc<Vec<Req>>,
    c: usize,
    parse: bool,
    deadline: Option<Duration>,
) -> LoadRun {
    warm_up(client, base, c).await;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(c);
    for _ in 0..c {
        let (client, base, reqs, next) = (
            client.clone(),
            base.to_string(),
            Arc::clone(&reqs),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(usize, Answer)> = Vec::new();
            let mut first_error = None;
            loop {
                if deadline.is_some_and(|d| started.elapsed() >= d) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = reqs.get(i) else { break };
                let url = format!("{base}{}", req.path);
                let t0 = Instant::now();
                let builder = match &req.body {
                    Some(body) => {
                        let mut b = client
                            .post(url)
                            .header("content-type", "application/json")
                            .body(body.clone());
                        if let Some(sig) = &req.signature {
                            b = b.header("x-jodo-signature", sig);
                        }
                        b
                    }
                    None => client.get(url),
                };
                let result = async {
                    let resp = builder.send().await?;
                    let status = resp.status().as_u16();
                    let bytes = resp.bytes().await?;
                    Ok::<_, reqwest::Error>((status, bytes))
                }
                .await;
                let latency_us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let answer = match result {
                    Ok((status, bytes)) => Answer {
                        status,
                        latency_us,
                        reply: if parse && status == 200 {
                            serde_json::from_slice(&bytes).ok()
                        } else {
                            None
                        },
                    },
                    Err(e) => {
                        first_error.get_or_insert_with(|| e.to_string());
                        Answer {
                            status: 0,
                            latency_us,
                            reply: None,
                        }
                    }
                };
                out.push((i, answer));
            }
            (out, first_error)
        }));
    }
    let mut answers: Vec<Option<Answer>> = vec![None; reqs.len()];
    let mut first_error = None;
    for t in tasks {
        let (out, err) = t.await.expect("a load task panicked");
        if first_error.is_none() {
            first_error = err;
        }
        for (i, a) in out {
            answers[i] = Some(a);
        }
    }
    let elapsed = started.elapsed();
    LoadRun {
        answers,
        elapsed,
        first_error,
    }
}

/// The HTTP floor's server: reads the whole body and answers 200 with an
/// ingest-shaped JSON answer at once. Runs in its own process (the bench
/// binary started again with `--http-floor-server ADDR`), on a default tokio
/// runtime like `registrar serve`.
pub fn serve_floor(addr: &str) -> anyhow::Result<()> {
    async fn answer(body: Bytes) -> ([(&'static str, &'static str); 1], &'static str) {
        std::hint::black_box(body.len());
        (
            [("content-type", "application/json")],
            r#"{"status":"accepted","seq":1}"#,
        )
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let app = axum::Router::new().fallback(answer);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// Samples the projection lag (`/v1/admin/status`, `lag_seconds`) every
/// [`LAG_SAMPLE_EVERY`] while a load runs.
pub struct LagSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<u32>>,
}

/// The lag sampler's period.
pub const LAG_SAMPLE_EVERY: Duration = Duration::from_millis(10);

impl LagSampler {
    pub fn start(client: reqwest::Client, base: String) -> LagSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Some((_, lag)) = status(&client, &base).await {
                    samples.push((lag * 1e6).min(u32::MAX as f64) as u32);
                }
                tokio::time::sleep(LAG_SAMPLE_EVERY).await;
            }
            samples
        });
        LagSampler { stop, task }
    }

    /// The samples, in microseconds.
    pub async fn stop(self) -> Vec<u32> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// (whether the projections hold the log's head, lag in seconds).
async fn status(client: &reqwest::Client, base: &str) -> Option<(bool, f64)> {
    let v: serde_json::Value = client
        .get(format!("{base}/v1/admin/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let caught_up = v["projections"]["last_seq"] == v["log"]["seq"];
    Some((caught_up, v["projections"]["lag_seconds"].as_f64()?))
}

/// Polls until the projections hold the log's head; how long that took.
pub async fn wait_caught_up(
    client: &reqwest::Client,
    base: &str,
    deadline: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < deadline {
        if let Some((true, _)) = status(client, base).await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// Clients posting unsigned Jodo bodies as fast as they can, until stopped.
pub struct Flood {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
}

impl Flood {
    pub fn start(client: reqwest::Client, base: String, clients: usize) -> Flood {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|c| {
                let (client, url, stop) = (
                    client.clone(),
                    format!("{base}/webhooks/jodo"),
                    Arc::clone(&stop),
                );
                tokio::spawn(async move {
                    let mut sent = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let body = format!(r#"{{"event":"flood","client":{c},"n":{sent}}}"#);
                        let _ = client.post(&url).body(body).send().await;
                        sent += 1;
                    }
                    sent
                })
            })
            .collect();
        Flood { stop, tasks }
    }

    /// Stops the flood; how many posts it sent.
    pub async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let mut sent = 0;
        for t in self.tasks {
            sent += t.await.unwrap_or(0);
        }
        sent
    }
}
