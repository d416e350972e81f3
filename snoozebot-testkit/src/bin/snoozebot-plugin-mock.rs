//! The mock fleet as a plugin executable, for tests of plugin hosts (ours, or a Go host).
//!
//! Configured through its environment (set by the host, e.g. `PluginConfig::with_env`):
//!
//! | variable | effect |
//! |---|---|
//! | `SNOOZEBOT_MOCK_INSTANCES` | fleet size (default 8), as `MockProvider::fleet` |
//! | `SNOOZEBOT_MOCK_TRANSITION_MS` | how long stop and start take |
//! | `SNOOZEBOT_MOCK_LATENCY_MS` | added latency of every call |
//! | `SNOOZEBOT_MOCK_TAG_BYTES` | adds a `padding` tag of this many bytes to every instance |
//! | `SNOOZEBOT_MOCK_BEFORE_HANDSHAKE` | misbehave first: `garbage` (stray stdout lines), `hang`, `exit`, `bad-handshake` |
//! | `SNOOZEBOT_MOCK_THROTTLE_GETS` | the first N `get_instance` calls answer `Throttled` (retry after 20 ms) |
//! | `SNOOZEBOT_MOCK_CRASH_ONCE` | a file path: the first `get_instance` while it does not exist creates it and aborts mid-call (so the restarted plugin answers) |
//!
//! `get_instance` of `mock-crash` aborts the process mid-call.

use std::process::ExitCode;
use std::time::Duration;

use snoozebot_core::{
    BatchResults, CloudProvider, Error, ErrorKind, InstanceFilter, InstanceId, InstanceInfo,
    ProviderInfo, Result, StateChange, StopOptions, async_trait,
};
use snoozebot_testkit::{MockInstance, MockOperation, MockProvider};

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

/// The mock fleet, plus a way to crash mid-call.
#[derive(Debug)]
struct CrashableFleet(MockProvider);

#[async_trait]
impl CloudProvider for CrashableFleet {
    fn info(&self) -> ProviderInfo {
        self.0.info()
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> {
        if id.as_str() == "mock-crash" {
            eprintln!("[ERROR] asked for mock-crash: aborting mid-call");
            std::process::abort();
        }
        if let Some(marker) = std::env::var_os("SNOOZEBOT_MOCK_CRASH_ONCE")
            && std::fs::File::create_new(&marker).is_ok()
        {
            eprintln!("[ERROR] crashing once, mid-call");
            std::process::abort();
        }
        self.0.get_instance(id).await
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>> {
        self.0.list_instances(filter).await
    }

    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange> {
        self.0.stop_instance(id, opts).await
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> {
        self.0.start_instance(id).await
    }

    async fn stop_instances(&self, ids: &[InstanceId], opts: &StopOptions) -> BatchResults {
        self.0.stop_instances(ids, opts).await
    }

    async fn start_instances(&self, ids: &[InstanceId]) -> BatchResults {
        self.0.start_instances(ids).await
    }
}

fn main() -> ExitCode {
    snoozebot_plugin::init_logging();
    match std::env::var("SNOOZEBOT_MOCK_BEFORE_HANDSHAKE").as_deref() {
        Ok("garbage") => {
            println!("Starting mock plugin...");
            println!("config loaded | 3 keys | ok");
            println!();
        }
        Ok("hang") => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        Ok("exit") => {
            eprintln!("[ERROR] cannot read my configuration: permission denied");
            return ExitCode::from(3);
        }
        Ok("bad-handshake") => {
            println!("2|1|unix|/nonexistent.sock|grpc|");
            std::thread::sleep(Duration::from_secs(3600));
        }
        _ => {}
    }

    let count = env_number("SNOOZEBOT_MOCK_INSTANCES").unwrap_or(8) as usize;
    let mut builder = MockProvider::builder()
        .transition_time(Duration::from_millis(
            env_number("SNOOZEBOT_MOCK_TRANSITION_MS").unwrap_or(0),
        ))
        .record_calls(false);
    let padding = env_number("SNOOZEBOT_MOCK_TAG_BYTES").map(|bytes| "x".repeat(bytes as usize));
    for n in 0..count {
        let idleness = if n % 4 == 0 { "idle" } else { "busy" };
        let mut instance = MockInstance::new(&format!("mock-{n:04}"))
            .name(format!("node-{n:04}"))
            .tag("snoozebot", idleness);
        if let Some(padding) = &padding {
            instance = instance.tag("padding", padding.clone());
        }
        builder = builder.instance(instance);
    }
    let fleet = builder.build();
    if let Some(latency) = env_number("SNOOZEBOT_MOCK_LATENCY_MS") {
        fleet.set_latency(Duration::from_millis(latency));
    }
    if let Some(times) = env_number("SNOOZEBOT_MOCK_THROTTLE_GETS") {
        let throttled = Error::new(ErrorKind::Throttled, "Rate exceeded")
            .with_retry_after(Duration::from_millis(20));
        fleet.fail_next_with(MockOperation::Get, times as usize, throttled);
    }
    let provider = CrashableFleet(fleet);
    tracing::warn!(
        instances = count,
        "mock fleet ready (a warning, so hosts can check levels)"
    );
    snoozebot_plugin::serve(provider)
}
