//! The one HTTP/2 connection of a plugin launch, over its Unix socket or loopback TCP, with
//! AutoMTLS when asked for.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use snoozebot_core::Result;
use tokio::net::{TcpStream, UnixStream};

use super::plugin_error;
use crate::PluginAddress;
use crate::wire::{
    Handshake, Io, LaunchIdentity, PollLoop, RecvBody, TLS_SERVER_NAME, readable_only_tcp,
    readable_only_unix,
};

/// One HTTP/2 connection to the plugin, used directly as the clients' transport, on the `h2`
/// crate.
///
/// A call is unary: its request body (one gRPC message) is read whole first, then HEADERS and
/// DATA with END_STREAM are queued together, so the connection writes them in one go and the
/// plugin wakes once; no task is spawned per call (hyper's client spawned two, and sent the
/// body in a write of its own). tonic's `Channel` would add a buffer task on top, and reconnect
/// logic that supervision makes redundant: a broken connection means a broken plugin, which is
/// restarted with a new connection.
///
/// The caller writes its own request: after queuing it, the call polls the connection once on
/// its own thread ([`Driver::send`]), so the frames leave in one write without waking the
/// connection's task — on a multi-thread runtime that wake was a hop to a worker and back
/// before anything was sent, and the worker could send HEADERS before DATA was queued. Reading
/// stays with the task, woken by the socket.
#[derive(Clone)]
pub(super) struct Connection {
    sender: h2::client::SendRequest<Bytes>,
    driver: Arc<Driver>,
}

impl Connection {
    /// Whether the connection has ended (the plugin died, or closed it).
    pub(super) fn is_closed(&self) -> bool {
        self.driver.closed.load(Ordering::SeqCst)
    }
}

type H2Connection = h2::client::Connection<Box<dyn Io>, Bytes>;

/// Who polls the h2 connection: its task, and callers flushing what they queued.
///
/// Every poll uses the same waker, the [`PollLoop`]'s, so whatever h2 or the socket wakes
/// reaches the task — except while a caller is polling, when a wake only marks that the poll
/// must be repeated, which the caller then does itself.
struct Driver {
    connection: Mutex<Option<H2Connection>>,
    poll_loop: PollLoop,
    /// Set when the connection has ended (the plugin died, or closed it).
    closed: AtomicBool,
    plugin: String,
}

impl Driver {
    /// Polls the connection once with the shared waker; `true` when it has ended.
    fn poll_connection(&self, connection: &mut Option<H2Connection>) -> bool {
        let Some(running) = connection.as_mut() else {
            return true;
        };
        match Pin::new(running).poll(&mut Context::from_waker(self.poll_loop.waker())) {
            Poll::Pending => false,
            Poll::Ready(result) => {
                if let Err(error) = result {
                    tracing::debug!(plugin = %self.plugin, %error, "connection to the plugin ended");
                }
                *connection = None;
                self.closed.store(true, Ordering::SeqCst);
                true
            }
        }
    }

    /// Runs `queue` (which queues a request's frames) and writes them from the caller's thread:
    /// polls the connection until nothing woke it meanwhile, a few times at most (then the
    /// task goes on). The wake h2 sends on queuing is absorbed, so no worker is woken to send.
    /// If the connection is being polled already, its poller sees the frames.
    fn send<T>(&self, queue: impl FnOnce() -> T) -> T {
        const CALLER_POLLS: usize = 4;
        let Ok(mut connection) = self.connection.try_lock() else {
            return queue();
        };
        self.poll_loop.absorbing(|wakes| {
            let queued = queue();
            for _ in 0..CALLER_POLLS {
                wakes.take();
                if self.poll_connection(&mut connection) || !wakes.take() {
                    break;
                }
            }
            queued
        })
    }

