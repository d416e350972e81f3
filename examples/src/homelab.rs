//! A provider for a small on-prem hypervisor, written as docs/writing-a-provider.md walks
//! through it: **Homelab**, a REST front end to libvirt (`/vms`, `/vms/{name}`,
//! `/vms/{name}/{action}`), whose VMs have libvirt's domain states.
//!
//! The provider is ~200 lines: the id rule, the state table, the error table, capabilities,
//! and the four calls. [`fake`](crate::homelab_fake) is the fake server its tests run the
//! conformance suite against.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use snoozebot_core::{
    Capabilities, CloudProvider, Error, ErrorKind, InstanceFilter, InstanceId, InstanceInfo,
    InstanceState, ProviderInfo, Result, StateChange, StopMode, StopOptions, async_trait,
};

/// The provider's name.
pub const NAME: &str = "homelab";

/// A VM as the Homelab API describes it.
#[derive(Debug, Deserialize)]
struct Vm {
    name: String,
    state: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    vcpus: Option<u32>,
}

/// The Homelab API's error body.
#[derive(Debug, Deserialize)]
struct ApiError {
    code: String,
    message: String,
}

/// Every libvirt domain state, mapped. The raw name is kept beside it in
/// [`InstanceInfo::raw_state`]; on-prem, "billing" is power: only a domain that is shut off
/// (or saved to disk) has stopped drawing it.
pub fn map_state(raw: &str) -> (InstanceState, bool) {
    match raw {
        "running" | "blocked" | "idle" => (InstanceState::Running, false),
        "paused" | "pmsuspended" => (InstanceState::Suspended, false),
        "in shutdown" => (InstanceState::Stopping, false),
        "shut off" | "crashed" | "saved" => (InstanceState::Stopped, true),
        "starting" => (InstanceState::Pending, false),
        "dying" => (InstanceState::Terminating, false),
        _ => (InstanceState::Unknown, false),
    }
}

/// The Homelab API's error codes as kinds; unknown codes fall back on the HTTP status.
pub fn kind_for(code: &str, status: u16) -> ErrorKind {
    match code {
        "no_domain" => ErrorKind::NotFound,
        "invalid_name" | "invalid_arg" => ErrorKind::InvalidArgument,
        "operation_invalid" => ErrorKind::InvalidState,
        "no_support" => ErrorKind::Unsupported,
        "busy" => ErrorKind::Throttled,
        "auth_failed" => ErrorKind::Unauthenticated,
        "access_denied" => ErrorKind::PermissionDenied,
        _ => match status {
            400 => ErrorKind::InvalidArgument,
            401 => ErrorKind::Unauthenticated,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::InvalidState,
            429 => ErrorKind::Throttled,
            500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        },
    }
}

/// VM names: 1 to 63 lowercase letters, digits and `-`, starting with a letter.
fn check_id(id: &InstanceId) -> Result<&str> {
    let name = id.as_str();
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(name)
    } else {
        Err(Error::invalid_argument(format!(
            "{name:?} is not a Homelab VM name (lowercase letters, digits and -, starting with a letter)"
        ))
        .with_provider(NAME))
    }
}

/// Stops and starts VMs on a Homelab hypervisor.
#[derive(Debug, Clone)]
pub struct HomelabProvider {
    http: reqwest::Client,
    base: String,
}

