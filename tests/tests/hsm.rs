//! The checkpoint key in a PKCS#11 token: the real `ledger` against SoftHSM2, each test
//! with tokens of its own in a temporary directory. Signatures are checked with the
//! ledger's client library and, independently, with ed25519-dalek over the note text; the
//! token itself is inspected with cryptoki by the `pkcs11-probe` binary.

use base64::prelude::*;
use ed25519_dalek::{Signature, VerifyingKey};
use ledger_client::checkpoint::verify_checkpoint;
use ledger_e2e::softhsm::{write_secret, SoftHsm, TOKEN};
use ledger_e2e::{agent, get, post, Ledger};
use sha2::{Digest, Sha256};
use std::path::Path;

const OCTET: &str = "application/octet-stream";
const ORIGIN: &str = "localhost/artifacts";
const PROBE: &str = env!("CARGO_BIN_EXE_pkcs11-probe");

fn add(l: &Ledger, log: &str, entry: &[u8]) -> serde_json::Value {
    let r = post(&agent(), &l.url(&format!("/{log}/add")), OCTET, entry).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn checkpoint(l: &Ledger, log: &str) -> Vec<u8> {
    let r = get(&agent(), &l.url(&format!("/{log}/checkpoint"))).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.body
}

/// Verifies the log's signature on a checkpoint with SHA-256 and ed25519-dalek alone, from
/// the vkey's bytes (c2sp.org/signed-note): no signed-note parser, no ledger code. Returns
/// the tree size.
fn verify_independently(note: &[u8], vkey: &str) -> u64 {
    let mut parts = vkey.splitn(3, '+');
    let (name, id_hex, key_b64) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let key = BASE64_STANDARD.decode(key_b64).unwrap();
    assert_eq!(key.len(), 33, "vkey key bytes");
    assert_eq!(key[0], 0x01, "Ed25519 signature type");
    // Key ID: the first four bytes of SHA-256(name || "\n" || type || public key).
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(&key);
    let id = h.finalize()[..4].to_vec();
    assert_eq!(hex(&id), id_hex, "key ID in the vkey");

    let blank = note.windows(2).position(|w| w == b"\n\n").unwrap();
    let (text, sigs) = (&note[..blank + 1], &note[blank + 2..]);
    let prefix = format!("\u{2014} {name} ");
    // Several keys share the name during a rotation: the key ID picks the line.
    let sig = std::str::from_utf8(sigs)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| BASE64_STANDARD.decode(l).unwrap())
        .find(|sig| sig.len() >= 4 && sig[..4] == id[..])
        .unwrap_or_else(|| panic!("no signature by {vkey}: {}", String::from_utf8_lossy(note)));
    assert_eq!(sig.len(), 4 + 64);
    let public = VerifyingKey::from_bytes(key[1..].try_into().unwrap()).unwrap();
    let signature = Signature::from_slice(&sig[4..]).unwrap();
    public
        .verify_strict(text, &signature)
        .expect("the signature verifies under the vkey's public key");
    let text = std::str::from_utf8(text).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(name), "origin line");
    lines.next().unwrap().parse().unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Args for a ledger hosting `artifacts` (key in the token, labelled `label`) and `models`
/// (key file), plus `extra`.
fn args(hsm: &SoftHsm, label: &str) -> Vec<String> {
    let mut a: Vec<String> = ["--log", "artifacts", "--log", "models", "--no-embedded-tsa"]
        .map(String::from)
        .to_vec();
    a.extend(hsm.serve_args(&[("artifacts", label)]));
    a
}

fn assert_mentions(stderr: &str, needles: &[&str]) {
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}:\n{stderr}");
    }
}

