//! The Compute Engine calls: one client made on first use, instances read, listed page by
//! page, sent power actions, and zone operations followed.

use std::sync::Arc;
use std::time::Duration;

use google_cloud_compute_v1::client::Instances;
use google_cloud_compute_v1::model::Operation;
use snoozebot_core::{Backoff, Error, ErrorKind, InstanceId, InstanceInfo, InstanceState, Result};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::PROVIDER_NAME;
use crate::builder::GcpProviderBuilder;
use crate::error::{client_error, operation_error};
use crate::model::{InstanceRef, instance_info};

/// The GCE client and the settings it was made from.
#[derive(Debug, Clone)]
pub(crate) struct GceClient {
    pub(crate) settings: Arc<GcpProviderBuilder>,
    client: Arc<OnceCell<Instances>>,
}

impl GceClient {
    pub(crate) fn new(settings: GcpProviderBuilder) -> Self {
        GceClient {
            settings: Arc::new(settings),
            client: Arc::new(OnceCell::new()),
        }
    }
}

impl GceClient {
    pub(crate) async fn client(&self) -> Result<&Instances> {
        self.client
            .get_or_try_init(|| async {
                let mut builder = Instances::builder()
                    .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry);
                if let Some(endpoint) = &self.settings.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                if let Some(credentials) = &self.settings.credentials {
                    builder = builder.with_credentials(credentials.clone());
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

    pub(crate) fn locate(&self, id: &InstanceId) -> Result<InstanceRef> {
        InstanceRef::parse(id, self.settings.project.as_deref())
    }

    pub(crate) async fn fetch(&self, at: &InstanceRef) -> Result<InstanceInfo> {
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
    pub(crate) async fn follow_operation(
        &self,
        at: &InstanceRef,
        name: &str,
        timeout: Duration,
    ) -> Result<()> {
        check_operation_name(name)?;
        let deadline = snoozebot_core::deadline_in(timeout);
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
    pub(crate) async fn accept(
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

    pub(crate) async fn mutate(&self, action: Action, at: &InstanceRef) -> Result<Operation> {
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
    pub(crate) async fn list_pages(
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
    pub(crate) async fn list_page(
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

    pub(crate) fn listing_project(&self) -> Result<String> {
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
pub(crate) const OPERATION_POLLS: Backoff =
    Backoff::new(Duration::from_millis(50), Duration::from_secs(2));

/// The most instances GCE returns per list request.
pub(crate) const MAX_RESULTS: u32 = 500;

/// Where a paged listing continues: the zone (its index among the configured zones; `0` for
/// the aggregated list) and GCE's own page token in it. Written `INDEX:TOKEN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListCursor {
    pub(crate) zone: usize,
    pub(crate) token: Option<String>,
}

impl ListCursor {
    pub(crate) fn parse(token: Option<&str>) -> Result<Self> {
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

    pub(crate) fn encode(&self) -> String {
        format!(
            "{}:{}",
            self.zone,
            self.token.as_deref().unwrap_or_default()
        )
    }
}

/// A zone operation's name as GCE gives them (`operation-1700000000000-60a1b2c3d4e5f-...`):
/// letters, digits, `-` and `_`, at most 128. Anything else — a path, a URL, garbage from a
/// plugin host — is refused before it reaches a request path carrying our credentials.
fn check_operation_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "{:?} is not an operation this provider gave",
            name.chars().take(64).collect::<String>()
        ))
        .with_provider(PROVIDER_NAME))
    }
}

fn is_done(operation: &Operation) -> bool {
    operation.status.as_ref().and_then(|status| status.name()) == Some("DONE")
}

/// The instance methods that change power state. An enum, so that no action name can fall
/// through to another method (a mistyped string once meant `start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Stop,
    Suspend,
    Resume,
    Start,
}

impl Action {
    /// The state an instance is in while the action runs, and after.
    pub(crate) fn states(self) -> (InstanceState, InstanceState) {
        match self {
            Action::Stop => (InstanceState::Stopping, InstanceState::Stopped),
            Action::Suspend => (InstanceState::Suspending, InstanceState::Suspended),
            Action::Resume | Action::Start => (InstanceState::Pending, InstanceState::Running),
        }
    }

    /// The API method, as error messages and operation errors name it.
    pub(crate) fn method(self) -> &'static str {
        match self {
            Action::Stop => "instances.stop",
            Action::Suspend => "instances.suspend",
            Action::Resume => "instances.resume",
            Action::Start => "instances.start",
        }
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
    fn operation_names_from_outside_are_checked() {
        assert!(
            check_operation_name("operation-1700000000000-60a1b2c3d4e5f-1a2b3c4d-5e6f7a8b").is_ok()
        );
        let long = "x".repeat(129);
        for bad in [
            "",
            "../../instances/x",
            "https://evil.example/op",
            "op name",
            &long,
            "op\0",
        ] {
            let error = check_operation_name(bad).unwrap_err();
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
