//! [`PluginManager`]: providers by name — registered, discovered, loaded, listed and unloaded.
//!
//! A provider is registered with a factory that builds it (in-process); loading builds it once,
//! with a timeout and retries, and later loads hand out the same instance until it is unloaded.
//! Two loads of one name at the same time build it once.
//!
//! With the `plugin` feature, executables named `snoozebot-plugin-<name>` in the configured
//! plugin directories come through the same API: `load("aws")` starts
//! `snoozebot-plugin-aws` as a supervised plugin process, and `unload` stops it. Nothing else
//! in those directories is ever executed. A name registered in-process takes precedence over
//! an executable of the same name.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::error::{Error, ErrorKind, Result};
use crate::middleware::RetryConfig;
use crate::model::ProviderInfo;
use crate::provider::CloudProvider;

/// Builds a provider when it is loaded. Implemented for every
/// `Fn() -> impl Future<Output = Result<P>>` where `P: CloudProvider`.
///
/// Capture the provider's configuration in the closure; the factory runs again after each
/// unload, and again when a load attempt fails with a retryable error.
pub trait ProviderFactory: Send + Sync + 'static {
    /// Builds a new provider.
    fn build(&self) -> BoxFuture<'static, Result<Arc<dyn CloudProvider>>>;
}

impl<F, Fut, P> ProviderFactory for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<P>> + Send + 'static,
    P: CloudProvider + 'static,
{
    fn build(&self) -> BoxFuture<'static, Result<Arc<dyn CloudProvider>>> {
        let building = self();
        Box::pin(async move { Ok(Arc::new(building.await?) as Arc<dyn CloudProvider>) })
    }
}

/// Where a provider runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum ProviderKind {
    /// In this process, built by a registered [`ProviderFactory`].
    InProcess,
    /// In a plugin executable of its own, spoken to over gRPC.
    Executable,
}

/// Whether a loaded provider answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum Health {
    /// Ready for calls.
    Serving,
    /// Loaded but not answering.
    NotServing {
        /// Why.
        reason: String,
    },
}

/// A provider that could be loaded, as [`PluginManager::discover`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct DiscoveredProvider {
    /// The name it is loaded by.
    pub name: String,
    /// Where it runs.
    pub kind: ProviderKind,
    /// The executable, for out-of-process plugins.
    #[cfg_attr(feature = "http", schema(value_type = Option<String>))]
    pub path: Option<std::path::PathBuf>,
    /// Whether it is loaded now.
    pub loaded: bool,
    /// Why it cannot be loaded, if it cannot (a plugin file that is not executable, a
    /// directory, a name already taken). `None` for loadable providers.
    pub problem: Option<String>,
}

/// A loaded provider, as [`PluginManager::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct LoadedProvider {
    /// The name it was loaded by.
    pub name: String,
    /// Where it runs.
    pub kind: ProviderKind,
    /// What the provider says about itself.
    pub info: ProviderInfo,
    /// Whether it answers.
    pub health: Health,
    /// When it was loaded.
    pub loaded_at: DateTime<Utc>,
}

/// How hard to try when loading a provider.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LoadOptions {
    /// The time limit for one attempt to build (or start) the provider. Default 30 s.
    pub timeout: Duration,
    /// Attempts in all and the backoff between them; only retryable failures (a timeout, an
    /// unavailable service) are tried again. Default: 3 attempts, 200 ms doubling up to 5 s.
    pub retry: RetryConfig,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            timeout: Duration::from_secs(30),
            retry: RetryConfig::default()
                .with_max_attempts(3)
                .with_backoff(Duration::from_millis(200), Duration::from_secs(5)),
        }
    }
}

impl LoadOptions {
    /// Sets the time limit per attempt.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the number of attempts in all (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.retry = self.retry.with_max_attempts(attempts);
        self
    }
}

#[derive(Clone)]
struct Loaded {
    provider: Arc<dyn CloudProvider>,
    loaded_at: DateTime<Utc>,
    /// The plugin process behind `provider`, for executables.
    #[cfg(feature = "plugin")]
    plugin: Option<crate::plugin::PluginClient>,
}

