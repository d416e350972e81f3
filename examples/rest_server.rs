//! The REST API on 127.0.0.1, over the in-memory mock fleet and any plugins in a directory.
//!
//! ```text
//! cargo run -p snoozebot-examples --features http --example rest_server
//! cargo run -p snoozebot-examples --features http --example rest_server -- --listen 127.0.0.1:8080 --plugin-dir target/debug
//! ```
//!
//! It prints a generated admin key (keep it: only its hash is kept) and a first `curl` to try.
//! More keys: `SNOOZEBOT_API_KEYS_FILE` (lines `ROLE SHA256-HEX [LABEL]`) or
//! `SNOOZEBOT_API_KEYS` (`role:secret,...`). Ctrl-C stops it gracefully. See docs/rest-api.md.

use std::path::PathBuf;
use std::process::ExitCode;

use snoozebot_rest::ApiKeys;

const USAGE: &str = "\
usage: rest_server [--listen ADDRESS:PORT] [--plugin-dir DIR]

Serves the Snoozebot REST API over an in-memory mock fleet (and the plugins in DIR).
  --listen ADDRESS:PORT   where to listen (default 127.0.0.1:8080)
  --plugin-dir DIR        offer the snoozebot-plugin-* executables of DIR
  -h, --help              this text
Keys: SNOOZEBOT_API_KEYS_FILE (lines `ROLE SHA256-HEX [LABEL]`), SNOOZEBOT_API_KEYS
(`role:secret,...`), plus an admin key printed at start. Ctrl-C or SIGTERM stops it.";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rest_server: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Before any key is read: plugins of this user cannot read this process's environment.
    snoozebot_plugin::harden_host()?;
    tracing_subscriber::fmt()
        // Colour only for a terminal: escapes in a pipe or a log file are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .init();
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut plugin_dir: Option<PathBuf> = None;
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--listen" => listen = words.next().ok_or("--listen takes ADDRESS:PORT")?,
            "--plugin-dir" => {
                plugin_dir = Some(words.next().ok_or("--plugin-dir takes DIR")?.into())
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => {
                return Err(format!("unknown option {other}\n{USAGE}").into());
            }
        }
    }
    let mut keys = match std::env::var("SNOOZEBOT_API_KEYS_FILE") {
        Ok(path) => ApiKeys::from_file(path)?,
        Err(_) => ApiKeys::new(),
    };
    if let Ok(value) = std::env::var("SNOOZEBOT_API_KEYS") {
        keys.merge(ApiKeys::from_env_value(&value)?);
    }
    let server = snoozebot_examples::rest::build(plugin_dir, keys).await?;
    let listener = snoozebot_rest::bind(listen.parse()?)?;
    let address = listener.local_addr()?;
    println!("Snoozebot REST API on http://{address}/api (OpenAPI: /api/openapi.json)");
    println!("admin key: {}", server.admin_key);
    println!(
        "try: curl -H 'Authorization: Bearer {}' http://{address}/api/providers/mock/instances?page_size=3",
        server.admin_key
    );
    let manager = server.manager;
    snoozebot_rest::serve(listener, server.router, async {
        // Ctrl-C, or SIGTERM from a service manager or `kill`.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        println!("stopping: finishing the requests in flight");
    })
    .await?;
    manager.shutdown().await;
    Ok(())
}
