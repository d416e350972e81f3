//! The configuration file: its schema, where it is looked for, and how it is read, every
//! mistake reported with the line and key it is about.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The environment variable naming the config file (after `--config`).
pub const CONFIG_ENV: &str = "SNOOZEBOT_CONFIG";

/// The largest config file read (and the largest secret file): anything bigger is a mistake.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `snoozebot serve`.
    #[serde(default)]
    pub server: ServerConfig,
    /// Logging, for every command.
    #[serde(default)]
    pub log: LogConfig,
    /// Where plugin executables are.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// The providers, by the name they are used by.
    #[serde(default)]
    pub providers: BTreeMap<Spanned<String>, ProviderConfig>,
    /// Plugin registries, by name (`snoozebot plugins install` and friends).
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryConfig>,
    /// Named schedules, selected by the scheduler's tag (`snoozebot-schedule = NAME`).
    #[serde(default)]
    pub schedules: BTreeMap<Spanned<String>, ScheduleConfig>,
    /// How schedules are applied (`snoozebot schedule plan|apply`).
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    /// `snoozebot agent` on the instance itself.
    #[serde(default)]
    pub agent: AgentConfig,
    /// `snoozebot serve` takes reports from agents on instances.
    #[serde(default)]
    pub agents: Option<AgentsConfig>,
}

/// `[agents]`: what `snoozebot serve` does with reporting agents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// The secret agents' keys are derived from (at least 32 bytes; `{ env = "NAME" }` or
    /// `{ file = "PATH" }`); `snoozebot agent key PROVIDER INSTANCE` prints an instance's key.
    pub secret: Secret,
    /// How often agents send a heartbeat (default 30 s).
    #[serde(default, deserialize_with = "duration::optional")]
    pub heartbeat: Option<Duration>,
    /// An agent unheard for this long is lost (default three heartbeats).
    #[serde(default, deserialize_with = "duration::optional")]
    pub lost_after: Option<Duration>,
    /// Between deciding to stop an idle machine and stopping it (default 5 minutes).
    #[serde(default, deserialize_with = "duration::optional")]
    pub warning: Option<Duration>,
    /// Stop idle machines during their schedule's on-hours too (default: kept running).
    #[serde(default)]
    pub stop_in_on_hours: bool,
    /// How to stop (`stop`, `hibernate`, `suspend`, `deallocate`; default: the provider's).
    #[serde(default)]
    pub stop_mode: Option<snoozebot_core::StopMode>,
}

/// `[schedules.NAME]`: when instances that select it run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The time zone (IANA: `Europe/Berlin`; default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// When instances run: `DAYS HH:MM-HH:MM` (`Mon-Fri 08:00-19:00`).
    pub periods: Vec<String>,
    /// Dates (`YYYY-MM-DD`) instances are stopped all day.
    #[serde(default)]
    pub days_off: Vec<String>,
    /// Stop instances started by hand out of hours, start those stopped by hand in hours.
    #[serde(default)]
    pub enforced: bool,
    /// Do not stop at a period's end what was started by hand before it began.
    #[serde(default)]
    pub retain_running: bool,
    /// How to stop (`stop`, `hibernate`, `suspend`, `deallocate`; default: the provider's).
    #[serde(default)]
    pub stop_mode: Option<snoozebot_core::StopMode>,
}

/// `[scheduler]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// The tag naming an instance's schedule (default `snoozebot-schedule`); its value is a
    /// schedule's name or an inline schedule (`Mon-Fri 08:00-19:00 Europe/Berlin`).
    #[serde(default)]
    pub tag: Option<String>,
    /// The zone of inline schedules that name none (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Inline schedules are enforced.
    #[serde(default)]
    pub enforced: bool,
    /// Where the state and audit trail are: a SQLite file (default `snoozebot-schedule.db`
    /// beside the config file), or a PostgreSQL URL (`postgres://user@host/db`) that several
    /// replicas share.
    #[serde(default)]
    pub store: Option<String>,
    /// How long a replica's lead lasts per tick (default three intervals, at least 10 s): of
    /// replicas sharing a store one applies the schedules, and one that dies is replaced
    /// within this long.
    #[serde(default, deserialize_with = "duration::optional")]
    pub lease: Option<Duration>,
    /// `snoozebot serve` applies the schedules every `interval` (`"5m"`), on ticks aligned to
    /// it; without one, serve only answers the schedule routes.
    #[serde(default, deserialize_with = "duration::optional")]
    pub interval: Option<Duration>,
    /// At most this many actions a run (default 1000).
    #[serde(default)]
    pub max_actions_per_run: Option<usize>,
    /// At most this many actions per provider a run (default 500).
    #[serde(default)]
    pub max_actions_per_provider: Option<usize>,
    /// Cloud Custodian's offhours tags, read as Custodian reads them.
    #[serde(default)]
    pub custodian: Option<CustodianSettings>,
    /// Every applied run's actions posted to a URL.
    #[serde(default)]
    pub webhook: Option<WebhookSettings>,
}

