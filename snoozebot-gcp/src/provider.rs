//! [`GcpProvider`] and its builder: Compute Engine through the official
//! `google-cloud-compute-v1` client.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use google_cloud_compute_v1::client::Instances;
use google_cloud_compute_v1::model::{Instance, Operation};
use snoozebot_core::{
    Backoff, Capabilities, CloudProvider, Error, ErrorKind, InstanceFilter, InstanceId,
    InstanceInfo, InstancePage, InstanceState, PageRequest, ProviderInfo, Result, StateChange,
    StopMode, StopOptions,
};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::PROVIDER_NAME;
use crate::error::ErrorDetail;
use crate::model::{InstanceRef, map_status};

/// Builds a [`GcpProvider`].
///
/// Credentials come from Application Default Credentials unless
/// [`anonymous`](Self::anonymous) is asked for (emulators and fakes). The client's own retries
/// are off: Snoozebot's retry layer is the one place retries happen.
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct GcpProviderBuilder {
    project: Option<String>,
    zones: Vec<String>,
    endpoint: Option<String>,
    anonymous: bool,
    discard_local_ssd: Option<bool>,
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

    /// Sends no credentials (fakes and emulators only).
    pub fn anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    /// Whether stopping discards local SSD data (GCE requires saying so for instances with
    /// local SSDs); unset leaves GCE's default.
    pub fn discard_local_ssd(mut self, discard: bool) -> Self {
        self.discard_local_ssd = Some(discard);
        self
    }

    /// A provider that makes its client on the first call.
    pub fn build(self) -> GcpProvider {
        GcpProvider {
            settings: Arc::new(self),
            client: Arc::new(OnceCell::new()),
        }
    }
}

/// Stops, suspends and starts Compute Engine instances.
///
/// What it costs: a stopped (TERMINATED) instance is not billed for vCPU and memory, but its
/// disks and static IPs are; a suspended one also pays for storing its memory. Ids are
/// `project/zone/name`, or `zone/name` in the builder's project.
#[derive(Debug, Clone)]
pub struct GcpProvider {
    settings: Arc<GcpProviderBuilder>,
    client: Arc<OnceCell<Instances>>,
}

fn client_error(operation: &str, error: google_cloud_compute_v1::Error) -> Error {
    let retry_after = error
        .http_headers()
        .and_then(|headers| headers.get("retry-after"))
        .and_then(|value| value.to_str().ok())
        .and_then(snoozebot_core::parse_retry_after);
    let mapped = if let Some(detail) = error
        .http_payload()
        .and_then(|body| ErrorDetail::from_envelope(body))
    {
        // An answer the client could not read as a status: the raw Google envelope.
        let detail = ErrorDetail {
            http_status: detail.http_status.or(error.http_status_code()),
            ..detail
        };
        detail.into_error(operation)
    } else if let Some(status) = error.status() {
        // The client keeps the envelope's message and the HTTP status, not `errors[].reason`;
        // the reason is read back from the message where GCE states it.
        let message = status.message.clone();
        let kind =
            crate::error::kind_for(crate::error::reason_in(&message), error.http_status_code());
        Error::new(
            kind,
            format!(
                "{operation}: HTTP {}: {message}",
                error.http_status_code().unwrap_or(0)
            ),
        )
        .with_provider(PROVIDER_NAME)
    } else {
        let kind = if error.is_timeout() {
            ErrorKind::Timeout
        } else if error.is_authentication() {
            ErrorKind::Unauthenticated
        } else if error.is_connect() || error.is_io() || error.is_transport() {
            ErrorKind::Unavailable
        } else {
            crate::error::kind_for(None, error.http_status_code())
        };
        Error::new(kind, format!("{operation}: {error}")).with_provider(PROVIDER_NAME)
    };
    let mapped = match retry_after {
        Some(after) => mapped.with_retry_after(after),
        None => mapped,
    };
    mapped.with_source(error)
}

fn operation_error(operation: &str, op: &Operation) -> Option<Error> {
    let first = op.error.as_ref()?.errors.first()?;
    let detail = ErrorDetail {
        reason: first.code.clone(),
        message: first
            .message
            .clone()
            .unwrap_or_else(|| "the operation failed".to_owned()),
        http_status: op
            .http_error_status_code
            .and_then(|code| u16::try_from(code).ok()),
    };
    Some(detail.into_error(operation))
}

/// The last path segment of a GCE URL (`.../zones/us-central1-a` → `us-central1-a`).
fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

