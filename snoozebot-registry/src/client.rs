//! [`Registry`]: one registry as a client sees it — its index fetched, its signature, age and
//! expiry checked, and a plugin resolved to the artifact for this platform.

use chrono::Utc;
use semver::{Version, VersionReq};

use crate::fetch::{FetchOptions, Fetcher, Source};
use crate::index::{Artifact, INDEX_FILE, Index, MAX_INDEX_BYTES, Platform, SIGNATURES_FILE};
use crate::signing::MAX_SIGNATURES_BYTES;
use crate::{LockFile, RegistryError, TrustedKeys};

/// A registry: where it is and which keys may sign its index.
#[derive(Debug, Clone)]
pub struct Registry {
    name: String,
    source: Source,
    keys: TrustedKeys,
    fetcher: Fetcher,
}

/// An index whose signature, age and expiry were checked.
#[derive(Debug, Clone)]
pub struct VerifiedIndex {
    /// The index.
    pub index: Index,
    /// The trusted key that signed it.
    pub signed_by: String,
    /// The registry's name.
    pub registry: String,
}

/// What a plugin name and constraint resolve to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The plugin.
    pub name: String,
    /// The highest version that matches.
    pub version: Version,
    /// Its build for the platform.
    pub artifact: Artifact,
}

impl Registry {
    /// The registry `name` at `location` (see [`Source::parse`]), trusting `keys`.
    pub fn new(name: &str, location: &str, keys: TrustedKeys) -> Result<Self, RegistryError> {
        Ok(Registry {
            name: name.to_owned(),
            source: Source::parse(location)?,
            keys,
            fetcher: Fetcher::new(FetchOptions::default())?,
        })
    }

    /// Network calls with these timeouts and retries instead.
    pub fn with_fetch_options(mut self, options: FetchOptions) -> Result<Self, RegistryError> {
        self.fetcher = Fetcher::new(options)?;
        Ok(self)
    }

    /// The registry's name (as the lock file records it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it is.
    pub fn source(&self) -> &Source {
        &self.source
    }

    pub(crate) fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    /// Fetches the index and checks it: signed by a trusted key, not expired, and not older
    /// than the version `lock` records as accepted.
    pub async fn index(&self, lock: &LockFile) -> Result<VerifiedIndex, RegistryError> {
        let signatures = match self
            .fetcher
            .document(&self.source.join(SIGNATURES_FILE)?, MAX_SIGNATURES_BYTES)
            .await
        {
            Err(RegistryError::NotFound(_)) => {
                return Err(RegistryError::BadSignature(format!(
                    "{} has no {SIGNATURES_FILE}: an unsigned index is never used",
                    self.source
                )));
            }
            Err(RegistryError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(RegistryError::BadSignature(format!(
                    "{} has no {SIGNATURES_FILE}: an unsigned index is never used",
                    self.source
                )));
            }
            other => other?,
        };
        let bytes = self
            .fetcher
            .document(&self.source.join(INDEX_FILE)?, MAX_INDEX_BYTES)
            .await?;
        let signed_by = self.keys.verify(&bytes, &signatures)?;
        let index = Index::from_json(&bytes)?;
        let accepted = lock.index_version(&self.name);
        if index.version < accepted {
            return Err(RegistryError::Rollback {
                offered: index.version,
                accepted,
            });
        }
        if index.expires <= Utc::now() {
            return Err(RegistryError::Expired {
                expired: index.expires,
            });
        }
        Ok(VerifiedIndex {
            index,
            signed_by,
            registry: self.name.clone(),
        })
    }
}

impl VerifiedIndex {
    /// The highest version of `name` that matches `wanted` and speaks one of `protocols`, and
    /// its build for `platform`.
    pub fn resolve(
        &self,
        name: &str,
        wanted: &VersionReq,
        platform: &Platform,
        protocols: &[u32],
    ) -> Result<Resolved, RegistryError> {
        let plugin = self
            .index
            .plugins
            .get(name)
            .ok_or_else(|| RegistryError::UnknownPlugin(name.to_owned()))?;
        let chosen = plugin.versions.iter().rev().find(|(version, release)| {
            wanted.matches(version) && release.protocols.iter().any(|p| protocols.contains(p))
        });
        let Some((version, release)) = chosen else {
            let listed: Vec<String> = plugin
                .versions
                .iter()
                .map(|(version, release)| {
                    if release.protocols.iter().any(|p| protocols.contains(p)) {
                        version.to_string()
                    } else {
                        format!(
                            "{version} (protocols {:?}, this host speaks {protocols:?})",
                            release.protocols
                        )
                    }
                })
                .collect();
            return Err(RegistryError::NoMatchingVersion {
                name: name.to_owned(),
                wanted: wanted.to_string(),
                listed: if listed.is_empty() {
                    "none".to_owned()
                } else {
                    listed.join(", ")
                },
            });
        };
        let artifact = release
            .artifacts
            .iter()
            .find(|artifact| artifact.platform() == *platform)
            .ok_or_else(|| RegistryError::NoPlatform {
                name: name.to_owned(),
                version: version.to_string(),
                platform: platform.to_string(),
                available: release
                    .artifacts
                    .iter()
                    .map(|artifact| artifact.platform().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        Ok(Resolved {
            name: name.to_owned(),
            version: version.clone(),
            artifact: artifact.clone(),
        })
    }
}
