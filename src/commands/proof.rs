//! `registrar proof check BUNDLE --key VERIFIER_KEY`: checks a bundle
//! (`GET /v1/events/{seq}/bundle`, or one revision of a payment's) without
//! the database, link by link ([`crate::log::bundle::check`]): the body
//! against its hash, the entry, the leaf, the root by the inclusion proof,
//! the signature. Exit 0 when every link holds, 1 naming the first that
//! does not, 2 when the bundle or the key cannot be read at all.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::log::bundle::{self, Bundle};
use crate::log::note::VerifierKey;

#[derive(Subcommand)]
pub enum ProofCommand {
    /// Check a bundle offline against a verifier key: exit 0 if it proves
    /// its delivery, 1 naming the link that failed.
    Check(CheckArgs),
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
