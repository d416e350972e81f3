//! The store in a real PostgreSQL (Debian's server, started by the test): every store's checks
//! (`support::stores`) across two replicas, migrations once, a lost connection, a big run.
#![allow(clippy::unwrap_used)]

mod support;

use snoozebot_core::InstanceId;
use snoozebot_schedule::PostgresStore;
use snoozebot_schedule::Remembered;
use snoozebot_schedule::store::{AuditEvent, RunRecord, Store};
use support::postgres::Postgres;
use support::stores;

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
async fn postgres_passes_every_stores_checks_across_two_replicas() {
    let postgres = Postgres::start();
    let store = PostgresStore::open(&postgres.url).await.unwrap();
    // A second replica opening the same database migrates nothing again, and sees what the
    // first one wrote.
    let other = PostgresStore::open(&postgres.url).await.unwrap();
    stores::round_trip(&store).await;
    assert_eq!(
        other.history(10).await.unwrap(),
        store.history(10).await.unwrap()
    );
    assert_eq!(
        other.remembered("mock").await.unwrap(),
        store.remembered("mock").await.unwrap()
    );
    stores::lease(&store, &other).await;
    stores::swaps(&store).await;
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
