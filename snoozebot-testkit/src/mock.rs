//! [`MockProvider`]: an in-memory fleet with a real state machine, scripted faults and a call log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use snoozebot_core::{
    Capabilities, CloudProvider, Error, ErrorKind, InstanceFilter, InstanceId, InstanceInfo,
    InstancePage, InstanceState, PageRequest, ProviderInfo, Result, StateChange, StopMode,
    StopOptions,
};
use tokio::time::Instant;

/// The prefix every mock instance id carries; other ids are refused as malformed.
pub const MOCK_ID_PREFIX: &str = "mock-";

/// The last calls, and a count of every call by operation.
#[derive(Debug, Default)]
struct CallLog {
    kept: std::collections::VecDeque<MockCall>,
    counts: std::collections::HashMap<MockOperation, usize>,
}

/// A provider operation, for scripting faults and reading the call log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MockOperation {
    /// `get_instance`.
    Get,
    /// `list_instances`.
    List,
    /// `list_instances_page`: one page, read natively.
    ListPage,
    /// `stop_instance` (and each id of `stop_instances`).
    Stop,
    /// `start_instance` (and each id of `start_instances`).
    Start,
}

/// One call that reached the mock cloud, in the order calls arrived.
///
/// Calls refused before reaching the cloud (a malformed id, an unsupported mode) are not logged,
/// just as a real provider refuses them without an API call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MockCall {
    /// What was called.
    pub operation: MockOperation,
    /// The instance, for single-instance operations.
    pub instance_id: Option<InstanceId>,
    /// How it ended: `Ok` or the error kind.
    pub outcome: std::result::Result<(), ErrorKind>,
}

/// An instance to put in a mock fleet.
#[derive(Debug, Clone)]
pub struct MockInstance {
    info: InstanceInfo,
}

impl MockInstance {
    /// A running instance with id `id`, which must be a valid [`InstanceId`] starting with
    /// [`MOCK_ID_PREFIX`].
    ///
    /// # Panics
    ///
    /// If `id` is not a valid mock id: fixtures are written by hand, and a typo there should
    /// stop the test at once.
    pub fn new(id: &str) -> Self {
        let id = match InstanceId::new(id) {
            Ok(id) if id.as_str().starts_with(MOCK_ID_PREFIX) => id,
            _ => panic!("{id:?} is not a valid mock instance id (expected {MOCK_ID_PREFIX}...)"),
        };
        let mut info = InstanceInfo::new(id, InstanceState::Running, "running");
        info.machine_type = Some("mock.small".to_owned());
        info.region = Some("mock-region-1".to_owned());
        info.zone = Some("mock-region-1a".to_owned());
        MockInstance { info }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.info.name = Some(name.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.info.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the zone.
    pub fn zone(mut self, zone: impl Into<String>) -> Self {
        self.info.zone = Some(zone.into());
        self
    }

    /// Sets the machine type.
    pub fn machine_type(mut self, machine_type: impl Into<String>) -> Self {
        self.info.machine_type = Some(machine_type.into());
        self
    }

    /// Sets the initial state.
    pub fn state(mut self, state: InstanceState) -> Self {
        self.info.state = state;
        self
    }
}

/// Builds a [`MockProvider`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct MockProviderBuilder {
    name: String,
    capabilities: Capabilities,
    transition_time: Duration,
    instances: Vec<MockInstance>,
    record_calls: bool,
}

impl MockProviderBuilder {
    /// Whether to keep the call log (default `true`). It keeps the last
    /// [`MockProvider::CALLS_KEPT`] calls (and counts every call), so a long-running server on the
    /// mock fleet stays flat; benchmarks turn it off altogether.
    pub fn record_calls(mut self, record_calls: bool) -> Self {
        self.record_calls = record_calls;
        self
    }

    /// Names the provider (default `mock`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets what the provider supports (default: every stop mode, dry runs).
    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// How long (tokio time) instances stay in `stopping`, `suspending` and `pending` before
    /// they settle (default 0: stop and start complete at once).
    pub fn transition_time(mut self, transition_time: Duration) -> Self {
        self.transition_time = transition_time;
        self
    }

