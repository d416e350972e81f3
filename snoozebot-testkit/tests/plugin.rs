//! Providers through the plugin transport: real plugin processes over real unix sockets.
#![cfg(feature = "plugin")]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use snoozebot_core::{CloudProvider, ErrorKind, InstanceFilter, InstanceId};
use snoozebot_plugin::{PluginAddress, PluginClient, PluginConfig};
use snoozebot_testkit::conformance::{self, Fixture};

fn mock_plugin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-mock"))
}

fn fixture() -> Fixture {
    Fixture::for_mock_fleet().with_wait_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn conformance_through_the_plugin_with_auto_mtls() {
    let client = PluginClient::launch("mock", mock_plugin(), PluginConfig::default())
        .await
        .unwrap();
    conformance::run(&client, &fixture()).await;
    client.shutdown().await;
}

#[tokio::test]
async fn conformance_through_the_plugin_in_plain_text() {
    let config = PluginConfig::default()
        .with_auto_mtls(false)
        .with_env("SNOOZEBOT_MOCK_TRANSITION_MS", "50");
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    conformance::run(&client, &fixture()).await;
    client.shutdown().await;
}

#[tokio::test]
async fn a_listing_larger_than_four_mebibytes_crosses_the_wire() {
    let config = PluginConfig::default()
        .with_env("SNOOZEBOT_MOCK_INSTANCES", "6")
        .with_env("SNOOZEBOT_MOCK_TAG_BYTES", "1048576");
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    let listed = client.list_instances(&InstanceFilter::new()).await.unwrap();
    assert_eq!(listed.len(), 6);
    assert!(
        listed
            .iter()
            .all(|info| info.tags["padding"].len() == 1_048_576)
    );
    client.shutdown().await;
}

#[tokio::test]
async fn errors_keep_their_kind_across_the_wire() {
    let client = PluginClient::launch("mock", mock_plugin(), PluginConfig::default())
        .await
        .unwrap();
    let err = client
        .get_instance(&InstanceId::new("mock-0404").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.provider(), Some("mock"));
    assert!(err.message().contains("mock-0404"), "{err}");
    client.shutdown().await;
}

#[tokio::test]
async fn without_unix_sockets_the_plugin_serves_tcp_on_loopback() {
    let config =
        PluginConfig::default().with_env("PLUGIN_UNIX_SOCKET_DIR", "/nonexistent/snoozebot");
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    match client.address() {
        Some(PluginAddress::Tcp(addr)) => assert!(addr.ip().is_loopback(), "{addr}"),
        other => panic!("expected a loopback TCP address, got {other:?}"),
    }
    conformance::run(&client, &fixture()).await;
    client.shutdown().await;
}
