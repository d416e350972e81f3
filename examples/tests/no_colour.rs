//! The examples write colour escapes only to a terminal: `resilient`'s output into a pipe is
//! plain text.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn resilient_writes_no_colour_escapes_into_a_pipe() {
    // `cargo test` builds the examples beside the test binaries' directory.
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/resilient");
    assert!(
        example.exists(),
        "{} is missing; build it with: cargo build -p snoozebot-examples --example resilient",
        example.display()
    );
    let output = Command::new(&example).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("attempts"),
        "the spans were not printed: {stdout}"
    );
    assert!(
        !stdout.contains('\u{1b}'),
        "colour escapes in a pipe: {stdout:?}"
    );
}
