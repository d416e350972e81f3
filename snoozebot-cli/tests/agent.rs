//! `snoozebot agent run` on one machine: a synthetic `/proc` that stays idle, the fake EC2
//! metadata service saying which instance this is, the AWS provider on moto. Self mode: the
//! instance is stopped after the nap and the warning, its users warned on their terminals; a
//! postpone keeps it running. Reporting mode: the agent reports to a real `snoozebot serve`
//! whose AWS provider points at moto, and the server stops the instance after its warning; a
//! postponed agent's instance is kept; a killed agent is marked lost; the trail has it all.
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

/// A terminal of the synthetic machine, last typed on an hour ago (its access time): a file
/// the agent writes its warnings to.
fn terminal(dir: &Path) -> std::path::PathBuf {
    let pts = dir.join("machine/dev/pts");
    std::fs::create_dir_all(&pts).unwrap();
    let path = pts.join("0");
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::create(&path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_accessed(an_hour_ago))
        .unwrap();
    path
}

fn config(moto: &moto::Moto, imds: &FakeImds) -> String {
    format!(
        r#"
{aws}
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
        aws = support::aws_on(&moto.endpoint),
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
    let terminal = terminal(dir.path());
    let (hook, posted) = support::webhook_receiver(2).await;
    let config = std::fs::read_to_string(dir.path().join("snoozebot.toml")).unwrap();
    std::fs::write(
        dir.path().join("snoozebot.toml"),
        format!("{config}\n[agent.webhook]\nurl = \"{hook}\"\n"),
    )
    .unwrap();
    let child = support::snoozebot()
        .current_dir(dir.path())
        .args(["agent", "run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()),
    )
    .await;
    let Ok(out) = waited else {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        panic!("the agent did not stop its instance within 60 s");
    };
    let out = out.unwrap();
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
    let heard = std::fs::read_to_string(&terminal).unwrap();
    assert!(
        heard.contains("snoozebot: idle for")
            && heard.contains(&format!("stopping {id} in 500ms"))
            && heard.contains("snoozebot agent postpone 2h"),
        "{heard}"
    );
    // The webhook heard the stop announced, then made.
    let posted = tokio::time::timeout(Duration::from_secs(10), posted)
        .await
        .expect("the webhook was not posted to twice")
        .unwrap();
    let actions: Vec<(String, String)> = posted
        .iter()
        .map(|body| {
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            let event = &body["events"][0];
            (
                event["action"].as_str().unwrap().to_owned(),
                event["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("stop pending".to_owned(), "ok".to_owned()),
            ("stop".to_owned(), "ok".to_owned())
        ]
    );
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

/// An agent process; killed when dropped.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A central `snoozebot serve` and the machine whose agent reports to it. The server stops
/// first when dropped, then the directories go.
struct Central {
    server: support::Server,
    /// A reader's key of the server.
    reader: String,
    /// The instance.
    id: String,
    _imds: FakeImds,
    /// The agent's machine: its config, `/proc` and terminals.
    machine: tempfile::TempDir,
    server_dir: tempfile::TempDir,
}

/// A central `snoozebot serve` with the AWS provider on moto and `[agents]`, and the agent's
/// machine reporting to it.
async fn central(moto: &moto::Moto, client: &aws_sdk_ec2::Client) -> Central {
    let (id, imds, machine_dir) = machine(moto, client).await;
    let server_dir = config_dir(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
keys_file = "keys"

{aws}
[agents]
secret = {{ file = "agent-secret" }}
heartbeat = "1s"
lost_after = "3s"
warning = "1s"
"#,
        aws = support::aws_on(&moto.endpoint),
    ));
    std::fs::write(
        server_dir.path().join("agent-secret"),
        "a secret of the test server, well over 32 bytes\n",
    )
    .unwrap();
    let reader = support::add_key(server_dir.path(), "reader");
    let key = support::run(server_dir.path(), &["agent", "key", "aws", &id]);
    assert_eq!(key.status.code(), Some(0), "{}", text(&key.stderr));
    std::fs::write(machine_dir.path().join("agent-key"), &key.stdout).unwrap();
    let server = support::Server::start(server_dir.path());
    // The machine's agent reports to it.
    let config = std::fs::read_to_string(machine_dir.path().join("snoozebot.toml")).unwrap();
    std::fs::write(
        machine_dir.path().join("snoozebot.toml"),
        format!(
            "{config}server = \"{}\"\nkey = {{ file = \"agent-key\" }}\n",
            server.base
        ),
    )
    .unwrap();
    Central {
        server,
        reader,
        id,
        _imds: imds,
        machine: machine_dir,
        server_dir,
    }
}

fn spawn_agent(dir: &Path) -> Agent {
    Agent(
        support::snoozebot()
            .current_dir(dir)
            .args(["agent", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Polls the server's view of `id`'s agent until `done` holds (at most 30 s).
async fn agent_until(
    server: &support::Server,
    reader: &str,
    id: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let http = reqwest::Client::new();
    let mut last = serde_json::Value::Null;
    for _ in 0..300 {
        let response = http
            .get(format!("{}/api/agents/aws/{id}", server.base))
            .bearer_auth(reader)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            last = response.json().await.unwrap();
            if done(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the agent never got there: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reporting_agent_is_stopped_by_the_server_after_its_warning() {
    let moto = moto::Moto::start();
    let seeding = moto.provider().await;
    let client = seeding.client().await.unwrap();
    let Central {
        server,
        reader,
        id,
        machine,
        ..
    } = &central(&moto, client).await;
    let terminal = terminal(machine.path());
    let _agent = spawn_agent(machine.path());
    // Claimed ("stopping"), then made ("stopped").
    agent_until(server, reader, id, |agent| {
        agent["state"] == "stopped" && agent["note"] == "stopped"
    })
    .await;
    assert!(matches!(
        state_of(client, id).await,
        InstanceStateName::Stopping | InstanceStateName::Stopped
    ));
    // The trail, over REST: registered, the stop decided, the stop made.
    let history: Vec<serde_json::Value> = reqwest::Client::new()
        .get(format!("{}/api/schedules/history", server.base))
        .bearer_auth(reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = history
        .iter()
        .rev()
        .filter(|event| event["instance"] == id.as_str())
        .map(|event| event["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["register", "stop pending", "stop"], "{history:?}");
    assert!(history.iter().all(|event| event["outcome"] == "ok"));
    // The machine's users were told when it would stop.
    let heard = std::fs::read_to_string(&terminal).unwrap();
    assert!(
        heard.contains(&format!("the server stops {id} at")),
        "{heard}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postponed_reporting_agent_keeps_its_instance_and_a_killed_one_is_lost() {
    let moto = moto::Moto::start();
    let seeding = moto.provider().await;
    let client = seeding.client().await.unwrap();
    let Central {
        server,
        reader,
        id,
        machine,
        ..
    } = &central(&moto, client).await;
    let postponed = support::run(machine.path(), &["agent", "postpone", "1h"]);
    assert_eq!(
        postponed.status.code(),
        Some(0),
        "{}",
        text(&postponed.stderr)
    );
    let agent = spawn_agent(machine.path());
    let kept = agent_until(server, reader, id, |agent| agent["state"] == "idle").await;
    assert!(
        kept["note"]
            .as_str()
            .unwrap()
            .starts_with("postponed until"),
        "{kept}"
    );
    assert!(kept["postponed_until"].is_string(), "{kept}");
    assert_eq!(state_of(client, id).await, InstanceStateName::Running);
    // The agent dies: three seconds without a heartbeat and it is lost.
    drop(agent);
    let lost = agent_until(server, reader, id, |agent| agent["state"] == "lost").await;
    assert!(
        lost["note"]
            .as_str()
            .unwrap()
            .starts_with("no heartbeat since"),
        "{lost}"
    );
    assert_eq!(state_of(client, id).await, InstanceStateName::Running);
}

#[test]
fn config_check_refuses_agent_mistakes_before_anything_runs() {
    let base = "[providers.fleet]\nkind = \"mock\"\n\n";
    for (section, says) in [
        (
            "[agent]\nprovider = \"fleet\"\nkeep_awake = [\"Mon-Fri 9-17\"]\n",
            "[agent] keep_awake",
        ),
        (
            "[agent]\nprovider = \"fleet\"\nkeep_awake = [\"Mon-Fri 09:00-17:00\"]\ntimezone = \"Mars/Olympus\"\n",
            "[agent] keep_awake",
        ),
        (
            "[agent]\nprovider = \"fleet\"\nserver = \"ftp://snoozebot.internal\"\nkey = \"sba_x\"\n",
            "is not an http(s) URL",
        ),
        (
            "[agent]\nprovider = \"fleet\"\nserver = \"https://snoozebot.internal\"\n",
            "server needs key",
        ),
        (
            "[agent]\nprovider = \"fleet\"\ncpu_percent = 250\n",
            "cpu_percent is a percentage",
        ),
        (
            "[agents]\nsecret = \"s\"\nheartbeat = \"10s\"\nlost_after = \"5s\"\n",
            "lost_after is longer than a heartbeat",
        ),
    ] {
        let dir = config_dir(&format!("{base}{section}"));
        let out = support::run(dir.path(), &["config", "check"]);
        support::expect_failure(&out, 3, says);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_key_the_server_refuses_exits_3_with_the_servers_reason() {
    let moto = moto::Moto::start();
    let seeding = moto.provider().await;
    let client = seeding.client().await.unwrap();
    let central = central(&moto, client).await;
    // Another instance's key.
    let other = support::run(
        central.server_dir.path(),
        &["agent", "key", "aws", "i-0fffffffffffffff0"],
    );
    std::fs::write(central.machine.path().join("agent-key"), &other.stdout).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking({
            let dir = central.machine.path().to_owned();
            move || support::run(&dir, &["agent", "run"])
        }),
    )
    .await
    .expect("the refused agent did not exit within 60 s")
    .unwrap();
    support::expect_failure(&out, 3, "the server refused this agent");
    assert!(
        text(&out.stderr).contains("not the agent key of aws/"),
        "{}",
        text(&out.stderr)
    );
}
