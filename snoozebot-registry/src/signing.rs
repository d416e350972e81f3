//! Index signatures: minisign, any of several trusted keys (so keys can be rotated), checked by
//! clients; made by publishers with their secret keys.

use std::path::Path;

use crate::RegistryError;

/// The most signatures one signatures file may hold.
const MAX_SIGNATURES: usize = 16;
/// The largest signatures file accepted, in bytes.
pub const MAX_SIGNATURES_BYTES: u64 = 64 * 1024;

/// The public keys an index may be signed by. An index is accepted when any signature in its
/// signatures file is valid and made by one of them.
///
/// ```
/// use snoozebot_registry::TrustedKeys;
///
/// let keys = TrustedKeys::new(["RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"])?;
/// assert_eq!(keys.len(), 1);
/// # Ok::<(), snoozebot_registry::RegistryError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    keys: Vec<(String, minisign_verify::PublicKey)>,
}

impl TrustedKeys {
    /// Keys as base64 public keys (a `minisign.pub` file's second line, or the whole file).
    pub fn new<I, S>(keys: I) -> Result<Self, RegistryError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Vec::new();
        for key in keys {
            let text = key.as_ref().trim();
            let base64 = text.lines().last().unwrap_or_default().trim();
            let public = minisign_verify::PublicKey::from_base64(base64).map_err(|error| {
                RegistryError::Config(format!("{base64:?} is not a minisign public key: {error}"))
            })?;
            parsed.push((base64.to_owned(), public));
        }
        if parsed.is_empty() {
            return Err(RegistryError::Config(
                "a registry needs at least one trusted key".to_owned(),
            ));
        }
        Ok(TrustedKeys { keys: parsed })
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted (never, once built).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `signatures` (a signatures file) over `signed`; returns the key that signed.
    pub fn verify(&self, signed: &[u8], signatures: &[u8]) -> Result<String, RegistryError> {
        let text = std::str::from_utf8(signatures).map_err(|_| {
            RegistryError::BadSignature("the signatures file is not text".to_owned())
        })?;
        let blocks = signature_blocks(text);
        if blocks.is_empty() {
            return Err(RegistryError::BadSignature(
                "the signatures file holds no minisign signature".to_owned(),
            ));
        }
        let mut signed_by_trusted_key = false;
        for block in blocks.iter().take(MAX_SIGNATURES) {
            let Ok(signature) = minisign_verify::Signature::decode(block) else {
                continue;
            };
            for (text, key) in &self.keys {
                match key.verify(signed, &signature, false) {
                    Ok(()) => return Ok(text.clone()),
                    Err(minisign_verify::Error::UnexpectedKeyId) => {}
                    Err(_) => signed_by_trusted_key = true,
                }
            }
        }
        Err(if signed_by_trusted_key {
            RegistryError::BadSignature(
                "the index does not match its signature: it was changed after signing".to_owned(),
            )
        } else {
            RegistryError::UntrustedKey
        })
    }
}

/// The signatures of a signatures file: each starts at an `untrusted comment:` line.
fn signature_blocks(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("untrusted comment:") {
            blocks.push(String::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    blocks
}

/// A publisher's secret key, read from a minisign secret key file.
pub struct SigningKey {
    secret: minisign::SecretKey,
    public: minisign::PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public_base64())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new key pair, without a password; the secret key file's text is
    /// [`secret_key_file`](Self::secret_key_file).
    pub fn generate() -> Result<Self, RegistryError> {
        let pair = minisign::KeyPair::generate_unencrypted_keypair()
            .map_err(|error| RegistryError::Config(format!("cannot make a key: {error}")))?;
        Ok(SigningKey {
            secret: pair.sk,
            public: pair.pk,
        })
    }

    /// Reads a minisign secret key file; `password` for an encrypted one.
    pub fn from_file(path: &Path, password: Option<String>) -> Result<Self, RegistryError> {
        let bad = |error: &dyn std::fmt::Display| {
            RegistryError::Config(format!(
                "{}: not a usable minisign secret key: {error}",
                path.display()
            ))
        };
        let text = crate::fetch::read_bounded_file(path, 64 * 1024)?;
        let text = String::from_utf8(text).map_err(|error| bad(&error))?;
        let boxed = minisign::SecretKeyBox::from_string(&text).map_err(|error| bad(&error))?;
        let secret = match password {
            Some(password) => boxed.into_secret_key(Some(password)),
            None => boxed.into_unencrypted_secret_key(),
        }
        .map_err(|error| bad(&error))?;
        let public = minisign::PublicKey::from_secret_key(&secret).map_err(|error| bad(&error))?;
        Ok(SigningKey { secret, public })
    }

    /// The secret key file's text (keep it secret: it is not encrypted).
    pub fn secret_key_file(&self) -> Result<String, RegistryError> {
        self.secret
            .to_box(Some("snoozebot registry secret key"))
            .map(minisign::SecretKeyBox::into_string)
            .map_err(|error| RegistryError::Config(format!("cannot write the key: {error}")))
    }

    /// The public key, as clients configure it.
    pub fn public_base64(&self) -> String {
        self.public.to_base64()
    }

    /// A signature of `bytes`, as one block of a signatures file.
    pub fn sign(&self, bytes: &[u8], trusted_comment: &str) -> Result<String, RegistryError> {
        minisign::sign(
            Some(&self.public),
            &self.secret,
            std::io::Cursor::new(bytes),
            Some(trusted_comment),
            Some("snoozebot registry index signature"),
        )
        .map(minisign::SignatureBox::into_string)
        .map_err(|error| RegistryError::Config(format!("cannot sign: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_trusted_key_among_several_signatures_is_enough_and_strangers_are_not() {
        let old = SigningKey::generate().unwrap();
        let new = SigningKey::generate().unwrap();
        let stranger = SigningKey::generate().unwrap();
        let index = b"{\"schema\":1}";
        let both = format!(
            "{}{}",
            old.sign(index, "v1").unwrap(),
            new.sign(index, "v1").unwrap()
        );
        let trusting_new = TrustedKeys::new([new.public_base64()]).unwrap();
        assert_eq!(
            trusting_new.verify(index, both.as_bytes()).unwrap(),
            new.public_base64()
        );
        let by_stranger = stranger.sign(index, "v1").unwrap();
        assert!(matches!(
            trusting_new.verify(index, by_stranger.as_bytes()),
            Err(RegistryError::UntrustedKey)
        ));
        assert!(matches!(
            trusting_new.verify(b"{\"schema\":2}", both.as_bytes()),
            Err(RegistryError::BadSignature(_))
        ));
        for garbage in [&b""[..], b"\xff\xfe", b"untrusted comment: x\nnot base64\n"] {
            assert!(matches!(
                trusting_new.verify(index, garbage),
                Err(RegistryError::BadSignature(_) | RegistryError::UntrustedKey)
            ));
        }
    }

    #[test]
    fn a_secret_key_file_reads_back_as_the_same_key() {
        let key = SigningKey::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("publisher.key");
        std::fs::write(&path, key.secret_key_file().unwrap()).unwrap();
        let read = SigningKey::from_file(&path, None).unwrap();
        assert_eq!(read.public_base64(), key.public_base64());
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            SigningKey::from_file(&path, None),
            Err(RegistryError::Config(_))
        ));
        assert!(TrustedKeys::new(["nope"]).is_err());
        assert!(TrustedKeys::new(Vec::<String>::new()).is_err());
    }
}
