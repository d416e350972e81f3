//! docs/ stays true to the code:
//! - every `rust,ignore` block (and every `go` block marked so) is an excerpt, marked `<!-- from PATH -->`, found line by line
//!   (indentation aside) in that file; other Rust blocks are compiled as doc tests
//!   (`examples/src/lib.rs` includes each page);
//! - `sh` blocks are run verbatim — only docs/rest-api.md has them, run by
//!   `snoozebot-cli/tests/rest_docs.rs`; commands shown in `text` blocks (`cargo run`, `cargo bench`,
//!   `cargo build`) name packages, features, examples, benches and binaries that exist.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("..")
}

fn pages() -> Vec<(String, String)> {
    let mut pages: Vec<_> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    pages.push((
        "../README.md".into(),
        std::fs::read_to_string(root().join("README.md")).unwrap(),
    ));
    pages.sort();
    pages
}

/// Fenced blocks: (info string, body, the nearest non-blank line before the fence).
fn blocks(markdown: &str) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let mut open: Option<(String, String, String)> = None;
    let mut before = String::new();
    for line in markdown.lines() {
        let trimmed = line.trim();
        match &mut open {
            None if trimmed.starts_with("```") => {
                open = Some((trimmed[3..].to_owned(), String::new(), before.clone()));
            }
            None => {
                if !trimmed.is_empty() {
                    before = trimmed.to_owned();
                }
            }
            Some(_) if trimmed == "```" => found.extend(open.take()),
            Some((_, body, _)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    found
}

fn trimmed_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn rust_excerpts_are_the_code_as_it_is() {
    let mut excerpts = 0;
    for (page, markdown) in pages() {
        for (info, body, before) in blocks(&markdown) {
            // A Go block marked as an excerpt is checked the same way.
            let go_excerpt = info == "go" && before.starts_with("<!-- from ");
            if info != "rust,ignore" && !go_excerpt {
                continue;
            }
            let source = before
                .strip_prefix("<!-- from ")
                .and_then(|rest| rest.strip_suffix(" -->"))
                .unwrap_or_else(|| {
                    panic!("{page}: a rust,ignore block without `<!-- from PATH -->` before it:\n{body}")
                });
            let code = std::fs::read_to_string(root().join(source))
                .unwrap_or_else(|error| panic!("{page}: {source}: {error}"));
            let (excerpt, code) = (trimmed_lines(&body), trimmed_lines(&code));
            assert!(
                code.windows(excerpt.len())
                    .any(|window| window == excerpt.as_slice()),
                "{page}: this excerpt is no longer in {source}:\n{body}"
            );
            excerpts += 1;
        }
    }
    assert!(excerpts >= 8, "only {excerpts} excerpts checked");
}

#[test]
fn shell_blocks_are_only_where_a_test_runs_them() {
    for (page, markdown) in pages() {
        for (info, body, _) in blocks(&markdown) {
            if matches!(info.as_str(), "sh" | "bash" | "shell" | "console") {
                assert!(
                    page == "rest-api.md" || page == "../README.md",
                    "{page}: a `{info}` block outside docs/rest-api.md, whose blocks \
                     snoozebot-cli/tests/rest_docs.rs runs; show it as `text`, or run it:\n{body}"
                );
            }
        }
    }
}

/// A `[[kind]]` target of a manifest: its kind, name and required features.
struct Target {
    kind: String,
    name: String,
    required_features: Vec<String>,
}

/// The `[features]` names and the `[[kind]]` targets of a package's Cargo.toml.
fn manifest(package: &str) -> (Vec<String>, Vec<Target>) {
    let dir = match package {
        "snoozebot-examples" => "examples".to_owned(),
        other => other.to_owned(),
    };
    let text = std::fs::read_to_string(root().join(dir).join("Cargo.toml"))
        .unwrap_or_else(|_| panic!("no package {package}"));
    let mut features = Vec::new();
    let mut targets = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_owned();
        } else if section == "[features]" {
            if let Some((name, _)) = line.split_once('=')
                && !name.trim().starts_with('#')
            {
                features.push(name.trim().to_owned());
            }
        } else if let Some(name) = line.strip_prefix("name = \"") {
            let kind = section.trim_matches(|c| c == '[' || c == ']').to_owned();
            targets.push(Target {
                kind,
                name: name.trim_end_matches('"').to_owned(),
                required_features: Vec::new(),
            });
        } else if let Some(list) = line.strip_prefix("required-features = [")
            && let Some(target) = targets.last_mut()
        {
            target.required_features = list
                .trim_end_matches(']')
                .split(',')
                .map(|feature| feature.trim().trim_matches('"').to_owned())
                .filter(|feature| !feature.is_empty())
                .collect();
        }
    }
    (features, targets)
}