/// `[scheduler.webhook]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where (a Slack webhook URL is a secret: `{ env = "NAME" }` or `{ file = "PATH" }`).
    pub url: Secret,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: Option<String>,
}

/// `[scheduler.custodian]`: the values of Custodian's `offhour`/`onhour` policy filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodianSettings {
    /// The tag (Custodian's default `maid_offhours`).
    #[serde(default)]
    pub tag: Option<String>,
    /// `default_tz` (default `et`).
    #[serde(default)]
    pub default_tz: Option<String>,
    /// `onhour` (default 7).
    #[serde(default)]
    pub onhour: Option<u8>,
    /// `offhour` (default 19).
    #[serde(default)]
    pub offhour: Option<u8>,
    /// `weekends`: off over the weekend (default true).
    #[serde(default)]
    pub weekends: Option<bool>,
    /// Enforce these schedules.
    #[serde(default)]
    pub enforced: bool,
}

/// `[agent]`: `snoozebot agent run` on the instance itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The configured provider this instance belongs to (it is stopped through it).
    #[serde(default)]
    pub provider: Option<String>,
    /// This instance's id in that provider; default: asked of the cloud's metadata service.
    #[serde(default)]
    pub instance: Option<String>,
    /// The metadata services' base URL (default: each cloud's link-local address).
    #[serde(default)]
    pub metadata: Option<String>,
    /// Where `/proc` and `/dev/pts` are read (default `/`).
    #[serde(default)]
    pub proc_root: Option<PathBuf>,
    /// How often to sample (default 10 s).
    #[serde(default, deserialize_with = "duration::optional")]
    pub interval: Option<Duration>,
    /// How long every signal must stay idle (default 30 minutes).
    #[serde(default, deserialize_with = "duration::optional")]
    pub nap: Option<Duration>,
    /// Busy spells shorter than this do not reset the nap (default 1 minute).
    #[serde(default, deserialize_with = "duration::optional")]
    pub grace: Option<Duration>,
    /// Between idle and the stop; activity or a postpone cancels it (default 5 minutes).
    #[serde(default, deserialize_with = "duration::optional")]
    pub warning: Option<Duration>,
    /// The file `snoozebot agent postpone` writes (default `/run/snoozebot-agent.postpone`).
    #[serde(default)]
    pub postpone_file: Option<PathBuf>,
    /// CPU busy above this % keeps it awake (default 10).
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// Memory in use above this % keeps it awake (default: not a signal).
    #[serde(default)]
    pub memory_percent: Option<f64>,
    /// Network bytes a second above this keep it awake (default 65536).
    #[serde(default)]
    pub network_bytes_per_second: Option<f64>,
    /// Disk bytes a second above this keep it awake (default 1048576).
    #[serde(default)]
    pub disk_bytes_per_second: Option<f64>,
    /// Terminal input within this long keeps it awake (default 15 minutes).
    #[serde(default, deserialize_with = "duration::optional")]
    pub terminal_input: Option<Duration>,
    /// The busiest GPU above this % keeps it awake (default 10; read with `nvidia-smi` where
    /// there is one).
    #[serde(default)]
    pub gpu_percent: Option<f64>,
    /// The `nvidia-smi` to run (default: from the `PATH`; absent: no GPU signal).
    #[serde(default)]
    pub nvidia_smi: Option<PathBuf>,
    /// Processes that keep it awake while they run (names as `ps -o comm` shows them).
    #[serde(default)]
    pub keep_awake_processes: Vec<String>,
    /// Periods it is kept awake, however idle (`Mon-Fri 09:00-18:00`), in `timezone`.
    #[serde(default)]
    pub keep_awake: Vec<String>,
    /// The time zone of `keep_awake` (IANA; default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Reporting mode: the `snoozebot serve` to report to (`https://snoozebot.internal:8080`);
    /// it decides. Without one, the agent stops its instance itself.
    #[serde(default)]
    pub server: Option<String>,
    /// This instance's agent key, in reporting mode (`{ env = "NAME" }` or `{ file = "PATH" }`).
    #[serde(default)]
    pub key: Option<Secret>,
    /// In self mode: the stop announced to and made known at a URL, as schedule runs are.
    #[serde(default)]
    pub webhook: Option<WebhookSettings>,
}

