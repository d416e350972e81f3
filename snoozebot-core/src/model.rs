//! The portable model every provider speaks: instance ids, states, instance descriptions, stop
//! options, state changes, filters and provider descriptions.
//!
//! The JSON shapes of these types are stable: they travel over the REST API (the plugin wire
//! carries them as protobuf, through `snoozebot-plugin`'s converters).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An instance id, checked to be usable before any provider sees it.
///
/// Valid ids are non-empty, at most [`InstanceId::MAX_LEN`] bytes, and contain no whitespace
/// or control characters. Each provider checks its own format on top of this (EC2 `i-` + hex,
/// GCE `zone/name`, Azure resource ids) and answers [`ErrorKind::InvalidArgument`] before
/// calling its API.
///
/// Deserializing validates too, so a bad id in a JSON request is refused with a clear message.
///
/// ```
/// use snoozebot_core::InstanceId;
///
/// let id: InstanceId = "i-0123456789abcdef0".parse()?;
/// assert_eq!(id.as_str(), "i-0123456789abcdef0");
/// assert!(InstanceId::new("").is_err());
/// assert!(InstanceId::new("i-123\n").is_err());
/// # Ok::<(), snoozebot_core::Error>(())
/// ```
///
/// [`ErrorKind::InvalidArgument`]: crate::ErrorKind::InvalidArgument
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, example = "i-0123456789abcdef0"))]
pub struct InstanceId(String);

impl InstanceId {
    /// The longest id accepted, in bytes. Azure VM resource ids, the longest of the three
    /// clouds, reach 266 bytes (a 90-character resource group and a 64-character VM name).
    pub const MAX_LEN: usize = 512;

    /// Validates `id` and wraps it; [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
    /// says which rule it broke.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        if id.is_empty() {
            return Err(Error::invalid_argument("instance id is empty"));
        }
        if id.len() > Self::MAX_LEN {
            return Err(Error::invalid_argument(format!(
                "instance id is {} bytes long; at most {} are allowed",
                id.len(),
                Self::MAX_LEN
            )));
        }
        if let Some((position, bad)) = id
            .char_indices()
            .find(|(_, c)| c.is_control() || c.is_whitespace() || is_invisible_format(*c))
        {
            return Err(Error::invalid_argument(format!(
                "instance id {:?} contains {:?} at byte {position}; whitespace, control, \
                 invisible and direction-changing characters are not allowed",
                id, bad
            )));
        }
        Ok(InstanceId(id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Unicode's format characters (category Cf): invisible, and some (U+202E) reverse how the
/// text around them is shown, so an id could read as another in a log, a table or a terminal.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for InstanceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for InstanceId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        InstanceId::new(s)
    }
}

impl TryFrom<String> for InstanceId {
    type Error = Error;

    fn try_from(value: String) -> Result<Self> {
        InstanceId::new(value)
    }
}

impl TryFrom<&str> for InstanceId {
    type Error = Error;

    fn try_from(value: &str) -> Result<Self> {
        InstanceId::new(value)
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> String {
        id.0
    }
}

/// The portable lifecycle state of an instance.
///
/// Every native state of every cloud maps to exactly one of these; the native string is kept
/// beside it in [`InstanceInfo::raw_state`]. Serialized as `snake_case` strings.
///
/// The set can grow in a minor release (a cloud may gain a lifecycle worth naming), so the enum
/// is `#[non_exhaustive]`: a `match` outside this crate needs a wildcard arm. Prefer the
/// questions the type answers — [`is_transitional`](InstanceState::is_transitional),
/// [`can_reach`](InstanceState::can_reach), [`as_str`](InstanceState::as_str) — and treat
/// the wildcard like [`Unknown`](InstanceState::Unknown):
///
/// ```
/// use snoozebot_core::InstanceState;
///
/// fn label(state: InstanceState) -> &'static str {
///     match state {
///         InstanceState::Running => "billing",
///         InstanceState::Stopped | InstanceState::Suspended => "asleep",
///         state if state.is_transitional() => "changing",
///         _ => "other",
///     }
/// }
/// assert_eq!(label(InstanceState::Stopping), "changing");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum InstanceState {
    /// Being created or started (EC2 `pending`, GCE `PROVISIONING`/`STAGING`, Azure `starting`).
    Pending,
    /// Running and billed.
    Running,
    /// On its way to [`Stopped`](InstanceState::Stopped).
    Stopping,
    /// Stopped. Whether compute is still billed is in [`InstanceInfo::billing_stopped`].
    Stopped,
    /// Saving its memory to be resumed later (GCE `SUSPENDING`).
    Suspending,
    /// Suspended with its memory saved (GCE `SUSPENDED`).
    Suspended,
    /// Being deleted.
    Terminating,
    /// Deleted, or about to vanish; it can never run again.
    Terminated,
    /// The provider reported a state Snoozebot does not know; see the raw state.
    Unknown,
}

