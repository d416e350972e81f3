//! When a machine is idle: thresholds per signal, custom probes, and a nap time the machine
//! must stay under them for, with a grace for short busy spells; [`Monitor`] samples on an
//! interval and reports each change.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::gpu::{GpuProbe, GpuReading};
use crate::procfs::{ProcRoot, Rates, Snapshot};

/// What can keep a machine awake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// CPU busy above its threshold.
    Cpu,
    /// Memory in use above its threshold.
    Memory,
    /// Network throughput above its threshold.
    Network,
    /// Disk throughput above its threshold.
    Disk,
    /// Terminal input more recent than its threshold.
    Terminal,
    /// A GPU busy above its threshold, or `nvidia-smi` unreadable.
    Gpu,
    /// A process that keeps the machine awake is running.
    Process(String),
    /// A custom probe said busy.
    Probe(String),
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signal::Cpu => f.write_str("cpu"),
            Signal::Memory => f.write_str("memory"),
            Signal::Network => f.write_str("network"),
            Signal::Disk => f.write_str("disk"),
            Signal::Terminal => f.write_str("terminal"),
            Signal::Gpu => f.write_str("gpu"),
            Signal::Process(name) => write!(f, "process {name}"),
            Signal::Probe(name) => write!(f, "probe {name}"),
        }
    }
}

/// The levels under which each signal counts as idle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// CPU busy, % of all CPUs (default 10).
    pub cpu_percent: f64,
    /// Memory in use, % (default: not a signal).
    pub memory_percent: Option<f64>,
    /// Network bytes a second (default 64 KiB/s).
    pub network_bytes_per_second: f64,
    /// Disk bytes a second (default 1 MiB/s).
    pub disk_bytes_per_second: f64,
    /// Terminal input within this long keeps the machine awake (default 15 minutes).
    pub terminal_input: Duration,
    /// The busiest GPU's utilisation, % (default 10; read only with a [`GpuProbe`]).
    pub gpu_percent: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            cpu_percent: 10.0,
            memory_percent: None,
            network_bytes_per_second: 64.0 * 1024.0,
            disk_bytes_per_second: 1024.0 * 1024.0,
            terminal_input: Duration::from_secs(15 * 60),
            gpu_percent: 10.0,
        }
    }
}

impl Thresholds {
    /// The signals `rates` are over their thresholds in.
    pub fn busy(&self, rates: &Rates) -> Vec<Signal> {
        let mut busy = Vec::new();
        if rates.cpu_percent > self.cpu_percent {
            busy.push(Signal::Cpu);
        }
        if self
            .memory_percent
            .is_some_and(|threshold| rates.memory_percent > threshold)
        {
            busy.push(Signal::Memory);
        }
        if rates.network_bytes_per_second > self.network_bytes_per_second {
            busy.push(Signal::Network);
        }
        if rates.disk_bytes_per_second > self.disk_bytes_per_second {
            busy.push(Signal::Disk);
        }
        if rates
            .since_terminal_input
            .is_some_and(|since| since < self.terminal_input)
        {
            busy.push(Signal::Terminal);
        }
        busy
    }
}

/// A change the tracker reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Every signal has been idle for the nap time.
    Idle {
        /// How long it has been idle.
        idle_for: Duration,
    },
    /// Busy again, for longer than the grace.
    Active {
        /// What is busy.
        busy: Vec<Signal>,
    },
}

/// Is it idle: idle once no signal has been busy for `nap` (busy spells shorter than `grace`
/// do not reset the count), active again once one stays busy for `grace`.
#[derive(Debug, Clone)]
pub struct NapTracker {
    nap: Duration,
    grace: Duration,
    idle_since: Option<Instant>,
    busy_since: Option<Instant>,
    idle: bool,
}

impl NapTracker {
    /// Idle after `nap`; busy spells shorter than `grace` are ignored (`Duration::ZERO`: any
    /// busy sample resets).
    pub fn new(nap: Duration, grace: Duration) -> Self {
        NapTracker {
            nap,
            grace,
            idle_since: None,
            busy_since: None,
            idle: false,
        }
    }

