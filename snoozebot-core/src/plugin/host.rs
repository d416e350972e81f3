//! The host side: launch a plugin executable, speak to it, keep it alive, stop it.
//!
//! A [`PluginClient`] is a [`CloudProvider`] whose calls go to a plugin process. It supervises
//! the process: when it exits or stops answering health checks, calls in flight fail at once
//! with [`ErrorKind::Plugin`], calls meanwhile fail fast the same way, and the plugin is started
//! again with backoff, a bounded number of times in a row. Dropping the client kills the
//! plugin's whole process group.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::MAX_MESSAGE_SIZE;
use super::convert::{
    batch_from_wire, change_from_wire, filter_to_wire, info_from_wire, instance_from_wire,
    options_to_wire, status_to_error,
};
use super::handshake::{
    APP_PROTOCOL_VERSION, CLIENT_CERT_ENV, Handshake, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE,
    PROTOCOL_VERSIONS_ENV, PluginAddress, versions_env_value,
};
use super::proto::go_plugin::{self, grpc_controller_client::GrpcControllerClient};
use super::proto::v1::{self as pb, cloud_provider_client::CloudProviderClient};
use super::serve::Io;
use super::tls::{LaunchIdentity, TLS_SERVER_NAME};
use super::trust::TrustPolicy;
use crate::error::{Error, ErrorKind, Result};
use crate::manager::Health;
use crate::model::{
    InstanceFilter, InstanceId, InstanceInfo, ProviderInfo, StateChange, StopOptions,
};
use crate::provider::{BatchResults, CloudProvider};

/// Environment variables a plugin inherits from the host by default; everything else is
/// cleared. Add a cloud's own (`AWS_*`, `GOOGLE_*`, `AZURE_*`) with
/// [`PluginConfig::inherit`].
pub const DEFAULT_INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "TZ",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "SNOOZEBOT_PLUGIN_LOG",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// How to launch and supervise a plugin executable.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PluginConfig {
    /// How long the plugin may take from spawn to its handshake and first answer. Default 10 s.
    pub start_timeout: Duration,
    /// Per-launch mutual TLS between host and plugin, each pinning the other's certificate.
    /// Default on.
    pub auto_mtls: bool,
    /// The app protocol versions this host speaks. Default: [`APP_PROTOCOL_VERSION`].
    pub app_versions: Vec<u32>,
    /// After asking the plugin to exit, how long to wait before killing its process group.
    /// Default 2 s (go-plugin's).
    pub shutdown_grace: Duration,
    /// How often to check the plugin's health; `None` disables the checks (a crash is still
    /// noticed at once). Default 5 s.
    pub health_check_interval: Option<Duration>,
    /// How long a health check may take before the plugin counts as hung. Default 2 s.
    pub health_check_timeout: Duration,
    /// Attempts to restart the plugin after it stopped unexpectedly, before giving up.
    /// Default 5.
    pub max_restarts: u32,
    /// The backoff before the first restart, doubling up to 10 s. Default 200 ms.
    pub restart_backoff: Duration,
    /// Names of host environment variables the plugin inherits; a trailing `*` matches a prefix
    /// (`AWS_*`). Default: [`DEFAULT_INHERITED_ENV`].
    pub inherit_env: Vec<String>,
    /// Extra environment variables for the plugin (its configuration).
    pub env: Vec<(String, String)>,
    /// What the binary must be to run: SHA-256 pin, minisign signature. Default: anything.
    pub trust: TrustPolicy,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            start_timeout: Duration::from_secs(10),
            auto_mtls: true,
            app_versions: vec![APP_PROTOCOL_VERSION],
            shutdown_grace: Duration::from_secs(2),
            health_check_interval: Some(Duration::from_secs(5)),
            health_check_timeout: Duration::from_secs(2),
            max_restarts: 5,
            restart_backoff: Duration::from_millis(200),
            inherit_env: DEFAULT_INHERITED_ENV
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            env: Vec::new(),
            trust: TrustPolicy::default(),
        }
    }
}

impl PluginConfig {
    /// Sets the start timeout.
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Turns AutoMTLS on or off.
    pub fn with_auto_mtls(mut self, auto_mtls: bool) -> Self {
        self.auto_mtls = auto_mtls;
        self
    }

    /// Sets the app protocol versions this host speaks.
    pub fn with_app_versions(mut self, versions: impl Into<Vec<u32>>) -> Self {
        self.app_versions = versions.into();
        self
    }

