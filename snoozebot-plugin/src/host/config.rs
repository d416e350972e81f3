//! [`PluginConfig`]: how a plugin executable is launched and supervised.

use std::time::Duration;

use snoozebot_core::Backoff;

use super::TrustPolicy;
use crate::APP_PROTOCOL_VERSION;

/// Environment variables a plugin inherits from the host by default; everything else is
/// cleared. Add a cloud's own (`AWS_*`, `GOOGLE_*`, `AZURE_*`) with
/// [`PluginConfig::inherit`].
pub const DEFAULT_INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "TZ",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "SNOOZEBOT_PLUGIN_LOG",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// The longest wait between two restart attempts.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(10);

/// How to launch and supervise a plugin executable.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PluginConfig {
    /// How long the plugin may take from spawn to its handshake and first answer. Default 10 s.
    pub start_timeout: Duration,
    /// Per-launch mutual TLS between host and plugin, each pinning the other's certificate.
    /// Default on.
    pub auto_mtls: bool,
    /// The app protocol versions this host speaks. Default: [`APP_PROTOCOL_VERSION`].
    pub app_versions: Vec<u32>,
    /// After asking the plugin to exit, how long to wait before killing its process group.
    /// Default 2 s (go-plugin's).
    pub shutdown_grace: Duration,
    /// How often to check the plugin's health; `None` disables the checks (a crash is still
    /// noticed at once). Default 5 s.
    pub health_check_interval: Option<Duration>,
    /// How long a health check may take before the plugin counts as hung. Default 2 s.
    pub health_check_timeout: Duration,
    /// Restarts in a row (crashes without a stable run between them) before the plugin is
    /// given up as failed; a reload clears it. Default 5.
    pub max_restarts: u32,
    /// The waits before restart attempts; each crash in a row waits the next one. Default 200 ms
    /// doubling up to 10 s.
    pub restart_backoff: Backoff,
    /// How long a launch must run for its crash to start a new streak rather than continue
    /// one (a plugin that dies a second after each start is a crash loop). Default 60 s.
    pub stable_after: Duration,
    /// Names of host environment variables the plugin inherits; a trailing `*` matches a prefix
    /// (`AWS_*`). Default: [`DEFAULT_INHERITED_ENV`].
    pub inherit_env: Vec<String>,
    /// Extra environment variables for the plugin (its configuration).
    pub env: Vec<(String, String)>,
    /// What the binary must be to run: SHA-256 pin, minisign signature. Default: anything.
    pub trust: TrustPolicy,
    /// The user and group (`uid`, `gid`) to run the plugin as, when the host may change them
    /// (it runs as root): a plugin of another user cannot read the host's memory or
    /// `/proc/<host>/environ`. Its private temporary directory is given to that user; the
    /// binary must be executable by it (a restrictive [`trust`](Self::trust) policy runs a
    /// sealed copy, which always is). Default: the host's own.
    pub user: Option<(u32, u32)>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            start_timeout: Duration::from_secs(10),
            auto_mtls: true,
            app_versions: vec![APP_PROTOCOL_VERSION],
            shutdown_grace: Duration::from_secs(2),
            health_check_interval: Some(Duration::from_secs(5)),
            health_check_timeout: Duration::from_secs(2),
            max_restarts: 5,
            restart_backoff: Backoff::new(Duration::from_millis(200), MAX_RESTART_BACKOFF),
            stable_after: Duration::from_secs(60),
            inherit_env: DEFAULT_INHERITED_ENV
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            env: Vec::new(),
            trust: TrustPolicy::default(),
            user: None,
        }
    }
}

impl PluginConfig {
    /// Sets the start timeout.
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Turns AutoMTLS on or off.
    pub fn with_auto_mtls(mut self, auto_mtls: bool) -> Self {
        self.auto_mtls = auto_mtls;
        self
    }

    /// Sets the app protocol versions this host speaks.
    pub fn with_app_versions(mut self, versions: impl Into<Vec<u32>>) -> Self {
        self.app_versions = versions.into();
        self
    }

    /// Sets the health-check interval (`None`: no periodic checks).
    pub fn with_health_check_interval(mut self, interval: Option<Duration>) -> Self {
        self.health_check_interval = interval;
        self
    }

    /// Sets how long a launch must run before a crash starts a new streak.
    pub fn with_stable_after(mut self, stable_after: Duration) -> Self {
        self.stable_after = stable_after;
        self
    }

    /// Sets how many restarts in a row are tried, and the first wait (doubling up to 10 s).
    pub fn with_restarts(mut self, max_restarts: u32, first_backoff: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.restart_backoff = Backoff::new(first_backoff, MAX_RESTART_BACKOFF);
        self
    }

    /// Lets the plugin inherit one more host variable (a trailing `*` matches a prefix).
    pub fn inherit(mut self, name: impl Into<String>) -> Self {
        self.inherit_env.push(name.into());
        self
    }

    /// Sets an environment variable for the plugin.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the plugin as user `uid`, group `gid` (see [`user`](Self::user)).
    pub fn run_as(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Sets the trust policy the binary is checked against before it runs.
    pub fn with_trust(mut self, trust: TrustPolicy) -> Self {
        self.trust = trust;
        self
    }

    pub(super) fn inherits(&self, name: &str) -> bool {
        self.inherit_env
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
    }
}
