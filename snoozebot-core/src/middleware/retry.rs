//! Retries: exponential backoff with full jitter, bounded by attempts, a total time limit and a
//! shared retry budget.
//!
//! Why a budget: when a cloud API throttles, every caller's calls fail at once. Retrying each of
//! them a fixed number of times multiplies the load on an API that is already refusing it, and
//! the throttling lasts longer. A budget (tower's [`TpsBudget`], after Finagle) lets retries add
//! at most a fixed share of extra calls on top of the calls that were made, so a storm of
//! failures turns into fast failures instead of more load.
//!
//! Why full jitter: callers that failed together would otherwise retry together; a delay drawn
//! uniformly from `[0, backoff)` spreads them out (AWS Architecture Blog, "Exponential Backoff
//! And Jitter").
//!
//! A provider's `retry_after` is honoured: the delay is never shorter than what the cloud asked
//! for, and if waiting that long would pass the total time limit the error is returned at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::rng::{HasherRng, Rng};

use super::{BatchItems, ProviderRequest, ProviderResponse};
use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// How many times to try, and how long to wait in between.
///
/// The defaults follow the AWS SDKs' standard retry mode: 3 attempts in all, backoff starting at
/// 1 s and doubling up to 20 s, full jitter; plus a total limit of 60 s per call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts in all, the first one included (`1` disables retries). Default 3.
    pub max_attempts: u32,
    /// The backoff ceilings, retry by retry: each retry's delay is drawn uniformly below its
    /// step's delay. Default 1 s doubling up to 20 s.
    pub backoff: Backoff,
    /// No retry starts once this much time has passed since the first attempt began (and none
    /// whose wait would cross it). `None` means no limit. Default 60 s.
    pub max_elapsed: Option<Duration>,
    /// The retry budget shared by every call through this layer.
    pub budget: BudgetConfig,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(20)),
            max_elapsed: Some(Duration::from_secs(60)),
            budget: BudgetConfig::default(),
        }
    }
}

impl RetryConfig {
    /// Sets the number of attempts in all (at least 1).
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Sets the initial and the longest backoff.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(initial, max).with_multiplier(self.backoff.multiplier);
        self
    }

    /// Sets how much the backoff grows after each retry (at least 1).
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.backoff = self.backoff.with_multiplier(multiplier);
        self
    }

    /// Sets the total time limit per call (`None`: no limit).
    pub fn with_max_elapsed(mut self, max_elapsed: Option<Duration>) -> Self {
        self.max_elapsed = max_elapsed;
        self
    }

    /// Sets the retry budget.
    pub fn with_budget(mut self, budget: BudgetConfig) -> Self {
        self.budget = budget;
        self
    }
}

/// The retry budget: how many retries may be spent, as a share of the calls made.
///
/// Defaults as tower's: retries may add 20 % on top of the calls of the last 10 s, plus a
/// reserve of 10 retries per second so a quiet provider can still retry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BudgetConfig {
    /// How long a deposit (a call made) counts toward the budget; 1 s to 60 s. Default 10 s.
    pub ttl: Duration,
    /// Retries per second allowed even with no calls deposited. Default 10.
    pub min_per_sec: u32,
    /// Retries allowed per call made, as a fraction (0.2 = 20 %); 0 to 1000. Default 0.2.
    pub retry_ratio: f32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            retry_ratio: 0.2,
        }
    }
}

impl BudgetConfig {
    /// A budget with the given window, reserve and ratio (clamped to the ranges above).
    pub fn new(ttl: Duration, min_per_sec: u32, retry_ratio: f32) -> Self {
        BudgetConfig {
            ttl,
            min_per_sec,
            retry_ratio,
        }
    }

