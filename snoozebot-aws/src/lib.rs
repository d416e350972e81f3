//! The AWS EC2 provider for [Snoozebot](snoozebot_core): stop idle instances and start them
//! again, many at a time.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use snoozebot_aws::AwsProviderBuilder;
//! use snoozebot_core::{CloudProvider, InstanceFilter, InstanceState, ProviderBuilder, RetryConfig, StopOptions};
//!
//! # async fn run() -> snoozebot_core::Result<()> {
//! let ec2 = AwsProviderBuilder::new().region("eu-west-1").build_resolved().await?;
//! // Retries happen here, in Snoozebot's middleware; the SDK's own are off.
//! let ec2 = ProviderBuilder::new(Arc::new(ec2))
//!     .retry(RetryConfig::default())
//!     .timeout(Duration::from_secs(30))
//!     .build();
//! let idle = ec2
//!     .list_instances(&InstanceFilter::new().with_tag("snoozebot", "idle").with_state(InstanceState::Running))
//!     .await?;
//! let ids: Vec<_> = idle.into_iter().map(|instance| instance.id).collect();
//! for (id, result) in ec2.stop_instances(&ids, &StopOptions::default()).await {
//!     match result {
//!         Ok(change) => println!("{id}: {} -> {}", change.previous, change.current),
//!         Err(error) => eprintln!("{id}: {error}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! - **Batches**: `stop_instances`/`start_instances` send one StopInstances/StartInstances
//!   call per 100 ids ([`AwsProviderBuilder::batch_size`]). When EC2 refuses a call because of
//!   particular instances (unknown, wrong state, stop-protected, cannot hibernate), those get
//!   their own error and the rest are sent again, split on the ids the error names or in
//!   halves: every good id still gets its state change. A batch of more than one id, or a
//!   hibernation, is described first (one DescribeInstances per 100): unknown ids are answered
//!   without a stop, instances not configured for hibernation are sorted out before the call,
//!   and each change reports the state before the batch, however often EC2 was asked.
//! - **Ids** are checked (`i-` and 8 or 17 hex digits) before any call.
//! - **Modes**: [`StopMode::Stop`](snoozebot_core::StopMode::Stop) and
//!   [`Hibernate`](snoozebot_core::StopMode::Hibernate); `force` and `dry_run` are passed to EC2
//!   (a dry run that would succeed is `Ok`, with the state unchanged). With
//!   [`StopOptions::allow_fallback`](snoozebot_core::StopOptions::allow_fallback), instances that
//!   cannot hibernate are stopped instead and the result says `mode: stop`.
//! - **Errors**: every EC2 code the provider can meet is mapped (the table is in `src/error.rs`; other HTTP statuses as [`ErrorKind::from_http_status`](snoozebot_core::ErrorKind::from_http_status)).
//!
//! IAM permissions needed: `ec2:DescribeInstances`, `ec2:StopInstances`, `ec2:StartInstances`
//! (plus `kms:CreateGrant` on the volumes' keys to start instances with encrypted volumes).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod client;
mod error;
mod model;
mod provider;

pub use builder::{AwsProviderBuilder, DEFAULT_BATCH_SIZE};
pub use provider::AwsProvider;
/// The AWS SDK crates this provider is built on, re-exported so that a client for
/// [`AwsProviderBuilder::from_client`] is made with exactly the versions it takes.
pub use {aws_config, aws_sdk_ec2};

/// The provider's name.
pub const PROVIDER_NAME: &str = "aws";
/// The EC2 API version the SDK speaks.
pub const EC2_API_VERSION: &str = "2016-11-15";
