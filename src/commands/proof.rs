//! `registrar proof check BUNDLE --key VERIFIER_KEY`: checks a bundle
//! (`GET /v1/events/{seq}/bundle`, or one revision of a payment's) without
//! the database, link by link ([`crate::log::bundle::check`]): the body
//! against its hash, the entry, the leaf, the root by the inclusion proof,
//! the signature. Exit 0 when every link holds, 1 naming the first that
//! does not, 2 when the bundle or the key cannot be read at all.
//!
//! `registrar proof consistency OLD NEW --url URL --key VERIFIER_KEY`:
//! checks that the log an older checkpoint (a note kept by an auditor or a
//! witness) describes is a prefix of the one a newer checkpoint describes,
//! with the consistency proof fetched from the server: a log rewritten
//! under the old checkpoint (a fork) fails. The proof is fetched with a
//! plain HTTP/1.1 GET over a TCP stream (`http://` only; put TLS in front
//! with a local proxy): the CLI needs no HTTP client library for one GET,
//! and nothing the server says is trusted, only checked.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use clap::{Args, Subcommand};

use crate::log::bundle::{self, Bundle};
use crate::log::merkle;
use crate::log::note::{self, Checkpoint, VerifierKey};

/// The most bytes of the server's answer read: a consistency proof holds at
/// most [`merkle::MAX_PROOF_HASHES`] hashes, about 3 KB of JSON.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// How long the GET may take to connect, and then between reads.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand)]
pub enum ProofCommand {
    /// Check a bundle offline against a verifier key: exit 0 if it proves
    /// its delivery, 1 naming the link that failed.
    Check(CheckArgs),
    /// Check that the older checkpoint's log is a prefix of the newer's,
    /// with the consistency proof from the server: exit 0 if it is, 1 if
    /// not (a fork).
    Consistency(ConsistencyArgs),
}

#[derive(Args)]
pub struct ConsistencyArgs {
    /// The older checkpoint: a signed note's file.
    #[arg(value_name = "OLD")]
    old: PathBuf,
    /// The newer checkpoint: a signed note's file.
    #[arg(value_name = "NEW")]
    new: PathBuf,
    /// The server, `http://HOST:PORT` (the proof is read from
    /// /v1/log/proof/consistency).
    #[arg(long, value_name = "URL")]
    url: String,
    /// The verifier key both notes must be signed by, or a file holding it.
    #[arg(long, value_name = "VERIFIER_KEY")]
    key: String,
    /// The read token, when the server asks for one.
    #[arg(long, env = "REGISTRAR_READ_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The bundle's JSON file.
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
    /// The verifier key (`name+keyid+base64`, as `registrar key generate`
    /// printed it and `GET /v1/log/key` serves it), or a file holding it.
    #[arg(long, value_name = "VERIFIER_KEY")]
    key: String,
}

pub fn run(command: ProofCommand) -> Result<ExitCode> {
    match command {
        ProofCommand::Check(args) => check(args),
        ProofCommand::Consistency(args) => consistency(args),
    }
}

/// The key given as text, or else read from the file it names.
fn verifier_key(arg: &str) -> Result<VerifierKey> {
    if let Ok(key) = VerifierKey::parse(arg.trim()) {
        return Ok(key);
    }
    let text = std::fs::read_to_string(arg)
        .with_context(|| format!("--key {arg:?} is neither a verifier key nor a readable file"))?;
    VerifierKey::parse(text.trim()).with_context(|| format!("{arg} does not hold a verifier key"))
}

