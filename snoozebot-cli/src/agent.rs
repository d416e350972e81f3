//! `snoozebot agent`: on the instance itself, notice that it is idle and stop it through its
//! own provider (self mode), after a warning period that activity or a postpone cancels.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use snoozebot_core::{InstanceId, StopOptions};
use snoozebot_idle::{Event, MetadataEndpoints, Monitor, ProcRoot, Thresholds, identify};

use crate::cli::AgentCommand;
use crate::config::Loaded;
use crate::exit::{Failure, Outcome};

const DEFAULT_POSTPONE_FILE: &str = "/run/snoozebot-agent.postpone";

fn postpone_file(loaded: &Loaded) -> PathBuf {
    loaded.config.agent.postpone_file.as_ref().map_or_else(
        || PathBuf::from(DEFAULT_POSTPONE_FILE),
        |path| loaded.base().join(path),
    )
}

/// Until when stopping is postponed (the file holds seconds since the epoch).
fn postponed_until(path: &Path) -> Option<SystemTime> {
    let text = std::fs::read_to_string(path).ok()?;
    let seconds: u64 = text.trim().parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
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
        AgentCommand::Run => watch(loaded).await,
    }
}

async fn watch(loaded: &Loaded) -> Result<Outcome, Failure> {
    let agent = &loaded.config.agent;
    let Some(provider_name) = agent.provider.clone() else {
        return Err(Failure::new(
            Outcome::Config,
            format!(
                "{}: [agent] provider names the provider this instance belongs to",
                loaded.path.display()
            ),
        ));
    };
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
    let id = InstanceId::new(id.clone()).map_err(|error| {
        Failure::new(
            Outcome::Config,
            format!("instance id {id:?}: {}", error.message()),
        )
    })?;
    let manager = crate::providers::manager(loaded)
        .map_err(|error| Failure::from_error("cannot set up the providers", &error))?;
    let provider = manager.load(&provider_name).await.map_err(|error| {
        Failure::from_error(&format!("cannot load provider {provider_name}"), &error)
    })?;
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
        gpu_percent: defaults.gpu_percent,
    };
    let root = agent
        .proc_root
        .as_ref()
        .map_or_else(ProcRoot::live, |root| {
            ProcRoot::at(loaded.base().join(root))
        });
    let interval = agent.interval.unwrap_or(Duration::from_secs(10));
    let nap = agent.nap.unwrap_or(Duration::from_secs(30 * 60));
    let grace = agent.grace.unwrap_or(Duration::from_secs(60));
    let warning = agent.warning.unwrap_or(Duration::from_secs(5 * 60));
    let postpone = postpone_file(loaded);
    tracing::info!(instance = %id, provider = %provider_name, ?nap, ?warning, "watching for idleness");

    let (events, mut heard) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let (stop_monitor, monitor_stopped) = tokio::sync::oneshot::channel::<()>();
    let monitor = Monitor::new(root, thresholds, interval, nap, grace);
    let monitoring = tokio::spawn(monitor.run(
        move |event| {
            let _ = events.send(event);
        },
        async {
            let _ = monitor_stopped.await;
        },
    ));
    let outcome = loop {
        // Wait to be idle.
        match heard.recv().await {
            Some(Event::Idle { idle_for }) => {
                tracing::warn!(
                    ?idle_for,
                    ?warning,
                    "idle: stopping after the warning period unless used or postponed"
                );
                eprintln!(
                    "idle for {idle_for:?}: stopping {id} in {warning:?} (snoozebot agent postpone 2h keeps it)"
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
                        eprintln!("active again ({}): not stopping", busy.join(", "));
                        break false;
                    }
                    Some(Event::Idle { .. }) => {}
                    None => break false,
                },
                () = tokio::time::sleep_until(deadline) => {
                    match postponed_until(&postpone).and_then(|until| until.duration_since(SystemTime::now()).ok()) {
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
        eprintln!("stopping {id} through {provider_name}");
        break match provider.stop_instance(&id, &StopOptions::default()).await {
            Ok(change) => {
                println!("{id}: {} -> {}", change.previous, change.current);
                Ok(Outcome::Done)
            }
            Err(error) => Err(Failure::from_error(&format!("cannot stop {id}"), &error)),
        };
    };
    let _ = stop_monitor.send(());
    let _ = monitoring.await;
    manager.shutdown().await;
    outcome
}
