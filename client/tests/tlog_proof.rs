//! c2sp.org/tlog-proof@v1 files.

mod common;

use common::MemTree;
use ledger_client::checkpoint::{sign_checkpoint, CheckpointError};
use ledger_client::merkle::{hash_to_base64, leaf_hash, ProofError};
use ledger_client::tlog_proof::{TlogProof, TlogProofError, MAX_PROOF_HASHES, MAX_TLOG_PROOF_SIZE};

const ORIGIN: &str = "example.com/artifacts";

/// The example from c2sp.org/tlog-proof (its signatures are elided with "[...]", so it
/// parses but cannot verify).
const SPEC_EXAMPLE: &str = "c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

\u{2014} example.com/fancylog hI2DJw[...]1roloI=
\u{2014} witness1.example mJirIklj[...]qY9v2B/5bg==
\u{2014} witness2.example TnKKVHLX[...]xwYwrSjgow==
\u{2014} witness3.example S4X82uH5[...]3oEcROGLFQ==
";

struct Fixture {
    vkey: String,
    tree: MemTree,
    note: Vec<u8>,
}

fn fixture(size: u64) -> Fixture {
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
    let tree = MemTree::with_entries(size);
    let note = sign_checkpoint(&skey, ORIGIN, size, &tree.root(size), &[]).unwrap();
    Fixture { vkey, tree, note }
}

fn proof_for(f: &Fixture, index: u64) -> TlogProof {
    TlogProof {
        extra: None,
        index,
        inclusion_proof: f.tree.prove_inclusion(index, f.tree.size()),
        checkpoint: f.note.clone(),
    }
}

#[test]
fn spec_example_shape_parses_and_round_trips() {
    let p = TlogProof::parse(SPEC_EXAMPLE.as_bytes()).unwrap();
    assert_eq!(p.index, 73894);
    assert_eq!(p.inclusion_proof.len(), 5);
    assert_eq!(
        hash_to_base64(&p.inclusion_proof[0]),
        "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ="
    );
    assert_eq!(p.extra.as_ref().unwrap().len(), 39);
    assert!(p.checkpoint.starts_with(b"example.com/fancylog\n109482\n"));
    assert!(p.checkpoint.ends_with("3oEcROGLFQ==\n".as_bytes()));
    assert_eq!(p.to_bytes(), SPEC_EXAMPLE.as_bytes());
    // The elided signatures cannot verify: a malformed checkpoint, not a crash.
    let (_, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "example.com/fancylog");
    let err = p.verify(&leaf_hash(b"x"), &[&vkey], None).unwrap_err();
    assert!(err.is_malformed(), "{err}");
}

#[test]
fn round_trip_and_verify() {
    let f = fixture(21);
    for index in 0..21 {
        let mut p = proof_for(&f, index);
        if index % 2 == 0 {
            p.extra = Some(format!("extra data {index}").into_bytes());
        }
        let bytes = p.to_bytes();
        let parsed = TlogProof::parse(&bytes).unwrap();
        assert_eq!(parsed, p);
        assert_eq!(parsed.to_bytes(), bytes);
        let cp = parsed
            .verify(&f.tree.leaves[index as usize], &[&f.vkey], Some(ORIGIN))
            .unwrap();
        assert_eq!(cp.size, 21);
    }
    // Index 0 of a one-entry log has an empty inclusion proof.
    let f1 = fixture(1);
    let p = proof_for(&f1, 0);
    let bytes = p.to_bytes();
    assert!(bytes.starts_with(b"c2sp.org/tlog-proof@v1\nindex 0\n\n"));
    TlogProof::parse(&bytes)
        .unwrap()
        .verify(&f1.tree.leaves[0], &[&f1.vkey], None)
        .unwrap();
}

