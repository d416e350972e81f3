//! Builds the Go programs in `tests/go/src` against Debian's go-plugin 1.0.1 (GOPATH mode, no
//! downloads), once per test or bench binary. Shared by `tests/go_interop.rs` and
//! `benches/plugin.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const INSTALL: &str = "scripts/test installs it; by hand: apt-get install -y golang-go \
    golang-github-hashicorp-go-plugin-dev golang-google-grpc-dev golang-google-protobuf-dev \
    golang-github-golang-protobuf-1-5-dev protobuf-compiler protoc-gen-go protoc-gen-go-grpc";

/// The built Go programs.
pub struct GoPrograms {
    /// A go-plugin host that loads a plugin, checks it, and can benchmark it.
    pub host: PathBuf,
    /// A Snoozebot plugin written in Go: an in-memory fleet.
    pub plugin: PathBuf,
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
pub fn go_programs() -> &'static GoPrograms {
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
        let manifest = &std::path::PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
        );
        // Integration tests and benches both get a target tmp dir of their own.

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
                .arg(manifest.join("../snoozebot-plugin/proto"))
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