    /// Sets the health-check interval (`None`: no periodic checks).
    pub fn with_health_check_interval(mut self, interval: Option<Duration>) -> Self {
        self.health_check_interval = interval;
        self
    }

    /// Sets how many restarts in a row are tried, and the first backoff.
    pub fn with_restarts(mut self, max_restarts: u32, backoff: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.restart_backoff = backoff;
        self
    }

    /// Lets the plugin inherit one more host variable (a trailing `*` matches a prefix).
    pub fn inherit(mut self, name: impl Into<String>) -> Self {
        self.inherit_env.push(name.into());
        self
    }

    /// Sets an environment variable for the plugin.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the trust policy the binary is checked against before it runs.
    pub fn with_trust(mut self, trust: TrustPolicy) -> Self {
        self.trust = trust;
        self
    }

    fn inherits(&self, name: &str) -> bool {
        self.inherit_env
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
    }
}

fn plugin_error(name: &str, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Plugin, format!("plugin {name}: {message}")).with_provider(name)
}

/// The last lines a plugin wrote to stderr, for error messages.
#[derive(Default)]
struct StderrTail {
    lines: Mutex<VecDeque<String>>,
}

impl StderrTail {
    const KEPT: usize = 20;

    fn push(&self, line: &str) {
        let mut lines = match self.lines.lock() {
            Ok(lines) => lines,
            Err(poisoned) => poisoned.into_inner(),
        };
        if lines.len() == Self::KEPT {
            lines.pop_front();
        }
        lines.push_back(line.to_owned());
    }

    fn describe(&self) -> String {
        let lines = match self.lines.lock() {
            Ok(lines) => lines,
            Err(poisoned) => poisoned.into_inner(),
        };
        if lines.is_empty() {
            "it wrote nothing to stderr".to_owned()
        } else {
            let joined: Vec<&str> = lines.iter().map(String::as_str).collect();
            format!("its stderr ended with:\n{}", joined.join("\n"))
        }
    }
}

/// A running plugin process; dropping it kills the process group.
struct ProcessGuard {
    name: String,
    group: Pid,
    exited: watch::Receiver<Option<String>>,
    /// The private socket directory of a Snoozebot plugin, which a killed plugin cannot remove
    /// itself.
    socket_dir: Mutex<Option<PathBuf>>,
}

impl ProcessGuard {
    fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    fn kill_group(&self) {
        match killpg(self.group, Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(error) => {
                tracing::warn!(plugin = %self.name, %error, "cannot kill the plugin's process group")
            }
        }
    }

    /// Waits until the process has exited and been reaped, at most `limit`.
    async fn wait_exit(&self, limit: Duration) -> bool {
        let mut exited = self.exited.clone();
        tokio::time::timeout(limit, exited.wait_for(Option::is_some))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        // The group outlives its leader if the plugin started children: kill it in any case.
        self.kill_group();
        let socket_dir = match self.socket_dir.get_mut() {
            Ok(dir) => dir.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(dir) = socket_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The directory to clean up after a plugin: only the private directories Snoozebot plugins
/// create (`snoozebot-plugin-*`), never anything else a plugin may have named.
fn owned_socket_dir(address: &PluginAddress) -> Option<PathBuf> {
    let PluginAddress::Unix(socket) = address else {
        return None;
    };
    let dir = socket.parent()?;
    let name = dir.file_name()?.to_str()?;
    name.starts_with("snoozebot-plugin-")
        .then(|| dir.to_owned())
}

/// One launch of the plugin: its process and the clients of its services.
struct Running {
    process: ProcessGuard,
    provider: CloudProviderClient<Connection>,
    controller: GrpcControllerClient<Connection>,
    health: HealthClient<Connection>,
    info: ProviderInfo,
    address: PluginAddress,
}

/// One HTTP/2 connection to the plugin, used directly as the clients' transport.
///
/// tonic's `Channel` would add a buffer task between each call and the connection (a task
/// hop per call, which costs more than the call itself on a busy multi-threaded runtime) and
/// reconnect logic that supervision makes redundant: a broken connection means a broken
/// plugin, which is restarted with a new connection.
#[derive(Clone)]
struct Connection {
    sender: hyper::client::conn::http2::SendRequest<tonic::body::Body>,
}

impl tower::Service<http::Request<tonic::body::Body>> for Connection {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        futures_util::future::BoxFuture<'static, std::result::Result<Self::Response, hyper::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), hyper::Error>> {
        self.sender.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.sender.send_request(request))
    }
}

/// The origin every request names: the connection decides where it goes.
const ORIGIN: &str = "http://plugin.invalid";

enum Slot {
    Running(Arc<Running>),
    Restarting,
    Failed(Error),
    Closed,
}

struct Supervisor {
    name: String,
    path: PathBuf,
    config: PluginConfig,
    slot: Mutex<Slot>,
    /// The info of the last launch, so `info()` answers while the plugin restarts.
    info: Mutex<ProviderInfo>,
    closed: AtomicBool,
}

impl Supervisor {
    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        match self.slot.lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn running(&self) -> Result<Arc<Running>> {
        match &*self.slot() {
            Slot::Running(running) => Ok(Arc::clone(running)),
            Slot::Restarting => Err(plugin_error(
                &self.name,
                "it stopped unexpectedly and is being restarted; try again shortly",
            )),
            Slot::Failed(error) => Err(error.clone()),
            Slot::Closed => Err(plugin_error(&self.name, "it has been unloaded")),
        }
    }
}

/// A provider served by a plugin executable, supervised.
///
/// When the plugin exits or stops answering health checks, calls in flight fail at once with
/// [`ErrorKind::Plugin`], calls meanwhile fail fast the same way, and the plugin is started
/// again with backoff, up to [`PluginConfig::max_restarts`] times in a row. Dropping the last
/// handle kills the plugin's whole process group; [`shutdown`](Self::shutdown) stops it
/// gracefully.
#[derive(Clone)]
pub struct PluginClient {
    supervisor: Arc<Supervisor>,
}

impl std::fmt::Debug for PluginClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginClient")
            .field("name", &self.supervisor.name)
            .field("path", &self.supervisor.path)
            .finish_non_exhaustive()
    }
}

