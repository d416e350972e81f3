//! What each command does: the config file read, the provider loaded, the calls made, the
//! outcome said.

use std::io::Write;
use std::sync::Arc;

use futures_util::StreamExt;
use snoozebot_core::{
    CloudProvider, CloudProviderExt, InstanceFilter, InstanceId, InstanceState, PluginManager,
    StateChange, StopMode, StopOptions,
};

use crate::cli::{
    Cli, Command, ConfigCommand, Filter, InstancesCommand, KeyRole, KeysCommand, Mode, Output,
    State, Target, WaitArgs,
};
use crate::config::{self, Loaded};
use crate::exit::{Failure, Outcome};
use crate::output;

/// Instances waited for at once with `--wait`.
const WAITS_AT_ONCE: usize = 16;

/// Runs the command.
pub async fn run(cli: Cli) -> Result<Outcome, Failure> {
    match cli.command {
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "snoozebot", &mut std::io::stdout());
            Ok(Outcome::Done)
        }
        Command::Keys(KeysCommand::Generate { role, label }) => keys_generate(role, &label),
        Command::Config(ConfigCommand::Check) => {
            let loaded = config::load(cli.config.as_deref())?;
            let names: Vec<String> = loaded
                .config
                .providers
                .iter()
                .map(|(name, provider)| format!("{} ({})", name.get_ref(), provider.kind()))
                .collect();
            println!(
                "{}: ok ({} provider{}{}{})",
                loaded.path.display(),
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                if names.is_empty() { "" } else { ": " },
                names.join(", ")
            );
            Ok(Outcome::Done)
        }
        Command::Serve => {
            let loaded = config::load(cli.config.as_deref())?;
            crate::serve::run(loaded).await
        }
        Command::Instances(command) => {
            let loaded = config::load(cli.config.as_deref())?;
            init_command_logging(&loaded, cli.verbose);
            instances(&loaded, command).await
        }
        Command::Plugins(command) => {
            let loaded = config::load(cli.config.as_deref())?;
            init_command_logging(&loaded, cli.verbose);
            crate::registry::plugins(&loaded, command).await
        }
        Command::Registry(command) => crate::registry::publish(command),
        Command::Agent(command) => {
            let loaded = config::load(cli.config.as_deref())?;
            init_logging(&loaded, "warn");
            crate::agent::run(&loaded, command).await
        }
        Command::Schedule(command) => {
            let loaded = config::load(cli.config.as_deref())?;
            init_command_logging(&loaded, cli.verbose);
            crate::schedule::run(&loaded, command).await
        }
    }
}

/// Logs to stderr as the `[log]` table says (`RUST_LOG` first), `default_level` otherwise.
pub fn init_logging(loaded: &Loaded, default_level: &str) {
    let level = loaded.config.log.level.as_deref().unwrap_or(default_level);
    init_logging_at(loaded, level);
}

/// A one-shot command's logging: only errors (its failure is said once, in its own words),
/// warnings too with `-v`; `RUST_LOG` first. `[log] level` is the server's.
fn init_command_logging(loaded: &Loaded, verbose: bool) {
    init_logging_at(loaded, if verbose { "warn" } else { "error" });
}

fn init_logging_at(loaded: &Loaded, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match loaded.config.log.format {
        config::LogFormat::Text => builder.try_init(),
        config::LogFormat::Json => builder.json().try_init(),
    };
}

fn keys_generate(role: KeyRole, label: &str) -> Result<Outcome, Failure> {
    let role = match role {
        KeyRole::Reader => snoozebot_rest::Role::Reader,
        KeyRole::Operator => snoozebot_rest::Role::Operator,
        KeyRole::Admin => snoozebot_rest::Role::Admin,
    };
    if label.chars().any(char::is_whitespace) || label.is_empty() {
        return Err(Failure::new(
            Outcome::Usage,
            format!("the label {label:?} must be one word"),
        ));
    }
    let mut keys = snoozebot_rest::ApiKeys::new();
    let key = keys.generate(role, label);
    let hash = snoozebot_rest::ApiKeys::hash(&key);
    eprintln!("key (shown once; only its hash is kept): {key}");
    println!("{role} {hash} {label}");
    Ok(Outcome::Done)
}

/// The provider a command is about: `--provider`, or the only one configured.
fn provider_name(loaded: &Loaded, target: &Target) -> Result<String, Failure> {
    let names: Vec<&String> = loaded
        .config
        .providers
        .keys()
        .map(|name| name.get_ref())
        .collect();
    match &target.provider {
        Some(name) if names.contains(&name) => Ok(name.clone()),
        Some(name) => Err(Failure::new(
            Outcome::Usage,
            format!(
                "no provider {name:?} in {} (configured: {})",
                loaded.path.display(),
                list_or_none(&names)
            ),
        )),
        None => match names.as_slice() {
            [only] => Ok((*only).clone()),
            [] => Err(Failure::new(
                Outcome::Config,
                format!(
                    "{} configures no provider: add a [providers.NAME] table",
                    loaded.path.display()
                ),
            )),
            _ => Err(Failure::new(
                Outcome::Usage,
                format!(
                    "name the provider with --provider (configured: {})",
                    list_or_none(&names)
                ),
            )),
        },
    }
}

