//! [`AzureProviderBuilder`]: an [`AzureProvider`]'s settings, from code or from the
//! environment.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use snoozebot_core::{Error, ErrorKind, Result};

use crate::PROVIDER_NAME;
use crate::client::{ArmClient, Authorization, Polling};
use crate::credential::StandardCredential;
use crate::provider::AzureProvider;

/// Azure Resource Manager in Azure's public cloud.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";
/// The Compute API version spoken (the recorded fixtures' version).
pub const API_VERSION: &str = "2025-04-01";

/// Builds an [`AzureProvider`].
///
/// ```
/// use snoozebot_azure::AzureProviderBuilder;
///
/// # fn run() -> snoozebot_core::Result<()> {
/// let azure = AzureProviderBuilder::new()
///     .subscription("00000000-0000-0000-0000-000000000000")
///     .resource_group("web")
///     .build()?; // credentials: StandardCredential (az login, managed identity, ...)
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct AzureProviderBuilder {
    subscription: Option<String>,
    resource_group: Option<String>,
    credential: Option<Arc<dyn TokenCredential>>,
    static_token: Option<String>,
    endpoint: String,
    api_version: String,
    poll_interval: Duration,
    operation_timeout: Duration,
}

impl fmt::Debug for AzureProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureProviderBuilder")
            .field("subscription", &self.subscription)
            .field("resource_group", &self.resource_group)
            .field("credential", &self.credential)
            .field(
                "static_token",
                &self.static_token.as_ref().map(|_| "<redacted>"),
            )
            .field("endpoint", &self.endpoint)
            .field("api_version", &self.api_version)
            .field("poll_interval", &self.poll_interval)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

impl Default for AzureProviderBuilder {
    fn default() -> Self {
        Self {
            subscription: None,
            resource_group: None,
            credential: None,
            static_token: None,
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            api_version: API_VERSION.to_owned(),
            poll_interval: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(15 * 60),
        }
    }
}

impl AzureProviderBuilder {
    /// A builder with the defaults: public Azure, [`StandardCredential`], api-version
    /// [`API_VERSION`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The subscription that `resourceGroup/name` ids belong to and that is listed.
    pub fn subscription(mut self, subscription: impl Into<String>) -> Self {
        self.subscription = Some(subscription.into());
        self
    }

    /// Lists only this resource group instead of the whole subscription.
    pub fn resource_group(mut self, resource_group: impl Into<String>) -> Self {
        self.resource_group = Some(resource_group.into());
        self
    }

    /// Any `azure_core` credential (an `azure_identity` one, or your own) instead of
    /// [`StandardCredential`].
    pub fn credential(mut self, credential: Arc<dyn TokenCredential>) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Sends this one bearer token (fakes and emulators). Over plain `http` it is sent only
    /// to loopback addresses.
    pub fn static_token(mut self, token: impl Into<String>) -> Self {
        self.static_token = Some(token.into());
        self
    }

    /// Another ARM endpoint: a sovereign cloud (`https://management.usgovcloudapi.net`,
    /// `https://management.chinacloudapi.cn`) or a fake. Tokens are asked for its own
    /// audience (`{endpoint}/.default`).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// Another Compute api-version than [`API_VERSION`].
    pub fn api_version(mut self, api_version: impl Into<String>) -> Self {
        self.api_version = api_version.into();
        self
    }

    /// The pause between polls of a long-running operation when ARM names none in
    /// `Retry-After` (default 5 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long a stop follows an operation that must finish before its next step (the
    /// power-off of a forced deallocate; a hibernation that may fall back) before answering
    /// `Timeout` (default 15 minutes; the operation itself goes on in Azure).
    /// [`wait_for_operation`](snoozebot_core::CloudProvider::wait_for_operation) takes its own
    /// limit.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The provider.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for an endpoint that is not an http(s) URL, a static token for a
    /// non-loopback `http` endpoint, or a standard credential the environment describes
    /// wrongly.
    pub fn build(self) -> Result<AzureProvider> {
        let authorization = match (self.static_token, self.credential) {
            (Some(token), _) => Authorization::StaticToken(token),
            (None, Some(credential)) => Authorization::Credential(credential),
            (None, None) => {
                Authorization::Credential(StandardCredential::new().map_err(|error| {
                    Error::new(
                        ErrorKind::Config,
                        format!("cannot make the standard Azure credential: {error}"),
                    )
                    .with_provider(PROVIDER_NAME)
                })?)
            }
        };
        let client = ArmClient::new(
            &self.endpoint,
            &self.api_version,
            authorization,
            Polling {
                interval: self.poll_interval,
                deadline: self.operation_timeout,
            },
        )?;
        Ok(AzureProvider {
            client,
            subscription: self.subscription,
            resource_group: self.resource_group,
            api_version: self.api_version,
        })
    }

