//! Runtime settings, with the limits every queue and body is held to.
//!
//! [`Settings`] is what a caller asks for (the command line, a test, a
//! benchmark); [`Settings::validate`] is the one way to a [`Config`], so
//! every caller's values are checked by the same rules. A `Config` reads
//! like its settings (it derefs to them) and cannot be changed afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::auth::{JodoKeys, JodoSecrets};
use crate::clock::Clock;
use crate::ledger::TreeUpkeep;
use crate::log::checkpoints::{Maker, Signing};
use crate::log::note::{self, KeyError, SigningKey};
use crate::sources::ParseContext;

/// Largest request body accepted, by default (1 MiB). Jodo and Toolzz bodies
/// are a few KiB; anything near this is a mistake or an attack.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// Rejected deliveries kept at most, by default.
pub const DEFAULT_QUARANTINE_CAP: u64 = 10_000;

/// Deliveries waiting for the writer at most. Past this, ingest answers 503
/// (with Retry-After) at once instead of queueing without bound.
pub const DEFAULT_QUEUE_DEPTH: usize = 4_096;

/// Deliveries committed in one transaction at most (group commit). Bounds the
/// latency one fsync adds to the deliveries behind it.
pub const DEFAULT_MAX_BATCH: usize = 512;

/// How long a read with `min_seq` waits for the projections by default.
pub const DEFAULT_MIN_SEQ_WAIT: Duration = Duration::from_secs(2);
/// The longest `--min-seq-wait` allowed: a read holds a connection while it
/// waits, so the bound keeps a slow projector from piling up requests.
pub const MAX_MIN_SEQ_WAIT: Duration = Duration::from_secs(10);
/// How far behind the log the projections may be before `/readyz` fails.
pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(5);

/// How long a client may take to send a request's head (from its connection's
/// accept, or from the first byte after its last answer), by default. A
/// provider's head is a few hundred bytes sent at once; one still unfinished
/// after 10 s is a stalled or hostile client holding a socket and a task.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a keep-alive connection with nothing in progress stays open, by
/// default. Longer than nginx's upstream `keepalive_timeout` (60 s), so a
/// proxy in front closes first and never sends a request on a connection
/// the server is closing at that moment.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// At shutdown (SIGTERM), how long requests in progress may take before every
/// connection left is closed, by default. A delivery commits in milliseconds;
/// what is still unfinished after 10 s is a client that stopped sending, and
/// a process supervisor's own stop timeout is usually 10 s or more.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The projection store's default path: beside the log, named after it
/// (`data/registrar.db` → `data/registrar.projections.db`).
pub fn default_projections_path(db_path: &Path) -> PathBuf {
    let stem = db_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "registrar".into());
    db_path.with_file_name(format!("{stem}.projections.db"))
}

/// Unauthenticated rejects kept per second at most, by default; past it they
/// are answered and counted, not kept. A provider with the wrong secret
/// still leaves a sample to diagnose; a flood leaves no more than this.
pub const DEFAULT_UNAUTHENTICATED_RATE: u32 = 20;

/// How long a console session lasts without a request, by default.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// The longest `--session-idle-minutes` allowed (a working day): a
/// forgotten browser must not stay signed in for days.
pub const MAX_SESSION_IDLE: Duration = Duration::from_secs(12 * 60 * 60);

/// How often a checkpoint is made when the head moved, by default.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest `--checkpoint-interval-secs`: each checkpoint is a signature,
/// an fsync and a file a witness fetches.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// The longest: the newest signed root an auditor can get is at most this
/// old.
pub const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// The environment variable naming the signing key's file.
pub const SIGNING_KEY_ENV: &str = "REGISTRAR_SIGNING_KEY_FILE";

/// The log's origin unless told otherwise: `registrar/<host name>`, the
/// host name's spaces and `+` (which a key name cannot hold) made `-`.
pub fn default_log_origin() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == '+' {
                '-'
            } else {
                c
            }
        })
        .collect();
    format!("registrar/{host}")
}

