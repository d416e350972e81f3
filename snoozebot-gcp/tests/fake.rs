//! GcpProvider through the real google-cloud-compute-v1 client against the testkit's fake GCE
//! server: the conformance suite, failed operations, paging across zones.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use snoozebot_core::{
    CloudProvider, CloudProviderExt, ErrorKind, InstanceFilter, InstanceId, InstanceState,
    PageRequest, ProviderBuilder, RetryConfig, StopOptions,
};
use snoozebot_gcp::GcpProviderBuilder;
use snoozebot_testkit::conformance::{self, Fixture};
use snoozebot_testkit::gce::FakeGce;

async fn fleet() -> FakeGce {
    let fake = FakeGce::start().await;
    fake.set_transition_time(Duration::from_millis(150));
    for (zone, name, idleness) in [
        ("us-central1-a", "web-1", "idle"),
        ("us-central1-a", "web-2", "busy"),
        ("europe-west1-b", "web-3", "idle"),
        ("europe-west1-b", "db-1", "busy"),
    ] {
        fake.add_instance("proj", zone, name, "RUNNING", &[("snoozebot", idleness)]);
    }
    // Being deleted: neither stopped nor started again.
    fake.add_instance("proj", "us-central1-a", "old-1", "DEPROVISIONING", &[]);
    fake
}

fn provider(fake: &FakeGce) -> snoozebot_gcp::GcpProvider {
    GcpProviderBuilder::new()
        .project("proj")
        .endpoint(fake.endpoint())
        .anonymous()
        .build()
        .unwrap()
}

fn fixture() -> Fixture {
    let id = |s: &str| InstanceId::new(s).unwrap();
    Fixture::new(
        vec![
            id("proj/us-central1-a/web-1"),
            id("proj/europe-west1-b/web-3"),
        ],
        ("snoozebot", "idle"),
        id("proj/us-central1-a/nope"),
        id("i-0123456789abcdef0"),
    )
    .with_terminated(id("proj/us-central1-a/old-1"))
    .with_wait_timeout(Duration::from_secs(20))
}

#[tokio::test]
async fn conformance_bare_and_in_the_middleware() {
    let fake = fleet().await;
    conformance::run_bare_and_in_the_middleware(Arc::new(provider(&fake)), &fixture()).await;
}

