//! Providers through the plugin transport: real plugin processes over real unix sockets.
#![cfg(feature = "plugin")]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use snoozebot_core::{CloudProvider, ErrorKind, InstanceFilter, InstanceId};
use snoozebot_plugin::{PluginAddress, PluginClient, PluginConfig};
use snoozebot_testkit::conformance::{self, Fixture};

fn mock_plugin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-mock"))
}

fn fixture() -> Fixture {
    Fixture::for_mock_fleet().with_wait_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn conformance_through_the_plugin_with_auto_mtls() {
    let client = PluginClient::launch("mock", mock_plugin(), PluginConfig::default())
        .await
        .unwrap();
    conformance::run(&client, &fixture()).await;
    client.shutdown().await;
}

#[tokio::test]
async fn conformance_through_the_plugin_in_plain_text() {
    let config = PluginConfig::default()
        .with_auto_mtls(false)
        .with_env("SNOOZEBOT_MOCK_TRANSITION_MS", "50");
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    conformance::run(&client, &fixture()).await;
    client.shutdown().await;
}

#[tokio::test]
async fn a_listing_larger_than_four_mebibytes_crosses_the_wire() {
    let config = PluginConfig::default()
        .with_env("SNOOZEBOT_MOCK_INSTANCES", "6")
        .with_env("SNOOZEBOT_MOCK_TAG_BYTES", "1048576");
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    let listed = client.list_instances(&InstanceFilter::new()).await.unwrap();
    assert_eq!(listed.len(), 6);
    assert!(
        listed
            .iter()
            .all(|info| info.tags["padding"].len() == 1_048_576)
    );
    client.shutdown().await;
}

#[tokio::test]
async fn errors_keep_their_kind_across_the_wire() {
    let client = PluginClient::launch("mock", mock_plugin(), PluginConfig::default())
        .await
        .unwrap();
    let err = client
        .get_instance(&InstanceId::new("mock-0404").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.provider(), Some("mock"));
    assert!(err.message().contains("mock-0404"), "{err}");
    client.shutdown().await;
}

#[tokio::test]
async fn without_unix_sockets_the_plugin_serves_tcp_on_loopback() {
    let config =
        PluginConfig::default().with_env("PLUGIN_UNIX_SOCKET_DIR", "/nonexistent/snoozebot");
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    match client.address() {
        Some(PluginAddress::Tcp(addr)) => assert!(addr.ip().is_loopback(), "{addr}"),
        other => panic!("expected a loopback TCP address, got {other:?}"),
    }
    conformance::run(&client, &fixture()).await;
    client.shutdown().await;
}

/// The plugin's sleeps so far: voluntary context switches, all its threads.
fn plugin_sleeps(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            status
                .lines()
                .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|count| count.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// A call from `#[tokio::main]`'s thread wakes the plugin once: before, the request often left
/// in two writes (a worker flushed HEADERS before DATA was queued), and every answer the host
/// read woke the plugin again to report its socket writable (1.7 sleeps a call here). And the
/// plugin answers in one write: HEADERS, DATA and trailers together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_wakes_the_plugin_once_and_it_answers_in_one_write() {
    const CALLS: u64 = 400;
    let config = PluginConfig::default().with_auto_mtls(false);
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    let pid = client.pid().unwrap();
    let id = InstanceId::new("mock-0001").unwrap();
    for _ in 0..50 {
        client.get_instance(&id).await.unwrap();
    }
    let before = plugin_sleeps(pid);
    let writes_before = snoozebot_testkit::ProcessCounters::of(pid).writes;
    for _ in 0..CALLS {
        client.get_instance(&id).await.unwrap();
    }
    let sleeps = (plugin_sleeps(pid) - before) as f64 / CALLS as f64;
    let writes =
        (snoozebot_testkit::ProcessCounters::of(pid).writes - writes_before) as f64 / CALLS as f64;
    client.shutdown().await;
    assert!(
        sleeps <= 1.3,
        "the plugin slept {sleeps:.2} times a call (want about 1)"
    );
    assert!(
        writes <= 1.1,
        "the plugin wrote {writes:.2} times a call (want 1)"
    );
}

/// Callers race to write their own requests and to hand the connection back to its task: a
/// wake lost on the way would leave a call waiting forever. (Health checks are off: each one
/// polls the connection, and every 5 s they hid such a loss — the calls stalled, then went
/// on — when a busy connection's last repeated poll dropped the wake that came during it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_callers_on_both_runtimes_all_get_answers() {
    let config = PluginConfig::default()
        .with_auto_mtls(false)
        .with_health_check_interval(None);
    let client = std::sync::Arc::new(
        PluginClient::launch("mock", mock_plugin(), config)
            .await
            .unwrap(),
    );
    let callers: Vec<_> = (0..64)
        .map(|caller| {
            let client = std::sync::Arc::clone(&client);
            let id = InstanceId::new(format!("mock-{:04}", caller % 8)).unwrap();
            let call = async move {
                for _ in 0..200 {
                    client.get_instance(&id).await.unwrap();
                }
            };
            // Half on the workers, half from threads of their own, as `block_on` callers.
            if caller % 2 == 0 {
                tokio::spawn(call)
            } else {
                let handle = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || handle.block_on(call))
            }
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(60), async {
        for caller in callers {
            caller.await.unwrap();
        }
    })
    .await
    .expect("a call never got its answer");
    client.shutdown().await;
}

