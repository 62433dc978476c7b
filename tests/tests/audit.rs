//! `ledgerctl audit` against the real `ledger`: consistency between saved checkpoints, and
//! the registry replayed from the log alone compared with the ledger's catalog.

use base64::prelude::*;
use ledger_client::event::{Event, Lifecycle, Prev, Stage};
use ledger_e2e::{agent, post, Ledger};
use serde_json::json;

use ledger_e2e::ledgerctl;

use ledger_e2e::registry_write as registry;

fn publish(l: &Ledger, name: &str, version: &str, bytes: &[u8]) -> serde_json::Value {
    let d = ledger_e2e::upload_blob(l, name, bytes).to_string();
    registry(
        l,
        "publish",
        json!({"name": name, "version": version, "kind": "model", "digest": d, "actor": "ci"}),
    )
}

fn add(l: &Ledger, entry: &[u8]) {
    let r = post(
        &agent(),
        &l.url("/artifacts/add"),
        "application/octet-stream",
        entry,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A registry with versions in several stages, aliases (one removed), a tombstone, an
/// entry the catalog rejects and an opaque entry.
fn fill(l: &Ledger) {
    let p1 = publish(l, "models/a", "1", b"a1");
    let t = |v: &str, to: &str| {
        registry(
            l,
            "lifecycle",
            json!({"name": "models/a", "version": v, "to": to, "actor": "r"}),
        )
    };
    t("1", "approved");
    t("1", "released");
    publish(l, "models/a", "2", b"a2");
    t("2", "revoked");
    publish(l, "models/b", "1", b"b1");
    let alias = |v: Option<&str>| {
        let mut b = json!({"name": "models/a", "alias": "production", "actor": "r"});
        if let Some(v) = v {
            b["version"] = json!(v);
        }
        registry(l, "alias", b)
    };
    alias(Some("1"));
    registry(
        l,
        "alias",
        json!({"name": "models/a", "alias": "canary", "version": "1", "actor": "r"}),
    );
    alias(None);
    registry(
        l,
        "tombstone",
        json!({"name": "models/b", "version": "1", "reason": "licence withdrawn", "actor": "legal"}),
    );
    // A well-formed transition that names a stale head: logged, and rejected by the
    // catalog as it must be by the replay.
    let first = BASE64_STANDARD
        .decode(p1["entry"].as_str().unwrap())
        .unwrap();
    let stale = Event::Lifecycle(Lifecycle {
        name: "models/a".into(),
        version: "1".into(),
        from: Stage::Draft,
        to: Stage::Approved,
        reason: None,
        prev: Prev::of(p1["index"].as_u64().unwrap(), &first),
        actor: "mallory".into(),
        time: 1,
    });
    add(l, &stale.encode());
    add(l, b"an opaque entry, not a registry event");
}

#[test]
fn the_registry_replayed_from_the_log_alone_agrees_with_the_catalog_until_the_catalog_lies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let l = Ledger::start(&data, &[]);
    fill(&l);
    let vkey = data.join("keys/artifacts.vkey");
    let replay = |l: &Ledger| {
        ledgerctl(&[
            "audit",
            "replay",
            "--server",
            &l.url(""),
            "--vkey",
            vkey.to_str().unwrap(),
        ])
    };
    let (code, out, err) = replay(&l);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("(1 rejected, 1 opaque): 3 versions, 1 aliases"),
        "{out}"
    );
    assert!(out.contains("the catalog agrees"), "{out}");

    // The catalog changed behind the log's back: the replay names the difference.
    drop(l);
    {
        let rocks =
            ledger::store::rocks::RocksDb::open(&data.join("db"), &["artifacts".into()], 1 << 20)
                .unwrap();
        let (db, cf) = rocks.derived("artifacts", "catalog");
        let cf = db.cf_handle(&cf).unwrap();
        let key = [&b"v:models/a\0"[..], b"2"].concat();
        let mut v: serde_json::Value =
            serde_json::from_slice(&db.get_cf(&cf, &key).unwrap().unwrap()).unwrap();
        assert_eq!(v["stage"], "revoked");
        v["stage"] = json!("released");
        db.put_cf(&cf, &key, serde_json::to_vec(&v).unwrap())
            .unwrap();
    }
    let l = Ledger::start(&data, &[]);
    let (code, out, err) = replay(&l);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("models/a@2 stage: the log says revoked, the catalog released"),
        "{err}"
    );
}