impl InstanceState {
    /// Every state, in declaration order.
    pub const ALL: [InstanceState; 9] = [
        InstanceState::Pending,
        InstanceState::Running,
        InstanceState::Stopping,
        InstanceState::Stopped,
        InstanceState::Suspending,
        InstanceState::Suspended,
        InstanceState::Terminating,
        InstanceState::Terminated,
        InstanceState::Unknown,
    ];

    /// The stable `snake_case` name of this state.
    pub const fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Suspending => "suspending",
            InstanceState::Suspended => "suspended",
            InstanceState::Terminating => "terminating",
            InstanceState::Terminated => "terminated",
            InstanceState::Unknown => "unknown",
        }
    }

    /// Whether the instance is on its way to another state (pending, stopping, ...).
    pub const fn is_transitional(self) -> bool {
        matches!(
            self,
            InstanceState::Pending
                | InstanceState::Stopping
                | InstanceState::Suspending
                | InstanceState::Terminating
        )
    }

    /// Whether an instance in this state can still reach `target` without outside help.
    ///
    /// Only termination is final: a terminating or terminated instance reaches nothing but
    /// [`Terminated`](InstanceState::Terminated). Waiters use this to fail at once instead of
    /// waiting out their timeout.
    pub const fn can_reach(self, target: InstanceState) -> bool {
        match self {
            InstanceState::Terminating | InstanceState::Terminated => matches!(
                target,
                InstanceState::Terminating | InstanceState::Terminated
            ),
            _ => true,
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InstanceState {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        InstanceState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = InstanceState::ALL.iter().map(|s| s.as_str()).collect();
                Error::invalid_argument(format!(
                    "unknown instance state {s:?}; expected one of {}",
                    known.join(", ")
                ))
            })
    }
}

/// What one instance looks like, in portable terms plus the provider's own words.
///
/// Build one with [`InstanceInfo::new`] and set the optional fields directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceInfo {
    /// The instance id, in the form the provider accepts back.
    pub id: InstanceId,
    /// A human-readable name (EC2 `Name` tag, GCE/Azure resource name).
    pub name: Option<String>,
    /// The portable state.
    pub state: InstanceState,
    /// The provider's native state string, unchanged (`stopped`, `TERMINATED`, `PowerState/deallocated`).
    pub raw_state: String,
    /// Whether compute billing has stopped for this instance.
    ///
    /// Clouds differ: an Azure VM that is only `stopped` is still billed for compute until it is
    /// deallocated, while a stopped EC2 or GCE instance is not.
    pub billing_stopped: bool,
    /// The machine type or size (`t3.micro`, `e2-medium`, `Standard_B1s`).
    pub machine_type: Option<String>,
    /// The region (`eu-west-1`, `us-central1`, `westeurope`).
    pub region: Option<String>,
    /// The availability zone, where the cloud has one.
    pub zone: Option<String>,
    /// When the instance was last launched or started.
    pub launch_time: Option<DateTime<Utc>>,
    /// Tags (EC2, Azure) or labels (GCE).
    pub tags: BTreeMap<String, String>,
}

impl InstanceInfo {
    /// Whether a stop or start may be sent: not for an instance that is being deleted or is
    /// gone ([`InstanceState::Terminating`], [`InstanceState::Terminated`]), which is
    /// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) naming its native state.
    /// Providers that read the instance before changing it check this, so no cloud is asked
    /// to start what it is deleting.
    pub fn check_can_power(&self) -> crate::Result<()> {
        if self.state.can_reach(InstanceState::Running) {
            Ok(())
        } else {
            Err(crate::Error::invalid_state(format!(
                "instance {} is {} ({}); it can no longer be stopped or started",
                self.id, self.state, self.raw_state
            )))
        }
    }

    /// An instance with the required fields set and everything optional empty.
    ///
    /// `billing_stopped` starts as what `state` implies on most clouds (stopped, suspended or
    /// terminated); providers whose stopped state still bills (Azure `stopped`) set it to `false`.
    pub fn new(id: InstanceId, state: InstanceState, raw_state: impl Into<String>) -> Self {
        InstanceInfo {
            id,
            name: None,
            state,
            raw_state: raw_state.into(),
            billing_stopped: matches!(
                state,
                InstanceState::Stopped | InstanceState::Suspended | InstanceState::Terminated
            ),
            machine_type: None,
            region: None,
            zone: None,
            launch_time: None,
            tags: BTreeMap::new(),
        }
    }
}

