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
use processes::{eventually, has_exited};

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

/// The unix socket a plugin announced, and the private directory it lies in.
fn socket_and_private_dir(client: &PluginClient) -> (std::path::PathBuf, std::path::PathBuf) {
    let Some(snoozebot_plugin::PluginAddress::Unix(socket)) = client.address() else {
        panic!(
            "the Go plugin did not listen on a unix socket: {:?}",
            client.address()
        );
    };
    let dir = socket
        .ancestors()
        .find(|dir| {
            dir.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("snoozebot-host-"))
        })
        .unwrap_or_else(|| {
            panic!(
                "{} is not in a private directory of the host",
                socket.display()
            )
        })
        .to_owned();
    (socket, dir)
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

#[tokio::test]
async fn a_go_plugin_and_its_socket_are_gone_within_two_seconds_of_its_host_being_killed() {
    let programs = go_programs();
    // The host here is a shell that started the plugin with a private directory as our host
    // makes one; SIGKILL gives it no chance to clean up.
    let private =
        std::env::temp_dir().join(format!("snoozebot-host-{}-gotest", std::process::id()));
    std::fs::create_dir_all(&private).unwrap();
    let handshake = private.join("handshake");
    let mut host = Command::new("sh")
        .arg("-c")
        .arg(r#""$PLUGIN" > "$HANDSHAKE" 2>/dev/null & echo $!; wait"#)
        .env("PLUGIN", &programs.plugin)
        .env("HANDSHAKE", &handshake)
        .env("SNOOZEBOT_PLUGIN", "snoozebot_plugin_v1")
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .env("TMPDIR", &private)
        .env("PLUGIN_UNIX_SOCKET_DIR", &private)
        .env("SNOOZEBOT_PLUGIN_TMPDIR", &private)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(host.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let plugin_pid: u32 = line.trim().parse().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(
            &handshake
        )
        .is_ok_and(|text| text.starts_with("1|1|unix|")))
        .await,
        "the Go plugin did not start"
    );
    let socket = std::fs::read_to_string(&handshake).unwrap();
    let socket = std::path::PathBuf::from(socket.split('|').nth(3).unwrap());
    assert!(socket.starts_with(&private), "{}", socket.display());

    host.kill().unwrap();
    host.wait().unwrap();
    let gone = eventually(Duration::from_secs(2), || has_exited(plugin_pid)).await;
    let cleaned = eventually(Duration::from_secs(1), || !socket.exists()).await;
    // Whatever happened, leave nothing behind ourselves.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(plugin_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = std::fs::remove_dir_all(&private);
    assert!(gone, "the Go plugin outlived its host by more than 2 s");
    assert!(cleaned, "its socket {} was left behind", socket.display());
}
