//! [`PluginManager`]: providers by name — registered, discovered, loaded, listed and unloaded.
//!
//! A provider is registered with a factory that builds it (in-process), or offered by a
//! [`ProviderSource`] (`snoozebot-plugin`'s plugin directories offer executables); loading
//! builds it once, with a timeout and retries, puts it inside the manager's
//! [`ProviderStack`] (retry, tracing, ...), and hands out the same provider until it is
//! unloaded. Two loads of one name at the same time build it once. Every call through a
//! handed-out provider holds a lease, so an unload knows what is in flight, whoever the caller
//! is (a REST handler or Rust code).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::error::{Error, ErrorKind, Result};
use crate::middleware::{ProviderStack, RetryConfig};
use crate::model::{
    InstanceFilter, InstanceId, InstanceInfo, ProviderInfo, StateChange, StopOptions,
};
use crate::provider::{BatchResults, CloudProvider, Health, InstancePage, PageRequest};

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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProviderKind {
    /// In this process, built by a registered [`ProviderFactory`].
    InProcess,
    /// In a plugin executable of its own, spoken to over gRPC.
    Executable,
}

/// A provider that could be loaded, as [`PluginManager::discover`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiscoveredProvider {
    /// The name it is loaded by.
    pub name: String,
    /// Where it runs.
    pub kind: ProviderKind,
    /// The executable, for out-of-process plugins.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub path: Option<PathBuf>,
    /// Whether it is loaded now.
    pub loaded: bool,
    /// Why it cannot be loaded, if it cannot (a plugin file that is not executable, a
    /// directory, a name already taken). `None` for loadable providers.
    pub problem: Option<String>,
}

/// A loaded provider, as [`PluginManager::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// Where a [`PluginManager`] finds providers beyond the ones registered in-process: a plugin
/// directory (`snoozebot_plugin::PluginDirectory`), a configuration file, a registry.
///
/// [`discover`](Self::discover) only looks: it must not build or run anything. The manager
/// calls it from [`PluginManager::discover`], and from a load of a name it does not know yet.
/// Sources are asked in the order they were added; a name registered in-process, or offered by
/// an earlier source, takes precedence, and a later candidate of that name is reported with
/// its problem.
pub trait ProviderSource: Send + Sync + fmt::Debug + 'static {
    /// What this source offers now.
    fn discover(&self) -> BoxFuture<'_, Vec<Candidate>>;
}

/// A provider a [`ProviderSource`] can build, or something it found that cannot be one (a
/// plugin file that is not executable), with the reason.
#[derive(Clone)]
#[non_exhaustive]
pub struct Candidate {
    /// The name it would be loaded by.
    pub name: String,
    /// Where it would run.
    pub kind: ProviderKind,
    /// The file behind it, if any.
    pub path: Option<PathBuf>,
    /// What builds it, or why it cannot be built.
    pub factory: std::result::Result<Arc<dyn ProviderFactory>, String>,
}

impl fmt::Debug for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Candidate")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("problem", &self.factory.as_ref().err())
            .finish()
    }
}

impl Candidate {
    /// A provider `factory` builds.
    pub fn loadable(
        name: impl Into<String>,
        kind: ProviderKind,
        factory: impl ProviderFactory,
    ) -> Self {
        Candidate {
            name: name.into(),
            kind,
            path: None,
            factory: Ok(Arc::new(factory)),
        }
    }

    /// Something named like a provider that cannot be loaded, and why.
    pub fn unusable(
        name: impl Into<String>,
        kind: ProviderKind,
        problem: impl Into<String>,
    ) -> Self {
        Candidate {
            name: name.into(),
            kind,
            path: None,
            factory: Err(problem.into()),
        }
    }

    /// Names the file behind it.
    pub fn with_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }
}

/// Who put a name into the manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Registered,
    Source(usize),
}

