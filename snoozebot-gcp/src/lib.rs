//! The Google Compute Engine provider for [Snoozebot](snoozebot_core) — in progress: the id and
//! status model and the error mapping have landed; the provider on `google-cloud-compute-v1`
//! and its fake GCE server follow.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod model;
mod provider;

pub use error::{ErrorDetail, kind_for, reason_in};
pub use model::{InstanceRef, map_status};
pub use provider::{GcpProvider, GcpProviderBuilder};

/// The provider's name.
pub const PROVIDER_NAME: &str = "gcp";