impl PluginClient {
    /// Checks the binary against `config.trust`, starts it, completes the handshake and asks
    /// it who it is, all within `config.start_timeout`.
    ///
    /// Every failure is [`ErrorKind::Plugin`] (or [`ErrorKind::PermissionDenied`] for a binary
    /// the trust policy refuses), and leaves no process behind.
    pub async fn launch(name: &str, path: &Path, config: PluginConfig) -> Result<Self> {
        let running = launch_once(name, path, &config).await?;
        let supervisor = Arc::new(Supervisor {
            name: name.to_owned(),
            path: path.to_owned(),
            info: Mutex::new(running.info.clone()),
            config,
            slot: Mutex::new(Slot::Running(Arc::clone(&running))),
            closed: AtomicBool::new(false),
        });
        supervise(Arc::downgrade(&supervisor), &running);
        Ok(PluginClient { supervisor })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.supervisor.name
    }

    /// The process id of the running plugin, if it is running.
    pub fn pid(&self) -> Option<u32> {
        match &*self.supervisor.slot() {
            Slot::Running(running) => u32::try_from(running.process.group.as_raw()).ok(),
            _ => None,
        }
    }

    /// Where the running plugin listens, from its handshake.
    pub fn address(&self) -> Option<PluginAddress> {
        match &*self.supervisor.slot() {
            Slot::Running(running) => Some(running.address.clone()),
            _ => None,
        }
    }

    /// Asks the plugin's health service whether it is serving.
    pub async fn health(&self) -> Health {
        let running = match self.supervisor.running() {
            Ok(running) => running,
            Err(error) => {
                return Health::NotServing {
                    reason: error.message().to_owned(),
                };
            }
        };
        match check_health(&running, self.supervisor.config.health_check_timeout).await {
            Ok(()) => Health::Serving,
            Err(reason) => Health::NotServing { reason },
        }
    }

    /// Stops the plugin: asks it to exit (`GRPCController/Shutdown`), waits the grace period,
    /// then kills its process group and reaps it. Calls afterwards fail with
    /// [`ErrorKind::Plugin`].
    pub async fn shutdown(&self) {
        self.supervisor.closed.store(true, Ordering::SeqCst);
        let previous = std::mem::replace(&mut *self.supervisor.slot(), Slot::Closed);
        if let Slot::Running(running) = previous {
            stop(&running, self.supervisor.config.shutdown_grace).await;
        }
    }

    /// Kills the plugin's process group now, without asking it to exit first; calls
    /// afterwards fail with [`ErrorKind::Plugin`]. For drop paths, where nothing can be awaited.
    pub fn kill_now(&self) {
        self.supervisor.closed.store(true, Ordering::SeqCst);
        let previous = std::mem::replace(&mut *self.supervisor.slot(), Slot::Closed);
        if let Slot::Running(running) = previous {
            running.process.kill_group();
        }
    }

