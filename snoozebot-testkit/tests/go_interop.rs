//! Interoperability with real HashiCorp go-plugin (Debian's 1.0.1, built offline in GOPATH
//! mode): a Go host loads our Rust plugin, and our host loads a Go plugin, with and without
//! AutoMTLS. The Go sources are in `tests/go/src`.
#![cfg(feature = "plugin")]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use snoozebot_core::{CloudProvider, InstanceId};
use snoozebot_plugin::{PluginClient, PluginConfig};
use snoozebot_testkit::conformance::{self, Fixture};

#[path = "go/mod.rs"]
mod go;
mod processes;

use go::go_programs;
use processes::{HostProcess, eventually, has_exited, socket_and_private_dir};

fn rust_plugin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-mock"))
}

fn go_host_loads_our_plugin(auto_mtls: bool) {
    let programs = go_programs();
    let output = Command::new(&programs.host)
        .arg(rust_plugin())
        .env("AUTO_MTLS", if auto_mtls { "1" } else { "0" })
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Go host failed:\n{stdout}\n{stderr}"
    );
    for expected in [
        "ping ok",
        "info name=mock modes=4",
        "idle instances=2",
        "stopped mock-0000 INSTANCE_STATE_RUNNING->INSTANCE_STATE_STOPPED",
        "missing code=NotFound",
        "batch change=true error=not_found",
        "OK",
    ] {
        assert!(
            stdout.lines().any(|line| line == expected),
            "{expected:?} missing:\n{stdout}\n{stderr}"
        );
    }
    if auto_mtls {
        assert!(
            stderr.contains("configuring client automatic mTLS"),
            "{stderr}"
        );
    }
}

#[test]
fn a_go_plugin_host_loads_our_rust_plugin() {
    go_host_loads_our_plugin(false);
}

#[test]
fn a_go_plugin_host_loads_our_rust_plugin_with_auto_mtls() {
    go_host_loads_our_plugin(true);
}

fn go_fleet_fixture() -> Fixture {
    let id = |s: &str| InstanceId::new(s).unwrap();
    Fixture::new(
        vec![id("go-0000"), id("go-0004")],
        ("snoozebot", "idle"),
        id("go-9999"),
        id("i-0123456789abcdef0"),
    )
    .with_wait_timeout(Duration::from_secs(10))
}

async fn our_host_loads_the_go_plugin(config: PluginConfig) {
    let programs = go_programs();
    let client = PluginClient::launch("go-fleet", &programs.plugin, config)
        .await
        .unwrap();
    assert_eq!(client.info().name, "go-fleet");
    assert_eq!(client.health().await, snoozebot_core::Health::Serving);
    conformance::run(&client, &go_fleet_fixture()).await;
    let pid = client.pid().unwrap();
    client.shutdown().await;
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the Go plugin outlived shutdown"
    );
}

#[tokio::test]
async fn our_host_loads_a_go_plugin_and_it_conforms() {
    our_host_loads_the_go_plugin(PluginConfig::default()).await;
}

#[tokio::test]
async fn our_host_loads_a_go_plugin_with_auto_mtls_p521_certificates() {
    our_host_loads_the_go_plugin(PluginConfig::default().with_auto_mtls(true)).await;
}

/// The batch RPCs are optional for a plugin: one that leaves them unimplemented still
/// conforms, its batches sent as single calls.
#[tokio::test]
async fn a_go_plugin_without_the_batch_rpcs_conforms_through_single_calls() {
    our_host_loads_the_go_plugin(PluginConfig::default().with_env("SNOOZEBOT_GO_NO_BATCH", "1"))
        .await;
}

#[tokio::test]
async fn a_go_plugins_socket_is_removed_when_the_host_stops_or_kills_it() {
    let programs = go_programs();
    for kill in [false, true] {
        let client = PluginClient::launch("go-fleet", &programs.plugin, PluginConfig::default())
            .await
            .unwrap();
        let (socket, dir) = socket_and_private_dir(&client);
        assert!(socket.exists(), "{}", socket.display());
        if kill {
            client.kill_now();
        } else {
            client.shutdown().await;
        }
        assert!(
            eventually(Duration::from_secs(2), || !dir.exists()).await,
            "{} left behind (kill: {kill})",
            dir.display()
        );
    }
}

#[test]
#[ignore = "a host process for the host-death tests, which run it"]
fn host_process() {
    processes::host_main();
}

#[tokio::test]
async fn a_go_plugin_and_its_socket_are_gone_within_two_seconds_of_its_host_being_killed() {
    let programs = go_programs();
    let mut host = HostProcess::start(&programs.plugin, &[], false);
    assert!(host.private_dir.exists());
    host.kill();
    assert!(
        eventually(Duration::from_secs(2), || has_exited(host.plugin_pid)).await,
        "the Go plugin outlived its host by more than 2 s"
    );
    assert!(
        eventually(Duration::from_secs(1), || !host.private_dir.exists()).await,
        "its socket's directory {} was left behind",
        host.private_dir.display()
    );
}

/// A go-plugin plugin that does nothing of its own on SIGTERM (go-plugin's `Serve` does not)
/// still dies with its host; the socket it leaves is removed by the next host.
#[tokio::test]
async fn a_go_plugin_that_only_serves_dies_with_its_host_and_the_next_host_removes_its_socket() {
    let programs = go_programs();
    let mut host = HostProcess::start(&programs.plugin, &[("SNOOZEBOT_GO_NO_CLEANUP", "1")], false);
    host.kill();
    assert!(
        eventually(Duration::from_secs(2), || has_exited(host.plugin_pid)).await,
        "the Go plugin outlived its host by more than 2 s"
    );
    assert!(
        host.private_dir.exists(),
        "the plugin removed its directory itself"
    );
    // Age it past the window in which a host may still be making it.
    std::fs::File::open(&host.private_dir)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    let _next = HostProcess::start(&programs.plugin, &[], false);
    assert!(
        eventually(Duration::from_secs(2), || !host.private_dir.exists()).await,
        "the next host left {} behind",
        host.private_dir.display()
    );
}
