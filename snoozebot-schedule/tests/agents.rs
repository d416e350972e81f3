//! The server's side of reporting agents over the mock fleet, on a clock the test moves: an
//! idle report becomes a stop after the warning; activity, a postpone or a schedule's on-hours
//! keep the machine; silent agents are lost; two replicas sharing a store stop a machine once;
//! every decision is in the trail and the webhook hears of each stop before it is made.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use snoozebot_core::{CloudProvider, ErrorKind, InstanceId, InstanceState, PluginManager};
use snoozebot_schedule::store::{MemoryStore, RunRecord, SqliteStore, Store};
use snoozebot_schedule::{
    AgentError, AgentPolicy, AgentRecord, AgentState, Agents, Notifier, Overrides, Registration,
    Report, Schedule, Schedules, parse_period,
};
use snoozebot_testkit::{MockInstance, MockOperation, MockProvider};

/// Tuesday 1 December 2026, 20:00 UTC: outside the office schedule's hours.
const EVENING: &str = "2026-12-01T20:00:00Z";
/// The same day at 10:00 UTC: inside them.
const MORNING: &str = "2026-12-01T10:00:00Z";

/// A clock the test moves.
#[derive(Clone)]
struct TestClock(Arc<Mutex<Timestamp>>);

impl TestClock {
    fn at(text: &str) -> Self {
        TestClock(Arc::new(Mutex::new(text.parse().unwrap())))
    }

    fn advance(&self, seconds: i64) {
        let mut now = self.0.lock().unwrap();
        *now = now.checked_add(SignedDuration::from_secs(seconds)).unwrap();
    }

    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

/// What a webhook would have heard.
#[derive(Default)]
struct Heard(Mutex<Vec<(String, String)>>);

impl Notifier for Heard {
    fn notify(&self, run: &RunRecord) {
        let mut heard = self.0.lock().unwrap();
        for event in &run.events {
            heard.push((event.action.clone(), event.outcome.clone()));
        }
    }
}

struct Server {
    mock: Arc<MockProvider>,
    agents: Agents,
    store: Arc<dyn Store>,
    clock: TestClock,
    heard: Arc<Heard>,
}

fn policy() -> AgentPolicy {
    AgentPolicy {
        heartbeat: Duration::from_secs(30),
        lost_after: Duration::from_secs(90),
        warning: Duration::from_secs(300),
        ..AgentPolicy::default()
    }
}

fn schedules() -> Arc<Schedules> {
    let office = Schedule::from_periods(
        "office",
        "UTC",
        &[parse_period("Mon-Fri 08:00-19:00").unwrap()],
        [],
    )
    .unwrap();
    Arc::new(Schedules::new().with_schedule(office, Overrides::default()))
}

fn manager(mock: &Arc<MockProvider>) -> Arc<PluginManager> {
    let manager = Arc::new(PluginManager::new());
    let registered = Arc::clone(mock);
    manager
        .register("mock", move || {
            let mock = Arc::clone(&registered);
            async move { Ok(mock) }
        })
        .unwrap();
    manager
}

/// `mock-build` (untagged) and `mock-office` (on the office schedule), both running.
fn fleet() -> Arc<MockProvider> {
    Arc::new(
        MockProvider::builder()
            .instance(MockInstance::new("mock-build").state(InstanceState::Running))
            .instance(
                MockInstance::new("mock-office")
                    .state(InstanceState::Running)
                    .tag("snoozebot-schedule", "office"),
            )
            .build(),
    )
}

fn server_on(
    store: Arc<dyn Store>,
    mock: Arc<MockProvider>,
    at: &str,
    policy: AgentPolicy,
) -> Server {
    let clock = TestClock::at(at);
    let heard = Arc::new(Heard::default());
    let reading = clock.clone();
    let agents = Agents::new(
        Arc::clone(&store),
        manager(&mock),
        vec!["mock".into()],
        policy,
    )
    .with_schedules(schedules())
    .with_notifier(heard.clone())
    .with_clock(Arc::new(move || reading.now()));
    Server {
        mock,
        agents,
        store,
        clock,
        heard,
    }
}

fn server(at: &str) -> Server {
    server_on(Arc::new(MemoryStore::default()), fleet(), at, policy())
}

fn registration() -> Registration {
    Registration {
        hostname: "build-box".into(),
        version: "0.1.0".into(),
    }
}

fn idle() -> Report {
    Report {
        idle_for: Some(Duration::from_secs(1800)),
        ..Report::default()
    }
}

fn busy(signal: &str) -> Report {
    Report {
        busy: vec![signal.into()],
        ..Report::default()
    }
}

impl Server {
    /// Registers `id`'s agent.
    async fn register(&self, id: &str) -> AgentRecord {
        self.agents
            .register("mock", id, registration())
            .await
            .unwrap()
    }

