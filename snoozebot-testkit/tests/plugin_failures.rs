//! Plugins that misbehave, and hosts that die: each case ends in a typed error or the
//! documented recovery, and no process is left behind (checked in the process table).
#![cfg(feature = "plugin")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::Digest;
use snoozebot_core::{CloudProvider, ErrorKind, InstanceFilter, InstanceId, PluginManager};
use snoozebot_plugin::{PluginClient, PluginConfig, PluginDirectory, TrustPolicy};
use tokio::time::Instant;

mod processes;
use processes::{HostProcess, eventually, has_exited};

fn mock_plugin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-mock"))
}

/// A config whose plugins carry `marker` in their environment, so the process table can be
/// searched for exactly this test's plugins.
fn marked(marker: &str) -> PluginConfig {
    PluginConfig::default().with_env(
        "SNOOZEBOT_TEST_MARKER",
        format!("{marker}-{}", std::process::id()),
    )
}

/// Live (non-zombie) processes carrying this test's marker.
fn marked_processes(marker: &str) -> Vec<u32> {
    let needle = format!("SNOOZEBOT_TEST_MARKER={marker}-{}", std::process::id());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|b| *b == 0)
                    .any(|var| var == needle.as_bytes())
            })
        })
        .filter(|pid| !has_exited(*pid))
        .collect()
}

/// Whether `pid` has left the process table entirely (exited and reaped).
fn is_reaped(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

async fn assert_no_marked_processes(marker: &str) {
    assert!(
        eventually(Duration::from_secs(3), || marked_processes(marker)
            .is_empty())
        .await,
        "plugin processes left behind: {:?}",
        marked_processes(marker)
    );
}

#[test]
fn run_by_hand_the_plugin_explains_itself_and_exits_1() {
    for cookie in [None, Some("wrong")] {
        let mut command = Command::new(mock_plugin());
        command.env_remove("SNOOZEBOT_PLUGIN");
        if let Some(cookie) = cookie {
            command.env("SNOOZEBOT_PLUGIN", cookie);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("not meant to be run by hand"), "{stderr}");
    }
}

#[tokio::test]
async fn a_version_mismatch_names_both_sides_versions() {
    let config = marked("version").with_app_versions([7, 8]);
    let err = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Plugin);
    assert!(
        err.message()
            .contains("the host speaks 7, 8, this plugin speaks 1"),
        "{err}"
    );
    assert_no_marked_processes("version").await;
}

#[tokio::test]
async fn stray_stdout_before_the_handshake_is_skipped() {
    let config = marked("garbage").with_env("SNOOZEBOT_MOCK_BEFORE_HANDSHAKE", "garbage");
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    let listed = client.list_instances(&InstanceFilter::new()).await.unwrap();
    assert_eq!(listed.len(), 8);
    client.shutdown().await;
    assert_no_marked_processes("garbage").await;
}

#[tokio::test]
async fn a_plugin_that_hangs_before_its_handshake_is_killed_at_the_timeout() {
    let config = marked("hang")
        .with_env("SNOOZEBOT_MOCK_BEFORE_HANDSHAKE", "hang")
        .with_start_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Plugin);
    assert!(
        err.message()
            .contains("did not complete its handshake within 500ms"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_no_marked_processes("hang").await;
}

#[tokio::test]
async fn a_plugin_that_exits_before_its_handshake_reports_its_stderr() {
    let config = marked("exit").with_env("SNOOZEBOT_MOCK_BEFORE_HANDSHAKE", "exit");
    let err = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Plugin);
    assert!(err.message().contains("exit status: 3"), "{err}");
    assert!(err.message().contains("permission denied"), "{err}");
}

#[tokio::test]
async fn a_handshake_for_another_core_protocol_is_refused() {
    let config = marked("core").with_env("SNOOZEBOT_MOCK_BEFORE_HANDSHAKE", "bad-handshake");
    let err = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Plugin);
    assert!(err.message().contains("core protocol 2"), "{err}");
    assert_no_marked_processes("core").await;
}