    fn error(&self, status: tonic::Status) -> Error {
        let error = status_to_error(&status);
        if error.provider().is_some() {
            error
        } else {
            error.with_provider(self.supervisor.name.clone())
        }
    }
}

async fn stop(running: &Running, grace: Duration) {
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

async fn check_health(running: &Running, limit: Duration) -> std::result::Result<(), String> {
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
fn supervise(supervisor: Weak<Supervisor>, running: &Arc<Running>) {
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

async fn restart(supervisor: Weak<Supervisor>, crashed: Weak<Running>, reason: String) {
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
        *slot = Slot::Restarting;
    }
    tracing::warn!(plugin = %this.name, %reason, "plugin stopped unexpectedly; restarting");
    let mut backoff = this.config.restart_backoff;
    let mut attempt = 0;
    let mut last_error;
    loop {
        attempt += 1;
        tokio::time::sleep(backoff).await;
        if this.closed.load(Ordering::SeqCst) {
            return;
        }
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
                if let Ok(mut info) = this.info.lock() {
                    *info = running.info.clone();
                }
                tracing::info!(plugin = %this.name, attempt, "plugin restarted");
                supervise(supervisor, &running);
                return;
            }
            Err(error) => {
                tracing::warn!(plugin = %this.name, attempt, %error, "restarting the plugin failed");
                last_error = error;
            }
        }
        if attempt >= this.config.max_restarts {
            break;
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    let error = plugin_error(
        &this.name,
        format!("gave up after {attempt} restarts: {}", last_error.message()),
    );
    let mut slot = this.slot();
    if !matches!(*slot, Slot::Closed) {
        *slot = Slot::Failed(error);
    }
}

/// Starts the plugin once: trust check, spawn, handshake, connect, `Info`.
async fn launch_once(name: &str, path: &Path, config: &PluginConfig) -> Result<Arc<Running>> {
    config.trust.verify(path).await?;
    let started = Instant::now();
    let identity = if config.auto_mtls {
        Some(LaunchIdentity::generate()?)
    } else {
        None
    };

    let mut command = Command::new(path);
    command
        .env_clear()
        .envs(
            std::env::vars_os()
                .filter(|(key, _)| key.to_str().is_some_and(|key| config.inherits(key))),
        )
        .envs(
            config
                .env
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env(
            PROTOCOL_VERSIONS_ENV,
            versions_env_value(&config.app_versions),
        )
        .env("PLUGIN_MIN_PORT", "10000")
        .env("PLUGIN_MAX_PORT", "25000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(identity) = &identity {
        command.env(CLIENT_CERT_ENV, &identity.cert_pem);
    }
    let mut child = command
        .spawn()
        .map_err(|error| plugin_error(name, format!("cannot start {}: {error}", path.display())))?;
    let pid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .ok_or_else(|| plugin_error(name, "it exited before it could be watched"))?;
    let (stdout, stderr) = match (child.stdout.take(), child.stderr.take()) {
        (Some(stdout), Some(stderr)) => (stdout, stderr),
        _ => {
            return Err(plugin_error(
                name,
                "its stdout and stderr could not be captured",
            ));
        }
    };
    let tail = Arc::new(StderrTail::default());
    forward_stderr(name.to_owned(), stderr, Arc::clone(&tail));
    let process = ProcessGuard {
        name: name.to_owned(),
        group: Pid::from_raw(pid),
        exited: reap(name.to_owned(), child),
        socket_dir: Mutex::new(None),
    };
    tracing::debug!(plugin = name, pid, path = %path.display(), "plugin started");

    let remaining = config.start_timeout;
    let setup = async {
        let (handshake, stdout) = read_handshake(
            name,
            stdout,
            &config.app_versions,
            process.exited.clone(),
            &tail,
        )
        .await?;
        drain_stdout(name.to_owned(), stdout);
        if let Ok(mut socket_dir) = process.socket_dir.lock() {
            *socket_dir = owned_socket_dir(&handshake.address);
        }
        let channel = connect(name, &handshake, identity.as_ref()).await?;
        let mut provider =
            CloudProviderClient::with_origin(channel.clone(), http::Uri::from_static(ORIGIN))
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let info = provider.info(pb::InfoRequest {}).await.map_err(|status| {
            plugin_error(name, format!("Info failed: {}", status_to_error(&status)))
        })?;
        Ok::<_, Error>((
            channel,
            provider,
            info_from_wire(info.into_inner()),
            handshake.address,
        ))
    };
    let (channel, provider, info, address) = match tokio::time::timeout(remaining, setup).await {
        Ok(Ok(ready)) => ready,
        Ok(Err(error)) => return Err(error),
        Err(_) => {
            return Err(plugin_error(
                name,
                format!(
                    "it did not complete its handshake within {:?} and was killed; {}",
                    config.start_timeout,
                    tail.describe()
                ),
            ));
        }
    };
    tracing::info!(
        plugin = name,
        pid,
        provider = %info.name,
        tls = identity.is_some(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "plugin ready"
    );
    Ok(Arc::new(Running {
        process,
        provider,
        controller: GrpcControllerClient::with_origin(
            channel.clone(),
            http::Uri::from_static(ORIGIN),
        ),
        health: HealthClient::with_origin(channel, http::Uri::from_static(ORIGIN)),
        info,
        address,
    }))
}

/// Waits for the child in a task of its own (so it is reaped whatever happens) and publishes
/// how it ended.
fn reap(name: String, mut child: Child) -> watch::Receiver<Option<String>> {
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(status) => status.to_string(),
            Err(error) => format!("cannot be waited for: {error}"),
        };
        tracing::debug!(plugin = %name, %status, "plugin exited");
        let _ = sender.send(Some(status));
    });
    receiver
}

type StdoutLines = tokio::io::Lines<BufReader<ChildStdout>>;

/// Reads stdout until the handshake line; stray lines before it are logged and skipped.
async fn read_handshake(
    name: &str,
    stdout: ChildStdout,
    app_versions: &[u32],
    mut exited: watch::Receiver<Option<String>>,
    tail: &StderrTail,
) -> Result<(Handshake, StdoutLines)> {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let exit = async {
            exited
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|status| status.clone())
        };
        let line = tokio::select! {
            line = lines.next_line() => line,
            status = exit => {
                // Let the stderr forwarder catch up with the last words.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let status = status.unwrap_or_default();
                return Err(plugin_error(name, format!("it exited ({status}) before its handshake; {}", tail.describe())));
            }
        };
        match line {
            Ok(Some(line)) if Handshake::looks_like_handshake(&line) => {
                return Handshake::parse(&line, app_versions)
                    .map(|handshake| (handshake, lines))
                    .map_err(|error| plugin_error(name, error.message()));
            }
            Ok(Some(line)) => {
                tracing::warn!(plugin = name, %line, "plugin wrote to stdout before its handshake; skipped");
            }
            Ok(None) | Err(_) => {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), exited.wait_for(Option::is_some))
                        .await;
                let status = exited
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| "still running".to_owned());
                return Err(plugin_error(
                    name,
                    format!(
                        "it closed stdout ({status}) before its handshake; {}",
                        tail.describe()
                    ),
                ));
            }
        }
    }
}

