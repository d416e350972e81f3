//! The registry's index: the plugins it lists, their versions and per-platform artifacts, its
//! own version and expiry, in JSON, with the checks every parsed index must pass.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::RegistryError;

/// The index's file name, at the registry's root.
pub const INDEX_FILE: &str = "index.json";
/// Its signatures' file name (one or more minisign signatures, one after the other).
pub const SIGNATURES_FILE: &str = "index.json.minisig";
/// The index format this crate reads and writes.
pub const SCHEMA: u32 = 1;
/// The largest index accepted, in bytes.
pub const MAX_INDEX_BYTES: u64 = 8 * 1024 * 1024;
/// The largest artifact an index may list, in bytes.
pub const MAX_ARTIFACT_BYTES: u64 = 1024 * 1024 * 1024;

/// A registry's signed index.
///
/// `version` grows with every publication; a client refuses an index older than the last one
/// it accepted (a mirror rolling it back) and one past `expires` (a mirror freezing it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// The format: [`SCHEMA`].
    pub schema: u32,
    /// This publication's number, greater than every earlier one's.
    pub version: u64,
    /// When this publication stops being trusted.
    pub expires: DateTime<Utc>,
    /// The plugins, by name (the `<name>` of `snoozebot-plugin-<name>`).
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginEntry>,
}

/// One plugin of an index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// One line about the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its releases, by version.
    #[serde(default)]
    pub versions: BTreeMap<Version, Release>,
}

/// One release of a plugin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The plugin protocol versions it speaks (the go-plugin app protocol versions).
    pub protocols: Vec<u32>,
    /// Its builds, one per platform.
    pub artifacts: Vec<Artifact>,
}

/// One build of a release, for one platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// The operating system, as Rust names it (`linux`, `macos`).
    pub os: String,
    /// The architecture, as Rust names it (`x86_64`, `aarch64`).
    pub arch: String,
    /// Where it is: relative to the registry's root, or an absolute `https://` URL.
    pub url: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its SHA-256, 64 lowercase hex digits.
    pub sha256: String,
}

/// An operating system and architecture, as Rust names them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// `std::env::consts::OS`'s names: `linux`, `macos`, ...
    pub os: String,
    /// `std::env::consts::ARCH`'s names: `x86_64`, `aarch64`, ...
    pub arch: String,
}

impl Platform {
    /// The platform this program was built for.
    pub fn current() -> Self {
        Platform {
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
        }
    }

    /// `os` on `arch`.
    pub fn new(os: impl Into<String>, arch: impl Into<String>) -> Self {
        Platform {
            os: os.into(),
            arch: arch.into(),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)
    }
}

impl Artifact {
    /// The platform it is built for.
    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.arch)
    }
}

