//! What a process has cost so far, read from procfs — context switches and CPU time of all its
//! threads, write syscalls, resident memory — for benchmarks that measure a process from
//! outside (a plugin, an agent) or themselves, and the machine's load beside them, so a scheduling regression shows even where
//! wall-clock times move by 2x between runs. Linux only: elsewhere every counter reads 0.

/// A process's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCounters {
    /// Context switches, voluntary and not, of every thread.
    pub switches: u64,
    /// Write syscalls (`/proc/PID/io` `syscw`, the whole process; socket reads are `recvfrom`,
    /// which it does not count).
    pub writes: u64,
    /// Nanoseconds on a CPU, every thread (`/proc/PID/task/*/schedstat`).
    pub cpu_ns: u64,
    /// Resident memory now, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident memory, KiB (`VmHWM`).
    pub peak_rss_kib: u64,
}

fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

impl ProcessCounters {
    /// The counters of process `pid` now.
    pub fn of(pid: u32) -> Self {
        // A process's status counts its main thread only: add up its threads.
        let mut counted = ProcessCounters::default();
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            counted.switches += field(&status, "voluntary_ctxt_switches:")
                + field(&status, "nonvoluntary_ctxt_switches:");
            // schedstat: nanoseconds on a CPU, waiting for one, time slices.
            let schedstat =
                std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            counted.cpu_ns += schedstat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        counted.writes = field(&io, "syscw:");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        counted.rss_kib = field(&status, "VmRSS:");
        counted.peak_rss_kib = field(&status, "VmHWM:");
        counted
    }

    /// This process's counters now.
    pub fn of_self() -> Self {
        Self::of(std::process::id())
    }

    /// What happened between `self` (before) and `after`, divided by `per` (calls, samples):
    /// switches, writes and CPU microseconds each.
    pub fn per(&self, after: &ProcessCounters, per: usize) -> (f64, f64, f64) {
        let per = per.max(1) as f64;
        let delta = |before: u64, after: u64| after.saturating_sub(before) as f64 / per;
        (
            delta(self.switches, after.switches),
            delta(self.writes, after.writes),
            delta(self.cpu_ns, after.cpu_ns) / 1000.0,
        )
    }
}

/// The machine's load averages over 1, 5 and 15 minutes (`/proc/loadavg`), as printed.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_has_spent_cpu_switched_and_is_resident() {
        let before = ProcessCounters::of_self();
        let mut spin = 0u64;
        for n in 0..2_000_000u64 {
            spin = std::hint::black_box(spin.wrapping_add(n));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        let after = ProcessCounters::of_self();
        let (switches, _, cpu_us) = before.per(&after, 1);
        assert!(cpu_us > 0.0 && switches >= 1.0, "{before:?} {after:?}");
        assert!(after.rss_kib > 0 && after.peak_rss_kib >= after.rss_kib);
    }
}
