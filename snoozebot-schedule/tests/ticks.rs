//! The scheduler inside a server: ticks aligned to the interval on paused tokio time, runs one
//! at a time, shut down cleanly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use snoozebot_core::{CloudProvider, InstanceId, InstanceState, PluginManager};
use snoozebot_schedule::store::{MemoryStore, Store};
use snoozebot_schedule::{
    Limits, Overrides, Reconciler, Schedule, Scheduler, Schedules, parse_period,
};
use snoozebot_testkit::{MockInstance, MockOperation, MockProvider};

/// `count` instances `mock-N` in `state`, tagged for `schedule`, as the provider `mock` of a
/// manager.
fn fleet(
    count: usize,
    state: InstanceState,
    schedule: &str,
) -> (Arc<MockProvider>, Arc<PluginManager>) {
    let mock = Arc::new(
        (0..count)
            .fold(MockProvider::builder(), |builder, n| {
                builder.instance(
                    MockInstance::new(&format!("mock-{n}"))
                        .state(state)
                        .tag("snoozebot-schedule", schedule),
                )
            })
            .build(),
    );
    let manager = Arc::new(PluginManager::new());
    let registered = Arc::clone(&mock);
    manager
        .register("mock", move || {
            let mock = Arc::clone(&registered);
            async move { Ok(mock) }
        })
        .unwrap();
    (mock, manager)
}

/// A clock at `start` that follows tokio's (paused) time.
fn paused_clock(start: &str) -> snoozebot_schedule::Clock {
    let start: Timestamp = start.parse().unwrap();
    let origin = tokio::time::Instant::now();
    Arc::new(move || {
        start
            .checked_add(SignedDuration::try_from(origin.elapsed()).unwrap())
            .unwrap()
    })
}

#[tokio::test(start_paused = true)]
async fn the_tick_at_the_period_end_stops_the_fleet_and_shutdown_ends_the_loop() {
    let (mock, manager) = fleet(3, InstanceState::Running, "office");
    let office = Schedule::from_periods(
        "office",
        "UTC",
        &[parse_period("Mon-Fri 08:00-19:00").unwrap()],
        [],
    )
    .unwrap();
    let schedules = Arc::new(Schedules::new().with_schedule(office, Overrides::default()));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let reconciler = Reconciler::new(
        Arc::clone(&schedules),
        Arc::clone(&store),
        Limits::default(),
    );
    // Tuesday 18:58:30 UTC on a clock that follows tokio's (paused) time.
    let clock = paused_clock("2026-12-01T18:58:30Z");
    let scheduler = Arc::new(
        Scheduler::new(
            reconciler,
            schedules,
            Arc::clone(&store),
            manager,
            vec!["mock".into()],
            Duration::from_secs(300),
        )
        .with_clock(clock),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ticks = tokio::spawn(Arc::clone(&scheduler).run_ticks(async {
        let _ = stopped.await;
    }));

    // The 18:55 tick has passed; the next is 19:00. Just before it, nothing has run.
    tokio::time::sleep(Duration::from_secs(89)).await;
    assert_eq!(mock.call_count(MockOperation::Stop), 0);
    assert!(store.history(10).await.unwrap().is_empty());
    // At 19:00 the tick stops all three.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..50 {
        if mock.call_count(MockOperation::Stop) == 3 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(mock.call_count(MockOperation::Stop), 3);
    let id = InstanceId::new("mock-0").unwrap();
    assert_eq!(
        mock.get_instance(&id).await.unwrap().state,
        InstanceState::Stopped
    );
    assert_eq!(store.history(10).await.unwrap().len(), 3);
    // The 19:05 tick has nothing to do.
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(mock.call_count(MockOperation::Stop), 3);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(1), ticks)
        .await
        .expect("the loop did not end at shutdown")
        .unwrap();
}

