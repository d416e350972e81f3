//! The Azure VM provider for [Snoozebot](snoozebot_core): deallocate idle VMs and start them
//! again, on the maintained `azure_core` 1.x HTTP pipeline and `azure_identity` credentials.
//!
//! ```no_run
//! use snoozebot_azure::AzureProviderBuilder;
//! use snoozebot_core::{CloudProvider, InstanceFilter, StopOptions};
//!
//! # async fn run() -> snoozebot_core::Result<()> {
//! let azure = AzureProviderBuilder::new()
//!     .subscription("00000000-0000-0000-0000-000000000000")
//!     .build()?;
//! let idle = azure
//!     .list_instances(&InstanceFilter::new().with_tag("snoozebot", "idle"))
//!     .await?;
//! for vm in idle {
//!     // The default stop deallocates: compute billing ends.
//!     let change = azure.stop_instance(&vm.id, &StopOptions::default()).await?;
//!     println!("{}: {} -> {}", change.id, change.previous, change.current);
//! }
//! # Ok(()) }
//! ```
//!
//! - Ids are full ARM resource ids
//!   (`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}`)
//!   or `resourceGroup/name` in the builder's subscription; anything else is `InvalidArgument`
//!   before any call.
//! - Stop modes: [`Deallocate`](snoozebot_core::StopMode::Deallocate) (the default; billing
//!   ends), [`Hibernate`](snoozebot_core::StopMode::Hibernate) (deallocate with memory saved;
//!   with `allow_fallback`, a VM without hibernation is deallocated),
//!   [`Stop`](snoozebot_core::StopMode::Stop) (`powerOff`: **still billed**). `force` skips
//!   the guest shutdown. `Suspend` is `Unsupported`.
//! - A stop or start returns once ARM accepted it, with the operation's monitor in
//!   `StateChange::operation`; `wait_for_operation` (and so `stop_and_wait`) follows it
//!   (`Azure-AsyncOperation`, else `Location`, at ARM's `Retry-After`) and reports a failed
//!   operation's ARM code as a typed error. The pipeline's own retries are off: wrap the provider in Snoozebot's retry layer.
//!
//! See the crate README for the RBAC actions needed and what each stop costs.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod client;
mod credential;
mod error;
mod model;
mod provider;

pub use builder::{API_VERSION, AzureProviderBuilder, DEFAULT_ENDPOINT};
pub use credential::StandardCredential;
pub use provider::AzureProvider;
/// The Azure SDK crates this provider is built on, re-exported so that a credential for
/// [`AzureProviderBuilder::credential`] is made with exactly the versions it takes.
pub use {azure_core, azure_identity};

/// The provider's name.
pub const PROVIDER_NAME: &str = "azure";