struct Entry {
    kind: ProviderKind,
    path: Option<PathBuf>,
    origin: Origin,
    factory: Arc<dyn ProviderFactory>,
    /// Filled once by the first successful load; replaced by an empty cell on unload.
    slot: Arc<OnceCell<Loaded>>,
}

impl Entry {
    fn describe_owner(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "an in-process provider".to_owned(),
        }
    }
}

struct Loaded {
    /// The provider as built, for health and close.
    bare: Arc<dyn CloudProvider>,
    /// What callers get: `bare` inside the stack, behind the lease.
    leased: Arc<Leased>,
    loaded_at: DateTime<Utc>,
}

/// A loaded provider as handed out: each call takes a lease, so the manager knows what is in
/// flight; once unloaded, it lets go of the provider (a plugin process ends when the last
/// handle to it is gone) and calls fail with [`ErrorKind::NotFound`].
struct Leased {
    name: String,
    info: ProviderInfo,
    state: Mutex<LeaseState>,
}

struct LeaseState {
    provider: Option<Arc<dyn CloudProvider>>,
    in_flight: usize,
}

/// One call's lease; returned on drop.
struct Lease<'a> {
    owner: &'a Leased,
    provider: Arc<dyn CloudProvider>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.owner.state().in_flight -= 1;
    }
}

impl Leased {
    fn state(&self) -> MutexGuard<'_, LeaseState> {
        // Each update under this lock is one assignment, so a poisoned one is still consistent.
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn lease(&self) -> Result<Lease<'_>> {
        let mut state = self.state();
        let provider = state.provider.clone().ok_or_else(|| {
            Error::not_found(format!(
                "provider {:?} has been unloaded; load it again",
                self.name
            ))
            .with_provider(self.name.clone())
        })?;
        state.in_flight += 1;
        Ok(Lease {
            owner: self,
            provider,
        })
    }

    fn in_flight(&self) -> usize {
        self.state().in_flight
    }

    /// Lets go of the provider, unless calls are in flight and `force` is off.
    fn release(&self, force: bool) -> Result<()> {
        let mut state = self.state();
        if state.in_flight > 0 && !force {
            return Err(Error::invalid_state(format!(
                "provider {:?} has {} calls in flight",
                self.name, state.in_flight
            )));
        }
        state.provider = None;
        Ok(())
    }
}