#[test]
fn verification_failures() {
    let f = fixture(10);
    let p = proof_for(&f, 3);
    let leaf = f.tree.leaves[3];
    // Wrong entry.
    assert!(matches!(
        p.verify(&leaf_hash(b"not it"), &[&f.vkey], None),
        Err(TlogProofError::Inclusion(ProofError::RootMismatch))
    ));
    // Index changed.
    let mut q = p.clone();
    q.index = 4;
    assert!(matches!(
        q.verify(&leaf, &[&f.vkey], None),
        Err(TlogProofError::Inclusion(_))
    ));
    q.index = 10;
    assert!(matches!(
        q.verify(&leaf, &[&f.vkey], None),
        Err(TlogProofError::Inclusion(
            ProofError::IndexOutOfRange { .. }
        ))
    ));
    // A proof hash flipped.
    let mut q = p.clone();
    q.inclusion_proof[1].0[0] ^= 1;
    assert!(matches!(
        q.verify(&leaf, &[&f.vkey], None),
        Err(TlogProofError::Inclusion(_))
    ));
    // Another log's key.
    let (_, other) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
    let e = p.verify(&leaf, &[&other], None).unwrap_err();
    assert!(matches!(
        e,
        TlogProofError::Checkpoint(CheckpointError::NoTrustedSignature { .. })
    ));
    assert!(!e.is_malformed());
    // Wrong origin.
    assert!(matches!(
        p.verify(&leaf, &[&f.vkey], Some("example.com/other")),
        Err(TlogProofError::Checkpoint(
            CheckpointError::WrongOrigin { .. }
        ))
    ));
    // Checkpoint body edited.
    let mut q = p.clone();
    let text = String::from_utf8(q.checkpoint.clone()).unwrap();
    q.checkpoint = text.replacen("\n10\n", "\n11\n", 1).into_bytes();
    assert!(matches!(
        q.verify(&leaf, &[&f.vkey], None),
        Err(TlogProofError::Checkpoint(
            CheckpointError::BadSignature { .. }
        ))
    ));
}

