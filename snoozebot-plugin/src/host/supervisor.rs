//! Supervision: a launch is watched for exit and failed health checks, and replaced with
//! backoff growing with each crash in a row; a crash loop ends in [`Slot::Failed`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use snoozebot_core::{Error, ErrorKind, ProviderInfo, Result};
use tokio::time::Instant;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use super::PluginConfig;
use super::launch::{Running, launch_once};
use super::plugin_error;
use crate::proto::go_plugin;

/// Where a supervised plugin is.
pub(super) enum Slot {
    Running(Arc<Running>),
    /// Stopped unexpectedly; the next launch attempt starts at `next_attempt`.
    Restarting {
        next_attempt: Instant,
    },
    Failed(Error),
    Closed,
}

/// The shortest wait a caller is told while a plugin restarts: a launch takes a few
/// milliseconds once its backoff has passed.
const RESTART_RETRY_FLOOR: Duration = Duration::from_millis(50);

pub(super) struct Supervisor {
    pub(super) name: String,
    pub(super) path: PathBuf,
    pub(super) config: PluginConfig,
    pub(super) slot: Mutex<Slot>,
    /// The info of the last launch, so `info()` answers while the plugin restarts.
    pub(super) info: Mutex<ProviderInfo>,
    pub(super) closed: AtomicBool,
    pub(super) streak: Mutex<CrashStreak>,
}

/// Crashes in a row: counted across launches that came up and died again soon (within
/// [`PluginConfig::stable_after`]), so a plugin that crashes a second after each start backs
/// off further each time and is given up after [`PluginConfig::max_restarts`].
pub(crate) struct CrashStreak {
    restarts: u32,
    launched: Instant,
}

impl CrashStreak {
    pub(crate) fn new() -> Self {
        CrashStreak {
            restarts: 0,
            launched: Instant::now(),
        }
    }
}

impl Supervisor {
    fn streak(&self) -> std::sync::MutexGuard<'_, CrashStreak> {
        match self.streak.lock() {
            Ok(streak) => streak,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(super) fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        match self.slot.lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(super) fn running(&self) -> Result<Arc<Running>> {
        match &*self.slot() {
            Slot::Running(running) => Ok(Arc::clone(running)),
            // Retryable, with the restart's own schedule: the retry layer rides over a restart.
            Slot::Restarting { next_attempt } => {
                let wait = next_attempt.saturating_duration_since(Instant::now());
                Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "plugin {}: it stopped unexpectedly and is being restarted",
                        self.name
                    ),
                )
                .with_provider(self.name.clone())
                .with_retry_after(wait.max(RESTART_RETRY_FLOOR)))
            }
            Slot::Failed(error) => Err(error.clone()),
            Slot::Closed => Err(plugin_error(&self.name, "it has been unloaded")),
        }
    }
}

pub(super) async fn stop(running: &Running, grace: Duration) {
    if !running.process.has_exited() {
        let mut controller = running.controller.clone();
        let asked = tokio::time::timeout(grace, controller.shutdown(go_plugin::Empty {})).await;
        if asked.is_ok() && running.process.wait_exit(grace).await {
            running.process.kill_group();
            return;
        }
    }
    running.process.kill_group();
    if !running.process.wait_exit(Duration::from_secs(2)).await {
        tracing::warn!(plugin = %running.process.name, "plugin did not exit after SIGKILL");
    }
}

pub(super) async fn check_health(
    running: &Running,
    limit: Duration,
) -> std::result::Result<(), String> {
    let mut health = running.health.clone();
    let request = HealthCheckRequest {
        service: "plugin".to_owned(),
    };
    match tokio::time::timeout(limit, health.check(request)).await {
        Err(_) => Err(format!("health check took longer than {limit:?}")),
        Ok(Err(status)) => Err(format!("health check failed: {}", status.message())),
        Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
        Ok(Ok(response)) => Err(format!("health status is {}", response.get_ref().status)),
    }
}

