//! The plugin manager's in-process half through the public API.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use snoozebot_core::manager::{Health, LoadOptions};
use snoozebot_core::{Error, ErrorKind, PluginManager, ProviderKind};
use snoozebot_testkit::MockProvider;
use tokio::time::Instant;

/// A factory that counts its builds and takes `build_time` (tokio time) for each.
fn counting_factory(
    builds: &Arc<AtomicUsize>,
    build_time: Duration,
) -> impl Fn() -> futures_util::future::BoxFuture<'static, snoozebot_core::Result<MockProvider>>
+ Send
+ Sync
+ 'static {
    let builds = Arc::clone(builds);
    move || {
        let builds = Arc::clone(&builds);
        Box::pin(async move {
            builds.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(build_time).await;
            Ok(MockProvider::fleet(3))
        })
    }
}

#[tokio::test]
async fn unknown_names_are_not_found_and_list_the_known_ones() {
    let manager = PluginManager::new();
    let err = manager.load("aws").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("none registered"), "{err}");

    manager
        .register("mock", || async { Ok(MockProvider::fleet(1)) })
        .unwrap();
    manager
        .register("lab", || async { Ok(MockProvider::fleet(1)) })
        .unwrap();
    for err in [
        manager.load("aws").await.unwrap_err(),
        manager.get("aws").unwrap_err(),
        manager.unload("aws").await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains("known: lab, mock"), "{err}");
    }
}

#[tokio::test]
async fn bad_and_duplicate_names_are_refused() {
    let manager = PluginManager::new();
    let err = manager
        .register("../../bin/sh", || async { Ok(MockProvider::fleet(1)) })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    manager
        .register("mock", || async { Ok(MockProvider::fleet(1)) })
        .unwrap();
    let err = manager
        .register("mock", || async { Ok(MockProvider::fleet(1)) })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("already registered"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn concurrent_loads_build_once_and_share_the_provider() {
    let builds = Arc::new(AtomicUsize::new(0));
    let manager = Arc::new(PluginManager::new());
    manager
        .register("mock", counting_factory(&builds, Duration::from_secs(1)))
        .unwrap();

    let loads: Vec<_> = (0..8)
        .map(|_| {
            let manager = Arc::clone(&manager);
            tokio::spawn(async move { manager.load("mock").await })
        })
        .collect();
    let mut providers = Vec::new();
    for load in loads {
        providers.push(load.await.unwrap().unwrap());
    }
    assert_eq!(builds.load(Ordering::SeqCst), 1);
    assert!(
        providers
            .windows(2)
            .all(|pair| Arc::ptr_eq(&pair[0], &pair[1]))
    );
    assert!(Arc::ptr_eq(&providers[0], &manager.get("mock").unwrap()));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_factory_times_out_after_its_retries() {
    let builds = Arc::new(AtomicUsize::new(0));
    let manager = PluginManager::with_load_options(
        LoadOptions::default()
            .with_timeout(Duration::from_secs(5))
            .with_max_attempts(3),
    );
    manager
        .register("slow", counting_factory(&builds, Duration::from_secs(3600)))
        .unwrap();

    let started = Instant::now();
    let err = manager.load("slow").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.message().contains("slow"), "{err}");
    assert_eq!(builds.load(Ordering::SeqCst), 3);
    // Three 5 s attempts with 200 ms and 400 ms of backoff between them.
    assert_eq!(started.elapsed(), Duration::from_millis(15_600));
    let err = manager.get("slow").unwrap_err();
    assert!(err.message().contains("not loaded"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn retryable_load_failures_are_retried_and_others_are_not() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let manager = PluginManager::new();
    let counter = Arc::clone(&attempts);
    manager
        .register("flaky", move || {
            let attempt = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt == 0 {
                    Err(Error::new(ErrorKind::Unavailable, "endpoint not up yet"))
                } else {
                    Ok(MockProvider::fleet(1))
                }
            }
        })
        .unwrap();
    manager.load("flaky").await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 2);

    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&attempts);
    manager
        .register("misconfigured", move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Err::<MockProvider, _>(Error::new(ErrorKind::Config, "no region set")) }
        })
        .unwrap();
    let err = manager.load("misconfigured").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn discover_list_unload_and_reload() {
    let builds = Arc::new(AtomicUsize::new(0));
    let manager = PluginManager::new();
    manager
        .register("mock", counting_factory(&builds, Duration::ZERO))
        .unwrap();
    manager
        .register("idle", || async { Ok(MockProvider::fleet(1)) })
        .unwrap();

    let discovered = manager.discover().await.unwrap();
    let summary: Vec<_> = discovered
        .iter()
        .map(|d| (d.name.as_str(), d.kind, d.loaded))
        .collect();
    assert_eq!(
        summary,
        [
            ("idle", ProviderKind::InProcess, false),
            ("mock", ProviderKind::InProcess, false)
        ]
    );
    assert!(manager.list().await.is_empty());

    let first = manager.load("mock").await.unwrap();
    let listed = manager.list().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "mock");
    assert_eq!(listed[0].info.name, "mock");
    assert_eq!(listed[0].health, Health::Serving);
    assert!(manager.discover().await.unwrap()[1].loaded);

    manager.unload("mock").await.unwrap();
    manager.unload("mock").await.unwrap();
    assert!(manager.get("mock").is_err());
    let second = manager.load("mock").await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(builds.load(Ordering::SeqCst), 2);

    manager.shutdown().await;
    assert!(manager.list().await.is_empty());
}
