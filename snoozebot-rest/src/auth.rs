//! API keys and roles, and agents' keys.
//!
//! A key is a random secret (`sbk_` and 43 base64url characters: 256 bits). Only its SHA-256
//! is kept: in memory, and in the keys file. Presented keys are hashed and compared with every
//! stored hash in constant time. Keys are never logged, and [`ApiKeys`]' `Debug` shows roles
//! and labels only.
//!
//! An agent's key ([`AgentKeys`]) is derived from a server secret and the one instance it may
//! speak for (HMAC-SHA256), so the server keeps no list of them and a key taken from one
//! machine speaks for no other.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use snoozebot_core::{Error, Result};

/// What a key may do. Each role may also do everything the roles before it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read: list plugins and instances (every `GET`).
    Reader,
    /// Read, and stop and start instances.
    Operator,
    /// Everything: load, unload, and discover with autoload.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Role::Reader, Role::Operator, Role::Admin];

    /// The role's name: `reader`, `operator`, `admin`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown role {name:?}; the roles are reader, operator and admin"
                ))
            })
    }
}

/// A stored key: its role, a label for logs, and the SHA-256 of the secret.
#[derive(Clone)]
struct StoredKey {
    role: Role,
    label: String,
    hash: [u8; 32],
}

/// The API keys a router accepts.
///
/// ```
/// use snoozebot_rest::{ApiKeys, Role};
///
/// let mut keys = ApiKeys::new();
/// let secret = keys.generate(Role::Operator, "ops-dashboard");
/// assert_eq!(keys.role_of(&secret), Some(Role::Operator));
/// assert_eq!(keys.role_of("sbk_not-a-key"), None);
/// // The keys file holds hashes only:
/// let line = format!("operator {} ops-dashboard", ApiKeys::hash(&secret));
/// let from_file = ApiKeys::parse(&line)?;
/// assert_eq!(from_file.role_of(&secret), Some(Role::Operator));
/// # Ok::<(), snoozebot_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<StoredKey>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.keys
                    .iter()
                    .map(|key| format!("{} ({})", key.label, key.role)),
            )
            .finish()
    }
}

/// Compares two hashes in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(out)
}

impl ApiKeys {
    /// No keys: every protected route answers `401`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The SHA-256 of a secret, in lowercase hex: what the keys file stores.
    pub fn hash(secret: &str) -> String {
        hex(&digest(secret))
    }

    /// Adds a key by its secret (kept as its hash only).
    pub fn add(&mut self, role: Role, label: impl Into<String>, secret: &str) {
        self.keys.push(StoredKey {
            role,
            label: label.into(),
            hash: digest(secret),
        });
    }

    /// Makes a new random key for `role`, adds it, and returns the secret — the only time it
    /// is seen; show it to its user once.
    ///
    /// # Panics
    ///
    /// If the operating system has no randomness to give, which leaves nothing safe to do.
    pub fn generate(&mut self, role: Role, label: impl Into<String>) -> String {
        let mut bytes = [0u8; 32];
        if let Err(error) = getrandom::fill(&mut bytes) {
            panic!("the operating system gave no randomness for an API key: {error}");
        }
        let secret = format!(
            "sbk_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        self.add(role, label, &secret);
        secret
    }

    /// Reads a keys file's text: one key a line, `ROLE SHA256-HEX [LABEL]`; blank lines and
    /// `#` comments are skipped. Any other line is a [`Config`](snoozebot_core::ErrorKind::Config)
    /// error naming its line number (never its content, which might be a pasted secret).
    pub fn parse(text: &str) -> Result<Self> {
        let mut keys = ApiKeys::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(role), Some(hash)) = (words.next(), words.next()) else {
                return Err(Error::config(format!(
                    "API keys line {}: expected `ROLE SHA256-HEX [LABEL]`",
                    number + 1
                )));
            };
            let role: Role = role.parse()?;
            let hash = unhex(hash).ok_or_else(|| {
                Error::config(format!(
                    "API keys line {}: the second word must be a SHA-256 in hex (64 characters); store hashes, not keys",
                    number + 1
                ))
            })?;
            let label = words.collect::<Vec<_>>().join(" ");
            let label = if label.is_empty() {
                format!("line {}", number + 1)
            } else {
                label
            };
            keys.keys.push(StoredKey { role, label, hash });
        }
        Ok(keys)
    }

    /// Reads a keys file (see [`parse`](Self::parse)).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| {
            Error::config(format!(
                "cannot read the API keys file {}: {error}",
                path.display()
            ))
        })?;
        Self::parse(&text)
    }

    /// Reads keys from an environment variable's value: `ROLE:SECRET` pairs separated by
    /// commas (`admin:sbk_...,reader:sbk_...`). The secrets are hashed as they are read.
    pub fn from_env_value(value: &str) -> Result<Self> {
        let mut keys = ApiKeys::new();
        for (index, pair) in value
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .enumerate()
        {
            let (role, secret) = pair.split_once(':').ok_or_else(|| {
                Error::config(format!("API key {} is not ROLE:SECRET", index + 1))
            })?;
            if secret.len() < 16 {
                return Err(Error::config(format!(
                    "API key {} is shorter than 16 characters",
                    index + 1
                )));
            }
            keys.add(
                role.trim().parse()?,
                format!("env key {}", index + 1),
                secret,
            );
        }
        Ok(keys)
    }

    /// Adds every key of `other`.
    pub fn merge(&mut self, other: ApiKeys) {
        self.keys.extend(other.keys);
    }

    /// The role of the key `secret`, if it is one of these. Every stored key is compared, in
    /// constant time, whichever matches.
    pub fn role_of(&self, secret: &str) -> Option<Role> {
        self.identify(secret).map(|(role, _)| role)
    }

    /// The role and label of the key `secret`.
    pub(crate) fn identify(&self, secret: &str) -> Option<(Role, &str)> {
        let presented = digest(secret);
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(&key.hash, &presented) && found.is_none() {
                found = Some((key.role, key.label.as_str()));
            }
        }
        found
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// API keys that can be replaced while the server runs (a reload of the keys file): the
/// router reads the current set at each request, and a request sees one set whole.
#[derive(Debug, Clone)]
pub struct KeyRing(std::sync::Arc<std::sync::RwLock<std::sync::Arc<ApiKeys>>>);

