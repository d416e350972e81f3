//! The EC2 provider as a Snoozebot plugin executable.
//!
//! Configured like any AWS SDK program, through its environment (the host must let it
//! inherit the variables, e.g. `PluginConfig::inherit("AWS_*")`): `AWS_REGION`,
//! `AWS_PROFILE`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL` (moto,
//! LocalStack), and the rest of the standard chain. Credentials are resolved on the first call,
//! so the plugin starts in milliseconds.

use std::process::ExitCode;

fn main() -> ExitCode {
    snoozebot_plugin::init_logging();
    snoozebot_plugin::serve(snoozebot_aws::AwsProviderBuilder::new().build_lazy())
}