    /// Whether it is idle now.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// Takes a sample at `now`, busy in `busy` (empty: idle); a change is returned.
    pub fn observe(&mut self, now: Instant, busy: Vec<Signal>) -> Option<Event> {
        if busy.is_empty() {
            self.busy_since = None;
            let since = *self.idle_since.get_or_insert(now);
            let idle_for = now.duration_since(since);
            if !self.idle && idle_for >= self.nap {
                self.idle = true;
                return Some(Event::Idle { idle_for });
            }
            return None;
        }
        let busy_since = *self.busy_since.get_or_insert(now);
        if now.duration_since(busy_since) < self.grace {
            // A short spell: the idle count goes on.
            return None;
        }
        self.idle_since = None;
        if self.idle {
            self.idle = false;
            return Some(Event::Active { busy });
        }
        None
    }
}

/// A check of the user's own that can keep the machine awake.
#[derive(Clone)]
pub enum Probe {
    /// A command: exit status 0 means busy. One that fails to start, fails otherwise or
    /// takes longer than `timeout` counts as busy: unsure is awake.
    Command {
        /// Its name in reports.
        name: String,
        /// The program and its arguments.
        argv: Vec<String>,
        /// How long it may take.
        timeout: Duration,
    },
    /// A function of the embedding program: `true` means busy.
    Callback {
        /// Its name in reports.
        name: String,
        /// The check.
        busy: Arc<dyn Fn() -> bool + Send + Sync>,
    },
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Command { name, argv, .. } => f
                .debug_struct("Command")
                .field("name", name)
                .field("argv", argv)
                .finish_non_exhaustive(),
            Probe::Callback { name, .. } => f
                .debug_struct("Callback")
                .field("name", name)
                .finish_non_exhaustive(),
        }
    }
}

impl Probe {
    fn name(&self) -> &str {
        match self {
            Probe::Command { name, .. } | Probe::Callback { name, .. } => name,
        }
    }

    async fn is_busy(&self) -> bool {
        match self {
            Probe::Callback { busy, .. } => busy(),
            Probe::Command { argv, timeout, .. } => {
                let Some((program, args)) = argv.split_first() else {
                    return true;
                };
                let status = tokio::process::Command::new(program)
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .status();
                match tokio::time::timeout(*timeout, status).await {
                    Ok(Ok(status)) => status.success(),
                    _ => true,
                }
            }
        }
    }
}

/// Samples a machine every interval and reports when it becomes idle or active.
#[derive(Debug, Clone)]
pub struct Monitor {
    root: ProcRoot,
    thresholds: Thresholds,
    probes: Vec<Probe>,
    gpu: Option<GpuProbe>,
    processes: Vec<String>,
    interval: Duration,
    tracker: NapTracker,
}

impl Monitor {
    /// Samples `root` every `interval`; idle after `nap` under `thresholds`, ignoring busy
    /// spells shorter than `grace`.
    pub fn new(
        root: ProcRoot,
        thresholds: Thresholds,
        interval: Duration,
        nap: Duration,
        grace: Duration,
    ) -> Self {
        Monitor {
            root,
            thresholds,
            probes: Vec::new(),
            gpu: None,
            processes: Vec::new(),
            interval,
            tracker: NapTracker::new(nap, grace),
        }
    }

    /// Adds a custom probe.
    pub fn with_probe(mut self, probe: Probe) -> Self {
        self.probes.push(probe);
        self
    }

    /// Reads the GPUs with `gpu` on each sample (no GPU: no signal).
    pub fn with_gpu(mut self, gpu: GpuProbe) -> Self {
        self.gpu = Some(gpu);
        self
    }

    /// Keeps the machine awake while a process of one of these names runs (`/proc/PID/comm`:
    /// at most 15 bytes, as `ps -o comm` shows).
    pub fn with_processes(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.processes.extend(names);
        self
    }

    /// What the GPUs and the watched processes say.
    async fn gpu_and_processes(&self, busy: &mut Vec<Signal>) {
        if let Some(gpu) = &self.gpu {
            match gpu.read().await {
                GpuReading::Absent => {}
                GpuReading::Busiest(percent) if percent <= self.thresholds.gpu_percent => {}
                GpuReading::Busiest(_) => busy.push(Signal::Gpu),
                GpuReading::Unreadable => {
                    tracing::debug!("nvidia-smi failed; counting the GPU busy");
                    busy.push(Signal::Gpu);
                }
            }
        }
        if self.processes.is_empty() {
            return;
        }
        match self.root.process_names() {
            Ok(running) => busy.extend(
                self.processes
                    .iter()
                    .filter(|name| running.contains(name.as_str()))
                    .map(|name| Signal::Process(name.clone())),
            ),
            Err(error) => {
                tracing::warn!(%error, "cannot list the processes; counting the machine busy");
                busy.push(Signal::Process("?".to_owned()));
            }
        }
    }

