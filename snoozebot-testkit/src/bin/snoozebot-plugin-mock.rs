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
//! | `SNOOZEBOT_MOCK_BEFORE_HANDSHAKE` | misbehave first: `garbage` (stray stdout lines), `hang`, `exit`, `bad-handshake`, `flood-stdout` (1 GiB without a newline, then hang) |
//! | `SNOOZEBOT_MOCK_STDERR_FLOOD` | before serving, writes a stderr line of this many bytes without a newline until the last, then a line of bytes that are not UTF-8 |
//! | `SNOOZEBOT_MOCK_EXIT_AFTER_MS` | exits (status 7) this long after it starts: a crash loop |
//! | `SNOOZEBOT_MOCK_START_LOG` | a file path: each start appends a line with the time in milliseconds since the epoch |
//! | `SNOOZEBOT_MOCK_PROBE_PARENT` | a file path: at start, tries to read its host's `/proc/PPID/environ` and writes `readable N` (bytes) or `denied ERROR` there |
//! | `SNOOZEBOT_MOCK_NO_PARENT_WATCH` | serves without polling for its host's death (a day between checks): only the host's parent-death signal ends it with its host |
//! | `SNOOZEBOT_MOCK_LOG_GETS` | `1`: every `get_instance` writes `[WARN] get_instance ID` to stderr |
//! | `SNOOZEBOT_MOCK_THROTTLE_GETS` | the first N `get_instance` calls answer `Throttled` (retry after 20 ms) |
//! | `SNOOZEBOT_MOCK_CRASH_ONCE` | a file path: the first `get_instance` while it does not exist creates it and aborts mid-call (so the restarted plugin answers) |
//!
//! `get_instance` of `mock-crash` aborts the process mid-call.

use std::process::ExitCode;
use std::sync::Arc;
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
        if std::env::var_os("SNOOZEBOT_MOCK_LOG_GETS").is_some() {
            eprintln!("[WARN] get_instance {id}");
        }
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

/// Writes `count` copies of `byte`, in chunks, without a newline.
fn write_bytes(out: &mut impl std::io::Write, count: usize, byte: u8) -> std::io::Result<()> {
    let chunk = vec![byte; 64 * 1024];
    let mut left = count;
    while left > 0 {
        let n = left.min(chunk.len());
        out.write_all(&chunk[..n])?;
        left -= n;
    }
    out.flush()
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
        Ok("flood-stdout") => {
            // Stops with a broken pipe once the host gives up reading.
            let _ = write_bytes(&mut std::io::stdout(), 1 << 30, b'x');
            std::thread::sleep(Duration::from_secs(3600));
        }
        _ => {}
    }
    if let Some(path) = std::env::var_os("SNOOZEBOT_MOCK_START_LOG") {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| {
                std::io::Write::write_all(&mut file, format!("{millis}\n").as_bytes())
            });
        if let Err(error) = appended {
            eprintln!("[ERROR] cannot log my start: {error}");
        }
    }
    if let Some(report) = std::env::var_os("SNOOZEBOT_MOCK_PROBE_PARENT") {
        let parent = std::os::unix::process::parent_id();
        let outcome = match std::fs::read(format!("/proc/{parent}/environ")) {
            Ok(environ) => format!("readable {}", environ.len()),
            Err(error) => format!("denied {error}"),
        };
        if let Err(error) = std::fs::write(report, outcome) {
            eprintln!("[ERROR] cannot write my probe report: {error}");
        }
    }
    if let Some(after) = env_number("SNOOZEBOT_MOCK_EXIT_AFTER_MS") {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(after));
            eprintln!("[ERROR] exiting {after} ms after my start, as configured");
            std::process::exit(7);
        });
    }
    if let Some(bytes) = env_number("SNOOZEBOT_MOCK_STDERR_FLOOD") {
        let mut stderr = std::io::stderr();
        let _ = write_bytes(&mut stderr, bytes as usize, b'x');
        let _ = std::io::Write::write_all(&mut stderr, b"\n[WARN] not UTF-8: \xff\xfe\xc3\n");
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
    if std::env::var_os("SNOOZEBOT_MOCK_NO_PARENT_WATCH").is_some() {
        // Only the host's parent-death signal is left to end it with its host.
        let mut config = snoozebot_plugin::ServeConfig::default();
        config.parent_check_interval = Duration::from_secs(24 * 60 * 60);
        return match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                runtime.block_on(snoozebot_plugin::serve_with(Arc::new(provider), config))
            }
            Err(_) => ExitCode::FAILURE,
        };
    }
    snoozebot_plugin::serve(provider)
}
