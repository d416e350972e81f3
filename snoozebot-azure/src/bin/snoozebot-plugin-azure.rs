//! The Azure VM provider as a Snoozebot plugin executable.
//!
//! Configured through its environment, as [`AzureProviderBuilder::from_env`] reads it (let the
//! host pass it, e.g. `PluginConfig::with_env` or `inherit("SNOOZEBOT_AZURE_*")`, plus the
//! `AZURE_*` variables of the standard credential): `SNOOZEBOT_AZURE_SUBSCRIPTION`,
//! `SNOOZEBOT_AZURE_RESOURCE_GROUP`, `SNOOZEBOT_AZURE_ENDPOINT`, `SNOOZEBOT_AZURE_STATIC_TOKEN`
//! (fakes only), `SNOOZEBOT_AZURE_POLL_INTERVAL_MS`, `SNOOZEBOT_AZURE_OPERATION_TIMEOUT_MS`.
//!
//! Tokens are asked for on the first call, so the plugin starts in milliseconds. A
//! configuration the provider refuses ends the plugin with the reason on stderr.

use std::process::ExitCode;

use snoozebot_azure::AzureProviderBuilder;

fn main() -> ExitCode {
    snoozebot_plugin::init_logging();
    match AzureProviderBuilder::from_env().and_then(AzureProviderBuilder::build) {
        Ok(provider) => snoozebot_plugin::serve(provider),
        Err(error) => {
            eprintln!("snoozebot-plugin-azure: {error}");
            ExitCode::FAILURE
        }
    }
}