/// `[registries.NAME]`: a plugin registry and the keys its index must be signed by.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `https://…/`, `file:///…/` (a mirror), or `http://` to a loopback address.
    pub url: String,
    /// minisign public keys; the index must be signed by one of them.
    pub keys: Vec<String>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where to listen.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// A file of `ROLE SHA256-HEX [LABEL]` lines (reloaded on SIGHUP).
    pub keys_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Load every provider at start (`start`, the default) or on first use (`lazy`).
    #[serde(default)]
    pub load: LoadAt,
    /// The time limit of one request.
    #[serde(default, deserialize_with = "duration::optional")]
    pub request_timeout: Option<Duration>,
    /// Requests in flight at once, over all providers.
    pub max_concurrent_requests: Option<usize>,
    /// Requests in flight at once for one provider.
    pub max_concurrent_per_provider: Option<usize>,
    /// Open connections at most.
    pub max_connections: Option<usize>,
    /// How long a client may take to send its request headers.
    #[serde(default, deserialize_with = "duration::optional")]
    pub header_read_timeout: Option<Duration>,
    /// How long an idle keep-alive connection is kept.
    #[serde(default, deserialize_with = "duration::optional")]
    pub idle_timeout: Option<Duration>,
    /// The largest request body, in bytes.
    pub body_limit: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            keys_file: None,
            tls_cert: None,
            tls_key: None,
            load: LoadAt::default(),
            request_timeout: None,
            max_concurrent_requests: None,
            max_concurrent_per_provider: None,
            max_connections: None,
            header_read_timeout: None,
            idle_timeout: None,
            body_limit: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

/// When `serve` loads the configured providers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadAt {
    /// All at start; a provider that cannot load stops the server from starting.
    #[default]
    Start,
    /// Each on its first use.
    Lazy,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (the default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `snoozebot=debug,info`); `RUST_LOG` overrides it.
    pub level: Option<String>,
}

/// How log lines look.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

/// `[plugins]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directories searched for `snoozebot-plugin-<name>` executables, in order (relative to
    /// the config file's directory).
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
    /// Whether a plugin may be a symlink to a file outside the directories.
    #[serde(default)]
    pub allow_symlinks_outside: bool,
    /// Where `snoozebot plugins install` puts plugins (default: the first of `dirs`).
    #[serde(default)]
    pub install_dir: Option<PathBuf>,
    /// The lock file (default: `snoozebot-plugins.lock` in the install directory); its hashes
    /// pin the plugins it lists.
    #[serde(default)]
    pub lock_file: Option<PathBuf>,
}

/// `[providers.NAME]`: which provider, with its settings.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderConfig {
    /// The in-memory mock fleet (no cloud account).
    Mock(MockSettings),
    /// AWS EC2, in process.
    Aws(AwsSettings),
    /// Google Compute Engine, in process.
    Gcp(GcpSettings),
    /// Azure virtual machines, in process.
    Azure(AzureSettings),
    /// A plugin executable `snoozebot-plugin-NAME` from the plugin directories.
    Plugin(PluginSettings),
}

impl ProviderConfig {
    /// The middleware settings, whatever the kind.
    pub fn middleware(&self) -> &MiddlewareConfig {
        match self {
            ProviderConfig::Mock(settings) => &settings.middleware,
            ProviderConfig::Aws(settings) => &settings.middleware,
            ProviderConfig::Gcp(settings) => &settings.middleware,
            ProviderConfig::Azure(settings) => &settings.middleware,
            ProviderConfig::Plugin(settings) => &settings.middleware,
        }
    }

    /// The `kind` value.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::Mock(_) => "mock",
            ProviderConfig::Aws(_) => "aws",
            ProviderConfig::Gcp(_) => "gcp",
            ProviderConfig::Azure(_) => "azure",
            ProviderConfig::Plugin(_) => "plugin",
        }
    }
}

