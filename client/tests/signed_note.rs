//! Signed notes and checkpoints: the c2sp.org/signed-note example, Go's
//! golang.org/x/mod/sumdb/note test vectors, and checkpoint policy.

use ledger_client::checkpoint::{
    parse_vkey, read_vkey_file, sign_checkpoint, verify_checkpoint, verify_note, CheckpointError,
    VkeyError, MAX_NOTE_SIZE,
};
use ledger_client::merkle::leaf_hash;
use signed_note::{Note, StandardSigner};

const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter_note() -> String {
    format!("{PETER_TEXT}\n{PETER_SIG}")
}

fn sign_text(skey: &str, text: &[u8]) -> Vec<u8> {
    let signer = StandardSigner::new(skey).unwrap();
    let mut n = Note::new(text, &[]).unwrap();
    n.add_sigs(&[&signer]).unwrap();
    n.to_bytes()
}

fn keypair(name: &str) -> (String, String) {
    signed_note::generate_key(&mut rand::rngs::OsRng, name)
}

#[test]
fn spec_example_note_verifies() {
    let v = verify_note(SPEC_NOTE.as_bytes(), &[SPEC_VKEY]).unwrap();
    assert_eq!(v.text, b"This is an example message.\n");
    assert_eq!(v.signers, vec![("example.com/foo".to_string(), 0x530d903a)]);
    let k = parse_vkey(SPEC_VKEY).unwrap();
    assert_eq!((k.name(), k.key_id()), ("example.com/foo", 0x530d903a));
}

#[test]
fn go_note_vector_verifies() {
    let v = verify_note(peter_note().as_bytes(), &[PETER_VKEY]).unwrap();
    assert_eq!(v.text, PETER_TEXT.as_bytes());
    assert_eq!(v.signers, vec![("PeterNeumann".to_string(), 0xc74f20a3)]);
}

#[test]
fn go_note_vector_signing_is_byte_identical() {
    // Ed25519 (RFC 8032) is deterministic, so signing the same text with the same key must
    // reproduce Go's signature exactly.
    assert_eq!(
        sign_text(PETER_SKEY, PETER_TEXT.as_bytes()),
        peter_note().as_bytes()
    );
}

