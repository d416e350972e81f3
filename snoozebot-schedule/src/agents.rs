//! The server's side of reporting agents: registrations and heartbeats kept in the store, idle
//! reports decided by a policy that respects schedules, stops after a warning period, agents
//! marked lost when their heartbeats stop — every decision in the audit trail.
//!
//! Each change is a compare-and-swap on the agent's record ([`Store::swap_agent`]), so replicas
//! sharing a store, and a sweep racing a report, never undo each other's decisions: a stop is
//! claimed by one writer before the provider is called, and a report that comes after the claim
//! sees it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use snoozebot_core::{InstanceId, InstanceState, PluginManager, StopOptions};

use crate::Desired;
use crate::service::Clock;
use crate::store::{AuditEvent, RunRecord, Store, StoreError};
use crate::{Notifier, Schedules, Selection};

/// Attempts of one read-decide-swap before giving up on a record that keeps changing.
const SWAP_ATTEMPTS: usize = 8;

/// A machine kept idle (on-hours, its state) is judged again by a sweep at most this often:
/// judging asks its provider, and a fleet of kept machines must not become a flood of calls.
const REVISIT: Duration = Duration::from_secs(60);

/// The trail's `schedule` column for decisions about idleness.
const IDLE: &str = "idle";

/// What the server last decided about an agent's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// Busy, or not yet reported idle.
    Active,
    /// Idle, but kept running (see the record's note: a schedule's on-hours, a postpone, the
    /// instance's state).
    Idle,
    /// Idle: stopped at the record's `stop_at` unless it is used or postponed before.
    Stopping,
    /// Stopped (or being stopped) by the server; a new registration makes it active again.
    Stopped,
    /// No heartbeat for longer than the policy allows; nothing is decided until it reports.
    Lost,
}

impl AgentState {
    /// `active`, `idle`, `stopping`, `stopped`, `lost`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AgentState::Active => "active",
            AgentState::Idle => "idle",
            AgentState::Stopping => "stopping",
            AgentState::Stopped => "stopped",
            AgentState::Lost => "lost",
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AgentState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        [
            AgentState::Active,
            AgentState::Idle,
            AgentState::Stopping,
            AgentState::Stopped,
            AgentState::Lost,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| format!("unknown agent state {text:?}"))
    }
}

/// What the store keeps of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The provider its instance belongs to (a provider of the server).
    pub provider: String,
    /// The instance it runs on.
    pub instance: String,
    /// The machine's host name, as it said.
    pub hostname: String,
    /// The agent's version, as it said.
    pub version: String,
    /// When it last registered.
    pub registered_at: Timestamp,
    /// When it was last heard from.
    pub last_seen: Timestamp,
    /// What the server decided.
    pub state: AgentState,
    /// Since when it has been idle, as the agent counts.
    pub idle_since: Option<Timestamp>,
    /// When it is stopped, while [`Stopping`](AgentState::Stopping).
    pub stop_at: Option<Timestamp>,
    /// Until when its users postponed stopping.
    pub postponed_until: Option<Timestamp>,
    /// Why it is in its state, in words.
    pub note: String,
    /// The store's revision of this record (0: not stored).
    pub revision: i64,
}

/// What an agent says when it registers.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// Its host name.
    pub hostname: String,
    /// Its version.
    pub version: String,
}

/// What an agent says on each heartbeat and change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// `Some(how long)` when idle for its nap time; `None` when busy.
    pub idle_for: Option<Duration>,
    /// What keeps it busy (`cpu`, `network`, `probe build`, …), when busy.
    pub busy: Vec<String>,
    /// Until when its users postponed stopping.
    pub postponed_until: Option<Timestamp>,
}

/// How the server decides about idle machines.
#[derive(Debug, Clone)]
pub struct AgentPolicy {
    /// How often agents are asked to send a heartbeat (default 30 s).
    pub heartbeat: Duration,
    /// An agent unheard for this long is lost (default three heartbeats).
    pub lost_after: Duration,
    /// Between deciding to stop an idle machine and stopping it: the agent warns its users,
    /// the webhook hears of it, and activity or a postpone cancels it (default 5 minutes).
    pub warning: Duration,
    /// Whether an idle machine may be stopped during its schedule's on-hours (default `false`:
    /// a scheduled machine is kept running through its hours, idle or not).
    pub stop_in_on_hours: bool,
    /// How the stop is made.
    pub stop: StopOptions,
}

