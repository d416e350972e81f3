//! The server's side of reporting agents (`[agents]`): the policy `snoozebot serve` decides
//! by, the keys agents present, and `snoozebot agent key`.

use std::sync::Arc;
use std::time::Duration;

use snoozebot_core::StopOptions;
use snoozebot_rest::AgentKeys;
use snoozebot_schedule::store::Store;
use snoozebot_schedule::{AgentPolicy, Agents, Schedules, Webhook};

use crate::config::{AgentsConfig, Loaded};
use crate::exit::{Failure, Outcome};

fn settings(loaded: &Loaded) -> Result<&AgentsConfig, Failure> {
    loaded.config.agents.as_ref().ok_or_else(|| {
        Failure::new(
            Outcome::Config,
            format!(
                "{}: [agents] secret is not set: agents' keys are derived from it",
                loaded.path.display()
            ),
        )
    })
}

/// The keys of `[agents] secret`.
pub fn keys(loaded: &Loaded) -> Result<AgentKeys, Failure> {
    let secret = settings(loaded)?
        .secret
        .resolve(loaded.base())
        .map_err(|why| {
            Failure::new(
                Outcome::Config,
                format!("{}: [agents] secret: {why}", loaded.path.display()),
            )
        })?;
    AgentKeys::new(secret.as_bytes()).map_err(|error| {
        Failure::new(
            Outcome::Config,
            format!("{}: [agents] {}", loaded.path.display(), error.message()),
        )
    })
}

/// `snoozebot agent key PROVIDER INSTANCE`.
pub fn print_key(loaded: &Loaded, provider: &str, instance: &str) -> Result<Outcome, Failure> {
    if !loaded.provider_names().iter().any(|name| name == provider) {
        return Err(Failure::new(
            Outcome::Usage,
            format!(
                "{}: no provider {provider:?} is configured",
                loaded.path.display()
            ),
        ));
    }
    println!("{}", keys(loaded)?.key_for(provider, instance));
    Ok(Outcome::Done)
}

/// The agents `snoozebot serve` answers for (when `[agents]` is set): every configured
/// provider, the policy of the file, the schedules' on-hours, the store and webhook shared with
/// the scheduler. Sweep them every [`sweep_interval`].
pub fn agents(
    loaded: &Loaded,
    manager: Arc<snoozebot_core::PluginManager>,
    store: Arc<dyn Store>,
    schedules: Option<Arc<Schedules>>,
    webhook: Option<&Webhook>,
) -> Result<Option<(Arc<Agents>, AgentKeys)>, Failure> {
    let Some(settings) = &loaded.config.agents else {
        return Ok(None);
    };
    let keys = keys(loaded)?;
    let defaults = AgentPolicy::default();
    let heartbeat = settings.heartbeat.unwrap_or(defaults.heartbeat);
    let policy = AgentPolicy {
        heartbeat,
        lost_after: settings.lost_after.unwrap_or(heartbeat * 3),
        warning: settings.warning.unwrap_or(defaults.warning),
        stop_in_on_hours: settings.stop_in_on_hours,
        stop: settings
            .stop_mode
            .map_or_else(StopOptions::default, |mode| {
                StopOptions::default().with_mode(mode)
            }),
    };
    let providers = loaded.provider_names();
    let mut agents = Agents::new(store, manager, providers, policy);
    if let Some(schedules) = schedules {
        agents = agents.with_schedules(schedules);
    }
    if let Some(webhook) = webhook {
        agents = agents.with_notifier(Arc::new(webhook.clone()));
    }
    Ok(Some((Arc::new(agents), keys)))
}

/// How often the agents are swept: twice a heartbeat, at most every 30 s, at least every 1 s.
pub fn sweep_interval(agents: &Agents) -> Duration {
    (agents.policy().heartbeat / 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
}
