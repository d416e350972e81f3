//! The host side: launch a plugin executable, speak to it, keep it alive, stop it; and find
//! plugin executables for a [`PluginManager`](snoozebot_core::PluginManager).
//!
//! A [`PluginClient`] is a [`CloudProvider`](snoozebot_core::CloudProvider) whose calls go to a
//! plugin process. Its rooms:
//!
//! | module | what it does |
//! |---|---|
//! | `config` | [`PluginConfig`]: environment, timeouts, restarts, trust |
//! | `trust` | [`TrustPolicy`]: SHA-256 pins and minisign signatures |
//! | `process` | the child process: its group, reaping, stdout and stderr |
//! | `launch` | one start: trust check, spawn, handshake, connect, `Info` |
//! | `spawner` | the thread plugins are forked from, for their parent-death signal |
//! | `connection` | the HTTP/2 connection the gRPC clients run on |
//! | `supervisor` | crash and health watching, restarts with backoff |
//! | `client` | [`PluginClient`]: the provider calls over the wire |
//! | `discover` | [`PluginDirectory`]: the plugin executables of directories, as a source |
//! | `log` | the plugin's stderr lines in the host's `tracing` |

mod client;
mod config;
mod connection;
mod discover;
mod launch;
mod lines;
mod log;
mod process;
mod spawner;
mod supervisor;
mod trust;

use snoozebot_core::{Error, ErrorKind};

pub use client::PluginClient;
pub use config::{DEFAULT_INHERITED_ENV, PluginConfig};
pub use discover::PluginDirectory;
pub use trust::TrustPolicy;

/// Marks this process non-dumpable, so that processes of the same user — plugins included —
/// can no longer read its memory or `/proc/<pid>/environ` (where the host's cloud keys and API
/// keys are) or trace it: the kernel makes those files root's. Core dumps of the host stop too.
/// Call it early in `main`, before secrets are read. A root host's plugins are root too and
/// can read anything: run them as another user ([`PluginConfig::run_as`]).
pub fn harden_host() -> snoozebot_core::Result<()> {
    nix::sys::prctl::set_dumpable(false).map_err(|error| {
        Error::new(
            ErrorKind::Config,
            format!("cannot mark the host non-dumpable: {error}"),
        )
    })
}

/// An [`ErrorKind::Plugin`] error about the plugin `name`.
fn plugin_error(name: &str, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Plugin, format!("plugin {name}: {message}")).with_provider(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hardened_host_is_not_dumpable() {
        super::harden_host().unwrap();
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
    }
}
