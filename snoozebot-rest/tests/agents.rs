//! The agent routes (feature `schedules`) through the public router: an agent registers and
//! reports with its own key, readers see what the server decided, and hostile reports — too
//! many signals, control characters, a time that does not read, unknown fields — are `400`
//! problems that change nothing.
#![cfg(feature = "schedules")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use snoozebot_core::{InstanceState, PluginManager, ProviderStack};
use snoozebot_rest::{AgentKeys, ApiKeys, HttpOptions, Role};
use snoozebot_schedule::store::MemoryStore;
use snoozebot_schedule::{AgentPolicy, Agents};
use snoozebot_testkit::{MockInstance, MockProvider};
use tower::ServiceExt;

struct Api {
    router: axum::Router,
    reader: String,
    agent: String,
}

fn api(with_agents: bool) -> Api {
    let fleet = MockProvider::builder()
        .instance(MockInstance::new("mock-build").state(InstanceState::Running))
        .build();
    let manager = Arc::new(PluginManager::new().with_stack(ProviderStack::new()));
    manager
        .register("mock", move || {
            let fleet = fleet.clone();
            async move { Ok(fleet) }
        })
        .unwrap();
    let mut keys = ApiKeys::new();
    let reader = keys.generate(Role::Reader, "reader");
    let agent_keys = AgentKeys::new(&[42u8; 32]).unwrap();
    let agent = agent_keys.key_for("mock", "mock-build");
    let mut options = HttpOptions::default();
    if with_agents {
        let agents = Agents::new(
            Arc::new(MemoryStore::default()),
            Arc::clone(&manager),
            vec!["mock".into()],
            AgentPolicy::default(),
        );
        options = options.with_agents(Arc::new(agents), agent_keys);
    }
    Api {
        router: snoozebot_rest::router_with(manager, keys, options),
        reader,
        agent,
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {key}"));
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
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

    async fn agent_call(&self, action: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/api/agents/mock/mock-build/{action}"),
            &self.agent,
            Some(body),
        )
        .await
    }
}

#[tokio::test]
async fn an_agent_registers_reports_idle_and_readers_see_the_decision() {
    let api = api(true);
    let (status, body) = api.agent_call("heartbeat", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("register first"));

    let (status, body) = api
        .agent_call(
            "register",
            json!({"hostname": "build-box", "version": "0.1.0"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "active");
    assert_eq!(body["heartbeat_seconds"], 30);

    let (status, body) = api.agent_call("idle", json!({"idle_seconds": 1800})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "stopping");
    assert!(body["stop_at"].is_string());

    let (status, agents) = api
        .call(Method::GET, "/api/agents", &api.reader, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agents[0]["instance"], "mock-build");
    assert_eq!(agents[0]["state"], "stopping");
    let (status, one) = api
        .call(
            Method::GET,
            "/api/agents/mock/mock-build",
            &api.reader,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["hostname"], "build-box");
    let (status, _) = api
        .call(
            Method::GET,
            "/api/agents/mock/mock-other",
            &api.reader,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = api.agent_call("active", json!({"busy": ["cpu"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "active");
}

#[tokio::test]
async fn hostile_reports_are_400_problems_that_change_nothing() {
    let api = api(true);
    api.agent_call(
        "register",
        json!({"hostname": "build-box", "version": "0.1.0"}),
    )
    .await;
    let many: Vec<String> = (0..33).map(|n| format!("probe {n}")).collect();
    for (action, body) in [
        ("idle", json!({})),
        ("idle", json!({"idle_seconds": -1})),
        ("heartbeat", json!({"busy": many})),
        ("heartbeat", json!({"busy": ["x".repeat(65)]})),
        ("heartbeat", json!({"busy": ["cpu\u{1b}[2J"]})),
        ("heartbeat", json!({"postponed_until": "tomorrow"})),
        (
            "heartbeat",
            json!({"idle_seconds": 60, "command": "rm -rf /"}),
        ),
        (
            "register",
            json!({"hostname": "h\nX-Injected: 1", "version": "1"}),
        ),
        (
            "register",
            json!({"hostname": "h".repeat(256), "version": "1"}),
        ),
    ] {
        let (status, problem) = api.agent_call(action, body.clone()).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{action} {body}: {status} {problem}"
        );
        assert!(problem["detail"].is_string(), "{problem}");
    }
    let (_, one) = api
        .call(
            Method::GET,
            "/api/agents/mock/mock-build",
            &api.reader,
            None,
        )
        .await;
    assert_eq!(one["state"], "active");
    assert_eq!(one["hostname"], "build-box");
}

#[tokio::test]
async fn without_agents_the_routes_are_404_problems() {
    let api = api(false);
    let (status, body) = api
        .call(Method::GET, "/api/agents", &api.reader, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("[agents]"));
    let (status, _) = api
        .agent_call("register", json!({"hostname": "h", "version": "1"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
