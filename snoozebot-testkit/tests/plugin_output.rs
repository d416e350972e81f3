//! A plugin that floods its stdout before the handshake is refused at once, and the host's
//! memory stays bounded (its peak resident size is read from /proc).
//!
//! A binary of its own, so that no other test's allocations share the measured peak.
#![cfg(feature = "plugin")]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use snoozebot_core::ErrorKind;
use snoozebot_plugin::{PluginClient, PluginConfig};
use tokio::time::Instant;

/// The peak resident set of this process so far, in MiB (`VmHWM`).
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[tokio::test]
async fn a_gigabyte_on_stdout_without_a_handshake_is_refused_at_once_in_bounded_memory() {
    let before = peak_rss_mib();
    let config = PluginConfig::default()
        .with_env("SNOOZEBOT_MOCK_BEFORE_HANDSHAKE", "flood-stdout")
        .with_start_timeout(Duration::from_secs(60));
    let started = Instant::now();
    let err = PluginClient::launch(
        "mock",
        Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-mock")),
        config,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Plugin);
    assert!(
        err.message()
            .contains("64 KiB to stdout without a handshake"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused only after {:?}",
        started.elapsed()
    );
    let grown = peak_rss_mib().saturating_sub(before);
    assert!(grown < 32, "the host's peak grew by {grown} MiB");
}
