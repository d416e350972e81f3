//! Plugins installed from a registry served on 127.0.0.1 (and from a `file://` mirror), with
//! the real mock plugin as the artifact: installed then loaded, and every attack refused with
//! nothing installed.
#![cfg(feature = "plugin")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use snoozebot_core::{Backoff, CloudProvider, ErrorKind, InstanceId};
use snoozebot_plugin::{PluginClient, PluginConfig};
use snoozebot_registry::semver::{Version, VersionReq};
use snoozebot_registry::{
    FetchOptions, Installer, Platform, Publisher, Registry, RegistryError, SigningKey, TrustedKeys,
    Verified,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn mock_plugin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-mock"))
}

/// A copy of the mock plugin with `tag` appended: another version's bytes, still runnable.
fn build(dir: &Path, tag: &str) -> PathBuf {
    let mut bytes = std::fs::read(mock_plugin()).unwrap();
    bytes.extend_from_slice(tag.as_bytes());
    let path = dir.join(format!("build-{tag}"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// What the test server does to a request for a path ending in `drop_suffix`: send half the
/// body, then close, `drops` more times.
#[derive(Default)]
struct Faults {
    drop_suffix: Option<String>,
    drops: usize,
}

/// A static file server on 127.0.0.1: HTTP/1.1, one request a connection, files under `root`.
struct FileServer {
    url: String,
    faults: Arc<Mutex<Faults>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FileServer {
    async fn start(root: PathBuf) -> FileServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let faults = Arc::new(Mutex::new(Faults::default()));
        let shared = Arc::clone(&faults);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let root = root.clone();
                let faults = Arc::clone(&shared);
                tokio::spawn(async move {
                    let mut head = vec![0u8; 8192];
                    let mut read = 0;
                    while !head[..read].windows(4).any(|w| w == b"\r\n\r\n") && read < head.len() {
                        match stream.read(&mut head[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    let head = String::from_utf8_lossy(&head[..read]).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let file = root.join(path.trim_start_matches('/'));
                    let Ok(body) = std::fs::read(&file) else {
                        let _ = stream
                            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    };
                    let drop_half = {
                        let mut faults = faults.lock().unwrap();
                        let hit = faults.drops > 0
                            && faults
                                .drop_suffix
                                .as_ref()
                                .is_some_and(|s| path.ends_with(s.as_str()));
                        if hit {
                            faults.drops -= 1;
                        }
                        hit
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let sent = if drop_half {
                        &body[..body.len() / 2]
                    } else {
                        &body[..]
                    };
                    let _ = stream.write_all(sent).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        FileServer { url, faults, task }
    }

    fn drop_downloads(&self, suffix: &str, times: usize) {
        let mut faults = self.faults.lock().unwrap();
        faults.drop_suffix = Some(suffix.to_owned());
        faults.drops = times;
    }
}

/// A registry directory with a key, a test server in front of it, and a plugin directory.
struct World {
    work: tempfile::TempDir,
    key: SigningKey,
    publisher: Publisher,
    server: FileServer,
}

impl World {
    async fn new() -> World {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("registry");
        std::fs::create_dir_all(&root).unwrap();
        let server = FileServer::start(root.clone()).await;
        World {
            key: SigningKey::generate().unwrap(),
            publisher: Publisher::new(root),
            server,
            work,
        }
    }

    fn root(&self) -> PathBuf {
        self.work.path().join("registry")
    }

    /// Publishes `name` `version` (the mock plugin's bytes tagged with both) for `platform`.
    fn publish(&self, name: &str, version: &str, platform: Platform, valid_for: Duration) {
        let binary = build(self.work.path(), &format!("{name}-{version}"));
        let mut index = self.publisher.index().unwrap();
        self.publisher
            .add(
                &mut index,
                name,
                &version.parse().unwrap(),
                platform,
                &[1],
                &binary,
            )
            .unwrap();
        let key = SigningKey::from_file(&self.key_file(), None).unwrap();
        self.publisher
            .publish(&mut index, &[key], valid_for)
            .unwrap();
    }

    fn key_file(&self) -> PathBuf {
        let path = self.work.path().join("publisher.key");
        if !path.exists() {
            std::fs::write(&path, self.key.secret_key_file().unwrap()).unwrap();
        }
        path
    }

    fn registry_trusting(&self, keys: &[String]) -> Registry {
        Registry::new("main", &self.server.url, TrustedKeys::new(keys).unwrap())
            .unwrap()
            .with_fetch_options(FetchOptions {
                attempts: 3,
                backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(50)),
                read_timeout: Duration::from_secs(5),
            })
            .unwrap()
    }

    fn registry(&self) -> Registry {
        self.registry_trusting(&[self.key.public_base64()])
    }

    fn installer(&self) -> Installer {
        Installer::new(self.work.path().join("plugins"))
    }
}

const DAY: Duration = Duration::from_secs(86_400);

fn any() -> VersionReq {
    VersionReq::STAR
}

fn nothing_installed(installer: &Installer, name: &str) {
    assert!(!installer.path_of(name).exists(), "{name} was installed");
    assert!(
        !installer.lock().unwrap().plugins.contains_key(name),
        "{name} was locked"
    );
    let leftovers: Vec<String> = std::fs::read_dir(installer.dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[tokio::test]
async fn an_installed_plugin_loads_and_once_changed_on_disk_is_refused_by_its_pin() {
    let world = World::new().await;
    world.publish("mock", "1.0.0", Platform::current(), DAY);
    let installer = world.installer();
    let mut seen = Vec::new();
    let installed = installer
        .install(&world.registry(), "mock", &any(), &mut |done, total| {
            seen.push((done, total))
        })
        .await
        .unwrap();
    assert_eq!(installed.version, Version::new(1, 0, 0));
    assert_eq!(
        seen.last().map(|(done, total)| done == total),
        Some(true),
        "no final progress"
    );
    let lock = installer.lock().unwrap();
    assert_eq!(lock.index_version("main"), 1);
    assert_eq!(lock.plugins["mock"].key, world.key.public_base64());

    let pinned = || {
        PluginConfig::default()
            .with_auto_mtls(false)
            .with_trust(installer.lock().unwrap().trust_policy("mock").unwrap())
    };
    let client = PluginClient::launch("mock", &installed.path, pinned())
        .await
        .unwrap();
    client
        .get_instance(&InstanceId::new("mock-0001").unwrap())
        .await
        .unwrap();
    client.shutdown().await;

    let mut bytes = std::fs::read(&installed.path).unwrap();
    bytes.extend_from_slice(b"patched");
    std::fs::write(&installed.path, bytes).unwrap();
    let error = PluginClient::launch("mock", &installed.path, pinned())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    assert!(
        matches!(&installer.verify().unwrap()[..], [(name, Verified::Changed(_))] if name == "mock")
    );
}

#[tokio::test]
async fn a_tampered_artifact_is_refused_and_nothing_is_installed() {
    let world = World::new().await;
    world.publish("mock", "1.0.0", Platform::current(), DAY);
    let index = world.publisher.index().unwrap();
    let artifact = &index.plugins["mock"].versions[&Version::new(1, 0, 0)].artifacts[0];
    let path = world.root().join(&artifact.url);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let installer = world.installer();
    let error = installer
        .install(&world.registry(), "mock", &any(), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::Tampered(ref what) if what.contains("SHA-256")),
        "{error}"
    );
    nothing_installed(&installer, "mock");

    // Longer than listed: refused as soon as it passes the listed size.
    bytes.extend_from_slice(b"more");
    std::fs::write(&path, &bytes).unwrap();
    let error = installer
        .install(&world.registry(), "mock", &any(), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::Tampered(ref what) if what.contains("longer")),
        "{error}"
    );
    nothing_installed(&installer, "mock");
}

#[tokio::test]
async fn an_unsigned_altered_or_stranger_signed_index_is_refused() {
    let world = World::new().await;
    world.publish("mock", "1.0.0", Platform::current(), DAY);
    let installer = world.installer();

    let stranger = SigningKey::generate().unwrap();
    let error = installer
        .install(
            &world.registry_trusting(&[stranger.public_base64()]),
            "mock",
            &any(),
            &mut |_, _| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::UntrustedKey), "{error}");

    let index_path = world.root().join("index.json");
    let signed = std::fs::read_to_string(&index_path).unwrap();
    std::fs::write(
        &index_path,
        signed.replace("\"version\": 1", "\"version\": 9"),
    )
    .unwrap();
    let error = installer
        .install(&world.registry(), "mock", &any(), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::BadSignature(_)), "{error}");

    std::fs::write(&index_path, signed).unwrap();
    std::fs::remove_file(world.root().join("index.json.minisig")).unwrap();
    let error = installer
        .install(&world.registry(), "mock", &any(), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::BadSignature(ref what) if what.contains("unsigned")),
        "{error}"
    );

    std::fs::write(world.root().join("index.json.minisig"), b"\xff\xfe garbage").unwrap();
    let error = installer
        .install(&world.registry(), "mock", &any(), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::BadSignature(_)), "{error}");
    nothing_installed(&installer, "mock");
}

#[tokio::test]
async fn a_rolled_back_or_expired_index_is_refused() {
    let world = World::new().await;
    world.publish("mock", "1.0.0", Platform::current(), DAY);
    let old_index = std::fs::read(world.root().join("index.json")).unwrap();
    let old_signatures = std::fs::read(world.root().join("index.json.minisig")).unwrap();
    world.publish("mock", "1.1.0", Platform::current(), DAY);
    let installer = world.installer();
    installer
        .install(&world.registry(), "mock", &any(), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(installer.lock().unwrap().index_version("main"), 2);

    // A mirror serving the older, validly signed index.
    std::fs::write(world.root().join("index.json"), &old_index).unwrap();
    std::fs::write(world.root().join("index.json.minisig"), &old_signatures).unwrap();
    let error = world
        .registry()
        .index(&installer.lock().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RegistryError::Rollback {
                offered: 1,
                accepted: 2
            }
        ),
        "{error}"
    );

    world.publish("mock", "1.2.0", Platform::current(), Duration::ZERO);
    let error = installer
        .upgrade(&world.registry(), "mock", &any(), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::Expired { .. }), "{error}");
    assert_eq!(
        installer.lock().unwrap().plugins["mock"].version,
        Version::new(1, 1, 0)
    );
}

#[tokio::test]
async fn a_download_cut_off_is_retried_and_one_that_always_is_installs_nothing() {
    let world = World::new().await;
    world.publish("mock", "1.0.0", Platform::current(), DAY);
    let installer = world.installer();

    // What an installer killed mid-download left behind.
    std::fs::create_dir_all(installer.dir()).unwrap();
    let abandoned = installer.dir().join(".snoozebot-partial-mock-99999");
    std::fs::write(&abandoned, b"half a plugin").unwrap();
    world.server.drop_downloads("snoozebot-plugin-mock", 1);
    installer
        .install(&world.registry(), "mock", &any(), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        installer.verify().unwrap(),
        [("mock".to_owned(), Verified::Intact)]
    );
    assert!(
        !abandoned.exists(),
        "the next install did not remove a killed one's leftovers"
    );
    assert!(installer.remove("mock").await.unwrap());

    world.server.drop_downloads("snoozebot-plugin-mock", 100);
    let error = installer
        .install(&world.registry(), "mock", &any(), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::Network(ref what) if what.contains("end of file")),
        "{error}"
    );
    nothing_installed(&installer, "mock");
}

#[tokio::test]
async fn a_build_for_another_platform_only_is_refused_by_name() {
    let world = World::new().await;
    world.publish("mock", "1.0.0", Platform::new("plan9", "mips"), DAY);
    let installer = world.installer();
    let error = installer
        .install(&world.registry(), "mock", &any(), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::NoPlatform { ref available, .. } if available == "plan9/mips"),
        "{error}"
    );
    nothing_installed(&installer, "mock");
    let error = installer
        .install(&world.registry(), "gone", &any(), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::UnknownPlugin(_)), "{error}");
}

