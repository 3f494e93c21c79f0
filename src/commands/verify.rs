//! `registrar verify`: recompute the hash chain and re-derive each row's
//! columns from its body; exit 1 at the first fault.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::{existing, DbArg, ZoneArg};
use crate::db;
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
}

pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let pin = args
        .pin
        .as_deref()
        .map(verify::parse_pin)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--pin: {e}"))?;
    let path = existing(&args.db.db)?;
    let conn = db::open_ro(path).with_context(|| format!("opening {}", path.display()))?;
    let options = verify::Options {
        pin,
        rederive: (!args.fast).then_some(ParseContext {
            toolzz_zone: args.zone.toolzz_zone,
        }),
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
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Fault(f)) => {
            println!("FAILED: {f}");
            Ok(ExitCode::from(1))
        }
        Err(e @ VerifyError::Db(_)) => Err(e).context("verifying"),
    }
}
