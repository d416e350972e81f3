//! Stop (or suspend, or start) every Compute Engine instance carrying a label.
//!
//! ```text
//! # without an account, against the testkit's fake GCE server:
//! cargo run -p snoozebot-examples --features gcp --example gcp_stop_by_label -- --fake --label snoozebot=idle
//! # a real project, Application Default Credentials:
//! cargo run -p snoozebot-examples --features gcp --example gcp_stop_by_label -- \
//!     --project my-project --label snoozebot=idle --suspend
//! ```
//!
//! Options: `--project P`, `--label KEY=VALUE` (required), `--suspend`, `--start`, `--fake`.

use std::sync::Arc;
use std::time::Duration;

use snoozebot_core::{
    CloudProvider, InstanceFilter, InstanceState, ProviderBuilder, RetryConfig, StopMode,
    StopOptions,
};
use snoozebot_gcp::GcpProviderBuilder;
use snoozebot_testkit::gce::FakeGce;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // An error's own words on stderr, not a debug dump of it.
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gcp_stop_by_label: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut project = None;
    let mut label = None;
    let (mut suspend, mut start, mut fake) = (false, false, false);
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--project" => project = words.next(),
            "--label" => label = words.next(),
            "--suspend" => suspend = true,
            "--start" => start = true,
            "--fake" => fake = true,
            other => {
                return Err(
                    format!("unknown option {other} (see examples/gcp_stop_by_label.rs)").into(),
                );
            }
        }
    }
    let label = label.ok_or("--label KEY=VALUE is required")?;
    let (key, value) = label.split_once('=').ok_or("--label takes KEY=VALUE")?;

    // The fake lives as long as `main`.
    let mut _fake_server = None;
    let mut builder = GcpProviderBuilder::new();
    if fake {
        let server = FakeGce::start().await;
        for (zone, name, idleness) in [
            ("us-central1-a", "web-1", "idle"),
            ("us-central1-a", "web-2", "busy"),
            ("europe-west1-b", "batch-1", "idle"),
        ] {
            server.add_instance("demo", zone, name, "RUNNING", &[("snoozebot", idleness)]);
        }
        builder = builder
            .project("demo")
            .endpoint(server.endpoint())
            .anonymous();
        _fake_server = Some(server);
    } else {
        builder = builder.project(project.ok_or("--project is required (or --fake)")?);
    }

    let gce = ProviderBuilder::new(Arc::new(builder.build()?))
        .retry(RetryConfig::default())
        .timeout(Duration::from_secs(120))
        .build();
    let wanted = if start {
        vec![InstanceState::Stopped, InstanceState::Suspended]
    } else {
        vec![InstanceState::Running]
    };
    let mut filter = InstanceFilter::new().with_tag(key, value);
    for state in wanted {
        filter = filter.with_state(state);
    }
    let instances = gce.list_instances(&filter).await?;
    println!("{} instances labelled {key}={value}", instances.len());
    let ids: Vec<_> = instances.into_iter().map(|info| info.id).collect();
    let results = if start {
        gce.start_instances(&ids).await
    } else {
        let opts = if suspend {
            StopOptions::default().with_mode(StopMode::Suspend)
        } else {
            StopOptions::default()
        };
        gce.stop_instances(&ids, &opts).await
    };
    for (id, result) in results {
        match result {
            Ok(change) => println!("{id}  {} -> {}", change.previous, change.current),
            Err(error) => println!("{id}  error: {error}"),
        }
    }
    Ok(())
}
