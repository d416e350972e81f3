//! A small typed client for the Azure Resource Manager VM calls Snoozebot needs, on the
//! `azure_core` HTTP pipeline: get with the instance view, list (per resource group or
//! subscription, following `nextLink`), the subscription-wide status list, and the
//! long-running `powerOff`, `deallocate` and `start`.
//!
//! Everything Azure-specific about the wire lives here; a maintained compute crate could
//! replace this module without touching the provider.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::headers::{HeaderName, Headers};
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, RawResponse, Request,
    RetryOptions, Url,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use snoozebot_core::{Backoff, Error, ErrorKind, InstanceId, InstanceInfo, Result};
use tokio::time::Instant;

use crate::PROVIDER_NAME;
use crate::credential::StaticTokenPolicy;
use crate::error::arm_error;
use crate::model::{VmRef, id_key, instance_info};

const AZURE_ASYNC_OPERATION: HeaderName = HeaderName::from_static("azure-asyncoperation");
const LOCATION: HeaderName = HeaderName::from_static("location");
/// The headers ARM names a pause in, in the order azure_core's own retry policy reads them.
const RETRY_AFTER_HEADERS: [HeaderName; 3] = [
    azure_core::http::headers::RETRY_AFTER_MS,
    azure_core::http::headers::X_MS_RETRY_AFTER_MS,
    azure_core::http::headers::RETRY_AFTER,
];