impl fmt::Debug for Leased {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leased")
            .field("name", &self.name)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl CloudProvider for Leased {
    fn info(&self) -> ProviderInfo {
        match &self.state().provider {
            Some(provider) => provider.info(),
            None => self.info.clone(),
        }
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> {
        let lease = self.lease()?;
        lease.provider.get_instance(id).await
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>> {
        let lease = self.lease()?;
        lease.provider.list_instances(filter).await
    }

    async fn list_instances_page(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<InstancePage> {
        let lease = self.lease()?;
        lease.provider.list_instances_page(filter, page).await
    }

    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange> {
        let lease = self.lease()?;
        lease.provider.stop_instance(id, opts).await
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> {
        let lease = self.lease()?;
        lease.provider.start_instance(id).await
    }

    async fn stop_instances(&self, ids: &[InstanceId], opts: &StopOptions) -> BatchResults {
        match self.lease() {
            Ok(lease) => lease.provider.stop_instances(ids, opts).await,
            Err(error) => crate::provider::each_id_fails(ids, &error),
        }
    }

    async fn start_instances(&self, ids: &[InstanceId]) -> BatchResults {
        match self.lease() {
            Ok(lease) => lease.provider.start_instances(ids).await,
            Err(error) => crate::provider::each_id_fails(ids, &error),
        }
    }

    async fn wait_for_operation(
        &self,
        id: &InstanceId,
        operation: &str,
        timeout: std::time::Duration,
    ) -> Result<()> {
        let lease = self.lease()?;
        lease
            .provider
            .wait_for_operation(id, operation, timeout)
            .await
    }

    async fn health(&self) -> Health {
        match self.lease() {
            Ok(lease) => lease.provider.health().await,
            Err(error) => Health::NotServing {
                reason: error.message().to_owned(),
            },
        }
    }
}

/// Hosts providers by name: in-process ones built by registered factories, and the ones
/// [`ProviderSource`]s offer (plugin executables, with `snoozebot-plugin`).
///
/// Everything it loads is put inside its [`ProviderStack`] —
/// [`ProviderStack::recommended`] (tracing and retries) unless
/// [`with_stack`](Self::with_stack) says otherwise — so callers of [`load`](Self::load) and
/// [`get`](Self::get), the REST API among them, get retried, traced calls.
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
    sources: Mutex<Vec<Arc<dyn ProviderSource>>>,
    load_options: LoadOptions,
    stack: ProviderStack,
}

impl fmt::Debug for PluginManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.entries().keys().cloned().collect();
        f.debug_struct("PluginManager")
            .field("providers", &names)
            .field("sources", &*lock(&self.sources))
            .field("load_options", &self.load_options)
            .field("stack", &self.stack)
            .finish()
    }
}

impl Default for PluginManager {
    fn default() -> Self {
        Self::new()
    }
}

/// Locks `mutex`; nothing is left half-updated under the manager's locks, so a poisoned one is
/// still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl PluginManager {
    /// An empty manager with default [`LoadOptions`] and [`ProviderStack::recommended`].
    pub fn new() -> Self {
        PluginManager {
            entries: Mutex::new(BTreeMap::new()),
            sources: Mutex::new(Vec::new()),
            load_options: LoadOptions::default(),
            stack: ProviderStack::recommended(),
        }
    }

    /// An empty manager whose loads use `options` unless told otherwise.
    pub fn with_load_options(options: LoadOptions) -> Self {
        Self::new().load_options(options)
    }

    /// Loads with `options` unless told otherwise.
    pub fn load_options(mut self, options: LoadOptions) -> Self {
        self.load_options = options;
        self
    }

    /// Puts every provider it loads inside `stack` ([`ProviderStack::new`] for none).
    pub fn with_stack(mut self, stack: ProviderStack) -> Self {
        self.stack = stack;
        self
    }

    /// The stack every loaded provider is put in.
    pub fn stack(&self) -> &ProviderStack {
        &self.stack
    }

    /// Also offers what `source` finds, after the registered providers and the sources added
    /// before it.
    pub fn add_source(&self, source: impl ProviderSource) {
        lock(&self.sources).push(Arc::new(source));
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        lock(&self.entries)
    }

    /// Registers an in-process provider under `name`, built by `factory` when first loaded.
    ///
    /// Names are checked by [`validate_provider_name`]. A bad or taken name is
    /// [`ErrorKind::InvalidArgument`].
    pub fn register(&self, name: impl Into<String>, factory: impl ProviderFactory) -> Result<()> {
        let name = name.into();
        validate_provider_name(&name)?;
        let mut entries = self.entries();
        if let Some(entry) = entries.get(&name) {
            return Err(Error::invalid_argument(format!(
                "a provider named {name:?} is already registered ({})",
                entry.describe_owner()
            )));
        }
        entries.insert(
            name,
            Entry {
                kind: ProviderKind::InProcess,
                path: None,
                origin: Origin::Registered,
                factory: Arc::new(factory),
                slot: Arc::new(OnceCell::new()),
            },
        );
        Ok(())
    }

    /// Whether `name` was [registered](Self::register) (loaded or not), as opposed to offered
    /// by a source or unknown.
    pub fn is_registered(&self, name: &str) -> bool {
        self.entries()
            .get(name)
            .is_some_and(|entry| matches!(entry.origin, Origin::Registered))
    }

    /// Every provider that could be loaded, and whether it is: the registered ones and what
    /// each source offers. Candidates that cannot be loaded are listed with their
    /// [`problem`](DiscoveredProvider::problem) and logged.
    pub async fn discover(&self) -> Result<Vec<DiscoveredProvider>> {
        let sources: Vec<_> = lock(&self.sources).clone();
        let mut offered = Vec::with_capacity(sources.len());
        for source in &sources {
            offered.push(source.discover().await);
        }
        let mut entries = self.entries();
        let mut problems = Vec::new();
        for (index, candidates) in offered.into_iter().enumerate() {
            for candidate in candidates {
                if let Some(problem) = admit(&mut entries, Origin::Source(index), candidate) {
                    problems.push(problem);
                }
            }
        }
        let mut discovered: Vec<DiscoveredProvider> = entries
            .iter()
            .map(|(name, entry)| DiscoveredProvider {
                name: name.clone(),
                kind: entry.kind,
                path: entry.path.clone(),
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
            // One a source may have found since the last discovery.
            self.discover().await?;
        }
        let (factory, slot) = {
            let entries = self.entries();
            let entry = entries
                .get(name)
                .ok_or_else(|| unknown_name(name, &entries))?;
            (Arc::clone(&entry.factory), Arc::clone(&entry.slot))
        };
        let loaded = slot
            .get_or_try_init(|| async {
                let bare = build_with_retries(name, factory.as_ref(), options).await?;
                Ok::<_, Error>(Loaded {
                    leased: Arc::new(Leased {
                        name: name.to_owned(),
                        info: bare.info(),
                        state: Mutex::new(LeaseState {
                            provider: Some(self.stack.wrap(Arc::clone(&bare))),
                            in_flight: 0,
                        }),
                    }),
                    bare,
                    loaded_at: DateTime::<Utc>::from(std::time::SystemTime::now()),
                })
            })
            .await?;
        Ok(Arc::clone(&loaded.leased) as Arc<dyn CloudProvider>)
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
            .map(|loaded| Arc::clone(&loaded.leased) as Arc<dyn CloudProvider>)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "provider {name:?} is registered but not loaded; load it first"
                ))
            })
    }

    /// How many calls to `name` are in flight now, through any handle the manager gave out.
    pub fn in_flight(&self, name: &str) -> usize {
        self.entries()
            .get(name)
            .and_then(|entry| entry.slot.get())
            .map_or(0, |loaded| loaded.leased.in_flight())
    }

    /// The loaded providers, with what they say about themselves and whether they answer.
    pub async fn list(&self) -> Vec<LoadedProvider> {
        let loaded: Vec<_> = self
            .entries()
            .iter()
            .filter_map(|(name, entry)| {
                let loaded = entry.slot.get()?;
                Some((
                    name.clone(),
                    entry.kind,
                    Arc::clone(&loaded.bare),
                    loaded.loaded_at,
                ))
            })
            .collect();
        let mut listed = Vec::with_capacity(loaded.len());
        for (name, kind, bare, loaded_at) in loaded {
            listed.push(LoadedProvider {
                name,
                kind,
                info: bare.info(),
                health: bare.health().await,
                loaded_at,
            });
        }
        listed
    }

    /// Unloads `name` once no call to it is in flight: later loads build it anew, and handles
    /// given out before fail with [`ErrorKind::NotFound`]. With calls in flight it is
    /// [`ErrorKind::InvalidState`] and nothing changes; [`force_unload`](Self::force_unload)
    /// does not wait for them. Unloading what is not loaded does nothing; an unknown name is
    /// [`ErrorKind::NotFound`].
    pub async fn unload(&self, name: &str) -> Result<()> {
        self.unload_inner(name, false).await
    }

    /// Unloads `name` even with calls in flight, which then fail (a plugin is stopped under
    /// them).
    pub async fn force_unload(&self, name: &str) -> Result<()> {
        self.unload_inner(name, true).await
    }

    async fn unload_inner(&self, name: &str, force: bool) -> Result<()> {
        let previous = {
            let mut entries = self.entries();
            let known = unknown_name(name, &entries);
            let entry = entries.get_mut(name).ok_or(known)?;
            // Released under the entries lock, so no new lease or load slips in between.
            if let Some(loaded) = entry.slot.get() {
                loaded.leased.release(force)?;
            }
            std::mem::replace(&mut entry.slot, Arc::new(OnceCell::new()))
        };
        if let Some(loaded) = previous.get() {
            loaded.bare.close().await;
            tracing::info!(provider = name, force, "unloaded");
        }
        Ok(())
    }

    /// Unloads every provider, without waiting for calls in flight.
    pub async fn shutdown(&self) {
        let names: Vec<String> = self.entries().keys().cloned().collect();
        for name in names {
            // Only a name removed meanwhile can fail here, and then there is nothing to unload.
            let _ = self.force_unload(&name).await;
        }
    }
}

