//! Tower middleware for providers: every call as a [`tower::Service`] request, and back.
//!
//! [`ProviderService`] turns an `Arc<dyn CloudProvider>` into a
//! `Service<ProviderRequest, Response = ProviderResponse, Error = Error>`; layers wrap that
//! service; [`ServiceProvider`] turns the wrapped service back into a [`CloudProvider`], so a
//! resilient provider is used exactly like a bare one. [`ProviderBuilder`] does all three:
//!
//! ```
//! use std::time::Duration;
//! use snoozebot_core::{CloudProvider, ProviderBuilder, RateLimiter, RetryConfig};
//! # fn wrap(provider: std::sync::Arc<dyn CloudProvider>) -> snoozebot_core::Result<std::sync::Arc<dyn CloudProvider>> {
//! let resilient = ProviderBuilder::new(provider)
//!     .tracing()
//!     .retry(RetryConfig::default())
//!     .concurrency_limit(16)
//!     .rate_limit(RateLimiter::new(20.0, 5)?)
//!     .timeout(Duration::from_secs(30))
//!     .build();
//! # Ok(resilient)
//! # }
//! ```
//!
//! Whatever order the builder methods are called in, the layers always sit in this order, from
//! the caller inwards: tracing (one span per call), retry (each attempt below counts), concurrency
//! limit, rate limit (each attempt takes a token), timeout (per attempt), provider. Retries happen
//! here and nowhere else: cloud crates turn their SDK's own retries off, so attempts never
//! multiply.

mod builder;
mod rate_limit;
mod retry;
mod timeout;
mod trace;

use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use tower::{Service, ServiceExt};

pub use builder::{BoxProviderService, ProviderBuilder, ProviderStack};
pub use rate_limit::{RateLimit, RateLimitLayer, RateLimiter};
pub use retry::{BudgetConfig, RetryConfig, RetryPolicy};
pub use timeout::{Timeout, TimeoutLayer};
pub use tower::util::rng::{HasherRng, Rng};
pub use trace::{Trace, TraceLayer};

use crate::error::{Error, Result};
use crate::model::{
    InstanceFilter, InstanceId, InstanceInfo, ProviderInfo, StateChange, StopOptions,
};
use crate::provider::{
    BatchResults, CloudProvider, Health, InstancePage, PageRequest, each_id_fails,
};

/// One provider call, as a request value.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProviderRequest {
    /// [`CloudProvider::get_instance`].
    GetInstance(InstanceId),
    /// [`CloudProvider::list_instances`].
    ListInstances(InstanceFilter),
    /// [`CloudProvider::list_instances_page`].
    ListInstancesPage(InstanceFilter, PageRequest),
    /// [`CloudProvider::stop_instance`].
    StopInstance(InstanceId, StopOptions),
    /// [`CloudProvider::start_instance`].
    StartInstance(InstanceId),
    /// [`CloudProvider::stop_instances`].
    StopInstances(BatchItems, StopOptions),
    /// [`CloudProvider::start_instances`].
    StartInstances(BatchItems),
}

impl ProviderRequest {
    /// The operation's name, as used in tracing spans (`get_instance`, `stop_instances`...).
    pub fn operation(&self) -> &'static str {
        match self {
            ProviderRequest::GetInstance(_) => "get_instance",
            ProviderRequest::ListInstances(_) => "list_instances",
            ProviderRequest::ListInstancesPage(..) => "list_instances_page",
            ProviderRequest::StopInstance(..) => "stop_instance",
            ProviderRequest::StartInstance(_) => "start_instance",
            ProviderRequest::StopInstances(..) => "stop_instances",
            ProviderRequest::StartInstances(_) => "start_instances",
        }
    }

    /// The instance the call is about, for single-instance calls.
    pub fn instance_id(&self) -> Option<&InstanceId> {
        match self {
            ProviderRequest::GetInstance(id)
            | ProviderRequest::StopInstance(id, _)
            | ProviderRequest::StartInstance(id) => Some(id),
            _ => None,
        }
    }
}

/// The ids of a batch call, each either still to do or already settled by an earlier attempt.
///
/// The retry layer settles the ids that succeeded or failed for good and sends only the rest
/// again, so a retried batch never repeats work that is done.
#[derive(Debug, Clone)]
pub struct BatchItems {
    items: Vec<(InstanceId, Option<Result<StateChange>>)>,
}

impl BatchItems {
    /// A batch in which every id is still to do.
    pub fn new(ids: &[InstanceId]) -> Self {
        BatchItems {
            items: ids.iter().map(|id| (id.clone(), None)).collect(),
        }
    }

