//! [`ProviderBuilder`]: wraps a provider in the middleware stack and hands back a provider.

use std::sync::Arc;
use std::time::Duration;

use tower::limit::ConcurrencyLimit;
use tower::retry::Retry;
use tower::util::BoxCloneSyncService;

use super::{
    ProviderRequest, ProviderResponse, ProviderService, RateLimit, RateLimiter, RetryConfig,
    RetryPolicy, ServiceProvider, Timeout, Trace,
};
use crate::error::Error;
use crate::provider::CloudProvider;

/// A provider stack as a boxed, cloneable [`tower::Service`].
pub type BoxProviderService = BoxCloneSyncService<ProviderRequest, ProviderResponse, Error>;

/// Wraps a provider in middleware and returns a provider: `Arc<dyn CloudProvider>` in,
/// `Arc<dyn CloudProvider>` out.
///
/// Only the layers asked for are added; their order is fixed (see the
/// [module docs](crate::middleware)), so the calls below can come in any order.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use snoozebot_core::{CloudProvider, ProviderBuilder, RateLimiter, RetryConfig};
///
/// fn resilient(provider: Arc<dyn CloudProvider>) -> snoozebot_core::Result<Arc<dyn CloudProvider>> {
///     Ok(ProviderBuilder::new(provider)
///         .retry(RetryConfig::default().with_max_attempts(5))
///         .timeout(Duration::from_secs(30))
///         .concurrency_limit(16)
///         .rate_limit(RateLimiter::new(20.0, 5)?)
///         .tracing()
///         .build())
/// }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ProviderBuilder {
    provider: Arc<dyn CloudProvider>,
    tracing: bool,
    retry: Option<RetryPolicy>,
    concurrency_limit: Option<usize>,
    rate_limiter: Option<RateLimiter>,
    timeout: Option<Duration>,
}

impl ProviderBuilder {
    /// Starts a stack on `provider`, with no layers yet.
    pub fn new(provider: Arc<dyn CloudProvider>) -> Self {
        ProviderBuilder {
            provider,
            tracing: false,
            retry: None,
            concurrency_limit: None,
            rate_limiter: None,
            timeout: None,
        }
    }

    /// Retries retryable failures as `config` says (see [`RetryConfig`]'s defaults).
    pub fn retry(self, config: RetryConfig) -> Self {
        self.retry_policy(RetryPolicy::new(config))
    }

    /// Retries with a ready-made policy: a shared budget, or a fixed jitter source in tests.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Fails each attempt that takes longer than `limit` with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Lets at most `max` calls run at once; more wait their turn. `0` is taken as `1`.
    pub fn concurrency_limit(mut self, max: usize) -> Self {
        self.concurrency_limit = Some(max.max(1));
        self
    }

    /// Spaces calls (every attempt) with `limiter`. Give several providers clones of one
    /// limiter to share a limit, e.g. one per cloud account and region.
    pub fn rate_limit(mut self, limiter: RateLimiter) -> Self {
        self.rate_limiter = Some(limiter);
        self
    }

    /// Wraps every call in a tracing span (see [`Trace`]).
    pub fn tracing(mut self) -> Self {
        self.tracing = true;
        self
    }

    /// The stack as a [`tower::Service`], for callers who add layers of their own.
    pub fn into_service(self) -> BoxProviderService {
        self.split().1
    }

    /// The stack as a provider again.
    pub fn build(self) -> Arc<dyn CloudProvider> {
        let (provider, service) = self.split();
        Arc::new(ServiceProvider::new(provider, service))
    }

    fn split(self) -> (Arc<dyn CloudProvider>, BoxProviderService) {
        let mut service =
            BoxCloneSyncService::new(ProviderService::new(Arc::clone(&self.provider)));
        if let Some(limit) = self.timeout {
            service = BoxCloneSyncService::new(Timeout::new(service, limit));
        }
        if let Some(limiter) = self.rate_limiter {
            service = BoxCloneSyncService::new(RateLimit::new(service, limiter));
        }
        if let Some(max) = self.concurrency_limit {
            service = BoxCloneSyncService::new(ConcurrencyLimit::new(service, max));
        }
        if let Some(policy) = self.retry {
            service = BoxCloneSyncService::new(Retry::new(policy, service));
        }
        if self.tracing {
            let name = self.provider.info().name;
            service = BoxCloneSyncService::new(Trace::new(service, name));
        }
        (self.provider, service)
    }
}
