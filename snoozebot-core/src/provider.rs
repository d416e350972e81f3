//! The [`CloudProvider`] trait every cloud implements, and [`CloudProviderExt`], the waiters
//! built on top of it for every provider.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    InstanceFilter, InstanceId, InstanceInfo, InstanceState, ProviderInfo, StateChange, StopMode,
    StopOptions,
};

/// How many single calls the default batch methods run at once.
pub const DEFAULT_BATCH_CONCURRENCY: usize = 8;

/// One result per id of a batch call, in the order the ids were given.
pub type BatchResults = Vec<(InstanceId, Result<StateChange>)>;

/// Which page of a listing to read: at most `size` instances, continuing where the page that
/// gave `token` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageRequest {
    /// The most instances on the page (at least 1).
    pub size: usize,
    /// The previous page's [`InstancePage::next_token`]; `None` for the first page.
    pub token: Option<String>,
}

impl PageRequest {
    /// The first page of at most `size` instances (`0` is taken as `1`).
    pub fn first(size: usize) -> Self {
        PageRequest {
            size: size.max(1),
            token: None,
        }
    }

    /// The page after the one that gave `token`.
    pub fn after(size: usize, token: impl Into<String>) -> Self {
        PageRequest {
            size: size.max(1),
            token: Some(token.into()),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct InstancePage {
    /// The instances on this page, in the provider's order.
    pub instances: Vec<InstanceInfo>,
    /// Where the next page starts; `None` on the last page. Opaque: only the provider that
    /// gave it reads it.
    pub next_token: Option<String>,
}

impl InstancePage {
    /// A page of `instances`, with the token of the next page if there is one.
    pub fn new(instances: Vec<InstanceInfo>, next_token: Option<String>) -> Self {
        InstancePage {
            instances,
            next_token,
        }
    }

    /// Pages a whole listing by id: the instances after the token (an id), ordered by id, at
    /// most `page.size`; the token of the next page is the last id on this one. What
    /// [`CloudProvider::list_instances_page`] does by default, and a helper for providers whose
    /// cloud cannot page. Ids added or removed between pages do not shift the pages.
    pub fn by_id(mut instances: Vec<InstanceInfo>, page: &PageRequest) -> Result<Self> {
        let after = page
            .token
            .as_deref()
            .map(|token| {
                InstanceId::new(token).map_err(|_| {
                    Error::invalid_argument("the page token is not one this provider gave")
                })
            })
            .transpose()?;
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(after) = &after {
            instances.retain(|instance| &instance.id > after);
        }
        let size = page.size.max(1);
        let next_token = (instances.len() > size).then(|| instances[size - 1].id.to_string());
        instances.truncate(size);
        Ok(InstancePage::new(instances, next_token))
    }
}

/// The results of a batch that failed as a whole (a timeout, an unloaded provider, a refused
/// request): `error` for each id, in order.
pub fn each_id_fails(ids: &[InstanceId], error: &Error) -> BatchResults {
    ids.iter()
        .map(|id| (id.clone(), Err(error.clone())))
        .collect()
}

/// A batch as single calls, [`DEFAULT_BATCH_CONCURRENCY`] at a time: `call` once per id, one
/// result per id in the order given. What [`CloudProvider::stop_instances`] and
/// [`CloudProvider::start_instances`] do by default, for providers without a batch API or a
/// batch call that turned out not to exist.
pub async fn single_calls<F, Fut>(ids: &[InstanceId], call: F) -> BatchResults
where
    F: Fn(InstanceId) -> Fut,
    Fut: Future<Output = Result<StateChange>>,
{
    stream::iter(ids.iter().cloned())
        .map(|id| {
            let result = call(id.clone());
            async move { (id, result.await) }
        })
        .buffered(DEFAULT_BATCH_CONCURRENCY)
        .collect()
        .await
}

/// A batch whose items are checked one by one before any call: each item `check` refuses keeps
/// its error; the ids of the others go to `call` together, each once however often it was
/// given; every item gets its result back, in the order given, matched by id (an id `call`
/// answered nothing for is [`ErrorKind::Internal`]). The one place the REST API's batches (whose
/// items are strings) and the EC2 provider's (whose ids are checked for EC2's format) merge
/// per-item refusals with a batch's answers.
///
/// ```
/// use snoozebot_core::{Error, InstanceId, InstanceState, StateChange, checked_batch};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let items = ["i-1", "bad id", "i-1"];
/// let results = checked_batch(
///     &items,
///     |item| InstanceId::new(*item),
///     async |ids: Vec<InstanceId>| {
///         assert_eq!(ids.len(), 1, "each id once");
///         ids.into_iter()
///             .map(|id| {
///                 let change = StateChange::new(id.clone(), InstanceState::Running, InstanceState::Stopping);
///                 (id, Ok(change))
///             })
///             .collect()
///     },
/// )
/// .await;
/// assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
/// # });
/// ```
pub async fn checked_batch<T, C, F>(items: &[T], check: C, call: F) -> Vec<Result<StateChange>>
where
    C: Fn(&T) -> Result<InstanceId>,
    F: AsyncFnOnce(Vec<InstanceId>) -> BatchResults,
{
    let checked: Vec<Result<InstanceId>> = items.iter().map(check).collect();
    let mut accepted = Vec::new();
    let mut seen = HashSet::new();
    for id in checked.iter().flatten() {
        if seen.insert(id) {
            accepted.push(id.clone());
        }
    }
    let answered: HashMap<InstanceId, Result<StateChange>> = if accepted.is_empty() {
        HashMap::new()
    } else {
        call(accepted).await.into_iter().collect()
    };
    checked
        .into_iter()
        .map(|checked| {
            let id = checked?;
            match answered.get(&id) {
                Some(result) => result.clone(),
                None => Err(Error::internal(format!(
                    "the batch answered nothing for {id}"
                ))),
            }
        })
        .collect()
}

/// Whether a provider can take calls now, as [`CloudProvider::health`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Health {
    /// Ready for calls.
    Serving,
    /// Loaded but not answering (a plugin restarting, or failing its health checks).
    NotServing {
        /// Why.
        reason: String,
    },
    /// Given up: it will not recover by itself (a plugin in a crash loop); reload it.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A cloud that can list, stop and start instances.
///
/// Implement the five required methods; the batch methods have defaults that run single calls
/// with bounded concurrency ([`DEFAULT_BATCH_CONCURRENCY`]). A cloud with a batch API (EC2)
/// overrides them. Waiters come for free from [`CloudProviderExt`].
///
/// Contract every implementation keeps (the testkit's conformance suite checks it):
/// - ids in a provider-specific bad format fail with [`ErrorKind::InvalidArgument`] before
///   any API call; unknown ids with [`ErrorKind::NotFound`];
/// - stop and start are idempotent: stopping a stopped instance is `Ok` with
///   `previous == current`;
/// - a stop mode not in [`Capabilities::stop_modes`](crate::Capabilities::stop_modes) is
///   [`ErrorKind::Unsupported`];
/// - every native error is mapped to an [`ErrorKind`], the native code kept in the message;
/// - the provider does not retry by itself: retries belong to the middleware
///   ([`ProviderBuilder::retry`](crate::ProviderBuilder::retry)).
#[async_trait]
pub trait CloudProvider: Send + Sync + std::fmt::Debug {
    /// Who this provider is and what it supports.
    fn info(&self) -> ProviderInfo;

    /// Describes one instance.
    async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo>;

    /// Lists the instances that match `filter`, across all pages.
    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>>;

    /// Lists one page of the instances that match `filter`. A cloud that pages natively
    /// overrides this, so that reading N instances page by page costs about N / `page.size`
    /// API calls. The default lists everything and pages it by id ([`InstancePage::by_id`]).
    /// A page may hold fewer than `page.size` instances and still have a next one.
    async fn list_instances_page(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<InstancePage> {
        InstancePage::by_id(self.list_instances(filter).await?, page)
    }

    /// Stops one instance as `opts` say, and returns once the cloud has accepted the change
    /// (`current` is then usually `Stopping`, with the cloud's [`StateChange::operation`] where
    /// it has one), not once it is carried out: a call's time limit then never cuts a stop the
    /// cloud is already doing, which a retry would send again.
    /// [`CloudProviderExt::stop_and_wait`] follows it to the end. Stopping a stopped instance
    /// is `Ok` and changes nothing.
    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange>;

    /// Starts one instance, returning once the cloud has accepted it (see
    /// [`stop_instance`](Self::stop_instance)). Starting a running instance is `Ok` and changes
    /// nothing.
    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange>;

    /// Follows a change the cloud accepted — the [`StateChange::operation`] a stop or start of
    /// `id` returned — until the cloud has carried it out, at most `timeout`. The operation's
    /// failure is the error ([`ErrorKind::Timeout`] past the limit). The default has nothing to
    /// follow and returns at once; [`CloudProviderExt::stop_and_wait`] then watches the
    /// instance's state.
    async fn wait_for_operation(
        &self,
        id: &InstanceId,
        operation: &str,
        timeout: Duration,
    ) -> Result<()> {
        let _ = (id, operation, timeout);
        Ok(())
    }

    /// Stops many instances: one result per id, in the order given. A failing id does not keep
    /// the others from being stopped.
    async fn stop_instances(&self, ids: &[InstanceId], opts: &StopOptions) -> BatchResults {
        single_calls(ids, |id| async move { self.stop_instance(&id, opts).await }).await
    }

    /// Starts many instances: one result per id, in the order given. A failing id does not keep
    /// the others from being started.
    async fn start_instances(&self, ids: &[InstanceId]) -> BatchResults {
        single_calls(ids, |id| async move { self.start_instance(&id).await }).await
    }

    /// Whether the provider can take calls now. The default is [`Health::Serving`]; a provider
    /// with something behind it that can fail on its own (a plugin process) asks it.
    async fn health(&self) -> Health {
        Health::Serving
    }

    /// Releases what the provider holds (a plugin process, connections) before it is dropped;
    /// calls afterwards may fail. The default does nothing. A
    /// [`PluginManager`](crate::PluginManager) calls it on unload.
    async fn close(&self) {}
}

/// A shared provider is a provider: `Arc<dyn CloudProvider>` is what builders and managers
/// hand out.
#[async_trait]
impl<P: CloudProvider + ?Sized> CloudProvider for Arc<P> {
    fn info(&self) -> ProviderInfo {
        (**self).info()
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> {
        (**self).get_instance(id).await
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>> {
        (**self).list_instances(filter).await
    }

    async fn list_instances_page(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<InstancePage> {
        (**self).list_instances_page(filter, page).await
    }

    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange> {
        (**self).stop_instance(id, opts).await
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> {
        (**self).start_instance(id).await
    }

    async fn stop_instances(&self, ids: &[InstanceId], opts: &StopOptions) -> BatchResults {
        (**self).stop_instances(ids, opts).await
    }

    async fn start_instances(&self, ids: &[InstanceId]) -> BatchResults {
        (**self).start_instances(ids).await
    }

    async fn wait_for_operation(
        &self,
        id: &InstanceId,
        operation: &str,
        timeout: Duration,
    ) -> Result<()> {
        (**self).wait_for_operation(id, operation, timeout).await
    }

    async fn health(&self) -> Health {
        (**self).health().await
    }

    async fn close(&self) {
        (**self).close().await
    }
}

/// The first pause between two polls of [`CloudProviderExt::wait_for_state`].
pub const WAIT_INITIAL_INTERVAL: Duration = Duration::from_millis(250);
/// The longest pause between two polls of [`CloudProviderExt::wait_for_state`].
pub const WAIT_MAX_INTERVAL: Duration = Duration::from_secs(10);
/// The pauses between polls of [`CloudProviderExt::wait_for_state`]: [`WAIT_INITIAL_INTERVAL`]
/// doubling up to [`WAIT_MAX_INTERVAL`].
pub const WAIT_BACKOFF: Backoff = Backoff::new(WAIT_INITIAL_INTERVAL, WAIT_MAX_INTERVAL);

/// Waiters for every [`CloudProvider`]; implemented for all of them, never by hand.
///
/// ```
/// use std::time::Duration;
/// use snoozebot_core::{CloudProvider, CloudProviderExt, InstanceId, InstanceState, StopOptions};
///
/// async fn snooze(provider: &dyn CloudProvider, id: &InstanceId) -> snoozebot_core::Result<()> {
///     let info = provider
///         .stop_and_wait(id, &StopOptions::default(), Duration::from_secs(300))
///         .await?;
///     assert_eq!(info.state, InstanceState::Stopped);
///     Ok(())
/// }
/// ```
#[async_trait]
pub trait CloudProviderExt: CloudProvider {
    /// Polls the instance until it is in `target`, with a growing pause between polls
    /// ([`WAIT_INITIAL_INTERVAL`] doubling up to [`WAIT_MAX_INTERVAL`]).
    ///
    /// Fails with [`ErrorKind::Timeout`] naming the last state seen when `timeout` passes, and
    /// with [`ErrorKind::InvalidState`] at once when `target` became unreachable (waiting for
    /// `Running` on a terminated instance). Errors from `get_instance` end the wait.
    async fn wait_for_state(
        &self,
        id: &InstanceId,
        target: InstanceState,
        timeout: Duration,
    ) -> Result<InstanceInfo> {
        let deadline = deadline_in(timeout);
        let mut pauses = WAIT_BACKOFF.delays();
        loop {
            let info = self.get_instance(id).await?;
            if info.state == target {
                return Ok(info);
            }
            if !info.state.can_reach(target) {
                return Err(Error::invalid_state(format!(
                    "instance {id} is {} ({}) and can no longer become {target}",
                    info.state, info.raw_state
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "instance {id} did not become {target} within {timeout:?}; last seen {} ({})",
                        info.state, info.raw_state
                    ),
                ));
            }
            let pause = pauses.next().unwrap_or(WAIT_MAX_INTERVAL);
            tokio::time::sleep(pause.min(deadline - now)).await;
        }
    }

    /// Stops the instance and waits until it is stopped (or suspended, for
    /// [`StopMode::Suspend`](crate::StopMode::Suspend)).
    async fn stop_and_wait(
        &self,
        id: &InstanceId,
        opts: &StopOptions,
        timeout: Duration,
    ) -> Result<InstanceInfo> {
        let deadline = deadline_in(timeout);
        let change = self.stop_instance(id, opts).await?;
        let target = match (change.mode, change.current) {
            (Some(StopMode::Suspend), _)
            | (_, InstanceState::Suspending | InstanceState::Suspended) => InstanceState::Suspended,
            _ => InstanceState::Stopped,
        };
        self.follow(&change, deadline).await?;
        self.wait_for_state(id, target, remaining(deadline)).await
    }

    /// Starts the instance and waits until it is running.
    async fn start_and_wait(&self, id: &InstanceId, timeout: Duration) -> Result<InstanceInfo> {
        let deadline = deadline_in(timeout);
        let change = self.start_instance(id).await?;
        self.follow(&change, deadline).await?;
        self.wait_for_state(id, InstanceState::Running, remaining(deadline))
            .await
    }

    /// Follows `change`'s operation, if it has one, until `deadline`.
    async fn follow(&self, change: &StateChange, deadline: Instant) -> Result<()> {
        match &change.operation {
            Some(operation) => {
                self.wait_for_operation(&change.id, operation, remaining(deadline))
                    .await
            }
            None => Ok(()),
        }
    }
}

impl<P: CloudProvider + ?Sized> CloudProviderExt for P {}

/// The instant `timeout` from now, for a wait's deadline. A timeout too long to add (a caller's
/// `Duration::MAX`, or a number read off the wire) is a deadline a century away, not a panic.
pub fn deadline_in(timeout: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}

/// What is left until `deadline` (zero once past).
fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_timeout_too_long_to_add_is_a_far_deadline_not_a_panic() {
        let now = Instant::now();
        let far = deadline_in(Duration::MAX);
        assert!(far > now + Duration::from_secs(50 * 365 * 24 * 60 * 60));
        assert_eq!(
            deadline_in(Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert!(remaining(far) > Duration::ZERO);
    }
}
