//! The REST API through its public router: authentication and roles driven by the OpenAPI
//! document, the document against the router, every error kind as a problem, malformed
//! requests, paging, batches, unload with calls in flight, and a real socket with graceful
//! shutdown.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use snoozebot_core::{Error, ErrorKind, PluginManager, ProviderStack, RetryConfig};
use snoozebot_rest::{ApiKeys, HttpOptions, PROBLEM_JSON, Role};
use snoozebot_testkit::{MockInstance, MockOperation, MockProvider};
use tower::ServiceExt;

struct Api {
    router: axum::Router,
    fleet: MockProvider,
    manager: Arc<PluginManager>,
    reader: String,
    operator: String,
    admin: String,
    /// The agent key of `mock/mock-0001` (feature `schedules`).
    #[cfg_attr(not(feature = "schedules"), allow(dead_code))]
    agent: String,
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Anyone,
    Role(Role),
    /// The agent key of the instance its path names.
    Agent,
}

impl Api {
    async fn new() -> Self {
        Self::with_options(HttpOptions::default()).await
    }

    /// A bare provider stack: these tests are about what the API answers for what the
    /// provider says, so nothing in between retries.
    async fn with_options(options: HttpOptions) -> Self {
        Self::with_stack(options, ProviderStack::new()).await
    }

    async fn with_stack(options: HttpOptions, stack: ProviderStack) -> Self {
        let fleet = MockProvider::fleet(20);
        fleet.add_instance(MockInstance::new("mock-eu/web-1").name("web-1"));
        let manager = Arc::new(PluginManager::new().with_stack(stack));
        let registered = fleet.clone();
        manager
            .register("mock", move || {
                let fleet = registered.clone();
                async move { Ok(fleet) }
            })
            .unwrap();
        manager.load("mock").await.unwrap();
        let mut keys = ApiKeys::new();
        let reader = keys.generate(Role::Reader, "reader");
        let operator = keys.generate(Role::Operator, "operator");
        let admin = keys.generate(Role::Admin, "admin");
        // Every documented route answers: the schedule routes too, when built in.
        #[cfg(feature = "schedules")]
        let (options, agent) = {
            let (agents, agent_keys) = agents(&manager);
            let agent = agent_keys.key_for("mock", "mock-0001");
            let options = options
                .with_scheduler(scheduler(&manager))
                .with_agents(agents, agent_keys);
            (options, agent)
        };
        #[cfg(not(feature = "schedules"))]
        let agent = String::new();
        let router = snoozebot_rest::router_with(Arc::clone(&manager), keys, options);
        Api {
            router,
            fleet,
            manager,
            reader,
            operator,
            admin,
            agent,
        }
    }

    fn key(&self, role: Role) -> &str {
        match role {
            Role::Reader => &self.reader,
            Role::Operator => &self.operator,
            Role::Admin => &self.admin,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        self.send(request).await
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        (status, headers, body)
    }
}

/// Waits until `calls` calls to `mock` are in flight (the manager's leases say), at most 5 s:
/// the signal that a background request reached the provider.
async fn until_in_flight(manager: &PluginManager, calls: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while manager.in_flight("mock") != calls {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the call never reached the provider");
}

/// Starts a reader's `GET` of `uri` in the background (to have a call in flight).
fn spawn_reader_get(
    api: &Arc<Api>,
    uri: &'static str,
) -> tokio::task::JoinHandle<(StatusCode, axum::http::HeaderMap, Value)> {
    let api = Arc::clone(api);
    tokio::spawn(async move { api.call(Method::GET, uri, Some(&api.reader), None).await })
}

/// Serves `router` on a free 127.0.0.1 port: its base URL, the signal that stops it
/// gracefully, and the server's task.
async fn serve_on_loopback(
    router: axum::Router,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(snoozebot_rest::serve(listener, router, async {
        let _ = stopped.await;
    }));
    (base, stop, server)
}

/// Every operation of the document: method, path template, what it needs. An agent registers
/// before it reports; unloading comes last, so that the routes after it still find the
/// provider loaded.
fn operations() -> Vec<(Method, String, Need)> {
    let document = serde_json::to_value(snoozebot_rest::openapi()).unwrap();
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let requirements = operation["security"].as_array().unwrap();
            let need = if requirements
                .iter()
                .any(|r| r.as_object().unwrap().is_empty())
            {
                Need::Anyone
            } else {
                let scope = requirements[0]
                    .as_object()
                    .unwrap()
                    .values()
                    .next()
                    .unwrap()[0]
                    .as_str()
                    .unwrap()
                    .to_owned();
                if scope == "agent" {
                    Need::Agent
                } else {
                    Need::Role(scope.parse::<Role>().unwrap())
                }
            };
            found.push((
                Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                path.clone(),
                need,
            ));
        }
    }
    found.sort_by_key(|(_, path, _)| (path.ends_with("/unload"), !path.ends_with("/register")));
    found
}

