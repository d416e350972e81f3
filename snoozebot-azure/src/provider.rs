//! [`AzureProvider`] and its builder.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use snoozebot_core::{
    Capabilities, CloudProvider, Error, ErrorKind, InstanceFilter, InstanceId, InstanceInfo,
    InstanceState, ProviderInfo, Result, StateChange, StopMode, StopOptions,
};

use crate::PROVIDER_NAME;
use crate::client::{ArmClient, Authorization, Monitor, Polling, PowerAction, VirtualMachine};
use crate::credential::StandardCredential;
use crate::model::{VmRef, map_power_state};

/// Azure Resource Manager in Azure's public cloud.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";
/// The Compute API version spoken (the recorded fixtures' version).
pub const API_VERSION: &str = "2025-04-01";

/// At most this many VMs are read one `GET` each when listing; more, and their states come
/// from one subscription-wide `statusOnly` list instead.
const FEW_VMS: usize = 8;
/// How many VMs are read at once.
const CONCURRENT_GETS: usize = 8;

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
}

/// Deallocates, powers off, hibernates and starts Azure VMs.
///
/// What it costs: a **deallocated** VM (the default stop) pays for its disks and reserved
/// IPs only; a VM that is merely **stopped** (`powerOff`, [`StopMode::Stop`]) keeps its
/// hardware and **its compute is still billed**. Ids are full ARM resource ids, or
/// `resourceGroup/name` in the builder's subscription.
#[derive(Debug, Clone)]
pub struct AzureProvider {
    client: ArmClient,
    subscription: Option<String>,
    resource_group: Option<String>,
    api_version: String,
}

fn instance_info(vm: &VirtualMachine) -> Option<InstanceInfo> {
    let at = VmRef::parse(&InstanceId::new(vm.id.as_str()).ok()?, None).ok()?;
    let id = InstanceId::new(at.resource_id()).ok()?;
    let codes = vm
        .properties
        .instance_view
        .iter()
        .flat_map(|view| view.statuses.iter())
        .map(|status| status.code.as_str());
    let (state, raw, billing_stopped) = map_power_state(codes);
    let mut info = InstanceInfo::new(id, state, raw);
    info.billing_stopped = billing_stopped;
    info.name = Some(vm.name.clone());
    info.region = vm.location.clone();
    info.zone = vm.zones.first().cloned();
    info.machine_type = vm
        .properties
        .hardware_profile
        .as_ref()
        .and_then(|profile| profile.vm_size.clone());
    info.tags = vm.tags.clone();
    Some(info)
}

/// ARM ids compare without regard to case.
fn id_key(id: &str) -> String {
    id.to_ascii_lowercase()
}

impl AzureProvider {
    fn locate(&self, id: &InstanceId) -> Result<VmRef> {
        VmRef::parse(id, self.subscription.as_deref())
    }

    async fn fetch(&self, at: &VmRef) -> Result<InstanceInfo> {
        let vm = self.client.get(at).await?;
        instance_info(&vm).ok_or_else(|| {
            Error::internal(format!(
                "virtualMachines.get answered with an id that is not a VM's: {}",
                vm.id
            ))
            .with_provider(PROVIDER_NAME)
        })
    }