/// A VM as ARM describes it, with what Snoozebot reads of it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct VirtualMachine {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) location: Option<String>,
    #[serde(default)]
    pub(crate) zones: Vec<String>,
    #[serde(default)]
    pub(crate) tags: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) properties: VmProperties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VmProperties {
    #[serde(default)]
    pub(crate) hardware_profile: Option<HardwareProfile>,
    #[serde(default)]
    pub(crate) instance_view: Option<InstanceView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HardwareProfile {
    #[serde(default)]
    pub(crate) vm_size: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct InstanceView {
    #[serde(default)]
    pub(crate) statuses: Vec<InstanceViewStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct InstanceViewStatus {
    #[serde(default)]
    pub(crate) code: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VmListPage {
    #[serde(default)]
    value: Vec<VirtualMachine>,
    #[serde(default)]
    next_link: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OperationStatus {
    status: String,
    #[serde(default)]
    error: Option<OperationError>,
}

#[derive(Debug, Deserialize)]
struct OperationError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A VM power action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PowerAction {
    /// `powerOff`: the OS stops, the hardware stays allocated (and billed).
    PowerOff { skip_shutdown: bool },
    /// `deallocate`: the hardware is released; `hibernate` saves memory first.
    Deallocate { hibernate: bool },
    /// `start`.
    Start,
}

impl PowerAction {
    fn path_and_query(self) -> (&'static str, Vec<(&'static str, &'static str)>) {
        match self {
            PowerAction::PowerOff { skip_shutdown } => (
                "powerOff",
                if skip_shutdown {
                    vec![("skipShutdown", "true")]
                } else {
                    vec![]
                },
            ),
            PowerAction::Deallocate { hibernate } => (
                "deallocate",
                if hibernate {
                    vec![("hibernate", "true")]
                } else {
                    vec![]
                },
            ),
            PowerAction::Start => ("start", vec![]),
        }
    }
}

/// How requests are authorized.
#[derive(Debug, Clone)]
pub(crate) enum Authorization {
    /// Entra ID tokens for the endpoint's audience.
    Credential(Arc<dyn TokenCredential>),
    /// One fixed token (fakes; plain http only to loopback).
    StaticToken(String),
}

/// How long-running operations are followed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Polling {
    /// The pause between polls when ARM names none (`Retry-After`).
    pub(crate) interval: Duration,
    /// How long to follow one operation before giving up with `Timeout`.
    pub(crate) deadline: Duration,
}

/// The ARM client.
#[derive(Debug, Clone)]
pub(crate) struct ArmClient {
    pipeline: Pipeline,
    endpoint: Url,
    api_version: String,
    polling: Polling,
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, message).with_provider(PROVIDER_NAME)
}

/// An error from the pipeline itself (no HTTP answer): connection, credential, TLS.
fn transport_error(operation: &str, error: azure_core::Error) -> Error {
    use azure_core::error::ErrorKind as Core;
    let kind = match error.kind() {
        Core::Credential => ErrorKind::Unauthenticated,
        Core::Connection | Core::Io => ErrorKind::Unavailable,
        Core::DataConversion => ErrorKind::Internal,
        Core::HttpResponse { status, .. } => crate::error::kind_for("", u16::from(*status)),
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, format!("{operation}: {error}"))
        .with_provider(PROVIDER_NAME)
        .with_source(error)
}

fn header<'a>(headers: &'a Headers, name: &HeaderName) -> Option<&'a str> {
    headers.get_optional_str(name)
}

/// How long ARM asked to wait, read by azure_core: `retry-after-ms` or `x-ms-retry-after-ms`
/// (milliseconds), else `Retry-After` (seconds or an HTTP date; a date past is no wait). A
/// negative number is no answer.
fn retry_after(headers: &Headers) -> Option<Duration> {
    azure_core::http::policies::get_retry_after(
        headers,
        azure_core::time::OffsetDateTime::now_utc,
        &RETRY_AFTER_HEADERS,
    )
    .and_then(|wait| Duration::try_from(wait).ok())
}

fn parse_json<T: serde::de::DeserializeOwned>(
    operation: &str,
    response: &RawResponse,
) -> Result<T> {
    serde_json::from_slice(response.body().as_ref()).map_err(|error| {
        Error::new(
            ErrorKind::Internal,
            format!("{operation}: ARM answered with JSON this client cannot read: {error}"),
        )
        .with_provider(PROVIDER_NAME)
    })
}

impl ArmClient {
    /// A client for `endpoint` (ARM's base URL).
    pub(crate) fn new(
        endpoint: &str,
        api_version: &str,
        authorization: Authorization,
        polling: Polling,
    ) -> Result<Self> {
        let endpoint = Url::parse(endpoint)
            .map_err(|error| config_error(format!("the ARM endpoint {endpoint:?}: {error}")))?;
        if endpoint.scheme() != "https" && endpoint.scheme() != "http" {
            return Err(config_error(format!(
                "the ARM endpoint {endpoint} is not http(s)"
            )));
        }
        let auth: Arc<dyn Policy> = match authorization {
            Authorization::Credential(credential) => {
                // ARM's audience is its own origin: https://management.azure.com/.default,
                // https://management.usgovcloudapi.net/.default, ...
                let scope = format!("{}/.default", endpoint.as_str().trim_end_matches('/'));
                Arc::new(BearerTokenAuthorizationPolicy::new(credential, [scope]))
            }
            Authorization::StaticToken(token) => {
                if endpoint.scheme() != "https" && !crate::credential::is_loopback(&endpoint) {
                    return Err(config_error(format!(
                        "a static token is sent over plain http only to loopback addresses, not {endpoint}"
                    )));
                }
                Arc::new(StaticTokenPolicy::new(&token))
            }
        };
        // Retries belong to Snoozebot's retry layer: the pipeline makes one attempt.
        let options = ClientOptions {
            retry: RetryOptions::none(),
            ..ClientOptions::default()
        };
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            options,
            Vec::new(),
            vec![auth],
            None,
        );
        Ok(Self {
            pipeline,
            endpoint,
            api_version: api_version.to_owned(),
            polling,
        })
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url> {
        let mut url = self
            .endpoint
            .join(path)
            .map_err(|error| config_error(format!("cannot make a URL of {path}: {error}")))?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("api-version", &self.api_version);
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        Ok(url)
    }

    /// A URL ARM handed back (`nextLink`, operation URLs): followed only on the endpoint's
    /// own origin, so the bearer token never goes anywhere else.
    fn returned_url(&self, operation: &str, link: &str) -> Result<Url> {
        let url = Url::parse(link).map_err(|error| {
            Error::internal(format!(
                "{operation}: ARM returned the URL {link:?}: {error}"
            ))
            .with_provider(PROVIDER_NAME)
        })?;
        if url.origin() != self.endpoint.origin() {
            return Err(Error::internal(format!(
                "{operation}: ARM returned a URL on another origin ({}), which is not followed",
                url.origin().ascii_serialization()
            ))
            .with_provider(PROVIDER_NAME));
        }
        Ok(url)
    }

    /// Sends one request; any non-2xx answer becomes the mapped ARM error.
    async fn send(&self, operation: &str, method: Method, url: Url) -> Result<RawResponse> {
        let mut request = Request::new(url, method);
        request.insert_header("accept", "application/json");
        if method == Method::Post {
            request.insert_header("content-type", "application/json");
            request.set_body(Vec::new());
        }
        let response = self
            .pipeline
            .send(
                &Context::new(),
                &mut request,
                Some(PipelineSendOptions {
                    skip_checks: true,
                    ..PipelineSendOptions::default()
                }),
            )
            .await
            .map_err(|error| transport_error(operation, error))?;
        let status = u16::from(response.status());
        if (200..300).contains(&status) {
            return Ok(response);
        }
        Err(arm_error(
            operation,
            status,
            response.body().as_ref(),
            retry_after(response.headers()),
        ))
    }

    /// `virtualMachines.get` with `$expand=instanceView`.
    pub(crate) async fn get(&self, vm: &VmRef) -> Result<VirtualMachine> {
        let operation = "virtualMachines.get";
        let url = self.url(&vm.resource_id(), &[("$expand", "instanceView")])?;
        let response = self.send(operation, Method::Get, url).await?;
        parse_json(operation, &response)
    }

    /// Every VM of a resource group (`Some`) or the subscription (`None`), every page.
    pub(crate) async fn list(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
    ) -> Result<Vec<VirtualMachine>> {
        let (operation, path) = match resource_group {
            Some(group) => (
                "virtualMachines.list",
                format!(
                    "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines"
                ),
            ),
            None => (
                "virtualMachines.listAll",
                format!(
                    "/subscriptions/{subscription}/providers/Microsoft.Compute/virtualMachines"
                ),
            ),
        };
        self.pages(operation, self.url(&path, &[])?).await
    }

    /// The subscription's VMs with their instance views only (`statusOnly=true`: ARM leaves
    /// tags and other properties out), every page.
    pub(crate) async fn list_statuses(&self, subscription: &str) -> Result<Vec<VirtualMachine>> {
        let path =
            format!("/subscriptions/{subscription}/providers/Microsoft.Compute/virtualMachines");
        let url = self.url(&path, &[("statusOnly", "true")])?;
        self.pages("virtualMachines.listAll(statusOnly)", url).await
    }

    async fn pages(&self, operation: &str, first: Url) -> Result<Vec<VirtualMachine>> {
        let mut found = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let response = self.send(operation, Method::Get, url).await?;
            let page: VmListPage = parse_json(operation, &response)?;
            found.extend(page.value);
            if let Some(link) = page.next_link.filter(|link| !link.is_empty()) {
                next = Some(self.returned_url(operation, &link)?);
            }
        }
        Ok(found)
    }

    /// Sends a power action and returns once ARM accepted it: the operation's monitor to
    /// follow, or `None` when ARM answered it done (or gave no way to follow it; the VM's state
    /// then tells).
    pub(crate) async fn begin_power(
        &self,
        vm: &VmRef,
        action: PowerAction,
    ) -> Result<Option<Monitor>> {
        let (name, query) = action.path_and_query();
        let operation = format!("virtualMachines.{name}");
        let url = self.url(&format!("{}/{name}", vm.resource_id()), &query)?;
        let accepted = self.send(&operation, Method::Post, url).await?;
        if u16::from(accepted.status()) != 202 {
            return Ok(None);
        }
        let headers = accepted.headers();
        let (by_status, url) = match (
            header(headers, &AZURE_ASYNC_OPERATION),
            header(headers, &LOCATION),
        ) {
            (Some(url), _) => (true, self.returned_url(&operation, url)?),
            (None, Some(url)) => (false, self.returned_url(&operation, url)?),
            (None, None) => return Ok(None),
        };
        Ok(Some(Monitor {
            by_status,
            url,
            first_wait: retry_after(headers),
        }))
    }

    /// Sends a power action and follows its operation to the end (within the polling
    /// deadline): for a step that must finish before the next is sent.
    pub(crate) async fn power(&self, vm: &VmRef, action: PowerAction) -> Result<()> {
        match self.begin_power(vm, action).await? {
            Some(monitor) => self.follow(&monitor, self.polling.deadline).await,
            None => Ok(()),
        }
    }

    /// The monitor a [`Monitor::handle`] names, checked to be on the endpoint's origin (a
    /// handle may come back through a plugin host, and the bearer token goes where it points).
    pub(crate) fn monitor(&self, handle: &str) -> Result<Monitor> {
        let invalid = || {
            Error::invalid_argument(format!("{handle:?} is not an operation this provider gave"))
                .with_provider(PROVIDER_NAME)
        };
        let mut fields = handle.splitn(3, ' ');
        let (Some(kind), Some(first_wait), Some(url)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(invalid());
        };
        let by_status = match kind {
            "azure-asyncoperation" => true,
            "location" => false,
            _ => return Err(invalid()),
        };
        let first_wait = match first_wait {
            "-" => None,
            millis => Some(Duration::from_millis(
                millis.parse().map_err(|_| invalid())?,
            )),
        };
        let url = self.returned_url("operation", url).map_err(|_| invalid())?;
        Ok(Monitor {
            by_status,
            url,
            first_wait,
        })
    }

    /// Follows an operation until it is done, at most `timeout`: through `Azure-AsyncOperation`
    /// (its `status`), else `Location` (202 until done), pausing as `Retry-After` says, else
    /// the poll interval. A `Failed` or `Canceled` operation is its ARM error.
    pub(crate) async fn follow(&self, monitor: &Monitor, timeout: Duration) -> Result<()> {
        let operation = "operation";
        let deadline = snoozebot_core::deadline_in(timeout);
        let mut pauses = Backoff::constant(self.polling.interval).delays();
        let mut asked = monitor.first_wait;
        loop {
            let pause = asked
                .take()
                .unwrap_or_else(|| pauses.next().unwrap_or(self.polling.interval));
            if Instant::now() + pause > deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} still running after {timeout:?}; it may yet finish",
                        monitor.url
                    ),
                )
                .with_provider(PROVIDER_NAME));
            }
            tokio::time::sleep(pause).await;
            let poll = self
                .send(operation, Method::Get, monitor.url.clone())
                .await?;
            asked = retry_after(poll.headers());
            if monitor.by_status {
                let status: OperationStatus = parse_json(operation, &poll)?;
                match status.status.as_str() {
                    "Succeeded" => return Ok(()),
                    "Failed" | "Canceled" => {
                        let error = status.error.unwrap_or(OperationError {
                            code: status.status.clone(),
                            message: format!("the operation ended {}", status.status),
                        });
                        return Err(operation_error(operation, &error));
                    }
                    _ => {}
                }
            } else if u16::from(poll.status()) != 202 {
                return Ok(());
            }
        }
    }
}

