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

use crate::wire::{Io, PollLoop, RecvBody};

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

/// Serves one host connection until it closes or fails.
pub(super) async fn serve_connection(io: Box<dyn Io>, routes: Routes) {
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
        routes,
        poll_loop: PollLoop::new(),
        accepting: true,
    };
    std::future::poll_fn(|cx| served.poll(cx)).await;
}

struct Served {
    connection: h2::server::Connection<Box<dyn Io>, Bytes>,
    calls: FuturesUnordered<Call>,
    routes: Routes,
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
        let routes = &self.routes;
        let accepting = &mut self.accepting;
        poll_loop.absorbing(|wakes| {
            let mut cx = Context::from_waker(poll_loop.waker());
            for _ in 0..POLLS_PER_WAKE {
                wakes.take();
                // Reads what came, writes what was queued, and yields new requests.
                while *accepting {
                    match connection.poll_accept(&mut cx) {
                        Poll::Ready(Some(Ok((request, respond)))) => {
                            calls.push(Box::pin(answer(routes.clone(), request, respond)));
                        }
                        Poll::Ready(Some(Err(error))) => {
                            tracing::debug!(%error, "the host's connection failed");
                            return Poll::Ready(());
                        }
                        Poll::Ready(None) => *accepting = false,
                        Poll::Pending => break,
                    }
                }
                while let Poll::Ready(Some(())) = calls.poll_next_unpin(&mut cx) {}
                // A closed connection can send nothing more: its calls end with it.
                if !*accepting {
                    return Poll::Ready(());
                }
                if !wakes.take() {
                    break;
                }
            }
            Poll::Pending
        })
    }
}

/// Runs one call through the routes and sends its answer: HEADERS, then the body's frames as
/// the host's window allows, then the trailers.
async fn answer(
    mut routes: Routes,
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let request = request.map(|recv| Body::new(RecvBody::new(recv)));
    let deadline = match grpc_timeout(request.headers()) {
        Ok(deadline) => deadline,
        Err(()) => {
            let status = Status::invalid_argument("malformed grpc-timeout header");
            let _ = respond.send_response(status.into_http::<()>(), true);
            return;
        }
    };
    let call = routes.call(request);
    let response = match deadline {
        None => call.await,
        Some(deadline) => match tokio::time::timeout(deadline, call).await {
            Ok(response) => response,
            Err(_) => {
                let status = Status::deadline_exceeded("the call's grpc-timeout passed");
                let _ = respond.send_response(status.into_http::<()>(), true);
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
    use std::convert::Infallible;

    /// A unary service that answers after 30 s.
    #[derive(Clone)]
    struct Slow;

    impl tonic::server::NamedService for Slow {
        const NAME: &'static str = "test.Slow";
    }

    impl Service<http::Request<Body>> for Slow {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(Status::ok("").into_http())
            })
        }
    }

    /// Calls `test.Slow/Call` with `grpc-timeout: timeout` over a connection served by
    /// [`serve_connection`]; the `grpc-status` it answers with.
    async fn status_of_a_slow_call(timeout: &'static str) -> String {
        let (host, plugin) = tokio::net::UnixStream::pair().unwrap();
        tokio::spawn(serve_connection(
            Box::new(plugin),
            Routes::new(Slow).prepare(),
        ));
        let (mut sender, connection) = h2::client::handshake(host).await.unwrap();
        tokio::spawn(connection);
        let request = http::Request::post("http://plugin/test.Slow/Call")
            .header("content-type", "application/grpc")
            .header("grpc-timeout", timeout)
            .body(())
            .unwrap();
        let (response, _) = sender.send_request(request, true).unwrap();
        let response = response.await.unwrap();
        response.headers()["grpc-status"]
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_its_grpc_timeout_is_answered_deadline_exceeded() {
        let started = tokio::time::Instant::now();
        assert_eq!(status_of_a_slow_call("50m").await, "4");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_malformed_grpc_timeout_is_answered_invalid_argument_at_once() {
        assert_eq!(status_of_a_slow_call("soon").await, "3");
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
