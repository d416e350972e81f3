//! The server under a crowd that never finishes its requests: 20,000 half-open connections
//! (from two attacker processes, which reopen what the server closes) do not lock out a client
//! that sends its request, and a connection that stalls in its headers is closed at the
//! header-read timeout.
//!
//! A binary of its own: the server holds up to 10,000 sockets.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use snoozebot_core::PluginManager;
use snoozebot_rest::{ApiKeys, ServeOptions};

/// Opens N connections that send half a request each and keeps them open, reopening those the
/// server closes, until its stdin closes. Prints `ready` once all are open.
const ATTACKER: &str = r#"
import selectors, socket, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
sel = selectors.DefaultSelector()
def open_one():
    s = socket.socket()
    s.setblocking(True)
    try:
        s.connect(("127.0.0.1", port))
        s.send(b"GET /api/plugins HTTP/1.1\r\nHost: victim\r\nX-Slow: ")
    except OSError:
        s.close()
        return
    sel.register(s, selectors.EVENT_READ)
for _ in range(n):
    open_one()
print("ready", flush=True)
sel.register(sys.stdin, selectors.EVENT_READ)
while True:
    for key, _ in sel.select(timeout=1.0):
        if key.fileobj is sys.stdin:
            sys.exit(0)
        sel.unregister(key.fileobj)
        key.fileobj.close()
        open_one()
"#;

/// An attacker process, killed and reaped when dropped (also when the test fails).
struct Attacker(Child);

impl Attacker {
    fn start(connections: usize, port: u16) -> Attacker {
        let child = Command::new("python3")
            .args(["-c", ATTACKER, &connections.to_string(), &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is missing: apt-get install python3");
        Attacker(child)
    }

    fn wait_ready(&mut self) {
        let mut line = String::new();
        BufReader::new(self.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the attacker did not start");
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn server(options: ServeOptions) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let manager = Arc::new(PluginManager::new());
    let router = snoozebot_rest::router(manager, ApiKeys::new());
    let listener = snoozebot_rest::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(snoozebot_rest::serve_with(
        listener,
        router,
        options,
        async {
            let _ = stopped.await;
        },
    ));
    (port, stop)
}

/// One plain HTTP/1.1 request on a fresh connection; the status line.
fn get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_half_open_connections_do_not_lock_out_a_real_request() {
    let (port, _stop) = server(ServeOptions::default()).await;
    let begun = Instant::now();
    // Blocking reads go to the blocking pool: the server's tasks need the runtime's workers.
    let _attackers = tokio::task::spawn_blocking(move || {
        let mut attackers = [Attacker::start(10_000, port), Attacker::start(10_000, port)];
        for attacker in &mut attackers {
            attacker.wait_ready();
        }
        attackers
    })
    .await
    .unwrap();
    println!(
        "20,000 half-open connections opened in {:?}",
        begun.elapsed()
    );
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let status = tokio::task::spawn_blocking(move || get(port, "/api/openapi.json"))
            .await
            .unwrap();
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert_eq!(status, "HTTP/1.1 200 OK", "after {took:?}");
    }
    println!("slowest of 5 requests under 20,000 half-open connections: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(5),
        "a request took {slowest:?}"
    );
}

#[tokio::test]
async fn a_connection_that_stalls_in_its_headers_is_closed_at_the_timeout() {
    let (port, _stop) =
        server(ServeOptions::default().with_header_read_timeout(Duration::from_millis(300))).await;
    let started = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /api/plugins HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        rest
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "closed only after {took:?}");
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    // hyper answers 408 or just closes; either way nothing is served.
    let text = String::from_utf8_lossy(&closed);
    assert!(!text.contains("200 OK"), "{text}");
}

#[tokio::test]
async fn a_tls_connection_that_never_handshakes_is_closed_at_the_header_timeout() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls =
        snoozebot_rest::tls_config(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let (port, _stop) = server(
        ServeOptions::default()
            .with_header_read_timeout(Duration::from_millis(300))
            .with_tls(tls),
    )
    .await;
    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Not a byte of a ClientHello: the server must not wait for one forever.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "closed only after {took:?}");
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
}
