//! Runs over the mock fleet: planned, applied, planned again; what is not scheduled is never
//! touched; a failure on one instance holds back no other; every action is in the trail.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use jiff::Timestamp;
use snoozebot_core::{CloudProvider, ErrorKind, InstanceId, InstanceState};
use snoozebot_schedule::store::{SqliteStore, Store};
use snoozebot_schedule::{
    Action, CustodianConfig, CustodianDefaults, Fleet, Limits, Overrides, Reconciler, Schedule,
    Schedules, parse_period,
};
use snoozebot_testkit::{MockInstance, MockOperation, MockProvider};

fn utc(text: &str) -> Timestamp {
    format!("{text}:00Z").parse().unwrap()
}

fn schedules() -> Arc<Schedules> {
    let office = Schedule::from_periods(
        "office",
        "Europe/Berlin",
        &[parse_period("Mon-Fri 08:00-19:00").unwrap()],
        [],
    )
    .unwrap();
    Arc::new(
        Schedules::new()
            .with_schedule(office, Overrides::default())
            .with_custodian(CustodianConfig {
                tag: "maid_offhours".into(),
                defaults: CustodianDefaults {
                    zone: "utc".into(),
                    ..CustodianDefaults::default()
                },
                overrides: Overrides::default(),
            }),
    )
}

/// 3 on the named schedule, 2 inline, 2 Custodian-tagged, 1 Custodian opted out, 2 untagged,
/// 1 with a schedule tag that does not parse; all running.
fn fleet() -> MockProvider {
    let running = |id: &str| MockInstance::new(id).state(InstanceState::Running);
    let mut instances = Vec::new();
    for id in ["mock-office-1", "mock-office-2", "mock-office-3"] {
        instances.push(running(id).tag("snoozebot-schedule", "office"));
    }
    for id in ["mock-inline-1", "mock-inline-2"] {
        instances.push(running(id).tag("snoozebot-schedule", "Mon-Fri 09:00-17:00 UTC"));
    }
    for id in ["mock-custodian-1", "mock-custodian-2"] {
        instances.push(running(id).tag("maid_offhours", "off=(M-F,18);on=(M-F,8);tz=utc"));
    }
    instances.push(running("mock-opted-out").tag("maid_offhours", "off"));
    instances.push(running("mock-free-1"));
    instances.push(running("mock-free-2"));
    instances.push(running("mock-broken").tag("snoozebot-schedule", "whenever"));
    instances
        .into_iter()
        .fold(MockProvider::builder(), |builder, instance| {
            builder.instance(instance)
        })
        .build()
}

#[tokio::test]
async fn a_run_stops_what_is_out_of_hours_and_the_next_plan_is_empty() {
    let mock = Arc::new(fleet());
    let fleets = [Fleet {
        name: "mock".into(),
        provider: Arc::clone(&mock) as Arc<dyn CloudProvider>,
    }];
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let reconciler = Reconciler::new(schedules(), store.clone(), Limits::default());
    // Tuesday 20:00 UTC: every schedule is off.
    let now = utc("2026-12-01T20:00");
    mock.clear_calls();
    let plan = reconciler.plan(&fleets, now).await.unwrap();
    assert_eq!(
        mock.call_count(MockOperation::List),
        1,
        "one listing per provider per run"
    );
    let stops: Vec<String> = plan.actions().map(|item| item.id.to_string()).collect();
    assert_eq!(
        stops,
        [
            "mock-custodian-1",
            "mock-custodian-2",
            "mock-inline-1",
            "mock-inline-2",
            "mock-office-1",
            "mock-office-2",
            "mock-office-3"
        ]
    );
    assert_eq!(plan.invalid.len(), 1, "{:?}", plan.invalid);
    assert!(plan.invalid[0].2.contains("whenever"));
    let applied = reconciler.apply(&fleets, &plan).await.unwrap();
    assert!(applied.iter().all(|applied| applied.error.is_none()));
    assert_eq!(mock.call_count(MockOperation::Stop), 7);

    let again = reconciler.plan(&fleets, now).await.unwrap();
    assert_eq!(again.actions().count(), 0, "{:?}", again.items);
    for untouched in [
        "mock-opted-out",
        "mock-free-1",
        "mock-free-2",
        "mock-broken",
    ] {
        let id = InstanceId::new(untouched).unwrap();
        assert_eq!(
            mock.get_instance(&id).await.unwrap().state,
            InstanceState::Running,
            "{untouched}"
        );
        assert!(
            again.items.iter().all(|item| item.id != id),
            "{untouched} was planned"
        );
    }
    let trail = store.history(100).await.unwrap();
    assert_eq!(trail.len(), 7);
    assert!(
        trail
            .iter()
            .all(|event| event.outcome == "ok" && event.action == "stop")
    );

    // Wednesday 08:30 UTC (09:30 in Berlin): the office and Custodian ones start, inline not yet.
    let morning = reconciler
        .plan(&fleets, utc("2026-12-02T08:30"))
        .await
        .unwrap();
    let starts: Vec<String> = morning
        .actions()
        .filter(|item| item.action == Action::Start)
        .map(|item| item.id.to_string())
        .collect();
    assert_eq!(
        starts,
        [
            "mock-custodian-1",
            "mock-custodian-2",
            "mock-office-1",
            "mock-office-2",
            "mock-office-3"
        ]
    );
}

