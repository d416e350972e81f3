//! `snoozebot agent run` on one machine: a synthetic `/proc` that stays idle, the fake EC2
//! metadata service saying which instance this is, the AWS provider on moto — the instance is
//! stopped after the nap and the warning; a postpone keeps it running.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_ec2::types::InstanceStateName;
use snoozebot_testkit::imds::{FakeCloud, FakeImds};
use support::{config_dir, text};

/// moto's EC2 server, as the AWS crate's tests start it.
#[path = "../../snoozebot-aws/tests/support/mod.rs"]
mod moto;

/// An idle machine's counters, never changing.
fn idle_proc(root: &Path) {
    std::fs::create_dir_all(root.join("proc/net")).unwrap();
    std::fs::write(
        root.join("proc/stat"),
        "cpu  5000 10 2000 900000 300 0 40 0 0 0\n",
    )
    .unwrap();
    std::fs::write(
        root.join("proc/meminfo"),
        "MemTotal: 4000000 kB\nMemAvailable: 3000000 kB\n",
    )
    .unwrap();
    std::fs::write(
        root.join("proc/net/dev"),
        "Inter-| Receive | Transmit\n face |bytes packets|bytes packets\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n",
    )
    .unwrap();
    std::fs::write(
        root.join("proc/diskstats"),
        " 253 0 vda 10 0 800 5 20 0 1600 9 0 12 14\n",
    )
    .unwrap();
}

async fn state_of(client: &aws_sdk_ec2::Client, id: &str) -> InstanceStateName {
    let described = client
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    described.reservations()[0].instances()[0]
        .state()
        .and_then(|state| state.name())
        .cloned()
        .unwrap()
}

fn config(moto: &moto::Moto, imds: &FakeImds) -> String {
    format!(
        r#"
[providers.aws]
kind = "aws"
region = "us-east-1"
endpoint = "{endpoint}"
access_key_id = "testing"
secret_access_key = "testing"

[agent]
provider = "aws"
metadata = "{metadata}"
proc_root = "machine"
interval = "200ms"
nap = "1s"
grace = "0s"
warning = "500ms"
postpone_file = "postpone"
"#,
        endpoint = moto.endpoint,
        metadata = imds.endpoint(),
    )
}

/// An instance on moto, the fake EC2 metadata service naming it, and a config directory whose
/// synthetic `/proc` stays idle: the machine the agent runs on.
async fn machine(
    moto: &moto::Moto,
    client: &aws_sdk_ec2::Client,
) -> (String, FakeImds, tempfile::TempDir) {
    let id = moto
        .launch(client, 1, "build-box", "x")
        .await
        .remove(0)
        .to_string();
    let imds = FakeImds::start(FakeCloud::Aws {
        instance_id: id.clone(),
        region: "us-east-1".into(),
    })
    .await;
    let dir = config_dir(&config(moto, &imds));
    idle_proc(&dir.path().join("machine"));
    (id, imds, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_stops_itself_through_its_provider_after_the_warning() {
    let moto = moto::Moto::start();
    let seeding = moto.provider().await;
    let client = seeding.client().await.unwrap();
    let (id, _imds, dir) = machine(&moto, client).await;
    let child = support::snoozebot()
        .current_dir(dir.path())
        .args(["agent", "run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("stopping {id} in 500ms")),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains(&format!("{id}: running -> ")),
        "{}",
        text(&out.stdout)
    );
    assert!(matches!(
        state_of(client, &id).await,
        InstanceStateName::Stopping | InstanceStateName::Stopped
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postponed_agent_keeps_its_instance_running() {
    let moto = moto::Moto::start();
    let seeding = moto.provider().await;
    let client = seeding.client().await.unwrap();
    let (id, _imds, dir) = machine(&moto, client).await;
    let postponed = support::run(dir.path(), &["agent", "postpone", "1h"]);
    assert_eq!(
        postponed.status.code(),
        Some(0),
        "{}",
        text(&postponed.stderr)
    );
    let mut child = support::snoozebot()
        .current_dir(dir.path())
        .args(["agent", "run"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the agent to say it is postponed, then make sure it did nothing.
    let stderr = child.stderr.take().unwrap();
    let said = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("postponed for"))
    });
    let said = tokio::time::timeout(Duration::from_secs(30), said)
        .await
        .unwrap()
        .unwrap();
    assert!(said.is_some(), "the agent never said it was postponed");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(state_of(client, &id).await, InstanceStateName::Running);
}

#[test]
fn off_cloud_the_agent_says_so_in_one_line_and_exits_3() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = config_dir(&format!(
        "[providers.fleet]\nkind = \"mock\"\n\n[agent]\nprovider = \"fleet\"\nmetadata = \"http://{closed}\"\n"
    ));
    let out = support::run(dir.path(), &["agent", "run"]);
    support::expect_failure(&out, 3, "not on EC2");
    assert_eq!(
        text(&out.stderr).trim().lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
}