/// `kind = "mock"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockSettings {
    /// Instances in the fleet (`mock-0000` …), default 8; every fourth is tagged
    /// `snoozebot=idle`, the others `snoozebot=busy`.
    #[serde(default = "default_mock_instances")]
    pub instances: usize,
    /// How long a stop or start takes.
    #[serde(default, deserialize_with = "duration::optional")]
    pub transition: Option<Duration>,
    /// How long every call takes to answer.
    #[serde(default, deserialize_with = "duration::optional")]
    pub latency: Option<Duration>,
    /// The provider's middleware.
    #[serde(default)]
    pub middleware: MiddlewareConfig,
}

fn default_mock_instances() -> usize {
    8
}

/// `kind = "aws"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// The region (else the SDK's chain: `AWS_REGION`, the profile).
    pub region: Option<String>,
    /// Another endpoint (moto, LocalStack, a VPC endpoint).
    pub endpoint: Option<String>,
    /// A profile of the shared config files.
    pub profile: Option<String>,
    /// A static access key id (else the SDK's credential chain).
    pub access_key_id: Option<Secret>,
    /// The secret of `access_key_id`.
    pub secret_access_key: Option<Secret>,
    /// Ids per StopInstances/StartInstances call.
    pub batch_size: Option<usize>,
    /// The provider's middleware.
    #[serde(default)]
    pub middleware: MiddlewareConfig,
}

/// `kind = "gcp"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSettings {
    /// The project.
    pub project: String,
    /// The zones instances are looked for in (default: every zone of the project).
    #[serde(default)]
    pub zones: Vec<String>,
    /// Another endpoint (a fake, a private endpoint).
    pub endpoint: Option<String>,
    /// Send no credentials (for a local fake only).
    #[serde(default)]
    pub anonymous: bool,
    /// The provider's middleware.
    #[serde(default)]
    pub middleware: MiddlewareConfig,
}

/// `kind = "azure"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSettings {
    /// The subscription id.
    pub subscription: String,
    /// Only this resource group (else the whole subscription).
    pub resource_group: Option<String>,
    /// Another ARM endpoint (a fake, a sovereign cloud).
    pub endpoint: Option<String>,
    /// A fixed bearer token (for a local fake; else the Azure credential chain).
    pub token: Option<Secret>,
    /// How often a long-running ARM operation is polled when following it.
    #[serde(default, deserialize_with = "duration::optional")]
    pub poll_interval: Option<Duration>,
    /// The provider's middleware.
    #[serde(default)]
    pub middleware: MiddlewareConfig,
}

/// `kind = "plugin"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Variables set in the plugin's environment (values may come from the environment or a
    /// file: `{ env = "NAME" }`, `{ file = "PATH" }`).
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// Names of this process's variables the plugin inherits too; a trailing `*` matches a
    /// prefix (`AWS_*`).
    #[serde(default)]
    pub inherit: Vec<String>,
    /// The SHA-256 digest (hex) the executable must have.
    pub sha256: Option<String>,
    /// minisign public keys, one of which must have signed the executable (`.minisig` beside
    /// it).
    #[serde(default)]
    pub minisign_keys: Vec<String>,
    /// How long the plugin may take to start.
    #[serde(default, deserialize_with = "duration::optional")]
    pub start_timeout: Option<Duration>,
    /// Run it as this user (`{ uid = 65534, gid = 65534 }`); needs a root host.
    pub run_as: Option<RunAs>,
    /// The provider's middleware.
    #[serde(default)]
    pub middleware: MiddlewareConfig,
}

/// A user and group to run a plugin as.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunAs {
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

/// `[providers.NAME.middleware]`: what wraps the provider's calls.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiddlewareConfig {
    /// Attempts per call, the first included (default 3; 1 turns retries off).
    pub retry_attempts: Option<u32>,
    /// The time limit of one call (each attempt).
    #[serde(default, deserialize_with = "duration::optional")]
    pub timeout: Option<Duration>,
    /// Calls in flight at once.
    pub concurrency: Option<usize>,
    /// Calls started per second (a token bucket; `rate_burst` at once).
    pub rate_per_second: Option<f64>,
    /// The bucket of `rate_per_second`.
    pub rate_burst: Option<u32>,
}

/// A value written in the file, or read from an environment variable or a file when used, so
/// that secrets need not be in the config itself.
#[derive(Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Secret {
    /// The value itself.
    Value(String),
    /// `{ env = "NAME" }`.
    Env {
        /// The variable.
        env: String,
    },
    /// `{ file = "PATH" }`: the file's contents without the trailing newline.
    File {
        /// The file (relative to the config file's directory).
        file: PathBuf,
    },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(..)"),
            Secret::Env { env } => write!(f, "Secret(env {env})"),
            Secret::File { file } => write!(f, "Secret(file {})", file.display()),
        }
    }
}