/// A concrete URI for a path template, on the mock provider.
fn concrete(path: &str) -> String {
    path.replace("{name}", "mock")
        .replace("{id}", "mock-0001")
        .replace("{provider}", "mock")
        .replace("{instance}", "mock-0001")
}

/// The agents of the mock, with their keys, for the agent routes.
#[cfg(feature = "schedules")]
fn agents(
    manager: &Arc<PluginManager>,
) -> (Arc<snoozebot_schedule::Agents>, snoozebot_rest::AgentKeys) {
    use snoozebot_schedule::{AgentPolicy, Agents, store::MemoryStore};
    let agents = Agents::new(
        Arc::new(MemoryStore::default()),
        Arc::clone(manager),
        vec!["mock".into()],
        AgentPolicy::default(),
    );
    let keys =
        snoozebot_rest::AgentKeys::new(b"the test server's agent secret, 32+ bytes").unwrap();
    (Arc::new(agents), keys)
}

/// A scheduler with no schedules over the mock, for the schedule routes.
#[cfg(feature = "schedules")]
fn scheduler(manager: &Arc<PluginManager>) -> Arc<snoozebot_schedule::Scheduler> {
    use snoozebot_schedule::{Limits, Reconciler, Scheduler, Schedules, store::MemoryStore};
    let schedules = Arc::new(Schedules::new());
    let store = Arc::new(MemoryStore::default());
    let reconciler = Reconciler::new(Arc::clone(&schedules), store.clone(), Limits::default());
    Arc::new(Scheduler::new(
        reconciler,
        schedules,
        store,
        Arc::clone(manager),
        vec!["mock".into()],
        Duration::from_secs(300),
    ))
}

/// The documented operations: 12, and the 4 schedule and 6 agent routes when built in.
const OPERATIONS: usize = if cfg!(feature = "schedules") { 22 } else { 12 };

fn body_for(path: &str) -> Option<Value> {
    if path.ends_with("/load") || path.ends_with("/unload") {
        Some(json!({"plugin_name": "mock"}))
    } else if path.ends_with("instances/stop") || path.ends_with("instances/start") {
        Some(json!({"ids": ["mock-0002"]}))
    } else if path.ends_with("/register") {
        Some(json!({"hostname": "build-box", "version": "0.1.0"}))
    } else if path.ends_with("/idle") {
        Some(json!({"idle_seconds": 1800}))
    } else if path.ends_with("/heartbeat") || path.ends_with("/active") {
        Some(json!({}))
    } else {
        None
    }
}

fn assert_problem(headers: &axum::http::HeaderMap, body: &Value, status: StatusCode) {
    assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON, "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://snoozebot.dev/problems/")
    );
    assert!(body["kind"].is_string() && body["detail"].is_string() && body["title"].is_string());
}

#[tokio::test]
async fn every_protected_route_without_a_key_is_401_with_www_authenticate() {
    let api = Api::new().await;
    let operations = operations();
    assert_eq!(operations.len(), OPERATIONS, "{operations:?}");
    for (method, path, role) in operations {
        let (status, headers, body) = api
            .call(method.clone(), &concrete(&path), None, body_for(&path))
            .await;
        match role {
            Need::Role(_) | Need::Agent => {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
                assert_problem(&headers, &body, status);
                assert!(
                    headers[header::WWW_AUTHENTICATE]
                        .to_str()
                        .unwrap()
                        .starts_with("Bearer realm=\"snoozebot\""),
                    "{method} {path}"
                );
                // A wrong key is no better than none.
                let (status, _, _) = api
                    .call(
                        method.clone(),
                        &concrete(&path),
                        Some("sbk_wrong"),
                        body_for(&path),
                    )
                    .await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            }
            Need::Anyone => assert_eq!(status, StatusCode::OK, "{method} {path} is public"),
        }
    }
}

