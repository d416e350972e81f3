//! Idle detection for Snoozebot: samplers for CPU busy time, memory, network and disk
//! throughput and terminal input over procfs ([`ProcRoot`], from a configurable root so tests
//! run on recorded snapshots), GPU utilisation through `nvidia-smi` where there is one
//! ([`GpuProbe`]), processes that keep a machine awake, custom probes (a command or a
//! function), [`warn_terminals`] to tell the machine's users, and a [`NapTracker`]
//! that calls a machine idle once every signal has stayed under its threshold for a nap time —
//! a busy spell shorter than a grace does not reset the count. [`Monitor`] samples on an
//! interval and reports each change. [`identify`] asks the cloud's instance metadata service
//! (EC2 IMDSv2, GCE, Azure IMDS) which instance this machine is.
//!
//! Linux only: the samplers read procfs; elsewhere they fail with [`IdleError::Io`].
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use snoozebot_idle::{Rates, Snapshot, Thresholds};
//!
//! let before = Snapshot { cpu_busy: 1_000, cpu_total: 10_000, ..Snapshot::default() };
//! let after = Snapshot { cpu_busy: 1_020, cpu_total: 11_000, ..Snapshot::default() };
//! let rates = Rates::between(&before, &after, Duration::from_secs(10), SystemTime::now());
//! assert!((rates.cpu_percent - 2.0).abs() < 1e-9);
//! assert!(Thresholds::default().busy(&rates).is_empty(), "2 % CPU is idle");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod gpu;
mod identity;
mod monitor;
mod notice;
mod procfs;

use std::path::{Path, PathBuf};

pub use gpu::{GpuProbe, GpuReading};
pub use identity::{Identity, IdentityError, MetadataEndpoints, identify};
pub use monitor::{Event, Monitor, NapTracker, Probe, Signal, Thresholds};
pub use notice::{MAX_NOTICE, warn_terminals};
pub use procfs::{ProcRoot, Rates, Snapshot};

/// What reading the machine can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdleError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file did not read as the kernel writes it.
    #[error("{0}")]
    Malformed(String),
}

impl IdleError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        IdleError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
