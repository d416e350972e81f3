//! The Compute Engine provider as a Snoozebot plugin executable.
//!
//! Configured through its environment (let the host pass it, e.g.
//! `PluginConfig::with_env` or `inherit("SNOOZEBOT_GCP_*")`, plus `GOOGLE_*` for Application
//! Default Credentials):
//!
//! | variable | meaning |
//! |---|---|
//! | `SNOOZEBOT_GCP_PROJECT` | the default project (ids `zone/name`, and the one listed) |
//! | `SNOOZEBOT_GCP_ZONES` | comma-separated zones to list instead of the aggregated list |
//! | `SNOOZEBOT_GCP_ENDPOINT` | another endpoint (fakes, emulators) |
//! | `SNOOZEBOT_GCP_ANONYMOUS` | `1` to send no credentials (fakes only) |
//!
//! Credentials are resolved on the first call, so the plugin starts in milliseconds.

use std::process::ExitCode;

use snoozebot_gcp::GcpProviderBuilder;

fn main() -> ExitCode {
    snoozebot_plugin::init_logging();
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let mut builder = GcpProviderBuilder::new();
    if let Some(project) = var("SNOOZEBOT_GCP_PROJECT") {
        builder = builder.project(project);
    }
    if let Some(zones) = var("SNOOZEBOT_GCP_ZONES") {
        builder = builder.zones(
            zones
                .split(',')
                .map(str::trim)
                .filter(|zone| !zone.is_empty()),
        );
    }
    if let Some(endpoint) = var("SNOOZEBOT_GCP_ENDPOINT") {
        builder = builder.endpoint(endpoint);
    }
    if var("SNOOZEBOT_GCP_ANONYMOUS").as_deref() == Some("1") {
        builder = builder.anonymous();
    }
    snoozebot_plugin::serve(builder.build())
}