    /// Samples until `shutdown` completes, calling `on_event` on each change. A sample that
    /// cannot be read is logged and counts as busy (unsure is awake).
    pub async fn run(
        mut self,
        mut on_event: impl FnMut(Event),
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut previous: Option<(Snapshot, Instant)> = None;
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            let now = Instant::now();
            let snapshot = match self.root.snapshot() {
                Ok(snapshot) => snapshot,
                Err(error) => {
                    tracing::warn!(%error, "cannot sample the machine; counting it busy");
                    previous = None;
                    if let Some(event) = self
                        .tracker
                        .observe(now, vec![Signal::Probe("sampling".to_owned())])
                    {
                        on_event(event);
                    }
                    continue;
                }
            };
            let Some((before, at)) = previous.replace((snapshot.clone(), now)) else {
                continue;
            };
            let rates = Rates::between(
                &before,
                &snapshot,
                now.duration_since(at),
                SystemTime::now(),
            );
            let mut busy = self.thresholds.busy(&rates);
            self.gpu_and_processes(&mut busy).await;
            for probe in &self.probes {
                if probe.is_busy().await {
                    busy.push(Signal::Probe(probe.name().to_owned()));
                }
            }
            if let Some(event) = self.tracker.observe(now, busy) {
                on_event(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_after_the_nap_and_a_short_spike_does_not_reset_it() {
        let mut tracker = NapTracker::new(Duration::from_secs(60), Duration::from_secs(20));
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        assert_eq!(tracker.observe(at(0), vec![]), None);
        assert_eq!(tracker.observe(at(10), vec![]), None);
        // One busy sample (a spike shorter than the grace): the idle count goes on.
        assert_eq!(tracker.observe(at(20), vec![Signal::Cpu]), None);
        assert_eq!(tracker.observe(at(30), vec![]), None);
        assert_eq!(
            tracker.observe(at(60), vec![]),
            Some(Event::Idle {
                idle_for: Duration::from_secs(60)
            })
        );
        assert!(tracker.is_idle());
        assert_eq!(tracker.observe(at(70), vec![]), None, "idle is said once");
        // Busy for the grace: active again, and the count starts over.
        assert_eq!(tracker.observe(at(80), vec![Signal::Network]), None);
        assert_eq!(
            tracker.observe(at(100), vec![Signal::Network]),
            Some(Event::Active {
                busy: vec![Signal::Network]
            })
        );
        assert_eq!(tracker.observe(at(110), vec![]), None);
        assert_eq!(tracker.observe(at(169), vec![]), None);
        assert!(matches!(
            tracker.observe(at(170), vec![]),
            Some(Event::Idle { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_grace_any_busy_sample_resets_the_count() {
        let mut tracker = NapTracker::new(Duration::from_secs(30), Duration::ZERO);
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        tracker.observe(at(0), vec![]);
        tracker.observe(at(20), vec![Signal::Disk]);
        assert_eq!(tracker.observe(at(40), vec![]), None);
        assert!(matches!(
            tracker.observe(at(70), vec![]),
            Some(Event::Idle { .. })
        ));
    }

    #[tokio::test]
    async fn command_probes_say_busy_on_success_and_when_unsure() {
        let probe = |argv: &[&str], timeout: u64| Probe::Command {
            name: "p".into(),
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            timeout: Duration::from_secs(timeout),
        };
        assert!(probe(&["true"], 5).is_busy().await);
        assert!(!probe(&["false"], 5).is_busy().await);
        assert!(
            probe(&["/nonexistent/probe"], 5).is_busy().await,
            "cannot start: busy"
        );
        assert!(probe(&["sleep", "5"], 0).is_busy().await, "too slow: busy");
        assert!(probe(&[], 5).is_busy().await);
    }
}
