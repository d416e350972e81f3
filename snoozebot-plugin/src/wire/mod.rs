//! What both sides of the plugin wire share: the handshake, the model's wire form and its
//! errors as gRPC statuses, AutoMTLS, and the byte stream a connection runs on.

#[cfg(any(feature = "host", feature = "serve"))]
mod body;
mod convert;
#[cfg(any(feature = "host", feature = "serve"))]
pub(crate) mod grpc;
mod handshake;
#[cfg(any(feature = "host", feature = "serve"))]
mod stream;
mod tls;
#[cfg(any(feature = "host", feature = "serve"))]
mod wake;

use tokio::io::{AsyncRead, AsyncWrite};

pub use convert::ERROR_DOMAIN;
pub(crate) use convert::*;
pub use handshake::{
    APP_PROTOCOL_VERSION, CORE_PROTOCOL_VERSION, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE,
    PluginAddress,
};
pub(crate) use handshake::{
    CLIENT_CERT_ENV, Handshake, PRIVATE_TMP_ENV, PRIVATE_TMP_PREFIX, PROTOCOL_VERSIONS_ENV,
    negotiate, versions_env_value,
};
#[cfg(any(feature = "host", feature = "serve"))]
pub(crate) use stream::{tcp as readable_only_tcp, unix as readable_only_unix};
pub(crate) use tls::{LaunchIdentity, TLS_SERVER_NAME, parse_host_cert};
#[cfg(all(test, feature = "host"))]
pub(crate) use wake::counting;
#[cfg(any(feature = "host", feature = "serve"))]
pub(crate) use {body::RecvBody, wake::PollLoop};

/// Any connection, plain or TLS, Unix socket or TCP, as one stream type.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}
