//! Authentication of deliveries, in one place: the Jodo signature and custom
//! header, and the Toolzz URL token. Pure: no I/O, no clock, no HTTP types.
//!
//! Ingest ([`crate::ingest`]) checks a request with [`check_jodo`] or
//! [`check_toolzz`]; a refused delivery keeps what readmission needs as a
//! [`Kept`] (written into the quarantine row's `headers` JSON); `quarantine
//! readmit` ([`crate::ledger::readmit`]) reads it back with [`Kept::read`] and
//! decides with [`recheck_jodo`] or [`recheck_toolzz`]. Outcomes are enums,
//! never strings passed between modules.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The Jodo signature header (lower case, as HTTP header maps name it).
pub const SIGNATURE_HEADER: &str = "x-jodo-signature";

/// Length of a hex HMAC-SHA256: a shorter or longer header never passes.
const SIGNATURE_HEX_LEN: usize = 64;

/// The key of the custom header's outcome in a quarantine row's `headers`.
const KEPT_CUSTOM_HEADER: &str = "custom_header";

/// Compares two secrets in constant time (for equal lengths; the length
/// itself is not secret).
pub fn secret_eq(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// Checks `X-Jodo-Signature` against the raw body in constant time. The
/// header must be exactly 64 lowercase hex digits, as Jodo sends it.
pub fn signature_matches(secret: &[u8], body: &[u8], header: &[u8]) -> bool {
    if header.len() != SIGNATURE_HEX_LEN
        || !header
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return false;
    }
    let Ok(expected) = hex::decode(header) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&expected).is_ok()
}

/// Signs a body as Jodo does (for tests, the benchmark and documentation).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A header as a request carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    Absent,
    Once(&'a [u8]),
    /// Sent more than once: which one counts is not for the server to pick,
    /// so it is refused whatever the values.
    Repeated,
}

impl<'a> Presented<'a> {
    /// From every value of one header, in order.
    pub fn from_values(mut values: impl Iterator<Item = &'a [u8]>) -> Presented<'a> {
        match (values.next(), values.next()) {
            (None, _) => Presented::Absent,
            (Some(v), None) => Presented::Once(v),
            (Some(_), Some(_)) => Presented::Repeated,
        }
    }
}

/// How one credential compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing is configured to compare it with.
    NotRequired,
    Matched,
    Missing,
    Mismatch,
    Repeated,
}

impl Check {
    fn of(presented: Presented, matches: impl FnOnce(&[u8]) -> bool) -> Check {
        match presented {
            Presented::Absent => Check::Missing,
            Presented::Repeated => Check::Repeated,
            Presented::Once(v) if matches(v) => Check::Matched,
            Presented::Once(_) => Check::Mismatch,
        }
    }

    /// The text kept in a quarantine row (compatible with rows written
    /// before this type existed).
    fn kept(self) -> &'static str {
        match self {
            Check::NotRequired => "not required",
            Check::Matched => "matched",
            Check::Missing => "missing",
            Check::Mismatch => "mismatch",
            Check::Repeated => "repeated",
        }
    }

    fn from_kept(text: &str) -> Option<Check> {
        Some(match text {
            "not required" => Check::NotRequired,
            "matched" => Check::Matched,
            "missing" => Check::Missing,
            "mismatch" => Check::Mismatch,
            "repeated" => Check::Repeated,
            _ => return None,
        })
    }
}

/// What a Jodo request must carry, from the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct JodoSecrets<'a> {
    /// The HMAC key of `X-Jodo-Signature`.
    pub secret: Option<&'a [u8]>,
    /// The custom header: lower-case name and value.
    pub header: Option<(&'a str, &'a [u8])>,
}

/// [`JodoSecrets`], owned: what the writer keeps to re-check a readmitted
/// delivery on its own thread.
#[derive(Clone, Default)]
pub struct JodoKeys {
    /// The HMAC key of `X-Jodo-Signature`.
    pub secret: Option<String>,
    /// The custom header: lower-case name and value.
    pub header: Option<(String, String)>,
}

impl JodoKeys {
    /// The keys, borrowed as the checks take them.
    pub fn secrets(&self) -> JodoSecrets<'_> {
        JodoSecrets {
            secret: self.secret.as_deref().map(str::as_bytes),
            header: self
                .header
                .as_ref()
                .map(|(name, value)| (name.as_str(), value.as_bytes())),
        }
    }
}

