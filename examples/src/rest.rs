//! The REST server of `examples/rest_server.rs`: the mock fleet (and any plugins in a
//! directory) behind the REST API, with a freshly generated admin key.

use std::path::PathBuf;
use std::sync::Arc;

use snoozebot_core::http::{self, ApiKeys, HttpOptions, Role};
use snoozebot_core::{PluginManager, Result};
use snoozebot_testkit::MockProvider;

/// A running REST server's parts.
#[derive(Debug)]
pub struct RestServer {
    /// The router to serve.
    pub router: axum::Router,
    /// The manager behind it (the mock fleet registered as `mock`, and loaded).
    pub manager: Arc<PluginManager>,
    /// The admin key generated for this run; only its hash is kept by the router.
    pub admin_key: String,
}

/// Builds the server: `mock` (a 20-instance in-memory fleet) registered and loaded, the
/// plugins in `plugin_dir` discoverable, keys from `keys` plus one generated admin key.
pub async fn build(plugin_dir: Option<PathBuf>, mut keys: ApiKeys) -> Result<RestServer> {
    let manager = Arc::new(PluginManager::new());
    manager.register("mock", || async { Ok(MockProvider::fleet(20)) })?;
    manager.load("mock").await?;
    if let Some(dir) = plugin_dir {
        manager.add_plugin_dir(dir);
    }
    let admin_key = keys.generate(Role::Admin, "generated admin key");
    let router = http::router_with(Arc::clone(&manager), keys, HttpOptions::default());
    Ok(RestServer {
        router,
        manager,
        admin_key,
    })
}