fn list_or_none(names: &[&String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names
            .iter()
            .map(|name| name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A loaded provider, and the manager to stop when done.
struct Session {
    manager: Arc<PluginManager>,
    provider: Arc<dyn CloudProvider>,
}

impl Session {
    async fn open(loaded: &Loaded, target: &Target) -> Result<Session, Failure> {
        let name = provider_name(loaded, target)?;
        let manager = crate::providers::manager(loaded)
            .map_err(|error| Failure::from_error("cannot set up the providers", &error))?;
        let provider = match manager.load(&name).await {
            Ok(provider) => provider,
            Err(error) => {
                manager.shutdown().await;
                return Err(Failure::from_error(
                    &format!("cannot load provider {name}"),
                    &error,
                ));
            }
        };
        Ok(Session { manager, provider })
    }

    async fn close(self) {
        self.manager.shutdown().await;
    }
}

async fn instances(loaded: &Loaded, command: InstancesCommand) -> Result<Outcome, Failure> {
    match command {
        InstancesCommand::List {
            target,
            filter,
            output,
        } => {
            let session = Session::open(loaded, &target).await?;
            let listed = session
                .provider
                .list_instances(&instance_filter(&filter))
                .await;
            session.close().await;
            let instances =
                listed.map_err(|error| Failure::from_error("cannot list instances", &error))?;
            output::instances(&instances, output.output);
            if output.output == Output::Table {
                eprintln!("{} instance{}", instances.len(), plural(instances.len()));
            }
            Ok(Outcome::Done)
        }
        InstancesCommand::Get { target, id, output } => {
            let id = instance_id(&id)?;
            let session = Session::open(loaded, &target).await?;
            let found = session.provider.get_instance(&id).await;
            session.close().await;
            let instance =
                found.map_err(|error| Failure::from_error(&format!("cannot get {id}"), &error))?;
            output::instances(std::slice::from_ref(&instance), output.output);
            Ok(Outcome::Done)
        }
        InstancesCommand::Stop {
            target,
            ids,
            filter,
            mode,
            dry_run,
            force,
            allow_fallback,
            wait,
            output,
        } => {
            let mut opts = StopOptions::default()
                .with_dry_run(dry_run)
                .with_force(force)
                .with_allow_fallback(allow_fallback);
            if let Some(mode) = mode {
                opts = opts.with_mode(stop_mode(mode));
            }
            let session = Session::open(loaded, &target).await?;
            let result = change(
                &session,
                Change::Stop(opts),
                &ids,
                &filter,
                &wait,
                output.output,
            )
            .await;
            session.close().await;
            result
        }
        InstancesCommand::Start {
            target,
            ids,
            filter,
            wait,
            output,
        } => {
            let session = Session::open(loaded, &target).await?;
            let result = change(&session, Change::Start, &ids, &filter, &wait, output.output).await;
            session.close().await;
            result
        }
    }
}

/// A stop or a start.
enum Change {
    Stop(StopOptions),
    Start,
}

/// Stops or starts the ids given, or those the filter matches; waits if asked; prints each
/// result and a summary.
async fn change(
    session: &Session,
    change: Change,
    ids: &[String],
    filter: &Filter,
    wait: &WaitArgs,
    format: Output,
) -> Result<Outcome, Failure> {
    let verb = match change {
        Change::Stop(_) => "stop",
        Change::Start => "start",
    };
    let ids: Vec<InstanceId> = if ids.is_empty() {
        if filter.is_empty() {
            return Err(Failure::new(
                Outcome::Usage,
                format!(
                    "name the instances to {verb}, or select them with --tag, --state or --name-prefix"
                ),
            ));
        }
        let mut selection = instance_filter(filter);
        if selection.states.is_empty() {
            // Only those the change is for.
            selection = match change {
                Change::Stop(_) => selection.with_state(InstanceState::Running),
                Change::Start => selection
                    .with_state(InstanceState::Stopped)
                    .with_state(InstanceState::Suspended),
            };
        }
        session
            .provider
            .list_instances(&selection)
            .await
            .map_err(|error| Failure::from_error("cannot list instances", &error))?
            .into_iter()
            .map(|instance| instance.id)
            .collect()
    } else {
        if !filter.is_empty() {
            return Err(Failure::new(
                Outcome::Usage,
                "give instance ids or a filter, not both",
            ));
        }
        ids.iter()
            .map(|id| instance_id(id))
            .collect::<Result<_, _>>()?
    };
    if ids.is_empty() {
        eprintln!("nothing to {verb}: no instance matches");
        return Ok(Outcome::Done);
    }
    let results = match &change {
        Change::Stop(opts) => session.provider.stop_instances(&ids, opts).await,
        Change::Start => session.provider.start_instances(&ids).await,
    };
    let dry_run = matches!(&change, Change::Stop(opts) if opts.dry_run);
    let results = if wait.wait && !dry_run {
        settle(session, results, &change, wait).await
    } else {
        results
            .into_iter()
            .map(|(id, result)| (id, result.map(output::Done::Changed)))
            .collect()
    };
    let failed = results.iter().filter(|(_, result)| result.is_err()).count();
    output::changes(&results, format);
    let done = results.len() - failed;
    let past = match (&change, dry_run) {
        (_, true) => "would change",
        (Change::Stop(_), false) => "stopped",
        (Change::Start, false) => "started",
    };
    eprintln!(
        "{past} {done} of {} instance{}{}",
        results.len(),
        plural(results.len()),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    Ok(if failed == 0 {
        Outcome::Done
    } else {
        Outcome::Failed
    })
}

/// Waits for every accepted change to settle (its operation, then its state), a few at a
/// time, showing progress on a terminal and a line per instance otherwise.
async fn settle(
    session: &Session,
    results: Vec<(InstanceId, snoozebot_core::Result<StateChange>)>,
    change: &Change,
    wait: &WaitArgs,
) -> Vec<(InstanceId, snoozebot_core::Result<output::Done>)> {
    let total = results.iter().filter(|(_, result)| result.is_ok()).count();
    let progress = output::Progress::new(total);
    let provider = &session.provider;
    let start = matches!(change, Change::Start);
    let waits = results.into_iter().map(|(id, result)| {
        let progress = &progress;
        async move {
            let change = match result {
                Ok(change) => change,
                Err(error) => return (id, Err(error)),
            };
            let settled = settle_one(provider.as_ref(), &change, wait, start).await;
            progress.settled(&id, settled.as_ref().map(|info| info.state));
            (id, settled.map(|info| output::Done::Settled(change, info)))
        }
    });
    let settled = futures_util::stream::iter(waits)
        .buffered(WAITS_AT_ONCE)
        .collect()
        .await;
    progress.finish();
    settled
}

/// The state a change ends in.
fn target_state(change: &StateChange, start: bool) -> InstanceState {
    if start {
        InstanceState::Running
    } else if change.mode == Some(StopMode::Suspend) {
        InstanceState::Suspended
    } else {
        InstanceState::Stopped
    }
}

async fn settle_one(
    provider: &dyn CloudProvider,
    change: &StateChange,
    wait: &WaitArgs,
    start: bool,
) -> snoozebot_core::Result<snoozebot_core::InstanceInfo> {
    let started = tokio::time::Instant::now();
    if let Some(operation) = &change.operation {
        provider
            .wait_for_operation(&change.id, operation, wait.timeout)
            .await?;
    }
    let left = wait.timeout.saturating_sub(started.elapsed());
    provider
        .wait_for_state(&change.id, target_state(change, start), left)
        .await
}

fn instance_filter(filter: &Filter) -> InstanceFilter {
    let mut selection = InstanceFilter::new();
    for (key, value) in &filter.tags {
        selection = selection.with_tag(key, value);
    }
    for state in &filter.states {
        selection = selection.with_state(instance_state(*state));
    }
    if let Some(prefix) = &filter.name_prefix {
        selection = selection.with_name_prefix(prefix);
    }
    selection
}

fn instance_state(state: State) -> InstanceState {
    match state {
        State::Pending => InstanceState::Pending,
        State::Running => InstanceState::Running,
        State::Stopping => InstanceState::Stopping,
        State::Stopped => InstanceState::Stopped,
        State::Suspending => InstanceState::Suspending,
        State::Suspended => InstanceState::Suspended,
        State::Terminated => InstanceState::Terminated,
    }
}

fn stop_mode(mode: Mode) -> StopMode {
    match mode {
        Mode::Stop => StopMode::Stop,
        Mode::Hibernate => StopMode::Hibernate,
        Mode::Suspend => StopMode::Suspend,
        Mode::Deallocate => StopMode::Deallocate,
    }
}

fn instance_id(text: &str) -> Result<InstanceId, Failure> {
    InstanceId::new(text).map_err(|error| Failure::new(Outcome::Usage, error.message().to_owned()))
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// Writes to stdout, ignoring a closed pipe (`| head`).
pub fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}
