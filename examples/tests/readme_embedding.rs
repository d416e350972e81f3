//! The README's "Embedding it" works for a new user as written: a fresh crate outside the
//! workspace runs the section's `cargo add` lines (the Snoozebot crates from this checkout by
//! `--path`, standing in for crates.io; everything else as written), takes the section's Rust
//! block as its `main.rs` verbatim, builds it with warnings denied and runs it.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("..")
}

/// The `sh` block and the `rust` block of the README's "## Embedding it" section.
fn embedding_section() -> (Vec<String>, String) {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|section| section.starts_with("Embedding it"))
        .expect("README.md has no \"## Embedding it\" section");
    let block = |info: &str| {
        let start = section
            .find(&format!("```{info}\n"))
            .unwrap_or_else(|| panic!("no ```{info} block in \"Embedding it\""));
        let body = &section[start + info.len() + 4..];
        body[..body.find("```").unwrap()].to_owned()
    };
    let commands = block("sh")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    (commands, block("rust"))
}

/// The nested cargo, with a target directory of its own (the outer `cargo test` holds the
/// workspace's) and the workspace's debug-info settings so its build stays small.
fn cargo(dir: &Path, args: &[&str]) -> Output {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("readme-embedding");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_TERM_COLOR", "never")
        .env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only")
        // A warning in the README's code (an unused import) is a defect of the README.
        .env("RUSTFLAGS", "-Dwarnings")
        .output()
        .unwrap()
}

fn succeeded(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_readmes_embedding_example_builds_and_runs_in_a_new_crate() {
    let (commands, code) = embedding_section();
    assert!(
        !commands.is_empty(),
        "no cargo add lines in \"Embedding it\""
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"embedding\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n[workspace]\n\n[dependencies]\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/main.rs"), &code).unwrap();
    // The workspace's lock file pins the versions the workspace is tested with; the new
    // crate resolves from it offline.
    std::fs::copy(root().join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();

    for command in &commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        assert!(
            words.starts_with(&["cargo", "add"]),
            "README \"Embedding it\" shows a command this test cannot run: {command}"
        );
        let (ours, theirs): (Vec<&str>, Vec<&str>) = words[2..]
            .iter()
            .partition(|word| word.starts_with("snoozebot-"));
        if ours.is_empty() {
            let mut args = words[1..].to_vec();
            args.push("--offline");
            succeeded(command, &cargo(dir.path(), &args));
        } else {
            assert!(
                theirs.is_empty(),
                "mixing Snoozebot crates and others in one line: {command}"
            );
            for name in ours {
                let path = root().join(name);
                let path = path.to_str().unwrap();
                succeeded(
                    command,
                    &cargo(dir.path(), &["add", "--offline", "--path", path]),
                );
            }
        }
    }

    let run = cargo(dir.path(), &["run", "--offline", "--quiet"]);
    succeeded("cargo run of the README's example", &run);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout
            .lines()
            .any(|line| line.contains(" is stopped (was running)")),
        "the example stopped nothing:\n{stdout}"
    );
}
