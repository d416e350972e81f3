//! `snoozebot schedule` against moto: a config with two schedules, a fleet tagged with both
//! native and Custodian-style tags, planned, applied and planned again empty.
#![allow(clippy::unwrap_used)]

mod support;

use aws_sdk_ec2::types::{InstanceStateName, Tag};
use serde_json::Value;
use support::{config_dir, json_lines, run, text};

/// moto's EC2 server, as the AWS crate's tests start it.
#[path = "../../snoozebot-aws/tests/support/mod.rs"]
mod moto;

/// Launches `count` instances on moto, tagged `key=value`.
async fn launch_tagged(
    moto: &moto::Moto,
    client: &aws_sdk_ec2::Client,
    count: i32,
    name: &str,
    key: &str,
    value: &str,
) -> Vec<snoozebot_core::InstanceId> {
    let ids = moto.launch(client, count, name, "x").await;
    client
        .create_tags()
        .set_resources(Some(ids.iter().map(|id| id.to_string()).collect()))
        .tags(Tag::builder().key(key).value(value).build())
        .send()
        .await
        .unwrap();
    ids
}

/// Tuesday 1 December 2026, 23:00 UTC: midnight in Berlin, after 22:00 and after 18:00.
const NIGHT: &str = "2026-12-01T23:00:00Z";
/// Wednesday 2 December 2026, 08:30 UTC: 09:30 in Berlin, 08:30 in London.
const MORNING: &str = "2026-12-02T08:30:00Z";