impl Secret {
    /// The value, read now; `base` resolves a relative file.
    pub fn resolve(&self, base: &Path) -> Result<String, String> {
        match self {
            Secret::Value(value) => Ok(value.clone()),
            Secret::Env { env } => std::env::var(env).map_err(|error| match error {
                std::env::VarError::NotPresent => {
                    format!("the environment variable {env} is not set")
                }
                std::env::VarError::NotUnicode(_) => {
                    format!("the environment variable {env} is not UTF-8")
                }
            }),
            Secret::File { file } => {
                let path = base.join(file);
                let text = read_bounded(&path)?;
                Ok(text
                    .strip_suffix('\n')
                    .map_or(text.as_str(), |text| {
                        text.strip_suffix('\r').unwrap_or(text)
                    })
                    .to_owned())
            }
        }
    }
}

/// Reads a UTF-8 file of at most [`MAX_FILE_BYTES`].
pub fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {} KiB",
            path.display(),
            MAX_FILE_BYTES / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()))
}

/// A config file that was found and read, with what it says.
#[derive(Debug)]
pub struct Loaded {
    /// Where it is.
    pub path: PathBuf,
    /// Its text (for pointing at lines).
    pub text: String,
    /// What it says.
    pub config: Config,
}

impl Loaded {
    /// The configured providers' names, in the file's order of keys (sorted).
    pub fn provider_names(&self) -> Vec<String> {
        self.config
            .providers
            .keys()
            .map(|name| name.get_ref().clone())
            .collect()
    }

    /// The directory relative paths in the file are resolved against.
    pub fn base(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// `path:LINE` for a byte offset of the file.
    pub fn at(&self, offset: usize) -> String {
        let line = self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        format!("{}:{line}", self.path.display())
    }
}

/// What went wrong finding or reading the config file.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The places a config file is looked for when neither `--config` nor `SNOOZEBOT_CONFIG`
/// names one, in order.
pub fn search_path() -> Vec<PathBuf> {
    let mut places = vec![PathBuf::from("snoozebot.toml")];
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(config) if !config.is_empty() => {
            places.push(PathBuf::from(config).join("snoozebot/config.toml"));
        }
        _ => {
            if let Some(home) = std::env::var_os("HOME") {
                places.push(PathBuf::from(home).join(".config/snoozebot/config.toml"));
            }
        }
    }
    places.push(PathBuf::from("/etc/snoozebot/config.toml"));
    places
}

/// Finds and reads the config file: `explicit` (from `--config`), else `SNOOZEBOT_CONFIG`,
/// else the first of [`search_path`] that exists.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => match std::env::var_os(CONFIG_ENV) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => search_path()
                .into_iter()
                .find(|place| place.is_file())
                .ok_or_else(|| {
                    let places: Vec<String> = search_path()
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect();
                    ConfigError(format!(
                        "no config file: give one with --config or {CONFIG_ENV}, or put one at {}",
                        places.join(", ")
                    ))
                })?,
        },
    };
    let text = read_bounded(&path).map_err(ConfigError)?;
    parse(path, text)
}

/// Parses a config file's text; `path` names it in errors.
pub fn parse(path: PathBuf, text: String) -> Result<Loaded, ConfigError> {
    let config: Config = toml::from_str(&text).map_err(|error| {
        let at = error
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("{}:{line}", path.display())
            })
            .unwrap_or_else(|| path.display().to_string());
        ConfigError(format!("{at}: {}", error.message()))
    })?;
    let loaded = Loaded { path, text, config };
    check(&loaded)?;
    Ok(loaded)
}