    /// Adds an instance.
    pub fn instance(mut self, instance: MockInstance) -> Self {
        self.instances.push(instance);
        self
    }

    /// Adds `count` running instances `mock-0000`, `mock-0001`, ... named `node-0000`, ...;
    /// every fourth one (0, 4, 8, ...) is tagged `snoozebot=idle`, the rest `snoozebot=busy`.
    pub fn fleet(mut self, count: usize) -> Self {
        let first = self.instances.len();
        for n in first..first + count {
            let idleness = if n % 4 == 0 { "idle" } else { "busy" };
            let zone = if n % 2 == 0 {
                "mock-region-1a"
            } else {
                "mock-region-1b"
            };
            self.instances.push(
                MockInstance::new(&format!("{MOCK_ID_PREFIX}{n:04}"))
                    .name(format!("node-{n:04}"))
                    .tag("snoozebot", idleness)
                    .zone(zone),
            );
        }
        self
    }

    /// Builds the provider.
    pub fn build(self) -> MockProvider {
        let instances = self
            .instances
            .into_iter()
            .map(|instance| {
                let mut state = MockState {
                    info: instance.info,
                    settles: None,
                    stop_mode: None,
                };
                state.set_state(state.info.state);
                (state.info.id.clone(), state)
            })
            .collect();
        MockProvider {
            fleet: Arc::new(Fleet {
                name: self.name,
                capabilities: self.capabilities,
                transition_time: self.transition_time,
                instances: Mutex::new(instances),
                faults: Mutex::new(VecDeque::new()),
                latency: Mutex::new(Duration::ZERO),
                calls: Mutex::new(CallLog::default()),
                record_calls: self.record_calls,
            }),
        }
    }
}

/// An in-memory fleet that behaves like a cloud: the provider the examples run on and the
/// reference the conformance suite is checked against.
///
/// - Stop moves `running` → `stopping` → `stopped` (or `suspending` → `suspended` for
///   [`StopMode::Suspend`]); start moves `stopped`/`suspended` → `pending` → `running`. The
///   transitions take [`MockProviderBuilder::transition_time`] of tokio time, so tests with
///   paused time see each step without sleeping.
/// - Stop and start are idempotent; `InvalidState` for a terminated instance, for starting one
///   that is still stopping and for stopping one that is still pending; `NotFound` for unknown ids;
///   `InvalidArgument` for ids without the [`MOCK_ID_PREFIX`].
/// - [`fail_next`](MockProvider::fail_next) scripts faults, [`set_latency`](MockProvider::set_latency)
///   slows every call, [`calls`](MockProvider::calls) tells what reached the fleet.
///
/// Clones share the fleet: keep one to script and inspect while another is in use.
///
/// ```
/// use snoozebot_core::{CloudProvider, ErrorKind, InstanceId, StopOptions};
/// use snoozebot_testkit::{MockOperation, MockProvider};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let fleet = MockProvider::builder().fleet(3).build();
/// fleet.fail_next(MockOperation::Stop, 1, ErrorKind::Throttled);
///
/// let id: InstanceId = "mock-0001".parse()?;
/// let err = fleet.stop_instance(&id, &StopOptions::default()).await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Throttled);
/// let change = fleet.stop_instance(&id, &StopOptions::default()).await?;
/// assert_eq!(change.current.as_str(), "stopped");
/// assert_eq!(fleet.calls().len(), 2);
/// # Ok::<(), snoozebot_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct MockProvider {
    fleet: Arc<Fleet>,
}

#[derive(Debug)]
struct Fleet {
    name: String,
    capabilities: Capabilities,
    transition_time: Duration,
    instances: Mutex<BTreeMap<InstanceId, MockState>>,
    faults: Mutex<VecDeque<Fault>>,
    latency: Mutex<Duration>,
    calls: Mutex<CallLog>,
    record_calls: bool,
}

