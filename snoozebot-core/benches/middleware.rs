//! What the middleware costs per call: `get_instance` on the mock fleet, bare, through the
//! service adapters alone, through the full stack (tracing, retry, concurrency limit, rate
//! limit, timeout), and as a `PluginManager` hands it out (the per-call lease alone, and the
//! lease with the manager's default stack). The goal is at most 2 µs added per call by the
//! full stack.
//!
//! ```text
//! cargo bench -p snoozebot-core --bench middleware
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use snoozebot_core::middleware::ServiceProvider;
use snoozebot_core::{
    CloudProvider, InstanceId, PluginManager, ProviderBuilder, ProviderStack, RateLimiter,
    RetryConfig,
};
use snoozebot_testkit::MockProvider;

fn full_stack(fleet: &MockProvider) -> Arc<dyn CloudProvider> {
    ProviderBuilder::new(Arc::new(fleet.clone()))
        .tracing()
        .retry(RetryConfig::default())
        .concurrency_limit(64)
        // High enough never to wait: this measures the bookkeeping, not the limit.
        .rate_limit(RateLimiter::new(1e9, 1_000_000).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
}

fn get_instance(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let fleet = MockProvider::builder()
        .fleet(100)
        .record_calls(false)
        .build();
    let id = InstanceId::new("mock-0042").unwrap();
    let bare: Arc<dyn CloudProvider> = Arc::new(fleet.clone());
    // An empty stack hands the provider back unwrapped; the adapters are built by hand.
    let adapters: Arc<dyn CloudProvider> = Arc::new(ServiceProvider::new(
        Arc::clone(&bare),
        ProviderStack::new().service(&bare),
    ));
    let managed = |stack: ProviderStack| {
        let manager = PluginManager::new().with_stack(stack);
        let registered = fleet.clone();
        manager
            .register("mock", move || {
                let fleet = registered.clone();
                async move { Ok(fleet) }
            })
            .unwrap();
        let provider = runtime.block_on(manager.load("mock")).unwrap();
        (manager, provider)
    };
    let (_lease_manager, leased) = managed(ProviderStack::new());
    let (_default_manager, managed_default) = managed(ProviderStack::recommended());
    let providers: [(&str, Arc<dyn CloudProvider>); 5] = [
        ("bare", bare),
        ("adapters_only", adapters),
        ("full_stack", full_stack(&fleet)),
        ("manager_lease_only", leased),
        ("manager_default_stack", managed_default),
    ];

    let mut group = c.benchmark_group("get_instance");
    for (name, provider) in providers {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| {
                let provider = Arc::clone(&provider);
                let id = id.clone();
                async move { provider.get_instance(&id).await.unwrap() }
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = get_instance
}
criterion_main!(benches);
