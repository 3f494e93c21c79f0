//! `registrar serve`: receive webhooks and serve the API and the console
//! until SIGINT or SIGTERM.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{BusinessZoneArg, DbArg, ProjectionsArg, ZoneArg};
use crate::config::{self, Settings};
use crate::ledger::TreeUpkeep;
use crate::log::checkpoints::Signing;
use crate::server;
use crate::sources::ParseContext;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    projections: ProjectionsArg,
    /// Address to listen on.
    #[arg(long, env = "REGISTRAR_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Allow binding a non-loopback address with no provider secret set.
    #[arg(long, env = "REGISTRAR_ALLOW_UNSIGNED")]
    allow_unsigned: bool,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "REGISTRAR_MAX_BODY_BYTES", default_value_t = config::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Rejected deliveries kept at most.
    #[arg(long, env = "REGISTRAR_QUARANTINE_CAP", default_value_t = config::DEFAULT_QUARANTINE_CAP)]
    quarantine_cap: u64,
    /// Deliveries waiting for the writer at most (then 503).
    #[arg(long, env = "REGISTRAR_QUEUE_DEPTH", default_value_t = config::DEFAULT_QUEUE_DEPTH)]
    queue_depth: usize,
    /// Deliveries committed in one transaction at most.
    #[arg(long, env = "REGISTRAR_MAX_BATCH", default_value_t = config::DEFAULT_MAX_BATCH)]
    max_batch: usize,
    /// How long a read with `min_seq` waits for the projections, in
    /// milliseconds (at most 10000).
    #[arg(long, env = "REGISTRAR_MIN_SEQ_WAIT_MS", default_value_t = config::DEFAULT_MIN_SEQ_WAIT.as_millis() as u64)]
    min_seq_wait_ms: u64,
    /// Unauthenticated rejects kept per second at most; past it they are
    /// answered and counted, not kept.
    #[arg(long, env = "REGISTRAR_UNAUTHENTICATED_RATE", default_value_t = config::DEFAULT_UNAUTHENTICATED_RATE)]
    unauthenticated_rate: u32,
    /// Projection lag past which /readyz fails, in milliseconds.
    #[arg(long, env = "REGISTRAR_MAX_LAG_MS", default_value_t = config::DEFAULT_MAX_LAG.as_millis() as u64)]
    max_lag_ms: u64,
    /// How long a client may take to send a request's head, in milliseconds.
    #[arg(long, env = "REGISTRAR_HEADER_READ_TIMEOUT_MS", default_value_t = config::DEFAULT_HEADER_READ_TIMEOUT.as_millis() as u64)]
    header_read_timeout_ms: u64,
    /// How long an idle keep-alive connection stays open, in milliseconds.
    #[arg(long, env = "REGISTRAR_IDLE_TIMEOUT_MS", default_value_t = config::DEFAULT_IDLE_TIMEOUT.as_millis() as u64)]
    idle_timeout_ms: u64,
    /// At SIGTERM, how long requests in progress may take before the
    /// connections left are closed, in milliseconds.
    #[arg(long, env = "REGISTRAR_SHUTDOWN_GRACE_MS", default_value_t = config::DEFAULT_SHUTDOWN_GRACE.as_millis() as u64)]
    shutdown_grace_ms: u64,
    #[command(flatten)]
    business: BusinessZoneArg,
    #[command(flatten)]
    zone: ZoneArg,
    /// The address people reach the console at (e.g. https://registrar.school.in);
    /// when it is https the session cookie is marked Secure.
    #[arg(long, env = "REGISTRAR_PUBLIC_URL")]
    public_url: Option<String>,
    /// How long a console session lasts without a request, in minutes.
    #[arg(long, env = "REGISTRAR_SESSION_IDLE_MINUTES", default_value_t = config::DEFAULT_SESSION_IDLE.as_secs() / 60)]
    session_idle_minutes: u64,
    /// The zone the console shows times in [default: the business zone].
    #[arg(long, env = "REGISTRAR_DISPLAY_ZONE")]
    display_zone: Option<chrono_tz::Tz>,
    /// The log's name, the first line of every checkpoint and the signing
    /// key's name [default: registrar/HOST, HOST the host name]. The key from
    /// REGISTRAR_SIGNING_KEY_FILE must have this name.
    #[arg(long, env = "REGISTRAR_LOG_ORIGIN")]
    log_origin: Option<String>,
    /// How often a checkpoint of the log's tree is made when the head moved,
    /// in seconds (1 to 86400).
    #[arg(long, env = "REGISTRAR_CHECKPOINT_INTERVAL_SECS", default_value_t = config::DEFAULT_CHECKPOINT_INTERVAL.as_secs())]
    checkpoint_interval_secs: u64,
    /// Also write every checkpoint as a file here (`checkpoint`, the newest,
    /// and `checkpoints/<size>`), for auditors and witnesses to collect.
    #[arg(long, env = "REGISTRAR_CHECKPOINT_DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// For `make bench` only: appends keep no tree and no checkpoint is
    /// made, so the benchmark can measure what the tree costs a delivery.
    /// The next start without it adds the missing leaves.
    #[arg(long, hide = true)]
    without_tree: bool,
}

