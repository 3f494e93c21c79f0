//! The Merkle tree of [`registrar::log::merkle`] against a second
//! implementation written here from RFC 9162 alone, which calls none of the
//! code under test (that code is only asked for its roots and proofs, to
//! compare):
//!
//! - MTH, PATH and PROOF/SUBPROOF as the RFC's recursive definitions
//!   (§2.1.1, §2.1.3.1, §2.1.4.1), over the leaves' data;
//! - for every tree size 1..=40, every leaf and every pair of sizes, our
//!   roots and proofs equal the RFC's and our verifiers accept them, and
//!   changing any proof hash, the leaf, the index, a size or a root makes
//!   them fail;
//! - the RFC 6962 / Certificate Transparency test vectors (transparency-dev/
//!   merkle, testonly/constants.go and proof/verify_test.go);
//! - a property over random sizes up to a few thousand leaves: the stored
//!   hashes kept leaf by leaf give the RFC's root at every size, and random
//!   proofs are the RFC's and verify.
//!
//! A last section checks our stored-hash layout and proofs against the
//! `tlog_tiles` crate, a port of Go's sumdb `tlog` (the reference for the
//! layout C2SP tlog-tiles serves).

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use sha2::{Digest, Sha256};

use registrar::log::merkle::{
    self, consistency_proof, entry_bytes, inclusion_proof, root, verify_consistency,
    verify_inclusion, Frontier, MemoryHashes, ProofError, StoredHashes,
};

type Hash = [u8; 32];

// ---------------------------------------------------------------------------
// RFC 9162, from the text.

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SHA-256(0x00 || d).
fn rfc_leaf(d: &[u8]) -> Hash {
    sha256(&[&[0x00], d])
}

/// SHA-256(0x01 || l || r).
fn rfc_node(l: &Hash, r: &Hash) -> Hash {
    sha256(&[&[0x01], l, r])
}

