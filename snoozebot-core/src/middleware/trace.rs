//! One tracing span per provider call: provider, operation, instance id, attempts, outcome and
//! latency, with the OpenTelemetry names collectors key on beside them.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service};
use tracing::Instrument;

use super::{ProviderRequest, ProviderResponse};
use crate::LogBudget;
use crate::error::{Error, Result};

/// Wraps each call in a `snoozebot.call` span and records how it ended.
///
/// Span fields: `provider`, `operation`, `instance_id` (single-instance calls), `batch_size`
/// (batch calls), `attempts` (recorded by the retry layer, when there is one), `outcome` (`ok` or the
/// [`ErrorKind`](crate::ErrorKind) name) and `latency_ms`. A failed call also logs one event at
/// `WARN` with the error — at most 10 every 10 s per provider, the others counted into the next
/// one's `held_back`, so a failing cloud cannot flood the log (the spans still say each one).
///
/// Beside them, the fields [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry)
/// turns into the span's name, kind and status and that OpenTelemetry's semantic conventions
/// name:
///
/// | field | value |
/// |---|---|
/// | `otel.name` | `PROVIDER/OPERATION` (`aws/stop_instance`), as RPC spans are named |
/// | `otel.kind` | `client` |
/// | `otel.status_code` | `ok`, or `error` for a failed call |
/// | `error.type` | the [`ErrorKind`](crate::ErrorKind) name of a failed call (`throttled`) |
/// | `rpc.system` | `snoozebot` |
/// | `rpc.service` | the provider's name |
/// | `rpc.method` | the operation (`stop_instances`) |
/// | `cloud.provider` | `aws`, `gcp` or `azure` for those providers; absent for others |
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    provider: String,
    failures: Arc<LogBudget>,
}

impl<S> Trace<S> {
    /// Traces calls on `inner`, naming them after `provider`.
    pub fn new(inner: S, provider: impl Into<String>) -> Self {
        Trace {
            inner,
            provider: provider.into(),
            failures: Arc::new(LogBudget::new(10, Duration::from_secs(10))),
        }
    }
}

impl<S> Service<ProviderRequest> for Trace<S>
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
        let batch_size = match &request {
            ProviderRequest::StopInstances(items, _) | ProviderRequest::StartInstances(items) => {
                Some(items.pending_ids().len())
            }
            _ => None,
        };
        let operation = request.operation();
        let span = tracing::info_span!(
            "snoozebot.call",
            provider = %self.provider,
            operation,
            instance_id = request.instance_id().map(|id| id.as_str()),
            batch_size,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
            otel.name = %RpcName(&self.provider, operation),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            error.r#type = tracing::field::Empty,
            rpc.system = "snoozebot",
            rpc.service = %self.provider,
            rpc.method = operation,
            cloud.provider = cloud_provider(&self.provider),
        );
        let call = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let started = Instant::now();
        let failures = Arc::clone(&self.failures);
        Box::pin(
            async move {
                let result = call.await;
                let span = tracing::Span::current();
                let micros = started.elapsed().as_micros() as f64;
                span.record("latency_ms", micros / 1000.0);
                match &result {
                    Ok(_) => {
                        span.record("outcome", "ok");
                        span.record("otel.status_code", "ok");
                    }
                    Err(error) => {
                        span.record("outcome", error.kind().as_str());
                        span.record("otel.status_code", "error");
                        span.record("error.type", error.kind().as_str());
                        if let Some(held_back) = failures.admit() {
                            tracing::warn!(error = %error, held_back, "provider call failed");
                        }
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

/// `PROVIDER/OPERATION`, written only when a subscriber reads the span.
struct RpcName<'a>(&'a str, &'static str);

impl std::fmt::Display for RpcName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.0, self.1)
    }
}

/// OpenTelemetry's `cloud.provider` for the providers that are one of its clouds.
fn cloud_provider(provider: &str) -> Option<&'static str> {
    match provider {
        "aws" => Some("aws"),
        "gcp" => Some("gcp"),
        "azure" => Some("azure"),
        _ => None,
    }
}

/// Applies [`Trace`].
#[derive(Debug, Clone)]
pub struct TraceLayer {
    provider: String,
}

impl TraceLayer {
    /// Names the spans after `provider`.
    pub fn new(provider: impl Into<String>) -> Self {
        TraceLayer {
            provider: provider.into(),
        }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace::new(inner, self.provider.clone())
    }
}
