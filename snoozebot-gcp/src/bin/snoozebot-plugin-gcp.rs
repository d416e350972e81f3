//! The Compute Engine provider as a Snoozebot plugin executable.
//!
//! Configured through its environment, as [`GcpProviderBuilder::from_env`] reads it (let the
//! host pass it, e.g. `PluginConfig::with_env` or `inherit("SNOOZEBOT_GCP_*")`, plus `GOOGLE_*`
//! for Application Default Credentials): `SNOOZEBOT_GCP_PROJECT`, `SNOOZEBOT_GCP_ZONES`,
//! `SNOOZEBOT_GCP_ENDPOINT`, `SNOOZEBOT_GCP_ANONYMOUS`, `SNOOZEBOT_GCP_DISCARD_LOCAL_SSD`.
//!
//! Credentials are resolved on the first call, so the plugin starts in milliseconds. A
//! configuration the provider refuses ends the plugin with the reason on stderr.

use std::process::ExitCode;

use snoozebot_gcp::GcpProviderBuilder;

fn main() -> ExitCode {
    snoozebot_plugin::init_logging();
    match GcpProviderBuilder::from_env().and_then(GcpProviderBuilder::build) {
        Ok(provider) => snoozebot_plugin::serve(provider),
        Err(error) => {
            eprintln!("snoozebot-plugin-gcp: {error}");
            ExitCode::FAILURE
        }
    }
}