/// The `//!` lines of the examples, as a page each: their usage lines are commands too.
fn example_docs() -> Vec<(String, String)> {
    let mut pages: Vec<_> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("//!"))
                .map(|line| line.split(" #").next().unwrap_or(line))
                .collect();
            // One command per line, as `text` blocks are read.
            let page = format!("```text\n{}\n```\n", docs.join("\n"));
            (
                format!("examples/{}", path.file_name().unwrap().to_string_lossy()),
                page,
            )
        })
        .collect();
    pages.sort();
    pages
}

/// Every `cargo run`, `cargo bench` and `cargo build` shown in docs/, the README and the
/// examples' own docs works from the workspace root as written: the package, features and
/// targets exist, and a target's required features are all given (with `-p`, since the root
/// is a virtual workspace, where `--features` needs a package).
#[test]
fn commands_shown_name_what_exists() {
    let mut checked = 0;
    for (page, markdown) in pages().into_iter().chain(example_docs()) {
        let commands: Vec<String> = blocks(&markdown)
            .into_iter()
            .filter(|(info, _, _)| info == "text" || info == "sh")
            .flat_map(|(_, body, _)| body.lines().map(str::to_owned).collect::<Vec<_>>())
            .chain(markdown.split('`').map(str::to_owned))
            .map(|line| line.trim().to_owned())
            .filter(|line| {
                line.starts_with("cargo run")
                    || line.starts_with("cargo bench")
                    || line.starts_with("cargo build")
            })
            .collect();
        for command in commands {
            let words: Vec<&str> = command.split_whitespace().collect();
            let value = |flag: &str| {
                words
                    .iter()
                    .position(|word| *word == flag)
                    .and_then(|at| words.get(at + 1))
                    .map(|word| word.trim_end_matches(['`', ',', ')']))
            };
            let package = value("-p").unwrap_or("snoozebot-examples");
            let (features, targets) = manifest(package);
            if let Some(wanted) = value("--features") {
                for feature in wanted.split(',') {
                    assert!(
                        features.iter().any(|f| f == feature),
                        "{page}: `{command}`: {package} has no feature {feature}"
                    );
                }
            }
            let given: Vec<&str> = value("--features")
                .map(|features| features.split(',').collect())
                .unwrap_or_default();
            assert!(
                given.is_empty() || value("-p").is_some(),
                "{page}: `{command}`: --features from the workspace root needs -p PACKAGE"
            );
            for (flag, kind) in [
                ("--example", "example"),
                ("--bench", "bench"),
                ("--bin", "bin"),
            ] {
                if let Some(name) = value(flag) {
                    let target = targets
                        .iter()
                        .find(|target| target.kind == kind && target.name == name)
                        .unwrap_or_else(|| {
                            panic!("{page}: `{command}`: {package} has no {kind} {name}")
                        });
                    for feature in &target.required_features {
                        assert!(
                            given.contains(&feature.as_str()),
                            "{page}: `{command}`: {kind} {name} requires --features {feature}"
                        );
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} commands checked");
}
