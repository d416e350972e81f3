//! The command-line examples answer `--help` with their usage (exit 0), and a mistake or a
//! failure with one plain sentence (exit 1), never a debug dump of an error struct.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let path = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing; build it with: cargo build -p snoozebot-examples --all-features --examples",
        path.display()
    );
    path
}

#[test]
fn help_is_usage_and_mistakes_are_sentences() {
    for name in ["aws_stop_by_tag", "rest_server"] {
        let help = Command::new(example(name)).arg("--help").output().unwrap();
        assert!(help.status.success(), "{name} --help: {help:?}");
        let usage = String::from_utf8_lossy(&help.stdout);
        assert!(usage.starts_with("usage: "), "{name}: {usage}");

        let wrong = Command::new(example(name)).arg("--bogus").output().unwrap();
        assert_eq!(wrong.status.code(), Some(1), "{name} --bogus: {wrong:?}");
        let said = String::from_utf8_lossy(&wrong.stderr);
        assert!(
            said.starts_with(&format!("{name}: unknown option --bogus")),
            "{said}"
        );
        assert!(
            !said.contains("Error {") && !said.contains("kind:"),
            "{said}"
        );
    }
    // A failure from the provider, not from the arguments: no region anywhere.
    let failed = Command::new(example("aws_stop_by_tag"))
        .args([
            "--tag",
            "snoozebot=idle",
            "--endpoint-url",
            "http://127.0.0.1:9",
        ])
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(said.contains("aws_stop_by_tag: "), "{said}");
    assert!(
        !said.contains("Error {") && !said.contains("source:"),
        "{said}"
    );
}