#[test]
fn unknown_signatures_are_ignored_and_known_ones_all_checked() {
    let both = format!("{PETER_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    // Enoch unknown: ignored.
    let v = verify_note(both.as_bytes(), &[PETER_VKEY]).unwrap();
    assert_eq!(v.signers.len(), 1);
    // Both known: both verified.
    let v = verify_note(both.as_bytes(), &[PETER_VKEY, ENOCH_VKEY]).unwrap();
    assert_eq!(v.signers.len(), 2);
    // Only an unknown key signed: rejected.
    let enoch_only = format!("{PETER_TEXT}\n{ENOCH_SIG}");
    assert!(matches!(
        verify_note(enoch_only.as_bytes(), &[PETER_VKEY]),
        Err(CheckpointError::NoTrustedSignature { .. })
    ));
    // A known key's signature that fails rejects the whole note, even next to a good one.
    let tampered = PETER_SIG.replace("x08go/ZJ", "x08go/ZK");
    let bad = format!("{PETER_TEXT}\n{tampered}{ENOCH_SIG}");
    match verify_note(bad.as_bytes(), &[PETER_VKEY, ENOCH_VKEY]) {
        Err(CheckpointError::BadSignature { name, id }) => {
            assert_eq!((name.as_str(), id), ("PeterNeumann", 0xc74f20a3))
        }
        other => panic!("expected BadSignature, got {other:?}"),
    }
}

#[test]
fn right_name_wrong_key_is_not_trusted() {
    // Same key name, different key: different key ID, so it is an unknown key.
    let (skey, _) = keypair("PeterNeumann");
    let note = sign_text(&skey, PETER_TEXT.as_bytes());
    assert!(matches!(
        verify_note(&note, &[PETER_VKEY]),
        Err(CheckpointError::NoTrustedSignature { .. })
    ));
    // Right name and key ID but someone else's signature bytes.
    let (skey2, _) = keypair("PeterNeumann");
    let other = String::from_utf8(sign_text(&skey2, PETER_TEXT.as_bytes())).unwrap();
    let other_sig = other.rsplit_once("\n\n").unwrap().1;
    let b64 = other_sig.rsplit_once(' ').unwrap().1.trim_end();
    let mut raw = base64_decode(b64);
    raw[..4].copy_from_slice(&0xc74f20a3u32.to_be_bytes());
    let forged = format!(
        "{PETER_TEXT}\n\u{2014} PeterNeumann {}\n",
        base64_encode(&raw)
    );
    assert!(matches!(
        verify_note(forged.as_bytes(), &[PETER_VKEY]),
        Err(CheckpointError::BadSignature { .. })
    ));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::prelude::*;
    BASE64_STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::prelude::*;
    BASE64_STANDARD.encode(b)
}

#[test]
fn malformed_notes_are_rejected_with_a_reason() {
    let good = peter_note();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "no blank line",
            format!("{PETER_TEXT}{PETER_SIG}").into_bytes(),
            "no empty line",
        ),
        ("text only", PETER_TEXT.as_bytes().to_vec(), "no empty line"),
        (
            "missing final newline",
            good.trim_end_matches('\n').as_bytes().to_vec(),
            "does not end with a newline",
        ),
        (
            "control character",
            format!("\x01{good}").into_bytes(),
            "control character U+0001",
        ),
        (
            "carriage return",
            good.replace('\n', "\r\n").into_bytes(),
            "control character U+000D",
        ),
        (
            "tab",
            good.replacen("If you", "If\tyou", 1).into_bytes(),
            "control character U+0009",
        ),
        (
            "not UTF-8",
            [&[0xff][..], good.as_bytes()].concat(),
            "not valid UTF-8",
        ),
        (
            "bad base64",
            good.replace("x08go/ZJ", "x08go/Z!").into_bytes(),
            "not valid base64",
        ),
        (
            "truncated signature",
            format!("{PETER_TEXT}\n\u{2014} PeterNeumann AAAA\n").into_bytes(),
            "less than a 4-byte key ID",
        ),
        (
            "no em dash",
            good.replace('\u{2014}', "-").into_bytes(),
            "em dash",
        ),
        (
            "space in key name",
            good.replace("PeterNeumann", "Peter Neumann").into_bytes(),
            "invalid key name",
        ),
        (
            "plus in key name",
            good.replace("PeterNeumann", "Peter+Neumann").into_bytes(),
            "invalid key name",
        ),
        (
            "empty text",
            format!("\n\n{PETER_SIG}").into_bytes(),
            "note text is empty",
        ),
        (
            "blank line after signatures",
            format!("{good}\n").into_bytes(),
            "no signature lines",
        ),
        (
            "too many signatures",
            format!("{PETER_TEXT}\n{}", PETER_SIG.repeat(101)).into_bytes(),
            "more than 100 signature lines",
        ),
    ];
    for (what, note, reason) in cases {
        match verify_note(&note, &[PETER_VKEY]) {
            Err(CheckpointError::MalformedNote(m)) => {
                assert!(m.contains(reason), "{what}: message {m:?} lacks {reason:?}")
            }
            other => panic!("{what}: expected MalformedNote, got {other:?}"),
        }
    }
    let huge = format!("{}\n{PETER_SIG}", "a".repeat(MAX_NOTE_SIZE));
    assert!(matches!(
        verify_note(huge.as_bytes(), &[PETER_VKEY]),
        Err(CheckpointError::TooLarge { .. })
    ));
}

#[test]
fn text_may_contain_blank_lines_the_last_one_separates() {
    let text = b"para one\n\npara two\n";
    let note = sign_text(PETER_SKEY, text);
    assert_eq!(verify_note(&note, &[PETER_VKEY]).unwrap().text, text);
}

#[test]
fn vkey_errors_are_named() {
    type Check = fn(&VkeyError) -> bool;
    let cases: Vec<(&str, Check)> = vec![
        ("", |e| matches!(e, VkeyError::Empty)),
        ("PeterNeumann+c74f20a3", |e| {
            matches!(e, VkeyError::Parts(2))
        }),
        (
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW+x",
            |e| matches!(e, VkeyError::BadBase64(_)),
        ),
        ("PeterNeumann", |e| matches!(e, VkeyError::Parts(1))),
        (
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            |e| matches!(e, VkeyError::BadName(_)),
        ),
        (
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            |e| matches!(e, VkeyError::BadName(_)),
        ),
        (
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            |e| matches!(e, VkeyError::BadId(_)),
        ),
        (
            "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            |e| matches!(e, VkeyError::BadId(_)),
        ),
        (
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T!",
            |e| matches!(e, VkeyError::BadBase64(_)),
        ),
        (
            "PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWA",
            |e| matches!(e, VkeyError::UnsupportedAlgorithm(2)),
        ),
        (
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy",
            |e| matches!(e, VkeyError::BadKeyLength(_)),
        ),
        (
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            |e| matches!(e, VkeyError::IdMismatch { .. }),
        ),
        (
            "PeterNeumann2+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            |e| matches!(e, VkeyError::IdMismatch { .. }),
        ),
    ];
    for (vkey, ok) in cases {
        match parse_vkey(vkey) {
            Err(e) => assert!(ok(&e), "{vkey:?}: unexpected error {e:?}"),
            Ok(_) => panic!("{vkey:?} accepted"),
        }
    }
}

