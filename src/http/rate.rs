//! Token buckets: at most `rate` events a second on average, `burst` at
//! once; one ([`RateLimit`]) or one per key ([`KeyedRateLimit`]).

use std::sync::Mutex;
use std::time::Instant;

/// One token bucket: a [`KeyedRateLimit`] with a single key.
pub struct RateLimit(KeyedRateLimit<()>);

impl RateLimit {
    /// `rate` a second, a burst of as many (at least one).
    pub fn per_second(rate: u32) -> RateLimit {
        RateLimit(KeyedRateLimit::new(f64::from(rate), rate.max(1), 1))
    }

    /// Takes a token if there is one.
    pub fn allow(&self) -> bool {
        self.0.allow(())
    }
}

/// A token bucket per key (a client's address): one client spending its
/// budget does not spend anyone else's. At most `max_keys` buckets are kept;
/// past that, full buckets (the same as a fresh one) are dropped first, then
/// the least recently used.
pub struct KeyedRateLimit<K> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    /// Per key: (tokens left, when they were counted).
    buckets: Mutex<std::collections::HashMap<K, (f64, Instant)>>,
}

impl<K: std::hash::Hash + Eq + Copy> KeyedRateLimit<K> {
    pub fn new(rate: f64, burst: u32, max_keys: usize) -> Self {
        KeyedRateLimit {
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            buckets: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Takes one of `key`'s tokens if it has one.
    pub fn allow(&self, key: K) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limit lock");
        if !buckets.contains_key(&key) && buckets.len() >= self.max_keys {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < burst);
            if buckets.len() >= self.max_keys {
                if let Some(oldest) = buckets
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| *k)
                {
                    buckets.remove(&oldest);
                }
            }
        }
        let (tokens, at) = buckets.get(&key).copied().unwrap_or((self.burst, now));
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        let allowed = tokens >= 1.0;
        buckets.insert(key, (if allowed { tokens - 1.0 } else { tokens }, now));
        allowed
    }

    /// Gives back a token [`KeyedRateLimit::allow`] took (the attempt it
    /// guarded turned out not to count).
    pub fn refund(&self, key: K) {
        let mut buckets = self.buckets.lock().expect("rate limit lock");
        if let Some((tokens, _)) = buckets.get_mut(&key) {
            *tokens = (*tokens + 1.0).min(self.burst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_spending_its_burst_leaves_the_others_theirs() {
        let limit = KeyedRateLimit::new(0.0, 2, 8);
        assert!(limit.allow(1) && limit.allow(1));
        assert!(!limit.allow(1));
        assert!(limit.allow(2), "another key has its own burst");
        limit.refund(1);
        assert!(limit.allow(1), "a refunded token can be spent again");
        assert!(!limit.allow(1));
    }

    #[test]
    fn past_its_key_limit_a_keyed_bucket_forgets_the_least_recent_key() {
        let limit = KeyedRateLimit::new(0.0, 1, 2);
        assert!(limit.allow(1));
        assert!(limit.allow(2));
        assert!(limit.allow(3), "a new key gets a bucket");
        assert!(!limit.allow(3));
        assert!(!limit.allow(2), "the newer keys are kept");
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_until_it_refills() {
        let limit = RateLimit::per_second(3);
        assert!((0..3).all(|_| limit.allow()));
        assert!(!limit.allow());
        std::thread::sleep(std::time::Duration::from_millis(400));
        assert!(limit.allow(), "one token back after a third of a second");
    }

    #[test]
    fn a_slow_bucket_keeps_its_burst_then_refuses() {
        let limit = KeyedRateLimit::new(0.1, 2, 1);
        assert!(limit.allow(()) && limit.allow(()));
        assert!(!limit.allow(()));
    }

    #[test]
    fn a_rate_of_zero_keeps_nothing_after_the_first() {
        let limit = RateLimit::per_second(0);
        assert!(limit.allow());
        assert!(!limit.allow());
    }
}
