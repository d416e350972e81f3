//! The plugin's process: its group (killed on drop), reaping, its stdout after the handshake
//! and its stderr, forwarded into `tracing` (bounded per line and in rate) with the last lines
//! kept for error messages.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
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

/// The file in each private directory that its host holds locked while the directory is in
/// use; one whose lock can be taken belongs to a host that died without removing it.
const HOST_LOCK: &str = ".host.lock";

/// How old a private directory must be before a sweep may remove it: past the moment between
/// its creation and its lock.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(10);

/// A plugin's private temporary directory, removed (with what is in it) when dropped, and
/// locked while it lives.
pub(super) struct PrivateTmp {
    path: PathBuf,
    _lock: Flock<File>,
}

impl PrivateTmp {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        // The lock goes with the field, after the directory.
    }
}

/// Makes a `0700` directory of this host's under the system temporary directory, for one
/// launch of a plugin: created exclusively, so no one else's directory of the same name is
/// ever used, and locked (see [`sweep_abandoned_private_dirs`]).
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
            Ok(()) => {
                return lock_new_private_dir(&dir).inspect_err(|_| {
                    let _ = std::fs::remove_dir_all(&dir);
                });
            }
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no name left")))
}

fn lock_new_private_dir(dir: &Path) -> std::io::Result<PrivateTmp> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(HOST_LOCK))?;
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| std::io::Error::from(errno))?;
    Ok(PrivateTmp {
        path: dir.to_owned(),
        _lock: lock,
    })
}

/// Removes, once per process and off the caller's thread, the private directories that hosts
/// killed without a chance to clean up left in `base`: a plugin that died with such a host
/// (its parent-death signal) leaves its socket there.
pub(super) fn sweep_abandoned_private_dirs_once() {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if !SWEPT.swap(true, Ordering::SeqCst) {
        let base = std::env::temp_dir();
        tokio::task::spawn_blocking(move || sweep_abandoned_private_dirs(&base));
    }
}

/// Removes the directories in `base` that are private directories of this user's hosts (by
/// name and owner), older than [`SWEEP_MIN_AGE`], and whose host lock no one holds. Returns
/// how many it removed.
pub(super) fn sweep_abandoned_private_dirs(base: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    let me = nix::unistd::geteuid().as_raw();
    let mut removed = 0;
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(crate::wire::PRIVATE_TMP_PREFIX));
        if !ours {
            continue;
        }
        let path = entry.path();
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let old_enough = metadata
            .modified()
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age >= SWEEP_MIN_AGE);
        if metadata.is_dir() && metadata.uid() == me && old_enough && !is_held(&path) {
            // std's removal does not follow symlinks inside.
            if std::fs::remove_dir_all(&path).is_ok() {
                removed += 1;
                tracing::debug!(dir = %path.display(), "removed a dead host's plugin directory");
            }
        }
    }
    removed
}

/// Whether a living host holds the lock of the private directory `dir`.
fn is_held(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dir.join(HOST_LOCK));
    match file {
        // Taken and released at once (dropping it unlocks).
        Ok(file) => Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err(),
        // No lock file in a directory past its creation: its host died making it.
        Err(error) => error.kind() != std::io::ErrorKind::NotFound,
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn age(dir: &Path) {
        File::open(dir)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - 2 * SWEEP_MIN_AGE)
            .unwrap();
    }

    fn lock_file(dir: &Path) -> File {
        File::create(dir.join(HOST_LOCK)).unwrap()
    }

    #[test]
    fn a_sweep_removes_only_old_unlocked_private_dirs_of_this_user() {
        let base = tempfile::tempdir().unwrap();
        let named = |name: &str| {
            base.path()
                .join(format!("{}{name}", crate::wire::PRIVATE_TMP_PREFIX))
        };

        let held_dir = named("held");
        std::fs::create_dir(&held_dir).unwrap();
        let held = lock_new_private_dir(&held_dir).unwrap();
        age(&held_dir);

        let abandoned = named("abandoned");
        std::fs::create_dir(&abandoned).unwrap();
        drop(lock_file(&abandoned));
        std::fs::write(abandoned.join("plugin123"), "a socket, once").unwrap();
        age(&abandoned);

        let unlocked_young = named("young");
        std::fs::create_dir(&unlocked_young).unwrap();
        drop(lock_file(&unlocked_young));

        let half_made = named("half-made");
        std::fs::create_dir(&half_made).unwrap();
        age(&half_made);

        let elsewhere = tempfile::tempdir().unwrap();
        let link = named("link");
        std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();

        let other = base.path().join("someone-else");
        std::fs::create_dir(&other).unwrap();
        age(&other);

        assert_eq!(sweep_abandoned_private_dirs(base.path()), 2);
        assert!(held_dir.exists(), "a living host's directory was removed");
        assert!(!abandoned.exists());
        assert!(!half_made.exists());
        assert!(
            unlocked_young.exists(),
            "a directory being made was removed"
        );
        assert!(link.exists() && elsewhere.path().exists());
        assert!(other.exists());

        drop(held);
        assert!(!held_dir.exists(), "dropping it removes it");
    }
}
