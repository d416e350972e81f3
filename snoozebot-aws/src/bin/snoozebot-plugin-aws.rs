//! The EC2 provider as a Snoozebot plugin executable.
//!
//! Configured like any AWS SDK program, through its environment (the host must let it
//! inherit the variables, e.g. `PluginConfig::inherit("AWS_*")`): `AWS_REGION`,
//! `AWS_PROFILE`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL` (moto,
//! LocalStack), and the rest of the standard chain; plus the `SNOOZEBOT_AWS_*` variables
//! [`AwsProviderBuilder::from_env`] reads. Credentials are resolved on the first call, so the
//! plugin starts in milliseconds. A configuration the provider refuses ends the plugin with
//! the reason on stderr.

use std::process::ExitCode;

use snoozebot_aws::AwsProviderBuilder;

fn main() -> ExitCode {
    snoozebot_plugin::init_logging();
    match AwsProviderBuilder::from_env().and_then(AwsProviderBuilder::build) {
        Ok(provider) => snoozebot_plugin::serve(provider),
        Err(error) => {
            eprintln!("snoozebot-plugin-aws: {error}");
            ExitCode::FAILURE
        }
    }
}
