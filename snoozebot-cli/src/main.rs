//! `snoozebot`: the operator's command line and server, on one config file.
//!
//! ```text
//! snoozebot --config snoozebot.toml config check
//! snoozebot instances list --tag snoozebot=idle
//! snoozebot instances stop --tag snoozebot=idle --wait
//! snoozebot serve
//! ```
//!
//! See `docs/cli.md` for the config file, every command and the exit codes.

mod agent;
mod agents;
mod cli;
mod commands;
mod config;
mod exit;
mod output;
mod providers;
mod registry;
mod schedule;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let verbose = cli.verbose;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("snoozebot: cannot start: {error}");
            return exit::Outcome::Failed.into();
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(outcome) => outcome.into(),
        Err(failure) => {
            failure.print(verbose);
            failure.outcome.into()
        }
    }
}
