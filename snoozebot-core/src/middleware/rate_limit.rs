//! A rate limit shared by every clone of a service, and by every provider given the same
//! [`RateLimiter`].
//!
//! tower's own `RateLimit` counts per service instance, so clones (and every call through a
//! cloned stack) would each get the full rate. Cloud API limits are per account and region,
//! which is why this limiter is a shared token bucket.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{ProviderRequest, ProviderResponse};
use crate::error::{Error, Result};

/// A token bucket: `per_second` tokens a second, at most `burst` saved up. Clones share it.
///
/// Callers beyond the rate wait their turn, in the order they asked: each takes a token ahead of
/// time and sleeps until it is due, so a burst of callers is spread out evenly.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    bucket: Arc<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    per_second: f64,
    burst: f64,
    /// Tokens available at `updated`; negative when callers have reserved future tokens.
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// Allows `per_second` calls a second on average, and bursts of up to `burst` calls.
    ///
    /// A rate that is not a positive number, or a zero burst, is refused with
    /// [`ErrorKind::Config`](crate::ErrorKind::Config).
    pub fn new(per_second: f64, burst: u32) -> Result<Self> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(Error::new(
                crate::ErrorKind::Config,
                format!(
                    "rate limit must be a positive number of calls per second, not {per_second}"
                ),
            ));
        }
        if burst == 0 {
            return Err(Error::new(
                crate::ErrorKind::Config,
                "rate limit burst must be at least 1",
            ));
        }
        let burst = f64::from(burst);
        Ok(RateLimiter {
            bucket: Arc::new(Mutex::new(Bucket {
                per_second,
                burst,
                tokens: burst,
                updated: Instant::now(),
            })),
        })
    }

    /// Takes a token, returning how long the caller must wait before using it.
    fn reserve(&self) -> Duration {
        let mut bucket = match self.bucket.lock() {
            Ok(bucket) => bucket,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        let refill = now.duration_since(bucket.updated).as_secs_f64() * bucket.per_second;
        bucket.tokens = (bucket.tokens + refill).min(bucket.burst);
        bucket.updated = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / bucket.per_second)
        }
    }

    /// Waits until the caller may make one call.
    pub async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Waits for a [`RateLimiter`] token before each call.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: RateLimiter,
}

impl<S> RateLimit<S> {
    /// Limits calls on `inner` with `limiter`.
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        RateLimit { inner, limiter }
    }
}

impl<S> Service<ProviderRequest> for RateLimit<S>
where
    S: Service<ProviderRequest, Response = ProviderResponse, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = ProviderResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<ProviderResponse>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        // Readiness of the inner service is awaited after the token, inside the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ProviderRequest) -> Self::Future {
        let limiter = self.limiter.clone();
        let mut inner = self.inner.clone();
        Box::pin(async move {
            limiter.acquire().await;
            futures_util::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            inner.call(request).await
        })
    }
}

/// Applies [`RateLimit`] with one shared [`RateLimiter`].
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
}

impl RateLimitLayer {
    /// Limits every service this layer wraps with the same `limiter`.
    pub fn new(limiter: RateLimiter) -> Self {
        RateLimitLayer { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit::new(inner, self.limiter.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokens_beyond_the_burst_are_spread_at_the_rate() {
        let limiter = RateLimiter::new(10.0, 2).unwrap();
        let waits: Vec<_> = (0..5).map(|_| limiter.reserve()).collect();
        assert_eq!(
            waits,
            [0, 0, 100, 200, 300].map(Duration::from_millis).to_vec()
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(limiter.reserve(), Duration::ZERO);
    }

    #[test]
    fn nonsense_rates_are_config_errors() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = RateLimiter::new(rate, 1).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config);
        }
        assert!(RateLimiter::new(1.0, 0).is_err());
    }
}
