//! What a command's exit code says, and the failure a command ends with: one line for people,
//! the causes below it with `-v`.

use std::process::ExitCode;

use snoozebot_core::{Error, ErrorKind};

/// How a command ended; the exit code says which (documented in `docs/cli.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: everything asked was done.
    Done,
    /// 1: something failed (some instances of a bulk command, or the one asked for).
    Failed,
    /// 2: the command line was wrong (clap's own code for it).
    Usage,
    /// 3: the config file, a setting, or credentials are wrong: nothing was tried.
    Config,
    /// 4: a provider or its cloud could not be reached (down, timing out, throttling).
    Unreachable,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        ExitCode::from(match outcome {
            Outcome::Done => 0,
            Outcome::Failed => 1,
            Outcome::Usage => 2,
            Outcome::Config => 3,
            Outcome::Unreachable => 4,
        })
    }
}

impl Outcome {
    /// The outcome of a command that failed with `error`.
    pub fn of(error: &Error) -> Outcome {
        match error.kind() {
            ErrorKind::Config | ErrorKind::Unauthenticated => Outcome::Config,
            ErrorKind::Unavailable
            | ErrorKind::Timeout
            | ErrorKind::Throttled
            | ErrorKind::Plugin => Outcome::Unreachable,
            _ => Outcome::Failed,
        }
    }
}

/// A command that could not do what it was asked: what failed, what to do, and why.
#[derive(Debug)]
pub struct Failure {
    /// The one line: what failed (and, where known, what to do).
    pub message: String,
    /// The causes, shown with `-v`.
    pub causes: Vec<String>,
    /// The exit code it ends with.
    pub outcome: Outcome,
}

impl Failure {
    /// A failure with its own words.
    pub fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            causes: Vec::new(),
            outcome,
        }
    }

    /// A failed Snoozebot call: its message, its source chain as causes.
    pub fn from_error(context: &str, error: &Error) -> Self {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        let hint = match error.kind() {
            ErrorKind::Unauthenticated => "; check the provider's credentials",
            ErrorKind::Config => "; check the config file (snoozebot config check)",
            ErrorKind::Unavailable | ErrorKind::Timeout => {
                "; is the cloud (or its endpoint) reachable?"
            }
            _ => "",
        };
        Failure {
            message: format!("{context}: {error}{hint}"),
            causes,
            outcome: Outcome::of(error),
        }
    }

    /// Prints it to stderr: the line, and the causes when `verbose`.
    pub fn print(&self, verbose: bool) {
        eprintln!("snoozebot: {}", self.message);
        if verbose {
            for cause in &self.causes {
                eprintln!("  caused by: {cause}");
            }
        } else if !self.causes.is_empty() {
            eprintln!("  (-v shows why)");
        }
    }
}

impl From<crate::config::ConfigError> for Failure {
    fn from(error: crate::config::ConfigError) -> Self {
        Failure::new(Outcome::Config, error.0)
    }
}