#[derive(Debug)]
struct Fault {
    operation: MockOperation,
    remaining: usize,
    error: Error,
}

#[derive(Debug, Clone)]
struct MockState {
    info: InstanceInfo,
    /// A transition under way: the state it settles in, and when.
    settles: Option<(InstanceState, Instant)>,
    stop_mode: Option<StopMode>,
}

impl MockState {
    fn set_state(&mut self, state: InstanceState) {
        self.info.state = state;
        self.info.raw_state = state.as_str().to_owned();
        self.info.billing_stopped = matches!(
            state,
            InstanceState::Stopped | InstanceState::Suspended | InstanceState::Terminated
        );
    }

    fn settle(&mut self, now: Instant) {
        if let Some((target, due)) = self.settles
            && now >= due
        {
            self.settles = None;
            self.set_state(target);
        }
    }

    /// Moves toward `target` through `transitional`, at once when `transition_time` is zero.
    fn begin(
        &mut self,
        transitional: InstanceState,
        target: InstanceState,
        transition_time: Duration,
    ) {
        if transition_time.is_zero() {
            self.set_state(target);
        } else {
            self.set_state(transitional);
            self.settles = Some((target, Instant::now() + transition_time));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock has already failed; keep serving the others.
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl MockProvider {
    /// A builder for an empty fleet named `mock` supporting every stop mode and dry runs.
    pub fn builder() -> MockProviderBuilder {
        MockProviderBuilder {
            name: "mock".to_owned(),
            capabilities: Capabilities::new(StopMode::ALL).with_dry_run(true),
            transition_time: Duration::ZERO,
            instances: Vec::new(),
            record_calls: true,
        }
    }

    /// A fleet of `count` running instances; see [`MockProviderBuilder::fleet`].
    pub fn fleet(count: usize) -> Self {
        Self::builder().fleet(count).build()
    }

    /// Makes the next `times` calls of `operation` fail with `kind`.
    pub fn fail_next(&self, operation: MockOperation, times: usize, kind: ErrorKind) {
        let error = Error::new(kind, format!("injected {kind} fault"));
        self.fail_next_with(operation, times, error);
    }

    /// Makes the next `times` calls of `operation` fail with `error` (e.g. with a
    /// `retry_after`). Faults queue up in the order they were added.
    pub fn fail_next_with(&self, operation: MockOperation, times: usize, error: Error) {
        if times > 0 {
            lock(&self.fleet.faults).push_back(Fault {
                operation,
                remaining: times,
                error: error.with_provider(self.fleet.name.clone()),
            });
        }
    }

    /// Delays every call by `latency` (tokio time).
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.fleet.latency) = latency;
    }

    /// How many calls the log keeps: the latest this many.
    pub const CALLS_KEPT: usize = 10_000;

    /// The calls that reached the fleet, oldest first: all of them, or the last
    /// [`CALLS_KEPT`](Self::CALLS_KEPT).
    pub fn calls(&self) -> Vec<MockCall> {
        lock(&self.fleet.calls).kept.iter().cloned().collect()
    }

    /// How many calls of `operation` reached the fleet (every one, also those no longer kept).
    pub fn call_count(&self, operation: MockOperation) -> usize {
        lock(&self.fleet.calls)
            .counts
            .get(&operation)
            .copied()
            .unwrap_or(0)
    }

    /// Forgets the calls logged so far.
    pub fn clear_calls(&self) {
        let mut log = lock(&self.fleet.calls);
        log.kept.clear();
        log.counts.clear();
    }

    /// Adds an instance to the fleet (replacing one with the same id).
    pub fn add_instance(&self, instance: MockInstance) {
        let mut state = MockState {
            info: instance.info,
            settles: None,
            stop_mode: None,
        };
        state.set_state(state.info.state);
        lock(&self.fleet.instances).insert(state.info.id.clone(), state);
    }

    /// Forces an instance into `state` at once, e.g. to set up a terminated instance.
    /// Returns `false` if there is no such instance.
    pub fn set_state(&self, id: &InstanceId, state: InstanceState) -> bool {
        match lock(&self.fleet.instances).get_mut(id) {
            Some(instance) => {
                instance.settles = None;
                instance.set_state(state);
                true
            }
            None => false,
        }
    }

    fn validate(&self, id: &InstanceId) -> Result<()> {
        if id.as_str().starts_with(MOCK_ID_PREFIX) {
            Ok(())
        } else {
            Err(Error::invalid_argument(format!(
                "{id:?} is not a mock instance id (expected {MOCK_ID_PREFIX}...)"
            ))
            .with_provider(self.fleet.name.clone()))
        }
    }

    /// What every call does on reaching the fleet: wait out the latency, then take a fault if
    /// one is scripted.
    async fn arrive(&self, operation: MockOperation) -> Result<()> {
        let latency = *lock(&self.fleet.latency);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut faults = lock(&self.fleet.faults);
        let position = faults.iter().position(|fault| fault.operation == operation);
        let Some(position) = position else {
            return Ok(());
        };
        let error = faults[position].error.clone();
        faults[position].remaining -= 1;
        if faults[position].remaining == 0 {
            faults.remove(position);
        }
        Err(error)
    }

    fn log<T>(
        &self,
        operation: MockOperation,
        instance_id: Option<&InstanceId>,
        result: &Result<T>,
    ) {
        if !self.fleet.record_calls {
            return;
        }
        let mut log = lock(&self.fleet.calls);
        *log.counts.entry(operation).or_default() += 1;
        if log.kept.len() == MockProvider::CALLS_KEPT {
            log.kept.pop_front();
        }
        log.kept.push_back(MockCall {
            operation,
            instance_id: instance_id.cloned(),
            outcome: result.as_ref().map(|_| ()).map_err(Error::kind),
        });
    }

    fn not_found(&self, id: &InstanceId) -> Error {
        Error::not_found(format!("instance {id} does not exist"))
            .with_provider(self.fleet.name.clone())
    }

    fn invalid_state(&self, id: &InstanceId, state: InstanceState, operation: &str) -> Error {
        Error::invalid_state(format!("cannot {operation} instance {id}: it is {state}"))
            .with_provider(self.fleet.name.clone())
    }

    async fn call<T>(
        &self,
        operation: MockOperation,
        id: Option<&InstanceId>,
        body: impl FnOnce(&mut BTreeMap<InstanceId, MockState>) -> Result<T>,
    ) -> Result<T> {
        let result = match self.arrive(operation).await {
            Ok(()) => {
                let mut instances = lock(&self.fleet.instances);
                let now = Instant::now();
                instances
                    .values_mut()
                    .for_each(|instance| instance.settle(now));
                body(&mut instances)
            }
            Err(error) => Err(error),
        };
        self.log(operation, id, &result);
        result
    }

    fn stop_one(&self, state: &mut MockState, opts: &StopOptions) -> Result<StateChange> {
        let id = state.info.id.clone();
        let mode = opts.mode.unwrap_or(StopMode::Stop);
        let previous = state.info.state;
        let (transitional, target) = match mode {
            StopMode::Suspend => (InstanceState::Suspending, InstanceState::Suspended),
            _ => (InstanceState::Stopping, InstanceState::Stopped),
        };
        match previous {
            InstanceState::Running => {
                if !opts.dry_run {
                    state.begin(transitional, target, self.fleet.transition_time);
                    state.stop_mode = Some(mode);
                }
                Ok(StateChange::new(id, previous, state.info.state).with_mode(mode))
            }
            InstanceState::Stopping
            | InstanceState::Stopped
            | InstanceState::Suspending
            | InstanceState::Suspended => {
                let applied = state.stop_mode.unwrap_or(mode);
                Ok(StateChange::new(id, previous, previous).with_mode(applied))
            }
            other => Err(self.invalid_state(&id, other, "stop")),
        }
    }

    fn start_one(&self, state: &mut MockState) -> Result<StateChange> {
        let id = state.info.id.clone();
        let previous = state.info.state;
        match previous {
            InstanceState::Stopped | InstanceState::Suspended => {
                state.begin(
                    InstanceState::Pending,
                    InstanceState::Running,
                    self.fleet.transition_time,
                );
                state.stop_mode = None;
                state.info.launch_time = Some(DateTime::<Utc>::from(SystemTime::now()));
                Ok(StateChange::new(id, previous, state.info.state))
            }
            InstanceState::Pending | InstanceState::Running => {
                Ok(StateChange::new(id, previous, previous))
            }
            other => Err(self.invalid_state(&id, other, "start")),
        }
    }
}

#[async_trait]
impl CloudProvider for MockProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new(
            self.fleet.name.clone(),
            env!("CARGO_PKG_VERSION"),
            "mock-1",
            self.fleet.capabilities.clone(),
        )
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> {
        self.validate(id)?;
        self.call(MockOperation::Get, Some(id), |instances| {
            instances
                .get(id)
                .map(|instance| instance.info.clone())
                .ok_or_else(|| self.not_found(id))
        })
        .await
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>> {
        self.call(MockOperation::List, None, |instances| {
            Ok(instances
                .values()
                .filter(|instance| filter.matches(&instance.info))
                .map(|instance| instance.info.clone())
                .collect())
        })
        .await
    }

    /// Pages natively, by id, as a cloud with page tokens does: one call per page.
    async fn list_instances_page(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<InstancePage> {
        let after = page
            .token
            .as_deref()
            .map(|token| {
                InstanceId::new(token).map_err(|_| {
                    Error::invalid_argument("the page token is not one this provider gave")
                        .with_provider(self.fleet.name.clone())
                })
            })
            .transpose()?;
        self.call(MockOperation::ListPage, None, |instances| {
            let size = page.size.max(1);
            let mut matching = instances
                .iter()
                .filter(|(id, _)| after.as_ref().is_none_or(|after| *id > after))
                .filter(|(_, instance)| filter.matches(&instance.info))
                .map(|(_, instance)| instance.info.clone());
            let found: Vec<_> = matching.by_ref().take(size).collect();
            let next = match (found.last(), matching.next()) {
                (Some(last), Some(_)) => Some(last.id.to_string()),
                _ => None,
            };
            Ok(InstancePage::new(found, next))
        })
        .await
    }

    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange> {
        self.validate(id)?;
        self.fleet
            .capabilities
            .check(opts)
            .map_err(|error| error.with_provider(self.fleet.name.clone()))?;
        self.call(MockOperation::Stop, Some(id), |instances| {
            let state = instances.get_mut(id).ok_or_else(|| self.not_found(id))?;
            self.stop_one(state, opts)
        })
        .await
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> {
        self.validate(id)?;
        self.call(MockOperation::Start, Some(id), |instances| {
            let state = instances.get_mut(id).ok_or_else(|| self.not_found(id))?;
            self.start_one(state)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snoozebot_core::CloudProviderExt;

    fn id(s: &str) -> InstanceId {
        InstanceId::new(s).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_take_their_time_and_settle() {
        let fleet = MockProvider::builder()
            .fleet(1)
            .transition_time(Duration::from_secs(30))
            .build();
        let one = id("mock-0000");
        let change = fleet
            .stop_instance(&one, &StopOptions::default())
            .await
            .unwrap();
        assert_eq!(
            (change.previous, change.current, change.mode),
            (
                InstanceState::Running,
                InstanceState::Stopping,
                Some(StopMode::Stop)
            )
        );
        let err = fleet.start_instance(&one).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidState);

        tokio::time::advance(Duration::from_secs(30)).await;
        let info = fleet.get_instance(&one).await.unwrap();
        assert_eq!(info.state, InstanceState::Stopped);
        assert!(info.billing_stopped);

        let change = fleet.start_instance(&one).await.unwrap();
        assert_eq!(change.current, InstanceState::Pending);
        let err = fleet
            .stop_instance(&one, &StopOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidState);
        let info = fleet
            .wait_for_state(&one, InstanceState::Running, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(info.launch_time.is_some());
    }

    #[tokio::test]
    async fn suspend_and_resume() {
        let fleet = MockProvider::fleet(1);
        let one = id("mock-0000");
        let opts = StopOptions::default().with_mode(StopMode::Suspend);
        let change = fleet.stop_instance(&one, &opts).await.unwrap();
        assert_eq!(change.current, InstanceState::Suspended);
        let again = fleet.stop_instance(&one, &opts).await.unwrap();
        assert!(again.is_noop());
        assert_eq!(again.mode, Some(StopMode::Suspend));
        let change = fleet.start_instance(&one).await.unwrap();
        assert_eq!(change.previous, InstanceState::Suspended);
        assert_eq!(change.current, InstanceState::Running);
    }

    #[tokio::test]
    async fn terminated_instances_refuse_everything_but_get() {
        let fleet = MockProvider::fleet(1);
        let one = id("mock-0000");
        assert!(fleet.set_state(&one, InstanceState::Terminated));
        for result in [
            fleet.start_instance(&one).await,
            fleet.stop_instance(&one, &StopOptions::default()).await,
        ] {
            assert_eq!(result.unwrap_err().kind(), ErrorKind::InvalidState);
        }
        let err = fleet
            .wait_for_state(&one, InstanceState::Running, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidState);
        assert!(err.message().contains("terminated"), "{err}");
    }

    #[tokio::test]
    async fn faults_are_taken_in_order_and_logged() {
        let fleet = MockProvider::fleet(2);
        fleet.fail_next(MockOperation::Get, 2, ErrorKind::Unavailable);
        fleet.fail_next_with(
            MockOperation::Get,
            1,
            Error::new(ErrorKind::Throttled, "slow down").with_retry_after(Duration::from_secs(3)),
        );
        let one = id("mock-0001");
        let kinds: Vec<_> = [
            fleet.get_instance(&one).await,
            fleet.get_instance(&one).await,
            fleet.get_instance(&one).await,
            fleet.get_instance(&one).await,
        ]
        .into_iter()
        .map(|result| result.map(|_| ()).map_err(|error| error.kind()))
        .collect();
        assert_eq!(
            kinds,
            [
                Err(ErrorKind::Unavailable),
                Err(ErrorKind::Unavailable),
                Err(ErrorKind::Throttled),
                Ok(())
            ]
        );
        let outcomes: Vec<_> = fleet.calls().into_iter().map(|call| call.outcome).collect();
        assert_eq!(outcomes, kinds);
    }

    #[tokio::test]
    async fn malformed_ids_and_unsupported_modes_never_reach_the_fleet() {
        let fleet = MockProvider::builder()
            .fleet(1)
            .capabilities(Capabilities::new([StopMode::Stop]))
            .build();
        let err = fleet.get_instance(&id("i-0123")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let err = fleet
            .stop_instance(
                &id("mock-0000"),
                &StopOptions::default().with_mode(StopMode::Hibernate),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(fleet.calls().is_empty());
    }

    #[tokio::test]
    async fn the_call_log_keeps_the_latest_calls_and_counts_them_all() {
        let fleet = MockProvider::fleet(1);
        let id = InstanceId::new("mock-0000").unwrap();
        for _ in 0..MockProvider::CALLS_KEPT + 5 {
            fleet.get_instance(&id).await.unwrap();
        }
        assert_eq!(fleet.calls().len(), MockProvider::CALLS_KEPT);
        assert_eq!(
            fleet.call_count(MockOperation::Get),
            MockProvider::CALLS_KEPT + 5
        );
    }

    #[test]
    #[should_panic(expected = "not a valid mock instance id")]
    fn a_fixture_typo_panics_at_once() {
        let _ = MockInstance::new("web 1");
    }
}
