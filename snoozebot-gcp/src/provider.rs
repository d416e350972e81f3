//! [`GcpProvider`]: the [`CloudProvider`] implementation; the calls are in `client`, the
//! mappings in `model` and `error`.

use std::time::Duration;

use async_trait::async_trait;
use snoozebot_core::{
    Capabilities, CloudProvider, Error, InstanceFilter, InstanceId, InstanceInfo, InstancePage,
    InstanceState, PageRequest, ProviderInfo, Result, StateChange, StopMode, StopOptions,
};

use crate::PROVIDER_NAME;
use crate::builder::GcpProviderBuilder;
use crate::client::{Action, GceClient, ListCursor, MAX_RESULTS};
use crate::model::filter_expression;

/// Stops, suspends and starts Compute Engine instances.
///
/// What it costs: a stopped (TERMINATED) instance is not billed for vCPU and memory, but its
/// disks and static IPs are; a suspended one also pays for storing its memory. Ids are
/// `project/zone/name`, or `zone/name` in the builder's project.
#[derive(Debug, Clone)]
pub struct GcpProvider {
    client: GceClient,
}

impl GcpProvider {
    pub(crate) fn new(settings: GcpProviderBuilder) -> Self {
        GcpProvider {
            client: GceClient::new(settings),
        }
    }
}

#[async_trait]
impl CloudProvider for GcpProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new(
            PROVIDER_NAME,
            env!("CARGO_PKG_VERSION"),
            "compute/v1",
            Capabilities::new([StopMode::Stop, StopMode::Suspend]),
        )
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> {
        let at = self.client.locate(id)?;
        self.client.fetch(&at).await
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>> {
        let project = self.client.listing_project()?;
        let expression = filter_expression(filter);
        let mut found = Vec::new();
        if self.client.settings.zones.is_empty() {
            found = self.client.list_pages(&project, None, &expression).await?;
        } else {
            for zone in &self.client.settings.zones {
                found.extend(
                    self.client
                        .list_pages(&project, Some(zone), &expression)
                        .await?,
                );
            }
        }
        found.retain(|info| filter.matches(info));
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    /// One GCE list request per page (`maxResults` = the page size, up to 500), zone after
    /// zone when zones are configured; GCE's order, not sorted.
    async fn list_instances_page(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<InstancePage> {
        let project = self.client.listing_project()?;
        let cursor = ListCursor::parse(page.token.as_deref())?;
        let zone = if self.client.settings.zones.is_empty() {
            if cursor.zone != 0 {
                return Err(Error::invalid_argument(
                    "the page token is not one this provider gave",
                )
                .with_provider(PROVIDER_NAME));
            }
            None
        } else {
            Some(self.client.settings.zones.get(cursor.zone).ok_or_else(|| {
                Error::invalid_argument("the page token is not one this provider gave")
                    .with_provider(PROVIDER_NAME)
            })?)
        };
        let max_results = u32::try_from(page.size.clamp(1, MAX_RESULTS as usize)).unwrap_or(1);
        let (mut found, next) = self
            .client
            .list_page(
                &project,
                zone.map(String::as_str),
                &filter_expression(filter),
                max_results,
                cursor.token.as_deref(),
            )
            .await?;
        found.retain(|info| filter.matches(info));
        let next = match next {
            Some(token) => Some(ListCursor {
                zone: cursor.zone,
                token: Some(token),
            }),
            None if cursor.zone + 1 < self.client.settings.zones.len() => Some(ListCursor {
                zone: cursor.zone + 1,
                token: None,
            }),
            None => None,
        };
        Ok(InstancePage::new(found, next.map(|cursor| cursor.encode())))
    }

    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange> {
        let at = self.client.locate(id)?;
        self.info()
            .capabilities
            .check(opts)
            .map_err(|error| error.with_provider(PROVIDER_NAME))?;
        let (action, mode) = match opts.mode {
            Some(StopMode::Suspend) => (Action::Suspend, StopMode::Suspend),
            _ => (Action::Stop, StopMode::Stop),
        };
        let before = self.client.fetch(&at).await?;
        before
            .check_can_power()
            .map_err(|error| error.with_provider(PROVIDER_NAME))?;
        if before.state == action.states().1 {
            return Ok(StateChange::new(before.id, before.state, before.state).with_mode(mode));
        }
        let (current, operation) = self.client.accept(action, &at).await?;
        let change = StateChange::new(before.id, before.state, current).with_mode(mode);
        Ok(match operation {
            Some(operation) => change.with_operation(operation),
            None => change,
        })
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> {
        let at = self.client.locate(id)?;
        let before = self.client.fetch(&at).await?;
        before
            .check_can_power()
            .map_err(|error| error.with_provider(PROVIDER_NAME))?;
        if before.state == InstanceState::Running {
            return Ok(StateChange::new(before.id, before.state, before.state));
        }
        let action = if before.state == InstanceState::Suspended {
            Action::Resume
        } else {
            Action::Start
        };
        let (current, operation) = self.client.accept(action, &at).await?;
        let change = StateChange::new(before.id, before.state, current);
        Ok(match operation {
            Some(operation) => change.with_operation(operation),
            None => change,
        })
    }

    /// Follows the zone operation a stop or start returned (`StateChange::operation`), at
    /// 50 ms doubling to 2 s between polls, until `timeout`.
    async fn wait_for_operation(
        &self,
        id: &InstanceId,
        operation: &str,
        timeout: Duration,
    ) -> Result<()> {
        let at = self.client.locate(id)?;
        self.client.follow_operation(&at, operation, timeout).await
    }
}