#[test]
fn vkey_that_is_not_a_curve_point_is_rejected() {
    use base64::prelude::*;
    // Some 32-byte strings are not the encoding of any Ed25519 point; with a correct key ID
    // they must still be refused, not panic.
    let mut bad_points = 0;
    for i in 0..=255u8 {
        let mut key = vec![0x01, i];
        key.extend_from_slice(&[0u8; 30]);
        key.push(0x80);
        let id = signed_note::key_id("n", &key);
        let vkey = format!("n+{id:08x}+{}", BASE64_STANDARD.encode(&key));
        if let Err(e) = parse_vkey(&vkey) {
            assert!(matches!(e, VkeyError::BadPublicKey), "{e:?}");
            bad_points += 1;
        }
    }
    assert!(bad_points > 0);
}

#[test]
fn vkey_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.vkey");
    std::fs::write(&p, format!("  {PETER_VKEY}\r\n\n")).unwrap();
    assert_eq!(read_vkey_file(&p).unwrap(), PETER_VKEY);
    std::fs::write(&p, format!("{PETER_VKEY}\n{ENOCH_VKEY}\n")).unwrap();
    assert!(matches!(
        read_vkey_file(&p),
        Err(VkeyError::FileLines { lines: 2, .. })
    ));
    std::fs::write(&p, "\n \n").unwrap();
    assert!(matches!(
        read_vkey_file(&p),
        Err(VkeyError::FileLines { lines: 0, .. })
    ));
    std::fs::write(&p, "PeterNeumann+zz+AA").unwrap();
    assert!(matches!(read_vkey_file(&p), Err(VkeyError::InFile { .. })));
    std::fs::write(&p, vec![b'a'; 20_000]).unwrap();
    assert!(matches!(
        read_vkey_file(&p),
        Err(VkeyError::FileTooLarge { .. })
    ));
    assert!(matches!(
        read_vkey_file(dir.path().join("missing")),
        Err(VkeyError::Io { .. })
    ));
}

// ---- checkpoints ----

const ORIGIN: &str = "example.com/artifacts";

#[test]
fn checkpoint_round_trip() {
    let (skey, vkey) = keypair(ORIGIN);
    let root = leaf_hash(b"x");
    let note = sign_checkpoint(&skey, ORIGIN, 1, &root, &[]).unwrap();
    let cp = verify_checkpoint(&note, &[&vkey], Some(ORIGIN)).unwrap();
    assert_eq!(cp.origin, ORIGIN);
    assert_eq!(cp.size, 1);
    assert_eq!(cp.root, root);
    assert_eq!(cp.note, note);
    assert!(cp.extensions().is_empty());
    // Without an expected origin the key name still pins it.
    verify_checkpoint(&note, &[&vkey], None).unwrap();
}

#[test]
fn checkpoint_extension_lines_are_accepted_and_kept() {
    let (skey, vkey) = keypair(ORIGIN);
    let note =
        sign_checkpoint(&skey, ORIGIN, 7, &leaf_hash(b"x"), &["ext one", "ext-two"]).unwrap();
    let cp = verify_checkpoint(&note, &[&vkey], Some(ORIGIN)).unwrap();
    assert_eq!(cp.extensions(), vec!["ext one", "ext-two"]);
    assert_eq!(cp.note, note);
}

#[test]
fn checkpoint_with_witness_cosignatures() {
    let (skey, vkey) = keypair(ORIGIN);
    let (wskey, wvkey) = keypair("witness.example/w1");
    let note = sign_checkpoint(&skey, ORIGIN, 3, &leaf_hash(b"x"), &[]).unwrap();
    let mut n = Note::from_bytes(&note).unwrap();
    n.add_sigs(&[&StandardSigner::new(&wskey).unwrap()])
        .unwrap();
    let cosigned = n.to_bytes();
    // Unknown witness signature ignored.
    verify_checkpoint(&cosigned, &[&vkey], Some(ORIGIN)).unwrap();
    // Both known: fine.
    verify_checkpoint(&cosigned, &[&vkey, &wvkey], Some(ORIGIN)).unwrap();
    // Only the witness key trusted: it verifies, but it is not the log's key.
    assert!(matches!(
        verify_checkpoint(&cosigned, &[&wvkey], Some(ORIGIN)),
        Err(CheckpointError::OriginKeyMismatch { .. })
    ));
}