fn drain_stdout(name: String, mut lines: StdoutLines) {
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(plugin = %name, %line, "plugin stdout");
        }
    });
}

/// Forwards the plugin's stderr into `tracing`, line by line: hclog JSON lines and `[LEVEL]`
/// prefixes keep their level; anything else is logged at `DEBUG`.
fn forward_stderr(name: String, stderr: tokio::process::ChildStderr, tail: Arc<StderrTail>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tail.push(&line);
            super::log::forward_line(&name, &line);
        }
    });
}

async fn connect(
    name: &str,
    handshake: &Handshake,
    identity: Option<&LaunchIdentity>,
) -> Result<Connection> {
    let tls = match (identity, &handshake.server_cert) {
        (Some(identity), Some(cert)) => {
            let cert = rustls::pki_types::CertificateDer::from(cert.clone());
            Some(tokio_rustls::TlsConnector::from(Arc::new(
                identity.client_config(cert)?,
            )))
        }
        (Some(_), None) => {
            return Err(plugin_error(
                name,
                "it answered without a certificate although AutoMTLS was asked for; \
                 it may be built with a go-plugin too old for AutoMTLS",
            ));
        }
        (None, Some(_)) => {
            return Err(plugin_error(
                name,
                "it sent a TLS certificate although AutoMTLS was not asked for",
            ));
        }
        (None, None) => None,
    };
    let stream: Box<dyn Io> = match &handshake.address {
        PluginAddress::Unix(path) => {
            Box::new(UnixStream::connect(path).await.map_err(|error| {
                plugin_error(
                    name,
                    format!("cannot connect to {}: {error}", path.display()),
                )
            })?)
        }
        PluginAddress::Tcp(addr) => {
            let stream = TcpStream::connect(addr).await.map_err(|error| {
                plugin_error(name, format!("cannot connect to {addr}: {error}"))
            })?;
            stream
                .set_nodelay(true)
                .map_err(|error| plugin_error(name, format!("cannot set TCP_NODELAY: {error}")))?;
            Box::new(stream)
        }
    };
    let stream: Box<dyn Io> = match tls {
        None => stream,
        Some(connector) => {
            let server_name = rustls::pki_types::ServerName::try_from(TLS_SERVER_NAME)
                .map_err(|error| plugin_error(name, error))?;
            Box::new(
                connector
                    .connect(server_name, stream)
                    .await
                    .map_err(|error| {
                        plugin_error(name, format!("TLS handshake failed: {error}"))
                    })?,
            )
        }
    };
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| plugin_error(name, format!("HTTP/2 handshake failed: {error}")))?;
    let plugin = name.to_owned();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%plugin, %error, "connection to the plugin ended");
        }
    });
    Ok(Connection { sender })
}

