//! `snoozebot serve` (the REST API over the configured providers, with signals and health
//! routes) and `snoozebot plugins` (what the plugin directories hold, checked without running
//! anything).

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;
use snoozebot_core::{Health, PluginManager};
use snoozebot_rest::{ApiKeys, HttpOptions, KeyRing, ServeOptions};

use crate::cli::PluginsCommand;
use crate::commands::init_logging;
use crate::config::{LoadAt, Loaded, ProviderConfig};
use crate::exit::{Failure, Outcome};

/// Serves until SIGTERM or SIGINT; reloads the keys file on SIGHUP.
pub async fn run(loaded: Loaded) -> Result<Outcome, Failure> {
    // Before any secret is read: plugins of this user cannot read this process's memory or
    // environment.
    let hardened = snoozebot_plugin::harden_host();
    init_logging(&loaded, "info");
    if let Err(error) = hardened {
        tracing::warn!(%error, "plugins of this user may read this process's environment");
    }
    let keys_file = loaded
        .config
        .server
        .keys_file
        .as_ref()
        .map(|file| crate::providers::resolve(&loaded, file));
    let keys = read_keys(keys_file.as_ref())?;
    if keys.is_empty() {
        return Err(Failure::new(
            Outcome::Config,
            format!(
                "no API keys: set [server] keys_file in {} (or SNOOZEBOT_API_KEYS); \
                 `snoozebot keys generate --role admin` makes one",
                loaded.path.display()
            ),
        ));
    }
    let ring = KeyRing::new(keys);
    let manager = crate::providers::manager(&loaded)
        .map_err(|error| Failure::from_error("cannot set up the providers", &error))?;
    let names = loaded.provider_names();
    let lazy = loaded.config.server.load == LoadAt::Lazy;
    if !lazy {
        for name in &names {
            if let Err(error) = manager.load(name).await {
                manager.shutdown().await;
                return Err(Failure::from_error(
                    &format!("cannot load provider {name}"),
                    &error,
                ));
            }
            tracing::info!(provider = %name, "provider loaded");
        }
    }

    let server = &loaded.config.server;
    let mut options = HttpOptions::default().with_load_registered_on_use(true);
    if let Some(timeout) = server.request_timeout {
        options = options.with_request_timeout(timeout);
    }
    if let Some(requests) = server.max_concurrent_requests {
        options = options.with_max_concurrent_requests(requests);
    }
    if let Some(requests) = server.max_concurrent_per_provider {
        options = options.with_max_concurrent_per_provider(requests);
    }
    if let Some(bytes) = server.body_limit {
        options = options.with_body_limit(bytes);
    }
    let mut serve_options = ServeOptions::default();
    if let Some(connections) = server.max_connections {
        serve_options = serve_options.with_max_connections(connections);
    }
    if let Some(timeout) = server.header_read_timeout {
        serve_options = serve_options.with_header_read_timeout(timeout);
    }
    if let Some(timeout) = server.idle_timeout {
        serve_options = serve_options.with_idle_timeout(timeout);
    }

    let scheme = match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |path: &PathBuf| {
                crate::config::read_bounded(&crate::providers::resolve(&loaded, path))
                    .map_err(|reason| Failure::new(Outcome::Config, reason))
            };
            let tls = snoozebot_rest::tls_config(read(cert)?.as_bytes(), read(key)?.as_bytes())
                .map_err(|error| Failure::from_error("[server] tls_cert and tls_key", &error))?;
            serve_options = serve_options.with_tls(tls);
            "https"
        }
        _ => "http",
    };
    // The scheduler and the agents share one store (its trail) and one webhook.
    let scheduled = crate::schedule::configured(&loaded);
    let store = if scheduled || loaded.config.agents.is_some() {
        Some(crate::schedule::open_store(&loaded).await?)
    } else {
        None
    };
    let webhook = crate::schedule::webhook(&loaded)?;
    let schedules = if scheduled {
        Some(Arc::new(crate::schedule::schedules(&loaded)?))
    } else {
        None
    };
    let scheduler = match (&store, &schedules) {
        (Some(store), Some(schedules)) => {
            let scheduler = Arc::new(crate::schedule::scheduler(
                &loaded,
                Arc::clone(&manager),
                Arc::clone(store),
                Arc::clone(schedules),
                webhook.as_ref(),
            ));
            options = options.with_scheduler(Arc::clone(&scheduler));
            Some(scheduler)
        }
        _ => None,
    };
    let agents = match &store {
        Some(store) => crate::agents::agents(
            &loaded,
            Arc::clone(&manager),
            Arc::clone(store),
            schedules.clone(),
            webhook.as_ref(),
        )?,
        None => None,
    };
    if let Some((agents, keys)) = &agents {
        options = options.with_agents(Arc::clone(agents), keys.clone());
    }
    let router = snoozebot_rest::router_with_keys(Arc::clone(&manager), ring.clone(), options)
        .merge(health_routes(Arc::clone(&manager), names, lazy));
    let address: std::net::SocketAddr = server.listen.parse().map_err(|_| {
        Failure::new(
            Outcome::Config,
            format!(
                "{}: [server] listen {:?} is not ADDRESS:PORT",
                loaded.path.display(),
                server.listen
            ),
        )
    })?;
    let listener = match snoozebot_rest::bind(address) {
        Ok(listener) => listener,
        Err(error) => {
            manager.shutdown().await;
            return Err(Failure::new(
                Outcome::Config,
                format!("cannot listen on {address}: {error}"),
            ));
        }
    };
    let bound = listener
        .local_addr()
        .map_or_else(|_| address.to_string(), |a| a.to_string());
    tracing::info!(address = %bound, "serving the Snoozebot REST API on {scheme}://{bound}/api");
    // For scripts and tests: where it listens, once it does.
    eprintln!("listening on {scheme}://{bound}");

    let reload = tokio::spawn(reload_keys_on_sighup(ring, keys_file));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        stop_signal().await;
        let _ = stop.send(true);
    });
    let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    // The schedules applied on aligned ticks, when [scheduler] interval says so.
    let ticks = scheduler
        .filter(|_| loaded.config.scheduler.interval.is_some())
        .map(|scheduler| {
            tracing::info!(interval = ?scheduler.interval(), "applying the schedules on every tick");
            tokio::spawn(scheduler.run_ticks(stopped(stopping.clone())))
        });
    // Agents lost, kept machines decided again, due stops made.
    let sweeps = agents.map(|(agents, _)| {
        let every = crate::agents::sweep_interval(&agents);
        tracing::info!(?every, "taking reports from agents");
        tokio::spawn(agents.run_sweeps(every, stopped(stopping.clone())))
    });
    let served =
        snoozebot_rest::serve_with(listener, router, serve_options, stopped(stopping.clone()))
            .await;
    // A run or a sweep in progress finishes before the providers stop.
    if let Some(ticks) = ticks {
        let _ = ticks.await;
    }
    if let Some(sweeps) = sweeps {
        let _ = sweeps.await;
    }
    if let Some(webhook) = webhook {
        webhook.finish(std::time::Duration::from_secs(10)).await;
    }
    signals.abort();
    reload.abort();
    tracing::info!("stopping the providers");
    manager.shutdown().await;
    match served {
        Ok(()) => {
            tracing::info!("stopped");
            Ok(Outcome::Done)
        }
        Err(error) => Err(Failure::new(
            Outcome::Failed,
            format!("the server failed: {error}"),
        )),
    }
}

