//! The conformance suite on the mock fleet: bare, wrapped in the whole middleware stack, with
//! slow transitions, with fewer capabilities, and under injected faults that the retry layer
//! must absorb.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use snoozebot_core::{
    Capabilities, CloudProvider, ErrorKind, InstanceId, InstanceState, ProviderBuilder,
    RateLimiter, RetryConfig, StopMode,
};
use snoozebot_testkit::conformance::{self, Fixture};
use snoozebot_testkit::{MockInstance, MockOperation, MockProvider};

fn full_stack(provider: Arc<dyn CloudProvider>) -> Arc<dyn CloudProvider> {
    ProviderBuilder::new(provider)
        .tracing()
        .retry(RetryConfig::default())
        .concurrency_limit(4)
        .rate_limit(RateLimiter::new(50.0, 10).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
}

#[tokio::test(start_paused = true)]
async fn bare_mock_conforms() {
    let fleet = MockProvider::fleet(8);
    conformance::run(&fleet, &Fixture::for_mock_fleet()).await;
}

#[tokio::test(start_paused = true)]
async fn mock_with_slow_transitions_conforms() {
    let fleet = MockProvider::builder()
        .fleet(8)
        .transition_time(Duration::from_secs(45))
        .build();
    conformance::run(&fleet, &Fixture::for_mock_fleet()).await;
}

#[tokio::test(start_paused = true)]
async fn mock_wrapped_in_the_full_middleware_stack_conforms() {
    let fleet = MockProvider::builder()
        .fleet(8)
        .transition_time(Duration::from_secs(5))
        .build();
    let provider = full_stack(Arc::new(fleet));
    conformance::run(provider.as_ref(), &Fixture::for_mock_fleet()).await;
}

#[tokio::test(start_paused = true)]
async fn mock_with_fewer_capabilities_and_a_terminated_instance_conforms() {
    let fleet = MockProvider::builder()
        .fleet(8)
        .capabilities(Capabilities::new([StopMode::Stop]))
        .instance(MockInstance::new("mock-gone").state(InstanceState::Terminated))
        .build();
    let fixture = Fixture::for_mock_fleet().with_terminated(InstanceId::new("mock-gone").unwrap());
    conformance::run(&fleet, &fixture).await;
    conformance::run(full_stack(Arc::new(fleet)).as_ref(), &fixture).await;
}

#[tokio::test(start_paused = true)]
async fn retry_layer_absorbs_transient_faults_during_the_suite() {
    let fleet = MockProvider::fleet(8);
    for operation in [
        MockOperation::Get,
        MockOperation::List,
        MockOperation::Stop,
        MockOperation::Start,
    ] {
        fleet.fail_next(operation, 2, ErrorKind::Throttled);
    }
    conformance::run(
        full_stack(Arc::new(fleet.clone())).as_ref(),
        &Fixture::for_mock_fleet(),
    )
    .await;
    let throttled = fleet
        .calls()
        .into_iter()
        .filter(|call| call.outcome == Err(ErrorKind::Throttled))
        .count();
    assert_eq!(throttled, 8, "every injected fault was met and absorbed");
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "malformed_is_invalid_argument")]
async fn the_suite_catches_a_provider_that_accepts_malformed_ids() {
    let fleet = MockProvider::fleet(8);
    // Claim an id the mock accepts is malformed: the suite must notice.
    let mut fixture = Fixture::for_mock_fleet();
    fixture.malformed = InstanceId::new("mock-9998").unwrap();
    conformance::run(&fleet, &fixture).await;
}