impl Default for AgentPolicy {
    fn default() -> Self {
        AgentPolicy {
            heartbeat: Duration::from_secs(30),
            lost_after: Duration::from_secs(90),
            warning: Duration::from_secs(5 * 60),
            stop_in_on_hours: false,
            stop: StopOptions::default(),
        }
    }
}

/// What agent calls fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The provider is not one of this server's.
    #[error("this server has no provider {0:?}")]
    UnknownProvider(String),
    /// No agent registered for this instance (the agent registers again).
    #[error("no agent is registered for {provider}/{instance}")]
    NotRegistered {
        /// The provider.
        provider: String,
        /// The instance.
        instance: String,
    },
    /// The instance id does not read.
    #[error("instance id {0:?}: {1}")]
    BadInstance(String, String),
    /// The provider failed (the instance does not exist, the cloud is down, …).
    #[error(transparent)]
    Provider(#[from] snoozebot_core::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The record changed under every attempt to decide.
    #[error("{0}: the record kept changing; try again")]
    Contended(String),
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Agents newly marked lost.
    pub lost: Vec<(String, String)>,
    /// Instances whose stop was decided.
    pub stopping: Vec<(String, String)>,
    /// Instances stopped (the provider's call succeeded).
    pub stopped: Vec<(String, String)>,
    /// Instances whose stop failed (tried again after a while).
    pub failed: Vec<(String, String)>,
}

/// A record to write and the events to record with it.
type Decided = (AgentRecord, Vec<AuditEvent>);

/// What a [`change`](Agents::change) left: the record as stored, the events recorded, and
/// whether this change wrote it.
struct Changed {
    record: AgentRecord,
    events: Vec<AuditEvent>,
    written: bool,
}

/// The server's registry of agents and its policy.
pub struct Agents {
    store: Arc<dyn Store>,
    manager: Arc<PluginManager>,
    providers: Vec<String>,
    schedules: Option<Arc<Schedules>>,
    policy: AgentPolicy,
    clock: Clock,
    notifier: Option<Arc<dyn Notifier>>,
    run: String,
    /// When this replica last judged each kept machine.
    judged: std::sync::Mutex<std::collections::HashMap<(String, String), Timestamp>>,
}

impl fmt::Debug for Agents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agents")
            .field("providers", &self.providers)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn key(record: &AgentRecord) -> (String, String) {
    (record.provider.clone(), record.instance.clone())
}

fn after(at: Timestamp, duration: Duration) -> Timestamp {
    SignedDuration::try_from(duration)
        .ok()
        .and_then(|duration| at.checked_add(duration).ok())
        .unwrap_or(Timestamp::MAX)
}

impl Agents {
    /// Agents of `providers` (of `manager`), kept in `store`, decided by `policy`.
    pub fn new(
        store: Arc<dyn Store>,
        manager: Arc<PluginManager>,
        providers: Vec<String>,
        policy: AgentPolicy,
    ) -> Self {
        Agents {
            store,
            manager,
            providers,
            schedules: None,
            policy,
            clock: Arc::new(Timestamp::now),
            notifier: None,
            run: "agents".to_owned(),
            judged: std::sync::Mutex::default(),
        }
    }

    /// Keeps machines running in their schedule's on-hours, as `schedules` select them (unless
    /// the policy allows stopping then).
    pub fn with_schedules(mut self, schedules: Arc<Schedules>) -> Self {
        self.schedules = Some(schedules);
        self
    }

    /// Tells `notifier` (a webhook) of each stop decided and made.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Reads the time from `clock` (tests on paused time).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Names this replica in the trail's run ids (`agents-HOLDER`).
    pub fn with_holder(mut self, holder: &str) -> Self {
        self.run = format!("agents-{holder}");
        self
    }

    /// The policy.
    pub fn policy(&self) -> &AgentPolicy {
        &self.policy
    }

