//! The example REST server with a plugin directory: discovery finds the plugin executable,
//! autoload starts it as a process, instances are served through it, and unload stops it —
//! all over a real socket. And REST → manager → plugin calls go through the manager's
//! middleware: a throttling plugin and a plugin restart are absorbed by the retry layer.
#![cfg(all(feature = "http", feature = "plugin"))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use snoozebot_core::{PluginManager, ProviderStack, RetryConfig};
use snoozebot_examples::rest::{self, Loopback};
use snoozebot_plugin::{PluginConfig, PluginDirectory};
use snoozebot_rest::{ApiKeys, Role};

/// `snoozebot-plugin-mock`, built beside this test by `cargo test --workspace --all-features`.
fn mock_plugin() -> std::path::PathBuf {
    let built = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("snoozebot-plugin-mock");
    assert!(
        built.exists(),
        "{} is missing; build it with: cargo build -p snoozebot-testkit --features plugin --bin snoozebot-plugin-mock",
        built.display()
    );
    built
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_in_a_directory_are_discovered_loaded_served_and_unloaded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(mock_plugin(), dir.path().join("snoozebot-plugin-fleet")).unwrap();
    let server = rest::build(Some(dir.path().to_owned()), ApiKeys::new())
        .await
        .unwrap();
    let key = server.admin_key.clone();
    let manager = server.manager.clone();
    let loopback = Loopback::start(server.router).await.unwrap();
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(format!("{}{path}", loopback.base))
            .bearer_auth(&key)
            .send()
    };

    let found: Value = get("/api/plugins/discover")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fleet = found["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|plugin| plugin["name"] == "fleet")
        .unwrap_or_else(|| panic!("the plugin was not discovered: {found}"));
    assert_eq!(
        (fleet["kind"].as_str(), fleet["loaded"].as_bool()),
        (Some("executable"), Some(false))
    );

    let found: Value = get("/api/plugins/discover?autoload=true")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["autoload_failures"], json!([]), "{found}");
    let plugin: Value = get("/api/plugins/fleet")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plugin["kind"], "executable");
    assert_eq!(plugin["health"]["status"], "serving", "{plugin}");

    let page: Value = get("/api/providers/fleet/instances?page_size=2")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["instances"].as_array().unwrap().len(), 2, "{page}");
    let stopped = client
        .post(format!(
            "{}/api/providers/fleet/instances/mock-0000/stop",
            loopback.base
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), 200);

    let unloaded = client
        .post(format!("{}/api/plugins/unload", loopback.base))
        .bearer_auth(&key)
        .json(&json!({"plugin_name": "fleet"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unloaded.status(), 200);
    let gone = get("/api/providers/fleet/instances").await.unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(gone.headers()["content-type"], "application/problem+json");

    loopback.stop().await.unwrap();
    manager.shutdown().await;
}

/// A REST server over a manager whose only provider is the mock plugin as `fleet`, launched
/// with `env`, behind a retry stack with short backoffs; loaded, with a reader key.
async fn plugin_behind_rest(
    dir: &std::path::Path,
    env: &[(&str, String)],
) -> (Loopback, Arc<PluginManager>, String) {
    std::fs::copy(mock_plugin(), dir.join("snoozebot-plugin-fleet")).unwrap();
    let mut config = PluginConfig::default().with_restarts(5, Duration::from_millis(50));
    for (key, value) in env {
        config = config.with_env(*key, value.clone());
    }
    let stack = ProviderStack::new().tracing().retry(
        RetryConfig::default()
            .with_max_attempts(5)
            .with_backoff(Duration::from_millis(10), Duration::from_millis(100)),
    );
    let manager = Arc::new(PluginManager::new().with_stack(stack));
    manager.add_source(PluginDirectory::new(dir).with_default_config(config));
    manager.load("fleet").await.unwrap();
    let mut keys = ApiKeys::new();
    let reader = keys.generate(Role::Reader, "reader");
    let loopback = Loopback::start(snoozebot_rest::router(Arc::clone(&manager), keys))
        .await
        .unwrap();
    (loopback, manager, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_throttles_twice_still_answers_200_through_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (loopback, manager, reader) =
        plugin_behind_rest(dir.path(), &[("SNOOZEBOT_MOCK_THROTTLE_GETS", "2".into())]).await;
    let answer = reqwest::Client::new()
        .get(format!(
            "{}/api/providers/fleet/instances/mock-0001",
            loopback.base
        ))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let instance: Value = answer.json().await.unwrap();
    assert_eq!(instance["id"], "mock-0001", "{instance}");
    loopback.stop().await.unwrap();
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_restart_during_a_rest_call_is_absorbed_by_the_retry_layer() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("crashed");
    let (loopback, manager, reader) = plugin_behind_rest(
        dir.path(),
        &[("SNOOZEBOT_MOCK_CRASH_ONCE", marker.display().to_string())],
    )
    .await;
    let answer = reqwest::Client::new()
        .get(format!(
            "{}/api/providers/fleet/instances/mock-0001",
            loopback.base
        ))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    // The first attempt killed the plugin mid-call; the retries waited out its restart.
    assert!(marker.exists(), "the plugin did not crash");
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    loopback.stop().await.unwrap();
    manager.shutdown().await;
}