#[tokio::test]
async fn constraints_pick_the_highest_match_and_upgrades_stay_within_them() {
    let world = World::new().await;
    for version in ["1.0.0", "1.1.0", "2.0.0"] {
        world.publish("mock", version, Platform::current(), DAY);
    }
    let installer = world.installer();
    let registry = world.registry();
    let caret_one: VersionReq = "^1".parse().unwrap();
    let installed = installer
        .install(&registry, "mock", &caret_one, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(installed.version, Version::new(1, 1, 0));
    assert!(
        installer
            .upgrade(&registry, "mock", &caret_one, &mut |_, _| {})
            .await
            .unwrap()
            .is_none()
    );
    world.publish("mock", "1.2.0", Platform::current(), DAY);
    let upgraded = installer
        .upgrade(&registry, "mock", &caret_one, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(upgraded.unwrap().version, Version::new(1, 2, 0));
    let upgraded = installer
        .upgrade(&registry, "mock", &any(), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(upgraded.unwrap().version, Version::new(2, 0, 0));
    assert_eq!(
        installer.verify().unwrap(),
        [("mock".to_owned(), Verified::Intact)]
    );
    let error = installer
        .install(&registry, "mock", &"^3".parse().unwrap(), &mut |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::NoMatchingVersion { .. }),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_installs_at_once_both_land_in_the_lock_file() {
    let world = World::new().await;
    world.publish("mock", "1.0.0", Platform::current(), DAY);
    world.publish("other", "1.0.0", Platform::current(), DAY);
    let registry = world.registry();
    let (first, second) = (world.installer(), world.installer());
    let wanted = any();
    let (mut quiet, mut also_quiet) = (|_, _| {}, |_, _| {});
    let (a, b) = tokio::join!(
        first.install(&registry, "mock", &wanted, &mut quiet),
        second.install(&registry, "other", &wanted, &mut also_quiet),
    );
    a.unwrap();
    b.unwrap();
    let lock = first.lock().unwrap();
    assert_eq!(lock.plugins.keys().collect::<Vec<_>>(), ["mock", "other"]);
    assert!(
        first
            .verify()
            .unwrap()
            .iter()
            .all(|(_, verdict)| *verdict == Verified::Intact)
    );
}

#[tokio::test]
async fn an_offline_install_from_a_file_mirror_gets_the_same_bytes() {
    let world = World::new().await;
    world.publish("mock", "1.0.0", Platform::current(), DAY);
    let online = world.installer();
    online
        .install(&world.registry(), "mock", &any(), &mut |_, _| {})
        .await
        .unwrap();

    // The registry copied to a directory, as `rsync` or a USB stick would.
    let mirror = world.work.path().join("mirror");
    copy_tree(&world.root(), &mirror);
    let offline = Installer::new(world.work.path().join("offline-plugins"));
    let registry = Registry::new(
        "main",
        &format!("file://{}", mirror.display()),
        TrustedKeys::new([world.key.public_base64()]).unwrap(),
    )
    .unwrap();
    offline
        .install(&registry, "mock", &any(), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        offline.lock().unwrap().plugins["mock"].sha256,
        online.lock().unwrap().plugins["mock"].sha256
    );
    assert_eq!(
        std::fs::read(offline.path_of("mock")).unwrap(),
        std::fs::read(online.path_of("mock")).unwrap()
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