    /// The connection's task: polls whenever woken, until the connection ends.
    fn poll_task(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_loop.register(cx.waker());
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.poll_connection(&mut connection) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// What a call can fail with below gRPC: the HTTP/2 connection or stream.
pub(super) type TransportError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<tonic::body::Body>> for Connection {
    type Response = http::Response<ResponseBody>;
    type Error = TransportError;
    type Future = futures_util::future::BoxFuture<
        'static,
        std::result::Result<Self::Response, TransportError>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<std::result::Result<(), TransportError>> {
        self.sender.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // The readied handle goes with the call; the connection keeps a fresh clone.
        let sender = self.sender.clone();
        let mut sender = std::mem::replace(&mut self.sender, sender);
        let driver = Arc::clone(&self.driver);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // Unary: one encoded message, bounded by the encoding limit of the client.
            let data = body.collect().await?.to_bytes();
            let head = http::Request::from_parts(parts, ());
            let response = driver.send(|| {
                let (response, mut stream) = sender.send_request(head, data.is_empty())?;
                if !data.is_empty() {
                    stream.send_data(data, true)?;
                }
                Ok::<_, h2::Error>(response)
            })?;
            let response = response.await?;
            Ok(response.map(|recv| ResponseBody {
                recv: Some(RecvBody::new(recv)),
                driver,
            }))
        })
    }
}

/// A response's body: its DATA frames, then its trailers (where gRPC puts the status).
pub(super) struct ResponseBody {
    /// `None` only while dropping.
    recv: Option<RecvBody>,
    driver: Arc<Driver>,
}

impl Drop for ResponseBody {
    /// Releasing the stream wakes the connection to clean up after it: done on the caller's
    /// thread, like a send, rather than by waking the connection's task.
    fn drop(&mut self) {
        let recv = self.recv.take();
        self.driver.send(|| drop(recv));
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, h2::Error>>> {
        match self.recv.as_mut() {
            Some(recv) => Pin::new(recv).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.as_ref().is_none_or(RecvBody::is_end_stream)
    }
}

/// The origin every request names: the connection decides where it goes.
pub(super) const ORIGIN: &str = "http://plugin.invalid";

pub(super) async fn connect(
    name: &str,
    handshake: &Handshake,
    identity: Option<&LaunchIdentity>,
) -> Result<Connection> {
    let tls = match (identity, &handshake.server_cert) {
        (Some(identity), Some(cert)) => {
            let cert = rustls::pki_types::CertificateDer::from(cert.clone());
            Some(tokio_rustls::TlsConnector::from(Arc::new(
                identity.client_config(cert)?,
            )))
        }
        (Some(_), None) => {
            return Err(plugin_error(
                name,
                "it answered without a certificate although AutoMTLS was asked for; \
                 it may be built with a go-plugin too old for AutoMTLS",
            ));
        }
        (None, Some(_)) => {
            return Err(plugin_error(
                name,
                "it sent a TLS certificate although AutoMTLS was not asked for",
            ));
        }
        (None, None) => None,
    };
    let stream: Box<dyn Io> = match &handshake.address {
        PluginAddress::Unix(path) => Box::new(
            UnixStream::connect(path)
                .await
                .and_then(readable_only_unix)
                .map_err(|error| {
                    plugin_error(
                        name,
                        format!("cannot connect to {}: {error}", path.display()),
                    )
                })?,
        ),
        PluginAddress::Tcp(addr) => Box::new(
            TcpStream::connect(addr)
                .await
                .and_then(readable_only_tcp)
                .map_err(|error| {
                    plugin_error(name, format!("cannot connect to {addr}: {error}"))
                })?,
        ),
    };
    let stream: Box<dyn Io> = match tls {
        None => stream,
        Some(connector) => {
            let server_name = rustls::pki_types::ServerName::try_from(TLS_SERVER_NAME)
                .map_err(|error| plugin_error(name, error))?;
            Box::new(
                connector
                    .connect(server_name, stream)
                    .await
                    .map_err(|error| {
                        plugin_error(name, format!("TLS handshake failed: {error}"))
                    })?,
            )
        }
    };
    // hyper's client windows: a large page of instances streams without waiting on a
    // window update every 64 KiB.
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(2 * 1024 * 1024)
        .initial_connection_window_size(5 * 1024 * 1024)
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(|error| plugin_error(name, format!("HTTP/2 handshake failed: {error}")))?;
    let driver = Arc::new(Driver {
        connection: Mutex::new(Some(connection)),
        poll_loop: PollLoop::new(),
        closed: AtomicBool::new(false),
        plugin: name.to_owned(),
    });
    let task = Arc::clone(&driver);
    tokio::spawn(std::future::poll_fn(move |cx| task.poll_task(cx)));
    Ok(Connection { sender, driver })
}
