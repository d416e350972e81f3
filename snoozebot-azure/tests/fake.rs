//! AzureProvider on the azure_core pipeline against the testkit's fake ARM server: the
//! conformance suite (bare, in the middleware, through the plugin), every stop mode and what
//! it sends, long-running operations (both monitors, Retry-After, failures, deadline), the
//! error table, throttling through the retry layer, listing strategies and paging.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use snoozebot_azure::{AzureProvider, AzureProviderBuilder};
use snoozebot_core::{
    CloudProvider, CloudProviderExt, ErrorKind, InstanceFilter, InstanceId, InstanceState,
    ProviderBuilder, RetryConfig, StateChange, StopMode, StopOptions,
};
use snoozebot_testkit::arm::FakeArm;
use snoozebot_testkit::conformance::{self, Fixture};

const SUB: &str = "00000000-0000-0000-0000-000000000001";

fn vm_id(group: &str, name: &str) -> InstanceId {
    InstanceId::new(format!(
        "/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{name}"
    ))
    .unwrap()
}

async fn fleet() -> FakeArm {
    let fake = FakeArm::start().await;
    fake.set_transition_time(Duration::from_millis(150));
    for (group, name, idleness) in [
        ("web", "web-1", "idle"),
        ("web", "web-2", "busy"),
        ("web", "web-3", "idle"),
        ("db", "db-1", "busy"),
    ] {
        fake.add_vm(SUB, group, name, "running", &[("snoozebot", idleness)]);
    }
    // Being deleted: neither stopped nor started again.
    fake.add_vm(SUB, "db", "old-1", "deleting", &[]);
    fake
}

fn builder(fake: &FakeArm) -> AzureProviderBuilder {
    AzureProviderBuilder::new()
        .subscription(SUB)
        .endpoint(fake.endpoint())
        .static_token("fake-token")
        .poll_interval(Duration::from_millis(25))
}

fn provider(fake: &FakeArm) -> AzureProvider {
    builder(fake).build().unwrap()
}

fn fixture() -> Fixture {
    Fixture::new(
        vec![vm_id("web", "web-1"), vm_id("web", "web-3")],
        ("snoozebot", "idle"),
        InstanceId::new("web/nope").unwrap(),
        InstanceId::new("i-0123456789abcdef0").unwrap(),
    )
    .with_terminated(vm_id("db", "old-1"))
    .with_wait_timeout(Duration::from_secs(20))
}

#[tokio::test]
async fn conformance_bare_and_in_the_middleware() {
    let fake = fleet().await;
    conformance::run_bare_and_in_the_middleware(Arc::new(provider(&fake)), &fixture()).await;
}

#[cfg(feature = "plugin")]
#[tokio::test]
async fn conformance_through_the_plugin() {
    use snoozebot_plugin::{PluginClient, PluginConfig};
    let fake = fleet().await;
    let config = PluginConfig::default()
        .with_env("SNOOZEBOT_AZURE_SUBSCRIPTION", SUB)
        .with_env("SNOOZEBOT_AZURE_ENDPOINT", fake.endpoint())
        .with_env("SNOOZEBOT_AZURE_STATIC_TOKEN", "fake-token")
        .with_env("SNOOZEBOT_AZURE_POLL_INTERVAL_MS", "25");
    let plugin = PluginClient::launch(
        "azure",
        std::path::Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-azure")),
        config,
    )
    .await
    .unwrap();
    assert_eq!(plugin.info().name, "azure");
    conformance::run(&plugin, &fixture()).await;
    plugin.shutdown().await;
}

#[tokio::test]
async fn the_default_stop_deallocates_and_billing_stops() {
    let fake = fleet().await;
    let azure = provider(&fake);
    let id = vm_id("web", "web-1");
    let change = azure
        .stop_instance(&id, &StopOptions::default())
        .await
        .unwrap();
    assert_eq!(change.mode, Some(StopMode::Deallocate));
    // Accepted, not done: the operation is the caller's to follow.
    assert_eq!(
        (change.previous, change.current),
        (InstanceState::Running, InstanceState::Stopping)
    );
    follow(&azure, &change).await.unwrap();
    let info = azure.get_instance(&id).await.unwrap();
    assert_eq!(info.raw_state, "PowerState/deallocated");
    assert!(info.billing_stopped);
    let actions = fake.actions();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].action, "deallocate");
    assert_eq!(actions[0].query.get("hibernate"), None);
    assert_eq!(
        actions[0].query.get("api-version").map(String::as_str),
        Some("2025-04-01")
    );
    // Stopping again is a no-op that sends nothing.
    let again = azure
        .stop_instance(&id, &StopOptions::default())
        .await
        .unwrap();
    assert!(again.is_noop());
    assert_eq!(fake.actions().len(), 1);
}