/// Reads a signing key file (`registrar key generate` writes them): the
/// key's text on one line.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, ConfigError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        ConfigError::SigningKeyUnreadable {
            path: path.to_path_buf(),
            source,
        }
    })?);
    SigningKey::parse(text.trim()).map_err(|source| ConfigError::SigningKeyInvalid {
        path: path.to_path_buf(),
        source,
    })
}

/// Everything the server needs to run, as asked for: checked by
/// [`Settings::validate`] into a [`Config`].
#[derive(Clone)]
pub struct Settings {
    /// The log file: events, quarantine, counters.
    pub db_path: PathBuf,
    /// The projection store: every derived table.
    pub projections_path: PathBuf,
    /// HMAC key for `X-Jodo-Signature`; without it Jodo deliveries are unsigned.
    pub jodo_secret: Option<String>,
    /// A header (lower-cased name, value) every Jodo request must also carry.
    pub jodo_header: Option<(String, String)>,
    /// The secret in the Toolzz URL.
    pub toolzz_token: Option<String>,
    /// Bearer token for `/v1/*`.
    pub read_token: Option<String>,
    /// Bearer token for `/v1/admin/*`.
    pub admin_token: Option<String>,
    pub parse: ParseContext,
    pub max_body_bytes: usize,
    pub quarantine_cap: u64,
    pub queue_depth: usize,
    pub max_batch: usize,
    /// How long a read with `min_seq` waits for the projections.
    pub min_seq_wait: Duration,
    /// Projection lag past which `/readyz` fails.
    pub max_lag: Duration,
    /// Unauthenticated rejects kept per second at most.
    pub unauthenticated_rate: u32,
    /// The zone business days (report dates) are counted in.
    pub business_zone: chrono_tz::Tz,
    /// See [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// The address people reach the console at (`--public-url`); when it is
    /// https, the session cookie is marked `Secure`.
    pub public_url: Option<String>,
    /// How long a console session lasts without a request.
    pub session_idle: Duration,
    /// The zone the console shows times in; None: the business zone.
    pub display_zone: Option<chrono_tz::Tz>,
    /// What rate limits and console sessions read the time from: the
    /// system's, unless a test sets a manual one (see [`crate::clock`]).
    pub clock: Clock,
    /// The first line of every checkpoint: the log's name (`--log-origin`).
    pub log_origin: String,
    /// Signs checkpoints (from the file named by `REGISTRAR_SIGNING_KEY_FILE`);
    /// None: they are made unsigned. Its name must be the origin.
    pub signing_key: Option<Arc<SigningKey>>,
    /// How often a checkpoint is made when the head moved.
    pub checkpoint_interval: Duration,
    /// Where checkpoints are also written as files (`--checkpoint-dir`).
    pub checkpoint_dir: Option<PathBuf>,
    /// Whether appends keep the log's tree (always, but for `make bench`'s
    /// tree-cost row: `serve --without-tree`).
    pub tree: TreeUpkeep,
}

impl Settings {
    /// Defaults around a database path, with no secrets.
    pub fn new(db_path: impl Into<PathBuf>) -> Settings {
        let db_path = db_path.into();
        Settings {
            projections_path: default_projections_path(&db_path),
            db_path,
            jodo_secret: None,
            jodo_header: None,
            toolzz_token: None,
            read_token: None,
            admin_token: None,
            parse: ParseContext::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            quarantine_cap: DEFAULT_QUARANTINE_CAP,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            max_batch: DEFAULT_MAX_BATCH,
            min_seq_wait: DEFAULT_MIN_SEQ_WAIT,
            max_lag: DEFAULT_MAX_LAG,
            unauthenticated_rate: DEFAULT_UNAUTHENTICATED_RATE,
            business_zone: crate::report::DEFAULT_BUSINESS_ZONE,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            public_url: None,
            session_idle: DEFAULT_SESSION_IDLE,
            display_zone: None,
            clock: Clock::System,
            log_origin: default_log_origin(),
            signing_key: None,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            checkpoint_dir: None,
            tree: TreeUpkeep::Kept,
        }
    }

