//! A token bucket: at most `rate` events a second on average, `burst` at once.

use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimit {
    rate: f64,
    burst: f64,
    /// (tokens left, when they were counted).
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// `rate` a second, a burst of as many (at least one).
    pub fn per_second(rate: u32) -> RateLimit {
        let burst = f64::from(rate.max(1));
        RateLimit {
            rate: f64::from(rate),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// `rate` a second on average (a fraction for slower ones), `burst` at
    /// once (at least one).
    pub fn with_burst(rate: f64, burst: u32) -> RateLimit {
        let burst = f64::from(burst.max(1));
        RateLimit {
            rate: rate.max(0.0),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token if there is one.
    pub fn allow(&self) -> bool {
        self.take(true)
    }

    /// Whether a token is there, without taking it (to refuse an attempt
    /// before trying it, and take a token only when it fails).
    pub fn has_token(&self) -> bool {
        self.take(false)
    }

    fn take(&self, take: bool) -> bool {
        let mut state = self.state.lock().expect("rate limit lock");
        let (tokens, at) = *state;
        let now = Instant::now();
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        let allowed = tokens >= 1.0;
        *state = (
            if allowed && take {
                tokens - 1.0
            } else {
                tokens
            },
            now,
        );
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_until_it_refills() {
        let limit = RateLimit::per_second(3);
        assert!((0..3).all(|_| limit.allow()));
        assert!(!limit.allow());
        std::thread::sleep(std::time::Duration::from_millis(400));
        assert!(limit.allow(), "one token back after a third of a second");
    }

    #[test]
    fn looking_takes_nothing_and_a_slow_bucket_keeps_its_burst() {
        let limit = RateLimit::with_burst(0.1, 2);
        assert!((0..5).all(|_| limit.has_token()));
        assert!(limit.allow() && limit.allow());
        assert!(!limit.has_token());
        assert!(!limit.allow());
    }

    #[test]
    fn a_rate_of_zero_keeps_nothing_after_the_first() {
        let limit = RateLimit::per_second(0);
        assert!(limit.allow());
        assert!(!limit.allow());
    }
}
