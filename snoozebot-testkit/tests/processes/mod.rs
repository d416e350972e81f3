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

/// Set in the environment of a [`HostProcess`]: the plugin it loads.
const HOST_PLUGIN_ENV: &str = "SNOOZEBOT_TEST_HOST_PLUGIN";
/// Set in the environment of a [`HostProcess`]: `KEY=VALUE` lines for the plugin's environment.
const HOST_PLUGIN_VARS_ENV: &str = "SNOOZEBOT_TEST_HOST_PLUGIN_VARS";
/// Set in the environment of a [`HostProcess`]: launch the plugin from a blocking-pool thread
/// and report the plugin's health once that thread has ended.
const HOST_FROM_ENDING_THREAD_ENV: &str = "SNOOZEBOT_TEST_HOST_FROM_ENDING_THREAD";

/// A real host of our own in a process of its own, to be killed: this test binary run again to
/// execute only its ignored test `host_process`, which calls [`host_main`].
pub struct HostProcess {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    /// The plugin the host launched.
    pub plugin_pid: u32,
    /// The private directory the host made for the plugin (its socket is in it).
    pub private_dir: std::path::PathBuf,
}

impl HostProcess {
    /// Starts a host that launches `plugin` with `vars` in its environment, from a thread that
    /// ends soon after when `from_ending_thread`; waits until the plugin serves.
    pub fn start(
        plugin: &std::path::Path,
        vars: &[(&str, &str)],
        from_ending_thread: bool,
    ) -> Self {
        use std::io::BufRead;
        let vars: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "host_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOST_PLUGIN_ENV, plugin)
            .env(HOST_PLUGIN_VARS_ENV, vars.join("\n"))
            .stdout(std::process::Stdio::piped());
        if from_ending_thread {
            command.env(HOST_FROM_ENDING_THREAD_ENV, "1");
        }
        let mut child = command.spawn().unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| after(&line, "host: plugin "));
        let Some(ready) = ready else {
            let _ = child.kill();
            panic!("the host process ended before its plugin served");
        };
        let (pid, dir) = ready.split_once(' ').unwrap();
        HostProcess {
            child,
            lines,
            plugin_pid: pid.parse().unwrap(),
            private_dir: dir.into(),
        }
    }

    /// What follows `host: PREFIX` in the next line the host printed with it.
    pub fn line(&mut self, prefix: &str) -> Option<String> {
        let prefix = format!("host: {prefix}");
        self.lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| after(&line, &prefix))
    }

    /// `kill -9` of the host: it gets no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What follows `marker` in `line` (libtest may have printed the test's name before it).
fn after(line: &str, marker: &str) -> Option<String> {
    line.split_once(marker).map(|(_, rest)| rest.to_owned())
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.plugin_pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = std::fs::remove_dir_all(&self.private_dir);
    }
}

/// The body of the `host_process` test each binary using [`HostProcess`] declares: nothing
/// unless run by [`HostProcess::start`]. It launches the plugin on a multi-thread runtime,
/// prints `host: plugin PID DIR`, and waits to be killed.
pub fn host_main() {
    let Some(plugin) = std::env::var_os(HOST_PLUGIN_ENV) else {
        return;
    };
    let plugin: &'static std::path::Path =
        Box::leak(std::path::PathBuf::from(plugin).into_boxed_path());
    let mut config = snoozebot_plugin::PluginConfig::default();
    for line in std::env::var(HOST_PLUGIN_VARS_ENV)
        .unwrap_or_default()
        .lines()
    {
        let (key, value) = line.split_once('=').unwrap();
        config = config.with_env(key, value);
    }
    let from_ending_thread = std::env::var_os(HOST_FROM_ENDING_THREAD_ENV).is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(10))
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let launch = snoozebot_plugin::PluginClient::launch("hosted", plugin, config);
        let (client, launching_thread) = if from_ending_thread {
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                (runtime.block_on(launch), Some(nix::unistd::gettid()))
            })
            .await
            .unwrap()
        } else {
            (launch.await, None)
        };
        let client = client.unwrap();
        let (_, dir) = socket_and_private_dir(&client);
        println!("host: plugin {} {}", client.pid().unwrap(), dir.display());
        if let Some(thread) = launching_thread {
            // The blocking-pool thread that forked the plugin retires after 10 ms idle; once
            // it is gone, any signal its end sends has been sent.
            let task = format!("/proc/self/task/{thread}");
            let retired = eventually(Duration::from_secs(10), || {
                !std::path::Path::new(&task).exists()
            })
            .await;
            assert!(retired, "the launching thread did not retire");
            // A call the plugin takes a while over (its latency knob): a plugin told to stop
            // would be gone before answering.
            let id = snoozebot_core::InstanceId::new("mock-0000").unwrap();
            let answer = snoozebot_core::CloudProvider::get_instance(&client, &id).await;
            println!(
                "host: call after the launching thread ended: {}",
                answer.map_or_else(|error| error.to_string(), |_| "ok".to_owned())
            );
        }
        std::future::pending::<()>().await;
    });
}

/// The unix socket a plugin announced, and the private directory of its host it lies in.
pub fn socket_and_private_dir(
    client: &snoozebot_plugin::PluginClient,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let Some(snoozebot_plugin::PluginAddress::Unix(socket)) = client.address() else {
        panic!(
            "the plugin did not listen on a unix socket: {:?}",
            client.address()
        );
    };
    let dir = socket
        .ancestors()
        .find(|dir| {
            dir.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("snoozebot-host-"))
        })
        .unwrap_or_else(|| {
            panic!(
                "{} is not in a private directory of the host",
                socket.display()
            )
        })
        .to_owned();
    (socket, dir)
}
