//! [`AwsProviderBuilder`]: region, endpoint, credentials and retries for [`AwsProvider`].

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{Credentials, Region};
use snoozebot_core::{Error, ErrorKind, Result};

use crate::AwsProvider;

/// The ids per StopInstances/StartInstances call. EC2 documents no hard limit; 100 keeps each
/// request and answer small and a failing call cheap to split.
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// Builds an [`AwsProvider`], in the style of the AWS SDK's own configuration loader.
///
/// Credentials and region come from the standard chain (environment, shared config and
/// credentials files and profiles, SSO, web identity, ECS and EC2 instance metadata) unless
/// set here. The SDK's own retries are **off** by default: Snoozebot's retry layer
/// ([`ProviderBuilder::retry`](snoozebot_core::ProviderBuilder::retry)) is the one place
/// retries happen, so attempts never multiply. [`sdk_retries`](Self::sdk_retries) turns them
/// back on for callers who use the provider without the middleware.
///
/// ```no_run
/// use snoozebot_aws::AwsProviderBuilder;
///
/// # async fn run() -> snoozebot_core::Result<()> {
/// // Real AWS, credentials from the environment or ~/.aws, resolved now:
/// let aws = AwsProviderBuilder::new().region("eu-west-1").build_resolved().await?;
/// // An emulator such as moto or LocalStack, resolved on the first call:
/// let moto = AwsProviderBuilder::new()
///     .region("us-east-1")
///     .endpoint("http://127.0.0.1:5000")
///     .static_credentials("test", "test")
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct AwsProviderBuilder {
    settings: AwsSettings,
}

/// What the provider was configured with; the SDK client is made from it on first use.
#[derive(Debug, Clone)]
pub(crate) struct AwsSettings {
    region: Option<String>,
    endpoint_url: Option<String>,
    profile: Option<String>,
    credentials: Option<Credentials>,
    sdk_retries: bool,
    pub(crate) batch_size: usize,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            endpoint_url: None,
            profile: None,
            credentials: None,
            sdk_retries: false,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

impl AwsSettings {
    /// Resolves the configuration chain and makes the client.
    pub(crate) async fn connect(&self) -> Result<(Client, Option<String>)> {
        let (config, region) = self.load().await?;
        Ok((Client::new(&config), region))
    }

    /// The SDK configuration from the chain, and its region (required).
    async fn load(&self) -> Result<(aws_config::SdkConfig, Option<String>)> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile.clone());
        }
        if let Some(credentials) = &self.credentials {
            loader = loader.credentials_provider(credentials.clone());
        }
        loader = loader.retry_config(if self.sdk_retries {
            RetryConfig::standard()
        } else {
            RetryConfig::disabled()
        });
        let config = loader.load().await;
        let region = config.region().map(|region| region.as_ref().to_owned());
        if region.is_none() {
            return Err(Error::new(
                ErrorKind::Config,
                "no AWS region: set AWS_REGION, a region in the profile, or AwsProviderBuilder::region",
            )
            .with_provider(crate::PROVIDER_NAME));
        }
        Ok((config, region))
    }
}

