//! What the REST API costs per request: `GET /api/providers/mock/instances/{id}` on the mock
//! fleet, through the full router (auth with constant-time key lookup, limits, tracing layer,
//! problem mapping) — in process (`oneshot`) and over a loopback socket with a keep-alive
//! client (our accept loop) — beside a bare axum handler serving the same JSON the same two
//! ways (`axum::serve` for the socket) and through our accept loop, and the call on the
//! provider directly. The setups run
//! in interleaved rounds (ours, bare, ours, bare, …); each reports the median of its rounds'
//! p50, and the difference is the API's own cost; context switches, write syscalls and CPU time
//! per call of each setup are printed too (`snoozebot_testkit::ProcessCounters`), and
//! allocations per call (a counting global allocator): counts that timing noise cannot hide.
//!
//! ```text
//! cargo bench -p snoozebot-rest --bench http
//! ```
//!
//! `SNOOZEBOT_BENCH_CALLS=N` sets the calls per setup (default 20,000; rounds of an eighth),
//! `SNOOZEBOT_BENCH_SETUPS=0,1` runs only the listed setups (in the order of the table it
//! prints): `scripts/bench rest-instructions` counts instructions per request that way.
#![allow(missing_docs, clippy::unwrap_used, unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use snoozebot_core::{CloudProvider, InstanceId, PluginManager};
use snoozebot_rest::{ApiKeys, Role};
use snoozebot_testkit::MockProvider;
use tower::ServiceExt;

/// Calls per setup, unless `SNOOZEBOT_BENCH_CALLS` says otherwise.
const CALLS: usize = 20_000;