#[tokio::test]
async fn a_failure_on_one_instance_holds_back_no_other_and_is_tried_again() {
    let mock = Arc::new(fleet());
    let fleets = [Fleet {
        name: "mock".into(),
        provider: Arc::clone(&mock) as Arc<dyn CloudProvider>,
    }];
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let reconciler = Reconciler::new(schedules(), store.clone(), Limits::default());
    let now = utc("2026-12-01T20:00");
    let plan = reconciler.plan(&fleets, now).await.unwrap();
    mock.fail_next(MockOperation::Stop, 1, ErrorKind::Throttled);
    let applied = reconciler.apply(&fleets, &plan).await.unwrap();
    let failed: Vec<&str> = applied
        .iter()
        .filter(|applied| applied.error.is_some())
        .map(|applied| applied.item.id.as_str())
        .collect();
    assert_eq!(failed.len(), 1, "{applied:?}");
    assert_eq!(applied.len() - failed.len(), 6);
    let trail = store.history(100).await.unwrap();
    assert_eq!(
        trail
            .iter()
            .filter(|event| event.outcome == "failed")
            .count(),
        1
    );
    assert!(
        trail
            .iter()
            .any(|event| event.error.as_deref().is_some_and(|e| !e.is_empty()))
    );
    // The next run takes up the one that failed, and only it.
    let again = reconciler
        .plan(&fleets, utc("2026-12-01T20:05"))
        .await
        .unwrap();
    let retried: Vec<&str> = again.actions().map(|item| item.id.as_str()).collect();
    assert_eq!(retried, failed);
}

#[tokio::test]
async fn a_provider_that_cannot_be_listed_is_reported_and_the_others_run() {
    let good = Arc::new(fleet());
    let bad = Arc::new(fleet());
    bad.fail_next(MockOperation::List, 10, ErrorKind::Unavailable);
    let fleets = [
        Fleet {
            name: "good".into(),
            provider: good.clone() as Arc<dyn CloudProvider>,
        },
        Fleet {
            name: "bad".into(),
            provider: bad.clone() as Arc<dyn CloudProvider>,
        },
    ];
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let reconciler = Reconciler::new(schedules(), store, Limits::default());
    let plan = reconciler
        .plan(&fleets, utc("2026-12-01T20:00"))
        .await
        .unwrap();
    assert_eq!(plan.unreachable.len(), 1);
    assert_eq!(plan.unreachable[0].0, "bad");
    assert_eq!(plan.actions().count(), 7);
    assert!(plan.actions().all(|item| item.provider == "good"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    /// Whatever the tags and states, an apply never touches an instance without a schedule
    /// (nor one opted out, nor one whose tag does not read).
    #[test]
    fn an_apply_never_touches_an_unscheduled_instance(
        fleet in proptest::collection::vec((0u8..5, proptest::bool::ANY), 1..30),
        hour in 0i64..(7 * 24),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let mut builder = MockProvider::builder();
            let mut unscheduled = Vec::new();
            for (n, (tag, running)) in fleet.iter().enumerate() {
                let id = format!("mock-{n:02}");
                let state = if *running { InstanceState::Running } else { InstanceState::Stopped };
                let instance = MockInstance::new(&id).state(state);
                let instance = match tag {
                    0 => instance.tag("snoozebot-schedule", "office"),
                    1 => instance.tag("maid_offhours", "off=(M-F,18);on=(M-F,8);tz=utc"),
                    2 => { unscheduled.push((id, state)); instance.tag("maid_offhours", "off") }
                    3 => { unscheduled.push((id, state)); instance.tag("snoozebot-schedule", "whenever") }
                    _ => { unscheduled.push((id, state)); instance }
                };
                builder = builder.instance(instance);
            }
            let mock = Arc::new(builder.build());
            let fleets = [Fleet { name: "mock".into(), provider: Arc::clone(&mock) as Arc<dyn CloudProvider> }];
            let reconciler = Reconciler::new(schedules(), Arc::new(SqliteStore::in_memory().unwrap()), Limits::default());
            let now = utc("2026-11-30T00:00").checked_add(jiff::SignedDuration::from_hours(hour)).unwrap();
            let plan = reconciler.plan(&fleets, now).await.unwrap();
            reconciler.apply(&fleets, &plan).await.unwrap();
            for (id, state) in unscheduled {
                let id = InstanceId::new(id).unwrap();
                assert!(plan.items.iter().all(|item| item.id != id), "{id} was planned");
                assert_eq!(mock.get_instance(&id).await.unwrap().state, state, "{id} was touched");
            }
        });
    }
}
