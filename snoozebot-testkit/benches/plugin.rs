//! What a plugin call costs, measured side by side: every setup runs in rounds, interleaved
//! (A, B, C, …, then the next round in a rotated order), and each setup's median of the rounds'
//! p50 and p99 is reported with the floor measured the same way in the same run, the machine's
//! load average before and after, and per call the context switches, write system calls and
//! CPU time of the host and of the plugin (`/proc/PID/task/*/status`, `/proc/PID/io`,
//! `/proc/PID/task/*/schedstat`), so a scheduling regression shows even on a noisy machine.
//! `SNOOZEBOT_BENCH_SETUPS=3` runs only the listed setups (for profiling one).
//! `SNOOZEBOT_BENCH_COLD=0` skips the cold loads and the RSS (`scripts/bench
//! plugin-instructions` counts instructions per call under callgrind that way).
//! `SNOOZEBOT_BENCH_BASELINE_PLUGIN=PATH` adds two setups calling another build of the mock
//! plugin (say, of the commit before a change) from the same host, interleaved with the rest,
//! and alternates its cold loads with the others.
//!
//! ```text
//! cargo bench -p snoozebot-testkit --features plugin --bench plugin
//! SNOOZEBOT_BENCH_CALLS=2500 SNOOZEBOT_BENCH_ROUNDS=8 cargo bench -p snoozebot-testkit --features plugin --bench plugin
//! ```
//!
//! Setups: the floor (a raw 64-byte ping-pong over a unix socket, blocking std); HashiCorp
//! go-plugin's own Go host with a Go plugin (the Go programs of `tests/go/src`, built from
//! Debian's go-plugin 1.0.1; `scripts/test` installs it); our host with our plugin from a
//! current-thread runtime, from a multi-thread runtime's `block_on` (what `#[tokio::main]` runs
//! `main` on), and spawned on a multi-thread worker; and 8 concurrent callers on each runtime
//! and through go-plugin. Then cold loads (spawn → first answer) and the idle plugin's RSS.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use snoozebot_core::{CloudProvider, InstanceId};
use snoozebot_plugin::{PluginClient, PluginConfig};

#[path = "../tests/go/mod.rs"]
mod go;

const ECHO_ENV: &str = "SNOOZEBOT_BENCH_ECHO_SOCKET";
const CONCURRENT_CALLERS: usize = 8;

fn mock_plugin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-mock"))
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Context switches (voluntary + involuntary), write system calls and CPU time of a process
/// so far. (Reads are not counted: socket reads are `recvfrom`, which `/proc/PID/io` skips.)
type Counters = snoozebot_testkit::ProcessCounters;

/// A process's counters per call over a round.
#[derive(Debug, Default, Clone, Copy)]
struct PerCall {
    switches: f64,
    writes: f64,
    cpu_us: f64,
}

impl PerCall {
    fn between(before: Counters, after: Counters, calls: usize) -> PerCall {
        let (switches, writes, cpu_us) = before.per(&after, calls);
        PerCall {
            switches,
            writes,
            cpu_us,
        }
    }
}

/// One round of one setup: latencies (sequential setups), throughput, and per-call counters.
#[derive(Debug, Default)]
struct Round {
    p50_us: f64,
    p99_us: f64,
    calls_per_s: f64,
    host: PerCall,
    plugin: PerCall,
}

impl Round {
    fn from_samples(mut samples: Vec<Duration>, elapsed: Duration) -> Round {
        samples.sort();
        Round {
            p50_us: percentile(&samples, 0.50).as_secs_f64() * 1e6,
            p99_us: percentile(&samples, 0.99).as_secs_f64() * 1e6,
            calls_per_s: samples.len() as f64 / elapsed.as_secs_f64(),
            ..Round::default()
        }
    }

    fn count(
        &mut self,
        calls: usize,
        host: (Counters, Counters),
        plugin: Option<(Counters, Counters)>,
    ) {
        self.host = PerCall::between(host.0, host.1, calls);
        if let Some((before, after)) = plugin {
            self.plugin = PerCall::between(before, after, calls);
        }
    }
}

/// The child side of the floor: echo 64-byte messages until the peer hangs up.
fn echo_server(path: &str) {
    let listener = UnixListener::bind(path).unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    let mut buffer = [0u8; 64];
    while stream.read_exact(&mut buffer).is_ok() {
        if stream.write_all(&buffer).is_err() {
            break;
        }
    }
}

