//! Reading the counters idleness is measured by from procfs (`/proc/stat`, `/proc/meminfo`,
//! `/proc/net/dev`, `/proc/diskstats`) and terminal activity from `/dev/pts`, under a root
//! that tests point at recorded snapshots. Every file read is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::IdleError;

/// The most read of one procfs file: these are a few KiB on any machine.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The most processes looked at (`pid_max` is 4 million; a machine with more is not idle).
const MAX_PROCESSES: usize = 100_000;

/// The most terminals looked at.
const MAX_TERMINALS: usize = 4096;

/// One reading of the machine's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// CPU time in clock ticks: busy (user, nice, system, irq, softirq, steal) and all.
    pub cpu_busy: u64,
    /// All CPU time, idle and iowait included.
    pub cpu_total: u64,
    /// Memory in use (`MemTotal − MemAvailable`), bytes.
    pub memory_used: u64,
    /// `MemTotal`, bytes.
    pub memory_total: u64,
    /// Byte counters of every interface but loopback (`eth0 rx`, `eth0 tx`, …), each kept
    /// apart so that one that wraps or resets costs only its own growth.
    pub network: BTreeMap<String, u64>,
    /// Byte counters of whole disks (`vda read`, `vda write`; not partitions, loop or ram
    /// devices).
    pub disk: BTreeMap<String, u64>,
    /// The most recent input on any terminal (`/dev/pts/*` access times).
    pub last_terminal_input: Option<SystemTime>,
}

/// Where the counters are read from: `/` on a live machine.
#[derive(Debug, Clone)]
pub struct ProcRoot {
    root: PathBuf,
}

fn read_bounded(path: &Path) -> Result<String, IdleError> {
    let file = std::fs::File::open(path).map_err(|error| IdleError::io(path, error))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|error| IdleError::io(path, error))?;
    Ok(text)
}

fn malformed(path: &Path, what: &str) -> IdleError {
    IdleError::Malformed(format!("{}: {what}", path.display()))
}

impl ProcRoot {
    /// The live machine's `/proc` and `/dev`.
    pub fn live() -> Self {
        ProcRoot {
            root: PathBuf::from("/"),
        }
    }

    /// `root/proc/…` and `root/dev/pts` instead (recorded snapshots).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        ProcRoot { root: root.into() }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Reads every counter. A missing `/dev/pts` is no terminal, not an error.
    pub fn snapshot(&self) -> Result<Snapshot, IdleError> {
        let (cpu_busy, cpu_total) = self.cpu()?;
        let (memory_used, memory_total) = self.memory()?;
        Ok(Snapshot {
            cpu_busy,
            cpu_total,
            memory_used,
            memory_total,
            network: self.network()?,
            disk: self.disk()?,
            last_terminal_input: self.terminal_input(),
        })
    }

    /// The aggregate `cpu` line of `/proc/stat`.
    fn cpu(&self) -> Result<(u64, u64), IdleError> {
        let path = self.path("proc/stat");
        let text = read_bounded(&path)?;
        let line = text
            .lines()
            .find(|line| line.starts_with("cpu "))
            .ok_or_else(|| malformed(&path, "no aggregate cpu line"))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|field| field.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| malformed(&path, "a cpu field is not a number"))?;
        if fields.len() < 4 {
            return Err(malformed(&path, "fewer than four cpu fields"));
        }
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        let idle = field(3) + field(4);
        let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
        Ok((busy, busy + idle))
    }

    fn memory(&self) -> Result<(u64, u64), IdleError> {
        let path = self.path("proc/meminfo");
        let text = read_bounded(&path)?;
        let kib = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        };
        let total = kib("MemTotal:").ok_or_else(|| malformed(&path, "no MemTotal"))?;
        let available = kib("MemAvailable:").ok_or_else(|| malformed(&path, "no MemAvailable"))?;
        Ok((total.saturating_sub(available) * 1024, total * 1024))
    }

    /// `/proc/net/dev`: received bytes (field 1) and sent bytes (field 9) of each interface.
    fn network(&self) -> Result<BTreeMap<String, u64>, IdleError> {
        let path = self.path("proc/net/dev");
        let text = read_bounded(&path)?;
        let mut counters = BTreeMap::new();
        for line in text.lines().skip(2) {
            let Some((name, values)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            if name == "lo" {
                continue;
            }
            let fields: Vec<u64> = values
                .split_whitespace()
                .map(|field| field.parse::<u64>())
                .collect::<Result<_, _>>()
                .map_err(|_| malformed(&path, "a counter is not a number"))?;
            if fields.len() < 9 {
                return Err(malformed(&path, "fewer than nine counters"));
            }
            counters.insert(format!("{name} rx"), fields[0]);
            counters.insert(format!("{name} tx"), fields[8]);
        }
        Ok(counters)
    }

    /// `/proc/diskstats`: sectors read (field 6) and written (field 10) of whole disks, in
    /// 512-byte sectors.
    fn disk(&self) -> Result<BTreeMap<String, u64>, IdleError> {
        let path = self.path("proc/diskstats");
        let text = read_bounded(&path)?;
        let mut counters = BTreeMap::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                continue;
            }
            let name = fields[2];
            if !is_whole_disk(name) {
                continue;
            }
            let sectors = |i: usize| -> Result<u64, IdleError> {
                fields[i]
                    .parse()
                    .map_err(|_| malformed(&path, "a sector count is not a number"))
            };
            counters.insert(format!("{name} read"), sectors(5)?.saturating_mul(512));
            counters.insert(format!("{name} write"), sectors(9)?.saturating_mul(512));
        }
        Ok(counters)
    }

    /// The newest access time of `/dev/pts/N`: the kernel sets a terminal's access time when
    /// input is read from it and its modification time when output is written to it, so
    /// access is typing (as `w` counts idle) and output — a log tailing, this agent's own
    /// warning — is not.
    fn terminal_input(&self) -> Option<SystemTime> {
        self.terminals()
            .iter()
            .filter_map(|path| std::fs::metadata(path).ok()?.accessed().ok())
            .max()
    }

    /// The terminals (`/dev/pts/N`) open now; none when there is no `/dev/pts`.
    pub fn terminals(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.path("dev/pts")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|entry| {
                entry.file_name().to_str().is_some_and(|name| {
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
                })
            })
            .map(|entry| entry.path())
            .take(MAX_TERMINALS)
            .collect()
    }

    /// The names of the processes running now (`/proc/PID/comm`, as `ps -o comm` shows them:
    /// at most 15 bytes). Processes that end while being read are skipped.
    pub fn process_names(&self) -> Result<BTreeSet<String>, IdleError> {
        let dir = self.path("proc");
        let entries = std::fs::read_dir(&dir).map_err(|error| IdleError::io(&dir, error))?;
        let mut names = BTreeSet::new();
        for entry in entries.flatten().take(MAX_PROCESSES) {
            let is_pid = entry
                .file_name()
                .to_str()
                .is_some_and(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()));
            if !is_pid {
                continue;
            }
            let mut comm = Vec::with_capacity(16);
            let read = std::fs::File::open(entry.path().join("comm"))
                .and_then(|file| file.take(64).read_to_end(&mut comm));
            if read.is_ok() {
                let name = String::from_utf8_lossy(&comm).trim_end().to_owned();
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        }
        Ok(names)
    }
}

