//! The example REST server with a plugin directory: discovery finds the plugin executable,
//! autoload starts it as a process, instances are served through it, and unload stops it —
//! all over a real socket.
#![cfg(all(feature = "http", feature = "plugin"))]
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use snoozebot_core::http::ApiKeys;
use snoozebot_examples::rest::{self, Loopback};

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
