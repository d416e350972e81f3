//! The crate graph keeps its shape: core depends on no transport and on no other Snoozebot
//! crate, and a plugin executable built with only the `serve` side compiles neither the host
//! nor the REST server. Read from `cargo tree` (offline, from the lock file).
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn cargo_tree(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(
            std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
        )
        .args(["tree", "--offline", "--prefix", "none"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo tree {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn crates(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

#[test]
fn core_has_no_transport_and_imports_no_other_snoozebot_crate() {
    let tree = cargo_tree(&[
        "-p",
        "snoozebot-core",
        "--all-features",
        "-e",
        "normal,build",
    ]);
    for forbidden in [
        "tonic",
        "prost",
        "hyper",
        "axum",
        "rustls",
        "snoozebot-plugin",
        "snoozebot-rest",
    ] {
        assert!(
            !crates(&tree).contains(&forbidden),
            "core depends on {forbidden}:\n{tree}"
        );
    }
    let snoozebot: Vec<_> = crates(&tree)
        .into_iter()
        .filter(|name| name.starts_with("snoozebot"))
        .collect();
    assert!(
        snoozebot.iter().all(|name| *name == "snoozebot-core"),
        "{snoozebot:?}"
    );
}

#[test]
fn a_serve_only_plugin_compiles_no_host_and_no_rest_server() {
    // The mock plugin executable's package, as a downstream plugin would build it.
    let features = cargo_tree(&[
        "-p",
        "snoozebot-testkit",
        "--features",
        "plugin",
        "-e",
        "normal,build,features",
        "-i",
        "snoozebot-plugin",
    ]);
    assert!(
        features.contains("snoozebot-plugin feature \"serve\""),
        "{features}"
    );
    assert!(
        !features.contains("feature \"host\""),
        "the host is compiled:\n{features}"
    );
    let tree = cargo_tree(&[
        "-p",
        "snoozebot-testkit",
        "--features",
        "plugin",
        "-e",
        "normal,build",
    ]);
    for host_only in [
        "minisign-verify",
        "sha2",
        "snoozebot-rest",
        "utoipa",
        "tower-http",
    ] {
        assert!(
            !crates(&tree).contains(&host_only),
            "a serve-only plugin compiles {host_only}:\n{tree}"
        );
    }
}