/// Why a delivery is not authenticated. Its `Display` is the 401's message
/// (never a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the required custom header is missing")]
    CustomHeaderMissing,
    #[error("the required custom header does not match")]
    CustomHeaderMismatch,
    #[error("the required custom header is sent more than once")]
    CustomHeaderRepeated,
    #[error("X-Jodo-Signature is missing")]
    SignatureMissing,
    #[error("X-Jodo-Signature does not match the body (expected 64 lowercase hex digits of HMAC-SHA256)")]
    SignatureMismatch,
    #[error("X-Jodo-Signature is sent more than once")]
    SignatureRepeated,
    #[error("the token in the URL is wrong")]
    TokenWrong,
    #[error("this server needs the token in the URL: POST /webhooks/toolzz/{{token}}")]
    TokenMissing,
    #[error("this server has no Toolzz token configured: POST /webhooks/toolzz")]
    TokenUnexpected,
}

/// How a Jodo request authenticated: both checks, so a reject can keep both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JodoOutcome {
    pub custom_header: Check,
    pub signature: Check,
}

impl JodoOutcome {
    /// The first failed check (the custom header first: it is the cheaper
    /// and the one a misconfigured proxy drops), or None when authenticated.
    pub fn refusal(&self) -> Option<Refusal> {
        let header = match self.custom_header {
            Check::Missing => Some(Refusal::CustomHeaderMissing),
            Check::Mismatch => Some(Refusal::CustomHeaderMismatch),
            Check::Repeated => Some(Refusal::CustomHeaderRepeated),
            Check::NotRequired | Check::Matched => None,
        };
        header.or(match self.signature {
            Check::Missing => Some(Refusal::SignatureMissing),
            Check::Mismatch => Some(Refusal::SignatureMismatch),
            Check::Repeated => Some(Refusal::SignatureRepeated),
            Check::NotRequired | Check::Matched => None,
        })
    }
}

/// Checks a Jodo request: the custom header (when configured) and the
/// signature of the raw body (when a secret is configured).
pub fn check_jodo(
    secrets: &JodoSecrets,
    body: &[u8],
    signature: Presented,
    custom_header: Presented,
) -> JodoOutcome {
    JodoOutcome {
        custom_header: match secrets.header {
            None => Check::NotRequired,
            Some((_, expected)) => Check::of(custom_header, |v| secret_eq(v, expected)),
        },
        signature: match secrets.secret {
            None => Check::NotRequired,
            Some(secret) => Check::of(signature, |v| signature_matches(secret, body, v)),
        },
    }
}

/// Checks a Toolzz URL token: `given` is the percent-decoded path segment
/// (any bytes), None for the bare `/webhooks/toolzz`.
pub fn check_toolzz(expected: Option<&[u8]>, given: Option<&[u8]>) -> Result<(), Refusal> {
    match (expected, given) {
        (None, None) => Ok(()),
        (Some(expected), Some(given)) if secret_eq(given, expected) => Ok(()),
        (Some(_), Some(_)) => Err(Refusal::TokenWrong),
        (Some(_), None) => Err(Refusal::TokenMissing),
        (None, Some(_)) => Err(Refusal::TokenUnexpected),
    }
}

/// The signature header as kept with a reject: the value itself (it is a MAC
/// of the body, not a secret), or every value when repeated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptSignature {
    Absent,
    Once(String),
    Repeated(Vec<String>),
}

/// What a Jodo reject keeps of its credentials, for readmission. Stored in
/// the quarantine row's `headers` JSON as `x-jodo-signature` (a string, or
/// an array when repeated) and `custom_header` (`matched`, `missing`,
/// `mismatch`, `repeated`; absent when none was configured): never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub signature: KeptSignature,
    pub custom_header: Option<Check>,
}