    fn build(&self) -> TpsBudget {
        let ttl = self
            .ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let ratio = if self.retry_ratio.is_finite() {
            self.retry_ratio.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        TpsBudget::new(ttl, self.min_per_sec.min(i32::MAX as u32 - 1), ratio)
    }
}

/// The [`tower::retry::Policy`] of the retry layer: which failures to retry and how long to wait.
///
/// Retries only [retryable](crate::Error::is_retryable) errors. A batch call is retried for its
/// retryable failures only; the ids that succeeded or failed for good are not sent again.
///
/// Clones share the budget and the random source; each call counts its own attempts.
#[derive(Clone)]
pub struct RetryPolicy {
    config: Arc<RetryConfig>,
    budget: Arc<TpsBudget>,
    rng: Arc<Mutex<dyn Rng + Send>>,
    /// Retries made so far by this call; always 0 in the template policy the layer clones
    /// for each call, which is how `clone_request` tells a new call from a retry.
    retries: u32,
    started: Option<Instant>,
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("config", &self.config)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl RetryPolicy {
    /// A policy for `config`, with a fresh budget and a randomly seeded jitter source.
    pub fn new(config: RetryConfig) -> Self {
        let budget = Arc::new(config.budget.build());
        RetryPolicy {
            config: Arc::new(config),
            budget,
            rng: Arc::new(Mutex::new(HasherRng::new())),
            retries: 0,
            started: None,
        }
    }

    /// Draws jitter from `rng` instead: give tests a fixed sequence for exact delays.
    pub fn with_rng(mut self, rng: impl Rng + Send + 'static) -> Self {
        self.rng = Arc::new(Mutex::new(rng));
        self
    }

    /// Shares `budget` with other policies, e.g. one budget for all providers of one account.
    pub fn with_budget(mut self, budget: Arc<TpsBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// The budget this policy draws retries from.
    pub fn budget(&self) -> &Arc<TpsBudget> {
        &self.budget
    }

    /// The configuration.
    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    fn jitter(&self) -> f64 {
        // A poisoned lock only means another thread panicked mid-draw; the generator is still
        // usable, and jitter need not be perfect.
        let mut rng = match self.rng.lock() {
            Ok(rng) => rng,
            Err(poisoned) => poisoned.into_inner(),
        };
        rng.next_f64()
    }

    /// Decides whether to retry after `error`; returns the delay, or `None` to give up.
    fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if self.retries + 1 >= self.config.max_attempts {
            return None;
        }
        let ceiling = self.config.backoff.delay(self.retries + 1);
        let mut delay = ceiling.mul_f64(self.jitter());
        if let Some(asked) = retry_after {
            delay = delay.max(asked);
        }
        if let (Some(limit), Some(started)) = (self.config.max_elapsed, self.started)
            && started.elapsed() + delay > limit
        {
            return None;
        }
        if !self.budget.withdraw() {
            tracing::debug!("retry budget exhausted; not retrying");
            return None;
        }
        Some(delay)
    }

    fn schedule(&mut self, delay: Duration, error: &Error) -> Sleep {
        tracing::debug!(
            failed_attempt = self.retries + 1,
            delay_ms = delay.as_millis() as u64,
            error = %error,
            "retrying"
        );
        self.retries += 1;
        tokio::time::sleep(delay)
    }
}

impl RetryPolicy {
    /// The delay before the next attempt, or `None` when the call is over.
    fn decide(
        &mut self,
        request: &mut ProviderRequest,
        result: &Result<ProviderResponse>,
    ) -> Option<Sleep> {
        match result {
            Err(error) if error.is_retryable() => {
                let delay = self.next_delay(error.retry_after())?;
                Some(self.schedule(delay, error))
            }
            Ok(ProviderResponse::Batch(results)) => {
                let mut failed = results
                    .iter()
                    .filter_map(|(_, result)| result.as_ref().err())
                    .filter(|error| error.is_retryable());
                let first = failed.next()?.clone();
                let retry_after = failed.fold(first.retry_after(), |longest, error| {
                    longest.max(error.retry_after())
                });
                let delay = self.next_delay(retry_after)?;
                let remaining = BatchItems::from_results_retrying_failures(results);
                tracing::debug!(
                    retryable = remaining.pending_ids().len(),
                    "retrying part of a batch"
                );
                match request {
                    ProviderRequest::StopInstances(items, _)
                    | ProviderRequest::StartInstances(items) => *items = remaining,
                    _ => return None,
                }
                Some(self.schedule(delay, &first))
            }
            _ => None,
        }
    }
}

impl Policy<ProviderRequest, ProviderResponse, Error> for RetryPolicy {
    type Future = Sleep;

    fn retry(
        &mut self,
        request: &mut ProviderRequest,
        result: &mut Result<ProviderResponse>,
    ) -> Option<Self::Future> {
        let next = self.decide(request, result);
        if next.is_none() {
            // Recorded once, when the call is over: span fields recorded twice are shown twice.
            tracing::Span::current().record("attempts", self.retries + 1);
        }
        next
    }

    fn clone_request(&mut self, request: &ProviderRequest) -> Option<ProviderRequest> {
        if self.retries == 0 {
            // A new call is beginning (on the template policy, whose clone the call keeps):
            // start its clock and count it in the budget.
            self.started = Some(Instant::now());
            self.budget.deposit();
        }
        Some(request.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ceilings_are_1_s_doubling_to_20_s() {
        let config = RetryConfig::default();
        let ceilings: Vec<_> = config.backoff.delays().take(7).collect();
        assert_eq!(
            ceilings,
            [1, 2, 4, 8, 16, 20, 20].map(Duration::from_secs).to_vec()
        );
    }

    #[test]
    fn out_of_range_budget_and_multiplier_are_clamped_not_panics() {
        let config = RetryConfig::default()
            .with_multiplier(f64::NAN)
            .with_budget(BudgetConfig::new(Duration::ZERO, u32::MAX, -3.0));
        let policy = RetryPolicy::new(config);
        assert_eq!(policy.config().backoff.multiplier, 1.0);
        assert!(policy.budget().withdraw());
    }
}