/// Whether `hex` is a SHA-256 as an index writes it.
pub(crate) fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_platform_word(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 32
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Index {
    /// An empty index: version 0, expiring now.
    pub fn empty() -> Self {
        Index {
            schema: SCHEMA,
            version: 0,
            expires: Utc::now(),
            plugins: BTreeMap::new(),
        }
    }

    /// Parses and checks an index (its signature is checked before, by [`TrustedKeys`]).
    ///
    /// [`TrustedKeys`]: crate::TrustedKeys
    pub fn from_json(bytes: &[u8]) -> Result<Self, RegistryError> {
        let index: Index = serde_json::from_slice(bytes).map_err(|error| {
            RegistryError::Malformed(format!("the index does not parse: {error}"))
        })?;
        index.check()?;
        Ok(index)
    }

    /// The index as its publisher writes it: pretty JSON, sorted, with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data cannot fail.
        let mut json = serde_json::to_vec_pretty(self).unwrap_or_default();
        json.push(b'\n');
        json
    }

    /// What every index must be: this crate's schema, valid plugin names, and artifacts with a
    /// platform, a URL, a size within bounds and a SHA-256, one per platform per release.
    pub fn check(&self) -> Result<(), RegistryError> {
        let malformed = |what: String| Err(RegistryError::Malformed(what));
        if self.schema != SCHEMA {
            return malformed(format!(
                "index schema {} is not {SCHEMA}, the one this version reads",
                self.schema
            ));
        }
        for (name, plugin) in &self.plugins {
            if snoozebot_core::manager::validate_provider_name(name).is_err() {
                return malformed(format!("{name:?} is not a plugin name"));
            }
            for (version, release) in &plugin.versions {
                if release.protocols.is_empty() {
                    return malformed(format!("{name} {version} names no protocol version"));
                }
                let mut platforms = Vec::new();
                for artifact in &release.artifacts {
                    let platform = artifact.platform();
                    if !is_platform_word(&artifact.os) || !is_platform_word(&artifact.arch) {
                        return malformed(format!("{name} {version}: bad platform {platform}"));
                    }
                    if platforms.contains(&platform) {
                        return malformed(format!("{name} {version} lists {platform} twice"));
                    }
                    if artifact.url.is_empty() {
                        return malformed(format!("{name} {version} {platform} has no URL"));
                    }
                    if artifact.size == 0 || artifact.size > MAX_ARTIFACT_BYTES {
                        return malformed(format!(
                            "{name} {version} {platform}: size {} is not within 1..={MAX_ARTIFACT_BYTES}",
                            artifact.size
                        ));
                    }
                    if !is_sha256_hex(&artifact.sha256) {
                        return malformed(format!(
                            "{name} {version} {platform}: {:?} is not a SHA-256 in lowercase hex",
                            artifact.sha256
                        ));
                    }
                    platforms.push(platform);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        let mut index = Index::empty();
        index.version = 3;
        index.plugins.insert(
            "aws".to_owned(),
            PluginEntry {
                description: Some("Amazon EC2".to_owned()),
                versions: BTreeMap::from([(
                    Version::new(1, 2, 0),
                    Release {
                        protocols: vec![1],
                        artifacts: vec![Artifact {
                            os: "linux".to_owned(),
                            arch: "x86_64".to_owned(),
                            url: "artifacts/aws/1.2.0/snoozebot-plugin-aws".to_owned(),
                            size: 10,
                            sha256: "ab".repeat(32),
                        }],
                    },
                )]),
            },
        );
        index
    }

    #[test]
    fn an_index_round_trips_through_its_json() {
        let index = sample();
        let json = index.to_json();
        assert!(String::from_utf8_lossy(&json).contains("\"1.2.0\""));
        assert_eq!(Index::from_json(&json).unwrap(), index);
    }

    #[test]
    fn malformed_indexes_are_refused_with_what_is_wrong() {
        type Spoil = Box<dyn Fn(&mut Index)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("schema 2", Box::new(|i: &mut Index| i.schema = 2)),
            (
                "not a plugin name",
                Box::new(|i: &mut Index| {
                    let entry = i.plugins.remove("aws").unwrap();
                    i.plugins.insert("../aws".to_owned(), entry);
                }),
            ),
            (
                "SHA-256",
                Box::new(|i: &mut Index| artifact(i).sha256 = "AB".repeat(32)),
            ),
            ("size 0", Box::new(|i: &mut Index| artifact(i).size = 0)),
            (
                "bad platform",
                Box::new(|i: &mut Index| artifact(i).os = "Linux/../x".to_owned()),
            ),
            ("no URL", Box::new(|i: &mut Index| artifact(i).url.clear())),
            (
                "twice",
                Box::new(|i: &mut Index| {
                    let copy = artifact(i).clone();
                    release(i).artifacts.push(copy);
                }),
            ),
            (
                "no protocol",
                Box::new(|i: &mut Index| release(i).protocols.clear()),
            ),
        ];
        for (expected, spoil) in cases {
            let mut index = sample();
            spoil(&mut index);
            let error = Index::from_json(&index.to_json()).unwrap_err();
            assert!(
                matches!(&error, RegistryError::Malformed(what) if what.contains(expected)),
                "{expected}: {error}"
            );
        }
        for garbage in [
            &b""[..],
            b"{",
            b"[]",
            b"\xff\xfe",
            br#"{"schema":1,"version":1,"expires":"2030-01-01T00:00:00Z","extra":1}"#,
        ] {
            assert!(matches!(
                Index::from_json(garbage),
                Err(RegistryError::Malformed(_))
            ));
        }
    }

    fn release(index: &mut Index) -> &mut Release {
        index
            .plugins
            .get_mut("aws")
            .unwrap()
            .versions
            .values_mut()
            .next()
            .unwrap()
    }

    fn artifact(index: &mut Index) -> &mut Artifact {
        &mut release(index).artifacts[0]
    }
}
