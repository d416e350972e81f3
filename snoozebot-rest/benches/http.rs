//! What the REST API costs per request: `GET /api/providers/mock/instances/{id}` on the mock
//! fleet, through the full router (auth with constant-time key lookup, limits, tracing layer,
//! problem mapping) — in process (`oneshot`) and over a loopback socket with a keep-alive
//! client — beside the same call on the provider directly.
//!
//! ```text
//! cargo bench -p snoozebot-core --features http --bench http
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use snoozebot_core::{CloudProvider, InstanceId, PluginManager};
use snoozebot_rest::{ApiKeys, Role};
use snoozebot_testkit::MockProvider;
use tower::ServiceExt;

const CALLS: usize = 20_000;

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let total: Duration = samples.iter().sum();
    println!(
        "{label:<48} p50 {:>7.1} µs   p99 {:>7.1} µs   {:>8.0} calls/s",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples.len() as f64 / total.as_secs_f64()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let fleet = MockProvider::builder()
            .record_calls(false)
            .fleet(100)
            .build();
        let manager = Arc::new(PluginManager::new());
        let registered = fleet.clone();
        manager
            .register("mock", move || {
                let fleet = registered.clone();
                async move { Ok(fleet) }
            })
            .unwrap();
        manager.load("mock").await.unwrap();
        let mut keys = ApiKeys::new();
        // A realistic key set: the presented key is compared with every stored one.
        for n in 0..20 {
            keys.generate(Role::Reader, format!("reader {n}"));
        }
        let key = keys.generate(Role::Reader, "bench");
        let router = snoozebot_rest::router(Arc::clone(&manager), keys);
        let id = InstanceId::new("mock-0042").unwrap();
        let uri = "/api/providers/mock/instances/mock-0042";
        println!("{CALLS} calls each, 21 API keys, 2 worker threads\n");

        let mut direct = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let started = Instant::now();
            fleet.get_instance(&id).await.unwrap();
            direct.push(started.elapsed());
        }
        report("provider, direct", direct);

        let mut in_process = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let request = Request::get(uri)
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap();
            let started = Instant::now();
            let response = router.clone().oneshot(request).await.unwrap();
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            in_process.push(started.elapsed());
        }
        report("router, in process (oneshot)", in_process);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{uri}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(snoozebot_rest::serve(listener, router, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        let mut socket = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let started = Instant::now();
            let response = client
                .get(&url)
                .header("authorization", format!("Bearer {key}"))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
            response.bytes().await.unwrap();
            socket.push(started.elapsed());
        }
        report("router, loopback HTTP/1.1 (reqwest keep-alive)", socket);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    });
}