/// The keys of the keys file and of `SNOOZEBOT_API_KEYS`.
fn read_keys(keys_file: Option<&PathBuf>) -> Result<ApiKeys, Failure> {
    let mut keys = match keys_file {
        Some(file) => ApiKeys::from_file(file)
            .map_err(|error| Failure::from_error("cannot read the keys file", &error))?,
        None => ApiKeys::new(),
    };
    if let Ok(value) = std::env::var("SNOOZEBOT_API_KEYS") {
        keys.merge(
            ApiKeys::from_env_value(&value)
                .map_err(|error| Failure::from_error("SNOOZEBOT_API_KEYS", &error))?,
        );
    }
    Ok(keys)
}

/// Reads the keys again at each SIGHUP; a file that does not read keeps the keys in use.
async fn reload_keys_on_sighup(ring: KeyRing, keys_file: Option<PathBuf>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        match read_keys(keys_file.as_ref()) {
            Ok(keys) if !keys.is_empty() => {
                let count = keys.len();
                ring.replace(keys);
                tracing::info!(keys = count, "API keys reloaded");
            }
            Ok(_) => tracing::warn!("the keys file holds no keys now: the keys in use are kept"),
            Err(failure) => {
                tracing::warn!(error = %failure.message, "keys not reloaded: the keys in use are kept")
            }
        }
    }
}

/// SIGTERM or SIGINT.
pub(crate) async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
    tracing::info!("stopping: finishing the requests in flight");
}