#[test]
fn checkpoints_saved_at_two_times_are_proven_consistent_and_a_forged_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let l = Ledger::start(&data, &[]);
    let log = l.url("/artifacts");
    let vkey = data.join("keys/artifacts.vkey");
    let v = vkey.to_str().unwrap();
    let save = |name: &str| {
        let path = dir.path().join(name);
        let (code, out, err) = ledgerctl(&[
            "checkpoint",
            "--log",
            &log,
            "--vkey",
            v,
            "--no-state",
            "--out",
            path.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{out}{err}");
        path.to_str().unwrap().to_string()
    };
    add(&l, b"one");
    let a = save("a.checkpoint");
    for i in 0..300 {
        add(&l, format!("entry {i}").as_bytes());
    }
    let b = save("b.checkpoint");
    add(&l, b"more");
    for (from, to) in [(&a, Some(&b)), (&b, Some(&a)), (&a, None)] {
        let mut args = vec![
            "audit",
            "consistency",
            "--log",
            &log,
            "--vkey",
            v,
            "--from",
            from,
        ];
        if let Some(to) = to {
            args.extend(["--to", to]);
        }
        let (code, out, err) = ledgerctl(&args);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("consistent"), "{out}");
    }
    // The log's key signing another tree of the same size as b: not the same history.
    let skey = std::fs::read_to_string(data.join("keys/artifacts.key")).unwrap();
    let forged = ledger_client::checkpoint::sign_checkpoint(
        skey.trim(),
        "localhost/artifacts",
        301,
        &ledger_client::merkle::Hash([3; 32]),
        &[],
    )
    .unwrap();
    let f = dir.path().join("forged.checkpoint");
    std::fs::write(&f, forged).unwrap();
    let (code, _, err) = ledgerctl(&[
        "audit",
        "consistency",
        "--log",
        &log,
        "--vkey",
        v,
        "--from",
        &a,
        "--to",
        f.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("inconsistent"), "{err}");
    // Hostile input: not a checkpoint.
    std::fs::write(&f, b"garbage").unwrap();
    let (code, _, _) = ledgerctl(&[
        "audit",
        "consistency",
        "--log",
        &log,
        "--vkey",
        v,
        "--from",
        f.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
}

#[test]
fn fsck_passes_a_stopped_ledgers_directory_and_fails_a_changed_tile_or_a_foreign_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let l = Ledger::start(&data, &[]);
    fill(&l);
    for i in 0..300 {
        add(&l, format!("entry {i}").as_bytes());
    }
    let published = dir.path().join("published.vkey");
    std::fs::copy(data.join("keys/artifacts.vkey"), &published).unwrap();
    let fsck = |vkey: &std::path::Path, json: bool| {
        let mut args = vec!["audit", "fsck", "--data-dir", data.to_str().unwrap()];
        args.extend(["--vkey", vkey.to_str().unwrap()]);
        if json {
            args.insert(0, "--json");
        }
        ledgerctl(&args)
    };
    // A running ledger holds its database: refused as unusable input, with the reason.
    let (code, _, err) = fsck(&published, false);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("still running"), "{err}");
    drop(l);

    let (code, out, err) = fsck(&published, false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("fsck artifacts: OK"), "{out}");
    let (code, out, err) = fsck(&published, true);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(j["tree_size"].as_u64().unwrap() > 300, "{j}");
    assert!(j["tiles_checked"].as_u64().unwrap() >= 1, "{j}");

    // A key of the same name that is not the log's: no checkpoint verifies.
    let (_, foreign) = signed_note::generate_key(&mut rand::rngs::OsRng, "localhost/artifacts");
    let foreign_file = dir.path().join("foreign.vkey");
    std::fs::write(&foreign_file, format!("{foreign}\n")).unwrap();
    let (code, _, err) = fsck(&foreign_file, false);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("checkpoint at size"), "{err}");

    // One bit of the first stored hash tile changed.
    {
        let rocks =
            ledger::store::rocks::RocksDb::open(&data.join("db"), &["artifacts".into()], 1 << 20)
                .unwrap();
        let (db, _) = rocks.derived("artifacts", "catalog");
        let cf = db.cf_handle("artifacts/tile").unwrap();
        let key = [0u8; 9];
        let mut stored = db.get_cf(&cf, key).unwrap().unwrap();
        stored[31] ^= 0x80;
        db.put_cf(&cf, key, stored).unwrap();
    }
    let (code, _, err) = fsck(&published, false);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("stored tile 0/0 differs"), "{err}");

    let (code, _, err) = ledgerctl(&[
        "audit",
        "fsck",
        "--data-dir",
        dir.path().join("nothing").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nothing"), "{err}");
}