/// At most this many VMs are read one `GET` each when listing; more, and their states come
/// from one subscription-wide `statusOnly` list instead.
const FEW_VMS: usize = 8;
/// How many VMs are read at once.
const CONCURRENT_GETS: usize = 8;

impl ArmClient {
    /// One VM with its instance view, as an instance.
    pub(crate) async fn fetch(&self, at: &VmRef) -> Result<InstanceInfo> {
        let vm = self.get(at).await?;
        instance_info(&vm).ok_or_else(|| {
            Error::internal(format!(
                "virtualMachines.get answered with an id that is not a VM's: {}",
                vm.id
            ))
            .with_provider(PROVIDER_NAME)
        })
    }

    /// Reads each VM with its instance view, a few at a time; VMs gone meanwhile are left out.
    pub(crate) async fn fetch_each(&self, vms: Vec<VirtualMachine>) -> Result<Vec<VirtualMachine>> {
        stream::iter(vms)
            .map(|vm| async move {
                let at = VmRef::parse(&InstanceId::new(vm.id.as_str())?, None)?;
                match self.get(&at).await {
                    Ok(fresh) => Ok(Some(fresh)),
                    Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
                    Err(error) => Err(error),
                }
            })
            .buffer_unordered(CONCURRENT_GETS)
            .try_filter_map(|vm| async move { Ok(vm) })
            .try_collect()
            .await
    }