impl Kept {
    /// What to keep of a Jodo request: its signature values (as text; a
    /// value that is not text cannot be a valid signature and is kept empty)
    /// and the custom header's outcome.
    pub fn of_jodo<'a>(signatures: impl Iterator<Item = &'a [u8]>, outcome: &JodoOutcome) -> Kept {
        let values: Vec<String> = signatures
            .map(|v| std::str::from_utf8(v).unwrap_or("").to_string())
            .collect();
        let signature = match values.len() {
            0 => KeptSignature::Absent,
            1 => KeptSignature::Once(values.into_iter().next().expect("one value")),
            _ => KeptSignature::Repeated(values),
        };
        Kept {
            signature,
            custom_header: match outcome.custom_header {
                Check::NotRequired => None,
                c => Some(c),
            },
        }
    }

    /// Writes this into a quarantine row's `headers`.
    pub fn write(&self, headers: &mut Map<String, Value>) {
        match &self.signature {
            KeptSignature::Absent => {}
            KeptSignature::Once(v) => {
                headers.insert(SIGNATURE_HEADER.into(), Value::from(v.as_str()));
            }
            KeptSignature::Repeated(vs) => {
                headers.insert(SIGNATURE_HEADER.into(), Value::from(vs.clone()));
            }
        }
        if let Some(c) = self.custom_header {
            headers.insert(KEPT_CUSTOM_HEADER.into(), Value::from(c.kept()));
        }
    }

    /// Reads what [`Kept::write`] wrote. Anything unrecognised reads as a
    /// failed check, never as a pass.
    pub fn read(headers: &Map<String, Value>) -> Kept {
        let signature = match headers.get(SIGNATURE_HEADER) {
            None | Some(Value::Null) => KeptSignature::Absent,
            Some(Value::String(s)) => KeptSignature::Once(s.clone()),
            Some(Value::Array(vs)) => KeptSignature::Repeated(
                vs.iter()
                    .map(|v| v.as_str().unwrap_or("").to_string())
                    .collect(),
            ),
            Some(_) => KeptSignature::Repeated(Vec::new()),
        };
        let custom_header = headers.get(KEPT_CUSTOM_HEADER).map(|v| {
            v.as_str()
                .and_then(Check::from_kept)
                .unwrap_or(Check::Mismatch)
        });
        Kept {
            signature,
            custom_header,
        }
    }
}

/// Why a quarantined delivery's authentication does not pass again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecheckRefusal {
    #[error("X-Jodo-Signature does not match with the current secret")]
    SignatureMismatch,
    #[error("X-Jodo-Signature was sent more than once (pass --force to vouch for it)")]
    SignatureRepeated,
    #[error("it failed authentication when it arrived and REGISTRAR_JODO_SECRET is not set to check its signature again (set it, or pass --force to vouch for it)")]
    NoSecretToRecheck,
    #[error("the custom header did not match when it arrived (pass --force to vouch for it)")]
    CustomHeader,
    #[error("the URL token was wrong and is not kept (pass --force to vouch for it)")]
    ToolzzToken,
}

/// Re-checks a quarantined Jodo delivery with the current configuration: the
/// kept signature against the current secret (fix the secret, then
/// readmit). A custom header's outcome cannot be re-checked (its value is
/// never kept): only one that matched on arrival passes.
pub fn recheck_jodo(
    kept: &Kept,
    secrets: &JodoSecrets,
    authenticated_on_arrival: bool,
    body: &[u8],
) -> Result<(), RecheckRefusal> {
    match (secrets.secret, &kept.signature) {
        (Some(_), KeptSignature::Repeated(_)) => return Err(RecheckRefusal::SignatureRepeated),
        (Some(secret), KeptSignature::Once(sig))
            if signature_matches(secret, body, sig.as_bytes()) => {}
        (Some(_), _) => return Err(RecheckRefusal::SignatureMismatch),
        // Nothing to re-check the signature with: a delivery that failed
        // authentication needs someone to vouch for it.
        (None, _) if !authenticated_on_arrival => return Err(RecheckRefusal::NoSecretToRecheck),
        (None, _) => {}
    }
    match kept.custom_header {
        Some(Check::Matched) => Ok(()),
        None if secrets.header.is_none() => Ok(()),
        _ => Err(RecheckRefusal::CustomHeader),
    }
}

