//! `ledgerctl` registry commands (push, pull, show, history, lineage, promote, alias)
//! against the real `ledger` binary: uploads in chunks and resumed, downloads checked
//! against the log and the digest, refusals with the right exit code.
//! Exit codes: 0 ok, 1 verification failed, 2 usage/input error, 3 network/server error.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ledger_client::digest::Digest;
use ledger_e2e::{agent, binary, post, Ledger};
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {}\n{}", self.stdout, self.stderr)
        })
    }
}

fn ledgerctl(args: &[&str]) -> Run {
    let out = Command::new(binary("ledgerctl"))
        .args(args)
        // Nothing here may depend on (or write to) the user's own trust store.
        .env(
            "HOME",
            std::env::temp_dir().join("ledgerctl-registry-test-no-home"),
        )
        .stdin(Stdio::null())
        .output()
        .expect("run ledgerctl");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn expect(r: &Run, code: i32) {
    assert_eq!(
        r.code, code,
        "exit code {} (want {code})\nstdout: {}\nstderr: {}",
        r.code, r.stdout, r.stderr
    );
    if code != 0 {
        assert!(
            !r.stderr.trim().is_empty(),
            "a failure must explain itself on stderr"
        );
    }
}

#[track_caller]
fn ok_json(args: &[&str]) -> Value {
    let r = ledgerctl(args);
    expect(&r, 0);
    let j = r.json();
    assert_eq!(j["ok"], true, "{j}");
    j
}

struct Env {
    dir: tempfile::TempDir,
    ledger: Ledger,
    vkey: PathBuf,
}

impl Env {
    fn server(&self) -> &str {
        &self.ledger.base
    }
    fn vkey(&self) -> &str {
        self.vkey.to_str().unwrap()
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(&dir.path().join("data"), &[]);
    let vkey = dir.path().join("artifacts.vkey");
    std::fs::write(&vkey, format!("{}\n", ledger.vkey("artifacts"))).unwrap();
    Env { dir, ledger, vkey }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes `size` pseudo-random bytes (xorshift from `seed`) a buffer at a time.
fn random_file(path: &Path, size: u64, seed: u64) {
    let mut w = BufWriter::new(File::create(path).unwrap());
    // Spread the seed so that nearby seeds give unrelated streams (xorshift needs x != 0).
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = size;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        let n = left.min(8) as usize;
        w.write_all(&b[..n]).unwrap();
        left -= n as u64;
    }
    w.flush().unwrap();
}

fn digest_of(path: &Path) -> Digest {
    Digest::of(&std::fs::read(path).unwrap())
}

/// Compares two files a buffer at a time.
fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// Files in `dir` whose name contains `part`.
fn files_containing(dir: &Path, part: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect()
}

fn push_args<'a>(
    env: &'a Env,
    file: &'a Path,
    name: &'a str,
    version: &'a str,
    kind: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec![
        "--json",
        "push",
        s(file),
        "--server",
        env.server(),
        "--name",
        name,
        "--version",
        version,
        "--kind",
        kind,
        "--actor",
        "alice@example.com",
    ];
    a.extend_from_slice(extra);
    a
}

fn push(env: &Env, file: &Path, name: &str, version: &str, extra: &[&str]) -> Value {
    ok_json(&push_args(env, file, name, version, "model", extra))
}

#[test]
fn a_multi_chunk_push_pulls_back_verified_and_a_second_push_uploads_nothing() {
    let env = start();
    let file = env.path("model.bin");
    let size = 20 * MIB;
    random_file(&file, size, 1);
    let digest = digest_of(&file).to_string();

    let j = push(
        &env,
        &file,
        "acme/resnet",
        "1.0.0",
        &[
            "--chunk-size",
            "1048576",
            "--vkey",
            env.vkey(),
            "--meta",
            "framework=pytorch",
        ],
    );
    assert_eq!(j["digest"], digest);
    assert_eq!(j["size"], size);
    assert_eq!(j["uploaded"], true);
    assert_eq!(j["uploaded_bytes"], size);
    assert_eq!(j["resumed_from"], Value::Null);
    assert_eq!(j["existing"], false);
    assert_eq!(j["log_verified"], true);
    assert_eq!(j["checkpoint"]["origin"], "localhost/artifacts");
    assert_eq!(j["event"]["type"], "published");
    assert_eq!(j["event"]["meta"]["framework"], "pytorch");
    assert!(j["tlog_proof"]
        .as_str()
        .unwrap()
        .starts_with("c2sp.org/tlog-proof@v1"));
    let index = j["index"].as_u64().unwrap();
    assert!(
        files_containing(env.dir.path(), ".ledger-upload").is_empty(),
        "a finished upload leaves no state file"
    );

    // Verified pull: same bytes, nothing left over.
    let out = env.path("pulled/model.bin");
    std::fs::create_dir(env.path("pulled")).unwrap();
    let p = ok_json(&[
        "--json",
        "pull",
        "--server",
        env.server(),
        "--name",
        "acme/resnet",
        "--version",
        "1.0.0",
        "-o",
        s(&out),
        "--vkey",
        env.vkey(),
    ]);
    assert!(same_bytes(&file, &out), "pulled bytes differ");
    assert_eq!(p["digest"], digest);
    assert_eq!(p["log_verified"], true);
    assert_eq!(p["index"], index);
    assert_eq!(p["downloaded_bytes"], size);
    assert_eq!(p["resumed_from"], Value::Null);
    assert_eq!(p["stage"], "draft");
    assert_eq!(p["warnings"], json!([]));
    assert_eq!(
        files_containing(&env.path("pulled"), "").len(),
        1,
        "only the pulled file remains"
    );

    // The same file and version again: nothing uploaded, the original receipt.
    let again = push(&env, &file, "acme/resnet", "1.0.0", &["--vkey", env.vkey()]);
    assert_eq!(again["uploaded"], false);
    assert_eq!(again["uploaded_bytes"], 0);
    assert_eq!(again["existing"], true);
    assert_eq!(again["index"], index);
    assert_eq!(again["log_verified"], true);

    // Without a key the download is still digest-checked, and says the proof was not.
    let out2 = env.path("unverified.bin");
    let r = ledgerctl(&[
        "pull",
        "--server",
        env.server(),
        "--name",
        "acme/resnet",
        "--version",
        "1.0.0",
        "-o",
        s(&out2),
    ]);
    expect(&r, 0);
    assert!(r.stderr.contains("NOT checked"), "{}", r.stderr);
    assert!(r.stdout.contains("NOT checked"), "{}", r.stdout);
    assert!(same_bytes(&file, &out2));
}

#[test]
fn a_version_stays_bound_to_its_first_bytes() {
    let env = start();
    let (a, b) = (env.path("a.bin"), env.path("b.bin"));
    random_file(&a, 300_000, 2);
    random_file(&b, 300_000, 3);
    let first = push(&env, &a, "acme/bound", "1", &[]);
    let digest_a = first["digest"].as_str().unwrap().to_string();
    let digest_b = digest_of(&b).to_string();

    // Other bytes, not yet stored: refused before any of them is sent.
    let r = ledgerctl(&push_args(&env, &b, "acme/bound", "1", "model", &[]));
    expect(&r, 2);
    assert!(
        r.stderr.contains("bound to") && r.stderr.contains(&digest_a),
        "{}",
        r.stderr
    );
    let head = agent()
        .head(format!("{}/v2/acme/bound/blobs/{digest_b}", env.server()))
        .call()
        .unwrap();
    assert_eq!(
        head.status().as_u16(),
        404,
        "the refused bytes were uploaded"
    );

    // Once the bytes are stored (as another version), the server's own 409 is the answer.
    push(&env, &b, "acme/bound", "2", &[]);
    let r = ledgerctl(&push_args(&env, &b, "acme/bound", "1", "model", &[]));
    expect(&r, 2);
    assert!(r.stderr.contains("409"), "{}", r.stderr);
    assert!(r.stderr.contains("bound to"), "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["ok"], false);
    assert_eq!(j["error"]["kind"], "input_error");
}

/// Starts an upload session by hand and sends the first `upto` bytes of `file` in 1 MiB
/// chunks, as an interrupted `ledgerctl push` would have; returns the session's URL.
fn partial_upload(env: &Env, name: &str, file: &Path, upto: u64) -> String {
    let a = agent();
    let r = post(
        &a,
        &format!("{}/v2/{name}/blobs/uploads/", env.server()),
        "application/octet-stream",
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let location = format!("{}{}", env.server(), r.header("location").unwrap());
    let mut f = File::open(file).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut off = 0;
    while off < upto {
        let n = (upto - off).min(MIB) as usize;
        f.read_exact(&mut buf[..n]).unwrap();
        let resp = a
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{off}-{}", off + n as u64 - 1))
            .send(&buf[..n])
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        off += n as u64;
    }
    location
}

fn write_state(env: &Env, file: &Path, location: &str, digest: &Digest) {
    let meta = std::fs::metadata(file).unwrap();
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let state = json!({
        "server": env.server(),
        "location": location,
        "digest": digest.to_string(),
        "size": meta.len(),
        "mtime": mtime,
    });
    let mut p = file.as_os_str().to_os_string();
    p.push(".ledger-upload");
    std::fs::write(p, state.to_string()).unwrap();
}

#[test]
fn an_interrupted_push_continues_from_the_servers_offset() {
    let env = start();
    let file = env.path("data.bin");
    let size = 6 * MIB + 12_345;
    random_file(&file, size, 4);
    let digest = digest_of(&file);
    let location = partial_upload(&env, "acme/data", &file, 3 * MIB);
    write_state(&env, &file, &location, &digest);

    let j = ok_json(&push_args(
        &env,
        &file,
        "acme/data",
        "2024-01",
        "dataset",
        &["--chunk-size", "1048576", "--vkey", env.vkey()],
    ));
    assert_eq!(j["resumed_from"], 3 * MIB);
    assert_eq!(j["uploaded_bytes"], size - 3 * MIB);
    assert_eq!(j["digest"], digest.to_string());
    assert!(files_containing(env.dir.path(), ".ledger-upload").is_empty());
    let out = env.path("data.out");
    ok_json(&[
        "--json",
        "pull",
        "--server",
        env.server(),
        "--name",
        "acme/data",
        "--version",
        "2024-01",
        "-o",
        s(&out),
        "--vkey",
        env.vkey(),
    ]);
    assert!(
        same_bytes(&file, &out),
        "the resumed upload stored other bytes"
    );

    // A session the server no longer has: start over, from byte 0.
    let file2 = env.path("data2.bin");
    random_file(&file2, 2 * MIB, 5);
    let gone = partial_upload(&env, "acme/data", &file2, MIB);
    let del = agent().delete(&gone).call().unwrap();
    assert_eq!(del.status().as_u16(), 204);
    write_state(&env, &file2, &gone, &digest_of(&file2));
    let r = ledgerctl(&push_args(&env, &file2, "acme/data", "2", "dataset", &[]));
    expect(&r, 0);
    assert!(r.stderr.contains("expired"), "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["resumed_from"], Value::Null);
    assert_eq!(j["uploaded_bytes"], 2 * MIB);

    // A session for bytes the file no longer has: not resumed.
    let file3 = env.path("data3.bin");
    random_file(&file3, 2 * MIB, 6);
    let stale = partial_upload(&env, "acme/data", &file3, MIB);
    write_state(&env, &file3, &stale, &Digest::of(b"earlier content"));
    let r = ledgerctl(&push_args(&env, &file3, "acme/data", "3", "dataset", &[]));
    expect(&r, 0);
    assert!(r.stderr.contains("changed"), "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["resumed_from"], Value::Null);
    assert_eq!(j["uploaded_bytes"], 2 * MIB);
}

fn pull_args<'a>(env: &'a Env, name: &'a str, version: &'a str, out: &'a Path) -> Vec<&'a str> {
    vec![
        "--json",
        "pull",
        "--server",
        env.server(),
        "--name",
        name,
        "--version",
        version,
        "-o",
        s(out),
    ]
}

#[test]
fn pull_writes_nothing_that_does_not_verify() {
    let env = start();
    let file = env.path("w.bin");
    let size = 3 * MIB + 7;
    random_file(&file, size, 7);
    let digest = digest_of(&file);
    push(&env, &file, "acme/w", "1", &[]);
    let out = env.path("w.out");

    // A key of the same name that the log does not sign with.
    let wrong = env.path("wrong.vkey");
    ledger::keys::generate(&env.path("wrong.key"), &wrong, "localhost/artifacts").unwrap();
    let mut args = pull_args(&env, "acme/w", "1", &out);
    args.extend(["--vkey", s(&wrong)]);
    let r = ledgerctl(&args);
    expect(&r, 1);
    assert_eq!(r.json()["error"]["kind"], "verification_failed");
    assert!(!out.exists());

    // A partial download left by an earlier run is continued with a range request.
    let partial = env.path(&format!(".w.out.{}.ledger-partial", &digest.hex()[..16]));
    {
        let mut src = File::open(&file).unwrap();
        let mut head = vec![0u8; MIB as usize];
        src.read_exact(&mut head).unwrap();
        std::fs::write(&partial, &head).unwrap();
    }
    let mut args = pull_args(&env, "acme/w", "1", &out);
    args.extend(["--vkey", env.vkey()]);
    let j = ok_json(&args);
    assert_eq!(j["resumed_from"], MIB);
    assert_eq!(j["downloaded_bytes"], size - MIB);
    assert!(same_bytes(&file, &out));
    assert!(!partial.exists());
    std::fs::remove_file(&out).unwrap();

    // Bytes changed on the server's disk: the digest check catches it, nothing is kept.
    let hex = digest.hex();
    let blob = env
        .ledger
        .data_dir
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(&hex);
    let original = std::fs::read(&blob).unwrap();
    let mut corrupt = original.clone();
    corrupt[MIB as usize + 5] ^= 0xff;
    std::fs::write(&blob, &corrupt).unwrap();
    let mut args = pull_args(&env, "acme/w", "1", &out);
    args.extend(["--vkey", env.vkey()]);
    let r = ledgerctl(&args);
    expect(&r, 1);
    assert!(r.stderr.contains(&digest.to_string()), "{}", r.stderr);
    assert!(!out.exists(), "a corrupt download was written");
    assert!(
        files_containing(env.dir.path(), "ledger-partial").is_empty(),
        "corrupt bytes were kept"
    );
    std::fs::write(&blob, &original).unwrap();

    // An unknown version is the caller's mistake.
    let r = ledgerctl(&pull_args(&env, "acme/w", "9", &out));
    expect(&r, 2);
    assert!(r.stderr.contains("not published"), "{}", r.stderr);

    // Withdrawn versions: deprecated pulls with a warning, tombstoned is refused.
    for to in ["approved", "released", "deprecated"] {
        ok_json(&[
            "--json",
            "promote",
            "--server",
            env.server(),
            "--name",
            "acme/w",
            "--version",
            "1",
            "--to",
            to,
            "--actor",
            "bob",
        ]);
    }
    let r = ledgerctl(&pull_args(&env, "acme/w", "1", &out));
    expect(&r, 0);
    assert!(r.stderr.contains("deprecated"), "{}", r.stderr);
    assert_eq!(r.json()["warnings"][0], "acme/w@1 is deprecated");
    std::fs::remove_file(&out).unwrap();

    let a = agent();
    let t = post(
        &a,
        &format!("{}/registry/v1/tombstone", env.server()),
        "application/json",
        json!({"name": "acme/w", "version": "1", "reason": "leaked PII", "actor": "carol"})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(t.status, 201, "{}", t.text());
    let r = ledgerctl(&pull_args(&env, "acme/w", "1", &out));
    expect(&r, 1);
    assert!(
        r.stderr.contains("tombstoned") && r.stderr.contains("leaked PII"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
}

#[test]
fn promote_alias_show_history_and_lineage() {
    let env = start();
    let (m, d) = (env.path("m.bin"), env.path("d.bin"));
    random_file(&m, 100_000, 8);
    random_file(&d, 50_000, 9);
    ok_json(&push_args(&env, &d, "acme/data", "2024-01", "dataset", &[]));
    let published = push(&env, &m, "acme/model", "1", &[]);
    let m_digest = published["digest"].as_str().unwrap().to_string();
    let tree_after_publish = published["index"].as_u64().unwrap() + 1;
    let vkey = env.vkey().to_string();
    let server = env.server().to_string();
    let trust = env.path("trust");
    let base = |cmd: &'static str| -> Vec<String> {
        ["--json", cmd, "--server", &server, "--name", "acme/model"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: Vec<String>| -> Value {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok_json(&refs)
    };
    let with = |mut v: Vec<String>, more: &[&str]| -> Vec<String> {
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };

    // promote: the receipt names the transition, verified with the key and trust store.
    let p = run(with(
        base("promote"),
        &[
            "--version",
            "1",
            "--to",
            "approved",
            "--reason",
            "eval passed",
            "--actor",
            "bob",
            "--vkey",
            &vkey,
            "--state",
            s(&trust),
        ],
    ));
    assert_eq!(
        (p["from"].as_str(), p["to"].as_str()),
        (Some("draft"), Some("approved"))
    );
    assert_eq!(p["event"]["type"], "lifecycle");
    assert_eq!(p["event"]["reason"], "eval passed");
    assert_eq!(p["log_verified"], true);
    assert_eq!(p["trust"]["result"], "first_use");
    let p = run(with(
        base("promote"),
        &[
            "--version",
            "1",
            "--to",
            "released",
            "--actor",
            "bob",
            "--vkey",
            &vkey,
            "--state",
            s(&trust),
        ],
    ));
    assert_eq!(p["from"], "approved");
    assert_eq!(p["trust"]["result"], "advanced");
    // Backwards is refused by the server's state machine: the 409 reason is shown.
    let r = ledgerctl(&[
        "promote",
        "--server",
        &server,
        "--name",
        "acme/model",
        "--version",
        "1",
        "--to",
        "approved",
        "--actor",
        "bob",
    ]);
    expect(&r, 2);
    assert!(
        r.stderr.contains("409") && r.stderr.contains("cannot move"),
        "{}",
        r.stderr
    );

    // alias: set, then show it everywhere.
    let al = run(with(
        base("alias"),
        &[
            "--alias",
            "production",
            "--version",
            "1",
            "--actor",
            "bob",
            "--vkey",
            &vkey,
        ],
    ));
    assert_eq!(al["event"]["type"], "alias_moved");
    assert_eq!(al["event"]["to"], "1");
    assert_eq!(al["version"], "1");

    let v = run(with(base("show"), &["--version", "1"]));
    assert_eq!(v["version"]["stage"], "released");
    assert_eq!(v["version"]["digest"], m_digest);
    assert_eq!(v["aliases"], json!(["production"]));
    let human = ledgerctl(&[
        "show",
        "--server",
        &server,
        "--name",
        "acme/model",
        "--version",
        "1",
    ]);
    expect(&human, 0);
    assert!(
        human.stdout.contains("released") && human.stdout.contains("production"),
        "{}",
        human.stdout
    );
    // As of the tree right after publishing, the version was a draft.
    let then = run(with(
        base("show"),
        &["--version", "1", "--as-of", &tree_after_publish.to_string()],
    ));
    assert_eq!(then["version"]["stage"], "draft");
    assert_eq!(then["aliases"], json!([]));

    push(&env, &d, "acme/model", "2", &[]);
    let all = run(base("show"));
    let versions: Vec<&str> = all["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions.len(), 2);
    assert!(versions.contains(&"1") && versions.contains(&"2"));
    assert_eq!(all["aliases"][0]["alias"], "production");
    assert_eq!(all["aliases"][0]["version"], "1");

    // history: the version's chain, its hash links and (with the key) its newest entry.
    let h = run(with(base("history"), &["--version", "1", "--vkey", &vkey]));
    let types: Vec<&str> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["published", "lifecycle", "lifecycle"]);
    assert_eq!(h["chain_verified"], true);
    assert_eq!(h["log_verified"], true);
    assert_eq!(h["subject"], "acme/model@1");

    // alias removal, and the alias's own history.
    let rm = run(with(
        base("alias"),
        &["--alias", "production", "--remove", "--actor", "bob"],
    ));
    assert_eq!(rm["version"], Value::Null);
    assert!(rm["event"].get("to").is_none(), "{}", rm["event"]);
    let ha = run(with(base("history"), &["--alias", "production"]));
    assert_eq!(ha["entries"].as_array().unwrap().len(), 2);
    assert_eq!(ha["log_verified"], false);

    // lineage: recorded through the API (no ledgerctl command writes it), read as a graph.
    let a = agent();
    let d_digest = digest_of(&d).to_string();
    let l = post(
        &a,
        &format!("{server}/registry/v1/lineage"),
        "application/json",
        json!({
            "name": "acme/model", "version": "1", "actor": "ci",
            "links": [
                {"rel": "trained_from", "artifact": {"name": "acme/data", "version": "2024-01", "digest": d_digest}},
                {"rel": "code_commit", "uri": "https://git.example/acme/model/commit/5f2c"},
            ],
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(l.status, 201, "{}", l.text());
    let g = run(with(base("lineage"), &["--version", "1"]));
    assert_eq!(g["root"], "acme/model@1");
    assert_eq!(g["edges"].as_array().unwrap().len(), 2);
    let tree = ledgerctl(&[
        "lineage",
        "--server",
        &server,
        "--name",
        "acme/model",
        "--version",
        "1",
    ]);
    expect(&tree, 0);
    assert!(tree.stdout.contains("came from:"), "{}", tree.stdout);
    assert!(
        tree.stdout
            .contains("trained_from acme/data@2024-01 (dataset, draft)"),
        "{}",
        tree.stdout
    );
    assert!(
        tree.stdout
            .contains("code_commit https://git.example/acme/model/commit/5f2c"),
        "{}",
        tree.stdout
    );
    let down = ledgerctl(&[
        "lineage",
        "--server",
        &server,
        "--name",
        "acme/data",
        "--version",
        "2024-01",
    ]);
    expect(&down, 0);
    assert!(
        down.stdout.contains("used by:") && down.stdout.contains("trained_from acme/model@1"),
        "{}",
        down.stdout
    );
    let edges = ledgerctl(&[
        "lineage",
        "--server",
        &server,
        "--name",
        "acme/model",
        "--version",
        "1",
        "--edges",
    ]);
    expect(&edges, 0);
    assert!(
        edges
            .stdout
            .contains("acme/model@1 -[trained_from]-> acme/data@2024-01"),
        "{}",
        edges.stdout
    );

    // The history now has four entries and still verifies end to end.
    let h = run(with(base("history"), &["--version", "1", "--vkey", &vkey]));
    assert_eq!(h["entries"].as_array().unwrap().len(), 4);
}

#[test]
fn bad_input_is_refused_before_anything_is_sent_and_a_dead_server_is_exit_3() {
    let env = start();
    let file = env.path("x.bin");
    random_file(&file, 1000, 10);
    // A port nobody listens on: bound, then released.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let push_to = |server: &str, file: &str, name: &str, extra: &[&str]| -> Run {
        let mut a = vec![
            "push",
            file,
            "--server",
            server,
            "--name",
            name,
            "--version",
            "1",
            "--kind",
            "model",
            "--actor",
            "alice",
        ];
        a.extend_from_slice(extra);
        ledgerctl(&a)
    };

    // Input errors win over the unreachable server: they are found first.
    let missing = env.path("missing.bin");
    expect(&push_to(&dead, s(&missing), "acme/x", &[]), 2);
    expect(&push_to(&dead, s(&file), "Acme/X", &[]), 2);
    expect(&push_to(&dead, s(&file), "acme/x-", &[]), 2);
    expect(
        &push_to(&dead, s(&file), "acme/x", &["--meta", "novalue"]),
        2,
    );
    expect(
        &push_to(&dead, s(&file), "acme/x", &["--media-type", "Not A Type"]),
        2,
    );
    expect(
        &push_to(&dead, s(&file), "acme/x", &["--vkey", s(&missing)]),
        2,
    );
    expect(&push_to("not-a-url", s(&file), "acme/x", &[]), 2);
    let r = ledgerctl(&[
        "push",
        s(&file),
        "--server",
        &dead,
        "--name",
        "acme/x",
        "--version",
        "1",
        "--kind",
        "weights",
        "--actor",
        "alice",
    ]);
    expect(&r, 2);
    let r = ledgerctl(&[
        "promote",
        "--server",
        &dead,
        "--name",
        "acme/x",
        "--version",
        "1",
        "--to",
        "shipped",
        "--actor",
        "bob",
    ]);
    expect(&r, 2);
    let r = ledgerctl(&[
        "alias",
        "--server",
        &dead,
        "--name",
        "acme/x",
        "--alias",
        "Prod",
        "--version",
        "1",
        "--actor",
        "bob",
    ]);
    expect(&r, 2);

    // Nothing listening: network failure.
    let r = push_to(&dead, s(&file), "acme/x", &["--json"]);
    expect(&r, 3);
    assert_eq!(r.json()["error"]["kind"], "server_error");
    let out = env.path("x.out");
    expect(
        &ledgerctl(&[
            "pull",
            "--server",
            &dead,
            "--name",
            "acme/x",
            "--version",
            "1",
            "-o",
            s(&out),
        ]),
        3,
    );
    expect(
        &ledgerctl(&["show", "--server", &dead, "--name", "acme/x"]),
        3,
    );
    expect(
        &ledgerctl(&[
            "history",
            "--server",
            &dead,
            "--name",
            "acme/x",
            "--version",
            "1",
        ]),
        3,
    );
    assert!(!out.exists());

    // And against the live server, unknown things are the caller's mistake.
    expect(
        &ledgerctl(&[
            "show",
            "--server",
            env.server(),
            "--name",
            "acme/x",
            "--version",
            "1",
        ]),
        2,
    );
    expect(
        &ledgerctl(&[
            "alias",
            "--server",
            env.server(),
            "--name",
            "acme/x",
            "--alias",
            "prod",
            "--version",
            "1",
            "--actor",
            "bob",
        ]),
        2,
    );
}

#[test]
fn push_signs_with_a_publisher_key_and_the_logged_signature_verifies_offline() {
    let env = start();
    let file = env.path("model.bin");
    random_file(&file, 300_000, 7);
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "release.example/ci");
    let key_file = env.path("release.key");
    std::fs::write(&key_file, &skey).unwrap();
    use std::os::unix::fs::PermissionsExt;
    // Readable by others: refused before anything is sent.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = ledgerctl(&push_args(
        &env,
        &file,
        "acme/signed",
        "1",
        "model",
        &["--sign-key", s(&key_file)],
    ));
    expect(&r, 2);
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let j = ok_json(&push_args(
        &env,
        &file,
        "acme/signed",
        "1",
        "model",
        &["--sign-key", s(&key_file), "--vkey", env.vkey()],
    ));
    let keyid = vkey.splitn(3, '+').take(2).collect::<Vec<_>>().join("+");
    assert_eq!(j["signed_by"], keyid.as_str(), "{j}");
    // The event, as proven in the log, carries a signature the publisher's vkey verifies.
    let event: ledger_client::event::Event = serde_json::from_value(j["event"].clone()).unwrap();
    let ledger_client::event::Event::Published(p) = event else {
        panic!("{j}")
    };
    let keys = ledger_client::publisher::PublisherKeys::parse(&[&vkey]).unwrap();
    assert_eq!(
        keys.check(&p),
        ledger_client::publisher::Verdict::Signed(keyid.clone())
    );

    // Unsigned push of other bytes: no signature, and the trusted keys say so.
    let other = env.path("other.bin");
    random_file(&other, 1000, 8);
    let j = ok_json(&push_args(&env, &other, "acme/signed", "2", "model", &[]));
    assert_eq!(j["signed_by"], Value::Null, "{j}");

    // A key file that is not a key: refused before any byte is sent (exit 2).
    let bad = env.path("bad.key");
    std::fs::write(&bad, "PRIVATE+KEY+nonsense").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let third = env.path("third.bin");
    random_file(&third, 1000, 9);
    let r = ledgerctl(&push_args(
        &env,
        &third,
        "acme/signed",
        "3",
        "model",
        &["--sign-key", s(&bad)],
    ));
    expect(&r, 2);
    assert!(r.stderr.contains("bad.key"), "{}", r.stderr);
    let r = ledgerctl(&[
        "--json",
        "show",
        "--server",
        env.server(),
        "--name",
        "acme/signed",
        "--version",
        "3",
    ]);
    assert_ne!(r.code, 0, "nothing was published: {}", r.stdout);
}
