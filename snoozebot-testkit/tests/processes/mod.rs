//! Watching processes the tests do not own (plugins, their hosts): whether one has exited, and
//! polling a condition about them within a limit.
#![allow(dead_code)]

use std::time::Duration;

use tokio::time::Instant;

/// Whether `pid` is gone from the process table or only a zombie (exited, not yet reaped).
pub fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Polls `condition` every 20 ms, at most `limit`: the processes watched send no signal of
/// their own to wait for.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}
