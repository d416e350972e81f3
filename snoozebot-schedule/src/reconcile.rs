//! [`Reconciler`]: one run over the configured providers — list each once, select the
//! scheduled instances, plan, and (when asked) apply the plan with the providers' batch calls,
//! recording every action and what to remember in the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use snoozebot_core::{
    CloudProvider, InstanceFilter, InstanceId, InstanceInfo, StopMode, StopOptions,
};

use crate::plan::{Action, Candidate, Limits, PlanItem, Remembered, plan};
use crate::select::{Schedules, Selection};
use crate::store::{AuditEvent, RunRecord, Store, StoreError};
use crate::webhook::Notifier;

/// A provider a run covers, by the name the audit trail records.
#[derive(Clone)]
pub struct Fleet {
    /// Its name.
    pub name: String,
    /// The provider (with its middleware: retries, limits, timeouts).
    pub provider: Arc<dyn CloudProvider>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A run's plan: what it would do, and what it could not look at.
#[derive(Debug, Clone, Default)]
pub struct RunPlan {
    /// When it was planned.
    pub at: Option<Timestamp>,
    /// Every scheduled instance, with its action.
    pub items: Vec<PlanItem>,
    /// Instances whose schedule tag does not parse: (provider, instance, why). Not touched.
    pub invalid: Vec<(String, InstanceId, String)>,
    /// Providers that could not be listed: (provider, error). Their instances are not touched.
    pub unreachable: Vec<(String, String)>,
}

impl RunPlan {
    /// The items with an action.
    pub fn actions(&self) -> impl Iterator<Item = &PlanItem> {
        self.items.iter().filter(|item| item.action != Action::None)
    }
}

/// What applying a plan did to one instance.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The planned item.
    pub item: PlanItem,
    /// The provider's error, if the action failed.
    pub error: Option<String>,
}

