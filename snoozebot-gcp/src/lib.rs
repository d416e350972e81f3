//! The Google Compute Engine provider for [Snoozebot](snoozebot_core), on the official
//! `google-cloud-compute-v1` client.
//!
//! ```no_run
//! use snoozebot_core::{CloudProvider, InstanceFilter, StopMode, StopOptions};
//! use snoozebot_gcp::GcpProviderBuilder;
//!
//! # async fn run() -> snoozebot_core::Result<()> {
//! let gce = GcpProviderBuilder::new().project("my-project").build()?;
//! let idle = gce
//!     .list_instances(&InstanceFilter::new().with_tag("snoozebot", "idle"))
//!     .await?;
//! for instance in idle {
//!     // Suspend keeps memory (billed as storage); the default stop is cheapest.
//!     let change = gce
//!         .stop_instance(&instance.id, &StopOptions::default().with_mode(StopMode::Suspend))
//!         .await?;
//!     println!("{}: {} -> {}", change.id, change.previous, change.current);
//! }
//! # Ok(()) }
//! ```
//!
//! Ids are `project/zone/name`, or `zone/name` in the builder's project. Each stop, suspend or
//! start returns once GCE accepted it, with its zone operation in `StateChange::operation`;
//! `wait_for_operation` (and so `stop_and_wait`) follows it and reports its error. See the
//! crate README for IAM permissions and costs.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod client;
mod error;
mod model;
mod provider;

pub use builder::GcpProviderBuilder;
pub use provider::GcpProvider;
/// The Google Cloud crates this provider is built on, re-exported so that credentials for
/// [`GcpProviderBuilder::credentials`] are made with exactly the versions it takes.
pub use {google_cloud_auth, google_cloud_compute_v1};

/// The provider's name.
pub const PROVIDER_NAME: &str = "gcp";