impl KeyRing {
    /// A ring holding `keys`.
    pub fn new(keys: ApiKeys) -> Self {
        KeyRing(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(keys),
        )))
    }

    /// Replaces the keys: requests from now on are checked against `keys`.
    pub fn replace(&self, keys: ApiKeys) {
        let keys = std::sync::Arc::new(keys);
        match self.0.write() {
            Ok(mut current) => *current = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    /// The keys in use now.
    pub fn current(&self) -> std::sync::Arc<ApiKeys> {
        match self.0.read() {
            Ok(current) => std::sync::Arc::clone(&current),
            Err(poisoned) => std::sync::Arc::clone(&poisoned.into_inner()),
        }
    }
}

/// The keys agents present: each is bound to one instance of one provider, derived from a
/// server secret (`sba_` and the HMAC-SHA256 of the provider and instance, base64url). A key
/// works for its own instance's agent routes and nothing else; rotating the secret revokes
/// every key.
///
/// ```
/// use snoozebot_rest::AgentKeys;
///
/// let keys = AgentKeys::new(b"a server secret of at least 32 bytes!")?;
/// let key = keys.key_for("aws", "i-0123456789abcdef0");
/// assert!(keys.verify("aws", "i-0123456789abcdef0", &key));
/// assert!(!keys.verify("aws", "i-0fffffffffffffff0", &key));
/// # Ok::<(), snoozebot_core::Error>(())
/// ```
#[derive(Clone)]
pub struct AgentKeys {
    mac: hmac::Hmac<Sha256>,
}

impl fmt::Debug for AgentKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AgentKeys(..)")
    }
}

/// What an agent key is a MAC of: a version, the provider and the instance, apart.
fn agent_subject(provider: &str, instance: &str) -> Vec<u8> {
    let mut subject = b"snoozebot-agent-v1\0".to_vec();
    subject.extend_from_slice(provider.as_bytes());
    subject.push(0);
    subject.extend_from_slice(instance.as_bytes());
    subject
}

impl AgentKeys {
    /// The shortest secret accepted, in bytes.
    pub const MIN_SECRET: usize = 32;

