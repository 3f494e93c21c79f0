//! `/v1/log` (checkpoints, the verifier key, inclusion and consistency
//! proofs) and the bundles, end to end: every proof served checks with the
//! RFC 9162 verifiers against the signed checkpoint's root, a size past the
//! newest checkpoint is refused, and `registrar proof check` passes a bundle
//! served and names the link a changed byte breaks, and `registrar proof
//! consistency` passes two checkpoints of one log and fails a fork.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use registrar::log::merkle;
use registrar::log::note::{self, SigningKey, VerifierKey};
use serde_json::Value;

use crate::audit::{registrar, CliOutput};
use crate::fixtures::*;
use crate::helpers::*;

const ORIGIN: &str = "registrar/school-1";

fn signer() -> SigningKey {
    SigningKey::from_seed(ORIGIN, &[7; 32]).unwrap()
}

fn hash(text: &Value) -> merkle::Hash {
    BASE64
        .decode(text.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn hashes(list: &Value) -> Vec<merkle::Hash> {
    list.as_array().unwrap().iter().map(hash).collect()
}

/// A signing server with `payments` revisions of one payment and a student
/// (events 1..=payments+1), checkpointed at each of `sizes` (made on the
/// stopped log by the server's own maker, then restarted).
async fn checkpointed_app(payments: u64, sizes: &[u64]) -> TestApp {
    let app = spawn_app_with(|s| {
        s.log_origin = ORIGIN.into();
        s.signing_key = Some(Arc::new(signer()));
    })
    .await;
    app.accept_jodo(&jodo_student("registered", "e-s", "S1", 1_700_000_000))
        .await;
    for i in 0..payments {
        app.accept_jodo(&jodo_payment(
            if i == 0 { "added" } else { "updated" },
            &format!("e-p{i}"),
            "pay_1",
            Some("S1"),
            &format!("{}.00", 100 + i),
            1_700_000_001 + i as i64,
        ))
        .await;
    }
    let (dir, config) = app.stop().await;
    {
        let conn = registrar::db::open_rw(&config.db_path).unwrap();
        for &size in sizes {
            let root = registrar::log::tree::stored_root(&conn, size).unwrap();
            config
                .checkpoint_maker()
                .make_if_moved(&conn, size, root, 1)
                .unwrap();
        }
    }
    start(dir, config).await
}

#[tokio::test]
async fn before_the_first_checkpoint_nothing_is_proven_and_the_answers_say_why() {
    let app = spawn_app().await;
    app.accept_jodo(&jodo_student("registered", "e-1", "S1", 1_700_000_000))
        .await;
    let (status, body) = json(app.get("/v1/log/checkpoint").await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, body) = json(app.get("/v1/log/key").await).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not signed"));
    let (status, body) = json(app.get("/v1/log/proof/inclusion?seq=1&tree_size=1").await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("beyond_checkpoint")),
        "{body}"
    );
    let (status, body) = json(app.get("/v1/events/1/bundle").await).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not covered by a checkpoint"));
    let listed = app.get_json("/v1/log/checkpoints").await;
    assert_eq!(listed["checkpoints"], serde_json::json!([]));
    app.stop().await;
}

#[tokio::test]
async fn every_proof_served_checks_against_the_signed_checkpoint_and_no_size_past_it_is_proven() {
    let app = checkpointed_app(4, &[5]).await;
    let verifier = signer().verifier();
    let r = app.get("/v1/log/key").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let key_text = r.text().await.unwrap();
    assert_eq!(VerifierKey::parse(key_text.trim()).unwrap(), verifier);

    let r = app.get("/v1/log/checkpoint").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let note_text = r.text().await.unwrap();
    let cp = note::open(note_text.as_bytes(), &verifier).unwrap();
    assert_eq!((cp.origin.as_str(), cp.size), (ORIGIN, 5));
    let listed = app.get_json("/v1/log/checkpoints?after_size=0").await;
    let list = listed["checkpoints"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{listed}");
    assert_eq!(list[0]["size"], 5);
    assert_eq!(list[0]["note"], note_text.as_str());
    assert_eq!(hash(&list[0]["root"]), cp.root);
    assert_eq!(list[0]["signed"], true);
    let none = app.get_json("/v1/log/checkpoints?after_size=5").await;
    assert_eq!(none["checkpoints"], serde_json::json!([]));

    // Every seq at every size up to the checkpoint, against roots the
    // consistency proofs tie to the signed one.
    for size in 1..=5u64 {
        let mut root = None;
        for seq in 1..=size {
            let p = app
                .get_json(&format!(
                    "/v1/log/proof/inclusion?seq={seq}&tree_size={size}"
                ))
                .await;
            assert_eq!(
                (p["seq"].as_u64(), p["leaf_index"].as_u64()),
                (Some(seq), Some(seq - 1))
            );
            assert_eq!(p["tree_size"], size);
            let event = app.get_json(&format!("/v1/events/{seq}")).await;
            let conn = app.conn();
            let e = registrar::log::get(&conn, seq).unwrap().unwrap();
            assert_eq!(event["seq"], seq);
            let leaf = merkle::entry_bytes(seq, &e.source, e.received_at, &e.body_hash);
            assert_eq!(hash(&p["leaf_hash"]), merkle::leaf_hash(&leaf));
            // The root this path leads to: the same for every seq.
            let path = hashes(&p["hashes"]);
            let r = root_from_path(&hash(&p["leaf_hash"]), seq - 1, size, &path);
            assert_eq!(*root.get_or_insert(r), r);
            merkle::verify_inclusion(&hash(&p["leaf_hash"]), seq - 1, size, &path, &r).unwrap();
        }
        let c = app
            .get_json(&format!("/v1/log/proof/consistency?from={size}&to=5"))
            .await;
        assert_eq!(
            (c["from"].as_u64(), c["to"].as_u64()),
            (Some(size), Some(5))
        );
        merkle::verify_consistency(size, 5, &root.unwrap(), &cp.root, &hashes(&c["hashes"]))
            .unwrap();
    }

    for (path, code) in [
        (
            "/v1/log/proof/inclusion?seq=1&tree_size=6",
            "beyond_checkpoint",
        ),
        (
            "/v1/log/proof/inclusion?seq=6&tree_size=5",
            "invalid_request",
        ),
        (
            "/v1/log/proof/inclusion?seq=0&tree_size=5",
            "invalid_request",
        ),
        ("/v1/log/proof/inclusion?seq=1", "invalid_request"),
        ("/v1/log/proof/consistency?from=2&to=6", "beyond_checkpoint"),
        ("/v1/log/proof/consistency?from=4&to=3", "invalid_request"),
        ("/v1/log/checkpoints?after_size=-1", "invalid_request"),
    ] {
        let (status, body) = json(app.get(path).await).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{path}: {body}"
        );
    }
    app.stop().await;
}

/// The root an inclusion path leads to (RFC 9162 §2.1.3.2's walk), so the
/// test can check the paths of one size all meet at one root.
fn root_from_path(
    leaf: &merkle::Hash,
    index: u64,
    size: u64,
    path: &[merkle::Hash],
) -> merkle::Hash {
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if fn_ & 1 == 1 || fn_ == sn {
            r = merkle::node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = merkle::node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    r
}

#[tokio::test]
async fn a_bundle_holds_the_exact_body_and_a_payments_bundle_every_revision() {
    let app = checkpointed_app(3, &[4]).await;
    let verifier = signer().verifier();
    for seq in 1..=4u64 {
        let b = app.get_json(&format!("/v1/events/{seq}/bundle")).await;
        let conn = app.conn();
        let e = registrar::log::get(&conn, seq).unwrap().unwrap();
        assert_eq!(BASE64.decode(b["body"].as_str().unwrap()).unwrap(), e.body);
        assert_eq!(b["body_hash"], hex::encode(e.body_hash));
        assert_eq!(
            (b["seq"].as_u64(), b["leaf_index"].as_u64()),
            (Some(seq), Some(seq - 1))
        );
        assert_eq!(b["tree_size"], 4);
        assert_eq!(b["redacted"], false);
        let cp = note::open(b["checkpoint"].as_str().unwrap().as_bytes(), &verifier).unwrap();
        let entry = BASE64.decode(b["entry"].as_str().unwrap()).unwrap();
        merkle::verify_inclusion(
            &merkle::leaf_hash(&entry),
            seq - 1,
            cp.size,
            &hashes(&b["inclusion"]),
            &cp.root,
        )
        .unwrap();
    }
    let (status, body) = json(app.get("/v1/events/5/bundle").await).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = json(app.get("/v1/events/6/bundle").await).await;
    assert_eq!(status, 404);

    // Revisions at seqs 2, 3 and 4: all covered.
    let p = app.get_json("/v1/payments/pay_1/bundle?min_seq=4").await;
    assert_eq!(p["payment_id"], "pay_1");
    let seqs: Vec<u64> = p["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2, 3, 4]);
    assert_eq!(p["revisions"][0], app.get_json("/v1/events/2/bundle").await);
    let (status, _) = json(app.get("/v1/payments/nope/bundle").await).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn proof_check_passes_a_served_bundle_and_names_the_link_a_changed_byte_breaks() {
    let app = checkpointed_app(2, &[3]).await;
    let key = signer().verifier().to_string();
    let dir = tempfile::tempdir().unwrap();
    let bundle = app.get_json("/v1/events/2/bundle").await;
    app.stop().await;
    let check = |name: &str, b: &Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec(b).unwrap()).unwrap();
        path.to_str().unwrap().to_string()
    };
    let good = check("good.json", &bundle);
    let out = registrar(&["proof", "check", &good, "--key", &key], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("ok: seq 2 is leaf 1 of {ORIGIN}'s tree of 3 leaves, signed by {key}")
    );
    // The key from a file, as `key generate` printed it.
    let key_file = dir.path().join("verifier.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let out = registrar(
        &["proof", "check", &good, "--key", key_file.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");

    let mut body = BASE64.decode(bundle["body"].as_str().unwrap()).unwrap();
    body[10] ^= 1;
    let mut changed = bundle.clone();
    changed["body"] = BASE64.encode(&body).into();
    let mut resized = bundle.clone();
    resized["tree_size"] = 4.into();
    let note_text = bundle["checkpoint"].as_str().unwrap();
    let mut forged = bundle.clone();
    let last = note_text.len() - 3;
    let c = if note_text.as_bytes()[last] == b'A' {
        "B"
    } else {
        "A"
    };
    forged["checkpoint"] = format!("{}{c}{}", &note_text[..last], &note_text[last + 1..]).into();
    for (name, b, link) in [
        ("body.json", changed, "body"),
        ("size.json", resized, "root"),
        ("signature.json", forged, "signature"),
    ] {
        let path = check(name, &b);
        let out = registrar(&["proof", "check", &path, "--key", &key], &[]).await;
        assert_eq!(out.code, 1, "{name}: {out:?}");
        assert!(
            out.stdout.starts_with(&format!("FAILED: {link}: ")),
            "{name}: {out:?}"
        );
    }
    // Not a bundle, and not a key: usage errors.
    let garbage = check("garbage.json", &serde_json::json!({"seq": 1}));
    let out = registrar(&["proof", "check", &garbage, "--key", &key], &[]).await;
    assert_eq!(out.code, 2, "{out:?}");
    let out = registrar(&["proof", "check", &good, "--key", "nope"], &[]).await;
    assert_eq!(out.code, 2, "{out:?}");
}

#[tokio::test]
async fn proof_consistency_passes_an_old_checkpoint_of_the_same_log_and_fails_a_fork() {
    let app = checkpointed_app(3, &[2, 4]).await;
    let key = signer().verifier().to_string();
    let dir = tempfile::tempdir().unwrap();
    let listed = app.get_json("/v1/log/checkpoints").await;
    let notes: Vec<&str> = listed["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["note"].as_str().unwrap())
        .collect();
    assert_eq!(notes.len(), 2, "{listed}");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (old, new) = (file("old", notes[0]), file("new", notes[1]));
    let out = proof_consistency(&old, &new, &app.base, &key).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("ok: {ORIGIN}'s tree of 2 leaves is a prefix of its tree of 4 leaves")
    );
    // The same size and the empty prefix hold too.
    let out = proof_consistency(&new, &new, &app.base, &key).await;
    assert_eq!(out.code, 0, "{out:?}");

    // A checkpoint of size 2 signed over another root: the log it names
    // was rewritten (or forked) before the newer one.
    let forged = note::sign(
        &note::Checkpoint::new(ORIGIN, 2, [9; 32]).unwrap(),
        &signer(),
    );
    let fork = file("fork", &forged);
    let out = proof_consistency(&fork, &new, &app.base, &key).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .starts_with("FAILED: the tree of 2 leaves is not a prefix of the tree of 4"),
        "{out:?}"
    );
    // A note another key signed fails by its signature; the wrong order
    // and a TLS URL are usage errors.
    let other = SigningKey::from_seed(ORIGIN, &[8; 32]).unwrap();
    let stranger = file(
        "stranger",
        &note::sign(&note::Checkpoint::new(ORIGIN, 2, [9; 32]).unwrap(), &other),
    );
    let out = proof_consistency(&stranger, &new, &app.base, &key).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.starts_with("FAILED: the old checkpoint"),
        "{out:?}"
    );
    let out = proof_consistency(&new, &old, &app.base, &key).await;
    assert_eq!(out.code, 2, "{out:?}");
    let out = proof_consistency(&old, &new, "https://example.com", &key).await;
    assert_eq!(out.code, 2, "{out:?}");
    app.stop().await;
}

/// `registrar proof consistency OLD NEW --url URL --key KEY`.
async fn proof_consistency(old: &str, new: &str, url: &str, key: &str) -> CliOutput {
    registrar(
        &["proof", "consistency", old, new, "--url", url, "--key", key],
        &[],
    )
    .await
}
