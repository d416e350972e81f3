//! The plugin's HTTP/2 server on the `h2` crate: every call of a host connection answered in
//! that connection's own task.
//!
//! tonic's server (hyper's) spawns a task per request and another hop to send its body: the
//! connection's task reads the request, the request's task runs it and queues the answer,
//! the connection's task is woken again to write it. Here the connection's task does all three
//! in one poll — it accepts the request, polls the call, and, woken by nothing but its own
//! queuing ([`PollLoop`]), polls the connection again so the answer's HEADERS, DATA and
//! trailers leave in one write.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http_body::Body as _;
use http_body_util::BodyExt;
use tonic::Status;
use tonic::body::Body;
use tonic::service::Routes;
use tower::Service;

use super::ProviderService;
use super::unary;
use crate::wire::{Io, PollLoop, RecvBody, grpc};

/// Streams a host may have open at once (hyper's server default).
const MAX_CONCURRENT_STREAMS: u32 = 200;
/// The largest header block a host may send (hyper's server default).
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// How much of an answer may wait for the host's flow-control window (hyper's default).
const MAX_SEND_BUFFER_SIZE: usize = 400 * 1024;
/// Receive windows: a request of a few MiB arrives without waiting on window updates.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;
/// How often one poll of the connection repeats itself for its own wakes before it lets other
/// tasks run (and is woken again).
const POLLS_PER_WAKE: usize = 8;

type Call = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a connection answers: the provider's methods straight ([`unary`]), the rest (health,
/// controller, broker, stdio) through tonic's routes.
#[derive(Clone)]
pub(super) struct Services {
    pub(super) provider: Arc<ProviderService>,
    pub(super) routes: Routes,
}

/// Serves one host connection until it closes or fails.
pub(super) async fn serve_connection(io: Box<dyn Io>, services: Services) {
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER_SIZE)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(io);
    let connection = match tokio::time::timeout(Duration::from_secs(10), handshake).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::debug!(%error, "HTTP/2 handshake with the host failed");
            return;
        }
        Err(_) => {
            tracing::debug!("HTTP/2 handshake with the host timed out");
            return;
        }
    };
    let mut served = Served {
        connection,
        calls: FuturesUnordered::new(),
        services,
        poll_loop: PollLoop::new(),
        accepting: true,
    };
    std::future::poll_fn(|cx| served.poll(cx)).await;
}

struct Served {
    connection: h2::server::Connection<Box<dyn Io>, Bytes>,
    calls: FuturesUnordered<Call>,
    services: Services,
    poll_loop: PollLoop,
    /// The connection still yields requests (it has not closed).
    accepting: bool,
}

impl Served {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_loop.register(cx.waker());
        let poll_loop = &self.poll_loop;
        let connection = &mut self.connection;
        let calls = &mut self.calls;
        let services = &self.services;
        let accepting = &mut self.accepting;
        poll_loop.absorbing(|wakes| {
            let mut cx = Context::from_waker(poll_loop.waker());
            let ended = wakes.repeat(POLLS_PER_WAKE, || {
                // Reads what came, writes what was queued, and yields new requests.
                while *accepting {
                    match connection.poll_accept(&mut cx) {
                        Poll::Ready(Some(Ok((request, respond)))) => {
                            calls.push(Box::pin(answer(services, request, respond)));
                        }
                        Poll::Ready(Some(Err(error))) => {
                            tracing::debug!(%error, "the host's connection failed");
                            return Some(());
                        }
                        Poll::Ready(None) => *accepting = false,
                        Poll::Pending => break,
                    }
                }
                while let Poll::Ready(Some(())) = calls.poll_next_unpin(&mut cx) {}
                // A closed connection can send nothing more: its calls end with it.
                (!*accepting).then_some(())
            });
            match ended {
                Some(()) => Poll::Ready(()),
                None => Poll::Pending,
            }
        })
    }
}

/// Runs one call and sends its answer: HEADERS, then the body's frames as the host's window
/// allows, then the trailers.
fn answer(
    services: &Services,
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) -> impl Future<Output = ()> + Send + 'static {
    let deadline = grpc_timeout(request.headers());
    let provider = unary::serves(request.uri().path()).then(|| Arc::clone(&services.provider));
    let routes = services.routes.clone();
    async move {
        let deadline = match deadline {
            Ok(deadline) => deadline,
            Err(()) => {
                let status = Status::invalid_argument("malformed grpc-timeout header");
                let _ = respond.send_response(status.into_http::<()>(), true);
                return;
            }
        };
        match provider {
            Some(provider) => answer_unary(&provider, request, respond, deadline).await,
            None => answer_routed(routes, request, respond, deadline).await,
        }
    }
}