    /// Reads the secrets from the environment (never from flags, which other
    /// users of the machine can see): `REGISTRAR_JODO_SECRET`,
    /// `REGISTRAR_JODO_HEADER`, `REGISTRAR_TOOLZZ_TOKEN`,
    /// `REGISTRAR_READ_TOKEN`, `REGISTRAR_ADMIN_TOKEN`. Empty counts as unset.
    /// The checkpoints' signing key is read from the file
    /// `REGISTRAR_SIGNING_KEY_FILE` names: set, it must be a readable key.
    pub fn secrets_from_env(mut self) -> Result<Settings, ConfigError> {
        fn secret(name: &str) -> Option<String> {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        }
        self.jodo_secret = secret("REGISTRAR_JODO_SECRET");
        self.jodo_header = secret("REGISTRAR_JODO_HEADER")
            .map(|h| parse_header(&h))
            .transpose()?;
        self.toolzz_token = secret("REGISTRAR_TOOLZZ_TOKEN");
        self.read_token = secret("REGISTRAR_READ_TOKEN");
        self.admin_token = secret("REGISTRAR_ADMIN_TOKEN");
        if let Some(path) = secret(SIGNING_KEY_ENV) {
            self.signing_key = Some(Arc::new(read_signing_key(Path::new(&path))?));
        }
        Ok(self)
    }

    /// Checks every value against its limit: the one way to a [`Config`].
    pub fn validate(self) -> Result<Config, ConfigError> {
        let positive = [
            ("--max-body-bytes", self.max_body_bytes as u64),
            ("--quarantine-cap", self.quarantine_cap),
            ("--queue-depth", self.queue_depth as u64),
            ("--max-batch", self.max_batch as u64),
            (
                "--header-read-timeout-ms",
                self.header_read_timeout.as_millis() as u64,
            ),
            ("--idle-timeout-ms", self.idle_timeout.as_millis() as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::NotPositive(name));
        }
        if self.min_seq_wait > MAX_MIN_SEQ_WAIT {
            return Err(ConfigError::MinSeqWaitTooLong(MAX_MIN_SEQ_WAIT));
        }
        if self.session_idle.is_zero() || self.session_idle > MAX_SESSION_IDLE {
            return Err(ConfigError::SessionIdle(MAX_SESSION_IDLE));
        }
        if let Some(url) = &self.public_url {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                return Err(ConfigError::PublicUrl);
            }
        }
        if let Some((name, value)) = &self.jodo_header {
            parse_header(&format!("{name}: {value}"))?;
        }
        // The origin names the key too (C2SP: a checkpoint's verifier is
        // found by name, which should be the origin), so it must be a valid
        // key name as well as one line.
        if !note::is_valid_key_name(&self.log_origin)
            || self.log_origin.chars().any(char::is_control)
        {
            return Err(ConfigError::LogOrigin(self.log_origin));
        }
        if let Some(key) = &self.signing_key {
            if key.name() != self.log_origin {
                return Err(ConfigError::KeyNameNotOrigin {
                    name: key.name().to_string(),
                    origin: self.log_origin,
                });
            }
        }
        if self.checkpoint_interval < MIN_CHECKPOINT_INTERVAL
            || self.checkpoint_interval > MAX_CHECKPOINT_INTERVAL
        {
            return Err(ConfigError::CheckpointInterval);
        }
        Ok(Config(self))
    }

    /// True when no provider secret is configured: anyone who can reach the
    /// server can write to the log.
    pub fn is_unsigned(&self) -> bool {
        self.jodo_secret.is_none() && self.jodo_header.is_none() && self.toolzz_token.is_none()
    }

    /// Whether the console is served over https (its cookie then `Secure`).
    pub fn is_https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
    }

    /// The zone the console shows times in.
    pub fn display_zone(&self) -> chrono_tz::Tz {
        self.display_zone.unwrap_or(self.business_zone)
    }

    /// How the writer makes checkpoints under these settings.
    pub fn checkpoint_maker(&self) -> Maker {
        Maker {
            origin: self.log_origin.clone(),
            signer: self.signing_key.clone(),
            dir: self.checkpoint_dir.clone(),
        }
    }

    /// Whether checkpoints are signed, and the key that checks them.
    pub fn signing(&self) -> Signing {
        self.checkpoint_maker().signing()
    }
}

