//! Deallocate (or power off, hibernate, or start) every Azure VM carrying a tag.
//!
//! ```text
//! # without an account, against the testkit's fake ARM server:
//! cargo run -p snoozebot-examples --features azure --example azure_deallocate_by_tag -- --fake --tag snoozebot=idle
//! # a real subscription (az login, a service principal, or a managed identity):
//! cargo run -p snoozebot-examples --features azure --example azure_deallocate_by_tag -- \
//!     --subscription 00000000-0000-0000-0000-000000000000 --resource-group web --tag snoozebot=idle
//! ```
//!
//! Options: `--subscription S`, `--resource-group G`, `--tag KEY=VALUE` (required),
//! `--power-off` (cheaper to restart, **still billed**), `--hibernate`, `--start`, `--fake`.

use std::sync::Arc;
use std::time::Duration;

use snoozebot_azure::AzureProviderBuilder;
use snoozebot_core::{
    CloudProvider, InstanceFilter, InstanceState, ProviderBuilder, RetryConfig, StopMode,
    StopOptions,
};
use snoozebot_testkit::arm::FakeArm;

const DEMO_SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000de0";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // An error's own words on stderr, not a debug dump of it.
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("azure_deallocate_by_tag: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (mut subscription, mut resource_group, mut tag) = (None, None, None);
    let mut mode = None;
    let (mut start, mut fake) = (false, false);
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--subscription" => subscription = words.next(),
            "--resource-group" => resource_group = words.next(),
            "--tag" => tag = words.next(),
            "--power-off" => mode = Some(StopMode::Stop),
            "--hibernate" => mode = Some(StopMode::Hibernate),
            "--start" => start = true,
            "--fake" => fake = true,
            other => {
                return Err(format!(
                    "unknown option {other} (see examples/azure_deallocate_by_tag.rs)"
                )
                .into());
            }
        }
    }
    let tag = tag.ok_or("--tag KEY=VALUE is required")?;
    let (key, value) = tag.split_once('=').ok_or("--tag takes KEY=VALUE")?;

    // The fake lives as long as `main`.
    let mut _fake_server = None;
    let mut builder = AzureProviderBuilder::new();
    if fake {
        let server = FakeArm::start().await;
        for (group, name, idleness) in [
            ("web", "web-1", "idle"),
            ("web", "web-2", "busy"),
            ("batch", "batch-1", "idle"),
        ] {
            server.add_vm(
                DEMO_SUBSCRIPTION,
                group,
                name,
                "running",
                &[("snoozebot", idleness)],
            );
        }
        builder = builder
            .subscription(DEMO_SUBSCRIPTION)
            .endpoint(server.endpoint())
            .static_token("fake-token")
            .poll_interval(Duration::from_millis(50));
        _fake_server = Some(server);
    } else {
        builder =
            builder.subscription(subscription.ok_or("--subscription is required (or --fake)")?);
    }
    if let Some(group) = resource_group {
        builder = builder.resource_group(group);
    }

    let azure = ProviderBuilder::new(Arc::new(builder.build()?))
        .retry(RetryConfig::default())
        .timeout(Duration::from_secs(15 * 60))
        .build();
    let filter = InstanceFilter::new().with_tag(key, value);
    let filter = if start {
        filter.with_state(InstanceState::Stopped)
    } else {
        filter.with_state(InstanceState::Running)
    };
    let vms = azure.list_instances(&filter).await?;
    println!("{} VMs tagged {key}={value}", vms.len());
    let ids: Vec<_> = vms.into_iter().map(|info| info.id).collect();
    let results = if start {
        azure.start_instances(&ids).await
    } else {
        let opts = match mode {
            Some(mode) => StopOptions::default().with_mode(mode),
            None => StopOptions::default(),
        };
        azure.stop_instances(&ids, &opts).await
    };
    for (id, result) in results {
        match result {
            Ok(change) => println!("{id}  {} -> {}", change.previous, change.current),
            Err(error) => println!("{id}  error: {error}"),
        }
    }
    Ok(())
}