#[tokio::test]
async fn each_role_reaches_what_it_may_and_is_refused_the_rest() {
    for role in Role::ALL {
        let api = Api::new().await;
        for (method, path, needed) in operations() {
            let needed = match needed {
                Need::Anyone => continue,
                Need::Role(needed) => needed,
                Need::Agent => {
                    // No role speaks for an agent; the agent's own key does.
                    let (status, _, body) = api
                        .call(
                            method.clone(),
                            &concrete(&path),
                            Some(api.key(role)),
                            body_for(&path),
                        )
                        .await;
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{role} {path}: {body}");
                    let (status, _, body) = api
                        .call(
                            method.clone(),
                            &concrete(&path),
                            Some(&api.agent),
                            body_for(&path),
                        )
                        .await;
                    assert!(status.is_success(), "agent {path}: {status} {body}");
                    // Another instance's path with this key: refused.
                    let (status, _, _) = api
                        .call(
                            method.clone(),
                            &concrete(&path).replace("mock-0001", "mock-0002"),
                            Some(&api.agent),
                            body_for(&path),
                        )
                        .await;
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "agent {path} elsewhere");
                    continue;
                }
            };
            let (status, headers, body) = api
                .call(
                    method.clone(),
                    &concrete(&path),
                    Some(api.key(role)),
                    body_for(&path),
                )
                .await;
            if role < needed {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} {method} {path}: {body}"
                );
                assert_problem(&headers, &body, status);
                assert_eq!(body["kind"], "permission_denied");
            } else {
                assert!(
                    status.is_success(),
                    "{role} {method} {path}: {status} {body}"
                );
            }
            if method == Method::GET {
                // HEAD is GET without the body, with GET's role.
                let (head, _, _) = api
                    .call(Method::HEAD, &concrete(&path), Some(api.key(role)), None)
                    .await;
                assert_eq!(head, status, "{role} HEAD {path}");
            }
        }
    }
}