fn instance_info(project: &str, instance: &Instance) -> Option<InstanceInfo> {
    let name = instance.name.as_deref()?;
    let zone = last_segment(instance.zone.as_deref()?);
    let id = InstanceId::new(format!("{project}/{zone}/{name}")).ok()?;
    let raw = instance
        .status
        .as_ref()
        .and_then(|status| status.name())
        .unwrap_or("UNKNOWN")
        .to_owned();
    let mut info = InstanceInfo::new(id, map_status(&raw), raw);
    info.name = Some(name.to_owned());
    info.zone = Some(zone.to_owned());
    info.region = zone.rsplit_once('-').map(|(region, _)| region.to_owned());
    info.machine_type = instance
        .machine_type
        .as_deref()
        .map(|url| last_segment(url).to_owned());
    info.launch_time = instance
        .last_start_timestamp
        .as_deref()
        .and_then(|time| chrono::DateTime::parse_from_rfc3339(time).ok())
        .map(|time| time.with_timezone(&chrono::Utc));
    info.tags = instance
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(info)
}

/// The GCE filter expression for what GCE can filter: labels and statuses.
fn filter_expression(filter: &InstanceFilter) -> String {
    let mut clauses: Vec<String> = filter
        .tags
        .iter()
        .map(|(key, value)| format!("labels.{key} = \"{value}\""))
        .collect();
    let statuses: Vec<String> = filter
        .states
        .iter()
        .flat_map(|state| match state {
            InstanceState::Pending => &["PROVISIONING", "STAGING"][..],
            InstanceState::Running => &["RUNNING"][..],
            InstanceState::Stopping => &["STOPPING"][..],
            InstanceState::Stopped => &["TERMINATED", "STOPPED"][..],
            InstanceState::Suspending => &["SUSPENDING"][..],
            InstanceState::Suspended => &["SUSPENDED"][..],
            InstanceState::Terminating => &["DEPROVISIONING"][..],
            InstanceState::Terminated | InstanceState::Unknown => &[][..],
        })
        .map(|status| format!("status = \"{status}\""))
        .collect();
    if !statuses.is_empty() {
        clauses.push(format!("({})", statuses.join(" OR ")));
    }
    clauses.join(" AND ")
}

