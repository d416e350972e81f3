//! Interoperability with real HashiCorp go-plugin (Debian's 1.0.1, built offline in GOPATH
//! mode): a Go host loads our Rust plugin, and our host loads a Go plugin, with and without
//! AutoMTLS. The Go sources are in `tests/go/src`.
#![cfg(feature = "plugin")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use snoozebot_core::plugin::{PluginClient, PluginConfig};
use snoozebot_core::{CloudProvider, InstanceId};
use snoozebot_testkit::conformance::{self, Fixture};

const INSTALL: &str = "scripts/test installs it; by hand: apt-get install -y golang-go \
    golang-github-hashicorp-go-plugin-dev golang-google-grpc-dev golang-google-protobuf-dev \
    golang-github-golang-protobuf-1-5-dev protobuf-compiler protoc-gen-go protoc-gen-go-grpc";

struct GoPrograms {
    host: PathBuf,
    plugin: PathBuf,
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what}: cannot run {command:?}: {error}. {INSTALL}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}\n{INSTALL}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Generates the Go code for our proto and builds both Go programs, once per test run.
fn go_programs() -> &'static GoPrograms {
    static PROGRAMS: OnceLock<GoPrograms> = OnceLock::new();
    PROGRAMS.get_or_init(|| {
        for library in [
            "github.com/hashicorp/go-plugin",
            "google.golang.org/grpc",
            "google.golang.org/protobuf",
        ] {
            assert!(
                Path::new("/usr/share/gocode/src").join(library).exists(),
                "the Go library {library} is missing. {INSTALL}"
            );
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let gopath = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-interop");
        let src = gopath.join("src");
        std::fs::create_dir_all(&src).unwrap();
        for program in ["snoozebot-go-host", "snoozebot-go-plugin"] {
            let dir = src.join(program);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(
                manifest.join("tests/go/src").join(program).join("main.go"),
                dir.join("main.go"),
            )
            .unwrap();
        }
        run(
            Command::new("protoc")
                .arg("-I")
                .arg(manifest.join("../snoozebot-core/proto"))
                .arg(format!("--go_out={}", src.display()))
                .arg(format!("--go-grpc_out={}", src.display()))
                .arg("snoozebot/plugin/v1/cloud_provider.proto"),
            "generating Go code for snoozebot.plugin.v1",
        );
        let bin = gopath.join("bin");
        for program in ["snoozebot-go-host", "snoozebot-go-plugin"] {
            run(
                Command::new("go")
                    .args(["build", "-o"])
                    .arg(bin.join(program))
                    .arg(program)
                    .current_dir(&gopath)
                    .env("GO111MODULE", "off")
                    .env("GOFLAGS", "")
                    .env("GOPATH", format!("{}:/usr/share/gocode", gopath.display()))
                    .env("GOCACHE", gopath.join("cache")),
                &format!("building {program}"),
            );
        }
        GoPrograms {
            host: bin.join("snoozebot-go-host"),
            plugin: bin.join("snoozebot-go-plugin"),
        }
    })
}

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

async fn our_host_loads_the_go_plugin(auto_mtls: bool) {
    let programs = go_programs();
    let client = PluginClient::launch(
        "go-fleet",
        &programs.plugin,
        PluginConfig::default().with_auto_mtls(auto_mtls),
    )
    .await
    .unwrap();
    assert_eq!(client.info().name, "go-fleet");
    assert_eq!(
        client.health().await,
        snoozebot_core::manager::Health::Serving
    );
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
    our_host_loads_the_go_plugin(false).await;
}

#[tokio::test]
async fn our_host_loads_a_go_plugin_with_auto_mtls_p521_certificates() {
    our_host_loads_the_go_plugin(true).await;
}
