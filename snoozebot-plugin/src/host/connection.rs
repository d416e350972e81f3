//! The one HTTP/2 connection of a plugin launch, over its Unix socket or loopback TCP, with
//! AutoMTLS when asked for.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use snoozebot_core::Result;
use tokio::net::{TcpStream, UnixStream};

use super::plugin_error;
use crate::PluginAddress;
use crate::wire::{Handshake, Io, LaunchIdentity, TLS_SERVER_NAME};

/// One HTTP/2 connection to the plugin, used directly as the clients' transport.
///
/// tonic's `Channel` would add a buffer task between each call and the connection (a task
/// hop per call, which costs more than the call itself on a busy multi-threaded runtime) and
/// reconnect logic that supervision makes redundant: a broken connection means a broken
/// plugin, which is restarted with a new connection.
#[derive(Clone)]
pub(super) struct Connection {
    sender: hyper::client::conn::http2::SendRequest<tonic::body::Body>,
}

impl Connection {
    /// Whether the connection has ended (the plugin died, or closed it).
    pub(super) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Connection {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        futures_util::future::BoxFuture<'static, std::result::Result<Self::Response, hyper::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), hyper::Error>> {
        self.sender.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.sender.send_request(request))
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
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| plugin_error(name, format!("HTTP/2 handshake failed: {error}")))?;
    let plugin = name.to_owned();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%plugin, %error, "connection to the plugin ended");
        }
    });
    Ok(Connection { sender })
}