/// How a call that ran out of its `grpc-timeout` is answered.
fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("the call's grpc-timeout passed")
}

/// A provider method: one message in, one out, encoded here ([`unary`]).
async fn answer_unary(
    provider: &Arc<ProviderService>,
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    deadline: Option<Duration>,
) {
    let (head, mut body) = request.into_parts();
    let answered = async {
        let message = grpc::read_message(&mut body).await?;
        unary::call(provider, head.uri.path(), message).await
    };
    let answered = async {
        match deadline {
            None => answered.await,
            Some(deadline) => tokio::time::timeout(deadline, answered)
                .await
                .unwrap_or_else(|_| Err(deadline_exceeded())),
        }
    };
    // A host that gives up on the call (RST_STREAM: its caller timed out or went away) stops
    // it here too: the provider's future is dropped rather than left running.
    let mut answered = std::pin::pin!(answered);
    let answered = std::future::poll_fn(|cx| {
        if let Poll::Ready(answered) = answered.as_mut().poll(cx) {
            return Poll::Ready(Some(answered));
        }
        respond.poll_reset(cx).map(|_| None)
    })
    .await;
    let Some(answered) = answered else {
        tracing::debug!("the host cancelled the call");
        return;
    };
    let encoded = match answered {
        Ok(encoded) => encoded,
        Err(status) => {
            // Trailers-only: the status in the one HEADERS frame.
            let _ = respond.send_response(status.into_http::<()>(), true);
            return;
        }
    };
    let mut head = http::Response::new(());
    head.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    let sent = respond.send_response(head, false).and_then(|mut send| {
        send.send_data(encoded, false)?;
        let mut trailers = http::HeaderMap::with_capacity(1);
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        send.send_trailers(trailers)
    });
    if let Err(error) = sent {
        tracing::debug!(%error, "cannot answer the host (stream gone)");
    }
}

/// Any other call, through tonic's routes.
async fn answer_routed(
    mut routes: Routes,
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    deadline: Option<Duration>,
) {
    let request = request.map(|recv| Body::new(RecvBody::new(recv)));
    let call = routes.call(request);
    let response = match deadline {
        None => call.await,
        Some(deadline) => match tokio::time::timeout(deadline, call).await {
            Ok(response) => response,
            Err(_) => {
                let _ = respond.send_response(deadline_exceeded().into_http::<()>(), true);
                return;
            }
        },
    };
    // The routes never fail: an unknown method is an `UNIMPLEMENTED` answer.
    let Ok(response) = response;
    let (head, mut body) = response.into_parts();
    let end = body.is_end_stream();
    let mut send = match respond.send_response(http::Response::from_parts(head, ()), end) {
        Ok(send) => send,
        Err(error) => {
            tracing::debug!(%error, "cannot answer the host (stream gone)");
            return;
        }
    };
    if end {
        return;
    }
    if let Err(error) = send_body(&mut body, &mut send).await {
        tracing::debug!(%error, "answering the host failed");
        send.send_reset(h2::Reason::INTERNAL_ERROR);
    }
}

/// Sends `body` on `send`: each frame only when the host's window has room (as hyper's
/// server does), so a streaming answer waits for a slow host instead of piling up.
async fn send_body(
    body: &mut Body,
    send: &mut h2::SendStream<Bytes>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    loop {
        send.reserve_capacity(1);
        while send.capacity() == 0 {
            match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => return Err("the stream was closed".into()),
            }
        }
        let Some(frame) = body.frame().await else {
            send.send_data(Bytes::new(), true)?;
            return Ok(());
        };
        let frame = frame.map_err(|error| -> Box<dyn std::error::Error + Send + Sync> {
            error.to_string().into()
        })?;
        match frame.into_data() {
            Ok(data) => {
                let end = body.is_end_stream();
                send.send_data(data, end)?;
                if end {
                    return Ok(());
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers)?;
                }
                return Ok(());
            }
        }
    }
}

