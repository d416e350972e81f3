//! The command line: every command, option and help text (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Puts idle cloud machines to sleep and wakes them again (AWS EC2, Google Compute Engine,
/// Azure, plugins), from one config file.
#[derive(Debug, Parser)]
#[command(name = "snoozebot", version, propagate_version = true)]
#[command(after_help = "\
Examples:
  snoozebot config check
  snoozebot instances list --tag snoozebot=idle
  snoozebot instances stop --tag snoozebot=idle --wait
  snoozebot serve

The config file: --config, else SNOOZEBOT_CONFIG, else ./snoozebot.toml,
~/.config/snoozebot/config.toml, /etc/snoozebot/config.toml. See docs/cli.md.

Exit codes: 0 done, 1 something failed, 2 bad usage, 3 config error, 4 unreachable.")]
pub struct Cli {
    /// The config file.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Show the causes of a failure.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Serve the REST API over the configured providers until SIGTERM or SIGINT.
    #[command(after_help = "\
Examples:
  snoozebot serve
  snoozebot --config /etc/snoozebot/config.toml serve

SIGTERM or SIGINT: finish the requests in flight, stop the plugins, exit 0.
SIGHUP: read the keys file again. GET /healthz and /readyz answer without a key.")]
    Serve,
    /// List, show, stop and start instances of a configured provider.
    #[command(subcommand)]
    Instances(InstancesCommand),
    /// The plugin executables in the plugin directories.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// API keys for `serve`.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Plan and apply the schedules: stop what is out of hours, start what is in.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// On the instance itself: stop it through its provider once it has been idle.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Publish plugins: a registry directory of artifacts and a signed index, for any static
    /// file server, bucket or mirror.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  snoozebot completions bash > /etc/bash_completion.d/snoozebot
  snoozebot completions zsh > \"${fpath[1]}/_snoozebot\"")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `snoozebot config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Read the config file and check it, without starting anything.
    #[command(after_help = "\
Examples:
  snoozebot config check
  snoozebot --config ./staging.toml config check

A mistake is reported as FILE:LINE: what is wrong; exit code 3.")]
    Check,
}

/// `snoozebot instances …`.
#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    /// List instances, optionally filtered.
    #[command(after_help = "\
Examples:
  snoozebot instances list
  snoozebot instances list --tag snoozebot=idle --state running --output json")]
    List {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        filter: Filter,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one instance.
    #[command(after_help = "\
Examples:
  snoozebot instances get i-0123456789abcdef0")]
    Get {
        #[command(flatten)]
        target: Target,
        /// The instance id.
        id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Stop instances: the ids given, or those the filter matches.
    #[command(after_help = "\
Examples:
  snoozebot instances stop i-0123456789abcdef0
  snoozebot instances stop --tag snoozebot=idle --wait
  snoozebot instances stop --tag snoozebot=idle --mode hibernate --allow-fallback --dry-run")]
    Stop {
        #[command(flatten)]
        target: Target,
        /// Instance ids (or use the filter).
        ids: Vec<String>,
        #[command(flatten)]
        filter: Filter,
        /// How to stop (default: the provider's default, which ends compute billing).
        #[arg(long, value_enum)]
        mode: Option<Mode>,
        /// Ask the cloud whether it would work, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Force the stop (AWS: without the guest's shutdown).
        #[arg(long)]
        force: bool,
        /// If the mode is not possible for an instance, use the plain stop.
        #[arg(long)]
        allow_fallback: bool,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Start instances: the ids given, or those the filter matches.
    #[command(after_help = "\
Examples:
  snoozebot instances start i-0123456789abcdef0
  snoozebot instances start --tag snoozebot=idle --state stopped --wait")]
    Start {
        #[command(flatten)]
        target: Target,
        /// Instance ids (or use the filter).
        ids: Vec<String>,
        #[command(flatten)]
        filter: Filter,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Which provider.
#[derive(Debug, Args)]
pub struct Target {
    /// The provider, by its name in the config file (needed when it has several).
    #[arg(long, short = 'p', value_name = "NAME")]
    pub provider: Option<String>,
}

/// Which instances.
#[derive(Debug, Args)]
pub struct Filter {
    /// Only instances with this tag (repeat for all of several).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// Only instances in this state (repeat for any of several).
    #[arg(long = "state", value_enum)]
    pub states: Vec<State>,
    /// Only instances whose name starts so.
    #[arg(long, value_name = "PREFIX")]
    pub name_prefix: Option<String>,
}

impl Filter {
    /// Whether anything filters.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.states.is_empty() && self.name_prefix.is_none()
    }
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("{text:?} has an empty key"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Waiting for the instances to settle.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Wait until every changed instance is stopped (or running).
    #[arg(long)]
    pub wait: bool,
    /// How long to wait at most (with --wait).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(text)
}

/// How to print.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// The format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Columns, for people.
    Table,
    /// One JSON document.
    Json,
    /// One JSON object a line.
    Jsonl,
}

/// Instance states, as filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum State {
    /// Starting.
    Pending,
    /// Running.
    Running,
    /// Stopping.
    Stopping,
    /// Stopped.
    Stopped,
    /// Suspending.
    Suspending,
    /// Suspended.
    Suspended,
    /// Terminated.
    Terminated,
}

/// Stop modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Shut down; disks kept.
    Stop,
    /// RAM to disk, then stop (AWS).
    Hibernate,
    /// Suspend (GCE).
    Suspend,
    /// Stop and release the compute (Azure).
    Deallocate,
}

/// `snoozebot plugins …`.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// The configured plugins, where each executable is, and whether it passes its trust
    /// policy (without running anything).
    #[command(after_help = "\
Examples:
  snoozebot plugins list")]
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Every plugin executable in the plugin directories, configured or not, and what is
    /// wrong with the ones that cannot be loaded.
    #[command(after_help = "\
Examples:
  snoozebot plugins discover")]
    Discover {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Check a configured plugin's executable against its trust policy, without running it;
    /// without a name, check every plugin in the lock file against its locked SHA-256.
    #[command(after_help = "\
Examples:
  snoozebot plugins verify aws
  snoozebot plugins verify          (everything installed still matches the lock file)")]
    Verify {
        /// The plugin, by its name in the config file.
        name: Option<String>,
    },
    /// The plugins the configured registries list (their signed indexes).
    #[command(after_help = "\
Examples:
  snoozebot plugins search
  snoozebot plugins search aws")]
    Search {
        /// Only plugins whose name or description contains this.
        text: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Install a plugin from a registry into the install directory, recorded in the lock file.
    #[command(after_help = "\
Examples:
  snoozebot plugins install aws
  snoozebot plugins install aws@^1.2 --registry main")]
    Install {
        /// `NAME` or `NAME@CONSTRAINT` (semver: `^1.2`, `=1.2.3`, `>=1, <2`).
        plugin: String,
        /// Which registry (when the file has several).
        #[arg(long)]
        registry: Option<String>,
    },
    /// Install newer versions of installed plugins, within a constraint.
    #[command(after_help = "\
Examples:
  snoozebot plugins upgrade           (every installed plugin)
  snoozebot plugins upgrade aws@^1")]
    Upgrade {
        /// `NAME` or `NAME@CONSTRAINT`; none: every plugin in the lock file.
        plugins: Vec<String>,
    },
    /// Remove an installed plugin and its lock file entry.
    #[command(after_help = "\
Examples:
  snoozebot plugins remove aws")]
    Remove {
        /// The plugin.
        name: String,
    },
}

/// `snoozebot agent …`.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Watch this machine. Self mode: once idle for the nap and the warning, stop it through
    /// its provider. Reporting mode (`[agent] server`): report to that `snoozebot serve`,
    /// which decides.
    #[command(after_help = "\
Examples:
  snoozebot agent run              (as a systemd service on the instance)")]
    Run,
    /// Print the agent key of one instance (on the server: derived from `[agents] secret`).
    #[command(after_help = "\
Examples:
  snoozebot agent key aws i-0123456789abcdef0")]
    Key {
        /// The server's provider the instance belongs to.
        provider: String,
        /// The instance id.
        instance: String,
    },
    /// Keep this machine running for a while, however idle.
    #[command(after_help = "\
Examples:
  snoozebot agent postpone 2h")]
    Postpone {
        /// How long (`30m`, `2h`).
        duration: String,
    },
}

/// `snoozebot schedule …`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// What a run would do now: each scheduled instance, its state, the state wanted, why,
    /// and the action. Nothing is changed.
    #[command(after_help = "\
Examples:
  snoozebot schedule plan
  snoozebot schedule plan -o json
  snoozebot schedule plan --at 2026-12-07T07:30:00+01:00   (what Monday morning would do)")]
    Plan {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Plan, then apply: the providers' batch calls, every action recorded in the store.
    #[command(after_help = "\
Examples:
  snoozebot schedule apply                (from cron, or a Kubernetes CronJob)")]
    Apply {
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The latest recorded actions, newest first.
    #[command(after_help = "\
Examples:
  snoozebot schedule history --limit 20")]
    History {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// What a schedule run covers.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Only this provider (repeat for several; default: all).
    #[arg(long = "provider", short = 'p')]
    pub providers: Vec<String>,
    /// Plan as if it were this moment (RFC 3339), to preview a change of period.
    #[arg(long)]
    pub at: Option<String>,
}

/// `snoozebot registry …`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Make a publisher's signing key: the secret key file (mode 0600), the public key on stdout.
    #[command(after_help = "\
Examples:
  snoozebot registry keygen --out publisher.key")]
    Keygen {
        /// The secret key file to write (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a plugin build to a registry directory and publish its index, signed.
    #[command(
        disable_version_flag = true,
        after_help = "\
Examples:
  snoozebot registry add ./registry target/release/snoozebot-plugin-aws \\
      --name aws --version 1.2.0 --key publisher.key"
    )]
    Add {
        /// The registry directory (created if missing).
        dir: PathBuf,
        /// The plugin executable.
        binary: PathBuf,
        /// The plugin's name (`aws` for `snoozebot-plugin-aws`).
        #[arg(long)]
        name: String,
        /// Its version (semver).
        #[arg(long)]
        version: String,
        /// The platform it is built for (default: this machine's).
        #[arg(long)]
        os: Option<String>,
        /// The architecture it is built for (default: this machine's).
        #[arg(long)]
        arch: Option<String>,
        /// The plugin protocol versions it speaks.
        #[arg(long = "protocol", default_value = "1")]
        protocols: Vec<u32>,
        #[command(flatten)]
        signing: SigningArgs,
    },
    /// Publish the index again, signed: to refresh its expiry, or to sign with new keys.
    #[command(after_help = "\
Examples:
  snoozebot registry sign ./registry --key publisher.key
  snoozebot registry sign ./registry --key old.key --key new.key   (rotating keys)")]
    Sign {
        /// The registry directory.
        dir: PathBuf,
        #[command(flatten)]
        signing: SigningArgs,
    },
}

/// How an index is signed.
#[derive(Debug, Args)]
pub struct SigningArgs {
    /// A minisign secret key file; repeat to sign with several (while rotating). An encrypted
    /// key's password comes from `SNOOZEBOT_REGISTRY_KEY_PASSWORD`.
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// How long the index is trusted, in days: clients refuse it afterwards.
    #[arg(long, default_value_t = 30)]
    pub valid_days: u64,
}

/// `snoozebot keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new API key: prints the key once, and the line for the keys file.
    #[command(after_help = "\
Examples:
  snoozebot keys generate --role admin --label ops
  snoozebot keys generate --role reader >> /etc/snoozebot/keys   (the key goes to stderr)")]
    Generate {
        /// What the key may do.
        #[arg(long, value_enum)]
        role: KeyRole,
        /// A label, logged when the key is used (never the key).
        #[arg(long, default_value = "cli")]
        label: String,
    },
}

/// API key roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyRole {
    /// Read.
    Reader,
    /// Read, stop and start.
    Operator,
    /// Everything.
    Admin,
}