/// The floor: a persistent echo process over a unix socket.
struct Floor {
    child: std::process::Child,
    stream: UnixStream,
    _dir: tempfile::TempDir,
}

impl Floor {
    fn start() -> Floor {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("echo.sock");
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(ECHO_ENV, &path)
            .spawn()
            .unwrap();
        let stream = loop {
            match UnixStream::connect(&path) {
                Ok(stream) => break stream,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        Floor {
            child,
            stream,
            _dir: dir,
        }
    }

    fn round(&mut self, calls: usize) -> Round {
        let message = [7u8; 64];
        let mut buffer = [0u8; 64];
        for _ in 0..200 {
            self.stream.write_all(&message).unwrap();
            self.stream.read_exact(&mut buffer).unwrap();
        }
        let host = Counters::of_self();
        let peer = Counters::of(self.child.id());
        let mut samples = Vec::with_capacity(calls);
        let started = Instant::now();
        for _ in 0..calls {
            let call = Instant::now();
            self.stream.write_all(&message).unwrap();
            self.stream.read_exact(&mut buffer).unwrap();
            samples.push(call.elapsed());
        }
        let mut round = Round::from_samples(samples, started.elapsed());
        round.count(
            calls,
            (host, Counters::of_self()),
            Some((peer, Counters::of(self.child.id()))),
        );
        round
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }
}

/// Runs the Go host in bench mode for one round (it launches its plugin, warms up with 1000
/// calls, then measures) and reads its numbers.
fn go_round(calls: usize, concurrency: usize) -> Round {
    let programs = go::go_programs();
    let output = std::process::Command::new(&programs.host)
        .arg(&programs.plugin)
        .env("BENCH_CALLS", calls.to_string())
        .env("BENCH_COLD", "0")
        .env("BENCH_ID", "go-0001")
        .env("BENCH_CONCURRENCY", concurrency.to_string())
        .env("AUTO_MTLS", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Go bench failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |line: &str, name: &str| -> f64 {
        stdout
            .lines()
            .filter(|l| l.starts_with(line))
            .flat_map(str::split_whitespace)
            .find_map(|word| word.strip_prefix(name)?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Round {
        p50_us: field("bench calls", "p50_us="),
        p99_us: field("bench calls", "p99_us="),
        calls_per_s: if concurrency > 1 {
            field("bench concurrent", "calls_per_s=")
        } else {
            field("bench calls", "calls_per_s=")
        },
        ..Round::default()
    }
}

/// Sequential calls on `client` from the current task.
async fn sequential(client: &PluginClient, calls: usize) -> Round {
    let id = InstanceId::new("mock-0001").unwrap();
    for _ in 0..200 {
        client.get_instance(&id).await.unwrap();
    }
    let plugin = client.pid().unwrap();
    let (host_before, plugin_before) = (Counters::of_self(), Counters::of(plugin));
    let mut samples = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let call = Instant::now();
        client.get_instance(&id).await.unwrap();
        samples.push(call.elapsed());
    }
    let mut round = Round::from_samples(samples, started.elapsed());
    round.count(
        calls,
        (host_before, Counters::of_self()),
        Some((plugin_before, Counters::of(plugin))),
    );
    round
}

/// `CONCURRENT_CALLERS` tasks calling at once, `calls` in all: throughput.
async fn concurrent(client: &Arc<PluginClient>, calls: usize) -> Round {
    let per_caller = calls / CONCURRENT_CALLERS;
    let plugin = client.pid().unwrap();
    let (host_before, plugin_before) = (Counters::of_self(), Counters::of(plugin));
    let started = Instant::now();
    let callers: Vec<_> = (0..CONCURRENT_CALLERS)
        .map(|_| {
            let client = Arc::clone(client);
            tokio::spawn(async move {
                let id = InstanceId::new("mock-0001").unwrap();
                for _ in 0..per_caller {
                    client.get_instance(&id).await.unwrap();
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let elapsed = started.elapsed();
    let total = per_caller * CONCURRENT_CALLERS;
    let mut round = Round {
        calls_per_s: total as f64 / elapsed.as_secs_f64(),
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        ..Round::default()
    };
    round.count(
        total,
        (host_before, Counters::of_self()),
        Some((plugin_before, Counters::of(plugin))),
    );
    round
}

const SETUPS: [&str; 10] = [
    "floor: raw 64-byte unix ping-pong, blocking std",
    "go-plugin 1.0.1: Go host + Go plugin",
    "ours: current-thread caller",
    "ours: #[tokio::main] caller (multi-thread block_on)",
    "ours: caller spawned on a multi-thread worker",
    "go-plugin: 8 concurrent callers",
    "ours: 8 concurrent callers, current-thread",
    "ours: 8 concurrent callers, multi-thread",
    "baseline plugin: current-thread caller",
    "baseline plugin: 8 concurrent callers, current-thread",
];
/// The setups that need `SNOOZEBOT_BENCH_BASELINE_PLUGIN`.
const BASELINE_SETUPS: [usize; 2] = [8, 9];

/// Cold loads of `plugins` (a label and an executable each), alternating between them, 20
/// each: the median, minimum and maximum of each.
async fn cold_loads(kind: &str, config: PluginConfig, plugins: &[(&str, &Path)]) {
    let id = InstanceId::new("mock-0001").unwrap();
    let mut samples = vec![Vec::new(); plugins.len()];
    for _ in 0..20 {
        for (samples, (_, path)) in samples.iter_mut().zip(plugins) {
            let started = Instant::now();
            let client = PluginClient::launch("mock", path, config.clone())
                .await
                .unwrap();
            client.get_instance(&id).await.unwrap();
            samples.push(started.elapsed());
            client.shutdown().await;
        }
    }
    for (mut samples, (name, _)) in samples.into_iter().zip(plugins) {
        samples.sort();
        println!(
            "{:<52} median {:>6.2} ms   min {:>6.2} ms   max {:>6.2} ms",
            format!("cold load (spawn → first answer), {kind}{name}"),
            percentile(&samples, 0.5).as_secs_f64() * 1e3,
            samples[0].as_secs_f64() * 1e3,
            samples[samples.len() - 1].as_secs_f64() * 1e3
        );
    }
}

async fn idle_rss(config: PluginConfig) {
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    client
        .get_instance(&InstanceId::new("mock-0001").unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", client.pid().unwrap())).unwrap();
    let rss = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: unknown");
    println!(
        "{:<52} {}",
        "idle plugin RSS (8 instances, AutoMTLS)",
        rss.trim_start_matches("VmRSS:").trim()
    );
    client.shutdown().await;
}

fn main() {
    if let Ok(path) = std::env::var(ECHO_ENV) {
        echo_server(&path);
        return;
    }
    let calls = env_number("SNOOZEBOT_BENCH_CALLS", 2500);
    let rounds = env_number("SNOOZEBOT_BENCH_ROUNDS", 8);
    println!(
        "plugin calls: {rounds} interleaved rounds of {calls} get_instance calls per setup (rotating order), \
         medians across rounds; {} cores; load average before: {}\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        snoozebot_testkit::load_average()
    );

    let current_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // What #[tokio::main] builds: a worker per core.
    let multi_thread = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let plain = PluginConfig::default().with_auto_mtls(false);
    let on_current = Arc::new(
        current_thread
            .block_on(PluginClient::launch("mock", mock_plugin(), plain.clone()))
            .unwrap(),
    );
    let on_multi = Arc::new(
        multi_thread
            .block_on(PluginClient::launch("mock", mock_plugin(), plain.clone()))
            .unwrap(),
    );
    let baseline_path = std::env::var_os("SNOOZEBOT_BENCH_BASELINE_PLUGIN").map(PathBuf::from);
    let baseline = baseline_path.as_ref().map(|path| {
        Arc::new(
            current_thread
                .block_on(PluginClient::launch("mock", path, plain.clone()))
                .unwrap(),
        )
    });
    let mut floor = Floor::start();
    // For profiling one setup: SNOOZEBOT_BENCH_SETUPS=3 (indices into the table, comma-separated).
    let only: Option<Vec<usize>> = std::env::var("SNOOZEBOT_BENCH_SETUPS").ok().map(|list| {
        list.split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect()
    });

    let mut results: Vec<Vec<Round>> = (0..SETUPS.len()).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for step in 0..SETUPS.len() {
            let setup = (step + round) % SETUPS.len();
            if !only.as_ref().is_none_or(|only| only.contains(&setup))
                || (baseline.is_none() && BASELINE_SETUPS.contains(&setup))
            {
                continue;
            }
            let measured = match setup {
                0 => floor.round(calls),
                1 => go_round(calls, 1),
                2 => current_thread.block_on(sequential(&on_current, calls)),
                3 => multi_thread.block_on(sequential(&on_multi, calls)),
                4 => {
                    let client = Arc::clone(&on_multi);
                    multi_thread
                        .block_on(
                            multi_thread.spawn(async move { sequential(&client, calls).await }),
                        )
                        .unwrap()
                }
                5 => go_round(calls, CONCURRENT_CALLERS),
                6 => current_thread.block_on(concurrent(&on_current, calls)),
                7 => multi_thread.block_on(concurrent(&on_multi, calls)),
                8 => current_thread.block_on(sequential(baseline.as_ref().unwrap(), calls)),
                _ => current_thread.block_on(concurrent(baseline.as_ref().unwrap(), calls)),
            };
            results[setup].push(measured);
        }
    }

    let floor_p50 = median(&mut results[0].iter().map(|r| r.p50_us).collect::<Vec<_>>());
    let go_p50 = median(&mut results[1].iter().map(|r| r.p50_us).collect::<Vec<_>>());
    let go_concurrent = median(&mut results[5].iter().map(|r| r.calls_per_s).collect::<Vec<_>>());
    println!(
        "{:<52} {:>8} {:>8} {:>6} {:>6} {:>10} {:>10} {:>16} {:>16}",
        "setup",
        "p50 µs",
        "p99 µs",
        "/floor",
        "/go",
        "calls/s",
        "slowest",
        "host sw/wr/cpu",
        "plugin sw/wr/cpu"
    );
    for (setup, rounds) in results.iter().enumerate() {
        let pick =
            |f: &dyn Fn(&Round) -> f64| median(&mut rounds.iter().map(f).collect::<Vec<_>>());
        let p50 = pick(&|r| r.p50_us);
        let calls_per_s = pick(&|r| r.calls_per_s);
        if rounds.is_empty() {
            continue;
        }
        // The median hides a stall in fewer than half the rounds; the slowest round shows it.
        let slowest = rounds
            .iter()
            .map(|r| r.calls_per_s)
            .fold(f64::INFINITY, f64::min);
        let relative = if setup == 5 || setup == 6 || setup == 7 || setup == 9 {
            format!("{:>6} {:>6.2}", "", calls_per_s / go_concurrent)
        } else {
            format!("{:>6.2} {:>6.2}", p50 / floor_p50, p50 / go_p50)
        };
        let counted = |side: fn(&Round) -> PerCall| {
            if setup == 1 || setup == 5 {
                "—".to_owned()
            } else {
                let switches = pick(&|r| side(r).switches);
                format!(
                    "{switches:.1}/{:.1}/{:.1}",
                    pick(&|r| side(r).writes),
                    pick(&|r| side(r).cpu_us)
                )
            }
        };
        println!(
            "{:<52} {:>8.1} {:>8.1} {relative} {:>10.0} {:>10.0} {:>16} {:>16}",
            SETUPS[setup],
            p50,
            pick(&|r| r.p99_us),
            calls_per_s,
            slowest,
            counted(|r| r.host),
            counted(|r| r.plugin),
        );
    }
    println!(
        "\n(/floor and /go: p50 over the floor's and go-plugin's; for 8 callers, throughput over \
         go-plugin's with 8. slowest: the calls/s of the slowest round. sw/wr/cpu: context switches / write system calls / CPU µs per call, \
         all threads.)\n\
         load average after: {}\n",
        snoozebot_testkit::load_average()
    );
    drop(floor);
    // Asked to exit, the plugins end as their `main` returns (so a profiler sees them finish).
    current_thread.block_on(on_current.shutdown());
    multi_thread.block_on(on_multi.shutdown());
    if let Some(baseline) = &baseline {
        current_thread.block_on(baseline.shutdown());
    }

    if std::env::var("SNOOZEBOT_BENCH_COLD").as_deref() == Ok("0") {
        return;
    }
    let tls = PluginConfig::default();
    current_thread.block_on(async {
        let mut plugins = vec![("", mock_plugin())];
        if let Some(path) = &baseline_path {
            plugins.push((", baseline", path.as_path()));
        }
        cold_loads("plain", plain.clone(), &plugins).await;
        cold_loads("AutoMTLS", tls.clone(), &plugins).await;
        idle_rss(tls).await;
    });
}
