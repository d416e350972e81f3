//! The REST server of `examples/rest_server.rs`: the mock fleet (and any plugins in a
//! directory) behind the REST API, with a freshly generated admin key.

use std::path::PathBuf;
use std::sync::Arc;

use snoozebot_core::{PluginManager, Result};
use snoozebot_rest::{ApiKeys, HttpOptions, Role};
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

/// A router served on a free 127.0.0.1 port until [`stop`](Loopback::stop).
#[derive(Debug)]
pub struct Loopback {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Loopback {
    /// Serves `router`.
    pub async fn start(router: axum::Router) -> std::io::Result<Self> {
        let listener = snoozebot_rest::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(snoozebot_rest::serve(listener, router, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            base,
            stop,
            serving,
        })
    }

    /// Stops it gracefully and waits until it has.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.serving.await.map_err(std::io::Error::other)?
    }
}

/// Builds the server: `mock` (a 20-instance in-memory fleet) registered and loaded, the
/// plugins in `plugin_dir` discoverable, keys from `keys` plus one generated admin key.
pub async fn build(plugin_dir: Option<PathBuf>, mut keys: ApiKeys) -> Result<RestServer> {
    let manager = Arc::new(PluginManager::new());
    manager.register("mock", || async { Ok(MockProvider::fleet(20)) })?;
    manager.load("mock").await?;
    if let Some(dir) = plugin_dir {
        manager.add_source(snoozebot_plugin::PluginDirectory::new(dir));
    }
    let admin_key = keys.generate(Role::Admin, "generated admin key");
    let router = snoozebot_rest::router_with(Arc::clone(&manager), keys, HttpOptions::default());
    Ok(RestServer {
        router,
        manager,
        admin_key,
    })
}
