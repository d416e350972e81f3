//! The REST server's accept loop: HTTP/1.1 connections with a header-read timeout, a cap on
//! open connections that closes the longest-idle one to make room (so a crowd of half-open
//! connections cannot lock out a client that sends its request), and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use snoozebot_core::LogBudget;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::refusals::ProblemRefusals;

/// The listen backlog [`bind`] asks for (Linux caps it at `net.core.somaxconn`, 4096 by
/// default). Tokio's `TcpListener::bind` asks for 1024; a flood of connections overflows that,
/// and every client whose handshake is dropped waits a second or more to retry (measured: 10,000
/// connections took 35 s to open with 1024, 0.2 s with 4096).
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `address` for [`serve`](crate::serve), with [`LISTEN_BACKLOG`] and
/// `SO_REUSEADDR`.
pub fn bind(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How the server treats connections.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Open connections at most (default 10,000, and never more than the process's open-file
    /// limit leaves room for, less 256). At the cap, a new connection is taken in and the
    /// connection idle the longest — one with no request in flight, most likely one that never
    /// finished its headers — is closed for it.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (default 10 s); then the
    /// connection is closed.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may stay idle between requests (default 60 s).
    pub idle_timeout: Duration,
    /// TLS for every connection (default none: plain HTTP); the handshake must complete within
    /// `header_read_timeout`. See [`tls_config`](crate::tls_config).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls: None,
        }
    }
}

impl ServeOptions {
    /// Sets the cap on open connections.
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets the time a client has to send its request headers.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets how long a connection may stay idle between requests.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Serves HTTPS with `config` (for instance from [`tls_config`](crate::tls_config)).
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// The cap, within what the open-file limit allows.
    fn connection_cap(&self) -> usize {
        let files = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(u64::MAX, |(soft, _)| soft);
        let room = usize::try_from(files.saturating_sub(256)).unwrap_or(usize::MAX);
        self.max_connections.min(room).max(1)
    }
}

/// One open connection, as the cap sees it.
struct Tracked {
    /// Requests being answered on it.
    in_flight: usize,
    /// When it last began or finished a request (or was accepted).
    last_active: Instant,
    close: Arc<Notify>,
    /// Told to close to make room; no longer counted against the cap.
    closing: bool,
}

/// The open connections, for the cap and the idle timeout.
#[derive(Default)]
struct Connections {
    inner: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    connections: HashMap<u64, Tracked>,
    /// How many of them are closing.
    closing: usize,
}

impl Open {
    fn counted(&self) -> usize {
        self.connections.len() - self.closing
    }
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        match self.inner.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Makes room for one more under `cap`: at the cap, tells the idlest connections to close,
    /// a sixty-fourth of the cap at once, so that a flood costs one scan per batch rather than
    /// one per connection. `false` when every connection has a request in flight.
    fn make_room(&self, cap: usize) -> bool {
        let mut open = self.lock();
        if open.counted() < cap {
            return true;
        }
        let mut idle: Vec<(Instant, u64)> = open
            .connections
            .iter()
            .filter(|(_, tracked)| tracked.in_flight == 0 && !tracked.closing)
            .map(|(id, tracked)| (tracked.last_active, *id))
            .collect();
        if idle.is_empty() {
            return false;
        }
        let batch = (cap / 64).clamp(1, idle.len());
        if batch < idle.len() {
            idle.select_nth_unstable(batch - 1);
        }
        for (_, id) in &idle[..batch] {
            if let Some(tracked) = open.connections.get_mut(id) {
                tracked.closing = true;
                tracked.close.notify_one();
            }
        }
        open.closing += batch;
        true
    }

    fn insert(&self, id: u64, close: Arc<Notify>) {
        self.lock().connections.insert(
            id,
            Tracked {
                in_flight: 0,
                last_active: Instant::now(),
                close,
                closing: false,
            },
        );
    }