#[async_trait]
impl CloudProvider for PluginClient {
    fn info(&self) -> ProviderInfo {
        match self.supervisor.info.lock() {
            Ok(info) => info.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> {
        let mut client = self.supervisor.running()?.provider.clone();
        let response = client
            .get_instance(pb::GetInstanceRequest { id: id.to_string() })
            .await
            .map_err(|status| self.error(status))?;
        instance_from_wire(response.into_inner())
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>> {
        let mut client = self.supervisor.running()?.provider.clone();
        let response = client
            .list_instances(pb::ListInstancesRequest {
                filter: Some(filter_to_wire(filter)),
            })
            .await
            .map_err(|status| self.error(status))?;
        response
            .into_inner()
            .instances
            .into_iter()
            .map(instance_from_wire)
            .collect()
    }

    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange> {
        let mut client = self.supervisor.running()?.provider.clone();
        let response = client
            .stop_instance(pb::StopInstanceRequest {
                id: id.to_string(),
                options: Some(options_to_wire(opts)),
            })
            .await
            .map_err(|status| self.error(status))?;
        change_from_wire(response.into_inner())
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> {
        let mut client = self.supervisor.running()?.provider.clone();
        let response = client
            .start_instance(pb::StartInstanceRequest { id: id.to_string() })
            .await
            .map_err(|status| self.error(status))?;
        change_from_wire(response.into_inner())
    }

    async fn stop_instances(&self, ids: &[InstanceId], opts: &StopOptions) -> BatchResults {
        let request = pb::StopInstancesRequest {
            ids: ids.iter().map(ToString::to_string).collect(),
            options: Some(options_to_wire(opts)),
        };
        self.batch(ids, |mut client| async move {
            client.stop_instances(request).await
        })
        .await
    }

    async fn start_instances(&self, ids: &[InstanceId]) -> BatchResults {
        let request = pb::StartInstancesRequest {
            ids: ids.iter().map(ToString::to_string).collect(),
        };
        self.batch(ids, |mut client| async move {
            client.start_instances(request).await
        })
        .await
    }
}

impl PluginClient {
    /// Makes one batch call and reads one result per id; a call that fails as a whole is each
    /// id's failure.
    async fn batch<F, Fut>(&self, ids: &[InstanceId], call: F) -> BatchResults
    where
        F: FnOnce(CloudProviderClient<Connection>) -> Fut,
        Fut: std::future::Future<
                Output = std::result::Result<tonic::Response<pb::BatchResponse>, tonic::Status>,
            >,
    {
        let result = match self.supervisor.running() {
            Ok(running) => call(running.provider.clone())
                .await
                .map_err(|status| self.error(status))
                .and_then(|response| batch_from_wire(ids, response.into_inner())),
            Err(error) => Err(error),
        };
        every_id(ids, result)
    }
}

/// A batch that failed as a whole is each id's failure.
fn every_id(ids: &[InstanceId], result: Result<BatchResults>) -> BatchResults {
    match result {
        Ok(results) => results,
        Err(error) => ids
            .iter()
            .map(|id| (id.clone(), Err(error.clone())))
            .collect(),
    }
}