/// Re-checks a quarantined Toolzz delivery: the token is never kept, so one
/// that failed authentication always needs `--force`.
pub fn recheck_toolzz(authenticated_on_arrival: bool) -> Result<(), RecheckRefusal> {
    if authenticated_on_arrival {
        Ok(())
    } else {
        Err(RecheckRefusal::ToolzzToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: JodoSecrets = JodoSecrets {
        secret: Some(b"k"),
        header: Some(("x-school", b"v")),
    };

    #[test]
    fn signatures_must_be_exact_lowercase_hex() {
        let sig = sign(b"k", b"body");
        assert!(signature_matches(b"k", b"body", sig.as_bytes()));
        assert!(!signature_matches(
            b"k",
            b"body",
            sig.to_uppercase().as_bytes()
        ));
        assert!(!signature_matches(b"k", b"body", &sig.as_bytes()[..32]));
        assert!(!signature_matches(b"k", b"body", b""));
        assert!(!signature_matches(b"other", b"body", sig.as_bytes()));
    }

    #[test]
    fn a_repeated_signature_is_refused_even_when_every_value_is_good() {
        let sig = sign(b"k", b"body");
        let values = [sig.as_bytes(), sig.as_bytes()];
        let outcome = check_jodo(
            &SECRETS,
            b"body",
            Presented::from_values(values.into_iter()),
            Presented::Once(b"v"),
        );
        assert_eq!(outcome.signature, Check::Repeated);
        assert_eq!(outcome.refusal(), Some(Refusal::SignatureRepeated));
    }

    #[test]
    fn the_custom_header_is_checked_before_the_signature() {
        let sig = sign(b"k", b"body");
        let outcome = check_jodo(
            &SECRETS,
            b"body",
            Presented::Once(sig.as_bytes()),
            Presented::Once(b"w"),
        );
        assert_eq!(outcome.refusal(), Some(Refusal::CustomHeaderMismatch));
        let outcome = check_jodo(
            &SECRETS,
            b"body",
            Presented::Once(sig.as_bytes()),
            Presented::Once(b"v"),
        );
        assert_eq!(outcome.refusal(), None);
    }

    #[test]
    fn what_a_reject_keeps_reads_back_as_written() {
        let outcome = JodoOutcome {
            custom_header: Check::Mismatch,
            signature: Check::Repeated,
        };
        let kept = Kept::of_jodo([&b"a"[..], b"b"].into_iter(), &outcome);
        let mut headers = Map::new();
        kept.write(&mut headers);
        assert_eq!(headers["x-jodo-signature"], serde_json::json!(["a", "b"]));
        assert_eq!(headers["custom_header"], "mismatch");
        assert_eq!(Kept::read(&headers), kept);
    }

    #[test]
    fn a_kept_row_from_before_the_auth_module_still_reads() {
        let headers: Map<String, Value> =
            serde_json::from_str(r#"{"x-jodo-signature":"ab","custom_header":"matched"}"#).unwrap();
        let kept = Kept::read(&headers);
        assert_eq!(kept.signature, KeptSignature::Once("ab".into()));
        assert_eq!(kept.custom_header, Some(Check::Matched));
        // Something unrecognised never reads as a pass.
        let odd: Map<String, Value> = serde_json::from_str(r#"{"custom_header":"yes"}"#).unwrap();
        assert_eq!(Kept::read(&odd).custom_header, Some(Check::Mismatch));
    }

    #[test]
    fn readmission_rechecks_the_kept_signature_with_the_current_secret() {
        let body = b"body";
        let kept = Kept {
            signature: KeptSignature::Once(sign(b"k", body)),
            custom_header: Some(Check::Matched),
        };
        assert_eq!(recheck_jodo(&kept, &SECRETS, false, body), Ok(()));
        let rotated = JodoSecrets {
            secret: Some(b"other"),
            ..SECRETS
        };
        assert_eq!(
            recheck_jodo(&kept, &rotated, false, body),
            Err(RecheckRefusal::SignatureMismatch)
        );
        let repeated = Kept {
            signature: KeptSignature::Repeated(vec![sign(b"k", body); 2]),
            ..kept.clone()
        };
        assert_eq!(
            recheck_jodo(&repeated, &SECRETS, false, body),
            Err(RecheckRefusal::SignatureRepeated)
        );
        let header_failed = Kept {
            custom_header: Some(Check::Missing),
            ..kept
        };
        assert_eq!(
            recheck_jodo(&header_failed, &SECRETS, false, body),
            Err(RecheckRefusal::CustomHeader)
        );
    }

    #[test]
    fn toolzz_tokens_compare_as_bytes_and_any_other_bytes_are_wrong() {
        assert_eq!(check_toolzz(Some(b"t"), Some(b"t")), Ok(()));
        assert_eq!(
            check_toolzz(Some(b"t"), Some(&[0xff])),
            Err(Refusal::TokenWrong)
        );
        assert_eq!(check_toolzz(Some(b"t"), None), Err(Refusal::TokenMissing));
        assert_eq!(
            check_toolzz(None, Some(b"t")),
            Err(Refusal::TokenUnexpected)
        );
        assert_eq!(check_toolzz(None, None), Ok(()));
    }
}