#[tokio::test]
async fn a_stop_whose_operation_fails_reports_the_operation_error_when_followed() {
    let fake = fleet().await;
    fake.fail_next_operation(
        "RESOURCE_NOT_READY",
        "The resource 'projects/proj/zones/us-central1-a/instances/web-1' is not ready",
    );
    let provider = provider(&fake);
    let id = InstanceId::new("proj/us-central1-a/web-1").unwrap();
    // Accepted: the stop returns with GCE's operation, before it fails.
    let change = provider
        .stop_instance(&id, &StopOptions::default())
        .await
        .unwrap();
    assert_eq!(change.current, InstanceState::Stopping);
    let operation = change.operation.clone().expect("a zone operation");
    let err = provider
        .wait_for_operation(&id, &operation, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert!(err.message().contains("RESOURCE_NOT_READY"), "{err}");

    // stop_and_wait follows the operation, so it fails the same way.
    fake.fail_next_operation("RESOURCE_NOT_READY", "not ready");
    let err = provider
        .stop_and_wait(&id, &StopOptions::default(), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
}

#[tokio::test]
async fn an_operation_not_done_by_its_deadline_is_a_timeout() {
    let fake = fleet().await;
    fake.set_transition_time(Duration::from_secs(5));
    let provider = provider(&fake);
    let id = InstanceId::new("proj/us-central1-a/web-1").unwrap();
    let change = provider
        .stop_instance(&id, &StopOptions::default())
        .await
        .unwrap();
    let err = provider
        .wait_for_operation(
            &id,
            change.operation.as_deref().unwrap(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}

/// The README's stack (retries, and a time limit per attempt) against operations that take
/// longer than that limit: each stop and start is sent exactly once, and the waits succeed.
#[tokio::test]
async fn the_readme_stack_sends_each_stop_once_however_slow_the_operation() {
    let fake = fleet().await;
    // 1/30 of the README's 30 s per attempt, against operations of three times that.
    fake.set_transition_time(Duration::from_secs(3));
    let provider = ProviderBuilder::new(Arc::new(provider(&fake)))
        .tracing()
        .retry(RetryConfig::default())
        .timeout(Duration::from_secs(1))
        .build();
    let id = InstanceId::new("proj/us-central1-a/web-1").unwrap();
    let stopped = provider
        .stop_and_wait(&id, &StopOptions::default(), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(stopped.state, InstanceState::Stopped);
    let started = provider
        .start_and_wait(&id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(started.state, InstanceState::Running);
    assert_eq!(
        fake.mutations(),
        [
            "proj/us-central1-a/web-1:stop",
            "proj/us-central1-a/web-1:start"
        ]
    );
}

#[tokio::test]
async fn throttling_from_the_api_is_throttled() {
    let fake = fleet().await;
    fake.fail_next(429, "rateLimitExceeded", 1);
    let err = provider(&fake)
        .get_instance(&InstanceId::new("proj/us-central1-a/web-1").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled, "{err}");
    assert!(err.message().contains("rateLimitExceeded"), "{err}");
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(3)),
        "Retry-After is lost"
    );
}

#[tokio::test]
async fn listing_1000_instances_over_3_zones_reads_every_page() {
    let fake = FakeGce::start().await;
    for n in 0..1000 {
        let zone = ["us-central1-a", "us-east1-b", "europe-west1-b"][n % 3];
        fake.add_instance("proj", zone, &format!("vm-{n:04}"), "RUNNING", &[]);
    }
    let before = fake.request_count();
    let listed = provider(&fake)
        .list_instances(&InstanceFilter::new())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1000);
    // 500 a page: at least two aggregated pages.
    assert!(fake.request_count() - before >= 2);
}

/// Pages through `provider`'s listing at 100 a page; returns the ids and the GCE requests made.
async fn page_through(provider: &dyn CloudProvider, fake: &FakeGce) -> (Vec<InstanceId>, usize) {
    let before = fake.request_count();
    let mut ids = Vec::new();
    let mut page = PageRequest::first(100);
    for _ in 0..100 {
        let answer = provider
            .list_instances_page(&InstanceFilter::new(), &page)
            .await
            .unwrap();
        ids.extend(answer.instances.into_iter().map(|info| info.id));
        match answer.next_token {
            Some(token) => page = PageRequest::after(100, token),
            None => break,
        }
    }
    (ids, fake.request_count() - before)
}

#[tokio::test]
async fn paging_1000_instances_costs_one_gce_request_per_page() {
    let fake = FakeGce::start().await;
    for n in 0..1000 {
        let zone = ["us-central1-a", "us-east1-b", "europe-west1-b"][n % 3];
        fake.add_instance("proj", zone, &format!("vm-{n:04}"), "RUNNING", &[]);
    }
    // Aggregated over every zone: ten pages of 100, ten requests.
    let (mut ids, requests) = page_through(&provider(&fake), &fake).await;
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
    assert!((10..=11).contains(&requests), "{requests} requests");

    // Zone by zone (334 + 333 + 333): four pages each at most, one request a page.
    let zoned = GcpProviderBuilder::new()
        .project("proj")
        .zones(["us-central1-a", "us-east1-b", "europe-west1-b"])
        .endpoint(fake.endpoint())
        .anonymous()
        .build()
        .unwrap();
    let (mut ids, requests) = page_through(&zoned, &fake).await;
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
    assert!((12..=13).contains(&requests), "{requests} requests");

    let error = zoned
        .list_instances_page(&InstanceFilter::new(), &PageRequest::after(100, "7:x"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidArgument);
}

async fn get_fails_with(status: u16, reason: &str, expected: ErrorKind) {
    let fake = fleet().await;
    fake.fail_next(status, reason, 1);
    let err = provider(&fake)
        .get_instance(&InstanceId::new("proj/us-central1-a/web-1").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), expected, "{status} {reason}: {err}");
    assert!(
        err.message().contains(reason),
        "the native reason is lost: {err}"
    );
    assert_eq!(err.provider(), Some("gcp"));
}

macro_rules! mapping_tests {
    ($($test:ident: $status:literal, $reason:literal => $kind:ident;)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                get_fails_with($status, $reason, ErrorKind::$kind).await;
            }
        )*
    };
}

mapping_tests! {
    not_found_404_is_not_found: 404, "notFound" => NotFound;
    invalid_400_is_invalid_argument: 400, "invalid" => InvalidArgument;
    resource_not_ready_is_invalid_state: 400, "resourceNotReady" => InvalidState;
    conflict_409_is_invalid_state: 409, "conflict" => InvalidState;
    forbidden_403_is_permission_denied: 403, "forbidden" => PermissionDenied;
    auth_error_401_is_unauthenticated: 401, "authError" => Unauthenticated;
    rate_limit_429_is_throttled: 429, "rateLimitExceeded" => Throttled;
    quota_exceeded_is_throttled: 403, "quotaExceeded" => Throttled;
    backend_error_503_is_unavailable: 503, "backendError" => Unavailable;
    unknown_500_is_unavailable: 500, "somethingNew" => Unavailable;
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = GcpProviderBuilder::new()
        .project("proj")
        .endpoint(format!("http://127.0.0.1:{port}"))
        .anonymous()
        .build()
        .unwrap();
    let err = provider
        .get_instance(&InstanceId::new("proj/us-central1-a/web-1").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn malformed_ids_and_unsupported_modes_make_no_request() {
    let fake = fleet().await;
    let provider = provider(&fake);
    let before = fake.request_count();
    for bad in ["web-1", "a/b/c/d", "proj/us-central1-a/Web"] {
        let err = provider
            .get_instance(&InstanceId::new(bad).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
    }
    for mode in [
        snoozebot_core::StopMode::Hibernate,
        snoozebot_core::StopMode::Deallocate,
    ] {
        let err = provider
            .stop_instance(
                &InstanceId::new("proj/us-central1-a/web-1").unwrap(),
                &StopOptions::default().with_mode(mode),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }
    assert_eq!(fake.request_count(), before);
}

#[tokio::test]
async fn suspend_then_start_resumes() {
    let fake = fleet().await;
    let provider = provider(&fake);
    let id = InstanceId::new("proj/us-central1-a/web-1").unwrap();
    let change = provider
        .stop_instance(
            &id,
            &StopOptions::default().with_mode(snoozebot_core::StopMode::Suspend),
        )
        .await
        .unwrap();
    assert_eq!(change.mode, Some(snoozebot_core::StopMode::Suspend));
    let info = snoozebot_core::CloudProviderExt::wait_for_state(
        &provider,
        &id,
        snoozebot_core::InstanceState::Suspended,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(info.raw_state, "SUSPENDED");
    let change = provider.start_instance(&id).await.unwrap();
    assert_eq!(change.previous, snoozebot_core::InstanceState::Suspended);
}

#[cfg(feature = "plugin")]
#[tokio::test]
async fn conformance_through_the_plugin() {
    use snoozebot_plugin::{PluginClient, PluginConfig};
    let fake = fleet().await;
    let config = PluginConfig::default()
        .with_env("SNOOZEBOT_GCP_PROJECT", "proj")
        .with_env("SNOOZEBOT_GCP_ENDPOINT", fake.endpoint())
        .with_env("SNOOZEBOT_GCP_ANONYMOUS", "1");
    let plugin = PluginClient::launch(
        "gcp",
        std::path::Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-gcp")),
        config,
    )
    .await
    .unwrap();
    assert_eq!(plugin.info().name, "gcp");
    conformance::run(&plugin, &fixture()).await;
    plugin.shutdown().await;
}

#[tokio::test]
async fn the_callers_own_credentials_are_the_ones_sent() {
    use snoozebot_gcp::google_cloud_auth::credentials::api_key_credentials;
    let fake = fleet().await;
    let with_key = GcpProviderBuilder::new()
        .project("proj")
        .endpoint(fake.endpoint())
        .credentials(api_key_credentials::Builder::new("the-callers-key").build())
        .build()
        .unwrap();
    with_key
        .get_instance(&InstanceId::new("proj/us-central1-a/web-1").unwrap())
        .await
        .unwrap();
    assert_eq!(fake.credentials_seen(), ["x-goog-api-key: the-callers-key"]);

    let anonymous = provider(&fake);
    anonymous
        .get_instance(&InstanceId::new("proj/us-central1-a/web-1").unwrap())
        .await
        .unwrap();
    assert_eq!(
        fake.credentials_seen().last().map(String::as_str),
        Some("none")
    );
}
