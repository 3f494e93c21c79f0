//! The hash chain's encoding, version 1.
//!
//! ```text
//! hash = blake3( "registrar.chain.v1" 0x00
//!              || prev_hash            32 bytes
//!              || seq                  u64, big-endian
//!              || len(source)          u8
//!              || source               ASCII ("jodo" | "toolzz")
//!              || received_at          i64 unix microseconds, big-endian
//!              || body_hash )          32 bytes = blake3(body)
//! ```
//!
//! The first event's `prev_hash` is 32 zero bytes. Every field has a fixed
//! width or a length prefix, so no two different tuples encode alike. The
//! domain tag names the version: a future encoding gets a new tag.

/// A 32-byte blake3 digest.
pub type Hash = [u8; 32];

/// The domain separation tag of encoding v1.
pub const CHAIN_TAG_V1: &[u8] = b"registrar.chain.v1\0";

/// `prev_hash` of the first event.
pub const GENESIS: Hash = [0u8; 32];

/// The chain hash of one event.
pub fn link_hash(
    prev: &Hash,
    seq: u64,
    source: &str,
    received_at_micros: i64,
    body_hash: &Hash,
) -> Hash {
    assert!(
        source.len() <= usize::from(u8::MAX),
        "source name too long for the encoding"
    );
    let mut h = blake3::Hasher::new();
    h.update(CHAIN_TAG_V1);
    h.update(prev);
    h.update(&seq.to_be_bytes());
    h.update(&[source.len() as u8]);
    h.update(source.as_bytes());
    h.update(&received_at_micros.to_be_bytes());
    h.update(body_hash);
    *h.finalize().as_bytes()
}

/// blake3 of a body.
pub fn body_hash(body: &[u8]) -> Hash {
    *blake3::hash(body).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_hash() {
        let base = link_hash(&GENESIS, 1, "jodo", 5, &[1; 32]);
        assert_ne!(base, link_hash(&[1; 32], 1, "jodo", 5, &[1; 32]));
        assert_ne!(base, link_hash(&GENESIS, 2, "jodo", 5, &[1; 32]));
        assert_ne!(base, link_hash(&GENESIS, 1, "toolzz", 5, &[1; 32]));
        assert_ne!(base, link_hash(&GENESIS, 1, "jodo", 6, &[1; 32]));
        assert_ne!(base, link_hash(&GENESIS, 1, "jodo", 5, &[2; 32]));
    }

    #[test]
    fn the_encoding_is_stable() {
        // Pinned so an accidental change to the encoding fails loudly: every
        // existing log would stop verifying.
        let h = link_hash(
            &GENESIS,
            1,
            "jodo",
            1_700_000_000_000_000,
            &body_hash(b"{}"),
        );
        assert_eq!(hex::encode(h), PINNED_V1);
    }

    const PINNED_V1: &str = "963a28621886697ba5c53210ac4408edf9e47c9aedb2f1eda960e8fe59be51d9";
}
