//! The time that rate limits ([`crate::http::rate`]) and console sessions
//! ([`crate::console::session`]) are measured in: the system's monotonic
//! clock when serving, or a [`ManualClock`] that a test moves by hand.
//!
//! Why: a refill or an expiry tested against the wall clock sleeps through
//! it (slow), and on a loaded machine a sleep of 300 ms against a limit of
//! 400 ms can land on either side (flaky). With a manual clock a test says
//! exactly how much time passes, so it can check both sides of a boundary:
//! not expired at the limit, expired just past it.
//!
//! Only code that *reads* the time takes a [`Clock`]. The connections'
//! timeouts ([`crate::connections`]) wait on tokio's timers, and tokio's
//! paused time (`tokio::time::pause`, `advance`) is their injected clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where "now" comes from. Cheap to clone: clones of a manual clock share it.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// [`Instant::now`]: what a server runs on.
    #[default]
    System,
    /// Stands still until the test that holds it calls
    /// [`ManualClock::advance`].
    Manual(ManualClock),
}

impl Clock {
    pub fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual(manual) => manual.now(),
        }
    }
}

/// A clock that moves only when told to. Its clones share one time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    /// A clock standing at the moment it was made.
    pub fn new() -> ManualClock {
        ManualClock(Arc::new(Mutex::new(Instant::now())))
    }

    pub fn now(&self) -> Instant {
        *self.0.lock().expect("manual clock lock")
    }

    /// Moves the clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.0.lock().expect("manual clock lock") += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Clock {
        Clock::Manual(manual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_advanced_and_its_clones_move_with_it() {
        let manual = ManualClock::new();
        let clock = Clock::from(manual.clone());
        let start = clock.now();
        assert_eq!(clock.now(), start, "no time passes by itself");
        manual.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now() - start, Duration::from_millis(1_500));
    }
}
