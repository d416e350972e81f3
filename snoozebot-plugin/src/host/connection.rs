//! The one HTTP/2 connection of a plugin launch, over its Unix socket or loopback TCP, with
//! AutoMTLS when asked for.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use snoozebot_core::Result;
use tokio::net::{TcpStream, UnixStream};

use super::plugin_error;
use crate::PluginAddress;
use crate::wire::{
    Handshake, Io, LaunchIdentity, PollLoop, RecvBody, TLS_SERVER_NAME, grpc, readable_only_tcp,
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
    fn new(connection: Option<H2Connection>, plugin: &str) -> Self {
        Driver {
            connection: Mutex::new(connection),
            poll_loop: PollLoop::new(),
            closed: AtomicBool::new(false),
            plugin: plugin.to_owned(),
        }
    }

    /// The connection, unless someone is polling it (a panic in a poll does not keep it).
    fn try_connection(&self) -> Option<MutexGuard<'_, Option<H2Connection>>> {
        match self.connection.try_lock() {
            Ok(connection) => Some(connection),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

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
    ///
    /// The connection is let go before wakes stop being absorbed, so the task, woken by a wake
    /// this loop left, finds it free.
    fn send<T>(&self, queue: impl FnOnce() -> T) -> T {
        const CALLER_POLLS: usize = 4;
        let Some(connection) = self.try_connection() else {
            return queue();
        };
        self.poll_loop.absorbing(|wakes| {
            let mut connection = connection;
            let queued = queue();
            wakes.repeat(CALLER_POLLS, || {
                self.poll_connection(&mut connection).then_some(())
            });
            drop(connection);
            queued
        })
    }

    /// The connection's task: polls whenever woken, until the connection ends. While a
    /// caller polls, the task passes: the caller sees what woke it, and sends a wake it leaves
    /// here (on a multi-thread runtime, waiting for the caller blocked a worker).
    fn poll_task(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_loop.register(cx.waker());
        let Some(mut connection) = self.try_connection() else {
            return Poll::Pending;
        };
        if self.poll_connection(&mut connection) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Connection {
    /// Calls the unary method at `uri` (the origin and the method's path) with `request`.
    ///
    /// The request leaves as one buffer (the message behind its gRPC prefix) with its HEADERS,
    /// written by the caller ([`Driver::send`]); the answer is read whole and decoded with
    /// prost, its status taken from the trailers (or from the headers of a trailers-only
    /// answer). tonic's generated client would run each call through its codec streams and a
    /// boxed body. A broken connection is a status whose source is the [`h2::Error`], as
    /// tonic makes it.
    pub(super) async fn unary<Answer: prost::Message + Default>(
        &self,
        uri: &'static http::Uri,
        request: &impl prost::Message,
    ) -> std::result::Result<Answer, tonic::Status> {
        let broken = |error: h2::Error| tonic::Status::from_error(Box::new(error));
        let message = grpc::encode(request)?;
        let mut head = http::Request::new(());
        *head.method_mut() = http::Method::POST;
        *head.uri_mut() = uri.clone();
        let headers = head.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        let mut sender = self.sender.clone();
        std::future::poll_fn(|cx| sender.poll_ready(cx))
            .await
            .map_err(broken)?;
        let response = self
            .driver
            .send(|| {
                let (response, mut stream) = sender.send_request(head, false)?;
                stream.send_data(message, true)?;
                Ok::<_, h2::Error>(response)
            })
            .map_err(broken)?;
        let (head, recv) = response.await.map_err(broken)?.into_parts();
        let mut body = Released {
            recv: Some(recv),
            driver: &self.driver,
        };
        if head.status != http::StatusCode::OK {
            return Err(status_of_http(head.status));
        }
        if !head.headers.contains_key(GRPC_STATUS) {
            // The usual case: the message follows, then the trailers.
        } else if let Some(status) = tonic::Status::from_header_map(&head.headers) {
            // Trailers-only: an answer without a message.
            return Err(if status.code() == tonic::Code::Ok {
                tonic::Status::internal("the plugin answered OK without a message")
            } else {
                status
            });
        }
        let Some(recv) = body.recv.as_mut() else {
            return Err(tonic::Status::internal("the answer's stream is gone"));
        };
        let data = grpc::read_data(recv).await?;
        let trailers = std::future::poll_fn(|cx| recv.poll_trailers(cx))
            .await
            .map_err(broken)?;
        let succeeded = trailers
            .as_ref()
            .and_then(|trailers| trailers.get(GRPC_STATUS))
            .is_some_and(|status| status == "0");
        // Success needs no parsing of the rest (`grpc-message`, details).
        if !succeeded {
            match trailers.as_ref().and_then(tonic::Status::from_header_map) {
                Some(status) if status.code() == tonic::Code::Ok => {}
                Some(status) => return Err(status),
                None => {
                    return Err(tonic::Status::internal(
                        "the plugin's answer ended without a grpc-status",
                    ));
                }
            }
        }
        Answer::decode(grpc::unframe(data)?).map_err(|error| {
            tonic::Status::internal(format!("the answer does not decode: {error}"))
        })
    }
}

/// The header (or trailer) that carries a gRPC status.
const GRPC_STATUS: &str = "grpc-status";

/// An answer's stream, released on the caller's thread when dropped (see [`ResponseBody`]).
struct Released<'a> {
    recv: Option<h2::RecvStream>,
    driver: &'a Driver,
}

impl Drop for Released<'_> {
    fn drop(&mut self) {
        let recv = self.recv.take();
        self.driver.send(|| drop(recv));
    }
}

/// The status of an answer that is not HTTP 200, as gRPC maps HTTP statuses.
fn status_of_http(status: http::StatusCode) -> tonic::Status {
    use tonic::Code;
    let code = match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    tonic::Status::new(code, format!("the plugin answered HTTP {status}"))
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

/// The URI of a `snoozebot.plugin.v1.CloudProvider` method, for [`Connection::unary`]: the
/// [`ORIGIN`] and the method's path, parsed once: parsing it on every call cost about 540
/// instructions, cloning the parsed URI costs a few dozen.
macro_rules! method {
    ($name:literal) => {{
        static URI: std::sync::LazyLock<http::Uri> = std::sync::LazyLock::new(|| {
            http::Uri::from_static(concat!(
                "http://plugin.invalid/snoozebot.plugin.v1.CloudProvider/",
                $name
            ))
        });
        &*URI
    }};
}
pub(super) use method;

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
    let driver = Arc::new(Driver::new(Some(connection), name));
    let task = Arc::clone(&driver);
    tokio::spawn(std::future::poll_fn(move |cx| task.poll_task(cx)));
    Ok(Connection { sender, driver })
}

#[cfg(test)]
mod tests {
    use super::super::client::is_broken_connection;
    use super::*;
    use crate::proto::v1 as pb;

    /// How the test plugin answers a call.
    #[derive(Clone, Copy, Debug)]
    enum Answer {
        /// `Info`'s answer, right.
        Info,
        HttpError,
        TrailersOnly,
        /// A message, then an error status in the trailers.
        ErrorAfterMessage,
        NoTrailers,
        NotProtobuf,
        TwoMessages,
        Compressed,
        /// Never answers: closes the connection instead.
        HangUp,
    }

    /// A test plugin's socket, `plugin.sock` in a directory of its own.
    fn listen() -> (tempfile::TempDir, tokio::net::UnixListener) {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::UnixListener::bind(dir.path().join("plugin.sock")).unwrap();
        (dir, listener)
    }

    /// Our connection to the test plugin listening in `dir` ([`listen`]), plain text.
    async fn connect_to(dir: &tempfile::TempDir) -> Connection {
        let handshake = Handshake {
            core_version: 1,
            app_version: 1,
            address: PluginAddress::Unix(dir.path().join("plugin.sock")),
            server_cert: None,
        };
        connect("test", &handshake, None).await.unwrap()
    }

    fn framed(message: &[u8], compressed: bool) -> Vec<u8> {
        let mut body = vec![u8::from(compressed)];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
        body
    }

    /// A plugin on the h2 crate that answers every call with `answer`; the code of the status
    /// [`Connection::unary`] returns for an `Info` call to it (or `Ok`, with the name).
    async fn info_from(answer: Answer) -> Result<String, tonic::Status> {
        use prost::Message as _;
        let (dir, listener) = listen();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut connection = h2::server::handshake(stream).await.unwrap();
            while let Some(Ok((_request, mut respond))) = connection.accept().await {
                let ok = || {
                    http::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap()
                };
                let mut status = http::HeaderMap::new();
                status.insert("grpc-status", http::HeaderValue::from_static("0"));
                let info = pb::ProviderInfo {
                    name: "test".into(),
                    ..Default::default()
                }
                .encode_to_vec();
                let (body, trailers) = match answer {
                    Answer::HangUp => return,
                    Answer::HttpError => {
                        let head = http::Response::builder().status(503).body(()).unwrap();
                        respond.send_response(head, true).unwrap();
                        continue;
                    }
                    Answer::TrailersOnly => {
                        let mut head = ok();
                        head.headers_mut()
                            .insert("grpc-status", http::HeaderValue::from_static("5"));
                        respond.send_response(head, true).unwrap();
                        continue;
                    }
                    Answer::Info => (framed(&info, false), Some(status)),
                    Answer::ErrorAfterMessage => {
                        let mut status = http::HeaderMap::new();
                        status.insert("grpc-status", http::HeaderValue::from_static("5"));
                        (framed(&info, false), Some(status))
                    }
                    Answer::NoTrailers => (framed(&info, false), None),
                    Answer::NotProtobuf => (framed(&[0xff; 3], false), Some(status)),
                    Answer::TwoMessages => (
                        [framed(&info, false), framed(&info, false)].concat(),
                        Some(status),
                    ),
                    Answer::Compressed => (framed(&info, true), Some(status)),
                };
                let mut send = respond.send_response(ok(), false).unwrap();
                send.send_data(body.into(), trailers.is_none()).unwrap();
                if let Some(trailers) = trailers {
                    send.send_trailers(trailers).unwrap();
                }
            }
        });
        let connection = connect_to(&dir).await;
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            connection.unary::<pb::ProviderInfo>(method!("Info"), &pb::InfoRequest {}),
        )
        .await
        .expect("the call never ended");
        drop(dir);
        answer.map(|info| info.name)
    }

    #[tokio::test]
    async fn a_right_answer_is_its_message() {
        assert_eq!(info_from(Answer::Info).await.unwrap(), "test");
    }

    #[tokio::test]
    async fn wrong_answers_are_statuses_promptly() {
        use tonic::Code;
        for (answer, code) in [
            (Answer::HttpError, Code::Unavailable),
            (Answer::TrailersOnly, Code::NotFound),
            (Answer::ErrorAfterMessage, Code::NotFound),
            (Answer::NoTrailers, Code::Internal),
            (Answer::NotProtobuf, Code::Internal),
            (Answer::TwoMessages, Code::Internal),
            (Answer::Compressed, Code::Unimplemented),
        ] {
            let status = info_from(answer).await.unwrap_err();
            assert_eq!(status.code(), code, "{answer:?}: {status}");
            assert!(!is_broken_connection(&status), "{answer:?}: {status}");
        }
    }

    #[tokio::test]
    async fn a_plugin_that_hangs_up_under_a_call_is_a_broken_connection() {
        let status = info_from(Answer::HangUp).await.unwrap_err();
        assert!(is_broken_connection(&status), "{status}");
    }

    /// A call given up by its caller (dropped, as a timeout drops it) is reset on the wire, so
    /// the plugin stops working on it (see `serve/http2.rs`).
    #[tokio::test]
    async fn a_dropped_call_is_reset_on_the_wire() {
        let (dir, listener) = listen();
        let (reason_tx, reason_rx) = tokio::sync::oneshot::channel();
        let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut connection = h2::server::handshake(stream).await.unwrap();
            let (_request, mut respond) = connection.accept().await.unwrap().unwrap();
            let _ = accepted_tx.send(());
            // Keep the connection going while waiting for the reset; never answer.
            let reset = std::future::poll_fn(|cx| respond.poll_reset(cx));
            tokio::select! {
                biased;
                reason = reset => { let _ = reason_tx.send(reason.ok()); }
                _ = connection.accept() => {}
            }
        });
        let connection = connect_to(&dir).await;
        // The connection outlives the call, as a client's does.
        let _kept = connection.clone();
        let call = tokio::spawn(async move {
            connection
                .unary::<pb::ProviderInfo>(method!("Info"), &pb::InfoRequest {})
                .await
        });
        accepted_rx.await.unwrap();
        // The caller gives up, as a timeout around the call would.
        call.abort();
        let reason = tokio::time::timeout(std::time::Duration::from_secs(10), reason_rx)
            .await
            .expect("the plugin never heard the call was given up")
            .unwrap();
        assert_eq!(reason, Some(h2::Reason::CANCEL));
    }

    #[test]
    fn the_connections_task_passes_while_a_caller_polls() {
        // One worker: a task that blocks it stops every other task.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let driver = Arc::new(Driver::new(None, "test"));
        // A caller in the middle of its poll.
        let polling = driver.connection.lock().unwrap();
        let task = Arc::clone(&driver);
        runtime.spawn(std::future::poll_fn(move |cx| task.poll_task(cx)));
        let (ran, other_task) = std::sync::mpsc::channel();
        runtime.spawn(async move { ran.send(()).unwrap() });
        let worker_free = other_task.recv_timeout(std::time::Duration::from_secs(10));
        drop(polling);
        runtime.shutdown_background();
        assert!(
            worker_free.is_ok(),
            "the connection's task blocked its worker waiting for the caller"
        );
    }

    /// A socket that is always busy: every read finds nothing yet and wakes its reader again.
    struct Busy;

    impl tokio::io::AsyncRead for Busy {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    impl tokio::io::AsyncWrite for Busy {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bytes: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Ok(bytes.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_caller_that_stops_polling_a_busy_connection_leaves_the_wake_to_the_task() {
        let busy: Box<dyn Io> = Box::new(Busy);
        let (_sender, connection) = h2::client::handshake(busy).await.unwrap();
        let driver = Driver::new(Some(connection), "test");
        let (task, waker) = crate::wire::counting::counted();
        driver.poll_loop.register(&waker);
        // Every poll is woken again: the caller gives up after a few, and the last wake must
        // reach the task — lost, the connection would not be polled until something else woke
        // it (every call waiting on it hung until the next health check).
        driver.send(|| ());
        assert_eq!(task.get(), 1, "the wake of the caller's last poll was lost");
    }

    #[test]
    fn method_uris_name_the_origin_and_the_service() {
        assert_eq!(
            method!("GetInstance").to_string(),
            format!("{ORIGIN}/snoozebot.plugin.v1.CloudProvider/GetInstance")
        );
    }
}
