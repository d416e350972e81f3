//! [`LogBudget`]: at most so many log events per window, and a count of those held back, so
//! that a flood (a noisy plugin, a crowd the REST server sheds) cannot flood the log.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A budget of log events per time window, shared by whoever logs the same kind of event.
///
/// ```
/// use std::time::Duration;
/// use snoozebot_core::LogBudget;
///
/// static SHED: LogBudget = LogBudget::new(1, Duration::from_secs(10));
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// for _ in 0..3 {
///     if let Some(held_back) = SHED.admit() {
///         eprintln!("shedding load ({held_back} similar events not logged before this one)");
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct LogBudget {
    limit: u32,
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Option<Instant>,
    used: u32,
    held_back: u64,
}

impl LogBudget {
    /// At most `limit` events every `window` (at least one).
    pub const fn new(limit: u32, window: Duration) -> Self {
        LogBudget {
            limit: if limit == 0 { 1 } else { limit },
            window,
            state: Mutex::new(Window {
                started: None,
                used: 0,
                held_back: 0,
            }),
        }
    }

    /// Whether to log this event: `Some(n)` to log it, `n` being how many were held back since
    /// the last one logged (say so when it is not 0); `None` to hold it back.
    pub fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut window = match self.state.lock() {
            Ok(window) => window,
            Err(poisoned) => poisoned.into_inner(),
        };
        if window
            .started
            .is_none_or(|started| now.duration_since(started) >= self.window)
        {
            window.started = Some(now);
            window.used = 0;
        }
        if window.used < self.limit {
            window.used += 1;
            Some(std::mem::take(&mut window.held_back))
        } else {
            window.held_back += 1;
            None
        }
    }

    /// How many events were held back since the last one logged, and forgets them (report
    /// them at the end of a stream, where no event comes to carry the count).
    pub fn take_held_back(&self) -> u64 {
        match self.state.lock() {
            Ok(mut window) => std::mem::take(&mut window.held_back),
            Err(poisoned) => std::mem::take(&mut poisoned.into_inner().held_back),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_held_back_and_counted_into_the_next_window() {
        let budget = LogBudget::new(2, Duration::from_secs(1));
        let admitted: Vec<_> = (0..5).map(|_| budget.admit()).collect();
        assert_eq!(admitted, [Some(0), Some(0), None, None, None]);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            budget.admit(),
            Some(3),
            "the next window says what was held back"
        );
        assert_eq!(budget.admit(), Some(0));
        assert_eq!(budget.admit(), None);
        assert_eq!(budget.take_held_back(), 1);
        assert_eq!(budget.take_held_back(), 0);
    }
}