    /// Every registered agent.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>, AgentError> {
        Ok(self.store.agents().await?)
    }

    /// The latest `limit` events of the trail (the agents' decisions and any schedule runs').
    pub async fn history(&self, limit: usize) -> Result<Vec<AuditEvent>, AgentError> {
        Ok(self.store.history(limit).await?)
    }

    /// The agent of `provider`'s `instance`.
    pub async fn agent(
        &self,
        provider: &str,
        instance: &str,
    ) -> Result<Option<AgentRecord>, AgentError> {
        Ok(self.store.agent(provider, instance).await?)
    }

    fn event(&self, record: &AgentRecord, action: &str, reason: String) -> AuditEvent {
        AuditEvent {
            at: (self.clock)(),
            run: self.run.clone(),
            provider: record.provider.clone(),
            instance: record.instance.clone(),
            schedule: IDLE.to_owned(),
            action: action.to_owned(),
            reason,
            outcome: "ok".to_owned(),
            error: None,
        }
    }

    fn notify(&self, events: &[AuditEvent]) {
        if let (Some(notifier), false) = (&self.notifier, events.is_empty()) {
            notifier.notify(&RunRecord {
                id: self.run.clone(),
                events: events.to_vec(),
                remember: Vec::new(),
            });
        }
    }

    fn check_provider(&self, provider: &str) -> Result<(), AgentError> {
        if self.providers.iter().any(|known| known == provider) {
            Ok(())
        } else {
            Err(AgentError::UnknownProvider(provider.to_owned()))
        }
    }

    fn instance_id(instance: &str) -> Result<InstanceId, AgentError> {
        InstanceId::new(instance.to_owned())
            .map_err(|error| AgentError::BadInstance(instance.to_owned(), error.message().into()))
    }

    /// Reads, decides with `decide` and swaps until the swap holds; `decide` returns the
    /// record to write and the events to record with it, or `None` to write nothing. What a
    /// decision needs from a provider is asked before: `decide` itself does not wait.
    async fn change(
        &self,
        provider: &str,
        instance: &str,
        mut decide: impl FnMut(Option<AgentRecord>) -> Result<Option<Decided>, AgentError> + Send,
    ) -> Result<Changed, AgentError> {
        for _ in 0..SWAP_ATTEMPTS {
            let stored = self.store.agent(provider, instance).await?;
            let unchanged = stored.clone();
            match decide(stored)? {
                None => {
                    let record = unchanged.ok_or_else(|| AgentError::NotRegistered {
                        provider: provider.to_owned(),
                        instance: instance.to_owned(),
                    })?;
                    return Ok(Changed {
                        record,
                        events: Vec::new(),
                        written: false,
                    });
                }
                Some((record, events)) => {
                    if self.store.swap_agent(&record, &events).await? {
                        let mut record = record;
                        record.revision += 1;
                        return Ok(Changed {
                            record,
                            events,
                            written: true,
                        });
                    }
                }
            }
        }
        Err(AgentError::Contended(format!("{provider}/{instance}")))
    }

    /// An agent registers (again): its instance must exist at the provider; it is active.
    pub async fn register(
        &self,
        provider: &str,
        instance: &str,
        registration: Registration,
    ) -> Result<AgentRecord, AgentError> {
        self.check_provider(provider)?;
        let id = Self::instance_id(instance)?;
        self.manager.load(provider).await?.get_instance(&id).await?;
        let now = (self.clock)();
        let Changed { record, .. } = self
            .change(provider, instance, |stored| {
                let record = AgentRecord {
                    provider: provider.to_owned(),
                    instance: instance.to_owned(),
                    hostname: registration.hostname.clone(),
                    version: registration.version.clone(),
                    registered_at: now,
                    last_seen: now,
                    state: AgentState::Active,
                    idle_since: None,
                    stop_at: None,
                    postponed_until: None,
                    note: "registered".to_owned(),
                    revision: stored.map_or(0, |stored| stored.revision),
                };
                let reason = format!(
                    "agent {} on {} registered",
                    registration.version, registration.hostname
                );
                let event = self.event(&record, "register", reason);
                Ok(Some((record, vec![event])))
            })
            .await?;
        Ok(record)
    }

    /// A heartbeat, or a change an agent reports: decides what follows.
    ///
    /// Busy: active (a pending stop is cancelled). Idle: stopped after the warning period if
    /// the policy allows; kept (with the reason in the note) if a postpone, the schedule's
    /// on-hours or the instance's state say no. Stopped: nothing changes (the stop is under
    /// way or done).
    pub async fn report(
        &self,
        provider: &str,
        instance: &str,
        report: Report,
    ) -> Result<AgentRecord, AgentError> {
        self.check_provider(provider)?;
        let now = (self.clock)();
        // A machine turning idle is judged before the swap (the judgement asks the provider);
        // one already kept idle is judged again by the sweep.
        let verdict = match self.store.agent(provider, instance).await? {
            Some(stored)
                if report.idle_for.is_some()
                    && matches!(stored.state, AgentState::Active | AgentState::Lost) =>
            {
                let mut judged = stored;
                judged.postponed_until = report.postponed_until;
                Some(self.may_stop(&judged, now).await)
            }
            _ => None,
        };
        let Changed { record, events, .. } = self
            .change(provider, instance, |stored| {
                let Some(mut record) = stored else {
                    return Err(AgentError::NotRegistered {
                        provider: provider.to_owned(),
                        instance: instance.to_owned(),
                    });
                };
                let before = record.clone();
                record.last_seen = now;
                record.postponed_until = report.postponed_until;
                let mut events = Vec::new();
                if record.state == AgentState::Lost {
                    events.push(self.event(&record, "found", "heard from again".to_owned()));
                    record.state = AgentState::Active;
                    record.note = "heard from again".to_owned();
                }
                match (record.state, report.idle_for) {
                    (AgentState::Stopped, _) => {}
                    (_, None) => {
                        if record.state == AgentState::Stopping {
                            let busy = if report.busy.is_empty() {
                                "busy".to_owned()
                            } else {
                                report.busy.join(", ")
                            };
                            events.push(self.event(
                                &record,
                                "cancel",
                                format!("active again ({busy})"),
                            ));
                        }
                        if record.state != AgentState::Active {
                            record.note = "active".to_owned();
                        }
                        record.state = AgentState::Active;
                        record.idle_since = None;
                        record.stop_at = None;
                    }
                    (state, Some(idle_for)) => {
                        record.idle_since = record.idle_since.or_else(|| {
                            SignedDuration::try_from(idle_for)
                                .ok()
                                .and_then(|idle| now.checked_sub(idle).ok())
                        });
                        let verdict = match state {
                            // Only a postpone cancels a pending stop; a kept machine waits
                            // for the sweep.
                            AgentState::Stopping | AgentState::Idle => {
                                Self::postponed(&record, now).map_or(Ok(()), Err)
                            }
                            _ => verdict.clone().unwrap_or_else(|| {
                                Err("turned idle while deciding; the next sweep decides".to_owned())
                            }),
                        };
                        if state != AgentState::Idle || verdict.is_err() {
                            self.decide_idle(&mut record, state, now, verdict, &mut events);
                        }
                    }
                }
                if record == before {
                    return Ok(None);
                }
                Ok(Some((record, events)))
            })
            .await?;
        self.notify(&pending_stops(&events));
        Ok(record)
    }

    /// Decides about a machine idle now: stop after the warning, keep (and why), or leave a
    /// pending stop as it is unless a postpone reaches past it.
    fn decide_idle(
        &self,
        record: &mut AgentRecord,
        state: AgentState,
        now: Timestamp,
        verdict: Result<(), String>,
        events: &mut Vec<AuditEvent>,
    ) {
        match (state, verdict) {
            (AgentState::Stopping, Ok(())) => {}
            (AgentState::Stopping, Err(keep)) => {
                events.push(self.event(record, "cancel", keep.clone()));
                record.state = AgentState::Idle;
                record.stop_at = None;
                record.note = keep;
            }
            (_, Ok(())) => {
                let at = after(now, self.policy.warning);
                let reason = format!("idle since {}", record.idle_since.unwrap_or(now));
                events.push(self.event(record, "stop pending", format!("{reason}; stop at {at}")));
                record.state = AgentState::Stopping;
                record.stop_at = Some(at);
                record.note = reason;
            }
            (_, Err(keep)) => {
                if record.state != AgentState::Idle || record.note != keep {
                    events.push(self.event(record, "keep", keep.clone()));
                }
                record.state = AgentState::Idle;
                record.stop_at = None;
                record.note = keep;
            }
        }
    }

    /// Why `record`'s machine is not to be stopped yet, if its users postponed it.
    fn postponed(record: &AgentRecord, now: Timestamp) -> Option<String> {
        record
            .postponed_until
            .filter(|until| *until > now)
            .map(|until| format!("postponed until {until}"))
    }

    /// Whether the policy lets `record`'s machine be stopped now; why not, in words.
    async fn may_stop(&self, record: &AgentRecord, now: Timestamp) -> Result<(), String> {
        if let Some(postponed) = Self::postponed(record, now) {
            return Err(postponed);
        }
        let id = Self::instance_id(&record.instance).map_err(|error| error.to_string())?;
        let info = match self.manager.load(&record.provider).await {
            Ok(provider) => provider.get_instance(&id).await,
            Err(error) => Err(error),
        }
        .map_err(|error| format!("cannot look at the instance: {error}"))?;
        if info.state != InstanceState::Running {
            return Err(format!("the instance is {}", info.state));
        }
        if let (Some(schedules), false) = (&self.schedules, self.policy.stop_in_on_hours)
            && let Selection::Scheduled(schedule, _) = schedules.select(&info)
            && schedule.desired_at(now).desired == Desired::Running
        {
            return Err(format!("in the on-hours of schedule {}", schedule.name()));
        }
        Ok(())
    }

    /// One look at every agent: lost ones marked, kept idle machines judged again (a postpone
    /// or on-hours may have ended; each at most once a minute, a postpone not before its end),
    /// due stops made.
    pub async fn sweep(&self) -> Result<Sweep, AgentError> {
        let mut sweep = Sweep::default();
        let records = self.store.agents().await?;
        let kept: std::collections::HashSet<(String, String)> = records
            .iter()
            .filter(|record| record.state == AgentState::Idle)
            .map(key)
            .collect();
        self.judged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|machine, _| kept.contains(machine));
        for record in records {
            let now = (self.clock)();
            let heard = after(record.last_seen, self.policy.lost_after);
            match record.state {
                AgentState::Stopped | AgentState::Lost => {}
                _ if heard < now => {
                    if self.mark_lost(&record, now).await? {
                        sweep.lost.push(key(&record));
                    }
                }
                AgentState::Idle => {
                    if Self::postponed(&record, now).is_some()
                        || !self.due_for_judgement(&record, now)
                    {
                        continue;
                    }
                    let verdict = self.may_stop(&record, now).await;
                    let Changed {
                        record: changed,
                        events,
                        ..
                    } = self
                        .change(&record.provider, &record.instance, |stored| {
                            let Some(mut stored) = stored.filter(|stored| {
                                stored.revision == record.revision
                                    && stored.state == AgentState::Idle
                            }) else {
                                return Ok(None);
                            };
                            let before = stored.clone();
                            let mut events = Vec::new();
                            self.decide_idle(
                                &mut stored,
                                AgentState::Idle,
                                now,
                                verdict.clone(),
                                &mut events,
                            );
                            Ok((stored != before).then_some((stored, events)))
                        })
                        .await?;
                    if changed.state == AgentState::Stopping && !events.is_empty() {
                        sweep.stopping.push(key(&record));
                        self.notify(&events);
                    }
                }
                AgentState::Stopping if record.stop_at.is_some_and(|at| at <= now) => {
                    match self.stop(&record, now).await? {
                        Some(true) => sweep.stopped.push(key(&record)),
                        Some(false) => sweep.failed.push(key(&record)),
                        None => {}
                    }
                }
                AgentState::Active | AgentState::Stopping => {}
            }
        }
        Ok(sweep)
    }

    /// Whether a kept machine's last judgement here is older than [`REVISIT`] (and notes this
    /// one). Machines no longer kept are forgotten.
    fn due_for_judgement(&self, record: &AgentRecord, now: Timestamp) -> bool {
        let mut judged = self
            .judged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = judged
            .get(&key(record))
            .is_none_or(|at| after(*at, REVISIT) <= now);
        if due {
            judged.insert(key(record), now);
        }
        due
    }

    async fn mark_lost(&self, record: &AgentRecord, now: Timestamp) -> Result<bool, AgentError> {
        let lost_after = self.policy.lost_after;
        let Changed { written, .. } = self
            .change(&record.provider, &record.instance, |stored| {
                let Some(mut stored) = stored.filter(|stored| {
                    !matches!(stored.state, AgentState::Stopped | AgentState::Lost)
                        && after(stored.last_seen, lost_after) < now
                }) else {
                    return Ok(None);
                };
                let reason = format!(
                    "no heartbeat since {} (more than {}s)",
                    stored.last_seen,
                    lost_after.as_secs()
                );
                let mut events = Vec::new();
                if stored.state == AgentState::Stopping {
                    events.push(self.event(&stored, "cancel", "the agent is lost".to_owned()));
                }
                events.push(self.event(&stored, "lost", reason.clone()));
                stored.state = AgentState::Lost;
                stored.stop_at = None;
                stored.note = reason;
                Ok(Some((stored, events)))
            })
            .await?;
        Ok(written)
    }

    /// Claims a due stop, makes it, records it: `None` when another writer changed the record
    /// first (the stop is not this sweep's), `Some(ok)` otherwise.
    async fn stop(&self, record: &AgentRecord, now: Timestamp) -> Result<Option<bool>, AgentError> {
        // The policy once more: a postpone or on-hours may have begun since the decision.
        let verdict = self.may_stop(record, now).await;
        let Changed {
            record: claimed,
            written,
            ..
        } = self
            .change(&record.provider, &record.instance, |stored| {
                let Some(mut stored) = stored.filter(|stored| {
                    stored.revision == record.revision && stored.state == AgentState::Stopping
                }) else {
                    return Ok(None);
                };
                match &verdict {
                    Ok(()) => {
                        stored.state = AgentState::Stopped;
                        stored.note = "stopping".to_owned();
                        Ok(Some((stored, Vec::new())))
                    }
                    Err(keep) => {
                        let event = self.event(&stored, "cancel", keep.clone());
                        stored.state = AgentState::Idle;
                        stored.stop_at = None;
                        stored.note = keep.clone();
                        Ok(Some((stored, vec![event])))
                    }
                }
            })
            .await?;
        if !written || claimed.state != AgentState::Stopped {
            return Ok(None);
        }
        let id = Self::instance_id(&record.instance)?;
        let outcome = match self.manager.load(&record.provider).await {
            Ok(provider) => provider.stop_instance(&id, &self.policy.stop).await,
            Err(error) => Err(error),
        };
        let reason = format!(
            "idle since {}",
            claimed
                .idle_since
                .map_or_else(|| "?".to_owned(), |at| at.to_string())
        );
        let mut event = self.event(&claimed, "stop", reason);
        let retry = self
            .policy
            .warning
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let ok = match &outcome {
            Ok(change) => {
                tracing::info!(provider = %record.provider, instance = %record.instance, from = %change.previous, to = %change.current, "stopped an idle instance");
                true
            }
            Err(error) => {
                tracing::warn!(provider = %record.provider, instance = %record.instance, %error, "cannot stop an idle instance; trying again");
                event.outcome = "failed".to_owned();
                event.error = Some(error.to_string());
                false
            }
        };
        let noted = self
            .change(&record.provider, &record.instance, |stored| {
                let Some(mut stored) = stored else {
                    return Ok(None);
                };
                if ok && stored.state == AgentState::Stopped {
                    stored.note = "stopped".to_owned();
                } else if !ok && stored.state == AgentState::Stopped {
                    stored.state = AgentState::Stopping;
                    stored.stop_at = Some(after(now, retry));
                    stored.note = format!("the stop failed; trying again at {}", after(now, retry));
                }
                Ok(Some((stored, vec![event.clone()])))
            })
            .await;
        if let Err(error) = noted {
            tracing::warn!(%error, "cannot record an idle stop");
        }
        self.notify(std::slice::from_ref(&event));
        Ok(Some(ok))
    }

    /// Sweeps every `every` until `shutdown` completes; a failed sweep is logged and the next
    /// one comes.
    pub async fn run_sweeps(
        self: Arc<Self>,
        every: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            match self.sweep().await {
                Ok(sweep) if sweep != Sweep::default() => tracing::info!(
                    lost = sweep.lost.len(),
                    stopping = sweep.stopping.len(),
                    stopped = sweep.stopped.len(),
                    failed = sweep.failed.len(),
                    "agents swept"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "the agents' sweep failed"),
            }
        }
    }
}

/// The "stop pending" events among `events`: what a webhook hears before a stop.
fn pending_stops(events: &[AuditEvent]) -> Vec<AuditEvent> {
    events
        .iter()
        .filter(|event| event.action == "stop pending")
        .cloned()
        .collect()
}
