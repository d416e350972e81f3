//! The middleware stack through the public API, on the testkit's mock fleet, with paused tokio
//! time: every delay below is exact, and no test sleeps for real.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use snoozebot_core::middleware::{RetryPolicy, Rng};
use snoozebot_core::{
    BudgetConfig, CloudProvider, Error, ErrorKind, InstanceFilter, InstanceId, ProviderBuilder,
    RateLimiter, RetryConfig, StopOptions,
};
use snoozebot_testkit::{MockOperation, MockProvider};
use tokio::time::Instant;

/// A jitter source that always draws the same fraction of the backoff ceiling.
struct FixedJitter(f64);

impl Rng for FixedJitter {
    fn next_u64(&mut self) -> u64 {
        unreachable!("only next_f64 is used")
    }

    fn next_f64(&mut self) -> f64 {
        self.0
    }
}

fn id(s: &str) -> InstanceId {
    InstanceId::new(s).unwrap()
}

fn retrying(fleet: &MockProvider, config: RetryConfig, jitter: f64) -> Arc<dyn CloudProvider> {
    ProviderBuilder::new(Arc::new(fleet.clone()))
        .retry_policy(RetryPolicy::new(config).with_rng(FixedJitter(jitter)))
        .build()
}

#[tokio::test(start_paused = true)]
async fn retries_until_success_with_exact_attempt_count() {
    let fleet = MockProvider::fleet(2);
    fleet.fail_next(MockOperation::Get, 2, ErrorKind::Unavailable);
    let provider = retrying(&fleet, RetryConfig::default(), 0.5);

    let info = provider.get_instance(&id("mock-0001")).await.unwrap();
    assert_eq!(info.id.as_str(), "mock-0001");
    assert_eq!(fleet.call_count(MockOperation::Get), 3);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts_with_the_last_error() {
    let fleet = MockProvider::fleet(2);
    fleet.fail_next(MockOperation::Get, 10, ErrorKind::Throttled);
    let provider = retrying(&fleet, RetryConfig::default().with_max_attempts(4), 0.5);

    let err = provider.get_instance(&id("mock-0001")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled);
    assert_eq!(fleet.call_count(MockOperation::Get), 4);
}

#[tokio::test(start_paused = true)]
async fn backoff_is_exponential_and_capped_at_full_jitter_ceiling() {
    let fleet = MockProvider::fleet(1);
    fleet.fail_next(MockOperation::Get, 5, ErrorKind::Unavailable);
    let config = RetryConfig::default()
        .with_max_attempts(6)
        .with_backoff(Duration::from_secs(1), Duration::from_secs(5))
        .with_max_elapsed(None);
    // Drawing the whole ceiling every time: 1 + 2 + 4 + 5 + 5 seconds.
    let provider = retrying(&fleet, config.clone(), 1.0);
    let started = Instant::now();
    provider.get_instance(&id("mock-0000")).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(17));

    // Drawing a quarter of it: full jitter scales every delay, never the other way.
    fleet.fail_next(MockOperation::Get, 5, ErrorKind::Unavailable);
    let provider = retrying(&fleet, config, 0.25);
    let started = Instant::now();
    provider.get_instance(&id("mock-0000")).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(4250));
}

