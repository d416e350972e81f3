//! The one HTTP/2 connection of a plugin launch, over its Unix socket or loopback TCP, with
//! AutoMTLS when asked for.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use snoozebot_core::Result;
use tokio::net::{TcpStream, UnixStream};

use super::plugin_error;
use crate::PluginAddress;
use crate::wire::{Handshake, Io, LaunchIdentity, TLS_SERVER_NAME};

/// One HTTP/2 connection to the plugin, used directly as the clients' transport, on the `h2`
/// crate.
///
/// A call is unary: its request body (one gRPC message) is read whole first, then HEADERS and
/// DATA with END_STREAM are queued together, so the connection writes them in one go and the
/// plugin wakes once; no task is spawned per call (hyper's client spawned two, and sent the
/// body in a write of its own). tonic's `Channel` would add a buffer task on top, and reconnect
/// logic that supervision makes redundant: a broken connection means a broken plugin, which is
/// restarted with a new connection.
#[derive(Clone)]
pub(super) struct Connection {
    sender: h2::client::SendRequest<Bytes>,
    /// Set when the connection's task ends (the plugin died, or closed it).
    closed: Arc<AtomicBool>,
}

impl Connection {
    /// Whether the connection has ended (the plugin died, or closed it).
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
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
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // Unary: one encoded message, bounded by the encoding limit of the client.
            let data = body.collect().await?.to_bytes();
            let head = http::Request::from_parts(parts, ());
            let (response, mut stream) = sender.send_request(head, data.is_empty())?;
            if !data.is_empty() {
                stream.send_data(data, true)?;
            }
            let response = response.await?;
            Ok(response.map(|recv| ResponseBody {
                recv,
                data_done: false,
            }))
        })
    }
}

/// A response's body: its DATA frames, then its trailers (where gRPC puts the status).
pub(super) struct ResponseBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Read: the plugin may send as much again.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
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
        PluginAddress::Unix(path) => {
            Box::new(UnixStream::connect(path).await.map_err(|error| {
                plugin_error(
                    name,
                    format!("cannot connect to {}: {error}", path.display()),
                )
            })?)
        }
        PluginAddress::Tcp(addr) => {
            let stream = TcpStream::connect(addr).await.map_err(|error| {
                plugin_error(name, format!("cannot connect to {addr}: {error}"))
            })?;
            stream
                .set_nodelay(true)
                .map_err(|error| plugin_error(name, format!("cannot set TCP_NODELAY: {error}")))?;
            Box::new(stream)
        }
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
    let closed = Arc::new(AtomicBool::new(false));
    let ended = Arc::clone(&closed);
    let plugin = name.to_owned();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%plugin, %error, "connection to the plugin ended");
        }
        ended.store(true, Ordering::SeqCst);
    });
    Ok(Connection { sender, closed })
}
