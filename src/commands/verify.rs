//! `registrar verify`: recompute the hash chain and re-derive each row's
//! columns from its body, recompute the tree and check its stored hashes
//! and every checkpoint (signatures with the verifier key); exit 1 at the
//! first fault.

use std::process::ExitCode;

use anyhow::{Context, Result};
use base64::Engine;
use clap::Args;

use super::{existing, DbArg, ZoneArg};
use crate::config;
use crate::db;
use crate::log::note::VerifierKey;
use crate::log::verify::{self, VerifyError};
use crate::sources::ParseContext;

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    db: DbArg,
    /// Also prove the log still has HASH at SEQ (a head recorded earlier).
    #[arg(long, env = "REGISTRAR_PIN", value_name = "SEQ:HASH")]
    pin: Option<String>,
    /// Check the chain only: do not parse each body again to re-derive
    /// event_type, event_version, dedupe_key, subject and occurred_at.
    #[arg(long)]
    fast: bool,
    /// Must be the zone the server reads Toolzz times in.
    #[command(flatten)]
    zone: ZoneArg,
    /// Check every signed checkpoint's signature with this verifier key
    /// (`name+keyid+base64`, as `registrar key generate` prints it)
    /// [default: the key of REGISTRAR_SIGNING_KEY_FILE, when set].
    #[arg(long, env = "REGISTRAR_VERIFIER_KEY", value_name = "KEY")]
    verifier_key: Option<String>,
}

/// The key checkpoints are checked with: given, or derived from the signing
/// key the server reads.
fn verifier(given: Option<&str>) -> Result<Option<VerifierKey>> {
    if let Some(text) = given {
        return VerifierKey::parse(text.trim())
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--verifier-key: {e}"));
    }
    match std::env::var(config::SIGNING_KEY_ENV) {
        Ok(path) if !path.trim().is_empty() => {
            let key = config::read_signing_key(std::path::Path::new(&path))?;
            Ok(Some(key.verifier()))
        }
        _ => Ok(None),
    }
}

pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let pin = args
        .pin
        .as_deref()
        .map(verify::parse_pin)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--pin: {e}"))?;
    let verifier = verifier(args.verifier_key.as_deref())?;
    let path = existing(&args.db.db)?;
    let conn = db::open_ro(path).with_context(|| format!("opening {}", path.display()))?;
    let options = verify::Options {
        pin,
        rederive: (!args.fast).then_some(ParseContext {
            toolzz_zone: args.zone.toolzz_zone,
        }),
        verifier: verifier.clone(),
    };
    match verify::verify(&conn, &options) {
        Ok(v) => {
            println!(
                "ok: {} events, head {} {}",
                v.events,
                v.head_seq,
                hex::encode(v.head_hash)
            );
            if args.fast {
                println!("chain only (--fast): columns not re-derived from the bodies");
            }
            if let Some((first, n)) = v.unparsed {
                println!(
                    "note: {n} bodies (the first at seq {first}) no longer parse with this version's parser; their chain is sound, their columns were not re-derived"
                );
            }
            if let Some((seq, hash)) = pin {
                println!("pin ok: seq {seq} still has {}", hex::encode(hash));
            }
            let t = &v.tree;
            let root = base64::engine::general_purpose::STANDARD.encode(t.root);
            // On stderr: stdout keeps the one verdict line scripts read,
            // with the notes and the pin and checkpoint lines asked for.
            eprintln!("tree ok: {} leaves, root {root}", t.leaves);
            if t.stored_leaves < t.leaves {
                println!(
                    "note: the stored tree holds {} of the {} leaves (a log made before the tree: the server builds the rest at its next start); the root above is recomputed from the log",
                    t.stored_leaves, t.leaves
                );
            }
            if t.checkpoints > 0 || verifier.is_some() {
                let signatures = match &verifier {
                    Some(key) => format!("{} signatures checked with {key}", t.signatures),
                    None => "signatures not checked (no --verifier-key)".to_string(),
                };
                println!(
                    "checkpoints ok: {} ({} unsigned), {signatures}",
                    t.checkpoints, t.unsigned
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Fault(f)) => {
            println!("FAILED: {f}");
            Ok(ExitCode::from(1))
        }
        Err(e @ VerifyError::Db(_)) => Err(e).context("verifying"),
    }
}