/// The largest power of two smaller than n (n > 1).
fn rfc_k(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]) (§2.1.1).
fn mth(d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => sha256(&[]),
        1 => rfc_leaf(&d[0]),
        n => {
            let k = rfc_k(n);
            rfc_node(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

/// PATH(m, D[n]) (§2.1.3.1).
fn path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = rfc_k(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// Whether each hash of PATH(m, D[n]) is a right (true) or left sibling: all
/// a verifier does with a path besides hashing.
fn path_sides(m: usize, n: usize) -> Vec<bool> {
    if n == 1 {
        return vec![];
    }
    let k = rfc_k(n);
    let mut s = if m < k {
        path_sides(m, k)
    } else {
        path_sides(m - k, n - k)
    };
    s.push(m < k);
    s
}

/// PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (§2.1.4.1), 0 < m < n.
fn proof(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    subproof(m, d, true)
}

fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = rfc_k(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

// ---------------------------------------------------------------------------
// Helpers.

/// Leaves' data: real entries, encoded here (not by the code under test)
/// from the issue's layout.
fn entries(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let body = format!("{{\"delivery\":{i}}}");
            let source = if i % 3 == 0 { "toolzz" } else { "jodo" };
            independent_entry(
                i as u64 + 1,
                source,
                1_700_000_000_000_000 + i as i64,
                blake3::hash(body.as_bytes()).as_bytes(),
            )
        })
        .collect()
}

/// "registrar.leaf.v1" 0x00 || seq u64 BE || len(source) u8 || source ||
/// received_at i64 BE || body_hash.
fn independent_entry(seq: u64, source: &str, received_at: i64, body_hash: &[u8; 32]) -> Vec<u8> {
    let mut e = b"registrar.leaf.v1".to_vec();
    e.push(0);
    e.extend(seq.to_be_bytes());
    e.push(source.len() as u8);
    e.extend(source.bytes());
    e.extend(received_at.to_be_bytes());
    e.extend(body_hash);
    e
}

/// Our tree over `d`, built leaf by leaf as the log would.
fn our_tree(d: &[Vec<u8>]) -> MemoryHashes {
    let mut t = MemoryHashes::new();
    for e in d {
        let leaf = merkle::leaf_hash(e);
        assert_eq!(leaf, rfc_leaf(e));
        t.push(&leaf);
    }
    t
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut h = *h;
    h[bit / 8] ^= 1 << (bit % 8);
    h
}

const SMALL: usize = 40;

// ---------------------------------------------------------------------------
// Every small tree.

#[test]
fn the_leaf_entry_is_the_encoding_the_issue_states() {
    for (seq, source, at, body) in [
        (1, "jodo", 1_700_000_000_000_000, [0u8; 32]),
        (u64::MAX, "toolzz", -1, [0xff; 32]),
        (513, "", i64::MIN, [0x5a; 32]),
    ] {
        let ours = entry_bytes(seq, source, at, &body);
        assert_eq!(ours, independent_entry(seq, source, at, &body));
        assert_eq!(merkle::leaf_hash(&ours), rfc_leaf(&ours));
    }
    assert_eq!(
        merkle::node_hash(&[1; 32], &[2; 32]),
        rfc_node(&[1; 32], &[2; 32])
    );
    assert_eq!(merkle::EMPTY_ROOT, mth(&[]));
}

#[test]
fn every_root_and_inclusion_proof_of_every_small_tree_is_the_rfcs() {
    let d = entries(SMALL);
    let t = our_tree(&d);
    for n in 1..=SMALL {
        let r = root(n as u64, &t).unwrap();
        assert_eq!(r, mth(&d[..n]), "root of {n}");
        for m in 0..n {
            let p = inclusion_proof(m as u64, n as u64, &t).unwrap();
            assert_eq!(p, path(m, &d[..n]), "PATH({m}, D[{n}])");
            assert_eq!(p.len(), merkle::inclusion_proof_len(m as u64, n as u64));
            assert_eq!(
                verify_inclusion(&rfc_leaf(&d[m]), m as u64, n as u64, &p, &r),
                Ok(())
            );
        }
    }
}

#[test]
fn every_consistency_proof_between_small_trees_is_the_rfcs() {
    let d = entries(SMALL);
    let t = our_tree(&d);
    for n in 1..=SMALL {
        let new = mth(&d[..n]);
        for m in 0..=n {
            let p = consistency_proof(m as u64, n as u64, &t).unwrap();
            let want = if m == 0 || m == n {
                vec![]
            } else {
                proof(m, &d[..n])
            };
            assert_eq!(p, want, "PROOF({m}, D[{n}])");
            assert_eq!(p.len(), merkle::consistency_proof_len(m as u64, n as u64));
            assert_eq!(
                verify_consistency(m as u64, n as u64, &mth(&d[..m]), &new, &p),
                Ok(()),
                "PROOF({m}, D[{n}])"
            );
        }
    }
}

#[test]
fn a_changed_inclusion_proof_hash_leaf_index_size_or_root_fails() {
    let d = entries(SMALL);
    let roots: Vec<Hash> = (0..=SMALL).map(|n| mth(&d[..n])).collect();
    for n in 1..=SMALL {
        let (size, r) = (n as u64, roots[n]);
        for m in 0..n {
            let p = path(m, &d[..n]);
            let (index, leaf) = (m as u64, rfc_leaf(&d[m]));
            for i in 0..p.len() {
                for bit in [0, 7, 100, 255] {
                    let mut bad = p.clone();
                    bad[i] = flip(&bad[i], bit);
                    assert_eq!(
                        verify_inclusion(&leaf, index, size, &bad, &r),
                        Err(ProofError::RootMismatch)
                    );
                }
            }
            for bit in [0, 31, 128, 255] {
                assert_eq!(
                    verify_inclusion(&flip(&leaf, bit), index, size, &p, &r),
                    Err(ProofError::RootMismatch)
                );
                assert_eq!(
                    verify_inclusion(&leaf, index, size, &p, &flip(&r, bit)),
                    Err(ProofError::RootMismatch)
                );
            }
            // A hash more or less.
            let mut longer = p.clone();
            longer.push(r);
            assert!(matches!(
                verify_inclusion(&leaf, index, size, &longer, &r),
                Err(ProofError::WrongLength { .. })
            ));
            if let Some((_, shorter)) = p.split_last() {
                assert!(matches!(
                    verify_inclusion(&leaf, index, size, shorter, &r),
                    Err(ProofError::WrongLength { .. })
                ));
            }
            // Another index in the same tree.
            for other in 0..n as u64 + 2 {
                if other != index {
                    assert!(
                        verify_inclusion(&leaf, other, size, &p, &r).is_err(),
                        "{m} as {other} in {n}"
                    );
                }
            }
            for (other_n, other_root) in roots.iter().enumerate() {
                if other_n == n || m >= other_n {
                    continue;
                }
                // Against the other size's own root: never.
                assert!(
                    verify_inclusion(&leaf, index, other_n as u64, &p, other_root).is_err(),
                    "PATH({m}, D[{n}]) against D[{other_n}]"
                );
                // Against this size's root: only where the two sizes give
                // leaf m the same path shape, so the verifier does the same
                // hashing. A size means something only with its own root,
                // which is why a checkpoint signs the two together.
                let same_shape = path_sides(m, other_n) == path_sides(m, n);
                assert_eq!(
                    verify_inclusion(&leaf, index, other_n as u64, &p, &r).is_ok(),
                    same_shape,
                    "PATH({m}, D[{n}]) as D[{other_n}]"
                );
            }
        }
    }
}

#[test]
fn a_changed_consistency_proof_hash_size_or_root_fails() {
    let d = entries(SMALL);
    let roots: Vec<Hash> = (0..=SMALL).map(|n| mth(&d[..n])).collect();
    // PROOF(m, D[n]) for every 1 <= m <= n <= SMALL.
    let proofs: std::collections::HashMap<(usize, usize), Vec<Hash>> = (1..=SMALL)
        .flat_map(|n| (1..=n).map(move |m| (m, n)))
        .map(|(m, n)| ((m, n), if m == n { vec![] } else { proof(m, &d[..n]) }))
        .collect();
    for n in 2..=SMALL {
        for m in 1..n {
            let p = proofs[&(m, n)].clone();
            let (from, to) = (m as u64, n as u64);
            let (old, new) = (roots[m], roots[n]);
            for i in 0..p.len() {
                for bit in [0, 9, 200] {
                    let mut bad = p.clone();
                    bad[i] = flip(&bad[i], bit);
                    assert!(
                        verify_consistency(from, to, &old, &new, &bad).is_err(),
                        "{m} {n} hash {i}"
                    );
                }
            }
            for bit in [0, 255] {
                assert!(verify_consistency(from, to, &flip(&old, bit), &new, &p).is_err());
                assert!(verify_consistency(from, to, &old, &flip(&new, bit), &p).is_err());
            }
            assert!(
                verify_consistency(from, to, &new, &old, &p).is_err(),
                "swapped roots"
            );
            assert!(
                verify_consistency(to, from, &new, &old, &p).is_err(),
                "swapped sizes"
            );
            let mut longer = p.clone();
            longer.insert(0, old);
            assert!(verify_consistency(from, to, &old, &new, &longer).is_err());
            assert!(verify_consistency(from, to, &old, &new, &p[1..]).is_err());
            // Another pair of sizes, each with its own root: accepted only
            // if PROOF for that pair is this very proof.
            for other_m in 1..=SMALL {
                for other_n in other_m..=SMALL {
                    if (other_m, other_n) == (m, n) {
                        continue;
                    }
                    let theirs = &proofs[&(other_m, other_n)];
                    assert_eq!(
                        verify_consistency(
                            other_m as u64,
                            other_n as u64,
                            &roots[other_m],
                            &roots[other_n],
                            &p
                        )
                        .is_ok(),
                        *theirs == p,
                        "PROOF({m}, D[{n}]) as ({other_m}, {other_n})"
                    );
                }
            }
        }
    }
}

#[test]
fn a_rewritten_log_is_not_consistent_with_its_past() {
    let d = entries(SMALL);
    for changed in 0..SMALL {
        let mut forged = d.clone();
        forged[changed][20] ^= 1;
        let t = our_tree(&forged);
        for m in changed + 1..SMALL {
            let old = mth(&d[..m]);
            let p = consistency_proof(m as u64, SMALL as u64, &t).unwrap();
            let new = root(SMALL as u64, &t).unwrap();
            assert!(
                verify_consistency(m as u64, SMALL as u64, &old, &new, &p).is_err(),
                "leaf {changed} rewritten, checkpoint at {m}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Known answers: the RFC 6962 / CT test vectors, as published with
// transparency-dev/merkle (testonly/constants.go, proof/verify_test.go).

fn ct_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| hex::decode(h).unwrap())
    .collect()
}

const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn hexes(hs: &[Hash]) -> Vec<String> {
    hs.iter().map(hex::encode).collect()
}

#[test]
fn the_certificate_transparency_test_vectors_hold() {
    // The empty leaf's hash is SHA-256(0x00).
    assert_eq!(
        hex::encode(merkle::leaf_hash(b"")),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
    let d = ct_leaves();
    let t = our_tree(&d);
    for (n, want) in CT_ROOTS.iter().enumerate() {
        assert_eq!(
            hex::encode(root(n as u64, &t).unwrap()),
            *want,
            "root of {n}"
        );
        assert_eq!(hex::encode(mth(&d[..n])), *want, "the RFC's root of {n}");
    }
    // (leaf index, tree size, proof); the source numbers leaves from 1.
    let inclusion: [(u64, u64, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, want) in inclusion {
        let p = inclusion_proof(index, size, &t).unwrap();
        assert_eq!(hexes(&p), want, "leaf {index} of {size}");
        let r = root(size, &t).unwrap();
        assert_eq!(
            verify_inclusion(&rfc_leaf(&d[index as usize]), index, size, &p, &r),
            Ok(())
        );
    }
    let consistency: [(u64, u64, &[&str]); 4] = [
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (from, to, want) in consistency {
        let p = consistency_proof(from, to, &t).unwrap();
        assert_eq!(hexes(&p), want, "{from} to {to}");
        let (old, new) = (root(from, &t).unwrap(), root(to, &t).unwrap());
        assert_eq!(verify_consistency(from, to, &old, &new, &p), Ok(()));
    }
}

// ---------------------------------------------------------------------------
// Random sizes.

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(32),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn stored_hashes_kept_leaf_by_leaf_give_the_rfcs_roots_and_proofs(
        n in 1usize..3000,
        seed in any::<u64>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 8),
    ) {
        let d: Vec<Vec<u8>> = (0..n).map(|i| format!("{seed}:{i}").into_bytes()).collect();
        let t = our_tree(&d);
        // The frontier a restarted writer loads gives the same tree.
        let reloaded = Frontier::load(n as u64, &t).unwrap();
        prop_assert_eq!(reloaded.root(), t.root());
        prop_assert_eq!(t.stored().len() as u64, merkle::stored_hash_count(n as u64));
        prop_assert_eq!(t.root(), mth(&d));
        for (a, b) in picks {
            // A past size, a leaf in it, an older size.
            let size = b.index(n) + 1;
            let m = a.index(size);
            let from = a.index(size + 1);
            let r = mth(&d[..size]);
            prop_assert_eq!(root(size as u64, &t).unwrap(), r);
            let p = inclusion_proof(m as u64, size as u64, &t).unwrap();
            prop_assert_eq!(&p, &path(m, &d[..size]));
            prop_assert_eq!(verify_inclusion(&rfc_leaf(&d[m]), m as u64, size as u64, &p, &r), Ok(()));
            let c = consistency_proof(from as u64, size as u64, &t).unwrap();
            if from > 0 && from < size {
                prop_assert_eq!(&c, &proof(from, &d[..size]));
            }
            prop_assert_eq!(verify_consistency(from as u64, size as u64, &mth(&d[..from]), &r, &c), Ok(()));
        }
    }
}

#[test]
fn hashes_read_for_a_proof_grow_with_the_log_of_the_size() {
    // Counts what each root and proof asks of storage: one read, O(log n)
    // hashes, for any past size.
    struct Counting<'a>(&'a MemoryHashes, std::cell::Cell<(usize, usize)>);
    impl StoredHashes for Counting<'_> {
        type Error = merkle::MissingHash;
        fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, Self::Error> {
            let (calls, hashes) = self.1.get();
            self.1.set((calls + 1, hashes.max(indexes.len())));
            self.0.read(indexes)
        }
    }
    let d: Vec<Vec<u8>> = (0..5000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let t = our_tree(&d);
    let c = Counting(&t, Default::default());
    type Run<'a> = Box<dyn Fn() -> Result<(), merkle::TreeError<merkle::MissingHash>> + 'a>;
    for size in [1u64, 2, 3, 1000, 4095, 4096, 4097, 5000] {
        let log = 64 - size.leading_zeros() as usize;
        for (what, run) in [
            ("root", Box::new(|| root(size, &c).map(|_| ())) as Run),
            (
                "inclusion",
                Box::new(|| inclusion_proof(size / 3, size, &c).map(|_| ())),
            ),
            (
                "consistency",
                Box::new(|| consistency_proof(size / 2, size, &c).map(|_| ())),
            ),
        ] {
            c.1.set((0, 0));
            run().unwrap();
            let (calls, hashes) = c.1.get();
            assert!(calls <= 1, "{what} of {size}: {calls} reads");
            assert!(hashes <= 2 * log + 1, "{what} of {size}: {hashes} hashes");
        }
    }
}

// ---------------------------------------------------------------------------
// Go's sumdb tlog, through its Rust port.

struct TlogStorage(Vec<tlog_tiles::Hash>);

impl tlog_tiles::HashReader for TlogStorage {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        Ok(indexes.iter().map(|&i| self.0[i as usize]).collect())
    }
}

#[test]
fn our_stored_hashes_and_proofs_are_those_of_gos_sumdb_tlog() {
    for level in 0..12u8 {
        for k in 0..300 {
            assert_eq!(
                merkle::stored_hash_index(level, k),
                tlog_tiles::stored_hash_index(level, k)
            );
        }
    }
    let d = entries(150);
    let ours = our_tree(&d);
    let mut theirs = TlogStorage(Vec::new());
    for (i, e) in d.iter().enumerate() {
        let new = tlog_tiles::stored_hashes(i as u64, e, &theirs).unwrap();
        theirs.0.extend(new);
    }
    assert_eq!(
        ours.stored(),
        theirs.0.iter().map(|h| h.0).collect::<Vec<_>>()
    );
    for n in 1..=d.len() as u64 {
        let r = root(n, &ours).unwrap();
        assert_eq!(r, tlog_tiles::tree_hash(n, &theirs).unwrap().0);
        for m in (0..n).step_by(7) {
            let p = inclusion_proof(m, n, &ours).unwrap();
            let want: Vec<Hash> = tlog_tiles::prove_record(n, m, &theirs)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            assert_eq!(p, want, "leaf {m} of {n}");
            let p: Vec<tlog_tiles::Hash> = p.into_iter().map(tlog_tiles::Hash).collect();
            tlog_tiles::check_record(
                &p,
                n,
                tlog_tiles::Hash(r),
                m,
                tlog_tiles::Hash(rfc_leaf(&d[m as usize])),
            )
            .unwrap();
        }
        for from in (1..=n).step_by(5) {
            let p = consistency_proof(from, n, &ours).unwrap();
            let want: Vec<Hash> = tlog_tiles::prove_tree(n, from, &theirs)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            assert_eq!(p, want, "{from} to {n}");
        }
    }
}

// ---------------------------------------------------------------------------
// What an append costs: not a test, a measurement. Run it optimized:
// cargo test --release --test merkle_independent -- --ignored --nocapture

#[test]
#[ignore = "a measurement, run by hand in release"]
fn measure_the_cost_of_keeping_the_tree_per_append() {
    use std::time::Instant;
    const LEAVES: u64 = 1_000_000;
    let body_hash = [0x42; 32];
    let mut frontier = Frontier::new();
    let mut stored = 0usize;
    let start = Instant::now();
    for seq in 1..=LEAVES {
        let entry = entry_bytes(seq, "jodo", seq as i64, &body_hash);
        stored += frontier.push(&merkle::leaf_hash(&entry)).len();
    }
    let elapsed = start.elapsed();
    println!(
        "{LEAVES} appends: {:.3} us each (entry, leaf hash, stored hashes), {:.4} stored hashes per leaf, root {}",
        elapsed.as_secs_f64() * 1e6 / LEAVES as f64,
        stored as f64 / LEAVES as f64,
        hex::encode(frontier.root()),
    );
    let mut memory = MemoryHashes::new();
    let start = Instant::now();
    for seq in 1..=LEAVES {
        memory.push(&merkle::leaf_hash(&entry_bytes(
            seq, "jodo", seq as i64, &body_hash,
        )));
    }
    println!(
        "recomputing the tree of {LEAVES} leaves in memory: {:.0} ms, {} MiB of stored hashes",
        start.elapsed().as_secs_f64() * 1e3,
        (memory.stored().len() * 32) >> 20
    );
    let start = Instant::now();
    let mut n = 0;
    for i in (0..LEAVES).step_by(997) {
        n += inclusion_proof(i, LEAVES, &memory).unwrap().len();
    }
    println!(
        "inclusion proofs at size {LEAVES}: {:.2} us each from memory ({} hashes each on average)",
        start.elapsed().as_secs_f64() * 1e6 / (LEAVES / 997 + 1) as f64,
        n as u64 / (LEAVES / 997 + 1)
    );
}