    /// The ids still to do, in order.
    pub fn pending_ids(&self) -> Vec<InstanceId> {
        self.items
            .iter()
            .filter(|(_, settled)| settled.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// A batch that keeps every result of `results` except retryable failures, which are to do
    /// again.
    pub(crate) fn from_results_retrying_failures(results: &BatchResults) -> Self {
        let items = results
            .iter()
            .map(|(id, result)| {
                let settled = match result {
                    Err(err) if err.is_retryable() => None,
                    other => Some(other.clone()),
                };
                (id.clone(), settled)
            })
            .collect();
        BatchItems { items }
    }

    /// Fills the pending ids with `results` (one per pending id, in order) and returns one
    /// result per id of the whole batch.
    fn complete(self, results: BatchResults) -> Result<BatchResults> {
        let mut fresh = results.into_iter();
        let mut complete = Vec::with_capacity(self.items.len());
        for (id, settled) in self.items {
            let result = match settled {
                Some(result) => result,
                None => match fresh.next() {
                    Some((answered_id, result)) if answered_id == id => result,
                    Some((answered_id, _)) => {
                        return Err(Error::internal(format!(
                            "batch answered for {answered_id} where {id} was expected"
                        )));
                    }
                    None => {
                        return Err(Error::internal(format!(
                            "batch returned no result for {id}"
                        )));
                    }
                },
            };
            complete.push((id, result));
        }
        match fresh.next() {
            Some((extra, _)) => Err(Error::internal(format!(
                "batch returned a result for {extra}, which was not asked for"
            ))),
            None => Ok(complete),
        }
    }
}

/// What a provider call returned, as a response value.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProviderResponse {
    /// From [`ProviderRequest::GetInstance`].
    Instance(InstanceInfo),
    /// From [`ProviderRequest::ListInstances`].
    Instances(Vec<InstanceInfo>),
    /// From [`ProviderRequest::ListInstancesPage`].
    Page(InstancePage),
    /// From [`ProviderRequest::StopInstance`] and [`ProviderRequest::StartInstance`].
    StateChange(StateChange),
    /// From batch requests: one result per id, in order.
    Batch(BatchResults),
}

impl ProviderResponse {
    fn kind(&self) -> &'static str {
        match self {
            ProviderResponse::Instance(_) => "an instance",
            ProviderResponse::Instances(_) => "a list of instances",
            ProviderResponse::Page(_) => "a page of instances",
            ProviderResponse::StateChange(_) => "a state change",
            ProviderResponse::Batch(_) => "batch results",
        }
    }
}

/// A [`CloudProvider`] as a [`tower::Service`]: the innermost service of every stack.
#[derive(Debug, Clone)]
pub struct ProviderService {
    provider: Arc<dyn CloudProvider>,
}

impl ProviderService {
    /// Serves calls on `provider`.
    pub fn new(provider: Arc<dyn CloudProvider>) -> Self {
        ProviderService { provider }
    }
}

impl Service<ProviderRequest> for ProviderService {
    type Response = ProviderResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<ProviderResponse>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ProviderRequest) -> Self::Future {
        let provider = Arc::clone(&self.provider);
        Box::pin(async move {
            let response = match request {
                ProviderRequest::GetInstance(id) => {
                    ProviderResponse::Instance(provider.get_instance(&id).await?)
                }
                ProviderRequest::ListInstances(filter) => {
                    ProviderResponse::Instances(provider.list_instances(&filter).await?)
                }
                ProviderRequest::ListInstancesPage(filter, page) => {
                    ProviderResponse::Page(provider.list_instances_page(&filter, &page).await?)
                }
                ProviderRequest::StopInstance(id, opts) => {
                    ProviderResponse::StateChange(provider.stop_instance(&id, &opts).await?)
                }
                ProviderRequest::StartInstance(id) => {
                    ProviderResponse::StateChange(provider.start_instance(&id).await?)
                }
                ProviderRequest::StopInstances(items, opts) => {
                    let results = provider.stop_instances(&items.pending_ids(), &opts).await;
                    ProviderResponse::Batch(items.complete(results)?)
                }
                ProviderRequest::StartInstances(items) => {
                    let results = provider.start_instances(&items.pending_ids()).await;
                    ProviderResponse::Batch(items.complete(results)?)
                }
            };
            Ok(response)
        })
    }
}

/// A provider [`tower::Service`] stack as a [`CloudProvider`] again.
///
/// [`CloudProvider::info`], [`CloudProvider::health`] and [`CloudProvider::close`] go to the
/// provider at the bottom of the stack.
#[derive(Clone)]
pub struct ServiceProvider {
    info_source: Arc<dyn CloudProvider>,
    service: BoxProviderService,
}

impl ServiceProvider {
    /// A provider whose calls go through `service`; `info_source` answers
    /// [`CloudProvider::info`] (usually the provider at the bottom of `service`).
    pub fn new(info_source: Arc<dyn CloudProvider>, service: BoxProviderService) -> Self {
        ServiceProvider {
            info_source,
            service,
        }
    }

    async fn call(&self, request: ProviderRequest) -> Result<ProviderResponse> {
        self.service.clone().oneshot(request).await
    }

