//! The plugin's process: its group (killed on drop), reaping, its stdout after the handshake
//! and its stderr, forwarded into `tracing` (bounded per line and in rate) with the last lines
//! kept for error messages.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use snoozebot_core::LogBudget;
use tokio::process::{Child, ChildStdout};
use tokio::sync::{Notify, watch};

use super::lines::{BoundedLines, MAX_LINE};
use crate::PluginAddress;

/// Lines of a plugin's output logged per second; beyond, they are counted and the count logged
/// with the next line let through.
const LOG_LINES_PER_SECOND: u32 = 200;

/// The last lines a plugin wrote to stderr, for error messages.
#[derive(Default)]
pub(super) struct StderrTail {
    lines: Mutex<VecDeque<String>>,
    /// Set once the plugin's stderr reached its end (or could not be read further).
    ended: AtomicBool,
    ending: Notify,
}

impl StderrTail {
    const KEPT: usize = 20;

    fn mark_ended(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.ending.notify_waiters();
    }

    /// Waits until everything the plugin wrote to stderr has been read, at most `limit` (a
    /// child of the plugin may hold stderr open after the plugin itself exited).
    pub(super) async fn wait_ended(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let notified = self.ending.notified();
                if self.ended.load(Ordering::SeqCst) {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    pub(super) fn push(&self, line: &str) {
        let mut lines = match self.lines.lock() {
            Ok(lines) => lines,
            Err(poisoned) => poisoned.into_inner(),
        };
        if lines.len() == Self::KEPT {
            lines.pop_front();
        }
        lines.push_back(line.to_owned());
    }

    pub(super) fn describe(&self) -> String {
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
pub(super) struct ProcessGuard {
    pub(super) name: String,
    pub(super) group: Pid,
    pub(super) exited: watch::Receiver<Option<String>>,
    /// The private socket directory of a Snoozebot plugin, which a killed plugin cannot remove
    /// itself.
    pub(super) socket_dir: Mutex<Option<PathBuf>>,
    /// The plugin's own `TMPDIR` (where go-plugin puts its socket), held to be removed with
    /// the process.
    pub(super) _private_tmp: PrivateTmp,
}

impl ProcessGuard {
    pub(super) fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    pub(super) fn kill_group(&self) {
        match killpg(self.group, Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(error) => {
                tracing::warn!(plugin = %self.name, %error, "cannot kill the plugin's process group")
            }
        }
    }

    /// Waits until the process has exited and been reaped, at most `limit`.
    pub(super) async fn wait_exit(&self, limit: Duration) -> bool {
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
        // `_private_tmp` goes after this, with the other fields: after the kill.
    }
}

/// A plugin's private temporary directory, removed (with what is in it) when dropped.
pub(super) struct PrivateTmp(PathBuf);

impl PrivateTmp {
    pub(super) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for PrivateTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes a `0700` directory of this host's under the system temporary directory, for one
/// launch of a plugin: created exclusively, so no one else's directory of the same name is
/// ever used.
pub(super) fn private_tmp_dir(name: &str) -> std::io::Result<PrivateTmp> {
    use std::os::unix::fs::DirBuilderExt;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let base = std::env::temp_dir();
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(32)
        .collect();
    let mut last = None;
    for _ in 0..16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!(
            "{}{}-{n}-{nanos:x}-{name}",
            crate::wire::PRIVATE_TMP_PREFIX,
            std::process::id()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(PrivateTmp(dir)),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no name left")))
}

/// The directory to clean up after a plugin: only the private directories Snoozebot plugins
/// create (`snoozebot-plugin-*`), never anything else a plugin may have named.
pub(super) fn owned_socket_dir(address: &PluginAddress) -> Option<PathBuf> {
    let PluginAddress::Unix(socket) = address else {
        return None;
    };
    let dir = socket.parent()?;
    let name = dir.file_name()?.to_str()?;
    name.starts_with("snoozebot-plugin-")
        .then(|| dir.to_owned())
}

/// Waits for the child in a task of its own (so it is reaped whatever happens) and publishes
/// how it ended.
pub(super) fn reap(name: String, mut child: Child) -> watch::Receiver<Option<String>> {
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

/// A plugin's stdout; `Take` bounds what is read before the handshake (lifted after it).
pub(super) type StdoutLines = BoundedLines<tokio::io::Take<ChildStdout>>;

/// Reads the plugin's stdout to its end after the handshake, so the plugin never blocks on it;
/// lines are logged at `DEBUG`, within the rate budget.
pub(super) fn drain_stdout(name: String, mut lines: StdoutLines) {
    tokio::spawn(async move {
        let budget = LogBudget::new(LOG_LINES_PER_SECOND, Duration::from_secs(1));
        while let Some(line) = lines.next_line().await {
            if let Some(held_back) = budget.admit() {
                tracing::debug!(plugin = %name, line = %line.display(), held_back, "plugin stdout");
            }
        }
    });
}

/// Forwards the plugin's stderr into `tracing`, line by line, until it closes: hclog JSON
/// lines and `[LEVEL]` prefixes keep their level; anything else is logged at `DEBUG`. Lines
/// are cut at [`MAX_LINE`], invalid UTF-8 is replaced, and past the rate budget lines are
/// counted instead of logged (the count rides on the next line logged, or a last event).
pub(super) fn forward_stderr(
    name: String,
    stderr: tokio::process::ChildStderr,
    tail: Arc<StderrTail>,
) {
    tokio::spawn(async move {
        let budget = LogBudget::new(LOG_LINES_PER_SECOND, Duration::from_secs(1));
        let mut lines = BoundedLines::new(stderr, MAX_LINE);
        while let Some(line) = lines.next_line().await {
            let text = line.display();
            tail.push(&text);
            if let Some(held_back) = budget.admit() {
                super::log::forward_line(&name, &text, held_back);
            }
        }
        let held_back = budget.take_held_back();
        if held_back > 0 {
            tracing::warn!(target: "snoozebot::plugin", plugin = %name, held_back, "plugin stderr lines not logged (over the rate budget)");
        }
        tail.mark_ended();
    });
}