impl Loaded {
    async fn health(&self) -> Health {
        #[cfg(feature = "plugin")]
        if let Some(plugin) = &self.plugin {
            return plugin.health().await;
        }
        Health::Serving
    }

    async fn close(&self) {
        #[cfg(feature = "plugin")]
        if let Some(plugin) = &self.plugin {
            plugin.shutdown().await;
        }
    }
}

enum Source {
    InProcess(Arc<dyn ProviderFactory>),
    #[cfg(feature = "plugin")]
    Executable(std::path::PathBuf),
}

impl Source {
    fn kind(&self) -> ProviderKind {
        match self {
            Source::InProcess(_) => ProviderKind::InProcess,
            #[cfg(feature = "plugin")]
            Source::Executable(_) => ProviderKind::Executable,
        }
    }

    fn path(&self) -> Option<std::path::PathBuf> {
        match self {
            Source::InProcess(_) => None,
            #[cfg(feature = "plugin")]
            Source::Executable(path) => Some(path.clone()),
        }
    }

    async fn build(&self, _name: &str, _settings: &PluginSettings) -> Result<Loaded> {
        let loaded_at = DateTime::<Utc>::from(std::time::SystemTime::now());
        match self {
            Source::InProcess(factory) => Ok(Loaded {
                provider: factory.build().await?,
                loaded_at,
                #[cfg(feature = "plugin")]
                plugin: None,
            }),
            #[cfg(feature = "plugin")]
            Source::Executable(path) => {
                let config = _settings.config_for(_name);
                let client = crate::plugin::PluginClient::launch(_name, path, config).await?;
                Ok(Loaded {
                    provider: Arc::new(client.clone()),
                    loaded_at,
                    plugin: Some(client),
                })
            }
        }
    }
}

/// Where plugin executables are looked for, and how they are launched.
#[derive(Debug, Clone, Default)]
struct PluginSettings {
    #[cfg(feature = "plugin")]
    dirs: Vec<std::path::PathBuf>,
    #[cfg(feature = "plugin")]
    default_config: crate::plugin::PluginConfig,
    #[cfg(feature = "plugin")]
    configs: BTreeMap<String, crate::plugin::PluginConfig>,
}

#[cfg(feature = "plugin")]
impl PluginSettings {
    fn config_for(&self, name: &str) -> crate::plugin::PluginConfig {
        self.configs
            .get(name)
            .unwrap_or(&self.default_config)
            .clone()
    }
}

struct Entry {
    source: Arc<Source>,
    /// Filled once by the first successful load; replaced by an empty cell on unload.
    slot: Arc<OnceCell<Loaded>>,
}

/// Hosts providers by name: in-process ones built by registered factories, and (feature
/// `plugin`) out-of-process plugin executables.
///
/// ```
/// use snoozebot_core::{PluginManager, ErrorKind};
/// # use snoozebot_core::*;
/// # #[derive(Debug)] struct Fleet;
/// # #[async_trait]
/// # impl CloudProvider for Fleet {
/// #     fn info(&self) -> ProviderInfo { ProviderInfo::new("fleet", "1", "1", Capabilities::new([StopMode::Stop])) }
/// #     async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> { Err(Error::not_found(id.as_str())) }
/// #     async fn list_instances(&self, _: &InstanceFilter) -> Result<Vec<InstanceInfo>> { Ok(vec![]) }
/// #     async fn stop_instance(&self, id: &InstanceId, _: &StopOptions) -> Result<StateChange> { Err(Error::not_found(id.as_str())) }
/// #     async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> { Err(Error::not_found(id.as_str())) }
/// # }
///
/// # tokio_test(async {
/// let manager = PluginManager::new();
/// manager.register("fleet", || async { Ok(Fleet) })?;
///
/// let fleet = manager.load("fleet").await?;
/// assert_eq!(fleet.info().name, "fleet");
///
/// let err = manager.load("gcp").await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::NotFound);
/// assert!(err.message().contains("known: fleet"));
/// # Ok::<(), snoozebot_core::Error>(())
/// # });
/// # fn tokio_test<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
/// # }
/// ```
pub struct PluginManager {
    entries: Mutex<BTreeMap<String, Entry>>,
    load_options: LoadOptions,
    plugins: Mutex<PluginSettings>,
}

