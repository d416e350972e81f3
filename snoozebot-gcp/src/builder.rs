//! [`GcpProviderBuilder`]: a [`GcpProvider`]'s settings, from code or from the environment.

use google_cloud_auth::credentials::Credentials;
use snoozebot_core::{Error, ErrorKind, Result};

use crate::provider::GcpProvider;

/// Builds a [`GcpProvider`].
///
/// Credentials come from Application Default Credentials unless given with
/// [`credentials`](Self::credentials) (a service account key, impersonation, workload identity
/// federation, an API key: anything `google-cloud-auth` builds, re-exported as
/// [`google_cloud_auth`](crate::google_cloud_auth)) or [`anonymous`](Self::anonymous) is asked
/// for (emulators and fakes). The client's own retries are off: Snoozebot's retry layer is the
/// one place retries happen.
///
/// ```no_run
/// use snoozebot_gcp::GcpProviderBuilder;
/// use snoozebot_gcp::google_cloud_auth::credentials::service_account;
///
/// # fn run(key_json: serde_json::Value) -> Result<(), Box<dyn std::error::Error>> {
/// let credentials = service_account::Builder::new(key_json).build()?;
/// let gce = GcpProviderBuilder::new()
///     .project("my-project")
///     .credentials(credentials)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct GcpProviderBuilder {
    pub(crate) project: Option<String>,
    pub(crate) zones: Vec<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) discard_local_ssd: Option<bool>,
}

impl GcpProviderBuilder {
    /// A builder with nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The project ids without one (`zone/name`) belong to, and the one listed.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Lists these zones only (one `instances.list` each) instead of the aggregated list.
    pub fn zones(mut self, zones: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.zones = zones.into_iter().map(Into::into).collect();
        self
    }

    /// Sends requests here instead of `https://compute.googleapis.com` (tests, fakes).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Uses these credentials instead of Application Default Credentials.
    pub fn credentials(mut self, credentials: impl Into<Credentials>) -> Self {
        self.credentials = Some(credentials.into());
        self
    }

    /// Sends no credentials (fakes and emulators only).
    pub fn anonymous(self) -> Self {
        self.credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
    }

    /// Whether stopping discards local SSD data (GCE requires saying so for instances with
    /// local SSDs); unset leaves GCE's default.
    pub fn discard_local_ssd(mut self, discard: bool) -> Self {
        self.discard_local_ssd = Some(discard);
        self
    }

    /// A provider that makes its client on the first call. Fails with
    /// [`ErrorKind::Config`] for an endpoint that is not an `http(s)` URL.
    pub fn build(self) -> Result<GcpProvider> {
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!("the endpoint {endpoint:?} is not an http(s) URL"),
            )
            .with_provider(crate::PROVIDER_NAME));
        }
        Ok(GcpProvider::new(self))
    }

    /// A builder from the environment, as `snoozebot-plugin-gcp` is configured:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `SNOOZEBOT_GCP_PROJECT` | [`project`](Self::project) |
    /// | `SNOOZEBOT_GCP_ZONES` | [`zones`](Self::zones), comma-separated |
    /// | `SNOOZEBOT_GCP_ENDPOINT` | [`endpoint`](Self::endpoint) |
    /// | `SNOOZEBOT_GCP_ANONYMOUS` | `1`: [`anonymous`](Self::anonymous) (fakes only) |
    /// | `SNOOZEBOT_GCP_DISCARD_LOCAL_SSD` | `true` or `false`: [`discard_local_ssd`](Self::discard_local_ssd) |
    ///
    /// Empty variables count as unset; a value that cannot be read is [`ErrorKind::Config`]
    /// naming the variable. Credentials come from Application Default Credentials
    /// (`GOOGLE_APPLICATION_CREDENTIALS`, ...), read on the first call.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) reading variables through `lookup` (tests, or a
    /// configuration of the caller's own).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let mut builder = Self::new();
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
        match var("SNOOZEBOT_GCP_ANONYMOUS").as_deref() {
            None | Some("0") => {}
            Some("1") => builder = builder.anonymous(),
            Some(other) => return Err(bad_variable("SNOOZEBOT_GCP_ANONYMOUS", other, "0 or 1")),
        }
        match var("SNOOZEBOT_GCP_DISCARD_LOCAL_SSD").as_deref() {
            None => {}
            Some("true") => builder = builder.discard_local_ssd(true),
            Some("false") => builder = builder.discard_local_ssd(false),
            Some(other) => {
                return Err(bad_variable(
                    "SNOOZEBOT_GCP_DISCARD_LOCAL_SSD",
                    other,
                    "true or false",
                ));
            }
        }
        Ok(builder)
    }
}

fn bad_variable(name: &str, value: &str, expected: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("{name}={value:?}: expected {expected}"),
    )
    .with_provider(crate::PROVIDER_NAME)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<GcpProviderBuilder> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        GcpProviderBuilder::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn from_env_reads_the_plugins_variables() {
        let builder = from(&[
            ("SNOOZEBOT_GCP_PROJECT", "proj"),
            ("SNOOZEBOT_GCP_ZONES", " us-central1-a, ,europe-west1-b "),
            ("SNOOZEBOT_GCP_ENDPOINT", "http://127.0.0.1:9"),
            ("SNOOZEBOT_GCP_ANONYMOUS", "1"),
            ("SNOOZEBOT_GCP_DISCARD_LOCAL_SSD", "true"),
        ])
        .unwrap();
        assert_eq!(builder.project.as_deref(), Some("proj"));
        assert_eq!(builder.zones, ["us-central1-a", "europe-west1-b"]);
        assert_eq!(builder.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert!(builder.credentials.is_some());
        assert_eq!(builder.discard_local_ssd, Some(true));
        assert!(builder.build().is_ok());

        let empty = from(&[("SNOOZEBOT_GCP_PROJECT", "")]).unwrap();
        assert_eq!(empty.project, None);
    }

    #[test]
    fn unreadable_variables_and_endpoints_are_config_errors() {
        let error = from(&[("SNOOZEBOT_GCP_ANONYMOUS", "yes")]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(
            error.message().contains("SNOOZEBOT_GCP_ANONYMOUS"),
            "{error}"
        );
        let error = from(&[("SNOOZEBOT_GCP_ENDPOINT", "ftp://x")])
            .unwrap()
            .build()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
    }
}