impl HomelabProvider {
    /// A provider for the Homelab API at `base` (`http://hypervisor:8000`).
    pub fn new(base: impl Into<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            // The middleware's timeout bounds whole calls; this bounds a dead TCP connect.
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| Error::config(format!("cannot make an HTTP client: {error}")))?;
        Ok(Self {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
        })
    }

    /// Sends one request; maps a transport failure or an error answer to an [`Error`].
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        operation: &str,
    ) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|error| {
            let kind = if error.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Unavailable
            };
            Error::new(kind, format!("{operation}: {error}")).with_provider(NAME)
        })?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ApiError>(&body) {
            Ok(error) => (error.code, error.message),
            Err(_) => ("unknown".to_owned(), body.chars().take(200).collect()),
        };
        let mut error = Error::new(
            kind_for(&code, status),
            format!("{operation}: HTTP {status} {code}: {message}"),
        )
        .with_provider(NAME);
        if let Some(after) = retry_after {
            error = error.with_retry_after(after);
        }
        Err(error)
    }

    async fn fetch(&self, name: &str) -> Result<InstanceInfo> {
        let request = self.http.get(format!("{}/vms/{name}", self.base));
        let vm: Vm = self
            .send(request, "get")
            .await?
            .json()
            .await
            .map_err(|error| {
                Error::internal(format!("get: unreadable answer: {error}")).with_provider(NAME)
            })?;
        info(vm)
    }

    async fn act(&self, name: &str, action: &str) -> Result<()> {
        let request = self.http.post(format!("{}/vms/{name}/{action}", self.base));
        self.send(request, action).await.map(|_| ())
    }
}

fn info(vm: Vm) -> Result<InstanceInfo> {
    let (state, billing_stopped) = map_state(&vm.state);
    let mut info = InstanceInfo::new(InstanceId::new(vm.name.as_str())?, state, vm.state);
    info.billing_stopped = billing_stopped;
    info.name = Some(vm.name);
    info.zone = vm.host;
    info.machine_type = vm.vcpus.map(|vcpus| format!("{vcpus} vCPU"));
    info.tags = vm.labels;
    Ok(info)
}

#[async_trait]
impl CloudProvider for HomelabProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new(
            NAME,
            env!("CARGO_PKG_VERSION"),
            "homelab/v1",
            // shutdown (Stop) and managedsave (Hibernate); no dry runs.
            Capabilities::new([StopMode::Stop, StopMode::Hibernate]),
        )
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> {
        self.fetch(check_id(id)?).await
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>> {
        let request = self.http.get(format!("{}/vms", self.base));
        let vms: Vec<Vm> = self
            .send(request, "list")
            .await?
            .json()
            .await
            .map_err(|error| {
                Error::internal(format!("list: unreadable answer: {error}")).with_provider(NAME)
            })?;
        let mut found = vms.into_iter().map(info).collect::<Result<Vec<_>>>()?;
        // The API has no filters: the provider applies them, and sorts.
        found.retain(|instance| filter.matches(instance));
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange> {
        let name = check_id(id)?;
        self.info()
            .capabilities
            .check(opts)
            .map_err(|error| error.with_provider(NAME))?;
        let mode = opts.mode.unwrap_or(StopMode::Stop);
        let before = self.fetch(name).await?;
        if before.state == InstanceState::Stopped {
            return Ok(StateChange::new(before.id, before.state, before.state).with_mode(mode));
        }
        let action = match (mode, opts.force) {
            (StopMode::Hibernate, _) => "managedsave",
            (_, true) => "destroy",
            _ => "shutdown",
        };
        self.act(name, action).await?;
        let after = self.fetch(name).await?;
        Ok(StateChange::new(before.id, before.state, after.state).with_mode(mode))
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> {
        let name = check_id(id)?;
        let before = self.fetch(name).await?;
        if before.state == InstanceState::Running {
            return Ok(StateChange::new(before.id, before.state, before.state));
        }
        self.act(name, "start").await?;
        let after = self.fetch(name).await?;
        Ok(StateChange::new(before.id, before.state, after.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_libvirt_state_is_mapped() {
        for (raw, state) in [
            ("running", InstanceState::Running),
            ("blocked", InstanceState::Running),
            ("paused", InstanceState::Suspended),
            ("pmsuspended", InstanceState::Suspended),
            ("in shutdown", InstanceState::Stopping),
            ("shut off", InstanceState::Stopped),
            ("crashed", InstanceState::Stopped),
            ("saved", InstanceState::Stopped),
            ("starting", InstanceState::Pending),
            ("dying", InstanceState::Terminating),
            ("nostate", InstanceState::Unknown),
        ] {
            assert_eq!(map_state(raw).0, state, "{raw}");
        }
    }
}