impl fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.entries().keys().cloned().collect();
        f.debug_struct("PluginManager")
            .field("providers", &names)
            .field("load_options", &self.load_options)
            .finish()
    }
}

impl Default for PluginManager {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginManager {
    /// An empty manager with default [`LoadOptions`].
    pub fn new() -> Self {
        Self::with_load_options(LoadOptions::default())
    }

    /// An empty manager whose loads use `options` unless told otherwise.
    pub fn with_load_options(options: LoadOptions) -> Self {
        PluginManager {
            entries: Mutex::new(BTreeMap::new()),
            load_options: options,
            plugins: Mutex::new(PluginSettings::default()),
        }
    }

    fn plugin_settings(&self) -> PluginSettings {
        match self.plugins.lock() {
            Ok(settings) => settings.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    #[cfg(feature = "plugin")]
    fn update_plugin_settings(&self, update: impl FnOnce(&mut PluginSettings)) {
        match self.plugins.lock() {
            Ok(mut settings) => update(&mut settings),
            Err(poisoned) => update(&mut poisoned.into_inner()),
        }
    }

    /// Also looks for plugin executables (`snoozebot-plugin-<name>`) in `dir`. Directories are
    /// searched in the order they were added; the first executable of a name wins.
    #[cfg(feature = "plugin")]
    #[cfg_attr(docsrs, doc(cfg(feature = "plugin")))]
    pub fn add_plugin_dir(&self, dir: impl Into<std::path::PathBuf>) {
        let dir = dir.into();
        self.update_plugin_settings(|settings| settings.dirs.push(dir));
    }

    /// Launches plugins with `config` unless [`configure_plugin`](Self::configure_plugin) set
    /// one of their own.
    #[cfg(feature = "plugin")]
    #[cfg_attr(docsrs, doc(cfg(feature = "plugin")))]
    pub fn set_default_plugin_config(&self, config: crate::plugin::PluginConfig) {
        self.update_plugin_settings(|settings| settings.default_config = config);
    }

    /// Launches the plugin `name` with `config` (its environment, trust policy, timeouts).
    /// Takes effect at its next load.
    #[cfg(feature = "plugin")]
    #[cfg_attr(docsrs, doc(cfg(feature = "plugin")))]
    pub fn configure_plugin(&self, name: impl Into<String>, config: crate::plugin::PluginConfig) {
        let name = name.into();
        self.update_plugin_settings(|settings| {
            settings.configs.insert(name, config);
        });
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // Nothing is left half-updated under this lock, so a poisoned one is still consistent.
        match self.entries.lock() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Registers an in-process provider under `name`, built by `factory` when first loaded.
    ///
    /// Names are 1 to 64 characters of `a-z`, `0-9`, `-` and `_` (they also name plugin
    /// executables, `snoozebot-plugin-<name>`). A bad or taken name is
    /// [`ErrorKind::InvalidArgument`].
    pub fn register(&self, name: impl Into<String>, factory: impl ProviderFactory) -> Result<()> {
        let name = name.into();
        validate_name(&name)?;
        let mut entries = self.entries();
        if entries.contains_key(&name) {
            return Err(Error::invalid_argument(format!(
                "a provider named {name:?} is already registered"
            )));
        }
        entries.insert(
            name,
            Entry {
                source: Arc::new(Source::InProcess(Arc::new(factory))),
                slot: Arc::new(OnceCell::new()),
            },
        );
        Ok(())
    }

    /// Every provider that could be loaded, and whether it is: the registered ones, then (with
    /// the `plugin` feature) every `snoozebot-plugin-<name>` in the plugin directories.
    /// Plugin files that cannot be loaded are listed with their [`problem`](DiscoveredProvider::problem)
    /// and logged; other files in the directories are ignored.
    pub async fn discover(&self) -> Result<Vec<DiscoveredProvider>> {
        #[cfg(feature = "plugin")]
        let found = crate::plugin::scan_plugin_dirs(&self.plugin_settings().dirs).await;
        #[cfg_attr(not(feature = "plugin"), allow(unused_mut))]
        let mut entries = self.entries();
        #[cfg(feature = "plugin")]
        let problems = add_discovered_plugins(&mut entries, found);
        #[cfg(not(feature = "plugin"))]
        let problems = Vec::new();
        let mut discovered: Vec<DiscoveredProvider> = entries
            .iter()
            .map(|(name, entry)| DiscoveredProvider {
                name: name.clone(),
                kind: entry.source.kind(),
                path: entry.source.path(),
                loaded: entry.slot.initialized(),
                problem: None,
            })
            .collect();
        discovered.extend(problems);
        Ok(discovered)
    }

    /// Loads `name` with the manager's [`LoadOptions`]; see [`load_with`](Self::load_with).
    pub async fn load(&self, name: &str) -> Result<Arc<dyn CloudProvider>> {
        self.load_with(name, &self.load_options.clone()).await
    }

    /// Loads `name`, or returns it if already loaded; concurrent loads of one name build it once.
    ///
    /// Each attempt is limited to `options.timeout`; retryable failures are tried again with
    /// backoff. An unknown name is [`ErrorKind::NotFound`], naming the known ones.
    pub async fn load_with(
        &self,
        name: &str,
        options: &LoadOptions,
    ) -> Result<Arc<dyn CloudProvider>> {
        let known = self.entries().contains_key(name);
        if !known {
            // A plugin that appeared since the last discovery.
            self.discover().await?;
        }
        let (source, slot) = {
            let entries = self.entries();
            let entry = entries
                .get(name)
                .ok_or_else(|| unknown_name(name, &entries))?;
            (Arc::clone(&entry.source), Arc::clone(&entry.slot))
        };
        let settings = self.plugin_settings();
        let loaded = slot
            .get_or_try_init(|| build_with_retries(name, &source, &settings, options))
            .await?;
        Ok(Arc::clone(&loaded.provider))
    }

    /// The loaded provider `name`: [`ErrorKind::NotFound`] if unknown or not loaded.
    pub fn get(&self, name: &str) -> Result<Arc<dyn CloudProvider>> {
        let entries = self.entries();
        let entry = entries
            .get(name)
            .ok_or_else(|| unknown_name(name, &entries))?;
        entry
            .slot
            .get()
            .map(|loaded| Arc::clone(&loaded.provider))
            .ok_or_else(|| {
                Error::not_found(format!(
                    "provider {name:?} is registered but not loaded; load it first"
                ))
            })
    }

    /// The loaded providers, with what they say about themselves and whether they answer.
    pub async fn list(&self) -> Vec<LoadedProvider> {
        let loaded: Vec<_> = self
            .entries()
            .iter()
            .filter_map(|(name, entry)| {
                let loaded = entry.slot.get()?.clone();
                Some((name.clone(), entry.source.kind(), loaded))
            })
            .collect();
        let mut listed = Vec::with_capacity(loaded.len());
        for (name, kind, loaded) in loaded {
            listed.push(LoadedProvider {
                name,
                kind,
                info: loaded.provider.info(),
                health: loaded.health().await,
                loaded_at: loaded.loaded_at,
            });
        }
        listed
    }

    /// Unloads `name`: later loads build it anew. Unloading what is not loaded does nothing;
    /// an unknown name is [`ErrorKind::NotFound`].
    ///
    /// Callers still holding the provider keep a working handle to it until they drop it.
    pub async fn unload(&self, name: &str) -> Result<()> {
        let previous = {
            let mut entries = self.entries();
            let known = unknown_name(name, &entries);
            let entry = entries.get_mut(name).ok_or(known)?;
            std::mem::replace(&mut entry.slot, Arc::new(OnceCell::new()))
        };
        if let Some(loaded) = previous.get() {
            loaded.close().await;
            tracing::info!(provider = name, "unloaded");
        }
        Ok(())
    }

    /// Unloads every provider.
    pub async fn shutdown(&self) {
        let names: Vec<String> = self.entries().keys().cloned().collect();
        for name in names {
            // Only a name removed meanwhile can fail here, and then there is nothing to unload.
            let _ = self.unload(&name).await;
        }
    }
}

async fn build_with_retries(
    name: &str,
    source: &Source,
    settings: &PluginSettings,
    options: &LoadOptions,
) -> Result<Loaded> {
    let mut attempt = 1;
    loop {
        let building = source.build(name, settings);
        let result = match tokio::time::timeout(options.timeout, building).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "loading provider {name:?} took longer than {:?}",
                    options.timeout
                ),
            )),
        };
        match result {
            Ok(loaded) => {
                tracing::info!(provider = name, attempt, "loaded");
                return Ok(loaded);
            }
            Err(error) if error.is_retryable() && attempt < options.retry.max_attempts => {
                let delay = options.retry.backoff_ceiling(attempt);
                tracing::warn!(provider = name, attempt, error = %error, ?delay, "load failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Adds the loadable plugin files found on disk as entries; returns the ones that cannot be
/// loaded, each with its problem.
#[cfg(feature = "plugin")]
fn add_discovered_plugins(
    entries: &mut BTreeMap<String, Entry>,
    found: Vec<crate::plugin::PluginFile>,
) -> Vec<DiscoveredProvider> {
    let mut problems = Vec::new();
    for candidate in found {
        let problem = match (candidate.problem, entries.get(&candidate.name)) {
            (Some(problem), _) => Some(problem),
            (None, Some(entry)) if entry.source.path().as_ref() != Some(&candidate.path) => {
                let owner = entry.source.path().map_or_else(
                    || "an in-process provider".to_owned(),
                    |path| path.display().to_string(),
                );
                Some(format!(
                    "the name {:?} is already taken by {owner}",
                    candidate.name
                ))
            }
            (None, Some(_)) => None,
            (None, None) => {
                entries.insert(
                    candidate.name.clone(),
                    Entry {
                        source: Arc::new(Source::Executable(candidate.path.clone())),
                        slot: Arc::new(OnceCell::new()),
                    },
                );
                None
            }
        };
        if let Some(problem) = problem {
            tracing::warn!(path = %candidate.path.display(), %problem, "plugin file skipped");
            problems.push(DiscoveredProvider {
                name: candidate.name,
                kind: ProviderKind::Executable,
                path: Some(candidate.path),
                loaded: false,
                problem: Some(problem),
            });
        }
    }
    problems
}

impl Drop for PluginManager {
    /// Kills every plugin process at once: a dropped manager leaves no process behind, even
    /// where handles to its providers are still held (their calls then fail with
    /// [`ErrorKind::Plugin`]). Call [`shutdown`](PluginManager::shutdown) first for a graceful
    /// stop.
    fn drop(&mut self) {
        #[cfg(feature = "plugin")]
        for entry in self.entries().values() {
            if let Some(Loaded {
                plugin: Some(plugin),
                ..
            }) = entry.slot.get()
            {
                plugin.kill_now();
            }
        }
    }
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if name.is_empty() || name.len() > 64 || !valid_chars {
        return Err(Error::invalid_argument(format!(
            "provider name {name:?} is not valid: use 1 to 64 characters of a-z, 0-9, '-' and '_'"
        )));
    }
    Ok(())
}

fn unknown_name(name: &str, entries: &BTreeMap<String, Entry>) -> Error {
    let known: Vec<&str> = entries.keys().map(String::as_str).collect();
    let known = if known.is_empty() {
        "none registered".to_owned()
    } else {
        format!("known: {}", known.join(", "))
    };
    Error::not_found(format!("unknown provider {name:?}; {known}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", "AWS", "a b", "../evil", &"x".repeat(65)] {
            assert_eq!(
                validate_name(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad:?}"
            );
        }
        for good in ["aws", "my-cloud_2"] {
            assert!(validate_name(good).is_ok());
        }
    }
}
