//! [`Backoff`]: the one exponential schedule every loop that waits and tries again uses — the
//! retry layer, the manager's load retries, plugin restarts, waiters, a cloud's operation polls.

use std::time::Duration;

/// An exponential schedule: `initial`, then growing by `multiplier` after each step, never
/// above `max`. What is done with a step's delay is the user's: the retry layer draws a jittered
/// delay below it, a poll loop sleeps it.
///
/// ```
/// use std::time::Duration;
/// use snoozebot_core::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
/// let delays: Vec<_> = backoff.delays().take(5).collect();
/// assert_eq!(delays, [100, 200, 400, 500, 500].map(Duration::from_millis));
/// assert_eq!(backoff.delay(3), Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// How much the delay grows after each step (at least 1).
    pub multiplier: f64,
}

impl Backoff {
    /// `initial` doubling up to `max` (at least `initial`).
    pub const fn new(initial: Duration, max: Duration) -> Self {
        let max = if max.as_nanos() < initial.as_nanos() {
            initial
        } else {
            max
        };
        Backoff {
            initial,
            max,
            multiplier: 2.0,
        }
    }

    /// The same delay every step.
    pub const fn constant(delay: Duration) -> Self {
        Backoff {
            initial: delay,
            max: delay,
            multiplier: 1.0,
        }
    }

    /// Grows by `multiplier` instead (at least 1; not a number is 1).
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() {
            multiplier.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// The delay of step `step`, counted from 1: `initial × multiplier^(step − 1)`, at most
    /// `max`. Step 0 is taken as 1.
    pub fn delay(&self, step: u32) -> Duration {
        let exponent = step.saturating_sub(1).min(64) as i32;
        let delay = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        Duration::try_from_secs_f64(delay)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The delays of steps 1, 2, 3, ..., without end.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let backoff = *self;
        (1..).map(move |step| backoff.delay(step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_multiplier_up_to_the_max() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(20));
        let delays: Vec<_> = (1..=7).map(|step| backoff.delay(step)).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 20, 20].map(Duration::from_secs));
        assert_eq!(backoff.delay(0), Duration::from_secs(1));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(20));
        let slow = backoff.with_multiplier(1.5);
        assert_eq!(slow.delay(3), Duration::from_millis(2250));
        assert_eq!(
            backoff.with_multiplier(f64::NAN).delay(5),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn constant_and_inverted_bounds() {
        let constant = Backoff::constant(Duration::from_secs(5));
        assert!(
            constant
                .delays()
                .take(4)
                .all(|d| d == Duration::from_secs(5))
        );
        let inverted = Backoff::new(Duration::from_secs(3), Duration::from_secs(1));
        assert_eq!(inverted.max, Duration::from_secs(3));
    }
}