#[tokio::test]
async fn stop_powers_off_and_stays_billed_force_skips_the_shutdown() {
    let fake = fleet().await;
    let azure = provider(&fake);
    let id = vm_id("web", "web-1");
    let change = azure
        .stop_instance(
            &id,
            &StopOptions::default()
                .with_mode(StopMode::Stop)
                .with_force(true),
        )
        .await
        .unwrap();
    assert_eq!(change.mode, Some(StopMode::Stop));
    follow(&azure, &change).await.unwrap();
    let info = azure.get_instance(&id).await.unwrap();
    assert_eq!(
        (info.state, info.raw_state.as_str(), info.billing_stopped),
        (InstanceState::Stopped, "PowerState/stopped", false)
    );
    let action = &fake.actions()[0];
    assert_eq!(action.action, "powerOff");
    assert_eq!(
        action.query.get("skipShutdown").map(String::as_str),
        Some("true")
    );

    // A stopped (still billed) VM can then be deallocated.
    let change = azure
        .stop_instance(&id, &StopOptions::default())
        .await
        .unwrap();
    assert_eq!(change.mode, Some(StopMode::Deallocate));
    follow(&azure, &change).await.unwrap();
    assert!(azure.get_instance(&id).await.unwrap().billing_stopped);
}

#[tokio::test]
async fn hibernate_deallocates_with_hibernate_true() {
    let fake = fleet().await;
    let change = provider(&fake)
        .stop_instance(
            &vm_id("web", "web-3"),
            &StopOptions::default().with_mode(StopMode::Hibernate),
        )
        .await
        .unwrap();
    assert_eq!(change.mode, Some(StopMode::Hibernate));
    let action = &fake.actions()[0];
    assert_eq!(action.action, "deallocate");
    assert_eq!(
        action.query.get("hibernate").map(String::as_str),
        Some("true")
    );
}