impl ServeArgs {
    /// The settings these flags and the environment's secrets ask for.
    fn settings(&self) -> Result<Settings> {
        let mut s = Settings::new(&self.db.db).secrets_from_env()?;
        s.projections_path = self.projections.path(&self.db.db);
        s.parse = ParseContext {
            toolzz_zone: self.zone.toolzz_zone,
        };
        s.max_body_bytes = self.max_body_bytes;
        s.quarantine_cap = self.quarantine_cap;
        s.queue_depth = self.queue_depth;
        s.max_batch = self.max_batch;
        s.min_seq_wait = Duration::from_millis(self.min_seq_wait_ms);
        s.max_lag = Duration::from_millis(self.max_lag_ms);
        s.unauthenticated_rate = self.unauthenticated_rate;
        s.business_zone = self.business.business_zone;
        s.header_read_timeout = Duration::from_millis(self.header_read_timeout_ms);
        s.idle_timeout = Duration::from_millis(self.idle_timeout_ms);
        s.shutdown_grace = Duration::from_millis(self.shutdown_grace_ms);
        s.public_url = self.public_url.clone();
        s.session_idle = Duration::from_secs(self.session_idle_minutes.saturating_mul(60));
        s.display_zone = self.display_zone;
        if let Some(origin) = &self.log_origin {
            s.log_origin = origin.clone();
        }
        s.checkpoint_interval = Duration::from_secs(self.checkpoint_interval_secs);
        s.checkpoint_dir = self.checkpoint_dir.clone();
        if self.without_tree {
            s.tree = TreeUpkeep::Skipped;
        }
        Ok(s)
    }
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let cfg = args.settings()?.validate()?;
    let addrs: Vec<SocketAddr> = args
        .listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {:?} is not an address", args.listen))?
        .collect();
    let addr = *addrs
        .first()
        .with_context(|| format!("--listen {:?} resolves to nothing", args.listen))?;
    if cfg.is_unsigned() {
        if !addr.ip().is_loopback() && !args.allow_unsigned {
            bail!(
                "refusing to listen on {addr} with no provider secret set: anyone who can reach it could write to \
                 the event log. Set REGISTRAR_JODO_SECRET and REGISTRAR_TOOLZZ_TOKEN (see README), or pass \
                 --allow-unsigned if this network is trusted."
            );
        }
        tracing::warn!(%addr, "no provider secrets set: deliveries are not authenticated");
    }
    if cfg.read_token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "REGISTRAR_READ_TOKEN is not set: the read API is open to anyone who can reach it");
    }
    match cfg.signing() {
        Signing::Signed { verifier } => {
            tracing::info!(origin = %cfg.log_origin, %verifier, "checkpoints are signed")
        }
        Signing::Unsigned => tracing::warn!(
            origin = %cfg.log_origin,
            "REGISTRAR_SIGNING_KEY_FILE is not set: checkpoints are made unsigned (see `registrar key generate`)"
        ),
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tracing::info!(
            %addr,
            db = %cfg.db_path.display(),
            projections = %cfg.projections_path.display(),
            "registrar listening"
        );
        server::serve(listener, cfg, shutdown_signal())
            .await
            .context("running the server")?;
        tracing::info!("stopped cleanly");
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight deliveries");
}
