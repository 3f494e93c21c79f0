//! `registrar key generate`: a new key for signing checkpoints. Writes the
//! signing key to a file only its owner can read, and prints the verifier
//! key (`name+keyid+base64`) for auditors and witnesses.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::config;
use crate::log::note;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Write a new signing key to --out (mode 0600, never over an existing
    /// file) and print its verifier key. The server reads the file named
    /// by REGISTRAR_SIGNING_KEY_FILE.
    Generate(GenerateArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    /// The signing key's file; must not exist.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// The key's name, which must be the server's --log-origin
    /// [default: the default origin, registrar/HOST with HOST the host name].
    #[arg(long)]
    name: Option<String>,
}

pub fn run(command: KeyCommand) -> Result<ExitCode> {
    match command {
        KeyCommand::Generate(args) => generate(args),
    }
}

fn generate(args: GenerateArgs) -> Result<ExitCode> {
    let name = args.name.unwrap_or_else(config::default_log_origin);
    let (signing, verifier) =
        note::generate_key(&name).with_context(|| format!("a key named {name:?}"))?;
    match write_secret(&args.out, signing.expose()) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => anyhow::bail!(
            "{} exists: a key is never written over (what it signed could no longer be \
             checked with a new one); choose another --out",
            args.out.display()
        ),
        written => {
            written.with_context(|| format!("writing the signing key to {}", args.out.display()))?
        }
    }
    println!("{verifier}");
    eprintln!(
        "wrote the signing key {name} to {}; give the verifier key above to your auditors",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` and a newline to a new file at `path` that only its owner
/// can read and write, and syncs it. An existing file is an error: a key
/// overwritten is a key lost, and every checkpoint it signed unverifiable
/// by the new one.
fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
