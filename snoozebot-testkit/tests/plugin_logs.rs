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
