//! The tracing layer through the public API.
//!
//! This test has a binary of its own: `tracing` caches per call site whether anyone listens,
//! and a test running at the same time without a subscriber could make the cached answer "no".
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use snoozebot_core::middleware::{RetryPolicy, Rng};
use snoozebot_core::{ErrorKind, InstanceId, ProviderBuilder, RetryConfig};
use snoozebot_testkit::{LogCapture, MockOperation, MockProvider};

/// A jitter source that never waits.
struct NoJitter;

impl Rng for NoJitter {
    fn next_u64(&mut self) -> u64 {
        0
    }
}

fn id(s: &str) -> InstanceId {
    InstanceId::new(s).unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_call_gets_a_span_with_operation_attempts_and_outcome() {
    let captured = LogCapture::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fleet = MockProvider::fleet(1);
    fleet.fail_next(MockOperation::Get, 1, ErrorKind::Unavailable);
    let provider = ProviderBuilder::new(Arc::new(fleet.clone()))
        .tracing()
        .retry_policy(RetryPolicy::new(RetryConfig::default()).with_rng(NoJitter))
        .build();
    provider.get_instance(&id("mock-0000")).await.unwrap();
    let err = provider.get_instance(&id("mock-0404")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    let output = captured.contents();
    let closes: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("close"))
        .collect();
    assert_eq!(closes.len(), 2, "{output}");
    for field in [
        "provider=mock",
        "operation=\"get_instance\"",
        "instance_id=\"mock-0000\"",
        "attempts=2",
        "outcome=\"ok\"",
        "latency_ms=",
        "otel.name=mock/get_instance",
        "otel.kind=\"client\"",
        "otel.status_code=\"ok\"",
        "rpc.system=\"snoozebot\"",
        "rpc.service=mock",
        "rpc.method=\"get_instance\"",
    ] {
        assert!(
            closes[0].contains(field),
            "{field} missing from {}",
            closes[0]
        );
    }
    for field in [
        "outcome=\"not_found\"",
        "otel.status_code=\"error\"",
        "error.type=\"not_found\"",
    ] {
        assert!(
            closes[1].contains(field),
            "{field} missing from {}",
            closes[1]
        );
    }
    assert!(!closes[0].contains("error.type"), "{}", closes[0]);
    assert!(
        !output.contains("cloud.provider"),
        "mock is no cloud: {output}"
    );
    assert!(output.contains("retrying"), "{output}");
    assert!(output.contains("provider call failed"), "{output}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_provider_cannot_flood_the_log() {
    let captured = LogCapture::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fleet = MockProvider::fleet(1);
    fleet.fail_next(MockOperation::Get, 201, ErrorKind::Unavailable);
    let provider = ProviderBuilder::new(Arc::new(fleet)).tracing().build();
    for _ in 0..200 {
        assert!(provider.get_instance(&id("mock-0000")).await.is_err());
    }
    let output = captured.contents();
    let warned = output
        .lines()
        .filter(|line| line.contains("provider call failed"))
        .count();
    assert_eq!(warned, 10, "{output}");
    // The next window's first failure says how many were held back.
    tokio::time::advance(std::time::Duration::from_secs(10)).await;
    assert!(provider.get_instance(&id("mock-0000")).await.is_err());
    let output = captured.contents();
    let last = output
        .lines()
        .rfind(|line| line.contains("provider call failed"))
        .unwrap();
    assert!(last.contains("held_back=190"), "{last}");
}
