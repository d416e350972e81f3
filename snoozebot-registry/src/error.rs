//! [`RegistryError`]: what can go wrong fetching, checking and installing, each case typed.

use std::path::{Path, PathBuf};

use snoozebot_core::{Error, ErrorKind};

/// A registry operation's failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A setting is wrong: a key that does not parse, a location with a bad scheme.
    #[error("{0}")]
    Config(String),
    /// No signature in the signatures file is valid: the index was changed, or the file is
    /// not a signature.
    #[error("bad index signature: {0}")]
    BadSignature(String),
    /// The index is signed, but by no trusted key.
    #[error("the index is not signed by any trusted key")]
    UntrustedKey,
    /// The index is older than one accepted before: a mirror rolled it back.
    #[error(
        "the index is version {offered}, older than version {accepted} accepted before: \
         refusing a rollback"
    )]
    Rollback {
        /// The offered index's version.
        offered: u64,
        /// The highest version accepted before.
        accepted: u64,
    },
    /// The index is past its expiry: a mirror froze it, or the publisher stopped refreshing.
    #[error("the index expired at {expired}: refusing a stale index")]
    Expired {
        /// When it expired.
        expired: chrono::DateTime<chrono::Utc>,
    },
    /// The index or the lock file does not parse or breaks a rule.
    #[error("{0}")]
    Malformed(String),
    /// An artifact is not what the index lists (size or SHA-256): nothing was installed.
    #[error("artifact refused, nothing installed: {0}")]
    Tampered(String),
    /// A download or document exceeds its bound.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The bound.
        limit: u64,
    },
    /// The registry does not list the plugin.
    #[error("the registry lists no plugin {0:?}")]
    UnknownPlugin(String),
    /// No listed version matches the constraint (and speaks a protocol this host speaks).
    #[error("no version of {name} matches {wanted}; listed: {listed}")]
    NoMatchingVersion {
        /// The plugin.
        name: String,
        /// The constraint.
        wanted: String,
        /// The versions listed, with what they lack.
        listed: String,
    },
    /// The matching version has no build for this platform.
    #[error("{name} {version} has no build for {platform}; built for: {available}")]
    NoPlatform {
        /// The plugin.
        name: String,
        /// The version chosen.
        version: String,
        /// This platform.
        platform: String,
        /// The platforms it is built for.
        available: String,
    },
    /// A locked plugin is not installed.
    #[error("{0} is not installed")]
    NotInstalled(String),
    /// A file the registry names is not there.
    #[error("{0}: not found")]
    NotFound(String),
    /// The network failed, after the retries.
    #[error("{0}")]
    Network(String),
    /// Reading or writing a local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

impl RegistryError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        RegistryError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl From<RegistryError> for Error {
    fn from(error: RegistryError) -> Self {
        let kind = match &error {
            RegistryError::Config(_) => ErrorKind::Config,
            RegistryError::BadSignature(_)
            | RegistryError::UntrustedKey
            | RegistryError::Rollback { .. }
            | RegistryError::Expired { .. }
            | RegistryError::Tampered(_) => ErrorKind::PermissionDenied,
            RegistryError::Malformed(_) | RegistryError::TooLarge { .. } => {
                ErrorKind::InvalidArgument
            }
            RegistryError::UnknownPlugin(_)
            | RegistryError::NoMatchingVersion { .. }
            | RegistryError::NoPlatform { .. }
            | RegistryError::NotInstalled(_)
            | RegistryError::NotFound(_) => ErrorKind::NotFound,
            RegistryError::Network(_) => ErrorKind::Unavailable,
            RegistryError::Io { .. } => ErrorKind::Internal,
        };
        Error::new(kind, error.to_string())
    }
}