    /// Reads each VM with its instance view, a few at a time; VMs gone meanwhile are left out.
    async fn fetch_each(&self, vms: Vec<VirtualMachine>) -> Result<Vec<VirtualMachine>> {
        stream::iter(vms)
            .map(|vm| async move {
                let at = VmRef::parse(&InstanceId::new(vm.id.as_str())?, None)?;
                match self.client.get(&at).await {
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
    async fn with_statuses(
        &self,
        subscription: &str,
        mut vms: Vec<VirtualMachine>,
    ) -> Result<Vec<VirtualMachine>> {
        if vms.len() <= FEW_VMS {
            return self.fetch_each(vms).await;
        }
        let statuses = match self.client.list_statuses(subscription).await {
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

/// The change ARM accepted: `before` heading to `moving`, with the operation to follow, if
/// ARM gave one.
fn accepted(before: InstanceInfo, moving: InstanceState, monitor: Option<Monitor>) -> StateChange {
    let change = StateChange::new(before.id, before.state, moving);
    match monitor {
        Some(monitor) => change.with_operation(monitor.handle()),
        None => change,
    }
}

#[async_trait]
impl CloudProvider for AzureProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new(
            PROVIDER_NAME,
            env!("CARGO_PKG_VERSION"),
            format!("Microsoft.Compute/{}", self.api_version),
            Capabilities::new([StopMode::Deallocate, StopMode::Hibernate, StopMode::Stop]),
        )
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> {
        let at = self.locate(id)?;
        self.fetch(&at).await
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>> {
        let subscription = self.subscription.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "listing needs a subscription: AzureProviderBuilder::subscription",
            )
            .with_provider(PROVIDER_NAME)
        })?;
        let listed = self
            .client
            .list(subscription, self.resource_group.as_deref())
            .await?;
        // ARM's VM lists take no tag filter: tags and names are matched here, before any
        // state is read, so only the matching VMs cost status reads.
        let mut without_states = filter.clone();
        without_states.states.clear();
        let candidates: Vec<VirtualMachine> = listed
            .into_iter()
            .filter(|vm| instance_info(vm).is_some_and(|info| without_states.matches(&info)))
            .collect();
        let mut found: Vec<InstanceInfo> = self
            .with_statuses(subscription, candidates)
            .await?
            .iter()
            .filter_map(instance_info)
            .filter(|info| filter.matches(info))
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange> {
        let at = self.locate(id)?;
        self.info()
            .capabilities
            .check(opts)
            .map_err(|error| error.with_provider(PROVIDER_NAME))?;
        let mode = opts.mode.unwrap_or(StopMode::Deallocate);
        let before = self.fetch(&at).await?;
        let done_already = match mode {
            StopMode::Stop => before.state == InstanceState::Stopped,
            _ => before.billing_stopped,
        };
        if done_already {
            return Ok(StateChange::new(before.id, before.state, before.state).with_mode(mode));
        }
        let (used, monitor) = match mode {
            StopMode::Stop => {
                let monitor = self
                    .client
                    .begin_power(
                        &at,
                        PowerAction::PowerOff {
                            skip_shutdown: opts.force,
                        },
                    )
                    .await?;
                (StopMode::Stop, monitor)
            }
            StopMode::Hibernate => {
                // With a fallback allowed, the hibernation is followed to its end here: ARM
                // may refuse it in the operation, and the deallocate must come after.
                let hibernation = if opts.allow_fallback {
                    self.client
                        .power(&at, PowerAction::Deallocate { hibernate: true })
                        .await
                        .map(|()| None)
                } else {
                    self.client
                        .begin_power(&at, PowerAction::Deallocate { hibernate: true })
                        .await
                };
                match hibernation {
                    Ok(monitor) => (StopMode::Hibernate, monitor),
                    Err(error)
                        if opts.allow_fallback
                            && matches!(
                                error.kind(),
                                ErrorKind::InvalidArgument | ErrorKind::InvalidState
                            ) =>
                    {
                        tracing::info!(vm = %at.resource_id(), %error, "hibernation refused; deallocating instead");
                        let monitor = self
                            .client
                            .begin_power(&at, PowerAction::Deallocate { hibernate: false })
                            .await?;
                        (StopMode::Deallocate, monitor)
                    }
                    Err(error) => return Err(error),
                }
            }
            _ => {
                // ARM's deallocate has no skipShutdown: a forced one powers off without
                // shutting down first — which must finish before the deallocate is sent —
                // then deallocates.
                if opts.force && before.state == InstanceState::Running {
                    self.client
                        .power(
                            &at,
                            PowerAction::PowerOff {
                                skip_shutdown: true,
                            },
                        )
                        .await?;
                }
                let monitor = self
                    .client
                    .begin_power(&at, PowerAction::Deallocate { hibernate: false })
                    .await?;
                (StopMode::Deallocate, monitor)
            }
        };
        Ok(accepted(before, InstanceState::Stopping, monitor).with_mode(used))
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> {
        let at = self.locate(id)?;
        let before = self.fetch(&at).await?;
        if before.state == InstanceState::Running {
            return Ok(StateChange::new(before.id, before.state, before.state));
        }
        let monitor = self.client.begin_power(&at, PowerAction::Start).await?;
        Ok(accepted(before, InstanceState::Pending, monitor))
    }

    /// Follows the ARM operation a stop or start returned (`StateChange::operation`), at
    /// ARM's `Retry-After` else the poll interval, for at most `timeout`.
    async fn wait_for_operation(
        &self,
        id: &InstanceId,
        operation: &str,
        timeout: Duration,
    ) -> Result<()> {
        self.locate(id)?;
        let monitor = self.client.monitor(operation)?;
        self.client.follow(&monitor, timeout).await
    }
}
