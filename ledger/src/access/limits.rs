//! Abuse limits of the access layer: a token bucket per principal (and per source address
//! for requests that prove no identity), answered with 429 and Retry-After (RFC 6585 §4).
//!
//! Hand-written rather than `governor`: the whole of it is a bucket per key, and that
//! crate's clock dependency would change the feature set of crates RocksDB's build shares,
//! recompiling its C++ (DEVELOPERS.md, build time).

use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

/// `limits` in the access configuration (specs/access.md, "Abuse limits").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sustained requests per second per principal...
    #[serde(default = "default_rate")]
    pub requests_per_second: f64,
    /// ...and how many may come at once after a quiet spell.
    #[serde(default = "default_burst")]
    pub burst: f64,
    /// The same for each source address whose credential is missing or refused, so that
    /// guessing credentials is slow.
    #[serde(default = "default_unauth_rate")]
    pub unauthenticated_per_second: f64,
    #[serde(default = "default_unauth_burst")]
    pub unauthenticated_burst: f64,
}

fn default_rate() -> f64 {
    200.0
}
fn default_burst() -> f64 {
    400.0
}
fn default_unauth_rate() -> f64 {
    5.0
}
fn default_unauth_burst() -> f64 {
    20.0
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_second: default_rate(),
            burst: default_burst(),
            unauthenticated_per_second: default_unauth_rate(),
            unauthenticated_burst: default_unauth_burst(),
        }
    }
}

impl LimitsConfig {
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("requests_per_second", self.requests_per_second),
            ("burst", self.burst),
            (
                "unauthenticated_per_second",
                self.unauthenticated_per_second,
            ),
            ("unauthenticated_burst", self.unauthenticated_burst),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 1e9) {
                return Err(format!(
                    "limits.{name} must be a positive number (at most 1e9), not {v}"
                ));
            }
        }
        for (name, burst) in [
            ("burst", self.burst),
            ("unauthenticated_burst", self.unauthenticated_burst),
        ] {
            if burst < 1.0 {
                return Err(format!(
                    "limits.{name} must be at least 1 (one request), not {burst}"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

const SHARDS: usize = 16;
/// Keys kept per shard before idle buckets are dropped.
const MAX_KEYS_PER_SHARD: usize = 4096;

/// Token buckets keyed by principal or address.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    shards: [Mutex<HashMap<String, Bucket>>; SHARDS],
    hasher: std::collections::hash_map::RandomState,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: Default::default(),
        }
    }

    /// Takes one token from `key`'s bucket, or says how long until one is there.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let shard_index = self.hasher.hash_one(key) as usize % SHARDS;
        let mut shard = self.shards[shard_index].lock();
        if shard.len() >= MAX_KEYS_PER_SHARD && !shard.contains_key(key) {
            self.forget_idle(&mut shard, now);
        }
        let b = shard.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }

    /// Drops buckets that have refilled (forgetting them changes nothing). If every key is
    /// busy the oldest half goes: a flood of distinct keys costs bounded memory, at the price
    /// of those keys starting again with a full bucket.
    fn forget_idle(&self, shard: &mut HashMap<String, Bucket>, now: Instant) {
        let full_after = self.burst / self.rate;
        shard.retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() < full_after);
        if shard.len() >= MAX_KEYS_PER_SHARD {
            let mut ages: Vec<Instant> = shard.values().map(|b| b.last).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            shard.retain(|_, b| b.last > cut);
        }
    }
}

/// Retry-After in whole seconds (RFC 9110 §10.2.3), at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_holds() {
        let l = RateLimiter::new(10.0, 3.0);
        let t = Instant::now();
        for _ in 0..3 {
            l.take("p", t).unwrap();
        }
        let wait = l.take("p", t).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        // Another principal has its own bucket.
        l.take("q", t).unwrap();
        // A tenth of a second later one more token has come.
        l.take("p", t + Duration::from_millis(100)).unwrap();
        assert!(l.take("p", t + Duration::from_millis(100)).is_err());
        // Never more than the burst, however long the quiet spell.
        let later = t + Duration::from_secs(3600);
        for _ in 0..3 {
            l.take("p", later).unwrap();
        }
        assert!(l.take("p", later).is_err());
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_bounded_in_memory() {
        let l = RateLimiter::new(1.0, 1.0);
        let t = Instant::now();
        for i in 0..(SHARDS * MAX_KEYS_PER_SHARD * 3) {
            let _ = l.take(&format!("k{i}"), t + Duration::from_micros(i as u64));
        }
        let total: usize = l.shards.iter().map(|s| s.lock().len()).sum();
        assert!(total <= SHARDS * MAX_KEYS_PER_SHARD, "{total}");
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn nonsense_limits_are_refused_with_the_field_named() {
        for (json, field) in [
            (r#"{"requests_per_second": 0}"#, "requests_per_second"),
            (r#"{"burst": -1}"#, "burst"),
            (r#"{"burst": 0.5}"#, "burst"),
            (
                r#"{"unauthenticated_per_second": 1e300}"#,
                "unauthenticated_per_second",
            ),
        ] {
            let c: LimitsConfig = serde_json::from_str(json).unwrap();
            let e = c.check().unwrap_err();
            assert!(e.contains(field), "{json}: {e}");
        }
        assert!(serde_json::from_str::<LimitsConfig>(r#"{"rps": 1}"#).is_err());
        LimitsConfig::default().check().unwrap();
    }
}
