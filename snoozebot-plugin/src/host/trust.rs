//! Which plugin binaries may run: a SHA-256 pin and/or a minisign signature by a trusted key,
//! checked before the binary is executed.
//!
//! Sign a plugin with the standard `minisign` tool (`minisign -Sm snoozebot-plugin-aws`), which
//! writes `snoozebot-plugin-aws.minisig` beside it; give the host the public key
//! (`minisign.pub`'s second line, or the whole file).
//!
//! The check reads the file that is about to run. Keep plugin directories writable only by the
//! service's owner: a binary swapped between check and start is outside what a check can see.

use std::path::Path;
use std::sync::Arc;

use minisign_verify::{PublicKey, Signature};
use sha2::{Digest, Sha256};

use snoozebot_core::{Error, ErrorKind, Result};

/// What a plugin binary must be to run. The default trusts any binary found in the plugin
/// directories.
///
/// ```
/// use snoozebot_plugin::TrustPolicy;
///
/// let policy = TrustPolicy::default()
///     .with_sha256("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")?
///     .with_minisign_key("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3")?;
/// assert!(policy.is_restrictive());
/// # Ok::<(), snoozebot_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    sha256: Option<[u8; 32]>,
    keys: Vec<Arc<TrustedKey>>,
}

#[derive(Debug)]
struct TrustedKey {
    text: String,
    key: PublicKey,
}

fn denied(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::PermissionDenied,
        format!(
            "plugin binary {} is not trusted: {reason}; it was not run",
            path.display()
        ),
    )
}

impl TrustPolicy {
    /// Requires the binary's SHA-256 to be `hex` (64 hex digits).
    pub fn with_sha256(mut self, hex: &str) -> Result<Self> {
        let hex = hex.trim();
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect();
        let digest = bytes
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!("{hex:?} is not a SHA-256 in hex (64 digits)"),
                )
            })?;
        self.sha256 = Some(digest);
        Ok(self)
    }

    /// Requires a valid minisign signature (`<binary>.minisig`) by this key, or by any other
    /// key added the same way. `key` is the base64 public key, or a whole `minisign.pub` file.
    pub fn with_minisign_key(mut self, key: &str) -> Result<Self> {
        let key = key.trim();
        let parsed = PublicKey::decode(key)
            .or_else(|_| PublicKey::from_base64(key))
            .map_err(|error| {
                Error::new(
                    ErrorKind::Config,
                    format!("not a minisign public key: {error}"),
                )
            })?;
        self.keys.push(Arc::new(TrustedKey {
            text: key.to_owned(),
            key: parsed,
        }));
        Ok(self)
    }

    /// Whether the policy refuses anything at all.
    pub fn is_restrictive(&self) -> bool {
        self.sha256.is_some() || !self.keys.is_empty()
    }

    /// Checks the binary at `path`; a refusal is [`ErrorKind::PermissionDenied`] with the
    /// reason.
    pub async fn verify(&self, path: &Path) -> Result<()> {
        if !self.is_restrictive() {
            return Ok(());
        }
        let binary = tokio::fs::read(path)
            .await
            .map_err(|error| denied(path, format!("it cannot be read: {error}")))?;
        if let Some(expected) = &self.sha256 {
            let actual: [u8; 32] = Sha256::digest(&binary).into();
            if &actual != expected {
                let hex: String = actual.iter().map(|b| format!("{b:02x}")).collect();
                return Err(denied(
                    path,
                    format!("its SHA-256 is {hex}, not the pinned one"),
                ));
            }
        }
        if !self.keys.is_empty() {
            let mut signature_path = path.as_os_str().to_owned();
            signature_path.push(".minisig");
            let signature_text =
                tokio::fs::read_to_string(&signature_path)
                    .await
                    .map_err(|error| {
                        denied(path, format!("its signature file cannot be read: {error}"))
                    })?;
            let signature = Signature::decode(&signature_text).map_err(|error| {
                denied(path, format!("its signature file is malformed: {error}"))
            })?;
            let verified = self
                .keys
                .iter()
                .any(|trusted| trusted.key.verify(&binary, &signature, false).is_ok());
            if !verified {
                let keys: Vec<&str> = self.keys.iter().map(|k| k.text.as_str()).collect();
                return Err(denied(
                    path,
                    format!(
                        "its signature is not valid for any trusted key ({})",
                        keys.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}
