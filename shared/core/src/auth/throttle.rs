//! Login throttling as a pure policy: from the failures counted in the current window, allow
//! the attempt, slow it down (exponential delay, capped), or refuse it until the window ends.
//!
//! The caller keeps one [`FailureWindow`] per key it throttles on (a user name, a client
//! address), records each failed login in it, and asks [`decide`] before checking a
//! password. A successful login may clear the window.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The throttling rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures allowed in a window before any delay.
    pub free_attempts: u32,
    /// How long failures are counted from the first one.
    pub window: Duration,
    /// The delay after the first failure past the free ones; it doubles with each failure.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// From this many failures in the window on, refuse until it ends (`None`: only delay).
    pub refuse_after: Option<u32>,
}

impl Default for ThrottleConfig {
    /// 5 free attempts per 15 minutes, then 1 s, 2 s, 4 s … up to 30 s, and from 20
    /// failures on, refusal until the window ends: at most 20 guesses per 15 minutes.
    fn default() -> Self {
        ThrottleConfig {
            free_attempts: 5,
            window: Duration::from_secs(15 * 60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            refuse_after: Some(20),
        }
    }
}

/// What to do with a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Check the credentials now.
    Allow,
    /// Wait this long, then check the credentials.
    Delay(Duration),
    /// Do not check the credentials; answer "too many requests" with `Retry-After`.
    Refuse { retry_after: Duration },
}

/// The failures counted for one key since `started_at_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureWindow {
    pub started_at_ms: u64,
    pub failures: u32,
}

impl FailureWindow {
    /// Whether the window is over at `now_ms` (its failures no longer count).
    pub fn is_over(&self, config: &ThrottleConfig, now_ms: u64) -> bool {
        now_ms >= self.ends_at_ms(config)
    }

    fn ends_at_ms(&self, config: &ThrottleConfig) -> u64 {
        let window_ms = u64::try_from(config.window.as_millis()).unwrap_or(u64::MAX);
        self.started_at_ms.saturating_add(window_ms)
    }

    /// The window after one more failure at `now_ms` (a new window if this one is over).
    pub fn record_failure(&self, config: &ThrottleConfig, now_ms: u64) -> FailureWindow {
        if self.failures == 0 || self.is_over(config, now_ms) {
            FailureWindow {
                started_at_ms: now_ms,
                failures: 1,
            }
        } else {
            FailureWindow {
                started_at_ms: self.started_at_ms,
                failures: self.failures.saturating_add(1),
            }
        }
    }

    /// The failures that still count at `now_ms`.
    pub fn current_failures(&self, config: &ThrottleConfig, now_ms: u64) -> u32 {
        if self.is_over(config, now_ms) {
            0
        } else {
            self.failures
        }
    }
}

/// What to do with an attempt at `now_ms`, given the failures of its key.
pub fn decide(config: &ThrottleConfig, window: &FailureWindow, now_ms: u64) -> Decision {
    let failures = window.current_failures(config, now_ms);
    if let Some(limit) = config.refuse_after
        && failures >= limit
    {
        let left = window.ends_at_ms(config).saturating_sub(now_ms);
        return Decision::Refuse {
            retry_after: Duration::from_millis(left).max(Duration::from_secs(1)),
        };
    }
    if failures <= config.free_attempts {
        return Decision::Allow;
    }
    let doublings = (failures - config.free_attempts - 1).min(31);
    let delay = config
        .base_delay
        .saturating_mul(1 << doublings)
        .min(config.max_delay);
    if delay.is_zero() {
        Decision::Allow
    } else {
        Decision::Delay(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000_000;
    const MIN: u64 = 60_000;

    fn after(failures: u32) -> FailureWindow {
        FailureWindow {
            started_at_ms: T0,
            failures,
        }
    }

    fn secs(s: u64) -> Decision {
        Decision::Delay(Duration::from_secs(s))
    }

    #[test]
    fn free_attempts_then_doubling_delays_then_refusal() {
        let c = ThrottleConfig::default();
        let table: &[(u32, Decision)] = &[
            (0, Decision::Allow),
            (1, Decision::Allow),
            (5, Decision::Allow),
            (6, secs(1)),
            (7, secs(2)),
            (8, secs(4)),
            (9, secs(8)),
            (10, secs(16)),
            (11, secs(30)),
            (19, secs(30)),
            (
                20,
                Decision::Refuse {
                    retry_after: Duration::from_secs(15 * 60 - 60),
                },
            ),
            (
                u32::MAX,
                Decision::Refuse {
                    retry_after: Duration::from_secs(15 * 60 - 60),
                },
            ),
        ];
        for &(failures, want) in table {
            assert_eq!(decide(&c, &after(failures), T0 + MIN), want, "{failures}");
        }
    }

    #[test]
    fn only_delays_when_refusal_is_off_and_never_overflows() {
        let c = ThrottleConfig {
            refuse_after: None,
            ..ThrottleConfig::default()
        };
        assert_eq!(decide(&c, &after(20), T0), secs(30));
        assert_eq!(decide(&c, &after(u32::MAX), T0), secs(30));
        let no_delay = ThrottleConfig {
            base_delay: Duration::ZERO,
            refuse_after: None,
            ..ThrottleConfig::default()
        };
        assert_eq!(decide(&no_delay, &after(100), T0), Decision::Allow);
    }

    #[test]
    fn refuse_immediately_past_the_free_attempts() {
        let c = ThrottleConfig {
            refuse_after: Some(5),
            ..ThrottleConfig::default()
        };
        assert_eq!(decide(&c, &after(4), T0), Decision::Allow);
        assert_eq!(
            decide(&c, &after(5), T0 + 14 * MIN + 59_500),
            Decision::Refuse {
                retry_after: Duration::from_secs(1)
            },
            "retry-after is at least one second"
        );
    }

    #[test]
    fn the_window_ends_and_failures_start_over() {
        let c = ThrottleConfig::default();
        let w = after(25);
        assert!(matches!(
            decide(&c, &w, T0 + 15 * MIN - 1),
            Decision::Refuse { .. }
        ));
        assert_eq!(decide(&c, &w, T0 + 15 * MIN), Decision::Allow);
        assert_eq!(w.current_failures(&c, T0 + 15 * MIN), 0);
        let next = w.record_failure(&c, T0 + 16 * MIN);
        assert_eq!(
            next,
            FailureWindow {
                started_at_ms: T0 + 16 * MIN,
                failures: 1
            }
        );
    }

    #[test]
    fn recording_failures_counts_within_the_window() {
        let c = ThrottleConfig::default();
        let mut w = FailureWindow::default();
        for i in 0..7 {
            w = w.record_failure(&c, T0 + i * 1_000);
        }
        assert_eq!(
            w,
            FailureWindow {
                started_at_ms: T0,
                failures: 7
            }
        );
        assert_eq!(decide(&c, &w, T0 + 7_000), secs(2));
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, r#"{"startedAtMs":1000000,"failures":7}"#);
    }
}