/// How to stop an instance; each mode costs differently.
///
/// Providers declare the modes they support in [`Capabilities::stop_modes`] and answer
/// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) for the others.
///
/// New modes can be added in a minor release, so the enum is `#[non_exhaustive]`: a `match`
/// outside this crate needs a wildcard arm (a mode you do not know is one to refuse).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum StopMode {
    /// Shut down; disks are kept. On Azure this is `powerOff`, which **keeps compute billing**;
    /// use [`Deallocate`](StopMode::Deallocate) there to stop paying for compute.
    Stop,
    /// Save memory to disk, then stop (EC2 hibernation, Azure hibernate-deallocate).
    Hibernate,
    /// Keep memory and suspend (GCE `suspend`); storage for the memory is billed.
    Suspend,
    /// Stop and release the hardware (Azure `deallocate`): compute billing ends.
    Deallocate,
}

impl StopMode {
    /// Every mode, in declaration order.
    pub const ALL: [StopMode; 4] = [
        StopMode::Stop,
        StopMode::Hibernate,
        StopMode::Suspend,
        StopMode::Deallocate,
    ];

    /// The stable `snake_case` name of this mode.
    pub const fn as_str(self) -> &'static str {
        match self {
            StopMode::Stop => "stop",
            StopMode::Hibernate => "hibernate",
            StopMode::Suspend => "suspend",
            StopMode::Deallocate => "deallocate",
        }
    }
}

impl fmt::Display for StopMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Options for stopping an instance.
///
/// The default — no mode — asks for the provider's own default, which always ends compute
/// billing (EC2 stop, GCE stop, Azure deallocate).
///
/// ```
/// use snoozebot_core::{StopMode, StopOptions};
///
/// let opts = StopOptions::default().with_mode(StopMode::Hibernate).with_dry_run(true);
/// assert_eq!(opts.mode, Some(StopMode::Hibernate));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StopOptions {
    /// The stop mode; `None` means the provider's default, which ends compute billing.
    pub mode: Option<StopMode>,
    /// Skip the graceful OS shutdown where the cloud allows it.
    pub force: bool,
    /// Check permissions and arguments without changing anything, where the cloud supports it
    /// ([`Capabilities::dry_run`]).
    pub dry_run: bool,
    /// When the asked-for mode cannot be applied to a particular instance (hibernating an EC2
    /// instance launched without hibernation), stop it the provider's default way instead of
    /// failing; [`StateChange::mode`] then says which mode was applied.
    pub allow_fallback: bool,
}

impl StopOptions {
    /// Sets the stop mode.
    pub fn with_mode(mut self, mode: StopMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Sets whether to skip the graceful shutdown.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Sets whether this is only a dry run.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Sets whether the provider's default mode may be applied where the asked-for one cannot.
    pub fn with_allow_fallback(mut self, allow_fallback: bool) -> Self {
        self.allow_fallback = allow_fallback;
        self
    }
}

/// What a stop or start did: the state before and right after the call.
///
/// `current` is often transitional (`stopping`, `pending`); wait for the final state with
/// [`CloudProviderExt::wait_for_state`](crate::CloudProviderExt::wait_for_state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateChange {
    /// The instance.
    pub id: InstanceId,
    /// The state before the call.
    pub previous: InstanceState,
    /// The state right after the call.
    pub current: InstanceState,
    /// The stop mode actually applied (which may differ from the one asked for, e.g. after a
    /// hibernate fallback); `None` for a start.
    pub mode: Option<StopMode>,
    /// The cloud's handle for the change it accepted and is carrying out (a GCE zone
    /// operation, an ARM `Azure-AsyncOperation` monitor), for
    /// [`CloudProvider::wait_for_operation`](crate::CloudProvider::wait_for_operation);
    /// `None` where the cloud has none or nothing was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

impl StateChange {
    /// A state change with no stop mode (a start).
    pub fn new(id: InstanceId, previous: InstanceState, current: InstanceState) -> Self {
        StateChange {
            id,
            previous,
            current,
            mode: None,
            operation: None,
        }
    }

    /// Keeps the cloud's handle for the change it accepted.
    pub fn with_operation(mut self, operation: impl Into<String>) -> Self {
        self.operation = Some(operation.into());
        self
    }

