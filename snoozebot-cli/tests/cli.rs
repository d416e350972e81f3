//! The `snoozebot` binary as an operator runs it: each command's output and exit code on the
//! mock fleet, config mistakes with their line, `serve` answering, draining on SIGTERM and
//! reloading keys on SIGHUP, and a plugin configured from the file against moto.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sha2::Digest;
use support::{
    Server, add_key, binaries, config_dir, expect_failure, json_lines, run, snoozebot, text,
};

const MOCK: &str = "[providers.fleet]\nkind = \"mock\"\ninstances = 8\n";

#[test]
fn config_check_says_ok_or_names_the_line_of_the_mistake() {
    let dir = config_dir(MOCK);
    let out = run(dir.path(), &["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "snoozebot.toml: ok (1 provider: fleet (mock))\n"
    );

    let dir =
        config_dir("[server]\nlisten = \"127.0.0.1:1\"\n\n[providers.fleet]\nkind = \"mokc\"\n");
    let out = run(dir.path(), &["config", "check"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("snoozebot: snoozebot.toml:5: unknown variant `mokc`"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line, no dump: {stderr}");

    // Not UTF-8, or too big: said, with the file's name.
    let dir = config_dir("");
    std::fs::write(dir.path().join("snoozebot.toml"), b"[providers.\xff]\n").unwrap();
    let out = run(dir.path(), &["config", "check"]);
    expect_failure(&out, 3, "snoozebot.toml is not UTF-8");
    std::fs::write(
        dir.path().join("snoozebot.toml"),
        vec![b'#'; 2 * 1024 * 1024],
    )
    .unwrap();
    let out = run(dir.path(), &["config", "check"]);
    expect_failure(&out, 3, "is larger than 1024 KiB");

    let empty = tempfile::tempdir().unwrap();
    let out = snoozebot()
        .current_dir(empty.path())
        .env("HOME", empty.path())
        .env_remove("XDG_CONFIG_HOME")
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("no config file: give one with --config or SNOOZEBOT_CONFIG")
    );

    // --config and SNOOZEBOT_CONFIG find a file elsewhere.
    let dir = config_dir(MOCK);
    let file = dir.path().join("snoozebot.toml");
    let out = snoozebot()
        .current_dir(empty.path())
        .arg("--config")
        .arg(&file)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = snoozebot()
        .current_dir(empty.path())
        .env("SNOOZEBOT_CONFIG", &file)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn instances_list_filters_and_prints_tables_json_and_json_lines() {
    let dir = config_dir(MOCK);
    let out = run(dir.path(), &["instances", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.starts_with("ID         NAME       STATE    TYPE        ZONE\n"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 9);
    assert_eq!(text(&out.stderr), "8 instances\n");

    let out = run(
        dir.path(),
        &["instances", "list", "--tag", "snoozebot=idle", "-o", "json"],
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mock-0000", "mock-0004"]);

    let out = run(
        dir.path(),
        &["instances", "get", "mock-0003", "--output", "jsonl"],
    );
    let lines: Vec<Value> = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["state"], "running");
    let out = run(dir.path(), &["instances", "get", "mock-9999"]);
    expect_failure(&out, 1, "mock-9999");
}

#[test]
fn stopping_by_tag_with_wait_stops_what_matches_and_says_so() {
    let dir =
        config_dir("[providers.fleet]\nkind = \"mock\"\ninstances = 8\ntransition = \"200ms\"\n");
    let out = run(
        dir.path(),
        &["instances", "stop", "--tag", "snoozebot=idle", "--wait"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ID         STATE               MODE  ERROR\n\
         mock-0000  running -> stopped  stop\n\
         mock-0004  running -> stopped  stop\n"
    );
    // Not a terminal: a line per settled instance, then the summary.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("mock-0000 stopped\n") && stderr.contains("mock-0004 stopped\n"),
        "{stderr}"
    );
    assert!(stderr.ends_with("stopped 2 of 2 instances\n"), "{stderr}");

    let out = run(
        dir.path(),
        &[
            "instances",
            "stop",
            "--tag",
            "snoozebot=idle",
            "--dry-run",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let changes: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(changes[0]["previous"], "running");
    assert_eq!(changes[0]["current"], "running");
    assert!(text(&out.stderr).ends_with("would change 2 of 2 instances\n"));
}

#[test]
fn some_failures_exit_1_and_every_result_is_still_printed() {
    let dir = config_dir(MOCK);
    let out = run(
        dir.path(),
        &["instances", "stop", "mock-0001", "nope-1", "-o", "jsonl"],
    );
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<Value> = json_lines(&out.stdout);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["current"], "stopped");
    assert_eq!(lines[1]["error"]["kind"], "invalid_argument");
    assert!(text(&out.stderr).ends_with("stopped 1 of 2 instances, 1 failed\n"));
}

#[test]
fn usage_mistakes_exit_2_with_one_line() {
    let two = "[providers.a]\nkind = \"mock\"\n[providers.b]\nkind = \"mock\"\n";
    for (config, args, words) in [
        (
            MOCK,
            &["instances", "stop"][..],
            "name the instances to stop",
        ),
        (
            MOCK,
            &["instances", "stop", "mock-0001", "--tag", "a=b"][..],
            "not both",
        ),
        (
            MOCK,
            &["instances", "list", "-p", "nope"][..],
            "no provider \"nope\"",
        ),
        (
            two,
            &["instances", "list"][..],
            "name the provider with --provider (configured: a, b)",
        ),
        (
            MOCK,
            &["instances", "list", "--tag", "novalue"][..],
            "is not KEY=VALUE",
        ),
        (
            MOCK,
            &["instances", "stop", "--mode", "nap", "mock-0001"][..],
            "invalid value 'nap'",
        ),
    ] {
        let dir = config_dir(config);
        let out = run(dir.path(), args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(words),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn every_command_has_help_with_examples() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["config", "check", "--help"],
        &["instances", "list", "--help"],
        &["instances", "get", "--help"],
        &["instances", "stop", "--help"],
        &["instances", "start", "--help"],
        &["plugins", "list", "--help"],
        &["plugins", "discover", "--help"],
        &["plugins", "verify", "--help"],
        &["keys", "generate", "--help"],
        &["completions", "--help"],
    ] {
        let out = snoozebot().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            text(&out.stdout).contains("Examples:"),
            "{args:?}: {}",
            text(&out.stdout)
        );
    }
    let out = snoozebot().args(["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("snoozebot__subcmd__instances__subcmd__stop"));
}

#[test]
fn a_generated_key_is_shown_once_and_its_line_goes_in_the_keys_file() {
    let out = snoozebot()
        .args(["keys", "generate", "--role", "operator", "--label", "ci"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let line = text(&out.stdout);
    let key = text(&out.stderr)
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .to_owned();
    assert!(key.starts_with("sbk_"), "{key}");
    assert!(
        !line.contains(&key),
        "the key itself is not in the file line"
    );
    let keys = snoozebot_rest::ApiKeys::parse(&line).unwrap();
    assert_eq!(keys.role_of(&key), Some(snoozebot_rest::Role::Operator));
}

// Multi-threaded: the test blocks on the server's output while a request is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_drains_on_sigterm_and_reloads_keys_on_sighup() {
    let dir = config_dir(
        "[server]\nlisten = \"127.0.0.1:0\"\nkeys_file = \"keys\"\n\n\
         [log]\nlevel = \"info,tower_http=debug\"\n\n\
         [providers.fleet]\nkind = \"mock\"\nlatency = \"500ms\"\n",
    );
    let admin = add_key(dir.path(), "admin");
    let mut server = Server::start(dir.path());
    let client = reqwest::Client::new();
    let base = server.base.clone();

    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready: Value = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true);
    let listed = client
        .get(format!("{base}/api/providers/fleet/instances?page_size=2"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    // A key added to the file works after SIGHUP, not before.
    let reader = add_key(dir.path(), "reader");
    let url = format!("{base}/api/providers/fleet/instances/mock-0001");
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for("API keys reloaded");
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A keys file that no longer reads keeps the keys in use.
    std::fs::write(dir.path().join("keys"), "not a keys file line\n").unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for("keys not reloaded");
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // SIGTERM while a stop is in flight: it finishes, then the server exits 0.
    let stop = tokio::spawn(
        client
            .post(format!(
                "{base}/api/providers/fleet/instances/mock-0002/stop"
            ))
            .bearer_auth(&admin)
            .send(),
    );
    // The server has the request (and not an earlier one's line).
    server.wait_for_all(&["mock-0002/stop", "started processing request"]);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let answer = stop.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    let change: Value = answer.json().await.unwrap();
    assert_eq!(change["current"], "stopped");
    server.wait_for("stopped");
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn serve_without_keys_refuses_to_start_and_says_how_to_make_one() {
    let dir = config_dir(MOCK);
    let out = run(dir.path(), &["serve"]);
    expect_failure(&out, 3, "snoozebot keys generate --role admin");
}

/// moto's EC2 server, as the AWS crate's tests start it.
#[path = "../../snoozebot-aws/tests/support/mod.rs"]
mod moto;

#[tokio::test]
async fn a_configured_aws_plugin_gets_its_region_endpoint_and_keys_from_the_file() {
    let plugin = binaries().join("snoozebot-plugin-aws");
    assert!(
        plugin.exists(),
        "{} is missing: cargo build -p snoozebot-aws --features plugin (scripts/test builds it)",
        plugin.display()
    );
    let moto = moto::Moto::start();
    let seeding = moto.provider().await;
    let client = seeding.client().await.unwrap();
    let idle = moto.launch(client, 3, "idle-web", "idle").await;
    moto.launch(client, 2, "busy-db", "busy").await;

    let dir = config_dir(&format!(
        r#"
[plugins]
dirs = ["{plugins}"]

[providers.aws]
kind = "plugin"
env = {{ AWS_REGION = "us-east-1", AWS_ENDPOINT_URL = "{endpoint}", AWS_ACCESS_KEY_ID = "testing", AWS_SECRET_ACCESS_KEY = {{ file = "aws-secret" }}, AWS_CONFIG_FILE = "/nonexistent", AWS_SHARED_CREDENTIALS_FILE = "/nonexistent" }}
"#,
        plugins = binaries().display(),
        endpoint = moto.endpoint,
    ));
    std::fs::write(dir.path().join("aws-secret"), "testing\n").unwrap();
    // Nothing of this process's AWS variables reaches the plugin: only the file's.
    let out = snoozebot()
        .current_dir(dir.path())
        .env("AWS_REGION", "eu-north-1")
        .args(["instances", "list", "--tag", "snoozebot=idle", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = idle.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert!(listed[0]["region"] == "us-east-1", "{listed}");

    let out = run(
        dir.path(),
        &[
            "instances",
            "stop",
            "--tag",
            "snoozebot=idle",
            "--wait",
            "-o",
            "jsonl",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 3);
    assert!(
        text(&out.stderr).ends_with("stopped 3 of 3 instances\n"),
        "{}",
        text(&out.stderr)
    );

    // A pin the binary does not have: refused without running it, and said so.
    let pinned = format!(
        "{}sha256 = \"{}\"\n",
        std::fs::read_to_string(dir.path().join("snoozebot.toml")).unwrap(),
        "0".repeat(64)
    );
    std::fs::write(dir.path().join("snoozebot.toml"), pinned).unwrap();
    let out = run(dir.path(), &["plugins", "verify", "aws"]);
    expect_failure(&out, 1, "is not trusted");
    let out = run(dir.path(), &["instances", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not the pinned one"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_readme_lines_run_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(&support::manifest_dir()).join("../README.md")).unwrap();
    let block = readme
        .split("<!-- cli-try -->\n```text\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("README.md has no `<!-- cli-try -->` text block");
    let dir = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        binaries().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for line in block.lines() {
        if let Some(install) = line.strip_prefix("cargo install ") {
            // The binary under test stands in for the install.
            assert_eq!(install, "--path snoozebot-cli");
            continue;
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(dir.path())
            .env("PATH", &path)
            .env_remove("SNOOZEBOT_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}: {}", text(&out.stderr));
        if line.contains("stop --tag snoozebot=idle --wait") {
            assert!(
                text(&out.stderr).ends_with("stopped 2 of 2 instances\n"),
                "{}",
                text(&out.stderr)
            );
        }
        if line.ends_with("config check") {
            assert_eq!(
                text(&out.stdout),
                "snoozebot.toml: ok (1 provider: fleet (mock))\n"
            );
        }
    }
}

#[tokio::test]
async fn serve_speaks_https_with_the_configured_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = config_dir(
        "[server]\nlisten = \"127.0.0.1:0\"\nkeys_file = \"keys\"\n\
         tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\n[providers.fleet]\nkind = \"mock\"\n",
    );
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    add_key(dir.path(), "reader");
    let server = Server::start(dir.path());
    let address = server
        .base
        .strip_prefix("https://")
        .expect(&server.base)
        .to_owned();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");

    // Plain HTTP to the TLS port gets no answer.
    let mut plain = tokio::net::TcpStream::connect(&address).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut bytes)).await;
    assert!(
        !String::from_utf8_lossy(&bytes).contains("200"),
        "{bytes:?}"
    );

    let dir = config_dir("[server]\ntls_cert = \"cert.pem\"\n[providers.fleet]\nkind = \"mock\"\n");
    let out = run(dir.path(), &["config", "check"]);
    expect_failure(&out, 3, "tls_cert and tls_key go together");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_and_azure_providers_configured_in_the_file_stop_against_the_fakes() {
    const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000aa";
    let gce = snoozebot_testkit::gce::FakeGce::start().await;
    gce.add_instance(
        "demo",
        "us-central1-a",
        "web-1",
        "RUNNING",
        &[("snoozebot", "idle")],
    );
    gce.add_instance(
        "demo",
        "us-central1-a",
        "web-2",
        "RUNNING",
        &[("snoozebot", "busy")],
    );
    let arm = snoozebot_testkit::arm::FakeArm::start().await;
    arm.add_vm(
        SUBSCRIPTION,
        "web",
        "vm-1",
        "running",
        &[("snoozebot", "idle")],
    );
    arm.add_vm(
        SUBSCRIPTION,
        "web",
        "vm-2",
        "running",
        &[("snoozebot", "busy")],
    );
    let dir = config_dir(&format!(
        r#"
[providers.gce]
kind = "gcp"
project = "demo"
zones = ["us-central1-a"]
endpoint = "{gce}"
anonymous = true

[providers.azure]
kind = "azure"
subscription = "{SUBSCRIPTION}"
endpoint = "{arm}"
token = {{ env = "FAKE_ARM_TOKEN" }}
poll_interval = "50ms"
"#,
        gce = gce.endpoint(),
        arm = arm.endpoint(),
    ));
    for (provider, mode) in [("gce", "stop"), ("azure", "deallocate")] {
        let path = dir.path().to_owned();
        let out = tokio::task::spawn_blocking(move || {
            snoozebot()
                .current_dir(path)
                .env("FAKE_ARM_TOKEN", "fake-token")
                .args([
                    "instances",
                    "stop",
                    "-p",
                    provider,
                    "--tag",
                    "snoozebot=idle",
                    "--wait",
                    "-o",
                    "json",
                ])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{provider}: {}",
            text(&out.stderr)
        );
        let changes: Value = serde_json::from_slice(&out.stdout).unwrap();
        let changes = changes.as_array().unwrap();
        assert_eq!(changes.len(), 1, "{provider}: {changes:?}");
        assert_eq!(changes[0]["previous"], "running", "{provider}");
        assert_eq!(changes[0]["current"], "stopped", "{provider}");
        assert_eq!(changes[0]["settled"], true, "{provider}");
        assert_eq!(changes[0]["mode"], mode, "{provider}");
        assert!(
            text(&out.stderr).ends_with("stopped 1 of 1 instance\n"),
            "{}",
            text(&out.stderr)
        );
    }
    // The token came from the environment named in the file.
    let out = run(dir.path(), &["instances", "list", "-p", "azure"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("FAKE_ARM_TOKEN is not set"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn plugins_are_listed_discovered_and_verified_without_running_them() {
    let plugin = binaries().join("snoozebot-plugin-mock");
    assert!(
        plugin.exists(),
        "{} is missing: cargo build -p snoozebot-testkit --features plugin (scripts/test builds it)",
        plugin.display()
    );
    let digest = sha2::Sha256::digest(std::fs::read(&plugin).unwrap());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    let dir = config_dir(&format!(
        "[plugins]\ndirs = [\"{}\"]\n\n[providers.mock]\nkind = \"plugin\"\nsha256 = \"{hex}\"\n",
        binaries().display()
    ));
    let out = run(dir.path(), &["plugins", "list", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["name"], "mock");
    assert_eq!(listed[0]["trust"], "sha256 pin");
    assert_eq!(listed[0]["verdict"], "ok");
    assert_eq!(listed[0]["path"], plugin.display().to_string());

    let out = run(dir.path(), &["plugins", "discover", "-o", "jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let found: Vec<Value> = json_lines(&out.stdout);
    let mock = found.iter().find(|entry| entry["name"] == "mock").unwrap();
    assert_eq!(mock["configured"], true);
    assert!(mock["problem"].is_null());
    assert!(
        found
            .iter()
            .any(|entry| entry["name"] == "aws" && entry["configured"] == false)
    );

    let out = run(dir.path(), &["plugins", "verify", "mock"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("passes its trust policy (sha256 pin)"));
    let out = run(dir.path(), &["plugins", "verify", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_cloud_that_cannot_be_reached_exits_4_and_says_so_in_one_line() {
    // Port 9 on loopback: nothing listens, the connection is refused at once.
    let dir = config_dir(
        "[providers.aws]\nkind = \"aws\"\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:9\"\n\
         access_key_id = \"testing\"\nsecret_access_key = \"testing\"\n\
         [providers.aws.middleware]\nretry_attempts = 1\n",
    );
    let out = run(dir.path(), &["instances", "list"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("snoozebot: cannot list instances: aws: unavailable: "),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        2,
        "the line and the -v hint: {stderr}"
    );
    assert!(
        stderr.contains("is the cloud (or its endpoint) reachable?"),
        "{stderr}"
    );
    let out = run(dir.path(), &["-v", "instances", "list"]);
    assert!(
        text(&out.stderr).contains("caused by: "),
        "{}",
        text(&out.stderr)
    );
}

/// The operator's two commands: publish the AWS plugin to a registry directory, install it
/// from there (a `file://` mirror) into another plugin directory; then the lock file pins it.
#[test]
fn the_aws_plugin_is_published_and_installed_with_two_commands_and_pinned_by_the_lock_file() {
    let plugin = binaries().join("snoozebot-plugin-aws");
    assert!(
        plugin.exists(),
        "{} is missing: cargo build -p snoozebot-aws --features plugin (scripts/test builds it)",
        plugin.display()
    );
    let work = tempfile::tempdir().unwrap();
    let out = run(
        work.path(),
        &["registry", "keygen", "--out", "publisher.key"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let public_key = text(&out.stdout).trim().to_owned();
    let again = run(
        work.path(),
        &["registry", "keygen", "--out", "publisher.key"],
    );
    expect_failure(&again, 1, "publisher.key");

    // Publisher: one command.
    let out = run(
        work.path(),
        &[
            "registry",
            "add",
            "registry",
            plugin.to_str().unwrap(),
            "--name",
            "aws",
            "--version",
            "0.1.0",
            "--key",
            "publisher.key",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("aws 0.1.0"),
        "{}",
        text(&out.stdout)
    );

    let config = format!(
        r#"
[plugins]
dirs = ["builtin"]
install_dir = "plugins"

[registries.main]
url = "file://{registry}"
keys = ["{public_key}"]

[providers.aws]
kind = "plugin"
"#,
        registry = work.path().join("registry").display(),
    );
    std::fs::write(work.path().join("snoozebot.toml"), config).unwrap();
    std::fs::create_dir(work.path().join("builtin")).unwrap();
    let search = run(work.path(), &["plugins", "search", "-o", "json"]);
    assert_eq!(search.status.code(), Some(0), "{}", text(&search.stderr));
    assert!(
        text(&search.stdout).contains("\"latest\":\"0.1.0\""),
        "{}",
        text(&search.stdout)
    );

    // Operator: one command.
    let out = run(work.path(), &["plugins", "install", "aws@^0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let installed = work.path().join("plugins/snoozebot-plugin-aws");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&plugin).unwrap()
    );
    let lock = std::fs::read_to_string(work.path().join("plugins/snoozebot-plugins.lock")).unwrap();
    assert!(lock.contains(&public_key), "{lock}");
    let verify = run(work.path(), &["plugins", "verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stdout));
    let verify = run(work.path(), &["plugins", "verify", "aws"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stderr));

    // Changed on disk: the lock file's pin refuses it.
    let mut bytes = std::fs::read(&installed).unwrap();
    bytes.extend_from_slice(b"patched");
    std::fs::write(&installed, bytes).unwrap();
    let verify = run(work.path(), &["plugins", "verify"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(
        text(&verify.stdout).contains("was changed"),
        "{}",
        text(&verify.stdout)
    );
    let verify = run(work.path(), &["plugins", "verify", "aws"]);
    expect_failure(&verify, 1, "not the pinned one");

    let out = run(work.path(), &["plugins", "remove", "aws"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!installed.exists());
}
