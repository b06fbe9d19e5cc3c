//! `ManualClock`: a [`Clock`] that only moves when a test moves it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use registry_core::ports::Clock;

/// A settable clock; clones share one time, so a test keeps a clone and hands another
/// (or an `Arc` of it) to the adapter under test.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// The time a new clock starts at: 2023-11-14T22:13:20Z, a plausible wall-clock time.
    pub const START_MS: u64 = 1_700_000_000_000;

    /// A clock at [`ManualClock::START_MS`].
    pub fn new() -> Self {
        Self::at(Self::START_MS)
    }

    /// A clock at `now_ms` milliseconds since the Unix epoch.
    pub fn at(now_ms: u64) -> Self {
        ManualClock {
            now_ms: Arc::new(AtomicU64::new(now_ms)),
        }
    }

    /// Sets the time (it may move backwards).
    pub fn set_millis(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.advance_millis(u64::try_from(by.as_millis()).unwrap_or(u64::MAX));
    }

    /// Moves the time forward by `ms` milliseconds.
    pub fn advance_millis(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// This clock as the port type adapters take.
    pub fn shared(&self) -> Arc<dyn Clock> {
        Arc::new(self.clone())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_time() {
        let clock = ManualClock::at(1_000);
        let port = clock.shared();
        clock.advance(Duration::from_secs(2));
        assert_eq!(port.now_millis(), 3_000);
        clock.advance_millis(5);
        assert_eq!(clock.clone().now_millis(), 3_005);
        clock.set_millis(10);
        assert_eq!(port.now_millis(), 10);
    }
}
