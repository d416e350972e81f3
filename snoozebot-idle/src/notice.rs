//! Telling the machine's users: a message written to every open terminal (as `wall` does),
//! without blocking on a terminal that does not read and without a terminal ever becoming
//! this process's controlling terminal.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use crate::ProcRoot;

/// The longest message written; longer ones are cut (at a character boundary).
pub const MAX_NOTICE: usize = 1024;

/// `O_NOCTTY | O_NONBLOCK` on Linux: never adopt the terminal, never wait for it.
const FLAGS: i32 = 0o400 | 0o4000;

/// Writes `message` to every terminal under `root`; how many took it. Control characters
/// other than newlines and tabs are dropped, so the message cannot drive the terminals.
pub fn warn_terminals(root: &ProcRoot, message: &str) -> usize {
    let mut clean: String = message
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    if clean.len() > MAX_NOTICE {
        let mut end = MAX_NOTICE;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    let text = format!("\r\n{}\r\n", clean.replace('\n', "\r\n"));
    root.terminals()
        .into_iter()
        .filter(|terminal| {
            std::fs::OpenOptions::new()
                .append(true)
                .custom_flags(FLAGS)
                .open(terminal)
                .and_then(|mut file| file.write_all(text.as_bytes()))
                .is_ok()
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_terminal_hears_a_clean_bounded_message() {
        let root = tempfile::tempdir().unwrap();
        let pts = root.path().join("dev/pts");
        std::fs::create_dir_all(&pts).unwrap();
        for name in ["0", "3", "ptmx"] {
            std::fs::write(pts.join(name), "").unwrap();
        }
        let told = warn_terminals(
            &ProcRoot::at(root.path()),
            "stopping at 20:05\n\u{1b}[2Jsnoozebot agent postpone 2h keeps it",
        );
        assert_eq!(told, 2);
        let heard = std::fs::read_to_string(pts.join("3")).unwrap();
        assert_eq!(
            heard,
            "\r\nstopping at 20:05\r\n[2Jsnoozebot agent postpone 2h keeps it\r\n"
        );
        assert_eq!(std::fs::read_to_string(pts.join("ptmx")).unwrap(), "");
        warn_terminals(&ProcRoot::at(root.path()), &"é".repeat(4096));
        let heard = std::fs::read_to_string(pts.join("0")).unwrap();
        assert!(heard.len() < 2 * MAX_NOTICE, "{}", heard.len());
        // No terminals: nobody told, no error.
        assert_eq!(warn_terminals(&ProcRoot::at("/nonexistent"), "hi"), 0);
    }
}
