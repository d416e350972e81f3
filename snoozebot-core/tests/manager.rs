//! The plugin manager's in-process half through the public API.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use snoozebot_core::manager::{Candidate, LoadOptions, ProviderSource};
use snoozebot_core::{
    Error, ErrorKind, Health, InstanceId, PluginManager, ProviderKind, ProviderStack,
};
use snoozebot_testkit::{MockOperation, MockProvider};
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

/// Registers `fleet` (shared, so the test can script it) as `mock`.
fn manager_with(fleet: &MockProvider, stack: ProviderStack) -> Arc<PluginManager> {
    let manager = Arc::new(PluginManager::new().with_stack(stack));
    let registered = fleet.clone();
    manager
        .register("mock", move || {
            let fleet = registered.clone();
            async move { Ok(fleet) }
        })
        .unwrap();
    manager
}

async fn until_in_flight(manager: &PluginManager, calls: usize) {
    while manager.in_flight("mock") != calls {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn what_the_manager_loads_goes_through_its_stack() {
    let fleet = MockProvider::fleet(2);
    // The default stack retries: a throttled call is tried again and answers.
    let manager = manager_with(&fleet, ProviderStack::recommended());
    let provider = manager.load("mock").await.unwrap();
    fleet.fail_next_with(
        MockOperation::Get,
        2,
        Error::new(ErrorKind::Throttled, "Rate exceeded"),
    );
    let id = InstanceId::new("mock-0001").unwrap();
    assert_eq!(provider.get_instance(&id).await.unwrap().id, id);

    // A bare stack hands the failure through as it is.
    let fleet = MockProvider::fleet(2);
    let manager = manager_with(&fleet, ProviderStack::new());
    let provider = manager.load("mock").await.unwrap();
    fleet.fail_next_with(
        MockOperation::Get,
        1,
        Error::new(ErrorKind::Throttled, "Rate exceeded"),
    );
    let err = provider.get_instance(&id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled);
}

#[tokio::test(start_paused = true)]
async fn unload_refuses_while_a_rust_caller_has_a_call_in_flight() {
    let fleet = MockProvider::fleet(2);
    fleet.set_latency(Duration::from_secs(10));
    let manager = manager_with(&fleet, ProviderStack::new());
    let provider = manager.load("mock").await.unwrap();
    let id = InstanceId::new("mock-0001").unwrap();

    let call = tokio::spawn({
        let (provider, id) = (Arc::clone(&provider), id.clone());
        async move { provider.get_instance(&id).await }
    });
    until_in_flight(&manager, 1).await;
    let err = manager.unload("mock").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert!(err.message().contains("1 calls in flight"), "{err}");
    assert!(
        manager.get("mock").is_ok(),
        "a refused unload changes nothing"
    );

    assert!(call.await.unwrap().is_ok(), "the call in flight finishes");
    assert_eq!(manager.in_flight("mock"), 0);
    manager.unload("mock").await.unwrap();
    let err = provider.get_instance(&id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("unloaded"), "{err}");

    // Forced, it does not wait; the handle from before answers NotFound from then on.
    let provider = manager.load("mock").await.unwrap();
    let call = tokio::spawn({
        let (provider, id) = (Arc::clone(&provider), id.clone());
        async move { provider.get_instance(&id).await }
    });
    until_in_flight(&manager, 1).await;
    manager.force_unload("mock").await.unwrap();
    assert_eq!(
        provider.get_instance(&id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // An in-process call already under way keeps its provider until it returns.
    assert!(call.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn sources_offer_providers_after_the_registered_ones() {
    #[derive(Debug)]
    struct Offers(Vec<&'static str>);
    impl ProviderSource for Offers {
        fn discover(&self) -> futures_util::future::BoxFuture<'_, Vec<Candidate>> {
            Box::pin(async move {
                self.0
                    .iter()
                    .map(|name| match *name {
                        "broken" => Candidate::unusable(
                            *name,
                            ProviderKind::Executable,
                            "it is not executable",
                        )
                        .with_path(format!("/plugins/snoozebot-plugin-{name}")),
                        _ => Candidate::loadable(*name, ProviderKind::Executable, || async {
                            Ok(MockProvider::fleet(1))
                        })
                        .with_path(format!("/plugins/snoozebot-plugin-{name}")),
                    })
                    .collect()
            })
        }
    }
    let fleet = MockProvider::fleet(3);
    let manager = manager_with(&fleet, ProviderStack::new());
    manager.add_source(Offers(vec!["mock", "extra", "broken"]));
    manager.add_source(Offers(vec!["extra"]));

    let discovered = manager.discover().await.unwrap();
    let summary: Vec<_> = discovered
        .iter()
        .map(|d| (d.name.as_str(), d.kind, d.problem.is_some()))
        .collect();
    assert_eq!(
        summary,
        [
            ("extra", ProviderKind::Executable, false),
            ("mock", ProviderKind::InProcess, false),
            ("mock", ProviderKind::Executable, true),
            ("broken", ProviderKind::Executable, true),
            // The second source's `extra` loses to the first source's.
            ("extra", ProviderKind::Executable, true),
        ]
    );
    assert!(
        discovered[4]
            .problem
            .as_deref()
            .unwrap()
            .contains("/plugins/snoozebot-plugin-extra"),
        "{discovered:?}"
    );
    assert!(
        discovered[2]
            .problem
            .as_deref()
            .unwrap()
            .contains("an in-process provider"),
        "{discovered:?}"
    );
    // Loading a name no one knew yet asks the sources.
    let manager = manager_with(&fleet, ProviderStack::new());
    manager.add_source(Offers(vec!["extra"]));
    assert_eq!(manager.load("extra").await.unwrap().info().name, "mock");
    // The mock fleet with the registered `mock` is untouched.
    assert_eq!(
        manager
            .load("mock")
            .await
            .unwrap()
            .list_instances(&Default::default())
            .await
            .unwrap()
            .len(),
        3
    );
}
