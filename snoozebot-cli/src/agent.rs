//! `snoozebot agent`: on the instance itself, notice that it is idle. Self mode stops it
//! through its own provider after a warning period; reporting mode (`[agent] server`) reports
//! to a central `snoozebot serve`, which decides. Either way the machine's users are warned on
//! their terminals, and activity or a postpone cancels the stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use snoozebot_core::{Backoff, InstanceId, StopOptions};
use snoozebot_idle::{
    Event, GpuProbe, MetadataEndpoints, Monitor, Probe, ProcRoot, Thresholds, identify,
    warn_terminals,
};
use snoozebot_schedule::jiff::Timestamp;
use snoozebot_schedule::store::{AuditEvent, RunRecord};
use snoozebot_schedule::{Desired, Notifier, Schedule, parse_period};

use crate::cli::AgentCommand;
use crate::config::{AgentConfig, Loaded};
use crate::exit::{Failure, Outcome};

mod report;

const DEFAULT_POSTPONE_FILE: &str = "/run/snoozebot-agent.postpone";

fn postpone_file(loaded: &Loaded) -> PathBuf {
    loaded.config.agent.postpone_file.as_ref().map_or_else(
        || PathBuf::from(DEFAULT_POSTPONE_FILE),
        |path| loaded.base().join(path),
    )
}

/// Until when stopping is postponed (the file holds seconds since the epoch); a postpone
/// that has ended, or a file that does not read as one (garbage, too long), is none.
fn postponed_until(path: &Path) -> Option<SystemTime> {
    use std::io::Read;
    // A number of seconds: 32 bytes is plenty; anything else is no postpone.
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(32)
        .read_to_string(&mut text)
        .ok()?;
    let seconds: u64 = text.trim().parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
        .filter(|until| *until > SystemTime::now())
}

/// `snoozebot agent …`.
pub async fn run(loaded: &Loaded, command: AgentCommand) -> Result<Outcome, Failure> {
    match command {
        AgentCommand::Postpone { duration } => {
            let duration = crate::config::parse_duration(&duration)
                .map_err(|why| Failure::new(Outcome::Usage, why))?;
            let until = SystemTime::now() + duration;
            let seconds = until
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            let path = postpone_file(loaded);
            std::fs::write(&path, format!("{seconds}\n")).map_err(|error| {
                Failure::new(
                    Outcome::Failed,
                    format!("cannot write {}: {error}", path.display()),
                )
            })?;
            println!(
                "stopping postponed for {duration:?} (until {seconds}, in {})",
                path.display()
            );
            Ok(Outcome::Done)
        }
        AgentCommand::Key { provider, instance } => {
            crate::agents::print_key(loaded, &provider, &instance)
        }
        AgentCommand::Run => watch(loaded).await,
    }
}

/// What both modes watch with.
struct Watch {
    id: InstanceId,
    provider: String,
    root: ProcRoot,
    warning: Duration,
    postpone: PathBuf,
}

impl Watch {
    /// Says `message` on standard error and on every terminal of the machine.
    fn announce(&self, message: &str) {
        eprintln!("{message}");
        let told = warn_terminals(&self.root, &format!("snoozebot: {message}"));
        tracing::info!(terminals = told, "{message}");
    }

    fn postponed_until(&self) -> Option<SystemTime> {
        postponed_until(&self.postpone)
    }
}

fn config_error(loaded: &Loaded, what: &str) -> Failure {
    Failure::new(
        Outcome::Config,
        format!("{}: [agent] {what}", loaded.path.display()),
    )
}

/// The instance this agent watches: `[agent] instance`, or the metadata service's answer.
async fn instance_id(loaded: &Loaded) -> Result<InstanceId, Failure> {
    let agent = &loaded.config.agent;
    let id = match &agent.instance {
        Some(id) => id.clone(),
        None => {
            let endpoints = agent
                .metadata
                .as_deref()
                .map_or_else(MetadataEndpoints::default, MetadataEndpoints::all_at);
            identify(&endpoints)
                .await
                .map_err(|error| Failure::new(Outcome::Config, error.to_string()))?
                .instance_id()
        }
    };
    InstanceId::new(id.clone()).map_err(|error| {
        Failure::new(
            Outcome::Config,
            format!("instance id {id:?}: {}", error.message()),
        )
    })
}

