//! The schedule routes (feature `schedules`) through the public router: readers see the
//! schedules, the plan and the history, only operators apply, and without a scheduler the
//! routes are `404` problems.
#![cfg(feature = "schedules")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use snoozebot_core::{InstanceState, PluginManager, ProviderStack};
use snoozebot_rest::{ApiKeys, HttpOptions, Role};
use snoozebot_schedule::jiff::Timestamp;
use snoozebot_schedule::store::MemoryStore;
use snoozebot_schedule::{
    Limits, Overrides, Reconciler, Schedule, Scheduler, Schedules, parse_period,
};
use snoozebot_testkit::{MockInstance, MockProvider};
use tower::ServiceExt;

struct Api {
    router: axum::Router,
    reader: String,
    operator: String,
}

async fn api(with_scheduler: bool) -> Api {
    let fleet = (0..3)
        .fold(MockProvider::builder(), |builder, n| {
            builder.instance(
                MockInstance::new(&format!("mock-{n}"))
                    .state(InstanceState::Running)
                    .tag("snoozebot-schedule", "office"),
            )
        })
        .instance(MockInstance::new("mock-free").state(InstanceState::Running))
        .build();
    let manager = Arc::new(PluginManager::new().with_stack(ProviderStack::new()));
    manager
        .register("mock", move || {
            let fleet = fleet.clone();
            async move { Ok(fleet) }
        })
        .unwrap();
    let office = Schedule::from_periods(
        "office",
        "Europe/Berlin",
        &[parse_period("Mon-Fri 08:00-19:00").unwrap()],
        ["2026-12-25".parse().unwrap()],
    )
    .unwrap();
    let schedules = Arc::new(Schedules::new().with_schedule(
        office,
        Overrides {
            enforced: true,
            ..Overrides::default()
        },
    ));
    let store = Arc::new(MemoryStore::default());
    let reconciler = Reconciler::new(Arc::clone(&schedules), store.clone(), Limits::default());
    let night: Timestamp = "2026-12-01T22:00:00Z".parse().unwrap();
    let scheduler = Scheduler::new(
        reconciler,
        schedules,
        store,
        Arc::clone(&manager),
        vec!["mock".into()],
        Duration::from_secs(300),
    )
    .with_clock(Arc::new(move || night));
    let mut options = HttpOptions::default();
    if with_scheduler {
        options = options.with_scheduler(Arc::new(scheduler));
    }
    let mut keys = ApiKeys::new();
    let reader = keys.generate(Role::Reader, "reader");
    let operator = keys.generate(Role::Operator, "operator");
    Api {
        router: snoozebot_rest::router_with(manager, keys, options),
        reader,
        operator,
    }
}

impl Api {
    async fn call(&self, method: Method, uri: &str, key: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn readers_see_schedules_plans_and_history_and_only_operators_apply() {
    let api = api(true).await;
    let (status, schedules) = api.call(Method::GET, "/api/schedules", &api.reader).await;
    assert_eq!(status, StatusCode::OK, "{schedules}");
    assert_eq!(schedules[0]["name"], "office");
    assert_eq!(schedules[0]["timezone"], "Europe/Berlin");
    assert_eq!(schedules[0]["days_off"][0], "2026-12-25");
    assert_eq!(schedules[0]["enforced"], true);

    let (status, plan) = api
        .call(Method::GET, "/api/schedules/plan", &api.reader)
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["actions"], 3);
    assert_eq!(
        plan["items"].as_array().unwrap().len(),
        3,
        "the untagged one is not planned"
    );
    assert_eq!(plan["items"][0]["action"], "stop");

    let (status, refused) = api
        .call(Method::POST, "/api/schedules/apply", &api.reader)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, applied) = api
        .call(Method::POST, "/api/schedules/apply", &api.operator)
        .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    let outcomes: Vec<&str> = applied["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["ok", "ok", "ok"]);

    let (status, history) = api
        .call(Method::GET, "/api/schedules/history?limit=10", &api.reader)
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history.as_array().unwrap().len(), 3);
    assert_eq!(history[0]["action"], "stop");
    let (_, plan) = api
        .call(Method::GET, "/api/schedules/plan", &api.reader)
        .await;
    assert_eq!(
        plan["actions"], 0,
        "a plan right after an apply is empty: {plan}"
    );
    let (status, _) = api
        .call(
            Method::GET,
            "/api/schedules/history?limit=lots",
            &api.reader,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn without_a_scheduler_the_routes_are_404_problems() {
    let api = api(false).await;
    for (method, uri) in [
        (Method::GET, "/api/schedules"),
        (Method::GET, "/api/schedules/plan"),
        (Method::POST, "/api/schedules/apply"),
        (Method::GET, "/api/schedules/history"),
    ] {
        let (status, problem) = api.call(method, uri, &api.operator).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(
            problem["detail"].as_str().unwrap().contains("no schedules"),
            "{problem}"
        );
    }
}
