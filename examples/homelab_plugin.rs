//! The Homelab provider (docs/writing-a-provider.md) as a plugin executable: the whole `main`.
//!
//! ```text
//! cargo build -p snoozebot-examples --features plugin --example homelab_plugin
//! ```
//!
//! Copy `target/debug/examples/homelab_plugin` into a plugin directory as
//! `snoozebot-plugin-homelab`; the host passes `HOMELAB_URL` (`PluginConfig::with_env`).

use std::process::ExitCode;

use snoozebot_examples::homelab::HomelabProvider;

fn main() -> ExitCode {
    snoozebot_plugin::init_logging();
    let url = std::env::var("HOMELAB_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".to_owned());
    match HomelabProvider::new(url) {
        Ok(provider) => snoozebot_plugin::serve(provider),
        Err(error) => {
            eprintln!("homelab plugin: {error}");
            ExitCode::FAILURE
        }
    }
}
