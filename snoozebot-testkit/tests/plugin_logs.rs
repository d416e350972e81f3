//! A plugin's log lines reach the host's `tracing`, with their level.
//!
//! A binary of its own: `tracing` caches per call site whether anyone listens, and a test
//! running at the same time without a subscriber could make the cached answer "no".
#![cfg(feature = "plugin")]
#![allow(clippy::unwrap_used)]

use std::path::Path;

use snoozebot_plugin::{PluginClient, PluginConfig};
use snoozebot_testkit::LogCapture;

#[tokio::test]
async fn plugin_stderr_is_forwarded_into_tracing_with_its_level() {
    let captured = LogCapture::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let client = PluginClient::launch(
        "mock",
        Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-mock")),
        PluginConfig::default(),
    )
    .await
    .unwrap();
    client.shutdown().await;

    let output = captured.contents();
    let line = output
        .lines()
        .find(|line| line.contains("mock fleet ready"))
        .unwrap_or_else(|| panic!("the plugin's warning is missing:\n{output}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("plugin=\"mock\""), "{line}");
    assert!(line.contains("instances=8"), "{line}");
}

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
async fn a_huge_stderr_line_and_bad_utf8_are_cut_and_replaced_and_later_lines_still_arrive() {
    use snoozebot_core::{CloudProvider, InstanceId};

    let captured = LogCapture::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let before = peak_rss_mib();
    let config = PluginConfig::default()
        .with_env("SNOOZEBOT_MOCK_STDERR_FLOOD", (64 << 20).to_string())
        .with_env("SNOOZEBOT_MOCK_LOG_GETS", "1")
        .with_start_timeout(std::time::Duration::from_secs(60));
    let client = PluginClient::launch(
        "mock",
        Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-mock")),
        config,
    )
    .await
    .unwrap();
    client
        .get_instance(&InstanceId::new("mock-0001").unwrap())
        .await
        .unwrap();
    // The plugin wrote its line before answering; give the forwarder the moment it needs.
    let logged = async {
        while !captured.contents().contains("get_instance mock-0001") {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    let arrived = tokio::time::timeout(std::time::Duration::from_secs(5), logged).await;
    client.shutdown().await;
    let output = captured.contents();
    assert!(
        arrived.is_ok(),
        "a line after the flood and the bad bytes never arrived:\n{}",
        &output[output.len().saturating_sub(4000)..]
    );
    assert!(
        output.contains("not UTF-8: \u{fffd}"),
        "bad bytes not replaced"
    );
    assert!(
        output.contains("more bytes cut]"),
        "the long line was not cut"
    );
    let longest = output.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 20 * 1024, "a log line of {longest} bytes");
    let grown = peak_rss_mib().saturating_sub(before);
    assert!(grown < 32, "the host's peak grew by {grown} MiB");
}
