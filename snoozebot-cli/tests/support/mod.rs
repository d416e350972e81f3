//! What the behaviour tests of the `snoozebot` binary share: running it in a directory with a
//! config file, and `snoozebot serve` as a process of its own.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// This package's directory: cargo's `CARGO_MANIFEST_DIR` when it runs the test, as compiled
/// otherwise. A target directory shared by checkouts in several places reuses test binaries
/// built in another, so the compiled path may not be this checkout's.
pub fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}

pub fn snoozebot() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_snoozebot"));
    // Nothing of the developer's own setup.
    command
        .env_remove("SNOOZEBOT_CONFIG")
        .env_remove("SNOOZEBOT_API_KEYS")
        .env_remove("RUST_LOG");
    command
}

/// A directory with `snoozebot.toml` holding `config`.
pub fn config_dir(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("snoozebot.toml"), config).unwrap();
    dir
}

/// Runs `snoozebot ARGS` in `dir` (which has its config file).
pub fn run(dir: &Path, args: &[&str]) -> Output {
    snoozebot().current_dir(dir).args(args).output().unwrap()
}

/// Asserts that the command ended with exit code `code` and said `words` on stderr.
pub fn expect_failure(out: &Output, code: i32, words: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(words), "{words:?} not in: {stderr}");
}

/// Output that is one JSON value a line, parsed.
pub fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    text(bytes)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `snoozebot serve` in a process of its own; killed when dropped.
pub struct Server {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// `http://ADDRESS` (or `https://`).
    pub base: String,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        let mut child = snoozebot()
            .current_dir(dir)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines,
            base: String::new(),
        };
        let listening = server.wait_for("listening on ");
        server.base = listening.split("listening on ").nth(1).unwrap().to_owned();
        server
    }

    /// The next line of the server's stderr that contains `words` (at most 30 s away).
    pub fn wait_for(&mut self, words: &str) -> String {
        self.wait_for_all(&[words])
    }

    /// The next line of the server's stderr that contains each of `words`.
    pub fn wait_for_all(&mut self, words: &[&str]) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if words.iter().all(|word| line.contains(word)) => return line,
                Ok(_) => {}
                Err(_) => panic!("the server never said {words:?}"),
            }
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[providers.aws]` table of a provider on the EC2 emulator at `endpoint` (moto).
pub fn aws_on(endpoint: &str) -> String {
    format!(
        "[providers.aws]\nkind = \"aws\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\n\
         access_key_id = \"testing\"\nsecret_access_key = \"testing\"\n"
    )
}

/// Writes a keys file with a key of `role`; returns the key.
pub fn add_key(dir: &Path, role: &str) -> String {
    let out = snoozebot()
        .args(["keys", "generate", "--role", role])
        .output()
        .unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("keys"))
        .unwrap();
    std::io::Write::write_all(&mut file, &out.stdout).unwrap();
    text(&out.stderr)
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .to_owned()
}

/// The directory cargo put the workspace's binaries in (the plugins among them).
pub fn binaries() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_snoozebot"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A webhook receiver on 127.0.0.1: its URL, and the bodies of the first `posts` posts (each
/// answered `200` and its connection closed).
pub async fn webhook_receiver(posts: usize) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = tokio::spawn(async move {
        let mut bodies = Vec::new();
        while bodies.len() < posts {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Read the head, then the body its length says.
            loop {
                let read = stream.read(&mut buffer).await.unwrap();
                assert!(read > 0, "the connection closed early");
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|n| n.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await
                            .unwrap();
                        bodies.push(body.to_owned());
                        break;
                    }
                }
            }
        }
        bodies
    });
    (url, received)
}
