//! Snoozebot providers as plugin executables over gRPC, wire-compatible with HashiCorp
//! go-plugin.
//!
//! A plugin is an executable named `snoozebot-plugin-<name>` whose `main` calls `serve`
//! (feature `serve`). The host (feature `host`: `PluginClient`, usually through a
//! [`PluginManager`](snoozebot_core::PluginManager) given a `PluginDirectory`) starts it
//! with a magic cookie and the protocol versions it speaks; the plugin answers with one
//! handshake line on stdout — `1|1|unix|/tmp/.../plugin.sock|grpc|<cert>` — and serves
//! `snoozebot.plugin.v1.CloudProvider` there, next to go-plugin's `grpc.health.v1.Health`,
//! `plugin.GRPCController`, `plugin.GRPCBroker` and `plugin.GRPCStdio`. With AutoMTLS (the
//! default) both sides make a certificate for this launch and pin each other's exactly.
//!
//! Because the wire is go-plugin's, a Go plugin built with hashicorp/go-plugin on
//! `proto/snoozebot/plugin/v1/cloud_provider.proto` is a Snoozebot plugin, and a Go host can
//! load Snoozebot's Rust plugins. docs/plugin-protocol.md has the whole contract.
//!
//! The host, with a plugin directory behind a manager:
//!
#![cfg_attr(feature = "host", doc = "```no_run")]
#![cfg_attr(not(feature = "host"), doc = "```ignore")]
//! use std::time::Duration;
//! use snoozebot_core::{CloudProvider, InstanceFilter, PluginManager};
//! use snoozebot_plugin::{PluginConfig, PluginDirectory};
//!
//! # async fn run() -> snoozebot_core::Result<()> {
//! let manager = PluginManager::new();
//! manager.add_source(
//!     PluginDirectory::new("/usr/lib/snoozebot/plugins").configure(
//!         "aws",
//!         PluginConfig::default().inherit("AWS_*").with_start_timeout(Duration::from_secs(5)),
//!     ),
//! );
//! let aws = manager.load("aws").await?; // starts snoozebot-plugin-aws, supervised
//! let running = aws.list_instances(&InstanceFilter::new()).await?;
//! manager.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The plugin's `main`:
//!
#![cfg_attr(feature = "serve", doc = "```no_run")]
#![cfg_attr(not(feature = "serve"), doc = "```ignore")]
//! # fn provider() -> std::sync::Arc<dyn snoozebot_core::CloudProvider> { unimplemented!() }
//! fn main() -> std::process::ExitCode {
//!     snoozebot_plugin::init_logging();
//!     snoozebot_plugin::serve(provider())
//! }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
// Two `unsafe` blocks, reviewed: the pre-exec hook that arms a plugin's parent-death signal, and
// registering a socket with tokio for readability only (`wire/stream.rs`).
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "host")]
mod host;
#[cfg(feature = "serve")]
mod serve;
// Each side uses its own direction of the shared wire code; only both together use all of it.
#[cfg_attr(
    not(all(feature = "host", feature = "serve")),
    allow(dead_code, unused_imports)
)]
mod wire;

/// The generated protocol code: `snoozebot.plugin.v1` and go-plugin's own services (clients
/// with `host`, servers with `serve`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    unreachable_pub,
    dead_code
)]
pub(crate) mod proto {
    /// `snoozebot.plugin.v1`: the provider service.
    pub(crate) mod v1 {
        tonic::include_proto!("snoozebot.plugin.v1");
    }
    /// go-plugin's `plugin` package: GRPCController, GRPCBroker, GRPCStdio.
    pub(crate) mod go_plugin {
        tonic::include_proto!("plugin");
    }
}

#[cfg(feature = "host")]
#[cfg_attr(docsrs, doc(cfg(feature = "host")))]
pub use host::{
    DEFAULT_INHERITED_ENV, PluginClient, PluginConfig, PluginDirectory, TrustPolicy, harden_host,
};
#[cfg(feature = "serve")]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub use serve::{ServeConfig, init_logging, serve, serve_with};
pub use wire::{
    APP_PROTOCOL_VERSION, CORE_PROTOCOL_VERSION, ERROR_DOMAIN, MAGIC_COOKIE_KEY,
    MAGIC_COOKIE_VALUE, PluginAddress,
};

/// The largest message either side accepts: go-plugin's (`math.MaxInt32`), far above tonic's
/// 4 MiB default, so a listing of many thousands of instances fits in one answer.
pub const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// The file name prefix of plugin executables: `snoozebot-plugin-<name>`.
pub const EXECUTABLE_PREFIX: &str = "snoozebot-plugin-";