    /// Records the stop mode that was applied.
    pub fn with_mode(mut self, mode: StopMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Whether the call changed nothing because the instance was already there.
    pub fn is_noop(&self) -> bool {
        self.previous == self.current
    }
}

/// Which instances to list. Every condition must hold; an empty filter matches everything.
///
/// Providers push the filter down to the cloud API where they can and apply
/// [`InstanceFilter::matches`] to whatever the API could not filter.
///
/// ```
/// use snoozebot_core::{InstanceFilter, InstanceState};
///
/// let idle_running = InstanceFilter::new()
///     .with_tag("snoozebot", "idle")
///     .with_state(InstanceState::Running);
/// assert_eq!(idle_running.states, [InstanceState::Running]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct InstanceFilter {
    /// Tags (or labels) the instance must all carry with exactly these values.
    pub tags: BTreeMap<String, String>,
    /// States the instance may be in; empty means any.
    pub states: Vec<InstanceState>,
    /// A prefix the instance name must start with.
    pub name_prefix: Option<String>,
}

impl InstanceFilter {
    /// A filter that matches every instance.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also requires tag `key` with value `value`.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Also accepts instances in `state` (states are alternatives).
    pub fn with_state(mut self, state: InstanceState) -> Self {
        if !self.states.contains(&state) {
            self.states.push(state);
        }
        self
    }

    /// Requires the name to start with `prefix`.
    pub fn with_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = Some(prefix.into());
        self
    }

    /// Whether `instance` passes every condition of the filter.
    pub fn matches(&self, instance: &InstanceInfo) -> bool {
        let tags_match = self
            .tags
            .iter()
            .all(|(key, value)| instance.tags.get(key) == Some(value));
        let state_matches = self.states.is_empty() || self.states.contains(&instance.state);
        let name_matches = match &self.name_prefix {
            None => true,
            Some(prefix) => instance
                .name
                .as_deref()
                .is_some_and(|name| name.starts_with(prefix.as_str())),
        };
        tags_match && state_matches && name_matches
    }
}

/// What a provider can do, so callers can ask instead of guessing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capabilities {
    /// The stop modes the provider accepts; any other answers `Unsupported`.
    pub stop_modes: Vec<StopMode>,
    /// Whether [`StopOptions::dry_run`] is honoured (otherwise it answers `Unsupported`).
    pub dry_run: bool,
    /// Whether the provider stops and starts many instances in one API call.
    pub native_batch: bool,
}

impl Capabilities {
    /// Capabilities with the given stop modes, no dry run and no native batching.
    pub fn new(stop_modes: impl IntoIterator<Item = StopMode>) -> Self {
        Capabilities {
            stop_modes: stop_modes.into_iter().collect(),
            dry_run: false,
            native_batch: false,
        }
    }

    /// Sets whether dry runs are supported.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Sets whether batch calls are native.
    pub fn with_native_batch(mut self, native_batch: bool) -> Self {
        self.native_batch = native_batch;
        self
    }

    /// Whether `mode` is supported.
    pub fn supports(&self, mode: StopMode) -> bool {
        self.stop_modes.contains(&mode)
    }

    /// Checks `opts` against these capabilities: an unsupported mode or dry run is
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported), naming what is supported.
    pub fn check(&self, opts: &StopOptions) -> Result<()> {
        if let Some(mode) = opts.mode
            && !self.supports(mode)
        {
            let supported: Vec<_> = self.stop_modes.iter().map(|m| m.as_str()).collect();
            return Err(Error::unsupported(format!(
                "stop mode {mode} is not supported; supported modes: {}",
                supported.join(", ")
            )));
        }
        if opts.dry_run && !self.dry_run {
            return Err(Error::unsupported("dry runs are not supported"));
        }
        Ok(())
    }
}

/// Who a provider is and what it can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderInfo {
    /// The provider's name (`aws`, `gcp`, `azure`, `mock`).
    pub name: String,
    /// The provider implementation's version.
    pub version: String,
    /// The version of the cloud API it speaks (`2016-11-15`, `v1`, `2025-04-01`).
    pub api_version: String,
    /// What it supports.
    pub capabilities: Capabilities,
}

