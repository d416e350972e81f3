//! [`Scheduler`]: the reconciler as a server runs it — over a [`PluginManager`]'s providers,
//! one run at a time, on demand and on ticks aligned to the interval (every 5 minutes: at :00,
//! :05, …), until shut down.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use snoozebot_core::PluginManager;

use crate::reconcile::{Applied, Fleet, Reconciler, RunPlan};
use crate::select::Schedules;
use crate::store::{AuditEvent, Store, StoreError};

/// What a scheduler run can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    /// The store failed: nothing was applied, or what was is not recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The clock runs read: the wall clock, or a test's.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A reconciler over a manager's providers, for a server.
pub struct Scheduler {
    reconciler: Reconciler,
    schedules: Arc<Schedules>,
    store: Arc<dyn Store>,
    manager: Arc<PluginManager>,
    providers: Vec<String>,
    interval: Duration,
    clock: Clock,
    /// Who this replica is, in the lease and the trail's run ids.
    holder: String,
    /// How long a tick's lease lasts: a leader that stops renewing is replaced after it.
    lease: Duration,
    /// One run at a time: a tick and a request to apply do not overlap.
    running: tokio::sync::Mutex<()>,
}

/// This process, as a lease holder: host name and process id.
fn default_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    format!("{host}-{}", std::process::id())
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("providers", &self.providers)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// When the tick after `now` is: the next multiple of `interval` since the Unix epoch.
pub fn next_tick(now: Timestamp, interval: Duration) -> Timestamp {
    let step = i128::try_from(interval.as_nanos())
        .unwrap_or(i128::MAX)
        .max(1);
    let now_ns = now.as_nanosecond();
    let next = (now_ns.div_euclid(step) + 1) * step;
    Timestamp::from_nanosecond(next).unwrap_or(now)
}

impl Scheduler {
    /// Runs `reconciler` over `providers` of `manager` (loading them as needed), every
    /// `interval` when [`run_ticks`](Self::run_ticks) runs.
    pub fn new(
        reconciler: Reconciler,
        schedules: Arc<Schedules>,
        store: Arc<dyn Store>,
        manager: Arc<PluginManager>,
        providers: Vec<String>,
        interval: Duration,
    ) -> Self {
        Scheduler {
            reconciler,
            schedules,
            store,
            manager,
            providers,
            interval,
            clock: Arc::new(Timestamp::now),
            holder: default_holder(),
            lease: (interval * 3).max(Duration::from_secs(10)),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Names this replica `holder` (default: host name and process id).
    pub fn with_holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// Leads for `lease` per tick (default three intervals, at least 10 s): replicas sharing a
    /// store elect one reconciler, and one that dies is replaced within this long.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Who this replica is.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Reads the time from `clock` instead of the wall clock (tests on paused time).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The schedules.
    pub fn schedules(&self) -> &Schedules {
        &self.schedules
    }

    /// The interval between ticks.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The providers, loaded; one that cannot load is reported as unreachable.
    async fn fleets(&self) -> (Vec<Fleet>, Vec<(String, String)>) {
        let mut fleets = Vec::new();
        let mut unreachable = Vec::new();
        for name in &self.providers {
            match self.manager.load(name).await {
                Ok(provider) => fleets.push(Fleet {
                    name: name.clone(),
                    provider,
                }),
                Err(error) => unreachable.push((name.clone(), error.to_string())),
            }
        }
        (fleets, unreachable)
    }

    /// The plan now, nothing applied.
    pub async fn plan(&self) -> Result<RunPlan, RunError> {
        let (fleets, unreachable) = self.fleets().await;
        let mut plan = self.reconciler.plan(&fleets, (self.clock)()).await?;
        plan.unreachable.extend(unreachable);
        Ok(plan)
    }

    /// Plans and applies now (after any run in progress), whoever leads: an operator's
    /// explicit request.
    pub async fn apply(&self) -> Result<(RunPlan, Vec<Applied>), RunError> {
        let _one_at_a_time = self.running.lock().await;
        self.run().await
    }

    async fn run(&self) -> Result<(RunPlan, Vec<Applied>), RunError> {
        let (fleets, unreachable) = self.fleets().await;
        let mut plan = self.reconciler.plan(&fleets, (self.clock)()).await?;
        plan.unreachable.extend(unreachable);
        let applied = self
            .reconciler
            .apply_as(&fleets, &plan, &self.holder)
            .await?;
        Ok((plan, applied))
    }

    /// One tick: if this replica leads (it takes or renews the lease), a run; `None` when
    /// another replica leads.
    pub async fn tick(&self) -> Result<Option<(RunPlan, Vec<Applied>)>, RunError> {
        let _one_at_a_time = self.running.lock().await;
        if !self
            .store
            .try_lead(&self.holder, (self.clock)(), self.lease)
            .await?
        {
            return Ok(None);
        }
        self.run().await.map(Some)
    }

    /// The latest `limit` recorded actions.
    pub async fn history(&self, limit: usize) -> Result<Vec<AuditEvent>, RunError> {
        Ok(self.store.history(limit).await?)
    }

    /// Applies on every tick (aligned to the interval) until `shutdown` completes; a run in
    /// progress at shutdown finishes first. A failed run is logged and the next tick comes.
    pub async fn run_ticks(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let now = (self.clock)();
            let wait = next_tick(now, self.interval)
                .duration_since(now)
                .unsigned_abs();
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(wait) => {}
            }
            match self.tick().await {
                Ok(None) => tracing::debug!("another replica leads; this tick does nothing"),
                Ok(Some((plan, applied))) => {
                    let failed = applied
                        .iter()
                        .filter(|applied| applied.error.is_some())
                        .count();
                    tracing::info!(
                        scheduled = plan.items.len(),
                        actions = applied.len(),
                        failed,
                        unreachable = plan.unreachable.len(),
                        "schedule run"
                    );
                }
                Err(error) => tracing::warn!(%error, "schedule run failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_align_to_the_interval() {
        let at = |text: &str| -> Timestamp { text.parse().unwrap() };
        let five = Duration::from_secs(300);
        assert_eq!(
            next_tick(at("2026-12-01T19:02:10Z"), five),
            at("2026-12-01T19:05:00Z")
        );
        assert_eq!(
            next_tick(at("2026-12-01T19:05:00Z"), five),
            at("2026-12-01T19:10:00Z")
        );
        assert_eq!(
            next_tick(at("2026-12-01T23:59:59Z"), Duration::from_secs(3600)),
            at("2026-12-02T00:00:00Z")
        );
    }
}
