//! Quickstart: put the idle machines of a fleet to sleep.
//!
//! Runs on the testkit's in-memory mock fleet, so it needs no cloud account:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Swap `MockProvider` for `snoozebot_aws::AwsProvider` (or GCP, Azure) and the rest stays the same.

use std::sync::Arc;
use std::time::Duration;

use snoozebot_core::{
    CloudProvider, CloudProviderExt, InstanceFilter, InstanceState, ProviderBuilder, RetryConfig,
    StopOptions,
};
use snoozebot_examples::print_state_changes;
use snoozebot_testkit::MockProvider;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // An error's own words on stderr, not a debug dump of it.
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quickstart: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // A fleet of 20 running machines; every fourth is tagged snoozebot=idle. Stopping takes
    // 300 ms here, as it takes a minute or so on a real cloud.
    let fleet = MockProvider::builder()
        .fleet(20)
        .transition_time(Duration::from_millis(300))
        .build();

    // Every call goes through retries with backoff and a per-call timeout.
    let provider: Arc<dyn CloudProvider> = ProviderBuilder::new(Arc::new(fleet))
        .retry(RetryConfig::default())
        .timeout(Duration::from_secs(30))
        .build();

    let all = provider.list_instances(&InstanceFilter::new()).await?;
    let idle = provider
        .list_instances(
            &InstanceFilter::new()
                .with_tag("snoozebot", "idle")
                .with_state(InstanceState::Running),
        )
        .await?;
    println!(
        "{} instances, {} running and tagged snoozebot=idle\n",
        all.len(),
        idle.len()
    );

    let ids: Vec<_> = idle.iter().map(|info| info.id.clone()).collect();
    let results = provider.stop_instances(&ids, &StopOptions::default()).await;

    let mut after = Vec::new();
    for id in &ids {
        after.push(
            provider
                .wait_for_state(id, InstanceState::Stopped, Duration::from_secs(60))
                .await?,
        );
    }
    print_state_changes(&idle, &results, &after);

    let still_running = provider
        .list_instances(&InstanceFilter::new().with_state(InstanceState::Running))
        .await?;
    println!(
        "\n{} stopped, {} still running",
        after.len(),
        still_running.len()
    );
    Ok(())
}
