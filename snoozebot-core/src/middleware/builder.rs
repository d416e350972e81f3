//! [`ProviderBuilder`] and [`ProviderStack`]: wrap a provider in the middleware stack and hand
//! back a provider.

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
    stack: ProviderStack,
}

impl ProviderBuilder {
    /// Starts a stack on `provider`, with no layers yet.
    pub fn new(provider: Arc<dyn CloudProvider>) -> Self {
        ProviderBuilder {
            provider,
            stack: ProviderStack::new(),
        }
    }

    /// Starts with the layers of `stack`; the methods below add to them.
    pub fn with_stack(provider: Arc<dyn CloudProvider>, stack: ProviderStack) -> Self {
        ProviderBuilder { provider, stack }
    }

    /// Retries retryable failures as `config` says (see [`RetryConfig`]'s defaults).
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.stack = self.stack.retry(config);
        self
    }

    /// Retries with a ready-made policy: a shared budget, or a fixed jitter source in tests.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.stack = self.stack.retry_policy(policy);
        self
    }

    /// Fails each attempt that takes longer than `limit` with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.stack = self.stack.timeout(limit);
        self
    }

    /// Lets at most `max` calls run at once; more wait their turn. `0` is taken as `1`.
    pub fn concurrency_limit(mut self, max: usize) -> Self {
        self.stack = self.stack.concurrency_limit(max);
        self
    }

    /// Spaces calls (every attempt) with `limiter`. Give several providers clones of one
    /// limiter to share a limit, e.g. one per cloud account and region.
    pub fn rate_limit(mut self, limiter: RateLimiter) -> Self {
        self.stack = self.stack.rate_limit(limiter);
        self
    }

    /// Wraps every call in a tracing span (see [`Trace`]).
    pub fn tracing(mut self) -> Self {
        self.stack = self.stack.tracing();
        self
    }

    /// The stack as a [`tower::Service`], for callers who add layers of their own.
    pub fn into_service(self) -> BoxProviderService {
        self.stack.service(&self.provider)
    }

    /// The stack as a provider again.
    pub fn build(self) -> Arc<dyn CloudProvider> {
        self.stack.wrap(self.provider)
    }
}

/// Which middleware layers to put around a provider, as a value: what a
/// [`PluginManager`](crate::PluginManager) puts around every provider it loads, and what
/// [`ProviderBuilder`] assembles.
///
/// The layers always sit in the order of the [module docs](crate::middleware), whatever order
/// they were asked for in. A stack given a [`RetryConfig`] makes a retry policy (and so a
/// retry budget) of its own for each provider it wraps; one given a [`RetryPolicy`] shares that
/// policy's budget between them.
///
/// ```
/// use std::time::Duration;
/// use snoozebot_core::{ProviderStack, RetryConfig};
///
/// let stack = ProviderStack::new()
///     .tracing()
///     .retry(RetryConfig::default())
///     .timeout(Duration::from_secs(30));
/// assert!(!stack.is_empty());
/// assert!(ProviderStack::new().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a stack does nothing until it wraps a provider"]
pub struct ProviderStack {
    tracing: bool,
    retry: Option<RetryLayer>,
    concurrency_limit: Option<usize>,
    rate_limiter: Option<RateLimiter>,
    timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
enum RetryLayer {
    /// A policy of its own per wrapped provider.
    PerProvider(RetryConfig),
    /// One policy (and budget) shared by every provider wrapped.
    Shared(RetryPolicy),
}

impl ProviderStack {
    /// No layers: providers are used bare.
    pub fn new() -> Self {
        Self::default()
    }

    /// What a [`PluginManager`](crate::PluginManager) uses unless told otherwise: tracing and
    /// retries with [`RetryConfig::default`]. No per-attempt time limit: a stop that follows a
    /// cloud's long-running operation may rightly take minutes.
    pub fn recommended() -> Self {
        Self::new().tracing().retry(RetryConfig::default())
    }

    /// Whether the stack has no layers.
    pub fn is_empty(&self) -> bool {
        !self.tracing
            && self.retry.is_none()
            && self.concurrency_limit.is_none()
            && self.rate_limiter.is_none()
            && self.timeout.is_none()
    }

    /// Retries retryable failures as `config` says, with a policy per wrapped provider.
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.retry = Some(RetryLayer::PerProvider(config));
        self
    }

    /// Retries with a ready-made policy, shared by every provider this stack wraps.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(RetryLayer::Shared(policy));
        self
    }

    /// Fails each attempt that takes longer than `limit` with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Lets at most `max` calls run at once per wrapped provider. `0` is taken as `1`.
    pub fn concurrency_limit(mut self, max: usize) -> Self {
        self.concurrency_limit = Some(max.max(1));
        self
    }

    /// Spaces calls (every attempt) with `limiter`, shared by every provider wrapped.
    pub fn rate_limit(mut self, limiter: RateLimiter) -> Self {
        self.rate_limiter = Some(limiter);
        self
    }

    /// Wraps every call in a tracing span (see [`Trace`]).
    pub fn tracing(mut self) -> Self {
        self.tracing = true;
        self
    }

    /// `provider` inside these layers, as a provider again. An empty stack hands `provider`
    /// back as it is.
    pub fn wrap(&self, provider: Arc<dyn CloudProvider>) -> Arc<dyn CloudProvider> {
        if self.is_empty() {
            return provider;
        }
        let service = self.service(&provider);
        Arc::new(ServiceProvider::new(provider, service))
    }

    /// `provider` inside these layers, as a [`tower::Service`].
    pub fn service(&self, provider: &Arc<dyn CloudProvider>) -> BoxProviderService {
        let mut service = BoxCloneSyncService::new(ProviderService::new(Arc::clone(provider)));
        if let Some(limit) = self.timeout {
            service = BoxCloneSyncService::new(Timeout::new(service, limit));
        }
        if let Some(limiter) = &self.rate_limiter {
            service = BoxCloneSyncService::new(RateLimit::new(service, limiter.clone()));
        }
        if let Some(max) = self.concurrency_limit {
            service = BoxCloneSyncService::new(ConcurrencyLimit::new(service, max));
        }
        match &self.retry {
            Some(RetryLayer::PerProvider(config)) => {
                let policy = RetryPolicy::new(config.clone());
                service = BoxCloneSyncService::new(Retry::new(policy, service));
            }
            Some(RetryLayer::Shared(policy)) => {
                service = BoxCloneSyncService::new(Retry::new(policy.clone(), service));
            }
            None => {}
        }
        if self.tracing {
            let name = provider.info().name;
            service = BoxCloneSyncService::new(Trace::new(service, name));
        }
        service
    }
}