impl ProviderInfo {
    /// Describes a provider.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        api_version: impl Into<String>,
        capabilities: Capabilities,
    ) -> Self {
        ProviderInfo {
            name: name.into(),
            version: version.into(),
            api_version: api_version.into(),
            capabilities,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn instance_id_rejects_empty_whitespace_control_and_overlong() {
        for bad in [
            "",
            " ",
            "i-1 2",
            "i-12\n",
            "tab\there",
            "bell\u{7}",
            // Reads as "i-0abc…" while it is "i-0cba…" in a log or a terminal.
            "i-0\u{202E}cba",
            "i-\u{2066}0abc\u{2069}",
            "i-0abc\u{200B}",
            "\u{FEFF}i-0abc",
        ] {
            let err = InstanceId::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
        let longest = "a".repeat(InstanceId::MAX_LEN);
        assert!(InstanceId::new(longest.clone()).is_ok());
        let err = InstanceId::new(longest + "a").unwrap_err();
        let too_long = format!("{} bytes", InstanceId::MAX_LEN + 1);
        assert!(err.message().contains(&too_long), "{err}");
    }

    #[test]
    fn instance_id_accepts_the_clouds_formats() {
        for good in [
            "i-0123456789abcdef0",
            "us-central1-a/web-1",
            "my-project/us-central1-a/web-1",
            "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
            "rg/vm1",
            // Azure resource group names may hold letters beyond ASCII.
            "/subscriptions/0000/resourceGroups/équipe-données/providers/Microsoft.Compute/virtualMachines/vm1",
        ] {
            assert_eq!(InstanceId::new(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn deserializing_a_bad_id_fails_with_the_reason() {
        let err = serde_json::from_str::<InstanceId>("\"i-1 2\"").unwrap_err();
        assert!(err.to_string().contains("whitespace"), "{err}");
        let err = serde_json::from_str::<StateChange>(
            r#"{"id":"","previous":"running","current":"stopping","mode":null}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("instance id is empty"), "{err}");
    }

    #[test]
    fn json_shapes_are_stable() {
        let mut info = InstanceInfo::new(
            InstanceId::new("i-1").unwrap(),
            InstanceState::Stopped,
            "stopped",
        );
        info.tags.insert("env".into(), "dev".into());
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "i-1", "name": null, "state": "stopped", "raw_state": "stopped",
                "billing_stopped": true, "machine_type": null, "region": null, "zone": null,
                "launch_time": null, "tags": {"env": "dev"}
            })
        );
        let back: InstanceInfo = serde_json::from_value(json).unwrap();
        assert_eq!(back, info);

        let opts: StopOptions = serde_json::from_str(r#"{"mode":"deallocate"}"#).unwrap();
        assert_eq!(opts, StopOptions::default().with_mode(StopMode::Deallocate));
    }

    #[test]
    fn states_parse_from_their_names_only() {
        for state in InstanceState::ALL {
            assert_eq!(state.as_str().parse::<InstanceState>().unwrap(), state);
        }
        let err = "sleeping".parse::<InstanceState>().unwrap_err();
        assert!(err.message().contains("expected one of pending"), "{err}");
    }

    #[test]
    fn only_termination_is_final() {
        assert!(InstanceState::Stopped.can_reach(InstanceState::Running));
        assert!(!InstanceState::Terminated.can_reach(InstanceState::Running));
        assert!(!InstanceState::Terminating.can_reach(InstanceState::Stopped));
        assert!(InstanceState::Terminating.can_reach(InstanceState::Terminated));
    }

    #[test]
    fn filter_requires_every_condition() {
        let mut info = InstanceInfo::new(
            InstanceId::new("i-1").unwrap(),
            InstanceState::Running,
            "running",
        );
        info.name = Some("web-1".into());
        info.tags.insert("idle".into(), "true".into());

        assert!(InstanceFilter::new().matches(&info));
        assert!(
            InstanceFilter::new()
                .with_tag("idle", "true")
                .with_state(InstanceState::Running)
                .with_name_prefix("web")
                .matches(&info)
        );
        assert!(
            !InstanceFilter::new()
                .with_tag("idle", "false")
                .matches(&info)
        );
        assert!(
            !InstanceFilter::new()
                .with_state(InstanceState::Stopped)
                .matches(&info)
        );
        assert!(!InstanceFilter::new().with_name_prefix("db").matches(&info));
    }

    #[test]
    fn capabilities_refuse_unsupported_modes_and_dry_runs() {
        let caps = Capabilities::new([StopMode::Stop, StopMode::Hibernate]);
        assert!(caps.check(&StopOptions::default()).is_ok());
        let err = caps
            .check(&StopOptions::default().with_mode(StopMode::Suspend))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.message().contains("stop, hibernate"), "{err}");
        let err = caps
            .check(&StopOptions::default().with_dry_run(true))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }
}