/// Adds a source's candidate as an entry, unless its name is taken; returns it as a problem
/// if it cannot be loaded.
fn admit(
    entries: &mut BTreeMap<String, Entry>,
    origin: Origin,
    candidate: Candidate,
) -> Option<DiscoveredProvider> {
    let problem = match (&candidate.factory, entries.get(&candidate.name)) {
        (Err(problem), _) => Some(problem.clone()),
        (Ok(_), Some(entry)) if entry.origin == origin && entry.path == candidate.path => None,
        (Ok(_), Some(entry)) => Some(format!(
            "the name {:?} is already taken by {}",
            candidate.name,
            entry.describe_owner()
        )),
        (Ok(factory), None) => {
            entries.insert(
                candidate.name.clone(),
                Entry {
                    kind: candidate.kind,
                    path: candidate.path.clone(),
                    origin,
                    factory: Arc::clone(factory),
                    slot: Arc::new(OnceCell::new()),
                },
            );
            None
        }
    };
    let problem = problem?;
    match &candidate.path {
        Some(path) => tracing::warn!(path = %path.display(), %problem, "provider skipped"),
        None => tracing::warn!(provider = %candidate.name, %problem, "provider skipped"),
    }
    Some(DiscoveredProvider {
        name: candidate.name,
        kind: candidate.kind,
        path: candidate.path,
        loaded: false,
        problem: Some(problem),
    })
}