    /// Gives each VM its instance view: one `GET` each for a few, else the subscription's
    /// `statusOnly` list (and a `GET` for any it missed). Without the right to list the
    /// subscription, one `GET` each.
    pub(crate) async fn with_statuses(
        &self,
        subscription: &str,
        mut vms: Vec<VirtualMachine>,
    ) -> Result<Vec<VirtualMachine>> {
        if vms.len() <= FEW_VMS {
            return self.fetch_each(vms).await;
        }
        let statuses = match self.list_statuses(subscription).await {
            Ok(statuses) => statuses,
            Err(error) if error.kind() == ErrorKind::PermissionDenied => {
                tracing::debug!(%error, "no subscription-wide status list; reading VMs one by one");
                return self.fetch_each(vms).await;
            }
            Err(error) => return Err(error),
        };
        let mut views: HashMap<String, _> = statuses
            .into_iter()
            .filter_map(|vm| Some((id_key(&vm.id), vm.properties.instance_view?)))
            .collect();
        let mut missed = Vec::new();
        vms.retain_mut(|vm| match views.remove(&id_key(&vm.id)) {
            Some(view) => {
                vm.properties.instance_view = Some(view);
                true
            }
            None => {
                missed.push(vm.clone());
                false
            }
        });
        vms.extend(self.fetch_each(missed).await?);
        Ok(vms)
    }
}

