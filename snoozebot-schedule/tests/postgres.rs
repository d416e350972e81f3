//! The store in a real PostgreSQL (Debian's server, started by the test): the trail, the
//! memory, migrations once, and one leader at a time.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use snoozebot_core::InstanceId;
use snoozebot_schedule::PostgresStore;
use snoozebot_schedule::Remembered;
use snoozebot_schedule::jiff::Timestamp;
use snoozebot_schedule::store::{AuditEvent, RunRecord, Store};
use support::postgres::Postgres;

fn event(instance: &str, outcome: &str) -> AuditEvent {
    AuditEvent {
        at: "2026-12-01T19:00:00Z".parse().unwrap(),
        run: "replica-a-1".into(),
        provider: "aws".into(),
        instance: instance.into(),
        schedule: "office".into(),
        action: "stop".into(),
        reason: "stopped since 2026-12-01 19:00 (UTC)".into(),
        outcome: outcome.into(),
        error: (outcome == "failed").then(|| "throttled".to_owned()),
    }
}

#[tokio::test]
async fn postgres_keeps_the_trail_and_the_memory_and_elects_one_leader() {
    let postgres = Postgres::start();
    let store = PostgresStore::open(&postgres.url).await.unwrap();
    // A second replica opening the same database migrates nothing again.
    let other = PostgresStore::open(&postgres.url).await.unwrap();
    let id = InstanceId::new("i-0123456789abcdef0").unwrap();
    let remembered = Remembered {
        transition: Some("2026-12-01T19:00:00Z".parse().unwrap()),
        retained: true,
        kept: false,
    };
    store
        .commit(&RunRecord {
            id: "replica-a-1".into(),
            events: vec![event("i-1", "ok"), event("i-2", "failed")],
            remember: vec![("aws".into(), id.clone(), remembered)],
        })
        .await
        .unwrap();
    assert_eq!(other.remembered("aws").await.unwrap()[&id], remembered);
    let history = other.history(10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0], event("i-2", "failed"));

    let at = |text: &str| -> Timestamp { text.parse().unwrap() };
    let ttl = Duration::from_secs(30);
    assert!(
        store
            .try_lead("a", at("2026-12-01T19:00:00Z"), ttl)
            .await
            .unwrap()
    );
    assert!(
        !other
            .try_lead("b", at("2026-12-01T19:00:10Z"), ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lead("a", at("2026-12-01T19:00:20Z"), ttl)
            .await
            .unwrap()
    );
    assert!(
        !other
            .try_lead("b", at("2026-12-01T19:00:45Z"), ttl)
            .await
            .unwrap()
    );
    assert!(
        other
            .try_lead("b", at("2026-12-01T19:00:51Z"), ttl)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_lead("a", at("2026-12-01T19:00:52Z"), ttl)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn postgres_swaps_agents_records_only_from_the_revision_read() {
    let postgres = Postgres::start();
    let store = PostgresStore::open(&postgres.url).await.unwrap();
    support::agent_store::swaps(&store).await;
}

#[tokio::test]
async fn a_lost_connection_is_made_again_and_a_dead_server_is_an_error() {
    let postgres = Postgres::start();
    let store = PostgresStore::open(&postgres.url).await.unwrap();
    assert!(store.history(1).await.unwrap().is_empty());
    let url = postgres.url.clone();
    drop(postgres);
    let error = store.history(1).await.unwrap_err();
    assert!(error.to_string().contains("postgres"), "{error}");
    assert!(PostgresStore::open(&url).await.is_err());
}

#[tokio::test]
async fn a_run_of_twelve_thousand_actions_is_recorded_whole() {
    let postgres = Postgres::start();
    let store = PostgresStore::open(&postgres.url).await.unwrap();
    let events: Vec<AuditEvent> = (0..12_000)
        .map(|n| event(&format!("i-{n}"), "ok"))
        .collect();
    let remember: Vec<(String, InstanceId, Remembered)> = (0..12_000)
        .map(|n| {
            (
                "aws".to_owned(),
                InstanceId::new(format!("i-{n:017x}")).unwrap(),
                Remembered::default(),
            )
        })
        .collect();
    store
        .commit(&RunRecord {
            id: "replica-a-2".into(),
            events,
            remember,
        })
        .await
        .unwrap();
    assert_eq!(store.history(20_000).await.unwrap().len(), 12_000);
    assert_eq!(store.remembered("aws").await.unwrap().len(), 12_000);
}