    /// A builder from the environment, as `snoozebot-plugin-azure` is configured:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `SNOOZEBOT_AZURE_SUBSCRIPTION` | [`subscription`](Self::subscription) |
    /// | `SNOOZEBOT_AZURE_RESOURCE_GROUP` | [`resource_group`](Self::resource_group) |
    /// | `SNOOZEBOT_AZURE_ENDPOINT` | [`endpoint`](Self::endpoint) (sovereign clouds, fakes) |
    /// | `SNOOZEBOT_AZURE_STATIC_TOKEN` | [`static_token`](Self::static_token) (fakes only) |
    /// | `SNOOZEBOT_AZURE_POLL_INTERVAL_MS` | [`poll_interval`](Self::poll_interval) |
    /// | `SNOOZEBOT_AZURE_OPERATION_TIMEOUT_MS` | [`operation_timeout`](Self::operation_timeout) |
    ///
    /// Empty variables count as unset; a value that cannot be read is [`ErrorKind::Config`]
    /// naming the variable. The standard credential reads the `AZURE_*` variables itself.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let millis = |name: &str| -> Result<Option<Duration>> {
            var(name)
                .map(|value| {
                    value
                        .trim()
                        .parse::<u64>()
                        .map(Duration::from_millis)
                        .map_err(|error| {
                            Error::new(ErrorKind::Config, format!("{name}={value:?}: {error}"))
                                .with_provider(PROVIDER_NAME)
                        })
                })
                .transpose()
        };
        let mut builder = Self::new();
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
        if let Some(interval) = millis("SNOOZEBOT_AZURE_POLL_INTERVAL_MS")? {
            builder = builder.poll_interval(interval);
        }
        if let Some(timeout) = millis("SNOOZEBOT_AZURE_OPERATION_TIMEOUT_MS")? {
            builder = builder.operation_timeout(timeout);
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<AzureProviderBuilder> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        AzureProviderBuilder::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn from_env_reads_the_plugins_variables() {
        let builder = from(&[
            (
                "SNOOZEBOT_AZURE_SUBSCRIPTION",
                "00000000-0000-0000-0000-000000000001",
            ),
            ("SNOOZEBOT_AZURE_RESOURCE_GROUP", "web"),
            ("SNOOZEBOT_AZURE_ENDPOINT", "http://127.0.0.1:9"),
            ("SNOOZEBOT_AZURE_STATIC_TOKEN", "t"),
            ("SNOOZEBOT_AZURE_POLL_INTERVAL_MS", "250"),
            ("SNOOZEBOT_AZURE_OPERATION_TIMEOUT_MS", "60000"),
            ("SNOOZEBOT_AZURE_RESOURCE_GROUP_EXTRA", "ignored"),
        ])
        .unwrap();
        assert_eq!(
            builder.subscription.as_deref(),
            Some("00000000-0000-0000-0000-000000000001")
        );
        assert_eq!(builder.resource_group.as_deref(), Some("web"));
        assert_eq!(builder.endpoint, "http://127.0.0.1:9");
        assert_eq!(builder.static_token.as_deref(), Some("t"));
        assert_eq!(builder.poll_interval, Duration::from_millis(250));
        assert_eq!(builder.operation_timeout, Duration::from_secs(60));
        assert!(builder.build().is_ok());
    }

    #[test]
    fn unreadable_variables_are_config_errors_naming_them() {
        let error = from(&[("SNOOZEBOT_AZURE_POLL_INTERVAL_MS", "soon")]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(
            error.message().contains("SNOOZEBOT_AZURE_POLL_INTERVAL_MS"),
            "{error}"
        );
        let defaults = from(&[("SNOOZEBOT_AZURE_SUBSCRIPTION", "")]).unwrap();
        assert_eq!(defaults.subscription, None);
    }
}
