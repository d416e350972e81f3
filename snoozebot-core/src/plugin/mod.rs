//! Out-of-process providers over gRPC, wire-compatible with HashiCorp go-plugin (feature
//! `plugin`).
//!
//! A plugin is an executable named `snoozebot-plugin-<name>` whose `main` calls [`serve`]. The
//! host ([`PluginClient`], usually through [`PluginManager`](crate::PluginManager)) starts it
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
//! ```no_run
//! use std::time::Duration;
//! use snoozebot_core::{CloudProvider, InstanceFilter};
//! use snoozebot_core::plugin::{PluginClient, PluginConfig};
//!
//! # async fn run() -> snoozebot_core::Result<()> {
//! let aws = PluginClient::launch(
//!     "aws",
//!     "/usr/lib/snoozebot/plugins/snoozebot-plugin-aws".as_ref(),
//!     PluginConfig::default().inherit("AWS_*").with_start_timeout(Duration::from_secs(5)),
//! )
//! .await?;
//! let running = aws.list_instances(&InstanceFilter::new()).await?;
//! aws.shutdown().await;
//! # Ok(()) }
//! ```

mod convert;
mod discover;
mod handshake;
mod host;
mod log;
mod serve;
mod tls;
mod trust;

/// The generated protocol code: `snoozebot.plugin.v1` and go-plugin's own services.
#[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]
pub mod proto {
    /// `snoozebot.plugin.v1`: the provider service.
    pub mod v1 {
        tonic::include_proto!("snoozebot.plugin.v1");
    }
    /// go-plugin's `plugin` package: GRPCController, GRPCBroker, GRPCStdio.
    pub mod go_plugin {
        tonic::include_proto!("plugin");
    }
}

pub use convert::{ERROR_DOMAIN, error_to_status, status_to_error};
pub(crate) use discover::{PluginFile, scan_plugin_dirs};
pub use handshake::{
    APP_PROTOCOL_VERSION, CLIENT_CERT_ENV, CORE_PROTOCOL_VERSION, Handshake, MAGIC_COOKIE_KEY,
    MAGIC_COOKIE_VALUE, PROTOCOL_VERSIONS_ENV, PluginAddress, negotiate,
};
pub use host::{DEFAULT_INHERITED_ENV, PluginClient, PluginConfig};
pub use serve::{ServeConfig, serve, serve_with};
pub use trust::TrustPolicy;

/// Sends this plugin's `tracing` events to stderr as hclog JSON lines, which hosts (ours and
/// go-plugin's) log with their level. [`serve`] does this itself; call it first in `main` to
/// also see what happens before `serve`, such as building the provider. Does nothing if a
/// global subscriber is already set. The level comes from `SNOOZEBOT_PLUGIN_LOG` (`trace` …
/// `error`, or `off`; default `info`).
pub fn init_logging() {
    log::hclog::install();
}

/// The largest message either side accepts: go-plugin's (`math.MaxInt32`), far above tonic's
/// 4 MiB default, so a listing of many thousands of instances fits in one answer.
pub const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// The file name prefix of plugin executables: `snoozebot-plugin-<name>`.
pub const EXECUTABLE_PREFIX: &str = "snoozebot-plugin-";