/// `[agent] keep_awake` as a schedule in `[agent] timezone`; `None` without one.
pub fn keep_awake_hours(agent: &AgentConfig) -> Result<Option<Schedule>, String> {
    if agent.keep_awake.is_empty() {
        return Ok(None);
    }
    let periods = agent
        .keep_awake
        .iter()
        .map(|period| parse_period(period))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())?;
    let zone = agent.timezone.as_deref().unwrap_or("UTC");
    Schedule::from_periods("keep_awake", zone, &periods, [])
        .map(Some)
        .map_err(|error| error.to_string())
}

/// `[agent] server`, checked: an `http` or `https` URL with a host.
pub fn server_url(server: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(server)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .ok_or_else(|| format!("server {server:?} is not an http(s) URL"))
}

/// The monitor `[agent]` describes: thresholds, GPUs, processes and hours that keep the
/// machine awake.
fn monitor(loaded: &Loaded, root: &ProcRoot) -> Result<Monitor, Failure> {
    let agent = &loaded.config.agent;
    let defaults = Thresholds::default();
    let thresholds = Thresholds {
        cpu_percent: agent.cpu_percent.unwrap_or(defaults.cpu_percent),
        network_bytes_per_second: agent
            .network_bytes_per_second
            .unwrap_or(defaults.network_bytes_per_second),
        disk_bytes_per_second: agent
            .disk_bytes_per_second
            .unwrap_or(defaults.disk_bytes_per_second),
        terminal_input: agent.terminal_input.unwrap_or(defaults.terminal_input),
        memory_percent: agent.memory_percent,
        gpu_percent: agent.gpu_percent.unwrap_or(defaults.gpu_percent),
    };
    let interval = agent.interval.unwrap_or(Duration::from_secs(10));
    let nap = agent.nap.unwrap_or(Duration::from_secs(30 * 60));
    let grace = agent.grace.unwrap_or(Duration::from_secs(60));
    let mut monitor = Monitor::new(root.clone(), thresholds, interval, nap, grace)
        .with_processes(agent.keep_awake_processes.iter().cloned());
    // A configured nvidia-smi is used (and its failures count busy); otherwise one in the
    // PATH, looked up once; none: no GPU signal.
    let gpu = match &agent.nvidia_smi {
        Some(smi) => Some(GpuProbe::default().with_command(loaded.base().join(smi))),
        None => GpuProbe::detect(),
    };
    if let Some(gpu) = gpu {
        monitor = monitor.with_gpu(gpu);
    }
    if let Some(hours) = keep_awake_hours(agent)
        .map_err(|why| config_error(loaded, &format!("keep_awake: {why}")))?
    {
        monitor = monitor.with_probe(Probe::Callback {
            name: "keep-awake hours".to_owned(),
            busy: Arc::new(move || hours.desired_at(Timestamp::now()).desired == Desired::Running),
        });
    }
    Ok(monitor)
}

async fn watch(loaded: &Loaded) -> Result<Outcome, Failure> {
    let agent = &loaded.config.agent;
    let Some(provider) = agent.provider.clone() else {
        return Err(config_error(
            loaded,
            "provider names the provider this instance belongs to",
        ));
    };
    let root = agent
        .proc_root
        .as_ref()
        .map_or_else(ProcRoot::live, |root| {
            ProcRoot::at(loaded.base().join(root))
        });
    let monitor = monitor(loaded, &root)?;
    let reporter = match &agent.server {
        Some(server) => Some(report::Reporter::new(loaded, server, &provider)?),
        None => None,
    };
    let id = instance_id(loaded).await?;
    let watch = Watch {
        id,
        provider,
        root,
        warning: agent.warning.unwrap_or(Duration::from_secs(5 * 60)),
        postpone: postpone_file(loaded),
    };

    let (events, heard) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let (stop_monitor, monitor_stopped) = tokio::sync::oneshot::channel::<()>();
    let monitoring = tokio::spawn(monitor.run(
        move |event| {
            let _ = events.send(event);
        },
        async {
            let _ = monitor_stopped.await;
        },
    ));
    let outcome = match reporter {
        Some(reporter) => report::run(&watch, reporter, heard).await,
        None => stop_itself(loaded, &watch, heard).await,
    };
    let _ = stop_monitor.send(());
    let _ = monitoring.await;
    outcome
}

