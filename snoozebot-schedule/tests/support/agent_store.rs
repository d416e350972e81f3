//! What every store must do with agents' records: insert once, swap only from the revision
//! read, keep the events of a swap and none of a refused one.

use snoozebot_schedule::jiff::Timestamp;
use snoozebot_schedule::store::{AuditEvent, Store};
use snoozebot_schedule::{AgentRecord, AgentState};

fn event(action: &str) -> AuditEvent {
    AuditEvent {
        at: "2026-12-01T20:00:00Z".parse().unwrap(),
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

/// Runs the checks on an empty `store`.
pub async fn swaps(store: &dyn Store) {
    let at = |text: &str| -> Timestamp { text.parse().unwrap() };
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
    let actions: Vec<String> = store
        .history(10)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.action)
        .collect();
    assert_eq!(actions, ["stop pending", "register"]);
}