    fn remove(&self, id: u64) {
        let mut open = self.lock();
        if open
            .connections
            .remove(&id)
            .is_some_and(|gone| gone.closing)
        {
            open.closing -= 1;
        }
    }

    fn begin(&self, id: u64) {
        if let Some(tracked) = self.lock().connections.get_mut(&id) {
            tracked.in_flight += 1;
            tracked.last_active = Instant::now();
        }
    }

    fn end(&self, id: u64) {
        if let Some(tracked) = self.lock().connections.get_mut(&id) {
            tracked.in_flight = tracked.in_flight.saturating_sub(1);
            tracked.last_active = Instant::now();
        }
    }

    /// How long `id` has been idle; `None` while it answers a request.
    fn idle_for(&self, id: u64) -> Option<Duration> {
        let open = self.lock();
        let tracked = open.connections.get(&id)?;
        (tracked.in_flight == 0).then(|| tracked.last_active.elapsed())
    }
}

/// Marks a request in flight on its connection until dropped (the response is written).
struct InFlight {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.connections.end(self.id);
    }
}

static ACCEPT_ERRORS: LogBudget = LogBudget::new(1, Duration::from_secs(10));
static EVICTIONS: LogBudget = LogBudget::new(1, Duration::from_secs(10));

/// Serves `router` on `listener` with `options` until `shutdown` completes, then stops
/// accepting and lets the requests in flight finish (graceful shutdown).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = options.connection_cap();
    let acceptor = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let connections = Arc::new(Connections::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connection tasks as we go.
        while tasks.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: make room, and say so now and then.
                if ACCEPT_ERRORS.admit().is_some() {
                    tracing::warn!(%error, "cannot accept a connection");
                }
                connections.make_room(1);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !connections.make_room(cap) {
            // Every connection is busy with a request: this one cannot be taken in now.
            drop(stream);
            continue;
        }
        if connections.lock().counted() >= cap
            && let Some(held_back) = EVICTIONS.admit()
        {
            tracing::info!(
                cap,
                held_back,
                "connection cap reached: closing the connections idle longest"
            );
        }
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let close = Arc::new(Notify::new());
        connections.insert(id, Arc::clone(&close));
        let served = Served {
            id,
            router: router.clone(),
            connections: Arc::clone(&connections),
            close,
            options: options.clone(),
            stop: stop_rx.clone(),
        };
        match &acceptor {
            None => {
                tasks.spawn(served.connection(stream));
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                let limit = options.header_read_timeout;
                tasks.spawn(async move {
                    match tokio::time::timeout(limit, handshake).await {
                        Ok(Ok(stream)) => served.connection(stream).await,
                        // A client that is not TLS, or too slow for it: closed.
                        _ => served.connections.remove(served.id),
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// What a connection's task needs.
struct Served {
    id: u64,
    router: Router,
    connections: Arc<Connections>,
    close: Arc<Notify>,
    options: ServeOptions,
    stop: watch::Receiver<bool>,
}

impl Served {
    /// One connection, until it ends, is closed to make room, idles too long, or the server
    /// stops (then it finishes its request first).
    async fn connection<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Served {
            id,
            router,
            connections,
            close,
            options,
            mut stop,
        } = self;
        let io = TokioIo::new(ProblemRefusals::new(stream));
        let tracker = Arc::clone(&connections);
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            tracker.begin(id);
            let in_flight = InFlight {
                connections: Arc::clone(&tracker),
                id,
            };
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await;
                drop(in_flight);
                response
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout)
            .keep_alive(true);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut stopping = false;
        let idle_check = options
            .idle_timeout
            .min(Duration::from_secs(5))
            .max(Duration::from_millis(100));
        let mut ticker = tokio::time::interval(idle_check);
        loop {
            tokio::select! {
                _ = conn.as_mut() => break,
                () = close.notified() => break,
                changed = stop.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                _ = ticker.tick() => {
                    if connections.idle_for(id).is_some_and(|idle| idle >= options.idle_timeout) {
                        break;
                    }
                }
            }
        }
        connections.remove(id);
    }
}
