//! What a plugin costs: call latency through the plugin transport (p50/p99, with and without
//! AutoMTLS, host on a current-thread and on a multi-thread runtime), cold load time (spawn →
//! first answered call), the idle plugin's RSS, and the floor: a raw 64-byte ping-pong between
//! two processes over a unix socket.
//!
//! ```text
//! cargo bench -p snoozebot-testkit --features plugin --bench plugin
//! SNOOZEBOT_BENCH_CALLS=5000 cargo bench -p snoozebot-testkit --features plugin --bench plugin
//! ```
//!
//! The go-plugin baseline runs in the same process tree, alternating with ours: HashiCorp
//! go-plugin's own Go host with a Go plugin, and the Go host with our Rust plugin (the Go
//! programs of `tests/go/src`, built from Debian's go-plugin 1.0.1; `scripts/test` installs it).
//!
//! Goals (issue "Out-of-process plugins"): p50 at least 4x below go-plugin's and within 2x of
//! the raw round trip; cold load ≤ 5 ms plain, ≤ 10 ms with AutoMTLS; idle RSS ≤ 15 MiB.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use snoozebot_core::{CloudProvider, InstanceId};
use snoozebot_plugin::{PluginClient, PluginConfig};

#[path = "../tests/go/mod.rs"]
mod go;

const ECHO_ENV: &str = "SNOOZEBOT_BENCH_ECHO_SOCKET";

fn mock_plugin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-mock"))
}

fn calls() -> usize {
    std::env::var("SNOOZEBOT_BENCH_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let total: Duration = samples.iter().sum();
    println!(
        "{label:<44} p50 {:>8.1} µs   p99 {:>8.1} µs   {:>8.0} calls/s",
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.len() as f64 / total.as_secs_f64()
    );
}

/// The child side of the floor measurement: echo 64-byte messages until the peer hangs up.
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

fn raw_round_trip_floor(calls: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(ECHO_ENV, &path)
        .spawn()
        .unwrap();
    let mut stream = loop {
        match UnixStream::connect(&path) {
            Ok(stream) => break stream,
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    let message = [7u8; 64];
    let mut buffer = [0u8; 64];
    let mut samples = Vec::with_capacity(calls);
    for round in 0..calls + 1000 {
        let started = Instant::now();
        stream.write_all(&message).unwrap();
        stream.read_exact(&mut buffer).unwrap();
        if round >= 1000 {
            samples.push(started.elapsed());
        }
    }
    drop(stream);
    child.wait().unwrap();
    report("raw 64-byte unix socket ping-pong (floor)", samples);
}

async fn warm_calls(label: &str, config: PluginConfig, calls: usize) {
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    let id = InstanceId::new("mock-0001").unwrap();
    for _ in 0..1000 {
        client.get_instance(&id).await.unwrap();
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        client.get_instance(&id).await.unwrap();
        samples.push(started.elapsed());
    }
    report(label, samples);
    client.shutdown().await;
}

async fn cold_loads(label: &str, config: PluginConfig) {
    let id = InstanceId::new("mock-0001").unwrap();
    let mut samples = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let client = PluginClient::launch("mock", mock_plugin(), config.clone())
            .await
            .unwrap();
        client.get_instance(&id).await.unwrap();
        samples.push(started.elapsed());
        client.shutdown().await;
    }
    samples.sort();
    println!(
        "{label:<44} median {:>6.2} ms   min {:>6.2} ms   max {:>6.2} ms",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
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
        "{:<44} {}",
        "idle plugin RSS (8 instances, AutoMTLS)",
        rss.trim_start_matches("VmRSS:").trim()
    );
    client.shutdown().await;
}

/// Runs the Go host in bench mode against `plugin` and prints its numbers.
fn go_baseline(label: &str, plugin: &Path, id: &str, auto_mtls: bool, calls: usize) {
    let programs = go::go_programs();
    let output = std::process::Command::new(&programs.host)
        .arg(plugin)
        .env("BENCH_CALLS", calls.to_string())
        .env("BENCH_COLD", "20")
        .env("BENCH_ID", id)
        .env("AUTO_MTLS", if auto_mtls { "1" } else { "0" })
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Go bench failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |name: &str| -> f64 {
        stdout
            .split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    println!(
        "{label:<44} p50 {:>8.1} µs   p99 {:>8.1} µs   {:>8.0} calls/s   cold {:>6.2} ms",
        field("p50_us="),
        field("p99_us="),
        field("calls_per_s="),
        field("median_ms=")
    );
}

fn main() {
    if let Ok(path) = std::env::var(ECHO_ENV) {
        echo_server(&path);
        return;
    }
    let calls = calls();
    println!("plugin transport, {calls} sequential get_instance calls after 1000 warm-up calls\n");
    raw_round_trip_floor(calls);

    let go_plugin = go::go_programs().plugin.clone();
    go_baseline(
        "go-plugin: Go host + Go plugin, plain",
        &go_plugin,
        "go-0001",
        false,
        calls,
    );
    go_baseline(
        "go-plugin: Go host + Go plugin, AutoMTLS",
        &go_plugin,
        "go-0001",
        true,
        calls,
    );
    go_baseline(
        "go-plugin: Go host + our plugin, plain",
        mock_plugin(),
        "mock-0001",
        false,
        calls,
    );
    go_baseline(
        "go-plugin: Go host + our plugin, AutoMTLS",
        mock_plugin(),
        "mock-0001",
        true,
        calls,
    );
    println!();

    let current_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let plain = PluginConfig::default().with_auto_mtls(false);
    let tls = PluginConfig::default();
    current_thread.block_on(async {
        warm_calls(
            "plugin call, plain, host current_thread",
            plain.clone(),
            calls,
        )
        .await;
        warm_calls(
            "plugin call, AutoMTLS, host current_thread",
            tls.clone(),
            calls,
        )
        .await;
    });
    let multi_thread = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    multi_thread.block_on(async {
        warm_calls(
            "plugin call, plain, host multi_thread",
            plain.clone(),
            calls,
        )
        .await;
        warm_calls(
            "plugin call, AutoMTLS, host multi_thread",
            tls.clone(),
            calls,
        )
        .await;
    });
    println!();
    current_thread.block_on(async {
        cold_loads("cold load (spawn → first answer), plain", plain.clone()).await;
        cold_loads("cold load (spawn → first answer), AutoMTLS", tls.clone()).await;
        idle_rss(tls).await;
    });
}
