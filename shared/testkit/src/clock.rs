//! `ManualClock`: a [`Clock`] that only moves when a test moves it; and [`TestTime`], how a
//! contract check lets time pass for the adapter under test: by moving a `ManualClock`
//! (adapters that read a [`Clock`]) or by sleeping ([`RealTime`], adapters whose backend
//! keeps its own time, such as SQS visibility timeouts).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use registry_core::ports::Clock;

/// How a check lets time pass for the adapter under test. The checks only ever move time
/// forward, and assume the adapter's own calls take no time worth counting.
pub trait TestTime: Send + Sync + 'static {
    /// Returns once `by` has passed for the adapter (and, for real time, not much more: a
    /// check may rely on a deadline `by` plus a fraction of a second away still being
    /// ahead).
    fn pass(&self, by: Duration) -> BoxFuture<'_, ()>;

    /// How late the backend may act on a deadline it keeps (make a job visible again
    /// once its visibility timeout has passed). Checks that wait for a deadline to have
    /// passed wait this much longer; checks that a deadline is still ahead do not.
    fn timer_slack(&self) -> Duration {
        Duration::ZERO
    }
}

impl TestTime for ManualClock {
    /// Moves the clock by exactly `by`, at once; the adapter reads it, so it is never late.
    fn pass(&self, by: Duration) -> BoxFuture<'_, ()> {
        self.advance(by);
        Box::pin(std::future::ready(()))
    }
}

/// Real time, for a backend that keeps its own timers: [`TestTime::pass`] sleeps, and
/// [`TestTime::timer_slack`] is what the backend's timers may lag (LocalStack's SQS
/// re-queues expired in-flight messages on a one-second tick).
#[derive(Debug, Clone, Copy)]
pub struct RealTime {
    timer_slack: Duration,
}

impl RealTime {
    /// Real time whose backend acts on a deadline at most `timer_slack` late.
    pub fn with_timer_slack(timer_slack: Duration) -> Self {
        RealTime { timer_slack }
    }
}

impl TestTime for RealTime {
    fn pass(&self, by: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(by))
    }

    fn timer_slack(&self) -> Duration {
        self.timer_slack
    }
}

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

    #[tokio::test]
    async fn manual_test_time_moves_the_clock_at_once() {
        let clock = ManualClock::at(1_000);
        let time: Arc<dyn TestTime> = Arc::new(clock.clone());
        let started = std::time::Instant::now();
        time.pass(Duration::from_secs(30)).await;
        assert_eq!(clock.now_millis(), 31_000);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn real_time_sleeps_and_reports_its_slack() {
        let time = RealTime::with_timer_slack(Duration::from_millis(20));
        let started = std::time::Instant::now();
        time.pass(Duration::from_millis(30)).await;
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(time.timer_slack(), Duration::from_millis(20));
        assert_eq!(ManualClock::new().timer_slack(), Duration::ZERO);
    }
}