async fn build_with_retries(
    name: &str,
    factory: &dyn ProviderFactory,
    options: &LoadOptions,
) -> Result<Arc<dyn CloudProvider>> {
    let mut attempt = 1;
    loop {
        let result = match tokio::time::timeout(options.timeout, factory.build()).await {
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
            Ok(provider) => {
                tracing::info!(provider = name, attempt, "loaded");
                return Ok(provider);
            }
            Err(error) if error.is_retryable() && attempt < options.retry.max_attempts => {
                let delay = options.retry.backoff.delay(attempt);
                tracing::warn!(provider = name, attempt, error = %error, ?delay, "load failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

impl Drop for PluginManager {
    /// Lets go of every loaded provider at once, also under the handles still held (their calls
    /// then fail with [`ErrorKind::NotFound`]): a plugin process ends with its last handle, so
    /// a dropped manager leaves no process behind. Call [`shutdown`](PluginManager::shutdown)
    /// first for a graceful stop.
    fn drop(&mut self) {
        for entry in self.entries().values() {
            if let Some(loaded) = entry.slot.get() {
                // Forced: cannot fail.
                let _ = loaded.leased.release(true);
            }
        }
    }
}

/// Checks a provider name: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`. Names also name
/// plugin executables (`snoozebot-plugin-<name>`), so nothing that could climb out of a
/// directory gets through. A bad name is [`ErrorKind::InvalidArgument`].
pub fn validate_provider_name(name: &str) -> Result<()> {
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
                validate_provider_name(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad:?}"
            );
        }
        for good in ["aws", "my-cloud_2"] {
            assert!(validate_provider_name(good).is_ok());
        }
    }
}
