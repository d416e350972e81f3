//! A plugin host: discover plugin executables in a directory, load one, use it, watch it being
//! supervised, unload it.
//!
//! ```text
//! cargo build -p snoozebot-testkit --features plugin --bin snoozebot-plugin-mock
//! cargo run -p snoozebot-examples --features plugin --example plugin_host   # plugins from target/debug
//! cargo run -p snoozebot-examples --features plugin --example plugin_host -- /path/to/plugins
//! ```
//!
//! The plugin directory must hold `snoozebot-plugin-mock` (the testkit's mock fleet as a
//! plugin); anything else named `snoozebot-plugin-*` there is listed too.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use snoozebot_core::{
    CloudProvider, CloudProviderExt, InstanceFilter, InstanceState, PluginManager, StopOptions,
};
use snoozebot_plugin::{PluginConfig, PluginDirectory};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // An error's own words on stderr, not a debug dump of it.
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("plugin_host: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        // Colour only for a terminal: escapes in a pipe or a log file are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .init();

    let plugin_dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/debug, where `cargo build --bin snoozebot-plugin-mock` puts the mock plugin.
            let mut dir = std::env::current_exe().unwrap_or_default();
            dir.pop();
            dir.pop();
            dir
        });

    let manager = PluginManager::new();
    manager.add_source(
        PluginDirectory::new(&plugin_dir).with_default_config(
            PluginConfig::default()
                .with_start_timeout(Duration::from_secs(5))
                .with_env("SNOOZEBOT_MOCK_TRANSITION_MS", "200"),
        ),
    );

    println!("plugins in {}:", plugin_dir.display());
    for found in manager.discover().await? {
        let status = match &found.problem {
            None => "loadable".to_owned(),
            Some(problem) => format!("skipped: {problem}"),
        };
        println!("  {:<12} {:?} {status}", found.name, found.kind);
    }

    let started = Instant::now();
    let mock = match manager.load("mock").await {
        Ok(mock) => mock,
        Err(error) => {
            eprintln!(
                "\n{error}\nBuild the mock plugin first: \
                 cargo build -p snoozebot-testkit --features plugin --bin snoozebot-plugin-mock"
            );
            std::process::exit(1);
        }
    };
    println!(
        "\nloaded {:?} in {:?} (AutoMTLS)",
        mock.info().name,
        started.elapsed()
    );

    let idle = mock
        .list_instances(&InstanceFilter::new().with_tag("snoozebot", "idle"))
        .await?;
    for instance in &idle {
        let stopped = mock
            .stop_and_wait(
                &instance.id,
                &StopOptions::default(),
                Duration::from_secs(10),
            )
            .await?;
        println!("  {} {} -> {}", stopped.id, instance.state, stopped.state);
    }

    for loaded in manager.list().await {
        println!(
            "\n{} ({:?}) health {:?}, loaded at {}",
            loaded.name, loaded.kind, loaded.health, loaded.loaded_at
        );
    }

    let running = mock
        .list_instances(&InstanceFilter::new().with_state(InstanceState::Running))
        .await?;
    println!("{} instances still running", running.len());

    manager.unload("mock").await?;
    println!("unloaded: the plugin process has exited");
    Ok(())
}