/// The checks the schema cannot make, each pointing at the provider it is about.
fn check(loaded: &Loaded) -> Result<(), ConfigError> {
    crate::schedule::schedules(loaded)?;
    check_agents(loaded)?;
    let server = &loaded.config.server;
    if server.tls_cert.is_some() != server.tls_key.is_some() {
        return Err(ConfigError(format!(
            "{}: [server] tls_cert and tls_key go together",
            loaded.path.display()
        )));
    }
    for (name, provider) in &loaded.config.providers {
        let at = || {
            format!(
                "{}: providers.{}",
                loaded.at(name.span().start),
                name.get_ref()
            )
        };
        if let Err(error) = snoozebot_core::manager::validate_provider_name(name.get_ref()) {
            return Err(ConfigError(format!("{}: {}", at(), error.message())));
        }
        let middleware = provider.middleware();
        if middleware.retry_attempts == Some(0) {
            return Err(ConfigError(format!(
                "{}.middleware: retry_attempts is at least 1 (1 turns retries off)",
                at()
            )));
        }
        if middleware.concurrency == Some(0) {
            return Err(ConfigError(format!(
                "{}.middleware: concurrency is at least 1",
                at()
            )));
        }
        if middleware.rate_burst.is_some() && middleware.rate_per_second.is_none() {
            return Err(ConfigError(format!(
                "{}.middleware: rate_burst needs rate_per_second",
                at()
            )));
        }
        if let ProviderConfig::Plugin(plugin) = provider {
            if loaded.config.plugins.dirs.is_empty() {
                return Err(ConfigError(format!(
                    "{}: a plugin needs [plugins] dirs to be found in",
                    at()
                )));
            }
            if let Some(digest) = &plugin.sha256
                && let Err(error) = snoozebot_plugin::TrustPolicy::default().with_sha256(digest)
            {
                return Err(ConfigError(format!("{}.sha256: {}", at(), error.message())));
            }
            for key in &plugin.minisign_keys {
                if let Err(error) = snoozebot_plugin::TrustPolicy::default().with_minisign_key(key)
                {
                    return Err(ConfigError(format!(
                        "{}.minisign_keys: {}",
                        at(),
                        error.message()
                    )));
                }
            }
        }
        if let ProviderConfig::Aws(aws) = provider
            && aws.access_key_id.is_some() != aws.secret_access_key.is_some()
        {
            return Err(ConfigError(format!(
                "{}: access_key_id and secret_access_key go together",
                at()
            )));
        }
    }
    Ok(())
}

/// `[agent]` and `[agents]`: what the schema cannot say.
fn check_agents(loaded: &Loaded) -> Result<(), ConfigError> {
    let at = |section: &str, why: String| {
        ConfigError(format!("{}: [{section}] {why}", loaded.path.display()))
    };
    let agent = &loaded.config.agent;
    crate::agent::keep_awake_hours(agent)
        .map_err(|why| at("agent", format!("keep_awake: {why}")))?;
    if let Some(server) = &agent.server {
        crate::agent::server_url(server).map_err(|why| at("agent", why))?;
        if agent.key.is_none() {
            return Err(at(
                "agent",
                "server needs key: this instance's agent key (snoozebot agent key on the server)"
                    .to_owned(),
            ));
        }
    }
    for (name, percent) in [
        ("cpu_percent", agent.cpu_percent),
        ("memory_percent", agent.memory_percent),
        ("gpu_percent", agent.gpu_percent),
    ] {
        if percent.is_some_and(|percent| !(0.0..=100.0).contains(&percent)) {
            return Err(at("agent", format!("{name} is a percentage, 0 to 100")));
        }
    }
    if agent.interval.is_some_and(|interval| interval.is_zero()) {
        return Err(at("agent", "interval is more than 0".to_owned()));
    }
    if let Some(agents) = &loaded.config.agents {
        let heartbeat = agents.heartbeat.unwrap_or(Duration::from_secs(30));
        if heartbeat < Duration::from_secs(1) {
            return Err(at("agents", "heartbeat is at least 1s".to_owned()));
        }
        if agents.lost_after.is_some_and(|lost| lost <= heartbeat) {
            return Err(at(
                "agents",
                "lost_after is longer than a heartbeat (default three)".to_owned(),
            ));
        }
    }
    Ok(())
}

/// Reads a duration written `500ms`, `30s`, `5m`, `1h` (or a number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    duration::parse(text)
}