/// Calls until one succeeds (the plugin is back), failing fast meanwhile with `Unavailable`
/// and the restart's `retry_after`, so a retry layer rides over the restart.
async fn until_back(client: &PluginClient) -> Duration {
    let started = Instant::now();
    let id = InstanceId::new("mock-0001").unwrap();
    loop {
        match client.get_instance(&id).await {
            Ok(_) => return started.elapsed(),
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
                assert!(err.retry_after().is_some(), "{err}");
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "plugin never came back: {err}"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_plugin_that_dies_mid_call_fails_the_call_and_is_restarted() {
    let config = marked("midcall").with_restarts(5, Duration::from_millis(50));
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    let first_pid = client.pid().unwrap();

    let started = Instant::now();
    let err = client
        .get_instance(&InstanceId::new("mock-crash").unwrap())
        .await
        .unwrap_err();
    // Retryable: the plugin is restarted, and the call may be sent again then.
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_millis(50)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the failure took {:?}",
        started.elapsed()
    );

    until_back(&client).await;
    assert_ne!(client.pid(), Some(first_pid));
    assert!(eventually(Duration::from_secs(2), || is_reaped(first_pid)).await);
    client.shutdown().await;
    assert_no_marked_processes("midcall").await;
}

#[tokio::test]
async fn a_crash_loop_backs_off_further_each_time_and_ends_failed_until_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let config = marked("loop")
        .with_env("SNOOZEBOT_MOCK_EXIT_AFTER_MS", "150")
        .with_env("SNOOZEBOT_MOCK_START_LOG", starts.display().to_string())
        .with_restarts(3, Duration::from_millis(100))
        .with_health_check_interval(None);
    let client = PluginClient::launch("mock", mock_plugin(), config.clone())
        .await
        .unwrap();
    let id = InstanceId::new("mock-0001").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let failure = loop {
        match client.get_instance(&id).await {
            Err(error) if error.kind() == ErrorKind::Plugin => break error,
            _ if Instant::now() > deadline => panic!("still restarting after 15 s"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert!(
        failure
            .message()
            .contains("gave up after 3 restarts in a row"),
        "{failure}"
    );
    assert!(!failure.is_retryable(), "{failure}");
    let health = client.health().await;
    assert!(
        matches!(&health, snoozebot_core::Health::Failed { reason } if reason.contains("gave up")),
        "{health:?}"
    );

    // The first start and three restarts, each waiting longer than the one before.
    let times: Vec<u64> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    assert_eq!(times.len(), 4, "starts at {times:?}");
    for (n, pair) in times.windows(2).enumerate() {
        let least = 150 + (100 << n);
        assert!(
            pair[1] - pair[0] >= least,
            "restart {} came {} ms after the start before (its backoff alone is {} ms): {times:?}",
            n + 1,
            pair[1] - pair[0],
            100 << n
        );
    }
    assert_no_marked_processes("loop").await;

    // A reload is a new launch, and clears it.
    drop(client);
    let reloaded = PluginClient::launch("mock", mock_plugin(), marked("loop"))
        .await
        .unwrap();
    assert!(reloaded.get_instance(&id).await.is_ok());
    reloaded.shutdown().await;
}

#[tokio::test]
async fn kill_9_of_the_plugin_fails_calls_fast_then_they_work_again() {
    let config = marked("kill9").with_restarts(5, Duration::from_millis(100));
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    let first_pid = client.pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let back_after = until_back(&client).await;
    assert!(back_after < Duration::from_secs(5));
    let second_pid = client.pid().unwrap();
    assert_ne!(second_pid, first_pid);
    assert!(eventually(Duration::from_secs(2), || is_reaped(first_pid)).await);

    client.shutdown().await;
    assert!(eventually(Duration::from_secs(3), || is_reaped(second_pid)).await);
    let err = client
        .get_instance(&InstanceId::new("mock-0001").unwrap())
        .await
        .unwrap_err();
    assert!(err.message().contains("unloaded"), "{err}");
    assert_no_marked_processes("kill9").await;
}

#[test]
#[ignore = "a host process for the host-death tests, which run it"]
fn host_process() {
    processes::host_main();
}

#[tokio::test]
async fn a_plugin_without_its_own_parent_watch_dies_with_its_host_and_removes_its_directory() {
    // Only the host's parent-death signal can end this plugin: it checks for its host once a day.
    let mut host = HostProcess::start(
        mock_plugin(),
        &[("SNOOZEBOT_MOCK_NO_PARENT_WATCH", "1")],
        false,
    );
    assert!(host.private_dir.exists());
    host.kill();
    assert!(
        eventually(Duration::from_secs(2), || has_exited(host.plugin_pid)).await,
        "the plugin outlived its host by more than 2 s"
    );
    assert!(
        eventually(Duration::from_secs(1), || !host.private_dir.exists()).await,
        "{} left behind",
        host.private_dir.display()
    );
}

#[tokio::test]
async fn a_plugin_forked_from_a_thread_that_ends_lives_on_with_its_host() {
    // The parent-death signal follows the thread that forked: launched from a blocking-pool
    // thread that retires, the plugin must not take that for its host's death.
    let mut host = HostProcess::start(
        mock_plugin(),
        &[
            ("SNOOZEBOT_MOCK_NO_PARENT_WATCH", "1"),
            ("SNOOZEBOT_MOCK_LATENCY_MS", "200"),
        ],
        true,
    );
    assert_eq!(
        host.line("call after the launching thread ended: ")
            .as_deref(),
        Some("ok")
    );
    assert!(!has_exited(host.plugin_pid));
    host.kill();
    assert!(eventually(Duration::from_secs(2), || has_exited(host.plugin_pid)).await);
}

#[tokio::test]
async fn the_plugin_exits_within_two_seconds_when_a_host_without_the_signal_is_killed() {
    // The host here is a shell that started the plugin, as go-plugin's hosts do, without a
    // parent-death signal: the plugin's own watch ends it. SIGKILL gives the shell no chance
    // to clean up.
    let marker = format!("SNOOZEBOT_TEST_MARKER=hostdeath-{}", std::process::id());
    let mut host = Command::new("sh")
        .arg("-c")
        .arg(r#""$PLUGIN" > "$HANDSHAKE" 2>/dev/null & echo $!; wait"#)
        .env("PLUGIN", mock_plugin())
        .env(
            "HANDSHAKE",
            std::env::temp_dir().join(format!("handshake-{}", std::process::id())),
        )
        .env("SNOOZEBOT_PLUGIN", "snoozebot_plugin_v1")
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .env(
            marker.split_once('=').unwrap().0,
            marker.split_once('=').unwrap().1,
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(host.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let plugin_pid: u32 = line.trim().parse().unwrap();
    // Wait until the plugin is serving.
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(
            std::env::temp_dir().join(format!("handshake-{}", std::process::id()))
        )
        .is_ok_and(|text| text.starts_with("1|1|unix|")))
        .await
    );

    host.kill().unwrap();
    host.wait().unwrap();
    let killed = Instant::now();
    assert!(
        eventually(Duration::from_secs(2), || has_exited(plugin_pid)).await,
        "the plugin outlived its host by more than 2 s"
    );
    assert!(killed.elapsed() < Duration::from_secs(2));
    let _ = std::fs::remove_file(
        std::env::temp_dir().join(format!("handshake-{}", std::process::id())),
    );
}

/// A copy of `content` as an executable `snoozebot-plugin-<name>` in a fresh directory.
fn plugin_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("snoozebot-plugin-{name}"));
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A "plugin" that only proves it ran, by creating `<itself>.ran`.
const TELL_TALE: &[u8] = b"#!/bin/sh\ntouch \"$0.ran\"\n";

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_tampered_binary_is_refused_and_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(mock_plugin()).unwrap();
    let pinned = TrustPolicy::default()
        .with_sha256(&sha256_hex(&original))
        .unwrap();

    let path = plugin_file(dir.path(), "mock", &original);
    let client = PluginClient::launch(
        "mock",
        &path,
        PluginConfig::default().with_trust(pinned.clone()),
    )
    .await
    .unwrap();
    client.shutdown().await;

    let tampered = plugin_file(dir.path(), "tampered", TELL_TALE);
    let err = PluginClient::launch(
        "tampered",
        &tampered,
        PluginConfig::default().with_trust(pinned),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(err.message().contains("not the pinned one"), "{err}");
    assert!(
        !dir.path().join("snoozebot-plugin-tampered.ran").exists(),
        "the binary ran"
    );
}

/// A plugin cannot read its host's environment (where cloud and API keys are) once kept out:
/// as root, by running it as another user (one run as root can read it); as any other user,
/// by the host marking itself non-dumpable (`harden_host`), which a same-user plugin cannot get
/// past.
#[tokio::test]
async fn a_plugin_kept_out_cannot_read_the_hosts_environment() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        let reports = tempfile::tempdir().unwrap();
        let report = reports.path().join("same-user");
        snoozebot_plugin::harden_host().unwrap();
        let config =
            marked("user").with_env("SNOOZEBOT_MOCK_PROBE_PARENT", report.display().to_string());
        let client = PluginClient::launch("mock", mock_plugin(), config)
            .await
            .unwrap();
        client.shutdown().await;
        let seen = std::fs::read_to_string(&report).unwrap();
        assert!(
            seen.starts_with("denied"),
            "a same-user plugin of a hardened host: {seen}"
        );
        return;
    }
    let reports = tempfile::tempdir().unwrap();
    std::fs::set_permissions(reports.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    // A sealed copy runs whatever the binary's own path allows the other user.
    let pinned = TrustPolicy::default()
        .with_sha256(&sha256_hex(&std::fs::read(mock_plugin()).unwrap()))
        .unwrap();
    let mut seen = Vec::new();
    for (who, user) in [("host-user", None), ("nobody", Some((65534, 65534)))] {
        let report = reports.path().join(who);
        let mut config = marked("user")
            .with_trust(pinned.clone())
            .with_env("SNOOZEBOT_MOCK_PROBE_PARENT", report.display().to_string());
        if let Some((uid, gid)) = user {
            config = config.run_as(uid, gid);
        }
        let client = PluginClient::launch("mock", mock_plugin(), config)
            .await
            .unwrap();
        assert!(
            client
                .get_instance(&InstanceId::new("mock-0001").unwrap())
                .await
                .is_ok()
        );
        client.shutdown().await;
        seen.push(std::fs::read_to_string(&report).unwrap());
    }
    assert!(
        seen[0].starts_with("readable"),
        "as the host's user: {}",
        seen[0]
    );
    assert!(seen[1].starts_with("denied"), "as nobody: {}", seen[1]);
    assert_no_marked_processes("user").await;
}

/// As ssh's StrictModes: symlinks out of the plugin directories, and files or directories that
/// anyone can write, are refused at discovery and again at load.
#[tokio::test]
async fn symlinks_out_and_world_writable_plugins_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let binary = std::fs::read(mock_plugin()).unwrap();
    std::os::unix::fs::symlink(mock_plugin(), dir.path().join("snoozebot-plugin-outside")).unwrap();
    let real = plugin_file(dir.path(), "real", &binary);
    std::os::unix::fs::symlink(&real, dir.path().join("snoozebot-plugin-inside")).unwrap();
    let open = plugin_file(dir.path(), "open", &binary);
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let open_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    plugin_file(open_dir.path(), "in-open-dir", &binary);

    let source = PluginDirectory::new(dir.path())
        .with_dir(open_dir.path())
        .with_default_config(marked("strict"));
    let manager = PluginManager::new();
    manager.add_source(source.clone());
    let discovered = manager.discover().await.unwrap();
    let problem = |name: &str| {
        discovered
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{name} not discovered"))
            .problem
            .clone()
    };
    assert_eq!(problem("real"), None);
    assert_eq!(problem("inside"), None);
    assert!(
        problem("outside").is_some_and(|p| p.contains("outside the plugin directories")),
        "{:?}",
        problem("outside")
    );
    assert!(
        problem("open").is_some_and(|p| p.contains("can be written by anyone")),
        "{:?}",
        problem("open")
    );
    assert!(
        problem("in-open-dir").is_some_and(|p| p.contains("its directory")),
        "{:?}",
        problem("in-open-dir")
    );
    for refused in ["outside", "open", "in-open-dir"] {
        let err = manager.load(refused).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{refused}: {err}");
    }
    assert!(marked_processes("strict").is_empty());

    // Checked again at load: a file opened to anyone after discovery does not run.
    let discovered = manager.discover().await.unwrap();
    assert!(
        discovered
            .iter()
            .any(|d| d.name == "real" && d.problem.is_none())
    );
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o757)).unwrap();
    let err = manager.load("real").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("written by anyone"), "{err}");

    // Links out are the operator's choice to allow.
    let manager = PluginManager::new();
    manager.add_source(
        PluginDirectory::new(dir.path())
            .allow_symlinks_outside(true)
            .with_default_config(marked("strict")),
    );
    let provider = manager.load("outside").await.unwrap();
    assert_eq!(provider.info().name, "mock");
    manager.shutdown().await;
    assert_no_marked_processes("strict").await;
}