/// Two replicas on one store: one leads each tick; when it stops, the other takes over once
/// the lease has run out, and not before.
#[tokio::test(start_paused = true)]
async fn replicas_elect_one_reconciler_and_hand_over_within_the_lease() {
    let (mock, manager) = fleet(3, InstanceState::Running, "office");
    let office = Schedule::from_periods(
        "office",
        "UTC",
        &[parse_period("Mon-Fri 08:00-19:00").unwrap()],
        [],
    )
    .unwrap();
    let enforced = Overrides {
        enforced: true,
        ..Overrides::default()
    };
    let schedules = Arc::new(Schedules::new().with_schedule(office, enforced));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let clock = paused_clock("2026-12-01T18:59:30Z");
    let replica = |holder: &str| {
        let reconciler = Reconciler::new(
            Arc::clone(&schedules),
            Arc::clone(&store),
            Limits::default(),
        );
        Arc::new(
            Scheduler::new(
                reconciler,
                Arc::clone(&schedules),
                Arc::clone(&store),
                Arc::clone(&manager),
                vec!["mock".into()],
                Duration::from_secs(60),
            )
            .with_clock(Arc::clone(&clock))
            .with_holder(holder)
            .with_lease(Duration::from_secs(180)),
        )
    };
    let (a, b) = (replica("a"), replica("b"));
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let loop_a = tokio::spawn(Arc::clone(&a).run_ticks(async {
        let _ = stopped_a.await;
    }));
    let loop_b = tokio::spawn(Arc::clone(&b).run_ticks(async {
        let _ = stopped_b.await;
    }));
    let runs_by = |events: &[snoozebot_schedule::store::AuditEvent]| -> Vec<String> {
        let mut holders: Vec<String> = events
            .iter()
            .map(|event| event.run.split('-').next().unwrap().to_owned())
            .collect();
        holders.dedup();
        holders
    };
    let settle = || async {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    };
    let start_all = || {
        for n in 0..3 {
            mock.set_state(
                &InstanceId::new(format!("mock-{n}")).unwrap(),
                InstanceState::Running,
            );
        }
    };

    // 19:00: one of them stops the three.
    tokio::time::sleep(Duration::from_secs(31)).await;
    settle().await;
    let events = store.history(100).await.unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    let leader = runs_by(&events);
    assert_eq!(leader.len(), 1, "two replicas acted: {leader:?}");
    // 19:01, after someone started them by hand: the same leader stops them again.
    start_all();
    tokio::time::sleep(Duration::from_secs(60)).await;
    settle().await;
    let events = store.history(100).await.unwrap();
    assert_eq!(events.len(), 6);
    assert_eq!(runs_by(&events), leader);

    // The leader stops; its lease (renewed at 19:01) runs until 19:04.
    let (stop_leader, stop_follower, follower) = if leader[0] == "a" {
        (stop_a, stop_b, "b")
    } else {
        (stop_b, stop_a, "a")
    };
    stop_leader.send(()).unwrap();
    settle().await;
    start_all();
    for minute in ["19:02", "19:03", "19:04"] {
        tokio::time::sleep(Duration::from_secs(60)).await;
        settle().await;
        assert_eq!(
            store.history(100).await.unwrap().len(),
            6,
            "acted at {minute}, before the lease ran out"
        );
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    settle().await;
    let events = store.history(100).await.unwrap();
    assert_eq!(events.len(), 9, "no hand-over at 19:05");
    assert_eq!(runs_by(&events[..3]), [follower]);

    stop_follower.send(()).unwrap();
    for handle in [loop_a, loop_b] {
        tokio::time::timeout(Duration::from_secs(1), handle)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Ticks on paused time across the nights the clocks change: a boundary in the skipped hour
/// acts once the clock has passed the gap, one in the repeated hour at its first occurrence.
#[tokio::test(start_paused = true)]
async fn ticks_across_daylight_saving_changes_act_at_the_documented_moment() {
    // (zone, period, tick clock start (UTC), moment before, moment after, the wanted state)
    let cases = [
        // Berlin springs forward 2027-03-28 02:00 CET → 03:00 CEST: 02:30 is 01:30 UTC.
        (
            "Europe/Berlin",
            "daily 02:30-20:00",
            "2027-03-28T01:20:00Z",
            9 * 60,
            11 * 60,
            InstanceState::Running,
        ),
        // New York falls back 2026-11-01 02:00 EDT → 01:00 EST: the first 01:30 is 05:30 UTC.
        (
            "America/New_York",
            "daily 12:00-01:30",
            "2026-11-01T05:20:00Z",
            9 * 60,
            11 * 60,
            InstanceState::Stopped,
        ),
    ];
    for (zone, period, start, before, after, wanted) in cases {
        let initial = if wanted == InstanceState::Running {
            InstanceState::Stopped
        } else {
            InstanceState::Running
        };
        let (mock, manager) = fleet(1, initial, "night");
        let night =
            Schedule::from_periods("night", zone, &[parse_period(period).unwrap()], []).unwrap();
        let schedules = Arc::new(Schedules::new().with_schedule(night, Overrides::default()));
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let reconciler = Reconciler::new(
            Arc::clone(&schedules),
            Arc::clone(&store),
            Limits::default(),
        );
        let clock = paused_clock(start);
        // A tick every minute, on the minute.
        let scheduler = Arc::new(
            Scheduler::new(
                reconciler,
                schedules,
                store,
                manager,
                vec!["mock".into()],
                Duration::from_secs(60),
            )
            .with_clock(clock),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ticks = tokio::spawn(Arc::clone(&scheduler).run_ticks(async {
            let _ = stopped.await;
        }));
        let id = InstanceId::new("mock-0").unwrap();
        let settle = || async {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        };
        // The first tick (start + 40 s) records the state; just before the boundary, still as it was.
        tokio::time::sleep(Duration::from_secs(before)).await;
        settle().await;
        assert_eq!(
            mock.get_instance(&id).await.unwrap().state,
            initial,
            "{zone}: acted before the boundary"
        );
        tokio::time::sleep(Duration::from_secs(after - before)).await;
        settle().await;
        assert_eq!(
            mock.get_instance(&id).await.unwrap().state,
            wanted,
            "{zone}: not acted at the boundary"
        );
        stop.send(()).unwrap();
        ticks.await.unwrap();
    }
}