#[test]
fn checkpoint_key_name_must_be_origin() {
    let (skey, vkey) = keypair("other.example/log");
    let body = format!(
        "{ORIGIN}\n5\n{}\n",
        ledger_client::merkle::hash_to_base64(&leaf_hash(b"x"))
    );
    let note = sign_text(&skey, body.as_bytes());
    assert!(matches!(
        verify_checkpoint(&note, &[&vkey], None),
        Err(CheckpointError::OriginKeyMismatch { .. })
    ));
    // And sign_checkpoint refuses to make such a checkpoint.
    assert!(matches!(
        sign_checkpoint(&skey, ORIGIN, 5, &leaf_hash(b"x"), &[]),
        Err(CheckpointError::Signing(_))
    ));
}

#[test]
fn checkpoint_expected_origin() {
    let (skey, vkey) = keypair(ORIGIN);
    let note = sign_checkpoint(&skey, ORIGIN, 1, &leaf_hash(b"x"), &[]).unwrap();
    assert!(matches!(
        verify_checkpoint(&note, &[&vkey], Some("example.com/other")),
        Err(CheckpointError::WrongOrigin { .. })
    ));
}

#[test]
fn checkpoint_tampering_is_detected() {
    let (skey, vkey) = keypair(ORIGIN);
    let note =
        String::from_utf8(sign_checkpoint(&skey, ORIGIN, 10, &leaf_hash(b"x"), &[]).unwrap())
            .unwrap();
    let bigger = note.replacen("\n10\n", "\n11\n", 1);
    assert!(matches!(
        verify_checkpoint(bigger.as_bytes(), &[&vkey], Some(ORIGIN)),
        Err(CheckpointError::BadSignature { .. })
    ));
    let (_, other_vkey) = keypair(ORIGIN);
    assert!(matches!(
        verify_checkpoint(note.as_bytes(), &[&other_vkey], Some(ORIGIN)),
        Err(CheckpointError::NoTrustedSignature { .. })
    ));
}

#[test]
fn malformed_checkpoint_bodies_are_rejected_even_when_signed() {
    let (skey, vkey) = keypair(ORIGIN);
    let h = ledger_client::merkle::hash_to_base64(&leaf_hash(b"x"));
    let bodies = [
        (format!("{ORIGIN}\n5\n"), "at least 3 lines"),
        (format!("{ORIGIN}\n05\n{h}\n"), "leading zeroes"),
        (format!("{ORIGIN}\n-5\n{h}\n"), "leading zeroes"),
        (format!("{ORIGIN}\n99999999999999999999\n{h}\n"), "64 bits"),
        (format!("{ORIGIN}\n5\nAAAA\n"), "root hash"),
        (format!("{ORIGIN}\n5\n{h}x\n"), "root hash"),
        (
            format!("{ORIGIN}\n5\n{h}\n\next\n"),
            "extension line 1 is empty",
        ),
    ];
    for (body, reason) in bodies {
        let note = sign_text(&skey, body.as_bytes());
        match verify_checkpoint(&note, &[&vkey], Some(ORIGIN)) {
            Err(CheckpointError::MalformedBody(m)) => {
                assert!(m.contains(reason), "{body:?}: {m:?} lacks {reason:?}")
            }
            other => panic!("{body:?}: expected MalformedBody, got {other:?}"),
        }
    }
}

#[test]
fn checkpoint_key_list_problems() {
    let (skey, vkey) = keypair(ORIGIN);
    let note = sign_checkpoint(&skey, ORIGIN, 1, &leaf_hash(b"x"), &[]).unwrap();
    assert!(matches!(
        verify_checkpoint(&note, &[], None),
        Err(CheckpointError::NoKeys)
    ));
    assert!(matches!(
        verify_checkpoint(&note, &[&vkey, "garbage"], None),
        Err(CheckpointError::BadVkey { index: 1, .. })
    ));
    // The same key twice is fine.
    verify_checkpoint(&note, &[&vkey, &vkey], None).unwrap();
}
