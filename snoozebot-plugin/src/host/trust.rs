//! Which plugin binaries may run: a SHA-256 pin and/or a minisign signature by a trusted key,
//! checked before the binary is executed.
//!
//! Sign a plugin with the standard `minisign` tool (`minisign -Sm snoozebot-plugin-aws`), which
//! writes `snoozebot-plugin-aws.minisig` beside it; give the host the public key
//! (`minisign.pub`'s second line, or the whole file).
//!
//! The bytes checked are the bytes run: under a restrictive policy the binary is read once, the
//! check runs on what was read, and those bytes go into a sealed in-memory file (`memfd`) that
//! the plugin is executed from — a binary swapped or rewritten after the check never runs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
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
    /// reason. This is the check alone; a [`PluginClient`](crate::PluginClient) launch checks
    /// and then runs the very bytes it checked.
    pub async fn verify(&self, path: &Path) -> Result<()> {
        if !self.is_restrictive() {
            return Ok(());
        }
        let binary = read_binary(path).await?;
        self.check(path, &binary).await
    }

    /// The binary to execute for `path`: under a restrictive policy, the checked bytes in a
    /// sealed in-memory file; otherwise the path itself.
    pub(crate) async fn verified_binary(&self, path: &Path) -> Result<Executable> {
        if !self.is_restrictive() {
            return Ok(Executable::Path(path.to_owned()));
        }
        let binary = read_binary(path).await?;
        self.check(path, &binary).await?;
        sealed_copy(path, &binary).map(Executable::Sealed)
    }

    async fn check(&self, path: &Path, binary: &[u8]) -> Result<()> {
        if let Some(expected) = &self.sha256 {
            let actual: [u8; 32] = Sha256::digest(binary).into();
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
                .any(|trusted| trusted.key.verify(binary, &signature, false).is_ok());
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

/// The largest plugin binary read for a check.
const MAX_BINARY: u64 = 1 << 30;

/// What to execute for a plugin.
pub(crate) enum Executable {
    /// The file itself (no check to keep true).
    Path(PathBuf),
    /// The checked bytes, sealed; executed as `/proc/self/fd/N` (the child inherits the fd).
    Sealed(OwnedFd),
}

impl Executable {
    /// The path `execve` is given.
    pub(crate) fn program(&self) -> PathBuf {
        match self {
            Executable::Path(path) => path.clone(),
            Executable::Sealed(fd) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
        }
    }
}

/// Reads the regular file at `path` once, at most [`MAX_BINARY`] bytes.
async fn read_binary(path: &Path) -> Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let unreadable = |error: std::io::Error| denied(path, format!("it cannot be read: {error}"));
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let metadata = file.metadata().await.map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(denied(path, "it is not a regular file"));
    }
    if metadata.len() > MAX_BINARY {
        return Err(denied(
            path,
            format!(
                "it is {} bytes, more than the {MAX_BINARY} checked",
                metadata.len()
            ),
        ));
    }
    let mut binary = Vec::new();
    file.take(MAX_BINARY + 1)
        .read_to_end(&mut binary)
        .await
        .map_err(unreadable)?;
    Ok(binary)
}

/// `binary` in a sealed memfd (no more writes, no resizing), inheritable by the child.
fn sealed_copy(path: &Path, binary: &[u8]) -> Result<OwnedFd> {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let failed = |what: &str, error: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Plugin,
            format!(
                "plugin binary {}: cannot {what} its checked copy: {error}",
                path.display()
            ),
        )
    };
    // Not close-on-exec: the plugin is executed through this descriptor.
    let fd = memfd_create(c"snoozebot-plugin", MFdFlags::MFD_ALLOW_SEALING)
        .map_err(|error| failed("make", &error))?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, binary).map_err(|error| failed("write", &error))?;
    let fd = OwnedFd::from(file);
    let seals = SealFlag::F_SEAL_WRITE
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_SEAL;
    // The kernel refuses the write seal (EBUSY) while the pages just written are still pinned
    // by the write; that passes within moments (seen under parallel tests).
    let mut attempt = 0;
    loop {
        match fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)) {
            Ok(_) => break,
            Err(nix::errno::Errno::EBUSY) if attempt < 50 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(error) => return Err(failed("seal", &error)),
        }
    }
    Ok(fd)
}