/// The pin holds against a file swapped between check and start: 200 launches while another
/// thread keeps renaming the pinned binary and an unpinned one onto the path run the unpinned
/// one 0 times (each launch runs the pinned one or is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_swapped_after_its_check_never_runs() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(mock_plugin()).unwrap();
    let pinned = TrustPolicy::default()
        .with_sha256(&sha256_hex(&original))
        .unwrap();
    let good = plugin_file(dir.path(), "good", &original);
    let marker = dir.path().join("the-unpinned-binary-ran");
    let bad = plugin_file(
        dir.path(),
        "bad",
        format!("#!/bin/sh\necho ran >> '{}'\n", marker.display()).as_bytes(),
    );
    let path = dir.path().join("snoozebot-plugin-swapped");
    std::fs::copy(&good, &path).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, dir, path) = (Arc::clone(&stop), dir.path().to_owned(), path.clone());
        std::thread::spawn(move || {
            let staging = dir.join("staging");
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for source in [&good, &bad] {
                    let _ = std::fs::remove_file(&staging);
                    std::fs::hard_link(source, &staging).unwrap();
                    std::fs::rename(&staging, &path).unwrap();
                    swaps += 1;
                    // Far more often than launches, without taking a core from them.
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            swaps
        })
    };
    let (mut ran, mut refused) = (0, 0);
    for _ in 0..200 {
        match PluginClient::launch("swapped", &path, marked("swap").with_trust(pinned.clone()))
            .await
        {
            Ok(client) => {
                ran += 1;
                client.kill_now();
            }
            Err(error) => {
                assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
                refused += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    println!("200 launches during {swaps} swaps: {ran} ran the pinned binary, {refused} refused");
    assert!(swaps > 200, "the swapper hardly ran ({swaps} swaps)");
    assert!(
        !marker.exists(),
        "the unpinned binary ran {} times",
        std::fs::read_to_string(&marker)
            .unwrap_or_default()
            .lines()
            .count()
    );
    assert_no_marked_processes("swap").await;
}

#[tokio::test]
async fn only_binaries_signed_by_a_trusted_key_run() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let stranger = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let policy = TrustPolicy::default()
        .with_minisign_key(&trusted.pk.to_base64())
        .unwrap();
    let sign = |path: &Path, key: &minisign::KeyPair| {
        let signature = minisign::sign(
            Some(&key.pk),
            &key.sk,
            std::fs::File::open(path).unwrap(),
            None,
            None,
        )
        .unwrap();
        let mut signature_path = path.as_os_str().to_owned();
        signature_path.push(".minisig");
        std::fs::write(signature_path, signature.into_string()).unwrap();
    };

    let good = plugin_file(dir.path(), "mock", &std::fs::read(mock_plugin()).unwrap());
    sign(&good, &trusted);
    let client = PluginClient::launch(
        "mock",
        &good,
        PluginConfig::default().with_trust(policy.clone()),
    )
    .await
    .unwrap();
    client.shutdown().await;

    for (name, signer, tamper) in [
        ("unsigned", None, false),
        ("stranger", Some(&stranger), false),
        ("altered", Some(&trusted), true),
    ] {
        let path = plugin_file(dir.path(), name, TELL_TALE);
        if let Some(signer) = signer {
            sign(&path, signer);
        }
        if tamper {
            std::fs::write(&path, [TELL_TALE, b"# changed after signing\n"].concat()).unwrap();
        }
        let err = PluginClient::launch(
            name,
            &path,
            PluginConfig::default().with_trust(policy.clone()),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{name}: {err}");
        let ran = dir.path().join(format!("snoozebot-plugin-{name}.ran"));
        assert!(!ran.exists(), "{name}: the binary ran");
    }
}

#[tokio::test]
async fn the_manager_discovers_loads_unloads_and_leaves_nothing_behind() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    plugin_file(dir.path(), "mock", &std::fs::read(mock_plugin()).unwrap());
    let not_executable = dir.path().join("snoozebot-plugin-notes");
    std::fs::write(&not_executable, "plain text").unwrap();
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::create_dir(dir.path().join("snoozebot-plugin-folder")).unwrap();
    std::fs::write(dir.path().join("README"), "not a plugin").unwrap();
    plugin_file(dir.path(), "tell-tale", TELL_TALE);

    let manager = PluginManager::new();
    manager.add_source(PluginDirectory::new(dir.path()).with_default_config(marked("manager")));
    let discovered = manager.discover().await.unwrap();
    let summary: Vec<_> = discovered
        .iter()
        .map(|d| (d.name.as_str(), d.problem.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("mock", None),
            ("tell-tale", None),
            ("folder", Some("it is a directory".to_owned())),
            ("notes", Some("it is not executable".to_owned())),
        ]
    );
    // Discovery executes nothing.
    assert!(!dir.path().join("snoozebot-plugin-tell-tale.ran").exists());

    let provider = manager.load("mock").await.unwrap();
    assert_eq!(provider.info().name, "mock");
    let listed = manager.list().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].health, snoozebot_core::Health::Serving);
    assert_eq!(marked_processes("manager").len(), 1);

    manager.unload("mock").await.unwrap();
    assert_no_marked_processes("manager").await;
    // A handle from before the unload answers that it was unloaded.
    let err = provider
        .list_instances(&InstanceFilter::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("unloaded"), "{err}");

    let err = manager.load("folder").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // Dropping the manager kills what it loaded, even with a handle still held.
    let held = manager.load("mock").await.unwrap();
    assert_eq!(marked_processes("manager").len(), 1);
    drop(manager);
    assert_no_marked_processes("manager").await;
    assert!(held.list_instances(&InstanceFilter::new()).await.is_err());
}

#[tokio::test]
async fn a_frozen_plugin_fails_its_health_check_and_is_replaced() {
    let config = marked("frozen")
        .with_health_check_interval(Some(Duration::from_millis(200)))
        .with_restarts(5, Duration::from_millis(50));
    let client = PluginClient::launch("mock", mock_plugin(), config)
        .await
        .unwrap();
    let frozen = client.pid().unwrap();
    // SIGSTOP: the process lives on but answers nothing, as a deadlocked plugin would.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(frozen as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();

    assert!(
        eventually(Duration::from_secs(8), || client
            .pid()
            .is_some_and(|pid| pid != frozen))
        .await,
        "the frozen plugin was not replaced"
    );
    until_back(&client).await;
    assert!(
        eventually(Duration::from_secs(2), || is_reaped(frozen)).await,
        "the frozen plugin was not killed"
    );
    client.shutdown().await;
    assert_no_marked_processes("frozen").await;
}
