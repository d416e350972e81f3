//! [`Installer`]: plugins from a registry into a plugin directory — resolved, downloaded to a
//! temporary file, checked, synced and renamed into place, one install at a time, and recorded
//! in the lock file; upgraded, removed and verified against it.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use semver::VersionReq;
use sha2::{Digest, Sha256};
use snoozebot_plugin::{APP_PROTOCOL_VERSION, EXECUTABLE_PREFIX};

use crate::index::Platform;
use crate::lock::{LockedPlugin, RegistryState};
use crate::{LockFile, Registry, RegistryError};

/// The lock file's name when none is given: in the plugin directory, where discovery ignores it.
pub const DEFAULT_LOCK_FILE: &str = "snoozebot-plugins.lock";
const INSTALL_LOCK: &str = ".snoozebot-install.lock";
const PARTIAL_PREFIX: &str = ".snoozebot-partial-";

/// Installs plugins into one plugin directory, recording them in a lock file.
///
/// ```no_run
/// use snoozebot_registry::{Installer, Registry, TrustedKeys};
///
/// # async fn example() -> Result<(), snoozebot_registry::RegistryError> {
/// let keys = TrustedKeys::new(["RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"])?;
/// let registry = Registry::new("main", "https://plugins.example.com/stable/", keys)?;
/// let installer = Installer::new("/var/lib/snoozebot/plugins");
/// let installed = installer.install(&registry, "aws", &"^1".parse().unwrap(), &mut |_, _| {}).await?;
/// println!("{} {} installed at {}", installed.name, installed.version, installed.path.display());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Installer {
    dir: PathBuf,
    lock_path: PathBuf,
    platform: Platform,
}

/// A plugin as installed.
#[derive(Debug, Clone)]
pub struct Installed {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: semver::Version,
    /// The executable.
    pub path: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
}

/// What [`Installer::verify`] found for one locked plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The file is the locked bytes.
    Intact,
    /// There is no file.
    Missing,
    /// The file is not the locked bytes; its SHA-256 is this.
    Changed(String),
}

