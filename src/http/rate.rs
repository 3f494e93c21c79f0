//! Token buckets: at most `rate` events a second on average, `burst` at
//! once; one ([`RateLimit`]) or one per key ([`KeyedRateLimit`]). They
//! refill by the [`Clock`] they are given (a test's is manual).

use std::sync::Mutex;
use std::time::Instant;

use crate::clock::Clock;

/// One token bucket: a [`KeyedRateLimit`] with a single key.
pub struct RateLimit(KeyedRateLimit<()>);

impl RateLimit {
    /// `rate` a second, a burst of as many (at least one).
    pub fn per_second(rate: u32, clock: Clock) -> RateLimit {
        RateLimit(KeyedRateLimit::new(f64::from(rate), rate.max(1), 1, clock))
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
    clock: Clock,
    /// Per key: (tokens left, when they were counted).
    buckets: Mutex<std::collections::HashMap<K, (f64, Instant)>>,
}

impl<K: std::hash::Hash + Eq + Copy> KeyedRateLimit<K> {
    pub fn new(rate: f64, burst: u32, max_keys: usize, clock: Clock) -> Self {
        KeyedRateLimit {
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            clock,
            buckets: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Takes one of `key`'s tokens if it has one.
    pub fn allow(&self, key: K) -> bool {
        let now = self.clock.now();
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
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;

    /// A clock the test moves, and the same clock for a bucket to read.
    fn manual() -> (ManualClock, Clock) {
        let manual = ManualClock::new();
        (manual.clone(), manual.into())
    }

    #[test]
    fn one_key_spending_its_burst_leaves_the_others_theirs() {
        let (_, clock) = manual();
        let limit = KeyedRateLimit::new(0.0, 2, 8, clock);
        assert!(limit.allow(1) && limit.allow(1));
        assert!(!limit.allow(1));
        assert!(limit.allow(2), "another key has its own burst");
        limit.refund(1);
        assert!(limit.allow(1), "a refunded token can be spent again");
        assert!(!limit.allow(1));
    }

    #[test]
    fn past_its_key_limit_a_keyed_bucket_forgets_the_least_recent_key() {
        let (time, clock) = manual();
        let limit = KeyedRateLimit::new(0.0, 1, 2, clock);
        // Each key seen a moment after the last: "least recent" is defined.
        let tick = Duration::from_millis(1);
        assert!(limit.allow(1));
        time.advance(tick);
        assert!(limit.allow(2));
        time.advance(tick);
        assert!(limit.allow(3), "a new key gets a bucket");
        assert!(!limit.allow(3));
        assert!(!limit.allow(2), "the newer keys are kept");
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_until_it_refills() {
        let (time, clock) = manual();
        let limit = RateLimit::per_second(3, clock);
        assert!((0..3).all(|_| limit.allow()));
        assert!(!limit.allow());
        // A token every third of a second: not yet at 333 ms...
        time.advance(Duration::from_millis(333));
        assert!(!limit.allow(), "no token back before a third of a second");
        // ...one at 334 ms, and only one.
        time.advance(Duration::from_millis(1));
        assert!(limit.allow(), "one token back after a third of a second");
        assert!(!limit.allow());
    }

    #[test]
    fn a_slow_bucket_keeps_its_burst_then_refuses_until_its_next_token() {
        let (time, clock) = manual();
        let limit = KeyedRateLimit::new(0.1, 2, 1, clock);
        assert!(limit.allow(()) && limit.allow(()));
        assert!(!limit.allow(()));
        // One token every ten seconds (a margin each side: tokens are f64).
        time.advance(Duration::from_millis(9_900));
        assert!(!limit.allow(()), "no token back before ten seconds");
        time.advance(Duration::from_millis(200));
        assert!(limit.allow(()), "one token back after ten seconds");
        assert!(!limit.allow(()));
    }

    #[test]
    fn a_rate_of_zero_keeps_nothing_after_the_first() {
        let (time, clock) = manual();
        let limit = RateLimit::per_second(0, clock);
        assert!(limit.allow());
        assert!(!limit.allow());
        time.advance(Duration::from_secs(3_600));
        assert!(!limit.allow(), "not even an hour later");
    }
}
