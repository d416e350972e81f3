//! The Azure VM provider as a Snoozebot plugin executable.
//!
//! Configured through its environment (let the host pass it, e.g.
//! `PluginConfig::with_env` or `inherit("SNOOZEBOT_AZURE_*")`, plus the `AZURE_*` variables of
//! the standard credential):
//!
//! | variable | meaning |
//! |---|---|
//! | `SNOOZEBOT_AZURE_SUBSCRIPTION` | the default subscription (ids `resourceGroup/name`, and the one listed) |
//! | `SNOOZEBOT_AZURE_RESOURCE_GROUP` | list only this resource group |
//! | `SNOOZEBOT_AZURE_ENDPOINT` | another ARM endpoint (sovereign clouds, fakes) |
//! | `SNOOZEBOT_AZURE_STATIC_TOKEN` | a fixed bearer token (fakes only; plain http only to loopback) |
//! | `SNOOZEBOT_AZURE_POLL_INTERVAL_MS` | the pause between operation polls when ARM names none |
//!
//! Tokens are asked for on the first call, so the plugin starts in milliseconds. A
//! configuration the provider refuses ends the plugin with the reason on stderr.

use std::process::ExitCode;
use std::time::Duration;

use snoozebot_azure::AzureProviderBuilder;

fn main() -> ExitCode {
    snoozebot_plugin::init_logging();
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let mut builder = AzureProviderBuilder::new();
    if let Some(subscription) = var("SNOOZEBOT_AZURE_SUBSCRIPTION") {
        builder = builder.subscription(subscription);
    }
    if let Some(group) = var("SNOOZEBOT_AZURE_RESOURCE_GROUP") {
        builder = builder.resource_group(group);
    }
    if let Some(endpoint) = var("SNOOZEBOT_AZURE_ENDPOINT") {
        builder = builder.endpoint(endpoint);
    }
    if let Some(token) = var("SNOOZEBOT_AZURE_STATIC_TOKEN") {
        builder = builder.static_token(token);
    }
    if let Some(millis) = var("SNOOZEBOT_AZURE_POLL_INTERVAL_MS") {
        match millis.parse::<u64>() {
            Ok(millis) => builder = builder.poll_interval(Duration::from_millis(millis)),
            Err(error) => {
                eprintln!("SNOOZEBOT_AZURE_POLL_INTERVAL_MS={millis:?}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    match builder.build() {
        Ok(provider) => snoozebot_plugin::serve(provider),
        Err(error) => {
            eprintln!("snoozebot-plugin-azure: {error}");
            ExitCode::FAILURE
        }
    }
}