/// Removes a temporary download unless it was moved into place.
struct Partial {
    path: PathBuf,
    kept: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Installer {
    /// Installs into `dir` (created if missing), with the lock file
    /// [`DEFAULT_LOCK_FILE`] in it.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Installer {
            lock_path: dir.join(DEFAULT_LOCK_FILE),
            dir,
            platform: Platform::current(),
        }
    }

    /// Keeps the lock file at `path` instead.
    pub fn with_lock_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.lock_path = path.into();
        self
    }

    /// Installs builds for `platform` instead of this machine's (for a mirror of another).
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// The plugin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// The lock file as it is now.
    pub fn lock(&self) -> Result<LockFile, RegistryError> {
        LockFile::read(&self.lock_path)
    }

    /// Where plugin `name` is installed.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{EXECUTABLE_PREFIX}{name}"))
    }

    /// Installs the highest version of `name` matching `wanted` that speaks this host's plugin
    /// protocol, for this platform; `progress` hears `(bytes so far, total)`.
    ///
    /// Nothing is installed unless every check passes: the index's signature, age and expiry,
    /// and the artifact's size and SHA-256. Installs into one directory run one at a time.
    pub async fn install(
        &self,
        registry: &Registry,
        name: &str,
        wanted: &VersionReq,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<Installed, RegistryError> {
        let _held = self.hold().await?;
        let mut lock = self.lock()?;
        let index = registry.index(&lock).await?;
        let resolved = index.resolve(name, wanted, &self.platform, &[APP_PROTOCOL_VERSION])?;
        let source = registry.source().join(&resolved.artifact.url)?;
        let path = self.path_of(name);
        let partial_path = self
            .dir
            .join(format!("{PARTIAL_PREFIX}{name}-{}", std::process::id()));
        let mut partial = Partial {
            path: partial_path.clone(),
            kept: false,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial_path)
            .map_err(|error| RegistryError::io(&partial_path, error))?;
        let mut file = tokio::fs::File::from_std(file);
        registry
            .fetcher()
            .artifact(
                &source,
                resolved.artifact.size,
                &resolved.artifact.sha256,
                &mut file,
                progress,
            )
            .await?;
        let file = file.into_std().await;
        let io = |error| RegistryError::io(&partial_path, error);
        file.sync_all().map_err(io)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o755))
            .map_err(io)?;
        drop(file);
        std::fs::rename(&partial_path, &path).map_err(|error| RegistryError::io(&path, error))?;
        partial.kept = true;
        sync_dir(&self.dir)?;
        lock.plugins.insert(
            name.to_owned(),
            LockedPlugin {
                version: resolved.version.clone(),
                platform: self.platform.to_string(),
                sha256: resolved.artifact.sha256.clone(),
                registry: registry.name().to_owned(),
                source: source.to_string(),
                key: index.signed_by.clone(),
            },
        );
        lock.registries.insert(
            registry.name().to_owned(),
            RegistryState {
                index_version: index.index.version,
            },
        );
        lock.write(&self.lock_path)?;
        tracing::info!(plugin = name, version = %resolved.version, path = %path.display(), "plugin installed");
        Ok(Installed {
            name: name.to_owned(),
            version: resolved.version,
            path,
            sha256: resolved.artifact.sha256,
        })
    }

    /// Installs a newer version of an installed plugin, within `wanted`; `None` when the
    /// installed one is the newest that matches.
    pub async fn upgrade(
        &self,
        registry: &Registry,
        name: &str,
        wanted: &VersionReq,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<Option<Installed>, RegistryError> {
        let lock = self.lock()?;
        let installed = lock
            .plugins
            .get(name)
            .ok_or_else(|| RegistryError::NotInstalled(name.to_owned()))?;
        let index = registry.index(&lock).await?;
        let resolved = index.resolve(name, wanted, &self.platform, &[APP_PROTOCOL_VERSION])?;
        if resolved.version <= installed.version {
            return Ok(None);
        }
        let exact = VersionReq::parse(&format!("={}", resolved.version))
            .map_err(|error| RegistryError::Malformed(error.to_string()))?;
        self.install(registry, name, &exact, progress)
            .await
            .map(Some)
    }

    /// Removes an installed plugin and its lock entry; `false` if it was not installed.
    pub async fn remove(&self, name: &str) -> Result<bool, RegistryError> {
        let _held = self.hold().await?;
        let mut lock = self.lock()?;
        let locked = lock.plugins.remove(name).is_some();
        let path = self.path_of(name);
        let existed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
            Err(error) => return Err(RegistryError::io(&path, error)),
        };
        if locked {
            lock.write(&self.lock_path)?;
        }
        Ok(locked || existed)
    }

    /// Checks every locked plugin's file against its locked SHA-256.
    pub fn verify(&self) -> Result<Vec<(String, Verified)>, RegistryError> {
        let lock = self.lock()?;
        let mut results = Vec::new();
        for (name, locked) in &lock.plugins {
            let path = self.path_of(name);
            let verdict = match std::fs::read(&path) {
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Verified::Missing,
                Err(error) => return Err(RegistryError::io(&path, error)),
                Ok(bytes) => {
                    let hex: String = Sha256::digest(&bytes)
                        .iter()
                        .map(|byte| format!("{byte:02x}"))
                        .collect();
                    if hex == locked.sha256 {
                        Verified::Intact
                    } else {
                        Verified::Changed(hex)
                    }
                }
            };
            results.push((name.clone(), verdict));
        }
        Ok(results)
    }

    /// Takes the directory's install lock (waiting for another install to finish), creating
    /// the directory if needed, and removes what interrupted installs left.
    async fn hold(&self) -> Result<Flock<File>, RegistryError> {
        std::fs::create_dir_all(&self.dir).map_err(|error| RegistryError::io(&self.dir, error))?;
        let path = self.dir.join(INSTALL_LOCK);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|error| RegistryError::io(&path, error))?;
            let held = Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, errno)| RegistryError::io(&path, errno.into()))?;
            // Whoever wrote these died holding the lock: nobody else can be writing them now.
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with(PARTIAL_PREFIX)
                    {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
            Ok(held)
        })
        .await
        .map_err(|error| RegistryError::Config(format!("the install lock task failed: {error}")))?
    }
}

fn sync_dir(dir: &Path) -> Result<(), RegistryError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| RegistryError::io(dir, error))
}