#[tokio::test]
async fn two_schedules_and_custodian_tags_are_planned_applied_and_planned_again_empty() {
    let moto = moto::Moto::start();
    let seeding = moto.provider().await;
    let client = seeding.client().await.unwrap();
    let office = launch_tagged(&moto, client, 2, "office", "snoozebot-schedule", "office").await;
    let lab = launch_tagged(&moto, client, 2, "lab", "snoozebot-schedule", "lab").await;
    let inline = launch_tagged(
        &moto,
        client,
        1,
        "inline",
        "snoozebot-schedule",
        "Mon-Fri 09:00-17:00 Europe/London",
    )
    .await;
    let custodian = launch_tagged(
        &moto,
        client,
        2,
        "custodian",
        "maid_offhours",
        "off=(M-F,18);on=(M-F,8);tz=utc",
    )
    .await;
    let opted_out = launch_tagged(&moto, client, 1, "opted-out", "maid_offhours", "off").await;
    let free = moto.launch(client, 2, "free", "x").await;

    let dir = config_dir(&format!(
        r#"
{aws}
[schedules.office]
timezone = "Europe/Berlin"
periods = ["Mon-Fri 08:00-19:00"]
days_off = ["2026-12-25"]

[schedules.lab]
periods = ["Mon-Sat 06:00-22:00"]
enforced = true

[scheduler]
store = "state/schedule.db"

[scheduler.custodian]
default_tz = "utc"
"#,
        aws = support::aws_on(&moto.endpoint),
    ));
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let out = run(dir.path(), &["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let plan = |at: &str| {
        let out = run(dir.path(), &["schedule", "plan", "--at", at, "-o", "jsonl"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        json_lines(&out.stdout)
    };
    let acting = |items: &[Value]| -> Vec<(String, String)> {
        let mut acting: Vec<(String, String)> = items
            .iter()
            .filter(|item| item["action"] != "none")
            .map(|item| {
                (
                    item["id"].as_str().unwrap().to_owned(),
                    item["action"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        acting.sort();
        acting
    };
    let mut scheduled: Vec<String> = office
        .iter()
        .chain(&lab)
        .chain(&inline)
        .chain(&custodian)
        .map(|id| id.to_string())
        .collect();
    scheduled.sort();

    let night = plan(NIGHT);
    assert_eq!(
        night.len(),
        7,
        "only the scheduled instances are planned: {night:?}"
    );
    let stops: Vec<(String, String)> = scheduled
        .iter()
        .map(|id| (id.clone(), "stop".to_owned()))
        .collect();
    assert_eq!(acting(&night), stops);

    let out = run(
        dir.path(),
        &["schedule", "apply", "--at", NIGHT, "-o", "jsonl"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("applied 7 of 7 actions"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        json_lines(&out.stdout)
            .iter()
            .all(|row| row["outcome"] == "ok")
    );

    let again = plan(NIGHT);
    assert!(acting(&again).is_empty(), "{again:?}");

    let history = run(dir.path(), &["schedule", "history", "-o", "jsonl"]);
    assert_eq!(
        json_lines(&history.stdout).len(),
        7,
        "{}",
        text(&history.stderr)
    );

    // Untouched: opted out and untagged.
    let untouched: Vec<String> = opted_out
        .iter()
        .chain(&free)
        .map(|id| id.to_string())
        .collect();
    let described = client
        .describe_instances()
        .set_instance_ids(Some(untouched))
        .send()
        .await
        .unwrap();
    for reservation in described.reservations() {
        for instance in reservation.instances() {
            assert_eq!(
                instance.state().and_then(|state| state.name()),
                Some(&InstanceStateName::Running),
                "{:?} was touched",
                instance.instance_id()
            );
        }
    }

    // The morning: office (09:30 in Berlin), lab and Custodian start; inline waits for 09:00
    // in London.
    let morning = plan(MORNING);
    let mut starts: Vec<String> = office
        .iter()
        .chain(&lab)
        .chain(&custodian)
        .map(|id| id.to_string())
        .collect();
    starts.sort();
    let expected: Vec<(String, String)> = starts
        .into_iter()
        .map(|id| (id, "start".to_owned()))
        .collect();
    assert_eq!(acting(&morning), expected);
}

#[test]
fn a_schedule_that_does_not_read_is_a_config_error_naming_it() {
    for (schedule, words) in [
        (
            "periods = [\"Mon-Fry 08:00-19:00\"]",
            "schedules.office: \"Mon-Fry 08:00-19:00\"",
        ),
        (
            "periods = [\"Mon-Fri 08:00-19:00\"]\ntimezone = \"Mars/Olympus\"",
            "not a time zone",
        ),
        (
            "periods = [\"Mon-Fri 08:00-19:00\"]\ndays_off = [\"25.12.2026\"]",
            "not a date",
        ),
        ("periods = []", "has no period"),
    ] {
        let dir = config_dir(&format!(
            "[providers.fleet]\nkind = \"mock\"\n\n[schedules.office]\n{schedule}\n"
        ));
        let out = run(dir.path(), &["config", "check"]);
        support::expect_failure(&out, 3, words);
        assert!(
            text(&out.stderr).contains("snoozebot.toml:4"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_provider_that_cannot_be_listed_is_exit_4_and_the_others_are_still_planned() {
    let dir = config_dir(
        r#"
[providers.fleet]
kind = "mock"
instances = 2

[providers.gone]
kind = "aws"
region = "us-east-1"
endpoint = "http://127.0.0.1:1"
access_key_id = "testing"
secret_access_key = "testing"

[providers.gone.middleware]
retry_attempts = 1
timeout = "5s"
"#,
    );
    let out = run(dir.path(), &["schedule", "plan"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not reached: gone"),
        "{}",
        text(&out.stderr)
    );
    let out = run(dir.path(), &["schedule", "plan", "--provider", "fleet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(dir.path(), &["schedule", "plan", "--provider", "nowhere"]);
    support::expect_failure(&out, 2, "no provider \"nowhere\"");
}

/// A period that is certainly not now: two to three hours from now, UTC, every day.
fn a_period_away_from_now() -> String {
    let hour = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600)
        % 24;
    format!("daily {:02}:00-{:02}:00", (hour + 2) % 24, (hour + 3) % 24)
}

// Multi-threaded: the test waits on the server while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_applies_the_schedules_on_its_ticks_and_shows_the_history_over_rest() {
    let moto = moto::Moto::start();
    let seeding = moto.provider().await;
    let client = seeding.client().await.unwrap();
    launch_tagged(&moto, client, 3, "office", "snoozebot-schedule", "office").await;
    let free = moto.launch(client, 1, "free", "x").await;
    let dir = config_dir(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
keys_file = "keys"

{aws}
[schedules.office]
periods = ["{period}"]

[scheduler]
interval = "1s"
"#,
        aws = support::aws_on(&moto.endpoint),
        period = a_period_away_from_now(),
    ));
    let reader = support::add_key(dir.path(), "reader");
    let operator = support::add_key(dir.path(), "operator");
    let mut server = support::Server::start(dir.path());
    let http = reqwest::Client::new();
    let base = server.base.clone();

    // Within a few ticks the three are stopped and the trail says so.
    let mut history = Vec::new();
    for _ in 0..100 {
        history = http
            .get(format!("{base}/api/schedules/history"))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap();
        if history.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(history.len(), 3, "{history:?}");
    assert!(
        history
            .iter()
            .all(|event| event["action"] == "stop" && event["outcome"] == "ok")
    );
    let plan: Value = http
        .get(format!("{base}/api/schedules/plan"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plan["actions"], 0, "{plan}");
    let refused = http
        .post(format!("{base}/api/schedules/apply"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let applied: Value = http
        .post(format!("{base}/api/schedules/apply"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(applied["applied"].as_array().unwrap().len(), 0, "{applied}");

    let described = client
        .describe_instances()
        .set_instance_ids(Some(free.iter().map(|id| id.to_string()).collect()))
        .send()
        .await
        .unwrap();
    let state = described.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .cloned();
    assert_eq!(
        state,
        Some(InstanceStateName::Running),
        "the untagged one was touched"
    );

    server.signal(nix::sys::signal::Signal::SIGTERM);
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    server.wait_for("stopped");
}

/// A PostgreSQL started by the test, as the schedule crate's tests start it.
#[path = "../../snoozebot-schedule/tests/support/postgres.rs"]
mod postgres;

/// Starts `ids` on moto (as someone would by hand).
async fn start_by_hand(client: &aws_sdk_ec2::Client, ids: &[snoozebot_core::InstanceId]) {
    client
        .start_instances()
        .set_instance_ids(Some(ids.iter().map(|id| id.to_string()).collect()))
        .send()
        .await
        .unwrap();
}

/// The history over REST, once it has `count` events (within 20 s).
async fn history_of(http: &reqwest::Client, base: &str, key: &str, count: usize) -> Vec<Value> {
    let mut history = Vec::new();
    for _ in 0..200 {
        history = http
            .get(format!("{base}/api/schedules/history?limit=100"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap();
        if history.len() >= count {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    history
}

fn replicas_of(events: &[Value]) -> Vec<String> {
    let mut replicas: Vec<String> = events
        .iter()
        .map(|event| {
            let run = event["run"].as_str().unwrap();
            run.rsplit_once('-').unwrap().0.to_owned()
        })
        .collect();
    replicas.sort();
    replicas.dedup();
    replicas
}

// Multi-threaded: the test waits on the servers while they run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_elect_one_reconciler_and_hand_over_when_it_dies() {
    let postgres = postgres::Postgres::start();
    let moto = moto::Moto::start();
    let seeding = moto.provider().await;
    let client = seeding.client().await.unwrap();
    let scheduled = launch_tagged(&moto, client, 2, "office", "snoozebot-schedule", "office").await;
    let dir = config_dir(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
keys_file = "keys"

{aws}
[schedules.office]
periods = ["{period}"]
enforced = true

[scheduler]
store = "{store}"
interval = "1s"
lease = "3s"
"#,
        aws = support::aws_on(&moto.endpoint),
        period = a_period_away_from_now(),
        store = postgres.url,
    ));
    let reader = support::add_key(dir.path(), "reader");
    let http = reqwest::Client::new();
    let mut first = support::Server::start(dir.path());
    let first_base = first.base.clone();
    // The first stops both, alone.
    let events = history_of(&http, &first_base, &reader, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let leader = replicas_of(&events);
    assert!(
        leader[0].ends_with(&first.child.id().to_string()),
        "{leader:?}"
    );

    // A second replica joins; hands-on starts are undone by the leader only.
    let second = support::Server::start(dir.path());
    let second_base = second.base.clone();
    start_by_hand(client, &scheduled).await;
    let events = history_of(&http, &second_base, &reader, 4).await;
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(
        replicas_of(&events),
        leader,
        "the follower acted while the leader lived"
    );

    // The leader dies without a word; the follower takes over once its lease runs out.
    first.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = first.child.wait();
    let killed = std::time::Instant::now();
    start_by_hand(client, &scheduled).await;
    let events = history_of(&http, &second_base, &reader, 6).await;
    let handed_over = killed.elapsed();
    assert_eq!(events.len(), 6, "no hand-over: {events:?}");
    let newest = replicas_of(&events[..2]);
    assert!(
        newest[0].ends_with(&second.child.id().to_string()),
        "{newest:?}"
    );
    // The lease (3 s) and a tick (1 s), with room for moto.
    assert!(
        handed_over < std::time::Duration::from_secs(10),
        "hand-over took {handed_over:?}"
    );
    eprintln!("hand-over after the leader died: {handed_over:?}");
    drop(second);
    drop(postgres);
}

/// `schedule apply` posts its run to `[scheduler.webhook]` before it exits; the URL comes from
/// the environment, as a secret would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_apply_posts_its_run_to_the_webhook_before_it_exits() {
    let (url, received) = support::webhook_receiver(1).await;
    let dir = config_dir(
        r#"
[providers.fleet]
kind = "mock"
instances = 4

[scheduler]
tag = "snoozebot"

[schedules.idle]
periods = ["Mon-Fri 08:00-19:00"]

[scheduler.webhook]
url = { env = "TEST_WEBHOOK_URL" }
format = "slack"
"#,
    );
    let out = support::snoozebot()
        .current_dir(dir.path())
        .env("TEST_WEBHOOK_URL", &url)
        .args(["schedule", "apply", "--at", NIGHT])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body: Value = serde_json::from_str(&received.await.unwrap()[0]).unwrap();
    let message = body["text"].as_str().unwrap();
    assert!(message.starts_with("snoozebot: 1 action"), "{message}");
    assert!(
        message.contains("stop fleet/mock-0000 (idle): ok"),
        "{message}"
    );
}