/// Plans and applies runs.
pub struct Reconciler {
    schedules: Arc<Schedules>,
    limits: Limits,
    store: Arc<dyn Store>,
    notifier: Option<Arc<dyn Notifier>>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Reconciler {
    /// Runs over `schedules`, remembering in `store`, with `limits` per run.
    pub fn new(schedules: Arc<Schedules>, store: Arc<dyn Store>, limits: Limits) -> Self {
        Reconciler {
            schedules,
            limits,
            store,
            notifier: None,
        }
    }

    /// Tells `notifier` of every applied run with actions, once it is recorded (a webhook).
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// The plan at `now`: each provider listed once (concurrently), its scheduled instances
    /// selected and planned. A provider that cannot be listed is reported and skipped.
    pub async fn plan(&self, fleets: &[Fleet], now: Timestamp) -> Result<RunPlan, StoreError> {
        let listings = futures_util::future::join_all(fleets.iter().map(|fleet| async move {
            let listed = fleet.provider.list_instances(&InstanceFilter::new()).await;
            (fleet.name.clone(), listed)
        }))
        .await;
        let mut run = RunPlan {
            at: Some(now),
            ..RunPlan::default()
        };
        let mut listed: Vec<(String, Vec<InstanceInfo>)> = Vec::new();
        for (name, result) in listings {
            match result {
                Ok(instances) => listed.push((name, instances)),
                Err(error) => run.unreachable.push((name, error.to_string())),
            }
        }
        let mut memory: HashMap<(String, InstanceId), Remembered> = HashMap::new();
        for (name, _) in &listed {
            for (id, remembered) in self.store.remembered(name).await? {
                memory.insert((name.clone(), id), remembered);
            }
        }
        let mut selected = Vec::new();
        for (name, instances) in &listed {
            for instance in instances {
                match self.schedules.select(instance) {
                    Selection::Scheduled(schedule, overrides) => {
                        selected.push((name.as_str(), instance, schedule, overrides));
                    }
                    Selection::Invalid(reason) => {
                        run.invalid
                            .push((name.clone(), instance.id.clone(), reason));
                    }
                    Selection::Unscheduled | Selection::OptedOut => {}
                }
            }
        }
        let candidates: Vec<Candidate<'_>> = selected
            .iter()
            .map(|(provider, instance, schedule, overrides)| Candidate {
                provider,
                instance,
                schedule,
                overrides: *overrides,
            })
            .collect();
        run.items = plan(&candidates, &memory, now, self.limits);
        Ok(run)
    }

    /// Applies `run`: per provider, one batch call per action and stop mode; a failure on one
    /// instance never holds back the others. Every action is recorded with its outcome; what
    /// succeeded (or needed nothing) is remembered, what failed is tried again next run.
    pub async fn apply(&self, fleets: &[Fleet], run: &RunPlan) -> Result<Vec<Applied>, StoreError> {
        self.apply_as(fleets, run, "run").await
    }

    /// [`apply`](Self::apply), the run recorded as `REPLICA-MILLISECONDS` (which replica of
    /// several did it).
    pub async fn apply_as(
        &self,
        fleets: &[Fleet],
        run: &RunPlan,
        replica: &str,
    ) -> Result<Vec<Applied>, StoreError> {
        let providers: HashMap<&str, &Arc<dyn CloudProvider>> = fleets
            .iter()
            .map(|fleet| (fleet.name.as_str(), &fleet.provider))
            .collect();
        let mut batches: BTreeMap<(&str, BatchKind), Vec<&PlanItem>> = BTreeMap::new();
        for item in run.actions() {
            let kind = match item.action {
                Action::Start => BatchKind::Start,
                Action::Stop(mode) => BatchKind::Stop(mode),
                Action::None => continue,
            };
            batches
                .entry((item.provider.as_str(), kind))
                .or_default()
                .push(item);
        }
        let calls = batches.into_iter().map(|((provider, kind), items)| {
            let provider = providers.get(provider).copied().cloned();
            async move {
                let ids: Vec<InstanceId> = items.iter().map(|item| item.id.clone()).collect();
                let results: HashMap<InstanceId, Option<String>> = match provider {
                    None => ids
                        .iter()
                        .map(|id| {
                            (
                                id.clone(),
                                Some("the provider is not configured".to_owned()),
                            )
                        })
                        .collect(),
                    Some(provider) => {
                        let answers = match kind {
                            BatchKind::Start => provider.start_instances(&ids).await,
                            BatchKind::Stop(mode) => {
                                let mut options = StopOptions::default();
                                if let Some(mode) = mode {
                                    options = options.with_mode(mode);
                                }
                                provider.stop_instances(&ids, &options).await
                            }
                        };
                        answers
                            .into_iter()
                            .map(|(id, result)| (id, result.err().map(|error| error.to_string())))
                            .collect()
                    }
                };
                items
                    .into_iter()
                    .map(|item| Applied {
                        item: item.clone(),
                        error: results.get(&item.id).cloned().unwrap_or_else(|| {
                            Some("the provider did not answer for it".to_owned())
                        }),
                    })
                    .collect::<Vec<_>>()
            }
        });
        let applied: Vec<Applied> = futures_util::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();
        let at = Timestamp::now();
        let id = format!("{replica}-{}", at.as_millisecond());
        let failed: std::collections::HashSet<(&str, &InstanceId)> = applied
            .iter()
            .filter(|applied| applied.error.is_some())
            .map(|applied| (applied.item.provider.as_str(), &applied.item.id))
            .collect();
        let record = RunRecord {
            id: id.clone(),
            events: applied
                .iter()
                .map(|applied| AuditEvent {
                    at,
                    run: id.clone(),
                    provider: applied.item.provider.clone(),
                    instance: applied.item.id.to_string(),
                    schedule: applied.item.schedule.clone(),
                    action: applied.item.action.to_string(),
                    reason: applied.item.reason.clone(),
                    outcome: if applied.error.is_some() {
                        "failed"
                    } else {
                        "ok"
                    }
                    .to_owned(),
                    error: applied.error.clone(),
                })
                .collect(),
            remember: run
                .items
                .iter()
                .filter(|item| !failed.contains(&(item.provider.as_str(), &item.id)))
                .map(|item| (item.provider.clone(), item.id.clone(), item.remember))
                .collect(),
        };
        self.store.commit(&record).await?;
        if let Some(notifier) = &self.notifier {
            notifier.notify(&record);
        }
        Ok(applied)
    }
}

/// The batches of a run: starts, and stops by mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum BatchKind {
    Start,
    Stop(Option<StopMode>),
}