impl GcpProvider {
    async fn client(&self) -> Result<&Instances> {
        self.client
            .get_or_try_init(|| async {
                let mut builder = Instances::builder()
                    .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry);
                if let Some(endpoint) = &self.settings.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                if self.settings.anonymous {
                    builder = builder.with_credentials(
                        google_cloud_auth::credentials::anonymous::Builder::new().build(),
                    );
                }
                builder.build().await.map_err(|error| {
                    Error::new(
                        ErrorKind::Config,
                        format!("cannot make the Compute Engine client: {error}"),
                    )
                    .with_provider(PROVIDER_NAME)
                })
            })
            .await
    }

    fn locate(&self, id: &InstanceId) -> Result<InstanceRef> {
        InstanceRef::parse(id, self.settings.project.as_deref())
    }

    async fn fetch(&self, at: &InstanceRef) -> Result<InstanceInfo> {
        let instance = self
            .client()
            .await?
            .get()
            .set_project(&at.project)
            .set_zone(&at.zone)
            .set_instance(&at.name)
            .send()
            .await
            .map_err(|error| client_error("instances.get", error))?;
        instance_info(&at.project, &instance).ok_or_else(|| {
            Error::internal("instances.get answered without a name or zone")
                .with_provider(PROVIDER_NAME)
        })
    }

    /// Follows the zone operation `name` of `at`'s zone until it is done, at most `timeout`;
    /// its error becomes the call's.
    async fn follow_operation(
        &self,
        at: &InstanceRef,
        name: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pauses = OPERATION_POLLS.delays();
        loop {
            let operation = self
                .client()
                .await?
                .get_operation()
                .set_project(&at.project)
                .set_zone(&at.zone)
                .set_operation(name)
                .send()
                .await
                .map_err(|error| client_error("zoneOperations.get", error))?;
            if is_done(&operation) {
                return match operation_error(name, &operation) {
                    Some(error) => Err(error),
                    None => Ok(()),
                };
            }
            let pause = pauses.next().unwrap_or(OPERATION_POLLS.max);
            if Instant::now() + pause > deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("operation {name} was not done within {timeout:?}"),
                )
                .with_provider(PROVIDER_NAME));
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Sends `action` and returns once GCE accepted it: the state it is heading into and the
    /// operation's name, or its settled state if the operation was done at once. An operation
    /// that failed at once is the error.
    async fn accept(
        &self,
        action: Action,
        at: &InstanceRef,
    ) -> Result<(InstanceState, Option<String>)> {
        let operation = self.mutate(action, at).await?;
        let (moving, settled) = action.states();
        if is_done(&operation) {
            return match operation_error(action.method(), &operation) {
                Some(error) => Err(error),
                None => Ok((settled, None)),
            };
        }
        let name = operation
            .name
            .clone()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| {
                Error::internal(format!(
                    "{} answered an operation without a name",
                    action.method()
                ))
                .with_provider(PROVIDER_NAME)
            })?;
        Ok((moving, Some(name)))
    }

    async fn mutate(&self, action: Action, at: &InstanceRef) -> Result<Operation> {
        let client = self.client().await?;
        let sent = match action {
            Action::Stop => {
                let mut request = client
                    .stop()
                    .set_project(&at.project)
                    .set_zone(&at.zone)
                    .set_instance(&at.name);
                if let Some(discard) = self.settings.discard_local_ssd {
                    request = request.set_discard_local_ssd(discard);
                }
                request.send().await
            }
            Action::Suspend => {
                client
                    .suspend()
                    .set_project(&at.project)
                    .set_zone(&at.zone)
                    .set_instance(&at.name)
                    .send()
                    .await
            }
            Action::Resume => {
                client
                    .resume()
                    .set_project(&at.project)
                    .set_zone(&at.zone)
                    .set_instance(&at.name)
                    .send()
                    .await
            }
            Action::Start => {
                client
                    .start()
                    .set_project(&at.project)
                    .set_zone(&at.zone)
                    .set_instance(&at.name)
                    .send()
                    .await
            }
        };
        sent.map_err(|error| client_error(action.method(), error))
    }

    /// Every instance of `zone` (or of every zone, aggregated) matching `expression`.
    async fn list_pages(
        &self,
        project: &str,
        zone: Option<&str>,
        expression: &str,
    ) -> Result<Vec<InstanceInfo>> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (instances, next) = self
                .list_page(project, zone, expression, MAX_RESULTS, token.as_deref())
                .await?;
            found.extend(instances);
            match next {
                Some(next) => token = Some(next),
                None => return Ok(found),
            }
        }
    }

    /// One `instances.list` (or `instances.aggregatedList` without a zone) request.
    async fn list_page(
        &self,
        project: &str,
        zone: Option<&str>,
        expression: &str,
        max_results: u32,
        token: Option<&str>,
    ) -> Result<(Vec<InstanceInfo>, Option<String>)> {
        let client = self.client().await?;
        let (instances, next) = match zone {
            Some(zone) => {
                let mut request = client
                    .list()
                    .set_project(project)
                    .set_zone(zone)
                    .set_max_results(max_results);
                if !expression.is_empty() {
                    request = request.set_filter(expression);
                }
                if let Some(token) = token {
                    request = request.set_page_token(token);
                }
                let page = request
                    .send()
                    .await
                    .map_err(|error| client_error("instances.list", error))?;
                (page.items, page.next_page_token)
            }
            None => {
                let mut request = client
                    .aggregated_list()
                    .set_project(project)
                    .set_max_results(max_results);
                if !expression.is_empty() {
                    request = request.set_filter(expression);
                }
                if let Some(token) = token {
                    request = request.set_page_token(token);
                }
                let page = request
                    .send()
                    .await
                    .map_err(|error| client_error("instances.aggregatedList", error))?;
                let instances = page
                    .items
                    .into_values()
                    .flat_map(|scope| scope.instances)
                    .collect();
                (instances, page.next_page_token)
            }
        };
        let found = instances
            .iter()
            .filter_map(|instance| instance_info(project, instance))
            .collect();
        Ok((found, next.filter(|token| !token.is_empty())))
    }

    fn listing_project(&self) -> Result<String> {
        self.settings.project.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "listing needs a project: GcpProviderBuilder::project",
            )
            .with_provider(PROVIDER_NAME)
        })
    }
}

/// The pauses between polls of a zone operation: 50 ms doubling up to 2 s.
const OPERATION_POLLS: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));

/// The most instances GCE returns per list request.
const MAX_RESULTS: u32 = 500;

/// Where a paged listing continues: the zone (its index among the configured zones; `0` for
/// the aggregated list) and GCE's own page token in it. Written `INDEX:TOKEN`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListCursor {
    zone: usize,
    token: Option<String>,
}

impl ListCursor {
    fn parse(token: Option<&str>) -> Result<Self> {
        let Some(token) = token else {
            return Ok(ListCursor {
                zone: 0,
                token: None,
            });
        };
        let (zone, gce) = token
            .split_once(':')
            .and_then(|(zone, gce)| Some((zone.parse().ok()?, gce)))
            .ok_or_else(|| {
                Error::invalid_argument("the page token is not one this provider gave")
                    .with_provider(PROVIDER_NAME)
            })?;
        Ok(ListCursor {
            zone,
            token: (!gce.is_empty()).then(|| gce.to_owned()),
        })
    }