/// Durations as `500ms`, `30s`, `5m`, `1h`, or a number of seconds.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(u64),
        Text(String),
    }

    pub(super) fn optional<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Written::deserialize(deserializer)? {
            Written::Seconds(seconds) => Ok(Some(Duration::from_secs(seconds))),
            Written::Text(text) => parse(&text).map(Some).map_err(serde::de::Error::custom),
        }
    }

    pub(super) fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration (500ms, 30s, 5m, 1h)"))?;
        let duration = match unit.trim() {
            "ms" => Duration::from_millis(number),
            "s" | "" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            _ => return Err(format!("{text:?} is not a duration (500ms, 30s, 5m, 1h)")),
        };
        Ok(duration)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn durations_read_as_written() {
            assert_eq!(super::parse("500ms").unwrap().as_millis(), 500);
            assert_eq!(super::parse("30s").unwrap().as_secs(), 30);
            assert_eq!(super::parse("5m").unwrap().as_secs(), 300);
            assert_eq!(super::parse("1h").unwrap().as_secs(), 3600);
            assert_eq!(super::parse("7").unwrap().as_secs(), 7);
            assert!(super::parse("soon").is_err());
            assert!(super::parse("5 weeks").is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parsed(text: &str) -> Result<Loaded, ConfigError> {
        parse(PathBuf::from("snoozebot.toml"), text.to_owned())
    }

    #[test]
    fn a_full_file_reads() {
        let loaded = parsed(
            r#"
[server]
listen = "127.0.0.1:9000"
request_timeout = "30s"
load = "lazy"

[log]
format = "json"
level = "debug"

[plugins]
dirs = ["plugins"]

[providers.fleet]
kind = "mock"
instances = 4

[providers.aws]
kind = "plugin"
env = { AWS_REGION = "us-east-1", AWS_SECRET_ACCESS_KEY = { env = "MY_SECRET" } }
inherit = ["AWS_*"]
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[providers.aws.middleware]
retry_attempts = 5
timeout = "10s"
"#,
        )
        .unwrap();
        let config = &loaded.config;
        assert_eq!(config.server.listen, "127.0.0.1:9000");
        assert_eq!(config.server.load, LoadAt::Lazy);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.providers.len(), 2);
        let (name, aws) = config.providers.iter().next().unwrap();
        assert_eq!(name.get_ref(), "aws");
        assert_eq!(aws.middleware().timeout, Some(Duration::from_secs(10)));
        let ProviderConfig::Plugin(plugin) = aws else {
            panic!("{aws:?}")
        };
        assert!(matches!(
            plugin.env["AWS_SECRET_ACCESS_KEY"],
            Secret::Env { .. }
        ));
    }

    #[test]
    fn mistakes_name_their_line() {
        for (text, line, words) in [
            ("[server]\nlisten = 8080\n", 2, "invalid type"),
            ("[server]\nlisen = \"x\"\n", 2, "unknown field `lisen`"),
            (
                "\n[providers.x]\nkind = \"ec3\"\n",
                3,
                "unknown variant `ec3`",
            ),
            // Inside a provider (its settings depend on its kind) the line is the provider's
            // table, and the message quotes the value.
            (
                "[providers.x]\nkind = \"mock\"\n[providers.x.middleware]\ntimeout = \"soon\"\n",
                1,
                "\"soon\" is not a duration",
            ),
            (
                "[plugins]\ndirs = [\"p\"]\n\n[providers.aws]\nkind = \"plugin\"\nsha256 = \"xyz\"\n",
                4,
                "providers.aws.sha256",
            ),
            (
                "\n\n[providers.aws]\nkind = \"plugin\"\n",
                3,
                "needs [plugins] dirs",
            ),
            (
                "[providers.\"bad name\"]\nkind = \"mock\"\n",
                1,
                "providers.bad name",
            ),
            (
                "[providers.x]\nkind = \"aws\"\naccess_key_id = \"AKIA\"\n",
                1,
                "go together",
            ),
        ] {
            let error = parsed(text).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("snoozebot.toml:{line}: ")),
                "{text:?}: {error}"
            );
            assert!(error.contains(words), "{text:?}: {error}");
        }
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let file = Secret::File {
            file: "token".into(),
        };
        assert_eq!(file.resolve(dir.path()).unwrap(), "s3cret");
        let missing = Secret::Env {
            env: "SNOOZEBOT_TEST_NO_SUCH_VARIABLE".into(),
        };
        assert!(
            missing
                .resolve(dir.path())
                .unwrap_err()
                .contains("is not set")
        );
        assert_eq!(
            format!("{:?}", Secret::Value("s3cret".into())),
            "Secret(..)"
        );
        std::fs::write(dir.path().join("huge"), vec![b'x'; 2 * 1024 * 1024]).unwrap();
        let huge = Secret::File {
            file: "huge".into(),
        };
        assert!(
            huge.resolve(dir.path())
                .unwrap_err()
                .contains("larger than")
        );
    }
}
