//! The provider of docs/writing-a-provider.md against its fake: the conformance suite bare, in
//! the middleware and (feature `plugin`) as a plugin process; its error table; its id rule.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use snoozebot_core::{CloudProvider, ErrorKind, InstanceId, StopMode, StopOptions};
use snoozebot_examples::homelab::HomelabProvider;
use snoozebot_examples::homelab_fake::FakeHomelab;
use snoozebot_testkit::conformance::{self, Fixture};

async fn homelab() -> FakeHomelab {
    let fake = FakeHomelab::start().await;
    fake.add_vm("build-1", "running", &[("snoozebot", "idle")]);
    fake.add_vm("build-2", "running", &[("snoozebot", "idle")]);
    fake.add_vm("db-1", "running", &[("snoozebot", "busy")]);
    fake.add_vm("old-1", "shut off", &[]);
    fake
}

fn fixture() -> Fixture {
    let id = |s: &str| InstanceId::new(s).unwrap();
    Fixture::new(
        vec![id("build-1"), id("build-2")],
        ("snoozebot", "idle"),
        id("nope"),
        id("Not_A_Name"),
    )
    .with_wait_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn conformance_bare_and_in_the_middleware() {
    let fake = homelab().await;
    let provider = HomelabProvider::new(fake.endpoint()).unwrap();
    conformance::run_bare_and_in_the_middleware(Arc::new(provider), &fixture()).await;
}

#[cfg(feature = "plugin")]
#[tokio::test]
async fn conformance_as_a_plugin() {
    use snoozebot_plugin::{PluginClient, PluginConfig};
    // Examples are built beside the test binaries: target/debug/examples/.
    let plugin = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/homelab_plugin");
    assert!(
        plugin.exists(),
        "{} is missing; build it with: cargo build -p snoozebot-examples --features plugin --example homelab_plugin",
        plugin.display()
    );
    let fake = homelab().await;
    let client = PluginClient::launch(
        "homelab",
        &plugin,
        PluginConfig::default().with_env("HOMELAB_URL", fake.endpoint()),
    )
    .await
    .unwrap();
    conformance::run(&client, &fixture()).await;
    client.shutdown().await;
}

#[tokio::test]
async fn each_error_code_maps_to_its_kind() {
    let fake = homelab().await;
    let provider = HomelabProvider::new(fake.endpoint()).unwrap();
    for (status, code, kind) in [
        (404, "no_domain", ErrorKind::NotFound),
        (400, "invalid_arg", ErrorKind::InvalidArgument),
        (409, "operation_invalid", ErrorKind::InvalidState),
        (429, "busy", ErrorKind::Throttled),
        (401, "auth_failed", ErrorKind::Unauthenticated),
        (403, "access_denied", ErrorKind::PermissionDenied),
        (501, "no_support", ErrorKind::Unsupported),
        (503, "internal_error", ErrorKind::Unavailable),
    ] {
        fake.fail_next(status, code, 1);
        let err = provider
            .get_instance(&InstanceId::new("build-1").unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{status} {code}: {err}");
        assert!(err.message().contains(code), "{err}");
        if code == "busy" {
            assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
        }
    }
    // Starting a running VM is no call at all; shutting one down twice is fine.
    let change = provider
        .start_instance(&InstanceId::new("build-1").unwrap())
        .await
        .unwrap();
    assert!(change.is_noop());
    let before = fake.request_count();
    let err = provider
        .stop_instance(
            &InstanceId::new("build-1").unwrap(),
            &StopOptions::default().with_mode(StopMode::Deallocate),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert_eq!(
        fake.request_count(),
        before,
        "an unsupported mode reached the API"
    );
}