/// [`Settings`] that passed [`Settings::validate`]: read through `Deref`,
/// never changed.
#[derive(Clone, Debug)]
pub struct Config(Settings);

impl std::ops::Deref for Config {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.0
    }
}

impl Settings {
    /// What a Jodo request must carry: the signature's key, the custom header.
    pub fn jodo_secrets(&self) -> JodoSecrets<'_> {
        JodoSecrets {
            secret: self.jodo_secret.as_deref().map(str::as_bytes),
            header: self
                .jodo_header
                .as_ref()
                .map(|(name, value)| (name.as_str(), value.as_bytes())),
        }
    }

    /// [`Settings::jodo_secrets`], owned, for the writer's readmissions.
    pub fn jodo_keys(&self) -> JodoKeys {
        JodoKeys {
            secret: self.jodo_secret.clone(),
            header: self.jodo_header.clone(),
        }
    }
}

/// Why settings are refused. Each names the flag a person would change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} must be positive")]
    NotPositive(&'static str),
    #[error("--min-seq-wait-ms is at most {}", .0.as_millis())]
    MinSeqWaitTooLong(Duration),
    #[error("--session-idle-minutes must be between 1 and {}", .0.as_secs() / 60)]
    SessionIdle(Duration),
    #[error("--public-url must start with http:// or https://")]
    PublicUrl,
    #[error("REGISTRAR_JODO_HEADER: {0}")]
    Header(#[from] HeaderError),
    #[error("--log-origin {0:?} must be non-empty, one line, without spaces or '+' (it names the signing key too)")]
    LogOrigin(String),
    #[error("REGISTRAR_SIGNING_KEY_FILE {}: cannot read it: {source}", path.display())]
    SigningKeyUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("REGISTRAR_SIGNING_KEY_FILE {}: not a signing key: {source}", path.display())]
    SigningKeyInvalid { path: PathBuf, source: KeyError },
    #[error(
        "the signing key is named {name:?} but --log-origin is {origin:?}: auditors find a checkpoint's \
         key by its name, which must be the log's origin. Generate a key with `registrar key generate \
         --name {origin}`, or start with --log-origin {name}"
    )]
    KeyNameNotOrigin { name: String, origin: String },
    #[error(
        "--checkpoint-interval-secs must be between {} and {}",
        MIN_CHECKPOINT_INTERVAL.as_secs(),
        MAX_CHECKPOINT_INTERVAL.as_secs()
    )]
    CheckpointInterval,
}

impl std::fmt::Debug for Settings {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("db_path", &self.db_path)
            .field("projections_path", &self.projections_path)
            .field("jodo_secret", &self.jodo_secret.as_ref().map(|_| "<set>"))
            .field("jodo_header", &self.jodo_header.as_ref().map(|(n, _)| n))
            .field("toolzz_token", &self.toolzz_token.as_ref().map(|_| "<set>"))
            .field("read_token", &self.read_token.as_ref().map(|_| "<set>"))
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("toolzz_zone", &self.parse.toolzz_zone)
            .field("business_zone", &self.business_zone)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("quarantine_cap", &self.quarantine_cap)
            .field("public_url", &self.public_url)
            .field("session_idle", &self.session_idle)
            .field("display_zone", &self.display_zone)
            .field("log_origin", &self.log_origin)
            // Its name and id only (SigningKey's Debug).
            .field("signing_key", &self.signing_key)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("checkpoint_dir", &self.checkpoint_dir)
            .field("tree", &self.tree)
            .finish()
    }
}