/// Watches one launch: on exit or a failed health check, restarts with backoff.
pub(super) fn supervise(supervisor: Weak<Supervisor>, running: &Arc<Running>) {
    let mut exited = running.process.exited.clone();
    let watched = Arc::downgrade(running);
    tokio::spawn(async move {
        let (interval, timeout) = match supervisor.upgrade() {
            Some(s) => (
                s.config.health_check_interval,
                s.config.health_check_timeout,
            ),
            None => return,
        };
        let reason = loop {
            let tick = async {
                match interval {
                    Some(interval) => tokio::time::sleep(interval).await,
                    None => std::future::pending().await,
                }
            };
            let exit = async {
                exited
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|status| status.clone())
            };
            tokio::select! {
                status = exit => {
                    break format!("it exited ({})", status.unwrap_or_default());
                }
                () = tick => {
                    let Some(running) = watched.upgrade() else { return };
                    if let Err(reason) = check_health(&running, timeout).await {
                        running.process.kill_group();
                        break reason;
                    }
                }
            }
        };
        restart(supervisor, watched, reason).await;
    });
}

pub(super) async fn restart(supervisor: Weak<Supervisor>, crashed: Weak<Running>, reason: String) {
    let Some(this) = supervisor.upgrade() else {
        return;
    };
    if this.closed.load(Ordering::SeqCst) {
        return;
    }
    {
        let mut slot = this.slot();
        // Only the launch that crashed is replaced; a newer one (or an unload) stays.
        let current = matches!(&*slot, Slot::Running(r) if crashed.upgrade().is_some_and(|c| Arc::ptr_eq(r, &c)));
        if !current {
            return;
        }
        *slot = Slot::Restarting {
            next_attempt: Instant::now() + this.config.restart_backoff.initial,
        };
    }
    {
        let mut streak = this.streak();
        if streak.launched.elapsed() >= this.config.stable_after {
            streak.restarts = 0;
        }
    }
    let mut last_error = reason.clone();
    loop {
        let restarts = this.streak().restarts;
        if restarts >= this.config.max_restarts {
            break;
        }
        let backoff = this
            .config
            .restart_backoff
            .delays()
            .nth(restarts as usize)
            .unwrap_or(this.config.restart_backoff.max);
        tracing::warn!(plugin = %this.name, reason = %last_error, restarts, backoff_ms = backoff.as_millis() as u64, "plugin stopped unexpectedly; restarting");
        {
            let mut slot = this.slot();
            if let Slot::Restarting { next_attempt } = &mut *slot {
                *next_attempt = Instant::now() + backoff;
            }
        }
        tokio::time::sleep(backoff).await;
        if this.closed.load(Ordering::SeqCst) {
            return;
        }
        this.streak().restarts += 1;
        match launch_once(&this.name, &this.path, &this.config).await {
            Ok(running) => {
                let installed = {
                    let mut slot = this.slot();
                    if matches!(*slot, Slot::Closed) {
                        false
                    } else {
                        *slot = Slot::Running(Arc::clone(&running));
                        true
                    }
                };
                if !installed {
                    stop(&running, Duration::ZERO).await;
                    return;
                }
                this.streak().launched = Instant::now();
                if let Ok(mut info) = this.info.lock() {
                    *info = running.info.clone();
                }
                tracing::info!(plugin = %this.name, restarts = restarts + 1, "plugin restarted");
                supervise(supervisor, &running);
                return;
            }
            Err(error) => {
                last_error = error.message().to_owned();
            }
        }
    }
    let restarts = this.streak().restarts;
    let error = plugin_error(
        &this.name,
        format!(
            "failed: gave up after {restarts} restarts in a row; reload it to try again. Last: {last_error}"
        ),
    );
    tracing::error!(plugin = %this.name, %error, "plugin given up");
    let mut slot = this.slot();
    if !matches!(*slot, Slot::Closed) {
        *slot = Slot::Failed(error);
    }
}
