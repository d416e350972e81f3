//! The Azure VM provider for [Snoozebot](snoozebot_core) — in progress. What has landed: VM ids
//! (full ARM resource ids, or `resourceGroup/name` in a default subscription, checked before any
//! call), the mapping of every `PowerState` (`billing_stopped` only for `deallocated`: a VM
//! that is merely stopped still pays for its compute), and the mapping of ARM error bodies,
//! throttling and `Retry-After`. The ARM client on `azure_core` 1.x and the fake ARM server it
//! is tested against follow.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod model;

pub use error::{arm_error, kind_for, retry_after};
pub use model::{VmRef, map_power_state};

/// The provider's name.
pub const PROVIDER_NAME: &str = "azure";
