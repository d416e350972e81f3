//! Which requests run now: instance routes (and agents' reports, which are about instances)
//! share a pool with a cap per provider, and the
//! control routes (plugins, the document) have a pool of their own, so one slow provider
//! starves neither the other providers nor the admin who would unload it. Past a pool: `503`
//! with `Retry-After: 1`, logged at `DEBUG` with a count now and then; past the time limit:
//! `504`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use snoozebot_core::{Error, ErrorKind, LogBudget};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::problem::ApiError;

/// Providers with a pool of their own at most; requests naming others share one (a caller
/// cannot grow the table with made-up names).
const MAX_TRACKED_PROVIDERS: usize = 256;

/// Marks a response as load shed, for the request log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shed;

static SHEDDING: LogBudget = LogBudget::new(1, Duration::from_secs(10));

/// The pools and the time limit.
#[derive(Clone)]
pub(crate) struct Admission {
    instances: Arc<Semaphore>,
    control: Arc<Semaphore>,
    per_provider: usize,
    providers: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    overflow: Arc<Semaphore>,
    timeout: Duration,
}

impl Admission {
    pub(crate) fn new(
        instances: usize,
        per_provider: usize,
        control: usize,
        timeout: Duration,
    ) -> Self {
        let per_provider = per_provider.clamp(1, instances.max(1));
        Admission {
            instances: Arc::new(Semaphore::new(instances.max(1))),
            control: Arc::new(Semaphore::new(control.max(1))),
            per_provider,
            providers: Arc::default(),
            overflow: Arc::new(Semaphore::new(per_provider)),
            timeout,
        }
    }

    /// The provider's pool; `None` for a name no provider can have.
    fn provider_pool(&self, name: &str) -> Option<Arc<Semaphore>> {
        snoozebot_core::manager::validate_provider_name(name).ok()?;
        let mut providers = match self.providers.lock() {
            Ok(providers) => providers,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(pool) = providers.get(name) {
            return Some(Arc::clone(pool));
        }
        if providers.len() >= MAX_TRACKED_PROVIDERS {
            return Some(Arc::clone(&self.overflow));
        }
        let pool = Arc::new(Semaphore::new(self.per_provider));
        providers.insert(name.to_owned(), Arc::clone(&pool));
        Some(pool)
    }

    /// The permits `path` needs, or the refusal.
    fn admit(&self, path: &str) -> Result<Permits, String> {
        // An agent's calls are about its provider's instance: that provider's pools.
        let Some(rest) = path
            .strip_prefix("/api/providers/")
            .or_else(|| path.strip_prefix("/api/agents/"))
        else {
            return try_acquire(&self.control)
                .map(|permit| Permits(permit, None))
                .ok_or_else(|| "too many plugin and document requests at once".to_owned());
        };
        let name = rest.split('/').next().unwrap_or_default();
        let shared = try_acquire(&self.instances)
            .ok_or_else(|| "too many instance requests at once".to_owned())?;
        let own = match self.provider_pool(name) {
            Some(pool) => Some(
                try_acquire(&pool)
                    .ok_or_else(|| format!("too many requests to provider {name} at once"))?,
            ),
            None => None,
        };
        Ok(Permits(shared, own))
    }
}

/// A request's permits, held while it runs: its pool's, and its provider's (no allocation).
pub(crate) struct Permits(
    #[allow(dead_code, reason = "held, not read")] OwnedSemaphorePermit,
    #[allow(dead_code, reason = "held, not read")] Option<OwnedSemaphorePermit>,
);

fn try_acquire(pool: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    Arc::clone(pool).try_acquire_owned().ok()
}

/// The answer to a request no pool has room for: `503` with `Retry-After: 1`, logged now and
/// then, marked [`Shed`] for the request log.
fn shed(reason: &str) -> Response {
    if let Some(held_back) = SHEDDING.admit() {
        tracing::info!(
            reason,
            shed_before = held_back,
            "shedding load (503); more in the last 10 s are counted in the next line"
        );
    } else {
        tracing::debug!(reason, "shedding load (503)");
    }
    let error = Error::new(
        ErrorKind::Unavailable,
        format!("{reason}; try again shortly"),
    )
    .with_retry_after(Duration::from_secs(1));
    let mut response = ApiError::from(error).into_response();
    response.extensions_mut().insert(Shed);
    response
}

/// The layer: admits each request into its pools for as long as it runs, within the time
/// limit. A tower layer of its own rather than `middleware::from_fn`, which boxes a future
/// and clones a boxed service for every request.
impl<S> tower::Layer<S> for Admission {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Admitted<S> {
        Admitted {
            admission: self.clone(),
            inner,
        }
    }
}

/// [`Admission`] in front of `S`.
#[derive(Clone)]
pub(crate) struct Admitted<S> {
    admission: Admission,
    inner: S,
}

impl<S> tower::Service<Request> for Admitted<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AdmittedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.admission.admit(request.uri().path()) {
            Ok(permits) => AdmittedFuture::Running {
                answer: tokio::time::timeout(self.admission.timeout, self.inner.call(request)),
                limit: self.admission.timeout,
                _permits: permits,
            },
            Err(reason) => AdmittedFuture::Shed {
                response: Some(shed(&reason)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// An admitted request running with its permits, or the answer of a shed one.
    #[project = AdmittedProjection]
    pub(crate) enum AdmittedFuture<F> {
        Running {
            #[pin]
            answer: tokio::time::Timeout<F>,
            limit: Duration,
            _permits: Permits,
        },
        Shed {
            response: Option<Response>,
        },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for AdmittedFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmittedProjection::Running { answer, limit, .. } => {
                Poll::Ready(Ok(match ready!(answer.poll(cx)) {
                    Ok(Ok(response)) => response,
                    Err(_elapsed) => ApiError::from(Error::new(
                        ErrorKind::Timeout,
                        format!("the request ran past its time limit of {limit:?}"),
                    ))
                    .into_response(),
                }))
            }
            AdmittedProjection::Shed { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    ApiError::from(Error::new(ErrorKind::Internal, "polled after its answer"))
                        .into_response()
                })))
            }
        }
    }
}
