//! What every store must do — memory, SQLite, PostgreSQL alike: remember and keep the trail,
//! lease to one replica at a time, and swap agents' records only from the revision read.

use std::time::Duration;

use snoozebot_core::InstanceId;
use snoozebot_schedule::Remembered;
use snoozebot_schedule::jiff::Timestamp;
use snoozebot_schedule::store::{AuditEvent, RunRecord, Store};
use snoozebot_schedule::{AgentRecord, AgentState};

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn run_event(run: &str, instance: &str) -> AuditEvent {
    AuditEvent {
        at: at("2026-12-01T19:00:00Z"),
        run: run.into(),
        provider: "mock".into(),
        instance: instance.into(),
        schedule: "office".into(),
        action: "stop".into(),
        reason: "stopped since 2026-12-01 19:00 (UTC)".into(),
        outcome: "ok".into(),
        error: None,
    }
}

/// A run's memory and events are kept, per provider; the trail reads newest first.
pub async fn round_trip(store: &dyn Store) {
    let id = InstanceId::new("mock-0001").unwrap();
    let remembered = Remembered {
        transition: Some(at("2026-12-01T19:00:00Z")),
        retained: true,
        kept: false,
    };
    store
        .commit(&RunRecord {
            id: "r1".into(),
            events: vec![run_event("r1", "mock-0001"), run_event("r1", "mock-0002")],
            remember: vec![("mock".into(), id.clone(), remembered)],
        })
        .await
        .unwrap();
    assert_eq!(store.remembered("mock").await.unwrap()[&id], remembered);
    assert!(store.remembered("other").await.unwrap().is_empty());
    let mut failed = run_event("r2", "mock-0003");
    failed.outcome = "failed".into();
    failed.error = Some("throttled".into());
    store
        .commit(&RunRecord {
            id: "r2".into(),
            events: vec![failed.clone()],
            remember: vec![],
        })
        .await
        .unwrap();
    let history = store.history(2).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0], failed);
}

/// One leader at a time; the lease passes only once it has expired. `other` is another
/// replica's handle on the same store (or `store` itself).
pub async fn lease(store: &dyn Store, other: &dyn Store) {
    let ttl = Duration::from_secs(30);
    let lead = async |store: &dyn Store, holder: &str, when: &str| {
        store.try_lead(holder, at(when), ttl).await.unwrap()
    };
    assert!(lead(store, "a", "2026-12-01T19:00:00Z").await);
    assert!(!lead(other, "b", "2026-12-01T19:00:10Z").await);
    // The leader renews.
    assert!(lead(store, "a", "2026-12-01T19:00:20Z").await);
    assert!(!lead(other, "b", "2026-12-01T19:00:45Z").await);
    // It stops renewing: after the lease's length, the other takes over.
    assert!(lead(other, "b", "2026-12-01T19:00:51Z").await);
    assert!(!lead(store, "a", "2026-12-01T19:00:52Z").await);
}

fn event(action: &str) -> AuditEvent {
    AuditEvent {
        at: at("2026-12-01T20:00:00Z"),
        run: "agents-a".into(),
        provider: "aws".into(),
        instance: "i-0123456789abcdef0".into(),
        schedule: "idle".into(),
        action: action.into(),
        reason: "idle since 2026-12-01T19:30:00Z".into(),
        outcome: "ok".into(),
        error: None,
    }
}

/// Agents' records: inserted once, swapped only from the revision read, with their events.
pub async fn swaps(store: &dyn Store) {
    let record = AgentRecord {
        provider: "aws".into(),
        instance: "i-0123456789abcdef0".into(),
        hostname: "build-box".into(),
        version: "0.1.0".into(),
        registered_at: at("2026-12-01T19:00:00Z"),
        last_seen: at("2026-12-01T19:00:00Z"),
        state: AgentState::Active,
        idle_since: None,
        stop_at: None,
        postponed_until: None,
        note: "registered".into(),
        revision: 0,
    };
    assert!(
        store
            .agent("aws", &record.instance)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .swap_agent(&record, &[event("register")])
            .await
            .unwrap()
    );
    // A second insert from revision 0 loses: another writer came first.
    assert!(
        !store
            .swap_agent(&record, &[event("register")])
            .await
            .unwrap()
    );
    let stored = store.agent("aws", &record.instance).await.unwrap().unwrap();
    assert_eq!(
        stored,
        AgentRecord {
            revision: 1,
            ..record.clone()
        }
    );

    let stopping = AgentRecord {
        state: AgentState::Stopping,
        idle_since: Some(at("2026-12-01T19:30:00Z")),
        stop_at: Some(at("2026-12-01T20:05:00Z")),
        postponed_until: Some(at("2026-12-01T19:45:00Z")),
        note: "idle".into(),
        ..stored.clone()
    };
    assert!(
        store
            .swap_agent(&stopping, &[event("stop pending")])
            .await
            .unwrap()
    );
    // A writer that read revision 1 too is refused, and its events are not kept.
    let stale = AgentRecord {
        state: AgentState::Active,
        ..stored
    };
    assert!(!store.swap_agent(&stale, &[event("cancel")]).await.unwrap());
    let all = store.agents().await.unwrap();
    assert_eq!(
        all,
        [AgentRecord {
            revision: 2,
            ..stopping
        }]
    );
    // The two newest events: a store's trail may hold others before.
    let actions: Vec<String> = store
        .history(2)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.action)
        .collect();
    assert_eq!(actions, ["stop pending", "register"]);
}
