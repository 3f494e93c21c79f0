//! Signed checkpoints: the tree's size and root as a C2SP `tlog-checkpoint`,
//! signed as a C2SP `signed-note` with Ed25519, so that an auditor's own
//! tools (Go's `sumdb/note`, witnesses) read and check them.
//!
//! ```text
//! registrar/school-1                      origin
//! 1234                                    tree size, decimal
//! 3q2+7w...=                              root hash, base64
//!                                         a blank line, then signature lines:
//! — registrar/school-1 AbCd...=           "— " key name " " base64(key id || signature)
//! ```
//!
//! The note text (the three lines, each ending in a newline) is what is
//! signed. A key is named (the name SHOULD be the origin) and identified by
//!
//! ```text
//! key id = SHA-256(key name || 0x0A || 0x01 || public key)[:4]    0x01: Ed25519
//! ```
//!
//! Keys are text, as Go's `sumdb/note` writes them:
//!
//! ```text
//! verifier key: <name>+<key id, 8 hex digits>+<base64(0x01 || public key)>
//! signing key:  PRIVATE+KEY+<name>+<key id, 8 hex digits>+<base64(0x01 || seed)>
//! ```
//!
//! Signatures are Ed25519 (RFC 8032, `ed25519-dalek`), checked strictly.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::merkle;

/// The signature type identifier of Ed25519 in C2SP `signed-note`.
pub const ALG_ED25519: u8 = 0x01;

/// The largest note [`open`] reads. A checkpoint is three short lines and a
/// signature line or a few, but witnesses may cosign: the spec asks
/// verifiers to take at least 16 signatures and warns that post-quantum ones
/// run to nearly 5 kB, 80 kB in all. 1 MiB is far past that, and bounds what
/// a hostile note costs to parse.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

/// The most signature lines [`open`] reads. The spec asks verifiers to
/// accept at least 16; Go's `sumdb/note` accepts 100.
pub const MAX_SIGNATURES: usize = 100;

/// What opens a signature line: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// The length of an Ed25519 signature.
const SIGNATURE_LEN: usize = 64;