    /// Keys derived from `secret` (at least [`MIN_SECRET`](Self::MIN_SECRET) bytes; a
    /// [`Config`](snoozebot_core::ErrorKind::Config) error otherwise).
    pub fn new(secret: &[u8]) -> Result<Self> {
        use hmac::Mac as _;
        if secret.len() < Self::MIN_SECRET {
            return Err(Error::config(format!(
                "the agents' secret is {} bytes; it must be at least {} (e.g. `openssl rand -base64 32`)",
                secret.len(),
                Self::MIN_SECRET
            )));
        }
        let mac = hmac::Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|error| Error::config(format!("the agents' secret: {error}")))?;
        Ok(AgentKeys { mac })
    }

    /// The key of `provider`'s `instance`'s agent.
    pub fn key_for(&self, provider: &str, instance: &str) -> String {
        use hmac::Mac as _;
        let mut mac = self.mac.clone();
        mac.update(&agent_subject(provider, instance));
        format!(
            "sba_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// Whether `presented` is the key of `provider`'s `instance`'s agent (compared in constant
    /// time).
    pub fn verify(&self, provider: &str, instance: &str, presented: &str) -> bool {
        use hmac::Mac as _;
        let Some(encoded) = presented.strip_prefix("sba_") else {
            return false;
        };
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded) else {
            return false;
        };
        let mut mac = self.mac.clone();
        mac.update(&agent_subject(provider, instance));
        mac.verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snoozebot_core::ErrorKind;

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(Role::Reader < Role::Operator && Role::Operator < Role::Admin);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert_eq!(
            "root".parse::<Role>().unwrap_err().kind(),
            ErrorKind::Config
        );
    }

    #[test]
    fn generated_keys_are_long_random_and_distinct() {
        let mut keys = ApiKeys::new();
        let a = keys.generate(Role::Admin, "a");
        let b = keys.generate(Role::Reader, "b");
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 43);
        assert_eq!(keys.role_of(&a), Some(Role::Admin));
        assert_eq!(keys.role_of(&b), Some(Role::Reader));
        assert_eq!(keys.role_of(&a[..a.len() - 1]), None);
        assert_eq!(keys.role_of(""), None);
    }

    #[test]
    fn the_file_holds_hashes_and_bad_lines_name_their_number_only() {
        let secret = "sbk_0123456789abcdef0123456789abcdef";
        let text = format!(
            "# keys\n\nadmin {} release bot\nreader {}\n",
            ApiKeys::hash(secret),
            ApiKeys::hash("another-secret-value")
        );
        let keys = ApiKeys::parse(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.role_of(secret), Some(Role::Admin));
        assert_eq!(keys.identify(secret).unwrap().1, "release bot");

        let pasted = format!("admin {secret}");
        let err = ApiKeys::parse(&pasted).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains("line 1"), "{err}");
        assert!(
            !err.message().contains(secret),
            "the error quotes a secret: {err}"
        );
        assert!(ApiKeys::parse("admin").is_err());
        assert!(format!("{keys:?}").contains("release bot (admin)"));
        assert!(!format!("{keys:?}").contains(&ApiKeys::hash(secret)));
    }

    #[test]
    fn env_values_are_role_secret_pairs() {
        let keys =
            ApiKeys::from_env_value("admin:aaaaaaaaaaaaaaaaaaaa, reader:bbbbbbbbbbbbbbbbbbbb")
                .unwrap();
        assert_eq!(keys.role_of("aaaaaaaaaaaaaaaaaaaa"), Some(Role::Admin));
        assert_eq!(keys.role_of("bbbbbbbbbbbbbbbbbbbb"), Some(Role::Reader));
        assert!(ApiKeys::from_env_value("admin:short").is_err());
        assert!(ApiKeys::from_env_value("nocolon").is_err());
        assert!(ApiKeys::from_env_value("god:aaaaaaaaaaaaaaaaaaaa").is_err());
    }

    #[test]
    fn constant_time_comparison_compares() {
        let a = digest("x");
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
    }

    #[test]
    fn agent_keys_are_bound_to_their_instance_and_secret() {
        let keys = AgentKeys::new(&[7u8; 32]).unwrap();
        let key = keys.key_for("aws", "i-1");
        assert!(key.starts_with("sba_") && key.len() == 4 + 43, "{key}");
        assert!(keys.verify("aws", "i-1", &key));
        // Another instance, provider, or a subject that runs the two together.
        assert!(!keys.verify("aws", "i-2", &key));
        assert!(!keys.verify("gcp", "i-1", &key));
        assert!(!keys.verify("aw", "si-1", &key));
        assert!(!keys.verify("aws", "i-1", &key[..key.len() - 1]));
        assert!(!keys.verify("aws", "i-1", "sba_!!!"));
        assert!(!keys.verify("aws", "i-1", ""));
        let other = AgentKeys::new(&[8u8; 32]).unwrap();
        assert!(!other.verify("aws", "i-1", &key));
        assert_eq!(
            AgentKeys::new(b"short").unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(format!("{keys:?}"), "AgentKeys(..)");
    }
}
