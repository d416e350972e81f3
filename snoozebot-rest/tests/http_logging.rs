//! What the REST API logs: every request is traced, and no key ever is — not an accepted one,
//! not a refused one, not one in `X-API-Key`.
//!
//! A binary of its own: `tracing` caches per call site whether anyone listens.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use snoozebot_core::PluginManager;
use snoozebot_rest::{ApiKeys, Role};
use snoozebot_testkit::{LogCapture, MockProvider};
use tower::ServiceExt;

#[tokio::test]
async fn requests_are_traced_and_keys_never_logged() {
    let captured = LogCapture::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let manager = Arc::new(PluginManager::new());
    manager
        .register("mock", || async { Ok(MockProvider::fleet(3)) })
        .unwrap();
    manager.load("mock").await.unwrap();
    let mut keys = ApiKeys::new();
    let reader = keys.generate(Role::Reader, "dashboard");
    let router = snoozebot_rest::router(manager, keys);
    let wrong = "sbk_this-key-is-wrong-and-must-not-be-logged";
    for (method, header, key, uri, status) in [
        (
            "GET",
            "authorization",
            format!("Bearer {reader}"),
            "/api/providers/mock/instances",
            200,
        ),
        ("GET", "x-api-key", reader.clone(), "/api/plugins", 200),
        (
            "POST",
            "authorization",
            format!("Bearer {reader}"),
            "/api/plugins/load",
            403,
        ),
        (
            "GET",
            "authorization",
            format!("Bearer {wrong}"),
            "/api/plugins",
            401,
        ),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header, key)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {uri}");
    }
    let log = captured.contents();
    assert!(
        log.contains("/api/providers/mock/instances"),
        "requests are not traced:\n{log}"
    );
    assert!(
        log.contains("role too weak") && log.contains("dashboard"),
        "the refused call names the key's label:\n{log}"
    );
    assert!(!log.contains(&reader), "a key was logged:\n{log}");
    assert!(
        !log.contains(&reader[4..20]),
        "part of a key was logged:\n{log}"
    );
    assert!(!log.contains(wrong), "a wrong key was logged:\n{log}");
}

#[tokio::test]
async fn a_crowd_that_is_shed_or_fails_cannot_flood_the_log() {
    use std::time::Duration;
    let captured = LogCapture::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let manager = Arc::new(PluginManager::new());
    let fleet = MockProvider::fleet(3);
    fleet.set_latency(Duration::from_secs(30));
    let registered = fleet.clone();
    manager
        .register("mock", move || {
            let fleet = registered.clone();
            async move { Ok(fleet) }
        })
        .unwrap();
    manager.load("mock").await.unwrap();
    let mut keys = ApiKeys::new();
    let reader = keys.generate(Role::Reader, "dashboard");
    let router = snoozebot_rest::router_with(
        Arc::clone(&manager),
        keys,
        snoozebot_rest::HttpOptions::default().with_max_concurrent_per_provider(1),
    );
    let get = || {
        Request::builder()
            .uri("/api/providers/mock/instances/mock-0001")
            .header("authorization", format!("Bearer {reader}"))
            .body(Body::empty())
            .unwrap()
    };
    let holder = tokio::spawn(router.clone().oneshot(get()));
    tokio::time::timeout(Duration::from_secs(5), async {
        while manager.in_flight("mock") < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap();
    for _ in 0..500 {
        let response = router.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status().as_u16(), 503);
    }
    holder.abort();
    let log = captured.contents();
    let lines = log.lines().count();
    assert!(
        lines <= 3,
        "500 shed requests wrote {lines} log lines:\n{log}"
    );
    assert!(
        !log.contains("ERROR") && !log.contains("WARN"),
        "shedding is no error:\n{log}"
    );
    assert!(
        log.contains("shedding load"),
        "shedding was not said at all:\n{log}"
    );
}

#[tokio::test]
async fn provider_failures_are_logged_within_a_budget_with_a_count() {
    let captured = LogCapture::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let manager = Arc::new(PluginManager::new().with_stack(snoozebot_core::ProviderStack::new()));
    let fleet = MockProvider::fleet(3);
    fleet.fail_next(
        snoozebot_testkit::MockOperation::Get,
        300,
        snoozebot_core::ErrorKind::Unavailable,
    );
    let registered = fleet.clone();
    manager
        .register("mock", move || {
            let fleet = registered.clone();
            async move { Ok(fleet) }
        })
        .unwrap();
    manager.load("mock").await.unwrap();
    let mut keys = ApiKeys::new();
    let reader = keys.generate(Role::Reader, "dashboard");
    let router = snoozebot_rest::router(manager, keys);
    for _ in 0..300 {
        let request = Request::builder()
            .uri("/api/providers/mock/instances/mock-0001")
            .header("authorization", format!("Bearer {reader}"))
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 503);
    }
    let log = captured.contents();
    let failed = log
        .lines()
        .filter(|line| line.contains("request failed"))
        .count();
    assert!(
        (1..=10).contains(&failed),
        "300 failed requests wrote {failed} lines:\n{log}"
    );
}
