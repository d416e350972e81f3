//! What the fake cloud servers share: an axum server on a free 127.0.0.1 port that stops when
//! its handle is dropped, and a lock that outlives a panicked test.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use axum::Router;
use tokio::sync::oneshot;

/// A running server; dropping it stops it.
#[derive(Debug)]
pub(crate) struct LoopbackServer {
    pub(crate) address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl LoopbackServer {
    /// Binds a free 127.0.0.1 port and serves `router` (built from the bound address).
    ///
    /// # Panics
    ///
    /// If no port can be bound: a test cannot go on without its fake.
    pub(crate) async fn start(what: &str, router: impl FnOnce(SocketAddr) -> Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("the {what} cannot bind 127.0.0.1: {error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("the {what} has no address: {error}"));
        let router = router(address);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        LoopbackServer {
            address,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Locks a fake's state; a test that panicked while holding it has already failed.
pub(crate) fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    match state.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