#[tokio::test]
async fn hibernate_refused_falls_back_to_deallocate_only_when_allowed() {
    let fake = fleet().await;
    let azure = provider(&fake);
    let id = vm_id("web", "web-3");
    let hibernate = StopOptions::default().with_mode(StopMode::Hibernate);

    fake.fail_next_operation(
        "OperationNotAllowed",
        "Hibernation is not enabled on the virtual machine",
    );
    // Without a fallback the stop returns once accepted; following it finds the refusal.
    let err = azure
        .stop_and_wait(&id, &hibernate, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");

    fake.fail_next_operation(
        "OperationNotAllowed",
        "Hibernation is not enabled on the virtual machine",
    );
    let change = azure
        .stop_instance(&id, &hibernate.with_allow_fallback(true))
        .await
        .unwrap();
    assert_eq!(change.mode, Some(StopMode::Deallocate));
    let actions: Vec<_> = fake
        .actions()
        .iter()
        .map(|action| {
            (
                action.action.clone(),
                action.query.contains_key("hibernate"),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("deallocate".to_owned(), true),
            ("deallocate".to_owned(), true),
            ("deallocate".to_owned(), false)
        ]
    );
}

#[tokio::test]
async fn a_forced_deallocate_powers_off_without_shutdown_first() {
    let fake = fleet().await;
    provider(&fake)
        .stop_instance(
            &vm_id("web", "web-1"),
            &StopOptions::default().with_force(true),
        )
        .await
        .unwrap();
    let actions: Vec<_> = fake
        .actions()
        .iter()
        .map(|action| {
            (
                action.action.clone(),
                action.query.get("skipShutdown").cloned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("powerOff".to_owned(), Some("true".to_owned())),
            ("deallocate".to_owned(), None)
        ]
    );
}

#[tokio::test]
async fn suspend_dry_runs_and_malformed_ids_make_no_request() {
    let fake = fleet().await;
    let azure = provider(&fake);
    let before = fake.request_count();
    let id = vm_id("web", "web-1");
    for opts in [
        StopOptions::default().with_mode(StopMode::Suspend),
        StopOptions::default().with_dry_run(true),
    ] {
        let err = azure.stop_instance(&id, &opts).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{opts:?}");
    }
    for bad in [
        "web-1",
        "a/b/c",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic",
        "web/-bad",
    ] {
        let err = azure
            .get_instance(&InstanceId::new(bad).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
        let err = azure
            .start_instance(&InstanceId::new(bad).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
    }
    assert_eq!(fake.request_count(), before);
}

#[tokio::test]
async fn a_failed_operation_is_a_typed_error_carrying_the_arm_code() {
    let fake = fleet().await;
    let azure = provider(&fake);
    fake.fail_next_operation(
        "AllocationFailed",
        "Allocation failed. We do not have sufficient capacity for the requested VM size in this region.",
    );
    let err = azure
        .stop_and_wait(
            &vm_id("db", "db-1"),
            &StopOptions::default(),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("AllocationFailed"), "{err}");
    assert_eq!(err.provider(), Some("azure"));

    // The same through the Location monitor, when Azure-AsyncOperation is absent.
    fake.omit_async_operation_header();
    fake.fail_next_operation("OperationNotAllowed", "The VM is being updated");
    let err = azure
        .stop_and_wait(
            &vm_id("db", "db-1"),
            &StopOptions::default(),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert!(err.message().contains("OperationNotAllowed"), "{err}");
}

#[tokio::test]
async fn the_location_monitor_is_followed_when_it_is_the_only_one() {
    let fake = fleet().await;
    fake.omit_async_operation_header();
    let azure = provider(&fake);
    let id = vm_id("web", "web-2");
    let change = azure
        .stop_instance(&id, &StopOptions::default())
        .await
        .unwrap();
    assert!(
        change
            .operation
            .as_deref()
            .unwrap()
            .starts_with("location ")
    );
    follow(&azure, &change).await.unwrap();
    assert_eq!(
        azure.get_instance(&id).await.unwrap().state,
        InstanceState::Stopped
    );
    let change = azure.start_instance(&id).await.unwrap();
    assert_eq!(
        (change.previous, change.current),
        (InstanceState::Stopped, InstanceState::Pending)
    );
    follow(&azure, &change).await.unwrap();
    assert_eq!(
        azure.get_instance(&id).await.unwrap().state,
        InstanceState::Running
    );
}

#[tokio::test(start_paused = true)]
async fn polls_wait_the_retry_after_arm_names() {
    let fake = fleet().await;
    fake.set_transition_time(Duration::from_secs(10));
    fake.set_retry_after_on_accepted(Some(4));
    let azure = builder(&fake)
        .poll_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let before = fake.request_count();
    let change = azure
        .stop_instance(&vm_id("web", "web-1"), &StopOptions::default())
        .await
        .unwrap();
    follow(&azure, &change).await.unwrap();
    let waited = started.elapsed();
    // get, deallocate, then polls at 4 s (Retry-After) and every 1 s after: 4, 5, ... 10.
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(12),
        "{waited:?}"
    );
    // Nothing after the last poll: the stop returned at acceptance, the follow ends at done.
    let polls = fake.request_count() - before - 2;
    assert_eq!(polls, 7, "polls at 4, 5, 6, 7, 8, 9 and 10 s");
}

#[tokio::test(start_paused = true)]
async fn an_operation_past_its_deadline_is_a_timeout() {
    let fake = fleet().await;
    fake.set_transition_time(Duration::from_secs(3600));
    let azure = builder(&fake)
        .poll_interval(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let id = vm_id("web", "web-1");
    let change = azure
        .stop_instance(&id, &StopOptions::default())
        .await
        .unwrap();
    let err = azure
        .wait_for_operation(
            &id,
            change.operation.as_deref().unwrap(),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.message().contains("may yet finish"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_throttled_call_waits_the_servers_retry_after_in_the_retry_layer() {
    let fake = fleet().await;
    fake.fail_next(429, "SubscriptionRequestsThrottled", 1);
    let wrapped = ProviderBuilder::new(Arc::new(provider(&fake)))
        .retry(
            RetryConfig::default()
                .with_backoff(Duration::from_millis(1), Duration::from_millis(10)),
        )
        .build();
    let started = tokio::time::Instant::now();
    let info = wrapped.get_instance(&vm_id("web", "web-1")).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(info.state, InstanceState::Running);
    assert_eq!(fake.request_count(), 2);
    // The fake's Retry-After is 2 s; the backoff alone would wait at most 10 ms.
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
        "{waited:?}"
    );
}

/// Follows the operation a stop or start returned, as `stop_and_wait` does.
async fn follow(azure: &AzureProvider, change: &StateChange) -> snoozebot_core::Result<()> {
    let operation = change.operation.as_deref().expect("ARM gave an operation");
    azure
        .wait_for_operation(&change.id, operation, Duration::from_secs(30))
        .await
}

/// The README's stack (retries, and a time limit per attempt) against deallocations that take
/// longer than that limit: each is sent exactly once, and the waits succeed. (Before stop
/// returned at acceptance, the VM received three deallocate requests and the caller an error.)
#[tokio::test]
async fn the_readme_stack_sends_each_deallocate_once_however_slow_the_operation() {
    let fake = fleet().await;
    // 1/30 of the README's 30 s per attempt, against operations of three times that.
    fake.set_transition_time(Duration::from_secs(3));
    let azure = ProviderBuilder::new(Arc::new(
        builder(&fake)
            .poll_interval(Duration::from_millis(200))
            .build()
            .unwrap(),
    ))
    .tracing()
    .retry(RetryConfig::default())
    .timeout(Duration::from_secs(1))
    .build();
    let id = vm_id("web", "web-1");
    let stopped = azure
        .stop_and_wait(&id, &StopOptions::default(), Duration::from_secs(20))
        .await
        .unwrap();
    assert!(stopped.billing_stopped, "{stopped:?}");
    let started = azure
        .start_and_wait(&id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(started.state, InstanceState::Running);
    let actions: Vec<_> = fake.actions().into_iter().map(|a| a.action).collect();
    assert_eq!(actions, ["deallocate", "start"]);
}

async fn get_fails_with(status: u16, code: &str, expected: ErrorKind) {
    let fake = fleet().await;
    fake.fail_next(status, code, 1);
    let err = provider(&fake)
        .get_instance(&vm_id("web", "web-1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), expected, "{status} {code}: {err}");
    assert!(err.message().contains(code), "the ARM code is lost: {err}");
    assert_eq!(err.provider(), Some("azure"));
    if status == 429 {
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    }
}

macro_rules! mapping_tests {
    ($($test:ident: $status:literal, $code:literal => $kind:ident;)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                get_fails_with($status, $code, ErrorKind::$kind).await;
            }
        )*
    };
}

mapping_tests! {
    resource_not_found_is_not_found: 404, "ResourceNotFound" => NotFound;
    resource_group_not_found_is_not_found: 404, "ResourceGroupNotFound" => NotFound;
    invalid_parameter_is_invalid_argument: 400, "InvalidParameter" => InvalidArgument;
    bad_request_is_invalid_argument: 400, "BadRequest" => InvalidArgument;
    operation_not_allowed_is_invalid_state: 409, "OperationNotAllowed" => InvalidState;
    conflict_409_is_invalid_state: 409, "Conflict" => InvalidState;
    authorization_failed_is_permission_denied: 403, "AuthorizationFailed" => PermissionDenied;
    invalid_token_401_is_unauthenticated: 401, "InvalidAuthenticationToken" => Unauthenticated;
    subscription_throttled_429_is_throttled: 429, "SubscriptionRequestsThrottled" => Throttled;
    too_many_requests_429_is_throttled: 429, "TooManyRequests" => Throttled;
    service_unavailable_503_is_unavailable: 503, "ServiceUnavailable" => Unavailable;
    internal_500_is_unavailable: 500, "InternalServerError" => Unavailable;
}

#[tokio::test]
async fn a_missing_vm_is_not_found_and_a_missing_token_unauthenticated() {
    let fake = fleet().await;
    let err = provider(&fake)
        .get_instance(&InstanceId::new("web/nope").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = provider(&fake)
        .start_instance(&vm_id("nope", "web-1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let azure = AzureProviderBuilder::new()
        .subscription(SUB)
        .endpoint(format!("http://127.0.0.1:{port}"))
        .static_token("fake-token")
        .build()
        .unwrap();
    let err = azure
        .get_instance(&vm_id("web", "web-1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[test]
fn bad_configurations_are_config_errors_at_build() {
    for (endpoint, why) in [
        ("not a url", "unparsable endpoint"),
        ("ftp://127.0.0.1", "not http(s)"),
        (
            "http://management.example.com",
            "a static token over plain http off loopback",
        ),
    ] {
        let err = AzureProviderBuilder::new()
            .endpoint(endpoint)
            .static_token("t")
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{why}");
    }
    let debug = format!(
        "{:?}",
        AzureProviderBuilder::new().static_token("very-secret")
    );
    assert!(!debug.contains("very-secret"), "{debug}");
}

#[tokio::test]
async fn listing_without_a_subscription_is_a_config_error() {
    let fake = fleet().await;
    let azure = AzureProviderBuilder::new()
        .endpoint(fake.endpoint())
        .static_token("t")
        .build()
        .unwrap();
    let err = azure
        .list_instances(&InstanceFilter::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn a_resource_group_scope_lists_only_that_group() {
    let fake = fleet().await;
    let azure = builder(&fake).resource_group("web").build().unwrap();
    let names: Vec<_> = azure
        .list_instances(&InstanceFilter::new())
        .await
        .unwrap()
        .into_iter()
        .map(|vm| vm.name.unwrap())
        .collect();
    assert_eq!(names, ["web-1", "web-2", "web-3"]);
}

#[tokio::test]
async fn a_few_matches_are_read_one_by_one_many_from_the_status_list() {
    let fake = FakeArm::start().await;
    fake.set_page_size(7);
    for n in 0..40 {
        let idleness = if n % 20 == 0 { "idle" } else { "busy" };
        let power = if n % 2 == 0 { "running" } else { "deallocated" };
        fake.add_vm(
            SUB,
            "fleet",
            &format!("vm-{n:02}"),
            power,
            &[("snoozebot", idleness)],
        );
    }
    let azure = provider(&fake);

    // Two idle VMs: the list (6 pages of 7) and one GET each.
    let before = fake.request_count();
    let idle = azure
        .list_instances(&InstanceFilter::new().with_tag("snoozebot", "idle"))
        .await
        .unwrap();
    let names: Vec<_> = idle.iter().map(|vm| vm.name.clone().unwrap()).collect();
    assert_eq!(names, ["vm-00", "vm-20"]);
    assert!(idle.iter().all(|vm| vm.state == InstanceState::Running));
    assert_eq!(
        idle[0].tags.get("snoozebot").map(String::as_str),
        Some("idle")
    );
    assert_eq!(fake.request_count() - before, 6 + 2);

    // Every VM: the list and the statusOnly list, 6 pages each, no GET.
    let before = fake.request_count();
    let all = azure.list_instances(&InstanceFilter::new()).await.unwrap();
    assert_eq!(all.len(), 40);
    assert_eq!(fake.request_count() - before, 6 + 6);
    let deallocated = all
        .iter()
        .filter(|vm| vm.raw_state == "PowerState/deallocated" && vm.billing_stopped)
        .count();
    assert_eq!(deallocated, 20);
    assert!(
        all.iter().all(|vm| vm.tags.contains_key("snoozebot")),
        "tags lost in the merge"
    );
    assert_eq!(all[0].machine_type.as_deref(), Some("Standard_B1s"));
    assert_eq!(all[0].region.as_deref(), Some("eastus"));

    // A state filter applies after the states are known.
    let running = azure
        .list_instances(&InstanceFilter::new().with_state(InstanceState::Running))
        .await
        .unwrap();
    assert_eq!(running.len(), 20);
}

#[tokio::test]
async fn without_the_right_to_list_the_subscription_states_come_from_gets() {
    let fake = FakeArm::start().await;
    for n in 0..10 {
        fake.add_vm(SUB, "fleet", &format!("vm-{n:02}"), "running", &[]);
    }
    // A role assigned on the resource group only: subscription-wide lists are forbidden.
    fake.deny_subscription_lists();
    let azure = builder(&fake).resource_group("fleet").build().unwrap();
    let before = fake.request_count();
    let listed = azure.list_instances(&InstanceFilter::new()).await.unwrap();
    assert_eq!(listed.len(), 10);
    assert!(listed.iter().all(|vm| vm.state == InstanceState::Running));
    // The group list, the refused status list, then one GET each.
    assert_eq!(fake.request_count() - before, 1 + 1 + 10);
}

#[tokio::test]
async fn the_longest_names_azure_allows_are_listed_and_read() {
    let fake = FakeArm::start().await;
    let group = "g".repeat(90);
    let name = "v".repeat(64);
    fake.add_vm(SUB, &group, &name, "running", &[]);
    let azure = provider(&fake);
    let listed = azure.list_instances(&InstanceFilter::new()).await.unwrap();
    assert_eq!(listed.len(), 1, "a VM with a 266-byte id went missing");
    let info = azure.get_instance(&listed[0].id).await.unwrap();
    assert_eq!(info.name.as_deref(), Some(name.as_str()));
}
