//! `snoozebot schedule plan|apply|history`: the config file's schedules, the reconciler over
//! its providers, and the SQLite store beside it.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use snoozebot_schedule::PostgresStore;
use snoozebot_schedule::jiff::Timestamp;
use snoozebot_schedule::store::{SqliteStore, Store};
use snoozebot_schedule::{
    Action, CustodianConfig, CustodianDefaults, Fleet, Limits, Overrides, Reconciler, RunPlan,
    Schedule, Schedules, Webhook, WebhookFormat, WebhookOptions, parse_period,
};

use crate::cli::{Output, RunArgs, ScheduleCommand};
use crate::config::{ConfigError, Loaded, WebhookSettings};
use crate::exit::{Failure, Outcome};

const DEFAULT_STORE: &str = "snoozebot-schedule.db";

/// The file's schedules and how tags select them; every mistake is a config error naming
/// the schedule.
pub fn schedules(loaded: &Loaded) -> Result<Schedules, ConfigError> {
    let scheduler = &loaded.config.scheduler;
    let mut schedules = Schedules::new().with_inline_defaults(
        scheduler
            .timezone
            .clone()
            .unwrap_or_else(|| "UTC".to_owned()),
        Overrides {
            enforced: scheduler.enforced,
            ..Overrides::default()
        },
    );
    if let Some(tag) = &scheduler.tag {
        schedules = schedules.with_tag(tag.clone());
    }
    for (name, settings) in &loaded.config.schedules {
        let at = || {
            format!(
                "{}: schedules.{}",
                loaded.at(name.span().start),
                name.get_ref()
            )
        };
        let periods = settings
            .periods
            .iter()
            .map(|period| parse_period(period))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| ConfigError(format!("{}: {error}", at())))?;
        let days_off = settings
            .days_off
            .iter()
            .map(|day| {
                day.parse().map_err(|_| {
                    ConfigError(format!("{}: {day:?} is not a date (YYYY-MM-DD)", at()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let zone = settings.timezone.as_deref().unwrap_or("UTC");
        let schedule = Schedule::from_periods(name.get_ref(), zone, &periods, days_off)
            .map_err(|error| ConfigError(format!("{}: {error}", at())))?;
        schedules = schedules.with_schedule(
            schedule,
            Overrides {
                enforced: settings.enforced,
                retain_running: settings.retain_running,
                stop_mode: settings.stop_mode,
            },
        );
    }
    if let Some(custodian) = &scheduler.custodian {
        let defaults = CustodianDefaults::default();
        let defaults = CustodianDefaults {
            on_hour: custodian.onhour.unwrap_or(defaults.on_hour),
            off_hour: custodian.offhour.unwrap_or(defaults.off_hour),
            zone: custodian.default_tz.clone().unwrap_or(defaults.zone),
            weekends: custodian.weekends.unwrap_or(defaults.weekends),
        };
        if defaults.on_hour > 23 || defaults.off_hour > 23 {
            return Err(ConfigError(format!(
                "{}: [scheduler.custodian] onhour and offhour are 0 to 23",
                loaded.path.display()
            )));
        }
        schedules = schedules.with_custodian(CustodianConfig {
            tag: custodian
                .tag
                .clone()
                .unwrap_or_else(|| "maid_offhours".to_owned()),
            defaults,
            overrides: Overrides {
                enforced: custodian.enforced,
                ..Overrides::default()
            },
        });
    }
    Ok(schedules)
}

/// Whether the file configures schedules at all (named ones, or a `[scheduler]` that reads
/// tags).
pub fn configured(loaded: &Loaded) -> bool {
    let scheduler = &loaded.config.scheduler;
    !loaded.config.schedules.is_empty()
        || scheduler.custodian.is_some()
        || scheduler.interval.is_some()
        || scheduler.tag.is_some()
}

/// The webhook of `[scheduler.webhook]`, started.
pub fn webhook(loaded: &Loaded) -> Result<Option<Webhook>, Failure> {
    match &loaded.config.scheduler.webhook {
        Some(settings) => spawn_webhook(loaded, settings, "[scheduler.webhook]").map(Some),
        None => Ok(None),
    }
}

/// The webhook `settings` (of `section`) describe, started.
pub fn spawn_webhook(
    loaded: &Loaded,
    settings: &WebhookSettings,
    section: &str,
) -> Result<Webhook, Failure> {
    let config_error = |why: String| {
        Failure::new(
            Outcome::Config,
            format!("{}: {section} {why}", loaded.path.display()),
        )
    };
    let format = match settings.format.as_deref() {
        None | Some("json") => WebhookFormat::Json,
        Some("slack") => WebhookFormat::Slack,
        Some(other) => {
            return Err(config_error(format!(
                "format {other:?} is not json or slack"
            )));
        }
    };
    let url = settings
        .url
        .resolve(loaded.base())
        .map_err(|why| config_error(format!("url: {why}")))?;
    Webhook::spawn(
        &url,
        WebhookOptions {
            format,
            ..WebhookOptions::default()
        },
    )
    .map_err(|error| config_error(error.to_string()))
}

/// The scheduler `snoozebot serve` runs over `manager`: every configured provider, the file's
/// schedules, `store`, and the webhook it posts to.
pub fn scheduler(
    loaded: &Loaded,
    manager: Arc<snoozebot_core::PluginManager>,
    store: Arc<dyn Store>,
    schedules: Arc<Schedules>,
    webhook: Option<&Webhook>,
) -> snoozebot_schedule::Scheduler {
    let mut reconciler = Reconciler::new(Arc::clone(&schedules), store.clone(), limits(loaded));
    if let Some(webhook) = webhook {
        reconciler = reconciler.with_notifier(Arc::new(webhook.clone()));
    }
    let providers = loaded.provider_names();
    let mut scheduler = snoozebot_schedule::Scheduler::new(
        reconciler,
        schedules,
        store,
        manager,
        providers,
        loaded
            .config
            .scheduler
            .interval
            .unwrap_or(std::time::Duration::from_secs(300)),
    );
    if let Some(lease) = loaded.config.scheduler.lease {
        scheduler = scheduler.with_lease(lease);
    }
    scheduler
}

fn limits(loaded: &Loaded) -> Limits {
    let defaults = Limits::default();
    let scheduler = &loaded.config.scheduler;
    Limits {
        per_run: scheduler.max_actions_per_run.unwrap_or(defaults.per_run),
        per_provider: scheduler
            .max_actions_per_provider
            .unwrap_or(defaults.per_provider),
    }
}

/// The store the file names: a PostgreSQL URL (`postgres://…`, for several replicas), or a
/// SQLite file (relative to the config file's directory; default `snoozebot-schedule.db`).
pub async fn open_store(loaded: &Loaded) -> Result<Arc<dyn Store>, Failure> {
    let configured = loaded.config.scheduler.store.as_deref();
    if let Some(url) = configured
        .filter(|store| store.starts_with("postgres://") || store.starts_with("postgresql://"))
    {
        return PostgresStore::open(url)
            .await
            .map(|store| Arc::new(store) as Arc<dyn Store>)
            .map_err(|error| {
                Failure::new(Outcome::Unreachable, format!("[scheduler] store: {error}"))
            });
    }
    let path = loaded
        .base()
        .join(PathBuf::from(configured.unwrap_or(DEFAULT_STORE)));
    SqliteStore::open(&path)
        .map(|store| Arc::new(store) as Arc<dyn Store>)
        .map_err(|error| Failure::new(Outcome::Config, format!("{}: {error}", path.display())))
}

/// `snoozebot schedule …`.
pub async fn run(loaded: &Loaded, command: ScheduleCommand) -> Result<Outcome, Failure> {
    match command {
        ScheduleCommand::History { limit, output } => {
            let store = open_store(loaded).await?;
            let events = store
                .history(limit)
                .await
                .map_err(|error| Failure::new(Outcome::Failed, error.to_string()))?;
            let rows: Vec<serde_json::Value> = events
                .iter()
                .map(|event| {
                    json!({
                        "at": event.at.to_string(),
                        "provider": event.provider,
                        "instance": event.instance,
                        "schedule": event.schedule,
                        "action": event.action,
                        "outcome": event.outcome,
                        "error": event.error,
                        "reason": event.reason,
                    })
                })
                .collect();
            crate::output::objects(
                &rows,
                output.output,
                &[
                    "at", "provider", "instance", "schedule", "action", "outcome", "error",
                    "reason",
                ],
            );
            Ok(Outcome::Done)
        }
        ScheduleCommand::Plan { run, output } => {
            let (manager, fleets, reconciler, _) = prepare(loaded, &run).await?;
            let planned = reconciler.plan(&fleets, at(&run)?).await;
            manager.shutdown().await;
            let planned =
                planned.map_err(|error| Failure::new(Outcome::Failed, error.to_string()))?;
            print_plan(&planned, output.output);
            Ok(if planned.unreachable.is_empty() {
                Outcome::Done
            } else {
                Outcome::Unreachable
            })
        }
        ScheduleCommand::Apply { run, output } => {
            let (manager, fleets, reconciler, webhook) = prepare(loaded, &run).await?;
            let outcome = async {
                let planned = reconciler
                    .plan(&fleets, at(&run)?)
                    .await
                    .map_err(|error| Failure::new(Outcome::Failed, error.to_string()))?;
                let applied = reconciler
                    .apply(&fleets, &planned)
                    .await
                    .map_err(|error| Failure::new(Outcome::Failed, error.to_string()))?;
                let rows: Vec<serde_json::Value> = applied
                    .iter()
                    .map(|applied| {
                        json!({
                            "provider": applied.item.provider,
                            "id": applied.item.id.as_str(),
                            "schedule": applied.item.schedule,
                            "action": applied.item.action.to_string(),
                            "outcome": if applied.error.is_some() { "failed" } else { "ok" },
                            "error": applied.error,
                            "reason": applied.item.reason,
                        })
                    })
                    .collect();
                crate::output::objects(
                    &rows,
                    output.output,
                    &[
                        "provider", "id", "schedule", "action", "outcome", "error", "reason",
                    ],
                );
                let failed = applied
                    .iter()
                    .filter(|applied| applied.error.is_some())
                    .count();
                eprintln!(
                    "applied {} of {} action{}{}{}",
                    applied.len() - failed,
                    applied.len(),
                    if applied.len() == 1 { "" } else { "s" },
                    if failed > 0 {
                        format!(", {failed} failed")
                    } else {
                        String::new()
                    },
                    unreachable_note(&planned),
                );
                Ok(if failed > 0 {
                    Outcome::Failed
                } else if !planned.unreachable.is_empty() {
                    Outcome::Unreachable
                } else {
                    Outcome::Done
                })
            }
            .await;
            // What the run posts goes out before the command ends.
            if let Some(webhook) = webhook {
                webhook.finish(std::time::Duration::from_secs(30)).await;
            }
            manager.shutdown().await;
            outcome
        }
    }
}

fn at(run: &RunArgs) -> Result<Timestamp, Failure> {
    match &run.at {
        None => Ok(Timestamp::now()),
        Some(text) => text.parse().map_err(|error| {
            Failure::new(
                Outcome::Usage,
                format!("--at {text:?}: not an RFC 3339 time: {error}"),
            )
        }),
    }
}

fn unreachable_note(planned: &RunPlan) -> String {
    if planned.unreachable.is_empty() {
        return String::new();
    }
    let names: Vec<String> = planned
        .unreachable
        .iter()
        .map(|(name, error)| format!("{name} ({error})"))
        .collect();
    format!("; not reached: {}", names.join(", "))
}

/// The providers (each with its own middleware), the store and the reconciler.
async fn prepare(
    loaded: &Loaded,
    run: &RunArgs,
) -> Result<
    (
        Arc<snoozebot_core::PluginManager>,
        Vec<Fleet>,
        Reconciler,
        Option<Webhook>,
    ),
    Failure,
> {
    let schedules = Arc::new(schedules(loaded)?);
    let store = open_store(loaded).await?;
    let configured = loaded.provider_names();
    for name in &run.providers {
        if !configured.contains(name) {
            return Err(Failure::new(
                Outcome::Usage,
                format!("no provider {name:?} in {}", loaded.path.display()),
            ));
        }
    }
    let names: Vec<String> = if run.providers.is_empty() {
        configured
    } else {
        run.providers.clone()
    };
    let manager = crate::providers::manager(loaded)
        .map_err(|error| Failure::from_error("cannot set up the providers", &error))?;
    let mut fleets = Vec::new();
    for name in names {
        match manager.load(&name).await {
            Ok(provider) => fleets.push(Fleet { name, provider }),
            Err(error) => {
                manager.shutdown().await;
                return Err(Failure::from_error(
                    &format!("cannot load provider {name}"),
                    &error,
                ));
            }
        }
    }
    let webhook = webhook(loaded)?;
    let mut reconciler = Reconciler::new(schedules, store, limits(loaded));
    if let Some(webhook) = &webhook {
        reconciler = reconciler.with_notifier(Arc::new(webhook.clone()));
    }
    Ok((manager, fleets, reconciler, webhook))
}

fn print_plan(planned: &RunPlan, output: Output) {
    let rows: Vec<serde_json::Value> = planned
        .items
        .iter()
        .map(|item| {
            json!({
                "provider": item.provider,
                "id": item.id.as_str(),
                "schedule": item.schedule,
                "current": item.current.to_string(),
                "desired": item.desired.to_string(),
                "action": item.action.to_string(),
                "reason": item.reason,
            })
        })
        .collect();
    crate::output::objects(
        &rows,
        output,
        &[
            "provider", "id", "schedule", "current", "desired", "action", "reason",
        ],
    );
    let actions = planned
        .items
        .iter()
        .filter(|item| item.action != Action::None)
        .count();
    eprintln!(
        "{} scheduled instance{}, {actions} action{}{}{}",
        planned.items.len(),
        if planned.items.len() == 1 { "" } else { "s" },
        if actions == 1 { "" } else { "s" },
        if planned.invalid.is_empty() {
            String::new()
        } else {
            format!(
                "; {} with a schedule tag that does not read: {}",
                planned.invalid.len(),
                planned
                    .invalid
                    .iter()
                    .map(|(provider, id, why)| format!("{provider}/{id} ({why})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        unreachable_note(planned),
    );
}