/// Whether a `/proc/diskstats` name is a whole disk (`sda`, `vda`, `nvme0n1`, `xvda`), not a
/// partition, a loop, ram, zram or device-mapper device.
fn is_whole_disk(name: &str) -> bool {
    if ["loop", "ram", "zram", "dm-", "sr", "fd", "md"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
    {
        return false;
    }
    if let Some(rest) = name
        .strip_prefix("nvme")
        .or_else(|| name.strip_prefix("mmcblk"))
    {
        return !rest.contains('p');
    }
    !name.ends_with(|c: char| c.is_ascii_digit())
}

/// Rates between two snapshots `elapsed` apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// CPU busy, 0–100 % of all CPUs.
    pub cpu_percent: f64,
    /// Memory in use, 0–100 %.
    pub memory_percent: f64,
    /// Network bytes a second.
    pub network_bytes_per_second: f64,
    /// Disk bytes a second.
    pub disk_bytes_per_second: f64,
    /// How long since the last terminal input, if a terminal exists.
    pub since_terminal_input: Option<Duration>,
}

/// A counter's growth; a counter that went back (a wrap of a 32-bit counter, a reset, an
/// interface that went away) counts as no growth rather than as a huge one.
fn growth(before: u64, after: u64) -> u64 {
    after.saturating_sub(before)
}

/// The growth of the counters both readings have, each on its own.
fn total_growth(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> u64 {
    after
        .iter()
        .filter_map(|(name, value)| Some(growth(*before.get(name)?, *value)))
        .fold(0u64, u64::saturating_add)
}

impl Rates {
    /// The rates from `before` to `after`, `elapsed` apart, at `now` (for the terminal).
    pub fn between(
        before: &Snapshot,
        after: &Snapshot,
        elapsed: Duration,
        now: SystemTime,
    ) -> Rates {
        let seconds = elapsed.as_secs_f64().max(1e-3);
        let total = growth(before.cpu_total, after.cpu_total);
        let cpu_percent = if total == 0 {
            0.0
        } else {
            growth(before.cpu_busy, after.cpu_busy) as f64 / total as f64 * 100.0
        };
        let memory_percent = if after.memory_total == 0 {
            0.0
        } else {
            after.memory_used as f64 / after.memory_total as f64 * 100.0
        };
        Rates {
            cpu_percent: cpu_percent.min(100.0),
            memory_percent,
            network_bytes_per_second: total_growth(&before.network, &after.network) as f64
                / seconds,
            disk_bytes_per_second: total_growth(&before.disk, &after.disk) as f64 / seconds,
            since_terminal_input: after
                .last_terminal_input
                .map(|last| now.duration_since(last).unwrap_or(Duration::ZERO)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_disks_are_told_from_partitions_and_virtual_devices() {
        for disk in ["sda", "vda", "xvdb", "nvme0n1", "mmcblk0"] {
            assert!(is_whole_disk(disk), "{disk}");
        }
        for other in [
            "sda1",
            "vda15",
            "nvme0n1p2",
            "mmcblk0p1",
            "loop0",
            "ram1",
            "zram0",
            "dm-0",
            "sr0",
            "md127",
        ] {
            assert!(!is_whole_disk(other), "{other}");
        }
    }

    #[test]
    fn a_counter_that_goes_back_is_no_growth() {
        assert_eq!(growth(10, 25), 15);
        assert_eq!(growth(u64::from(u32::MAX) - 5, 10), 0);
    }
}
