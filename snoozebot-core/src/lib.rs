//! Put idle cloud machines to sleep and wake them again — AWS EC2, Google Compute Engine and
//! Azure VMs — through one [`CloudProvider`] trait.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use snoozebot_core::{
//!     CloudProvider, CloudProviderExt, InstanceFilter, InstanceState, ProviderBuilder,
//!     RetryConfig, StopOptions,
//! };
//!
//! /// Stops every running instance tagged `snoozebot=idle` and waits until each is stopped.
//! async fn snooze_idle(provider: Arc<dyn CloudProvider>) -> snoozebot_core::Result<usize> {
//!     let provider = ProviderBuilder::new(provider)
//!         .retry(RetryConfig::default())
//!         .timeout(Duration::from_secs(30))
//!         .tracing()
//!         .build();
//!     let idle = provider
//!         .list_instances(
//!             &InstanceFilter::new()
//!                 .with_tag("snoozebot", "idle")
//!                 .with_state(InstanceState::Running),
//!         )
//!         .await?;
//!     let ids: Vec<_> = idle.into_iter().map(|instance| instance.id).collect();
//!     for (id, result) in provider.stop_instances(&ids, &StopOptions::default()).await {
//!         result?;
//!         provider
//!             .wait_for_state(&id, InstanceState::Stopped, Duration::from_secs(600))
//!             .await?;
//!     }
//!     Ok(ids.len())
//! }
//! ```
//!
//! The pieces:
//! - the model ([`InstanceId`], [`InstanceState`], [`InstanceInfo`], [`StopOptions`], ...) and
//!   one [`Error`] type sorted into [`ErrorKind`]s;
//! - [`CloudProvider`], implemented by `snoozebot-aws`, `snoozebot-gcp`, `snoozebot-azure` and
//!   the testkit's `MockProvider`, with waiters from [`CloudProviderExt`];
//! - [`middleware`]: retry with backoff and a budget, timeouts, concurrency and rate limits and
//!   tracing as tower layers, assembled by [`ProviderBuilder`];
//! - [`PluginManager`]: registers, loads and unloads providers by name, from in-process
//!   factories and [`ProviderSource`](manager::ProviderSource)s, each inside a
//!   [`ProviderStack`], with a lease per call.
//!
//! Around it: `snoozebot-plugin` (providers as plugin executables, wire-compatible with
//! HashiCorp go-plugin), `snoozebot-rest` (a REST API over the manager), the clouds
//! (`snoozebot-aws`, `snoozebot-gcp`, `snoozebot-azure`) and `snoozebot-testkit`. The one
//! feature, `openapi`, derives `utoipa` schemas for the model, for `snoozebot-rest`'s document.
//!
//! Without a cloud account, try the testkit's `MockProvider` (an in-memory fleet) and the
//! examples: `cargo run --example quickstart`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backoff;
mod error;
mod log_budget;
pub mod manager;
pub mod middleware;
mod model;
mod provider;

pub use backoff::Backoff;
pub use error::{Error, ErrorKind, Result, parse_retry_after};
pub use log_budget::LogBudget;
pub use manager::{PluginManager, ProviderKind};
pub use middleware::{BudgetConfig, ProviderBuilder, ProviderStack, RateLimiter, RetryConfig};
pub use model::{
    Capabilities, InstanceFilter, InstanceId, InstanceInfo, InstanceState, ProviderInfo,
    StateChange, StopMode, StopOptions,
};
pub use provider::{
    BatchResults, CloudProvider, CloudProviderExt, DEFAULT_BATCH_CONCURRENCY, Health, InstancePage,
    PageRequest, WAIT_BACKOFF, WAIT_INITIAL_INTERVAL, WAIT_MAX_INTERVAL, checked_batch,
    deadline_in, each_id_fails, single_calls,
};

/// Re-exported so providers implement [`CloudProvider`] with the same macro version.
pub use async_trait::async_trait;
