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

#[tokio::test(start_paused = true)]
async fn the_tick_at_the_period_end_stops_the_fleet_and_shutdown_ends_the_loop() {
    let mock = Arc::new(
        (0..3)
            .fold(MockProvider::builder(), |builder, n| {
                builder.instance(
                    MockInstance::new(&format!("mock-{n}"))
                        .state(InstanceState::Running)
                        .tag("snoozebot-schedule", "office"),
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
    let start: Timestamp = "2026-12-01T18:58:30Z".parse().unwrap();
    let origin = tokio::time::Instant::now();
    let clock = Arc::new(move || {
        start
            .checked_add(SignedDuration::try_from(origin.elapsed()).unwrap())
            .unwrap()
    });
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
