//! One start of a plugin: trust check, spawn with a cleared environment, handshake on stdout,
//! connection, and its `Info`, all within the start timeout.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::unistd::Pid;
use snoozebot_core::{Error, ProviderInfo, Result};
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStdout, Command};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic_health::pb::health_client::HealthClient;

use super::PluginConfig;
use super::connection::{Connection, ORIGIN, connect, method};
use super::lines::{BoundedLines, MAX_LINE};
use super::plugin_error;
use super::process::{
    ProcessGuard, StderrTail, StdoutLines, drain_stdout, forward_stderr, owned_socket_dir,
    private_tmp_dir, reap, sweep_abandoned_private_dirs_once,
};
use crate::proto::go_plugin::grpc_controller_client::GrpcControllerClient;
use crate::proto::v1 as pb;
use crate::wire::{
    CLIENT_CERT_ENV, Handshake, LaunchIdentity, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE,
    PRIVATE_TMP_ENV, PROTOCOL_VERSIONS_ENV, PluginAddress, info_from_wire, status_to_error,
    versions_env_value,
};

/// One launch of the plugin: its process and the clients of its services.
pub(super) struct Running {
    pub(super) process: ProcessGuard,
    pub(super) controller: GrpcControllerClient<Connection>,
    pub(super) health: HealthClient<Connection>,
    pub(super) info: ProviderInfo,
    pub(super) address: PluginAddress,
    /// The connection: the provider's calls ([`Connection::unary`]), the clients above, and
    /// whether it broke under a call.
    pub(super) connection: Connection,
}

/// Starts the plugin once: trust check, spawn, handshake, connect, `Info`.
pub(super) async fn launch_once(
    name: &str,
    path: &Path,
    config: &PluginConfig,
) -> Result<Arc<Running>> {
    // What runs is what was checked (a sealed copy under a restrictive policy).
    let executable = config.trust.verified_binary(path).await?;
    let started = Instant::now();
    let identity = if config.auto_mtls {
        Some(LaunchIdentity::generate()?)
    } else {
        None
    };

    // go-plugin puts its socket in TMPDIR and never removes it when killed; a directory of
    // the host's own, removed with the process, leaves nothing behind.
    sweep_abandoned_private_dirs_once();
    let private_tmp = private_tmp_dir(name).map_err(|error| {
        plugin_error(
            name,
            format!("cannot make its private temporary directory: {error}"),
        )
    })?;
    if let Some((uid, gid)) = config.user {
        nix::unistd::chown(
            private_tmp.path(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|error| {
            plugin_error(
                name,
                format!("cannot give its temporary directory to user {uid}: {error}"),
            )
        })?;
    }
    let mut command = Command::new(executable.program());
    if let Some((uid, gid)) = config.user {
        // std drops the supplementary groups too when root changes the user.
        command.uid(uid).gid(gid);
    }
    command
        .arg0(path)
        .env_clear()
        .envs(
            std::env::vars_os()
                .filter(|(key, _)| key.to_str().is_some_and(|key| config.inherits(key))),
        )
        .env("TMPDIR", private_tmp.path())
        .env("PLUGIN_UNIX_SOCKET_DIR", private_tmp.path())
        .env(PRIVATE_TMP_ENV, private_tmp.path())
        // The plugin's configuration may still name other directories.
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
    let mut child = super::spawner::spawn(command)
        .await
        .map_err(|error| plugin_error(name, format!("cannot start {}: {error}", path.display())))?;
    // The child holds its own descriptor of the sealed copy now.
    drop(executable);
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
        _private_tmp: private_tmp,
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
        let info: pb::ProviderInfo = channel
            .unary(method!("Info"), &pb::InfoRequest {})
            .await
            .map_err(|status| {
                plugin_error(name, format!("Info failed: {}", status_to_error(&status)))
            })?;
        Ok::<_, Error>((channel, info_from_wire(info), handshake.address))
    };
    let (channel, info, address) = match tokio::time::timeout(remaining, setup).await {
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
        controller: GrpcControllerClient::with_origin(
            channel.clone(),
            http::Uri::from_static(ORIGIN),
        ),
        health: HealthClient::with_origin(channel.clone(), http::Uri::from_static(ORIGIN)),
        connection: channel,
        info,
        address,
    }))
}

/// Stray output a plugin may write to stdout before its handshake, in bytes; past it the
/// plugin is refused (go-plugin's host reads without a bound until its start timeout).
const MAX_STDOUT_BEFORE_HANDSHAKE: usize = 64 * 1024;

/// Stray stdout lines warned about before the handshake; the rest are counted.
const STRAY_LINES_WARNED: u32 = 5;

/// Reads stdout until the handshake line; stray lines before it are logged and skipped. At
/// most [`MAX_STDOUT_BEFORE_HANDSHAKE`] bytes are read before it, so a plugin that floods
/// stdout is refused at once rather than read until its start timeout.
async fn read_handshake(
    name: &str,
    stdout: ChildStdout,
    app_versions: &[u32],
    mut exited: watch::Receiver<Option<String>>,
    tail: &StderrTail,
) -> Result<(Handshake, StdoutLines)> {
    let mut lines = BoundedLines::new(stdout.take(MAX_STDOUT_BEFORE_HANDSHAKE as u64), MAX_LINE);
    let stray_budget = snoozebot_core::LogBudget::new(STRAY_LINES_WARNED, Duration::MAX);
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
                // The last words: everything it wrote to stderr, read to its end.
                tail.wait_ended(Duration::from_millis(500)).await;
                let status = status.unwrap_or_default();
                return Err(plugin_error(name, format!("it exited ({status}) before its handshake; {}", tail.describe())));
            }
        };
        match line {
            Some(line) if line.cut == 0 && Handshake::looks_like_handshake(&line.text) => {
                // From here on stdout is only drained.
                lines.get_mut().set_limit(u64::MAX);
                return Handshake::parse(&line.text, app_versions)
                    .map(|handshake| (handshake, lines))
                    .map_err(|error| plugin_error(name, error.message()));
            }
            Some(_) if lines.get_mut().limit() == 0 => return Err(flooded(name, tail)),
            Some(line) => {
                if stray_budget.admit().is_some() {
                    tracing::warn!(plugin = name, line = %line.display(), "plugin wrote to stdout before its handshake; skipped");
                }
            }
            None if lines.get_mut().limit() == 0 => return Err(flooded(name, tail)),
            None => {
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

fn flooded(name: &str, tail: &StderrTail) -> Error {
    plugin_error(
        name,
        format!(
            "it wrote {} KiB to stdout without a handshake and was killed; {}",
            MAX_STDOUT_BEFORE_HANDSHAKE / 1024,
            tail.describe()
        ),
    )
}