/// `/healthz` (the process answers) and `/readyz` (every configured provider loaded — unless
/// loading is lazy — and none failed), without a key, for orchestrators.
fn health_routes(manager: Arc<PluginManager>, names: Vec<String>, lazy: bool) -> axum::Router {
    let names = Arc::new(names);
    axum::Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route(
            "/readyz",
            get(move || {
                let manager = Arc::clone(&manager);
                let names = Arc::clone(&names);
                async move {
                    let mut not_ready = serde_json::Map::new();
                    for name in names.iter() {
                        match manager.get(name) {
                            Ok(provider) => match provider.health().await {
                                Health::Serving => {}
                                Health::NotServing { reason } | Health::Failed { reason } => {
                                    not_ready.insert(name.clone(), json!(reason));
                                }
                                _ => {
                                    not_ready.insert(name.clone(), json!("unknown health"));
                                }
                            },
                            Err(_) if lazy => {}
                            Err(_) => {
                                not_ready.insert(name.clone(), json!("not loaded"));
                            }
                        }
                    }
                    let status = if not_ready.is_empty() {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (
                        status,
                        axum::Json(
                            json!({ "ready": not_ready.is_empty(), "not_ready": not_ready }),
                        ),
                    )
                }
            }),
        )
}

/// `snoozebot plugins …`.
pub async fn plugins(loaded: &Loaded, command: PluginsCommand) -> Result<Outcome, Failure> {
    let Some(directory) = crate::providers::plugin_directory(loaded) else {
        return Err(Failure::new(
            Outcome::Config,
            format!("{} has no [plugins] dirs", loaded.path.display()),
        ));
    };
    let found = snoozebot_core::manager::ProviderSource::discover(&directory).await;
    let lock = crate::registry::lock_file(loaded)
        .map_err(|error| Failure::from_error("lock file", &error.into()))?;
    let locked = |name: &str| lock.plugins.get(name).map(|plugin| plugin.sha256.as_str());
    let configured: Vec<(&String, &crate::config::PluginSettings)> = loaded
        .config
        .providers
        .iter()
        .filter_map(|(name, provider)| match provider {
            ProviderConfig::Plugin(settings) => Some((name.get_ref(), settings)),
            _ => None,
        })
        .collect();
    match command {
        PluginsCommand::Discover { output } => {
            let rows: Vec<serde_json::Value> = found
                .iter()
                .map(|candidate| {
                    json!({
                        "name": candidate.name,
                        "path": candidate.path,
                        "configured": configured.iter().any(|(name, _)| **name == candidate.name),
                        "problem": candidate.factory.as_ref().err(),
                    })
                })
                .collect();
            crate::output::objects(
                &rows,
                output.output,
                &["name", "path", "configured", "problem"],
            );
            Ok(Outcome::Done)
        }
        PluginsCommand::List { output } => {
            let mut rows = Vec::new();
            let mut failed = false;
            for (name, settings) in &configured {
                let candidate = found.iter().find(|candidate| &candidate.name == *name);
                let (path, verdict) = match candidate {
                    None => (
                        None,
                        Err("no executable in the plugin directories".to_owned()),
                    ),
                    Some(candidate) => match &candidate.factory {
                        Err(problem) => (candidate.path.clone(), Err(problem.clone())),
                        Ok(_) => {
                            let path = candidate.path.clone();
                            let verdict = match &path {
                                Some(path) => verify(settings, locked(name), path).await,
                                None => Err("no file".to_owned()),
                            };
                            (path, verdict)
                        }
                    },
                };
                failed |= verdict.is_err();
                rows.push(json!({
                    "name": name,
                    "path": path,
                    "trust": trust_summary(settings, locked(name)),
                    "verdict": match &verdict { Ok(()) => "ok".to_owned(), Err(reason) => reason.clone() },
                }));
            }
            crate::output::objects(&rows, output.output, &["name", "path", "trust", "verdict"]);
            Ok(if failed {
                Outcome::Failed
            } else {
                Outcome::Done
            })
        }
        PluginsCommand::Verify { name: None }
        | PluginsCommand::Search { .. }
        | PluginsCommand::Install { .. }
        | PluginsCommand::Upgrade { .. }
        | PluginsCommand::Remove { .. } => Err(Failure::new(
            Outcome::Usage,
            "a registry command, run by crate::registry::plugins",
        )),
        PluginsCommand::Verify { name: Some(name) } => {
            let Some((_, settings)) = configured
                .iter()
                .find(|(configured, _)| **configured == name)
            else {
                return Err(Failure::new(
                    Outcome::Usage,
                    format!("no plugin {name:?} in {}", loaded.path.display()),
                ));
            };
            let Some(path) = found
                .iter()
                .find(|candidate| candidate.name == name)
                .and_then(|candidate| candidate.path.clone())
            else {
                return Err(Failure::new(
                    Outcome::Failed,
                    format!("no executable snoozebot-plugin-{name} in the plugin directories"),
                ));
            };
            match verify(settings, locked(&name), &path).await {
                Ok(()) => {
                    println!(
                        "{name}: {} passes its trust policy ({})",
                        path.display(),
                        trust_summary(settings, locked(&name))
                    );
                    Ok(Outcome::Done)
                }
                Err(reason) => Err(Failure::new(Outcome::Failed, format!("{name}: {reason}"))),
            }
        }
    }
}

fn trust_summary(settings: &crate::config::PluginSettings, locked: Option<&str>) -> String {
    match (
        settings.sha256.as_deref().or(locked),
        settings.minisign_keys.len(),
    ) {
        (None, 0) => "none (runs any binary)".to_owned(),
        (Some(_), 0) => "sha256 pin".to_owned(),
        (None, keys) => format!("minisign ({keys} key{})", if keys == 1 { "" } else { "s" }),
        (Some(_), keys) => format!(
            "sha256 pin and minisign ({keys} key{})",
            if keys == 1 { "" } else { "s" }
        ),
    }
}

async fn verify(
    settings: &crate::config::PluginSettings,
    locked: Option<&str>,
    path: &std::path::Path,
) -> Result<(), String> {
    crate::providers::trust_policy(settings.sha256.as_deref(), locked, &settings.minisign_keys)?
        .verify(path)
        .await
        .map_err(|error| error.message().to_owned())
}