#[test]
fn a_ledger_whose_key_is_in_softhsm_serves_checkpoints_that_verify_offline_with_the_vkey_hsm_keygen_printed(
) {
    let hsm = SoftHsm::new();
    let vkey_file = hsm.dir.path().join("artifacts.vkey");
    let out = hsm.keygen(
        "checkpoints",
        ORIGIN,
        &["--out-vkey", vkey_file.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(vkey.starts_with("localhost/artifacts+"), "{vkey}");
    assert_eq!(std::fs::read_to_string(&vkey_file).unwrap().trim(), vkey);

    let data = tempfile::tempdir().unwrap();
    let l = hsm.start_ledger(data.path(), &args(&hsm, "checkpoints"));
    assert_eq!(
        l.vkey("artifacts"),
        vkey,
        "the banner shows the token's vkey"
    );
    // The log in the token has no key file; the other log keeps its own.
    assert!(!data.path().join("keys/artifacts.key").exists());
    let models_vkey = std::fs::read_to_string(data.path().join("keys/models.vkey")).unwrap();
    assert_eq!(l.vkey("models"), models_vkey.trim());

    // The empty tree's checkpoint was signed in the token too.
    assert_eq!(verify_independently(&checkpoint(&l, "artifacts"), &vkey), 0);
    for i in 0..3u8 {
        let j = add(&l, "artifacts", &[b'e', i]);
        assert_eq!(j["index"], i as u64);
        let note = j["checkpoint"].as_str().unwrap().as_bytes();
        let cp = verify_checkpoint(note, &[&vkey], Some(ORIGIN)).unwrap();
        assert_eq!(cp.size, i as u64 + 1);
        assert_eq!(verify_independently(note, &vkey), i as u64 + 1);
    }
    let note = checkpoint(&l, "artifacts");
    assert_eq!(
        verify_checkpoint(&note, &[&vkey], Some(ORIGIN))
            .unwrap()
            .size,
        3
    );
    assert_eq!(verify_independently(&note, &vkey), 3);
    // The file-keyed log beside it signs with its file key, not the token's.
    let m = add(&l, "models", b"m");
    let m_note = m["checkpoint"].as_str().unwrap().as_bytes();
    verify_checkpoint(m_note, &[l.vkey("models")], None).unwrap();
    assert!(verify_checkpoint(m_note, &[&vkey], None).is_err());
}

#[test]
fn entries_survive_a_restart_with_the_hsm_key() {
    let hsm = SoftHsm::new();
    let vkey = hsm.new_key("ckpt", ORIGIN);
    let data = tempfile::tempdir().unwrap();
    let mut l = hsm.start_ledger(data.path(), &args(&hsm, "ckpt"));
    for i in 0..5u8 {
        add(&l, "artifacts", &[b'r', i]);
    }
    let before = verify_checkpoint(&checkpoint(&l, "artifacts"), &[&vkey], Some(ORIGIN)).unwrap();
    l.kill9();

    let l = hsm.start_ledger(data.path(), &args(&hsm, "ckpt"));
    assert_eq!(l.vkey("artifacts"), vkey);
    let after = verify_checkpoint(&checkpoint(&l, "artifacts"), &[&vkey], Some(ORIGIN)).unwrap();
    assert_eq!((after.size, after.root), (before.size, before.root));
    // Old entries are found again, new ones go after them, signed in the token.
    let again = add(&l, "artifacts", &[b'r', 2]);
    assert_eq!(
        (again["index"].as_u64(), again["duplicate"].as_bool()),
        (Some(2), Some(true))
    );
    let next = add(&l, "artifacts", b"after restart");
    assert_eq!(next["index"], 5);
    assert_eq!(
        verify_independently(next["checkpoint"].as_str().unwrap().as_bytes(), &vkey),
        6
    );
}

#[test]
fn the_private_key_cannot_be_exported_from_the_token() {
    let hsm = SoftHsm::new();
    let vkey = hsm.new_key("ckpt", ORIGIN);
    let p = hsm.probe(Path::new(PROBE), &["inspect", "--label", "ckpt"]);
    let flags = &p["flags"];
    assert_eq!(flags["sensitive"], true, "{p}");
    assert_eq!(flags["extractable"], false, "{p}");
    assert_eq!(flags["always_sensitive"], true, "{p}");
    assert_eq!(flags["never_extractable"], true, "{p}");
    assert_eq!(flags["token"], true, "{p}");
    assert_eq!(flags["private"], true, "{p}");
    assert_eq!(flags["sign"], true, "{p}");
    // C_GetAttributeValue(CKA_VALUE): the token declares it sensitive and returns nothing.
    assert_eq!(p["value_info"], "sensitive", "{p}");
    assert_ne!(p["value_read"], "returned 1 attribute(s)", "{p}");
    // Nor can it be wrapped out under a key of our choosing, or made extractable.
    assert!(p["wrap"].as_str().unwrap().starts_with("refused"), "{p}");
    assert!(
        p["set_extractable"]
            .as_str()
            .unwrap()
            .starts_with("refused"),
        "{p}"
    );
    // The public half in the token is the key in the vkey.
    let key = BASE64_STANDARD
        .decode(vkey.splitn(3, '+').nth(2).unwrap())
        .unwrap();
    assert_eq!(p["public_key"], hex(&key[1..]), "{p}");
}

#[test]
fn a_wrong_pin_stops_the_server_with_a_message_naming_the_problem() {
    let hsm = SoftHsm::new();
    hsm.new_key("ckpt", ORIGIN);
    let wrong = hsm.dir.path().join("wrong.pin");
    write_secret(&wrong, "9999");
    let mut a = args(&hsm, "ckpt");
    let i = a.iter().position(|x| x == "--hsm-pin-file").unwrap();
    a[i + 1] = wrong.display().to_string();
    let data = tempfile::tempdir().unwrap();
    let err = hsm.ledger_fails(data.path(), &a);
    assert_mentions(&err, &["wrong PIN for token \"ledger\"", "wrong.pin"]);
}

#[test]
fn a_missing_token_stops_the_server_with_a_message_naming_the_problem() {
    let hsm = SoftHsm::new();
    hsm.new_key("ckpt", ORIGIN);
    let mut a = args(&hsm, "ckpt");
    let i = a.iter().position(|x| x == "--hsm-token").unwrap();
    a[i + 1] = "no-such-token".into();
    let data = tempfile::tempdir().unwrap();
    let err = hsm.ledger_fails(data.path(), &a);
    assert_mentions(
        &err,
        &["no PKCS#11 token labelled \"no-such-token\"", "\"ledger\""],
    );
    // Nor does a module that is not there load.
    let mut a = args(&hsm, "ckpt");
    let i = a.iter().position(|x| x == "--hsm-module").unwrap();
    a[i + 1] = "/nonexistent/libpkcs11.so".into();
    let err = hsm.ledger_fails(data.path(), &a);
    assert_mentions(
        &err,
        &["PKCS#11 module /nonexistent/libpkcs11.so does not exist"],
    );
}

#[test]
fn a_missing_key_label_stops_the_server_with_a_message_naming_the_problem() {
    let hsm = SoftHsm::new();
    hsm.new_key("ckpt", ORIGIN);
    let data = tempfile::tempdir().unwrap();
    let err = hsm.ledger_fails(data.path(), &args(&hsm, "not-there"));
    assert_mentions(
        &err,
        &[
            "log artifacts",
            "no private key labelled \"not-there\" on the token",
            "token \"ledger\"",
        ],
    );
    // And a key for a log the ledger does not host.
    let mut a = args(&hsm, "ckpt");
    a.extend(["--hsm-key".to_string(), "nolog=ckpt".to_string()]);
    let err = hsm.ledger_fails(data.path(), &a);
    assert_mentions(&err, &["--hsm-key names log \"nolog\""]);
}

#[test]
fn a_world_readable_pin_file_stops_the_server_with_a_message_naming_the_problem() {
    use std::os::unix::fs::PermissionsExt;
    let hsm = SoftHsm::new();
    hsm.new_key("ckpt", ORIGIN);
    std::fs::set_permissions(&hsm.pin_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let err = hsm.ledger_fails(data.path(), &args(&hsm, "ckpt"));
    assert_mentions(
        &err,
        &[&hsm.pin_file.display().to_string(), "mode 644", "chmod 600"],
    );
    // hsm-keygen refuses it as well.
    let out = hsm.keygen("other", ORIGIN, &[]);
    assert!(!out.status.success());
    assert_mentions(&String::from_utf8_lossy(&out.stderr), &["chmod 600"]);
}

#[test]
fn an_hsm_key_different_from_the_one_that_signed_the_log_stops_the_server() {
    let hsm = SoftHsm::new();
    let a_vkey = hsm.new_key("key-a", ORIGIN);
    let b_vkey = hsm.new_key("key-b", ORIGIN);
    assert_ne!(a_vkey, b_vkey);
    let data = tempfile::tempdir().unwrap();
    let l = hsm.start_ledger(data.path(), &args(&hsm, "key-a"));
    add(&l, "artifacts", b"signed by a");
    drop(l);

    let err = hsm.ledger_fails(data.path(), &args(&hsm, "key-b"));
    let a_id = a_vkey.split('+').nth(1).unwrap();
    assert_mentions(
        &err,
        &[
            "log artifacts: its latest checkpoint (tree size 1) does not verify with the configured PKCS#11 key \"key-b\"",
            &b_vkey,
            &format!("signed by {ORIGIN}+{a_id}"),
            "Refusing to sign this log with a different key",
        ],
    );
    // The right key still opens it, untouched.
    let l = hsm.start_ledger(data.path(), &args(&hsm, "key-a"));
    assert_eq!(
        verify_independently(&checkpoint(&l, "artifacts"), &a_vkey),
        1
    );
    drop(l);

    // A log begun with a key file does not silently move to the token either...
    let files = tempfile::tempdir().unwrap();
    let plain = ["--log", "artifacts", "--log", "models", "--no-embedded-tsa"].map(String::from);
    let l = hsm.start_ledger(files.path(), &plain);
    add(&l, "artifacts", b"signed by the key file");
    drop(l);
    let err = hsm.ledger_fails(files.path(), &args(&hsm, "key-a"));
    assert_mentions(
        &err,
        &["does not verify with the configured PKCS#11 key \"key-a\""],
    );
    // ...nor one begun in the token back to a new key file: none is generated for a log
    // that has signed checkpoints.
    let err = hsm.ledger_fails(data.path(), &plain);
    assert_mentions(
        &err,
        &[
            "artifacts.key is missing but the log has signed checkpoints",
            "configure its HSM key",
        ],
    );
    assert!(!data.path().join("keys/artifacts.key").exists());
}

#[test]
fn hsm_keygen_refuses_a_duplicate_label() {
    let hsm = SoftHsm::new();
    let vkey = hsm.new_key("ckpt", ORIGIN);
    let out = hsm.keygen("ckpt", "other.example/log", &[]);
    assert!(!out.status.success());
    assert_mentions(
        &String::from_utf8_lossy(&out.stderr),
        &["token \"ledger\" already holds 2 object(s) labelled \"ckpt\""],
    );
    assert!(out.stdout.is_empty());
    // The first key is still the one and only: a ledger signs with it.
    let data = tempfile::tempdir().unwrap();
    let l = hsm.start_ledger(data.path(), &args(&hsm, "ckpt"));
    assert_eq!(l.vkey("artifacts"), vkey);
}

#[test]
fn hsm_keygen_refuses_bad_input_before_touching_the_token() {
    let hsm = SoftHsm::new();
    let existing = hsm.dir.path().join("exists.vkey");
    std::fs::write(&existing, "keep me\n").unwrap();
    for (label, origin, extra, needle) in [
        ("k", "has space", vec![], "not a valid key name"),
        ("k", "a+b", vec![], "not a valid key name"),
        ("", ORIGIN, vec![], "key label \"\""),
        (" k", ORIGIN, vec![], "without surrounding spaces"),
        (
            "k",
            ORIGIN,
            vec!["--out-vkey", existing.to_str().unwrap()],
            "already exists",
        ),
    ] {
        let out = hsm.keygen(label, origin, &extra);
        assert!(!out.status.success(), "{label:?} {origin:?} accepted");
        assert_mentions(&String::from_utf8_lossy(&out.stderr), &[needle]);
    }
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me\n");
    // None of them created a key.
    let out = hsm.keygen("k", ORIGIN, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn keys_made_by_other_pkcs11_tools_are_used_if_ed25519_and_refused_otherwise() {
    let hsm = SoftHsm::new();
    let tool = |key_type: &str, label: &str| {
        let out = hsm
            .command("pkcs11-tool")
            .arg("--module")
            .arg(&hsm.module)
            .args(["--token-label", TOKEN, "--login", "--pin", "1234"])
            .args(["--keypairgen", "--key-type", key_type, "--label", label])
            .output()
            .expect("pkcs11-tool (apt-get install opensc)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // OpenSC names the curve by PrintableString rather than OID, and sets its own CKA_ID.
    tool("EC:edwards25519", "opensc-ed25519");
    tool("EC:prime256v1", "opensc-p256");
    let data = tempfile::tempdir().unwrap();
    let err = hsm.ledger_fails(data.path(), &args(&hsm, "opensc-p256"));
    assert_mentions(&err, &["\"opensc-p256\"", "not Ed25519"]);
    let l = hsm.start_ledger(data.path(), &args(&hsm, "opensc-ed25519"));
    let vkey = l.vkey("artifacts").to_string();
    let j = add(&l, "artifacts", b"x");
    assert_eq!(
        verify_independently(j["checkpoint"].as_str().unwrap().as_bytes(), &vkey),
        1
    );
}

#[test]
fn a_key_removed_from_the_token_while_serving_fails_its_batch_and_the_ledger_keeps_serving() {
    let hsm = SoftHsm::new();
    let vkey = hsm.new_key("ckpt", ORIGIN);
    let data = tempfile::tempdir().unwrap();
    let l = hsm.start_ledger(data.path(), &args(&hsm, "ckpt"));
    add(&l, "artifacts", b"before");
    let gone = hsm.probe(Path::new(PROBE), &["destroy", "--label", "ckpt"]);
    assert_eq!(gone["destroyed"], 2, "{gone}");

    let r = post(&agent(), &l.url("/artifacts/add"), OCTET, b"after").unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("PKCS#11"), "{}", r.text());
    // Reads go on from the last signed tree, and the other log still takes writes.
    let cp = verify_checkpoint(&checkpoint(&l, "artifacts"), &[&vkey], Some(ORIGIN)).unwrap();
    assert_eq!(cp.size, 1);
    add(&l, "models", b"still writable");
}

#[test]
fn the_signer_signs_many_checkpoints_in_one_session_checking_each_signature() {
    // The probe's `bench` is the measurement BENCHMARKS.md quotes; here it only has to run:
    // every signature it makes through the ledger's signer is verified before use.
    let hsm = SoftHsm::new();
    hsm.new_key("ckpt", ORIGIN);
    let p = hsm.probe(
        Path::new(PROBE),
        &["bench", "--label", "ckpt", "--origin", ORIGIN, "--n", "200"],
    );
    println!("signing latency over 200 signatures (µs): {p}");
    assert_eq!(p["n"], 200, "{p}");
    assert!(p["ledger_signer_us"]["mean"].as_f64().is_some(), "{p}");
}

#[test]
fn a_key_in_the_token_rotates_to_another_key_in_the_token_as_a_logged_event() {
    let hsm = SoftHsm::new();
    let a_vkey = hsm.new_key("key-a", ORIGIN);
    let b_vkey = hsm.new_key("key-b", ORIGIN);
    let data = tempfile::tempdir().unwrap();
    let l = hsm.start_ledger(data.path(), &args(&hsm, "key-a"));
    add(&l, "artifacts", b"signed by a");
    drop(l);

    let rotate = |extra: &[&str]| {
        let out = hsm
            .command(ledger_e2e::binary("ledger"))
            .args([
                "rotate-key",
                "--log",
                "artifacts",
                "--reason",
                "move to key b",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .args([
                "--hsm-module",
                hsm.module.to_str().unwrap(),
                "--hsm-token",
                TOKEN,
            ])
            .args(["--hsm-pin-file", hsm.pin_file.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The key in force must be the one named; the two must differ.
    let (ok, _, err) = rotate(&["--hsm-key", "key-b", "--new-hsm-key", "key-a"]);
    assert!(
        !ok && err.contains("does not verify with the configured PKCS#11 key \"key-b\""),
        "{err}"
    );
    let (ok, _, err) = rotate(&["--hsm-key", "key-a", "--new-hsm-key", "key-a"]);
    assert!(!ok && err.contains("the same key"), "{err}");
    let (ok, _, err) = rotate(&["--hsm-key", "key-a", "--new-hsm-key", "no-such-key"]);
    assert!(!ok && err.contains("no-such-key"), "{err}");
    let (ok, out, err) = rotate(&["--hsm-key", "key-a", "--new-hsm-key", "key-b"]);
    assert!(ok, "{err}");
    assert_eq!(out, b_vkey);

    // The retired key is refused; the new one serves, and the checkpoint that first holds
    // the rotation verifies under each key, independently of the ledger's code.
    let err = hsm.ledger_fails(data.path(), &args(&hsm, "key-a"));
    assert_mentions(&err, &["a retired key must not sign again"]);
    let l = hsm.start_ledger(data.path(), &args(&hsm, "key-b"));
    let cp = checkpoint(&l, "artifacts");
    assert_eq!(verify_independently(&cp, &a_vkey), 2);
    assert_eq!(verify_independently(&cp, &b_vkey), 2);
    add(&l, "artifacts", b"signed by b");
    let cp = checkpoint(&l, "artifacts");
    assert_eq!(verify_independently(&cp, &b_vkey), 3);
    assert!(verify_checkpoint(&cp, &[&a_vkey], None).is_err());
    let h = get(&agent(), &l.url("/artifacts/key-history")).unwrap();
    let file: ledger_client::rotation::HistoryFile = serde_json::from_slice(&h.body).unwrap();
    let history = file.verify(&a_vkey).unwrap();
    assert_eq!(history.current(), b_vkey);
    assert!(history.verify_checkpoint(&cp).is_ok());
}
