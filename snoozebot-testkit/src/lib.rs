//! Test support for code built on Snoozebot, and for Snoozebot providers.
//!
//! - [`MockProvider`]: an in-memory fleet with a real state machine, scripted faults, added
//!   latency and a call log — the provider the examples run on;
//! - [`MockCloudProvider`]: a [`mockall`] mock of the trait, for expectation-style tests;
//! - [`LogCapture`]: a writer that keeps what a `tracing` subscriber logs, to assert on logs;
//! - [`conformance`]: the suite every provider must pass.
//!
//! ```
//! use std::time::Duration;
//! use snoozebot_core::{CloudProvider, CloudProviderExt, InstanceFilter, InstanceState, StopOptions};
//! use snoozebot_testkit::MockProvider;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let fleet = MockProvider::builder()
//!     .fleet(20)
//!     .transition_time(Duration::from_millis(10))
//!     .build();
//! let idle = fleet
//!     .list_instances(&InstanceFilter::new().with_tag("snoozebot", "idle"))
//!     .await?;
//! assert_eq!(idle.len(), 5);
//! for instance in &idle {
//!     let stopped = fleet
//!         .stop_and_wait(&instance.id, &StopOptions::default(), Duration::from_secs(5))
//!         .await?;
//!     assert_eq!(stopped.state, InstanceState::Stopped);
//! }
//! # Ok::<(), snoozebot_core::Error>(())
//! # }).unwrap();
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "arm-fake")]
#[cfg_attr(docsrs, doc(cfg(feature = "arm-fake")))]
pub mod arm;
mod capture;
pub mod conformance;
mod counters;
#[cfg(feature = "gce-fake")]
#[cfg_attr(docsrs, doc(cfg(feature = "gce-fake")))]
pub mod gce;
#[cfg(feature = "imds-fake")]
#[cfg_attr(docsrs, doc(cfg(feature = "imds-fake")))]
pub mod imds;
#[cfg(any(feature = "gce-fake", feature = "arm-fake", feature = "imds-fake"))]
mod loopback;
mod mock;

pub use capture::LogCapture;
pub use counters::{ProcessCounters, load_average};
pub use mock::{
    MOCK_ID_PREFIX, MockCall, MockInstance, MockOperation, MockProvider, MockProviderBuilder,
};
pub use mockall_mock::MockCloudProvider;

/// The mockall mock lives in its own module because the generated items carry no docs.
#[allow(missing_docs)]
mod mockall_mock {
    use snoozebot_core::{
        BatchResults, CloudProvider, InstanceFilter, InstanceId, InstanceInfo, ProviderInfo,
        Result, StateChange, StopOptions, async_trait,
    };

    mockall::mock! {
        /// A [`mockall`] mock of [`CloudProvider`]: set expectations with `expect_*`.
        ///
        /// ```
        /// use snoozebot_core::{CloudProvider, Error, ErrorKind, InstanceId};
        /// use snoozebot_testkit::MockCloudProvider;
        ///
        /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
        /// let mut provider = MockCloudProvider::new();
        /// provider
        ///     .expect_get_instance()
        ///     .times(1)
        ///     .returning(|id| Err(Error::not_found(format!("{id} is gone"))));
        /// let id: InstanceId = "i-1".parse().unwrap();
        /// let err = provider.get_instance(&id).await.unwrap_err();
        /// assert_eq!(err.kind(), ErrorKind::NotFound);
        /// # });
        /// ```
        pub CloudProvider {}

        #[async_trait]
        impl CloudProvider for CloudProvider {
            fn info(&self) -> ProviderInfo;
            async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo>;
            async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>>;
            async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange>;
            async fn start_instance(&self, id: &InstanceId) -> Result<StateChange>;
            async fn stop_instances(&self, ids: &[InstanceId], opts: &StopOptions) -> BatchResults;
            async fn start_instances(&self, ids: &[InstanceId]) -> BatchResults;
        }
    }

    impl std::fmt::Debug for MockCloudProvider {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("MockCloudProvider").finish_non_exhaustive()
        }
    }
}