/// Why a `REGISTRAR_JODO_HEADER` value is refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("expected `Name: value`")]
    NoColon,
    #[error("expected `Name: value` with both parts non-empty")]
    Empty,
    #[error("{0:?} is not a valid header name")]
    BadName(String),
}

/// Parses `Name: value` for `REGISTRAR_JODO_HEADER`.
pub fn parse_header(text: &str) -> Result<(String, String), HeaderError> {
    let (name, value) = text.split_once(':').ok_or(HeaderError::NoColon)?;
    let name = name.trim().to_ascii_lowercase();
    let value = value.trim().to_string();
    if name.is_empty() || value.is_empty() {
        return Err(HeaderError::Empty);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(HeaderError::BadName(name));
    }
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
        let (text, _) = note::generate_key(name).unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{}\n", text.expose())).unwrap();
        path
    }

    #[test]
    fn the_default_origin_names_the_host_and_is_a_key_name() {
        let origin = default_log_origin();
        assert!(origin.starts_with("registrar/") && origin.len() > "registrar/".len());
        assert!(note::is_valid_key_name(&origin), "{origin:?}");
        assert_eq!(Settings::new("x.db").log_origin, origin);
        assert!(Settings::new("x.db").validate().is_ok());
    }

    #[test]
    fn a_key_file_that_cannot_be_read_or_is_not_a_key_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere");
        let e = read_signing_key(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::SigningKeyUnreadable { .. }));
        assert!(e.to_string().contains("nowhere"), "{e}");
        // A folder is not a file.
        assert!(matches!(
            read_signing_key(dir.path()),
            Err(ConfigError::SigningKeyUnreadable { .. })
        ));
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "not a key\n").unwrap();
        assert!(matches!(
            read_signing_key(&garbage),
            Err(ConfigError::SigningKeyInvalid { .. })
        ));
        // A verifier key is not a signing key.
        let (_, verifier) = note::generate_key("registrar/x").unwrap();
        std::fs::write(&garbage, verifier).unwrap();
        assert!(matches!(
            read_signing_key(&garbage),
            Err(ConfigError::SigningKeyInvalid { .. })
        ));
    }

    #[test]
    fn a_key_is_accepted_only_when_its_name_is_the_origin() {
        let dir = tempfile::tempdir().unwrap();
        let key = read_signing_key(&key_file(&dir, "registrar/school-1")).unwrap();
        let mut s = Settings::new("x.db");
        s.signing_key = Some(Arc::new(key));
        s.log_origin = "registrar/school-2".into();
        let e = s.clone().validate().unwrap_err();
        assert!(matches!(e, ConfigError::KeyNameNotOrigin { .. }));
        assert!(e.to_string().contains("--name registrar/school-2"), "{e}");
        s.log_origin = "registrar/school-1".into();
        let config = s.validate().unwrap();
        let Signing::Signed { verifier } = config.signing() else {
            panic!("a key is configured");
        };
        assert_eq!(verifier.name(), "registrar/school-1");
        assert_eq!(Settings::new("x.db").signing(), Signing::Unsigned);
        // Debug names the key, never its secret.
        let shown = format!("{config:?}");
        assert!(shown.contains("registrar/school-1") && !shown.contains("PRIVATE"));
    }

    #[test]
    fn an_origin_that_cannot_name_a_key_or_a_bad_interval_is_refused() {
        for origin in ["", "a b", "a+b", "a\nb", "a\u{1}b"] {
            let mut s = Settings::new("x.db");
            s.log_origin = origin.into();
            assert!(
                matches!(s.validate(), Err(ConfigError::LogOrigin(_))),
                "{origin:?}"
            );
        }
        for (secs, ok) in [(0, false), (1, true), (86_400, true), (86_401, false)] {
            let mut s = Settings::new("x.db");
            s.checkpoint_interval = Duration::from_secs(secs);
            assert_eq!(s.validate().is_ok(), ok, "{secs} s");
        }
    }
}
