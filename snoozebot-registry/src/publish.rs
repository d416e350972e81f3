//! [`Publisher`]: a registry as its publisher keeps it — a directory of artifacts and a signed
//! index, ready to be served by any static file server, bucket or mirror.

use std::path::{Path, PathBuf};

use chrono::Utc;
use semver::Version;
use sha2::{Digest, Sha256};
use snoozebot_plugin::EXECUTABLE_PREFIX;

use crate::index::{
    Artifact, INDEX_FILE, Index, MAX_INDEX_BYTES, Platform, Release, SIGNATURES_FILE,
};
use crate::lock::write_atomically;
use crate::{RegistryError, SigningKey};

/// A registry directory: `index.json`, `index.json.minisig` and `artifacts/`.
///
/// ```no_run
/// use std::time::Duration;
/// use snoozebot_registry::{Platform, Publisher, SigningKey};
///
/// # fn example() -> Result<(), snoozebot_registry::RegistryError> {
/// let key = SigningKey::from_file("publisher.key".as_ref(), None)?;
/// let registry = Publisher::new("./registry");
/// let mut index = registry.index()?;
/// registry.add(&mut index, "aws", &"1.2.0".parse().unwrap(), Platform::current(), &[1],
///     "target/release/snoozebot-plugin-aws".as_ref())?;
/// registry.publish(&mut index, &[key], Duration::from_secs(30 * 86_400))?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Publisher {
    root: PathBuf,
}

impl Publisher {
    /// The registry at `root` (created on first publication).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Publisher { root: root.into() }
    }

    /// The current index, or an empty one for a new registry. (The publisher trusts its own
    /// directory; clients check the signature.)
    pub fn index(&self) -> Result<Index, RegistryError> {
        let path = self.root.join(INDEX_FILE);
        match crate::fetch::read_bounded_file(&path, MAX_INDEX_BYTES) {
            Ok(bytes) => Index::from_json(&bytes),
            Err(RegistryError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Index::empty())
            }
            Err(error) => Err(error),
        }
    }

    /// Copies `binary` into the registry as `name` `version` for `platform`, speaking
    /// `protocols`, and lists it in `index`. Adding the same bytes again changes nothing;
    /// different bytes under a published version and platform are refused.
    pub fn add(
        &self,
        index: &mut Index,
        name: &str,
        version: &Version,
        platform: Platform,
        protocols: &[u32],
        binary: &Path,
    ) -> Result<Artifact, RegistryError> {
        snoozebot_core::manager::validate_provider_name(name)
            .map_err(|error| RegistryError::Config(error.message().to_owned()))?;
        let bytes = std::fs::read(binary).map_err(|error| RegistryError::io(binary, error))?;
        let sha256: String = Sha256::digest(&bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let relative = format!(
            "artifacts/{name}/{version}/{}-{}/{EXECUTABLE_PREFIX}{name}",
            platform.os, platform.arch
        );
        let artifact = Artifact {
            os: platform.os.clone(),
            arch: platform.arch.clone(),
            url: relative.clone(),
            size: bytes.len() as u64,
            sha256,
        };
        let release = index
            .plugins
            .entry(name.to_owned())
            .or_default()
            .versions
            .entry(version.clone())
            .or_insert_with(|| Release {
                protocols: protocols.to_vec(),
                artifacts: Vec::new(),
            });
        if let Some(listed) = release
            .artifacts
            .iter()
            .find(|listed| listed.platform() == platform)
        {
            if listed.sha256 == artifact.sha256 {
                return Ok(listed.clone());
            }
            return Err(RegistryError::Config(format!(
                "{name} {version} for {platform} is published already with other bytes; \
                 publish a new version instead"
            )));
        }
        let target = self.root.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|error| RegistryError::io(parent, error))?;
        }
        write_atomically(&target, &bytes, 0o644)?;
        release.artifacts.push(artifact.clone());
        index.check()?;
        Ok(artifact)
    }

    /// Publishes `index`: a version above every earlier one, an expiry `valid_for` from now,
    /// signed by each of `keys` (sign with the old and the new key while clients move over).
    pub fn publish(
        &self,
        index: &mut Index,
        keys: &[SigningKey],
        valid_for: std::time::Duration,
    ) -> Result<(), RegistryError> {
        if keys.is_empty() {
            return Err(RegistryError::Config(
                "publishing needs a signing key".to_owned(),
            ));
        }
        let published = self.index()?.version;
        index.version = index.version.max(published) + 1;
        index.expires = Utc::now()
            + chrono::Duration::from_std(valid_for)
                .map_err(|error| RegistryError::Config(error.to_string()))?;
        index.check()?;
        let bytes = index.to_json();
        let comment = format!("snoozebot registry index version {}", index.version);
        let mut signatures = String::new();
        for key in keys {
            signatures.push_str(&key.sign(&bytes, &comment)?);
        }
        std::fs::create_dir_all(&self.root)
            .map_err(|error| RegistryError::io(&self.root, error))?;
        // Signatures first: a client reading in between sees the old index with new
        // signatures and refuses it (tried again, it gets the pair).
        write_atomically(
            &self.root.join(SIGNATURES_FILE),
            signatures.as_bytes(),
            0o644,
        )?;
        write_atomically(&self.root.join(INDEX_FILE), &bytes, 0o644)
    }
}