fn check(args: CheckArgs) -> Result<ExitCode> {
    let key = verifier_key(&args.key)?;
    let text = std::fs::read(&args.bundle)
        .with_context(|| format!("reading {}", args.bundle.display()))?;
    let bundle: Bundle = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a bundle", args.bundle.display()))?;
    match bundle::check(&bundle, &key) {
        Ok(proven) => {
            println!(
                "ok: seq {} is leaf {} of {}'s tree of {} leaves, signed by {}",
                proven.entry.seq,
                proven.entry.leaf_index(),
                proven.checkpoint.origin,
                proven.checkpoint.size,
                key
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAILED: {}: {e}", e.link());
            Ok(ExitCode::from(1))
        }
    }
}

/// The checkpoint in the note file at `path`, signed by `key`.
fn signed_checkpoint(
    path: &std::path::Path,
    key: &VerifierKey,
) -> Result<Result<Checkpoint, note::NoteError>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(note::open(&text, key))
}

fn consistency(args: ConsistencyArgs) -> Result<ExitCode> {
    let key = verifier_key(&args.key)?;
    let mut checkpoints = Vec::new();
    for (which, path) in [("old", &args.old), ("new", &args.new)] {
        match signed_checkpoint(path, &key)? {
            Ok(c) => checkpoints.push(c),
            Err(e) => {
                println!("FAILED: the {which} checkpoint ({}): {e}", path.display());
                return Ok(ExitCode::from(1));
            }
        }
    }
    let (old, new) = (&checkpoints[0], &checkpoints[1]);
    if old.origin != new.origin {
        println!(
            "FAILED: the checkpoints are of two logs: {:?} and {:?}",
            old.origin, new.origin
        );
        return Ok(ExitCode::from(1));
    }
    if old.size > new.size {
        bail!(
            "OLD is of size {}, larger than NEW's {}: give the older checkpoint first",
            old.size,
            new.size
        );
    }
    let path = format!(
        "/v1/log/proof/consistency?from={}&to={}",
        old.size, new.size
    );
    let (status, body) = http_get(&args.url, &path, args.token.as_deref())?;
    if status != 200 {
        bail!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&body).context("the server's answer is not JSON")?;
    let proof = answer["hashes"]
        .as_array()
        .context("the server's answer has no hashes list")?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|h| BASE64.decode(h).ok())
                .and_then(|h| <merkle::Hash>::try_from(h).ok())
                .context("a hash of the server's answer is not the base64 of 32 bytes")
        })
        .collect::<Result<Vec<_>>>()?;
    match merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof) {
        Ok(()) => {
            println!(
                "ok: {}'s tree of {} leaves is a prefix of its tree of {} leaves",
                old.origin, old.size, new.size
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!(
                "FAILED: the tree of {} leaves is not a prefix of the tree of {} (a fork, or a rewritten log): {e}",
                old.size, new.size
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// `GET path` on the `http://HOST[:PORT]` server at `url`: the status and
/// the body (read to the connection's close, at most [`MAX_ANSWER_BYTES`]).
fn http_get(url: &str, path: &str, token: Option<&str>) -> Result<(u16, Vec<u8>)> {
    let authority = url
        .strip_prefix("http://")
        .context("--url must be http://HOST[:PORT] (no TLS in this client)")?
        .trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        bail!("--url must be http://HOST[:PORT], without a path");
    }
    let address = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .with_context(|| format!("resolving {address}"))?
        .next()
        .with_context(|| format!("{address} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, NETWORK_TIMEOUT)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(NETWORK_TIMEOUT))?;
    stream.set_write_timeout(Some(NETWORK_TIMEOUT))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}Accept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES + 1)
        .read_to_end(&mut answer)
        .context("reading the answer")?;
    if answer.len() as u64 > MAX_ANSWER_BYTES {
        bail!("the answer is longer than {MAX_ANSWER_BYTES} bytes");
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the answer has no end of head")?;
    let head = std::str::from_utf8(&answer[..split]).context("the answer's head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .context("the answer has no status line")?;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("the answer is chunked, which this client does not read");
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .context("a bad Content-Length")?,
            );
        }
    }
    let mut body = answer[split + 4..].to_vec();
    if let Some(n) = length {
        if body.len() < n {
            bail!("the answer ends before its Content-Length");
        }
        body.truncate(n);
    }
    Ok((status, body))
}