/// Whatever else connects to the plugin's socket — garbage instead of HTTP/2, a flood of it,
/// a connection that says nothing, an HTTP/2 preface followed by a header block larger than
/// the plugin takes — is dropped or ignored, and the host's calls go on being answered.
#[tokio::test]
async fn hostile_connections_to_the_plugin_are_dropped_and_the_host_is_still_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let config = PluginConfig::default().with_auto_mtls(false);
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    let Some(PluginAddress::Unix(socket)) = client.address() else {
        panic!("expected a unix socket, got {:?}", client.address());
    };
    let id = InstanceId::new("mock-0001").unwrap();
    let connect = || tokio::net::UnixStream::connect(&socket);

    // Held open without a byte: must not hold anything up.
    let _silent = connect().await.unwrap();

    // Not HTTP/2, then a flood of it: the plugin hangs up.
    let garbage: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: plugin\r\n\r\n",
        &[0xff; 64],
        &vec![0x00; 8 * 1024 * 1024],
    ];
    for bytes in garbage {
        let mut stream = connect().await.unwrap();
        // The plugin may hang up before all of a flood is written.
        let _ = stream.write_all(bytes).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("the plugin kept a garbage connection open");
        assert!(
            read.is_err() || answer.len() < 1024,
            "{} bytes",
            answer.len()
        );
        client.get_instance(&id).await.unwrap();
    }

    // A valid preface and SETTINGS, then a header block of 64 KiB (the plugin takes 16 KiB).
    let mut stream = connect().await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    stream
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let block = vec![0x40; 64 * 1024];
    // A HEADERS frame (type 1) of 16 KiB on stream 1 without END_HEADERS, then CONTINUATIONs.
    let mut frames = Vec::new();
    for (index, chunk) in block.chunks(16 * 1024).enumerate() {
        let length = chunk.len() as u32;
        let kind = if index == 0 { 1 } else { 9 };
        let last = index == block.len() / (16 * 1024) - 1;
        frames.extend_from_slice(&length.to_be_bytes()[1..]);
        frames.extend_from_slice(&[kind, if last { 4 } else { 0 }, 0, 0, 0, 1]);
        frames.extend_from_slice(chunk);
    }
    let _ = stream.write_all(&frames).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the plugin kept an oversized header block's connection open");
    client.get_instance(&id).await.unwrap();
    client.shutdown().await;
}