#[test]
fn malformed_proofs_are_rejected() {
    let f = fixture(10);
    let good = String::from_utf8(proof_for(&f, 3).to_bytes()).unwrap();
    let cp = String::from_utf8(f.note.clone()).unwrap();
    let (head, _) = good.split_once("\n\n").unwrap();
    let lines: Vec<&str> = head.lines().collect();
    let hashes = lines[2..].join("\n");
    let h = lines[2];
    type Check = fn(&TlogProofError) -> bool;
    let bad_line: Check = |e| matches!(e, TlogProofError::BadLine { .. });
    let cases: Vec<(&str, String, Check)> = vec![
        ("empty", String::new(), |e| {
            matches!(e, TlogProofError::BadHeader)
        }),
        ("wrong header", good.replacen("@v1", "@v2", 1), |e| {
            matches!(e, TlogProofError::BadHeader)
        }),
        ("header with space", good.replacen("@v1", "@v1 ", 1), |e| {
            matches!(e, TlogProofError::BadHeader)
        }),
        ("header only", "c2sp.org/tlog-proof@v1".into(), |e| {
            matches!(e, TlogProofError::BadHeader)
        }),
        ("CRLF", good.replace('\n', "\r\n"), |e| {
            matches!(e, TlogProofError::BadHeader)
        }),
        (
            "no index",
            format!("c2sp.org/tlog-proof@v1\n{hashes}\n\n{cp}"),
            |e| matches!(e, TlogProofError::MissingIndex),
        ),
        (
            "index missing at end",
            "c2sp.org/tlog-proof@v1\n".into(),
            |e| matches!(e, TlogProofError::MissingIndex),
        ),
        (
            "leading zero",
            good.replacen("index 3", "index 03", 1),
            bad_line,
        ),
        (
            "plus sign",
            good.replacen("index 3", "index +3", 1),
            bad_line,
        ),
        (
            "negative",
            good.replacen("index 3", "index -3", 1),
            bad_line,
        ),
        (
            "two spaces",
            good.replacen("index 3", "index  3", 1),
            bad_line,
        ),
        ("no space", good.replacen("index 3", "index3", 1), bad_line),
        (
            "empty index",
            good.replacen("index 3", "index ", 1),
            bad_line,
        ),
        (
            "index overflow",
            good.replacen("index 3", "index 18446744073709551616", 1),
            bad_line,
        ),
        (
            "extra without space",
            good.replacen("\nindex", "\nextra\nindex", 1),
            bad_line,
        ),
        (
            "extra bad base64",
            good.replacen("\nindex", "\nextra !!!!\nindex", 1),
            bad_line,
        ),
        (
            "extra unpadded base64",
            good.replacen("\nindex", "\nextra YQ\nindex", 1),
            bad_line,
        ),
        (
            "extra after index",
            good.replacen("index 3\n", "index 3\nextra YQ==\n", 1),
            bad_line,
        ),
        (
            "bad hash base64",
            good.replacen(h, &h.replace('=', "!"), 1),
            bad_line,
        ),
        ("short hash", good.replacen(h, "AAAA", 1), bad_line),
        (
            "long hash",
            good.replacen(h, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1),
            bad_line,
        ),
        (
            "hash with trailing space",
            good.replacen(h, &format!("{h} "), 1),
            bad_line,
        ),
        (
            "too many hashes",
            format!(
                "c2sp.org/tlog-proof@v1\nindex 3\n{}\n{cp}",
                format!("{h}\n").repeat(MAX_PROOF_HASHES + 1)
            ),
            |e| matches!(e, TlogProofError::TooManyHashes { max: 63 }),
        ),
        (
            "missing blank line",
            format!("c2sp.org/tlog-proof@v1\nindex 3\n{hashes}\n{cp}"),
            bad_line,
        ),
        (
            "ends after hashes",
            format!("c2sp.org/tlog-proof@v1\nindex 3\n{hashes}\n"),
            |e| matches!(e, TlogProofError::MissingBlankLine),
        ),
        (
            "ends after index",
            "c2sp.org/tlog-proof@v1\nindex 3".into(),
            |e| matches!(e, TlogProofError::MissingBlankLine),
        ),
        (
            "ends mid hash",
            format!("c2sp.org/tlog-proof@v1\nindex 3\n{h}"),
            |e| matches!(e, TlogProofError::MissingBlankLine),
        ),
        (
            "no checkpoint",
            format!("c2sp.org/tlog-proof@v1\nindex 3\n{hashes}\n\n"),
            |e| matches!(e, TlogProofError::MissingCheckpoint),
        ),
        (
            "too large",
            format!("{good}{}", "a".repeat(MAX_TLOG_PROOF_SIZE)),
            |e| matches!(e, TlogProofError::TooLarge { .. }),
        ),
    ];
    for (what, input, ok) in cases {
        match TlogProof::parse(input.as_bytes()) {
            Err(e) => {
                assert!(ok(&e), "{what}: unexpected error {e:?}");
                assert!(e.is_malformed(), "{what}");
            }
            Ok(p) => panic!("{what}: accepted as {p:?}"),
        }
    }
    // Exactly 63 hashes is still well-formed.
    let max = format!(
        "c2sp.org/tlog-proof@v1\nindex 3\n{}\n{cp}",
        format!("{h}\n").repeat(MAX_PROOF_HASHES)
    );
    assert_eq!(
        TlogProof::parse(max.as_bytes())
            .unwrap()
            .inclusion_proof
            .len(),
        63
    );
    // Bytes that are not UTF-8 in a hash line are an error, not a panic.
    let mut raw = good.clone().into_bytes();
    let at = good.find(h).unwrap();
    raw[at] = 0xff;
    assert!(TlogProof::parse(&raw).is_err());
}

#[test]
fn empty_extra_round_trips() {
    let f = fixture(2);
    let mut p = proof_for(&f, 1);
    p.extra = Some(Vec::new());
    assert_eq!(TlogProof::parse(&p.to_bytes()).unwrap(), p);
}