/// Self mode: on idle, the warning period (activity cancels, a postpone extends), then the
/// stop through the instance's own provider; the webhook hears of both.
async fn stop_itself(
    loaded: &Loaded,
    watch: &Watch,
    mut heard: tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> Result<Outcome, Failure> {
    let webhook = match &loaded.config.agent.webhook {
        Some(settings) => Some(crate::schedule::spawn_webhook(
            loaded,
            settings,
            "[agent.webhook]",
        )?),
        None => None,
    };
    let manager = crate::providers::manager(loaded)
        .map_err(|error| Failure::from_error("cannot set up the providers", &error))?;
    let provider = manager.load(&watch.provider).await.map_err(|error| {
        Failure::from_error(&format!("cannot load provider {}", watch.provider), &error)
    })?;
    let (id, warning) = (&watch.id, watch.warning);
    tracing::info!(instance = %id, provider = %watch.provider, ?warning, "watching for idleness");
    let post = |action: &str, reason: String, error: Option<String>| {
        if let Some(webhook) = &webhook {
            webhook.notify(&RunRecord {
                id: format!("agent-{id}"),
                events: vec![AuditEvent {
                    at: Timestamp::now(),
                    run: format!("agent-{id}"),
                    provider: watch.provider.clone(),
                    instance: id.to_string(),
                    schedule: "idle".to_owned(),
                    action: action.to_owned(),
                    reason,
                    outcome: if error.is_some() { "failed" } else { "ok" }.to_owned(),
                    error,
                }],
                remember: Vec::new(),
            });
        }
    };
    let outcome = loop {
        // Wait to be idle.
        match heard.recv().await {
            Some(Event::Idle { idle_for }) => {
                watch.announce(&format!(
                    "idle for {idle_for:?}: stopping {id} in {warning:?} (`snoozebot agent postpone 2h` keeps it running)"
                ));
                post(
                    "stop pending",
                    format!("idle for {idle_for:?}; stop in {warning:?}"),
                    None,
                );
            }
            Some(Event::Active { .. }) => continue,
            None => break Err(Failure::new(Outcome::Failed, "the monitor stopped")),
        }
        // The warning period, then any postpone: activity cancels the stop.
        let mut deadline = tokio::time::Instant::now() + warning;
        let decided = loop {
            tokio::select! {
                event = heard.recv() => match event {
                    Some(Event::Active { busy }) => {
                        let busy: Vec<String> = busy.iter().map(ToString::to_string).collect();
                        watch.announce(&format!("active again ({}): not stopping {id}", busy.join(", ")));
                        post("cancel", format!("active again ({})", busy.join(", ")), None);
                        break false;
                    }
                    Some(Event::Idle { .. }) => {}
                    None => break false,
                },
                () = tokio::time::sleep_until(deadline) => {
                    match watch.postponed_until().and_then(|until| until.duration_since(SystemTime::now()).ok()) {
                        Some(left) => {
                            eprintln!("postponed for {}s more: not stopping yet", left.as_secs());
                            deadline = tokio::time::Instant::now() + left;
                        }
                        None => break true,
                    }
                }
            }
        };
        if !decided {
            continue;
        }
        watch.announce(&format!("stopping {id} through {} now", watch.provider));
        break match provider.stop_instance(id, &StopOptions::default()).await {
            Ok(change) => {
                post("stop", "idle".to_owned(), None);
                println!("{id}: {} -> {}", change.previous, change.current);
                Ok(Outcome::Done)
            }
            Err(error) => {
                post("stop", "idle".to_owned(), Some(error.to_string()));
                Err(Failure::from_error(&format!("cannot stop {id}"), &error))
            }
        };
    };
    if let Some(webhook) = webhook {
        webhook.finish(Duration::from_secs(10)).await;
    }
    manager.shutdown().await;
    outcome
}

/// The delays between attempts to reach the server: 1 s doubling to a minute.
fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postpone_file_is_seconds_and_anything_else_is_no_postpone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("postpone");
        let later = SystemTime::now() + Duration::from_secs(3600);
        let seconds = later
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        std::fs::write(&path, format!("{seconds}\n")).unwrap();
        assert!(postponed_until(&path).is_some());
        for garbage in ["", "soon", "-5", "12 34", "1700000000"] {
            std::fs::write(&path, garbage).unwrap();
            assert_eq!(postponed_until(&path), None, "{garbage:?}");
        }
        // Too long to be a number of seconds: cut at 32 bytes, not read whole.
        std::fs::write(&path, "9".repeat(10 * 1024 * 1024)).unwrap();
        assert_eq!(postponed_until(&path), None);
        assert_eq!(postponed_until(&dir.path().join("none")), None);
    }
}
