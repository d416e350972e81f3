//! A signed, rollback-proof registry of Snoozebot provider plugins: a static index anyone can
//! host (a file server, a bucket, a local directory), its publisher, and its client, which
//! installs plugins atomically and records them in a lock file the plugin host pins.
//!
//! ```
//! use std::time::Duration;
//! use snoozebot_registry::{Installer, Platform, Publisher, Registry, SigningKey, TrustedKeys};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let work = tempfile::tempdir()?;
//! # let binary = work.path().join("snoozebot-plugin-demo");
//! # std::fs::write(&binary, b"#!/bin/sh\n")?;
//! // The publisher: add a build to a registry directory and sign its index.
//! let key = SigningKey::generate()?;
//! let public_key = key.public_base64();
//! let publisher = Publisher::new(work.path().join("registry"));
//! let mut index = publisher.index()?;
//! publisher.add(&mut index, "demo", &"1.0.0".parse()?, Platform::current(), &[1], &binary)?;
//! publisher.publish(&mut index, &[key], Duration::from_secs(86_400))?;
//!
//! // An operator: trust the publisher's key, install from the registry (here a directory).
//! let keys = TrustedKeys::new([public_key])?;
//! let registry = Registry::new("main", work.path().join("registry").to_str().unwrap(), keys)?;
//! let installer = Installer::new(work.path().join("plugins"));
//! let installed = installer.install(&registry, "demo", &"^1".parse()?, &mut |_, _| {}).await?;
//! assert_eq!(installed.version.to_string(), "1.0.0");
//! assert!(installer.lock()?.trust_policy("demo").is_some());
//! # Ok(())
//! # }
//! ```
//!
//! - [`Index`]: the format — plugins, versions (semver), the protocol versions each speaks,
//!   per-platform artifacts with size and SHA-256; a version that only grows and an expiry.
//! - [`TrustedKeys`] / [`SigningKey`]: minisign signatures over the index, several trusted keys
//!   so a publisher can rotate.
//! - [`Registry`]: fetches an index (`https://`, `file://`, or plain `http://` to loopback),
//!   refuses one unsigned, signed by a stranger, older than one accepted before (a rollback)
//!   or expired (a freeze), and resolves a name and constraint for this platform.
//! - [`Installer`]: downloads with bounds and retries, checks size and SHA-256, installs by
//!   rename, one install at a time per directory, and keeps the [`LockFile`].
//! - [`Publisher`]: adds builds and signs the index.
//!
//! docs/registry.md is the operator's and the publisher's guide, with the threat model.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod error;
mod fetch;
mod index;
mod install;
mod lock;
mod publish;
mod signing;

pub use client::{Registry, Resolved, VerifiedIndex};
pub use error::RegistryError;
pub use fetch::{FetchOptions, Source};
pub use index::{
    Artifact, INDEX_FILE, Index, MAX_ARTIFACT_BYTES, MAX_INDEX_BYTES, Platform, PluginEntry,
    Release, SCHEMA, SIGNATURES_FILE,
};
pub use install::{DEFAULT_LOCK_FILE, Installed, Installer, Verified};
pub use lock::{LockFile, LockedPlugin, RegistryState};
pub use publish::Publisher;
/// The `semver` crate, whose versions and constraints this API takes.
pub use semver;
pub use signing::{SigningKey, TrustedKeys};