/// The first four bytes of SHA-256(name || 0x0A || 0x01 || public key).
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Whether `name` may name a key: non-empty, no Unicode space, no `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Why a key or its text is not usable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a key name must be non-empty, without spaces or '+'")]
    BadName,
    #[error("not a key in note format ({0})")]
    Malformed(&'static str),
    #[error("the key's signature type is {0:#04x}, not Ed25519 (0x01)")]
    UnknownAlgorithm(u8),
    #[error("the key states id {stated:08x} but its name and key give {computed:08x}")]
    IdMismatch { stated: u32, computed: u32 },
    #[error("the public key is not an Ed25519 point")]
    NotAPoint,
    #[error("the OS random source failed: {0}")]
    Random(getrandom::Error),
}

/// The text of a signing key, `PRIVATE+KEY+...`: wiped from memory when
/// dropped, and its Debug prints nothing of it.
pub struct SigningKeyText(Zeroizing<String>);

impl SigningKeyText {
    /// The key itself, to write to its file.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SigningKeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKeyText(PRIVATE+KEY+<redacted>)")
    }
}

/// A key that signs checkpoints. Its Debug shows the name and id only.
pub struct SigningKey {
    name: String,
    id: u32,
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key named `name` with the Ed25519 secret `seed`.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<SigningKey, KeyError> {
        if !is_valid_key_name(name) {
            return Err(KeyError::BadName);
        }
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(SigningKey {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// Reads `PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`. The id must
    /// be the one the name and the public key give.
    pub fn parse(text: &str) -> Result<SigningKey, KeyError> {
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(KeyError::Malformed(
                "a signing key starts with PRIVATE+KEY+",
            ))?;
        let (name, stated, key) = split_key_text(rest)?;
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(typed_key(&key)?);
        let signer = SigningKey::from_seed(name, &seed)?;
        if signer.id != stated {
            return Err(KeyError::IdMismatch {
                stated,
                computed: signer.id,
            });
        }
        Ok(signer)
    }

    /// The key as text, to keep in a file.
    pub fn to_text(&self) -> SigningKeyText {
        let mut typed = Zeroizing::new([0u8; 33]);
        typed[0] = ALG_ED25519;
        typed[1..].copy_from_slice(self.key.as_bytes());
        SigningKeyText(Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            BASE64.encode(&typed[..])
        )))
    }

    /// The key that checks this key's signatures.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }
}

/// A key that checks checkpoints' signatures; public.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// Reads `<name>+<id>+<base64(0x01 || public key)>`. The id must be the
    /// one the name and the key give.
    pub fn parse(text: &str) -> Result<VerifierKey, KeyError> {
        let (name, stated, key) = split_key_text(text)?;
        if !is_valid_key_name(name) {
            return Err(KeyError::BadName);
        }
        let public = typed_key(&key)?;
        let computed = key_id(name, &public);
        if computed != stated {
            return Err(KeyError::IdMismatch { stated, computed });
        }
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|_| KeyError::NotAPoint)?;
        Ok(VerifierKey {
            name: name.to_string(),
            id: computed,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The verifier key's text, as [`VerifierKey::parse`] reads it.
impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut typed = [0u8; 33];
        typed[0] = ALG_ED25519;
        typed[1..].copy_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, BASE64.encode(typed))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

/// `<name>+<8 hex digits>+<base64>` split, the base64 decoded. The name
/// holds no `+`; the base64 may.
fn split_key_text(text: &str) -> Result<(&str, u32, Zeroizing<Vec<u8>>), KeyError> {
    let (name, rest) = text
        .split_once('+')
        .ok_or(KeyError::Malformed("no '+' after the name"))?;
    let (id, key) = rest
        .split_once('+')
        .ok_or(KeyError::Malformed("no '+' after the key id"))?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::Malformed("the key id is not 8 hex digits"));
    }
    let id = u32::from_str_radix(id, 16).expect("8 hex digits");
    let key = Zeroizing::new(
        BASE64
            .decode(key)
            .map_err(|_| KeyError::Malformed("the key is not base64"))?,
    );
    Ok((name, id, key))
}

/// The 32 key bytes of `0x01 || key`.
fn typed_key(bytes: &[u8]) -> Result<[u8; 32], KeyError> {
    match bytes.split_first() {
        None => Err(KeyError::Malformed("the key is empty")),
        Some((&ALG_ED25519, key)) => key
            .try_into()
            .map_err(|_| KeyError::Malformed("an Ed25519 key is 32 bytes")),
        Some((&alg, _)) => Err(KeyError::UnknownAlgorithm(alg)),
    }
}

/// A new key named `name` from the OS's random source: its text, to keep
/// secret, and its verifier key's text, to publish.
pub fn generate_key(name: &str) -> Result<(SigningKeyText, String), KeyError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut seed[..]).map_err(KeyError::Random)?;
    let signer = SigningKey::from_seed(name, &seed)?;
    Ok((signer.to_text(), signer.verifier().to_string()))
}

// ---------------------------------------------------------------------------
// Checkpoints.

/// A tree head: the log named `origin` had `size` leaves with root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: merkle::Hash,
}

/// Why a note's text is not a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the origin line is empty")]
    EmptyOrigin,
    #[error("the origin holds a control character")]
    ControlInOrigin,
    #[error("the text ends before its {0} line")]
    MissingLine(&'static str),
    #[error("the tree size is not a decimal number without leading zeros")]
    BadSize,
    #[error("the root hash is not the base64 of 32 bytes")]
    BadRoot,
    #[error("the checkpoint has extension lines, which registrar does not write")]
    ExtensionLines,
}

impl Checkpoint {
    /// A checkpoint of ours; the origin must be usable as a note's line.
    pub fn new(origin: &str, size: u64, root: merkle::Hash) -> Result<Checkpoint, CheckpointError> {
        check_origin(origin)?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// The note text: origin, size and base64 root, each line ending in a
    /// newline.
    pub fn to_body(&self) -> String {
        assert_eq!(
            check_origin(&self.origin),
            Ok(()),
            "a checkpoint's origin is one line"
        );
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    /// Reads exactly the text [`Checkpoint::to_body`] writes.
    pub fn parse(body: &str) -> Result<Checkpoint, CheckpointError> {
        let mut lines = body.split_inclusive('\n');
        let mut line = |which| match lines.next() {
            Some(l) if l.ends_with('\n') => Ok(&l[..l.len() - 1]),
            _ => Err(CheckpointError::MissingLine(which)),
        };
        let origin = line("origin")?;
        let size = line("tree size")?;
        let root = line("root hash")?;
        check_origin(origin)?;
        // Decimal with no sign and no leading zero (but "0" itself).
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(CheckpointError::BadSize);
        }
        let size = size.parse().map_err(|_| CheckpointError::BadSize)?;
        let root = BASE64
            .decode(root)
            .ok()
            .and_then(|r| <merkle::Hash>::try_from(r).ok())
            .ok_or(CheckpointError::BadRoot)?;
        if lines.next().is_some() {
            return Err(CheckpointError::ExtensionLines);
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

fn check_origin(origin: &str) -> Result<(), CheckpointError> {
    if origin.is_empty() {
        return Err(CheckpointError::EmptyOrigin);
    }
    if origin.chars().any(char::is_control) {
        return Err(CheckpointError::ControlInOrigin);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Signed notes.

/// Why a note is not well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("longer than {MAX_NOTE_BYTES} bytes")]
    TooLarge,
    #[error("not UTF-8")]
    NotUtf8,
    #[error("a control character other than newline")]
    ControlCharacter,
    #[error("no blank line before the signatures")]
    NoSignatures,
    #[error("a signature line is not \"— <name> <base64>\"")]
    SignatureLine,
    #[error("more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
}

/// Why [`open`] refused a note.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(Malformed),
    #[error("the note has no signature by the key {name}+{id:08x}")]
    UnknownKey { name: String, id: u32 },
    #[error("the signature by the key {name}+{id:08x} does not verify")]
    BadSignature { name: String, id: u32 },
    #[error("the signed text is not a checkpoint: {0}")]
    MalformedCheckpoint(#[from] CheckpointError),
}

/// The checkpoint signed by `signer`, as a note.
pub fn sign(checkpoint: &Checkpoint, signer: &SigningKey) -> String {
    sign_text(&checkpoint.to_body(), signer)
}

/// The checkpoint in `note` if `verifier` signed it. Signatures by other
/// keys are ignored (witnesses may add theirs); the first by `verifier`
/// decides. The signature is checked before the text is read as a
/// checkpoint.
pub fn open(note: &[u8], verifier: &VerifierKey) -> Result<Checkpoint, NoteError> {
    Ok(Checkpoint::parse(open_text(note, verifier)?)?)
}

/// `text` (lines ending in newlines) with `signer`'s signature line.
fn sign_text(text: &str, signer: &SigningKey) -> String {
    assert!(text.ends_with('\n'), "a note's text ends in a newline");
    let signature = signer.key.sign(text.as_bytes());
    let mut blob = Vec::with_capacity(4 + SIGNATURE_LEN);
    blob.extend_from_slice(&signer.id.to_be_bytes());
    blob.extend_from_slice(&signature.to_bytes());
    format!(
        "{text}\n{SIG_PREFIX}{} {}\n",
        signer.name,
        BASE64.encode(blob)
    )
}

/// The text of `note`, its final newline included, if `verifier` signed it.
fn open_text<'a>(note: &'a [u8], verifier: &VerifierKey) -> Result<&'a str, NoteError> {
    let malformed = NoteError::Malformed;
    if note.len() > MAX_NOTE_BYTES {
        return Err(malformed(Malformed::TooLarge));
    }
    let note = std::str::from_utf8(note).map_err(|_| malformed(Malformed::NotUtf8))?;
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(malformed(Malformed::ControlCharacter));
    }
    // The text ends at the last blank line, its final newline included.
    let split = note
        .rfind("\n\n")
        .ok_or(malformed(Malformed::NoSignatures))?;
    let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
    let signatures = signatures
        .strip_suffix('\n')
        .ok_or(malformed(Malformed::NoSignatures))?;
    let mut found = None;
    for (count, line) in signatures.split('\n').enumerate() {
        if count == MAX_SIGNATURES {
            return Err(malformed(Malformed::TooManySignatures));
        }
        let (name, id, signature) =
            parse_signature_line(line).ok_or(malformed(Malformed::SignatureLine))?;
        if found.is_none() && name == verifier.name && id == verifier.id {
            found = Some(signature);
        }
    }
    let signature = found.ok_or_else(|| NoteError::UnknownKey {
        name: verifier.name.clone(),
        id: verifier.id,
    })?;
    let bad = || NoteError::BadSignature {
        name: verifier.name.clone(),
        id: verifier.id,
    };
    let signature: [u8; SIGNATURE_LEN] = signature.as_slice().try_into().map_err(|_| bad())?;
    verifier
        .key
        .verify_strict(
            text.as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .map_err(|_| bad())?;
    Ok(text)
}

/// `— <name> <base64(id || signature)>`: the name, the id and the signature.
fn parse_signature_line(line: &str) -> Option<(&str, u32, Vec<u8>)> {
    let (name, blob) = line.strip_prefix(SIG_PREFIX)?.split_once(' ')?;
    if !is_valid_key_name(name) {
        return None;
    }
    let blob = BASE64.decode(blob).ok()?;
    // A key id and at least one byte of signature.
    if blob.len() < 5 {
        return None;
    }
    let id = u32::from_be_bytes(blob[..4].try_into().expect("4 bytes"));
    Some((name, id, blob[4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "registrar/test";

    fn signer() -> SigningKey {
        SigningKey::from_seed(NAME, &[7; 32]).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint::new(NAME, 1234, [0xab; 32]).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_opens_to_itself() {
        let note = sign(&checkpoint(), &signer());
        assert_eq!(
            open(note.as_bytes(), &signer().verifier()),
            Ok(checkpoint())
        );
        let body = "registrar/test\n1234\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n";
        assert_eq!(checkpoint().to_body(), body);
        assert!(note.starts_with(&format!("{body}\n\u{2014} registrar/test ")));
        assert!(note.ends_with("=\n"));
    }

    #[test]
    fn a_checkpoint_verifies_with_the_verifier_key_printed_by_generate() {
        let (signing_text, verifier_text) = generate_key("registrar/school-1").unwrap();
        let signer = SigningKey::parse(signing_text.expose()).unwrap();
        let verifier = VerifierKey::parse(&verifier_text).unwrap();
        assert_eq!(verifier, signer.verifier());
        assert_eq!(verifier.to_string(), verifier_text);
        assert!(verifier_text.starts_with(&format!("registrar/school-1+{:08x}+", signer.id())));
        let cp = Checkpoint::new("registrar/school-1", 7, [1; 32]).unwrap();
        assert_eq!(open(sign(&cp, &signer).as_bytes(), &verifier), Ok(cp));
        // Two keys generated for one name are two keys.
        let (_, other) = generate_key("registrar/school-1").unwrap();
        assert_ne!(other, verifier_text);
    }

    #[test]
    fn a_key_survives_its_text() {
        let s = signer();
        let again = SigningKey::parse(s.to_text().expose()).unwrap();
        assert_eq!(again.verifier(), s.verifier());
        assert_eq!(again.name(), NAME);
        assert_eq!(
            VerifierKey::parse(&s.verifier().to_string()).unwrap(),
            s.verifier()
        );
    }

    #[test]
    fn debug_output_never_shows_a_private_key() {
        let s = signer();
        let text = s.to_text();
        let secret = text.expose().rsplit('+').next().unwrap().to_string();
        let seed_b64 = BASE64.encode([7u8; 32]);
        for shown in [
            format!("{s:?}"),
            format!("{text:?}"),
            format!("{:?}", s.verifier()),
        ] {
            assert!(!shown.contains(&secret), "{shown}");
            assert!(!shown.contains(&seed_b64[..20]), "{shown}");
        }
        assert!(format!("{s:?}").contains(NAME));
    }

    // Go's golang.org/x/mod/sumdb/note, example_test.go: a key, a text and
    // the note Go's Sign writes. Ed25519 is deterministic, so signing the
    // same text with the same key must give the same bytes.
    const PETER_SIGNING: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VERIFIER: &str =
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const PETER_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    // The same example's second signer: Go's GenerateKey reading zeros, i.e.
    // the seed of 32 zero bytes (its key is enochKey in note_test.go).
    const ENOCH_VERIFIER: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const ENOCH_LINE: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    #[test]
    fn our_notes_are_byte_for_byte_the_ones_go_writes() {
        let peter = SigningKey::parse(PETER_SIGNING).unwrap();
        assert_eq!(peter.verifier().to_string(), PETER_VERIFIER);
        assert_eq!(peter.to_text().expose(), PETER_SIGNING);
        assert_eq!(
            sign_text(GO_TEXT, &peter),
            format!("{GO_TEXT}\n{PETER_LINE}")
        );
        let enoch = SigningKey::from_seed("EnochRoot", &[0; 32]).unwrap();
        assert_eq!(enoch.verifier().to_string(), ENOCH_VERIFIER);
        assert_eq!(
            sign_text(GO_TEXT, &enoch),
            format!("{GO_TEXT}\n{ENOCH_LINE}")
        );
    }

    #[test]
    fn go_notes_open_and_other_signers_lines_are_ignored() {
        let peter = VerifierKey::parse(PETER_VERIFIER).unwrap();
        let enoch = VerifierKey::parse(ENOCH_VERIFIER).unwrap();
        let both = format!("{GO_TEXT}\n{PETER_LINE}{ENOCH_LINE}");
        assert_eq!(open_text(both.as_bytes(), &peter), Ok(GO_TEXT));
        assert_eq!(open_text(both.as_bytes(), &enoch), Ok(GO_TEXT));
        let only_peter = format!("{GO_TEXT}\n{PETER_LINE}");
        assert_eq!(
            open_text(only_peter.as_bytes(), &enoch),
            Err(NoteError::UnknownKey {
                name: "EnochRoot".into(),
                id: 0xaf0cfe78
            })
        );
    }

    // A signed tree head of the Go checksum database, as published by
    // sum.golang.org (quoted in transparency-dev/formats, log/checkpoint_
    // test.go), and the database's verifier key, as built into the go command
    // (cmd/go/internal/modfetch, knownGOSUMDB).
    const SUMDB_VERIFIER: &str =
        "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
    const SUMDB_NOTE: &str = "go.sum database tree\n\
                              6476701\n\
                              mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\
                              \n\
                              \u{2014} sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n";

    #[test]
    fn a_checkpoint_signed_by_the_go_checksum_database_opens() {
        let sumdb = VerifierKey::parse(SUMDB_VERIFIER).unwrap();
        let cp = open(SUMDB_NOTE.as_bytes(), &sumdb).unwrap();
        assert_eq!(cp.origin, "go.sum database tree");
        assert_eq!(cp.size, 6_476_701);
        assert_eq!(
            BASE64.encode(cp.root),
            "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk="
        );
        assert_eq!(
            cp.to_body().as_bytes(),
            &SUMDB_NOTE.as_bytes()[..cp.to_body().len()]
        );
    }

    #[test]
    fn every_single_byte_change_of_a_note_fails_naming_what_failed() {
        let verifier = signer().verifier();
        let note = sign(&checkpoint(), &signer()).into_bytes();
        let body_len = checkpoint().to_body().len();
        for at in 0..note.len() {
            for change in [0x01, 0x20, 0x80] {
                let mut bad = note.clone();
                bad[at] ^= change;
                let err =
                    open(&bad, &verifier).expect_err(&format!("byte {at} ^ {change:#x} opened"));
                assert!(!err.to_string().is_empty());
                // The signature covers the body: a change there is a bad
                // signature unless it breaks the note's shape first. The
                // checkpoint is never read from unsigned text.
                let expected = match &err {
                    NoteError::Malformed(_) => true,
                    NoteError::BadSignature { .. } => true,
                    NoteError::UnknownKey { .. } => at > body_len,
                    NoteError::MalformedCheckpoint(_) => false,
                };
                assert!(expected, "byte {at} ^ {change:#x}: {err}");
            }
        }
    }

    #[test]
    fn a_key_of_another_name_or_id_is_an_unknown_key() {
        let note = sign(&checkpoint(), &signer());
        let renamed = SigningKey::from_seed("registrar/other", &[7; 32]).unwrap();
        let rekeyed = SigningKey::from_seed(NAME, &[8; 32]).unwrap();
        for stranger in [renamed.verifier(), rekeyed.verifier()] {
            assert_eq!(
                open(note.as_bytes(), &stranger),
                Err(NoteError::UnknownKey {
                    name: stranger.name().into(),
                    id: stranger.id()
                })
            );
        }
        // A signature line claiming our name and id with another key's
        // signature is a bad signature, not an unknown key.
        let theirs = sign(&checkpoint(), &rekeyed);
        let mut blob = BASE64
            .decode(theirs.trim_end().rsplit(' ').next().unwrap())
            .unwrap();
        blob[..4].copy_from_slice(&signer().id().to_be_bytes());
        let forged = format!(
            "{}\n{SIG_PREFIX}{NAME} {}\n",
            checkpoint().to_body(),
            BASE64.encode(blob)
        );
        assert_eq!(
            open(forged.as_bytes(), &signer().verifier()),
            Err(NoteError::BadSignature {
                name: NAME.into(),
                id: signer().id()
            })
        );
    }

    #[test]
    fn a_note_that_is_not_a_note_says_how() {
        let v = signer().verifier();
        let m = |reason| Err(NoteError::Malformed(reason));
        assert_eq!(open(b"\xff\n\n", &v), m(Malformed::NotUtf8));
        assert_eq!(open(b"a\tb\n\n", &v), m(Malformed::ControlCharacter));
        assert_eq!(open(b"a\nb\n", &v), m(Malformed::NoSignatures));
        assert_eq!(
            open(b"a\n\n\xe2\x80\x94 x AAAAAAA=", &v),
            m(Malformed::NoSignatures)
        );
        assert_eq!(
            open(b"a\n\n- x AAAAAAA=\n", &v),
            m(Malformed::SignatureLine)
        );
        assert_eq!(
            open("a\n\n\u{2014} x AAAA\n".as_bytes(), &v),
            m(Malformed::SignatureLine)
        );
        assert_eq!(
            open("a\n\n\u{2014} x+y AAAAAAA=\n".as_bytes(), &v),
            m(Malformed::SignatureLine)
        );
        assert_eq!(
            open(&vec![b'a'; MAX_NOTE_BYTES + 1], &v),
            m(Malformed::TooLarge)
        );
        let many = format!(
            "a\n\n{}",
            "\u{2014} x AAAAAAA=\n".repeat(MAX_SIGNATURES + 1)
        );
        assert_eq!(open(many.as_bytes(), &v), m(Malformed::TooManySignatures));
        // Signed text that is not a checkpoint is refused after the signature.
        let signed = sign_text("hello\n", &signer());
        assert_eq!(
            open(signed.as_bytes(), &v),
            Err(NoteError::MalformedCheckpoint(
                CheckpointError::MissingLine("tree size")
            ))
        );
    }

    #[test]
    fn a_checkpoint_body_is_exactly_three_lines() {
        let root = BASE64.encode([9u8; 32]);
        let parse = |s: String| Checkpoint::parse(&s);
        assert_eq!(
            parse(format!("o\n0\n{root}\n")),
            Ok(Checkpoint::new("o", 0, [9; 32]).unwrap())
        );
        assert_eq!(
            parse(format!("o\n{}\n{root}\n", u64::MAX)).map(|c| c.size),
            Ok(u64::MAX)
        );
        for (text, err) in [
            (format!("\n1\n{root}\n"), CheckpointError::EmptyOrigin),
            (
                format!("o\n1\n{root}"),
                CheckpointError::MissingLine("root hash"),
            ),
            (
                "o\n1\n".to_string(),
                CheckpointError::MissingLine("root hash"),
            ),
            (format!("o\n01\n{root}\n"), CheckpointError::BadSize),
            (format!("o\n+1\n{root}\n"), CheckpointError::BadSize),
            (format!("o\n\n{root}\n"), CheckpointError::BadSize),
            (
                format!("o\n18446744073709551616\n{root}\n"),
                CheckpointError::BadSize,
            ),
            ("o\n1\nAAAA\n".to_string(), CheckpointError::BadRoot),
            (
                format!("o\n1\n{}\n", &root[..root.len() - 1]),
                CheckpointError::BadRoot,
            ),
            (
                format!("o\n1\n{root}\nextension\n"),
                CheckpointError::ExtensionLines,
            ),
        ] {
            assert_eq!(parse(text.clone()), Err(err), "{text:?}");
        }
        assert_eq!(
            Checkpoint::new("", 1, [0; 32]),
            Err(CheckpointError::EmptyOrigin)
        );
        assert_eq!(
            Checkpoint::new("a\nb", 1, [0; 32]),
            Err(CheckpointError::ControlInOrigin)
        );
    }

    #[test]
    fn key_texts_that_are_not_keys_say_how() {
        let good = signer().verifier().to_string();
        let (name, rest) = good.split_once('+').unwrap();
        let (id, key) = rest.split_once('+').unwrap();
        let bad = |text: &str| VerifierKey::parse(text).unwrap_err();
        assert!(matches!(bad(name), KeyError::Malformed(_)));
        assert!(matches!(
            bad(&format!("{name}+{id}")),
            KeyError::Malformed(_)
        ));
        assert!(matches!(
            bad(&format!("{name}+{}+{key}", &id[1..])),
            KeyError::Malformed(_)
        ));
        assert!(matches!(
            bad(&format!("{name}+{id}+!")),
            KeyError::Malformed(_)
        ));
        assert!(matches!(bad(&format!("+{id}+{key}")), KeyError::BadName));
        assert!(matches!(
            bad(&format!("registrar/other+{id}+{key}")),
            KeyError::IdMismatch { .. }
        ));
        let mut typed = BASE64.decode(key).unwrap();
        typed[0] = 0x02;
        assert!(matches!(
            bad(&format!("{name}+{id}+{}", BASE64.encode(&typed))),
            KeyError::UnknownAlgorithm(0x02)
        ));
        assert!(matches!(
            bad(&format!("{name}+{id}+{}", BASE64.encode(&typed[..20]))),
            KeyError::UnknownAlgorithm(0x02)
        ));
        typed[0] = ALG_ED25519;
        assert!(matches!(
            bad(&format!("{name}+{id}+{}", BASE64.encode(&typed[..20]))),
            KeyError::Malformed(_)
        ));
        assert!(matches!(
            SigningKey::parse(&good).unwrap_err(),
            KeyError::Malformed(_)
        ));
        let secret = signer().to_text();
        let wrong_id = secret.expose().replace(id, "00000000");
        assert!(matches!(
            SigningKey::parse(&wrong_id).unwrap_err(),
            KeyError::IdMismatch { stated: 0, .. }
        ));
        assert!(matches!(
            SigningKey::from_seed("a b", &[0; 32]),
            Err(KeyError::BadName)
        ));
        assert!(matches!(generate_key("a+b"), Err(KeyError::BadName)));
    }
}