#[tokio::test(start_paused = true)]
async fn random_jitter_stays_below_the_ceilings() {
    let fleet = MockProvider::fleet(1);
    let provider = ProviderBuilder::new(Arc::new(fleet.clone()))
        .retry(RetryConfig::default().with_budget(BudgetConfig::new(
            Duration::from_secs(1),
            1000,
            1.0,
        )))
        .build();
    for _ in 0..50 {
        fleet.fail_next(MockOperation::Get, 2, ErrorKind::Unavailable);
        let started = Instant::now();
        provider.get_instance(&id("mock-0000")).await.unwrap();
        // Two retries with ceilings of 1 s and 2 s.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(fleet.call_count(MockOperation::Get), 150);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_over_a_shorter_backoff() {
    let fleet = MockProvider::fleet(1);
    let throttled = Error::new(ErrorKind::Throttled, "RequestLimitExceeded")
        .with_retry_after(Duration::from_secs(7));
    fleet.fail_next_with(MockOperation::Get, 1, throttled);
    let provider = retrying(&fleet, RetryConfig::default(), 0.0);

    let started = Instant::now();
    provider.get_instance(&id("mock-0000")).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(7));
    assert_eq!(fleet.call_count(MockOperation::Get), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_total_limit_fails_at_once() {
    let fleet = MockProvider::fleet(1);
    let throttled = Error::new(ErrorKind::Throttled, "SubscriptionRequestsThrottled")
        .with_retry_after(Duration::from_secs(1200));
    fleet.fail_next_with(MockOperation::Get, 1, throttled);
    let provider = retrying(&fleet, RetryConfig::default(), 0.0);

    let started = Instant::now();
    let err = provider.get_instance(&id("mock-0000")).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1200)));
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(fleet.call_count(MockOperation::Get), 1);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_kinds_are_not_retried() {
    let fleet = MockProvider::fleet(1);
    let provider = retrying(&fleet, RetryConfig::default().with_max_attempts(5), 0.5);
    for kind in ErrorKind::ALL
        .into_iter()
        .filter(|kind| !kind.is_retryable())
    {
        fleet.clear_calls();
        fleet.fail_next(MockOperation::Get, 1, kind);
        let err = provider.get_instance(&id("mock-0000")).await.unwrap_err();
        assert_eq!(err.kind(), kind);
        assert_eq!(
            fleet.call_count(MockOperation::Get),
            1,
            "{kind} was retried"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_a_throttling_storm_from_multiplying_load() {
    let fleet = MockProvider::fleet(1);
    fleet.fail_next(MockOperation::Get, 10_000, ErrorKind::Throttled);
    // Retries may add 10 % of the calls made, with no reserve.
    let budget = BudgetConfig::new(Duration::from_secs(10), 0, 0.1);
    let provider = retrying(&fleet, RetryConfig::default().with_budget(budget), 0.0);

    let calls = 200;
    for _ in 0..calls {
        let err = provider.get_instance(&id("mock-0000")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Throttled);
    }
    let made = fleet.call_count(MockOperation::Get);
    // Without a budget: 600 calls (3 attempts each). With it: at most 10 % more than asked.
    assert!(
        made >= calls && made <= calls + calls / 10,
        "{made} calls reached the fleet"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retried_batch_resends_only_the_failed_ids() {
    let fleet = MockProvider::fleet(3);
    fleet.fail_next(MockOperation::Stop, 1, ErrorKind::Throttled);
    let provider = retrying(&fleet, RetryConfig::default(), 0.0);
    let ids = [id("mock-0000"), id("mock-9999"), id("mock-0002")];

    let results = provider.stop_instances(&ids, &StopOptions::default()).await;
    let summary: Vec<_> = results
        .iter()
        .map(|(id, result)| (id.as_str(), result.as_ref().err().map(Error::kind)))
        .collect();
    assert_eq!(
        summary,
        [
            ("mock-0000", None),
            ("mock-9999", Some(ErrorKind::NotFound)),
            ("mock-0002", None)
        ]
    );
    // Three ids, one throttled once: four stops, and the missing id was not asked about again.
    assert_eq!(fleet.call_count(MockOperation::Stop), 4);
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_times_out_and_each_attempt_gets_the_full_limit() {
    let fleet = MockProvider::fleet(1);
    fleet.set_latency(Duration::from_secs(10));
    let provider = ProviderBuilder::new(Arc::new(fleet.clone()))
        .timeout(Duration::from_secs(2))
        .build();
    let started = Instant::now();
    let err = provider.get_instance(&id("mock-0000")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.message().contains("get_instance"), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));

    let provider = ProviderBuilder::new(Arc::new(fleet.clone()))
        .timeout(Duration::from_secs(2))
        .retry_policy(RetryPolicy::new(RetryConfig::default()).with_rng(FixedJitter(0.0)))
        .build();
    let started = Instant::now();
    let err = provider.get_instance(&id("mock-0000")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(started.elapsed(), Duration::from_secs(6));
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_is_shared_by_clones_and_by_providers_given_one_limiter() {
    let fleet = MockProvider::fleet(1);
    let limiter = RateLimiter::new(2.0, 1).unwrap();
    let first = ProviderBuilder::new(Arc::new(fleet.clone()))
        .rate_limit(limiter.clone())
        .build();
    let second = ProviderBuilder::new(Arc::new(fleet.clone()))
        .rate_limit(limiter)
        .build();

    let started = Instant::now();
    let calls = (0..10).map(|n| {
        let provider = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tokio::spawn(async move { provider.list_instances(&InstanceFilter::new()).await })
    });
    for call in calls {
        call.await.unwrap().unwrap();
    }
    // Ten calls at two a second, the first one free: 4.5 s, whichever provider made them.
    assert_eq!(started.elapsed(), Duration::from_millis(4500));
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_limit_holds() {
    let fleet = MockProvider::fleet(1);
    fleet.set_latency(Duration::from_secs(1));
    let provider = ProviderBuilder::new(Arc::new(fleet.clone()))
        .concurrency_limit(2)
        .build();

    let started = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.list_instances(&InstanceFilter::new()).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    // Six one-second calls, two at a time.
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}
