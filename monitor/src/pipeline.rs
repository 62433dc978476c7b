//! Catching up with a log: entry bundles (each with the level-0 hash tile over it) are
//! fetched and leaf-hashed by a few threads, at most [`AHEAD`] bundles ahead of the
//! consumer, which takes them strictly in order. The round trips overlap; the tree is
//! still built by one thread.

use crate::fetch::{get, tile_url, FetchError, Http, MAX_BUNDLE};
use crate::tree::TILE_WIDTH;
use ledger_client::merkle::{leaf_hash, Hash};
use ledger_client::tiles::{decode_bundle, TileKind};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

/// Threads fetching at once.
pub const FETCHERS: usize = 5;
/// Bundles fetched ahead of the consumer (memory: this many bundles at most).
pub const AHEAD: u64 = 64;

/// What a fetcher made of one bundle.
pub struct Fetched {
    /// The entries' leaf hashes, or what is wrong with the bundle.
    pub leaves: Result<Vec<Hash>, String>,
    /// The level-0 tile the log serves over the same entries (its hashes must be the leaf
    /// hashes).
    pub tile0: Vec<u8>,
    pub bundle_url: String,
    pub tile0_url: String,
    /// What the entries say that rules and blob checks need.
    pub facts: Vec<crate::facts::Told>,
}

fn fetch(agent: &Http, prefix: &str, b: u64, width: usize) -> Result<Fetched, FetchError> {
    let bundle_url = tile_url(prefix, TileKind::Entries, b, width);
    let tile0_url = tile_url(prefix, TileKind::Hashes { level: 0 }, b, width);
    let bytes = get(agent, &bundle_url, MAX_BUNDLE)?;
    let mut facts = vec![];
    let leaves = match decode_bundle(&bytes) {
        Ok(e) if e.len() == width => {
            for (k, x) in e.iter().enumerate() {
                facts.extend(crate::facts::of(b * TILE_WIDTH as u64 + k as u64, x));
            }
            Ok(e.iter().map(|x| leaf_hash(x)).collect())
        }
        Ok(e) => Err(format!("holds {} entries, not {width}", e.len())),
        Err(e) => Err(format!("is not an entry bundle: {e}")),
    };
    let tile0 = get(agent, &tile0_url, TILE_WIDTH * 32)?;
    Ok(Fetched {
        leaves,
        tile0,
        bundle_url,
        tile0_url,
        facts,
    })
}

struct Shared {
    ready: BTreeMap<u64, Result<Fetched, FetchError>>,
    /// The next bundle the consumer takes.
    taking: u64,
    stop: bool,
}

/// Runs `consume` on bundles `first..=last` of a tree of `size` entries, in order. Stops at
/// the first error `consume` returns, and returns it.
pub fn run<E>(
    agent: &Http,
    prefix: &str,
    size: u64,
    first: u64,
    last: u64,
    mut consume: impl FnMut(u64, Result<Fetched, FetchError>) -> Result<(), E>,
) -> Result<(), E> {
    let width = |b: u64| (size - b * TILE_WIDTH as u64).min(TILE_WIDTH as u64) as usize;
    let next = AtomicU64::new(first);
    let shared = Mutex::new(Shared {
        ready: BTreeMap::new(),
        taking: first,
        stop: false,
    });
    // Two conditions, so that a finished fetch wakes the consumer only, and a consumed
    // bundle wakes one fetcher only (one condition for both woke every thread every time).
    let ready = Condvar::new();
    let space = Condvar::new();
    let lock = || shared.lock().unwrap_or_else(|p| p.into_inner());
    std::thread::scope(|s| {
        for _ in 0..FETCHERS.min((last - first + 1) as usize) {
            s.spawn(|| loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b > last {
                    break;
                }
                {
                    let mut g = lock();
                    while !g.stop && b >= g.taking + AHEAD {
                        g = space.wait(g).unwrap_or_else(|p| p.into_inner());
                    }
                    if g.stop {
                        break;
                    }
                }
                let r = fetch(agent, prefix, b, width(b));
                lock().ready.insert(b, r);
                ready.notify_one();
            });
        }
        let mut outcome = Ok(());
        for b in first..=last {
            let r = {
                let mut g = lock();
                loop {
                    if let Some(r) = g.ready.remove(&b) {
                        g.taking = b + 1;
                        break r;
                    }
                    g = ready.wait(g).unwrap_or_else(|p| p.into_inner());
                }
            };
            space.notify_one();
            if let Err(e) = consume(b, r) {
                outcome = Err(e);
                break;
            }
        }
        lock().stop = true;
        space.notify_all();
        outcome
    })
}

/// `f` of every item, on up to [`FETCHERS`] threads; the answers in the items' order.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..FETCHERS.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                // Every index below the length was taken by a thread that ran to its end
                // (a panic would have propagated out of the scope).
                .expect("every item mapped")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn par_map_keeps_the_items_order() {
        let items: Vec<u64> = (0..1000).collect();
        let out = super::par_map(&items, |i| i * 2);
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(super::par_map(&[] as &[u8], |_| 0).is_empty());
    }
}