/// Counts allocations, so that a setup's allocations per call show without timing noise.
struct Counting;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

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
    let calls: usize = std::env::var("SNOOZEBOT_BENCH_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CALLS);
    let only: Option<Vec<usize>> = std::env::var("SNOOZEBOT_BENCH_SETUPS").ok().map(|list| {
        list.split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect()
    });
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
        println!("{calls} calls each, 21 API keys, 2 worker threads\n");

        if only.is_none() {
            let mut direct = Vec::with_capacity(calls);
            for _ in 0..calls {
                let started = Instant::now();
                fleet.get_instance(&id).await.unwrap();
                direct.push(started.elapsed());
            }
            report("provider, direct", direct);
        }

        // The same JSON from a bare axum handler: no keys, limits, tracing or problems.
        let bare_fleet = fleet.clone();
        let bare = axum::Router::new().route(
            "/api/providers/mock/instances/{id}",
            axum::routing::get(move |axum::extract::Path(id): axum::extract::Path<String>| {
                let fleet = bare_fleet.clone();
                async move {
                    let id = InstanceId::new(id).unwrap();
                    axum::Json(fleet.get_instance(&id).await.unwrap())
                }
            }),
        );

        // The same bare handler calling through the manager (its lease and middleware stack):
        // tells the stack's cost from the router's own.
        let managed_manager = Arc::clone(&manager);
        let managed = axum::Router::new().route(
            "/api/providers/mock/instances/{id}",
            axum::routing::get(move |axum::extract::Path(id): axum::extract::Path<String>| {
                let manager = Arc::clone(&managed_manager);
                async move {
                    let id = InstanceId::new(id).unwrap();
                    let provider = manager.load("mock").await.unwrap();
                    axum::Json(provider.get_instance(&id).await.unwrap())
                }
            }),
        );
        let managed_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let managed_url = format!("http://{}{uri}", managed_listener.local_addr().unwrap());
        let managed_server =
            tokio::spawn(axum::serve(managed_listener, managed.clone()).into_future());

        let ours_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours_url = format!("http://{}{uri}", ours_listener.local_addr().unwrap());
        let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare_url = format!("http://{}{uri}", bare_listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(snoozebot_rest::serve(ours_listener, router.clone(), async {
            let _ = stopped.await;
        }));
        let bare_server = tokio::spawn(axum::serve(bare_listener, bare.clone()).into_future());
        // The bare handler through our accept loop: tells the loop's cost from the router's.
        let mixed_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mixed_url = format!("http://{}{uri}", mixed_listener.local_addr().unwrap());
        let (stop_mixed, mixed_stopped) = tokio::sync::oneshot::channel::<()>();
        let mixed_server = tokio::spawn(snoozebot_rest::serve(mixed_listener, bare.clone(), async {
            let _ = mixed_stopped.await;
        }));
        let client = reqwest::Client::new();

        let rounds = 8;
        let per_round = calls / rounds;
        let mut medians: [Vec<f64>; 6] = Default::default();
        // Per call, summed over the rounds: context switches, writes, CPU µs (the process's
        // threads: client and server alike).
        let mut costs = [(0.0f64, 0.0f64, 0.0f64); 6];
        let mut allocated = [0.0f64; 6];
        for round in 0..rounds {
            for step in 0..6 {
                let setup = (step + round) % 6;
                if !only.as_ref().is_none_or(|only| only.contains(&setup)) {
                    continue;
                }
                let mut samples = Vec::with_capacity(per_round);
                let before = snoozebot_testkit::ProcessCounters::of_self();
                let allocations_before = allocations();
                for _ in 0..per_round {
                    let started = Instant::now();
                    match setup {
                        0 | 1 => {
                            let request = Request::get(uri)
                                .header("authorization", format!("Bearer {key}"))
                                .body(Body::empty())
                                .unwrap();
                            let service = if setup == 0 { router.clone() } else { bare.clone() };
                            let response = service.oneshot(request).await.unwrap();
                            axum::body::to_bytes(response.into_body(), usize::MAX)
                                .await
                                .unwrap();
                        }
                        _ => {
                            let url = match setup { 2 => &ours_url, 3 => &bare_url, 4 => &mixed_url, _ => &managed_url };
                            let response = client
                                .get(url)
                                .header("authorization", format!("Bearer {key}"))
                                .send()
                                .await
                                .unwrap();
                            assert!(response.status().is_success());
                            response.bytes().await.unwrap();
                        }
                    }
                    samples.push(started.elapsed());
                }
                let (switches, writes, cpu_us) =
                    before.per(&snoozebot_testkit::ProcessCounters::of_self(), per_round);
                allocated[setup] += (allocations() - allocations_before) as f64
                    / per_round as f64
                    / rounds as f64;
                let cost = &mut costs[setup];
                *cost = (cost.0 + switches / rounds as f64, cost.1 + writes / rounds as f64, cost.2 + cpu_us / rounds as f64);
                samples.sort();
                medians[setup].push(samples[samples.len() / 2].as_secs_f64() * 1e6);
            }
        }
        let median = |values: &mut Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let [ours_in, bare_in, ours_socket, bare_socket, mixed, managed_socket] =
            medians.map(|mut v| median(&mut v));
        println!("{rounds} interleaved rounds of {per_round} calls per setup, median of the rounds' p50:");
        println!("  router, in process (oneshot)              {ours_in:>7.1} µs");
        println!("  bare axum handler, in process             {bare_in:>7.1} µs   -> the API's own cost {:>5.1} µs", ours_in - bare_in);
        println!("  router, loopback HTTP/1.1 (keep-alive)    {ours_socket:>7.1} µs");
        println!("  bare axum handler, loopback (axum::serve) {bare_socket:>7.1} µs   -> the API's own cost {:>5.1} µs", ours_socket - bare_socket);
        println!(
            "  bare axum handler, our accept loop        {mixed:>7.1} µs   -> the loop's own cost {:>5.1} µs",
            mixed - bare_socket
        );
        println!(
            "  bare handler over the manager, loopback   {managed_socket:>7.1} µs   -> the manager's stack {:>5.1} µs",
            managed_socket - bare_socket
        );
        println!("\nper call, the whole process (client and server threads), mean over the rounds:");
        for ((label, (switches, writes, cpu_us)), allocations) in [
            "router, in process",
            "bare, in process",
            "router, loopback",
            "bare, loopback (axum::serve)",
            "bare, our accept loop",
            "bare over the manager, loopback",
        ]
        .into_iter()
        .zip(costs)
        .zip(allocated)
        {
            println!("  {label:<32} {switches:>5.2} switches  {writes:>5.2} writes  {cpu_us:>6.1} µs CPU  {allocations:>6.1} allocations");
        }
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        stop_mixed.send(()).unwrap();
        mixed_server.await.unwrap().unwrap();
        bare_server.abort();
        managed_server.abort();
    });
}