/// The `grpc-timeout` header (gRPC over HTTP/2: up to 8 digits and a unit, `H` `M` `S` `m`
/// `u` `n`): `Ok(None)` without one, `Err` when it does not read.
fn grpc_timeout(headers: &http::HeaderMap) -> Result<Option<Duration>, ()> {
    let Some(value) = headers.get("grpc-timeout") else {
        return Ok(None);
    };
    let value = value.as_bytes();
    let (&unit, digits) = value.split_last().ok_or(())?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    let amount: u64 = std::str::from_utf8(digits)
        .map_err(|_| ())?
        .parse()
        .map_err(|_| ())?;
    Ok(Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return Err(()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proto::v1 as pb;
    use prost::Message as _;
    use snoozebot_core::{
        Capabilities, CloudProvider, Error, InstanceFilter, InstanceId, InstanceInfo, ProviderInfo,
        StateChange, StopMode, StopOptions,
    };

    /// Knows no instance; takes 30 s to say so about `slow`, and about `cancel-me`, where it
    /// says `started` when the call begins and `dropped` when the call is dropped.
    #[derive(Debug, Default)]
    struct Nothing {
        signals: Option<tokio::sync::mpsc::UnboundedSender<&'static str>>,
    }

    /// Says `dropped` when dropped.
    struct DropSignal(tokio::sync::mpsc::UnboundedSender<&'static str>);

    impl Drop for DropSignal {
        fn drop(&mut self) {
            let _ = self.0.send("dropped");
        }
    }

    #[snoozebot_core::async_trait]
    impl CloudProvider for Nothing {
        fn info(&self) -> ProviderInfo {
            ProviderInfo::new("nothing", "1", "1", Capabilities::new([StopMode::Stop]))
        }
        async fn get_instance(&self, id: &InstanceId) -> snoozebot_core::Result<InstanceInfo> {
            if id.as_str() == "slow" {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            if let (Some(signals), "cancel-me") = (&self.signals, id.as_str()) {
                let _dropped = DropSignal(signals.clone());
                let _ = signals.send("started");
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Err(Error::not_found(id.as_str()))
        }
        async fn list_instances(
            &self,
            _: &InstanceFilter,
        ) -> snoozebot_core::Result<Vec<InstanceInfo>> {
            Ok(vec![])
        }
        async fn stop_instance(
            &self,
            id: &InstanceId,
            _: &StopOptions,
        ) -> snoozebot_core::Result<StateChange> {
            Err(Error::not_found(id.as_str()))
        }
        async fn start_instance(&self, id: &InstanceId) -> snoozebot_core::Result<StateChange> {
            Err(Error::not_found(id.as_str()))
        }
    }

    /// What a test connection serves: `provider`'s methods, and tonic's default routes.
    fn services(provider: Nothing) -> Services {
        Services {
            provider: Arc::new(ProviderService {
                provider: Arc::new(provider),
            }),
            routes: Routes::default().prepare(),
        }
    }

    /// The gRPC body of one message.
    fn framed(message: &impl prost::Message) -> Vec<u8> {
        grpc::encode(message).unwrap().to_vec()
    }

    fn get(id: &str) -> Vec<u8> {
        framed(&pb::GetInstanceRequest { id: id.into() })
    }

    /// What a served connection answered one call: its `grpc-status`, the message bytes.
    struct Answer {
        status: String,
        message: Vec<u8>,
    }

    /// Calls `path` with `body` (and `grpc-timeout`, if given) over a connection served by
    /// [`serve_connection`].
    async fn call(path: &str, body: Vec<u8>, timeout: Option<&'static str>) -> Answer {
        exchange(path, vec![body], timeout).await
    }

    /// [`call`] with the body sent in `pieces`, a DATA frame each.
    async fn exchange(path: &str, pieces: Vec<Vec<u8>>, timeout: Option<&'static str>) -> Answer {
        let (host, plugin) = tokio::net::UnixStream::pair().unwrap();
        let services = services(Nothing::default());
        tokio::spawn(serve_connection(Box::new(plugin), services));
        let (mut sender, connection) = h2::client::handshake(host).await.unwrap();
        tokio::spawn(connection);
        let mut request = http::Request::post(format!("http://plugin{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(timeout) = timeout {
            request = request.header("grpc-timeout", timeout);
        }
        let (response, mut send) = sender
            .send_request(request.body(()).unwrap(), false)
            .unwrap();
        let last = pieces.len() - 1;
        for (index, piece) in pieces.into_iter().enumerate() {
            send.send_data(piece.into(), index == last).unwrap();
        }
        let (head, mut recv) = response.await.unwrap().into_parts();
        if let Some(status) = head.headers.get("grpc-status") {
            return Answer {
                status: status.to_str().unwrap().to_owned(),
                message: Vec::new(),
            };
        }
        assert_eq!(head.headers["content-type"], "application/grpc");
        let mut message = Vec::new();
        while let Some(data) = recv.data().await {
            message.extend_from_slice(&data.unwrap());
        }
        let trailers = recv.trailers().await.unwrap().unwrap();
        Answer {
            status: trailers["grpc-status"].to_str().unwrap().to_owned(),
            message,
        }
    }

    const GET: &str = "/snoozebot.plugin.v1.CloudProvider/GetInstance";

    #[tokio::test]
    async fn a_provider_method_answers_its_message_then_status_zero() {
        let answer = call(
            "/snoozebot.plugin.v1.CloudProvider/Info",
            framed(&pb::InfoRequest::default()),
            None,
        )
        .await;
        assert_eq!(answer.status, "0");
        assert_eq!(answer.message[0], 0, "uncompressed");
        let info = pb::ProviderInfo::decode(&answer.message[5..]).unwrap();
        assert_eq!(info.name, "nothing");
    }

    #[tokio::test]
    async fn a_message_over_several_data_frames_is_read_whole() {
        let body = get("i-split");
        let pieces = vec![body[..3].to_vec(), body[3..7].to_vec(), body[7..].to_vec()];
        assert_eq!(exchange(GET, pieces, None).await.status, "5");
    }

    #[tokio::test]
    async fn a_provider_error_is_its_status() {
        assert_eq!(call(GET, get("i-1"), None).await.status, "5");
    }

    #[tokio::test]
    async fn bodies_that_are_not_one_plain_message_are_refused() {
        let mut compressed = get("i-1");
        compressed[0] = 1;
        let mut two = get("i-1");
        two.extend(get("i-2"));
        let mut short = get("i-1");
        short.pop();
        let mut not_protobuf = vec![0, 0, 0, 0, 4];
        not_protobuf.extend_from_slice(&[0xff; 4]);
        for (body, status) in [
            (compressed, "12"),
            (two, "13"),
            (short, "13"),
            (vec![], "13"),
            (vec![0, 0], "13"),
            (not_protobuf, "13"),
        ] {
            assert_eq!(
                call(GET, body.clone(), None).await.status,
                status,
                "{body:?}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_methods_and_services_are_unimplemented() {
        for path in [
            "/snoozebot.plugin.v1.CloudProvider/Reboot",
            "/snoozebot.plugin.v9.Other/GetInstance",
        ] {
            assert_eq!(call(path, get("i-1"), None).await.status, "12", "{path}");
        }
    }

    #[tokio::test]
    async fn a_call_the_host_resets_is_dropped_in_the_plugin() {
        let (signals, mut heard) = tokio::sync::mpsc::unbounded_channel();
        let (host, plugin) = tokio::net::UnixStream::pair().unwrap();
        let services = services(Nothing {
            signals: Some(signals),
        });
        tokio::spawn(serve_connection(Box::new(plugin), services));
        let (mut sender, connection) = h2::client::handshake(host).await.unwrap();
        tokio::spawn(connection);
        let request = http::Request::post(format!("http://plugin{GET}"))
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let (_response, mut send) = sender.send_request(request, false).unwrap();
        send.send_data(get("cancel-me").into(), true).unwrap();
        assert_eq!(heard.recv().await, Some("started"));
        send.send_reset(h2::Reason::CANCEL);
        let dropped = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await;
        assert_eq!(
            dropped.expect("the provider's call went on after the host reset it"),
            Some("dropped")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_its_grpc_timeout_is_answered_deadline_exceeded() {
        let started = tokio::time::Instant::now();
        assert_eq!(call(GET, get("slow"), Some("50m")).await.status, "4");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_sends_its_preface_is_let_go_after_ten_seconds() {
        let (_silent, plugin) = tokio::net::UnixStream::pair().unwrap();
        let services = services(Nothing::default());
        let started = tokio::time::Instant::now();
        tokio::time::timeout(
            Duration::from_secs(11),
            serve_connection(Box::new(plugin), services),
        )
        .await
        .expect("a silent connection was served for good");
        assert!(started.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_malformed_grpc_timeout_is_answered_invalid_argument_at_once() {
        assert_eq!(call(GET, get("slow"), Some("soon")).await.status, "3");
    }

    fn timeout(value: &'static str) -> Result<Option<Duration>, ()> {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", http::HeaderValue::from_static(value));
        grpc_timeout(&headers)
    }

    #[test]
    fn grpc_timeouts_read_in_every_unit_and_garbage_is_refused() {
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), Ok(None));
        assert_eq!(timeout("1H"), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(timeout("2M"), Ok(Some(Duration::from_secs(120))));
        assert_eq!(timeout("3S"), Ok(Some(Duration::from_secs(3))));
        assert_eq!(timeout("250m"), Ok(Some(Duration::from_millis(250))));
        assert_eq!(
            timeout("99999999u"),
            Ok(Some(Duration::from_micros(99_999_999)))
        );
        assert_eq!(timeout("5n"), Ok(Some(Duration::from_nanos(5))));
        for garbage in ["", "S", "123456789S", "10", "10x", "-1S", "1.5S", " 1S"] {
            assert_eq!(timeout(garbage), Err(()), "{garbage:?}");
        }
    }
}