impl AwsProviderBuilder {
    /// A builder that takes everything from the standard chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// The region (`eu-west-1`); otherwise `AWS_REGION` or the profile's.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.settings.region = Some(region.into());
        self
    }

    /// Sends requests to this endpoint instead of AWS's (moto, LocalStack, a VPC endpoint).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.settings.endpoint_url = Some(url.into());
        self
    }

    /// Uses this profile of the shared config files.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.settings.profile = Some(profile.into());
        self
    }

    /// Uses fixed credentials instead of the chain (emulators, tests).
    pub fn static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.settings.credentials = Some(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "snoozebot-static",
        ));
        self
    }

    /// Turns the SDK's own retries (standard mode, 3 attempts) on or off; off by default.
    pub fn sdk_retries(mut self, enabled: bool) -> Self {
        self.settings.sdk_retries = enabled;
        self
    }

    /// Ids per StopInstances/StartInstances call (default [`DEFAULT_BATCH_SIZE`]; at least 1).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.settings.batch_size = batch_size.max(1);
        self
    }

    /// A provider that resolves credentials and region on its first call, as the other
    /// clouds' builders do; a missing region or credentials surface then as
    /// [`ErrorKind::Config`] or [`ErrorKind::Unauthenticated`]. Fails with
    /// [`ErrorKind::Config`] for an endpoint that is not an `http(s)` URL.
    pub fn build(self) -> Result<AwsProvider> {
        Ok(AwsProvider::new(self.checked()?))
    }

    /// The settings, once the endpoint is known to be an `http(s)` URL.
    fn checked(self) -> Result<AwsSettings> {
        if let Some(endpoint) = &self.settings.endpoint_url
            && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!("the endpoint {endpoint:?} is not an http(s) URL"),
            )
            .with_provider(crate::PROVIDER_NAME));
        }
        Ok(self.settings)
    }

    /// A provider with region and credentials resolved now, so that configuration and
    /// credential errors ([`ErrorKind::Config`], [`ErrorKind::Unauthenticated`]) surface here
    /// rather than on the first call. Resolving runs the credential source once (a
    /// `credential_process`, an SSO or STS request); the SDK caches what it resolves on its
    /// first request itself.
    pub async fn build_resolved(self) -> Result<AwsProvider> {
        let settings = self.checked()?;
        let (config, region) = settings.load().await?;
        if let Some(credentials) = config.credentials_provider() {
            credentials
                .provide_credentials()
                .await
                .map_err(crate::error::map_credentials_error)?;
        }
        Ok(AwsProvider::with_client(
            settings,
            Client::new(&config),
            region,
        ))
    }

    /// A builder from the environment, as `snoozebot-plugin-aws` is configured. The AWS
    /// chain reads its own variables (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, the
    /// credentials, ...); on top of them:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `SNOOZEBOT_AWS_REGION` | [`region`](Self::region) |
    /// | `SNOOZEBOT_AWS_PROFILE` | [`profile`](Self::profile) |
    /// | `SNOOZEBOT_AWS_ENDPOINT` | [`endpoint`](Self::endpoint) |
    /// | `SNOOZEBOT_AWS_BATCH_SIZE` | [`batch_size`](Self::batch_size) |
    /// | `SNOOZEBOT_AWS_SDK_RETRIES` | `true` or `false`: [`sdk_retries`](Self::sdk_retries) |
    ///
    /// Empty variables count as unset; a value that cannot be read is [`ErrorKind::Config`]
    /// naming the variable.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let bad = |name: &str, value: &str, expected: &str| {
            Error::new(
                ErrorKind::Config,
                format!("{name}={value:?}: expected {expected}"),
            )
            .with_provider(crate::PROVIDER_NAME)
        };
        let mut builder = Self::new();
        if let Some(region) = var("SNOOZEBOT_AWS_REGION") {
            builder = builder.region(region);
        }
        if let Some(profile) = var("SNOOZEBOT_AWS_PROFILE") {
            builder = builder.profile(profile);
        }
        if let Some(endpoint) = var("SNOOZEBOT_AWS_ENDPOINT") {
            builder = builder.endpoint(endpoint);
        }
        if let Some(size) = var("SNOOZEBOT_AWS_BATCH_SIZE") {
            let size = size
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|size| *size > 0)
                .ok_or_else(|| bad("SNOOZEBOT_AWS_BATCH_SIZE", &size, "a number from 1"))?;
            builder = builder.batch_size(size);
        }
        match var("SNOOZEBOT_AWS_SDK_RETRIES").as_deref() {
            None => {}
            Some("true") => builder = builder.sdk_retries(true),
            Some("false") => builder = builder.sdk_retries(false),
            Some(other) => return Err(bad("SNOOZEBOT_AWS_SDK_RETRIES", other, "true or false")),
        }
        Ok(builder)
    }

    /// A provider around an SDK client you configured yourself; `region` is reported in
    /// [`InstanceInfo::region`](snoozebot_core::InstanceInfo::region).
    pub fn from_client(self, client: Client, region: Option<String>) -> AwsProvider {
        AwsProvider::with_client(self.settings, client, region)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<AwsProviderBuilder> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        AwsProviderBuilder::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn from_env_reads_the_plugins_variables() {
        let builder = from(&[
            ("SNOOZEBOT_AWS_REGION", "eu-west-1"),
            ("SNOOZEBOT_AWS_PROFILE", "ops"),
            ("SNOOZEBOT_AWS_ENDPOINT", "http://127.0.0.1:5000"),
            ("SNOOZEBOT_AWS_BATCH_SIZE", "25"),
            ("SNOOZEBOT_AWS_SDK_RETRIES", "true"),
        ])
        .unwrap();
        let settings = &builder.settings;
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert_eq!(settings.profile.as_deref(), Some("ops"));
        assert_eq!(
            settings.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(settings.batch_size, 25);
        assert!(settings.sdk_retries);
        assert!(builder.build().is_ok());
        let none = from(&[("SNOOZEBOT_AWS_REGION", "")]).unwrap();
        assert_eq!(none.settings.region, None);
    }

    #[test]
    fn unreadable_variables_and_endpoints_are_config_errors() {
        for (name, value) in [
            ("SNOOZEBOT_AWS_BATCH_SIZE", "0"),
            ("SNOOZEBOT_AWS_BATCH_SIZE", "lots"),
            ("SNOOZEBOT_AWS_SDK_RETRIES", "yes"),
        ] {
            let error = from(&[(name, value)]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config, "{name}={value}");
            assert!(error.message().contains(name), "{error}");
        }
        let error = from(&[("SNOOZEBOT_AWS_ENDPOINT", "localhost:5000")])
            .unwrap()
            .build()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
    }
}
