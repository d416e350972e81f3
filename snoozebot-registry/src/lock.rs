//! The lock file: which plugin bytes are installed (name, version, platform, SHA-256, source,
//! signing key) and the newest index accepted from each registry; written atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use snoozebot_plugin::TrustPolicy;

use crate::RegistryError;

const LOCK_FORMAT: u32 = 1;
const MAX_LOCK_BYTES: u64 = 1024 * 1024;

/// The lock file's contents. Commit it beside the configuration to install the same bytes on
/// another machine; the plugin host turns its hashes into pins ([`trust_policy`]), so a locked
/// plugin changed on disk is refused at load.
///
/// [`trust_policy`]: LockFile::trust_policy
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    #[serde(default = "lock_format")]
    format: u32,
    /// Per registry, what was last accepted from it.
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryState>,
    /// The installed plugins, by name.
    #[serde(default)]
    pub plugins: BTreeMap<String, LockedPlugin>,
}

fn lock_format() -> u32 {
    LOCK_FORMAT
}

/// What a client remembers of a registry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryState {
    /// The highest index version accepted: an older index is a rollback and refused.
    pub index_version: u64,
}

/// One installed plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPlugin {
    /// Its version.
    pub version: semver::Version,
    /// The platform of the installed build, `os/arch`.
    pub platform: String,
    /// The installed file's SHA-256.
    pub sha256: String,
    /// The registry it came from.
    pub registry: String,
    /// Where the artifact was downloaded from.
    pub source: String,
    /// The public key whose signature on the index vouched for it.
    pub key: String,
}

impl LockFile {
    /// Reads a lock file; a missing one is empty.
    pub fn read(path: &Path) -> Result<Self, RegistryError> {
        let bytes = match crate::fetch::read_bounded_file(path, MAX_LOCK_BYTES) {
            Ok(bytes) => bytes,
            Err(RegistryError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(LockFile {
                    format: LOCK_FORMAT,
                    ..LockFile::default()
                });
            }
            Err(error) => return Err(error),
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            RegistryError::Malformed(format!("lock file {} is not UTF-8", path.display()))
        })?;
        let lock: LockFile = toml::from_str(text).map_err(|error| {
            RegistryError::Malformed(format!("lock file {}: {error}", path.display()))
        })?;
        if lock.format != LOCK_FORMAT {
            return Err(RegistryError::Malformed(format!(
                "lock file {} has format {}, this version reads {LOCK_FORMAT}",
                path.display(),
                lock.format
            )));
        }
        for (name, plugin) in &lock.plugins {
            if !crate::index::is_sha256_hex(&plugin.sha256) {
                return Err(RegistryError::Malformed(format!(
                    "lock file {}: {name}'s sha256 is not a SHA-256",
                    path.display()
                )));
            }
        }
        Ok(lock)
    }

    /// Writes it atomically: a temporary file beside it, synced, renamed over it.
    pub fn write(&self, path: &Path) -> Result<(), RegistryError> {
        let mut text = String::from(
            "# Written by `snoozebot plugins install`: the plugin bytes installed here, and the\n\
             # newest registry index accepted. Commit it to install the same bytes elsewhere.\n",
        );
        text.push_str(&toml::to_string(self).map_err(|error| {
            RegistryError::Malformed(format!("cannot write the lock file: {error}"))
        })?);
        write_atomically(path, text.as_bytes(), 0o644)
    }

    /// The pin for a locked plugin: its SHA-256 as a trust policy (`None` when not locked).
    pub fn trust_policy(&self, name: &str) -> Option<TrustPolicy> {
        let locked = self.plugins.get(name)?;
        TrustPolicy::default().with_sha256(&locked.sha256).ok()
    }

    /// The highest index version accepted from `registry` (0 if none).
    pub fn index_version(&self, registry: &str) -> u64 {
        self.registries
            .get(registry)
            .map_or(0, |state| state.index_version)
    }
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never part of
/// one: a temporary file in the same directory, synced, renamed, the directory synced.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), RegistryError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|error| {
        let _ = std::fs::remove_file(&temporary);
        RegistryError::io(path, error)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_round_trips_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugins.lock");
        assert_eq!(LockFile::read(&path).unwrap().plugins.len(), 0);
        let mut lock = LockFile::read(&path).unwrap();
        lock.registries
            .insert("main".into(), RegistryState { index_version: 7 });
        lock.plugins.insert(
            "aws".into(),
            LockedPlugin {
                version: semver::Version::new(1, 2, 0),
                platform: "linux/x86_64".into(),
                sha256: "ab".repeat(32),
                registry: "main".into(),
                source: "https://plugins.example.com/a".into(),
                key: "RWQ".into(),
            },
        );
        lock.write(&path).unwrap();
        let read = LockFile::read(&path).unwrap();
        assert_eq!(read, lock);
        assert_eq!(read.index_version("main"), 7);
        assert!(read.trust_policy("aws").unwrap().is_restrictive());
        assert!(read.trust_policy("gcp").is_none());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the temporary file stayed");
    }

    #[test]
    fn a_broken_lock_file_is_an_error_not_an_empty_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugins.lock");
        for broken in [
            &b"format = 1\n[plugins.aws]\nversion = 1\n"[..],
            b"\xff\xfe",
            b"format = 9\n",
        ] {
            std::fs::write(&path, broken).unwrap();
            assert!(matches!(
                LockFile::read(&path),
                Err(RegistryError::Malformed(_))
            ));
        }
    }
}
