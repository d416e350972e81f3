//! GPU utilisation, where there is an NVIDIA GPU: `nvidia-smi`'s reading of each GPU, the
//! busiest counting. No `nvidia-smi` (no GPU, or no driver) is no signal, not an error.

use std::path::PathBuf;
use std::time::Duration;

/// The most of `nvidia-smi`'s answer read: a line per GPU.
const MAX_OUTPUT: usize = 64 * 1024;

/// Asks `nvidia-smi` how busy the GPUs are.
#[derive(Debug, Clone)]
pub struct GpuProbe {
    command: PathBuf,
    timeout: Duration,
}

impl Default for GpuProbe {
    fn default() -> Self {
        GpuProbe {
            command: PathBuf::from("nvidia-smi"),
            timeout: Duration::from_secs(5),
        }
    }
}

/// What a reading found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GpuReading {
    /// No GPU to read: `nvidia-smi` is not installed, or lists none.
    Absent,
    /// The busiest GPU's utilisation, %.
    Busiest(f64),
    /// `nvidia-smi` is there but failed, hung or answered garbage: unsure (counted busy).
    Unreadable,
}

impl GpuProbe {
    /// `nvidia-smi` from the `PATH`, if it is there: looked up once, so that a machine without
    /// a GPU does not try to start it on every sample.
    pub fn detect() -> Option<Self> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("nvidia-smi"))
            .find(|candidate| is_executable(candidate))
            .map(|command| GpuProbe::default().with_command(command))
    }

    /// Runs `command` instead of `nvidia-smi` from the `PATH`.
    pub fn with_command(mut self, command: impl Into<PathBuf>) -> Self {
        self.command = command.into();
        self
    }

    /// Gives up on a reading after `timeout` (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads the GPUs once.
    pub async fn read(&self) -> GpuReading {
        let child = tokio::process::Command::new(&self.command)
            .args([
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return GpuReading::Absent;
            }
            Err(_) => return GpuReading::Unreadable,
        };
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) if output.status.success() => output,
            _ => return GpuReading::Unreadable,
        };
        parse(&output.stdout[..output.stdout.len().min(MAX_OUTPUT)])
    }
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// `nvidia-smi`'s CSV: a utilisation per line (`[N/A]` for a GPU that does not say).
fn parse(output: &[u8]) -> GpuReading {
    let Ok(text) = std::str::from_utf8(output) else {
        return GpuReading::Unreadable;
    };
    let mut busiest: Option<f64> = None;
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        if line.contains("N/A") {
            continue;
        }
        match line.parse::<f64>() {
            Ok(percent) if (0.0..=100.0).contains(&percent) => {
                busiest = Some(busiest.map_or(percent, |b| b.max(percent)));
            }
            _ => return GpuReading::Unreadable,
        }
    }
    busiest.map_or(GpuReading::Absent, GpuReading::Busiest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_gpu_counts_and_garbage_is_unsure() {
        assert_eq!(parse(b"3\n87\n 12 \n"), GpuReading::Busiest(87.0));
        assert_eq!(parse(b""), GpuReading::Absent);
        assert_eq!(parse(b"[N/A]\n"), GpuReading::Absent);
        assert_eq!(parse(b"[N/A]\n40\n"), GpuReading::Busiest(40.0));
        assert_eq!(parse(b"No devices were found"), GpuReading::Unreadable);
        assert_eq!(parse(b"250\n"), GpuReading::Unreadable);
        assert_eq!(parse(b"\xff\xfe"), GpuReading::Unreadable);
    }

    #[test]
    fn detection_finds_nothing_where_there_is_no_nvidia_smi() {
        // This machine has no GPU; if one day it does, detection finds its nvidia-smi.
        let found = GpuProbe::detect();
        let expected = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|dir| is_executable(&dir.join("nvidia-smi")));
        assert_eq!(found.is_some(), expected);
    }

    #[tokio::test]
    async fn no_nvidia_smi_is_no_gpu_and_a_failing_one_is_unsure() {
        let absent = GpuProbe::default().with_command("/nonexistent/nvidia-smi");
        assert_eq!(absent.read().await, GpuReading::Absent);
        let failing = GpuProbe::default().with_command("false");
        assert_eq!(failing.read().await, GpuReading::Unreadable);
    }
}
