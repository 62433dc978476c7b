//! Criterion benches of the functions on the write and proof paths. Each group also
//! benches a bare SHA-256 of the same input, the machine's own limit, so that results read
//! as ratios (see BENCHMARKS.md).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ledger::dedup::Bloom;
use ledger::log::Log;
use ledger::store::memory::MemoryStore;
use ledger::tree::Edge;
use std::sync::Arc;

fn leaves(n: u64) -> Vec<tlog_tiles::Hash> {
    (0..n)
        .map(|i| tlog_tiles::record_hash(&i.to_be_bytes()))
        .collect()
}

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("hashing");
    g.throughput(Throughput::Elements(1));
    let entry = [7u8; 256];
    g.bench_function("sha256 of 256-byte entry (machine limit)", |b| {
        b.iter(|| tlog_tiles::record_hash(black_box(&entry)))
    });
    let (l, r) = (tlog_tiles::record_hash(b"l"), tlog_tiles::record_hash(b"r"));
    g.bench_function("node hash (sha256 of 65 bytes)", |b| {
        b.iter(|| tlog_tiles::node_hash(black_box(l), black_box(r)))
    });
    g.finish();
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("tree");
    let ls = leaves(65_536);
    g.throughput(Throughput::Elements(ls.len() as u64));
    g.bench_function("append 65536 leaves to the tile edge", |b| {
        b.iter_batched(
            Edge::default,
            |mut e| {
                let mut out = vec![];
                for l in &ls {
                    e.append(*l, &mut out);
                }
                out.len()
            },
            BatchSize::SmallInput,
        )
    });
    let mut e = Edge::default();
    let mut out = vec![];
    for l in leaves(1_000_003) {
        e.append(l, &mut out);
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("root of a 1,000,003-entry tree", |b| b.iter(|| e.root()));
    g.finish();
}

fn proofs(c: &mut Criterion) {
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "bench.example/log");
    let signer = signed_note::StandardSigner::new(&skey).unwrap();
    let log = Log::open(
        "log",
        "bench.example/log",
        signer,
        vkey,
        Arc::new(MemoryStore::default()),
    )
    .unwrap();
    let pool = ledger::sequencer::start(log.clone(), Default::default()).unwrap();
    let n = 1_000_000u64;
    let mut i = 0;
    while i < n {
        let batch: Vec<_> = (i..(i + 50_000).min(n))
            .map(|j| {
                let e = bytes::Bytes::from(j.to_be_bytes().to_vec());
                let h = tlog_tiles::record_hash(&e);
                (e, h)
            })
            .collect();
        i += batch.len() as u64;
        pool.submit(batch)
            .unwrap()
            .blocking_recv()
            .unwrap()
            .unwrap();
    }
    let snap = log.snapshot();
    let mut g = c.benchmark_group("proofs");
    g.throughput(Throughput::Elements(1));
    let mut k = 0u64;
    g.bench_function("inclusion proof at 1M (memory store)", |b| {
        b.iter(|| {
            k = (k + 7_919) % n;
            log.inclusion_proof(&snap, k, n).unwrap()
        })
    });
    g.bench_function("consistency proof 999,001 -> 1M", |b| {
        b.iter(|| log.consistency_proof(&snap, 999_001, n).unwrap())
    });
    let p = log.inclusion_proof(&snap, 123_456, n).unwrap();
    let leaf = tlog_tiles::record_hash(&123_456u64.to_be_bytes());
    g.bench_function("verify inclusion proof (client)", |b| {
        b.iter(|| {
            ledger_client::merkle::verify_inclusion(&leaf, 123_456, n, &p, &snap.root).unwrap()
        })
    });
    g.finish();
}

fn dedup(c: &mut Criterion) {
    let mut g = c.benchmark_group("dedup");
    let mut f = Bloom::with_capacity(10_000_000);
    let ls = leaves(1_000_000);
    for l in &ls {
        f.insert(l);
    }
    g.throughput(Throughput::Elements(1));
    let probe = tlog_tiles::record_hash(b"absent");
    g.bench_function("bloom lookup (10M capacity)", |b| {
        b.iter(|| f.may_contain(black_box(&probe)))
    });
    g.finish();
}

criterion_group!(benches, hashing, append, proofs, dedup);
criterion_main!(benches);
