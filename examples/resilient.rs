//! Resilience: a throttling, flaky cloud, and the middleware that absorbs it.
//!
//! ```text
//! cargo run --example resilient
//! RUST_LOG=snoozebot_core=debug cargo run --example resilient   # every retry, with its delay
//! ```
//!
//! The mock fleet is told to throttle the next stop calls and to be unavailable for a while;
//! the retry layer (backoff with full jitter, honouring the cloud's Retry-After) gets every call
//! through, and the tracing span of each call shows its attempts, outcome and latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use snoozebot_core::{
    CloudProvider, CloudProviderExt, Error, ErrorKind, InstanceFilter, InstanceState,
    ProviderBuilder, RateLimiter, RetryConfig, StopOptions,
};
use snoozebot_examples::print_state_changes;
use snoozebot_testkit::{MockOperation, MockProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // An error's own words on stderr, not a debug dump of it.
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("resilient: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        // Colour only for a terminal: escapes in a pipe or a log file are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_span_events(FmtSpan::CLOSE)
        .with_target(false)
        .init();

    let fleet = MockProvider::fleet(12);
    // The cloud throttles the next three stops (asking for 200 ms of patience each time) and
    // is unavailable for the next two reads.
    fleet.fail_next_with(
        MockOperation::Stop,
        3,
        Error::new(
            ErrorKind::Throttled,
            "RequestLimitExceeded: Request limit exceeded.",
        )
        .with_retry_after(Duration::from_millis(200)),
    );
    fleet.fail_next(MockOperation::Get, 2, ErrorKind::Unavailable);

    let provider: Arc<dyn CloudProvider> = ProviderBuilder::new(Arc::new(fleet.clone()))
        .tracing()
        .retry(
            RetryConfig::default()
                .with_max_attempts(4)
                .with_backoff(Duration::from_millis(100), Duration::from_secs(2)),
        )
        .rate_limit(RateLimiter::new(20.0, 5)?)
        .concurrency_limit(4)
        .timeout(Duration::from_secs(5))
        .build();

    let started = Instant::now();
    let idle = provider
        .list_instances(&InstanceFilter::new().with_tag("snoozebot", "idle"))
        .await?;
    let ids: Vec<_> = idle.iter().map(|info| info.id.clone()).collect();
    let results = provider.stop_instances(&ids, &StopOptions::default()).await;
    let mut after = Vec::new();
    for id in &ids {
        after.push(
            provider
                .wait_for_state(id, InstanceState::Stopped, Duration::from_secs(10))
                .await?,
        );
    }

    println!();
    print_state_changes(&idle, &results, &after);
    let failed_attempts = fleet
        .calls()
        .iter()
        .filter(|call| call.outcome.is_err())
        .count();
    println!(
        "\n{} calls reached the cloud, {failed_attempts} of them failed and were retried; \
         every stop succeeded in {:?}",
        fleet.calls().len(),
        started.elapsed()
    );
    Ok(())
}
