//! [`AzureProvider`]: the [`CloudProvider`] implementation; the ARM calls are in `client`, the
//! mappings in `model` and `error`.

use std::time::Duration;

use async_trait::async_trait;
use snoozebot_core::{
    Capabilities, CloudProvider, Error, ErrorKind, InstanceFilter, InstanceId, InstanceInfo,
    InstanceState, ProviderInfo, Result, StateChange, StopMode, StopOptions,
};

use crate::PROVIDER_NAME;
use crate::client::{ArmClient, Monitor, PowerAction, VirtualMachine};
use crate::model::{VmRef, instance_info};

/// Deallocates, powers off, hibernates and starts Azure VMs.
///
/// What it costs: a **deallocated** VM (the default stop) pays for its disks and reserved
/// IPs only; a VM that is merely **stopped** (`powerOff`, [`StopMode::Stop`]) keeps its
/// hardware and **its compute is still billed**. Ids are full ARM resource ids, or
/// `resourceGroup/name` in the builder's subscription.
#[derive(Debug, Clone)]
pub struct AzureProvider {
    pub(crate) client: ArmClient,
    pub(crate) subscription: Option<String>,
    pub(crate) resource_group: Option<String>,
    pub(crate) api_version: String,
}

impl AzureProvider {
    fn locate(&self, id: &InstanceId) -> Result<VmRef> {
        VmRef::parse(id, self.subscription.as_deref())
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
        self.client.fetch(&at).await
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
            .client
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
        let before = self.client.fetch(&at).await?;
        before
            .check_can_power()
            .map_err(|error| error.with_provider(PROVIDER_NAME))?;
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
        let before = self.client.fetch(&at).await?;
        before
            .check_can_power()
            .map_err(|error| error.with_provider(PROVIDER_NAME))?;
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