    /// `id`'s agent reports.
    async fn report(&self, id: &str, report: Report) -> AgentRecord {
        self.agents.report("mock", id, report).await.unwrap()
    }

    async fn state_of(&self, id: &str) -> InstanceState {
        let id = InstanceId::new(id).unwrap();
        self.mock.get_instance(&id).await.unwrap().state
    }

    async fn actions(&self) -> Vec<String> {
        let mut history = self.store.history(100).await.unwrap();
        history.reverse();
        history
            .into_iter()
            .map(|event| format!("{} {}", event.action, event.outcome))
            .collect()
    }

    fn heard(&self) -> Vec<(String, String)> {
        self.heard.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn an_idle_machine_is_stopped_after_the_warning_and_the_webhook_hears_first() {
    let server = server(EVENING);
    let agents = &server.agents;
    let record = server.register("mock-build").await;
    assert_eq!(record.state, AgentState::Active);

    let record = server.report("mock-build", idle()).await;
    assert_eq!(record.state, AgentState::Stopping, "{record:?}");
    let stop_at = record.stop_at.unwrap();
    assert_eq!(
        stop_at.duration_since(server.clock.now()),
        SignedDuration::from_secs(300)
    );
    assert_eq!(
        server.heard(),
        [("stop pending".to_owned(), "ok".to_owned())]
    );

    // Within the warning: heartbeats change nothing, sweeps stop nothing.
    server.clock.advance(120);
    server.report("mock-build", idle()).await;
    assert_eq!(agents.sweep().await.unwrap().stopped.len(), 0);
    assert_eq!(server.state_of("mock-build").await, InstanceState::Running);

    server.clock.advance(181);
    server.report("mock-build", idle()).await;
    let sweep = agents.sweep().await.unwrap();
    assert_eq!(sweep.stopped, [("mock".into(), "mock-build".into())]);
    assert_eq!(server.state_of("mock-build").await, InstanceState::Stopped);
    let record = agents.agent("mock", "mock-build").await.unwrap().unwrap();
    assert_eq!(record.state, AgentState::Stopped);
    assert_eq!(
        server.actions().await,
        ["register ok", "stop pending ok", "stop ok"]
    );
    assert_eq!(server.heard().len(), 2, "the stop is posted too");

    // A stopped machine's agent goes quiet: not lost, and nothing is stopped twice.
    server.clock.advance(3600);
    let sweep = agents.sweep().await.unwrap();
    assert!(
        sweep.lost.is_empty() && sweep.stopped.is_empty(),
        "{sweep:?}"
    );
    assert_eq!(server.mock.call_count(MockOperation::Stop), 1);

    // Started again, it registers again: active.
    let record = server.register("mock-build").await;
    assert_eq!(record.state, AgentState::Active);
}

#[tokio::test]
async fn activity_during_the_warning_cancels_the_stop() {
    let server = server(EVENING);
    let agents = &server.agents;
    server.register("mock-build").await;
    server.report("mock-build", idle()).await;
    server.clock.advance(60);
    let record = server.report("mock-build", busy("cpu")).await;
    assert_eq!(record.state, AgentState::Active);
    assert_eq!(record.stop_at, None);
    server.clock.advance(600);
    server.report("mock-build", busy("cpu")).await;
    assert!(agents.sweep().await.unwrap().stopped.is_empty());
    assert_eq!(server.state_of("mock-build").await, InstanceState::Running);
    let actions = server.actions().await;
    assert_eq!(actions, ["register ok", "stop pending ok", "cancel ok"]);
    let history = server.store.history(1).await.unwrap();
    assert_eq!(history[0].reason, "active again (cpu)");
}

#[tokio::test]
async fn a_postpone_keeps_the_machine_until_it_ends() {
    let server = server(EVENING);
    let agents = &server.agents;
    server.register("mock-build").await;
    let until = server
        .clock
        .now()
        .checked_add(SignedDuration::from_hours(2))
        .unwrap();
    let postponed = Report {
        postponed_until: Some(until),
        ..idle()
    };
    let record = server.report("mock-build", postponed.clone()).await;
    assert_eq!(record.state, AgentState::Idle);
    assert!(record.note.starts_with("postponed until"), "{record:?}");
    // Heartbeats and sweeps during the postpone: kept, said once in the trail.
    for _ in 0..4 {
        server.clock.advance(1700);
        server.report("mock-build", postponed.clone()).await;
        let sweep = agents.sweep().await.unwrap();
        assert!(sweep.stopping.is_empty(), "{sweep:?}");
    }
    assert_eq!(server.actions().await, ["register ok", "keep ok"]);
    // Past its end, the next sweep decides to stop.
    server.clock.advance(600);
    server.report("mock-build", postponed.clone()).await;
    let sweep = agents.sweep().await.unwrap();
    assert_eq!(sweep.stopping, [("mock".into(), "mock-build".into())]);

    // A postpone during the warning cancels the pending stop.
    let later = server
        .clock
        .now()
        .checked_add(SignedDuration::from_hours(1))
        .unwrap();
    let record = server
        .report(
            "mock-build",
            Report {
                postponed_until: Some(later),
                ..idle()
            },
        )
        .await;
    assert_eq!(record.state, AgentState::Idle);
    assert_eq!(
        server.actions().await,
        ["register ok", "keep ok", "stop pending ok", "cancel ok"]
    );
    assert_eq!(server.state_of("mock-build").await, InstanceState::Running);
}

#[tokio::test]
async fn a_schedules_on_hours_keep_an_idle_machine_unless_the_policy_says_otherwise() {
    let server = server(MORNING);
    let agents = &server.agents;
    server.register("mock-office").await;
    let record = server.report("mock-office", idle()).await;
    assert_eq!(record.state, AgentState::Idle);
    assert_eq!(record.note, "in the on-hours of schedule office");
    // The unscheduled machine is not kept.
    server.register("mock-build").await;
    let record = server.report("mock-build", idle()).await;
    assert_eq!(record.state, AgentState::Stopping);
    // At 19:00 the hours end: the sweep decides to stop.
    server.clock.advance(9 * 3600);
    server.report("mock-office", idle()).await;
    let sweep = agents.sweep().await.unwrap();
    assert!(
        sweep
            .stopping
            .contains(&("mock".into(), "mock-office".into())),
        "{sweep:?}"
    );

    let allowed = server_on(
        Arc::new(MemoryStore::default()),
        fleet(),
        MORNING,
        AgentPolicy {
            stop_in_on_hours: true,
            ..policy()
        },
    );
    allowed.register("mock-office").await;
    let record = allowed.report("mock-office", idle()).await;
    assert_eq!(record.state, AgentState::Stopping);
}

#[tokio::test]
async fn a_silent_agent_is_lost_its_pending_stop_cancelled_and_found_when_heard_again() {
    let server = server(EVENING);
    let agents = &server.agents;
    server.register("mock-build").await;
    server.report("mock-build", idle()).await;
    server.clock.advance(60);
    assert!(agents.sweep().await.unwrap().lost.is_empty());
    server.clock.advance(31);
    let sweep = agents.sweep().await.unwrap();
    assert_eq!(sweep.lost, [("mock".into(), "mock-build".into())]);
    assert!(sweep.stopped.is_empty());
    let record = agents.agent("mock", "mock-build").await.unwrap().unwrap();
    assert_eq!(record.state, AgentState::Lost);
    assert!(record.note.starts_with("no heartbeat since"), "{record:?}");
    // Lost is said once; past the warning nothing is stopped.
    server.clock.advance(600);
    assert!(agents.sweep().await.unwrap().lost.is_empty());
    assert_eq!(server.state_of("mock-build").await, InstanceState::Running);
    let record = server.report("mock-build", busy("disk")).await;
    assert_eq!(record.state, AgentState::Active);
    assert_eq!(
        server.actions().await,
        [
            "register ok",
            "stop pending ok",
            "cancel ok",
            "lost ok",
            "found ok"
        ]
    );
}

#[tokio::test]
async fn a_failed_stop_is_recorded_and_tried_again() {
    let server = server(EVENING);
    let agents = &server.agents;
    server.register("mock-build").await;
    server.report("mock-build", idle()).await;
    server.clock.advance(301);
    server.report("mock-build", idle()).await;
    server
        .mock
        .fail_next(MockOperation::Stop, 1, ErrorKind::PermissionDenied);
    let sweep = agents.sweep().await.unwrap();
    assert_eq!(
        sweep.failed.len(),
        1,
        "{sweep:?} {:?}",
        server.actions().await
    );
    let record = agents.agent("mock", "mock-build").await.unwrap().unwrap();
    assert_eq!(record.state, AgentState::Stopping);
    assert!(record.note.starts_with("the stop failed"), "{record:?}");
    server.clock.advance(30);
    server.report("mock-build", idle()).await;
    server.clock.advance(31);
    assert_eq!(agents.sweep().await.unwrap().stopped.len(), 1);
    assert_eq!(server.state_of("mock-build").await, InstanceState::Stopped);
    assert_eq!(
        server.actions().await,
        ["register ok", "stop pending ok", "stop failed", "stop ok"]
    );
}

#[tokio::test]
async fn agents_speak_only_for_instances_that_exist_and_registered() {
    let server = server(EVENING);
    let agents = &server.agents;
    assert!(matches!(
        agents.register("aws", "i-1", registration()).await,
        Err(AgentError::UnknownProvider(_))
    ));
    match agents
        .register("mock", "mock-nothing", registration())
        .await
    {
        Err(AgentError::Provider(error)) => assert_eq!(error.kind(), ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        agents.report("mock", "mock-build", idle()).await,
        Err(AgentError::NotRegistered { .. })
    ));
    assert!(agents.agents().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_a_store_stop_a_machine_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mock = fleet();
    let one = server_on(
        Arc::new(SqliteStore::open(&path).unwrap()),
        Arc::clone(&mock),
        EVENING,
        policy(),
    );
    let two = server_on(
        Arc::new(SqliteStore::open(&path).unwrap()),
        Arc::clone(&mock),
        EVENING,
        policy(),
    );
    for round in 0..20 {
        let id = if round % 2 == 0 {
            "mock-build"
        } else {
            "mock-office"
        };
        mock.set_state(&InstanceId::new(id).unwrap(), InstanceState::Running);
        one.register(id).await;
        two.report(id, idle()).await;
        one.clock.advance(301);
        two.clock.advance(301);
        one.report(id, idle()).await;
        mock.clear_calls();
        let (a, b) = tokio::join!(one.agents.sweep(), two.agents.sweep());
        let stopped = a.unwrap().stopped.len() + b.unwrap().stopped.len();
        assert_eq!(stopped, 1, "round {round}");
        assert_eq!(mock.call_count(MockOperation::Stop), 1, "round {round}");
    }
}

#[tokio::test]
async fn a_kept_machine_is_judged_again_at_most_once_a_minute() {
    let server = server(MORNING);
    let agents = &server.agents;
    server.register("mock-office").await;
    server.report("mock-office", idle()).await;
    server.mock.clear_calls();
    // Sweeps every few seconds: the provider is asked once a minute, not on each.
    for _ in 0..12 {
        server.clock.advance(5);
        server.report("mock-office", idle()).await;
        agents.sweep().await.unwrap();
    }
    assert_eq!(server.mock.call_count(MockOperation::Get), 1);
    server.clock.advance(5);
    agents.sweep().await.unwrap();
    assert_eq!(server.mock.call_count(MockOperation::Get), 2);
}