/// How a long-running ARM operation is followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Monitor {
    /// `Azure-AsyncOperation` (a status document) rather than `Location` (202 until done).
    by_status: bool,
    url: Url,
    /// The `Retry-After` of the answer that accepted the operation.
    first_wait: Option<Duration>,
}

impl Monitor {
    /// The handle kept in `StateChange::operation`: `KIND FIRST-WAIT-MS URL`, e.g.
    /// `azure-asyncoperation 4000 https://management.azure.com/...` (`-` for no first wait).
    pub(crate) fn handle(&self) -> String {
        let kind = if self.by_status {
            "azure-asyncoperation"
        } else {
            "location"
        };
        let first_wait = self
            .first_wait
            .map_or_else(|| "-".to_owned(), |wait| wait.as_millis().to_string());
        format!("{kind} {first_wait} {}", self.url)
    }
}

/// A failed operation's error: the kind from its ARM code (unknown codes read as a conflict,
/// `InvalidState`), the code kept in the message.
fn operation_error(operation: &str, error: &OperationError) -> Error {
    Error::new(
        crate::error::kind_for(&error.code, 409),
        format!(
            "{operation}: the operation failed: {}: {}",
            error.code, error.message
        ),
    )
    .with_provider(PROVIDER_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> Headers {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.insert(HeaderName::from_static(name), *value);
        }
        headers
    }

    #[test]
    fn operation_handles_from_outside_are_checked_before_any_request() {
        let client = ArmClient::new(
            "http://127.0.0.1:9",
            "2025-04-01",
            Authorization::StaticToken("t".to_owned()),
            Polling {
                interval: Duration::from_secs(1),
                deadline: Duration::from_secs(1),
            },
        )
        .unwrap();
        let monitor = Monitor {
            by_status: true,
            url: Url::parse("http://127.0.0.1:9/operations/1?api-version=2025-04-01").unwrap(),
            first_wait: Some(Duration::from_millis(4000)),
        };
        assert_eq!(client.monitor(&monitor.handle()).unwrap(), monitor);
        let location = Monitor {
            by_status: false,
            first_wait: None,
            ..monitor.clone()
        };
        assert_eq!(client.monitor(&location.handle()).unwrap(), location);
        for bad in [
            "",
            "azure-asyncoperation",
            "azure-asyncoperation - not a url",
            // Another origin would receive our bearer token.
            "azure-asyncoperation - https://evil.example/operations/1",
            "location 12x http://127.0.0.1:9/operations/1",
            "other - http://127.0.0.1:9/operations/1",
        ] {
            let error = client.monitor(bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_prefers_the_millisecond_headers_then_reads_seconds_or_dates() {
        let wait = |pairs| retry_after(&headers(pairs));
        assert_eq!(
            wait(&[("retry-after-ms", "250"), ("retry-after", "9")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            wait(&[("x-ms-retry-after-ms", "1500")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(wait(&[("retry-after", "3")]), Some(Duration::from_secs(3)));
        assert_eq!(
            wait(&[("retry-after", "Thu, 01 Jan 2015 00:00:00 GMT")]),
            Some(Duration::ZERO),
            "a date past is no wait"
        );
        assert_eq!(wait(&[("retry-after", "later")]), None);
        assert_eq!(wait(&[]), None);
    }
}
