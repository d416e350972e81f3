//! A time limit per call (per attempt, when below the retry layer), failing with
//! [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).

use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use super::{ProviderRequest, ProviderResponse};
use crate::error::{Error, ErrorKind, Result};

/// Fails a call that takes longer than a fixed duration with [`ErrorKind::Timeout`]; the call's
/// future is dropped, which cancels it.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Timeout<S> {
    /// Limits each call on `inner` to `limit`.
    pub fn new(inner: S, limit: Duration) -> Self {
        Timeout { inner, limit }
    }
}

impl<S> Service<ProviderRequest> for Timeout<S>
where
    S: Service<ProviderRequest, Response = ProviderResponse, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = ProviderResponse;
    type Error = Error;
    type Future = BoxFuture<'static, Result<ProviderResponse>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ProviderRequest) -> Self::Future {
        let operation = request.operation();
        let limit = self.limit;
        let call = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_elapsed) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{operation} did not finish within {limit:?}"),
                )),
            }
        })
    }
}

/// Applies [`Timeout`].
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// Limits each call to `limit`.
    pub fn new(limit: Duration) -> Self {
        TimeoutLayer { limit }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout::new(inner, self.limit)
    }
}
