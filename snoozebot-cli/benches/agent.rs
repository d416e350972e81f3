//! The agent's footprint: `snoozebot agent run` (self mode, on the in-memory mock provider,
//! sampling this machine's live `/proc`) measured from outside — CPU time of all its threads
//! and resident memory (`VmRSS`, peak `VmHWM`).
//!
//! Two setups, interleaved: sampling every 10 s (the default; the target is under 0.5 % of one
//! core and under 10 MiB), and every 100 ms (to measure one sample's cost precisely). The
//! counters are `snoozebot_testkit::ProcessCounters`.
//!
//! `cargo bench -p snoozebot-cli --bench agent`; `SNOOZEBOT_BENCH_SECONDS` (default 60) is how
//! long each setup is watched, `SNOOZEBOT_BENCH_ROUNDS` (default 2) how often each runs.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use snoozebot_testkit::ProcessCounters;

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, interval: &str) -> Agent {
    std::fs::write(
        dir.join("snoozebot.toml"),
        format!(
            "[providers.fleet]\nkind = \"mock\"\n\n[agent]\nprovider = \"fleet\"\ninstance = \"mock-0001\"\ninterval = \"{interval}\"\nnap = \"24h\"\npostpone_file = \"postpone\"\n\n[log]\nlevel = \"warn\"\n"
        ),
    )
    .unwrap();
    Agent(
        Command::new(env!("CARGO_BIN_EXE_snoozebot"))
            .current_dir(dir)
            .args(["agent", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

struct Measured {
    cpu_percent: f64,
    per_sample_us: f64,
    rss_kib: u64,
    peak_kib: u64,
}

fn measure(interval: Duration, label: &str, watch: Duration) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(dir.path(), label);
    let pid = agent.0.id();
    // Past start-up (loading the provider, the first samples).
    std::thread::sleep(Duration::from_secs(3));
    let (before, at) = (ProcessCounters::of(pid), Instant::now());
    std::thread::sleep(watch);
    let (after, elapsed) = (ProcessCounters::of(pid), at.elapsed());
    let used = after.cpu_ns.saturating_sub(before.cpu_ns) as f64;
    let samples = (elapsed.as_secs_f64() / interval.as_secs_f64()).max(1.0);
    Measured {
        cpu_percent: used / elapsed.as_nanos() as f64 * 100.0,
        per_sample_us: used / samples / 1000.0,
        rss_kib: after.rss_kib,
        peak_kib: after.peak_rss_kib,
    }
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        println!("agent: bench");
        return;
    }
    let seconds: u64 = std::env::var("SNOOZEBOT_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let rounds: usize = std::env::var("SNOOZEBOT_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let watch = Duration::from_secs(seconds);
    println!(
        "snoozebot agent run, self mode, live /proc; {rounds} rounds of {seconds} s per setup, interleaved; load {}",
        snoozebot_testkit::load_average()
    );
    println!(
        "{:<10} {:>8} {:>14} {:>10} {:>10}",
        "interval", "cpu %", "µs/sample", "RSS MiB", "peak MiB"
    );
    for _ in 0..rounds {
        for (interval, label) in [
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(100), "100ms"),
        ] {
            let m = measure(interval, label, watch);
            println!(
                "{:<10} {:>8.3} {:>14.1} {:>10.2} {:>10.2}",
                label,
                m.cpu_percent,
                m.per_sample_us,
                m.rss_kib as f64 / 1024.0,
                m.peak_kib as f64 / 1024.0
            );
        }
    }
    println!(
        "targets at 10s: cpu under 0.5 % of one core, RSS under 10 MiB; load now {}",
        snoozebot_testkit::load_average()
    );
}