    fn encode(&self) -> String {
        format!(
            "{}:{}",
            self.zone,
            self.token.as_deref().unwrap_or_default()
        )
    }
}

fn is_done(operation: &Operation) -> bool {
    operation.status.as_ref().and_then(|status| status.name()) == Some("DONE")
}

/// The instance methods that change power state. An enum, so that no action name can fall
/// through to another method (a mistyped string once meant `start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Stop,
    Suspend,
    Resume,
    Start,
}

impl Action {
    /// The state an instance is in while the action runs, and after.
    fn states(self) -> (InstanceState, InstanceState) {
        match self {
            Action::Stop => (InstanceState::Stopping, InstanceState::Stopped),
            Action::Suspend => (InstanceState::Suspending, InstanceState::Suspended),
            Action::Resume | Action::Start => (InstanceState::Pending, InstanceState::Running),
        }
    }

    /// The API method, as error messages and operation errors name it.
    fn method(self) -> &'static str {
        match self {
            Action::Stop => "instances.stop",
            Action::Suspend => "instances.suspend",
            Action::Resume => "instances.resume",
            Action::Start => "instances.start",
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
        let at = self.locate(id)?;
        self.fetch(&at).await
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>> {
        let project = self.listing_project()?;
        let expression = filter_expression(filter);
        let mut found = Vec::new();
        if self.settings.zones.is_empty() {
            found = self.list_pages(&project, None, &expression).await?;
        } else {
            for zone in &self.settings.zones {
                found.extend(self.list_pages(&project, Some(zone), &expression).await?);
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
        let project = self.listing_project()?;
        let cursor = ListCursor::parse(page.token.as_deref())?;
        let zone = if self.settings.zones.is_empty() {
            if cursor.zone != 0 {
                return Err(Error::invalid_argument(
                    "the page token is not one this provider gave",
                )
                .with_provider(PROVIDER_NAME));
            }
            None
        } else {
            Some(self.settings.zones.get(cursor.zone).ok_or_else(|| {
                Error::invalid_argument("the page token is not one this provider gave")
                    .with_provider(PROVIDER_NAME)
            })?)
        };
        let max_results = u32::try_from(page.size.clamp(1, MAX_RESULTS as usize)).unwrap_or(1);
        let (mut found, next) = self
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
            None if cursor.zone + 1 < self.settings.zones.len() => Some(ListCursor {
                zone: cursor.zone + 1,
                token: None,
            }),
            None => None,
        };
        Ok(InstancePage::new(found, next.map(|cursor| cursor.encode())))
    }

    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange> {
        let at = self.locate(id)?;
        self.info()
            .capabilities
            .check(opts)
            .map_err(|error| error.with_provider(PROVIDER_NAME))?;
        let (action, mode) = match opts.mode {
            Some(StopMode::Suspend) => (Action::Suspend, StopMode::Suspend),
            _ => (Action::Stop, StopMode::Stop),
        };
        let before = self.fetch(&at).await?;
        if before.state == action.states().1 {
            return Ok(StateChange::new(before.id, before.state, before.state).with_mode(mode));
        }
        let (current, operation) = self.accept(action, &at).await?;
        let change = StateChange::new(before.id, before.state, current).with_mode(mode);
        Ok(match operation {
            Some(operation) => change.with_operation(operation),
            None => change,
        })
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> {
        let at = self.locate(id)?;
        let before = self.fetch(&at).await?;
        if before.state == InstanceState::Running {
            return Ok(StateChange::new(before.id, before.state, before.state));
        }
        let action = if before.state == InstanceState::Suspended {
            Action::Resume
        } else {
            Action::Start
        };
        let (current, operation) = self.accept(action, &at).await?;
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
        let at = self.locate(id)?;
        self.follow_operation(&at, operation, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_cursors_round_trip_and_bad_ones_are_invalid_arguments() {
        for cursor in [
            ListCursor {
                zone: 0,
                token: None,
            },
            ListCursor {
                zone: 2,
                token: Some("Cg0KC2luc3RhbmNlLTE:x".to_owned()),
            },
        ] {
            assert_eq!(ListCursor::parse(Some(&cursor.encode())).unwrap(), cursor);
        }
        for bad in ["", "zone", "x:token", "-1:token"] {
            let error = ListCursor::parse(Some(bad)).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn each_action_names_its_own_method() {
        let actions = [Action::Stop, Action::Suspend, Action::Resume, Action::Start];
        let methods: Vec<_> = actions.iter().map(|action| action.method()).collect();
        assert_eq!(
            methods,
            [
                "instances.stop",
                "instances.suspend",
                "instances.resume",
                "instances.start"
            ]
        );
    }
}
