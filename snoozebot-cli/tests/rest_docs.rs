//! Runs every `sh` block of docs/rest-api.md, as written, against `snoozebot serve` with the
//! config the guide shows: `$SNOOZEBOT` is its address, `$KEY` an admin key, `$AGENT_KEY` the
//! agent key of `mock/mock-0001`. A block must exit 0
//! (its `curl`s use `--fail-with-body`); a block headed `# expect: NNN` must print an HTTP status
//! line with NNN.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use support::{Server, add_key, config_dir};

fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shell_example_in_the_rest_api_guide_runs() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!(
            "curl is missing; install it with: sudo apt-get install -y curl (scripts/test does)"
        );
    }
    let dir = config_dir(
        "[server]\nlisten = \"127.0.0.1:0\"\nkeys_file = \"keys\"\n\n\
         [providers.mock]\nkind = \"mock\"\ninstances = 20\n\n\
         [scheduler]\ntag = \"snoozebot\"\n\n[schedules.idle]\nperiods = [\"Mon-Fri 08:00-19:00\"]\n\n\
         [agents]\nsecret = { file = \"agent-secret\" }\n",
    );
    std::fs::write(
        dir.path().join("agent-secret"),
        "the docs test's agent secret, 32 bytes or more\n",
    )
    .unwrap();
    let admin = add_key(dir.path(), "admin");
    let agent_key = support::run(dir.path(), &["agent", "key", "mock", "mock-0001"]);
    assert!(
        agent_key.status.success(),
        "{}",
        support::text(&agent_key.stderr)
    );
    let agent_key = support::text(&agent_key.stdout).trim().to_owned();
    let server = Server::start(dir.path());
    let base = server.base.clone();

    let guide = std::fs::read_to_string(
        std::path::Path::new(&support::manifest_dir()).join("../docs/rest-api.md"),
    )
    .unwrap();
    let blocks = shell_blocks(&guide);
    assert!(blocks.len() >= 12, "only {} sh blocks found", blocks.len());
    for block in blocks {
        let key = admin.clone();
        let agent_key = agent_key.clone();
        let base = base.clone();
        let script = block.clone();
        let output = tokio::task::spawn_blocking(move || {
            Command::new("sh")
                .arg("-ec")
                .arg(&script)
                .env("SNOOZEBOT", base)
                .env("KEY", key)
                .env("AGENT_KEY", agent_key)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "this block failed:\n{block}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if let Some(expected) = block
            .lines()
            .find_map(|line| line.strip_prefix("# expect: "))
        {
            let status_line = stdout.lines().next().unwrap_or_default();
            assert!(
                status_line.starts_with("HTTP/") && status_line.contains(&format!(" {expected}")),
                "expected {expected} from:\n{block}\ngot: {stdout}"
            );
        }
    }
    drop(server);
}