#[tokio::test]
async fn the_router_serves_exactly_the_documented_methods() {
    let api = Api::new().await;
    let operations = operations();
    let paths: std::collections::BTreeSet<_> =
        operations.iter().map(|(_, p, _)| p.clone()).collect();
    for path in paths {
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            let documented = operations
                .iter()
                .any(|(m, p, _)| *m == method && *p == path);
            let (status, headers, body) = api
                .call(
                    method.clone(),
                    &concrete(&path),
                    Some(&api.admin),
                    body_for(&path),
                )
                .await;
            if documented {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(
                    !body["detail"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("no route"),
                    "{method} {path} is documented but not routed"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {body}"
                );
                assert_problem(&headers, &body, status);
            }
        }
    }
    let (status, headers, body) = api
        .call(Method::GET, "/api/nothing/here", Some(&api.admin), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_problem(&headers, &body, status);
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_served_as_generated() {
    let api = Api::new().await;
    let (status, _, served) = api.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        served,
        serde_json::to_value(snoozebot_rest::openapi()).unwrap()
    );
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(served["components"]["securitySchemes"]["bearer"].is_object());
    assert!(served["components"]["schemas"]["Problem"].is_object());
    let stop = &served["paths"]["/api/providers/{name}/instances/{id}/stop"]["post"];
    for status in [
        "200", "400", "401", "403", "404", "409", "429", "501", "503", "504",
    ] {
        assert!(stop["responses"][status].is_object(), "stop lacks {status}");
    }
}

#[tokio::test]
async fn paging_through_a_fleet_reads_one_provider_page_per_api_page() {
    let fleet = MockProvider::fleet(1_000);
    let manager = Arc::new(PluginManager::new().with_stack(ProviderStack::new()));
    let registered = fleet.clone();
    manager
        .register("big", move || {
            let fleet = registered.clone();
            async move { Ok(fleet) }
        })
        .unwrap();
    manager.load("big").await.unwrap();
    let mut keys = ApiKeys::new();
    let reader = keys.generate(Role::Reader, "reader");
    let router = snoozebot_rest::router(manager, keys);

    let mut seen = Vec::new();
    let mut uri = "/api/providers/big/instances?page_size=100".to_owned();
    loop {
        let request = Request::get(&uri)
            .header(header::AUTHORIZATION, format!("Bearer {reader}"))
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let page: Value = serde_json::from_slice(&bytes).unwrap();
        seen.extend(
            page["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match page["next_page_token"].as_str() {
            Some(token) => {
                uri = format!("/api/providers/big/instances?page_size=100&page_token={token}")
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 1_000);
    let calls = fleet.calls();
    let count = |operation| calls.iter().filter(|c| c.operation == operation).count();
    // Ten pages, one provider page each; the whole fleet is never listed.
    assert_eq!(count(MockOperation::ListPage), 10);
    assert_eq!(count(MockOperation::List), 0);
}

#[tokio::test]
async fn calls_go_through_the_managers_middleware_so_throttling_is_retried() {
    let stack = ProviderStack::new().retry(
        RetryConfig::default().with_backoff(Duration::from_millis(1), Duration::from_millis(5)),
    );
    let api = Api::with_stack(HttpOptions::default(), stack).await;
    let throttled = Error::new(ErrorKind::Throttled, "Rate exceeded")
        .with_retry_after(Duration::from_millis(5));
    api.fleet
        .fail_next_with(MockOperation::Get, 2, throttled.clone());
    let (status, _, body) = api
        .call(
            Method::GET,
            "/api/providers/mock/instances/mock-0001",
            Some(&api.reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "mock-0001");
    let gets = api
        .fleet
        .calls()
        .iter()
        .filter(|call| call.operation == MockOperation::Get)
        .count();
    assert_eq!(gets, 3, "two throttled attempts, then the answer");

    // Past the attempts the policy allows, the throttling reaches the caller as 429.
    api.fleet.fail_next_with(MockOperation::Get, 10, throttled);
    let (status, _, body) = api
        .call(
            Method::GET,
            "/api/providers/mock/instances/mock-0001",
            Some(&api.reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

#[tokio::test]
async fn each_error_kind_has_its_status_and_problem_body() {
    let api = Api::new().await;
    for (kind, status) in [
        (ErrorKind::NotFound, 404),
        (ErrorKind::InvalidArgument, 400),
        (ErrorKind::InvalidState, 409),
        (ErrorKind::Throttled, 429),
        (ErrorKind::Unavailable, 503),
        (ErrorKind::Timeout, 504),
        (ErrorKind::Unsupported, 501),
        (ErrorKind::PermissionDenied, 403),
        (ErrorKind::Unauthenticated, 502),
        (ErrorKind::Plugin, 502),
        (ErrorKind::Config, 500),
        (ErrorKind::Internal, 500),
    ] {
        let mut error = Error::new(kind, format!("scripted {kind}")).with_provider("mock");
        if kind == ErrorKind::Throttled {
            error = error.with_retry_after(Duration::from_secs(7));
        }
        api.fleet.fail_next_with(MockOperation::Get, 1, error);
        let (got, headers, body) = api
            .call(
                Method::GET,
                "/api/providers/mock/instances/mock-0001",
                Some(&api.reader),
                None,
            )
            .await;
        assert_eq!(got.as_u16(), status, "{kind}: {body}");
        assert_problem(&headers, &body, got);
        assert_eq!(body["kind"], kind.as_str());
        assert_eq!(body["provider"], "mock");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("scripted {kind}"))
        );
        if kind == ErrorKind::Throttled {
            assert_eq!(headers[header::RETRY_AFTER], "7");
            assert_eq!(body["retry_after_seconds"], 7);
        }
    }
}

#[tokio::test]
async fn malformed_requests_are_4xx_problems() {
    let api = Api::with_options(HttpOptions::default().with_body_limit(1024)).await;
    let stop = "/api/providers/mock/instances/mock-0001/stop";
    let raw = |content_type: &str, body: String| {
        Request::builder()
            .method(Method::POST)
            .uri(stop)
            .header(header::AUTHORIZATION, format!("Bearer {}", api.operator))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap()
    };
    for (request, status) in [
        (
            raw("application/json", "{\"mode\": ".into()),
            StatusCode::BAD_REQUEST,
        ),
        (
            raw("application/json", "{\"mode\": \"nap\"}".into()),
            StatusCode::BAD_REQUEST,
        ),
        (
            raw("application/json", "{\"nonsense\": 1}".into()),
            StatusCode::BAD_REQUEST,
        ),
        (
            raw("text/plain", "{}".into()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            raw(
                "application/json",
                format!("{{\"mode\": \"{}\"}}", "x".repeat(4096)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let (got, headers, body) = api.send(request).await;
        assert_eq!(got, status, "{body}");
        assert_problem(&headers, &body, got);
    }
    // No instance was stopped by any of them.
    assert_eq!(api.fleet.call_count(MockOperation::Stop), 0);

    for (uri, status) in [
        ("/api/providers/nope/instances", StatusCode::NOT_FOUND),
        (
            "/api/providers/mock/instances/i-0123456789abcdef0",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/providers/mock/instances/mock%20bad",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/providers/mock/instances/mock-9999",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/providers/mock/instances?page_size=0",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/providers/mock/instances?page_token=garbage!",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/providers/mock/instances?state=napping",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/providers/mock/instances?tag=novalue",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/providers/mock/instances?colour=blue",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/plugins/nope", StatusCode::NOT_FOUND),
        (
            "/api/plugins/discover?autoload=maybe",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, headers, body) = api.call(Method::GET, uri, Some(&api.reader), None).await;
        assert_eq!(got, status, "{uri}: {body}");
        assert_problem(&headers, &body, got);
    }
    let (got, _, body) = api
        .call(
            Method::POST,
            "/api/plugins/load",
            Some(&api.admin),
            Some(json!({"plugin_name": "nope"})),
        )
        .await;
    assert_eq!(got, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("mock"),
        "known names are listed: {body}"
    );
    let (got, _, _) = api
        .call(
            Method::POST,
            "/api/plugins/load",
            Some(&api.admin),
            Some(json!({"plugin_name": "mock", "timeout_seconds": 0})),
        )
        .await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn instances_page_by_id_and_filter() {
    let api = Api::new().await;
    let mut seen = Vec::new();
    let mut uri = "/api/providers/mock/instances?page_size=7".to_owned();
    let mut pages = 0;
    loop {
        let (status, _, page) = api.call(Method::GET, &uri, Some(&api.reader), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        seen.extend(
            page["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match page["next_page_token"].as_str() {
            Some(token) => {
                uri = format!("/api/providers/mock/instances?page_size=7&page_token={token}")
            }
            None => break,
        }
    }
    assert_eq!((pages, seen.len()), (3, 21));
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);

    let (_, _, idle) = api
        .call(
            Method::GET,
            "/api/providers/mock/instances?tag=snoozebot=idle&state=running&state=stopped",
            Some(&api.reader),
            None,
        )
        .await;
    assert_eq!(idle["instances"].as_array().unwrap().len(), 5, "{idle}");

    // Ids with a slash travel percent-encoded.
    let (status, _, one) = api
        .call(
            Method::GET,
            "/api/providers/mock/instances/mock-eu%2Fweb-1",
            Some(&api.reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["id"], "mock-eu/web-1");
}

#[tokio::test]
async fn stops_and_starts_one_and_in_batches() {
    let api = Api::new().await;
    let (status, _, change) = api
        .call(
            Method::POST,
            "/api/providers/mock/instances/mock-0001/stop",
            Some(&api.operator),
            Some(json!({"mode": "hibernate", "force": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{change}");
    assert_eq!(change["mode"], "hibernate");
    assert_eq!(change["previous"], "running");

    let (status, _, batch) = api
        .call(
            Method::POST,
            "/api/providers/mock/instances/stop",
            Some(&api.operator),
            Some(json!({"ids": ["mock-0002", "not an id", "mock-9999", "mock-0003"], "dry_run": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    let results = batch["results"].as_array().unwrap();
    let summary: Vec<_> = results
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["error"]["kind"].as_str().unwrap_or("ok"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("mock-0002", "ok"),
            ("not an id", "invalid_argument"),
            ("mock-9999", "not_found"),
            ("mock-0003", "ok")
        ]
    );
    let (status, _, batch) = api
        .call(
            Method::POST,
            "/api/providers/mock/instances/start",
            Some(&api.operator),
            Some(json!({"ids": ["mock-0002", "mock-0003"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert!(
        batch["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["change"].is_object())
    );
    let (status, _, _) = api
        .call(
            Method::POST,
            "/api/providers/mock/instances/start",
            Some(&api.operator),
            Some(json!({"ids": []})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unload_refuses_to_cut_calls_in_flight_unless_forced() {
    let api = Arc::new(Api::new().await);
    api.fleet.set_latency(Duration::from_millis(500));
    let slow = spawn_reader_get(&api, "/api/providers/mock/instances/mock-0001");
    until_in_flight(&api.manager, 1).await;
    let (status, _, body) = api
        .call(
            Method::POST,
            "/api/plugins/unload",
            Some(&api.admin),
            Some(json!({"plugin_name": "mock"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("1 calls in flight"),
        "{body}"
    );
    let (status, _, body) = api
        .call(
            Method::POST,
            "/api/plugins/unload",
            Some(&api.admin),
            Some(json!({"plugin_name": "mock", "force": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["interrupted_calls"], 1);
    // The in-process call still completes on the handle it holds.
    let (status, _, _) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(api.manager.get("mock").is_err());
    let (status, _, _) = api
        .call(Method::GET, "/api/plugins/mock", Some(&api.reader), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn discover_autoload_needs_admin() {
    let api = Api::new().await;
    api.manager.unload("mock").await.unwrap();
    let (status, _, _) = api
        .call(
            Method::GET,
            "/api/plugins/discover?autoload=true",
            Some(&api.operator),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, found) = api
        .call(
            Method::GET,
            "/api/plugins/discover",
            Some(&api.reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["plugins"][0]["loaded"], false);
    let (status, _, found) = api
        .call(
            Method::GET,
            "/api/plugins/discover?autoload=true",
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["plugins"][0]["loaded"], true);
    assert_eq!(found["autoload_failures"], json!([]));
    let (_, _, listed) = api
        .call(Method::GET, "/api/plugins", Some(&api.reader), None)
        .await;
    assert_eq!(listed[0]["name"], "mock");
    assert_eq!(listed[0]["health"]["status"], "serving");
}

#[tokio::test]
async fn slow_requests_time_out_and_excess_ones_are_shed() {
    let api = Arc::new(
        Api::with_options(
            HttpOptions::default()
                .with_request_timeout(Duration::from_millis(200))
                .with_max_concurrent_requests(1),
        )
        .await,
    );
    api.fleet.set_latency(Duration::from_millis(600));
    let first = spawn_reader_get(&api, "/api/providers/mock/instances/mock-0001");
    until_in_flight(&api.manager, 1).await;
    let (status, headers, body) = api
        .call(
            Method::GET,
            "/api/providers/mock/instances/mock-0002",
            Some(&api.reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    let (status, headers, body) = first.await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_problem(&headers, &body, status);
    assert_eq!(body["kind"], "timeout");
}

#[tokio::test]
async fn over_a_real_socket_with_x_api_key_and_graceful_shutdown() {
    let api = Api::new().await;
    api.fleet.set_latency(Duration::from_millis(300));
    let (base, stop, server) = serve_on_loopback(api.router.clone()).await;
    let client = reqwest::Client::new();

    let response = client
        .get(format!("{base}/api/plugins"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["content-type"], PROBLEM_JSON);

    let slow = client
        .post(format!(
            "{base}/api/providers/mock/instances/mock-0004/stop"
        ))
        .header("x-api-key", &api.operator)
        .send();
    let slow = tokio::spawn(slow);
    until_in_flight(&api.manager, 1).await;
    stop.send(()).unwrap();
    // The request in flight finishes; the server then ends.
    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let change: Value = response.json().await.unwrap();
    assert_eq!(change["previous"], "running");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        client
            .get(format!("{base}/api/openapi.json"))
            .send()
            .await
            .is_err()
    );
}

/// Sends over a real socket; returns the status, headers and JSON body.
async fn over_socket(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    key: Option<&str>,
    body: Option<String>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = client.request(method, url);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn over_a_real_socket_the_auth_table_and_malformed_bodies_hold() {
    let api = Api::with_options(HttpOptions::default().with_body_limit(2048)).await;
    let (base, stop, server) = serve_on_loopback(api.router.clone()).await;
    let client = reqwest::Client::new();
    for (method, path, role) in operations() {
        let url = format!("{base}{}", concrete(&path));
        let body = body_for(&path).map(|body| body.to_string());
        let (status, headers, problem) =
            over_socket(&client, method.clone(), &url, None, body.clone()).await;
        if role != Need::Anyone {
            assert_eq!(status, 401, "{method} {path}");
            assert_eq!(headers["content-type"], PROBLEM_JSON);
            assert_eq!(problem["kind"], "unauthenticated");
            let (status, _, _) =
                over_socket(&client, method.clone(), &url, Some(&api.reader), body).await;
            match role {
                Need::Role(role) if role > Role::Reader => {
                    assert_eq!(status, 403, "{method} {path}")
                }
                Need::Agent => assert_eq!(status, 401, "{method} {path}"),
                _ => {}
            }
        }
    }
    let stop_url = format!("{base}/api/providers/mock/instances/mock-0001/stop");
    for (body, status) in [
        ("{\"mode\": ".to_owned(), 400),
        ("{\"mode\": \"nap\"}".to_owned(), 400),
        (format!("{{\"mode\": \"{}\"}}", "x".repeat(64 * 1024)), 413),
    ] {
        let (got, headers, problem) = over_socket(
            &client,
            Method::POST,
            &stop_url,
            Some(&api.operator),
            Some(body),
        )
        .await;
        assert_eq!(got, status, "{problem}");
        assert_eq!(headers["content-type"], PROBLEM_JSON);
    }
    let response = client
        .post(&stop_url)
        .header("authorization", format!("Bearer {}", api.operator))
        .header("content-type", "text/plain")
        .body("stop please")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(api.fleet.call_count(MockOperation::Stop), 0);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn one_slow_provider_starves_neither_the_others_nor_the_admin() {
    let manager = Arc::new(PluginManager::new());
    let slow = MockProvider::fleet(4);
    slow.set_latency(Duration::from_secs(30));
    let registered = slow.clone();
    manager
        .register("slow", move || {
            let fleet = registered.clone();
            async move { Ok(fleet) }
        })
        .unwrap();
    manager
        .register("mock", || async { Ok(MockProvider::fleet(4)) })
        .unwrap();
    manager.load("slow").await.unwrap();
    manager.load("mock").await.unwrap();
    let mut keys = ApiKeys::new();
    let reader = keys.generate(Role::Reader, "reader");
    let admin = keys.generate(Role::Admin, "admin");
    let router = snoozebot_rest::router(Arc::clone(&manager), keys);
    let request = |method: Method, uri: &str, key: &str, body: Option<Value>| {
        let builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {key}"));
        match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .unwrap()
    };

    // As many reads of the slow provider as the whole instance pool holds.
    let mut stuck = Vec::new();
    for _ in 0..64 {
        let router = router.clone();
        let get = request(
            Method::GET,
            "/api/providers/slow/instances/mock-0001",
            &reader,
            None,
        );
        stuck.push(tokio::spawn(
            async move { router.oneshot(get).await.unwrap() },
        ));
    }
    tokio::time::timeout(Duration::from_secs(5), async {
        while manager.in_flight("slow") < 16 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the slow calls never started");
    assert_eq!(manager.in_flight("slow"), 16, "its own share only");

    let status = |response: axum::response::Response| response.status();
    let other = router
        .clone()
        .oneshot(request(
            Method::GET,
            "/api/providers/mock/instances/mock-0001",
            &reader,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(
        status(other),
        StatusCode::OK,
        "another provider still answers"
    );
    let document = router
        .clone()
        .oneshot(request(Method::GET, "/api/openapi.json", &reader, None))
        .await
        .unwrap();
    assert_eq!(
        status(document),
        StatusCode::OK,
        "the document still answers"
    );
    let unload = router
        .clone()
        .oneshot(request(
            Method::POST,
            "/api/plugins/unload",
            &admin,
            Some(json!({"plugin_name": "slow", "force": true})),
        ))
        .await
        .unwrap();
    assert_eq!(status(unload), StatusCode::OK, "the admin can unload it");

    // The 48 beyond its share were refused at once, saying why.
    let mut shed = 0;
    for task in stuck {
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_millis(100), task).await
            && response.status() == StatusCode::SERVICE_UNAVAILABLE
        {
            shed += 1;
        }
    }
    assert_eq!(shed, 48);
}

/// Writes `request` as raw bytes and reads the answer to its end (hyper closes after its own
/// refusals): the status line, the head, and the body.
async fn raw_exchange(base: &str, request: &[u8]) -> (String, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // The server may answer and close before it has read everything; that is its right.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server neither answered nor closed")
        .unwrap_or_default();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn requests_hyper_cannot_read_are_refused_with_problem_documents() {
    let api = Api::new().await;
    let (base, stop, server) = serve_on_loopback(api.router.clone()).await;
    let many_headers: String = (0..200).map(|n| format!("x-h{n}: {n}\r\n")).collect();
    let cases = [
        (
            format!(
                "GET /api/plugins?{} HTTP/1.1\r\nhost: x\r\n\r\n",
                "a".repeat(70_000)
            ),
            414,
        ),
        (
            format!("GET /api/plugins HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n"),
            431,
        ),
        (
            format!(
                "GET /api/plugins HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
                "b".repeat(500_000)
            ),
            431,
        ),
        (
            "GET /api/plugins HTTP/1.1\r\nbad header\r\n\r\n".to_owned(),
            400,
        ),
        ("\u{1}\u{2}garbage that is not HTTP\r\n\r\n".to_owned(), 400),
    ];
    for (request, status) in cases {
        let (line, head, body) = raw_exchange(&base, request.as_bytes()).await;
        assert!(line.starts_with(&format!("HTTP/1.1 {status} ")), "{line}");
        assert!(
            head.contains("content-type: application/problem+json"),
            "{head}"
        );
        let problem: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
        assert_eq!(problem["status"], status);
        assert_eq!(problem["kind"], "invalid_argument");
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    }
    // The API's own answers pass as they were, a refusal of its own included.
    let (line, head, body) = raw_exchange(
        &base,
        b"GET /api/plugins HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 401 "), "{line}");
    assert!(head.contains("www-authenticate"), "{head}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["kind"], "unauthenticated");
    let (line, _, body) = raw_exchange(
        &base,
        b"GET /api/openapi.json HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 200 "), "{line}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["openapi"].is_string());
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// `GET uri` on `router` with `key`: the status.
async fn get_status(router: &axum::Router, uri: &str, key: &str) -> StatusCode {
    let request = Request::builder()
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    router.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn keys_replaced_in_the_ring_take_effect_at_the_next_request() {
    let manager = Arc::new(PluginManager::new());
    let mut old = ApiKeys::new();
    let old_key = old.generate(Role::Reader, "old");
    let ring = snoozebot_rest::KeyRing::new(old);
    let router = snoozebot_rest::router_with_keys(manager, ring.clone(), HttpOptions::default());
    assert_eq!(
        get_status(&router, "/api/plugins", &old_key).await,
        StatusCode::OK
    );
    let mut new = ApiKeys::new();
    let new_key = new.generate(Role::Reader, "new");
    ring.replace(new);
    assert_eq!(
        get_status(&router, "/api/plugins", &new_key).await,
        StatusCode::OK
    );
    assert_eq!(
        get_status(&router, "/api/plugins", &old_key).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_registered_provider_loads_on_first_use_only_when_asked_to() {
    for load_on_use in [false, true] {
        let manager = Arc::new(PluginManager::new());
        manager
            .register("fleet", || async { Ok(MockProvider::fleet(2)) })
            .unwrap();
        let mut keys = ApiKeys::new();
        let reader = keys.generate(Role::Reader, "reader");
        let options = HttpOptions::default().with_load_registered_on_use(load_on_use);
        let router = snoozebot_rest::router_with(Arc::clone(&manager), keys, options);
        let status = get_status(&router, "/api/providers/fleet/instances", &reader).await;
        if load_on_use {
            assert_eq!(status, StatusCode::OK);
            assert!(manager.get("fleet").is_ok(), "loaded by the request");
        } else {
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert!(manager.get("fleet").is_err());
        }
        // An unknown name is never loaded, whatever the option.
        let status = get_status(&router, "/api/providers/nope/instances", &reader).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