    async fn call_batch(&self, request: ProviderRequest) -> BatchResults {
        let ids = match &request {
            ProviderRequest::StopInstances(items, _) | ProviderRequest::StartInstances(items) => {
                items.pending_ids()
            }
            _ => Vec::new(),
        };
        match self.call(request).await {
            Ok(ProviderResponse::Batch(results)) => results,
            Ok(other) => each_id_fails(&ids, &unexpected_response("batch results", &other)),
            // A failure of the whole batch (a timeout, a closed plugin) is every id's failure.
            Err(err) => each_id_fails(&ids, &err),
        }
    }
}

fn unexpected_response(expected: &str, got: &ProviderResponse) -> Error {
    Error::internal(format!(
        "provider service answered with {} where {expected} was expected",
        got.kind()
    ))
}

impl std::fmt::Debug for ServiceProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceProvider")
            .field("provider", &self.info_source)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl CloudProvider for ServiceProvider {
    fn info(&self) -> ProviderInfo {
        self.info_source.info()
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> {
        match self.call(ProviderRequest::GetInstance(id.clone())).await? {
            ProviderResponse::Instance(info) => Ok(info),
            other => Err(unexpected_response("an instance", &other)),
        }
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>> {
        match self
            .call(ProviderRequest::ListInstances(filter.clone()))
            .await?
        {
            ProviderResponse::Instances(list) => Ok(list),
            other => Err(unexpected_response("a list of instances", &other)),
        }
    }

    async fn list_instances_page(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<InstancePage> {
        match self
            .call(ProviderRequest::ListInstancesPage(
                filter.clone(),
                page.clone(),
            ))
            .await?
        {
            ProviderResponse::Page(page) => Ok(page),
            other => Err(unexpected_response("a page of instances", &other)),
        }
    }

    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange> {
        match self
            .call(ProviderRequest::StopInstance(id.clone(), opts.clone()))
            .await?
        {
            ProviderResponse::StateChange(change) => Ok(change),
            other => Err(unexpected_response("a state change", &other)),
        }
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> {
        match self
            .call(ProviderRequest::StartInstance(id.clone()))
            .await?
        {
            ProviderResponse::StateChange(change) => Ok(change),
            other => Err(unexpected_response("a state change", &other)),
        }
    }

    async fn stop_instances(&self, ids: &[InstanceId], opts: &StopOptions) -> BatchResults {
        self.call_batch(ProviderRequest::StopInstances(
            BatchItems::new(ids),
            opts.clone(),
        ))
        .await
    }

    async fn start_instances(&self, ids: &[InstanceId]) -> BatchResults {
        self.call_batch(ProviderRequest::StartInstances(BatchItems::new(ids)))
            .await
    }

    /// Straight to the provider at the bottom of the stack: following an operation is a wait
    /// with its own deadline, which a per-attempt time limit must not cut.
    async fn wait_for_operation(
        &self,
        id: &InstanceId,
        operation: &str,
        timeout: std::time::Duration,
    ) -> Result<()> {
        self.info_source
            .wait_for_operation(id, operation, timeout)
            .await
    }

    /// The health of the provider at the bottom of the stack: health checks are not retried
    /// or limited.
    async fn health(&self) -> Health {
        self.info_source.health().await
    }

    async fn close(&self) {
        self.info_source.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::model::InstanceState;

    fn id(s: &str) -> InstanceId {
        InstanceId::new(s).unwrap()
    }

    fn change(s: &str) -> Result<StateChange> {
        Ok(StateChange::new(
            id(s),
            InstanceState::Running,
            InstanceState::Stopping,
        ))
    }

    #[test]
    fn a_retried_batch_resends_only_retryable_failures_and_keeps_order() {
        let first = vec![
            (id("a"), change("a")),
            (id("b"), Err(Error::new(ErrorKind::Throttled, "slow down"))),
            (id("c"), Err(Error::not_found("no c"))),
            (id("d"), Err(Error::new(ErrorKind::Unavailable, "down"))),
        ];
        let retry = BatchItems::from_results_retrying_failures(&first);
        assert_eq!(retry.pending_ids(), [id("b"), id("d")]);

        let complete = retry
            .complete(vec![(id("b"), change("b")), (id("d"), change("d"))])
            .unwrap();
        let ids: Vec<_> = complete.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert!(complete[1].1.is_ok() && complete[3].1.is_ok());
        assert_eq!(
            complete[2].1.as_ref().unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn a_batch_answer_for_the_wrong_ids_is_an_internal_error() {
        let items = BatchItems::new(&[id("a"), id("b")]);
        let err = items
            .clone()
            .complete(vec![(id("a"), change("a"))])
            .unwrap_err();
        assert!(err.message().contains("no result for b"), "{err}");
        let err = items
            .complete(vec![(id("b"), change("b")), (id("a"), change("a"))])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
    }
}
