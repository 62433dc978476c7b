//! The cost of saving the monitor's state for a large registry (1,000,000 artifact
//! versions): a save after a round that changed 100 versions (a journal append, compactions
//! included as they come), against rewriting every version (what a save cost before the
//! journal, and what a compaction costs now). Beside them, the machine's own limit: one
//! 4 KiB write and fdatasync in the same directory (see BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, Criterion};
use ledger_client::digest::Digest;
use ledger_monitor::facts::VersionFacts;
use ledger_monitor::versions::VersionStore;
use std::io::Write;

const VERSIONS: u32 = 1_000_000;

fn facts(i: u32) -> VersionFacts {
    let mut d = [0u8; 32];
    d[..4].copy_from_slice(&i.to_be_bytes());
    VersionFacts {
        digest: Digest(d),
        size: Some(u64::from(i) * 1000),
        tombstoned: false,
        approvals: vec![],
    }
}

fn filled() -> VersionStore {
    let mut s = VersionStore::default();
    for i in 0..VERSIONS {
        s.insert_new(format!("models/model-{}@{}", i / 10, i % 10), facts(i));
    }
    s
}

fn saves(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let state = dir.path().join("state.json");
    let mut g = c.benchmark_group("monitor state, 1,000,000 versions");
    g.sample_size(10);
    let mut s = filled();
    g.bench_function(
        "rewrite every version (a compaction; every save before)",
        |b| {
            // Every version is still unsaved, so each persist writes the whole snapshot.
            b.iter(|| s.persist(&state).unwrap())
        },
    );
    let at = s.persist(&state).unwrap();
    s.committed(&state, at);
    let mut round = 0u32;
    g.sample_size(50);
    g.bench_function("save after 100 versions changed", |b| {
        b.iter(|| {
            for k in 0..100 {
                let i = (round * 7919 + k * 104_729) % VERSIONS;
                let key = format!("models/model-{}@{}", i / 10, i % 10);
                s.get_mut(&key).unwrap().tombstoned ^= true;
            }
            round += 1;
            let at = s.persist(&state).unwrap();
            s.committed(&state, at);
        })
    });
    let probe = dir.path().join("fsync-probe");
    let mut f = std::fs::File::create(&probe).unwrap();
    g.bench_function("4 KiB write + fdatasync (machine limit)", |b| {
        b.iter(|| {
            f.write_all(&[0u8; 4096]).unwrap();
            f.sync_data().unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, saves);
criterion_main!(benches);
